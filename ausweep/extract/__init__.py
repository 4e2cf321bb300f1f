"""Stage 3 of the pipeline: sharded, cached embedding extraction.

Text LMs and audio encoders (``ausweep.models``) turn a sound set (``ausweep.data``) into per-class
vectors and audio encoders into per-clip vectors. Audio files are split into shards that Ray
actors (one model replica each, each with its own GPU if asked) process in parallel; every shard
lands atomically in an on-disk cache keyed by a content hash, so re-runs load and interrupted runs
resume. Class means of audio are left to the probe, which computes them per class split.
"""

from ausweep.extract.cache import EmbeddingCache, default_cache_dir
from ausweep.extract.run import (
    ClipEmbeddings,
    ExtractConfig,
    ExtractionError,
    audio_clip_embeddings,
    audio_clip_table,
    text_embeddings,
)

__all__ = [
    "ClipEmbeddings",
    "EmbeddingCache",
    "ExtractConfig",
    "ExtractionError",
    "audio_clip_embeddings",
    "audio_clip_table",
    "default_cache_dir",
    "text_embeddings",
]
