"""A Ray cluster with the real autoscaler on one machine, for tests and bench/bench_autoscale.py.

Ray's fake multi-node provider (``type: fake_multinode``, what ``ray.cluster_utils.AutoscalingCluster``
uses) lets the real autoscaler (v1 or v2) start and stop worker nodes as local raylets. Ray's own
``AutoscalingCluster`` cannot be used here as it is:

* its ``start()`` and ``shutdown()`` run ``ray stop --force``, which kills every Ray process on the
  machine, other users' and other tests' included;
* it starts the head on Ray's default ports (GCS 6379, dashboard 8265, ...), which collide with any
  other Ray on the machine, and the fake provider joins worker nodes to port 6379 unless
  ``provider.gcs_address`` says otherwise;
* its base config (``fake_multi_node/example.yaml``) is not in Ray's wheel.

So :func:`autoscaling_cluster` builds the same config, starts the head as ``ray start --block`` in a
session of its own with free ports, its own ``--temp-dir`` and its own auth token (as
``ausweep.cluster.local.up`` does), and stops exactly that process tree at the end: the head's
session holds the autoscaler (``monitor.py``), and the worker nodes the provider starts are its
descendants and run in the head's temp dir.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ausweep.cluster.local import _free_ports  # the ports up-local picks the same way

HEAD_NODE_TYPE = "ray.head.default"  # the fake provider's name for the head
FAKE_HEAD_NODE_ID = "fffffffffffffffffffffffffffffffffffffffffffffffffff00000"  # v2 needs the head's id fixed


def cluster_config(head_resources: dict[str, float], worker_node_types: dict[str, Any], max_workers: int,
                   idle_timeout_s: float, gcs_address: str, autoscaler_v2: bool = False) -> dict[str, Any]:
    """The autoscaler's cluster config (``ray up`` YAML as a dict) for the fake multi-node provider."""
    # As Ray's fake_multi_node/example.yaml: the fake nodes need no setup (no updaters, whose tag
    # writes the read-only provider refuses), and the autoscaler matches them by node id, not IP.
    provider: dict[str, Any] = {"type": "fake_multinode", "gcs_address": gcs_address, "use_node_id_as_ip": True,
                                "disable_node_updaters": True, "disable_launch_config_check": True}
    if autoscaler_v2:
        provider.update(launch_multiple=True, head_node_id=FAKE_HEAD_NODE_ID)
    # Without launch_multiple (v1, as in Ray's AutoscalingCluster) the fake provider starts one node
    # per request and the autoscaler asks again for the rest. With it, v1 was seen to start up to two
    # nodes over max_workers (the provider starts them one by one, releasing its lock between them),
    # which its next update removed again as "max_workers_per_type", with a trial placed on one.
    types = {name: {"node_config": {}, "min_workers": 0, **spec} for name, spec in worker_node_types.items()}
    types[HEAD_NODE_TYPE] = {"resources": dict(head_resources), "node_config": {}, "max_workers": 0}
    return {
        "cluster_name": "ausweep-fake", "max_workers": max_workers, "upscaling_speed": 1.0,
        "idle_timeout_minutes": idle_timeout_s / 60.0, "provider": provider, "available_node_types": types,
        "head_node_type": HEAD_NODE_TYPE, "auth": {"ssh_user": "ubuntu"}, "file_mounts": {},
        "cluster_synced_files": [], "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [], "worker_setup_commands": [],
        "head_start_ray_commands": [], "worker_start_ray_commands": [],
    }


@dataclass
class AutoscalingCluster:
    """A started cluster: where to reach it and what it was started with."""

    address: str  # GCS address, for ray.init(address=...) / $RAY_ADDRESS
    dir: Path
    config: dict[str, Any]
    env: dict[str, str]  # what a driver process needs to join (address, auth token)
    head_pid: int
    temp_dir: Path
    log: Path
    started: float = field(default_factory=time.time)

    def log_tail(self, n: int = 15) -> str:
        lines: list[str] = []
        for path in [self.log, *sorted(self.temp_dir.glob("session_latest/logs/monitor.[eo]*"))]:
            with contextlib.suppress(OSError):
                lines += [f"--- {path}", *path.read_text(errors="replace").splitlines()[-n:]]
        return "\n".join(lines)


def _processes(head_pid: int, temp_dir: Path) -> dict[int, Any]:
    """The head's session, its descendants, and any Ray process that names our temp dir."""
    import psutil

    found: dict[int, psutil.Process] = {}
    for p in psutil.process_iter(["cmdline"]):
        try:
            if p.pid == os.getpid():
                continue
            if os.getsid(p.pid) == head_pid or any(str(temp_dir) in a for a in p.info.get("cmdline") or []):
                found[p.pid] = p
        except (OSError, psutil.Error):
            continue
    for p in list(found.values()):
        with contextlib.suppress(psutil.Error):
            for c in p.children(recursive=True):
                found.setdefault(c.pid, c)
    return found


