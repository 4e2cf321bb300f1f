"""Benchmark: multiple-choice log-likelihood throughput, ausweep's scorer vs lm-evaluation-harness.

    python bench/bench_loglik.py                         # SmolLM2-135M, 100 AuditoryBench MC items, CPU
    python bench/bench_loglik.py --items 200 --batch-size 32 --device cuda --repeat 3

Scores the same items three ways, with the same model object and batch size:

* ausweep, one pass over each prompt shared by its options (the default,
  :func:`ausweep.benchmarks.scoring.score_shared_context`);
* ausweep, one pass per (prompt, option) (``shared_context=False``, the scorer before);
* lm-eval 0.4.13's ``HFLM`` running the items exported as an lm-eval task
  (:func:`ausweep.knowledge_text.harness.score_with_lm_eval`; includes its task set-up, a few
  hundred ms).

A request is one (prompt, option) pair, as lm-eval counts loglikelihood requests. It checks that the
three give the same log-likelihoods (max |difference|) and the same predicted options. Timings on a
shared machine are noisy: the load average is printed beside them.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m", help="a causal LM (registry name, folder or hub id)")
    p.add_argument("--items", type=int, default=100, help="AuditoryBench MC items (half animal, half pitch)")
    p.add_argument("--batch-size", type=int, default=16, help="sequences per forward pass, all three scorers")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeat", type=int, default=1, help="timed runs of each scorer (the best is reported)")
    args = p.parse_args(argv)

    import torch

    from ausweep.benchmarks.mcq import format_prompt
    from ausweep.benchmarks.scoring import score_options
    from ausweep.knowledge_text.harness import score_with_lm_eval
    from ausweep.knowledge_text.sets import load_set
    from ausweep.models.heads import load_lm_with_head

    items = load_set("auditorybench", args.items)
    prompts, options = [format_prompt(it) for it in items], [it.options for it in items]
    n_requests = sum(len(o) for o in options)
    lm = load_lm_with_head(args.model, kind="causal", device=args.device)
    scorers = {
        "ausweep (one pass per prompt)": lambda: score_options(lm, prompts, options, args.batch_size)[0],
        "ausweep (one pass per option)": lambda: score_options(lm, prompts, options, args.batch_size, shared_context=False)[0],
        "lm-eval 0.4.13 HFLM": lambda: score_with_lm_eval(items, "hf", lm=lm, batch_size=args.batch_size),
    }
    score_with_lm_eval(items[:2], "hf", lm=lm, batch_size=args.batch_size)  # warm-up: imports, first kernels
    results = {}
    for name, fn in scorers.items():
        best, scores = float("inf"), None
        for _ in range(args.repeat):
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            scores = fn()
            best = min(best, time.perf_counter() - t0)
        results[name] = (best, scores, load)
        print(f"{name}: {best:.2f} s", file=sys.stderr, flush=True)
    ref = results["lm-eval 0.4.13 HFLM"][1]
    ref_pred = [max(range(len(s)), key=s.__getitem__) for s in ref]
    print(f"{args.model} on {args.device}, {len(items)} AuditoryBench items, {n_requests} requests, batch {args.batch_size}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}")
    print("| scorer | requests/s | s | max abs diff vs lm-eval | same predictions | load avg |")
    print("|---|---|---|---|---|---|")
    for name, (secs, scores, load) in results.items():
        diff = max(abs(a - b) for r, s in zip(scores, ref) for a, b in zip(r, s))
        pred = [max(range(len(s)), key=s.__getitem__) for s in scores]
        print(f"| {name} | {n_requests / secs:.1f} | {secs:.2f} | {diff:.1e} | {'yes' if pred == ref_pred else 'NO'} | {load:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
