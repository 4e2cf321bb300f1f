"""Text-to-audio retrieval: the step that turns a detected span into an audio embedding.

AudioBERT embeds the span text ("woof") with CLAP's text tower and takes the nearest audio clip in
a bank of CLAP audio embeddings; that clip's embedding is what the model reads. Two pieces:

* :class:`AudioIndex` -- cosine top-k over an (N, d) matrix of clip embeddings. Exact search by one
  torch matmul per chunk of queries; with ``faiss`` installed and N above ``faiss_threshold``
  (100k clips by default) an exact ``faiss.IndexFlatIP`` instead, which is faster on CPU at that
  size. faiss is optional: nothing imports it unless that path is taken.
* :func:`retrieve_audio_embeddings` -- each span text's nearest clip, through any text embedder;
  CLAP's two towers are :class:`ausweep.models.clap.ClapTextAudio`.

Any callable ``texts -> (B, d)`` can stand in for ``embed_text``, e.g. a different text encoder with
a learned map into the audio space.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def _as_tensor(x: Any) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.detach().float()


def faiss_available() -> bool:
    return importlib.util.find_spec("faiss") is not None


class AudioIndex:
    """Cosine top-k search over audio clip embeddings.

    Args:
        embeddings: (N, d) clip embeddings (torch or NumPy). They are L2-normalised here (a no-op
            for CLAP's already unit-length vectors), so inner product = cosine.
        backend: ``"auto"`` (faiss when importable and N > ``faiss_threshold``, else torch),
            ``"torch"`` or ``"faiss"``.
        device: where the torch backend keeps the matrix.
        chunk_size: queries per matmul, bounding memory at ``chunk_size * N`` scores.
    """

    def __init__(self, embeddings: Any, backend: str = "auto", faiss_threshold: int = 100_000,
                 device: str = "cpu", chunk_size: int = 1024):
        emb = _as_tensor(embeddings)
        if emb.ndim != 2 or emb.shape[0] == 0:
            raise ValueError(f"embeddings must be a non-empty (N, d) matrix, got shape {tuple(emb.shape)}")
        if backend not in ("auto", "torch", "faiss"):
            raise ValueError(f"backend must be 'auto', 'torch' or 'faiss', got {backend!r}")
        if backend == "auto":
            backend = "faiss" if emb.shape[0] > faiss_threshold and faiss_available() else "torch"
        self.backend, self.chunk_size = backend, chunk_size
        self.vectors = F.normalize(emb, dim=-1).to(device)  # (N, d)
        self._faiss = None
        if backend == "faiss":
            import faiss  # optional dependency: faiss-cpu

            self._faiss = faiss.IndexFlatIP(self.dim)
            self._faiss.add(np.ascontiguousarray(self.vectors.cpu().numpy(), dtype=np.float32))

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def search(self, queries: Any, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` clips for each query, best first.

        Args:
            queries: (Q, d) query embeddings (normalised here).

        Returns:
            ``scores`` (Q, k) float32 cosine similarities and ``indices`` (Q, k) int64 rows of the index.
        """
        q = _as_tensor(queries)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries must have shape (Q, {self.dim}), got {tuple(q.shape)}")
        if not 1 <= k <= len(self):
            raise ValueError(f"k must be in [1, {len(self)}], got {k}")
        q = F.normalize(q, dim=-1)
        if self._faiss is not None:
            scores, idx = self._faiss.search(np.ascontiguousarray(q.numpy(), dtype=np.float32), k)
            return torch.from_numpy(scores), torch.from_numpy(idx).long()
        scores, idx = [], []
        for start in range(0, len(q), self.chunk_size):
            sim = q[start : start + self.chunk_size].to(self.vectors.device) @ self.vectors.T  # (q, N)
            s, i = sim.topk(k, dim=1)
            scores.append(s.cpu())
            idx.append(i.cpu())
        if not scores:
            return torch.empty(0, k), torch.empty(0, k, dtype=torch.long)
        return torch.cat(scores), torch.cat(idx)


def recall_at_k(indices: Any, query_labels: Sequence[Any], corpus_labels: Sequence[Any], k: int | None = None) -> float:
    """Fraction of queries with a clip of their own label among their first ``k`` hits.

    Args:
        indices: (Q, K) retrieved rows (from :meth:`AudioIndex.search`), best first.
        query_labels: (Q,) label of each query; corpus_labels: (N,) label of each clip.
        k: hits to look at (default: all K).
    """
    idx = torch.as_tensor(np.asarray(indices) if not isinstance(indices, torch.Tensor) else indices).long()
    k = idx.shape[1] if k is None else k
    if not 1 <= k <= idx.shape[1]:
        raise ValueError(f"k must be in [1, {idx.shape[1]}], got {k}")
    if len(query_labels) != idx.shape[0]:
        raise ValueError(f"{idx.shape[0]} queries but {len(query_labels)} query labels")
    corpus = list(corpus_labels)
    hits = [any(corpus[j] == lab for j in row[:k].tolist()) for row, lab in zip(idx, query_labels)]
    return float(np.mean(hits)) if hits else 0.0


def retrieve_audio_embeddings(
    queries: Sequence[str | None],
    embed_text: Callable[[list[str]], Any],
    index: AudioIndex,
    audio_vectors: Any = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The top-1 clip's embedding for each span text: AudioBERT's ``audio_embedding`` input.

    Args:
        queries: per sentence the detected span text, or None where no span was detected.
        embed_text: ``texts -> (B, d)`` in the index's space (e.g. :meth:`ClapTextAudio.embed_text`).
        index: the clip bank.
        audio_vectors: (N, d_audio) what to return for each clip (default: the index's own
            normalised vectors); lets the search space differ from the injected features.

    Returns:
        ``embeddings`` (B, d_audio), zeros where the query is None, and ``indices`` (B,) of the
        retrieved clips (-1 where None).
    """
    vectors = index.vectors.cpu() if audio_vectors is None else _as_tensor(audio_vectors)
    if len(vectors) != len(index):
        raise ValueError(f"audio_vectors has {len(vectors)} rows but the index has {len(index)} clips")
    out = torch.zeros(len(queries), vectors.shape[1])
    picked = torch.full((len(queries),), -1, dtype=torch.long)
    rows = [i for i, q in enumerate(queries) if q is not None and str(q).strip()]
    if rows:
        q = _as_tensor(embed_text([str(queries[i]) for i in rows]))
        _, idx = index.search(q, k=1)
        picked[rows] = idx[:, 0]
        out[rows] = vectors[idx[:, 0]]
    return out, picked


def clip_features(paths: Sequence[str], feature_extractor: Any, max_seconds: float | None = None,
                  batch_size: int = 64) -> torch.Tensor:
    """The AST input features of the audio files ``paths`` (retrieved clips): (U, frames, mels) float32.

    Each file is read mono at the feature extractor's rate (:func:`ausweep.data.audio.read_audio`,
    which also reads members of tar shards, ``shard.tar#key.flac``), cut to ``max_seconds``, and
    turned into AST's normalised Kaldi fbank, padded or cropped to its window, as upstream's data
    loader does with ``ASTFeatureExtractor``.
    """
    from ausweep.data.audio import read_audio

    if not paths:
        raise ValueError("no clips to read")
    sr = int(feature_extractor.sampling_rate)
    out = []
    for start in range(0, len(paths), batch_size):
        waves = [read_audio(p, sr, max_seconds=max_seconds) for p in paths[start : start + batch_size]]
        out.append(feature_extractor(waves, sampling_rate=sr, return_tensors="pt")["input_values"].float())
    return torch.cat(out)
