"""File helpers every stage shares: atomic text writes, JSONL reading with located errors, and a
lock plus build-once folder for caches that several processes (or nodes) share.

A write goes to a temporary file in the same folder and is renamed onto the final name
(``os.replace`` is atomic on POSIX), so a crash never leaves a half-written manifest or item set
that a later run would take for complete.

:func:`lock_file` is a lock file created with ``O_CREAT | O_EXCL``, which is atomic on local file
systems and on NFSv3+ (unlike ``fcntl.flock``, which some network file systems ignore or emulate
per node). It holds the owner's host, pid and start time; the owner touches it while it holds it,
and a waiter breaks it when its owner is a dead process on the same host or it has not been touched
for ``stale_after_s`` (an owner on another node that died). Clocks of the nodes must agree to well
within ``stale_after_s``. Breaking is a rename, so of several waiters only one breaks a given lock;
only if a new owner takes the lock in the instant between a waiter's look and its rename, and a third
process takes it before it is handed back, can two processes hold it (the build's atomic rename still
leaves a complete folder).

:func:`build_folder_once` builds a cache folder in a temporary sibling under that lock and renames
it into place, so readers see the complete old folder, no folder, or the complete new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ausweep.config import FileFormatError


def cache_root() -> Path:
    """Where ausweep's caches live: ``$AUSWEEP_CACHE`` (``~`` expanded), else ``~/.cache/ausweep``.
    Not created here. On a cluster, point ``AUSWEEP_CACHE`` at storage every node sees."""
    return Path(os.environ.get("AUSWEEP_CACHE") or "~/.cache/ausweep").expanduser()


PACKAGED_DATA = "_data"  # where a built wheel carries the repo's configs/ and sweeps/ (see setup.py)


def resources_root() -> Path:
    """The folder that holds ``configs/`` and ``sweeps/``.

    In a source checkout (an editable install, or running from the repo) that is the repo's top
    folder, the one users edit. A built wheel (``pip install .``, or a wheel in a Ray runtime env)
    carries copies of both inside the package, as ``ausweep/_data/``: setup.py puts them there, so
    the presets and sweeps are found from any working directory.
    """
    package = Path(__file__).resolve().parent
    checkout = package.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "configs").is_dir():
        return checkout
    return package / PACKAGED_DATA


def write_atomic(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Create ``path`` (parents created) all at once or not at all: ``write`` fills a temporary file
    beside it, which is then renamed over ``path``; on any error the temporary file is removed. A
    reader, or a crash mid-write, never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` (parents created) all at once or not at all."""
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_jsonl_atomic(path: str | os.PathLike, records: Iterator[dict[str, Any]] | list[dict[str, Any]]) -> Path:
    """One JSON object per line, written with :func:`write_text_atomic`."""
    return write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def jsonl_records(path: str | os.PathLike, error: type[FileFormatError] = FileFormatError) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for every non-blank line of a JSONL file. A missing file, a line
    that is not JSON or not a JSON object raises ``error`` naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise error(path, "", "", "file does not exist")
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"line {n}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise error(path, where, "", f"invalid JSON: {e.msg}") from None
            if not isinstance(rec, dict):
                raise error(path, where, "", f"expected a JSON object, got {type(rec).__name__}")
            yield n, rec


class LockTimeout(RuntimeError):
    """A lock file stayed held past the wait limit."""


def _lock_owner_dead(info: dict[str, Any]) -> bool:
    if info.get("host") != socket.gethostname() or not isinstance(info.get("pid"), int):
        return False
    try:
        os.kill(info["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _try_break_stale(path: Path, stale_after_s: float) -> bool:
    """Remove ``path`` if its owner is gone; True if the caller should try to take it again."""
    try:
        text = path.read_text()
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return True
    try:
        info = json.loads(text)
    except json.JSONDecodeError:  # a lock file being written this instant, or garbage
        info = {}
    # An owner writes its details right after creating the file, so one still empty (or not JSON)
    # after a few seconds is debris (an older ausweep's flock file, a crash in between).
    garbage = not isinstance(info, dict) or not info
    if not (age > stale_after_s or (garbage and age > min(stale_after_s, 10.0))
            or (not garbage and _lock_owner_dead(info))):
        return False
    # Rename first: of several waiters that judged it stale, exactly one moves it away.
    aside = path.with_name(f"{path.name}.broken-{socket.gethostname()}-{os.getpid()}-{time.time_ns()}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return True
    if aside.read_text() != text:  # a new owner took the lock between our read and the rename: give it back
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)
    aside.unlink(missing_ok=True)
    return True


@contextlib.contextmanager
def lock_file(path: str | os.PathLike, timeout_s: float = 3600.0, stale_after_s: float = 600.0,
              poll_s: float = 0.2) -> Iterator[Path]:
    """Hold an exclusive lock file at ``path`` (created atomically; see the module docstring).

    Waits up to ``timeout_s`` (``LockTimeout`` naming the owner after that). A lock untouched for
    ``stale_after_s``, or owned by a dead process on this host, is broken. While held, the file is
    touched every ``stale_after_s / 4`` so a long build is not taken for a dead one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time(), "token": os.urandom(8).hex()})
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if _try_break_stale(path, stale_after_s):
                continue
            if time.monotonic() > deadline:
                try:
                    owner = path.read_text()
                except OSError:
                    owner = "?"
                raise LockTimeout(f"{path}: still locked after {timeout_s:.0f} s by {owner}; "
                                  "delete it if that process is gone") from None
            time.sleep(poll_s)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(me)
            f.flush()
            os.fsync(f.fileno())
        break
    done = threading.Event()

    def heartbeat() -> None:
        while not done.wait(stale_after_s / 4):
            with contextlib.suppress(OSError):
                os.utime(path)

    beat = threading.Thread(target=heartbeat, name=f"lock-heartbeat {path.name}", daemon=True)
    beat.start()
    try:
        yield path
    finally:
        done.set()
        beat.join()
        with contextlib.suppress(OSError):
            if path.read_text() == me:  # never remove a lock another process took after ours was broken
                path.unlink()


def build_folder_once(final: str | os.PathLike, source: dict[str, Any], build: Callable[[Path], None],
                      stamp_name: str = "ausweep-source.json", **lock_options: Any) -> Path:
    """``final``, built by ``build(tmp_folder)`` unless it already holds a stamp equal to ``source``.

    One builder at a time across processes and nodes (:func:`lock_file` beside ``final``); the
    others wait, then find it built. The new folder is written to a temporary sibling and renamed
    into place; an outdated one is first renamed aside, and if that fails the error is raised
    (never the outdated folder returned as current). A process still reading the outdated folder
    while it is replaced may fail and must retry.
    """
    final = Path(final)
    stamp = final / stamp_name

    def current() -> bool:
        try:
            return json.loads(stamp.read_text()) == source
        except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
            return False

    if current():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with lock_file(final.parent / f".{final.name}.lock", **lock_options):
        if current():
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.build-", dir=final.parent))
        try:
            build(tmp)
            write_text_atomic(tmp / stamp_name, json.dumps(source))
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; a cache may be shared between users
            stale = None
            if final.exists():
                stale = final.with_name(f".{final.name}.stale-{os.getpid()}-{time.time_ns()}")
                try:
                    os.replace(final, stale)
                except OSError as e:
                    raise RuntimeError(f"cannot replace the outdated cache folder {final}: renaming it aside "
                                       f"failed ({e}); remove it and retry") from e
            os.replace(tmp, final)
            if stale is not None:
                shutil.rmtree(stale, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final
