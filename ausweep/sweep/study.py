"""What a sweep runs: a *study* names its config dataclass and three plain functions.

* ``prepare(configs, space)`` — driver side, once per sweep, before any trial: validate model
  names, run shared work such as embedding extraction (sharded on Ray actors, cached), and return
  the search space with study-specific axes expanded (e.g. ``text.layer: {grid: all}``).
* ``trial(config)`` — one trial, a generator of result dicts (one per epoch, or a single one).
  It works with no Ray at all; the Tune trainable in :mod:`ausweep.sweep.runner` only wraps it.
* ``summarize(rows, out_dir)`` — driver side, after the sweep: tables and plots for the parent run.

Inside a trial, ``$AUSWEEP_SWEEP_RUN_DIR`` (:data:`RUN_DIR_ENV`) names the sweep's run folder on
storage, for studies that keep files a resumed sweep must find (training checkpoints).

Studies are registered by name in :data:`STUDIES` with lazy ``"module:attr"`` entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from ausweep.registry import Registry


RUN_DIR_ENV = "AUSWEEP_SWEEP_RUN_DIR"


@dataclass(frozen=True)
class Study:
    name: str
    config_cls: type
    prepare: Callable[[list[Any], dict[str, dict[str, Any]]], dict[str, dict[str, Any]]]
    trial: Callable[[Any], Iterator[dict[str, Any]]]
    summarize: Callable[[list[dict[str, Any]], Path], list[Path]]
    description: str = ""


STUDIES: Registry[Study] = Registry("study")
STUDIES.register("probe", "ausweep.probe.study:STUDY", help="Contrastive linear probe between LM text and audio embeddings (Ngo & Kim 2024).")
STUDIES.register("auditorybench_baselines", "ausweep.benchmarks.study:STUDY", help="Zero-shot text-only AuditoryBench baselines: masked LMs by fill-mask, causal LMs by log-likelihood ranking.")
STUDIES.register("audiobert", "ausweep.adapt.study:STUDY", help="AudioBERT on AuditoryBench: span detector, CLAP retrieval, span-gated LoRA (Ok, Yoo & Lee 2025).")
STUDIES.register("cascade", "ausweep.knowledge.cascade:STUDY", help="Cascade baseline: audio -> describer text (Whisper ASR, pitch, none) -> a text-only LLM answers multiple-choice questions.")
STUDIES.register("knowledge_text", "ausweep.knowledge.study:STUDY", help="Text-only auditory knowledge of LLM backbones (AKB-2000 style): phonology, music, sound as multiple choice.")
STUDIES.register("lens", "ausweep.lens.study:STUDY", help="AudioLens: logit lens over an LM or audio-language model; the layer where auditory attributes resolve (Yang et al. 2025).")
STUDIES.register("lalm_backbone", "ausweep.lalm.study:STUDY", help="Whisper encoder + Q-Former + LLM backbone trained with DeepSpeed under Ray Train, scored on audio multiple choice (AKB-2000 study).")
