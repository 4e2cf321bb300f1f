"""Planted answers for the probe: per-class embeddings whose audio side is a known linear image
of the text side, at the paper's sizes.

Ngo & Kim (2024) probe about 100 classes with 512-1600 dimensions per side and train on about 70
of them, so each linear map sees far fewer classes than it has input dimensions. A probe that can
miss a relation that is there in that regime makes a negative result meaningless, so the unit
tests and ``bench/bench_probe.py --planted`` check that it finds one, whatever the spectrum:

* ``"flat"``: every direction of the text space carries the same variance (white Gaussian rows),
  the hard case, where a held-out class lies mostly outside the span of the training classes;
* ``"decaying"``: variances fall off as a power law ``(j + 1) ** -power`` along random orthogonal
  directions, as in real LM hidden states.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Spectrum = Literal["flat", "decaying"]


def planted_pair(
    n_classes: int = 100,
    text_dim: int = 768,
    audio_dim: int = 527,
    spectrum: Spectrum = "flat",
    noise: float = 0.1,
    seed: int = 0,
    power: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Text ``T`` (C, dt) and audio ``A = T @ W + E`` (C, da), float32.

    ``W`` is a dense Gaussian map; ``E`` is Gaussian noise scaled so that ``||E||_F`` is
    ``noise`` times ``||T @ W||_F`` (``noise=0.1``: 10 % noise). A ``"decaying"`` spectrum rotates
    its power-law axes by a random orthogonal matrix, so per-feature standardisation (which the
    probe does by default) cannot flatten it again.
    """
    if spectrum not in ("flat", "decaying"):
        raise ValueError(f"spectrum must be 'flat' or 'decaying', got {spectrum!r}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    rng = np.random.default_rng(seed)
    text = rng.standard_normal((n_classes, text_dim))
    if spectrum == "decaying":
        rotation, _ = np.linalg.qr(rng.standard_normal((text_dim, text_dim)))
        text = (text * (np.arange(1, text_dim + 1) ** -power)) @ rotation.T
    mixing = rng.standard_normal((text_dim, audio_dim)) / np.sqrt(text_dim)
    clean = text @ mixing
    err = rng.standard_normal(clean.shape)
    audio = clean + err * (noise * np.linalg.norm(clean) / np.linalg.norm(err))
    return text.astype(np.float32), audio.astype(np.float32)
