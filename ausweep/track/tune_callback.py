"""A Ray Tune callback that mirrors trials into MLflow child runs, from the driver only.

Trials report a flat dict of numbers to Tune, plus optional extras under reserved keys:

* ``"series"``: ``{name: [v0, v1, ...]}`` curves logged as one metric with a step per value;
* ``ARTIFACT_DIR``: the path of a folder on the sweep's storage whose files (per-class CSV,
  resolved YAML, PNG plots) are logged into the child run at their relative paths. A study's
  ``"artifacts"`` never reach Tune: the sweep's trainable writes them to that folder
  (:func:`ausweep.track.artifacts.write_artifacts`), so Tune's result.json, progress.csv and
  experiment state hold numbers and paths, not file contents;
* ``"tags"``: ``{name: value}`` (dataset digest...).

A trial that is retried (worker died) or resumed (driver died) maps onto the same child run by its
config hash (Tune may give a re-created trial a new id), so MLflow never shows duplicates; every
start of a trial (the first, a retry after a failure, a restart by a resumed driver) counts in the
child's ``ausweep.attempts`` tag, and every child ends FINISHED or FAILED. Results flagged
``REPLAYED`` (a finished trial that Tune's last saved state did not know about, see
:mod:`ausweep.sweep.runner`) are not logged twice, and their finished child is left as it was. A
trial's completed record is written before its child ends, so a driver killed in between leaves a
RUNNING child with a record, which the replay ends FINISHED.
"""

from __future__ import annotations

import json
import logging
import os
import re
from numbers import Number
from pathlib import Path
from typing import Any, Mapping

from ray.tune import Callback
from ray.tune.logger import TBXLoggerCallback

from ausweep.config import config_hash, flatten
from ausweep.track.keys import mlflow_key
from ausweep.track.store import SweepTracker

log = logging.getLogger(__name__)

RESERVED = ("series", "artifacts", "tags")
REPLAYED = "ausweep_replayed"
ARTIFACT_DIR = "ausweep_artifact_dir"  # a result's artifact folder, written by the trial, read by the driver
# Bookkeeping Tune adds to every result; not worth a metric column in the UI.
_TUNE_KEYS = {
    "time_this_iter_s", "time_total_s", "timestamp", "training_iteration", "iterations_since_restore",
    "time_since_restore", "done", "pid", "date", "hostname", "node_ip", "experiment_tag", "trial_id",
    "checkpoint_dir_name", "should_checkpoint",
}
NOT_METRICS = _TUNE_KEYS | set(RESERVED) | {REPLAYED, ARTIFACT_DIR, "config"}


