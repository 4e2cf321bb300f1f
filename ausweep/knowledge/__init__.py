"""Text-only auditory knowledge of language models (the LLM-backbone study, AKB-2000 style).

Where it sits: the probing study asks whether sound is *represented* in an LM; this stage asks
whether an LLM *answers* auditory questions (sound, music, phonetics/phonology) from text alone,
and, in a cascade, from a caption or transcript of the audio. Its scores per backbone are what the
audio-grounded models of :mod:`ausweep.lalm` are compared with (``python -m ausweep.report correlation``).

* :mod:`.mcq`: the multiple-choice item format (JSONL / YAML / CSV, optional audio path).

Importing this package loads no data, models or torch.
"""
