"""The sweep driver of test_autoscaling.py, run as its own process (argv: sweep file, storage, out.json,
the autoscaler's cluster config).

It joins the autoscaling cluster named by ``$RAY_ADDRESS`` as ``python -m ausweep.sweep`` does
(``ausweep.runtime.init_ray``), records what ``ausweep.runtime`` decides about trials at once, runs
the sweep through the real CLI while a thread watches ``ray.nodes()``, waits for the idle worker
nodes to go, checks that ausweep reads node groups from the GCS, and writes what it saw to out.json. A process of its own, because a test session
may already be connected to another Ray.
"""

from __future__ import annotations

import json
import sys
import threading
import time


def _workers() -> dict[str, dict[str, float]]:
    import ray

    return {n["NodeID"]: n["Resources"] for n in ray.nodes()
            if n.get("Alive") and "node:__internal_head__" not in (n.get("Resources") or {})}


def _report_and_read_back(config_file: str) -> dict:
    """Report the autoscaler's node groups to the GCS, as an autoscaler that reports them does
    (Ray 2.60's own does not), and read them back through ausweep's one private Ray call."""
    import ray
    from ray.core.generated import autoscaler_pb2

    from ausweep.runtime import _gcs_capacity, max_trials

    config = json.loads(open(config_file).read())
    msg = autoscaler_pb2.ClusterConfig()
    for name, spec in config["available_node_types"].items():
        group = msg.node_group_configs.add()
        group.name = name
        group.resources.update({k: int(v) for k, v in spec["resources"].items()})
        group.min_count = int(spec.get("min_workers", 0))
        group.max_count = 1 if name == config["head_node_type"] else int(spec["max_workers"])
    # Private, as is the call under test; the test's Ray version is pinned with it.
    ray._private.worker.global_worker.gcs_client.report_cluster_config(msg.SerializeToString())
    cap = _gcs_capacity()
    return {"source": cap.source, "groups": sorted(([dict(g.resources), g.max_count] for g in cap.groups), key=lambda g: g[1]),
            "max_trials": max_trials(cap, {"CPU": 1.0, "GPU": 1.0})}


def main(sweep: str, storage: str, out: str, config_file: str) -> int:
    from ausweep.runtime import _gcs_capacity, cluster_capacity, init_ray, max_concurrent_trials
    from ausweep.sweep.cli import main as sweep_main

    init_ray()
    trial = {"CPU": 1.0, "GPU": 1.0}
    seen: dict = {"gcs_capacity": repr(_gcs_capacity()), "capacity": None, "samples": []}
    cap = cluster_capacity()
    if cap is not None:
        seen["capacity"] = {"source": cap.source, "max_workers": cap.max_workers, "fixed": cap.fixed,
                            "groups": [[dict(g.resources), g.max_count, g.head] for g in cap.groups]}
    decision = max_concurrent_trials(trial)
    seen["decision"] = {"max_concurrent": decision.max_concurrent, "reason": decision.reason}

    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen["samples"].append([time.time(), _workers()])
            stop.wait(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    t0 = time.time()
    watcher.start()
    try:
        seen["rc"] = sweep_main([sweep, "--storage", storage])
        seen["sweep_s"] = [t0, time.time()]
        deadline = time.time() + 90
        while time.time() < deadline and seen["samples"][-1][1]:
            time.sleep(0.5)
        seen["gcs_reported"] = _report_and_read_back(config_file)
    finally:
        stop.set()
        watcher.join(timeout=10)
        with open(out, "w") as f:
            json.dump(seen, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
