"""Shared layer: benchmark data and how to score a language model on it.

Several studies use these; none of them is a study itself.

* :mod:`~ausweep.benchmarks.auditorybench`: the AuditoryBench data (vendored, with the upstream
  defects flagged) and the published reference numbers.
* :mod:`~ausweep.benchmarks.metrics`: the upstream metrics as pure functions over logits and
  token ids, and the builders of masked and candidate inputs.
* :mod:`~ausweep.benchmarks.mcq`: the multiple-choice item format (JSONL / YAML / CSV, optional
  audio), its one prompt layout and per-category accuracy (macro and micro).
* :mod:`~ausweep.benchmarks.tasks`: the declared map of which text and audio categories ask the
  same question (``configs/backbone_tasks.yaml``).
* :mod:`~ausweep.benchmarks.loglik`: lm-evaluation-harness's (context, continuation) token split
  and causal-LM log-likelihood of continuations, batched, from a float32 output layer.
* :mod:`~ausweep.benchmarks.scoring`: a causal LM answers multiple-choice items by option
  log-likelihood or by generation and parsing.

Importing this package loads no data, models or torch.
"""
