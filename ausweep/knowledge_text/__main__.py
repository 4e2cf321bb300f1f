"""``python -m ausweep.knowledge_text export-lm-eval OUT/``: the knowledge sets as lm-eval task folders.

Each set becomes ``OUT/ausweep_<set>/`` (YAML, items, a loader), and ``OUT/ausweep_knowledge.yaml``
groups them; lm-evaluation-harness then runs them offline::

    python -m ausweep.knowledge_text export-lm-eval OUT/ --sets phonology music auditorybench file:akb.jsonl
    lm_eval --model hf --model_args pretrained=PATH --tasks ausweep_knowledge --include_path OUT/

The sweep itself is ``python -m ausweep.sweep knowledge_text``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from ausweep.knowledge_text.sets import set_names

    p = argparse.ArgumentParser(prog="python -m ausweep.knowledge_text", description=__doc__.split("\n\n")[0].strip("`"),
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    sub = p.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export-lm-eval", help="write the knowledge sets as lm-evaluation-harness task folders")
    ex.add_argument("out", help="folder to write the task folders into (pass it to lm_eval --include_path)")
    ex.add_argument("--sets", nargs="+", default=None,
                    help=f"sets to export: {', '.join(set_names())}, or file:<path> / a path (default: every named set)")
    ex.add_argument("--max-items", type=int, default=None,
                    help="at most N items per set, taken evenly over its subcategories (default: all; generated sets 100 per subcategory)")
    ex.add_argument("--seed", type=int, default=0, help="seed of the generated sets (phonology, music), as the study's `seed`")
    args = p.parse_args(argv)
    from ausweep.benchmarks.mcq import MCFormatError
    from ausweep.knowledge_text.harness import GROUP, export_lm_eval
    from ausweep.registry import UnknownNameError

    try:
        folders = export_lm_eval(args.out, args.sets or set_names(), args.max_items, args.seed)
    except (MCFormatError, UnknownNameError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for f in folders:
        print(f)
    print(f"lm_eval --model hf --model_args pretrained=PATH --tasks {GROUP} --include_path {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
