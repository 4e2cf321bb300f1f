"""``python -m ausweep.audiobert CONFIG.yaml [key=value ...]``: one AudioBERT run, no sweep, no Ray.

The same run, data-parallel over several GPUs of one machine (accelerate splits every batch across
the processes; see :mod:`ausweep.audiobert.train`)::

    accelerate launch --num_processes 4 -m ausweep.audiobert configs/audiobert/auditorybench.yaml train.device=cuda

Sweeps (``python -m ausweep.sweep lora_rank``) run many such trials side by side, one device each.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ausweep.audiobert", description=__doc__.split("\n\n")[0].strip("`"),
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("config", help="an AudioBERT experiment YAML (configs/audiobert/*.yaml)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. adapter.lora_r=16 train.epochs=5")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from ausweep.audiobert.study import AudioBertExperiment, trial
    from ausweep.config import ConfigError, deep_merge, from_dict, load_yaml, parse_overrides

    try:
        values = deep_merge(load_yaml(args.config), parse_overrides(args.overrides))
        cfg = from_dict(AudioBertExperiment, values, where=args.config)
    except (ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    last: dict = {}
    for row in trial(cfg):
        last = row
    if int(os.environ.get("RANK", "0")) == 0:
        metrics = {k: v for k, v in last.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        print(json.dumps(metrics, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
