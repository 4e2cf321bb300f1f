"""What a sweep runs: a *study* names its config dataclass and three plain functions.

* ``prepare(configs, space)`` — driver side, once per sweep, before any trial: validate model
  names, run shared work such as embedding extraction (sharded on Ray actors, cached), and return
  the search space with study-specific axes expanded (e.g. ``text.layer: {grid: all}``).
* ``trial(config)`` — one trial, a generator of result dicts (one per epoch, or a single one).
  It works with no Ray at all; the Tune trainable of the sweep runner only wraps it.
* ``summarize(rows, out_dir)`` — driver side, after the sweep: tables and plots for the parent run.
  A returned file named :data:`SUMMARY_METRICS` (``metrics.json``, ``{name: number}``) is also
  logged as the parent run's metrics (numbers about the whole sweep, e.g. a correlation across trials).

A study whose trials can be checkpointed and restored (population-based training copies a better
trial's state into a worse one) names the config keys a restored trial applies (``mutable_keys``):
its ``trial(config, restore=folder)`` then starts from the state in ``folder`` with ``config``'s values
of those keys, and its results may carry :data:`CHECKPOINT`, a function ``save(folder)`` that writes
the trial's state as it stands at that result. The sweep runner decides which results become Tune
checkpoints; the study stays a plain generator.

Inside a trial, ``$AUSWEEP_SWEEP_RUN_DIR`` (:data:`RUN_DIR_ENV`) names the sweep's run folder on
storage, for studies that keep files a resumed sweep must find (training checkpoints).

The study registry (names -> ``"module:attr"``) lives above the studies, in
:mod:`ausweep.sweep.studies`: this contract module names no study, so studies and shared layers
can import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

RUN_DIR_ENV = "AUSWEEP_SWEEP_RUN_DIR"
SUMMARY_METRICS = "metrics.json"
CHECKPOINT = "checkpoint"  # a result's key: save(folder) writes the trial's state at that result


@dataclass(frozen=True)
class Study:
    name: str
    config_cls: type
    prepare: Callable[[list[Any], dict[str, dict[str, Any]]], dict[str, dict[str, Any]]]
    trial: Callable[[Any], Iterator[dict[str, Any]]]
    summarize: Callable[[list[dict[str, Any]], Path], list[Path]]
    description: str = ""
    # Config keys that a trial restored from a checkpoint applies to the state it restores (a learning
    # rate set on the restored optimiser): what population-based training may mutate. Empty: the
    # study's trials cannot be restored from a checkpoint.
    mutable_keys: tuple[str, ...] = ()
    # Config keys that set the shapes of the state a checkpoint holds (a LoRA rank): a checkpoint restores
    # only into a trial with the same values, so a population shares them.
    shape_keys: tuple[str, ...] = ()
