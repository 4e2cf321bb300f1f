"""The ``knowledge_text`` study: text-only auditory knowledge of LLM backbones (AKB-2000 style).

Where it sits: the probing study asks whether sound is *represented* in an LM; this study asks
whether an LLM *answers* auditory questions (sound, music, phonetics/phonology) from text alone.
Its scores per backbone are what the audio-grounded ``lalm_backbone`` models are compared with
(``python -m ausweep.report correlation``). The ``cascade`` study (its own package) asks the same
questions of audio through a describer. The item format and scorer are shared
(:mod:`ausweep.benchmarks.mcq`, :mod:`ausweep.benchmarks.scoring`).

* :mod:`.config`: :class:`~.config.KnowledgeConfig`.
* :mod:`.sets`: named sets (``phonology``, ``music``, ``auditorybench``, ``file:<path>``) -> items.
* :mod:`.phonology`: generated rhyme / homophone / stress / syllable items checked against CMUdict
  (word pool: :mod:`.wordlist`, vendored common words).
* :mod:`.music`: generated music-theory items from equal temperament (A4 = 440 Hz).
* :mod:`.study`: ``prepare`` / ``trial`` / ``summarize`` (``python -m ausweep.sweep knowledge_text``).

Importing this package loads no data, models or torch.
"""
