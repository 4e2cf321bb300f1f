"""PANN CNN14 from its released checkpoint layout, against the reference package panns_inference.

panns_inference reads ``~/panns_data/class_labels_indices.csv`` at import (downloading it if
absent): :func:`ausweep.models.reference_equivalence.pann_reference` points HOME at a temporary folder
holding a 527-row file of that format. The same module holds the comparison the GPU script runs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ausweep.models.catalog import ModelUnavailableError
from ausweep.models.pann import PANN_FILE, load_pann
from ausweep.models.reference_equivalence import pann_equivalence, pann_reference, random_cnn14


@pytest.fixture
def reference():
    """``panns_inference.models`` as :mod:`ausweep.models.reference_equivalence` imports it (its label
    CSV from a temporary HOME; librosa / matplotlib stood in for only where they do not import)."""
    with pann_reference() as (models, _):
        yield models


def _random_cnn14(models, seed=0):
    return random_cnn14(models, seed)


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


def test_shared_check_is_the_gpu_scripts():
    """bench/gpu/run.py's part 4 runs this very check; here with the packages this machine has."""
    res = pann_equivalence(tiny=True)
    assert res["ok"] and res["diffs"]["embedding"] < 1e-4 and res["scale"] > 0.3, res
    assert res["checks"]["every_key_consumed"]
    assert res["packages"]["panns_inference"].startswith("real") and "panns_inference label CSV" in res["stand_ins"]
    for name in ("torchlibrosa", "librosa", "matplotlib"):
        assert res["packages"][name].startswith("real") or name in res["stand_ins"], res["packages"]


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
