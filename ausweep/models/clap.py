"""CLAP's text and audio towers in one joint space, for text-to-audio retrieval and as an audio encoder.

:class:`ClapTextAudio` wraps a ``transformers.ClapModel`` (``laion/clap-htsat-fused`` by default,
as AudioBERT upstream) behind ``embed_text`` / ``embed_audio``; :func:`tiny_clap` builds a tiny
random one for tests, and :func:`load_tiny_clap_audio` registers its audio tower as the
``tiny-clap-joint`` audio model so extraction embeds corpora in the same space.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

DEFAULT_CLAP = "laion/clap-htsat-fused"


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
