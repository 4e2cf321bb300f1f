"""The ``lalm_backbone`` study: which LLM backbone makes the best audio-language model?

Each trial trains the LALM of :mod:`ausweep.lalm` (Whisper encoder -> Q-Former -> LLM) with
DeepSpeed under Ray Train and scores it on audio multiple choice; ``python -m ausweep.report
correlation`` then compares it, per backbone, with the text-only ``knowledge_text`` sweep.

* :mod:`.config`: :class:`~.config.LALMBackboneConfig` (model, training, data).
* :mod:`.study`: ``prepare`` / ``trial`` / ``summarize`` (``python -m ausweep.sweep lalm_backbone``).

Importing this package loads no data, models or torch.
"""
