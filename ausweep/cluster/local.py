"""A local multi-node Ray cluster plus an MLflow tracking server, started and stopped as one unit.

``up()`` starts a Ray head (with the dashboard, which serves the Jobs API, on 127.0.0.1), N Ray
worker nodes and ``mlflow server`` on 127.0.0.1, waits until Ray reports N+1 alive nodes and MLflow
answers, and records everything in ``DIR/cluster.json``. ``down()`` stops exactly those processes.

Several ``ray start`` calls on one host need care:

* Each node is ``ray start --block`` in a session of its own (``start_new_session``), so a node is
  one live pid and one process group, and the state file names them. ``down()`` never runs
  ``ray stop``, which kills every Ray process on the machine, other users' included.
* Every port a node opens is given explicitly from the free ones: Ray's fixed defaults (the
  dashboard agent on 52365, the client server on 10001, the dashboard on 8265) collide with any
  other Ray on the machine and with each other across nodes.
* Each node has its own ``--temp-dir``, so the nodes' sockets and logs never mix and the cluster
  never becomes the "current cluster" that another user's ``ray.init()`` or ``ray status`` finds.
  Their files (logs included) live in DIR/ray; Ray puts Unix sockets there and Linux caps socket
  paths at 107 bytes, so when DIR is deep Ray is handed a short /tmp symlink to DIR/ray instead.
* Ray advertises the host's IP even when told ``--node-ip-address 127.0.0.1`` (it resolves
  loopback to a reachable address) and binds its gRPC ports on all interfaces. The dashboard and
  MLflow are bound to 127.0.0.1 only, and the Ray side is protected by token authentication.

Token authentication: Ray 2.60 turns it on for a ``ray start --head`` whenever ``~/.ray/auth_token``
exists and ``RAY_AUTH_MODE`` is unset, so whether a cluster wants a token depends on the machine's
history. ``up()`` decides instead: with ``auth="token"`` (the default) it writes a fresh token to
``DIR/auth_token`` (mode 600) and starts every node with ``RAY_AUTH_MODE=token`` and
``RAY_AUTH_TOKEN_PATH`` pointing at it. Job drivers and Tune workers inherit both from the raylet; a
client outside the cluster exports the same two variables (``ray job submit`` then sends the
token) or passes ``headers={"Authorization": "Bearer <token>"}`` to ``JobSubmissionClient``.

MLflow login: loopback is not a boundary on a shared machine (any local user can reach
127.0.0.1:PORT), so by default the server runs MLflow's own basic-auth app (``mlflow server
--app-name basic-auth``) over SQLite users in ``DIR/mlflow_auth.db``. Its admin password is made
at the first ``up()`` in a folder, into ``DIR/mlflow_password`` (mode 600), and kept with the store
across ``down()`` / ``up()``: the users' database keeps the admin's hash, so the two go together.
The server gets the password once, for bootstrapping the admin, in its own environment; every Ray
node gets ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``, which is how MLflow's client
authenticates, so a submitted sweep's driver and trials log without any flag. The password is never
written into ``cluster.json``, printed, or logged: the printed exports read it from its file.
``auth_mlflow=False`` (``--no-mlflow-auth``) runs the server open, as before.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import fcntl
import importlib.metadata
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ausweep.config import ConfigError, option
from ausweep.track.store import PASSWORD_ENV, USERNAME_ENV

STATE_FILE = "cluster.json"
TOKEN_FILE = "auth_token"
# MLflow's basic-auth app: its users (kept with the store), its settings, and the admin's password.
MLFLOW_AUTH_DB, MLFLOW_AUTH_INI, MLFLOW_PASSWORD_FILE = "mlflow_auth.db", "mlflow_auth.ini", "mlflow_password"
MLFLOW_ADMIN = "admin"
# The auth app checks the password (PBKDF2) on every request unless told to remember a good login:
# without it a loaded 2-core machine served about 1 request/s instead of 12. One server process, so
# a password changed through MLflow's API takes effect at once all the same.
MLFLOW_AUTH_CACHE_S = 60
# A request the auth app must refuse without a login (and answer with one).
_MLFLOW_PROBE = "/api/2.0/mlflow/experiments/search?max_results=1"
# What the caller's environment must not hand the cluster's processes: another server's login, or
# settings of another auth app.
_MLFLOW_SECRET_ENV = (USERNAME_ENV, PASSWORD_ENV, "MLFLOW_TRACKING_TOKEN", "MLFLOW_FLASK_SERVER_SECRET_KEY")
LOCK_FILE = ".lock"
LOOPBACK = "127.0.0.1"
# Ray's AF_UNIX sockets live at <temp-dir>/session_<date>_<pid>/sockets/plasma_store; Linux allows
# 107 bytes, the session part takes about 64, so the temp dir may take about 40.
_TEMP_DIR_MAX = 40
# Ports each `ray start` opens besides the head's own (GCS, dashboard, client server).
_NODE_PORTS = ("node_manager", "object_manager", "agent_listen", "agent_grpc", "runtime_env_agent", "metrics_export")
# What a `ray start --block` does on SIGTERM: by default it first asks the GCS to drain the node
# and waits up to 30 s for that; nothing here serves traffic, so stop at once.
_RAY_ENV = {"RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0", "RAY_USAGE_STATS_ENABLED": "0"}
# Ray process arguments that name their node's temp dir: how a stray Ray process of this cluster
# is recognised even after its parent is gone.
_TEMP_ARGS = ("--temp-dir=", "--temp_dir=", "--session-dir=", "--session_dir=", "--log_dir=", "--log-dir=")


class ClusterError(RuntimeError):
    """The local cluster could not be started, found or stopped; the message says what and why."""


@dataclasses.dataclass(frozen=True)
class LocalClusterConfig:
    """What ``up-local`` starts. Ports set to 0 are picked from the free ones."""

    dir: str = option("ausweep_cluster", help="folder for the state file, logs, the MLflow store and the token")
    workers: int = option(1, help="Ray worker nodes besides the head")
    cpus_per_node: int = option(1, help="CPUs each node (the head included) offers to Ray")
    object_store_mb: int = option(256, help="object store per node, in MiB (Ray's default is 30% of RAM per node)")
    ray_port: int = option(0, help="GCS port of the head (0: a free one)")
    dashboard_port: int = option(0, help="dashboard / Jobs API port on 127.0.0.1 (0: a free one)")
    mlflow_port: int = option(5000, help="MLflow tracking server port on 127.0.0.1 (0: a free one)")
    auth: str = option("token", help="Ray authentication: 'token' (a fresh token in DIR/auth_token) or 'disabled'")
    auth_mlflow: bool = option(True, help="MLflow login (its basic-auth app): user 'admin', password generated into "
                                          "DIR/mlflow_password (mode 600); off: the server is open to every local user")
    timeout_s: float = option(180.0, help="how long to wait for every node and MLflow to come up")

    def __post_init__(self) -> None:
        where = "up-local"
        if self.workers < 0:
            raise ConfigError(where, "workers", f"must be >= 0, got {self.workers}")
        if self.cpus_per_node < 1:
            raise ConfigError(where, "cpus_per_node", f"must be >= 1, got {self.cpus_per_node}")
        if self.object_store_mb < 80:
            raise ConfigError(where, "object_store_mb", f"Ray needs at least 80 MiB, got {self.object_store_mb}")
        for name in ("ray_port", "dashboard_port", "mlflow_port"):
            port = getattr(self, name)
            if not (port == 0 or 1024 <= port <= 65535):
                raise ConfigError(where, name, f"must be 0 (a free port) or 1024..65535, got {port}")
        if self.auth not in ("token", "disabled"):
            raise ConfigError(where, "auth", f"must be 'token' or 'disabled', got {self.auth!r}")
        if self.timeout_s <= 0:
            raise ConfigError(where, "timeout_s", f"must be > 0, got {self.timeout_s}")


# ----------------------------------------------------------------------------- state


def state_path(dir: str | os.PathLike) -> Path:
    return Path(dir).expanduser().resolve() / STATE_FILE


def read_state(dir: str | os.PathLike) -> dict[str, Any]:
    path = state_path(dir)
    if not path.is_file():
        raise ClusterError(f"no local cluster in {path.parent} (no {STATE_FILE}); start one with "
                           f"`python -m ausweep.cluster up-local --dir {shlex.quote(str(path.parent))}`")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ClusterError(f"{path}: not a cluster state file ({e})") from e


def _write_state(state: dict[str, Any]) -> None:
    path = Path(state["dir"]) / STATE_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(path)


@contextlib.contextmanager
def _locked(dir: Path) -> Iterator[None]:
    """One up/down at a time per folder."""
    dir.mkdir(parents=True, exist_ok=True)
    with open(dir / LOCK_FILE, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ClusterError(f"another up-local / down-local is running on {dir}") from None
        yield


def exports(state: dict[str, Any], password: bool = False) -> dict[str, str]:
    """Environment for a client of the cluster: the Jobs API address, Ray auth, the MLflow server
    and its login; the MLflow password itself only with ``password`` (read from its file)."""
    env = {"RAY_ADDRESS": state["ray"]["dashboard_url"], "RAY_AUTH_MODE": state["ray"]["auth"]}
    if state["ray"]["auth"] == "token":
        env["RAY_AUTH_TOKEN_PATH"] = state["ray"]["token_file"]
    env["MLFLOW_TRACKING_URI"] = state["mlflow"]["tracking_uri"]
    if _mlflow_login(state):
        env[USERNAME_ENV] = state["mlflow"]["username"]
        if password:
            env[PASSWORD_ENV] = read_mlflow_password(state)
    return env


def format_exports(state: dict[str, Any]) -> str:
    """Shell exports of :func:`exports`; the MLflow password is read from its file when the shell
    evaluates them, so it is never printed."""
    lines = [f"export {k}={shlex.quote(v)}" for k, v in exports(state).items()]
    if _mlflow_login(state):
        lines.append(f'export {PASSWORD_ENV}="$(cat {shlex.quote(state["mlflow"]["password_file"])})"')
    return "\n".join(lines)


def _mlflow_login(state: dict[str, Any]) -> bool:
    return state["mlflow"].get("auth") == "basic"


def read_mlflow_password(state: dict[str, Any]) -> str:
    """The MLflow admin password of a cluster started with a login."""
    path = Path(state["mlflow"]["password_file"])
    try:
        return path.read_text().strip()
    except OSError as e:
        raise ClusterError(f"{path}: cannot read the MLflow password ({e.strerror})") from e


# ----------------------------------------------------------------------------- processes


def _alive(pid: int, create_time: float | None = None) -> bool:
    """Whether ``pid`` runs (zombies count as gone) and, if given, was started at ``create_time``
    (a recorded pid may since have been reused by an unrelated process)."""
    import psutil

    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(p.create_time() - create_time) < 0.5
    except psutil.Error:
        return False


def cluster_processes(state: dict[str, Any]) -> dict[int, Any]:
    """Every live process this cluster started, as ``{pid: psutil.Process}``.

    That is each recorded process, every process in the sessions they lead (Ray's workers get a
    process group of their own but stay in the node's session), every descendant of those (a job's
    driver gets a session of its own under its supervisor actor), and any Ray process whose
    arguments name one of this cluster's Ray temp dirs. A session id cannot be reused while any
    process is in that session, so a session whose leader is gone still names only our processes.
    """
    import psutil

    found: dict[int, psutil.Process] = {}
    sessions: set[int] = set()
    for rec in state.get("processes", []):
        pid = rec["pid"]
        # A leader that is gone still names its session (members may remain); a pid that now
        # belongs to another process means our session is empty.
        if _alive(pid, rec.get("create_time")) or not _alive(pid):
            sessions.add(pid)
    temp_dirs = [t for t in state.get("ray", {}).get("temp_dirs", []) if t]
    me = os.getpid()
    for p in psutil.process_iter(["cmdline"]):
        if p.pid == me:
            continue
        try:
            sid = os.getsid(p.pid)
        except OSError:
            continue
        if sid in sessions or _names_temp_dir(p.info.get("cmdline") or [], temp_dirs):
            found[p.pid] = p
    for p in list(found.values()):
        with contextlib.suppress(psutil.Error):
            for child in p.children(recursive=True):
                found.setdefault(child.pid, child)
    found.pop(me, None)
    return {pid: p for pid, p in found.items() if _alive(pid)}


def _names_temp_dir(args: list[str], temp_dirs: list[str]) -> bool:
    for arg in args:
        if arg.startswith(_TEMP_ARGS):
            value = arg.split("=", 1)[1]
            if any(value == t or value.startswith(t + os.sep) for t in temp_dirs):
                return True
    return False


def _stop(procs: dict[int, Any], grace_s: float) -> list[int]:
    """SIGTERM, wait up to ``grace_s``, SIGKILL what is left; returns the pids that needed SIGKILL."""
    import psutil

    for p in procs.values():
        with contextlib.suppress(psutil.Error):
            p.send_signal(signal.SIGTERM)
    _, left = psutil.wait_procs(list(procs.values()), timeout=grace_s)
    left = [p for p in left if _alive(p.pid)]
    for p in left:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(left, timeout=5)
    return [p.pid for p in left]


def _launch(name: str, cmd: list[str], log: Path, env: dict[str, str], cwd: Path, **info: Any) -> tuple[dict, subprocess.Popen]:
    import psutil

    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=cwd, start_new_session=True)
    try:
        created = psutil.Process(proc.pid).create_time()
    except psutil.Error:
        created = None
    return {"name": name, "pid": proc.pid, "pgid": proc.pid, "create_time": created, "log": str(log), "cmd": cmd, **info}, proc


def _tail(path: str | Path, n: int = 15) -> str:
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in lines[-n:])


# ----------------------------------------------------------------------------- ports and HTTP


def _port_free(port: int) -> bool:
    # Bind the wildcard address (no listen): Ray binds its ports on all interfaces, so a port
    # taken on any address is taken for it.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("", port))
            return True
        except OSError:
            return False


def _free_ports(n: int) -> list[int]:
    """``n`` distinct ports free right now (held together while picking, so they never repeat)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _http(url: str, token: str | None = None, timeout: float = 3.0, basic: tuple[str, str] | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if basic:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(basic).encode()).decode()
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (urllib.error.URLError, OSError):
        return 0, ""


