"""MLflowTrialLogger against a real SQLite MLflow store, its hooks called as Tune's controller calls
them (through ray.tune's CallbackList, on real ray.tune Trial objects): one child run per trial
through retries, errors and a resumed driver (one killed as a trial completed too); attempts counted;
replayed trials not logged twice;
category names with any characters logged and read back as written."""

import json
import pickle
import time

import pytest

pytest.importorskip("ray.tune")

from ray.tune.callback import CallbackList  # noqa: E402
from ray.tune.experiment import Trial  # noqa: E402

from ausweep.track.store import SweepTracker  # noqa: E402
from ausweep.track.tune_callback import REPLAYED, MLflowTrialLogger, completed_path  # noqa: E402


def _trial(config, storage=None):
    """A Tune trial as the controller holds it (stub: no trainable to look up). With ``storage``, it
    has a trial directory where ``Trial.handle_error`` writes the error file, as in a sweep."""
    trial = Trial("ausweep_test", config=config, stub=True, storage=storage)
    trial.create_placement_group_factory()  # as TuneController.add_trial does
    if storage is not None:
        trial.init_local_path()
    return trial


@pytest.fixture
def storage(tmp_path, ray_session):  # a trial's staging directory lives in the Ray session's folder
    from ray.train._internal.storage import StorageContext

    return StorageContext(storage_path=str(tmp_path / "tune"), experiment_dir_name="sweep")


class Driver:
    """One sweep driver: the tracker on a parent run, the callback, and Tune's calls into it."""

    def __init__(self, uri, run_dir, resume_id=None, callback=None):
        self.tracker = SweepTracker("sweep", uri=uri)
        self.parent = self.tracker.start_parent("sweep-run", {"n": 3}, {"ausweep.sweep": "sweep"}, resume_id=resume_id)
        if callback is None:
            callback = MLflowTrialLogger(self.tracker, swept_keys=["model"], tags={"ausweep.sweep": "sweep"},
                                         completed_dir=str(run_dir / "completed"))
        else:  # Tuner.restore unpickles the callbacks it was given
            callback = pickle.loads(pickle.dumps(callback))
            callback.tracker = self.tracker
        self.callback = callback
        self.calls = CallbackList([callback])
        self.trials = []

    def start(self, trial):
        if trial not in self.trials:
            self.trials.append(trial)
        self.calls.on_trial_start(iteration=0, trials=self.trials, trial=trial)

    def result(self, trial, step=1, **metrics):
        result = {**metrics, "training_iteration": step, "trial_id": trial.trial_id, "time_this_iter_s": 0.1}
        trial.update_last_result(result)
        self.calls.on_trial_result(iteration=0, trials=self.trials, trial=trial, result=result)

    def fail(self, trial, retried):
        trial.handle_error(RuntimeError("worker died"))
        hook = self.calls.on_trial_recover if retried else self.calls.on_trial_error
        hook(iteration=0, trials=self.trials, trial=trial)

    def complete(self, trial):
        self.calls.on_trial_complete(iteration=0, trials=self.trials, trial=trial)


def _children(driver):
    return {c.data.tags["ausweep.config_hash"]: c for c in driver.tracker.children()}


def _child(driver, trial):
    from ausweep.config import config_hash

    return driver.tracker.client.get_run(_children(driver)[config_hash(trial.config)].info.run_id)


@pytest.fixture
def uri(tmp_path):
    return f"sqlite:///{tmp_path}/mlruns.db"


def test_a_retried_trial_is_one_child_with_its_attempts_counted(uri, tmp_path, storage):
    d = Driver(uri, tmp_path)
    t = _trial({"model": "q", "lr": 0.1}, storage)
    d.start(t)
    d.result(t, 1, loss=2.0)
    d.fail(t, retried=True)  # Tune will retry: the child stays open
    failed = _child(d, t)
    assert failed.info.status == "RUNNING" and failed.data.tags["ausweep.attempts"] == "1"
    assert "worker died" in open(failed.data.tags["ausweep.error_file"]).read()
    d.start(t)  # the retry: same Trial object, same trial id
    d.result(t, 1, loss=1.5)
    d.result(t, 2, loss=1.0)
    d.complete(t)
    (child,) = _children(d).values()
    assert child.info.status == "FINISHED" and child.data.tags["ausweep.attempts"] == "2"
    assert child.data.params["model"] == "q" and child.info.run_name == "model=q"
    history = d.tracker.client.get_metric_history(child.info.run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(0, 1.5), (0, 2.0), (1, 1.0)]
    record = json.loads(completed_path(str(tmp_path / "completed"), child.data.tags["ausweep.config_hash"]).read_text())
    assert record["loss"] == 1.0


def test_an_errored_trial_is_failed_and_a_resumed_driver_reruns_it_into_the_same_child(uri, tmp_path, storage):
    d = Driver(uri, tmp_path)
    t = _trial({"model": "l", "lr": 0.2}, storage)
    d.start(t)
    d.fail(t, retried=False)
    child = _child(d, t)
    assert child.info.status == "FAILED" and "worker died" in open(child.data.tags["ausweep.error_file"]).read()
    d.tracker.end(d.parent)
    # --resume with restart_errored: a new driver, the callback unpickled (its trial -> run map
    # included), the trial restored from Tune's saved state with its id
    r = Driver(uri, tmp_path, resume_id=d.parent, callback=d.callback)
    state, metadata = t.get_json_state()
    again = Trial.from_json_state(state, stub=True)
    assert again.trial_id == t.trial_id and again.config == t.config
    r.start(again)
    assert _child(r, again).info.status == "RUNNING" and _child(r, again).data.tags["ausweep.attempts"] == "2"
    r.result(again, 1, loss=0.5)
    r.complete(again)
    (child,) = _children(r).values()
    assert child.info.status == "FINISHED" and child.data.metrics["loss"] == 0.5


