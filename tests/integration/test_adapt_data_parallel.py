"""Data-parallel AudioBERT-style training through accelerate: two CPU processes (torchrun, gloo)
end with the same weights, and those equal one process training on the whole batch (every row
carries one labelled token, so the mean of the two half-batch losses is the full-batch loss)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.integration
SCRIPT = Path(__file__).with_name("dp_fit_script.py")
REPO = Path(__file__).resolve().parents[2]


def _run(out: Path, nproc: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    if nproc == 1:
        env.pop("WORLD_SIZE", None)
        cmd = [sys.executable, str(SCRIPT), str(out)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", str(SCRIPT), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_two_processes_match_one_process_on_the_whole_batch(tmp_path):
    _run(tmp_path / "single", 1)
    _run(tmp_path / "dp", 2)
    single = torch.load(tmp_path / "single.rank0.pt")
    r0, r1 = torch.load(tmp_path / "dp.rank0.pt"), torch.load(tmp_path / "dp.rank1.pt")
    assert r0["state"].keys() == single["state"].keys() and any("lora" in k for k in single["state"])
    for k, v in single["state"].items():
        assert torch.equal(r0["state"][k], r1["state"][k]), k  # DDP keeps the ranks in lock-step
        torch.testing.assert_close(r0["state"][k], v, rtol=1e-4, atol=1e-5)
    # each rank trained on its half of every batch (its own losses), and the halves make the whole
    assert r0["losses"] != r1["losses"]
    mean = [(a + b) / 2 for a, b in zip(r0["losses"], r1["losses"])]
    assert mean == pytest.approx(single["losses"], rel=1e-4)
    # and training did something: the LoRA B matrices start at zero
    assert any(v.abs().sum() > 0 for k, v in single["state"].items() if "lora_B" in k)
    assert single["losses"][-1] < single["losses"][0]


def test_audiobert_cli_runs_data_parallel_on_two_processes(tmp_path):
    """The real AudioBERT pipeline (span detector, tiny CLAP retrieval, span-gated LoRA) under
    torchrun: rows without a span take the frozen path, and DDP must still sync every step."""
    import json

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "AUSWEEP_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "ausweep.audiobert",
           str(REPO / "configs" / "audiobert" / "demo.yaml"), "max_items=16", "train.epochs=2"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads(proc.stdout[proc.stdout.index("{"):])  # printed by rank 0 only
    assert proc.stdout.count('"trainable_params"') == 1
    assert 0.0 <= metrics["test/acc"] <= 1.0 and metrics["trainable_params"] > 0


def test_audiobert_cli_bad_override_is_one_clear_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "ausweep.audiobert", str(REPO / "configs" / "audiobert" / "demo.yaml"),
                           "adapter.lora_rank=8"], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2
    assert "lora_rank" in proc.stderr and "demo.yaml" in proc.stderr and "Traceback" not in proc.stderr
