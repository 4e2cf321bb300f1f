"""The launch files in cluster/: Ray's own validation of the cluster-launcher configs, structure checks
of the KubeRay manifests, and the settings they must all agree on (Ray version, where workers track
to, what listens where).

Offline: no cloud and no Kubernetes. Not checked here: the cloud provider's bootstrap that `ray up`
runs after validation (IAM roles, security groups, SSH keys, subnets and instance-type lookups all
call the cloud), and KubeRay's CRD schema and the API server's admission of the manifests.
"""

from __future__ import annotations

import configparser
import copy
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
LAUNCHER = ["aws.yaml", "gcp.yaml"]
KUBERAY = ["kuberay-raycluster.yaml", "kuberay-rayjob.yaml"]
HEAD_IP = "10.0.0.1"  # the head's private address, as the stubbed node-IP lookup reports it
PASSWORD = "test-only-Pa55word-0123"  # stands for the MLflow admin password file / Secret
PASSWORD_VARS = ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_AUTH_ADMIN_PASSWORD")

needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _launcher(name: str) -> dict:
    """The config as `ray up` sees it after filling in Ray's defaults (offline)."""
    from ray.autoscaler._private.util import prepare_config

    return prepare_config(copy.deepcopy(yaml.safe_load((CLUSTER / name).read_text())))


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((CLUSTER / name).read_text()) if d]


def _one(docs: list[dict], kind: str) -> dict:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def _ray_cluster_specs() -> list[tuple[str, dict]]:
    """Every Ray cluster the KubeRay files start: the RayCluster's spec and the RayJob's."""
    return [("RayCluster", _one(_docs(KUBERAY[0]), "RayCluster")["spec"]),
            ("RayJob", _one(_docs(KUBERAY[1]), "RayJob")["spec"]["rayClusterSpec"])]


def _group_specs(spec: dict) -> list[tuple[str, dict]]:
    return [("head", spec["headGroupSpec"])] + [(g["groupName"], g) for g in spec["workerGroupSpecs"]]


def _pod_specs() -> list[tuple[str, dict]]:
    """Every pod template in the KubeRay files."""
    out = []
    for name in KUBERAY:
        for doc in _docs(name):
            if doc["kind"] == "Deployment":
                out.append((f"{name}:{doc['metadata']['name']}", doc["spec"]["template"]["spec"]))
    for owner, spec in _ray_cluster_specs():
        out += [(f"{owner}:{group}", g["template"]["spec"]) for group, g in _group_specs(spec)]
    return out


def _mlflow_server_args() -> list[str]:
    """The `mlflow server` arguments of the KubeRay MLflow Deployment (its bash -c line, split)."""
    deploy = _one(_docs(KUBERAY[0]), "Deployment")
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    words = shlex.split(container["args"][0])
    return words[words.index("server") + 1:]


def _opt(args: list[str], name: str) -> str:
    """The value of ``--name value`` or ``--name=value`` in an argument list."""
    for i, a in enumerate(args):
        if a == name:
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    raise AssertionError(f"{name} not in {args}")


# ---- every file --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", LAUNCHER + KUBERAY + ["Dockerfile"])
def test_first_line_is_the_launch_command(name):
    first = (CLUSTER / name).read_text().splitlines()[0]
    assert re.match(r"# (Launch|Build): ", first), first
    assert any(cmd in first for cmd in ("ray up ", "kubectl ", "docker build ")), first
    assert f"cluster/{name}" in first, f"the launch command should name the file itself: {first}"


def test_every_file_runs_the_installed_ray_version():
    """`ray up` wants the cluster's Ray to match the local one; KubeRay's rayVersion must match the image."""
    import ray

    version = ray.__version__
    for name in LAUNCHER:
        docker = yaml.safe_load((CLUSTER / name).read_text())["docker"]
        for key in ("head_image", "worker_image"):
            assert docker[key].split(":")[1].startswith(version + "-"), f"{name} docker.{key}: {docker[key]}"
    for owner, spec in _ray_cluster_specs():
        assert spec["rayVersion"] == version, f"{owner}.rayVersion"
    (arg,) = [line for line in (CLUSTER / "Dockerfile").read_text().splitlines() if line.startswith("ARG RAY_IMAGE=")]
    assert arg.split(":")[1].startswith(version + "-"), arg