class MLflowTrialLogger(Callback):
    """``by_trial_id``: a trial's child run and completed record are keyed by its Tune trial id rather
    than its config hash, for schedulers that change a trial's config as it runs (PBT)."""

    def __init__(self, tracker: SweepTracker, swept_keys: list[str] = (), tags: Mapping[str, str] | None = None,
                 completed_dir: str | None = None, by_trial_id: bool = False):
        self.tracker = tracker
        self.completed_dir = completed_dir
        self.swept_keys = list(swept_keys)
        self.tags = dict(tags or {})
        self.by_trial_id = by_trial_id
        self.runs: dict[str, str] = {}  # tune trial id -> mlflow run id

    def trial_key(self, trial: Any) -> str:
        return trial.trial_id if getattr(self, "by_trial_id", False) else config_hash(trial.config or {})

    def _child(self, trial: Any, attempt: bool) -> str:
        cfg = trial.config or {}
        key = self.trial_key(trial)
        tags = {**self.tags, "ausweep.config_hash": config_hash(cfg), "ausweep.trial_id": trial.trial_id}
        run_id = self.tracker.child_for_trial(key, _run_name(cfg, self.swept_keys, trial.trial_id), flatten(cfg), tags,
                                              attempt=attempt)
        self.runs[trial.trial_id] = run_id
        return run_id

    def _run_id(self, trial: Any) -> str:
        return self.runs.get(trial.trial_id) or self._child(trial, attempt=False)

    # Tune calls on_trial_start each time a trial's actor starts: the first time, after a failure it
    # retries (on_trial_recover came first), and after a resumed driver restarts it. Each is an attempt.
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._child(trial, attempt=True)

    def on_trial_restore(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._run_id(trial)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A failure Tune will retry: the child stays RUNNING; the next start counts the attempt."""
        self.tracker.set_tags(self._run_id(trial), {"ausweep.error_file": getattr(trial, "error_file", None) or "unknown"})

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        run_id = self._run_id(trial)
        if result.get(REPLAYED):
            return
        step = int(result.get("training_iteration", 1)) - 1
        metrics = {k: v for k, v in result.items() if k not in NOT_METRICS and not k.startswith("config")}
        self.tracker.log_metrics(run_id, metrics, step=step)
        for name, values in (result.get("series") or {}).items():
            self.tracker.log_series(run_id, name, values)
        if result.get(ARTIFACT_DIR):
            folder = Path(result[ARTIFACT_DIR])
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"trial {trial.trial_id}: its artifact folder {folder} is not visible to the sweep driver; "
                    "on a cluster the sweep's storage (--storage, $AUSWEEP_STORAGE) must be a file system every node shares")
            self.tracker.log_artifacts(run_id, folder)
        if result.get("tags"):
            self.tracker.set_tags(run_id, result["tags"])

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run_id = self._run_id(trial)
        if trial.last_result and trial.last_result.get(REPLAYED):
            # Finished by the driver that ran it, unless that driver died between writing the
            # record and ending the child: end it now, leaving a FINISHED child's end time as it was.
            if self.tracker.client.get_run(run_id).info.status == "RUNNING":
                self.tracker.end(run_id, "FINISHED")
            return
        # The record first: a driver killed before the child ends leaves a RUNNING child that the
        # replay ends; the other order left a FINISHED child whose trial --resume ran again.
        if self.completed_dir is not None and trial.last_result:
            record = {k: v for k, v in trial.last_result.items() if k not in RESERVED and k != "config" and _plain(v)}
            write_completed(self.completed_dir, self.trial_key(trial), record)
        self.tracker.end(run_id, "FINISHED")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run_id = self._run_id(trial)
        err = getattr(trial, "error_file", None)
        self.tracker.set_tags(run_id, {"ausweep.error_file": err or "unknown"})
        self.tracker.end(run_id, "FAILED")


def _run_name(cfg: Mapping[str, Any], swept_keys: list[str], trial_id: str) -> str:
    """A short readable name from the swept values, e.g. ``minilm|whisper-tiny-en|lr=0.001``."""
    flat = flatten(cfg)
    parts = []
    for k in swept_keys:
        v = flat.get(k)
        if isinstance(v, float):
            v = f"{v:.3g}"
        parts.append(str(v) if k.endswith(".model") else f"{k.split('.')[-1]}={v}")
    return ("|".join(parts) or trial_id)[:200]


def _plain(v: Any) -> bool:
    return isinstance(v, (int, float, str, bool)) or v is None


def completed_path(completed_dir: str, key: str) -> Path:
    return Path(completed_dir) / f"{key}.json"


def write_completed(completed_dir: str, key: str, record: Mapping[str, Any]) -> None:
    """Record a finished trial's final metrics (atomically) so a resumed sweep can replay it."""
    path = completed_path(completed_dir, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(record, default=str))
    os.replace(tmp, path)


_TB_REFUSED = re.compile(r"[^-/\w.]")  # what tensorboardX renames in a summary name (with a message)


def tensorboard_name(key: str) -> str:
    """A metric's name in TensorBoard: its MLflow key (``acc@1`` -> ``acc_at_1``, ``&`` -> ``_x26_``)
    with the characters TensorBoard still refuses (spaces) as ``_``."""
    return _TB_REFUSED.sub("_", mlflow_key(key))


class TensorBoardLogger(TBXLoggerCallback):
    """Tune's TensorBoard logger, given only the numbers of each result under names TensorBoard
    accepts (:func:`tensorboard_name`): no curves, tags or paths, nothing for tensorboardX to rename
    or refuse. Tune's own bookkeeping keys pass as they are (it reads its step from them)."""

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        numbers = {k if k in _TUNE_KEYS else tensorboard_name(k): v for k, v in result.items()
                   if k in _TUNE_KEYS or (k not in NOT_METRICS and isinstance(v, Number))}
        super().log_trial_result(iteration, trial, numbers)


class TrialProgress(Callback):
    """A one-line progress bar over trials with the best metric so far; replaces Tune's
    per-trial result tables unless the user asks for them (``-v``)."""

    def __init__(self, total: int, metric: str, mode: str):
        self.total, self.metric, self.mode = total, metric, mode
        self.best: float | None = None
        self.failed = 0
        self._bar: Any = None

    def __getstate__(self) -> dict:  # pickled with Tune's experiment state; the bar is rebuilt
        return {**self.__dict__, "_bar": None}

    def setup(self, **info: Any) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(total=self.total, desc="trials", unit="trial", dynamic_ncols=True)

    def _tick(self, result: Mapping[str, Any] | None) -> None:
        if self._bar is None:  # restored without setup()
            self.setup()
        value = (result or {}).get(self.metric)
        if isinstance(value, (int, float)) and (self.best is None or (value > self.best) == (self.mode == "max")):
            self.best = float(value)
        self._bar.update(1)
        best = "-" if self.best is None else f"{self.best:.4g}"
        self._bar.set_postfix({f"best {self.metric}": best, "failed": self.failed}, refresh=True)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._tick(trial.last_result)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.failed += 1
        self._tick(None)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self._bar is not None:
            self._bar.close()
