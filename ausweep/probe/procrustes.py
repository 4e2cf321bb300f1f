"""Orthogonal Procrustes baseline: can a pure rotation align the two spaces?

The probe learns two free linear maps. The baseline asks for much less: reduce each side to a
common dimension by PCA fitted on the training classes, then find the rotation that best carries
audio onto text on those classes, and score held-out retrieval exactly as the probe is scored.
Gains of the probe over this baseline are what the extra freedom buys. Computed in float64 on the
CPU: these are a few small SVDs per split.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ausweep.probe.train import candidate_scores, feature_stats


def orthogonal_procrustes(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The orthogonal R minimising ``||source @ R - target||_F``: source, target (n, d) -> R (d, d).

    Schönemann's solution: with ``source.T @ target = U S V^T``, ``R = U V^T``. Same answer as
    ``scipy.linalg.orthogonal_procrustes(source, target)[0]``.
    """
    u, _, vh = torch.linalg.svd(source.T @ target)
    return u @ vh


def pca_basis(x_train: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (d,) and top-``dim`` principal directions (d, dim) of x_train (n, d)."""
    mean = x_train.mean(dim=0)
    _, _, vh = torch.linalg.svd(x_train - mean, full_matrices=False)
    return mean, vh[:dim].T


def procrustes_dim(shared_dim: int, n_train: int, text_dim: int, audio_dim: int) -> int:
    """Common PCA dimension: at most ``shared_dim``, and no more than the n_train - 1 directions
    that centred training data can span, nor either side's width."""
    return max(1, min(shared_dim, n_train - 1, text_dim, audio_dim))


def procrustes_scores(
    text: np.ndarray,
    audio: np.ndarray,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    shared_dim: int,
    standardize: bool = True,
    candidates: str = "all",
) -> tuple[np.ndarray, np.ndarray]:
    """Held-out retrieval scores of the Procrustes baseline, one split at a time.

    Per split: standardise each side with training-class statistics (if ``standardize``, as the
    probe does), fit PCA on the training classes to :func:`procrustes_dim` dims, solve the rotation
    on the training classes, and score each held-out class's rotated audio vector against the
    text vectors by cosine similarity.

    Args:
        text: (C, dt); audio: (C, da); splits: from :func:`~ausweep.probe.train.make_splits`.

    Returns:
        scores (S, Q, N) and targets (S, Q), as :func:`~ausweep.probe.train.heldout_scores`.
    """
    text_t = torch.as_tensor(np.asarray(text), dtype=torch.float64)
    audio_t = torch.as_tensor(np.asarray(audio), dtype=torch.float64)
    queries, texts = [], []
    for train_idx, test_idx in splits:
        tr = torch.as_tensor(train_idx)
        dim = procrustes_dim(shared_dim, len(train_idx), text_t.shape[1], audio_t.shape[1])
        sides = []
        for x in (text_t, audio_t):
            if standardize:
                mean, std = feature_stats(x[tr].unsqueeze(0))
                x = (x - mean[0]) / std[0]
            mu, basis = pca_basis(x[tr], dim)
            sides.append((x - mu) @ basis)  # (C, dim)
        t_red, a_red = sides
        rotation = orthogonal_procrustes(a_red[tr], t_red[tr])
        queries.append(F.normalize(a_red[torch.as_tensor(test_idx)] @ rotation, dim=-1))
        texts.append(F.normalize(t_red, dim=-1))
    test_idx_t = torch.as_tensor(np.stack([te for _, te in splits]))
    scores, targets = candidate_scores(torch.stack(queries), torch.stack(texts), test_idx_t, candidates)
    return scores.numpy(), targets.numpy()
