"""One Ray Train worker = one DeepSpeed rank: :func:`train_loop_per_worker` and its checkpoints.

Each worker builds the same LALM, hands its trainable parameters to ``deepspeed.initialize`` with
the config from :func:`~ausweep.lalm.train.ds_config.deepspeed_config` (a JSON file under
``configs/deepspeed/``, overridden by :class:`~ausweep.lalm.train.config.TrainConfig`), and trains
on its shard of the data. Under ZeRO-3 (``train.zero_init``, the default) the LALM loads straight
into its partitions (:func:`~ausweep.lalm.model.build_lalm` with ``zero3_config``): no rank holds
the whole model's parameters, which for a 14B backbone is what lets 8 ranks share a node's memory.
Every ``checkpoint_every`` optimizer steps all ranks write ``engine.save_checkpoint`` into their own
temporary folder and report it with ``ray.train.report``: Ray Train merges the per-rank shards into
one checkpoint folder on storage. A run started again under the same ``storage_path``/``name``
continues from its newest checkpoint (Ray Train V2 restores the run's checkpoint list;
:func:`ray.train.get_checkpoint` hands it to the workers): the step counter, optimizer and
learning-rate schedule come back, and the data order and dropout masks are functions of (seed, step,
rank) (:mod:`ausweep.lalm.train.order`), so the resumed run computes the same next-step loss as an
uninterrupted one. The final checkpoint also holds ``lalm/``, the trainable weights written by
:meth:`LALM.save_trained` (under ZeRO-3 gathered from their shards first).

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

Under ``precision: bf16`` DeepSpeed casts the whole module to bf16 and keeps fp32 master weights
in the optimizer; ``lalm/`` then holds the bf16 module weights (what the forward pass used).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from ausweep.config import from_dict
from ausweep.lalm.train.config import DS_TAG, LALM_DIR, TRAIN_LOG, TrainConfig
from ausweep.lalm.train.ds_config import deepspeed_config
from ausweep.lalm.train.order import (
    _mix,
    micro_batch_indices,
    micro_batches_per_epoch,
    total_steps,
)


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
    from ausweep.models.heads import lm_config

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

    # The LLM's hidden size sizes ZeRO's "auto" buckets, and the config must exist before the model
    # when the model loads into its partitions.
    hidden = int(lm_config(lalm_cfg.llm).get_text_config().hidden_size)
    ds_cfg = deepspeed_config(train_cfg, world, hidden_size=hidden)
    zero_init = train_cfg.zero_stage == 3 and train_cfg.zero_init
    # Every rank must build the same model: peft draws LoRA's A matrices from the global RNG, and the
    # Q-Former is seeded (DeepSpeed 0.19.8 broadcasts rank 0's values when it partitions a built
    # module; ranks that agree make that a no-op).
    torch.manual_seed(_mix(lalm_cfg.seed, train_cfg.seed))
    lalm = build_lalm(lalm_cfg, zero3_config=ds_cfg if zero_init else None)
    if train_cfg.gradient_checkpointing:
        lalm.causal_lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if train_cfg.zero_stage == 3:
        # These modules read their children's weights without calling the children (Whisper's
        # embed_positions.weight, MultiheadAttention's out_proj.weight): as ZeRO-3 leaves they
        # gather all their weights once per forward instead of one unscheduled gather per access.
        set_z3_leaf_modules(lalm, [type(lalm.encoder), torch.nn.MultiheadAttention])
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
