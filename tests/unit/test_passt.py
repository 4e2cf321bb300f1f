"""PaSST from its released checkpoint layout, against the reference package hear21passt.

hear21passt's model code runs as is, with two imports stood in for in ``sys.modules`` during the test:
its front end imports torchaudio (no build for this torch) for training-time masking and for
``torchaudio.compliance.kaldi.get_mel_banks``, whose stand-in is ausweep's :func:`kaldi_mel_banks`
(pinned separately against transformers' independent Kaldi mel filters); its ViT helpers import
``timm.models._hub.download_cached_file`` (only for downloading pretrained weights; timm itself
imports torchvision, which does not load here).
"""

from __future__ import annotations

import importlib
import sys
import types

import numpy as np
import pytest
import torch

from ausweep.models.catalog import ModelUnavailableError
from ausweep.models.passt import PASST_FILE, kaldi_mel_banks, load_passt


def _fake_torchaudio() -> types.ModuleType:
    def get_mel_banks(num_bins, window_length_padded, sample_freq, low_freq, high_freq, vtln_low, vtln_high,
                      vtln_warp_factor):
        assert vtln_warp_factor == 1.0
        return kaldi_mel_banks(num_bins, window_length_padded, sample_freq, low_freq, high_freq), None

    ta = types.ModuleType("torchaudio")
    ta.compliance = types.SimpleNamespace(kaldi=types.SimpleNamespace(get_mel_banks=get_mel_banks))

    class Masking(torch.nn.Module):  # training-time SpecAugment; eval never calls it
        def __init__(self, *a, **k):
            super().__init__()

    ta.transforms = types.SimpleNamespace(FrequencyMasking=Masking, TimeMasking=Masking)
    return ta


def _fake_timm_hub() -> dict[str, types.ModuleType]:
    def download_cached_file(*a, **k):
        raise AssertionError("the test builds PaSST with random weights; nothing is downloaded")

    mods = {n: types.ModuleType(n) for n in ("timm", "timm.models", "timm.models._hub")}
    mods["timm.models._hub"].download_cached_file = download_cached_file
    return mods


@pytest.fixture
def reference(monkeypatch):
    """hear21passt's modules, imported against the stand-ins and forgotten afterwards."""
    monkeypatch.setitem(sys.modules, "torchaudio", _fake_torchaudio())
    for name, mod in _fake_timm_hub().items():
        monkeypatch.setitem(sys.modules, name, mod)
    for mod in [m for m in sys.modules if m.startswith("hear21passt")]:
        monkeypatch.delitem(sys.modules, mod)
    ref = types.SimpleNamespace(
        passt=importlib.import_module("hear21passt.models.passt"),
        preprocess=importlib.import_module("hear21passt.models.preprocess"),
        wrapper=importlib.import_module("hear21passt.wrapper"),
    )
    yield ref
    for mod in [m for m in sys.modules if m.startswith("hear21passt")]:
        del sys.modules[mod]


def _reference_wrapper(ref, net, window_ms: int = 10000, hop_ms: int = 2500, mode: str = "embed_only"):
    # the front end exactly as hear21passt.base.get_basic_model builds it
    mel = ref.preprocess.AugmentMelSTFT(n_mels=128, sr=32000, win_length=800, hopsize=320, n_fft=1024, freqm=48,
                                        timem=192, htk=False, fmin=0.0, fmax=None, norm=1, fmin_aug_range=10,
                                        fmax_aug_range=2000)
    return ref.wrapper.PasstBasicWrapper(mel=mel, net=net, max_model_window=window_ms, scene_hop=hop_ms, mode=mode).eval()


