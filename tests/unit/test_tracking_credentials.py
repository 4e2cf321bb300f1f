"""A tracking URI with ``user:pass@``: redacted wherever it is shown or stored, and the credentials
reach a real MLflow server the way MLflow expects (MLFLOW_TRACKING_USERNAME / _PASSWORD)."""

from __future__ import annotations

import base64
import os
import pickle
import subprocess
import sys
import threading

import pytest
from mlflow.environment_variables import MLFLOW_TRACKING_PASSWORD, MLFLOW_TRACKING_USERNAME

from ausweep.runtime import worker_env
from ausweep.track.store import SweepTracker, redact_uri, split_credentials, unredact_uri

SECRET = "hunter2"


@pytest.mark.parametrize("uri, shown", [
    ("http://alice:hunter2@mlflow.internal:5000/prefix?x=1", "http://***@mlflow.internal:5000/prefix?x=1"),
    ("https://token@mlflow.internal", "https://***@mlflow.internal"),
    ("postgresql://alice:p%40ss@db:5432/mlflow", "postgresql://***@db:5432/mlflow"),
    ("http://mlflow.internal:5000", "http://mlflow.internal:5000"),
    ("sqlite:////tmp/a@b/mlruns.db", "sqlite:////tmp/a@b/mlruns.db"),  # '@' in a path is no userinfo
    ("databricks", "databricks"),
])
def test_redact_uri(uri, shown):
    assert redact_uri(uri) == shown
    assert redact_uri(shown) == shown


def test_split_credentials_uses_mlflows_names_and_decodes():
    uri, env = split_credentials("https://alice:p%40ss%3Aw@mlflow.internal/x")
    assert uri == "https://mlflow.internal/x"
    assert env == {MLFLOW_TRACKING_USERNAME.name: "alice", MLFLOW_TRACKING_PASSWORD.name: "p@ss:w"}
    # A database URI keeps its credentials: SQLAlchemy reads them from the URI.
    assert split_credentials("postgresql://a:b@db/m") == ("postgresql://a:b@db/m", {})


def test_unredact_takes_credentials_from_the_environment():
    full = f"http://alice:{SECRET}@h:1"
    assert unredact_uri(redact_uri(full), {"MLFLOW_TRACKING_URI": full}) == full
    assert unredact_uri("http://h:1", {"MLFLOW_TRACKING_URI": full}) == full  # a stored, stripped URI
    assert unredact_uri("http://h:1", {}) == "http://h:1"
    with pytest.raises(ValueError, match=r"http://\*\*\*@h:1"):
        unredact_uri(redact_uri(full), {"MLFLOW_TRACKING_URI": "http://other:1"})


def test_workers_get_the_uri_without_credentials():
    env = worker_env({"MLFLOW_TRACKING_URI": f"http://alice:{SECRET}@h:5000/p", "HF_HUB_OFFLINE": "1",
                      "MLFLOW_TRACKING_PASSWORD": SECRET})
    assert env == {"MLFLOW_TRACKING_URI": "http://h:5000/p", "HF_HUB_OFFLINE": "1"}


@pytest.fixture
def mlflow_server(tmp_path):
    """A real MLflow tracking server (MLflow's own Flask app over SQLite) in this process, recording
    each request's Authorization header and request line."""
    from mlflow.server import app
    from mlflow.server.handlers import initialize_backend_stores
    from werkzeug.serving import make_server

    initialize_backend_stores(f"sqlite:///{tmp_path / 'server.db'}", default_artifact_root=str(tmp_path / "art"))
    seen = []

    def recording(environ, start_response):
        seen.append((environ.get("HTTP_AUTHORIZATION"), environ.get("PATH_INFO", "") + environ.get("QUERY_STRING", "")))
        return app(environ, start_response)

    server = make_server("127.0.0.1", 0, recording, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_port}", seen
    server.shutdown()


def test_credentials_reach_the_server_and_nothing_stores_them(mlflow_server, monkeypatch):
    from mlflow.tracking import MlflowClient

    host, seen = mlflow_server
    for k in (MLFLOW_TRACKING_USERNAME.name, MLFLOW_TRACKING_PASSWORD.name):
        monkeypatch.delenv(k, raising=False)
    full = f"http://alice:{SECRET}@{host}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", full)
    tracker = SweepTracker("creds")
    parent = tracker.start_parent("run", {"base.x": 1}, {"ausweep.sweep": "creds"})
    tracker.child_for_trial("k1", "trial", {"x": 1}, {})

    # The client holds no credentials; MLflow's own variables carry them and every request authenticates.
    assert tracker.uri == tracker.shown_uri == f"http://{host}"
    assert MLFLOW_TRACKING_USERNAME.get() == "alice" and MLFLOW_TRACKING_PASSWORD.get() == SECRET
    basic = "Basic " + base64.b64encode(f"alice:{SECRET}".encode()).decode()
    assert seen and all(auth == basic for auth, _ in seen)
    assert not any(SECRET in line for _, line in seen)

    # Nothing MLflow keeps for the runs holds the password.
    client = MlflowClient(tracking_uri=f"http://{host}")
    for run in client.search_runs([tracker.experiment_id]):
        assert SECRET not in repr(run.data.tags) + repr(run.data.params)
    assert SECRET not in repr(client.get_experiment(tracker.experiment_id))

    # Tune pickles the tracker into the experiment state on storage: redacted; restored with the
    # credentials from the environment, and still authenticating.
    blob = pickle.dumps(tracker)
    assert SECRET.encode() not in blob
    monkeypatch.delenv(MLFLOW_TRACKING_PASSWORD.name)
    restored = pickle.loads(blob)
    assert restored.uri == f"http://{host}" and MLFLOW_TRACKING_PASSWORD.get() == SECRET
    n = len(seen)
    restored.set_tags(parent, {"ausweep.resumed": "1"})
    assert seen[n:] and all(auth == basic for auth, _ in seen[n:])


def test_cli_output_has_no_password(tmp_path):
    """An unreachable server with credentials: the sweep fails fast, before Ray starts, and says
    nothing of the password."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"http://alice:{SECRET}@127.0.0.1:9/",
           "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5", "HF_HUB_OFFLINE": "1"}
    env.pop("RAY_ADDRESS", None)
    p = subprocess.run([sys.executable, "-m", "ausweep.sweep", "probe", "--preset", "demo", "--storage", str(tmp_path / "runs")],
                       env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert p.returncode != 0
    out = p.stdout + p.stderr
    assert "127.0.0.1" in out and SECRET not in out and "alice" not in out, out[-3000:]
    assert "Started a local Ray instance" not in out and "ray:" not in out
    assert not any((tmp_path / "runs").glob("*/ausweep_sweep.json"))
