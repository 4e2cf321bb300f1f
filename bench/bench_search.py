"""Benchmark: model-based search (Optuna's TPE, HyperOpt's TPE) against random search on the probe,
at an equal trial budget, over several seeds, on planted embeddings where there is something to find.

    python bench/bench_search.py                          # 24 trials, seeds 0-5, 80 classes, 64-d text, 48-d audio
    python bench/bench_search.py --trials 40 --seeds 0 1 2 3 4 5 6 7 8 9

Each seed plants a relation (:func:`ausweep.probe.planted.planted_pair`, audio = text @ W + 50 % noise,
so accuracy is far from saturated) and runs every method on it with the same budget, one trial after
another. A trial is :func:`ausweep.probe.run` with the sampled hyperparameters (learning rate, shared
dimension, temperature, weight decay and epochs over the ranges of the probe's ``hparams`` preset).
The searchers are the objects an ausweep sweep builds (:func:`ausweep.sweep.search.make_search_alg`),
driven here without Ray (suggest, then report the final result); random search draws from the same
Ray Tune distributions ausweep's random search uses.

Every method sees only ``val/acc@1`` (validation classes carved out of the training classes). The
table reports, per method, the best validation accuracy@1 found, and the held-out accuracy@1
(``test/acc@1``) of the trial chosen on validation; then the paired difference to random search
(mean +- sd over seeds, and on how many seeds the searcher was ahead).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from typing import Any

import numpy as np
import torch

from ausweep.config import flatten, from_dict
from ausweep.probe import ProbeConfig, run
from ausweep.probe.planted import planted_pair
from ausweep.sweep.search import SearchSpec, make_search_alg
from ausweep.sweep.spec import to_tune_space

SPACE = {
    "probe.lr": {"loguniform": [1e-4, 1e-1]},
    "probe.shared_dim": {"choice": [4, 8, 16, 32, 64]},
    "probe.temperature": {"loguniform": [0.02, 0.5]},
    "probe.weight_decay": {"loguniform": [1e-6, 1e-2]},
    "probe.epochs": {"choice": [50, 100, 200]},
}
METHODS = ("random", "optuna", "hyperopt")
FIXED = {"n_splits": 3, "procrustes": False, "permutation_control": False}


def trial(text: np.ndarray, audio: np.ndarray, labels: list[str], params: dict[str, Any]) -> dict[str, float]:
    cfg = from_dict(ProbeConfig, {**FIXED, **params})
    m = run(text, audio, labels, cfg).metrics
    return {"val/acc@1": m["val/acc@1"], "test/acc@1": m["test/acc@1"]}


def search(method: str, seed: int, budget: int, startup: int, data: tuple) -> list[dict[str, float]]:
    """``budget`` trials of ``method``, one at a time; each row: the trial's val and test accuracy@1."""
    rows = []
    if method == "random":
        rng = np.random.default_rng(seed)
        domains = flatten(to_tune_space({}, SPACE))
        for _ in range(budget):
            params = {k.split(".", 1)[1]: d.sample(random_state=rng) for k, d in domains.items()}
            rows.append(trial(*data, {k: v.item() if isinstance(v, np.generic) else v for k, v in params.items()}))
        return rows
    spec = SearchSpec(name=method, seed=seed, n_startup_trials=startup)
    searcher, _ = make_search_alg(spec, "val/acc@1", "max", seed, {}, SPACE, {})
    for i in range(budget):
        config = searcher.suggest(f"t{i}")
        result = trial(*data, config["probe"])
        searcher.on_trial_complete(f"t{i}", {**result, "training_iteration": 1})
        rows.append(result)
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=24, help="trial budget per method and seed")
    p.add_argument("--startup", type=int, default=8, help="random start-up trials of the model-based searchers")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    p.add_argument("--classes", type=int, default=80)
    p.add_argument("--text-dim", type=int, default=64)
    p.add_argument("--audio-dim", type=int, default=48)
    p.add_argument("--noise", type=float, default=0.5)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s); "
          f"planted {args.classes} classes, {args.text_dim}-d text, {args.audio_dim}-d audio, noise {args.noise}; "
          f"{args.trials} trials per method ({args.startup} start-up for TPE)")
    labels = [f"class{i}" for i in range(args.classes)]
    best: dict[str, list[float]] = {m: [] for m in args.methods}
    chosen_test: dict[str, list[float]] = {m: [] for m in args.methods}
    print(f"{'seed':>4} " + " ".join(f"{m + ' val':>13} {m + ' test':>14}" for m in args.methods) + f" {'s':>5}")
    for seed in args.seeds:
        data = (*planted_pair(args.classes, args.text_dim, args.audio_dim, noise=args.noise, seed=seed), labels)
        start = time.perf_counter()
        line = f"{seed:>4} "
        for m in args.methods:
            rows = search(m, seed, args.trials, args.startup, data)
            top = max(rows, key=lambda r: r["val/acc@1"])  # chosen on validation; its held-out score reported
            best[m].append(top["val/acc@1"])
            chosen_test[m].append(top["test/acc@1"])
            line += f"{top['val/acc@1']:>13.3f} {top['test/acc@1']:>14.3f} "
        print(line + f"{time.perf_counter() - start:>5.0f}", flush=True)
    print()
    print("| method | best val/acc@1 (mean ± sd) | test/acc@1 of the chosen trial | Δ best val vs random (mean ± sd) | seeds ahead / tied / behind |")
    print("|---|---|---|---|---|")
    for m in args.methods:
        row = f"| {m} | {_ms(best[m])} | {_ms(chosen_test[m])} |"
        if m != "random" and "random" in best:
            d = [a - b for a, b in zip(best[m], best["random"])]
            row += f" {_ms(d, signed=True)} | {sum(x > 0 for x in d)} / {sum(x == 0 for x in d)} / {sum(x < 0 for x in d)} |"
        else:
            row += " | |"
        print(row)


def _ms(xs: list[float], signed: bool = False) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):{'+' if signed else ''}.3f} ± {sd:.3f}"


if __name__ == "__main__":
    main()
