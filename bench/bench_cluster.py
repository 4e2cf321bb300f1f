"""Benchmark: what the local multi-node cluster costs per trial, and how fast MLflow takes metrics.

    python bench/bench_cluster.py                       # 200 trivial trials, head + 1 worker (1 CPU each)
    python bench/bench_cluster.py --trials 500 --workers 2 --repeat 2
    python bench/bench_cluster.py --only mlflow         # the MLflow part alone (still starts the cluster's server)

(a) Scheduling overhead. ``--trials`` trivial trials (a function trainable that reports one
    metric and returns; 1 CPU each, ``reuse_actors=True`` as the sweep runner sets it) through a
    Ray Tune ``Tuner`` twice, each from a fresh driver process:

    * single node: ``ray.init(num_cpus=C)`` in the driver, C = all the cluster's CPUs;
    * multi node: ``python -m ausweep.cluster up-local``'s cluster (a head and ``--workers`` worker
      nodes, each its own raylet, ``--cpus-per-node`` CPUs each, token auth on), the driver
      joining it through the GCS address as a job driver does.

    Columns: connect = ``ray.init`` (start or join); wall = ``Tuner.fit()``; trials/s over that
    wall; wall/trial = wall / trials; slot-s/trial = wall x CPUs / trials (the CPU-seconds each
    trial holds, so with C trials at a time this is its share); loop = from the first trial's
    start to the last one's end (the wall less Tune's start-up and shutdown), also per trial in
    slot-ms; lifetime = from Tune's ``on_trial_start`` to ``on_trial_complete`` on the driver
    (median, p95: the rest of a trial's slot time is Tune's controller between trials); in-fn =
    Tune's ``time_total_s`` (inside the function, median, p95).

(b) MLflow logging throughput, to the tracking server the cluster starts (HTTP, its own SQLite
    store, one worker) and to a SQLite file directly, through :class:`ausweep.track.store.SweepTracker`
    where the sweep uses it:

    * runs/s: ``MlflowClient.create_run`` alone, and ``SweepTracker.child_for_trial`` (what each new
      trial costs the driver: a search for an existing child, the run with provenance tags, params);
    * metrics/s: ``log_metric`` one call per value; ``SweepTracker.log_metrics`` with a dict of
      ``--result-keys`` keys (one trial result, one ``log_batch``); ``SweepTracker.log_series``
      (one key, many steps, ``log_batch`` of 1000).

Everything started here is stopped at the end, on an error and on Ctrl-C / SIGTERM: the cluster
by ``ausweep.cluster.local.down`` (exactly its own processes), the driver subprocesses by their pid.
Timings on a shared machine are noisy: the load average is printed with each row.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def _pct(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


# ----------------------------------------------------------------------------- (a) the driver side

_SPANS: dict[str, list[float]] = {}  # trial id -> [start, end] on the driver's clock


def _trivial(config: dict) -> None:
    from ray import tune

    tune.report({"score": float(config["i"])})


def _driver(args: argparse.Namespace) -> None:
    """One Tune run of trivial trials; prints one JSON line of timings (run in a fresh process)."""
    import ray
    from ray import tune
    from ray.tune import Callback

    class Spans(Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            _SPANS[trial.trial_id] = [time.perf_counter(), float("nan")]

        def on_trial_complete(self, iteration, trials, trial, **info):
            _SPANS.setdefault(trial.trial_id, [float("nan"), float("nan")])[1] = time.perf_counter()

    from ausweep.runtime import init_ray

    t0 = time.perf_counter()
    if args.address:
        init_ray(address=args.address)
    else:
        init_ray(num_cpus=args.cpus)
    connect = time.perf_counter() - t0
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        cpus = int(ray.cluster_resources().get("CPU", 0))
        tuner = tune.Tuner(
            tune.with_resources(_trivial, {"cpu": 1}),
            param_space={"i": tune.grid_search(list(range(args.trials)))},
            tune_config=tune.TuneConfig(metric="score", mode="max", reuse_actors=True),
            run_config=tune.RunConfig(name="bench_cluster", storage_path=args.storage, callbacks=[Spans()], verbose=0),
        )
        t0 = time.perf_counter()
        grid = tuner.fit()
        wall = time.perf_counter() - t0
        in_fn = [float(r.metrics["time_total_s"]) for r in grid if r.error is None and r.metrics]
        spans = [e - s for s, e in _SPANS.values()]
        starts = [s for s, _ in _SPANS.values()]
        ends = [e for _, e in _SPANS.values()]
        done = sum(r.error is None for r in grid)
        print("BENCH_JSON " + json.dumps({
            "nodes": len(nodes), "cpus": cpus, "connect": connect, "wall": wall, "done": done,
            "errors": sum(r.error is not None for r in grid), "loop": max(ends) - min(starts),
            "life_med": statistics.median(spans), "life_p95": _pct(spans, 95),
            "fn_med": statistics.median(in_fn), "fn_p95": _pct(in_fn, 95),
        }), flush=True)
    finally:
        ray.shutdown()


# ----------------------------------------------------------------------------- (a) the orchestrating side

def _run_driver(cmd_args: list[str], env: dict[str, str], log: Path, timeout: float) -> dict:
    """Run ``_driver`` in a fresh process; stop it (by its pid) if we are stopped first."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--driver", *cmd_args]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=out, text=True, env=env, cwd=REPO)
        try:
            stdout, _ = proc.communicate(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    for line in stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line.removeprefix("BENCH_JSON "))
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
    raise RuntimeError(f"driver exited {proc.returncode} without a result; {log} ends:\n{tail}")


