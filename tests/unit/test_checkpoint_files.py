"""Where released checkpoint files are found, downloaded and read (ausweep.models.checkpoint_files)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ausweep.models.catalog import ModelUnavailableError
from ausweep.models.checkpoint_files import OfficialFile, load_state_dict, load_strict, locate


@pytest.fixture
def spec(tmp_path, monkeypatch):
    monkeypatch.setenv("AUSWEEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AUSWEEP_CHECKPOINTS", raising=False)
    src = tmp_path / "release" / "w.pt"
    src.parent.mkdir()
    src.write_bytes(b"0123456789" * 10)
    return OfficialFile("m", "w.pt", src.as_uri(), min_bytes=50)


def test_lookup_order(spec, tmp_path, monkeypatch):
    cached = tmp_path / "cache" / "checkpoints" / "w.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"c" * 60)
    assert locate(spec, download=False) == cached
    monkeypatch.setenv("AUSWEEP_CHECKPOINTS", str(tmp_path / "shared"))
    assert locate(spec, download=False) == cached  # the env folder lacks it: the cache copy
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "w.pt").write_bytes(b"s" * 60)
    assert locate(spec, download=False) == tmp_path / "shared" / "w.pt"  # the env folder first
    explicit = tmp_path / "mine.pt"
    explicit.write_bytes(b"x")
    assert locate(spec, explicit, download=False) == explicit  # given: used as is, no size check


def test_offline_message_and_online_download(spec, tmp_path):
    with pytest.raises(ModelUnavailableError) as e:
        locate(spec, download=False)
    assert str(e.value) == (
        f"audio model 'm' needs its checkpoint file w.pt, not found at {tmp_path / 'cache' / 'checkpoints' / 'w.pt'}: "
        f"download it from {spec.url} and put it there (or set AUSWEEP_CHECKPOINTS to its folder, or pass "
        "checkpoint=/path/to/w.pt)")
    got = locate(spec, download=True)  # a file:// URL stands in for the release server
    assert got == tmp_path / "cache" / "checkpoints" / "w.pt" and got.read_bytes() == b"0123456789" * 10
    assert [p.name for p in got.parent.iterdir()] == ["w.pt"]  # no temporary file left behind


def test_short_download_leaves_nothing(spec, tmp_path):
    short = OfficialFile("m", "w.pt", spec.url, min_bytes=10_000)
    with pytest.raises(ModelUnavailableError, match="fewer than the 10000 expected"):
        locate(short, download=True)
    assert list((tmp_path / "cache" / "checkpoints").iterdir()) == []
    broken = OfficialFile("m", "w.pt", (tmp_path / "nowhere.pt").as_uri())
    with pytest.raises(ModelUnavailableError, match="the download failed"):
        locate(broken, download=True)
    assert list((tmp_path / "cache" / "checkpoints").iterdir()) == []


def test_state_dict_beside_numpy_training_state(tmp_path):
    """Training scripts saved numpy counters and sampler state beside the weights; they unpickle
    (weights-only) and the state dict is taken from its key."""
    path = tmp_path / "c.pth"
    torch.save({"model": {"w": torch.ones(2)}, "iteration": np.int64(5),
                "sampler": {"queue": np.arange(3), "x": np.float32(1.5)}}, path)
    assert list(load_state_dict(path, "m", inner_key="model")) == ["w"]
    torch.save({"w": torch.ones(2)}, path)  # a bare state dict
    assert list(load_state_dict(path, "m", inner_key="model")) == ["w"]
    torch.save({"model": "not weights"}, path)
    with pytest.raises(ValueError, match="does not hold a state dict"):
        load_state_dict(path, "m", inner_key="model")
    path.write_bytes(b"<html>not found</html>")  # what a failed download often is
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        load_state_dict(path, "m")


def test_strict_loading_names_the_differences(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    state = {k: torch.randn_like(v.float()).to(v.dtype) for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match=r"shape mismatch \(\['0.weight: file \(3, 3\) vs model \(3, 2\)'\]\)"):
        load_strict(net, {**state, "0.weight": torch.zeros(3, 3)}, tmp_path / "f.pt", "m")
    load_strict(net, {k: v for k, v in state.items() if k != "1.num_batches_tracked"}, tmp_path / "f.pt", "m")
    torch.testing.assert_close(net[0].weight.data, state["0.weight"])
