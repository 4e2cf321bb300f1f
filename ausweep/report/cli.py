"""Command line: ``python -m ausweep.report {correlation,models} [--preset P] [key=value ...]``."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

# report -> (one-line description, "module:config class")
REPORTS = {
    "correlation": ("text-only vs audio-grounded accuracy per LLM backbone and paired task (Pearson, Spearman, scatter plot)",
                    "ausweep.report.correlation:CorrelationConfig"),
    "models": ("each language model's numbers from every study side by side (CSV, Markdown, heat map)",
               "ausweep.report.models:ModelsConfig"),
}
EXAMPLES = """examples:
  python -m ausweep.report correlation
  python -m ausweep.report correlation --preset demo out_dir=report/
  python -m ausweep.report models --preset demo out_dir=report/
  python -m ausweep.report models aliases=my_aliases.yaml studies='[probe, knowledge_text]'
"""


def _config_cls(report: str) -> type:
    import importlib

    module, _, name = REPORTS[report][1].partition(":")
    return getattr(importlib.import_module(module), name)


def build_parser() -> argparse.ArgumentParser:
    from ausweep.config import describe

    options = "".join(f"\n\n{r} options (key=value):\n" + "\n".join(f"  {n:<22} {d:<18} {h}" for n, d, h in describe(_config_cls(r)))
                      for r in REPORTS)
    p = argparse.ArgumentParser(
        prog="python -m ausweep.report",
        description="Reports across finished sweeps, read back from MLflow.",
        epilog="reports:\n" + "\n".join(f"  {k:<14} {v[0]}" for k, v in REPORTS.items()) + options + "\n\n" + EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("report", choices=sorted(REPORTS), help="which report")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="options, e.g. audio_run=<run id> audio_filter='{train.lr: 1.0e-4}'")
    p.add_argument("--preset", help="only sweeps run with this preset (shorthand for preset=P)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "mlflow", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from ausweep.config import ConfigError, from_dict, parse_overrides

    try:
        values = parse_overrides(args.overrides)
        if args.preset is not None:
            values["preset"] = args.preset
        cfg = from_dict(_config_cls(args.report), values, where="command line")
        if args.report == "correlation":
            from ausweep.report.correlation import format_table, report

            print(format_table(report(cfg)))
        else:
            from ausweep.report.models import report, to_markdown

            print(to_markdown(report(cfg)), end="")
    except (ConfigError, ValueError) as e:  # both reports' ReportError are ValueErrors
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
