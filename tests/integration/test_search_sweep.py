"""Model-based search (tune.search: optuna) on a real local Ray and MLflow: a driver killed mid-sweep
resumes the same search, not a fresh one."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]
REPO = Path(__file__).resolve().parents[2]
N_SAMPLES = 8
EPOCHS = 1500


def _planted_sweep(tmp: Path, epochs: int) -> Path:
    """A probe sweep on planted per-class embeddings (audio = text @ W + noise), searched by Optuna's
    TPE one trial at a time, with a conditional key (weight decay only with standardised features)."""
    from tests.tiny import write_planted_embeddings

    text, audio = write_planted_embeddings(tmp, 60, 32, 24)
    spec = {
        "study": "probe",
        "overrides": {"data.source": "demo", "embeddings.text": str(text), "embeddings.audio": str(audio),
                      "probe": {"epochs": epochs, "n_splits": 3, "procrustes": False, "permutation_control": False}},
        "search_space": {
            "probe.lr": {"loguniform": [1e-4, 1e-1]},
            "probe.shared_dim": {"choice": [4, 8, 16]},
            "probe.standardize": {"choice": [True, False]},
            "probe.weight_decay": {"loguniform": [1e-6, 1e-2], "when": {"probe.standardize": [True]}},
        },
        "tune": {"metric": "val/acc@1", "mode": "max", "num_samples": N_SAMPLES, "max_concurrent_trials": 1,
                 "search": {"name": "optuna", "seed": 7, "max_concurrent": 1, "n_startup_trials": 3}},
        "resources": {"cpu": 1, "gpu": 0},
    }
    path = tmp / "tpe.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _study(run_dir: Path):
    """The Optuna study Tune saved with the searcher, as the last driver left it: the state files are
    named by driver session start (Tune touches the older ones too, so their times do not tell)."""
    newest = max(run_dir.glob("searcher-state-*.pkl"), key=lambda p: p.name)
    with newest.open("rb") as f:
        return pickle.load(f)["_ot_study"]


def test_optuna_search_resumes_its_own_history_after_driver_kill(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": uri, "HF_HUB_OFFLINE": "1"}
    args = [sys.executable, "-m", "ausweep.sweep", str(_planted_sweep(tmp_path, epochs=EPOCHS)), "--storage", str(tmp_path / "runs")]
    records = lambda: {p.stem for p in (tmp_path / "runs").glob("tpe-*/completed/*.json")}  # noqa: E731
    with open(tmp_path / "driver.log", "w") as log:  # a file, not a pipe: an unread pipe would block the driver
        proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None and len(records()) < 3:
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray processes it started
        proc.wait()
    done_before = records()  # the driver, the only writer of these records, is dead: this is final
    tail = (tmp_path / "driver.log").read_text()[-3000:]
    assert 3 <= len(done_before) < N_SAMPLES, f"killed after {len(done_before)} trials: " + tail
    [run_dir] = list((tmp_path / "runs").glob("tpe-*"))

    out = subprocess.run([*args, "--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tpe")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].data.tags["ausweep.searcher"] == "optuna"
    keys = [c.data.tags["ausweep.trial_key"] for c in children]
    assert len(keys) == N_SAMPLES and len(set(keys)) == N_SAMPLES, "num_samples trials in all, not a second search"
    assert done_before <= set(keys) and len(records()) == N_SAMPLES
    for c in children:
        # A trial that finished just before the kill (after Tune last saved its state) restarts and
        # replays its record: no second training, so its loss curve holds each epoch once.
        assert len(client.get_metric_history(c.info.run_id, "train_loss")) == EPOCHS

    # The resumed searcher holds the whole history: every trial's params and result, the pre-kill ones
    # included (a fresh search would know only the trials run after the resume).
    study = _study(run_dir)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == N_SAMPLES
    told = sorted((round(t.params["probe/lr"], 12), t.value) for t in complete)
    logged = sorted((round(float(c.data.params["probe.lr"]), 12), c.data.metrics["val/acc_at_1"]) for c in children)
    assert [lr for lr, _ in told] == pytest.approx([lr for lr, _ in logged], rel=1e-6)
    assert [v for _, v in told] == pytest.approx([v for _, v in logged])
    # the conditional key is searched exactly where its condition holds
    for t in complete:
        assert ("probe/weight_decay" in t.params) == t.params["probe/standardize"]


def test_multi_objective_lora_rank_logs_the_pareto_front(tmp_path, monkeypatch, ray_session):
    """Optuna's multi-objective TPE on the tiny AudioBERT demo: dev accuracy up, trainable parameters
    down; the parent run holds the Pareto front of the trials as they were logged."""
    import csv

    from mlflow.tracking import MlflowClient

    from ausweep.sweep.cli import main
    from ausweep.sweep.search import pareto_mask

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("AUSWEEP_CACHE", str(tmp_path / "cache"))
    spec = {
        "study": "audiobert",
        "config": str(REPO / "configs" / "audiobert" / "demo.yaml"),
        "overrides": {"max_items": 24, "retrieval.extract.cache_dir": str(tmp_path / "cache" / "embeddings")},
        "search_space": {"adapter.lora_r": {"choice": [1, 4, 16]}, "train.lr": {"loguniform": [1e-4, 1e-2]}},
        "tune": {"metric": "dev/acc", "mode": "max", "num_samples": 4,
                 "search": {"name": "optuna", "seed": 0, "n_startup_trials": 2, "objectives": [
                     {"metric": "dev/acc", "mode": "max"}, {"metric": "trainable_params", "mode": "min", "cost": True}]}},
        "resources": {"cpu": 1, "gpu": 0},
    }
    path = tmp_path / "pareto.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    assert main([str(path), "--storage", str(tmp_path / "runs")]) == 0

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("pareto")
    runs = client.search_runs([exp.experiment_id])
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 4
    assert {"pareto.csv", "pareto.png"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
    table = list(csv.DictReader(open(client.download_artifacts(parent.info.run_id, "pareto.csv", str(tmp_path)))))
    logged = sorted((int(c.data.params["adapter.lora_r"]), c.data.metrics["dev/acc"], c.data.metrics["trainable_params"])
                    for c in children)
    written = sorted((int(r["adapter.lora_r"]), float(r["dev/acc"]), float(r["trainable_params"])) for r in table)
    assert len(written) == len(logged) and all(w == pytest.approx(g) for w, g in zip(written, logged))  # approx takes no nesting
    front = pareto_mask([(a, n) for _, a, n in written], ["max", "min"])
    assert [r["on_front"] == "True" for r in sorted(table, key=lambda r: (int(r["adapter.lora_r"]), float(r["dev/acc"]),
                                                                       float(r["trainable_params"])))] == front
    # a larger LoRA rank costs more parameters: the cheapest trial is always on the front
    assert front[[n for _, _, n in written].index(min(n for _, _, n in written))]
    [run_dir] = list((tmp_path / "runs").glob("pareto-*"))
    study = _study(run_dir)
    assert len(study.directions) == 2 and sum(t.state.name == "COMPLETE" for t in study.trials) == 4
