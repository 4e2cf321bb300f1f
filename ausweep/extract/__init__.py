"""Stage 3 of the pipeline: sharded, cached embedding extraction.

Text LMs and audio encoders (``ausweep.models``) turn a sound set (``ausweep.data``) into per-class
vectors. Audio clips are split into shards that Ray actors (one model replica each, each with its
own GPU if asked) process in parallel; every shard lands atomically in an on-disk cache keyed by a
content hash, so re-runs load and interrupted runs resume.
"""

from ausweep.extract.cache import EmbeddingCache, default_cache_dir
from ausweep.extract.run import (
    ExtractConfig,
    ExtractionError,
    audio_clip_embeddings,
    audio_embeddings,
    text_embeddings,
)

__all__ = [
    "EmbeddingCache",
    "ExtractConfig",
    "ExtractionError",
    "audio_clip_embeddings",
    "audio_embeddings",
    "default_cache_dir",
    "text_embeddings",
]
