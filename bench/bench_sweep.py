"""Benchmark: what Ray Tune + MLflow add to each trial of a probe sweep (bring-your-own embeddings).

    python bench/bench_sweep.py                         # 100 grid points, 50 epochs, C=144 dt=768 da=527
    python bench/bench_sweep.py --points 20 --epochs 300
    python bench/bench_sweep.py --concurrency 1 --repeat 2

It writes two per-class .npz embedding files (synthetic: audio is a noisy linear image of text, so
the probes have something to learn) and a temporary sweep YAML for the ``probe`` study with
``embeddings.text`` / ``embeddings.audio`` set, so no extraction runs and every trial is one call
of :func:`ausweep.probe.run`. The search space is a grid of ``--points`` points over probe.lr x
probe.temperature x probe.weight_decay x probe.shared_dim (100 = 5 x 5 x 2 x 2). The sweep runs
through :func:`ausweep.sweep.runner.run_sweep` on a local Ray with a fresh SQLite MLflow store.

Reported per run:

* wall: the whole ``run_sweep`` call (validation, Tune, MLflow, the summary plots); Ray's own
  start-up is timed apart, before it. trials/min is over that wall.
* loop: from the first MLflow child run's start to the last one's end; fixed = wall - loop.
* in-trial: the sum of Tune's ``time_total_s`` (the trial function: config, npz load, probe,
  result); probe: the sum of :func:`ausweep.probe.run` times measured in this process on one
  idle thread, one point per shared_dim (lr, temperature, weight decay do not change the cost).
* overhead/trial = (loop x concurrency - sum of in-trial or probe time) / trials: the slot-seconds
  each trial spends outside its own work, which with ``--concurrency 1`` is (loop - sum) / trials.
  The summary also gives it over the whole wall, fixed costs included.

It checks that the MLflow store holds one FINISHED child run per trial under the sweep's parent.
Timings on a shared machine are noisy: the load average is printed with every row.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np

# Grid axes in the order they receive factors of --points; shared_dim last (it sets the cost).
AXES = ("probe.lr", "probe.temperature", "probe.weight_decay", "probe.shared_dim")


def _load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def _prime_factors(n: int) -> list[int]:
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out + ([n] if n > 1 else [])


def grid(points: int) -> dict[str, list]:
    """A grid with exactly ``points`` points: the prime factors of ``points``, largest first, each
    to the axis with the fewest values so far (100 -> lr 5, temperature 5, weight decay 2, shared_dim 2)."""
    sizes = dict.fromkeys(AXES, 1)
    for f in sorted(_prime_factors(points), reverse=True):
        axis = min(AXES, key=lambda a: (sizes[a], AXES.index(a)))
        sizes[axis] *= f

    def geom(lo: float, hi: float, n: int) -> list[float]:
        return [float(f"{v:.3g}") for v in (np.geomspace(lo, hi, n) if n > 1 else [np.sqrt(lo * hi)])]

    dims = sorted([64, 128, 32, 256, 16, 512, 8, 1024][: sizes["probe.shared_dim"]]) if sizes["probe.shared_dim"] <= 8 \
        else list(range(16, 16 + 8 * sizes["probe.shared_dim"], 8))
    return {
        "probe.lr": geom(3e-4, 1e-2, sizes["probe.lr"]),
        "probe.temperature": geom(0.03, 0.3, sizes["probe.temperature"]),
        "probe.weight_decay": geom(1e-5, 1e-2, sizes["probe.weight_decay"]),
        "probe.shared_dim": dims,
    }


def make_embeddings(workdir: Path, classes: int, text_dim: int, audio_dim: int, seed: int = 0) -> tuple[Path, Path, list[str], np.ndarray, np.ndarray]:
    from ausweep.data.npz import save_embeddings_npz

    rng = np.random.default_rng(seed)
    labels = [f"class_{i:03d}" for i in range(classes)]
    text = rng.standard_normal((classes, text_dim)).astype(np.float32)
    mixing = rng.standard_normal((text_dim, audio_dim)) / np.sqrt(text_dim)
    audio = (text @ mixing + 0.5 * rng.standard_normal((classes, audio_dim))).astype(np.float32)
    tpath, apath = workdir / "bench_text.npz", workdir / "bench_audio.npz"
    save_embeddings_npz(tpath, labels, text)
    # The audio file lists its classes in another order: the sweep aligns them by label.
    order = rng.permutation(classes)
    save_embeddings_npz(apath, [labels[i] for i in order], audio[order])
    return tpath, apath, labels, text, audio


def write_sweep(path: Path, text: Path, audio: Path, space: dict[str, list], epochs: int, concurrency: int | None) -> Path:
    import yaml

    spec = {
        "description": "bench_sweep: Ray Tune + MLflow overhead per trial, bring-your-own embeddings",
        "study": "probe",
        "overrides": {
            "embeddings": {"text": str(text), "audio": str(audio)},
            "extract": {"num_actors": 0, "progress": False},
            "probe": {"epochs": epochs},
        },
        "search_space": {k: {"grid": v} for k, v in space.items()},
        "tune": {"metric": "val/acc@1", "mode": "max", "max_concurrent_trials": concurrency},
        "resources": {"cpu": 1, "gpu": 0},
    }
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def calibrate(text: np.ndarray, audio: np.ndarray, labels: list[str], space: dict[str, list], epochs: int, repeat: int) -> dict[int, float]:
    """Seconds of one ``ausweep.probe.run`` per shared_dim, on one thread (as a 1-CPU trial has), best of ``repeat``."""
    import torch

    from ausweep.probe import ProbeConfig, run

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = {}
        for k in space["probe.shared_dim"]:
            cfg = ProbeConfig(lr=space["probe.lr"][0], temperature=space["probe.temperature"][0],
                              weight_decay=space["probe.weight_decay"][0], shared_dim=k, epochs=epochs)
            run(text, audio, labels, cfg)  # first sight of a shape costs extra (oneDNN): not timed
            best = float("inf")
            for _ in range(repeat):
                start = time.perf_counter()
                run(text, audio, labels, cfg)
                best = min(best, time.perf_counter() - start)
            out[k] = best
        return out
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def _quiet(log: Path | None):
    """Send this process's stdout and stderr (Tune's progress tables, forwarded worker logs) to ``log``."""
    if log is None:
        yield
        return
    with open(log, "w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        try:
            yield
        except BaseException:
            f.flush()
            tail = log.read_text().splitlines()[-40:]
            print("\n".join([f"--- last lines of {log}:", *tail]), file=sys.__stderr__)
            raise


def mlflow_children(uri: str, parent_id: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    parent = client.get_run(parent_id)
    return client.search_runs([parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'",
                              max_results=50000)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100, help="grid points = trials")
    parser.add_argument("--epochs", type=int, default=50, help="probe.epochs of every trial")
    parser.add_argument("--classes", type=int, default=144, help="number of classes C")
    parser.add_argument("--text-dim", type=int, default=768)
    parser.add_argument("--audio-dim", type=int, default=527)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance (one per trial)")
    parser.add_argument("--concurrency", type=int, default=None, help="tune.max_concurrent_trials (default: as many as the CPUs allow)")
    parser.add_argument("--calibrate", type=int, default=3, help="timed probe runs per shared_dim, best kept")
    parser.add_argument("--repeat", type=int, default=1, help="run the whole sweep this many times (fresh MLflow store each)")
    parser.add_argument("--workdir", help="keep files here (default: a temp dir, removed at the end)")
    parser.add_argument("--verbose", action="store_true", help="show Tune's progress output (default: into a log file in the work dir)")
    args = parser.parse_args(argv)
    if args.points < 1:
        parser.error("--points must be >= 1")

    import mlflow
    import ray

    from ausweep.runtime import init_ray
    from ausweep.sweep.runner import run_sweep

    workdir = Path(args.workdir).resolve() if args.workdir else Path(tempfile.mkdtemp(prefix="bench_sweep-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        space = grid(args.points)
        tpath, apath, labels, text, audio = make_embeddings(workdir, args.classes, args.text_dim, args.audio_dim)
        concurrency = min(args.concurrency or args.cpus, args.cpus, args.points)
        sweep_file = write_sweep(workdir / "bench_sweep.yaml", tpath, apath, space, args.epochs, args.concurrency)
        probe_s = calibrate(text, audio, labels, space, args.epochs, args.calibrate)

        # Each repeat gets its own store; set before Ray starts so workers would see the same one.
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'mlflow-1.db'}"
        start = time.perf_counter()
        init_ray(num_cpus=args.cpus)
        ray_start = time.perf_counter() - start

        sizes = " x ".join(f"{k.split('.')[1]} {len(v)}" for k, v in space.items())
        lines = [
            (f"ausweep sweep overhead: {args.points} trials ({sizes}), C={args.classes} dt={args.text_dim} "
             f"da={args.audio_dim} epochs={args.epochs}; ray {ray.__version__}, mlflow {mlflow.__version__}; "
             f"{os.cpu_count()} cores, Ray CPUs={args.cpus}, concurrency {concurrency}; ray start {ray_start:.1f} s"),
            "probe.run alone, 1 thread: " + ", ".join(f"shared_dim {k}: {v:.3f} s" for k, v in probe_s.items())
            + f"; load avg {_load()}",
        ]
        header = (
            f"{'run':>3} {'trials':>6} {'wall s':>7} {'trials/min':>10} {'loop s':>7} {'fixed s':>7} "
            f"{'in-trial s':>10} {'probe s':>8} {'ovh/trial vs in-trial':>21} {'vs probe':>9} {'children':>8} {'load avg':>16}"
        )
        lines += [header, "-" * len(header)]
        print("\n".join(lines), flush=True)

        results = []
        for rep in range(args.repeat):
            uri = f"sqlite:///{workdir / f'mlflow-{rep + 1}.db'}"
            os.environ["MLFLOW_TRACKING_URI"] = uri
            start = time.perf_counter()
            with _quiet(None if args.verbose else workdir / f"tune-{rep + 1}.log"):
                outcome = run_sweep(str(sweep_file), storage=str(workdir / "runs"))
            wall = time.perf_counter() - start

            children = mlflow_children(uri, outcome.parent_run_id)
            finished = [c for c in children if c.info.status == "FINISHED"]
            starts = [c.info.start_time for c in children]
            ends = [c.info.end_time for c in children if c.info.end_time]
            loop = (max(ends) - min(starts)) / 1000 if children and ends else float("nan")
            n = len(outcome.rows)
            in_trial = sum(float(r["seconds"] if r.get("seconds") is not None else float("nan")) for r in outcome.rows)
            probe = sum(probe_s[int(r["config"]["probe"]["shared_dim"])] for r in outcome.rows)
            # Slot-seconds: with c trials at a time, c seconds of trial capacity pass per wall second.
            ovh_trial = (loop * concurrency - in_trial) / max(n, 1)
            ovh_probe = (loop * concurrency - probe) / max(n, 1)
            ovh_wall = (wall * concurrency - probe) / max(n, 1)
            results.append({"wall": wall, "ovh_trial": ovh_trial, "ovh_probe": ovh_probe, "ovh_wall": ovh_wall,
                            "fixed": wall - loop, "n": n})
            lines.append(
                f"{rep + 1:>3} {n:>6} {wall:>7.1f} {60 * n / wall:>10.1f} {loop:>7.1f} {wall - loop:>7.1f} "
                f"{in_trial:>10.1f} {probe:>8.1f} {ovh_trial:>21.3f} {ovh_probe:>9.3f} "
                f"{f'{len(finished)}/{len(children)}':>8} {_load():>16}"
            )
            print(lines[-1], flush=True)
            if outcome.n_errors or n != args.points or len(children) != args.points or len(finished) != args.points:
                raise SystemExit(
                    f"expected {args.points} finished trials and MLflow children; got {n} trials, {outcome.n_errors} "
                    f"errors, {len(children)} children ({len(finished)} FINISHED) in {uri}"
                )

        best = min(results, key=lambda r: r["wall"])
        lines.append(
            f"\nMLflow: {best['n']} FINISHED child runs under the sweep's parent run, every repeat.\n"
            f"overhead per trial (best of {args.repeat}): {best['ovh_trial']:.3f} s outside the trial function, "
            f"{best['ovh_probe']:.3f} s beyond the probe math, {best['ovh_wall']:.3f} s over the whole run "
            f"({best['fixed']:.1f} s fixed costs included); goal < 1 s. load avg at end {_load()}"
        )
        if args.verbose:  # the whole table again, in one piece after Tune's long output
            print("\n" + "\n".join(lines))
        else:
            print(lines[-1])
    finally:
        ray.shutdown()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
