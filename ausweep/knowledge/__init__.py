"""Text-only auditory knowledge of language models (the LLM-backbone study, AKB-2000 style).

Where it sits: the probing study asks whether sound is *represented* in an LM; this stage asks
whether an LLM *answers* auditory questions (sound, music, phonetics/phonology) from text alone,
and, in a cascade, from a caption or transcript of the audio. Its scores per backbone are what the
audio-grounded models of :mod:`ausweep.lalm` are compared with (``python -m ausweep.report correlation``).

* :mod:`.mcq`: the multiple-choice item format (JSONL / YAML / CSV, optional audio path).
* :mod:`.sets`: named sets (``phonology``, ``music``, ``auditorybench``, ``file:<path>``) -> items.
* :mod:`.phonology`: generated rhyme / homophone / stress / syllable items checked against CMUdict
  (word pool: :mod:`.wordlist`, vendored common words).
* :mod:`.music`: generated music-theory items from equal temperament (A4 = 440 Hz).
* :mod:`.scoring`: a causal LM answers items by option log-likelihood or by generation + parsing.
* :mod:`.study`: the ``knowledge_text`` sweep study (``python -m ausweep.sweep knowledge_text``).

Importing this package loads no data, models or torch.
"""
