"""The sweep driver of test_autoscaling.py, run as its own process (argv: sweep file, storage, out.json,
the autoscaler's cluster config).

It joins the autoscaling cluster named by ``$RAY_ADDRESS`` as ``python -m ausweep.sweep`` does
(``ausweep.runtime.init_ray``), records what ``ausweep.runtime`` decides about trials at once, runs
the sweep through the real CLI while a thread watches ``ray.nodes()``, waits for the idle worker
nodes to go, and writes what it saw to out.json. A process of its own, because a test session may
already be connected to another Ray.
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


def main(sweep: str, storage: str, out: str, config_file: str) -> int:
    from ausweep.runtime import cluster_capacity, init_ray, max_concurrent_trials
    from ausweep.sweep.cli import main as sweep_main

    init_ray()
    trial = {"CPU": 1.0, "GPU": 1.0}
    seen: dict = {"capacity": None, "samples": []}
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
    finally:
        stop.set()
        watcher.join(timeout=10)
        with open(out, "w") as f:
            json.dump(seen, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
