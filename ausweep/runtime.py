"""Where work runs: connecting to (or starting) Ray, and the shared settings every process needs.

Locally, ``init_ray()`` starts a Ray instance for this process; on a cluster (``ray job submit``
sets ``RAY_ADDRESS``) it connects to the running cluster. Nothing here runs at import time.

``max_concurrent_trials()`` decides how many trials a sweep runs at once. An autoscaler adds
nodes only for work that waits, so the cap must never be what the cluster holds *now* unless
nothing can add nodes. The rule, first match wins:

1. ``tune.max_concurrent_trials`` in the sweep file, then ``$AUSWEEP_MAX_CONCURRENT``;
2. trials that ask for no GPU: no cap (Tune runs what the CPUs allow; an autoscaler sees the rest);
3. a Ray this process started itself (a laptop, a test): no autoscaler, so as many trials as fit
   on its nodes;
4. the autoscaler's largest cluster, from the cluster launcher's ``~/ray_bootstrap_config.yaml``
   on the head (``ray up``; Tune checks the same file): as many trials as fit on the most nodes of
   every type (within the launcher's ``max_workers``). (Ray also has a private
   ``get_cluster_config()`` that Ray Data and Train V2 read, but in Ray 2.60 no autoscaler reports
   its node groups there; tests/integration/test_autoscaling.py watched a real one. ausweep uses no
   private Ray API.)
5. otherwise (KubeRay, a hand-started multi-node cluster, a driver off the head): no cap. A cap
   that is too small stops an autoscaler; no cap on a fixed cluster costs only queued trials.

The pure part (:func:`decide_max_concurrent`, :func:`max_trials`, :func:`launcher_capacity`)
needs no Ray.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ausweep.config import ConfigError

log = logging.getLogger(__name__)

# Environment that every Ray worker must see: offline switches and the shared cache location.
_PROPAGATED = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "AUSWEEP_CACHE", "MLFLOW_TRACKING_URI")


def init_ray(num_cpus: int | None = None, address: str | None = None) -> None:
    """Connect to ``address`` / ``$RAY_ADDRESS`` if given, else start a local Ray; no-op if already up."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict = {}
    if address is None:
        # A laptop run: no dashboard (saves ~1 s and a port). On a cluster the job's own
        # runtime_env (working dir, env vars) applies and must not be overridden here.
        env = worker_env(os.environ)
        kwargs.update(num_cpus=num_cpus, include_dashboard=False, runtime_env={"env_vars": env} if env else None)
    ray.init(address=address, log_to_driver=True, logging_level=logging.WARNING, **kwargs)
    log.info("ray: %s", ray.cluster_resources())


def worker_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment a local Ray gives its workers: ``_PROPAGATED`` from ``environ``, with no
    tracking credentials. Only the driver writes to MLflow, and a runtime_env's variables are
    shown in the Ray dashboard, so the URI travels without its ``user:pass@``."""
    from ausweep.track.store import strip_credentials

    env = {k: environ[k] for k in _PROPAGATED if k in environ}
    if "MLFLOW_TRACKING_URI" in env:
        env["MLFLOW_TRACKING_URI"] = strip_credentials(env["MLFLOW_TRACKING_URI"])
    return env


def cluster_gpus() -> float:
    import ray

    return float(ray.cluster_resources().get("GPU", 0.0))


# ----------------------------------------------------------------------------- trials at once

MAX_CONCURRENT_ENV = "AUSWEEP_MAX_CONCURRENT"
LAUNCHER_CONFIG = "~/ray_bootstrap_config.yaml"  # where `ray up` puts the cluster config on the head
_LAUNCHER_MAX_WORKERS = 2  # Ray's default for a cluster config's top-level max_workers
# Ray keeps fractional resources in units of 1e-4; 0.3 / 0.1 must count as 3, not 2.999...
_EPS = 1e-6


@dataclass(frozen=True)
class NodeGroup:
    """Nodes of one kind: what one node offers and how many there may be."""

    resources: Mapping[str, float]  # Ray resource names: "CPU", "GPU", "memory", custom ones
    max_count: int | None  # most nodes of this kind; None: no limit
    head: bool = False  # the head is not counted against the launcher's max_workers


@dataclass(frozen=True)
class Capacity:
    """The largest cluster trials can be placed on, and where that was learnt."""

    groups: tuple[NodeGroup, ...]
    source: str  # shown in the log and on the MLflow parent run
    max_workers: int | None = None  # cluster-wide cap on worker nodes (the launcher's max_workers)
    max_resources: Mapping[str, float] | None = None  # cluster-wide caps on resources
    fixed: bool = False  # nothing can add nodes: the groups are the nodes there are


@dataclass(frozen=True)
class ConcurrencyDecision:
    """Tune's ``max_concurrent_trials`` (None: no cap), why, and what the user should know."""

    max_concurrent: int | None
    reason: str
    warning: str | None = None


def trials_per_node(node: Mapping[str, float], trial: Mapping[str, float]) -> int:
    """How many trials asking for ``trial`` fit on one node offering ``node`` at once."""
    needs = {k: float(v) for k, v in trial.items() if v and float(v) > 0}
    if not needs:
        raise ValueError("a trial must ask for some resource")
    return min(int(math.floor(float(node.get(k, 0.0)) / v + _EPS)) for k, v in needs.items())


