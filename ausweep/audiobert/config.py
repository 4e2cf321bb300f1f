"""Settings of the adaptation stage: the AudioBERT model and the shared training loop.

Both are frozen, validated dataclasses (build them from dicts with :func:`ausweep.config.from_dict`).
Defaults follow the upstream AudioBERT code (github.com/HJ-Ok/AudioBERT, ``model/AudioBERT``):
LoRA r=64, alpha=128, dropout 0.01 on query/key/value; AdamW at 1e-4, batch 8, 20 epochs, cosine
schedule with 10 % warm-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ausweep.config import option
from ausweep.data.sources import DataConfig
from ausweep.extract import ExtractConfig


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass(frozen=True)
class AudioBertConfig:
    """How an AudioBERT is built around a masked LM (see :class:`ausweep.audiobert.model.AudioBert`)."""

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
    audio_source: Literal["clap", "ast"] = option(
        "clap",
        help="What is written at a span. 'clap': the retrieved clip's frozen CLAP audio embedding "
        "(extracted once, cached) through a trained linear projection, as the paper describes. 'ast': as "
        "upstream's code does it: an AST (audio_encoder) reads the retrieved clip's audio, its last hidden "
        "states are averaged over all tokens, and it trains jointly with LoRA (its weights are in the "
        "optimiser, at train.lr: upstream has no separate rate); the mean is written as is when the AST's "
        "width equals the LM's hidden size (AST and BERT-base: 768), else through a trained linear "
        "projection (upstream's 768 -> 1024 linear for BERT-large).",
    )
    audio_encoder: str = option(
        "ast",
        help="audio_source=ast only: the AST, as an audio registry name ('ast' = "
        "MIT/ast-finetuned-audioset-10-10-0.4593, upstream's; 'tiny-ast' for tests), a local folder or a hub id.",
    )

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
    """How :func:`ausweep.audiobert.train.fit` trains (the span detector or AudioBERT)."""

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


@dataclass(frozen=True)
class SpanSettings:
    source: Literal["detector", "gold"] = option("detector", help="'detector': train the span detector and use its spans; 'gold': the dataset's own spans (an oracle ablation).")
    model: str = option("bert-base-uncased", help="Encoder of the span detector: a hub id, local folder, or tiny-bert (tests).")
    epochs: int = option(5, help="Span detector training epochs (upstream: 5).")
    lr: float = option(1e-5, help="Span detector learning rate (upstream: 1e-5).")
    batch_size: int = option(16, help="Span detector batch size (upstream: 16).")
    seed: int = option(0, help="Span detector seed (one detector serves every trial of a task).")
    max_spans: int = option(2, help="Spans kept per sentence, the first ones in sentence order; each retrieves its own clip and is written at its own first token (pitch compares two).")

    def __post_init__(self) -> None:
        if self.max_spans < 1:
            raise ValueError(f"max_spans must be >= 1, got {self.max_spans}")


@dataclass(frozen=True)
class RetrievalSettings:
    clap: str = option("clap", help="CLAP model, as an audio registry name whose vectors live in CLAP's joint space: 'clap' (laion/clap-htsat-fused), 'clap-unfused', LAION-CLAP's original files 'laion-clap' (630k-audioset-best.pt), 'laion-clap-fusion', 'laion-clap-music-speech', 'laion-clap-music', or 'tiny-clap-joint' (tests).")
    corpus: DataConfig = option(DataConfig(source="demo", clips_per_class=4), help="The audio corpus that spans retrieve from.")
    extract: ExtractConfig = option(ExtractConfig(), help="How the corpus's CLAP embeddings are extracted and cached.")


@dataclass(frozen=True)
class AudioBertExperiment:
    task: Literal["animal", "pitch"] = option("animal", help="AuditoryBench task: animal sound recognition or sound pitch comparison.")
    model: str = option("bert-base-uncased", help="The masked LM AudioBERT wraps (needs its MLM head): hub id, local folder, tiny-bert.")
    max_items: int | None = option(None, help="Use at most this many items per split (demos, smoke tests), counted after cross_split_duplicates; None = all.")
    eval_splits: list[str] = option(["dev", "test", "wiki"], help="Splits scored after training. dev alone selects the best epoch (and the sweep's trials, on dev/acc); test and wiki are held out, scored once, after training.")
    cross_split_duplicates: Literal["drop", "keep"] = option("drop", help="Dev/test/wiki rows whose sentence and answer also appear in train (case- and whitespace-insensitive; animal dev/test/wiki 31/60/32, pitch 25/47/0): 'drop' leaves them out, so neither the best epoch nor the scores reward memorising train; 'keep' uses every row, as the published numbers were, for comparison with them. <split>/n_in_train counts them either way.")
    span: SpanSettings = option(SpanSettings(), help="Where auditory spans come from.")
    retrieval: RetrievalSettings = option(RetrievalSettings(), help="CLAP text-to-audio retrieval.")
    adapter: AudioBertConfig = option(AudioBertConfig(), help="Audio source, projection and LoRA (d_audio is set from the CLAP model, or from the AST with audio_source=ast).")
    train: TrainConfig = option(TrainConfig(), help="AudioBERT training.")

    def __post_init__(self) -> None:
        bad = sorted(set(self.eval_splits) - {"train", "dev", "test", "wiki"})
        if bad:
            raise ValueError(f"eval_splits: unknown split(s) {bad}")
        if "dev" not in self.eval_splits:
            raise ValueError("eval_splits must include 'dev' (it selects the best epoch)")
        if self.max_items is not None and self.max_items < 2:
            raise ValueError("max_items must be >= 2")


# ----------------------------------------------------------------------------- auditory context
