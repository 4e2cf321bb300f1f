"""Population-based training (tune.scheduler: {name: pbt}) on the tiny AudioBERT demo, on a real local
Ray and MLflow: the worse trial takes over the better one's checkpoint with a mutated learning rate,
and its next epoch is the one that the donor's weights, optimiser and schedule give under the new
config (replayed here from the donor's checkpoint, and not from the trial's own)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
REPO = Path(__file__).resolve().parents[2]
EPOCHS, INTERVAL = 3, 2  # one perturbation (and checkpoint) at epoch 2's end; the final row is never one


def _pbt_sweep(tmp: Path) -> Path:
    spec = {
        "study": "audiobert",
        "config": str(REPO / "configs" / "audiobert" / "demo.yaml"),
        "overrides": {"max_items": 24, "train.epochs": EPOCHS, "retrieval.extract.cache_dir": str(tmp / "cache" / "embeddings")},
        "search_space": {"train.lr": {"loguniform": [1e-4, 1e-2]}},
        "tune": {"metric": "dev/acc", "mode": "max", "num_samples": 2, "seed": 0,
                 # synch: both trials perturb together, so the clone goes on at exactly the epoch it reached
                 "scheduler": {"name": "pbt", "perturbation_interval": INTERVAL, "synch": True, "resample_probability": 0.0,
                               "hyperparam_mutations": {"train.lr": {"loguniform": [1e-4, 1e-2]},
                                                        "train.weight_decay": [0.0, 0.01, 0.1]}}},
        "resources": {"cpu": 1, "gpu": 0},
    }
    path = tmp / "pbt.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _checkpoints(run_dir: Path) -> dict[tuple[str, int], Path]:
    """(trial id, iteration) -> its Tune checkpoint folder, from the meta file the trainable writes in each."""
    from ausweep.sweep.runner import CHECKPOINT_META

    out = {}
    for meta in run_dir.glob(f"*/checkpoint_*/{CHECKPOINT_META}"):
        m = json.loads(meta.read_text())
        out[(m["trial_id"], m["iteration"])] = meta.parent
    return out


def _first_epoch_from(folder: Path, config: dict) -> dict:
    """The first epoch row that AudioBERT trains from the checkpoint in ``folder`` under ``config``."""
    import torch

    from ausweep.audiobert.study import AudioBertExperiment, trial
    from ausweep.config import from_dict

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a one-CPU Ray worker: the same summation order
    try:
        rows = trial(from_dict(AudioBertExperiment, config, where="test"), restore=folder)
        try:
            return next(rows)
        finally:
            rows.close()
    finally:
        torch.set_num_threads(threads)


def test_pbt_clones_the_better_trial_and_goes_on_from_its_weights(tmp_path, monkeypatch, ray_session):
    from mlflow.tracking import MlflowClient

    from ausweep.sweep.cli import main

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("AUSWEEP_CACHE", str(tmp_path / "cache"))
    assert main([str(_pbt_sweep(tmp_path)), "--storage", str(tmp_path / "runs")]) == 0
    [run_dir] = list((tmp_path / "runs").glob("pbt-*"))

    # Tune's own log of exploits: [target tag, clone tag, target iteration (as of its previous result),
    # clone iteration, old config, new config]: one exploit, of the donor's checkpoint at the interval
    [exploit] = [json.loads(line) for line in (run_dir / "pbt_global.txt").read_text().splitlines()]
    # Ray logs each trial's last_result; the trial whose result triggered the (synch) exploit has not
    # had it recorded yet, so one of the two iterations reads one behind. Which one depends on which
    # trial reached the interval last: the checkpoint actually taken is checked below (cloned_from, replay).
    assert sorted(exploit[2:4]) in ([INTERVAL - 1, INTERVAL], [INTERVAL, INTERVAL]), exploit[:4]
    new_config = exploit[5]

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("pbt").experiment_id])
    children = {r.data.tags["ausweep.trial_id"]: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert len(children) == 2 and all(c.info.status == "FINISHED" for c in children.values())
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.data.tags["ausweep.scheduler"] == "pbt"
    assert "pbt/pbt_global.txt" in {a.path for a in client.list_artifacts(parent.info.run_id, "pbt")}
    [clone] = [c for c in children.values() if "ausweep.pbt.cloned_from" in c.data.tags]
    donor_id, at = clone.data.tags["ausweep.pbt.cloned_from"].split("@")
    clone_id = clone.data.tags["ausweep.trial_id"]
    assert donor_id in children and donor_id != clone_id and int(at) == INTERVAL

    history = {k: [(m.step, m.value) for m in client.get_metric_history(clone.info.run_id, k)]
               for k in ("epoch", "train_loss", "pbt/train.lr", "pbt/train.weight_decay")}
    # one curve, continuous across the exploit: epochs 0..2 at steps 0..2, each once
    assert sorted(history["epoch"]) == [(s, float(s)) for s in range(EPOCHS)]
    assert sorted(s for s, _ in history["train_loss"]) == list(range(EPOCHS))
    # the schedule of the mutated values: its own learning rate, then the donor's perturbed by 0.8 or 1.2
    lr = dict(history["pbt/train.lr"])
    donor_lr = float(children[donor_id].data.params["train.lr"])
    assert lr[0] == lr[1] == pytest.approx(float(clone.data.params["train.lr"]))
    assert lr[2] == pytest.approx(new_config["train"]["lr"])
    assert min(abs(lr[2] / donor_lr - f) for f in (0.8, 1.2)) < 1e-9
    assert dict(history["pbt/train.weight_decay"])[2] == new_config["train"]["weight_decay"]

    # its epoch 2 is what the donor's checkpoint trains under the new config (weights, optimiser and
    # schedule carried over), and not what its own checkpoint at the same epoch would give
    checkpoints = _checkpoints(run_dir)
    assert {(donor_id, INTERVAL), (clone_id, INTERVAL)} <= set(checkpoints)
    logged = dict(history["train_loss"])[INTERVAL]
    replay = _first_epoch_from(checkpoints[(donor_id, INTERVAL)], new_config)
    assert replay["epoch"] == INTERVAL and replay["train_loss"] == pytest.approx(logged, rel=1e-5)
    own = _first_epoch_from(checkpoints[(clone_id, INTERVAL)], new_config)
    assert own["train_loss"] != pytest.approx(logged, rel=1e-5)

    # the clone's final result: held-out scores after training, its best epoch chosen on dev over its lineage
    m = clone.data.metrics
    assert {"dev/acc", "test/acc", "best_epoch"} <= set(m) and 0 <= m["best_epoch"] < EPOCHS


def test_a_pbt_sweep_survives_a_driver_kill_and_resume(tmp_path):
    """Kill the driver (and the Ray it started) once the population has saved checkpoints, then
    `--resume`: the same two trials finish, each with its MLflow child and a complete epoch curve, under
    the one parent run (no second population)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from mlflow.tracking import MlflowClient

    epochs = 6
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = yaml.safe_load(_pbt_sweep(tmp_path).read_text())
    spec["overrides"]["train.epochs"] = epochs
    path = tmp_path / "pbt.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": uri, "HF_HUB_OFFLINE": "1",
           "AUSWEEP_CACHE": str(tmp_path / "cache")}
    args = [sys.executable, "-m", "ausweep.sweep", str(path), "--storage", str(tmp_path / "runs")]
    with open(tmp_path / "driver.log", "w") as log:  # a file: an unread pipe would block the driver
        proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None and not _checkpoints_anywhere(tmp_path / "runs"):
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray processes it started
        proc.wait()
    tail = (tmp_path / "driver.log").read_text()[-3000:]
    assert _checkpoints_anywhere(tmp_path / "runs"), "killed before any checkpoint: " + tail
    assert proc.returncode != 0, "the sweep finished before it could be killed: " + tail

    out = subprocess.run([*args, "--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("pbt").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 2 and all(c.info.status == "FINISHED" for c in children)
    for c in children:
        steps = {m.step for m in client.get_metric_history(c.info.run_id, "epoch")}
        assert steps == set(range(epochs)), steps  # every epoch trained and logged, none missing
        assert {"dev/acc", "test/acc"} <= set(c.data.metrics)  # held-out scores after the last epoch


def _checkpoints_anywhere(runs: Path) -> bool:
    from ausweep.sweep.runner import CHECKPOINT_META

    return any(runs.glob(f"pbt-*/*/checkpoint_*/{CHECKPOINT_META}"))
