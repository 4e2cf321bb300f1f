"""The unit of extraction work: one model replica that embeds text or one shard of audio clips.

:class:`Extractor` is a plain class. Run in-process it is the whole extractor; wrapped by
``ray.remote`` it is one actor holding one model replica (and one GPU, if asked for). Its methods
write their results straight into the shared :class:`~ausweep.extract.cache.EmbeddingCache`, so
only small keys travel back to the driver and a shard that finished is never computed again.
"""

from __future__ import annotations

import sys
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


def _actor_cpus() -> int | None:
    """CPUs Ray reserved for this actor (at least 1), or None outside a Ray actor."""
    ray = sys.modules.get("ray")  # an actor has imported ray; in-process use need not
    if ray is None or not ray.is_initialized():
        return None
    ctx = ray.get_runtime_context()
    if ctx.get_actor_id() is None:  # the driver running the extractor in-process
        return None
    return max(1, int(ctx.get_assigned_resources().get("CPU", 1)))


class Extractor:
    """One loaded text LM or audio encoder."""

    def __init__(self, kind: str, model: str, revision: str | None, device: str, batch_size: int, cache_root: str):
        cpus = _actor_cpus()
        if cpus is not None:
            import torch

            # Ray derives OMP_NUM_THREADS from the actor's CPUs only when the driver's environment
            # leaves it unset; an exported OMP_NUM_THREADS=N would give every actor N threads and
            # oversubscribe the cores. Follow the reservation instead.
            torch.set_num_threads(cpus)
        if kind not in ("text", "audio"):
            raise ValueError(f"unknown extractor kind {kind!r}")
        self.kind, self.model_name, self.revision, self.batch_size = kind, model, revision, batch_size
        self.device = resolve_device(device)
        self.cache = EmbeddingCache(cache_root)
        self.encoder: Any = None

    def ready(self) -> str:
        """Load the model. Not done in ``__init__``: Ray reports an actor constructor's exception
        only as text, while a method's exception reaches the driver as itself (one clear line)."""
        if self.encoder is None:
            if self.kind == "text":
                from ausweep.models.text import load_text_encoder

                self.encoder = load_text_encoder(self.model_name, device=self.device, revision=self.revision)
            else:
                from ausweep.models.audio import load_audio_encoder

                self.encoder = load_audio_encoder(self.model_name, device=self.device, revision=self.revision)
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
