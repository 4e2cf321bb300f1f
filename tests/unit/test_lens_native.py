"""Native transformers audio-language models through the lens (ausweep.models.native_lalm): tiny
random builds of each architecture from the vendored chat templates and processor settings; the
audio tokens, the attribute mention and the final position land where the model reads them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ausweep.lens import knockout as K
from ausweep.lens import lens as L
from ausweep.lens.data import load_prompts, load_sakura, make_demo_sakura
from ausweep.models import native_lalm as N

NAMES = [f"tiny-{n}" for n in N.NATIVE]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = make_demo_sakura(tmp_path_factory.mktemp("sakura"), per_label=1, labels=["dog", "cat", "cow"])
    prompts = load_prompts(["Animal"])
    return prompts, load_sakura(root, ["Animal"], prompts.options)


@pytest.fixture(scope="module", params=NAMES)
def model(request):
    return L.load_native_model(request.param)


def test_every_architecture_has_vendored_files_with_provenance():
    for spec in N.NATIVE.values():
        template = N.chat_template(spec)
        assert spec.audio_token in template
        settings = N.feature_extractor_settings(spec)
        assert settings["sampling_rate"] == N.SAMPLING_RATE and settings["feature_size"] > 0
        source = spec.resource("SOURCE.md").read_text()
        assert "chat_template.jinja" in source and "preprocessor_config.json" in source
        assert N.is_native(spec.name) and N.is_native(f"tiny-{spec.name}")
    assert not N.is_native("smollm2-135m")
    with pytest.raises(ValueError, match="not a native"):
        N.spec_of("smollm2-135m")


def test_a_folder_is_recognised_by_its_model_type(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2_audio"}))
    assert N.spec_of(str(tmp_path)).name == "qwen2-audio"


def test_positions_audio_attribute_and_final(model, clips):
    prompts, items = clips
    ps = L.PromptSettings(style="default", question="plain")
    enc = L.encode_batch(model, items, prompts, ps)
    ids = enc.kwargs["input_ids"]
    native = model.native
    # the chat template wrote one placeholder; the processor expanded it to the encoder's frames
    assert all(t.count(native.spec.audio_token) == 1 for t in enc.texts)
    n_audio = enc.audio_mask.sum(-1)
    assert (n_audio > 1).all()
    assert torch.equal(enc.audio_mask, ids == native.audio_token_id)
    # audio tokens form one run, inside the user turn, before the question
    for i in range(len(items)):
        where = enc.audio_mask[i].nonzero().flatten()
        assert where[-1] - where[0] + 1 == len(where)
    tok = native.tokenizer
    for i in range(len(items)):
        row = ids[i][enc.kwargs["attention_mask"][i].bool()].tolist()
        # the attribute mention: its first through last sub-token spell the word (byte-level BPE keeps the space)
        assert tok.decode(row[len(row) + enc.attribute_starts[i]:len(row) + enc.attribute_offsets[i] + 1]).strip() == "animal"
        assert tok.decode(row[-1:]) == " is"  # the final position: the token the answer continues
        assert enc.texts[i].endswith(prompts.probe_text("Animal", "default", True))
        assert int(enc.audio_mask[i].nonzero()[-1]) < len(ids[i]) + enc.attribute_starts[i]


def test_last_layer_projection_equals_the_model_logits(model, clips):
    prompts, items = clips
    enc = L.encode_batch(model, items, prompts, L.PromptSettings())
    ids = L.option_token_ids(model.tokenizer, prompts.options["Animal"])
    _, offsets = L.resolve_offsets(["final", "attribute"], enc, 4)
    out = L.lens_batch(model.lm, enc.kwargs, offsets, ids)  # runs the projection == logits check
    with torch.no_grad():
        logits = model.lm(**enc.kwargs).logits[:, -1].float()
    np.testing.assert_allclose(out.final, logits[:, ids].numpy(), rtol=1e-5, atol=1e-5)
    assert out.logprobs.shape == (len(items), model.n_layers + 1, 2 + 4, len(ids))


def test_left_padding_gives_each_clip_the_same_answer_as_alone(model, clips, tmp_path):
    prompts, items = clips
    import soundfile as sf

    long = tmp_path / "long.wav"  # a longer clip: more audio tokens, so the other rows are padded
    sf.write(long, 0.3 * np.sin(2 * np.pi * 300 * np.arange(12000) / 16000).astype(np.float32), 16000)
    batch = [items[0], type(items[0])("x", "Animal", "dog", audio=str(long))]
    ps = L.PromptSettings()
    enc = L.encode_batch(model, batch, prompts, ps)
    assert len(set(enc.audio_mask.sum(-1).tolist())) == 2
    with torch.no_grad():
        both = model.lm(**enc.kwargs).logits[:, -1]
        for i, it in enumerate(batch):
            alone = model.lm(**L.encode_batch(model, [it], prompts, ps).kwargs).logits[:, -1]
            torch.testing.assert_close(both[i], alone[0], rtol=1e-4, atol=1e-4)


def test_knocking_out_the_audio_changes_the_answer_logits_only_where_knocked(model, clips):
    prompts, items = clips
    enc = L.encode_batch(model, items, prompts, L.PromptSettings())
    ids = L.option_token_ids(model.tokenizer, prompts.options["Animal"])
    curve = K.knockout_curve(model.lm, enc.kwargs, K.target_keys(enc, "audio"), ids)
    with torch.no_grad():
        full = torch.log_softmax(model.lm(**enc.kwargs).logits[:, -1].float(), -1)[:, ids].numpy()
    np.testing.assert_allclose(curve[:, -1], full, rtol=1e-5, atol=1e-6)
    assert not np.allclose(curve[:, 0], full, rtol=1e-5, atol=1e-6)


def test_the_verifier_compares_the_vendored_files_with_a_processor_folder(tmp_path):
    """``python -m ausweep.models.verify lalm-<name>`` on a processor folder (what the hub serves):
    all zero for one saved from the vendored files; a changed template or setting shows as 1."""
    import transformers as tf

    from ausweep.models.verify import generated_clips

    spec = N.NATIVE["qwen2-audio"]
    settings = {k: v for k, v in N.feature_extractor_settings(spec).items() if k not in ("feature_extractor_type", "processor_class")}
    proc = tf.Qwen2AudioProcessor(feature_extractor=tf.WhisperFeatureExtractor(**settings), tokenizer=N.tiny_tokenizer(spec),
                                  chat_template=N.chat_template(spec))
    proc.save_pretrained(tmp_path / "same")
    checks = N.verify_qwen2_audio(str(tmp_path / "same"), generated_clips([1.0]))
    assert checks and all(c.max_abs_diff == 0 for c in checks)
    proc.chat_template = N.chat_template(spec).replace("You are a helpful assistant.", "You are terse.")
    proc.feature_extractor.dither = 1.0
    proc.save_pretrained(tmp_path / "changed")
    bad = {c.what for c in N.verify_qwen2_audio(str(tmp_path / "changed"), generated_clips([1.0])) if c.max_abs_diff > 0}
    assert {"chat_template text", "chat prefix rendered", "feature extractor dither"} <= bad


def test_the_audio_only_processor_expands_as_transformers_does():
    """AudioOnlyProcessor (Qwen2.5-Omni without its image/video halves): one placeholder per clip
    becomes transformers' own token count, per clip, and the features carry their attention mask."""
    from transformers.models.qwen2_5_omni.processing_qwen2_5_omni import _get_feat_extract_output_lengths

    spec = N.NATIVE["qwen2.5-omni"]
    _, proc = N.build_tiny_native(spec)
    waves = [np.zeros(4000, np.float32), np.zeros(16000, np.float32)]
    out = proc(text=[f"a{spec.audio_token}b", f"{spec.audio_token}c d"], audio=waves, text_kwargs={"padding": True, "padding_side": "left"})
    frames = out["feature_attention_mask"].sum(-1)
    assert frames.tolist() == [25, 100]  # 0.25 s and 1 s of 10 ms frames
    expected = _get_feat_extract_output_lengths(frames).tolist()
    aid = proc.tokenizer.convert_tokens_to_ids(spec.audio_token)
    assert (out["input_ids"] == aid).sum(-1).tolist() == expected
    assert out["attention_mask"][:, 0].tolist() == [0, 1]  # left padding: the shorter row starts with pads
    with pytest.raises(ValueError, match="placeholders"):
        proc(text=["no placeholder"], audio=waves[:1])


