"""Command line: ``python -m ausweep.sweep NAME [--preset P] [--resume] [key=value ...]``."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from pathlib import Path
from typing import Sequence

EPILOG = """\
examples:
  python -m ausweep.sweep --list                    every sweep, one line each
  python -m ausweep.sweep probe --preset demo       the offline demo (shipped models, generated audio)
  python -m ausweep.sweep probe probe.lr=3e-4       dotted overrides fix a value (also a searched one)
  python -m ausweep.sweep probe tune.max_concurrent_trials=2 resources.gpu=0.5   the sweep's own settings
  python -m ausweep.sweep probe --resume            continue the newest interrupted run of this sweep
                                                    (refused if the sweep changed since; --resume-changed goes on)
  python -m ausweep.sweep probe --show              print the resolved config and search space, run nothing
  python -m ausweep.sweep probe --fields            every config field with its default and help
  ray job submit --working-dir . -- python -m ausweep.sweep probe    the same on a Ray cluster

Precedence: dataclass defaults < the sweep's config file < sweep overrides < preset < search point < key=value.
Tracking: MLflow at $MLFLOW_TRACKING_URI, else sqlite:///./mlruns.db. Open the UI with
  mlflow ui --backend-store-uri sqlite:///mlruns.db
Trial state (for --resume) lives in $AUSWEEP_STORAGE or ./ausweep_runs; the embedding cache in
$AUSWEEP_CACHE or ~/.cache/ausweep.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ausweep.sweep",
        description="Run a sweep declared in sweeps/NAME.yaml: Ray Tune trials, every one tracked in MLflow.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", nargs="?", help="sweep name (a file in sweeps/) or a path to a sweep YAML")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. probe.lr=3e-4 text.layer=6")
    p.add_argument("--list", action="store_true", help="list every sweep with its description and presets")
    p.add_argument("--preset", help="a preset declared in the sweep file (e.g. demo)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="RUN_DIR",
                   help="continue an interrupted run (default: the newest of this sweep); only unfinished trials run. "
                        "A key=value after it is an override, not RUN_DIR (unless a folder of that name exists)")
    p.add_argument("--resume-changed", action="store_true",
                   help="with --resume: continue even though the sweep's config, search space or Tune settings "
                        "changed since the run started (the unfinished trials keep the old ones)")
    p.add_argument("--storage", help="where Tune keeps trial state (default $AUSWEEP_STORAGE or ./ausweep_runs)")
    p.add_argument("--show", action="store_true", help="print the resolved base config, search space and trial count; run nothing")
    p.add_argument("--fields", action="store_true", help="print every config field of the sweep's study with its help")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging, Tune's own trial tables, and tracebacks for input errors")
    return p


# A dotted config key and "=": what an override starts with; no run folder path looks like it (it
# would need no "/" and a "=" in its name), and an existing folder of that name is still a run folder.
_OVERRIDE = re.compile(r"[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*=")


