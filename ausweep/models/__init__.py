"""Stage 2 of the pipeline: the models that turn text and audio into vectors.

Two registries, each name mapping to a loader:

* ``TEXT_MODELS``: language models. :class:`TextEncoder` gives, for each sentence, the mean of the
  contextual representations of the tokens that spell a character span, at chosen layers.
* ``AUDIO_MODELS``: audio encoders. :class:`AudioEncoder` gives one pooled vector per clip.

Names are registry keys (``bert-base-uncased``, ``minilm``, ``whisper-tiny-en``, ``tiny-gpt2``),
Hugging Face hub ids or local model folders. Loading goes through transformers, so the HF cache
and ``HF_HUB_OFFLINE`` are honoured. See ``python -m ausweep ls``.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from ausweep.registry import Registry


class TextEncoder(Protocol):
    name: str
    num_hidden_states: int  # embeddings output + one per layer; layer indices address these

    def encode_spans(
        self, sentences: Sequence[str], spans: Sequence[tuple[int, int]], layers: Sequence[int]
    ) -> np.ndarray:
        """float32 array (len(layers), len(sentences), hidden): per sentence, the mean over the
        tokens overlapping the character span ``[start, end)``, at each requested hidden-state
        index (negative indices count from the last)."""
        ...


class AudioEncoder(Protocol):
    name: str
    sample_rate: int
    dim: int

    def embed(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        """float32 array (len(waves), dim): one pooled vector per mono waveform at ``sample_rate``."""
        ...


TEXT_MODELS: Registry = Registry("text model")
AUDIO_MODELS: Registry = Registry("audio model")


def ensure_registered() -> None:
    """Fill TEXT_MODELS and AUDIO_MODELS with the built-in names (idempotent; imports no torch).

    Call before listing or looking up names; the ``load_*`` / ``check_*`` functions in
    :mod:`ausweep.models.text` and :mod:`ausweep.models.audio` call it themselves.
    """
    from ausweep.models.catalog import ensure_registered as _ensure

    _ensure()