def test_the_audio_only_processor_equals_qwen2_5_omni_processor():
    """Where torchvision is installed (the real processor's video half needs it): the same ids and features."""
    pytest.importorskip("torchvision")
    import transformers as tf

    spec = N.NATIVE["qwen2.5-omni"]
    _, ours = N.build_tiny_native(spec)
    tok = ours.tokenizer
    tok.image_token, tok.video_token = "<|IMAGE|>", "<|VIDEO|>"
    real = tf.Qwen2_5OmniProcessor(image_processor=tf.Qwen2VLImageProcessor(), video_processor=tf.Qwen2VLVideoProcessor(),
                                   feature_extractor=ours.feature_extractor, tokenizer=tok, chat_template=ours.chat_template)
    waves = [np.random.default_rng(0).standard_normal(n).astype(np.float32) for n in (4000, 16000)]
    texts = [f"x{spec.audio_token}y", f"{spec.audio_token}z"]
    a = ours(text=texts, audio=waves, text_kwargs={"padding": True, "padding_side": "left"})
    b = real(text=texts, audio=waves, padding=True, return_tensors="pt")
    for k in ("input_ids", "attention_mask", "feature_attention_mask"):
        assert torch.equal(a[k], b[k]), k
    torch.testing.assert_close(a["input_features"], b["input_features"])


@pytest.mark.parametrize("name", NAMES)
def test_the_lens_study_runs_on_every_native_architecture(name, tmp_path):
    from ausweep.lens import study
    from ausweep.lens.config import KnockoutConfig, LensConfig

    cfg = LensConfig(lalm=name, data="demo-audio", attributes=["Animal"], device="cpu", max_items=2, batch_size=4,
                     demo_root=str(tmp_path / "demo"), knockout=KnockoutConfig(targets=["audio", "attribute"]))
    out = study.analyze(cfg)
    assert out.metrics["n_layers"] == 2 and out.metrics["Animal/n"] == 2  # max_items: the first 2 clips
    assert {r["target"] for r in out.knockout} == {"audio", "attribute"}
    assert sorted({r["from_block"] for r in out.knockout}) == [0, 1, 2]
    unchanged = [r for r in out.knockout if r["from_block"] == 2]
    assert all(r["acc"] == out.metrics["Animal/acc"] for r in unchanged)  # from block L: the model's own answer
    assert "plots/knockout.png" in out.files and out.items[0]["prompt"].endswith("The sound file's animal is")
