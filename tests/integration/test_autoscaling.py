"""A sweep makes a real Ray autoscaler grow the cluster, and the idle nodes go afterwards.

The cluster is Ray's fake multi-node one (tests/autoscaling.py): the real autoscaler (v1; v2
cannot start from Ray 2.60's wheel, whose fake provider's base config is missing) starting worker
raylets on this machine. The head has no GPU; the trials ask for one, so every trial needs a worker
node the autoscaler must start, at most ``max_workers`` of them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.autoscaling import autoscaling_cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
REPO = Path(__file__).resolve().parents[2]
MAX_WORKERS = 2
# Small, so the test sees nodes go; not much smaller: on a loaded machine a node can take ~10 s from
# registering to its first trial, and a node idle for longer than this is removed even before its
# first trial lands there (Tune then retries that trial, FailureConfig.max_failures).
IDLE_S = 10.0


def _planted_sweep(tmp: Path, lrs: tuple[float, ...]) -> Path:
    """A probe sweep on planted per-class embeddings (no extraction, no model): one trial per lr,
    each asking for a (fake) GPU, which only the worker nodes have."""
    from tests.tiny import write_planted_embeddings

    text, audio = write_planted_embeddings(tmp, 30, 16, 12)
    spec = {
        "study": "probe",
        "overrides": {"data.source": "demo", "embeddings.text": str(text), "embeddings.audio": str(audio),
                      "probe": {"epochs": 30, "n_splits": 3, "shared_dim": 8, "procrustes": False,
                                "permutation_control": False}},
        "search_space": {"probe.lr": {"grid": list(lrs)}},
        "tune": {"metric": "val/acc@1", "mode": "max"},
        "resources": {"cpu": 1, "gpu": 1},
    }
    path = tmp / "autoscale.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_sweep_grows_the_cluster_up_to_max_workers_and_idle_nodes_go(tmp_path):
    from mlflow.tracking import MlflowClient

    from ausweep.files import cache_root

    sweep = _planted_sweep(tmp_path, lrs=(1e-2, 3e-3, 1e-3))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    workers = {"gpu_node": {"resources": {"CPU": 1, "GPU": 1, "object_store_memory": 80 * 1024 * 1024},
                            "max_workers": MAX_WORKERS}}
    with autoscaling_cluster({"CPU": 0}, workers, max_workers=MAX_WORKERS, idle_timeout_s=IDLE_S,
                             dir=tmp_path / "cluster", node_env={"PYTHONPATH": str(REPO)}) as cluster:
        # The driver runs where `ray up` leaves the autoscaler's config: ~/ray_bootstrap_config.yaml
        # on the head. HOME moves for that alone; the caches stay where they were.
        home = tmp_path / "home"
        home.mkdir()
        (home / "ray_bootstrap_config.yaml").write_text(yaml.safe_dump(cluster.config))
        env = {**os.environ, **cluster.env, "HOME": str(home), "AUSWEEP_CACHE": str(cache_root()),
               "HF_HOME": os.environ.get("HF_HOME") or str(Path("~/.cache/huggingface").expanduser()),
               "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(REPO), "AUSWEEP_MAX_CONCURRENT": ""}
        out = tmp_path / "seen.json"
        run = subprocess.run([sys.executable, str(REPO / "tests/integration/autoscale_driver.py"), str(sweep),
                              str(tmp_path / "runs"), str(out), str(cluster.dir / "autoscaling.json")],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=200)
        assert run.returncode == 0 and out.is_file(), run.stdout[-3000:] + run.stderr[-5000:] + cluster.log_tail()
        seen = json.loads(out.read_text())
    assert seen["rc"] == 0, run.stderr[-5000:]

    # Trials at once: ausweep sizes the cap from the launcher's config (Ray 2.60's autoscaler reports
    # its node groups nowhere else): the head fits no GPU trial, each of at most 2 GPU nodes fits one.
    cap = seen["capacity"]
    assert cap is not None and not cap["fixed"] and "ray_bootstrap_config.yaml" in cap["source"], cap
    assert cap["max_workers"] == MAX_WORKERS
    assert sorted(g[1] for g in cap["groups"]) == [1, MAX_WORKERS]
    assert seen["decision"]["max_concurrent"] == MAX_WORKERS, seen["decision"]

    # The autoscaler started worker nodes for the waiting trials, up to max_workers and never more.
    samples = seen["samples"]
    counts = [len(nodes) for _, nodes in samples]
    monitor = (tmp_path / "cluster" / "logs" / "monitor.log").read_text()
    removed = dict(re.findall(r"Terminating the node with id (\w+) and ip \w+\. \((\w+)\)", monitor))
    assert counts[0] == 0, "the cluster should start with the head alone"
    assert max(counts) == MAX_WORKERS, f"worker nodes alive, every 0.5 s: {counts}; removed (why): {removed}"
    assert all(res.get("GPU") == 1.0 for _, nodes in samples for res in nodes.values())
    started = {nid for _, nodes in samples for nid in nodes}
    # ...and removed them once idle: after the sweep, within the idle timeout and a few looks.
    t_end = seen["sweep_s"][1]
    assert counts[-1] == 0, f"worker nodes still up {samples[-1][0] - t_end:.0f} s after the sweep"
    assert started <= set(removed), (started, removed)
    assert {removed[n] for n in started} == {"idle"}, removed
    gone_at = samples[next(i for i in range(len(samples)) if samples[i][0] >= t_end and not samples[i][1])][0]
    assert gone_at - t_end < IDLE_S + 45, gone_at - t_end

    # Every trial finished, each with its MLflow child run under the sweep's parent.
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("autoscale")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert parents[0].data.tags["ausweep.max_concurrent_trials"] == str(MAX_WORKERS)
    assert len(children) == 3 and all(c.info.status == "FINISHED" for c in children)
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert {float(c.data.params["probe.lr"]) for c in children} == {1e-2, 3e-3, 1e-3}
    assert all("val/acc_at_1" in c.data.metrics for c in children)
    print(f"worker nodes started: {len(started)}; all gone "
          f"{gone_at - t_end:.1f} s after the sweep (idle timeout {IDLE_S:.0f} s)")
