"""Shared layer: audio-grounded language models (LALMs): frozen Whisper encoder -> Q-Former -> LLM.

Used by the ``lalm_backbone`` study (which trains one per backbone) and the ``lens`` study (which
looks inside one); it names neither.

* :mod:`.qformer`: the Q-Former connector (learned queries cross-attending to encoder states).
* :mod:`.model`: :class:`~.model.LALM` (encoder, Q-Former, projection, LLM frozen / LoRA / full),
  ``build_lalm``, ``load_lalm``.
* :mod:`.data`: (audio, instruction, response) data and its collator; multiple-choice batches.
* :mod:`.distill`: DeSTA-style self-distilled training data: the backbone answers each instruction
  from the clip's text metadata, and its answer becomes the response (cached, resumable, Ray actors).
* :mod:`.evaluate`: audio multiple-choice scoring by option log-likelihood.
* :mod:`.train`: Ray Train workers running DeepSpeed ZeRO-2/3, resumable checkpoints
  (``python -m ausweep.lalm.train``).

The generated demo audio sets are in :mod:`ausweep.data.demo_mc`. Importing this package loads no
data, models or torch.
"""
