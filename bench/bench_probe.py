"""Benchmark: S contrastive probes trained in one batched computation vs one at a time; and the
probe on planted relations at the paper's sizes.

    python bench/bench_probe.py               # S in 5 25 100, C=144, dt=768, da=527, 300 epochs
    python bench/bench_probe.py --splits 5 --epochs 50 --device cuda
    python bench/bench_probe.py --planted     # held-out acc@1 on planted relations, both spectra

For each S it trains the S split probes of :func:`ausweep.probe.run` twice, from the same initial
weights: once batched (one call of ``train_probes`` with S probes) and once sequentially (S calls
with one probe each), each shape warmed up first. It prints wall time, probes per second, the
speed-up, the largest parameter difference and whether held-out accuracy@1/@5 per split agree.
Synthetic data: audio is a noisy linear image of text, so the probes have something to learn.

What to expect: batching removes per-step overhead (Python, autograd, optimizer and kernel
launches), not arithmetic. On a CPU one probe step is already mostly matmul and AdamW memory
traffic, so the gain is about 2x (measured on 2 cores); on a GPU, where one small probe step is
launch-bound, it should be far larger. Timings on a shared machine are noisy: run it when idle.

``--planted`` runs :func:`ausweep.probe.run` with default settings on
:func:`ausweep.probe.planted.planted_pair` (100 classes, 768-d text, 527-d audio = text @ W + 10 %
noise, 70 training classes per split), flat and decaying spectra, with the maps restricted to the
training span (the default) and not, and prints validation, held-out, permutation-control and
Procrustes accuracy@1, plus the held-out accuracy@1 with the audio rows shuffled.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time

import numpy as np
import torch

from ausweep.probe import (
    ProbeConfig,
    accuracy_at_k,
    class_scores,
    init_params,
    make_splits,
    masked_ranks,
    run,
    split_masks,
    train_probes,
)
from ausweep.probe.planted import planted_pair


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _accuracies(probes, text, audio, masks) -> np.ndarray:
    """(S, 2) held-out accuracy@1 and @5 of each probe (candidates: all classes)."""
    ranks = masked_ranks(class_scores(probes, text, audio), ~masks, np.ones_like(masks))
    return np.stack([accuracy_at_k(ranks, 1), accuracy_at_k(ranks, 5)], axis=1)


def bench_one(n_splits: int, text: np.ndarray, audio: np.ndarray, cfg: ProbeConfig, repeat: int = 1) -> dict:
    """Time both paths (best of ``repeat``) and compare their results."""
    n_classes = text.shape[0]
    splits = make_splits(n_classes, n_splits, cfg.train_frac, cfg.seed)
    masks = split_masks(splits, n_classes)
    dims = (text.shape[1], audio.shape[1], cfg.shared_dim)

    # CPU matmul back ends (oneDNN / MKL) pay seconds the first time they see a shape, and CUDA
    # its first launches: train a few steps of both shapes (S probes, one probe) before timing.
    warm = dataclasses.replace(cfg, epochs=min(cfg.epochs, 10))
    train_probes(text, audio, masks, warm, init_params(*dims, cfg.seed, range(n_splits)))
    train_probes(text, audio, masks[:1], warm, init_params(*dims, cfg.seed, [0]))

    t_batched = t_sequential = float("inf")
    for _ in range(repeat):
        _sync(cfg.device)
        start = time.perf_counter()
        batched = train_probes(text, audio, masks, cfg, init_params(*dims, cfg.seed, range(n_splits)))
        _sync(cfg.device)
        t_batched = min(t_batched, time.perf_counter() - start)

        start = time.perf_counter()
        singles = [
            train_probes(text, audio, masks[s : s + 1], cfg, init_params(*dims, cfg.seed, [s]))
            for s in range(n_splits)
        ]
        _sync(cfg.device)
        t_sequential = min(t_sequential, time.perf_counter() - start)

    max_diff = 0.0
    for s, one in enumerate(singles):
        for got, want in zip(batched.probes.params.select(slice(s, s + 1)).tensors(), one.probes.params.tensors()):
            max_diff = max(max_diff, float((got - want).abs().max()))
    acc_b = _accuracies(batched.probes, text, audio, masks)
    acc_s = np.concatenate([_accuracies(one.probes, text, audio, masks[s : s + 1]) for s, one in enumerate(singles)])
    return {
        "S": n_splits,
        "batched_s": t_batched,
        "sequential_s": t_sequential,
        "max_param_diff": max_diff,
        "same_metrics": bool(np.array_equal(acc_b, acc_s)),
        "acc@1": float(acc_b[:, 0].mean()),
    }


def planted(seeds: list[int], threads: int | None) -> None:
    """Default-settings probe on planted relations at the paper's sizes (see the module docstring)."""
    labels = [f"class{i}" for i in range(100)]
    print(f"planted: 100 classes, dt=768, da=527, 10 % noise, default ProbeConfig; {torch.get_num_threads()} threads")
    header = f"{'spectrum':>9} {'seed':>4} {'span':>5} {'val@1':>6} {'test@1':>7} {'perm@1':>7} {'procr@1':>8} {'shuffled@1':>10} {'s':>5}"
    print(header)
    print("-" * len(header))
    for spectrum in ("flat", "decaying"):
        for seed in seeds:
            text, audio = planted_pair(100, 768, 527, spectrum=spectrum, noise=0.1, seed=seed)
            shuffled = audio[np.random.default_rng(seed + 1000).permutation(100)]
            for restrict in (False, True):
                cfg = ProbeConfig(restrict_to_span=restrict)
                start = time.perf_counter()
                m = run(text, audio, labels, cfg).metrics
                seconds = time.perf_counter() - start
                s = run(text, shuffled, labels, ProbeConfig(restrict_to_span=restrict, procrustes=False)).metrics
                print(f"{spectrum:>9} {seed:>4} {str(restrict):>5} {m['val/acc@1']:>6.3f} {m['test/acc@1']:>7.3f} "
                      f"{m['test/perm_acc@1']:>7.3f} {m['test/procrustes_acc@1']:>8.3f} {s['test/acc@1']:>10.3f} {seconds:>5.1f}",
                      flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, nargs="+", default=[5, 25, 100], help="values of S to time")
    parser.add_argument("--classes", type=int, default=144, help="number of classes C")
    parser.add_argument("--text-dim", type=int, default=768)
    parser.add_argument("--audio-dim", type=int, default=527)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--shared-dim", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=1, help="time each path this many times, keep the best")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--planted", action="store_true", help="planted relations at the paper's sizes instead")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="--planted: data seeds")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.planted:
        planted(args.seeds, args.threads)
        return

    rng = np.random.default_rng(0)
    text = rng.standard_normal((args.classes, args.text_dim)).astype(np.float32)
    mixing = rng.standard_normal((args.text_dim, args.audio_dim)) / np.sqrt(args.text_dim)
    audio = (text @ mixing + 0.1 * rng.standard_normal((args.classes, args.audio_dim))).astype(np.float32)
    cfg = ProbeConfig(epochs=args.epochs, shared_dim=args.shared_dim, device=args.device)

    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(
        f"torch {torch.__version__} on {args.device} ({device_name}, {torch.get_num_threads()} threads); "
        f"C={args.classes} dt={args.text_dim} da={args.audio_dim} k={args.shared_dim} epochs={args.epochs} "
        f"best of {args.repeat}"
    )

    header = (
        f"{'S':>5} {'batched s':>10} {'probes/s':>9} {'sequential s':>13} {'probes/s':>9} {'speed-up':>9} "
        f"{'max |dparam|':>13} {'same acc':>9}"
    )
    print(header)
    print("-" * len(header))
    for n_splits in args.splits:
        r = bench_one(n_splits, text, audio, cfg, args.repeat)
        print(
            f"{r['S']:>5} {r['batched_s']:>10.2f} {r['S'] / r['batched_s']:>9.2f} {r['sequential_s']:>13.2f} "
            f"{r['S'] / r['sequential_s']:>9.2f} {r['sequential_s'] / r['batched_s']:>8.2f}x "
            f"{r['max_param_diff']:>13.2e} {str(r['same_metrics']):>9}",
            flush=True,
        )
        if not r["same_metrics"] or r["max_param_diff"] > 1e-4:
            raise SystemExit(f"batched and sequential probes disagree at S={n_splits}: {r}")


if __name__ == "__main__":
    main()
