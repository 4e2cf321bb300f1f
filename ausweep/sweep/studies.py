"""The catalog of studies: study name -> its ``STUDY`` object, as lazy ``"module:attr"`` entries.

This module sits above the studies (with the sweep runner and the command line): it is the one
place that names every study package, so nothing below it has to. Each study lives in the package
of the same name, ``ausweep/<study>/``, with its config class in ``config.py`` and its ``STUDY`` in
``study.py``.
"""

from __future__ import annotations

from ausweep.registry import Registry
from ausweep.study import Study

STUDIES: Registry[Study] = Registry("study")
STUDIES.register("probe", "ausweep.probe.study:STUDY", help="Contrastive linear probe between LM text and audio embeddings (Ngo & Kim 2024).")
STUDIES.register("auditorybench_baselines", "ausweep.auditorybench_baselines.study:STUDY", help="Zero-shot text-only AuditoryBench baselines: masked LMs by fill-mask, causal LMs by log-likelihood ranking.")
STUDIES.register("audiobert", "ausweep.audiobert.study:STUDY", help="AudioBERT on AuditoryBench: span detector, CLAP retrieval, span-gated LoRA (Ok, Yoo & Lee 2025).")
STUDIES.register("cascade", "ausweep.cascade.study:STUDY", help="Cascade baseline: audio -> describer text (Whisper ASR, pitch, none) -> a text-only LLM answers multiple-choice questions.")
STUDIES.register("knowledge_text", "ausweep.knowledge_text.study:STUDY", help="Text-only auditory knowledge of LLM backbones (AKB-2000 style): phonology, music, sound as multiple choice.")
STUDIES.register("lens", "ausweep.lens.study:STUDY", help="AudioLens: logit lens over an LM or audio-language model; the layer where auditory attributes resolve (Yang et al. 2025).")
STUDIES.register("lalm_backbone", "ausweep.lalm_backbone.study:STUDY", help="Whisper encoder + Q-Former + LLM backbone trained with DeepSpeed under Ray Train, scored on audio multiple choice (AKB-2000 study).")