def _clean_env() -> dict[str, str]:
    drop = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_CHDIR_TO_TRIAL_DIR="0", PYTHONPATH=str(REPO),
)
    return env


SCHED_HEADER = ("| setup | nodes | CPUs | trials | connect s | wall s | trials/s | wall/trial ms | slot-s/trial "
                "| loop s | loop slot-ms/trial | lifetime median ms | lifetime p95 ms | in-fn median ms | in-fn p95 ms "
                "| load avg |")


def _sched_row(name: str, r: dict, trials: int) -> str:
    return (f"| {name} | {r['nodes']} | {r['cpus']} | {r['done']}/{trials} | {r['connect']:.1f} | {r['wall']:.1f} "
            f"| {trials / r['wall']:.2f} | {1000 * r['wall'] / trials:.0f} | {r['wall'] * r['cpus'] / trials:.3f} "
            f"| {r['loop']:.1f} | {1000 * r['loop'] * r['cpus'] / trials:.0f} | {1000 * r['life_med']:.0f} | {1000 * r['life_p95']:.0f} | {1000 * r['fn_med']:.1f} "
            f"| {1000 * r['fn_p95']:.1f} | {r['load']} |")


# ----------------------------------------------------------------------------- (b) MLflow

MLFLOW_HEADER = ("| store | create_run runs/s | child_for_trial runs/s | log_metric metrics/s "
                 "| log_metrics (1 result) metrics/s | results/s | log_series (batch 1000) metrics/s | load avg |")


def _rate(n: int, fn) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def bench_mlflow(uri: str, args: argparse.Namespace, label: str) -> dict:
    from ausweep.track.store import SweepTracker

    tracker = SweepTracker(f"bench_cluster_{label}_{int(time.time())}", uri=uri)
    client = tracker.client
    parent = tracker.start_parent("parent", {"bench": label}, {"ausweep.sweep": "bench_cluster"})
    runs = args.runs

    def raw_runs():
        for i in range(runs):
            client.create_run(tracker.experiment_id, run_name=f"raw-{i}")

    def child_runs():
        for i in range(runs):
            tracker.child_for_trial(f"key{i:05d}", f"trial-{i}", {"probe.lr": 1e-3 * (i + 1), "probe.dim": 128},
                                    {"ausweep.sweep": "bench_cluster"})

    out = {"create_run": _rate(runs, raw_runs), "child_for_trial": _rate(runs, child_runs)}
    run_id = tracker.child_for_trial("metrics", "metrics", {}, {})

    def one_by_one():
        for i in range(args.single):
            client.log_metric(run_id, "loss", 1.0 / (i + 1), step=i)

    keys = [f"m{j:02d}" for j in range(args.result_keys)]

    def results():
        for i in range(args.results):
            tracker.log_metrics(run_id, {k: float(i + j) for j, k in enumerate(keys)}, step=i)

    out["log_metric"] = _rate(args.single, one_by_one)
    out["results_per_s"] = _rate(args.results, results)
    out["log_metrics"] = out["results_per_s"] * len(keys)
    out["log_series"] = _rate(args.series, lambda: tracker.log_series(run_id, "curve", (1.0 / (i + 1) for i in range(args.series))))
    tracker.end(parent)
    # Everything arrived: the counts the store holds match what was sent.
    assert len(client.get_metric_history(run_id, "curve")) == args.series
    assert len(client.get_metric_history(run_id, "loss")) == args.single
    out["load"] = _load()
    return out


def _mlflow_row(name: str, r: dict) -> str:
    return (f"| {name} | {r['create_run']:.1f} | {r['child_for_trial']:.1f} | {r['log_metric']:.0f} "
            f"| {r['log_metrics']:.0f} | {r['results_per_s']:.1f} | {r['log_series']:.0f} | {r['load']} |")


# ----------------------------------------------------------------------------- main

