"""Orthogonal Procrustes baseline: can a pure rotation align the two spaces?

The probe learns two free linear maps. The baseline asks for much less: reduce each side to a
common dimension by PCA fitted on the training classes, then find the rotation that best carries
audio onto text on those classes, and score held-out retrieval exactly as the probe is scored.
Gains of the probe over this baseline are what the extra freedom buys. Computed in float64 on the
CPU: these are a few small SVDs per split.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ausweep.probe.train import feature_stats


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
    train_masks: np.ndarray,
    shared_dim: int,
    standardize: bool = True,
) -> np.ndarray:
    """Retrieval scores of the Procrustes baseline, one split at a time.

    Per split: standardise each side with training-class statistics (if ``standardize``, as the
    probe does), fit PCA on the training classes to :func:`procrustes_dim` dims, solve the rotation
    on the training classes, and score every class's rotated audio vector against every class's
    text vector by cosine similarity.

    Args:
        text: (C, dt); audio: (C, da), or (S, C, da) with split s's own class vectors;
        train_masks: (S, C) bool, the training classes of each split.

    Returns:
        scores (S, C, C) like :func:`~ausweep.probe.train.class_scores`, for
        :func:`~ausweep.probe.metrics.masked_ranks`.
    """
    text_t = torch.as_tensor(np.asarray(text), dtype=torch.float64)
    audio_all = torch.as_tensor(np.asarray(audio), dtype=torch.float64)
    masks = np.asarray(train_masks, dtype=bool)
    out = []
    for s in range(masks.shape[0]):
        tr = torch.as_tensor(np.flatnonzero(masks[s]))
        audio_t = audio_all[s] if audio_all.ndim == 3 else audio_all
        dim = procrustes_dim(shared_dim, len(tr), text_t.shape[1], audio_t.shape[1])
        sides = []
        for x in (text_t, audio_t):
            if standardize:
                mean, std = feature_stats(x[tr].unsqueeze(0))
                x = (x - mean[0]) / std[0]
            mu, basis = pca_basis(x[tr], dim)
            sides.append((x - mu) @ basis)  # (C, dim)
        t_red, a_red = sides
        rotation = orthogonal_procrustes(a_red[tr], t_red[tr])
        out.append(F.normalize(a_red @ rotation, dim=-1) @ F.normalize(t_red, dim=-1).T)
    return torch.stack(out).numpy()
