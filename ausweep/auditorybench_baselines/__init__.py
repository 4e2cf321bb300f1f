"""The ``auditorybench_baselines`` study: zero-shot, text-only AuditoryBench baselines.

Masked LMs answer by fill-mask, causal LMs rank candidates by log-likelihood; these are the numbers
audio-augmented models (AudioBERT) are compared with. The data, metrics and scorer are shared
layers (:mod:`ausweep.benchmarks`).

* :mod:`.config`: :class:`~.config.BaselineConfig`.
* :mod:`.zeroshot`: how each kind of LM scores an AuditoryBench item.
* :mod:`.study`: ``prepare`` / ``trial`` / ``summarize`` (``python -m ausweep.sweep auditorybench_baselines``).

Importing this package loads no data, models or torch.
"""
