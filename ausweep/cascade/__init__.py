"""The ``cascade`` study: audio -> a describer's text -> a text-only LLM answers multiple choice.

Where it sits: a study of the LLM-backbone question, beside ``knowledge_text`` (text only) and
``lalm_backbone`` (audio-grounded). It shares the multiple-choice format and the scorer
(:mod:`ausweep.benchmarks`) and the generated audio sets (:mod:`ausweep.data.demo_mc`) with them.

* :mod:`.config`: :class:`~.config.CascadeConfig`.
* :mod:`.describe`: describers (Whisper ASR, a pitch description, none, any ``hf:`` model, an
  audio-language model's caption ``lalm:<name>``).
* :mod:`.study`: ``prepare`` / ``trial`` / ``summarize`` (``python -m ausweep.sweep cascade``).

Importing this package loads no data, models or torch.
"""
