"""The shared file helpers: JSONL errors name file and line; atomic writes leave nothing behind on failure;
the cache lock file and build-once folder."""

import json
import multiprocessing
import os
import socket
import time
from pathlib import Path

import pytest

from ausweep.config import FileFormatError
from ausweep.files import (
    LockTimeout,
    build_folder_once,
    jsonl_records,
    lock_file,
    write_jsonl_atomic,
    write_text_atomic,
)


def test_jsonl_round_trip_skips_blank_lines(tmp_path):
    path = write_jsonl_atomic(tmp_path / "sub" / "a.jsonl", [{"x": 1}, {"y": "é"}])
    path.write_text(path.read_text() + "\n\n")
    assert list(jsonl_records(path)) == [(1, {"x": 1}), (2, {"y": "é"})]


@pytest.mark.parametrize("text, match", [('{"x": 1}\n[1, 2]\n', r"b.jsonl \(line 2\): expected a JSON object, got list"),
                                         ('{"x": 1}\n\n{oops\n', r"b.jsonl \(line 3\): invalid JSON")])
def test_jsonl_errors_name_file_and_line(tmp_path, text, match):
    (tmp_path / "b.jsonl").write_text(text)
    with pytest.raises(FileFormatError, match=match):
        list(jsonl_records(tmp_path / "b.jsonl"))
    with pytest.raises(FileFormatError, match="missing.jsonl: file does not exist"):
        list(jsonl_records(tmp_path / "missing.jsonl"))


def test_failed_atomic_write_keeps_the_old_file_and_no_temp(tmp_path):
    path = write_text_atomic(tmp_path / "m.json", "old")

    def records():
        yield {"a": 1}
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        write_jsonl_atomic(path, records())
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["m.json"]


# ----------------------------------------------------------------------------- lock file, build once

def _build_racer(final, log, barrier, results):
    def build(tmp):
        with open(log, "a") as f:  # O_APPEND: one line per build, whoever writes it
            f.write(f"{os.getpid()}\n")
        time.sleep(0.5)  # long enough that the other process arrives while the build is under way
        (tmp / "weights.bin").write_bytes(b"w" * 1000)

    barrier.wait()
    out = build_folder_once(final, {"v": 1}, build, poll_s=0.02)
    results.put((str(out), (out / "weights.bin").stat().st_size))


def test_two_processes_racing_build_the_folder_once(tmp_path):
    ctx = multiprocessing.get_context("fork")
    final, log = tmp_path / "models" / "m", tmp_path / "builds.log"
    barrier, results = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_build_racer, args=(final, log, barrier, results)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert len(log.read_text().split()) == 1, "exactly one process built it"
    assert sorted(results.get(timeout=5) for _ in procs) == [(str(final), 1000)] * 3
    assert sorted(p.name for p in final.parent.iterdir()) == ["m"], "no lock, temp or stale folder left"
    # a current folder is returned without building or locking
    assert build_folder_once(final, {"v": 1}, lambda tmp: pytest.fail("rebuilt a current folder")) == final


def test_outdated_folder_is_replaced_whole(tmp_path):
    final = tmp_path / "m"
    build_folder_once(final, {"v": 1}, lambda tmp: (tmp / "old.bin").write_text("old"))
    build_folder_once(final, {"v": 2}, lambda tmp: (tmp / "new.bin").write_text("new"))
    assert sorted(p.name for p in final.iterdir()) == ["ausweep-source.json", "new.bin"]
    assert json.loads((final / "ausweep-source.json").read_text()) == {"v": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_failed_move_aside_raises_instead_of_returning_the_outdated_folder(tmp_path, monkeypatch):
    final = tmp_path / "m"
    build_folder_once(final, {"v": 1}, lambda tmp: (tmp / "old.bin").write_text("old"))
    real_replace = os.replace

    def replace(src, dst):
        if Path(src) == final:
            raise OSError(16, "Device or resource busy")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(RuntimeError, match=f"cannot replace the outdated cache folder {final}.*busy"):
        build_folder_once(final, {"v": 2}, lambda tmp: (tmp / "new.bin").write_text("new"))
    monkeypatch.undo()
    # nothing half-done: the old folder is intact, no temp folder or lock is left, and a retry works
    assert json.loads((final / "ausweep-source.json").read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    build_folder_once(final, {"v": 2}, lambda tmp: (tmp / "new.bin").write_text("new"))
    assert (final / "new.bin").is_file() and not (final / "old.bin").exists()


def test_a_failed_build_leaves_nothing_and_releases_the_lock(tmp_path):
    def build(tmp):
        (tmp / "half.bin").write_text("x")
        raise RuntimeError("conversion failed")

    with pytest.raises(RuntimeError, match="conversion failed"):
        build_folder_once(tmp_path / "m", {"v": 1}, build)
    assert list(tmp_path.iterdir()) == []


def test_lock_is_exclusive_and_times_out_naming_the_owner(tmp_path):
    path = tmp_path / "x.lock"
    with lock_file(path) as held:
        owner = json.loads(held.read_text())
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        with pytest.raises(LockTimeout, match=rf"x.lock: still locked after 0 s by .*\"pid\": {os.getpid()}"):
            with lock_file(path, timeout_s=0.3, poll_s=0.05):
                pass
    assert not path.exists()


def test_stale_locks_are_broken(tmp_path):
    path = tmp_path / "x.lock"
    # owner: a process on this host that no longer exists
    dead = multiprocessing.get_context("fork").Process(target=lambda: None)
    dead.start()
    dead.join()
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "time": time.time(), "token": "a"}))
    with lock_file(path, timeout_s=5, poll_s=0.05):
        assert json.loads(path.read_text())["pid"] == os.getpid()
    # owner: another node that stopped touching the lock longer ago than stale_after_s
    path.write_text(json.dumps({"host": "node-that-died", "pid": 1, "time": 0, "token": "b"}))
    os.utime(path, (time.time() - 120, time.time() - 120))
    with pytest.raises(LockTimeout):
        with lock_file(path, timeout_s=0.3, stale_after_s=600, poll_s=0.05):
            pass
    with lock_file(path, timeout_s=5, stale_after_s=60, poll_s=0.05):
        assert json.loads(path.read_text())["pid"] == os.getpid()
    # an empty file (what an older ausweep's fcntl lock left behind) a while old
    path.write_text("")
    os.utime(path, (time.time() - 30, time.time() - 30))
    with lock_file(path, timeout_s=5, poll_s=0.05):
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert list(tmp_path.iterdir()) == []


def test_a_held_lock_is_kept_fresh(tmp_path):
    path = tmp_path / "x.lock"
    with lock_file(path, stale_after_s=0.4):
        os.utime(path, (0, 0))
        time.sleep(0.3)  # the heartbeat (every stale_after_s / 4) touches it again
        assert time.time() - path.stat().st_mtime < 0.4
