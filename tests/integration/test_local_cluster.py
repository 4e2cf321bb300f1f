"""A real multi-node Ray cluster on this machine (``python -m ausweep.cluster up-local``).

One head and one worker node (1 CPU each) plus an MLflow server, started once for the module: a
tiny sweep submitted as a Ray job through the Jobs SDK lands in that server, and ``down-local``
stops every process the cluster started, and nothing else. The server asks for a login (MLflow's
basic-auth app, up-local's default): the sweep has it from its nodes, this process from the exports.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
import yaml

from ausweep.cluster.local import exports as cluster_exports
from ausweep.cluster.local import read_mlflow_password
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
        (d / "up-local.out").write_text(up.stdout + up.stderr)  # what a user saw, for the password check
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


def _login(monkeypatch, state: dict) -> None:
    """MLflow's client in this process logs in to the cluster's server, with MLflow's own variables."""
    for k, v in cluster_exports(state, password=True).items():
        if k.startswith("MLFLOW_TRACKING_"):
            monkeypatch.setenv(k, v)


def _wait_job(client, job_id: str, until: set[str], timeout: float) -> str:
    deadline = time.time() + timeout
    while (status := str(client.get_job_status(job_id).value)) not in until and time.time() < deadline:
        time.sleep(1)
    return status


def test_sweep_submitted_as_ray_job_is_tracked_in_the_cluster_mlflow(cluster, tmp_path, monkeypatch):
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
    # No MLflow login in the job's env_vars: the driver logs in with what its node has from up-local.
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

    _login(monkeypatch, state)
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


def test_cluster_mlflow_wants_a_login_and_nothing_keeps_the_password(cluster, monkeypatch):
    """The server refuses requests without the login; the exports, as a shell evaluates them, log
    MLflow's client in; and the password is in no file of the cluster but its own, nor in anything
    up-local printed, nor in the jobs' logs."""
    from mlflow.tracking import MlflowClient

    d, state, exports = cluster
    m = state["mlflow"]
    assert m["auth"] == "basic" and exports["MLFLOW_TRACKING_USERNAME"] == "admin"
    pw_file = Path(m["password_file"])
    assert pw_file.parent == d and pw_file.stat().st_mode & 0o777 == 0o600
    password = pw_file.read_text().strip()

    def status(login: tuple[str, str] | None) -> int:
        req = urllib.request.Request(exports["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/experiments/search?max_results=5")
        if login:
            req.add_header("Authorization", "Basic " + base64.b64encode(":".join(login).encode()).decode())
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    assert status(None) == 401
    assert status(("admin", "not-the-password-0")) == 401
    assert status(("admin", password)) == 200

    printed = (d / "up-local.out").read_text()
    lines = [line for line in printed.splitlines() if line.startswith("export ")]
    shell = subprocess.run(["bash", "-c", "\n".join(lines) + '\nprintf "%s\\n%s" "$MLFLOW_TRACKING_USERNAME" "$MLFLOW_TRACKING_PASSWORD"'],
                           capture_output=True, text=True, timeout=30, check=True)
    user, given = shell.stdout.split("\n")
    assert (user, given) == ("admin", password)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", given)
    mlflow = MlflowClient(tracking_uri=exports["MLFLOW_TRACKING_URI"])
    exp = mlflow.create_experiment(f"login-{time.time_ns()}")
    run = mlflow.create_run(exp)
    mlflow.log_metric(run.info.run_id, "x", 1.0)
    mlflow.set_terminated(run.info.run_id)
    got = mlflow.get_run(run.info.run_id)
    assert got.data.metrics == {"x": 1.0} and got.info.status == "FINISHED"

    assert password not in printed
    leaks = [str(f) for f in d.rglob("*") if f.is_file() and f != pw_file and password.encode() in f.read_bytes()]
    assert not leaks, f"the MLflow password is written in {leaks}"
    client = _job_client(exports)
    for job in client.list_jobs():
        assert password not in client.get_job_logs(job.submission_id), job.submission_id
        assert password not in json.dumps(job.runtime_env or {}), job.submission_id


@contextlib.contextmanager
def _logged_in_proxy(target: str, login: tuple[str, str]):
    """``http://127.0.0.1:PORT`` forwarding every request to ``target`` with the login added, as a
    browser does once its user has logged in (a headless Chromium cannot be given the login: a URL
    with credentials makes the page's own fetch() calls fail)."""
    auth = "Basic " + base64.b64encode(":".join(login).encode()).decode()

    class Forward(http.server.BaseHTTPRequestHandler):
        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
            skip = {"host", "connection", "accept-encoding", "authorization", "content-length"}
            req = urllib.request.Request(target + self.path, data=body, method=self.command,
                                         headers={k: v for k, v in self.headers.items() if k.lower() not in skip})
            req.add_header("Authorization", auth)
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    code, headers, data = r.status, r.headers, r.read()
            except urllib.error.HTTPError as e:
                code, headers, data = e.code, e.headers, e.read()
            self.send_response(code)
            for k, v in headers.items():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


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


@pytest.fixture
def browser_base(cluster):
    """Where the headless browser finds the cluster's MLflow, logged in."""
    _, state, exports = cluster
    with _logged_in_proxy(exports["MLFLOW_TRACKING_URI"], (state["mlflow"]["username"], read_mlflow_password(state))) as base:
        yield base


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not on PATH (`make install` installs it)")
def test_mlflow_ui_in_headless_chromium_shows_the_sweep_runs(cluster, tmp_path, monkeypatch, browser_base):
    """The MLflow UI (a JS app) of the cluster renders the sweep of the test above in a real browser."""
    from mlflow.tracking import MlflowClient

    _, state, exports = cluster
    _login(monkeypatch, state)
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
    url = url.replace(exports["MLFLOW_TRACKING_URI"], browser_base, 1)

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


def test_sweep_survives_losing_a_worker_node(cluster3, tmp_path, monkeypatch):
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

    _login(monkeypatch, state)
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
