"""The evaluation-benchmarks stage: does a language model answer questions about sound?

Where it sits: the probing study (``ausweep.probe``) asks whether sound is *represented* in an LM's
hidden states. This stage asks whether the LM *uses* that knowledge to answer questions, and it
gives the baselines that audio-augmented models (AudioBERT, Imagine-to-Hear) are compared with.

* :mod:`~ausweep.benchmarks.auditorybench`: the AuditoryBench data (vendored, with the upstream
  defects flagged) and the published reference numbers.
* :mod:`~ausweep.benchmarks.metrics`: the upstream metrics as pure functions over logits and
  token ids, and the builder of masked inputs.
* :mod:`~ausweep.benchmarks.zeroshot`: zero-shot text-only baselines for masked LMs (fill-mask)
  and causal LMs (ranking candidates by log-likelihood).
* :mod:`~ausweep.benchmarks.study`: the ``auditorybench_baselines`` sweep study.

Importing this package loads no data, models or torch.
"""
