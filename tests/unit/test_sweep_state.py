"""Sweep state for --resume, through the real CLI where no Ray is needed: the state file is written
atomically, run folders are unique, a corrupt state is one line naming the file, and a sweep that
changed since its run started is refused unless --resume-changed says go on; a key=value after
--resume is an override, not its RUN_DIR."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from ausweep.config import ConfigError
from ausweep.sweep.cli import main
from ausweep.sweep.runner import (
    STATE_FILE,
    check_resume,
    find_resumable,
    new_run_dir,
    read_state,
    sweep_fingerprint,
    write_state,
)
from ausweep.sweep.spec import load_sweep
from tests.tiny import make_fsd50k, write_sweep


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = write_sweep(tmp_path / "tiny.yaml", make_fsd50k(tmp_path / "FSD50K", clips_per_class=1), tmp_path / "cache")
    return tmp_path, sweep


def _started_run(runs, sweep_file, overrides=None):
    """A run directory with the state run_sweep writes when it starts."""
    sweep = load_sweep(str(sweep_file), None, overrides or {})
    fp = sweep_fingerprint(sweep)
    run_dir = new_run_dir(runs, sweep.run_label)
    write_state(run_dir, {"parent_run_id": "abc", "tracking_uri": "sqlite:///x.db", "sweep": sweep.name,
                          "fingerprint": fp})
    return run_dir


def _one_error_line(capsys):
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_resume_refuses_a_changed_sweep_naming_the_state_file_and_the_change(tiny, capsys):
    tmp, sweep_file = tiny
    run_dir = _started_run(tmp / "runs", sweep_file)
    rc = main([str(sweep_file), "probe.epochs=7", "probe.lr=0.5", "--storage", str(tmp / "runs"), "--resume"])
    assert rc == 2
    line = _one_error_line(capsys)
    assert str(run_dir / STATE_FILE) in line and "--resume-changed" in line
    assert "config.probe.epochs: 30 -> 7" in line
    assert 'search_space.probe.lr.grid: [0.01, 0.003] -> "<unset>"' in line  # fixing a searched key drops its axis
    # --resume-changed without --resume is an error too, not silently ignored
    assert main([str(sweep_file), "--resume-changed"]) == 2 and "--resume-changed" in _one_error_line(capsys)


def test_an_override_after_resume_is_an_override_and_a_run_folder_stays_one(tiny, capsys):
    tmp, sweep_file = tiny
    run_dir = _started_run(tmp / "runs", sweep_file)
    # `--resume probe.epochs=7`: the newest run, with probe.epochs=7 (here refused as a change),
    # not a run folder named "probe.epochs=7"
    assert main([str(sweep_file), "--storage", str(tmp / "runs"), "--resume", "probe.epochs=7"]) == 2
    line = _one_error_line(capsys)
    assert str(run_dir / STATE_FILE) in line and "config.probe.epochs: 30 -> 7" in line
    # the override keeps its place: the later of two values for a key wins, as without --resume
    assert main([str(sweep_file), "probe.epochs=5", "--storage", str(tmp / "runs"), "--resume", "probe.epochs=7",
                 "--show"]) == 0
    assert "epochs: 7" in capsys.readouterr().out
    # a folder that exists under that name, or any path, is still --resume's RUN_DIR
    (tmp / "probe.epochs=7").mkdir()
    for folder in ("probe.epochs=7", str(tmp / "exp=1" / "tiny-20250101-120000-abcdef")):
        assert main([str(sweep_file), "--resume", folder]) == 2
        assert _one_error_line(capsys).startswith(f"error: {Path(folder).resolve() / STATE_FILE}: --resume: no sweep state")

def test_resume_changed_goes_on_and_says_what_changed(tiny):
    tmp, sweep_file = tiny
    run_dir = _started_run(tmp / "runs", sweep_file)
    state = read_state(run_dir)
    same = sweep_fingerprint(load_sweep(str(sweep_file), None, {}))
    assert check_resume(state, run_dir, same, allow_changed=False) == []
    changed = sweep_fingerprint(load_sweep(str(sweep_file), None, {"probe": {"epochs": 7}}))
    with pytest.raises(ConfigError):
        check_resume(state, run_dir, changed, allow_changed=False)
    assert check_resume(state, run_dir, changed, allow_changed=True) == ["config.probe.epochs: 30 -> 7"]
    other_preset = {**same, "preset": "demo"}  # resuming a run folder with another --preset
    with pytest.raises(ConfigError, match='preset: null -> "demo"'):
        check_resume(state, run_dir, other_preset, allow_changed=False)
    # a state from before fingerprints is resumed unchecked
    assert check_resume({"parent_run_id": "abc"}, run_dir, changed, allow_changed=False) == []
    # how trials run (resources, trials at once, retries) may change on resume
    how = sweep_fingerprint(load_sweep(str(sweep_file), None, {}))
    other = load_sweep(str(sweep_file), None, {"resources": {"cpu": 2}, "tune": {"max_concurrent_trials": 3}})
    assert sweep_fingerprint(other) == how


@pytest.mark.parametrize("text", ['{"parent_run_id": "abc", "tracking', "", "[1, 2]", '{"sweep": "tiny"}'])
def test_corrupt_state_is_one_line_naming_the_file(tiny, capsys, text):
    tmp, sweep_file = tiny
    run_dir = _started_run(tmp / "runs", sweep_file)
    (run_dir / STATE_FILE).write_text(text)
    assert main([str(sweep_file), "--storage", str(tmp / "runs"), "--resume"]) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"error: {run_dir / STATE_FILE}: --resume: ") and "cannot be resumed" in line


def test_state_write_is_atomic(tmp_path, monkeypatch):
    write_state(tmp_path, {"parent_run_id": "old"})

    def crash(src, dst):
        raise OSError("node lost power")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        write_state(tmp_path, {"parent_run_id": "new"})
    monkeypatch.undo()
    assert read_state(tmp_path)["parent_run_id"] == "old"
    assert [p.name for p in tmp_path.iterdir()] == [STATE_FILE], "no temporary file left"


def test_run_folders_are_unique_within_a_second_and_resume_finds_the_newest(tmp_path):
    dirs = [new_run_dir(tmp_path, "tiny") for _ in range(20)]  # well within one second
    assert len(set(dirs)) == 20 and all(d.is_dir() for d in dirs)
    assert len({d.name[: len("tiny-20250101-120000")] for d in dirs}) <= 2
    for i, d in enumerate(dirs[:3]):
        write_state(d, {"parent_run_id": str(i)})
        os.utime(d / STATE_FILE, (time.time() + i, time.time() + i))
    assert find_resumable(tmp_path, "tiny") == dirs[2]
    assert find_resumable(tmp_path, "tin") is None
    with pytest.raises(FileExistsError):  # created exclusively: a folder is never shared
        dirs[0].mkdir()
    assert json.loads((dirs[1] / STATE_FILE).read_text()) == {"parent_run_id": "1"}