# ---- cluster launcher (aws.yaml, gcp.yaml) -----------------------------------------------------


@pytest.mark.parametrize("name", LAUNCHER)
def test_launcher_config_passes_rays_validation(name):
    """What `ray up` checks before it touches the cloud: defaults merged, schema, node types, docker."""
    from ray.autoscaler._private.util import validate_config

    validate_config(_launcher(name))


@pytest.mark.parametrize("name", LAUNCHER)
def test_launcher_node_types_autoscale_gpus_from_zero(name):
    config = _launcher(name)
    types = config["available_node_types"]
    head = types.pop(config["head_node_type"])
    assert head["resources"].get("CPU") == 0, "trials must not land on the head"
    assert head["resources"].get("GPU", 0) == 0
    for node_type, t in types.items():
        assert 0 <= t["min_workers"] <= t["max_workers"], node_type
        assert t["min_workers"] == 0, f"{node_type}: GPU nodes should scale to zero"
        assert t["resources"].get("GPU", 0) >= 1, f"{node_type} is a worker type without GPUs"
    assert sum(t["max_workers"] for t in types.values()) <= config["max_workers"]
    assert 0 < config["idle_timeout_minutes"] <= 30


def _commands(config: dict, key: str, containing: str) -> list[str]:
    found = [c for c in config[key] if containing in c]
    assert found, f"no command in {key} contains {containing!r}"
    return found


@pytest.mark.parametrize("name", LAUNCHER)
@needs_bash
def test_launcher_shell_commands_parse(name):
    config = _launcher(name)
    keys = ["initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
            "head_start_ray_commands", "worker_start_ray_commands"]
    for key in keys:
        for cmd in config[key]:
            r = subprocess.run(["bash", "-n", "-c", cmd], capture_output=True, text=True)
            assert r.returncode == 0, f"{name} {key}: {cmd}\n{r.stderr}"


def _run_with_stubs(cmd: str, tmp_path: Path, env: dict[str, str] | None = None, password: str | None = PASSWORD,
                    check: bool = True) -> Path:
    """Run one start command under bash with `ray`, `mlflow` and `python` replaced by stubs that
    record their arguments and environment. The `python` stub answers Ray's node-IP lookup with
    HEAD_IP and fails everything else (so the MLflow health check reports no server). ``password``
    is put where `ray up`'s file_mounts put the MLflow password (None: no file)."""
    out, bin_dir, home = tmp_path / "out", tmp_path / "bin", tmp_path / "home"
    for d in (out, bin_dir, home):
        d.mkdir(parents=True, exist_ok=True)
    if password is not None:
        (home / ".ausweep").mkdir(exist_ok=True)
        (home / ".ausweep" / "mlflow_password").write_text(password + "\n")
    record = '#!/bin/sh\nprintf "%s\\n" "$@" > "$STUB_OUT/{0}.tmp"; env > "$STUB_OUT/{0}.env"; mv "$STUB_OUT/{0}.tmp" "$STUB_OUT/{0}.args"\n'
    stubs = {
        "ray": record.format("ray"),
        "mlflow": record.format("mlflow"),
        "python": f'#!/bin/sh\ncase "$*" in *get_node_ip_address*) echo {HEAD_IP} ;; *) exit 1 ;; esac\n',
    }
    for tool, text in stubs.items():
        (bin_dir / tool).write_text(text)
        (bin_dir / tool).chmod(0o755)
    full_env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(home), "STUB_OUT": str(out), **(env or {})}
    r = subprocess.run(["bash", "-c", cmd], env=full_env, capture_output=True, text=True, timeout=60)
    if check:
        assert r.returncode == 0, f"{cmd}\n{r.stderr}"
    (out / "stderr").write_text(r.stderr)
    (out / "rc").write_text(str(r.returncode))
    return out