def _tcp_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex((LOOPBACK, port)) == 0


def ray_nodes(state: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The cluster's nodes from the dashboard's state API, or None if it does not answer."""
    code, body = _http(f"{state['ray']['dashboard_url']}/api/v0/nodes?limit=1000", _token(state))
    if code != 200:
        return None
    try:
        return json.loads(body)["data"]["result"]["result"]
    except (ValueError, KeyError, TypeError):
        return None


def _jobs_api_up(state: dict[str, Any]) -> bool:
    return _http(f"{state['ray']['dashboard_url']}/api/jobs/", _token(state))[0] == 200


def _mlflow_up(state: dict[str, Any]) -> bool:
    return _http(f"{state['mlflow']['tracking_uri']}/health")[0] == 200


def _token(state: dict[str, Any]) -> str | None:
    if state["ray"]["auth"] != "token":
        return None
    return Path(state["ray"]["token_file"]).read_text().strip()


# ----------------------------------------------------------------------------- up / down / status


def _temp_root(dir: Path) -> tuple[Path, Path | None]:
    """The folder Ray is given for the nodes' temp dirs, and the /tmp link made for it, if any.

    Ray's files (logs included) always live in DIR/ray; when that path is too long for Ray's
    sockets, Ray is given a short symlink to it instead.
    """
    inside = dir / "ray"
    inside.mkdir(parents=True, exist_ok=True)
    if len(str(inside / "w99")) <= _TEMP_DIR_MAX:
        return inside, None
    while True:
        link = Path(tempfile.gettempdir()) / f"ausweep-ray-{secrets.token_hex(4)}"
        if len(str(link / "w99")) > _TEMP_DIR_MAX:
            link = Path("/tmp") / link.name
        with contextlib.suppress(FileExistsError):
            link.symlink_to(inside, target_is_directory=True)
            return link, link


def _versions() -> dict[str, str]:
    out = {}
    for name in ("ray", "mlflow"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[name] = importlib.metadata.version(name)
    return out


def up(cfg: LocalClusterConfig, log=print) -> dict[str, Any]:
    """Start the cluster described by ``cfg``, wait until all of it answers, return its state."""
    dir = Path(cfg.dir).expanduser().resolve()
    with _locked(dir):
        if state_path(dir).is_file():
            old = read_state(dir)
            if live := cluster_processes(old):
                named = [f"{r['name']} (pid {r['pid']})" for r in old.get("processes", []) if r["pid"] in live]
                raise ClusterError(f"a local cluster is already up in {dir}: {', '.join(named) or 'parts of it'}, "
                                   f"{len(live)} process(es) in all; stop it with "
                                   f"`python -m ausweep.cluster down-local --dir {shlex.quote(str(dir))}`")
            log(f"note: {state_path(dir)} is left from a cluster that is no longer running; replacing it")
            _cleanup_files(old)
            state_path(dir).unlink()
        return _up(cfg, dir, log)


def _ray_start(cfg: LocalClusterConfig, temp: Path, ports: dict[str, int], head: dict[str, int] | None,
               gcs_port: int) -> list[str]:
    """The ``ray start --block`` command of one node; ``head`` holds the head's own ports."""
    cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", "--disable-usage-stats",
           "--log-style", "record", "--log-color", "false",
           "--node-ip-address", LOOPBACK, "--num-cpus", str(cfg.cpus_per_node),
           # Every node would claim all of the host's GPUs: oversubscribed, not shared out.
           "--num-gpus", "0",
           "--object-store-memory", str(cfg.object_store_mb * 1024 * 1024), "--temp-dir", str(temp),
           "--node-manager-port", str(ports["node_manager"]), "--object-manager-port", str(ports["object_manager"]),
           "--dashboard-agent-listen-port", str(ports["agent_listen"]),
           "--dashboard-agent-grpc-port", str(ports["agent_grpc"]),
           "--runtime-env-agent-port", str(ports["runtime_env_agent"]),
           "--metrics-export-port", str(ports["metrics_export"])]
    if head is None:
        return cmd + ["--address", f"{LOOPBACK}:{gcs_port}"]
    return cmd + ["--head", "--port", str(gcs_port), "--include-dashboard", "true", "--dashboard-host", LOOPBACK,
                  "--dashboard-port", str(head["dashboard"]), "--ray-client-server-port", str(head["client_server"])]


