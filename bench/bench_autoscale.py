"""Benchmark: how long a trial that needs a new node waits for it, on a real Ray autoscaler.

    python bench/bench_autoscale.py                      # 4 trials, at most 2 worker nodes
    python bench/bench_autoscale.py --trials 6 --max-workers 3 --trial-seconds 5
    python bench/bench_autoscale.py --keep-logs /tmp/as  # keep the autoscaler's logs

The cluster is Ray's fake multi-node one (tests/autoscaling.py): the real autoscaler (v1) starting
worker raylets on this machine, looking every second (``AUTOSCALER_UPDATE_INTERVAL_S=1``, as Ray's
tests set it; a cloud cluster's default is 5 s). The head has no GPU; every trial asks for
``{"CPU": 1, "GPU": 1}`` (fake GPUs), which only a worker node has, so each trial's first start waits
for a node. The trials are trivial Tune function trials (``reuse_actors=True``, as the sweep runner
sets it) that sleep ``--trial-seconds`` and report the node they ran on.

Per trial, times from when Tune's loop first saw it (``on_step_begin``; the trial is pending):

* node: until the node it ran on first showed up alive in ``ray.nodes()`` (polled every 0.1 s by a
  thread in the driver), for the first trial on each new node; ``-`` for a trial that reused a
  node an earlier trial had waited for (all trials are added at once, so its wait is that of the
  trial before it on the node plus that trial's run);
* start: until Tune's ``on_trial_start`` for it (its actor is placed and the trial begins);
* run: until the trial function first ran (its own ``time.time()``, after the imports on the node).

At the end, how long the idle worker nodes took to go after the last trial finished
(``--idle-timeout`` s of idleness, then the autoscaler's next look).

Everything started here is stopped at the end, on an error and on Ctrl-C: the cluster by
tests/autoscaling.py (exactly its own processes, never ``ray stop``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# The driver, run in a process of its own (it joins the cluster through $RAY_ADDRESS).
_DRIVER = r'''
import json, sys, threading, time
import ray
from ray import tune

n_trials, trial_s, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
ray.init(logging_level="ERROR", log_to_driver=False)  # $RAY_ADDRESS: the cluster

def workers():
    return {n["NodeID"] for n in ray.nodes() if n.get("Alive") and "node:__internal_head__" not in n["Resources"]}

first_seen, samples, stop = {}, [], threading.Event()
def watch():
    while not stop.is_set():
        now, alive = time.time(), workers()
        for nid in alive:
            first_seen.setdefault(nid, now)
        samples.append((now, sorted(alive)))
        stop.wait(0.1)

events = {}
class Events(tune.Callback):
    def on_step_begin(self, iteration, trials, **info):  # Tune has no per-trial "added" hook
        for t in trials:
            events.setdefault(t.trial_id, {}).setdefault("add", time.time())
    def on_trial_start(self, iteration, trials, trial, **info):
        events.setdefault(trial.trial_id, {})["start"] = time.time()
    def on_trial_complete(self, iteration, trials, trial, **info):
        events.setdefault(trial.trial_id, {})["end"] = time.time()
    def on_trial_recover(self, iteration, trials, trial, **info):
        e = events.setdefault(trial.trial_id, {})
        e["retries"] = e.get("retries", 0) + 1

def trial(config):
    t = time.time()
    time.sleep(config["sleep"])
    tune.report({"ran_at": t, "node": ray.get_runtime_context().get_node_id()})

threading.Thread(target=watch, daemon=True).start()
before = workers()
tuner = tune.Tuner(tune.with_resources(trial, {"cpu": 1, "gpu": 1}),
                   param_space={"sleep": trial_s, "i": tune.grid_search(list(range(n_trials)))},
                   tune_config=tune.TuneConfig(reuse_actors=True),
                   run_config=tune.RunConfig(callbacks=[Events()], verbose=0, storage_path=out + ".tune",
                                             failure_config=tune.FailureConfig(max_failures=2)))  # as the runner
t0 = time.time()
grid = tuner.fit()
t_end = time.time()
rows = []
failed = 0
for r in grid:
    if r.error is not None or "ran_at" not in (r.metrics or {}):
        failed += 1
        continue
    e = events[r.metrics["trial_id"]]
    rows.append({"add": e["add"], "start": e.get("start"), "end": e.get("end"), "ran_at": r.metrics["ran_at"],
                 "node": r.metrics["node"], "node_up": first_seen.get(r.metrics["node"]), "retries": e.get("retries", 0)})
deadline = time.time() + 120
while time.time() < deadline and workers():
    time.sleep(0.2)
gone = time.time() if not workers() else None
stop.set()
json.dump({"failed": failed, "t0": t0, "t_end": t_end, "gone": gone, "before": sorted(before), "rows": rows,
           "max_workers_seen": max(len(a) for _, a in samples), "nodes_started": len(first_seen)}, open(out, "w"))
'''


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=4, help="trials, each asking for 1 CPU and 1 (fake) GPU")
    ap.add_argument("--max-workers", type=int, default=2, help="most worker nodes the autoscaler may start")
    ap.add_argument("--trial-seconds", type=float, default=3.0, help="how long each trial sleeps")
    ap.add_argument("--idle-timeout", type=float, default=10.0, help="seconds a worker node may idle before it goes")
    ap.add_argument("--keep-logs", type=Path, default=None, help="copy the cluster's Ray logs here at the end")
    args = ap.parse_args(argv)

    from tests.autoscaling import autoscaling_cluster

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    work = Path(tempfile.mkdtemp(prefix="ausweep-bench-as-"))
    workers = {"gpu_node": {"resources": {"CPU": 1, "GPU": 1, "object_store_memory": 80 * 1024 * 1024},
                            "max_workers": args.max_workers}}
    load = "{:.2f}".format(os.getloadavg()[0])
    try:
        with autoscaling_cluster({"CPU": 0}, workers, max_workers=args.max_workers, idle_timeout_s=args.idle_timeout,
                                 dir=work / "cluster") as cluster:
            out = work / "events.json"
            script = work / "driver.py"
            script.write_text(_DRIVER)
            run = subprocess.run([sys.executable, str(script), str(args.trials), str(args.trial_seconds), str(out)],
                                 env={**os.environ, **cluster.env}, cwd=work, capture_output=True, text=True, timeout=900)
            monitor = cluster.temp_dir / "session_latest" / "logs" / "monitor.log"
            removed = re.findall(r"Terminating the node with id \w+ and ip \w+\. \((\w+)\)",
                                 monitor.read_text(errors="replace") if monitor.is_file() else "")
            if args.keep_logs:
                shutil.copytree(cluster.temp_dir / "session_latest" / "logs", args.keep_logs, dirs_exist_ok=True)
            if run.returncode != 0 or not out.is_file():
                print(run.stdout[-3000:], run.stderr[-5000:], cluster.log_tail(), sep="\n", file=sys.stderr)
                return 1
        seen = json.loads(out.read_text())
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = sorted(seen["rows"], key=lambda r: r["add"])
    print(f"{args.trials} trials x {args.trial_seconds:g} s, max_workers {args.max_workers}, idle timeout "
          f"{args.idle_timeout:g} s, autoscaler v1 looking every 1 s; load {load}")
    reasons = {why: removed.count(why) for why in sorted(set(removed))}
    print(f"worker nodes started: {seen['nodes_started']}, at most {seen['max_workers_seen']} at once; "
          f"removed by the autoscaler: {reasons}")
    print(f"trials: {len(seen['rows'])} done, {seen['failed']} failed, "
          f"{sum(r['retries'] for r in seen['rows'])} retried (a node removed under them)")
    print("trial  node   pending->node s  pending->start s  pending->run s")
    to_node, to_start, to_run = [], [], []
    # The trial that waited for a node is the first to run on it; later ones reused it.
    first = {}
    for r in sorted(rows, key=lambda r: r["ran_at"]):
        first.setdefault(r["node"], id(r))
    for i, r in enumerate(rows):
        new = first[r["node"]] == id(r) and r["node_up"] is not None and r["node"] not in seen["before"]
        node_s = r["node_up"] - r["add"] if new else None
        start_s = r["start"] - r["add"] if r["start"] else None
        run_s = r["ran_at"] - r["add"]
        if new:
            to_node.append(node_s)
            to_start.append(start_s)
            to_run.append(run_s)
        print(f"{i:5d}  {r['node'][-5:]}  {_fmt(node_s):>15}  {_fmt(start_s):>16}  {_fmt(run_s):>14}")
    if to_node:
        print(f"trials that waited for a new node ({len(to_node)}): median pending->node {statistics.median(to_node):.1f} s, "
              f"->start {statistics.median(s for s in to_start if s is not None):.1f} s, "
              f"->run {statistics.median(to_run):.1f} s")
    last = max(r["end"] or r["ran_at"] for r in rows)
    gone = seen["gone"]
    print(f"idle worker nodes all gone {_fmt(gone - last if gone else None)} s after the last trial ended "
          f"(fit() returned {seen['t_end'] - last:.1f} s after it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