def _recorded(out: Path, tool: str, timeout: float = 10.0) -> tuple[list[str], dict[str, str]]:
    """Arguments and environment a stub was called with (waits: the MLflow server starts in the background)."""
    deadline = time.monotonic() + timeout
    while not (out / f"{tool}.args").exists():
        assert time.monotonic() < deadline, f"{tool} was not started"
        time.sleep(0.05)
    env = dict(line.split("=", 1) for line in (out / f"{tool}.env").read_text().splitlines() if "=" in line)
    return (out / f"{tool}.args").read_text().splitlines(), env


SHARED_ENV = {"AUSWEEP_CACHE", "AUSWEEP_STORAGE", "HF_HOME"}


@pytest.mark.parametrize("name", LAUNCHER)
@needs_bash
def test_launcher_head_runs_mlflow_and_ray_where_workers_look(name, tmp_path):
    config = _launcher(name)
    (mlflow_cmd,) = _commands(config, "head_start_ray_commands", "mlflow server")
    (head_cmd,) = _commands(config, "head_start_ray_commands", "ray start")
    (worker_cmd,) = _commands(config, "worker_start_ray_commands", "ray start")

    mlflow_args, mlflow_env = _recorded(_run_with_stubs(mlflow_cmd, tmp_path / "mlflow"), "mlflow")
    head_args, head_env = _recorded(_run_with_stubs(head_cmd, tmp_path / "head"), "ray")
    # The autoscaler prefixes worker commands with `export RAY_HEAD_IP=<head>;` (util.with_head_node_ip),
    # found with the same lookup the head commands use, which the python stub answers with HEAD_IP.
    worker_args, worker_env = _recorded(_run_with_stubs(worker_cmd, tmp_path / "worker", {"RAY_HEAD_IP": HEAD_IP}), "ray")

    assert mlflow_args[0] == "server"
    mlflow_host, mlflow_port = _opt(mlflow_args, "--host"), _opt(mlflow_args, "--port")
    assert mlflow_host == HEAD_IP, "MLflow should listen on the head's private address only"
    assert head_env["MLFLOW_TRACKING_URI"] == f"http://{mlflow_host}:{mlflow_port}"
    assert worker_env["MLFLOW_TRACKING_URI"] == f"http://{mlflow_host}:{mlflow_port}"

    assert "--head" in head_args and _opt(head_args, "--dashboard-host") == "127.0.0.1"
    assert _opt(worker_args, "--address") == f"{HEAD_IP}:{_opt(head_args, '--port')}"
    for env in (head_env, worker_env):
        assert env["RAY_AUTH_MODE"] == "token"
        for var in SHARED_ENV:
            assert env[var].startswith("/shared/"), f"{var}={env[var]} is not on the shared mount"
    assert {v: head_env[v] for v in SHARED_ENV} == {v: worker_env[v] for v in SHARED_ENV}

    # MLflow's login: the basic-auth app makes its admin from the mounted password file; every Ray
    # process (the job's driver, the trials) logs in with the same user and password.
    assert _opt(mlflow_args, "--app-name") == "basic-auth"
    auth = _auth_settings(mlflow_env)
    assert auth["database_uri"].startswith("sqlite:////home/ray/mlflow/"), "the users belong on the head's own disk"
    assert int(auth["auth_cache_ttl_seconds"]) > 0, "a PBKDF2 check on every request: a tenth of the requests/s"
    assert mlflow_env["MLFLOW_AUTH_ADMIN_PASSWORD"] == PASSWORD
    assert len(mlflow_env["MLFLOW_FLASK_SERVER_SECRET_KEY"]) == 64
    for env in (head_env, worker_env):
        assert env["MLFLOW_TRACKING_USERNAME"] == mlflow_env["MLFLOW_AUTH_ADMIN_USERNAME"] == auth["admin_username"]
        assert env["MLFLOW_TRACKING_PASSWORD"] == PASSWORD


