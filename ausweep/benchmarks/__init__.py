"""Shared layer: benchmark data and how to score a language model on it.

Several studies use these; none of them is a study itself.

* :mod:`~ausweep.benchmarks.auditorybench`: the AuditoryBench data (vendored, with the upstream
  defects flagged) and the published reference numbers.
* :mod:`~ausweep.benchmarks.metrics`: the upstream metrics as pure functions over logits and
  token ids, and the builders of masked and candidate inputs.
* :mod:`~ausweep.benchmarks.mcq`: the multiple-choice item format (JSONL / YAML / CSV, optional
  audio), its one prompt layout and per-category accuracy.
* :mod:`~ausweep.benchmarks.loglik`: causal-LM log-likelihood of continuations, batched.
* :mod:`~ausweep.benchmarks.scoring`: a causal LM answers multiple-choice items by option
  log-likelihood or by generation and parsing.

Importing this package loads no data, models or torch.
"""
