"""The CLI end to end on a real local Ray session and a real MLflow SQLite store (tiny models)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.tiny import make_fsd50k, write_sweep

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def _mlflow(uri: str, experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000) if exp else []
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    root = make_fsd50k(tmp_path / "FSD50K")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return tmp_path, root, uri


def test_cli_runs_sweep_and_mlflow_holds_parent_and_children(tiny, ray_session, capsys):
    from ausweep.sweep.cli import main

    tmp, root, uri = tiny
    sweep = write_sweep(tmp / "tiny.yaml", root, tmp / "cache", num_actors=2)
    assert main([str(sweep), "--storage", str(tmp / "runs")]) == 0
    out = capsys.readouterr().out
    assert "4 trial(s) done, 0 failed" in out and "mlflow ui --backend-store-uri sqlite:" in out
    client, parents, children = _mlflow(uri, "tiny")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 4
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    grid = {(c.data.params["text.model"], float(c.data.params["probe.lr"])) for c in children}
    assert grid == {(m, lr) for m in ("tiny-bert", "tiny-gpt2") for lr in (1e-2, 3e-3)}
    for c in children:
        assert c.info.status == "FINISHED"
        m = c.data.metrics
        assert 0.0 <= m["test/acc_at_1"] <= m["test/acc_at_5"] <= 1.0
        assert 0.0 <= m["val/acc_at_1"] <= m["val/acc_at_5"] <= 1.0
        assert m["test/chance_at_1"] == pytest.approx(1 / 10)
        assert m["val/chance_at_1"] == pytest.approx(1 / 7)  # validation retrieves among the 7 training classes
        for key in ("test/acc_at_1_se", "test/perm_acc_at_1", "test/procrustes_acc_at_1", "test/excluded_clips"):
            assert key in m
        assert len(client.get_metric_history(c.info.run_id, "train_loss")) == 30  # one point per epoch
        tags = c.data.tags
        _assert_is_a_commit_of_this_checkout(tags["ausweep.git_sha"])
        assert tags["ausweep.git_dirty"] in ("true", "false")
        assert tags["ausweep.config_hash"] and tags["ausweep.data_digest"] and tags["ausweep.version.torch"]
        assert tags["ausweep.clip_leakage"].startswith("checked")
        files = {a.path for a in client.list_artifacts(c.info.run_id)}
        assert {"per_class_accuracy.csv", "config.yaml", "clip_exclusion.csv"} <= files
    parent_files = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"results.csv", "selected.csv", "acc_at_k.png"} <= parent_files
    # the parent's "best" is the trial best on validation; its held-out numbers ride along
    best = max(children, key=lambda c: c.data.metrics["val/acc_at_1"])
    assert parents[0].data.metrics["best_val/acc_at_1"] == best.data.metrics["val/acc_at_1"]
    assert "best_test/acc_at_1" in parents[0].data.metrics


def _assert_is_a_commit_of_this_checkout(sha: str) -> None:
    """Tests run in a git checkout (CI clones the repo), so the recorded SHA is a full commit id of
    it; "unknown" would mean provenance was lost. (HEAD may move while the test runs, so any commit.)"""
    assert re.fullmatch(r"[0-9a-f]{40}", sha), f"git SHA {sha!r} is not a commit id"
    found = subprocess.run(["git", "cat-file", "-e", f"{sha}^{{commit}}"], cwd=REPO, capture_output=True)
    assert found.returncode == 0, f"{sha} is not a commit of {REPO}"


def _run_cli(args: list[str], cwd: Path, env: dict) -> subprocess.Popen:
    log = open(cwd / "driver.log", "w")  # a file, not a pipe: an unread pipe would block the driver
    return subprocess.Popen([sys.executable, "-m", "ausweep.sweep", *args], cwd=cwd, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def test_resume_after_driver_killed_runs_only_unfinished_trials(tiny):
    """Kill the driver once it has recorded two finished trials (one trial at a time, so the others
    are unfinished), then resume. What counts as finished is read from the driver's own records
    after the kill, so the assertions do not depend on when exactly the kill lands."""
    tmp, root, uri = tiny
    sweep = write_sweep(tmp / "tiny.yaml", root, tmp / "cache", lrs=(1e-2, 5e-3, 3e-3, 1e-3), max_concurrent=1, epochs=1500)
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": uri}
    args = [str(sweep), "--storage", str(tmp / "runs")]
    records = lambda: {p.stem for p in (tmp / "runs").glob("tiny-*/completed/*.json")}  # noqa: E731
    proc = _run_cli(args, tmp, env)
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None and len(records()) < 2:
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray processes it started
        proc.wait()
    done_before = records()  # the driver, the only writer of these records, is dead: this is final
    log = (tmp / "driver.log").read_text()[-3000:]
    assert len(done_before) >= 2, "the sweep did not get two trials done: " + log
    assert len(done_before) < 8, "the sweep finished before it could be interrupted (make trials longer): " + log
    [run_dir] = list((tmp / "runs").glob("tiny-*"))

    # the same sweep with another setting is refused, naming the state file (no Ray started)
    out = subprocess.run([sys.executable, "-m", "ausweep.sweep", *args, "probe.epochs=10", "--resume"], cwd=tmp,
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and f"{run_dir / 'ausweep_sweep.json'}: --resume: the sweep changed" in out.stderr, out.stderr[-3000:]
    assert "config.probe.epochs: 1500 -> 10" in out.stderr

    out = subprocess.run([sys.executable, "-m", "ausweep.sweep", *args, "--resume"], cwd=tmp, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    _, parents, children = _mlflow(uri, "tiny")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    trial_ids = [c.data.tags["ausweep.trial_key"] for c in children]
    assert len(trial_ids) == 8 and len(set(trial_ids)) == 8, "one child run per trial, no duplicates"
    assert done_before <= set(trial_ids)
    assert all(c.info.status == "FINISHED" for c in children)
    for c in children:
        if c.data.tags["ausweep.trial_key"] in done_before:
            assert c.data.tags["ausweep.attempts"] == "1", "a finished trial must not run again"
    assert len(records()) == 8


def test_unknown_model_is_one_clear_line(tiny):
    tmp, root, uri = tiny
    sweep = write_sweep(tmp / "tiny.yaml", root, tmp / "cache")
    out = subprocess.run([sys.executable, "-m", "ausweep.sweep", str(sweep), "text.model=tiny-brt"], cwd=tmp,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    err = [line for line in out.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "tiny-brt" in err[0] and "tiny-bert" in err[0], out.stderr
    assert "Traceback" not in out.stderr


def test_corrupt_audio_is_one_clear_line_and_keeps_other_shards(tiny):
    tmp, root, uri = tiny
    # Whispering comes last in vocabulary order, so its last clip sits in the last shard.
    bad = root / "FSD50K.eval_audio" / "1026.wav"
    bad.write_bytes(os.urandom(2000))
    sweep = write_sweep(tmp / "tiny.yaml", root, tmp / "cache")
    out = subprocess.run([sys.executable, "-m", "ausweep.sweep", str(sweep)], cwd=tmp,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=180)
    assert out.returncode == 2
    err = [line for line in out.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(err) == 1 and str(bad) in err[0], out.stderr
    assert "Traceback" not in out.stderr
    shards = list((tmp / "cache" / "audio-shard").rglob("*.npz"))
    assert shards, "shards before the bad file are kept for the next run"
    assert not list((tmp / "cache").rglob("*.tmp-*"))


def test_bring_your_own_embeddings_known_answer(tiny, ray_session):
    """Audio = a random linear map of text + noise: the probe must find it through the whole CLI."""
    import numpy as np

    from ausweep.data.npz import save_embeddings_npz
    from ausweep.sweep.cli import main

    tmp, _, uri = tiny
    rng = np.random.default_rng(0)
    labels = [f"class_{i}" for i in range(60)]
    text = rng.standard_normal((60, 32)).astype(np.float32)
    audio = text @ rng.standard_normal((32, 48)).astype(np.float32) + 0.01 * rng.standard_normal((60, 48)).astype(np.float32)
    save_embeddings_npz(tmp / "text.npz", labels, text)
    # the audio file lists its classes in another order: rows are matched by label
    order = rng.permutation(60)
    save_embeddings_npz(tmp / "audio.npz", [labels[i] for i in order], audio[order])
    rc = main(["probe", "--preset", "byo", "--storage", str(tmp / "runs"), f"embeddings.text={tmp / 'text.npz'}",
               f"embeddings.audio={tmp / 'audio.npz'}", "probe.shared_dim=32", "probe.lr=0.003"])
    assert rc == 0
    _, parents, children = _mlflow(uri, "probe")
    assert len(parents) == 1 and len(children) == 1  # lr and shared_dim fixed on the command line
    m = children[0].data.metrics
    assert m["test/acc_at_1"] > 0.9 and m["test/chance_at_1"] == pytest.approx(1 / 60)
    assert m["test/perm_acc_at_1"] < 0.15
    assert children[0].data.tags["ausweep.clip_leakage"].startswith("unchecked")


def test_hub_model_missing_offline_is_one_clear_line(tiny):
    """A hub id that is not in the local cache fails inside a Ray actor; the driver says so in one line."""
    tmp, root, uri = tiny
    sweep = write_sweep(tmp / "tiny.yaml", root, tmp / "cache", num_actors=2)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp / "hf")}
    out = subprocess.run([sys.executable, "-m", "ausweep.sweep", str(sweep), "text.model=acme/no-such-lm"], cwd=tmp,
                         env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 2, out.stderr[-3000:]
    err = [line for line in out.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "acme/no-such-lm" in err[0] and "HF_HUB_OFFLINE" in err[0], out.stderr[-3000:]
    assert "Traceback" not in out.stderr
