"""Benchmark: audio extraction throughput with 1 vs 2 Ray actors, cold and with a warm cache.

    python bench/bench_extract.py                          # whisper-tiny-en, 8 clips x 23 demo classes
    python bench/bench_extract.py --model logmel-stats --clips-per-class 20
    python bench/bench_extract.py --actors 1 2 --repeat 3 --shard-size 8

For each actor count it starts a real local Ray (``init_ray(num_cpus=--cpus)``), extracts every
clip of the generated demo sound set into a fresh cache directory and times two phases of what
:func:`ausweep.extract.run.audio_clip_embeddings` does on a cold cache:

* start-up: spawning the actors and loading one model replica in each (``Extractor.ready``);
* steady state: the shards, handed out by an ``ActorPool`` as in ``_run_shards``.

End to end is their sum. It then calls ``audio_clip_embeddings`` again on the same cache (warm:
no actor, no model, only cache reads) and checks that every run gave the same embeddings.
"actor CPU" is the CPU time the actors got per wall second of the shard phase, per actor: near
100 % with one thread each means they had their cores; well below means they waited for other
processes (a busy shared machine), which caps any speed-up.

What to expect: each actor asks Ray for ``--cpus-per-actor`` CPUs and the ``Extractor`` sets its
torch threads to that reservation, so actors do not oversubscribe the cores even when
OMP_NUM_THREADS is exported (the table prints the torch threads each actor really has). A Whisper forward pass is a 30 s
window whatever the clip length, so whisper-tiny-en is compute-bound and should scale with the
actors; logmel-stats and tiny-ast are so cheap that Ray's per-shard round trip dominates.
The shard size sets the scheduling grain: 2 actors cannot beat 1 by more than
n_shards / ceil(n_shards / 2). Timings on a shared machine are noisy; the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np


def _load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def cold_run(model: str, soundset, cfg, max_seconds: float | None) -> dict:
    """Extract every clip into an empty cache with ``cfg.num_actors`` actors, timing start-up and shards.

    Mirrors ``ausweep.extract.run._run_shards`` (same actors, same ActorPool, same cache entries)
    with a clock between the two phases.
    """
    import ray
    from ray.util import ActorPool

    from ausweep.extract.run import (
        _make_workers,
        _release,
        _shard_spec,
        audio_model_spec,
    )

    paths = [c.path for c in soundset.clips]
    shards = [paths[i : i + cfg.shard_size] for i in range(0, len(paths), cfg.shard_size)]
    specs = [_shard_spec(audio_model_spec(model, None, max_seconds), s) for s in shards]
    jobs = list(zip(specs, shards))

    start = time.perf_counter()
    workers = _make_workers("audio", model, None, cfg, min(cfg.num_actors, len(jobs)))
    ready = time.perf_counter()
    try:
        threads = ray.get([w.__ray_call__.remote(lambda self: __import__("torch").get_num_threads()) for w in workers])
        cpu0 = ray.get([w.__ray_call__.remote(lambda self: time.process_time()) for w in workers])
        t0 = time.perf_counter()
        done = sum(ActorPool(workers).map_unordered(lambda a, job: a.audio_shard.remote(job[0], job[1], max_seconds), jobs))
        t1 = time.perf_counter()
        cpu1 = ray.get([w.__ray_call__.remote(lambda self: time.process_time()) for w in workers])
    finally:
        _release(workers)
    assert done == len(paths), (done, len(paths))
    cache = cfg.cache()
    emb = np.concatenate([cache.load(s)["embeddings"] for s in specs], axis=0)
    # CPU seconds the actors got per wall second of the shard phase: below the thread count
    # means they waited for a core (other processes on a shared machine).
    cpu_share = (sum(cpu1) - sum(cpu0)) / (t1 - t0) / len(workers)
    return {"startup_s": ready - start, "shards_s": t1 - t0, "threads": threads, "cpu_share": cpu_share,
            "emb": emb, "n_shards": len(jobs)}


def warm_run(model: str, soundset, cfg, max_seconds: float | None) -> tuple[float, np.ndarray]:
    """The public entry point again on a cache that holds every shard: reads only."""
    from ausweep.extract import audio_clip_embeddings

    start = time.perf_counter()
    emb = audio_clip_embeddings(model, None, soundset, cfg, max_seconds)
    return time.perf_counter() - start, emb


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="whisper-tiny-en", help="audio model: whisper-tiny-en, logmel-stats, tiny-ast, ...")
    parser.add_argument("--clips-per-class", type=int, default=8, help="demo clips per class (23 classes)")
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2], help="actor counts to time; the first is the speed-up baseline")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance")
    parser.add_argument("--cpus-per-actor", type=float, default=1.0)
    parser.add_argument("--shard-size", type=int, default=8, help="clips per shard (the default config's 32 is coarse for a demo-sized set)")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per forward pass inside an actor")
    parser.add_argument("--max-seconds", type=float, default=4.0, help="clips are truncated to this (as in configs/probe/demo.yaml)")
    parser.add_argument("--repeat", type=int, default=1, help="cold runs per actor count, interleaved; the table shows each, the summary the best")
    parser.add_argument("--workdir", help="where the demo sounds and caches go (default: a temp dir, removed at the end)")
    args = parser.parse_args(argv)

    import ray
    import torch

    from ausweep.data.demo import make_demo_soundset
    from ausweep.extract import ExtractConfig
    from ausweep.runtime import init_ray

    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench_extract-"))
    try:
        # The demo set goes into the work dir, not the shared ~/.cache one: asking the default
        # folder for another clips_per_class would replace other people's demo set.
        soundset = make_demo_soundset(workdir / "demo_sounds", clips_per_class=args.clips_per_class)
        n_clips = len(soundset.clips)
        t = time.perf_counter()
        init_ray(num_cpus=args.cpus)
        ray_start = time.perf_counter() - t

        print(
            f"ausweep extraction: model={args.model} clips={n_clips} ({len(soundset.classes)} classes x "
            f"{args.clips_per_class}) shard={args.shard_size} batch={args.batch_size} max_seconds={args.max_seconds}\n"
            f"torch {torch.__version__}, ray {ray.__version__}, {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores, Ray CPUs={args.cpus}, cpus/actor={args.cpus_per_actor:g}, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; ray start {ray_start:.1f} s; "
            f"load avg {_load()}"
        )
        header = (
            f"{'actors':>6} {'run':>3} {'threads':>8} {'start-up s':>10} {'shards s':>9} {'steady clip/s':>13} "
            f"{'actor CPU':>9} {'end-to-end s':>12} {'e2e clip/s':>10} {'warm s':>7} {'warm clip/s':>11} {'load avg':>16}"
        )
        print(header)
        print("-" * len(header))

        best: dict[int, dict] = {}
        reference = None
        max_diff = 0.0
        for rep in range(args.repeat):
            for n in args.actors:
                cfg = ExtractConfig(
                    num_actors=n, cpus_per_actor=args.cpus_per_actor, shard_size=args.shard_size,
                    batch_size=args.batch_size, cache_dir=str(workdir / f"cache-{n}-{rep}"), progress=False,
                )
                r = cold_run(args.model, soundset, cfg, args.max_seconds)
                warm_s, warm_emb = warm_run(args.model, soundset, cfg, args.max_seconds)
                if not np.array_equal(warm_emb, r["emb"]):
                    raise SystemExit(f"warm cache read back different embeddings ({n} actors)")
                if reference is None:
                    reference = r["emb"]
                max_diff = max(max_diff, float(np.abs(r["emb"] - reference).max()))
                if not np.allclose(r["emb"], reference, rtol=1e-4, atol=1e-5):
                    raise SystemExit(f"{n} actors gave different embeddings: max |diff| {max_diff:.2e}")
                e2e = r["startup_s"] + r["shards_s"]
                threads = "/".join(str(t) for t in r["threads"])
                print(
                    f"{n:>6} {rep + 1:>3} {threads:>8} {r['startup_s']:>10.2f} {r['shards_s']:>9.2f} "
                    f"{n_clips / r['shards_s']:>13.2f} {r['cpu_share']:>9.0%} {e2e:>12.2f} {n_clips / e2e:>10.2f} {warm_s:>7.3f} "
                    f"{n_clips / warm_s:>11.0f} {_load():>16}",
                    flush=True,
                )
                if sum(r["threads"]) > args.cpus:
                    print(f"  warning: {sum(r['threads'])} torch threads on {args.cpus} CPUs (oversubscribed)")
                if n not in best or r["shards_s"] < best[n]["shards_s"]:
                    best[n] = {**r, "e2e": e2e}
                shutil.rmtree(workdir / f"cache-{n}-{rep}", ignore_errors=True)

        print(f"\nembeddings: every run within max |diff| {max_diff:.1e} of the first (allclose), warm reads identical; "
              f"{best[args.actors[0]]['n_shards']} shards")
        base_n = args.actors[0]
        for n in args.actors[1:]:
            steady = best[base_n]["shards_s"] / best[n]["shards_s"]
            e2e = best[base_n]["e2e"] / best[n]["e2e"]
            print(f"speed-up {n} vs {base_n} actor(s), best of {args.repeat}: steady state {steady:.2f}x, "
                  f"end to end {e2e:.2f}x (goal >= 1.6x steady on 2 cores)")
        print(f"load avg at end {_load()}")
    finally:
        ray.shutdown()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
