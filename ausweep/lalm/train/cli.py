"""``python -m ausweep.lalm.train PRESET.yaml --data TRAIN.jsonl --storage DIR [section.field=value ...]``:
train a LALM from a ``configs/lalm/*.yaml`` preset."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ausweep.config import ConfigError, from_dict, to_dict
from ausweep.lalm.train.config import TrainConfig
from ausweep.lalm.train.driver import fit

if TYPE_CHECKING:
    from ausweep.lalm.model import LALMConfig


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
