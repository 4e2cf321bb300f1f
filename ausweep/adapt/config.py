"""Settings of the adaptation stage: the AudioBERT model and the shared training loop.

Both are frozen, validated dataclasses (build them from dicts with :func:`ausweep.config.from_dict`).
Defaults follow the upstream AudioBERT code (github.com/HJ-Ok/AudioBERT, ``model/AudioBERT``):
LoRA r=64, alpha=128, dropout 0.01 on query/key/value; AdamW at 1e-4, batch 8, 20 epochs, cosine
schedule with 10 % warm-up.
"""

from __future__ import annotations

from dataclasses import dataclass

from ausweep.config import option


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass(frozen=True)
class AudioBertConfig:
    """How an AudioBERT is built around a masked LM (see :class:`ausweep.adapt.audiobert.AudioBert`)."""

    d_audio: int = option(
        512, help="Dimension of the injected audio embedding (512 for CLAP's joint space, 768 for AST)."
    )
    lora_r: int = option(64, help="LoRA rank r (upstream AudioBERT: 64).")
    lora_alpha: float = option(128.0, help="LoRA scaling numerator; the update is scaled by alpha / r (upstream: 128).")
    lora_dropout: float = option(0.01, help="Dropout on the LoRA branch's input (upstream: 0.01).")
    target_modules: list[str] = option(
        ["query", "key", "value"],
        help="Names of the linear layers that get LoRA adapters (BERT's self-attention projections).",
    )
    seed: int = option(0, help="Seed of the random initial weights (LoRA A matrices, audio projection).")

    def __post_init__(self) -> None:
        _need(self.d_audio >= 1, f"d_audio must be >= 1, got {self.d_audio}")
        _need(self.lora_r >= 1, f"lora_r must be >= 1, got {self.lora_r}")
        _need(self.lora_alpha > 0, f"lora_alpha must be > 0, got {self.lora_alpha}")
        _need(0 <= self.lora_dropout < 1, f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        _need(len(self.target_modules) > 0, "target_modules must name at least one module")
        _need(
            len(set(self.target_modules)) == len(self.target_modules),
            f"target_modules has repeated names: {self.target_modules}",
        )


@dataclass(frozen=True)
class TrainConfig:
    """How :func:`ausweep.adapt.train.fit` trains (the span detector or AudioBERT)."""

    lr: float = option(1e-4, help="Peak AdamW learning rate (reached after warm-up).")
    weight_decay: float = option(0.01, help="AdamW decoupled weight decay.")
    epochs: int = option(20, help="Passes over the training set; the dev set is scored after each.")
    batch_size: int = option(8, help="Training examples per optimiser step.")
    eval_batch_size: int = option(64, help="Examples per forward pass when scoring the dev set.")
    warmup_ratio: float = option(
        0.1, help="Fraction of all optimiser steps spent warming the learning rate up linearly from 0."
    )
    max_grad_norm: float = option(
        1.0, help="Clip the global gradient norm of the trainable parameters to this value (0 = no clipping)."
    )
    seed: int = option(42, help="Seed of the batch order and of dropout.")
    bf16: bool = option(
        False,
        help="bfloat16 autocast for forward passes. Applies on CUDA devices only; on CPU it is ignored "
        "(CPU bf16 autocast is slow and changes results for no gain on the small models used there).",
    )
    device: str = option("cpu", help="Torch device to train on ('cpu', 'cuda', 'cuda:1', ...).")
    save_dir: str | None = option(
        None,
        help="If set, the best-dev trainable weights are written here as trainable.safetensors "
        "(atomically, on every improvement).",
    )
    restore_best: bool = option(
        True, help="After training, load the best-dev trainable weights back into the model."
    )

    def __post_init__(self) -> None:
        _need(self.lr > 0, f"lr must be > 0, got {self.lr}")
        _need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        _need(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        _need(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        _need(self.eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {self.eval_batch_size}")
        _need(0 <= self.warmup_ratio < 1, f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        _need(self.max_grad_norm >= 0, f"max_grad_norm must be >= 0, got {self.max_grad_norm}")
        _need(
            self.device == "cpu" or self.device.startswith(("cuda", "mps")),
            f"device must be 'cpu', 'cuda[:N]' or 'mps', got {self.device!r}",
        )
