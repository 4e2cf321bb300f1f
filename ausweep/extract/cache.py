"""On-disk embedding cache, keyed by a content hash of everything that determines an entry.

An entry is one ``.npz`` file holding named arrays plus the JSON spec it was computed from. Its
key is the SHA-256 of that spec (model identity and revision, template, pooling, data digest...),
so a re-run with the same inputs loads instead of recomputing, and any change to an input is a
different key rather than a stale hit.

What it guarantees, on a local disk and on a network file system shared by several nodes:

* Writes are atomic: the arrays go to a temporary file in the same directory, are flushed to disk,
  and only then renamed onto the final name (``os.replace`` is atomic on POSIX and on NFS). A reader
  sees no entry or a complete one; a crash mid-write leaves at most a ``*.tmp-*`` file, which never
  reads as an entry and is swept up later. Two writers of one key both write complete, equal
  entries (same spec, same inputs), and the last rename wins; there is no lock.
* Reads never delete. A read that fails with an ``OSError`` (a passing NFS error, a stale file
  handle) is retried a few times and then raised, naming the file; the entry is left alone, since
  it may be good (another node may have just written it). An entry whose bytes were read in full
  but are not a valid archive of our format (zip CRC-32s, spec stored inside) is corrupt for sure:
  :meth:`EmbeddingCache.load` raises :class:`CorruptCacheEntry` and :meth:`EmbeddingCache.get`
  reports it absent, so the caller recomputes and its atomic write replaces the bad file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

_SPEC_KEY = "__spec__"
READ_ATTEMPTS = 3  # of a read that fails with an OSError, before the error is raised
READ_RETRY_S = 0.2  # first wait between attempts; doubled each time


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def default_cache_dir() -> Path:
    """``$AUSWEEP_CACHE/embeddings``, else ``~/.cache/ausweep/embeddings``. On a cluster, point
    ``AUSWEEP_CACHE`` (or ``extract.cache_dir``) at shared storage so every node sees one cache."""
    from ausweep.files import cache_root

    return cache_root() / "embeddings"


def spec_key(spec: Mapping[str, Any]) -> str:
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


class CorruptCacheEntry(RuntimeError):
    pass


class EmbeddingCache:
    """``cache.save(spec, arrays)``, ``cache.load(spec)``; specs are JSON-able dicts."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root else default_cache_dir()

    def path(self, spec: Mapping[str, Any]) -> Path:
        key = spec_key(spec)
        kind = str(spec.get("kind", "entry"))
        return self.root / kind / key[:2] / f"{key}.npz"

    def has(self, spec: Mapping[str, Any]) -> bool:
        return self.path(spec).is_file()

    def load(self, spec: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The arrays of a complete entry. Raises KeyError if absent, CorruptCacheEntry if the
        file was read but is not a valid entry or was written for another spec (a hash collision
        or a hand-copied file), and OSError (naming the file) if reading kept failing."""
        path = self.path(spec)
        if not path.is_file():
            raise KeyError(str(path))
        data = self._read(path)
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (zipfile.BadZipFile, ValueError, EOFError, KeyError, OSError) as e:
            # The bytes are in memory: this is the content, not a read that may go better next time.
            raise CorruptCacheEntry(f"cache entry {path} is unreadable ({e}); delete it to recompute") from None
        try:
            stored = json.loads(str(arrays.pop(_SPEC_KEY)))
        except (KeyError, json.JSONDecodeError):
            raise CorruptCacheEntry(f"cache entry {path} holds no spec; delete it to recompute") from None
        if stored != json.loads(json.dumps(spec, sort_keys=True, default=str)):
            raise CorruptCacheEntry(f"cache entry {path} was written for a different spec; delete it to recompute")
        return arrays

    @staticmethod
    def _read(path: Path) -> bytes:
        """The file's bytes; an OSError is retried (it may pass), then raised naming the file."""
        wait = READ_RETRY_S
        for attempt in range(1, READ_ATTEMPTS + 1):
            try:
                return _read_bytes(path)
            except FileNotFoundError:
                raise KeyError(str(path)) from None
            except OSError as e:
                if attempt == READ_ATTEMPTS:
                    raise OSError(e.errno, f"cache entry {path} could not be read after {attempt} attempts "
                                           f"({e.strerror or e}); it was left in place") from e
                time.sleep(wait)
                wait *= 2
        raise AssertionError("unreachable")

    def get(self, spec: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
        """Like :meth:`load` but None when absent or corrupt (the caller recomputes, and its
        :meth:`save` replaces the file). Never deletes: a read error is raised, not taken as absent."""
        try:
            return self.load(spec)
        except (KeyError, CorruptCacheEntry):
            return None

    def save(self, spec: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Path:
        """Write an entry atomically and return its path."""
        path = self.path(spec)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {k: np.asarray(v) for k, v in arrays.items()}
        payload[_SPEC_KEY] = np.array(json.dumps(spec, sort_keys=True, default=str))
        buf = io.BytesIO()
        np.savez(buf, **payload)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp-" + str(os.getpid()))
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(buf.getvalue())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def sweep_temp_files(self, older_than_s: float = 3600.0) -> int:
        """Remove temp files left by crashed writers (older than ``older_than_s``)."""
        n = 0
        now = time.time()
        if not self.root.is_dir():
            return 0
        for p in self.root.rglob("*.tmp-*"):
            try:
                if now - p.stat().st_mtime > older_than_s:
                    p.unlink()
                    n += 1
            except OSError:
                pass
        return n
