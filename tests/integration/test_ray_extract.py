"""Extraction over Ray actors on a real local Ray session equals the in-process extraction."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from ausweep.data.audio import AudioReadError
from ausweep.data.fsd50k import load_fsd50k
from ausweep.extract import ExtractConfig, ExtractionError, audio_clip_embeddings, audio_clip_table, text_embeddings
from ausweep.extract.worker import Extractor
from ausweep.registry import UnknownNameError
from tests.tiny import TINY_AUDIO_MODEL, make_fsd50k

pytestmark = pytest.mark.integration

SHARD = 4


def _cfg(cache_dir: Path, num_actors: int) -> ExtractConfig:
    return ExtractConfig(num_actors=num_actors, cache_dir=str(cache_dir), progress=False, shard_size=SHARD)


def _npz(root: Path, kind: str) -> set[Path]:
    return {p.relative_to(root) for p in (root / kind).rglob("*.npz")}


@pytest.fixture
def soundset(tmp_path):
    return load_fsd50k(make_fsd50k(tmp_path / "fsd"), clips_per_class=3)


def test_actors_equal_in_process(tmp_path, soundset, ray_session, monkeypatch):
    ray_dir, local_dir = tmp_path / "ray-cache", tmp_path / "local-cache"
    ray_cfg, local_cfg = _cfg(ray_dir, 2), _cfg(local_dir, 0)

    in_driver = []
    original = Extractor.audio_shard
    monkeypatch.setattr(Extractor, "audio_shard", lambda self, *a: in_driver.append(a) or original(self, *a))
    ray_table = audio_clip_table(TINY_AUDIO_MODEL, None, soundset, ray_cfg)
    ray_clips = audio_clip_embeddings(TINY_AUDIO_MODEL, None, soundset, ray_cfg)
    assert in_driver == [], "with num_actors=2 the shards run in the actors, not the driver"
    local_table = audio_clip_table(TINY_AUDIO_MODEL, None, soundset, local_cfg)
    local_clips = audio_clip_embeddings(TINY_AUDIO_MODEL, None, soundset, local_cfg)
    assert ray_clips.shape == local_clips.shape == (len(soundset.clips), ray_clips.shape[1])
    np.testing.assert_allclose(ray_clips, local_clips, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ray_table.embeddings, local_table.embeddings, rtol=1e-5, atol=1e-6)
    assert ray_table.ids == local_table.ids and ray_table.feeds == local_table.feeds

    # Keys depend on the inputs, not on who computed them: the actors wrote every shard the
    # in-process run wrote, and nothing half-written is left behind.
    n_shards = math.ceil(len(soundset.clips) / SHARD)
    assert len(_npz(local_dir, "audio-shard")) == n_shards
    assert _npz(ray_dir, "audio-shard") == _npz(local_dir, "audio-shard")
    assert not list(ray_dir.rglob("*.tmp-*")) and not list(local_dir.rglob("*.tmp-*"))

    ray_text = text_embeddings("tiny-bert", None, "the sound of {}", soundset, ray_cfg)
    local_text = text_embeddings("tiny-bert", None, "the sound of {}", soundset, local_cfg)
    assert ray_text.shape == local_text.shape and ray_text.shape[1] == len(soundset.classes)
    np.testing.assert_allclose(ray_text, local_text, rtol=1e-5, atol=1e-6)
    assert _npz(ray_dir, "text") == _npz(local_dir, "text")


def test_unknown_audio_model_fails_before_any_shard(tmp_path, soundset, ray_session, monkeypatch):
    from ausweep.extract import run as extract_run

    started = []
    monkeypatch.setattr(extract_run, "_make_workers", lambda *a, **k: started.append(a) or [])
    cfg = _cfg(tmp_path / "cache", 2)
    for extract in (audio_clip_table, audio_clip_embeddings):
        with pytest.raises(UnknownNameError) as err:
            extract("no-such-audio-model", None, soundset, cfg)
        assert "no-such-audio-model" in str(err.value)
    assert started == [], "no actor was started"
    assert not list(Path(cfg.cache_dir).rglob("*.npz")), "no shard was processed"


@pytest.fixture(scope="module")
def corrupt_run(tmp_path_factory, ray_session):
    """One Ray extraction whose last clip is random bytes: (the error, the bad file)."""
    tmp = tmp_path_factory.mktemp("corrupt")
    soundset = load_fsd50k(make_fsd50k(tmp / "fsd"), clips_per_class=3)
    bad = Path(soundset.clips[-1].path)
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    cfg = _cfg(tmp / "cache", 2)
    with pytest.raises(ExtractionError) as err:
        audio_clip_embeddings(TINY_AUDIO_MODEL, None, soundset, cfg)
    return err.value, bad


def test_corrupt_clip_through_actors_names_the_file(corrupt_run):
    error, bad = corrupt_run
    # Killing the actors on the first error may leave a *.tmp-* file from a shard in flight;
    # the next run sweeps stale ones (see EmbeddingCache.sweep_temp_files).
    assert str(bad) in str(error) and TINY_AUDIO_MODEL in str(error)


def test_corrupt_clip_through_actors_keeps_the_cause(corrupt_run):
    error, bad = corrupt_run
    assert isinstance(error.__cause__, AudioReadError) and error.__cause__.path == str(bad)
    assert "\n" not in str(error)
