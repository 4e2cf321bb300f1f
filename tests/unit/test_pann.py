"""PANN CNN14 from its released checkpoint layout, against the reference package panns_inference.

panns_inference reads ``~/panns_data/class_labels_indices.csv`` at import (downloading it if
absent): the test points HOME at a temporary folder holding a 527-row file of that format.
"""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest
import torch

from ausweep.models.catalog import ModelUnavailableError
from ausweep.models.pann import PANN_FILE, load_pann


@pytest.fixture
def reference(monkeypatch, tmp_path):
    home = tmp_path / "home"
    (home / "panns_data").mkdir(parents=True)
    rows = ["index,mid,display_name"] + [f'{i},/m/{i:05d},"class {i}"' for i in range(527)]
    (home / "panns_data" / "class_labels_indices.csv").write_text("\n".join(rows) + "\n")
    monkeypatch.setenv("HOME", str(home))
    for mod in [m for m in sys.modules if m.startswith("panns_inference")]:
        monkeypatch.delitem(sys.modules, mod)
    models = importlib.import_module("panns_inference.models")
    assert importlib.import_module("panns_inference.config").classes_num == 527
    yield models
    for mod in [m for m in sys.modules if m.startswith("panns_inference")]:
        del sys.modules[mod]


def _random_cnn14(models, seed=0):
    """The reference CNN14 as panns_inference's AudioTagging builds it, with random weights and
    random BatchNorm statistics (fresh ones are 0/1, which would hide a mixed-up buffer)."""
    torch.manual_seed(seed)
    net = models.Cnn14(sample_rate=32000, window_size=1024, hop_size=320, mel_bins=64, fmin=50, fmax=14000,
                       classes_num=527)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.1)
            m.num_batches_tracked.fill_(1000)
    return net.eval()


def _clips(lengths_s, seed=0):
    rng = np.random.default_rng(seed)
    return [(0.2 * np.sin(2 * np.pi * (300 + 200 * i) * np.arange(int(s * 32000)) / 32000)
             + 0.05 * rng.standard_normal(int(s * 32000))).astype(np.float32) for i, s in enumerate(lengths_s)]


def test_cnn14_matches_panns_inference(reference, tmp_path):
    net = _random_cnn14(reference)
    state = net.state_dict()
    path = tmp_path / PANN_FILE.filename
    torch.save({"model": state, "iteration": 0}, path)  # the released file's layout
    enc = load_pann(checkpoint=str(path))
    assert set(enc.net.state_dict()) == set(state)  # every key consumed, nothing left unset
    assert (enc.sample_rate, enc.dim) == (32000, 2048)
    clips = _clips([1.0, 1.37, 0.5])
    with torch.no_grad():  # what AudioTagging.inference returns as `embedding`, clip by clip
        expected = np.stack([net(torch.from_numpy(c)[None])["embedding"][0].numpy() for c in clips])
    got = enc.embed(clips)
    assert np.abs(got - expected).max() < 1e-4, np.abs(got - expected).max()
    # a clip's vector does not depend on what else is in its batch
    np.testing.assert_allclose(enc.embed(clips[1:2])[0], got[1], atol=1e-6)
    # the pre-fc1 pooling is what fc1 reads
    pooled = load_pann(checkpoint=str(path), pooling="pooled").embed(clips[:1])
    with torch.no_grad():
        np.testing.assert_allclose(torch.relu(net.fc1(torch.from_numpy(pooled))).numpy(), expected[:1], atol=1e-4)
    # shorter than the 32 frames five poolings need: padded, finite
    assert np.isfinite(enc.embed(_clips([0.1]))).all()


def test_checkpoint_layout_is_enforced(reference, tmp_path):
    state = _random_cnn14(reference).state_dict()
    bad = tmp_path / "bad.pth"
    torch.save({"model": {**state, "fc_extra.weight": torch.zeros(1)}}, bad)
    with pytest.raises(ValueError, match=r"1 keys not used .*fc_extra"):
        load_pann(checkpoint=str(bad))
    torch.save({"model": {k: v for k, v in state.items() if k != "conv_block3.bn1.running_var"}}, bad)
    with pytest.raises(ValueError, match=r"missing 1 keys .*conv_block3.bn1.running_var"):
        load_pann(checkpoint=str(bad))
    torch.save({"model": {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}}, bad)
    assert load_pann(checkpoint=str(bad)).dim == 2048  # BatchNorm's step counter is not needed


def test_missing_checkpoint_fails_at_once_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("AUSWEEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AUSWEEP_CHECKPOINTS", str(tmp_path / "ckpts"))
    with pytest.raises(ModelUnavailableError) as e:
        load_pann()
    msg = str(e.value)
    assert "\n" not in msg and PANN_FILE.url in msg and "Cnn14_mAP=0.431.pth" in msg
    assert str(tmp_path / "ckpts" / PANN_FILE.filename) in msg  # the env folder is looked in first
    # a file too small to be the release (an interrupted download) is refused, not loaded
    (tmp_path / "ckpts").mkdir()
    (tmp_path / "ckpts" / PANN_FILE.filename).write_bytes(b"x" * 10)
    with pytest.raises(ModelUnavailableError, match="partial download"):
        load_pann()
