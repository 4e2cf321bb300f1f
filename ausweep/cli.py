"""``python -m ausweep ls``: what the registries hold (models, studies) and the sweeps on disk."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ausweep", description="ausweep: auditory-knowledge studies as Ray sweeps tracked in MLflow.")
    sub = p.add_subparsers(dest="cmd")
    ls = sub.add_parser("ls", help="list registered components and sweeps")
    ls.add_argument("kind", nargs="?", choices=["text", "audio", "studies", "sweeps"], help="only this kind")
    args = p.parse_args(argv)
    if args.cmd != "ls":
        p.print_help()
        return 0 if args.cmd is None else 2

    from ausweep.models import AUDIO_MODELS, TEXT_MODELS
    from ausweep.models.catalog import ensure_registered
    from ausweep.sweep.spec import list_sweeps
    from ausweep.sweep.studies import STUDIES

    ensure_registered()
    sections = {
        "text": ("text models", TEXT_MODELS.describe()),
        "audio": ("audio models", AUDIO_MODELS.describe()),
        "studies": ("studies", STUDIES.describe()),
        "sweeps": ("sweeps", list_sweeps()),
    }
    for key, (title, rows) in sections.items():
        if args.kind and args.kind != key:
            continue
        print(f"{title}:")
        width = max((len(n) for n, _ in rows), default=0)
        for name, help_ in rows:
            print(f"  {name:<{width}}  {help_}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
