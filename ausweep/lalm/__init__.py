"""Audio-grounded language models (LALMs): frozen Whisper encoder -> Q-Former -> LLM.

Where it sits: the knowledge stage (:mod:`ausweep.knowledge`) scores what an LLM backbone knows
about sound from text alone; this stage grounds the same backbones in audio, trains them with
DeepSpeed under Ray Train, and evaluates them on audio multiple-choice sets, so that text-only
scores can be compared with audio-grounded ones per backbone.

Importing this package loads no data, models or torch.
"""