def max_trials(capacity: Capacity, trial: Mapping[str, float]) -> int | None:
    """Trials that fit at once on the largest cluster ``capacity`` allows; None: no limit."""
    fits = [(trials_per_node(g.resources, trial), g) for g in capacity.groups]
    if any(n > 0 and g.max_count is None for n, g in fits):
        return None
    total = sum(n * g.max_count for n, g in fits if g.head)
    workers = sorted(((n, g.max_count) for n, g in fits if not g.head and n > 0), reverse=True)
    budget = capacity.max_workers
    # Nodes count against one shared max_workers: fill it with the roomiest kinds first.
    for n, count in workers:
        take = count if budget is None else min(count, budget)
        total += n * take
        if budget is not None:
            budget -= take
    for k, cap in (capacity.max_resources or {}).items():
        need = float(trial.get(k, 0) or 0)
        if need > 0:
            total = min(total, int(math.floor(float(cap) / need + _EPS)))
    return total


def launcher_capacity(config: Mapping[str, Any], source: str) -> Capacity | None:
    """The largest cluster a Ray cluster-launcher config (``ray up`` YAML) may grow to; None if a
    node type does not say its resources (Ray would detect them when the node starts)."""
    types = config.get("available_node_types") or {}
    head = config.get("head_node_type")
    max_workers = int(config.get("max_workers", _LAUNCHER_MAX_WORKERS))
    groups = []
    for name, spec in types.items():
        spec = spec or {}
        if "resources" not in spec:
            return None
        is_head = name == head
        count = 1 if is_head else int(spec.get("max_workers", max_workers))
        groups.append(NodeGroup({k: float(v) for k, v in (spec["resources"] or {}).items()}, count, head=is_head))
    if not groups:
        return None
    return Capacity(tuple(groups), source, max_workers=max_workers)


def parse_max_concurrent(value: str, where: str = f"${MAX_CONCURRENT_ENV}") -> int:
    try:
        n = int(value.strip())
    except ValueError:
        raise ConfigError(where, "", f"expected a whole number of trials >= 1, got {value!r}") from None
    if n < 1:
        raise ConfigError(where, "", f"expected a whole number of trials >= 1, got {value!r}")
    return n


def decide_max_concurrent(trial: Mapping[str, float], file_value: int | None = None, env_value: str | None = None,
                          capacity: Capacity | None = None) -> ConcurrencyDecision:
    """The cap on trials at once; see the module docstring for the rule.

    ``trial``: what one trial asks for (``{"CPU": 1, "GPU": 0.5}``); ``file_value``: the sweep's
    ``tune.max_concurrent_trials``; ``env_value``: ``$AUSWEEP_MAX_CONCURRENT``; ``capacity``: the
    largest cluster, if known (:func:`cluster_capacity`).
    """
    if file_value is not None:
        return ConcurrencyDecision(file_value, "tune.max_concurrent_trials in the sweep file")
    if env_value is not None and env_value.strip():
        return ConcurrencyDecision(parse_max_concurrent(env_value), f"${MAX_CONCURRENT_ENV}")
    if not float(trial.get("GPU", 0) or 0) > 0:
        return ConcurrencyDecision(None, "trials ask for no GPU: as many at once as the CPUs allow")
    if capacity is None:
        return ConcurrencyDecision(None, "no cap: the cluster may autoscale and Ray does not say how far")
    n = max_trials(capacity, trial)
    if n is None:
        return ConcurrencyDecision(None, f"no cap: {capacity.source} sets no limit on nodes")
    if n == 0:
        where = "on the nodes there are, and nothing adds nodes" if capacity.fixed else "on any node it can start"
        return ConcurrencyDecision(None, f"no trial fits ({capacity.source})",
                                   f"no trial asking for {dict(trial)} fits {where} ({capacity.source}): "
                                   f"the trials will wait forever; lower `resources` in the sweep file")
    return ConcurrencyDecision(n, f"{n} trial(s) fit at once on {capacity.source}")


def cluster_capacity() -> Capacity | None:
    """The largest cluster this driver's trials can use, where it can be known (needs Ray up)."""
    import ray

    if _ray_started_here():
        # ray.init() started this Ray in this process: it has no autoscaler.
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        groups = tuple(NodeGroup(dict(n.get("Resources") or {}), 1) for n in nodes)
        return Capacity(groups, f"this process's own Ray ({len(groups)} node(s), no autoscaler)", fixed=True)
    path = Path(LAUNCHER_CONFIG).expanduser()
    if path.is_file():
        import yaml

        try:
            return launcher_capacity(yaml.safe_load(path.read_text()) or {}, f"the autoscaler's largest cluster ({path})")
        except (OSError, yaml.YAMLError, TypeError, ValueError, AttributeError) as e:
            log.warning("could not read %s (%s); not capping trials at once", path, e)
    return None


def _ray_started_here() -> bool:
    """Whether ray.init() in this process started the Ray it is connected to (rather than joining
    one). Only public APIs: a Ray that this process started runs its GCS server as a child of
    this process; joining an existing Ray starts no GCS server. (Ray's own flag for this sits in
    ``ray._private.worker``, which changes between Ray releases.)"""
    import psutil

    try:
        return any(c.name() == "gcs_server" for c in psutil.Process().children())
    except psutil.Error:
        return False


def max_concurrent_trials(trial: Mapping[str, float], file_value: int | None = None) -> ConcurrencyDecision:
    """:func:`decide_max_concurrent` for the running cluster and this process's environment."""
    env = os.environ.get(MAX_CONCURRENT_ENV)
    capacity = None
    if file_value is None and not (env and env.strip()) and float(trial.get("GPU", 0) or 0) > 0:
        capacity = cluster_capacity()
    return decide_max_concurrent(trial, file_value, env, capacity)
