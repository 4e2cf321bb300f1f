"""On-disk embedding cache, keyed by a content hash of everything that determines an entry.

An entry is one ``.npz`` file holding named arrays plus the JSON spec it was computed from. Its
key is the SHA-256 of that spec (model identity and revision, template, pooling, data digest...),
so a re-run with the same inputs loads instead of recomputing, and any change to an input is a
different key rather than a stale hit.

Writes are atomic: the arrays go to a temporary file in the same directory, are flushed to disk,
and only then renamed onto the final name (``os.replace`` is atomic on POSIX). A crash mid-write
leaves at most a ``*.tmp-*`` file, which never reads as a complete entry and is swept up later.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

_SPEC_KEY = "__spec__"


def default_cache_dir() -> Path:
    """``$AUSWEEP_CACHE/embeddings``, else ``~/.cache/ausweep/embeddings``. On a cluster, point
    ``AUSWEEP_CACHE`` (or ``extract.cache_dir``) at shared storage so every node sees one cache."""
    root = os.environ.get("AUSWEEP_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ausweep")
    return Path(root) / "embeddings"


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
        file exists but is unreadable or was written for another spec (a hash collision or a
        hand-copied file)."""
        path = self.path(spec)
        if not path.is_file():
            raise KeyError(str(path))
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as e:  # zipfile/numpy raise many types for a damaged file
            raise CorruptCacheEntry(f"cache entry {path} is unreadable ({e}); delete it to recompute") from None
        stored = json.loads(str(arrays.pop(_SPEC_KEY, np.array("{}"))))
        if stored != json.loads(json.dumps(spec, sort_keys=True, default=str)):
            raise CorruptCacheEntry(f"cache entry {path} was written for a different spec; delete it to recompute")
        return arrays

    def get(self, spec: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
        """Like :meth:`load` but None when absent; a corrupt entry is removed and reported absent."""
        try:
            return self.load(spec)
        except KeyError:
            return None
        except CorruptCacheEntry:
            self.path(spec).unlink(missing_ok=True)
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
