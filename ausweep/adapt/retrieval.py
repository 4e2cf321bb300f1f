"""Text-to-audio retrieval: the step that turns a detected span into an audio embedding.

AudioBERT embeds the span text ("woof") with CLAP's text tower and takes the nearest audio clip in
a bank of CLAP audio embeddings; that clip's embedding is what the model reads. Two pieces:

* :class:`AudioIndex` -- cosine top-k over an (N, d) matrix of clip embeddings. Exact search by one
  torch matmul per chunk of queries; with ``faiss`` installed and N above ``faiss_threshold``
  (100k clips by default) an exact ``faiss.IndexFlatIP`` instead, which is faster on CPU at that
  size. faiss is optional: nothing imports it unless that path is taken.
* :class:`ClapTextAudio` -- CLAP's two towers behind ``embed_text`` / ``embed_audio``, for a real
  checkpoint (``laion/clap-htsat-fused`` by default) or a tiny random one for tests.

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

DEFAULT_CLAP = "laion/clap-htsat-fused"


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


# ----------------------------------------------------------------------------- CLAP


def tiny_clap(seed: int = 0):
    """``(ClapModel, tokenizer, feature_extractor)``: a tiny random CLAP with both towers.

    The audio tower has the settings of ``tiny-clap`` in :mod:`ausweep.models.tiny`; the text tower
    is a 2-layer RoBERTa-style encoder (hidden 32) over the tiny WordPiece vocabulary. Seeded, so
    every call gives the same weights. For tests: the towers are random, not aligned.
    """
    import transformers as tf

    from ausweep.models.tiny import TINY_AUDIO, TINY_TEXT, tiny_tokenizer

    tokenizer = tiny_tokenizer(TINY_TEXT["tiny-bert"]["tokenizer"])
    audio = dict(TINY_AUDIO["tiny-clap"])
    audio.pop("model_type")
    max_length_s = audio.pop("max_length_s")
    text = {
        # by the largest id, not len(): the tiny WordPiece vocabulary lists "a" twice, leaving a gap
        "vocab_size": max(tokenizer.get_vocab().values()) + 1, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64, "pad_token_id": tokenizer.pad_token_id,
        # RoBERTa-style positions start after the pad id, hence 64 tokens + 2
        "max_position_embeddings": 66, "projection_dim": audio["projection_dim"],
    }
    config = tf.ClapConfig(text_config=text, audio_config=audio, projection_dim=audio["projection_dim"])
    fe = tf.ClapFeatureExtractor(feature_size=audio["num_mel_bins"], truncation="rand_trunc", max_length_s=max_length_s)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = tf.ClapModel(config)
    return model.eval(), tokenizer, fe


def load_tiny_clap_audio(name: str = "tiny-clap-joint", device: str = "cpu", revision: str | None = None, **options: Any):
    """The audio tower of :func:`tiny_clap` as an audio encoder (``proj`` pooling, joint space), so
    the extraction stage embeds corpora in the same space as :meth:`ClapTextAudio.tiny`'s text tower."""
    from ausweep.models.audio import ClapAudioEncoder

    if revision is not None:
        raise ValueError(f"tiny model '{name}' is built from a config; it has no revisions")
    model, _, fe = tiny_clap(seed=0)
    return ClapAudioEncoder(model, fe, name, device=device, pooling="proj", **options)


class ClapTextAudio:
    """CLAP's text and audio towers, both ending in unit-length vectors of the joint space.

    Args:
        model: a ``transformers.ClapModel``; tokenizer and feature_extractor: its front ends.
        batch_size: texts / clips per forward pass.

    ``embed_audio`` goes through :class:`ausweep.models.audio.ClapAudioEncoder`, which makes CLAP's
    random crop of long clips deterministic, so a clip has the same vector in every batch.
    """

    def __init__(self, model: Any, tokenizer: Any, feature_extractor: Any, device: str = "cpu",
                 batch_size: int = 32, name: str = "clap", max_length: int = 77):
        from ausweep.models.audio import ClapAudioEncoder

        self.model = model.to(device).eval()
        self.tokenizer, self.device, self.batch_size, self.name = tokenizer, device, batch_size, name
        self.max_length = max_length
        self._audio = ClapAudioEncoder(self.model, feature_extractor, name, device=device, pooling="proj",
                                       batch_size=batch_size)
        self.sample_rate = self._audio.sample_rate
        self.dim = int(model.config.projection_dim)

    @classmethod
    def from_pretrained(cls, hub_id: str = DEFAULT_CLAP, device: str = "cpu", revision: str | None = None,
                        **kw: Any) -> ClapTextAudio:
        """Load a CLAP checkpoint (hub id or local folder) with both towers."""
        import transformers as tf

        from ausweep.models.text import hub_errors

        with hub_errors(hub_id, revision):
            model = tf.ClapModel.from_pretrained(hub_id, revision=revision)
            tokenizer = tf.AutoTokenizer.from_pretrained(hub_id, revision=revision)
            fe = tf.ClapFeatureExtractor.from_pretrained(hub_id, revision=revision)
        return cls(model, tokenizer, fe, device=device, name=hub_id, **kw)

    @classmethod
    def tiny(cls, seed: int = 0, **kw: Any) -> ClapTextAudio:
        """The tiny random CLAP of :func:`tiny_clap` (max 64 text tokens)."""
        model, tokenizer, fe = tiny_clap(seed)
        return cls(model, tokenizer, fe, name="tiny-clap", max_length=64, **kw)

    @torch.no_grad()
    def embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        """(B, d) float32 unit-length text embeddings (CPU)."""
        out = []
        for start in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(list(texts[start : start + self.batch_size]), padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
            feats = self.model.get_text_features(
                input_ids=enc["input_ids"].to(self.device), attention_mask=enc["attention_mask"].to(self.device)
            )
            # transformers >= 5 returns an output whose pooler_output is the projected, normalised vector
            feats = feats if isinstance(feats, torch.Tensor) else feats.pooler_output
            out.append(F.normalize(feats.float(), dim=-1).cpu())
        return torch.cat(out) if out else torch.empty(0, self.dim)

    def embed_audio(self, waves: Sequence[np.ndarray]) -> torch.Tensor:
        """(B, d) float32 unit-length audio embeddings (CPU) of mono clips at ``sample_rate``."""
        if len(waves) == 0:
            return torch.empty(0, self.dim)
        return torch.from_numpy(self._audio.embed(waves))
