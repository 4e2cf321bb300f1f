"""The DeepSpeed config of a training run: a ``configs/deepspeed/*.json`` preset with every setting
:class:`~ausweep.lalm.train.config.TrainConfig` owns overridden.

No DeepSpeed import here: :func:`deepspeed_config` returns the dict ``deepspeed.initialize`` takes.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from ausweep.config import ConfigError
from ausweep.lalm.train.config import AUTO, DEEPSPEED_CONFIG_DIR, REPO, TrainConfig


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
