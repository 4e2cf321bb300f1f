"""The unit of extraction work: one model replica that embeds text or one shard of audio clips.

:class:`Extractor` is a plain class. Run in-process it is the whole extractor; wrapped by
``ray.remote`` it is one actor holding one model replica (and one GPU, if asked for). Its methods
write their results straight into the shared :class:`~ausweep.extract.cache.EmbeddingCache`, so
only small keys travel back to the driver and a shard that finished is never computed again.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ausweep.extract.cache import EmbeddingCache


def resolve_device(device: str) -> str:
    """"auto" picks the GPU when this process can see one (a Ray actor without ``num_gpus``
    sees none, because Ray empties CUDA_VISIBLE_DEVICES for it)."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Extractor:
    """One loaded text LM or audio encoder."""

    def __init__(self, kind: str, model: str, revision: str | None, device: str, batch_size: int, cache_root: str):
        self.kind, self.model_name, self.batch_size = kind, model, batch_size
        self.device = resolve_device(device)
        self.cache = EmbeddingCache(cache_root)
        if kind == "text":
            from ausweep.models.text import load_text_encoder

            self.encoder: Any = load_text_encoder(model, device=self.device, revision=revision)
        elif kind == "audio":
            from ausweep.models.audio import load_audio_encoder

            self.encoder = load_audio_encoder(model, device=self.device, revision=revision)
        else:
            raise ValueError(f"unknown extractor kind {kind!r}")

    def ready(self) -> str:
        return self.device

    def text(self, spec: dict, sentences: Sequence[str], spans: Sequence[tuple[int, int]]) -> int:
        """Embed every class sentence at every hidden state; cache (L, C, d). Returns L."""
        layers = list(range(self.encoder.num_hidden_states))
        out = []
        for i in range(0, len(sentences), self.batch_size):
            out.append(self.encoder.encode_spans(sentences[i : i + self.batch_size], spans[i : i + self.batch_size], layers))
        emb = np.concatenate(out, axis=1).astype(np.float32)  # (L, C, d)
        self.cache.save(spec, {"embeddings": emb})
        return emb.shape[0]

    def audio_shard(self, spec: dict, paths: Sequence[str], max_seconds: float | None) -> int:
        """Embed one shard of clips; cache (n_clips, d). Returns the number of clips."""
        from ausweep.data.audio import read_audio

        if self.cache.has(spec):  # another actor or an earlier run got here first
            return len(paths)
        sr = self.encoder.sample_rate
        out = []
        for i in range(0, len(paths), self.batch_size):
            waves = [read_audio(p, sr, max_seconds=max_seconds) for p in paths[i : i + self.batch_size]]
            out.append(np.asarray(self.encoder.embed(waves), dtype=np.float32))
        emb = np.concatenate(out, axis=0)
        if not np.isfinite(emb).all():
            raise FloatingPointError(f"audio model {self.model_name} produced non-finite embeddings for shard {paths[0]}...")
        self.cache.save(spec, {"embeddings": emb})
        return len(paths)
