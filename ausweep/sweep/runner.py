"""Run a sweep: resolve the file, prepare, run the Ray Tune ``Tuner``, mirror it all into MLflow.

The same code runs on a laptop (a local ``ray.init()``) and on a cluster (``ray job submit`` sets
``RAY_ADDRESS``). Each sweep run gets a directory ``<storage>/<sweep>[-<preset>]-<timestamp>``
holding Tune's state and ``ausweep_sweep.json`` (the MLflow parent run id and the resolved sweep),
which is what ``--resume`` continues from: only unfinished trials run again, into the same MLflow
parent and child runs.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ausweep.config import ConfigError, config_hash, flatten, from_dict, to_dict
from ausweep.sweep.spec import Sweep, is_selection_metric, load_sweep, to_tune_space
from ausweep.study import RUN_DIR_ENV, SUMMARY_METRICS, Study
from ausweep.sweep.studies import STUDIES

log = logging.getLogger(__name__)
STATE_FILE = "ausweep_sweep.json"


@dataclass
class SweepOutcome:
    run_dir: Path
    parent_run_id: str
    tracking_uri: str
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per trial: config, metrics, seconds
    n_errors: int = 0
    artifacts: list[Path] = field(default_factory=list)


def storage_root(sweep: Sweep, override: str | None = None) -> Path:
    """Where run directories go: ``--storage``, the sweep's ``storage_path``, ``$AUSWEEP_STORAGE``, ./ausweep_runs.

    A folder (``file://`` URIs too). Object-store URIs (``s3://``, ``gs://``) are refused: the
    driver keeps ``ausweep_sweep.json`` and the finished-trial records there and trials read them
    as files, so on a cluster use a shared file system (EFS, Filestore, a mounted bucket).
    """
    for where, value in (("--storage", override), (f"{sweep.path} (storage_path)", sweep.spec.storage_path),
                         ("$AUSWEEP_STORAGE", os.environ.get("AUSWEEP_STORAGE"))):
        if value:
            break
    else:
        where, value = "", "ausweep_runs"
    scheme, sep, rest = value.partition("://")
    if sep and scheme.lower() == "file":
        value = rest
    elif sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        raise ConfigError(where, "", f"{value!r}: ausweep keeps sweep state as files; give a folder on storage "
                                     f"every node sees (a shared file system or a mounted bucket), not a {scheme}:// URI")
    return Path(value).expanduser().resolve()


def find_resumable(root: Path, label: str) -> Path | None:
    """The newest run directory of this sweep and preset that has ausweep state."""
    runs = sorted((p for p in root.glob(f"{label}-2*") if (p / STATE_FILE).is_file()), key=lambda p: p.name)
    return runs[-1] if runs else None


def _trainable(config: dict[str, Any], study_name: str, completed_dir: str) -> None:
    """The Tune function trainable: build the typed config, run the study's trial, report.

    Tune saves its experiment state every few seconds, so after a driver crash it may not know
    that a trial finished. The driver records every finished trial (by config hash) under
    ``completed_dir``; such a trial replays its record instead of running again.
    """
    from ray import tune

    from ausweep.track.tune_callback import REPLAYED, completed_path

    record = completed_path(completed_dir, config_hash(config))
    if record.is_file():
        tune.report({**json.loads(record.read_text()), REPLAYED: 1})
        return
    # The sweep's run folder on storage, for studies that keep their own files there (training
    # checkpoints a resumed sweep must find); the trial's Tune directory may be a local staging copy.
    os.environ[RUN_DIR_ENV] = str(Path(completed_dir).parent)
    study = STUDIES.get(study_name)
    cfg = from_dict(study.config_cls, config, where="trial config")
    for result in study.trial(cfg):
        tune.report(result)


def _validate(sweep: Sweep, study: Study) -> list[Any]:
    """Build and check the typed config of every grid point, before any process starts."""
    configs = []
    for d in sweep.config_dicts():
        configs.append(from_dict(study.config_cls, d, where=str(sweep.path)))
    return configs


def run_sweep(
    name: str,
    preset: str | None = None,
    overrides: dict[str, Any] | None = None,
    resume: bool | str = False,
    storage: str | None = None,
    dry_run: bool = False,
    verbose: bool = False,
) -> SweepOutcome | Sweep:
    """Run sweep ``name`` end to end and return its outcome (``dry_run``: the resolved Sweep only)."""
    sweep = load_sweep(name, preset, overrides)
    study = STUDIES.get(sweep.spec.study)
    configs = _validate(sweep, study)
    from ausweep.runtime import MAX_CONCURRENT_ENV, parse_max_concurrent

    if os.environ.get(MAX_CONCURRENT_ENV, "").strip():  # a typo fails before Ray starts
        parse_max_concurrent(os.environ[MAX_CONCURRENT_ENV])
    if dry_run:
        return sweep

    root = storage_root(sweep, storage)
    run_dir, state = None, {}
    if resume:
        run_dir = Path(resume).resolve() if isinstance(resume, str) else find_resumable(root, sweep.run_label)
        if run_dir is None or not (run_dir / STATE_FILE).is_file():
            raise ConfigError(str(root), "", f"--resume: no earlier run of '{sweep.run_label}' to resume here")
        state = json.loads((run_dir / STATE_FILE).read_text())
        log.info("resuming %s", run_dir)
    else:
        run_dir = root / f"{sweep.run_label}-{time.strftime('%Y%m%d-%H%M%S')}"

    # Trials must see the same relative paths as the driver, not their trial directory.
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    from ausweep.runtime import init_ray, max_concurrent_trials
    from ausweep.track.tune_callback import NOT_METRICS

    # prepare() checks model names first, so a typo fails before any Ray process starts.
    space = study.prepare(configs, sweep.space)
    init_ray()
    res = sweep.spec.resources
    concurrency = max_concurrent_trials({"CPU": res.cpu, "GPU": res.gpu}, sweep.spec.tune.max_concurrent_trials)
    log.info("trials at once: %s (%s)", concurrency.max_concurrent or "no cap", concurrency.reason)
    if concurrency.warning:
        log.warning("%s", concurrency.warning)

    from ausweep.track.store import SweepTracker

    tracker = SweepTracker(sweep.name, uri=state.get("tracking_uri"))
    parent_params = {f"base.{k}": v for k, v in flatten(sweep.base).items()}
    parent_params.update({f"space.{k}": json.dumps(v) for k, v in space.items()})
    parent_params.update({f"tune.{k}": v for k, v in flatten(to_dict(sweep.spec.tune)).items()})
    parent_tags = {"ausweep.sweep": sweep.name, "ausweep.preset": sweep.preset or "", "ausweep.study": study.name,
                   "ausweep.sweep_file": str(sweep.path), "ausweep.run_dir": str(run_dir),
                   "ausweep.config_hash": config_hash(sweep.base),
                   "ausweep.max_concurrent_trials": str(concurrency.max_concurrent or "none"),
                   "ausweep.max_concurrent_reason": concurrency.reason}
    parent_id = tracker.start_parent(run_dir.name, parent_params, parent_tags, resume_id=state.get("parent_run_id"))

    if not state:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / STATE_FILE).write_text(json.dumps({
            "parent_run_id": parent_id, "tracking_uri": tracker.uri, "sweep": sweep.name, "preset": sweep.preset,
            "overrides": overrides or {}, "space": space, "started": time.time(),
        }, indent=2, default=str))

    tuner = _make_tuner(sweep, study, space, tracker, run_dir, resume=bool(state),
                        max_concurrent=concurrency.max_concurrent, verbose=verbose)
    outcome = SweepOutcome(run_dir=run_dir, parent_run_id=parent_id, tracking_uri=tracker.uri)
    status = "FAILED"
    try:
        grid = tuner.fit()
        for result in grid:
            if result.error is not None:
                outcome.n_errors += 1
                log.error("trial failed: %s", result.error)
                continue
            metrics = {k: v for k, v in (result.metrics or {}).items() if k not in NOT_METRICS}
            seconds = (result.metrics or {}).get("time_total_s")  # Tune's time inside the trial function
            outcome.rows.append({"config": result.config, "metrics": metrics, "seconds": seconds})
        out_dir = run_dir / "summary"
        out_dir.mkdir(exist_ok=True)
        if outcome.rows:
            outcome.artifacts = study.summarize(outcome.rows, out_dir)
            for p in outcome.artifacts:
                tracker.log_file(parent_id, p)
                if p.name == SUMMARY_METRICS:  # the study's numbers about the whole sweep
                    tracker.log_metrics(parent_id, json.loads(p.read_text()))
            metric = sweep.spec.tune.metric
            # "best" only where it was chosen on validation data: best_test/acc@1 is then the held-out
            # score of the trial chosen on val/acc@1. A grid of conditions ranked by a reported number
            # (acc of each backbone) has no best trial, and the parent run says so.
            best = _best(outcome.rows, metric, sweep.spec.tune.mode) if is_selection_metric(metric) else None
            if best:
                tracker.log_metrics(parent_id, {f"best_{k}": v for k, v in best["metrics"].items()})
            tracker.set_tags(parent_id, {"ausweep.best_chosen_on": metric if best else
                                         f"none ({metric} is not a validation/dev metric)"})
        tracker.set_tags(parent_id, {"ausweep.n_trials": len(outcome.rows) + outcome.n_errors, "ausweep.n_failed": outcome.n_errors})
        status = "FINISHED" if outcome.n_errors == 0 else "FAILED"
    finally:
        tracker.end(parent_id, status)
    return outcome


def _best(rows: list[dict[str, Any]], metric: str, mode: str) -> dict[str, Any] | None:
    scored = [r for r in rows if isinstance(r["metrics"].get(metric), (int, float))]
    if not scored:
        return None
    return (max if mode == "max" else min)(scored, key=lambda r: r["metrics"][metric])


def _make_tuner(sweep: Sweep, study: Study, space: dict, tracker: Any, run_dir: Path, resume: bool,
                max_concurrent: int | None, verbose: bool = False):
    from ray import tune

    from ausweep.sweep.spec import count_trials
    from ausweep.track.tune_callback import MLflowTrialLogger, TrialProgress

    res = sweep.spec.resources
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, study_name=study.name, completed_dir=str(run_dir / "completed")),
        {"cpu": res.cpu, "gpu": res.gpu},
    )
    if resume:
        # Finished trials are kept; unfinished and errored ones run again (into their MLflow runs).
        return tune.Tuner.restore(str(run_dir), trainable, resume_unfinished=True, restart_errored=True)
    settings = sweep.spec.tune
    scheduler = None
    if settings.scheduler.name == "asha":
        from ray.tune.schedulers import ASHAScheduler

        s = settings.scheduler
        scheduler = ASHAScheduler(max_t=s.max_t, grace_period=s.grace_period, reduction_factor=s.reduction_factor)
    search_alg = None
    if any(next(iter(d)) != "grid" for d in space.values()):
        from ray.tune.search.basic_variant import BasicVariantGenerator

        search_alg = BasicVariantGenerator(random_state=settings.seed)
    tune_config = tune.TuneConfig(
        metric=settings.metric, mode=settings.mode, num_samples=settings.num_samples,
        max_concurrent_trials=max_concurrent, scheduler=scheduler, search_alg=search_alg,
        # Reusing trial processes skips a torch/transformers import (seconds) per trial.
        reuse_actors=True,
    )
    callbacks = [MLflowTrialLogger(tracker, swept_keys=list(space), tags={"ausweep.sweep": sweep.name},
                                   completed_dir=str(run_dir / "completed"))]
    if not verbose:
        callbacks.append(TrialProgress(count_trials(space, settings.num_samples), settings.metric, settings.mode))
    run_config = tune.RunConfig(
        name=run_dir.name,
        storage_path=str(run_dir.parent),
        callbacks=callbacks,
        failure_config=tune.FailureConfig(max_failures=settings.max_failures),
        verbose=2 if verbose else 0,
    )
    return tune.Tuner(trainable, param_space=to_tune_space(sweep.base, space), tune_config=tune_config, run_config=run_config)
