"""The embedding cache: round trips, atomic writes, corrupt entries, read errors that never delete."""

import os

import numpy as np
import pytest

import ausweep.extract.cache as cache_mod
from ausweep.extract.cache import CorruptCacheEntry, EmbeddingCache


def test_round_trip_and_keys(tmp_path):
    cache = EmbeddingCache(tmp_path)
    spec = {"kind": "audio-shard", "model": "m", "clips": "abc"}
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert not cache.has(spec) and cache.get(spec) is None
    cache.save(spec, {"embeddings": arr})
    assert cache.has(spec)
    np.testing.assert_array_equal(cache.load(spec)["embeddings"], arr)
    other = {**spec, "clips": "abd"}
    assert cache.path(other) != cache.path(spec) and not cache.has(other)
    # key order does not matter
    assert cache.path(dict(reversed(list(spec.items())))) == cache.path(spec)


def test_crash_mid_write_leaves_no_complete_entry(tmp_path, monkeypatch):
    cache = EmbeddingCache(tmp_path)
    spec = {"kind": "t", "x": 1}

    def crash(src, dst):
        raise OSError("disk died")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        cache.save(spec, {"embeddings": np.ones(3)})
    monkeypatch.undo()
    assert not cache.has(spec)
    assert not list(tmp_path.rglob("*.tmp-*")), "the temp file is cleaned up"


def test_stale_temp_files_are_swept(tmp_path):
    cache = EmbeddingCache(tmp_path)
    stale = tmp_path / "t" / "ab" / "abc.tmp-123"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"partial")
    os.utime(stale, (0, 0))
    assert cache.sweep_temp_files() == 1 and not stale.exists()


def test_corrupt_or_foreign_entry(tmp_path):
    cache = EmbeddingCache(tmp_path)
    spec = {"kind": "t", "x": 1}
    path = cache.path(spec)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a zip file")
    with pytest.raises(CorruptCacheEntry, match=str(path)):
        cache.load(spec)
    assert cache.get(spec) is None, "a corrupt entry reads as absent"
    cache.save(spec, {"embeddings": np.ones(2)})  # the recomputation replaces it
    np.testing.assert_array_equal(cache.load(spec)["embeddings"], np.ones(2))
    # an entry copied under another spec's name is refused
    cache.save({"kind": "t", "x": 2}, {"embeddings": np.ones(2)})
    os.replace(cache.path({"kind": "t", "x": 2}), path)
    with pytest.raises(CorruptCacheEntry, match="different spec"):
        cache.load(spec)


def test_a_passing_read_error_neither_deletes_nor_misses(tmp_path, monkeypatch):
    """A passing NFS failure (EIO, a stale handle) on a good entry another node just wrote: the
    read is retried and succeeds, and the entry is still there."""
    cache = EmbeddingCache(tmp_path)
    spec = {"kind": "t", "x": 1}
    cache.save(spec, {"embeddings": np.arange(4.0)})
    real, calls = cache_mod._read_bytes, []

    def flaky(path):
        calls.append(path)
        if len(calls) == 1:
            raise OSError(116, "Stale file handle")
        return real(path)

    monkeypatch.setattr(cache_mod, "_read_bytes", flaky)
    monkeypatch.setattr(cache_mod, "READ_RETRY_S", 0.01)
    np.testing.assert_array_equal(cache.get(spec)["embeddings"], np.arange(4.0))
    assert len(calls) == 2 and cache.path(spec).is_file()


def test_a_lasting_read_error_is_raised_naming_the_file_and_keeps_the_entry(tmp_path, monkeypatch):
    cache = EmbeddingCache(tmp_path)
    spec = {"kind": "t", "x": 1}
    cache.save(spec, {"embeddings": np.arange(4.0)})

    def broken(path):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(cache_mod, "_read_bytes", broken)
    monkeypatch.setattr(cache_mod, "READ_RETRY_S", 0.01)
    with pytest.raises(OSError, match=rf"cache entry {cache.path(spec)} could not be read after 3 attempts"):
        cache.get(spec)
    monkeypatch.undo()
    assert cache.path(spec).is_file()
    np.testing.assert_array_equal(cache.get(spec)["embeddings"], np.arange(4.0))


def test_a_truncated_entry_is_corrupt_and_reads_as_absent(tmp_path):
    cache = EmbeddingCache(tmp_path)
    spec = {"kind": "t", "x": 1}
    path = cache.save(spec, {"embeddings": np.arange(100.0)})
    path.write_bytes(path.read_bytes()[:-40])  # the zip's central directory is cut off
    with pytest.raises(CorruptCacheEntry, match=str(path)):
        cache.load(spec)
    assert cache.get(spec) is None