def _resume_without_override(argv: Sequence[str]) -> list[str]:
    """``--resume key=value``: argparse would read the override as --resume's RUN_DIR. When the
    value looks like an override and is no existing folder, ``--resume`` moves to the end of the
    options (before a ``--``), so it takes no value and the override keeps its place among the others."""
    argv = list(argv)
    for i, token in enumerate(argv[:-1]):
        if token == "--":
            break
        if token == "--resume" and _OVERRIDE.match(argv[i + 1]) and not Path(argv[i + 1]).is_dir():
            rest = argv[:i] + argv[i + 1:]
            end = rest.index("--", i) if "--" in rest[i:] else len(rest)
            return rest[:end] + ["--resume"] + rest[end:]
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    argv = _resume_without_override(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_intermixed_args(argv)  # options and key=value in any order
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "mlflow", "urllib3", "filelock", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from ausweep.config import ConfigError, parse_overrides
    from ausweep.registry import UnknownNameError
    from ausweep.sweep.spec import list_sweeps

    if args.list or not args.name:
        rows = list_sweeps()
        if not rows:
            print("no sweeps found (looked in $AUSWEEP_SWEEPS, ./sweeps and the checkout's sweeps/)")
            return 0 if args.list else 2
        width = max(len(n) for n, _ in rows)
        for name, desc in rows:
            print(f"{name:<{width}}  {desc}")
        return 0

    try:
        overrides = parse_overrides(args.overrides)
        if args.fields:
            return _print_fields(args.name)
        from ausweep.sweep.runner import run_sweep

        if args.show:
            return _print_show(run_sweep(args.name, args.preset, overrides, dry_run=True))
        if args.resume_changed and not args.resume:
            raise ConfigError("--resume-changed", "", "only means something with --resume")
        outcome = run_sweep(args.name, args.preset, overrides, resume=args.resume, storage=args.storage,
                            verbose=args.verbose, resume_changed=args.resume_changed)
    except (ConfigError, UnknownNameError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # data and model errors: one line naming the file or model, not a traceback
        if _is_user_error(e) and not args.verbose:
            print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
            return 2
        raise
    return _print_outcome(outcome)


def _is_user_error(e: BaseException) -> bool:
    """Errors about the user's inputs (files, names, values), reported in one line; ``-v`` shows
    the traceback. Anything else is a bug and keeps its traceback."""
    from ausweep.data.demo import DemoToolError
    from ausweep.extract import ExtractionError
    from ausweep.models.catalog import ModelUnavailableError

    return isinstance(e, (ExtractionError, ValueError, ModelUnavailableError, DemoToolError))


def _print_fields(name: str) -> int:
    from ausweep.config import describe
    from ausweep.sweep.spec import load_sweep
    from ausweep.sweep.studies import STUDIES

    study = STUDIES.get(load_sweep(name).spec.study)
    rows = describe(study.config_cls)
    width = max(len(r[0]) for r in rows)
    for field, default, help_ in rows:
        print(f"{field:<{width}}  {default:<22} {help_}")
    return 0


def _print_show(sweep) -> int:
    import yaml

    from ausweep.sweep.pbt import POPULATION

    sched = sweep.spec.tune.scheduler
    pbt = (f", scheduler: {sched.name} (every {sched.perturbation_interval} epochs, mutating "
           f"{', '.join(sched.hyperparam_mutations)})" if sched.name in POPULATION else f", scheduler: {sched.name}" if sched.name != "fifo" else "")
    print(f"# sweep {sweep.run_label} from {sweep.path}: {sweep.n_trials()} trial(s), "
          f"search: {sweep.spec.tune.search.name}{pbt}")
    space = {k: {**d, "when": sweep.conditions[k]} if k in sweep.conditions else d for k, d in sweep.space.items()}
    print(yaml.safe_dump({"base": sweep.base, "search_space": space}, sort_keys=False).rstrip())
    return 0


def _print_outcome(outcome) -> int:
    print()
    print(f"sweep finished: {len(outcome.rows)} trial(s) done, {outcome.n_errors} failed")
    print(f"  run dir:      {outcome.run_dir}")
    print(f"  MLflow:       {outcome.tracking_uri}  (parent run {outcome.parent_run_id})")
    for p in outcome.artifacts:
        print(f"  artifact:     {p}")
    from ausweep.track.store import ui_url

    # MLflow 3.17's UI opens an experiment on its GenAI overview unless the link asks for the runs
    if outcome.tracking_uri.startswith("sqlite:"):
        print(f"  open the UI:  mlflow ui --backend-store-uri {outcome.tracking_uri}")
        print(f"                then {ui_url('http://127.0.0.1:5000', outcome.experiment_id)}")
    elif outcome.tracking_uri.startswith(("http://", "https://")):
        print(f"  open the UI:  {ui_url(outcome.tracking_uri, outcome.experiment_id)}")
    if outcome.n_errors:
        print(f"  resume with:  python -m ausweep.sweep ... --resume {outcome.run_dir}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