def _auth_settings(mlflow_env: dict[str, str]) -> configparser.SectionProxy:
    """The basic-auth app's settings file the MLflow server was pointed at, read as MLflow reads it."""
    ini = Path(mlflow_env["MLFLOW_AUTH_CONFIG_PATH"])
    assert ini.stat().st_mode & 0o077 == 0, f"{ini} is readable by other users"
    config = configparser.ConfigParser()
    assert config.read(ini), ini
    return config["mlflow"]


@pytest.mark.parametrize("name", LAUNCHER)
@needs_bash
def test_launcher_mlflow_never_starts_without_its_login(name, tmp_path):
    """No password file on the head: the MLflow start command fails (so `ray up` does) and starts nothing."""
    config = _launcher(name)
    assert config["file_mounts"]["/home/ray/.ausweep/mlflow_password"] == "~/.ausweep/mlflow_password"
    (mlflow_cmd,) = _commands(config, "head_start_ray_commands", "mlflow server")
    out = _run_with_stubs(mlflow_cmd, tmp_path, password=None, check=False)
    assert (out / "rc").read_text() != "0"
    assert "mlflow_password" in (out / "stderr").read_text()
    time.sleep(0.5)
    assert not (out / "mlflow.args").exists()


@pytest.mark.parametrize("name", LAUNCHER + KUBERAY)
def test_no_mlflow_password_is_written_in_the_cluster_files(name):
    """The password comes from a file outside the repo (`ray up`) or a Secret (KubeRay), never a literal."""
    text = (CLUSTER / name).read_text()
    for var in PASSWORD_VARS:
        for value in re.findall(rf"{var}=(\S+)", text):
            assert value == '"$(cat', f"{name}: {var}={value}"
        assert not re.search(rf"name: {var}, value:", text), f"{name}: {var} has a literal value"


@pytest.mark.parametrize("name", LAUNCHER)
def test_launcher_binds_nothing_to_all_interfaces_and_opens_no_ports(name):
    config = _launcher(name)
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        for cmd in config[key]:
            assert "0.0.0.0" not in cmd, f"{key}: {cmd}"
    rules = config["provider"].get("security_group", {}).get("IpPermissions", [])
    assert not rules, "extra inbound rules: the dashboard and MLflow are reached through SSH tunnels"
    # Shared storage must be mounted into the containers, where the start commands point.
    assert "-v /shared:/shared" in config["docker"]["run_options"]


@pytest.mark.parametrize("name", LAUNCHER)
@needs_bash
def test_launcher_mlflow_accepts_the_host_workers_send(name, tmp_path):
    """MLflow refuses Host headers it does not know: workers send the head's address, a tunnel localhost."""
    security = pytest.importorskip("mlflow.server.security_utils")
    (mlflow_cmd,) = _commands(_launcher(name), "head_start_ray_commands", "mlflow server")
    args, _ = _recorded(_run_with_stubs(mlflow_cmd, tmp_path), "mlflow")
    allowed = _opt(args, "--allowed-hosts").split(",")
    for host in (f"{HEAD_IP}:{_opt(args, '--port')}", "localhost:5000", "127.0.0.1:5000"):
        assert security.is_allowed_host_header(allowed, host), host
    assert not security.is_allowed_host_header(allowed, "evil.example:5000")


# ---- KubeRay --------------------------------------------------------------------------------------


def test_raycluster_structure():
    cluster = _one(_docs(KUBERAY[0]), "RayCluster")
    assert cluster["apiVersion"] == "ray.io/v1"
    assert cluster["metadata"]["name"]


def test_rayjob_runs_an_ausweep_sweep_on_the_same_cluster():
    job = _one(_docs(KUBERAY[1]), "RayJob")
    assert job["apiVersion"] == "ray.io/v1"
    spec = job["spec"]
    words = shlex.split(spec["entrypoint"])
    assert words[:3] == ["python", "-m", "ausweep.sweep"], spec["entrypoint"]
    assert (REPO / "sweeps" / f"{words[3]}.yaml").is_file(), f"no sweep named {words[3]}"
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["rayClusterSpec"] == _one(_docs(KUBERAY[0]), "RayCluster")["spec"], \
        "kuberay-rayjob.yaml's rayClusterSpec differs from kuberay-raycluster.yaml's spec"


