"""MLflow bookkeeping: one parent run per sweep, one child run per trial, provenance on each.

Only the sweep driver writes to MLflow (through :class:`SweepTracker`); trials report to Ray Tune
and a Tune callback forwards their results here. One writer keeps a SQLite store safe and makes a
retried or resumed trial land in the same child run instead of a duplicate.

Every metric, param and tag key goes through :func:`ausweep.track.keys.mlflow_key` (user text such
as a category "Sound & Music" is escaped reversibly; ``acc@1`` is ``acc_at_1``).

Default store: ``sqlite:///<cwd>/mlruns.db`` with artifacts beside it in ``mlartifacts/``;
``MLFLOW_TRACKING_URI`` (a server on a cluster) overrides.

What the MLflow 3 UI shows: each experiment is marked a model-training experiment
(``mlflow.experimentKind``); MLflow 3.17's UI still opens any experiment on its GenAI overview
unless the link asks for the model-training view, which :func:`ui_url`'s link does. Each run
carries MLflow's source tags (entry point, git commit) and, when a trial reports its data
(``ausweep.data`` / ``ausweep.data_digest`` tags), a dataset input with that digest and split.
Logging is synchronous on purpose: a finished trial's record (:mod:`ausweep.track.tune_callback`)
is written right after its child ends, and a resumed sweep replays from that record without
logging again, so metrics still queued in MLflow's asynchronous logger when a driver dies would be
lost for good.

Credentials in the URI (``http://user:pass@host``) never leave the driver's memory: whatever is
shown, logged, tagged, pickled or written shows ``***@`` (:func:`redact_uri`). For an HTTP server
they move into ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``, which is where MLflow's
client reads them (:func:`split_credentials`); a database URI keeps them, as SQLAlchemy needs them.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import unquote, urlsplit, urlunsplit

from ausweep.track.keys import mlflow_key

TRIAL_TAG = "ausweep.trial_key"  # config hash of the trial: stable across Tune retries and restores
SWEEP_TAG = "ausweep.sweep"
PARENT_TAG = "mlflow.parentRunId"
# The experiment's kind in MLflow 3 (shown in the UI's experiment list, and what UIs before 3.17
# chose the experiment's first page by; 3.17 follows a browser-wide setting, see ui_url).
EXPERIMENT_KIND_TAG, TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"
# What a trial reports about its data (result "tags"); either one makes a dataset input of the run.
DATA_TAG, DATA_DIGEST_TAG, DATA_SPLIT_TAG = "ausweep.data", "ausweep.data_digest", "ausweep.data_split"
_TAGS_PER_BATCH = 100  # MLflow caps a batch at 100 params or tags
_PARAM_MAX = 6000  # MLflow's limit on a param value's length
_PACKAGES = ("ausweep", "torch", "transformers", "ray", "mlflow", "numpy", "peft", "deepspeed")


USERNAME_ENV, PASSWORD_ENV = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"  # MLflow's own names
REDACTED = "***"


def tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlruns.db``; may hold credentials: show it
    only through :func:`redact_uri`."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlruns.db'}"


def _userinfo(uri: str) -> tuple[Any, str | None]:
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return parts, None
    return parts, parts.netloc.rpartition("@")[0]


def redact_uri(uri: str) -> str:
    """``uri`` with any ``user:pass@`` shown as ``***@``; scheme, host, port, path and query kept."""
    parts, userinfo = _userinfo(uri)
    if userinfo is None:
        return uri
    return urlunsplit(parts._replace(netloc=f"{REDACTED}@{parts.netloc.rpartition('@')[2]}"))


def strip_credentials(uri: str) -> str:
    """``uri`` without its ``user:pass@`` (for processes that must not hold them)."""
    parts, userinfo = _userinfo(uri)
    return uri if userinfo is None else urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def split_credentials(uri: str) -> tuple[str, dict[str, str]]:
    """An HTTP(S) URI without its credentials, and the environment MLflow authenticates with
    (``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``, percent-decoded). Other URIs
    (``postgresql://user:pass@db/mlflow``) are returned whole: their driver reads the URI."""
    parts, userinfo = _userinfo(uri)
    if userinfo is None or parts.scheme.lower() not in ("http", "https"):
        return uri, {}
    user, _, password = userinfo.partition(":")
    env = {USERNAME_ENV: unquote(user)}
    if password:
        env[PASSWORD_ENV] = unquote(password)
    return strip_credentials(uri), env


def unredact_uri(uri: str, environ: Mapping[str, str] | None = None) -> str:
    """A stored URI (redacted, or stripped of credentials) with the credentials of
    ``$MLFLOW_TRACKING_URI`` when that names the same store; else as it is, but a redacted one
    cannot be used as it is."""
    current = (os.environ if environ is None else environ).get("MLFLOW_TRACKING_URI", "")
    if "@" in urlsplit(current).netloc and strip_credentials(current) == strip_credentials(uri):
        return current
    if f"{REDACTED}@" not in uri:
        return uri
    raise ValueError(f"this run tracked to {uri}; set MLFLOW_TRACKING_URI to that store, with its credentials, to continue it")


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


def source_tags(git: Mapping[str, str] | None = None) -> dict[str, str]:
    """MLflow's own source tags: the entry point, and the commit when the code is a checkout.
    ``git``: :func:`git_state`'s answer when the caller already has it (else it is read here)."""
    from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_GIT_DIRTY, MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE

    tags = {MLFLOW_SOURCE_NAME: _source_name(), MLFLOW_SOURCE_TYPE: "LOCAL"}
    git = git_state() if git is None else git
    if git["git_sha"] != "unknown":
        tags[MLFLOW_GIT_COMMIT] = git["git_sha"]
        tags[MLFLOW_GIT_DIRTY] = git["git_dirty"]
    return tags


def _source_name() -> str:
    """``python -m ausweep.sweep`` for a module of this package run with ``-m``, else the script."""
    import sys

    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    path = Path(argv0).resolve() if argv0 else None
    package = Path(__file__).resolve().parents[1]
    if path is not None and path.suffix == ".py" and path.is_relative_to(package):
        parts = path.relative_to(package.parent).with_suffix("").parts
        return "python -m " + ".".join(parts[:-1] if parts[-1] == "__main__" else parts)
    return "python" if argv0 in ("", "-", "-c") else argv0  # "-": a script on stdin


def dataset_of(tags: Mapping[str, Any], params: Mapping[str, str]) -> dict[str, str] | None:
    """The dataset a trial's result tags describe (name, digest, source, context), or None.

    ``ausweep.data`` names the data, ``ausweep.data_digest`` identifies its content and
    ``ausweep.data_split`` says which split; what they leave out comes from the trial's config
    (params ``data.source``, ``data.root``, ``data.split``). Without a digest, the name and source
    stand for the content (a vendored or generated set that its name identifies).
    """
    import hashlib

    if DATA_TAG not in tags and DATA_DIGEST_TAG not in tags:
        return None

    def given(v: Any) -> str | None:
        return None if v is None or str(v) in ("", "None") else str(v)

    name = given(tags.get(DATA_TAG)) or given(params.get("data.source")) or "data"
    source = given(params.get("data.root")) or name
    digest = given(tags.get(DATA_DIGEST_TAG)) or hashlib.sha256(f"{name}\n{source}".encode()).hexdigest()[:16]
    context = given(tags.get(DATA_SPLIT_TAG)) or given(params.get("data.split")) or "all"
    return {"name": name, "digest": digest[:36], "source": source, "context": context}


def ui_url(server: str, experiment_id: str) -> str:
    """The page of the experiment in the MLflow UI at ``server``, on its runs.

    MLflow 3.17's UI picks an experiment's view from one browser-wide setting (GenAI or model
    training, default GenAI) and not from the experiment's ``mlflow.experimentKind``, so a plain
    ``#/experiments/<id>`` opens the GenAI overview; ``workflowType`` in the link selects the
    model-training view (and the UI keeps it while the user browses from there).
    """
    return f"{server.rstrip('/')}/#/experiments/{experiment_id}?workflowType=machine_learning"


def _param_str(v: Any) -> str:
    s = str(v)
    return s if len(s) <= _PARAM_MAX else s[: _PARAM_MAX - 3] + "..."


class SweepTracker:
    """The driver's handle on MLflow for one sweep."""

    def __init__(self, experiment: str, uri: str | None = None):
        from mlflow.tracking import MlflowClient

        self.uri = self._connect(uri or tracking_uri())
        self.client = MlflowClient(tracking_uri=self.uri)
        self.experiment_id = self._experiment(experiment)
        self.parent_id: str | None = None
        self._provenance: dict[str, str] | None = None

    def provenance(self) -> dict[str, str]:
        """Git state and package versions, read once per sweep (``git`` runs twice per call)."""
        if self._provenance is None:
            self._provenance = provenance()
        return self._provenance

    def source_tags(self) -> dict[str, str]:
        """:func:`source_tags`, read once per sweep, from the git state :meth:`provenance` already read."""
        if getattr(self, "_source", None) is None:
            prov = self.provenance()
            self._source = source_tags({k: prov[f"ausweep.{k}"] for k in ("git_sha", "git_dirty")})
        return self._source

    # Tune pickles its callbacks with the experiment state (for Tuner.restore); the client holds
    # a DB connection, so it is dropped and rebuilt from the URI.
    # The pickle is written to storage, so it holds the redacted URI; credentials come back from
    # the environment of the driver that restores it.
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("client", None)
        state["uri"] = redact_uri(self.uri)
        return state

    def __setstate__(self, state: dict) -> None:
        from mlflow.tracking import MlflowClient

        self.__dict__.update(state)
        self.uri = self._connect(self.uri)
        self.client = MlflowClient(tracking_uri=self.uri)

    @property
    def shown_uri(self) -> str:
        """The URI to print, log, tag or store: no credentials."""
        return redact_uri(self.uri)

    @staticmethod
    def _connect(uri: str) -> str:
        """The URI the client uses; an HTTP server's credentials go to this process's environment,
        where MLflow reads them (explicit ``MLFLOW_TRACKING_USERNAME`` / ``_PASSWORD`` win)."""
        uri, env = split_credentials(unredact_uri(uri))
        for k, v in env.items():
            os.environ.setdefault(k, v)
        return uri

    def _experiment(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            # An experiment made before ausweep set the kind, or whose kind the UI only inferred;
            # a kind a user chose in the UI stays.
            kind = exp.tags.get(EXPERIMENT_KIND_TAG, "")
            if kind in ("", "no_inferred_type") or kind.endswith("_inferred"):
                self.client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, TRAINING_KIND)
            return exp.experiment_id
        location = None
        if self.uri.startswith("sqlite:///"):
            # Keep artifacts next to the database, not wherever the process happens to run.
            db = Path(self.uri[len("sqlite:///"):])
            location = (db.parent / "mlartifacts" / name).resolve().as_uri()
        return self.client.create_experiment(name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: TRAINING_KIND})

    # -- runs

    def start_parent(self, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str], resume_id: str | None = None) -> str:
        """Create the sweep's parent run, or reopen ``resume_id`` after a driver crash."""
        if resume_id:
            self.client.update_run(resume_id, status="RUNNING")
            self.parent_id = resume_id
            return resume_id
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags={**self.source_tags(), **_tags({**self.provenance(), **tags})})
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
            tags={**self.source_tags(), **_tags({**self.provenance(), **tags, PARENT_TAG: self.parent_id, TRIAL_TAG: trial_key,
                                                  "ausweep.attempts": "1"})},
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
        """Tags in batches of 100; tags that describe the trial's data (:func:`dataset_of`) also
        make a dataset input of the run."""
        from mlflow.entities import RunTag

        items = [RunTag(k, v) for k, v in _tags(tags).items()]
        for i in range(0, len(items), _TAGS_PER_BATCH):
            self.client.log_batch(run_id, tags=items[i : i + _TAGS_PER_BATCH])
        if DATA_TAG in tags or DATA_DIGEST_TAG in tags:
            data = dataset_of(tags, self.client.get_run(run_id).data.params)
            self.log_dataset(run_id, **data)
            if self.parent_id and run_id != self.parent_id:
                # The runs table shows children collapsed under the parent: the sweep's row lists
                # every dataset its trials read.
                self.log_dataset(self.parent_id, **data)

    def log_dataset(self, run_id: str, name: str, digest: str, source: str, context: str) -> None:
        """``name`` (content ``digest``, found at ``source``) as an input of the run, used as ``context``
        (a split). Logging the same dataset and context again adds nothing."""
        import json

        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        dataset = Dataset(name=name, digest=digest, source_type="local", source=json.dumps({"uri": source}))
        self.client.log_inputs(run_id, datasets=[DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])])

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

    def log_artifacts(self, run_id: str, folder: str | os.PathLike, artifact_path: str | None = None) -> None:
        """Every file under ``folder`` (a trial's artifact folder), at its relative path in the run."""
        self.client.log_artifacts(run_id, str(folder), artifact_path)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v  # drops NaN


def _tags(tags: Mapping[str, Any]) -> dict[str, str]:
    return {mlflow_key(k): str(v) for k, v in tags.items()}
