"""MLflow bookkeeping: one parent run per sweep, one child run per trial, provenance on each.

Only the sweep driver writes to MLflow (through :class:`SweepTracker`); trials report to Ray Tune
and a Tune callback forwards their results here. One writer keeps a SQLite store safe and makes a
retried or resumed trial land in the same child run instead of a duplicate.

Every metric, param and tag key goes through :func:`ausweep.track.keys.mlflow_key` (user text such
as a category "Sound & Music" is escaped reversibly; ``acc@1`` is ``acc_at_1``).

Default store: ``sqlite:///<cwd>/mlruns.db`` with artifacts beside it in ``mlartifacts/``;
``MLFLOW_TRACKING_URI`` (a server on a cluster) overrides.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from ausweep.track.keys import mlflow_key

TRIAL_TAG = "ausweep.trial_key"  # config hash of the trial: stable across Tune retries and restores
SWEEP_TAG = "ausweep.sweep"
PARENT_TAG = "mlflow.parentRunId"
_PARAM_MAX = 6000  # MLflow's limit on a param value's length
_PACKAGES = ("ausweep", "torch", "transformers", "ray", "mlflow", "numpy", "peft", "deepspeed")


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlruns.db'}"


def git_state(path: str | os.PathLike | None = None) -> dict[str, str]:
    """Commit SHA and dirty flag of the checkout holding ``path`` (default: this package)."""
    cwd = Path(path) if path else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        return {"git_sha": sha, "git_dirty": str(bool(dirty)).lower()}
    except (OSError, subprocess.SubprocessError):
        return {"git_sha": "unknown", "git_dirty": "unknown"}


def package_versions(names: Iterable[str] = _PACKAGES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def provenance() -> dict[str, str]:
    """Tags recorded on every run: code version, dirty flag, package versions, host."""
    tags = {f"ausweep.{k}": v for k, v in git_state().items()}
    tags.update({f"ausweep.version.{k}": v for k, v in package_versions().items()})
    tags["ausweep.python"] = platform.python_version()
    tags["ausweep.host"] = platform.node()
    return tags


def _param_str(v: Any) -> str:
    s = str(v)
    return s if len(s) <= _PARAM_MAX else s[: _PARAM_MAX - 3] + "..."


class SweepTracker:
    """The driver's handle on MLflow for one sweep."""

    def __init__(self, experiment: str, uri: str | None = None):
        from mlflow.tracking import MlflowClient

        self.uri = uri or tracking_uri()
        self.client = MlflowClient(tracking_uri=self.uri)
        self.experiment_id = self._experiment(experiment)
        self.parent_id: str | None = None
        self._provenance: dict[str, str] | None = None

    def provenance(self) -> dict[str, str]:
        """Git state and package versions, read once per sweep (``git`` runs twice per call)."""
        if self._provenance is None:
            self._provenance = provenance()
        return self._provenance

    # Tune pickles its callbacks with the experiment state (for Tuner.restore); the client holds
    # a DB connection, so it is dropped and rebuilt from the URI.
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("client", None)
        return state

    def __setstate__(self, state: dict) -> None:
        from mlflow.tracking import MlflowClient

        self.__dict__.update(state)
        self.client = MlflowClient(tracking_uri=self.uri)

    def _experiment(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        location = None
        if self.uri.startswith("sqlite:///"):
            # Keep artifacts next to the database, not wherever the process happens to run.
            db = Path(self.uri[len("sqlite:///"):])
            location = (db.parent / "mlartifacts" / name).resolve().as_uri()
        return self.client.create_experiment(name, artifact_location=location)

    # -- runs

    def start_parent(self, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str], resume_id: str | None = None) -> str:
        """Create the sweep's parent run, or reopen ``resume_id`` after a driver crash."""
        if resume_id:
            self.client.update_run(resume_id, status="RUNNING")
            self.parent_id = resume_id
            return resume_id
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=_tags({**self.provenance(), **tags}))
        self.parent_id = run.info.run_id
        self.log_params(self.parent_id, params)
        return self.parent_id

    def child_for_trial(self, trial_key: str, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str],
                        attempt: bool = True) -> str:
        """The child run of ``trial_key``: the existing one (retry, resume) or a new one.

        A FINISHED child is returned untouched (the trial is being replayed from its record); with
        ``attempt`` (the trial is starting again), any other existing child is reopened and its
        ``ausweep.attempts`` counter goes up.
        """
        assert self.parent_id, "start_parent first"
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{self.parent_id}' and tags.`{TRIAL_TAG}` = '{trial_key}'",
            max_results=5,
        )
        if found:
            run = found[0]
            if run.info.status == "FINISHED" or not attempt:
                return run.info.run_id
            self.client.update_run(run.info.run_id, status="RUNNING")
            attempts = int(run.data.tags.get("ausweep.attempts", "1")) + 1
            self.set_tags(run.info.run_id, {"ausweep.attempts": attempts, **tags})
            return run.info.run_id
        run = self.client.create_run(
            self.experiment_id,
            run_name=run_name,
            tags=_tags({**self.provenance(), **tags, PARENT_TAG: self.parent_id, TRIAL_TAG: trial_key, "ausweep.attempts": "1"}),
        )
        self.log_params(run.info.run_id, params)
        return run.info.run_id

    def children(self) -> list[Any]:
        return self.client.search_runs([self.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{self.parent_id}'", max_results=10000)

    def end(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    # -- logging

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(mlflow_key(k), _param_str(v)) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):  # MLflow caps a batch at 100 params
            self.client.log_batch(run_id, params=items[i : i + 100])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(mlflow_key(k), float(v), now, step) for k, v in metrics.items() if _is_number(v)]
        for i in range(0, len(items), 1000):
            self.client.log_batch(run_id, metrics=items[i : i + 1000])

    def log_series(self, run_id: str, key: str, values: Iterable[float]) -> None:
        """A curve (per-epoch loss...) as one metric with one step per value."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(mlflow_key(key), float(v), now, i) for i, v in enumerate(values)]
        for i in range(0, len(items), 1000):
            self.client.log_batch(run_id, metrics=items[i : i + 1000])

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        for k, v in tags.items():
            self.client.set_tag(run_id, mlflow_key(k), str(v))

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, text, artifact_file)

    def log_bytes(self, run_id: str, data: bytes, artifact_file: str) -> None:
        """A binary artifact (a PNG a trial rendered) at ``artifact_file`` (``dir/name.png``)."""
        import tempfile

        parent, name = os.path.split(artifact_file)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            path.write_bytes(data)
            self.client.log_artifact(run_id, str(path), parent or None)

    def log_figure(self, run_id: str, figure: Any, artifact_file: str) -> None:
        self.client.log_figure(run_id, figure, artifact_file)

    def log_file(self, run_id: str, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v  # drops NaN


def _tags(tags: Mapping[str, Any]) -> dict[str, str]:
    return {mlflow_key(k): str(v) for k, v in tags.items()}
