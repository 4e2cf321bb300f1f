"""LALM training settings (:class:`TrainConfig`) and the fixed names of a training run's files."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ausweep.config import option
from ausweep.files import resources_root

REPO = resources_root()  # the repo in a checkout; the wheel's copy of configs/ otherwise
DEEPSPEED_CONFIG_DIR = REPO / "configs" / "deepspeed"
DS_TAG = "deepspeed"  # DeepSpeed's checkpoint tag inside every Ray checkpoint folder
LALM_DIR = "lalm"  # the trained LALM inside the final checkpoint
TRAIN_LOG = "train_log.json"  # per-step loss history, carried from checkpoint to checkpoint
AUTO = "auto"


@dataclass(frozen=True)
class TrainConfig:
    """How the LALM trains: optimisation, batch sizes, DeepSpeed ZeRO settings and Ray workers."""

    lr: float = option(1e-4, help="Peak AdamW learning rate (after warm-up; cosine decay to 0 at max_steps).")
    weight_decay: float = option(0.0, help="AdamW decoupled weight decay.")
    warmup_steps: int = option(0, help="Optimizer steps of linear warm-up from 0 to lr.")
    max_steps: int | None = option(
        None, help="Optimizer steps of the whole run; None: epochs x (examples // global micro-batch) // grad_accum."
    )
    epochs: int = option(1, help="Passes over the data when max_steps is None.")
    micro_batch_size: int = option(4, help="Examples per worker per forward pass (DeepSpeed train_micro_batch_size_per_gpu).")
    grad_accum: int = option(1, help="Micro-batches accumulated per optimizer step (DeepSpeed gradient_accumulation_steps).")
    grad_clip: float = option(1.0, help="Gradient-norm clip (DeepSpeed gradient_clipping); 0 turns it off.")
    zero_stage: Literal[2, 3] = option(
        2, help="ZeRO stage: 2 shards optimizer states and gradients; 3 also shards the parameters (needed for 14B+)."
    )
    precision: Literal["fp32", "bf16"] = option(
        "fp32", help="fp32, or bf16 weights and activations with fp32 master weights in the optimizer (GPUs)."
    )
    offload_optimizer: bool = option(False, help="ZeRO-Offload: optimizer states and step on the CPU (DeepSpeed CPU Adam).")
    offload_params: bool = option(False, help="ZeRO-Infinity: parameters live on the CPU between uses (zero_stage 3 only).")
    zero_init: bool = option(
        True, help="zero_stage 3 only: load the LALM under ZeRO-3 partitioned initialisation (deepspeed.zero.Init through "
        "transformers' DeepSpeed integration): each rank keeps only its shard of the checkpoint's weights (one layer is "
        "gathered at a time while loading; rank 0 maps the checkpoint files; the Q-Former, projection and LoRA are built "
        "whole, then partitioned). False: every rank loads the whole model into host memory and deepspeed.initialize "
        "partitions it. Same weights either way; ignored under zero_stage 2.",
    )
    gradient_checkpointing: bool = option(
        False, help="Recompute the LLM's activations in backward (transformers' non-reentrant checkpointing)."
    )
    num_workers: int = option(2, help="Ray Train workers = DeepSpeed ranks (one per GPU with use_gpu).")
    use_gpu: bool = option(False, help="One GPU per worker (NCCL); False: CPU workers with gloo.")
    cpus_per_worker: float = option(
        1.0, help="CPUs each worker reserves; may be fractional (0.5) so that a Tune trial plus its workers fit a small machine."
    )
    checkpoint_every: int = option(0, help="Save a resumable checkpoint every N optimizer steps; 0: only at the end.")
    keep_checkpoints: int = option(2, help="Checkpoints kept on storage (the newest ones; CheckpointConfig.num_to_keep).")
    stop_after_steps: int | None = option(
        None, help="End this call after this many optimizer steps (a checkpoint is saved) while the schedule still "
        "spans max_steps: splits a long run into resumable parts (preemptible machines, tests)."
    )
    seed: int = option(0, help="Seed of the data order and the dropout masks (with the step and rank).")
    deepspeed_config: str | None = option(
        None, help="DeepSpeed JSON whose settings this config overrides (absolute, or relative to the working directory "
        "or to configs/deepspeed/); None: zero2.json, zero3.json or zero3_offload.json by zero_stage and offload."
    )
    log_every: int = option(1, help="Report loss, tokens/s and lr to Ray Train every N optimizer steps.")
    max_failures: int = option(
        0, help="Times Ray Train restarts the worker group from the newest checkpoint after a worker dies (FailureConfig)."
    )

    def __post_init__(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(message)

        need(self.lr > 0, f"lr must be > 0, got {self.lr}")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        need(self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}")
        need(self.max_steps is None or self.max_steps >= 1, f"max_steps must be >= 1 or None, got {self.max_steps}")
        need(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        need(self.micro_batch_size >= 1, f"micro_batch_size must be >= 1, got {self.micro_batch_size}")
        need(self.grad_accum >= 1, f"grad_accum must be >= 1, got {self.grad_accum}")
        need(self.grad_clip >= 0, f"grad_clip must be >= 0, got {self.grad_clip}")
        need(self.zero_stage in (2, 3), f"zero_stage must be 2 or 3, got {self.zero_stage}")
        need(not self.offload_params or self.zero_stage == 3, "offload_params needs zero_stage 3 (ZeRO-2 does not shard parameters)")
        need(self.num_workers >= 1, f"num_workers must be >= 1, got {self.num_workers}")
        need(self.cpus_per_worker > 0, f"cpus_per_worker must be > 0, got {self.cpus_per_worker}")
        need(self.checkpoint_every >= 0, f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        need(self.keep_checkpoints >= 1, f"keep_checkpoints must be >= 1, got {self.keep_checkpoints}")
        need(self.stop_after_steps is None or self.stop_after_steps >= 1,
             f"stop_after_steps must be >= 1 or None, got {self.stop_after_steps}")
        need(self.log_every >= 1, f"log_every must be >= 1, got {self.log_every}")
        need(self.max_failures >= 0, f"max_failures must be >= 0, got {self.max_failures}")