def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200, help="trivial trials per Tune run")
    parser.add_argument("--workers", type=int, default=1, help="worker nodes besides the head")
    parser.add_argument("--cpus-per-node", type=int, default=1, help="CPUs each node offers (the single-node run gets them all)")
    parser.add_argument("--repeat", type=int, default=1, help="Tune runs per setup")
    parser.add_argument("--only", choices=["tune", "mlflow"], help="run one part (the cluster starts either way)")
    parser.add_argument("--runs", type=int, default=30, help="runs created per method (create_run, child_for_trial)")
    parser.add_argument("--single", type=int, default=300, help="log_metric calls")
    parser.add_argument("--results", type=int, default=100, help="log_metrics calls (one trial result each)")
    parser.add_argument("--result-keys", type=int, default=20, help="metrics in one trial result")
    parser.add_argument("--series", type=int, default=10000, help="values logged with log_series")
    parser.add_argument("--timeout", type=float, default=600, help="seconds one Tune run may take")
    parser.add_argument("--workdir", help="keep files here (default: a temp dir, removed at the end)")
    # The driver subprocess:
    parser.add_argument("--driver", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--cpus", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--storage", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.driver:
        _driver(args)
        return
    if args.trials < 1 or args.workers < 0:
        parser.error("--trials must be >= 1 and --workers >= 0")

    import mlflow
    import ray

    from ausweep.cluster import local

    signal.signal(signal.SIGTERM, _interrupt)  # a SIGTERM tears down like Ctrl-C
    workdir = Path(args.workdir).resolve() if args.workdir else Path(tempfile.mkdtemp(prefix="bench_cluster-"))
    workdir.mkdir(parents=True, exist_ok=True)
    cluster_dir = workdir / "cluster"
    total_cpus = (1 + args.workers) * args.cpus_per_node
    print(f"bench_cluster: ray {ray.__version__}, mlflow {mlflow.__version__}, {os.cpu_count()} cores; "
          f"{args.trials} trivial trials, 1 CPU each; cluster: head + {args.workers} worker(s) x "
          f"{args.cpus_per_node} CPU; single node: ray.init(num_cpus={total_cpus}); load avg {_load()}", flush=True)
    sched: list[tuple[str, dict]] = []
    mlf: list[tuple[str, dict]] = []
    cluster_up = False
    try:
        if args.only != "mlflow":
            for rep in range(args.repeat):
                r = _run_driver(["--trials", str(args.trials), "--cpus", str(total_cpus),
                                 "--storage", str(workdir / f"tune-single-{rep}")],
                                _clean_env(), workdir / f"driver-single-{rep}.log", args.timeout)
                r["load"] = _load()
                sched.append(("single node `ray.init()`", r))
                print(_sched_row(*sched[-1], args.trials), flush=True)

        t0 = time.perf_counter()
        state = local.up(local.LocalClusterConfig(dir=str(cluster_dir), workers=args.workers,
                                                  cpus_per_node=args.cpus_per_node, mlflow_port=0),
                         log=lambda m: print(m, file=sys.stderr, flush=True))
        cluster_up = True
        print(f"local cluster up in {time.perf_counter() - t0:.1f} s: GCS {state['ray']['address']}, "
              f"MLflow {state['mlflow']['tracking_uri']}", flush=True)

        if args.only != "mlflow":
            env = {**_clean_env(), **{k: v for k, v in local.exports(state).items() if k.startswith("RAY_AUTH")}}
            for rep in range(args.repeat):
                r = _run_driver(["--trials", str(args.trials), "--address", state["ray"]["address"],
                                 "--storage", str(workdir / f"tune-multi-{rep}")],
                                env, workdir / f"driver-multi-{rep}.log", args.timeout)
                r["load"] = _load()
                sched.append((f"local cluster (head + {args.workers} worker)", r))
                print(_sched_row(*sched[-1], args.trials), flush=True)

        if args.only != "tune":
            server = state["mlflow"]["tracking_uri"]
            # The server asks for a login (up-local's default): MLflow's client reads it from here.
            os.environ.update({k: v for k, v in local.exports(state, password=True).items() if k.startswith("MLFLOW_TRACKING_")
                               and k != "MLFLOW_TRACKING_URI"})
            mlf.append((f"server {server} (HTTP)", bench_mlflow(server, args, "server")))
            print(_mlflow_row(*mlf[-1]), flush=True)
            db = f"sqlite:///{workdir / 'bench.db'}"
            mlf.append(("sqlite file, direct", bench_mlflow(db, args, "sqlite")))
            print(_mlflow_row(*mlf[-1]), flush=True)
    finally:
        if cluster_up or local.state_path(cluster_dir).is_file():
            try:
                stopped = local.down(cluster_dir)
                print(f"local cluster down: {len(stopped['stopped'])} process(es) stopped", file=sys.stderr, flush=True)
            except local.ClusterError as e:
                print(f"could not stop the local cluster: {e}", file=sys.stderr, flush=True)
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    if sched:
        print("\n" + SCHED_HEADER)
        print("|" + "---|" * (SCHED_HEADER.count("|") - 1))
        for name, r in sched:
            print(_sched_row(name, r, args.trials))
    if mlf:
        print("\n" + MLFLOW_HEADER)
        print("|" + "---|" * (MLFLOW_HEADER.count("|") - 1))
        for name, r in mlf:
            print(_mlflow_row(name, r))
        print(f"(runs: {args.runs} per method; log_metric: {args.single} calls; log_metrics: {args.results} results x "
              f"{args.result_keys} keys; log_series: {args.series} values)")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))  # run as a script from any folder, installed or not
    main()