def _stop(head_pid: int, temp_dir: Path, grace_s: float = 10.0) -> None:
    import psutil

    for _ in range(3):  # a raylet may be starting workers while we stop it: look again
        procs = _processes(head_pid, temp_dir)
        if not procs:
            return
        for p in procs.values():
            with contextlib.suppress(psutil.Error):
                p.terminate()
        _, left = psutil.wait_procs(list(procs.values()), timeout=grace_s)
        for p in left:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(left, timeout=5)


def gcs_port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def autoscaling_cluster(head_resources: dict[str, float], worker_node_types: dict[str, Any], max_workers: int,
                        idle_timeout_s: float = 6.0, autoscaler_v2: bool = False, dir: Path | None = None,
                        timeout_s: float = 90.0, node_env: dict[str, str] | None = None) -> Iterator[AutoscalingCluster]:
    """Start a head with ``head_resources`` and the autoscaler; yield; stop all of it.

    ``worker_node_types``: ``{name: {"resources": {...}, "max_workers": n}}`` as in a cluster config.
    ``node_env``: environment for every node's processes (the autoscaler starts the worker nodes, so
    they inherit the head's), e.g. ``PYTHONPATH`` where the code is not installed. The autoscaler
    is told to look every second (Ray's tests do the same), so nodes come and go
    within seconds of the demand.
    """
    import ray

    own_dir = dir is None
    dir = Path(tempfile.mkdtemp(prefix="ausweep-as-")) if dir is None else Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    gcs_port, dash_port, client_port, agent_port = _free_ports(4)
    ip = ray.util.get_node_ip_address()
    address = f"{ip}:{gcs_port}"
    config = cluster_config(head_resources, worker_node_types, max_workers, idle_timeout_s, address, autoscaler_v2)
    config_file = dir / "autoscaling.json"
    config_file.write_text(json.dumps(config, indent=1))
    token = dir / "auth_token"
    fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    # Ray's Unix sockets live in the temp dir and Linux caps their paths at 107 bytes.
    temp = Path(tempfile.mkdtemp(prefix="ausweep-as-ray-", dir="/tmp"))

    res = dict(head_resources)
    cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", "--disable-usage-stats",
           f"--autoscaling-config={config_file}", "--port", str(gcs_port), "--temp-dir", str(temp),
           "--num-cpus", str(int(res.pop("CPU", 0))), "--num-gpus", str(int(res.pop("GPU", 0))),
           "--include-dashboard", "false", "--dashboard-port", str(dash_port),
           "--ray-client-server-port", str(client_port), "--dashboard-agent-listen-port", str(agent_port),
           "--object-store-memory", str(int(res.pop("object_store_memory", 100 * 1024 * 1024)))]
    if res:
        cmd += ["--resources", json.dumps(res)]
    join_env = {"RAY_ADDRESS": address, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH_"))}
    env.update(node_env or {})
    env.update(join_env, AUTOSCALER_UPDATE_INTERVAL_S="1", RAY_FAKE_CLUSTER="1")
    if autoscaler_v2:
        env.update(RAY_enable_autoscaler_v2="1", RAY_CLOUD_INSTANCE_ID=FAKE_HEAD_NODE_ID,
                   RAY_OVERRIDE_NODE_ID_FOR_TESTING=FAKE_HEAD_NODE_ID)
    log = dir / "head.log"
    try:
        with open(log, "ab") as out:
            head = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                    start_new_session=True)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        token.unlink(missing_ok=True)
        raise
    cluster = AutoscalingCluster(address, dir, config, join_env, head.pid, temp, log)
    try:
        deadline = time.monotonic() + timeout_s
        while not gcs_port_open(gcs_port):
            if head.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the autoscaling head did not come up (exit {head.poll()}):\n{cluster.log_tail()}")
            time.sleep(0.5)
        yield cluster
    finally:
        _stop(head.pid, temp)
        with contextlib.suppress(Exception):
            head.wait(timeout=5)
        token.unlink(missing_ok=True)
        # The autoscaler's own account of what it did, kept with the cluster's folder.
        for path in temp.glob("session_latest/logs/monitor*"):
            with contextlib.suppress(OSError):
                (dir / "logs").mkdir(exist_ok=True)
                shutil.copy(path, dir / "logs" / path.name)
        shutil.rmtree(temp, ignore_errors=True)
        if own_dir:
            shutil.rmtree(dir, ignore_errors=True)
