"""Audio-grounded language models (LALMs): frozen Whisper encoder -> Q-Former -> LLM.

Where it sits: the knowledge stage (:mod:`ausweep.knowledge`) scores what an LLM backbone knows
about sound from text alone; this stage grounds the same backbones in audio, trains them with
DeepSpeed under Ray Train, and evaluates them on audio multiple-choice sets, so that text-only
scores can be compared with audio-grounded ones per backbone.

* :mod:`.qformer`: the Q-Former connector (learned queries cross-attending to encoder states).
* :mod:`.model`: :class:`~.model.LALM` (encoder, Q-Former, projection, LLM frozen / LoRA / full),
  ``build_lalm``, ``load_lalm``.
* :mod:`.data`: (audio, instruction, response) data and its collator; multiple-choice batches.
* :mod:`.evaluate`: audio multiple-choice scoring by option log-likelihood.
* :mod:`.train`: Ray Train workers running DeepSpeed ZeRO-2/3, resumable checkpoints.
* :mod:`.demo_data`: the generated offline audio sets (sox tones and chords, espeak-ng words).
* :mod:`.study`: the ``lalm_backbone`` sweep study.

Importing this package loads no data, models or torch.
"""
