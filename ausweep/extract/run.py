"""Extraction drivers: per-class text and audio embeddings, sharded over Ray actors, cached.

Text: one forward pass per LM over the class sentences ("the sound of {c}") keeps every hidden
state, so a layer sweep costs one extraction. Audio: the distinct audio files are cut into shards
of ``shard_size``; each shard is one cache entry of per-clip embeddings computed by whichever actor
is free, so an interrupted extraction resumes from its completed shards and a warm re-run touches
no model at all. Class vectors are *not* cached: which clips may feed a class depends on the class
split (a clip labelled on both sides of a split feeds neither), so the probe averages per split.

With ``num_actors = 0`` everything runs in this process with no Ray, which is what unit tests and
``run(config)`` without a cluster use.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ausweep.config import option
from ausweep.data import SoundSet, _file_identity
from ausweep.extract.cache import EmbeddingCache, default_cache_dir
from ausweep.extract.worker import Extractor

log = logging.getLogger(__name__)

# Bump when the meaning of a cached array changes (pooling code, layout): old entries then miss.
CACHE_VERSION = 1


@dataclass(frozen=True)
class ExtractConfig:
    num_actors: int = option(2, help="Ray actors (model replicas) sharing the audio shards; 0 runs in-process without Ray.")
    gpus_per_actor: float = option(0.0, help="GPUs each actor asks Ray for (fractions share a GPU); 0 on CPU machines.")
    cpus_per_actor: float = option(1.0, help="CPUs each actor asks Ray for.")
    shard_size: int = option(32, help="Clips per shard: the unit of caching, scheduling and resume.")
    batch_size: int = option(8, help="Clips (or sentences) per forward pass inside an actor.")
    device: str = option("auto", help="'auto' (GPU if the actor has one), 'cpu', 'cuda', 'cuda:1'...")
    cache_dir: str | None = option(None, help="Embedding cache; default $AUSWEEP_CACHE/embeddings or ~/.cache/ausweep/embeddings. Use shared storage on a cluster.")
    progress: bool = option(True, help="Show a progress bar over clips.")

    def __post_init__(self) -> None:
        if self.num_actors < 0:
            raise ValueError("num_actors must be >= 0")
        if self.shard_size < 1 or self.batch_size < 1:
            raise ValueError("shard_size and batch_size must be >= 1")
        if self.gpus_per_actor < 0 or self.cpus_per_actor <= 0:
            raise ValueError("gpus_per_actor must be >= 0 and cpus_per_actor > 0")

    def cache(self) -> EmbeddingCache:
        return EmbeddingCache(self.cache_dir or default_cache_dir())


class ExtractionError(RuntimeError):
    """Extraction failed; the message names the model and the file that caused it."""


# ----------------------------------------------------------------------------- specs


def text_spec(model: str, revision: str | None, template: str, soundset: SoundSet) -> dict[str, Any]:
    from ausweep.models.text import text_model_identity

    phrases = [soundset.class_text[c] for c in soundset.classes]
    return {
        "kind": "text",
        "version": CACHE_VERSION,
        "model": text_model_identity(model, revision),
        "template": template,
        "pooling": "span-mean",
        "phrases": hashlib.sha256(json.dumps(phrases).encode()).hexdigest()[:16],
    }


def audio_model_spec(model: str, revision: str | None, max_seconds: float | None) -> dict[str, Any]:
    from ausweep.models.audio import audio_model_identity

    return {"version": CACHE_VERSION, "model": audio_model_identity(model, revision), "max_seconds": max_seconds}


def _shard_spec(model_spec: dict, paths: Sequence[str]) -> dict[str, Any]:
    ident = hashlib.sha256("\n".join(_file_identity(p) for p in paths).encode()).hexdigest()[:16]
    return {"kind": "audio-shard", **model_spec, "clips": ident, "n": len(paths)}


@dataclass(frozen=True)
class ClipEmbeddings:
    """Per-clip audio embeddings of a sound set, one row per distinct audio file.

    Attributes:
        ids: N file paths, in order of first appearance in ``soundset.clips``.
        embeddings: (N, d) float32.
        feeds: per file, the classes it was listed under in the sound set (whose means it feeds).
        labels: per file, every class of the set it carries (:attr:`ausweep.data.Clip.labels`),
            ``feeds`` included.
    """

    ids: tuple[str, ...]
    embeddings: np.ndarray
    feeds: tuple[tuple[str, ...], ...]
    labels: tuple[tuple[str, ...], ...]


# ----------------------------------------------------------------------------- Ray plumbing


def _unwrap(e: BaseException) -> BaseException:
    """The user's exception inside a Ray task error (an AudioReadError naming the file, say)."""
    cause = getattr(e, "cause", None)
    return cause if isinstance(cause, BaseException) else e


def _make_workers(kind: str, model: str, revision: str | None, cfg: ExtractConfig, n: int) -> list[Any]:
    cache_root = str(cfg.cache().root)
    if cfg.num_actors == 0:
        worker = Extractor(kind, model, revision, cfg.device, cfg.batch_size, cache_root)
        worker.ready()
        return [worker]
    import ray

    from ausweep.runtime import init_ray

    init_ray()
    actor_cls = ray.remote(Extractor).options(num_cpus=cfg.cpus_per_actor, num_gpus=cfg.gpus_per_actor)
    actors = [actor_cls.remote(kind, model, revision, cfg.device, cfg.batch_size, cache_root) for _ in range(n)]
    try:
        ray.get([a.ready.remote() for a in actors])  # surface load errors (unknown model...) before any work
    except Exception as e:
        for a in actors:
            ray.kill(a)
        raise _unwrap(e) from None
    return actors


