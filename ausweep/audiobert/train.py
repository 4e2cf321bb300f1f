"""The training loop shared by the span detector and AudioBERT.

Both are token-level classifiers trained with cross-entropy at *labelled* positions only: AudioBERT's
labels are the answer's word-piece ids at the ``[MASK]`` positions (masked-LM loss, -100 elsewhere);
the span detector's labels are O/B/I tags on every real token (-100 on special and padding tokens).
So one loop serves both: :func:`fit` takes a model, a dict of padded tensors with a ``labels`` key,
and a :class:`~ausweep.audiobert.config.TrainConfig`; :func:`fit_epochs` is the same loop as a
generator of epochs, for a caller that reports each epoch as it ends (a Tune trial).

The loop: AdamW over the parameters that require grad, cosine schedule with linear warm-up
(``transformers.get_cosine_schedule_with_warmup``), gradient-norm clipping, a dev evaluation each
epoch, and a best-dev checkpoint of the trainable parameters (kept in memory, optionally written as
safetensors). Mixed precision is bf16 autocast on CUDA (no gradient scaler needed).

Multi-GPU (data parallel) runs through accelerate when the process is one of several, i.e. when
it was started by ``accelerate launch`` or ``torchrun`` (``WORLD_SIZE`` > 1): every rank walks the
same shuffled batches and takes its share of each batch's rows, gradients are averaged by DDP, and
only the main process writes checkpoints. One process (a sweep trial, a laptop) trains on one
device exactly as before.
"""

from __future__ import annotations

import math
import os
import random
import time
import warnings
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ausweep.audiobert.config import TrainConfig
from ausweep.files import write_atomic

IGNORE_INDEX = -100  # label of positions that carry no loss (torch's and transformers' convention)
CHECKPOINT_NAME = "trainable.safetensors"

Batch = Mapping[str, torch.Tensor]  # name -> tensor whose first dimension is the example


# ----------------------------------------------------------------------------- loss and accuracy


def logits_of(output: Any) -> torch.Tensor:
    """The logits of a model's output: a tensor, or a transformers output with ``.logits``."""
    return output if isinstance(output, torch.Tensor) else output.logits


def masked_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over labelled positions.

    Args:
        logits: (B, T, C) float, C = vocabulary (masked LM) or tag set (span detector).
        labels: (B, T) int64; :data:`IGNORE_INDEX` where there is no loss.

    Returns:
        Scalar; 0 (with a gradient path) when no position is labelled.
    """
    keep = labels != IGNORE_INDEX  # (B, T)
    if not keep.any():
        return logits.sum() * 0.0
    # Select the labelled rows before the softmax: for a masked LM, that is 1-2 of T positions.
    return F.cross_entropy(logits[keep].float(), labels[keep])


def masked_token_counts(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, int]:
    """Correct / total counts at labelled positions, per token and per example.

    An example is correct when *every* labelled position is (AuditoryBench scores a multi-piece
    answer such as "sea lion" by exact match of all its word-pieces). Examples with no labelled
    position are not counted.

    Args:
        logits: (B, T, C); labels: (B, T) with :data:`IGNORE_INDEX` at unlabelled positions.
    """
    keep = labels != IGNORE_INDEX  # (B, T)
    hit = (logits.argmax(-1) == labels) & keep  # (B, T)
    has = keep.any(1)  # (B,)
    exact = (hit.sum(1) == keep.sum(1)) & has  # (B,)
    return {
        "tokens_correct": int(hit.sum()),
        "tokens": int(keep.sum()),
        "examples_correct": int(exact.sum()),
        "examples": int(has.sum()),
    }


# ----------------------------------------------------------------------------- batching


def num_examples(data: Batch) -> int:
    """Number of examples in a dict of tensors; every tensor must agree on its first dimension."""
    sizes = {k: int(v.shape[0]) for k, v in data.items()}
    if not sizes:
        raise ValueError("empty batch: no tensors")
    if len(set(sizes.values())) != 1:
        raise ValueError(f"tensors disagree on the number of examples: {sizes}")
    return next(iter(sizes.values()))


def iter_batches(data: Batch, batch_size: int, generator: torch.Generator | None = None):
    """Yield sub-dicts of ``batch_size`` examples; shuffled when ``generator`` is given."""
    n = num_examples(data)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        yield {k: v[idx] for k, v in data.items()}


def _to(batch: Batch, device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _autocast(device: torch.device, bf16: bool):
    # bf16 autocast only on CUDA: see TrainConfig.bf16.
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda")


def distributed_world_size() -> int:
    """Processes in this data-parallel job (``WORLD_SIZE`` set by ``accelerate launch`` / torchrun); 1 otherwise."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def shard_rows(batch: Batch, rank: int, world: int) -> dict[str, torch.Tensor]:
    """Rank ``rank``'s rows of a global batch: ``rank, rank + world, ...`` (all ranks cover it once)."""
    return {k: v[rank::world] for k, v in batch.items()}


