"""The Q-Former connector: a fixed number of learned queries that read a variable-length audio encoding.

Where it sits: between the frozen Whisper encoder and the LLM of an audio-grounded LM
(:mod:`ausweep.lalm.model`). Whisper gives 1500 frames per 30 s window, far too many tokens to hand
an LLM; the Q-Former compresses them to ``num_queries`` vectors. Each block lets the queries talk
to each other (self-attention), read the audio (cross-attention, keys/values = encoder frames) and
transform themselves (MLP). Pre-LayerNorm residual blocks, as in current transformers, so the
stack trains stably from a random init without warm-up tricks.

Written from the description in the BLIP-2 / DeSTA papers, not from their code: no text branch,
no BERT initialisation; a plain stack of attention blocks over learned queries.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class QFormerBlock(nn.Module):
    """One block: queries self-attend, cross-attend to the encoder states, then an MLP; each sub-layer
    pre-normalised with a residual connection. ``(B, Q, H), (B, T, H) -> (B, Q, H)``."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        self.norm_self = nn.LayerNorm(hidden)
        self.self_attn = nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)
        self.norm_cross = nn.LayerNorm(hidden)
        # The encoder states get their own norm: Whisper's output scale is not the queries' scale.
        self.norm_audio = nn.LayerNorm(hidden)
        self.cross_attn = nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)
        self.norm_mlp = nn.LayerNorm(hidden)
        inner = int(hidden * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(hidden, inner), nn.GELU(), nn.Linear(inner, hidden), nn.Dropout(dropout))

    def forward(self, queries: Tensor, audio: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        """``queries`` (B, Q, H); ``audio`` (B, T, H); ``key_padding_mask`` (B, T), True = ignore that frame."""
        x = self.norm_self(queries)
        queries = queries + self.self_attn(x, x, x, need_weights=False)[0]
        x = self.norm_cross(queries)
        kv = self.norm_audio(audio)
        queries = queries + self.cross_attn(x, kv, kv, key_padding_mask=key_padding_mask, need_weights=False)[0]
        return queries + self.mlp(self.norm_mlp(queries))


class QFormer(nn.Module):
    """``num_queries`` learned query vectors read encoder states through ``num_layers`` blocks.

    ``(B, T, encoder_dim) -> (B, num_queries, hidden)``. When ``encoder_dim != hidden`` the encoder
    states first go through a linear projection to ``hidden``. ``heads`` must divide ``hidden``.
    """

    def __init__(
        self,
        encoder_dim: int,
        hidden: int,
        num_queries: int,
        num_layers: int,
        heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
    ):
        super().__init__()
        if num_queries < 1 or num_layers < 1:
            raise ValueError(f"QFormer needs num_queries >= 1 and num_layers >= 1, got {num_queries}, {num_layers}")
        if hidden % heads:
            raise ValueError(f"QFormer: heads ({heads}) must divide the hidden size ({hidden})")
        self.encoder_dim, self.hidden, self.num_queries = encoder_dim, hidden, num_queries
        # Small init (as for transformer embeddings) so the first blocks start near the identity.
        self.queries = nn.Parameter(torch.randn(num_queries, hidden) * 0.02)
        self.in_proj = nn.Linear(encoder_dim, hidden) if encoder_dim != hidden else nn.Identity()
        self.blocks = nn.ModuleList(QFormerBlock(hidden, heads, mlp_ratio, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(hidden)

    def forward(self, encoder_states: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        """``encoder_states`` (B, T, encoder_dim) -> (B, num_queries, hidden).

        ``key_padding_mask`` (B, T) bool, True marks frames to ignore (padding); a row must keep
        at least one frame.
        """
        if encoder_states.dim() != 3 or encoder_states.shape[-1] != self.encoder_dim:
            raise ValueError(
                f"QFormer expects encoder states (B, T, {self.encoder_dim}), got {tuple(encoder_states.shape)}"
            )
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.to(torch.bool)
            if key_padding_mask.shape != encoder_states.shape[:2]:
                raise ValueError(
                    f"key_padding_mask must be (B, T) = {tuple(encoder_states.shape[:2])}, "
                    f"got {tuple(key_padding_mask.shape)}"
                )
            if key_padding_mask.all(dim=1).any():
                raise ValueError("key_padding_mask hides every frame of some row; keep at least one")
        audio = self.in_proj(encoder_states)
        q = self.queries.unsqueeze(0).expand(encoder_states.shape[0], -1, -1).to(audio.dtype)
        for block in self.blocks:
            q = block(q, audio, key_padding_mask)
        return self.norm(q)