def _call(worker: Any, method: str, *args: Any) -> Any:
    if isinstance(worker, Extractor):
        return getattr(worker, method)(*args)
    import ray

    return ray.get(getattr(worker, method).remote(*args))


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="clip", disable=not enabled, dynamic_ncols=True)


# ----------------------------------------------------------------------------- drivers


def text_embeddings(model: str, revision: str | None, template: str, soundset: SoundSet, cfg: ExtractConfig) -> np.ndarray:
    """Per-class text embeddings at every hidden state: float32 (L, C, d), rows in class order."""
    cache = cfg.cache()
    spec = text_spec(model, revision, template, soundset)
    hit = cache.get(spec)
    if hit is not None:
        return hit["embeddings"]
    from ausweep.models.text import spans_for

    sentences, spans = spans_for(template, [soundset.class_text[c] for c in soundset.classes])
    log.info("extracting text embeddings: %s on %d class sentences", model, len(sentences))
    worker = _make_workers("text", model, revision, cfg, 1)[0]
    try:
        _call(worker, "text", spec, sentences, spans)
    except Exception as e:
        raise _unwrap(e) from None
    finally:
        _release([worker])
    return cache.load(spec)["embeddings"]


def audio_clip_table(model: str, revision: str | None, soundset: SoundSet, cfg: ExtractConfig, max_seconds: float | None = None) -> ClipEmbeddings:
    """Per-file audio embeddings with the classes each file feeds and carries (see :class:`ClipEmbeddings`)."""
    emb, paths = _unique_clip_embeddings(model, revision, soundset, cfg, max_seconds)
    feeds: dict[str, list[str]] = {p: [] for p in paths}
    labels: dict[str, list[str]] = {p: [] for p in paths}
    for clip in soundset.clips:
        feeds[clip.path].append(clip.label)
        labels[clip.path].extend((*clip.labels, clip.label))
    return ClipEmbeddings(
        ids=tuple(paths),
        embeddings=emb,
        feeds=tuple(tuple(dict.fromkeys(feeds[p])) for p in paths),
        labels=tuple(tuple(dict.fromkeys(labels[p])) for p in paths),
    )


def audio_clip_embeddings(model: str, revision: str | None, soundset: SoundSet, cfg: ExtractConfig, max_seconds: float | None = None) -> np.ndarray:
    """Per-clip audio embeddings (N, d) in ``soundset.clips`` order, computing only missing shards.
    A file listed under several classes is embedded once and its row repeated."""
    emb, paths = _unique_clip_embeddings(model, revision, soundset, cfg, max_seconds)
    row = {p: i for i, p in enumerate(paths)}
    return emb[[row[c.path] for c in soundset.clips]]


def _unique_clip_embeddings(model: str, revision: str | None, soundset: SoundSet, cfg: ExtractConfig, max_seconds: float | None) -> tuple[np.ndarray, list[str]]:
    """(N, d) embeddings of the distinct files of ``soundset`` and their paths, in first-seen order."""
    cache = cfg.cache()
    cache.sweep_temp_files()
    mspec = audio_model_spec(model, revision, max_seconds)
    listed = {c.label for c in soundset.clips}  # a set: a corpus such as LAION-630K has a class per clip
    for label in soundset.classes:
        if label not in listed:
            raise ExtractionError(f"class '{label}' of sound set '{soundset.name}' has no clips")
    paths = list(dict.fromkeys(c.path for c in soundset.clips))
    shards = [paths[i : i + cfg.shard_size] for i in range(0, len(paths), cfg.shard_size)]
    specs = [_shard_spec(mspec, s) for s in shards]
    todo = [i for i, s in enumerate(specs) if not cache.has(s)]
    done_clips = len(paths) - sum(len(shards[i]) for i in todo)
    if todo:
        log.info("audio %s: %d of %d shards to compute (%d clips cached)", model, len(todo), len(shards), done_clips)
        _run_shards(model, revision, cfg, [(specs[i], shards[i]) for i in todo], len(paths), done_clips, max_seconds)
    return np.concatenate([cache.load(s)["embeddings"] for s in specs], axis=0), paths


def _run_shards(model, revision, cfg: ExtractConfig, jobs, total: int, done: int, max_seconds) -> None:
    n_workers = max(1, min(cfg.num_actors, len(jobs)))
    workers = _make_workers("audio", model, revision, cfg, n_workers)
    bar = _progress(total, f"audio {model}", cfg.progress)
    bar.update(done)
    try:
        if cfg.num_actors == 0:
            for spec, paths in jobs:
                bar.update(workers[0].audio_shard(spec, paths, max_seconds))
            return
        from ray.util import ActorPool

        pool = ActorPool(workers)
        results = pool.map_unordered(lambda a, job: a.audio_shard.remote(job[0], job[1], max_seconds), jobs)
        for n in results:
            bar.update(n)
    except Exception as e:
        cause = _unwrap(e)
        raise ExtractionError(f"audio model '{model}': {cause}") from cause
    finally:
        bar.close()
        _release(workers)


def _release(workers: list[Any]) -> None:
    if workers and not isinstance(workers[0], Extractor):
        import ray

        for a in workers:
            ray.kill(a)
