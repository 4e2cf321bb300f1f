"""Command line: ``python -m ausweep.report correlation [--preset P] [key=value ...]``."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

REPORTS = {"correlation": "text-only vs audio-grounded accuracy per LLM backbone and paired task (Pearson, Spearman, scatter plot)"}


def build_parser() -> argparse.ArgumentParser:
    from ausweep.config import describe
    from ausweep.report.correlation import CorrelationConfig

    fields = "\n".join(f"  {n:<22} {d:<18} {h}" for n, d, h in describe(CorrelationConfig))
    p = argparse.ArgumentParser(
        prog="python -m ausweep.report",
        description="Reports across finished sweeps, read back from MLflow.",
        epilog=("reports:\n" + "\n".join(f"  {k:<14} {v}" for k, v in REPORTS.items())
                + "\n\ncorrelation options (key=value):\n" + fields
                + "\n\nexamples:\n  python -m ausweep.report correlation\n"
                  "  python -m ausweep.report correlation --preset demo out_dir=report/\n"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("report", choices=sorted(REPORTS), help="which report")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="options, e.g. audio_run=<run id> audio_filter='{train.lr: 1.0e-4}'")
    p.add_argument("--preset", help="compare the latest sweeps run with this preset (shorthand for preset=P)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "mlflow", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from ausweep.config import ConfigError, from_dict, parse_overrides
    from ausweep.report.correlation import CorrelationConfig, ReportError, format_table, report

    try:
        values = parse_overrides(args.overrides)
        if args.preset is not None:
            values["preset"] = args.preset
        cfg = from_dict(CorrelationConfig, values, where="command line")
        rep = report(cfg)
    except (ConfigError, ReportError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table(rep))
    return 0