def _clips(lengths_s, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i, s in enumerate(lengths_s):
        t = np.arange(int(s * 32000)) / 32000
        out.append((0.3 * np.sin(2 * np.pi * (220 + 170 * i) * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32))
    return out


def _ref_embed(wrapper, clips):
    with torch.no_grad():
        return np.stack([wrapper.get_scene_embeddings(torch.from_numpy(c)[None])[0].numpy() for c in clips])


def test_kaldi_mel_banks_match_transformers_kaldi_filters():
    """Known answer: transformers' numpy Kaldi mel filters (the ones its AST extractor documents as
    torchaudio-compatible), computed in float64, at PaSST's setting and at AST's."""
    from transformers.audio_utils import mel_filter_bank

    for n_mels, n_fft, sr, lo, hi in [(128, 1024, 32000, 0.0, 15000.0), (128, 512, 16000, 20.0, 8000.0)]:
        ours = kaldi_mel_banks(n_mels, n_fft, sr, lo, hi).double().numpy()  # (mels, n_fft // 2)
        theirs = mel_filter_bank(num_frequency_bins=n_fft // 2 + 1, num_mel_filters=n_mels, min_frequency=lo,
                                 max_frequency=hi, sampling_rate=sr, norm=None, mel_scale="kaldi",
                                 triangularize_in_mel_space=True).T  # (mels, bins)
        assert ours.shape == (n_mels, n_fft // 2)
        np.testing.assert_allclose(ours, theirs[:, : n_fft // 2], atol=2e-5)
        assert np.abs(theirs[:, n_fft // 2]).max() < 1e-6 or hi == sr / 2  # nothing lost at Nyquist
    # a hand-computed point: PaSST's band 0 peaks at mel 1127 ln(1 + 15000/700) / 129
    centre_hz = 700 * (np.exp(1127 * np.log(1 + 15000 / 700) / 129 / 1127) - 1)
    banks = kaldi_mel_banks(128, 1024, 32000, 0.0, 15000.0)
    assert int(banks[0].argmax()) == round(centre_hz / 31.25)
    # high_freq <= 0 counts back from Nyquist
    torch.testing.assert_close(kaldi_mel_banks(23, 512, 16000, 20.0, -400.0), kaldi_mel_banks(23, 512, 16000, 20.0, 7600.0))


def test_small_passt_matches_reference_with_windowing(reference, tmp_path):
    """A 2-block PaSST with a 2 s window: short clips, a clip of exactly one window, and longer clips
    that the reference cuts into overlapping windows; three poolings."""
    torch.manual_seed(0)
    net = reference.passt.PaSST(img_size=(128, 198), stride=10, embed_dim=192, depth=2, num_heads=3, distilled=True)
    path = tmp_path / PASST_FILE.filename
    torch.save(net.state_dict(), path)
    clips = _clips([0.4, 1.3, 2.0, 3.3, 5.05])
    for pooling, mode in [("tokens", "embed_only"), ("scene", "all")]:
        expected = _ref_embed(_reference_wrapper(reference, net, 2000, 500, mode), clips)
        got = load_passt(checkpoint=str(path), pooling=pooling, window_s=2.0, hop_s=0.5, batch_size=2).embed(clips)
        assert got.shape == expected.shape == (5, 192 + (527 if pooling == "scene" else 0))
        assert np.abs(got - expected).max() < 1e-4, (pooling, np.abs(got - expected).max())
    # patches: the mean of the patch tokens after the final norm, for a clip within one window
    enc = load_passt(checkpoint=str(path), pooling="patches", window_s=2.0, hop_s=0.5)
    with torch.no_grad():  # the reference returns no patch tokens: run its own modules up to the final norm
        spec = _reference_wrapper(reference, net).mel(torch.from_numpy(clips[1])[None]).unsqueeze(1)
        h = net.patch_embed(spec)
        h = (h + net.time_new_pos_embed[..., : h.shape[-1]] + net.freq_new_pos_embed).flatten(2).transpose(1, 2)
        tok = torch.cat([net.cls_token + net.new_pos_embed[:, :1], net.dist_token + net.new_pos_embed[:, 1:], h], 1)
        expected_patches = net.norm(net.blocks(tok))[:, 2:].mean(1)[0].numpy()
    assert np.abs(enc.embed([clips[1]])[0] - expected_patches).max() < 1e-4


def test_official_layout_full_size(reference, tmp_path):
    """The released architecture (passt_s_swa_p16_128_ap476: 12 blocks, 768 wide, 527 classes) with
    random weights, saved as the official file: every key is consumed and the embeddings agree."""
    torch.manual_seed(1)
    net = reference.passt.get_model(arch="passt_s_swa_p16_128_ap476", pretrained=False, fstride=10, tstride=10,
                                    input_fdim=128, input_tdim=998)
    state = net.state_dict()
    path = tmp_path / PASST_FILE.filename
    torch.save(state, path)
    enc = load_passt(checkpoint=str(path), pooling="scene")
    assert set(enc.net.state_dict()) == set(state)
    assert enc.dim == 1295 and enc.sample_rate == 32000
    clips = _clips([1.0, 0.1])
    expected = _ref_embed(_reference_wrapper(reference, net, mode="all"), clips[:1])
    got = enc.embed(clips)
    assert np.abs(got[:1] - expected).max() < 1e-4
    assert np.isfinite(got[1]).all()  # 0.1 s: padded to one patch (the reference cannot take it)


def test_checkpoint_keys_must_fit(reference, tmp_path):
    torch.manual_seed(0)
    net = reference.passt.PaSST(img_size=(128, 198), stride=10, embed_dim=64, depth=1, num_heads=1, distilled=True)
    state = net.state_dict()
    extra = tmp_path / "extra.pt"
    torch.save({**state, "pos_embed": torch.zeros(3)}, extra)
    with pytest.raises(ValueError, match=r"1 keys not used .*pos_embed"):
        load_passt(checkpoint=str(extra))
    short = tmp_path / "short.pt"
    torch.save({k: v for k, v in state.items() if k != "head_dist.weight"}, short)
    with pytest.raises(ValueError, match=r"missing 1 keys .*head_dist.weight"):
        load_passt(checkpoint=str(short))
    wrapped = tmp_path / "wrapped.pt"  # hear21passt's filter also accepts {"model": state_dict}
    torch.save({"model": state}, wrapped)
    assert load_passt(checkpoint=str(wrapped)).dim == 64


def test_missing_checkpoint_fails_at_once_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("AUSWEEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AUSWEEP_CHECKPOINTS", raising=False)
    with pytest.raises(ModelUnavailableError) as e:
        load_passt()
    msg = str(e.value)
    assert "\n" not in msg
    assert PASST_FILE.filename in msg and PASST_FILE.url in msg
    assert str(tmp_path / "cache" / "checkpoints" / PASST_FILE.filename) in msg and "AUSWEEP_CHECKPOINTS" in msg
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        load_passt(checkpoint=str(tmp_path / "nope.pt"))
    with pytest.raises(ValueError, match="pooling"):
        from ausweep.models.passt import PasstEncoder

        PasstEncoder(None, pooling="cls")


def test_registry_name_finds_the_file_in_the_checkpoints_folder(reference, tmp_path, monkeypatch):
    """`passt` by name: the loader looks in $AUSWEEP_CHECKPOINTS for the official file name."""
    from ausweep.models.audio import load_audio_encoder

    torch.manual_seed(0)
    net = reference.passt.PaSST(img_size=(128, 198), stride=10, embed_dim=64, depth=1, num_heads=1, distilled=True)
    monkeypatch.setenv("AUSWEEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AUSWEEP_CHECKPOINTS", str(tmp_path / "ckpts"))
    with pytest.raises(ModelUnavailableError, match=str(tmp_path / "ckpts" / PASST_FILE.filename)):
        load_audio_encoder("passt")
    (tmp_path / "ckpts").mkdir()
    torch.save(net.state_dict(), tmp_path / "ckpts" / PASST_FILE.filename)
    import dataclasses

    import ausweep.models.passt as passt_module

    # the random file is far smaller than the release, which the size check would take for a partial download
    monkeypatch.setattr(passt_module, "PASST_FILE", dataclasses.replace(PASST_FILE, min_bytes=1))
    enc = load_audio_encoder("passt", pooling="scene")
    assert (enc.name, enc.dim, enc.sample_rate) == ("passt", 64 + 527, 32000)
