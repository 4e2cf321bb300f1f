"""Where work runs: connecting to (or starting) Ray, and the shared settings every process needs.

Locally, ``init_ray()`` starts a Ray instance for this process; on a cluster (``ray job submit``
sets ``RAY_ADDRESS``) it connects to the running cluster. Nothing here runs at import time.
"""

from __future__ import annotations

import logging
import os

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
        env = {k: os.environ[k] for k in _PROPAGATED if k in os.environ}
        kwargs.update(num_cpus=num_cpus, include_dashboard=False, runtime_env={"env_vars": env} if env else None)
    ray.init(address=address, log_to_driver=True, logging_level=logging.WARNING, **kwargs)
    log.info("ray: %s", ray.cluster_resources())


def cluster_gpus() -> float:
    import ray

    return float(ray.cluster_resources().get("GPU", 0.0))
