"""A real multi-node Ray cluster on this machine (``python -m ausweep.cluster up-local``).

One head and one worker node (1 CPU each) plus an MLflow server, started once for the module: a
tiny sweep submitted as a Ray job through the Jobs SDK lands in that server, and ``down-local``
stops every process the cluster started, and nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
import yaml

from ausweep.track.store import ui_url
from tests.tiny import make_fsd50k, write_sweep

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "ausweep.cluster", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _exports(stdout: str) -> dict[str, str]:
    return dict(line.removeprefix("export ").split("=", 1) for line in stdout.splitlines() if line.startswith("export "))


@contextlib.contextmanager
def _local_cluster(d: Path, workers: int):
    """up-local with ``workers`` worker nodes (1 CPU each) in ``d``; always torn down."""
    try:
        up = _cli("up-local", "--workers", str(workers), "--cpus-per-node", "1", "--mlflow-port", "0", "--dir", str(d),
                  "--timeout", "150", timeout=200)
        assert up.returncode == 0, up.stderr[-4000:]
        yield d, json.loads((d / "cluster.json").read_text()), _exports(up.stdout)
    finally:
        if (d / "cluster.json").exists():  # a test failed before down-local, or up-local was cut off
            _cli("down-local", "--dir", str(d), timeout=120)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with _local_cluster(tmp_path_factory.mktemp("cluster"), workers=1) as c:
        yield c


def _job_client(exports: dict[str, str]):
    from ray.job_submission import JobSubmissionClient

    # The explicit header works whatever RAY_AUTH_MODE this test process has (a local ray.init()
    # elsewhere in the session turns token mode on, with a different token).
    token = Path(exports["RAY_AUTH_TOKEN_PATH"]).read_text().strip()
    return JobSubmissionClient(exports["RAY_ADDRESS"], headers={"Authorization": f"Bearer {token}"})


def _wait_job(client, job_id: str, until: set[str], timeout: float) -> str:
    deadline = time.time() + timeout
    while (status := str(client.get_job_status(job_id).value)) not in until and time.time() < deadline:
        time.sleep(1)
    return status


def test_sweep_submitted_as_ray_job_is_tracked_in_the_cluster_mlflow(cluster, tmp_path):
    from mlflow.tracking import MlflowClient

    d, state, exports = cluster
    assert exports["RAY_ADDRESS"] == state["ray"]["dashboard_url"]
    assert exports["RAY_AUTH_MODE"] == "token" and exports["MLFLOW_TRACKING_URI"] == state["mlflow"]["tracking_uri"]
    assert [r["name"] for r in state["processes"]] == ["mlflow", "ray-head", "ray-worker-1"]
    with pytest.raises(urllib.error.HTTPError) as no_token:  # the Jobs API wants the token
        urllib.request.urlopen(f"{exports['RAY_ADDRESS']}/api/jobs/", timeout=10)
    assert no_token.value.code == 401

    root = make_fsd50k(tmp_path / "FSD50K")
    sweep = write_sweep(tmp_path / "tiny.yaml", root, tmp_path / "cache", text_models=["tiny-bert"], lrs=(1e-2, 3e-3),
                        num_actors=0)
    client = _job_client(exports)
    # No --storage: the job's own working folder is deleted by Ray, so the sweep keeps its state where
    # up-local's nodes point AUSWEEP_STORAGE (the cluster folder), unless this process set one first.
    storage = Path(os.environ.get("AUSWEEP_STORAGE") or d / "runs")
    job_id = client.submit_job(
        entrypoint=f"python -m ausweep.sweep {sweep}",
        runtime_env={
            "working_dir": str(REPO),
            "excludes": [".git", "tests", "bench"],
            "env_vars": {"MLFLOW_TRACKING_URI": exports["MLFLOW_TRACKING_URI"], "AUSWEEP_CACHE": str(tmp_path / "cache"),
                         "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
        },
    )
    status = _wait_job(client, job_id, {"SUCCEEDED", "FAILED", "STOPPED"}, timeout=150)
    assert status == "SUCCEEDED", f"job {status}:\n" + client.get_job_logs(job_id)[-4000:]

    mlflow = MlflowClient(tracking_uri=exports["MLFLOW_TRACKING_URI"])  # over the server's REST API
    exp = mlflow.get_experiment_by_name("tiny")
    assert exp is not None
    runs = mlflow.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 2 and all(c.info.status == "FINISHED" for c in children)
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert {float(c.data.params["probe.lr"]) for c in children} == {1e-2, 3e-3}
    assert all("val/acc_at_1" in c.data.metrics and "test/acc_at_1" in c.data.metrics for c in children)
    states = list(storage.glob("tiny-*/ausweep_sweep.json"))
    assert len(states) == 1, f"no durable sweep state under {storage}: {sorted(storage.glob('*'))}"


def _chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp}", "--virtual-time-budget=15000"]
    return subprocess.run(["chromium", *flags, *args], capture_output=True, timeout=120, check=False)


def _page_text(url: str, tmp: Path) -> str:
    """The visible text of the page at ``url`` once its scripts ran, in one line."""
    dom = _chromium("--dump-dom", "--window-size=1920,1080", url, tmp=tmp)
    assert dom.returncode == 0, dom.stderr.decode(errors="replace")[-3000:]
    html = dom.stdout.decode(errors="replace")
    return " ".join(re.sub(r"<[^>]+>", " ", re.sub(r"(?s)<(script|style)\b.*?</\1>", " ", html)).split())


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not on PATH (`make install` installs it)")
def test_mlflow_ui_in_headless_chromium_shows_the_sweep_runs(cluster, tmp_path):
    """The MLflow UI (a JS app) of the cluster renders the sweep of the test above in a real browser."""
    from mlflow.tracking import MlflowClient

    _, _, exports = cluster
    mlflow = MlflowClient(tracking_uri=exports["MLFLOW_TRACKING_URI"])
    exp = mlflow.get_experiment_by_name("tiny")
    if exp is None:
        pytest.skip("no 'tiny' experiment: the sweep test above did not run")
    runs = mlflow.search_runs([exp.experiment_id], max_results=100)
    names = {r.info.run_name for r in runs}
    assert len(runs) == 3 and len(names) == 3, names  # the parent and its two children
    assert exp.tags.get("mlflow.experimentKind") == "custom_model_development", exp.tags
    # The experiment's page, without a tab, as ausweep links it (ui_url): MLflow 3.17 opens the GenAI
    # overview there unless the link asks for the model-training view. The runs table nests the
    # children under their parent (collapsed); the parent's row lists the trials' dataset.
    url = ui_url(exports["MLFLOW_TRACKING_URI"], exp.experiment_id)
    assert f"/#/experiments/{exp.experiment_id}?" in url

    text = _page_text(url, tmp=tmp_path / "profile-dom")
    assert text.startswith("Runs - Experiment") and "tiny" in text, text[:2000]  # not "Overview": GenAI's
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    data = next(i.dataset for i in mlflow.get_run(parent.info.run_id).inputs.dataset_inputs)
    assert parent.info.run_name in text and f"{data.name} ({data.digest})" in text, text[:3000]
    assert "Dataset" in text and "Source" in text and "3 matching runs" in text, text[:3000]

    # Sorted by name, the children come out from under their parent: every run is on the page.
    text = _page_text(url.replace("?", "/runs?") + "&orderByKey=attributes.run_name&orderByAsc=true",
                      tmp=tmp_path / "profile-sorted")
    missing = {n for n in names if n not in text}
    assert not missing, f"run names not rendered: {missing}; page text: {text[:3000]}"
    assert "python -m ausweep.sweep" in text, text[:3000]  # the Source column of the trials

    png = tmp_path / "mlflow.png"
    shot = _chromium(f"--screenshot={png}", "--window-size=1400,900", url, tmp=tmp_path / "profile-shot")
    assert shot.returncode == 0 and png.is_file(), shot.stderr.decode(errors="replace")[-3000:]
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    assert struct.unpack(">II", head[16:24]) == (1400, 900)
    assert png.stat().st_size > 20_000  # a rendered page, not a blank one


def _tree(state: dict) -> dict[int, tuple[float, str, str]]:
    """Processes in the sessions the recorded pids lead, and all their descendants: pid -> (start, name, cmd)."""
    sessions = {r["pid"] for r in state["processes"]}
    found: dict[int, tuple[float, str, str]] = {}
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) in sessions:
                for q in [p, *p.children(recursive=True)]:
                    found[q.pid] = (q.create_time(), q.name(), " ".join(q.cmdline()))
        except (OSError, psutil.Error):
            continue
    return found


def _running(pid: int, started: float) -> bool:
    try:
        p = psutil.Process(pid)
        return p.status() != psutil.STATUS_ZOMBIE and abs(p.create_time() - started) < 0.5
    except psutil.Error:
        return False


def test_down_local_stops_exactly_what_up_local_started(cluster, ray_session):
    d, state, exports = cluster
    again = _cli("up-local", "--dir", str(d), "--mlflow-port", "0", timeout=60)
    assert again.returncode == 1 and "already up" in again.stderr, again.stderr
    st = _cli("status-local", "--dir", str(d), timeout=60)
    assert st.returncode == 0 and "2/2 alive" in st.stdout, st.stdout + st.stderr

    # A job driver gets a session of its own (under its supervisor actor): down-local must find it too.
    client = _job_client(exports)
    job_id = client.submit_job(entrypoint="python -c 'import time; time.sleep(600)'")
    assert _wait_job(client, job_id, {"RUNNING", "FAILED", "STOPPED", "SUCCEEDED"}, timeout=60) == "RUNNING"
    deadline = time.time() + 30
    while not any("time.sleep(600)" in cmd for *_, cmd in _tree(state).values()) and time.time() < deadline:
        time.sleep(0.5)

    ours = _tree(state)
    names = [name for _, name, _ in ours.values()]
    assert names.count("gcs_server") == 1 and names.count("raylet") == 2, names
    assert any("time.sleep(600)" in cmd for *_, cmd in ours.values()), "the job's driver should be running"
    assert {r["pid"] for r in state["processes"]} <= set(ours)

    t0 = time.time()
    down = _cli("down-local", "--dir", str(d), timeout=120)
    assert down.returncode == 0, down.stderr
    still = {pid: cmd for pid, (started, _, cmd) in ours.items() if _running(pid, started)}
    assert not still, f"left running after down-local ({time.time() - t0:.0f} s): {still}"
    assert not _tree(state)
    temp = state["ray"]["temp_root"]
    assert not [p.pid for p in psutil.process_iter(["cmdline"]) if any(temp in a for a in p.info["cmdline"] or [])]
    assert not (d / "cluster.json").exists() and not (d / "auth_token").exists()
    assert (d / "mlflow.db").is_file(), "the MLflow store outlives the cluster"

    def one() -> int:
        return 1

    # Another Ray on the machine (this test session's own) is untouched: no `ray stop`.
    assert ray_session.get(ray_session.remote(one).remote(), timeout=60) == 1
    again = _cli("down-local", "--dir", str(d), timeout=60)
    assert again.returncode == 1 and "no local cluster" in again.stderr


# ----------------------------------------------------------------------------- losing a node mid-sweep


@pytest.fixture(scope="module")
def cluster3(tmp_path_factory):
    """Head + 2 workers (1 CPU each), for the node-loss test; stopped at the end of the module."""
    with _local_cluster(tmp_path_factory.mktemp("cluster3"), workers=2) as c:
        yield c


def _node_procs(leader: int) -> list[psutil.Process]:
    """The processes of the node whose `ray start` leads session ``leader``, with their descendants."""
    found: dict[int, psutil.Process] = {}
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == leader:
                for q in [p, *p.children(recursive=True)]:
                    found[q.pid] = q
        except (OSError, psutil.Error):
            continue
    return list(found.values())


def _cmd(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.Error:
        return ""


def test_sweep_survives_losing_a_worker_node(cluster3, tmp_path):
    """SIGKILL a worker node while one of its trials runs: the job still succeeds, and MLflow holds
    exactly one FINISHED child per trial (the retried trial reuses its run)."""
    from mlflow.tracking import MlflowClient

    _, state, exports = cluster3
    workers = {r["name"]: r["pid"] for r in state["processes"] if r["name"].startswith("ray-worker-")}
    assert len(workers) == 2

    root = make_fsd50k(tmp_path / "FSD50K")
    sweep = write_sweep(tmp_path / "killnode.yaml", root, tmp_path / "cache", text_models=["tiny-bert", "tiny-gpt2"],
                        lrs=(1e-2, 3e-3, 1e-3), num_actors=0, max_concurrent=2, epochs=5000)
    spec = yaml.safe_load(sweep.read_text())
    spec["tune"]["max_failures"] = 3
    sweep.write_text(yaml.safe_dump(spec, sort_keys=False))

    client = _job_client(exports)
    t0 = time.time()
    job_id = client.submit_job(
        entrypoint=f"python -m ausweep.sweep {sweep} --storage {tmp_path / 'runs'}",
        # The driver takes the head's only CPU, so every trial (1 CPU) runs on a worker node.
        entrypoint_num_cpus=1, entrypoint_resources={"node:__internal_head__": 0.01},
        runtime_env={
            "working_dir": str(REPO),
            "excludes": [".git", "tests", "bench"],
            "env_vars": {"MLFLOW_TRACKING_URI": exports["MLFLOW_TRACKING_URI"], "AUSWEEP_CACHE": str(tmp_path / "cache"),
                         "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
        },
    )
    # Wait for a trial process on a worker node that does not host the job's driver.
    victim = None
    deadline = time.time() + 180
    while victim is None and time.time() < deadline:
        status = str(client.get_job_status(job_id).value)
        assert status in ("PENDING", "RUNNING"), f"job {status} before a trial ran:\n" + client.get_job_logs(job_id)[-4000:]
        for name, pid in workers.items():
            cmds = [_cmd(p) for p in _node_procs(pid)]
            if any("ausweep.sweep" in c for c in cmds):
                continue  # the driver is here: losing it is another test
            if any("ImplicitFunc.train" in c for c in cmds):  # an actor is in a trial, not idle
                victim = name
                break
        time.sleep(0.5)
    assert victim is not None, "no trial ran on a worker node:\n" + client.get_job_logs(job_id)[-4000:]
    time.sleep(0.5)
    killed_at = time.time() - t0
    os.killpg(workers[victim], signal.SIGKILL)

    status = _wait_job(client, job_id, {"SUCCEEDED", "FAILED", "STOPPED"}, timeout=400)
    logs = client.get_job_logs(job_id)
    assert status == "SUCCEEDED", f"job {status} (killed {victim} at {killed_at:.0f} s):\n" + logs[-4000:]
    # The kill did hit a running trial, which Tune ran again (FailureConfig.max_failures).
    assert "Trial task failed for trial" in logs, logs[-4000:]
    assert "sweep finished: 6 trial(s) done, 0 failed" in logs, logs[-4000:]

    mlflow = MlflowClient(tracking_uri=exports["MLFLOW_TRACKING_URI"])
    exp = mlflow.get_experiment_by_name("killnode")
    assert exp is not None
    runs = mlflow.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED", [(r.info.run_name, r.info.status) for r in parents]
    summary = [(c.info.run_name, c.info.status, c.data.tags.get("ausweep.attempts")) for c in children]
    assert len(children) == 6 and all(c.info.status == "FINISHED" for c in children), summary
    assert len({c.data.tags["ausweep.trial_key"] for c in children}) == 6, summary
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert all("val/acc_at_1" in c.data.metrics and "test/acc_at_1" in c.data.metrics for c in children), summary
    print(f"killed {victim} at {killed_at:.0f} s; job done at {time.time() - t0:.0f} s; children {summary}")