def _mlflow_server(state: dict[str, Any]) -> list[str]:
    m = state["mlflow"]
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", m["backend_store_uri"],
           "--artifacts-destination", m["artifacts_destination"], "--host", LOOPBACK, "--port", str(m["port"]),
           "--workers", "1"]
    return cmd + ["--app-name", "basic-auth"] if _mlflow_login(state) else cmd


def _write_secret(path: Path, text: str) -> None:
    """``text`` into a new ``path`` that only this user can read (never readable by others, not even
    for a moment)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _write_token(path: Path) -> None:
    _write_secret(path, secrets.token_hex(32))  # what `ray get-auth-token --generate` writes


def _mlflow_auth_files(dir: Path, log) -> str:
    """Make ready MLflow's basic-auth app in ``dir``: its settings file, and the admin password
    (kept if there, else generated). Returns the password."""
    import importlib.util

    if importlib.util.find_spec("flask_wtf") is None:
        raise ClusterError("MLflow's basic-auth app needs Flask-WTF: `pip install 'mlflow[auth]'` "
                           "(or start without an MLflow login: --no-mlflow-auth)")
    db, ini, pw_file = dir / MLFLOW_AUTH_DB, dir / MLFLOW_AUTH_INI, dir / MLFLOW_PASSWORD_FILE
    # configparser reads '%' as interpolation; the rest of a path is taken as it is.
    settings = (f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{str(db).replace('%', '%%')}\n"
                f"admin_username = {MLFLOW_ADMIN}\nauthorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                f"auth_cache_ttl_seconds = {MLFLOW_AUTH_CACHE_S}\n")
    _write_secret(ini, settings)  # no secret in it, but nobody else needs to read it either
    if pw_file.is_file():
        if pw_file.stat().st_mode & 0o077:
            pw_file.chmod(0o600)
            log(f"note: {pw_file} was readable by other users; now mode 600")
        password = pw_file.read_text().strip()
        if len(password) < 12:  # MLflow's own rule for passwords
            raise ClusterError(f"{pw_file}: the MLflow admin password must be at least 12 characters; "
                               f"delete the file to have a new one generated")
        return password
    password = secrets.token_urlsafe(24)
    if db.is_file():
        # Users were made before with a password that is lost now: give the admin the new one,
        # through MLflow's own user store, before the server starts.
        from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

        store = SqlAlchemyStore()
        store.init_db(f"sqlite:///{db}")
        if store.has_user(MLFLOW_ADMIN):
            store.update_user(MLFLOW_ADMIN, password=password)
            log(f"note: {pw_file} was missing; the MLflow user '{MLFLOW_ADMIN}' in {db} has a new password")
        store.engine.dispose()
    _write_secret(pw_file, password + "\n")
    return password


def _check_mlflow_login(state: dict[str, Any], password: str) -> None:
    """The server refuses a request without the login and answers one with it."""
    m = state["mlflow"]
    url = m["tracking_uri"] + _MLFLOW_PROBE
    anonymous, _ = _http(url, timeout=10)
    if anonymous != 401:
        raise ClusterError(f"MLflow at {m['tracking_uri']} answered a request without a login with HTTP {anonymous}, "
                           f"not 401: its basic-auth app is not in effect (log: {_log_of(state, 'mlflow')})")
    code, body = _http(url, timeout=10, basic=(m["username"], password))
    if code == 401:
        raise ClusterError(f"MLflow refused the admin password in {m['password_file']}: the users in {m['auth_db']} "
                           f"were given another one (changed through MLflow's API?). Put that password into the file, "
                           f"or delete {m['auth_db']} to start its users over")
    if code != 200:
        raise ClusterError(f"MLflow at {m['tracking_uri']} answered the admin's request with HTTP {code}: {body[:300]}")


def _log_of(state: dict[str, Any], name: str) -> str:
    return next((r["log"] for r in state["processes"] if r["name"] == name), "(none)")


def _up(cfg: LocalClusterConfig, dir: Path, log) -> dict[str, Any]:
    for flag, port in (("--ray-port", cfg.ray_port), ("--dashboard-port", cfg.dashboard_port),
                       ("--mlflow-port", cfg.mlflow_port)):
        if port and not _port_free(port):
            raise ClusterError(f"port {port} ({flag}) is busy on this machine; choose another or pass {flag} 0 for a free one")
    # Before anything starts: a missing Flask-WTF or a bad password file leaves nothing behind.
    password = _mlflow_auth_files(dir, log) if cfg.auth_mlflow else None
    n_nodes = 1 + cfg.workers
    log(f"starting a Ray head + {cfg.workers} worker node(s) ({cfg.cpus_per_node} CPU each) and MLflow in {dir} ...")
    picked = iter(_free_ports(4 + len(_NODE_PORTS) * n_nodes))
    gcs_port = cfg.ray_port or next(picked)
    head_ports = {"dashboard": cfg.dashboard_port or next(picked), "client_server": next(picked)}
    mlflow_port = cfg.mlflow_port or next(picked)
    node_ports = [{k: next(picked) for k in _NODE_PORTS} for _ in range(n_nodes)]

    (dir / "logs").mkdir(parents=True, exist_ok=True)
    temp_root, temp_link = _temp_root(dir)
    temp_dirs = [temp_root / ("head" if i == 0 else f"w{i}") for i in range(n_nodes)]
    token_file = dir / TOKEN_FILE
    state: dict[str, Any] = {
        "dir": str(dir), "status": "starting", "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "versions": _versions(),
        "config": dataclasses.asdict(cfg),
        "ray": {"address": None, "gcs_port": gcs_port, "dashboard_url": f"http://{LOOPBACK}:{head_ports['dashboard']}",
                "auth": cfg.auth, "token_file": str(token_file) if cfg.auth == "token" else None,
                "temp_root": str(temp_root), "temp_link": str(temp_link) if temp_link else None,
                "temp_dirs": [str(t) for t in temp_dirs], "nodes": n_nodes},
        "mlflow": {"tracking_uri": f"http://{LOOPBACK}:{mlflow_port}", "port": mlflow_port,
                   "backend_store_uri": f"sqlite:///{dir / 'mlflow.db'}", "artifacts_destination": str(dir / "artifacts"),
                   "auth": "basic" if cfg.auth_mlflow else "none"},
        "processes": [],
    }

    # The caller's environment, less anything that would point Ray at another cluster or token, or
    # carry another MLflow server's login or auth settings.
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
           and k not in _MLFLOW_SECRET_ENV and not k.startswith("MLFLOW_AUTH_")}
    # A job submitted here tracks to this cluster's server unless its runtime_env says otherwise.
    ray_env = {**env, **_RAY_ENV, "RAY_AUTH_MODE": cfg.auth, "MLFLOW_TRACKING_URI": state["mlflow"]["tracking_uri"]}
    # ...and keeps its sweep state in the cluster's folder, which every node here sees and Ray never
    # deletes (a job's own working folder is deleted, so the runner refuses it as storage).
    ray_env.setdefault("AUSWEEP_STORAGE", str(dir / "runs"))
    if cfg.auth == "token":
        _write_token(token_file)
        ray_env["RAY_AUTH_TOKEN_PATH"] = str(token_file)
    mlflow_env = {**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no GenAI job runner (7 more processes)
    if password is not None:
        state["mlflow"].update(username=MLFLOW_ADMIN, password_file=str(dir / MLFLOW_PASSWORD_FILE),
                               auth_db=str(dir / MLFLOW_AUTH_DB), auth_config=str(dir / MLFLOW_AUTH_INI))
        # The server reads the password only to make the admin user in a new users' database; the
        # CSRF key of its login forms lives as long as this server (one process, so no sharing).
        mlflow_env.update(MLFLOW_AUTH_CONFIG_PATH=str(dir / MLFLOW_AUTH_INI), MLFLOW_AUTH_ADMIN_USERNAME=MLFLOW_ADMIN,
                          MLFLOW_AUTH_ADMIN_PASSWORD=password, MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(32))
        # Job drivers and trials inherit the login from their raylet: MLflow's client reads it from there.
        ray_env.update({USERNAME_ENV: MLFLOW_ADMIN, PASSWORD_ENV: password})

    procs: dict[str, subprocess.Popen] = {}

    def launch(name: str, cmd: list[str], penv: dict[str, str], **info: Any) -> None:
        for t in temp_dirs:
            t.mkdir(parents=True, exist_ok=True)
        rec, procs[name] = _launch(name, cmd, dir / "logs" / f"{name}.log", penv, dir, **info)
        state["processes"].append(rec)
        _write_state(state)  # recorded at once, so down-local can stop a half-started cluster

    def nodes_alive() -> bool:
        alive = [n for n in ray_nodes(state) or [] if n.get("state") == "ALIVE"]
        state["ray"]["alive"] = len(alive)
        for n in alive:
            if n.get("is_head_node"):
                state["ray"]["address"] = f"{n['node_ip']}:{gcs_port}"
        return len(alive) >= n_nodes

    deadline = time.monotonic() + cfg.timeout_s
    try:
        # MLflow and the head start together: on a small machine each takes several seconds.
        launch("mlflow", _mlflow_server(state), mlflow_env, port=mlflow_port)
        launch("ray-head", _ray_start(cfg, temp_dirs[0], node_ports[0], head_ports, gcs_port), ray_env,
               ports={"gcs": gcs_port, **head_ports, **node_ports[0]})
        _wait(lambda: _tcp_open(gcs_port), f"the Ray head's GCS on port {gcs_port}", deadline, procs, state, ["ray-head"])
        for i in range(1, n_nodes):
            launch(f"ray-worker-{i}", _ray_start(cfg, temp_dirs[i], node_ports[i], None, gcs_port), ray_env,
                   ports=node_ports[i])
        _wait(nodes_alive, lambda: f"Ray nodes ({state['ray'].get('alive', 0)} of {n_nodes} alive)", deadline, procs,
              state, [name for name in procs if name.startswith("ray-")])
        _wait(lambda: _jobs_api_up(state), f"the Ray Jobs API at {state['ray']['dashboard_url']}", deadline, procs,
              state, ["ray-head"])
        _wait(lambda: _mlflow_up(state), f"MLflow at {state['mlflow']['tracking_uri']}", deadline, procs, state,
              ["mlflow"])
        if password is not None:
            _check_mlflow_login(state, password)
    except BaseException:
        # Ctrl-C included: leave nothing behind.
        _stop(cluster_processes(state), grace_s=10)
        for p in procs.values():
            with contextlib.suppress(Exception):
                p.wait(timeout=1)
        _cleanup_files(state)
        state_path(dir).unlink(missing_ok=True)
        raise
    state["status"] = "up"
    state["ray"].pop("alive", None)
    _write_state(state)
    return state


def _wait(ready, what, deadline: float, procs: dict[str, subprocess.Popen], state: dict, watch: list[str]) -> None:
    """Poll ``ready()`` until it holds; fail at once if a watched process exits, or at ``deadline``."""
    while True:
        if ready():
            return
        desc = what if isinstance(what, str) else what()
        for name in watch:
            rc = procs[name].poll()
            if rc is not None:
                log = next(r["log"] for r in state["processes"] if r["name"] == name)
                raise ClusterError(f"{name} exited (code {rc}) before {desc} came up; its log {log} ends:\n{_tail(log)}")
        if time.monotonic() > deadline:
            logs = "\n".join(f"  {r['name']}: {r['log']}\n{_tail(r['log'], 8)}"
                             for r in state["processes"] if r["name"] in watch)
            raise ClusterError(f"timed out after {state['config']['timeout_s']:.0f} s waiting for {desc}; "
                               f"raise --timeout on a busy machine. Logs:\n{logs}")
        time.sleep(0.5)


def _cleanup_files(state: dict[str, Any]) -> None:
    ray = state.get("ray", {})
    if ray.get("token_file"):
        Path(ray["token_file"]).unlink(missing_ok=True)
    link = Path(ray["temp_link"]) if ray.get("temp_link") else None
    if link is not None and link.is_symlink() and link.name.startswith("ausweep-ray-"):
        link.unlink()


def down(dir: str | os.PathLike, grace_s: float = 15.0) -> dict[str, Any]:
    """Stop every process the cluster in ``dir`` started and remove its state file (the MLflow
    store, its users and admin password file, and the logs stay). Returns what was stopped."""
    dir = Path(dir).expanduser().resolve()
    read_state(dir)  # no state, no cluster: say so before making any folder
    with _locked(dir):
        state = read_state(dir)
        procs = cluster_processes(state)
        killed = _stop(procs, grace_s)
        # A Ray process may have been spawning children while we stopped it: look once more.
        late = cluster_processes(state)
        if late:
            killed += _stop(late, grace_s=3)
        left = cluster_processes(state)
        if left:
            raise ClusterError(f"could not stop pids {sorted(left)}; {state_path(dir)} is kept")
        _cleanup_files(state)
        state_path(dir).unlink(missing_ok=True)
    return {"stopped": sorted(set(procs) | set(late)), "killed": sorted(set(killed)), "state": state}


def status(dir: str | os.PathLike) -> dict[str, Any]:
    """The recorded state with what is alive now: each process, the Ray nodes, MLflow."""
    state = read_state(dir)
    for rec in state["processes"]:
        rec["alive"] = _alive(rec["pid"], rec.get("create_time"))
    nodes = ray_nodes(state) if any(r["alive"] for r in state["processes"] if r["name"] == "ray-head") else None
    state["ray"]["alive_nodes"] = None if nodes is None else sum(n.get("state") == "ALIVE" for n in nodes)
    state["mlflow"]["answers"] = _mlflow_up(state)
    state["healthy"] = (all(r["alive"] for r in state["processes"]) and state["ray"]["alive_nodes"] == state["ray"]["nodes"]
                        and state["mlflow"]["answers"])
    return state
