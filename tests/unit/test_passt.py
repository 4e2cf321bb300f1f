"""PaSST from its released checkpoint layout, against the reference package hear21passt.

hear21passt's model code runs as is. Where torchaudio does not import (no build for this torch), its
front end's ``torchaudio.compliance.kaldi.get_mel_banks`` is stood in for by ausweep's
:func:`kaldi_mel_banks` (pinned separately against transformers' independent Kaldi mel filters), and
torchvision (which timm imports) by placeholders: the stand-ins and the comparison itself live in
:mod:`ausweep.models.reference_equivalence`, which the GPU script runs with the real packages.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ausweep.models.catalog import ModelUnavailableError
from ausweep.models.passt import PASST_FILE, kaldi_mel_banks, load_passt
from ausweep.models.reference_equivalence import passt_equivalence, passt_reference, passt_wrapper


@pytest.fixture
def reference():
    """hear21passt's modules, with the stand-ins of :mod:`ausweep.models.reference_equivalence`
    where torchaudio / torchvision do not import, forgotten afterwards."""
    with passt_reference() as (ref, _):
        yield ref


def _reference_wrapper(ref, net, window_ms: int = 10000, hop_ms: int = 2500, mode: str = "embed_only"):
    return passt_wrapper(ref, net, window_ms, hop_ms, mode)


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


def test_small_passt_matches_reference_with_windowing():
    """The check the GPU script runs (bench/gpu/run.py, part 4): a 2-block PaSST with a 2 s window,
    short clips, a clip of exactly one window, and longer clips that the reference cuts into
    overlapping windows; ``scene`` pooling (the logits and the ``tokens`` features)."""
    res = passt_equivalence(tiny=True)
    assert res["ok"] and res["checks"]["every_key_consumed"], res
    assert res["diffs"]["scene_logits"] < 1e-4 and res["diffs"]["scene_tokens"] < 1e-4 and res["scale"] > 0.3, res
    assert res["packages"]["hear21passt"].startswith("real")
    assert set(res["packages"]) >= {"torchaudio", "timm", "torchvision"}  # each real or named as a stand-in
    for name, what in res["packages"].items():
        assert what.startswith("real") or name in res["stand_ins"], (name, what)


def test_patch_pooling_matches_the_reference_modules(reference, tmp_path):
    torch.manual_seed(0)
    net = reference.passt.PaSST(img_size=(128, 198), stride=10, embed_dim=192, depth=2, num_heads=3, distilled=True)
    path = tmp_path / PASST_FILE.filename
    torch.save(net.state_dict(), path)
    clips = _clips([0.4, 1.3])
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
