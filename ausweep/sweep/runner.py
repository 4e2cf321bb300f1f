"""Run a sweep: resolve the file, prepare, run the Ray Tune ``Tuner``, mirror it all into MLflow.

The same code runs on a laptop (a local ``ray.init()``) and on a cluster (``ray job submit`` sets
``RAY_ADDRESS``). Each sweep run gets its own directory ``<storage>/<sweep>[-<preset>]-<timestamp>-<random>``
(created exclusively, so two launches in the same second never share one) holding Tune's state and
``ausweep_sweep.json`` (written atomically: the MLflow parent run id and the resolved sweep with its
fingerprint), which is what ``--resume`` continues from: only unfinished trials run again, into the
same MLflow parent and child runs. ``--resume`` refuses a sweep whose config, search space or Tune
settings changed since the run started (Tune would run the remaining trials with the stored ones
anyway), unless ``--resume-changed`` says go on.

As a Ray job (``ray job submit``) the driver's folder is Ray's: the unpacked ``--working-dir``
(``.../runtime_resources/working_dir_files/_ray_pkg_<hash>/``), deleted when the job ends. So a Ray
job must name its storage (``--storage``, the sweep's ``storage_path`` or ``$AUSWEEP_STORAGE``), and
no storage inside that folder is accepted (:func:`choose_storage`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ausweep.config import ConfigError, config_hash, flatten, from_dict, set_dotted, to_dict
from ausweep.files import write_text_atomic
from ausweep.study import CHECKPOINT, RUN_DIR_ENV, SUMMARY_METRICS, Study
from ausweep.sweep.pbt import PBT_FIELDS, POPULATION, check_pbt_study
from ausweep.sweep.search import SearchSpec, write_pareto
from ausweep.sweep.spec import Sweep, is_selection_metric, load_sweep
from ausweep.sweep.studies import STUDIES

log = logging.getLogger(__name__)
STATE_FILE = "ausweep_sweep.json"
DEFAULT_STORAGE = "ausweep_runs"
# Set by Ray's job supervisor for the entrypoint of `ray job submit` (its runtime_env and job id).
RAY_JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"
CHECKPOINT_META = "ausweep_checkpoint.json"  # in each Tune checkpoint of a trial: {iteration, trial_id}
TRIAL_ARTIFACTS = "trial_artifacts"  # <run_dir>/trial_artifacts/<trial id>/result_<n>/: the files of a trial's n-th result


@dataclass
class SweepOutcome:
    run_dir: Path
    parent_run_id: str
    tracking_uri: str
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per trial: config, metrics, seconds
    experiment_id: str = ""
    n_errors: int = 0
    artifacts: list[Path] = field(default_factory=list)


def storage_root(sweep: Sweep, override: str | None = None) -> Path:
    """Where run directories go: ``--storage``, the sweep's ``storage_path``, ``$AUSWEEP_STORAGE``, ./ausweep_runs
    (not as a Ray job: see :func:`choose_storage`)."""
    return choose_storage(override, sweep.spec.storage_path, f"{sweep.path} (storage_path)")


def in_ray_scratch(path: Path) -> bool:
    """Whether ``path`` lies in a folder Ray unpacks for a job and deletes when it ends
    (``<session>/runtime_resources/working_dir_files/_ray_pkg_<hash>/``, ``py_modules_files`` ...)."""
    parts = path.parts
    return any(p == "runtime_resources" and i + 1 < len(parts) and parts[i + 1].endswith("_files")
               for i, p in enumerate(parts))


def choose_storage(override: str | None = None, file_value: str | None = None, file_where: str = "storage_path",
                   environ: Mapping[str, str] | None = None) -> Path:
    """The storage root, first set of ``--storage`` (``override``), the sweep file's ``storage_path``
    and ``$AUSWEEP_STORAGE``, else ./ausweep_runs; relative paths resolve against the current folder.

    A folder (``file://`` URIs too). Object-store URIs (``s3://``, ``gs://``) are refused: the
    driver keeps ``ausweep_sweep.json`` and the finished-trial records there and trials read them
    as files, so on a cluster use a shared file system (EFS, Filestore, a mounted bucket).
    As a Ray job (``$RAY_JOB_CONFIG_JSON_ENV_VAR`` set, or the current folder is Ray's unpacked
    working_dir) the ./ausweep_runs default is refused, and so is any root inside Ray's folder:
    Ray deletes it when the job ends, and ``--resume`` would find nothing.
    """
    environ = os.environ if environ is None else environ
    for where, value in (("--storage", override), (file_where, file_value),  # noqa: B007 -- used after the break
                         ("$AUSWEEP_STORAGE", environ.get("AUSWEEP_STORAGE"))):
        if value:
            break
    else:
        where, value = "", DEFAULT_STORAGE
    scheme, sep, rest = value.partition("://")
    if sep and scheme.lower() == "file":
        value = rest
    elif sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        raise ConfigError(where, "", f"{value!r}: ausweep keeps sweep state as files; give a folder on storage "
                                     f"every node sees (a shared file system or a mounted bucket), not a {scheme}:// URI")
    root = Path(value).expanduser().resolve()
    fix = "pass --storage /shared/path or set AUSWEEP_STORAGE (a folder every node sees)"
    if not where and (environ.get(RAY_JOB_ENV) or in_ray_scratch(Path.cwd())):
        raise ConfigError("--storage", "", f"as a Ray job, sweep state needs durable storage: the default "
                                           f"./{DEFAULT_STORAGE} would be {root}, in the job's working folder, which "
                                           f"Ray deletes (and --resume would find nothing); {fix}")
    if in_ray_scratch(root):
        raise ConfigError(where, "", f"{value!r} is {root}, inside the Ray job's unpacked working_dir, which Ray "
                                     f"deletes when the job ends; {fix}")
    return root


def find_resumable(root: Path, label: str) -> Path | None:
    """The newest run directory of this sweep and preset that has ausweep state."""
    runs = [p for p in root.glob(f"{label}-2*") if (p / STATE_FILE).is_file()]
    # The name orders runs to the second; within one second the state file's age decides.
    stamp = len(label) + 1 + len("20250101-120000")
    runs.sort(key=lambda p: (p.name[:stamp], (p / STATE_FILE).stat().st_mtime))
    return runs[-1] if runs else None


def new_run_dir(root: Path, label: str) -> Path:
    """A fresh run directory ``<label>-<timestamp>-<6 hex>``, created here so no other launch gets it."""
    root.mkdir(parents=True, exist_ok=True)
    while True:
        run_dir = root / f"{label}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue


def sweep_fingerprint(sweep: Sweep) -> dict[str, Any]:
    """What decides the trials' results: the study, the preset, the resolved config (sweep file,
    preset and overrides merged), the search space and the Tune settings that pick trials. Not how
    they run (resources, trials at once, retries), which a resumed run may change."""
    tune = {k: v for k, v in flatten(to_dict(sweep.spec.tune)).items()
            if k not in ("max_concurrent_trials", "max_failures")}
    if sweep.spec.tune.search == SearchSpec():  # random search: fingerprints stored before tune.search still match
        tune = {k: v for k, v in tune.items() if not k.startswith("search.")}
    if sweep.spec.tune.scheduler.name not in POPULATION:  # so do those stored before PBT's settings
        tune = {k: v for k, v in tune.items() if k.split(".")[:2] not in (["scheduler", f] for f in PBT_FIELDS)}
    fp = {"study": sweep.spec.study, "preset": sweep.preset, "config": flatten(sweep.base),
          "search_space": sweep.space, "tune": tune}
    if sweep.conditions:
        fp["conditions"] = sweep.conditions
    return json.loads(json.dumps(fp, sort_keys=True, default=str))


def write_state(run_dir: Path, state: dict[str, Any]) -> Path:
    """Write ``ausweep_sweep.json`` atomically: a crash mid-write leaves no state, never half of one."""
    return write_text_atomic(run_dir / STATE_FILE, json.dumps(state, indent=2, default=str))


def read_state(run_dir: Path) -> dict[str, Any]:
    """``ausweep_sweep.json`` of a run; an unreadable one is a ConfigError naming the file."""
    path = run_dir / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(path), "", "--resume: no sweep state here (not an ausweep run directory)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(str(path), "", f"--resume: the sweep state is not valid JSON ({e}); "
                                         "the run cannot be resumed, start it again without --resume") from None
    if not isinstance(state, dict) or not state.get("parent_run_id"):
        raise ConfigError(str(path), "", "--resume: not a sweep state (no parent_run_id); "
                                         "the run cannot be resumed, start it again without --resume")
    return state


def fingerprint_changes(old: dict[str, Any], new: dict[str, Any], limit: int = 3) -> list[str]:
    """``key: old -> new`` for the first ``limit`` dotted keys that differ (and how many more)."""
    a, b = flatten(old), flatten(new)
    keys = sorted(k for k in a.keys() | b.keys() if a.get(k, "<unset>") != b.get(k, "<unset>"))
    out = [f"{k}: {json.dumps(a.get(k, '<unset>'))} -> {json.dumps(b.get(k, '<unset>'))}" for k in keys[:limit]]
    if len(keys) > limit:
        out.append(f"and {len(keys) - limit} more")
    return out


def check_resume(state: dict[str, Any], run_dir: Path, fingerprint: dict[str, Any], allow_changed: bool) -> list[str]:
    """Refuse (ConfigError naming the state file and what differs) to resume a sweep that changed
    since the run started, unless ``allow_changed``; returns the differences."""
    if "fingerprint" not in state:
        log.warning("%s has no sweep fingerprint (written by an older ausweep): changes are not checked",
                    run_dir / STATE_FILE)
        return []
    if state["fingerprint"] == fingerprint:  # both JSON round-tripped, so equal values compare equal
        return []
    changes = fingerprint_changes(state["fingerprint"], fingerprint)
    if not allow_changed:
        raise ConfigError(str(run_dir / STATE_FILE), "", "--resume: the sweep changed since this run started ("
                          + "; ".join(changes) + "); the remaining trials would run with the old settings. "
                          "Start a new run, or pass --resume-changed to continue anyway")
    log.warning("resuming a changed sweep (--resume-changed): %s; unfinished trials keep the settings "
                "Tune stored when the run started", "; ".join(changes))
    return changes


def _trainable(config: dict[str, Any], study_name: str, completed_dir: str, checkpoint_every: int = 0,
               mutated_keys: tuple[str, ...] = ()) -> None:
    """The Tune function trainable: build the typed config, run the study's trial, report.

    Tune saves its experiment state every few seconds, so after a driver crash it may not know
    that a trial finished. The driver records every finished trial (by config hash; under PBT, whose
    trials change config, by trial id) under ``completed_dir``; such a trial replays its record
    instead of running again.

    ``checkpoint_every`` (PBT's perturbation interval): every such result of a study that offers its
    state (:data:`~ausweep.study.CHECKPOINT`) is reported with a Tune checkpoint, and a trial that Tune
    starts with a checkpoint (its own after a pause or a driver restart, or a better trial's that PBT
    cloned into it) hands it to the study's ``trial(config, restore=folder)``. Each result carries the
    values of ``mutated_keys`` it was trained with, as ``pbt/<key>`` metrics.
    """
    from ray import tune

    from ausweep.track.tune_callback import REPLAYED, completed_path

    trial_id = tune.get_context().get_trial_id()
    record = completed_path(completed_dir, trial_id if mutated_keys else config_hash(config))
    if record.is_file():
        tune.report({**json.loads(record.read_text()), REPLAYED: 1})
        return
    # The sweep's run folder on storage, for studies that keep their own files there (training
    # checkpoints a resumed sweep must find); the trial's Tune directory may be a local staging copy.
    run_dir = Path(completed_dir).parent
    os.environ[RUN_DIR_ENV] = str(run_dir)
    study = STUDIES.get(study_name)
    cfg = from_dict(study.config_cls, config, where="trial config")
    flat = flatten(to_dict(cfg))
    extra: dict[str, Any] = {f"pbt/{k}": flat[k] for k in mutated_keys}
    checkpoint = tune.get_checkpoint()
    with checkpoint.as_directory() if checkpoint else contextlib.nullcontext() as folder:
        start = 0
        if folder is not None:
            meta = json.loads((Path(folder) / CHECKPOINT_META).read_text())
            start = int(meta["iteration"])
            if meta["trial_id"] != trial_id:  # PBT cloned a better trial into this one
                extra["tags"] = {"ausweep.pbt.cloned_from": f"{meta['trial_id']}@{start}"}
            results = study.trial(cfg, restore=Path(folder))
        else:
            results = study.trial(cfg)
        _report_results(results, tune.report, run_dir / TRIAL_ARTIFACTS / trial_id, checkpoint_every=checkpoint_every,
                        start=start, extra=extra, trial_id=trial_id)


def _report_results(results: Iterable[Mapping[str, Any]], report: Callable[..., Any], artifact_root: Path,
                    checkpoint_every: int = 0, start: int = 0, extra: Mapping[str, Any] | None = None,
                    trial_id: str = "") -> None:
    """Report a trial's results one by one, the i-th one's artifacts written under ``artifact_root/result_<i>``.

    The study's generator is closed however this ends: Tune stops a trial by raising (SystemExit)
    out of ``report``, and an unclosed generator would keep its ``finally`` (freeing a loaded model)
    waiting for the garbage collector.

    Results are counted on from ``start`` (the reports before the checkpoint a trial restarted from):
    a result that offers the study's state (:data:`~ausweep.study.CHECKPOINT`) at a multiple of
    ``checkpoint_every`` is reported with a ``ray.tune.Checkpoint`` of it. ``extra`` goes into the
    first result (its ``tags`` merged), except ``pbt/`` values, which go into every one.
    """
    from ausweep.track.artifacts import write_artifacts
    from ausweep.track.tune_callback import ARTIFACT_DIR

    extra = dict(extra or {})
    every = {k: v for k, v in extra.items() if k.startswith("pbt/")}
    once = {k: v for k, v in extra.items() if k not in every}
    results = iter(results)
    with contextlib.closing(results) if hasattr(results, "close") else contextlib.nullcontext():
        for i, result in enumerate(results, start):
            # Files go to the sweep's storage (every node and the driver read it), not through Tune:
            # the result carries their folder's path, and the driver's MLflow logger uploads them.
            result = {**dict(result), **every}
            if once:
                result["tags"] = {**(result.get("tags") or {}), **once.pop("tags", {})}
                result.update(once)
                once = {}
            artifacts = result.pop("artifacts", None)
            if artifacts:
                folder = write_artifacts(artifact_root / f"result_{i:05d}", artifacts)
                result[ARTIFACT_DIR] = str(folder)
            save = result.pop(CHECKPOINT, None)
            if save is not None and checkpoint_every and (i + 1) % checkpoint_every == 0:
                _report_checkpoint(report, result, save, {"iteration": i + 1, "trial_id": trial_id})
            else:
                report(result)


def _report_checkpoint(report: Callable[..., Any], result: dict[str, Any], save: Callable[[Path], Any],
                       meta: dict[str, Any]) -> None:
    """``report(result, checkpoint=...)`` with the study's state written by ``save`` and ``meta``
    (:data:`CHECKPOINT_META`); Tune copies the folder to the sweep's storage before ``report`` returns."""
    import tempfile

    from ray.tune import Checkpoint

    with tempfile.TemporaryDirectory(prefix="ausweep-ckpt-") as tmp:
        save(Path(tmp))
        (Path(tmp) / CHECKPOINT_META).write_text(json.dumps(meta))
        report(result, checkpoint=Checkpoint.from_directory(tmp))


def _tracker(name: str, state: dict[str, Any], run_dir: Path | None) -> Any:
    """The sweep's MLflow handle; a resumed run's stored URI has its credentials redacted, and they
    come back from ``$MLFLOW_TRACKING_URI`` (the same store) or the error names the state file."""
    from ausweep.track.store import SweepTracker

    try:
        return SweepTracker(name, uri=state.get("tracking_uri"))
    except ValueError as e:
        if not state:
            raise
        raise ConfigError(str(Path(run_dir or ".") / STATE_FILE), "tracking_uri", str(e)) from None


def _validate(sweep: Sweep, study: Study) -> list[Any]:
    """Build and check the typed config of every grid point, before any process starts."""
    configs = []
    for d in sweep.config_dicts():
        configs.append(from_dict(study.config_cls, d, where=str(sweep.path)))
    if sweep.spec.tune.scheduler.name in POPULATION:
        label = str(sweep.path) + (f" (preset {sweep.preset})" if sweep.preset else "")
        check_pbt_study(sweep.spec.tune.scheduler, study, label)
    return configs


def _with_defaults(sweep: Sweep, keys: list[str], typed: Any) -> Sweep:
    """``sweep`` with the typed config's value of each of ``keys`` that its base config leaves to the default."""
    import dataclasses

    base, flat, defaults = json.loads(json.dumps(sweep.base)), flatten(sweep.base), flatten(to_dict(typed))
    for key in keys:
        if key not in flat and key not in sweep.space:
            set_dotted(base, key, defaults[key])
    return dataclasses.replace(sweep, base=base)


def run_sweep(
    name: str,
    preset: str | None = None,
    overrides: dict[str, Any] | None = None,
    resume: bool | str = False,
    storage: str | None = None,
    dry_run: bool = False,
    verbose: bool = False,
    resume_changed: bool = False,
) -> SweepOutcome | Sweep:
    """Run sweep ``name`` end to end and return its outcome (``dry_run``: the resolved Sweep only).
    ``resume_changed``: with ``resume``, continue even if the sweep changed since the run started."""
    sweep = load_sweep(name, preset, overrides)
    study = STUDIES.get(sweep.spec.study)
    configs = _validate(sweep, study)
    if sweep.spec.tune.scheduler.name in POPULATION:  # PBT perturbs the values in a trial's config: they must be there
        sweep = _with_defaults(sweep, list(sweep.spec.tune.scheduler.hyperparam_mutations), configs[0])
    from ausweep.runtime import MAX_CONCURRENT_ENV, parse_max_concurrent

    if os.environ.get(MAX_CONCURRENT_ENV, "").strip():  # a typo fails before Ray starts
        parse_max_concurrent(os.environ[MAX_CONCURRENT_ENV])
    if dry_run:
        return sweep

    root = storage_root(sweep, storage)
    fingerprint = sweep_fingerprint(sweep)
    run_dir, state, changes = None, {}, []
    if resume:
        run_dir = Path(resume).resolve() if isinstance(resume, str) else find_resumable(root, sweep.run_label)
        if run_dir is None:
            raise ConfigError(str(root), "", f"--resume: no earlier run of '{sweep.run_label}' to resume here")
        state = read_state(run_dir)
        changes = check_resume(state, run_dir, fingerprint, resume_changed)
        log.info("resuming %s", run_dir)
    tracker = _tracker(sweep.name, state, run_dir)
    if not resume:
        run_dir = new_run_dir(root, sweep.run_label)
    log.info("sweep state: %s (continue it with --resume %s)", run_dir, run_dir)
    log.info("MLflow: %s", tracker.shown_uri)

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

    parent_params = {f"base.{k}": v for k, v in flatten(sweep.base).items()}
    parent_params.update({f"space.{k}": json.dumps(v) for k, v in space.items()})
    parent_params.update({f"tune.{k}": v for k, v in flatten(to_dict(sweep.spec.tune)).items()})
    parent_tags = {"ausweep.sweep": sweep.name, "ausweep.preset": sweep.preset or "", "ausweep.study": study.name,
                   "ausweep.sweep_file": str(sweep.path), "ausweep.run_dir": str(run_dir),
                   "ausweep.config_hash": config_hash(sweep.base),
                   "ausweep.searcher": sweep.spec.tune.search.name,
                   "ausweep.scheduler": sweep.spec.tune.scheduler.name,
                   "ausweep.max_concurrent_trials": str(concurrency.max_concurrent or "none"),
                   "ausweep.max_concurrent_reason": concurrency.reason}
    if changes:
        parent_tags["ausweep.resumed_changed"] = "; ".join(changes)[:4000]
    parent_id = tracker.start_parent(run_dir.name, parent_params, parent_tags, resume_id=state.get("parent_run_id"))

    if not state:
        write_state(run_dir, {
            "parent_run_id": parent_id, "tracking_uri": tracker.shown_uri, "sweep": sweep.name, "preset": sweep.preset,
            "overrides": overrides or {}, "space": space, "started": time.time(),
            "fingerprint": fingerprint,
        })

    tuner = _make_tuner(sweep, study, space, tracker, run_dir, resume=bool(state),
                        max_concurrent=concurrency.max_concurrent, verbose=verbose)
    outcome = SweepOutcome(run_dir=run_dir, parent_run_id=parent_id, tracking_uri=tracker.shown_uri,
                           experiment_id=str(tracker.experiment_id))
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
        # Tune's record of PBT's exploits (pbt_global.txt: one line per exploit; pbt_policy_<trial>.txt:
        # each trial's lineage with the configs it took): the parent run keeps them.
        for p in sorted(run_dir.glob("pbt_*.txt")):
            tracker.log_file(parent_id, p, "pbt")
        out_dir = run_dir / "summary"
        out_dir.mkdir(exist_ok=True)
        if outcome.rows:
            outcome.artifacts = study.summarize(outcome.rows, out_dir)
            if sweep.spec.tune.search.objectives:  # multi-objective search: its answer is the Pareto front
                outcome.artifacts += write_pareto(outcome.rows, sweep.spec.tune.search.objectives, list(space), out_dir)
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

    from ausweep.sweep.search import make_search_alg
    from ausweep.sweep.spec import count_trials
    from ausweep.track.tune_callback import MLflowTrialLogger, TensorBoardLogger, TrialProgress

    res = sweep.spec.resources
    settings = sweep.spec.tune
    pbt = settings.scheduler.name in POPULATION
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, study_name=study.name, completed_dir=str(run_dir / "completed"),
                             checkpoint_every=settings.scheduler.perturbation_interval if pbt else 0,
                             mutated_keys=tuple(settings.scheduler.hyperparam_mutations) if pbt else ()),
        {"cpu": res.cpu, "gpu": res.gpu},
    )
    if resume:
        # Finished trials are kept; unfinished and errored ones run again (into their MLflow runs), from
        # their last checkpoint if they have one (PBT).
        return tune.Tuner.restore(str(run_dir), trainable, resume_unfinished=True, restart_errored=True)
    scheduler = None
    if settings.scheduler.name == "asha":
        from ray.tune.schedulers import ASHAScheduler

        s = settings.scheduler
        scheduler = ASHAScheduler(max_t=s.max_t, grace_period=s.grace_period, reduction_factor=s.reduction_factor)
    elif pbt:
        from ausweep.sweep.pbt import make_pbt

        scheduler = make_pbt(settings.scheduler, settings.seed)
    search_alg, param_space = make_search_alg(settings.search, settings.metric, settings.mode, settings.seed,
                                              sweep.base, space, sweep.conditions)
    tune_config = tune.TuneConfig(
        metric=settings.metric, mode=settings.mode, num_samples=settings.num_samples,
        max_concurrent_trials=max_concurrent, scheduler=scheduler, search_alg=search_alg,
        # Reusing trial processes skips a torch/transformers import (seconds) per trial.
        reuse_actors=True,
    )
    # PBT changes a trial's config as it goes (and two trials may come to share one): its MLflow child
    # and completed record follow the trial's id instead.
    callbacks = [MLflowTrialLogger(tracker, swept_keys=list(space), tags={"ausweep.sweep": sweep.name},
                                   completed_dir=str(run_dir / "completed"), by_trial_id=pbt)]
    try:  # Tune would add its own, which hands tensorboardX keys it must rename ("acc@1")
        callbacks.append(TensorBoardLogger())
    except ImportError:
        pass  # no tensorboardX: Tune says so
    if not verbose:
        callbacks.append(TrialProgress(count_trials(space, settings.num_samples), settings.metric, settings.mode))
    run_config = tune.RunConfig(
        name=run_dir.name,
        storage_path=str(run_dir.parent),
        callbacks=callbacks,
        failure_config=tune.FailureConfig(max_failures=settings.max_failures),
        verbose=2 if verbose else 0,
    )
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)