def test_after_resume_a_replayed_trial_is_not_logged_twice_and_an_unfinished_one_continues(uri, tmp_path):
    d = Driver(uri, tmp_path)
    done, cut = _trial({"model": "q", "lr": 0.1}), _trial({"model": "s", "lr": 0.1})
    for t in (done, cut):
        d.start(t)
    d.result(done, 1, acc=0.75)
    d.complete(done)
    d.result(cut, 1, acc=0.25)  # the driver dies here: `cut` never finishes, Tune's state missed `done`
    finished_at = _child(d, done).info.end_time
    time.sleep(0.01)  # end times are in ms: a second end would show
    r = Driver(uri, tmp_path, resume_id=d.parent)  # a callback built afresh: nothing cached
    done2, cut2 = _trial(dict(done.config)), _trial(dict(cut.config))
    assert done2.trial_id != done.trial_id
    for t in (done2, cut2):
        r.start(t)
    record = json.loads(completed_path(str(tmp_path / "completed"), _child(r, done2).data.tags["ausweep.config_hash"]).read_text())
    r.result(done2, 1, **{**record, REPLAYED: 1})  # what the trainable reports for a trial it finds recorded
    r.complete(done2)
    r.result(cut2, 1, acc=0.5)
    r.complete(cut2)
    children = _children(r)
    assert len(children) == 2 and all(c.info.status == "FINISHED" for c in children.values())
    replayed = _child(r, done2)
    assert replayed.data.tags["ausweep.attempts"] == "1" and REPLAYED not in replayed.data.metrics
    assert [m.value for m in r.tracker.client.get_metric_history(replayed.info.run_id, "acc")] == [0.75]
    assert replayed.info.end_time == finished_at  # left as the first driver finished it
    resumed = _child(r, cut2)
    assert resumed.data.tags["ausweep.attempts"] == "2"
    assert sorted(m.value for m in r.tracker.client.get_metric_history(resumed.info.run_id, "acc")) == [0.25, 0.5]


class Killed(BaseException):
    """The driver killed (SIGKILL, node lost) in the middle of a callback."""


def test_a_driver_killed_as_a_trial_completes_leaves_its_record_and_the_replay_ends_its_child(uri, tmp_path):
    d = Driver(uri, tmp_path)
    t = _trial({"model": "q", "lr": 0.1})
    d.start(t)
    d.result(t, 1, acc=0.75)

    def killed(run_id, status="FINISHED"):
        raise Killed

    d.tracker.end = killed  # the driver dies as it ends the child run
    with pytest.raises(Killed):
        d.complete(t)
    key = _child(d, t).data.tags["ausweep.config_hash"]
    record_file = completed_path(str(tmp_path / "completed"), key)
    assert record_file.is_file(), "the record is written before the child ends"
    assert _child(d, t).info.status == "RUNNING"
    r = Driver(uri, tmp_path, resume_id=d.parent)  # --resume: the trainable finds the record and replays it
    again = _trial(dict(t.config))
    r.start(again)
    r.result(again, 1, **{**json.loads(record_file.read_text()), REPLAYED: 1})
    r.complete(again)
    (child,) = _children(r).values()
    assert child.info.status == "FINISHED" and child.info.end_time is not None
    assert [m.value for m in r.tracker.client.get_metric_history(child.info.run_id, "acc")] == [0.75]

def test_category_names_with_any_characters_are_logged_and_read_back(uri, tmp_path):
    from ausweep.benchmarks.mcq import MCItem, accuracy_metrics
    from ausweep.report.correlation import metric_name

    items = [MCItem("a", "?", ("x", "y"), 0, "Sound & Music", "pitch"), MCItem("b", "?", ("x", "y"), 0, "Sound & Music", "pitch"),
             MCItem("c", "?", ("x", "y"), 0, "rhyme/stress", "a@b")]
    d = Driver(uri, tmp_path)
    t = _trial({"model": "q", "sets": ["Sound & Music"]})
    d.start(t)
    # Tune metrics as a study reports them, plus a key a study builds from a name by hand
    d.result(t, 1, **accuracy_metrics(items, [0, 1, 0]), **{"chance/Sound & Music": 0.5, "val/acc@1": 0.25})
    d.complete(t)
    logged = {metric_name(k): v for k, v in _child(d, t).data.metrics.items()}
    assert logged["acc/Sound & Music/pitch"] == 0.5 and logged["n/Sound & Music"] == 2.0
    assert logged["chance/Sound & Music"] == 0.5 and logged["val/acc@1"] == 0.25
    assert logged["acc/rhyme_x2f_stress/a@b"] == 1.0  # a "/" in a name stays escaped in the flat name
    assert "acc/Sound _x26_ Music/pitch" in _child(d, t).data.metrics and "val/acc_at_1" in _child(d, t).data.metrics
