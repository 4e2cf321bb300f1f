"""``python -m ausweep.models.verify``: its offline parts (arguments, the verifier table, the message
when a checkpoint cannot be had) and one full run on a random checkpoint in the official layout."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from ausweep.models import verify
from ausweep.models.passt import PASST_FILE, passt_net


@pytest.fixture
def no_checkpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("AUSWEEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AUSWEEP_CHECKPOINTS", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path


@pytest.mark.parametrize("argv, message", [
    ([], "name at least one encoder"),
    (["passt", "nope"], "no verifier for nope; known: passt, pann-cnn14, hubert-base"),
    (["passt", "--checkpoint", "passt"], "--checkpoint takes NAME=PATH"),
    (["passt", "--checkpoint", "other=/x.pt"], "--checkpoint takes NAME=PATH"),
    (["passt", "--clips", "1,x"], "--clips takes comma-separated seconds"),
    (["passt", "--clips", "0"], "must be in (0, 120]"),
])
def test_bad_arguments_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        verify.main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_list(capsys):
    assert verify.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("passt", "pann-cnn14", "hubert-base"))


def test_offline_says_what_to_fetch(no_checkpoints, capsys):
    assert verify.main(["passt", "pann-cnn14", "hubert-base"]) == 2
    out = capsys.readouterr().out
    assert f"cannot verify passt: audio model 'passt' needs its checkpoint file {PASST_FILE.filename}" in out
    assert PASST_FILE.url in out and "Cnn14_mAP%3D0.431.pth" in out
    assert "cannot verify hubert-base" in out and "facebook/hubert-base-ls960" in out
    assert not (no_checkpoints / "cache" / "checkpoints").exists()  # offline: nothing downloaded or created


def _fake_verifier(checkpoint, make_clips, device):
    clips = make_clips(8000)
    return [verify.Check("fake", f"clip of {len(c)}", 0.5 if checkpoint == "bad" else 0.0) for c in clips]


def test_table_takes_new_lines_and_differences_fail(monkeypatch, capsys):
    monkeypatch.setitem(verify.VERIFIERS, "fake", f"{__name__}:_fake_verifier")
    monkeypatch.setitem(sys.modules, __name__, sys.modules[__name__])
    assert verify.main(["fake", "--clips", "1,0.25"]) == 0
    assert "clip of 8000" in capsys.readouterr().out
    assert verify.main(["fake", "--clips", "1", "--checkpoint", "fake=bad"]) == 1
    assert "DIFFERS" in capsys.readouterr().out


def test_audio_files_are_read_mono_and_resampled(tmp_path):
    import soundfile as sf

    stereo = np.stack([np.sin(np.arange(16000) / 5), np.zeros(16000)], 1).astype(np.float32)
    sf.write(tmp_path / "a.wav", stereo, 16000)
    (clip,) = verify.file_clips([str(tmp_path / "a.wav")])(32000)
    assert clip.shape == (32000,) and clip.dtype == np.float32
    assert abs(np.abs(clip[1000:-1000]).max() - 0.5) < 0.01  # the mean of the two channels (edges ring)


def test_full_run_on_a_random_official_layout_checkpoint(tmp_path, capsys):
    """hear21passt loads the file with its own filter and strict load_state_dict; ausweep agrees."""
    torch.manual_seed(0)
    state = passt_net().state_dict()  # the released architecture
    state = {k: torch.randn_like(v) * 0.02 + (1.0 if k.endswith("norm.weight") or ".norm1.weight" in k else 0.0)
             for k, v in state.items()}
    path = tmp_path / PASST_FILE.filename
    torch.save(state, path)
    assert verify.main(["passt", "--checkpoint", f"passt={path}", "--clips", "0.7"]) == 0
    out = capsys.readouterr().out
    assert out.count(" ok") == 2 and "DIFFERS" not in out


def test_full_run_pann_without_the_label_list(tmp_path, monkeypatch, capsys):
    """panns_inference's AudioTagging loads the file itself; its label list is absent (placeholder)."""
    from ausweep.models import pann

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for mod in [m for m in sys.modules if m.startswith("panns_inference")]:
        monkeypatch.delitem(sys.modules, mod)
    torch.manual_seed(0)
    state = {}
    for k, v in pann._modules()["Cnn14"]().state_dict().items():
        if k.endswith("running_var"):
            state[k] = torch.rand_like(v) + 0.5
        elif k.endswith("num_batches_tracked"):
            state[k] = v
        else:
            state[k] = torch.randn_like(v) * 0.05 + (1.0 if k.endswith(("bn1.weight", "bn2.weight", "bn0.weight")) else 0.0)
    path = tmp_path / "Cnn14.pth"
    torch.save({"model": state, "iteration": np.int64(600000)}, path)  # > 3e8 bytes, as AudioTagging checks
    assert verify.main(["pann-cnn14", "--checkpoint", f"pann-cnn14={path}", "--clips", "0.6"]) == 0
    out = capsys.readouterr().out
    assert "placeholder" in out and out.count(" ok") == 1
    assert not (tmp_path / "home" / "panns_data").exists()  # the placeholder lived in a temporary HOME
    for mod in [m for m in sys.modules if m.startswith("panns_inference")]:
        del sys.modules[mod]