def _forward(model: nn.Module, batch: Batch) -> torch.Tensor:
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    return logits_of(model(**inputs))


@torch.no_grad()
def evaluate(model: nn.Module, data: Batch, batch_size: int = 64, device: str | torch.device = "cpu",
             bf16: bool = False) -> dict[str, float]:
    """Score ``model`` on ``data`` (padded tensors incl. ``labels``) at the labelled positions.

    Returns ``loss`` (mean cross-entropy over labelled tokens), ``acc`` (exact match per example:
    every labelled token right) and ``token_acc``.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    loss_sum, counts = 0.0, {"tokens_correct": 0, "tokens": 0, "examples_correct": 0, "examples": 0}
    try:
        for batch in iter_batches(data, batch_size):
            batch = _to(batch, device)
            with _autocast(device, bf16):
                logits = _forward(model, batch)
            labels = batch["labels"]
            keep = labels != IGNORE_INDEX
            if keep.any():
                loss_sum += float(F.cross_entropy(logits[keep].float(), labels[keep], reduction="sum"))
            for k, v in masked_token_counts(logits, labels).items():
                counts[k] += v
    finally:
        model.train(was_training)
    return {
        "loss": loss_sum / max(counts["tokens"], 1),
        "acc": counts["examples_correct"] / max(counts["examples"], 1),
        "token_acc": counts["tokens_correct"] / max(counts["tokens"], 1),
    }


# ----------------------------------------------------------------------------- checkpoints


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the parameters that require grad, by their ``named_parameters`` name."""
    return {n: p.detach().to("cpu", copy=True).contiguous() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Copy ``state`` (from :func:`trainable_state_dict`) into ``model``; every name must exist
    and be trainable, and every trainable parameter must be given."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    unknown, missing = sorted(set(state) - set(params)), sorted(set(params) - set(state))
    if unknown or missing:
        raise KeyError(f"trainable state does not fit the model: unknown {unknown[:5]}, missing {missing[:5]}")
    shapes = [(n, tuple(state[n].shape), tuple(p.shape)) for n, p in params.items() if state[n].shape != p.shape]
    if shapes:
        n, saved, here = shapes[0]
        raise ValueError(f"trainable state does not fit the model: {n} is {saved} in the state, {here} in the model "
                         f"({len(shapes)} such); a state restores only into a model built alike (e.g. the same LoRA rank)")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(state[n].to(p.device, p.dtype))


def save_trainable(state: Mapping[str, torch.Tensor], directory: str | Path,
                   metadata: Mapping[str, Any] | None = None) -> Path:
    """Write ``state`` to ``directory/trainable.safetensors`` atomically.

    The file is written under a temporary name in the same directory and renamed over the old
    one, so a reader (or a crash mid-write) never sees a half-written checkpoint.
    """
    from safetensors.torch import save_file

    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    return write_atomic(Path(directory) / CHECKPOINT_NAME, lambda tmp: save_file(dict(state), str(tmp), metadata=meta))


def load_trainable(model: nn.Module, path: str | Path) -> dict[str, str]:
    """Load a checkpoint written by :func:`save_trainable` (a file or its directory) into ``model``;
    returns the file's metadata."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    load_trainable_state_dict(model, load_file(str(path)))
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


# ----------------------------------------------------------------------------- the loop


@dataclass
class TrainResult:
    """What :func:`fit` returns.

    ``history`` has one row per epoch: ``epoch``, ``train_loss`` (mean over that epoch's steps),
    ``lr`` (at the epoch's end) and every dev metric prefixed ``dev_`` (``dev_acc``, ``dev_loss``,
    ... from the evaluation function).
    """

    history: list[dict[str, float]]
    best_epoch: int  # 0-based; the last epoch when there is no dev set
    best_metric: float  # the selection metric at best_epoch (nan without a dev set)
    metric: str  # its name, e.g. "acc"
    examples_per_s: float  # training throughput (optimiser steps only, evaluation excluded)
    train_seconds: float
    best_state: dict[str, torch.Tensor] = field(repr=False)  # trainable parameters at best_epoch (CPU)
    checkpoint: Path | None = None


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def fit(
    model: nn.Module,
    train_data: Batch,
    cfg: TrainConfig,
    dev_data: Batch | None = None,
    eval_fn: Callable[[nn.Module], Mapping[str, float]] | None = None,
    metric: str = "acc",
    mode: str = "max",
    log: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train the parameters of ``model`` that require grad; returns a :class:`TrainResult`.

    Args:
        model: called as ``model(**inputs)`` with every key of the data except ``labels``; returns
            (B, T, C) logits or an output with ``.logits``.
        train_data: dict of equally long tensors; ``labels`` (N, T) holds class ids at the
            positions that carry loss and :data:`IGNORE_INDEX` elsewhere.
        cfg: optimiser, schedule, epochs, device, checkpointing.
        dev_data: scored after each epoch by :func:`evaluate` (unless ``eval_fn`` is given).
        eval_fn: ``eval_fn(model) -> {name: value}``, replacing the default dev evaluation (the span
            detector uses it to select on span F1). The model is in eval mode while it runs.
        metric: the dev metric that selects the best epoch; ``mode`` "max" or "min".
        log: called with each epoch's history row (e.g. to print).
    """
    epochs = fit_epochs(model, train_data, cfg, dev_data, eval_fn, metric, mode)
    while True:
        try:
            row = next(epochs)
        except StopIteration as done:
            return done.value
        if log is not None:
            log(row)


def fit_epochs(
    model: nn.Module,
    train_data: Batch,
    cfg: TrainConfig,
    dev_data: Batch | None = None,
    eval_fn: Callable[[nn.Module], Mapping[str, float]] | None = None,
    metric: str = "acc",
    mode: str = "max",
    resume: Mapping[str, Any] | None = None,
) -> Generator[EpochRow, None, TrainResult]:
    """:func:`fit` as a generator: yields each epoch's history row as soon as the epoch is done and
    returns the :class:`TrainResult` (``result = yield from fit_epochs(...)``).

    Training runs only while the caller asks for the next row, in the caller's thread: a caller
    that stops asking (a Tune trial stopped by its scheduler) or closes the generator stops the
    training there, and nothing keeps running behind it.

    Each row is an :class:`EpochRow`, whose ``training_state()`` is the whole state of the run at
    that epoch's end. ``resume`` (such a state, e.g. :func:`load_training_state` of another run's
    checkpoint) continues that run at its next epoch with ``cfg``'s learning rate, weight decay and
    gradient clipping (:data:`RESUMABLE_KEYS`): with the same ``cfg`` the rows and weights are those
    of the uninterrupted run (on CPU; the CUDA RNG is not restored).
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    if "labels" not in train_data:
        raise ValueError("train_data needs a 'labels' tensor")
    n_train = num_examples(train_data)
    seed_everything(cfg.seed)
    shuffle = torch.Generator().manual_seed(cfg.seed)
    run = _start(model, cfg, n_train)
    if eval_fn is None and dev_data is not None:
        def eval_fn(m: nn.Module) -> Mapping[str, float]:
            return evaluate(m, dev_data, cfg.eval_batch_size, run.device, cfg.bf16)

    best = _Best(metric, mode, trainable_state_dict(run.core), cfg.save_dir if run.main_process else None)
    history: list[dict[str, float]] = []
    train_seconds, start = 0.0, 0
    if resume is not None:
        start, train_seconds = _restore(run, best, history, shuffle, resume, cfg)

    def state(epochs_done: int) -> Callable[[], dict[str, Any]]:
        return lambda: _training_state(run, best, history, shuffle, epochs_done, train_seconds)

    for epoch in range(start, cfg.epochs):
        losses, seconds = _train_epoch(run, train_data, cfg, shuffle)
        train_seconds += seconds
        row = {"epoch": float(epoch), "train_loss": float(np.mean(losses)), "lr": float(run.scheduler.get_last_lr()[0])}
        if eval_fn is not None:
            scores = _dev_scores(run, eval_fn, metric)
            row.update({f"dev_{k}": float(v) for k, v in scores.items()})
            best.offer(run.core, epoch, float(scores[metric]))
        else:
            best.offer(run.core, epoch, math.nan, always=True)  # no dev set: keep the last epoch
        history.append(row)
        yield EpochRow(row, state(epoch + 1))

    if cfg.restore_best:
        load_trainable_state_dict(run.core, best.state)
    run.core.eval()
    if run.accelerator is not None:
        run.accelerator.wait_for_everyone()
    return TrainResult(
        history=history,
        best_epoch=best.epoch,
        best_metric=best.value,
        metric=metric,
        examples_per_s=n_train * cfg.epochs / max(train_seconds, 1e-9),  # all ranks together
        train_seconds=train_seconds,
        best_state=best.state,
        checkpoint=best.checkpoint,
    )


# ----------------------------------------------------------------------------- resumable training state

STATE_FILE = "training_state.pt"
# TrainConfig fields a resumed run takes from its own config rather than from the state it resumes:
# the optimiser's hyperparameters, which can change between two optimiser steps. The others (epochs,
# batch size, warm-up) set the schedule's horizon or the batches, which a resumed run shares.
RESUMABLE_KEYS = ("lr", "weight_decay", "max_grad_norm")


class EpochRow(dict):
    """An epoch's history row (``{name: float}``) whose ``training_state()`` is the run's whole state
    at that epoch's end: trainable weights, optimiser and schedule, best epoch so far, history and
    RNGs. Taken only when asked for (the weights are copied then), before the next epoch starts."""

    def __init__(self, row: Mapping[str, float], state: Callable[[], dict[str, Any]]):
        super().__init__(row)
        self._state = state

    def training_state(self) -> dict[str, Any]:
        return self._state()


def _training_state(run: _Run, best: _Best, history: list[dict[str, float]], shuffle: torch.Generator,
                    epochs_done: int, train_seconds: float) -> dict[str, Any]:
    return {
        "epochs_done": epochs_done,
        "trainable": trainable_state_dict(run.core),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "best": {"epoch": best.epoch, "value": best.value, "state": dict(best.state)},
        "history": [dict(r) for r in history],
        "train_seconds": train_seconds,
        "rng": {"torch": torch.get_rng_state(), "shuffle": shuffle.get_state()},
    }


def save_training_state(state: Mapping[str, Any], directory: str | Path) -> Path:
    """Write a :meth:`EpochRow.training_state` to ``directory/training_state.pt`` (atomically)."""
    return write_atomic(Path(directory) / STATE_FILE, lambda tmp: torch.save(dict(state), tmp))


def load_training_state(path: str | Path) -> dict[str, Any]:
    """A state written by :func:`save_training_state` (the file or its directory), on CPU."""
    path = Path(path)
    if path.is_dir():
        path = path / STATE_FILE
    return torch.load(path, map_location="cpu", weights_only=True)


def _restore(run: _Run, best: _Best, history: list[dict[str, float]], shuffle: torch.Generator,
             state: Mapping[str, Any], cfg: TrainConfig) -> tuple[int, float]:
    """Load ``state`` into the run, then give the optimiser ``cfg``'s hyperparameters; returns
    (epochs already done, training seconds so far)."""
    load_trainable_state_dict(run.core, state["trainable"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    # The schedule multiplies each group's base rate by its factor at the current step: a new learning
    # rate becomes the new base, at the same point of the warm-up and cosine decay.
    run.scheduler.base_lrs = [cfg.lr for _ in run.optimizer.param_groups]
    factors = [f(run.scheduler.last_epoch) for f in run.scheduler.lr_lambdas]
    for group, factor in zip(run.optimizer.param_groups, factors):
        group.update(initial_lr=cfg.lr, lr=cfg.lr * factor, weight_decay=cfg.weight_decay)
    run.scheduler._last_lr = [g["lr"] for g in run.optimizer.param_groups]
    b = state["best"]
    best.epoch, best.value, best.state = int(b["epoch"]), float(b["value"]), dict(b["state"])
    history.extend(dict(r) for r in state["history"])
    torch.set_rng_state(state["rng"]["torch"])
    shuffle.set_state(state["rng"]["shuffle"])
    epochs_done = int(state["epochs_done"])
    if not 0 <= epochs_done <= cfg.epochs:
        raise ValueError(f"the training state is {epochs_done} epochs in, outside this run's {cfg.epochs} epochs")
    return epochs_done, float(state["train_seconds"])


@dataclass
class _Run:
    """What :func:`fit` trains with: the model on its device, its optimiser and schedule, and the
    data-parallel setup (``accelerator`` None in a single process)."""

    model: nn.Module  # what the loop calls: the module itself, or its DDP wrapper
    core: nn.Module  # the module itself: evaluated, checkpointed, returned
    params: list[nn.Parameter]  # the trainable ones
    optimizer: torch.optim.Optimizer
    scheduler: Any
    device: torch.device
    accelerator: Any = None  # accelerate.Accelerator when data-parallel
    world: int = 1

    @property
    def main_process(self) -> bool:
        return self.accelerator is None or self.accelerator.is_main_process


def _start(model: nn.Module, cfg: TrainConfig, n_train: int) -> _Run:
    """Move ``model`` to its device, build the optimiser and schedule, and wrap both for data
    parallelism when this process is one of several."""
    accelerator, device, world = _data_parallel(cfg)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (nothing requires grad)")
    optimizer, scheduler = _optimizer_and_schedule(params, cfg, n_train)
    core = model
    if accelerator is not None:
        model, optimizer = accelerator.prepare(model, optimizer)
    return _Run(model, core, params, optimizer, scheduler, device, accelerator, world)


def _data_parallel(cfg: TrainConfig) -> tuple[Any, torch.device, int]:
    """``(accelerator, device, world size)``: an accelerate ``Accelerator`` when the process was
    started as one of several (``WORLD_SIZE`` > 1), else None and ``cfg.device``."""
    device = torch.device(cfg.device)
    world = distributed_world_size()
    if world == 1:
        return None, device, world
    from accelerate import Accelerator, DistributedDataParallelKwargs

    if cfg.batch_size < world:
        raise ValueError(f"batch_size {cfg.batch_size} is smaller than the {world} data-parallel processes")
    # find_unused_parameters: AudioBERT's LoRA is off for rows without a span, so a rank's
    # batch may leave adapter weights without gradients.
    accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision="bf16" if cfg.bf16 else "no",
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    return accelerator, accelerator.device, world


def _optimizer_and_schedule(params: list[nn.Parameter], cfg: TrainConfig, n_train: int):
    """AdamW over ``params`` and a cosine schedule with linear warm-up over every batch of the run."""
    from transformers import get_cosine_schedule_with_warmup

    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = math.ceil(n_train / cfg.batch_size) * cfg.epochs
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * steps), steps)
    return optimizer, scheduler


def _train_epoch(run: _Run, train_data: Batch, cfg: TrainConfig, shuffle: torch.Generator) -> tuple[list[float], float]:
    """One pass over ``train_data`` in shuffled batches; returns each batch's loss (this rank's
    rows) and the seconds it took."""
    model, device, accelerator = run.model, run.device, run.accelerator
    model.train()
    t0 = time.perf_counter()
    losses = []
    for batch in iter_batches(train_data, cfg.batch_size, shuffle):
        if accelerator is not None:
            if num_examples(batch) < run.world:  # a last batch too small to give every rank a row
                continue
            batch = shard_rows(batch, accelerator.process_index, run.world)
        batch = _to(batch, device)
        with _autocast(device, cfg.bf16):
            logits = _forward(model, batch)
        loss = masked_token_loss(logits, batch["labels"])
        run.optimizer.zero_grad(set_to_none=True)
        if accelerator is not None:
            # every rank must join the gradient all-reduce, even one whose rows all took the
            # frozen path: a zero-valued term keeps the graph connected to the trainable weights
            accelerator.backward(loss + sum(p.sum() for p in run.params) * 0.0)
            if cfg.max_grad_norm > 0:
                accelerator.clip_grad_norm_(run.params, cfg.max_grad_norm)
            run.optimizer.step()
        # A batch can have no trainable path (AudioBERT: no row has an auditory span, so every
        # row ran through the frozen model); it then has nothing to update.
        elif loss.requires_grad:
            loss.backward()
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(run.params, cfg.max_grad_norm)
            run.optimizer.step()
        with warnings.catch_warnings():  # after a skipped step torch warns of the order; the schedule
            warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*")  # counts batches on purpose
            run.scheduler.step()
        losses.append(float(loss.detach()))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return losses, time.perf_counter() - t0


def _dev_scores(run: _Run, eval_fn: Callable[[nn.Module], Mapping[str, float]], metric: str) -> dict[str, float]:
    """``eval_fn`` on the model in eval mode, without gradients; the scores must include ``metric``."""
    run.model.eval()
    with torch.no_grad():  # every rank scores the whole dev set with identical weights
        scores = dict(eval_fn(run.core))
    if metric not in scores:
        raise KeyError(f"the dev evaluation returned {sorted(scores)}, not the selection metric {metric!r}")
    return scores


@dataclass
class _Best:
    """The best epoch so far by the dev ``metric``: its trainable parameters (CPU copies) and, with a
    ``save_dir``, their checkpoint file."""

    metric: str
    mode: str  # "max" or "min"
    state: dict[str, torch.Tensor]  # before any epoch: the initial parameters
    save_dir: str | Path | None  # None on every rank but the main one
    epoch: int = -1
    value: float = math.nan
    checkpoint: Path | None = None

    def offer(self, core: nn.Module, epoch: int, value: float, always: bool = False) -> None:
        """Keep ``core``'s parameters if ``value`` beats the best so far (the first epoch always
        does; ``always`` keeps them regardless)."""
        improved = always or self.epoch < 0 or (value > self.value if self.mode == "max" else value < self.value)
        if not improved:
            return
        self.state, self.epoch, self.value = trainable_state_dict(core), epoch, value
        if self.save_dir is not None:
            self.checkpoint = save_trainable(self.state, self.save_dir, {"epoch": epoch, self.metric: value})
