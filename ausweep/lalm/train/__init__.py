"""Distributed training of the audio-grounded LLM: DeepSpeed ZeRO-2/3 inside Ray Train workers.

Where it sits: the training stage of the ``lalm_backbone`` study.
:func:`fit` takes a :class:`~ausweep.lalm.model.LALMConfig`, a :class:`TrainConfig` and an
instruction JSONL (:func:`ausweep.lalm.data.load_instructions`), starts a Ray Train
``TorchTrainer`` whose workers each run :func:`train_loop_per_worker`, and returns the final
metrics and the folder of the trained LALM (:func:`ausweep.lalm.model.load_lalm` reads it).

* :mod:`.config`: :class:`TrainConfig` and the names of the checkpoint's parts.
* :mod:`.ds_config`: the DeepSpeed config dict a :class:`TrainConfig` makes of a
  ``configs/deepspeed/*.json`` preset.
* :mod:`.order`: the deterministic data order (a function of seed, step and rank) and the run length.
* :mod:`.worker`: :func:`train_loop_per_worker`, one DeepSpeed rank; resumable checkpoints.
* :mod:`.driver`: :func:`fit`, the Ray Train driver (from a plain script or a Tune trial).
* :mod:`.cli`: ``python -m ausweep.lalm.train PRESET.yaml --data TRAIN.jsonl --storage DIR``.

Importing this package loads no torch, Ray or DeepSpeed: the workers and the driver import them
when they run.
"""

from ausweep.lalm.train.cli import load_preset, main
from ausweep.lalm.train.config import (
    AUTO,
    DEEPSPEED_CONFIG_DIR,
    DS_TAG,
    LALM_DIR,
    REPO,
    TRAIN_LOG,
    TrainConfig,
)
from ausweep.lalm.train.driver import fit
from ausweep.lalm.train.ds_config import (
    deepspeed_config,
    default_deepspeed_file,
    load_deepspeed_file,
    resolve_deepspeed_file,
)
from ausweep.lalm.train.order import (
    micro_batch_indices,
    micro_batches_per_epoch,
    total_steps,
)
from ausweep.lalm.train.worker import train_loop_per_worker

__all__ = [
    "AUTO",
    "DEEPSPEED_CONFIG_DIR",
    "DS_TAG",
    "LALM_DIR",
    "REPO",
    "TRAIN_LOG",
    "TrainConfig",
    "deepspeed_config",
    "default_deepspeed_file",
    "fit",
    "load_deepspeed_file",
    "load_preset",
    "main",
    "micro_batch_indices",
    "micro_batches_per_epoch",
    "resolve_deepspeed_file",
    "total_steps",
    "train_loop_per_worker",
]
