"""Distributed training of the audio-grounded LLM: DeepSpeed ZeRO-2/3 inside Ray Train workers.

Where it sits: the training stage of the ``lalm_backbone`` study.
:func:`fit` takes a :class:`~ausweep.lalm.model.LALMConfig`, a :class:`TrainConfig` and an
instruction JSONL (:func:`ausweep.lalm.data.load_instructions`), starts a Ray Train
``TorchTrainer`` whose workers each run :func:`train_loop_per_worker`, and returns the final
metrics and the folder of the trained LALM (:func:`ausweep.lalm.model.load_lalm` reads it).

Each worker builds the same LALM, hands its trainable parameters to ``deepspeed.initialize`` with
the config from :func:`deepspeed_config` (a JSON file under ``configs/deepspeed/``, overridden by
:class:`TrainConfig`), and trains on its shard of the data. Every ``checkpoint_every`` optimizer
steps all ranks write ``engine.save_checkpoint`` into their own temporary folder and report it with
``ray.train.report``: Ray Train merges the per-rank shards into one checkpoint folder on storage.
A run started again under the same ``storage_path``/``name`` continues from its newest checkpoint
(Ray Train V2 restores the run's checkpoint list; :func:`ray.train.get_checkpoint` hands it to the
workers): the step counter, optimizer and learning-rate schedule come back, and the data order and
dropout masks are functions of (seed, step, rank), so the resumed run computes the same next-step
loss as an uninterrupted one. The final checkpoint also holds ``lalm/``, the trainable weights
written by :meth:`LALM.save_trained` (under ZeRO-3 gathered from their shards first).

Ray Train V2 (the default since Ray 2.5x; ``RAY_TRAIN_V2_ENABLED`` unset or 1) is assumed: a
Tune trial that calls :func:`fit` is the Train driver (the pattern of Ray's "Hyperparameter Tuning
with Ray Tune" guide); ``report_to_tune=True`` forwards every training report to Tune through
``ray.tune.integration.ray_train.TuneReportCallback``.

DeepSpeed on a machine without GPUs (what CI and the offline demo run), found with DeepSpeed 0.19.8,
torch 2.13 (CPU build), Ray 2.60:

* ``deepspeed.accelerator.get_accelerator()`` detects no CUDA and falls back to its CPU accelerator
  (with a warning; the worker sets ``DS_ACCELERATOR=cpu`` first, so there is none). Without
  ``oneccl_bindings_for_pytorch`` (not installed, and not needed) that accelerator's
  communication backend is ``gloo``. intel-extension-for-pytorch is not needed either.
* Ray Train's ``TorchConfig(backend="gloo")`` initialises ``torch.distributed`` in every worker
  (``RANK``/``WORLD_SIZE``/``MASTER_ADDR`` set); ``deepspeed.init_distributed(dist_backend="gloo")``
  then adopts that process group. ZeRO-2 and ZeRO-3 (fp32 and bf16) run on it.
* The first ``init_distributed`` on a machine JIT-compiles DeepSpeed's ``deepspeed_shm_comm`` op
  (about 40 s on 2 cores; cached in ``~/.cache/torch_extensions``), which needs g++ and ninja.
  ZeRO-Offload (``offload_optimizer``) uses DeepSpeed's CPU Adam, which JIT-compiles ``cpu_adam``
  the first time (about 60 s). Without offload the optimizer is ``torch.optim.AdamW``
  (``torch_adam``), so nothing else is compiled: FusedAdam would need nvcc on a GPU box.

Resources: each worker takes ``cpus_per_worker`` CPUs (fractions allowed) and, with ``use_gpu``,
one GPU. A Tune trial that calls :func:`fit` holds its own CPU as well, so on a 2-CPU machine a
1-CPU trial with 2 workers needs ``cpus_per_worker: 0.5``. Ray Train starts the workers only when
all of them fit at once, and Tune does not count them in a trial's resources: limit
``max_concurrent_trials`` so the running trials leave room for their workers (on 2 CPUs: one trial),
or the trials hold every CPU while their workers wait (Ray's "Hyperparameter Tuning with Ray Tune"
guide says the same).

Under ``precision: bf16`` DeepSpeed casts the whole module to bf16 and keeps fp32 master weights
in the optimizer; ``lalm/`` then holds the bf16 module weights (what the forward pass used).
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ausweep.config import ConfigError, from_dict, option, to_dict

if TYPE_CHECKING:
    from ausweep.lalm.model import LALMConfig

REPO = Path(__file__).resolve().parents[2]
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


# ----------------------------------------------------------------------------- DeepSpeed config


def default_deepspeed_file(train_cfg: TrainConfig) -> Path:
    """The preset JSON for this ZeRO stage and offload setting."""
    if train_cfg.zero_stage == 3:
        name = "zero3_offload.json" if (train_cfg.offload_optimizer or train_cfg.offload_params) else "zero3.json"
    else:
        name = "zero2.json"
    return DEEPSPEED_CONFIG_DIR / name


def resolve_deepspeed_file(train_cfg: TrainConfig) -> Path:
    """Where ``train_cfg.deepspeed_config`` points (see its help); a missing file raises ConfigError."""
    if train_cfg.deepspeed_config is None:
        path = default_deepspeed_file(train_cfg)
        if not path.is_file():
            raise ConfigError(str(path), "deepspeed_config", "the default DeepSpeed preset is missing (is this a full checkout?)")
        return path
    given = Path(train_cfg.deepspeed_config).expanduser()
    for path in ([given] if given.is_absolute() else [Path.cwd() / given, DEEPSPEED_CONFIG_DIR / given, REPO / given]):
        if path.is_file():
            return path
    raise ConfigError("", "train.deepspeed_config", f"file not found: {train_cfg.deepspeed_config}")


def load_deepspeed_file(path: str | os.PathLike) -> dict[str, Any]:
    """A DeepSpeed JSON config as a dict; invalid JSON raises ConfigError naming the file and line."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(str(path), "", "file not found") from None
    except json.JSONDecodeError as e:
        raise ConfigError(str(path), "", f"not valid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    if not isinstance(data, dict):
        raise ConfigError(str(path), "", f"expected a JSON object, got {type(data).__name__}")
    return data


def deepspeed_config(train_cfg: TrainConfig, world_size: int, base: dict[str, Any] | None = None,
                     hidden_size: int | None = None) -> dict[str, Any]:
    """The DeepSpeed config dict for ``deepspeed.initialize``: ``base`` (default: the file named by
    ``train_cfg``) with every setting :class:`TrainConfig` owns overridden.

    TrainConfig decides the batch sizes (``train_batch_size = micro_batch_size x grad_accum x
    world_size``), the ZeRO stage and offload, bf16, gradient clipping and the optimizer (AdamW;
    ``torch.optim.AdamW`` unless the optimizer is offloaded, where DeepSpeed's CPU Adam is the fast
    path). The learning-rate schedule is not DeepSpeed's: a ``scheduler`` block is dropped
    (:func:`train_loop_per_worker` passes its own). Remaining ``"auto"`` values are the ZeRO bucket
    sizes: filled from ``hidden_size`` as the transformers integration does (``h*h``, ``0.9*h*h``,
    ``10*h``), or removed (DeepSpeed's defaults) when it is None.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    where = "deepspeed config"
    if base is None:
        path = resolve_deepspeed_file(train_cfg)
        base, where = load_deepspeed_file(path), str(path)
    cfg = copy.deepcopy(base)
    cfg["train_micro_batch_size_per_gpu"] = train_cfg.micro_batch_size
    cfg["gradient_accumulation_steps"] = train_cfg.grad_accum
    cfg["train_batch_size"] = train_cfg.micro_batch_size * train_cfg.grad_accum * world_size
    cfg["gradient_clipping"] = train_cfg.grad_clip
    bf16 = train_cfg.precision == "bf16"
    cfg["bf16"] = {**(cfg.get("bf16") if isinstance(cfg.get("bf16"), dict) else {}), "enabled": bf16}
    cfg.pop("fp16", None)  # bf16 needs no loss scaling; fp16 is not offered
    cfg.pop("scheduler", None)

    zero = cfg.get("zero_optimization")
    zero = dict(zero) if isinstance(zero, dict) else {}
    zero["stage"] = train_cfg.zero_stage
    pin = bool(train_cfg.use_gpu)  # pinned host memory only speeds up host<->GPU copies
    if train_cfg.offload_optimizer:
        zero["offload_optimizer"] = {**(zero.get("offload_optimizer") or {}), "device": "cpu", "pin_memory": pin}
    else:
        zero.pop("offload_optimizer", None)
    if train_cfg.offload_params:
        zero["offload_param"] = {**(zero.get("offload_param") or {}), "device": "cpu", "pin_memory": pin}
    else:
        zero.pop("offload_param", None)
    if train_cfg.zero_stage != 3:
        for key in [k for k in zero if k.startswith("stage3_")]:
            zero.pop(key)
    h = hidden_size
    fills = {"reduce_bucket_size": (lambda: h * h), "allgather_bucket_size": (lambda: h * h),
             "stage3_prefetch_bucket_size": (lambda: int(0.9 * h * h)),
             "stage3_param_persistence_threshold": (lambda: 10 * h)}
    for key, fill in fills.items():
        if zero.get(key) == AUTO:
            if h is None:
                zero.pop(key)
            else:
                zero[key] = fill()
    cfg["zero_optimization"] = zero

    opt = cfg.get("optimizer")
    params = dict(opt.get("params") or {}) if isinstance(opt, dict) else {}
    params = {k: v for k, v in params.items() if v != AUTO}
    params.update(lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    params.setdefault("betas", [0.9, 0.999])
    params.setdefault("eps", 1e-8)
    params["torch_adam"] = not train_cfg.offload_optimizer
    cfg["optimizer"] = {"type": "AdamW", "params": params}
    cfg.setdefault("steps_per_print", 10**9)  # progress goes through ray.train.report, not DeepSpeed's log
    cfg.setdefault("wall_clock_breakdown", False)

    left = [k for k, v in _flat(cfg).items() if v == AUTO]
    if left:
        raise ConfigError(where, left[0], "'auto' is only understood for batch sizes, optimizer params and ZeRO bucket sizes")
    return cfg


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# ----------------------------------------------------------------------------- data order


def micro_batches_per_epoch(n_examples: int, micro_batch_size: int, world_size: int) -> int:
    """Global micro-batches (one per rank) in one pass; the last partial one is dropped."""
    return n_examples // (micro_batch_size * world_size)


def total_steps(train_cfg: TrainConfig, n_examples: int, world_size: int) -> int:
    """Optimizer steps of the whole run: ``max_steps``, or the epochs' worth (at least 1)."""
    if train_cfg.max_steps is not None:
        return train_cfg.max_steps
    per_epoch = micro_batches_per_epoch(n_examples, train_cfg.micro_batch_size, world_size)
    return max(1, train_cfg.epochs * per_epoch // train_cfg.grad_accum)


def micro_batch_indices(n_examples: int, micro_index: int, micro_batch_size: int, world_size: int, rank: int,
                        seed: int) -> list[int]:
    """Example indices of global micro-batch ``micro_index`` for ``rank``.

    Micro-batches run on across epochs: epoch ``e`` is a permutation of the examples drawn from
    ``(seed, e)``; its first ``micro_batch_size * world_size`` examples are micro-batch 0, split by
    rank stride, and so on. A pure function of its arguments, so a resumed run picks up the data
    order exactly where the checkpoint left it.
    """
    import torch

    per_epoch = micro_batches_per_epoch(n_examples, micro_batch_size, world_size)
    if per_epoch < 1:
        raise ValueError(
            f"{n_examples} examples are fewer than one global micro-batch "
            f"(micro_batch_size {micro_batch_size} x {world_size} workers)"
        )
    epoch, j = divmod(micro_index, per_epoch)
    order = torch.randperm(n_examples, generator=torch.Generator().manual_seed(_mix(seed, epoch)))
    glob = order[j * micro_batch_size * world_size: (j + 1) * micro_batch_size * world_size]
    return [int(i) for i in glob[rank::world_size]]


def _mix(*ints: int) -> int:
    """One 63-bit seed from several integers (no collisions between (seed, step) pairs in practice)."""
    import numpy as np

    return int(np.random.SeedSequence([int(i) for i in ints]).generate_state(1, dtype=np.uint64)[0] >> 1)


# ----------------------------------------------------------------------------- the worker


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker = one DeepSpeed rank.

    ``config``: ``{"lalm": LALMConfig as a dict, "train": TrainConfig as a dict, "data_path": str}``.
    Reports ``loss`` (mean over ranks and the step's micro-batches), ``tokens_per_s`` (non-padding
    text tokens of all ranks / step wall time, data loading included), ``lr`` and ``step`` every
    ``log_every`` steps, a resumable checkpoint every ``checkpoint_every`` steps, and a final
    checkpoint with the trained LALM in ``lalm/``.
    """
    import ray.train

    train_cfg = from_dict(TrainConfig, config["train"], where="train_loop_config.train")
    os.environ.setdefault("DS_ACCELERATOR", "cuda" if train_cfg.use_gpu else "cpu")
    import deepspeed
    import torch
    import torch.distributed as dist
    from deepspeed.utils import set_z3_leaf_modules

    from ausweep.lalm.data import Collator, load_instructions
    from ausweep.lalm.model import LALMConfig, build_lalm

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    deepspeed.init_distributed(dist_backend="nccl" if train_cfg.use_gpu else "gloo")

    lalm_cfg = from_dict(LALMConfig, config["lalm"], where="train_loop_config.lalm")
    examples = load_instructions(config["data_path"])
    n = len(examples)
    if micro_batches_per_epoch(n, train_cfg.micro_batch_size, world) < 1:
        raise ValueError(f"{config['data_path']}: {n} examples are fewer than one global micro-batch "
                         f"(micro_batch_size {train_cfg.micro_batch_size} x {world} workers)")
    steps = total_steps(train_cfg, n, world)

    # Every rank must build the same model: peft draws LoRA's A matrices from the global RNG, and
    # ZeRO-3 keeps each rank's own slice of its own copy (it broadcasts nothing).
    torch.manual_seed(_mix(lalm_cfg.seed, train_cfg.seed))
    lalm = build_lalm(lalm_cfg)
    if train_cfg.gradient_checkpointing:
        lalm.causal_lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if train_cfg.zero_stage == 3:
        # These modules read their children's weights without calling the children (Whisper's
        # embed_positions.weight, MultiheadAttention's out_proj.weight): as ZeRO-3 leaves they
        # gather all their weights once per forward instead of one unscheduled gather per access.
        set_z3_leaf_modules(lalm, [type(lalm.encoder), torch.nn.MultiheadAttention])
    hidden = int(lalm.causal_lm.get_input_embeddings().embedding_dim)
    ds_cfg = deepspeed_config(train_cfg, world, hidden_size=hidden)
    warmup = train_cfg.warmup_steps

    def schedule(optimizer):
        from transformers import get_cosine_schedule_with_warmup

        return get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=warmup, num_training_steps=steps)

    engine, _, _, _ = deepspeed.initialize(model=lalm, model_parameters=lalm.trainable_parameters(),
                                           config=ds_cfg, lr_scheduler=schedule)
    device = engine.device
    collate = Collator(lalm.tokenizer, lalm.feature_extractor, lalm_cfg.max_text_tokens)

    step, history = 0, []
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            # Frozen weights were not saved (exclude_frozen_parameters): they come from build_lalm.
            _, client = engine.load_checkpoint(folder, tag=DS_TAG, load_module_strict=False)
            step = int(client["step"])
            log = Path(folder) / TRAIN_LOG
            history = json.loads(log.read_text())["steps"] if log.is_file() else []
        history = [h for h in history if h["step"] <= step]
    stop = steps if train_cfg.stop_after_steps is None else min(steps, step + train_cfg.stop_after_steps)

    def reduce_sum(values: list[float]) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()

    engine.train()
    window_tokens, window_s, start_step = 0.0, 0.0, step
    run_tokens, run_s = 0.0, 0.0
    while step < stop:
        t0 = time.perf_counter()
        loss_sum, tokens = 0.0, 0
        lr = float(engine.get_lr()[0])  # the rate this step applies (the schedule moves on in engine.step)
        for a in range(train_cfg.grad_accum):
            m = step * train_cfg.grad_accum + a
            idx = micro_batch_indices(n, m, train_cfg.micro_batch_size, world, rank, train_cfg.seed)
            batch = {k: v.to(device) for k, v in collate([examples[i] for i in idx]).items()}
            torch.manual_seed(_mix(train_cfg.seed, m, rank))  # dropout masks, identical after a resume
            loss = engine(**batch).loss
            engine.backward(loss)
            engine.step()
            loss_sum += float(loss.detach())
            tokens += int(batch["attention_mask"].sum())
        loss_all, tokens_all = reduce_sum([loss_sum / train_cfg.grad_accum, float(tokens)])
        seconds = time.perf_counter() - t0
        step += 1
        record = {"step": step, "loss": loss_all / world, "tokens": tokens_all, "seconds": seconds, "lr": lr}
        history.append(record)
        window_tokens += tokens_all
        window_s += seconds
        run_tokens += tokens_all
        run_s += seconds
        final = step >= stop
        due_ckpt = train_cfg.checkpoint_every > 0 and step % train_cfg.checkpoint_every == 0
        if final or due_ckpt or step % train_cfg.log_every == 0:
            metrics = {"loss": record["loss"], "lr": record["lr"], "step": step, "epoch": step * train_cfg.grad_accum
                       / micro_batches_per_epoch(n, train_cfg.micro_batch_size, world),
                       "tokens_per_s": window_tokens / max(window_s, 1e-9),
                       "run_tokens_per_s": run_tokens / max(run_s, 1e-9), "max_steps": steps,
                       "start_step": start_step, "finished": float(step >= steps)}
            window_tokens, window_s = 0.0, 0.0
            if final or due_ckpt:
                _report_checkpoint(engine, lalm, metrics, history, rank, write_lalm=final,
                                   zero3=train_cfg.zero_stage == 3)
            else:
                ray.train.report(metrics)
    if step == start_step:
        # Nothing left to train (the run had already finished): report its state once more so the
        # caller gets the final checkpoint and metrics.
        last = history[-1] if history else {"loss": float("nan"), "lr": 0.0}
        metrics = {"loss": last["loss"], "lr": last["lr"], "step": step, "epoch": 0.0, "tokens_per_s": 0.0,
                   "run_tokens_per_s": 0.0, "max_steps": steps, "start_step": start_step, "finished": float(step >= steps)}
        _report_checkpoint(engine, lalm, metrics, history, rank, write_lalm=True, zero3=train_cfg.zero_stage == 3)


def _report_checkpoint(engine, lalm, metrics: dict[str, Any], history: list[dict[str, Any]], rank: int,
                       write_lalm: bool, zero3: bool) -> None:
    """Every rank saves its DeepSpeed shard into its own temporary folder and reports it; Ray Train
    merges the folders. Rank 0 adds the step log and, when ``write_lalm``, the trained LALM."""
    import deepspeed
    import ray.train

    with tempfile.TemporaryDirectory(prefix="ausweep-ckpt-") as folder:
        # Frozen weights (encoder, base LLM) are rebuilt from their names: checkpoints stay small.
        engine.save_checkpoint(folder, tag=DS_TAG, client_state={"step": metrics["step"]},
                               exclude_frozen_parameters=True)
        if write_lalm:
            params = lalm.trainable_parameters()
            if zero3:
                # All ranks take part in the gather; only rank 0 writes.
                with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
                    if rank == 0:
                        lalm.save_trained(Path(folder) / LALM_DIR)
            elif rank == 0:
                lalm.save_trained(Path(folder) / LALM_DIR)
        if rank == 0:
            (Path(folder) / TRAIN_LOG).write_text(json.dumps({"steps": history}) + "\n")
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))


# ----------------------------------------------------------------------------- the driver


def fit(lalm_cfg: LALMConfig, train_cfg: TrainConfig, data_path: str | os.PathLike, storage_path: str | os.PathLike,
        name: str, resume: bool = True, report_to_tune: bool = False, callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Train a LALM with ``train_cfg.num_workers`` Ray Train workers running DeepSpeed.

    Works from a plain driver (Ray is started if it is not running) and from inside a Ray Tune
    function trainable, which then acts as the Train driver (``report_to_tune=True`` forwards every
    training report to Tune). Checkpoints go to ``storage_path/name`` (a local or shared
    filesystem path: the trained model folder must be readable by :func:`load_lalm`).

    ``resume``: a run folder that already exists is continued from its newest checkpoint (a finished
    run is not trained again); with ``resume=False`` an existing folder is an error.

    Returns the final metrics: ``loss``, ``lr``, ``step``, ``max_steps``, ``finished`` (1.0 once
    ``step`` reaches ``max_steps``; not called ``done``, which Tune reads as "stop this trial"),
    ``start_step`` (where this call resumed), ``tokens_per_s`` (mean over this call's steps),
    ``seconds``; and ``losses`` (per optimizer step, the whole run, earlier calls included),
    ``checkpoint`` (folder of the final checkpoint), ``model_dir`` (the trained LALM in it).
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    data_path = Path(data_path).expanduser().resolve()
    storage = Path(storage_path).expanduser().resolve()
    run_dir = storage / name
    if run_dir.exists() and not resume:
        raise FileExistsError(f"{run_dir}: a training run of this name exists; pass resume=True to continue it "
                              "or choose another name")
    from ausweep.lalm.data import load_instructions

    load_instructions(data_path)  # a bad data file fails here, with its name, not in every worker
    resolve_deepspeed_file(train_cfg)
    resources = {"CPU": train_cfg.cpus_per_worker}
    if train_cfg.use_gpu:
        resources["GPU"] = 1
    cbs = list(callbacks or [])
    if report_to_tune:
        from ray.tune.integration.ray_train import TuneReportCallback

        cbs.append(TuneReportCallback())
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"lalm": to_dict(lalm_cfg), "train": to_dict(train_cfg), "data_path": str(data_path)},
        torch_config=TorchConfig(backend="nccl" if train_cfg.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=train_cfg.num_workers, use_gpu=train_cfg.use_gpu,
                                     resources_per_worker=resources),
        run_config=RunConfig(name=name, storage_path=str(storage),
                             failure_config=FailureConfig(max_failures=train_cfg.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=train_cfg.keep_checkpoints),
                             callbacks=cbs or None),
    )
    t0 = time.perf_counter()
    result = trainer.fit()
    seconds = time.perf_counter() - t0
    if result.error is not None:
        raise result.error
    if result.checkpoint is None:
        raise RuntimeError(f"{run_dir}: training ended without a checkpoint")
    ckpt = Path(result.checkpoint.path)
    model_dir = ckpt / LALM_DIR
    if not (model_dir / "config.json").is_file():
        raise RuntimeError(f"{ckpt}: the final checkpoint has no trained LALM in {LALM_DIR}/")
    log = ckpt / TRAIN_LOG
    history = json.loads(log.read_text())["steps"] if log.is_file() else []
    out: dict[str, Any] = {k: v for k, v in result.metrics.items() if isinstance(v, (int, float))}
    out["tokens_per_s"] = out.pop("run_tokens_per_s", 0.0)
    out.update(seconds=seconds, losses=[h["loss"] for h in history], checkpoint=str(ckpt), model_dir=str(model_dir))
    return out


# ----------------------------------------------------------------------------- command line


def load_preset(path: str | os.PathLike, overrides: list[str] | None = None) -> tuple[LALMConfig, TrainConfig, str | None]:
    """``(LALMConfig, TrainConfig, data path or None)`` from a ``configs/lalm/*.yaml`` preset (sections
    ``lalm``, ``train`` and optionally ``data.train``, the layout of the lalm_backbone study config)
    with ``section.field=value`` overrides on top."""
    from ausweep.config import deep_merge, load_yaml, parse_overrides
    from ausweep.lalm.model import LALMConfig

    data = load_yaml(path)
    where = str(path)
    if overrides:
        data = deep_merge(data, parse_overrides(overrides))
        where = f"{path} + command line"
    unknown = sorted(set(data) - {"lalm", "train", "data"})
    if unknown:
        raise ConfigError(where, unknown[0], "unknown section (known: lalm, train, data)")
    lalm_cfg = from_dict(LALMConfig, data.get("lalm"), where=where, prefix="lalm")
    train_cfg = from_dict(TrainConfig, data.get("train"), where=where, prefix="train")
    data_path = (data.get("data") or {}).get("train")
    if data_path is not None and not isinstance(data_path, str):
        raise ConfigError(where, "data.train", f"expected a path, got {data_path!r}")
    return lalm_cfg, train_cfg, data_path


def main(argv: list[str] | None = None) -> int:
    """``python -m ausweep.lalm.train PRESET.yaml --data TRAIN.jsonl --storage DIR [section.field=value ...]``"""
    import argparse

    p = argparse.ArgumentParser(prog="python -m ausweep.lalm.train", description=main.__doc__)
    p.add_argument("preset", help="configs/lalm/*.yaml (sections lalm, train, data)")
    p.add_argument("overrides", nargs="*", help="section.field=value, e.g. train.max_steps=10")
    p.add_argument("--data", help="instruction JSONL (default: the preset's data.train)")
    p.add_argument("--storage", default=os.environ.get("AUSWEEP_STORAGE", "ausweep_runs"), help="checkpoint root")
    p.add_argument("--name", default=None, help="run name under --storage (default: lalm-<config hash>); an existing run continues")
    args = p.parse_args(argv)
    try:
        lalm_cfg, train_cfg, data_path = load_preset(args.preset, args.overrides)
    except ConfigError as e:
        p.error(str(e))
    data_path = args.data or data_path
    if data_path is None:
        p.error("no training data: pass --data or set data.train in the preset")
    from ausweep.config import config_hash

    name = args.name or f"lalm-{config_hash({'lalm': to_dict(lalm_cfg), 'train': to_dict(train_cfg), 'data': str(data_path)})}"
    out = fit(lalm_cfg, train_cfg, data_path, args.storage, name)
    for k, v in out.items():
        if k != "losses":
            print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy: Ray pickles functions and classes of
    # __main__ by value, and the workers could not resolve TrainConfig's type hints.
    from ausweep.lalm.train import main as _main

    raise SystemExit(_main())