@pytest.mark.parametrize("owner, spec", _ray_cluster_specs(), ids=["RayCluster", "RayJob"])
def test_kuberay_cluster_autoscales_gpu_groups(owner, spec):
    assert spec["enableInTreeAutoscaling"] is True
    assert spec.get("authOptions", {}).get("mode") == "token", "Ray token authentication"
    head = spec["headGroupSpec"]
    assert head["template"]["spec"]["containers"], "head without containers"
    assert head["rayStartParams"].get("num-cpus") == "0", "trials must not land on the head"
    assert spec["workerGroupSpecs"], "no worker groups"
    for group in spec["workerGroupSpecs"]:
        name = group["groupName"]
        assert 0 <= group["minReplicas"] <= group.get("replicas", 0) <= group["maxReplicas"], name
        assert group["minReplicas"] == 0 and group["maxReplicas"] >= 1, name
        (container,) = group["template"]["spec"]["containers"]
        limits, requests = container["resources"]["limits"], container["resources"].get("requests", {})
        assert int(limits["nvidia.com/gpu"]) >= 1, f"{name}: no GPU limit"
        assert requests.get("nvidia.com/gpu", limits["nvidia.com/gpu"]) == limits["nvidia.com/gpu"], name


def test_kuberay_exposes_nothing_outside_the_cluster():
    """ClusterIP only, no host networking or ports, no ingress; MLflow also only from its namespace."""
    docs = _docs(KUBERAY[0]) + _docs(KUBERAY[1])
    assert not [d for d in docs if d["kind"] in ("Ingress", "Route", "Gateway", "HTTPRoute")]
    for svc in (d for d in docs if d["kind"] == "Service"):
        assert svc["spec"].get("type", "ClusterIP") == "ClusterIP", svc["metadata"]["name"]
    for owner, spec in _ray_cluster_specs():
        assert spec["headGroupSpec"].get("serviceType", "ClusterIP") == "ClusterIP", owner
    for where, pod in _pod_specs():
        assert not pod.get("hostNetwork"), where
        for c in pod["containers"]:
            assert not any("hostPort" in p for p in c.get("ports", [])), where
    policy = _one(_docs(KUBERAY[0]), "NetworkPolicy")
    deploy = _one(_docs(KUBERAY[0]), "Deployment")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= deploy["spec"]["template"]["metadata"]["labels"].items()
    for rule in policy["spec"]["ingress"]:
        assert rule["from"] == [{"podSelector": {}}], "only pods of the same namespace"


def test_kuberay_ray_pods_track_to_the_mlflow_service():
    docs = _docs(KUBERAY[0])
    deploy, svc = _one(docs, "Deployment"), _one(docs, "Service")
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items(), "the Service does not select the MLflow pods"
    (port,) = svc["spec"]["ports"]
    args = _mlflow_server_args()
    assert str(port["targetPort"]) == _opt(args, "--port")
    uri = f"http://{svc['metadata']['name']}:{port['port']}"
    for owner, spec in _ray_cluster_specs():
        for group, g in _group_specs(spec):
            for c in g["template"]["spec"]["containers"]:
                env = {e["name"]: e.get("value") for e in c.get("env", [])}
                assert env.get("MLFLOW_TRACKING_URI") == uri, f"{owner} {group}"


def test_kuberay_mlflow_accepts_the_service_name_and_port_forward():
    security = pytest.importorskip("mlflow.server.security_utils")
    allowed = _opt(_mlflow_server_args(), "--allowed-hosts").split(",")
    svc = _one(_docs(KUBERAY[0]), "Service")
    name, (port,) = svc["metadata"]["name"], svc["spec"]["ports"]
    for host in (f"{name}:{port['port']}", "localhost:5000", "127.0.0.1:5000"):
        assert security.is_allowed_host_header(allowed, host), host
    assert not security.is_allowed_host_header(allowed, "evil.example:5000")


