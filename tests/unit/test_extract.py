"""Extraction in-process (no Ray): results equal the encoders called directly, the cache is hit,
resumed and invalidated exactly when it should be. Tiny models on a fake FSD50K."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ausweep.data import Clip
from ausweep.data.audio import read_audio
from ausweep.data.fsd50k import load_fsd50k
from ausweep.extract import (
    ExtractConfig,
    ExtractionError,
    audio_clip_embeddings,
    audio_clip_table,
    text_embeddings,
)
from ausweep.extract import run as extract_run
from ausweep.extract.worker import Extractor
from tests.tiny import TINY_AUDIO_MODEL, TINY_TEXT_MODELS, make_fsd50k

TEMPLATE = "the sound of {}"
PREFIX = "the sound of "
SHARD = 4  # 30 clips -> 8 shards, the last one holding 2 clips


@pytest.fixture
def soundset(tmp_path):
    return load_fsd50k(make_fsd50k(tmp_path / "fsd"), clips_per_class=3)


def _cfg(cache_dir: Path) -> ExtractConfig:
    return ExtractConfig(num_actors=0, cache_dir=str(cache_dir), progress=False, shard_size=SHARD)


@pytest.fixture
def cfg(tmp_path):
    return _cfg(tmp_path / "cache")


@pytest.fixture
def shard_calls(monkeypatch):
    """The clip paths of every ``Extractor.audio_shard`` call, in call order."""
    calls: list[list[str]] = []
    original = Extractor.audio_shard

    def counting(self, spec, paths, max_seconds):
        calls.append(list(paths))
        return original(self, spec, paths, max_seconds)

    monkeypatch.setattr(Extractor, "audio_shard", counting)
    return calls


def _entries(cfg: ExtractConfig, kind: str) -> list[Path]:
    return sorted((Path(cfg.cache_dir) / kind).rglob("*.npz"))


def _shards(soundset) -> list[list[str]]:
    paths = [c.path for c in soundset.clips]
    return [paths[i : i + SHARD] for i in range(0, len(paths), SHARD)]


# ----------------------------------------------------------------------------- results


@pytest.mark.parametrize("model", TINY_TEXT_MODELS)
def test_text_embeddings_equal_direct_span_encoding(soundset, cfg, model):
    from ausweep.models.text import load_text_encoder

    emb = text_embeddings(model, None, TEMPLATE, soundset, cfg)
    enc = load_text_encoder(model)
    n_layers, n_classes = enc.num_hidden_states, len(soundset.classes)
    assert emb.shape == (n_layers, n_classes, enc.hidden_size) and emb.dtype == np.float32
    for c, label in enumerate(soundset.classes):
        text = soundset.class_text[label]
        # One sentence at a time, spans by hand: independent of the driver's batching and spans_for.
        direct = enc.encode_spans([PREFIX + text], [(len(PREFIX), len(PREFIX) + len(text))], list(range(n_layers)))
        np.testing.assert_allclose(emb[:, c], direct[:, 0], rtol=1e-4, atol=1e-5, err_msg=f"class {label}")
    # rows are the classes' own vectors, not one vector repeated
    assert not np.allclose(emb[-1, 0], emb[-1, 1])


def test_audio_clip_embeddings_equal_direct_clip_embeddings(soundset, cfg):
    from ausweep.models.audio import load_audio_encoder

    clips = audio_clip_embeddings(TINY_AUDIO_MODEL, None, soundset, cfg)
    table = audio_clip_table(TINY_AUDIO_MODEL, None, soundset, cfg)
    enc = load_audio_encoder(TINY_AUDIO_MODEL)
    assert clips.shape == (len(soundset.clips), enc.dim) and clips.dtype == np.float32
    direct = np.concatenate([enc.embed([read_audio(c.path, enc.sample_rate)]) for c in soundset.clips])
    # the driver embeds clips in batches; each clip's vector must not depend on its batch mates
    np.testing.assert_allclose(clips, direct, rtol=1e-4, atol=1e-5)
    # single-label set: the table is the same rows, each file feeding (and labelled with) its class
    assert table.ids == tuple(c.path for c in soundset.clips)
    np.testing.assert_array_equal(table.embeddings, clips)
    assert table.feeds == table.labels == tuple((c.label,) for c in soundset.clips)
    assert not np.allclose(clips[0], clips[3])  # first clips of two classes


def test_a_file_listed_under_two_classes_is_embedded_once(soundset, cfg, shard_calls):
    """A multi-label file sampled for two classes is one row of the table (feeding both), one
    embedding computed; audio_clip_embeddings repeats its row for each listing."""
    first = soundset.clips[0]
    other = next(c.label for c in soundset.clips if c.label != first.label)
    dup = Clip(path=first.path, label=other, labels=(first.label, other))
    multi = dataclasses.replace(soundset, clips=(dataclasses.replace(first, labels=(first.label, other)), *soundset.clips[1:], dup))
    table = audio_clip_table(TINY_AUDIO_MODEL, None, multi, cfg)
    assert sum(len(paths) for paths in shard_calls) == len(soundset.clips)
    assert len(table.ids) == len(soundset.clips) and table.ids[0] == first.path
    assert table.feeds[0] == (first.label, other) and table.labels[0] == (first.label, other)
    rows = audio_clip_embeddings(TINY_AUDIO_MODEL, None, multi, cfg)
    assert rows.shape[0] == len(multi.clips)
    np.testing.assert_array_equal(rows[-1], rows[0])


# ----------------------------------------------------------------------------- caching


def test_warm_rerun_constructs_no_model(soundset, cfg, monkeypatch):
    text = text_embeddings("tiny-bert", None, TEMPLATE, soundset, cfg)
    clips = audio_clip_embeddings(TINY_AUDIO_MODEL, None, soundset, cfg)

    class NoModel(Extractor):  # a subclass, so the driver's isinstance checks still work
        def __init__(self, *args, **kwargs):
            raise AssertionError("a warm re-run constructed an Extractor")

    def no_load(*args, **kwargs):
        raise AssertionError("a warm re-run loaded a model")

    monkeypatch.setattr(extract_run, "Extractor", NoModel)
    monkeypatch.setattr("ausweep.models.text.load_text_encoder", no_load)
    monkeypatch.setattr("ausweep.models.audio.load_audio_encoder", no_load)

    np.testing.assert_array_equal(text_embeddings("tiny-bert", None, TEMPLATE, soundset, cfg), text)
    np.testing.assert_array_equal(audio_clip_embeddings(TINY_AUDIO_MODEL, None, soundset, cfg), clips)
    np.testing.assert_array_equal(audio_clip_table(TINY_AUDIO_MODEL, None, soundset, cfg).embeddings, clips)


def test_resume_after_corrupt_clip_in_last_shard(tmp_path, soundset, cfg, shard_calls):
    shards = _shards(soundset)
    n_shards = math.ceil(len(soundset.clips) / SHARD)
    assert len(shards) == n_shards and len(shards[-1]) < SHARD
    bad = Path(shards[-1][-1])
    assert all(str(bad) not in s for s in shards[:-1])
    good_bytes = bad.read_bytes()
    bad.write_bytes(np.random.default_rng(0).bytes(4096))

    with pytest.raises(ExtractionError) as err:
        audio_clip_embeddings(TINY_AUDIO_MODEL, None, soundset, cfg)
    msg = str(err.value)
    assert str(bad) in msg and TINY_AUDIO_MODEL in msg
    assert shard_calls == shards, "every shard was attempted once, in sound set order"
    assert len(_entries(cfg, "audio-shard")) == n_shards - 1, "the shards before the bad one are cached"
    assert not list(Path(cfg.cache_dir).rglob("*.tmp-*"))

    bad.write_bytes(good_bytes)
    shard_calls.clear()
    resumed = audio_clip_embeddings(TINY_AUDIO_MODEL, None, soundset, cfg)
    assert shard_calls == [shards[-1]], "only the missing shard is computed"
    assert len(_entries(cfg, "audio-shard")) == n_shards

    shard_calls.clear()
    fresh = audio_clip_embeddings(TINY_AUDIO_MODEL, None, soundset, _cfg(tmp_path / "fresh"))
    assert shard_calls == shards
    np.testing.assert_allclose(resumed, fresh, rtol=1e-6, atol=1e-7)


def test_changed_clip_recomputes_only_its_shard(soundset, cfg, shard_calls):
    shards = _shards(soundset)
    before_clips = audio_clip_embeddings(TINY_AUDIO_MODEL, None, soundset, cfg)
    assert shard_calls == shards

    k = SHARD + 1  # second clip of the second shard
    changed = soundset.clips[k]
    t = np.arange(int(16000 * 0.6)) / 16000
    sf.write(changed.path, (0.3 * np.sign(np.sin(2 * np.pi * 3000.0 * t))).astype(np.float32), 16000)

    shard_calls.clear()
    after_clips = audio_clip_embeddings(TINY_AUDIO_MODEL, None, soundset, cfg)
    assert shard_calls == [shards[1]], "the changed shard recomputes, the others hit"
    assert len(_entries(cfg, "audio-shard")) == len(shards) + 1
    others = np.arange(len(soundset.clips)) != k
    np.testing.assert_array_equal(after_clips[others], before_clips[others])
    assert not np.allclose(after_clips[k], before_clips[k])



def test_cache_keys_follow_template_and_models(soundset, cfg, shard_calls):
    a = text_embeddings("tiny-bert", None, TEMPLATE, soundset, cfg)
    assert len(_entries(cfg, "text")) == 1
    text_embeddings("tiny-bert", None, TEMPLATE, soundset, cfg)
    assert len(_entries(cfg, "text")) == 1, "same inputs, same entry"
    b = text_embeddings("tiny-bert", None, "a recording of {}", soundset, cfg)
    assert len(_entries(cfg, "text")) == 2
    assert not np.allclose(a[-1], b[-1]), "context changes the span vectors"
    text_embeddings("tiny-gpt2", None, TEMPLATE, soundset, cfg)
    assert len(_entries(cfg, "text")) == 3

    n_shards = len(_shards(soundset))
    ast = audio_clip_embeddings(TINY_AUDIO_MODEL, None, soundset, cfg)
    assert len(_entries(cfg, "audio-shard")) == n_shards
    shard_calls.clear()
    logmel = audio_clip_embeddings("logmel-stats", None, soundset, cfg)
    assert len(shard_calls) == n_shards, "another audio model hits none of the first model's shards"
    assert len(_entries(cfg, "audio-shard")) == 2 * n_shards
    assert ast.shape[0] == logmel.shape[0] == len(soundset.clips)
    assert ast.shape != logmel.shape or not np.allclose(ast, logmel)
    # max_seconds is part of the audio key as well
    shard_calls.clear()
    audio_clip_embeddings(TINY_AUDIO_MODEL, None, soundset, cfg, max_seconds=0.3)
    assert len(shard_calls) == n_shards and len(_entries(cfg, "audio-shard")) == 3 * n_shards
    assert not (Path(cfg.cache_dir) / "audio-class").exists(), "class means are not cached: the probe averages per split"
