"""AudioMAE from its official checkpoint layout: keys and shapes against the official definition,
strict loading, and numerical equivalence with timm's VisionTransformer (the class the official
models_vit.py subclasses) where timm imports (torchvision stubbed, see tests/reference_stubs.py).

The full comparison with the official checkpoints and, optionally, the official models_vit.py runs
in the GPU script through :func:`ausweep.models.audiomae.compare_with_reference`.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from ausweep.models.audio import audio_model_identity, check_audio_model, load_audio_encoder
from ausweep.models.audiomae import (
    DECODER_PREFIXES,
    OFFICIAL_KEYS,
    AudioMAEAudioEncoder,
    AudioMAEConfig,
    AudioMAEModel,
    build,
    compare_with_reference,
    load_state,
    official_keys,
    param_count,
    random_state,
)
from ausweep.models.catalog import ModelUnavailableError, UnknownModelError
from tests.reference_stubs import import_timm_vit

TINY = dict(frames=64, mels=32, dim=32, depth=2, heads=4, num_classes=7)


def _noise(seconds, seed=0):
    g = np.random.default_rng(seed)
    return [(0.1 * g.standard_normal(int(s * 16000))).astype(np.float32) for s in seconds]


@pytest.mark.parametrize("kind", ["pretrained", "finetuned"])
def test_module_keys_and_shapes_are_the_official_ones(kind):
    with torch.device("meta"):
        model = AudioMAEModel(AudioMAEConfig(kind=kind))
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == OFFICIAL_KEYS[kind]
    assert OFFICIAL_KEYS[kind]["pos_embed"] == (1, 513, 768)  # 64 x 8 patches of 16 x 16 on 1024 x 128, + CLS


def test_parameter_count_is_the_official_logs():
    # AudioMAE's README fine-tuning log: "n_parameters": 85659407 (pos_embed is frozen, not counted)
    assert param_count(AudioMAEConfig(kind="finetuned")) == 85659407


def _official_state(kind, cfg=None, seed=0):
    cfg = cfg or AudioMAEConfig(kind=kind, **TINY)
    state = random_state(official_keys(cfg), torch.Generator().manual_seed(seed))
    if kind == "pretrained":
        state.update({"mask_token": torch.zeros(1, 1, 16), "decoder_embed.weight": torch.zeros(16, cfg.dim),
                      "decoder_pos_embed": torch.zeros(1, 1 + cfg.grid[0] * cfg.grid[1], 16)})
    return state


def test_strict_loading_consumes_every_encoder_key_and_names_strangers():
    cfg = AudioMAEConfig(kind="pretrained", **TINY)
    state = _official_state("pretrained")
    skipped = load_state(AudioMAEModel(cfg), state)
    assert skipped == sorted(k for k in state if k.startswith(DECODER_PREFIXES)) and len(skipped) == 3
    bad = dict(state)
    bad.pop("blocks.1.mlp.fc2.bias")
    with pytest.raises(ValueError, match=r"missing \['blocks.1.mlp.fc2.bias'\]"):
        load_state(AudioMAEModel(cfg), bad, source="x.pth")
    with pytest.raises(ValueError, match=r"unexpected \['extra'\]"):
        load_state(AudioMAEModel(cfg), {**state, "extra": torch.zeros(1)})
    with pytest.raises(ValueError, match="use audiomae-ft"):
        load_state(AudioMAEModel(cfg), _official_state("finetuned"))
    with pytest.raises(ValueError, match="wrong shape"):
        load_state(AudioMAEModel(cfg), {**state, "cls_token": torch.zeros(1, 1, 8)})
    # the fine-tuned model has no decoder: a decoder key there is a stranger, not skipped
    ft = _official_state("finetuned")
    with pytest.raises(ValueError, match="decoder_embed"):
        load_state(AudioMAEModel(AudioMAEConfig(kind="finetuned", **TINY)), {**ft, "decoder_embed.weight": torch.zeros(1)})


def test_official_file_layout_round_trips_through_the_registry_loader(tmp_path, monkeypatch):
    """A file as util/misc.save_model writes it ({"model", "args", "epoch"}) at full size, found
    through $AUSWEEP_CHECKPOINTS, gives the same vectors as the model built from the state."""
    state = _official_state("finetuned", AudioMAEConfig(kind="finetuned"))
    torch.save({"model": state, "args": argparse.Namespace(model="vit_base_patch16"), "epoch": 99},
               tmp_path / "finetuned.pth")
    monkeypatch.setenv("AUSWEEP_CHECKPOINTS", str(tmp_path))
    enc = load_audio_encoder("audiomae-ft")
    waves = _noise([2.0])
    model = AudioMAEModel(AudioMAEConfig(kind="finetuned"))
    model.load_state_dict(state)
    ref = AudioMAEAudioEncoder(model, "ref").embed(waves)
    np.testing.assert_allclose(enc.embed(waves), ref, atol=1e-6)
    assert enc.dim == 768 and enc.sample_rate == 16000
    ident = audio_model_identity("audiomae-ft")  # cache keys follow the file found
    assert ident["path"] == str((tmp_path / "finetuned.pth").resolve()) and ident["size"] == (tmp_path / "finetuned.pth").stat().st_size


def test_missing_checkpoint_is_one_line_naming_file_url_and_place(tmp_path, monkeypatch):
    monkeypatch.setenv("AUSWEEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AUSWEEP_CHECKPOINTS", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError) as e:
        load_audio_encoder("audiomae")
    msg = str(e.value)
    assert "\n" not in msg and "pretrained.pth" in msg and "drive" in msg and str(tmp_path / "cache") in msg
    assert "AUSWEEP_CHECKPOINTS" in msg and "checkpoint=" in msg
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        load_audio_encoder("audiomae-ft", checkpoint=str(tmp_path / "nope.pth"))


def test_vitmae_is_retired_with_a_pointer_to_audiomae():
    with pytest.raises(UnknownModelError, match="'vitmae' was removed.*'audiomae'"):
        check_audio_model("vitmae")


def test_pooling_uses_the_clip_not_its_padding():
    model = build("pretrained", cfg=AudioMAEConfig(kind="pretrained", **TINY))
    torch.nn.init.normal_(model.pos_embed, std=0.5)  # zero-initialised: make positions matter
    mean = AudioMAEAudioEncoder(model, "t", pooling="mean")
    glob = AudioMAEAudioEncoder(model, "t", pooling="global")
    short, full = _noise([0.2, 0.7], seed=3)  # window: 64 frames = 0.64 s
    a = mean.embed([short])
    b = mean.embed([short, full])  # batch companions change nothing
    np.testing.assert_allclose(a, b[:1], atol=1e-6)
    assert not np.allclose(a, glob.embed([short]), atol=1e-3)  # padding rows are excluded ...
    np.testing.assert_allclose(mean.embed([full]), glob.embed([full]), atol=1e-6)  # ... a full window has none
    with pytest.raises(ValueError, match="out of range"):
        AudioMAEAudioEncoder(model, "t", layer=3)
    e0 = AudioMAEAudioEncoder(model, "t", layer=0).embed([short])
    assert e0.shape == a.shape and not np.allclose(e0, a)


@pytest.mark.parametrize("kind", ["pretrained", "finetuned"])
def test_matches_timm_vision_transformer(kind):
    if import_timm_vit() is None:
        pytest.skip("timm is not installed (pip install --no-deps timm)")
    diffs = compare_with_reference(kind, cfg=AudioMAEConfig(kind=kind, **TINY))
    scale = diffs.pop("scale")
    assert scale > 0.3 and max(diffs.values()) < 1e-4, (scale, diffs)  # O(1) outputs, same to 1e-4