def test_kuberay_shared_paths_are_on_the_shared_volume():
    docs = _docs(KUBERAY[0])
    shared = _one([d for d in docs if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == "ausweep-shared"],
                  "PersistentVolumeClaim")
    assert shared["spec"]["accessModes"] == ["ReadWriteMany"], "every node must see the same files"
    for owner, spec in _ray_cluster_specs():
        for group, g in _group_specs(spec):
            pod = g["template"]["spec"]
            claim_of = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in pod.get("volumes", [])}
            (c,) = pod["containers"]
            mounts = [m["mountPath"] for m in c.get("volumeMounts", [])
                      if claim_of.get(m["name"]) == shared["metadata"]["name"]]
            env = {e["name"]: e.get("value", "") for e in c.get("env", [])}
            for var in SHARED_ENV:
                assert any(env[var].startswith(m.rstrip("/") + "/") for m in mounts), f"{owner} {group}: {var}"


def _secret_refs(env: list[dict]) -> dict[str, tuple[str, str, bool]]:
    """``{variable: (Secret, key, optional)}`` of a container's env entries that come from a Secret."""
    out = {}
    for e in env:
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            out[e["name"]] = (ref["name"], ref["key"], bool(ref.get("optional", False)))
    return out


def test_kuberay_ray_pods_log_in_to_mlflow_with_its_admin_secret():
    deploy = _one(_docs(KUBERAY[0]), "Deployment")
    (server,) = deploy["spec"]["template"]["spec"]["containers"]
    admin = _secret_refs(server["env"])["MLFLOW_AUTH_ADMIN_PASSWORD"]
    assert admin[2] is False, "without the Secret the server must not start (it would start without a login)"
    server_user = {e["name"]: e.get("value") for e in server["env"]}["MLFLOW_AUTH_ADMIN_USERNAME"]
    for owner, spec in _ray_cluster_specs():
        for group, g in _group_specs(spec):
            for c in g["template"]["spec"]["containers"]:
                plain = {e["name"]: e.get("value") for e in c.get("env", [])}
                assert plain.get("MLFLOW_TRACKING_USERNAME") == server_user, f"{owner} {group}"
                assert _secret_refs(c["env"]).get("MLFLOW_TRACKING_PASSWORD") == admin, f"{owner} {group}"


@needs_bash
def test_kuberay_mlflow_runs_the_basic_auth_app(tmp_path):
    """The MLflow container's command, run with the Deployment's environment (its Secrets filled in)
    and `mlflow` stubbed: the basic-auth app, its users on the server's own volume."""
    deploy = _one(_docs(KUBERAY[0]), "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    (server,) = pod["containers"]
    assert _opt(_mlflow_server_args(), "--app-name") == "basic-auth"
    env = {e["name"]: e["value"] for e in server["env"] if "value" in e}
    for var, (secret, key, optional) in _secret_refs(server["env"]).items():
        if not optional:
            env[var] = PASSWORD if (secret, key) == ("ausweep-mlflow-auth", "password") else "unexpected"
    cmd = server["args"][0].replace("/tmp/basic_auth.ini", str(tmp_path / "basic_auth.ini"))
    _, recorded = _recorded(_run_with_stubs(cmd, tmp_path, env=env, password=None), "mlflow")
    assert recorded["MLFLOW_AUTH_ADMIN_PASSWORD"] == PASSWORD
    assert len(recorded["MLFLOW_FLASK_SERVER_SECRET_KEY"]) == 64
    config = configparser.ConfigParser()
    assert config.read(recorded["MLFLOW_AUTH_CONFIG_PATH"])
    db = config["mlflow"]["database_uri"]
    assert int(config["mlflow"]["auth_cache_ttl_seconds"]) > 0
    claim = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in pod["volumes"]}
    mount = next(m["mountPath"] for m in server["volumeMounts"] if claim[m["name"]] == "ausweep-mlflow-db")
    assert db.startswith(f"sqlite:///{mount}/"), f"the users ({db}) belong on the server's own volume ({mount})"
