"""The probe stage as one plain function: embeddings in, metrics out. No Ray, no MLflow."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ausweep.probe.config import ProbeConfig
from ausweep.probe.metrics import (
    above_chance_pvalue,
    chance_at_k,
    per_class_rows,
    retrieval_ranks,
    summarize_ranks,
)
from ausweep.probe.procrustes import procrustes_scores
from ausweep.probe.train import (
    ProbeParams,
    heldout_scores,
    init_params,
    make_splits,
    shuffled_pairing,
    split_masks,
    train_probes,
)


@dataclass
class ProbeResult:
    """What one probe run produces.

    Attributes:
        metrics: flat ``{name: value}``; see :func:`run` for the names.
        loss_curve: mean train loss over the splits' real probes before each step (length ``epochs``),
            for logging with ``step=i``.
        per_class: one row per class, ``{label, n_heldout, hit@1, hit@5, mean_rank}`` over the splits
            where it was held out (NaN rates for a class never held out).
    """

    metrics: dict[str, float]
    loss_curve: list[float] = field(default_factory=list)
    per_class: list[dict] = field(default_factory=list)


def _check_inputs(text: np.ndarray, audio: np.ndarray, labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    text = np.asarray(text, dtype=np.float32)
    audio = np.asarray(audio, dtype=np.float32)
    for name, x in (("text", text), ("audio", audio)):
        if x.ndim != 2:
            raise ValueError(f"{name} embeddings must be a 2-D array (classes x dim), got shape {x.shape}")
        bad = ~np.isfinite(x).all(axis=1)
        if bad.any():
            rows = np.flatnonzero(bad)
            raise ValueError(
                f"{name} embeddings have NaN or inf in {len(rows)} class row(s), first {rows[:5].tolist()}"
            )
    if text.shape[0] != audio.shape[0]:
        raise ValueError(
            f"text has {text.shape[0]} class rows but audio has {audio.shape[0]}; row i of both must be class i"
        )
    if len(labels) != text.shape[0]:
        raise ValueError(f"{len(labels)} labels for {text.shape[0]} class rows")
    return text, audio


def run(text: np.ndarray, audio: np.ndarray, labels: Sequence[str], cfg: ProbeConfig) -> ProbeResult:
    """Train and score the contrastive linear probe of Ngo & Kim (2024) on per-class embeddings.

    All ``cfg.n_splits`` class splits, and as many permutation-control probes, train together in
    one batched computation (:func:`~ausweep.probe.train.train_probes`). Each held-out class's
    audio vector then retrieves among the text vectors of the candidate classes (``cfg.candidates``:
    all C classes by default, training classes included).

    Args:
        text: (C, dt) text embeddings, one row per class.
        audio: (C, da) audio embeddings; row i is the same class as text row i.
        labels: the C class names.

    Returns:
        :class:`ProbeResult` whose ``metrics`` are, for every K in ``cfg.ks``:

        * ``acc@K``, ``acc@K_se``: held-out accuracy@K, mean over splits and its standard error;
        * ``chance@K``: ``min(1, K / n_candidates)``;
        * ``perm_acc@K``, ``perm_acc@K_se``: the same for the permutation control (if enabled);
        * ``procrustes_acc@K``, ``procrustes_acc@K_se``: the Procrustes baseline (if enabled);

        and ``above_chance@1`` (one-sided binomial p-value that acc@1 exceeds chance, pooling all
        held-out retrievals; see :func:`~ausweep.probe.metrics.above_chance_pvalue`),
        ``final_loss`` (mean over splits of the real probes' train loss with their final weights),
        ``n_classes``, ``n_train_classes`` and ``n_test_classes`` (per split).

    Raises:
        ValueError: shapes disagree, inputs hold NaN/inf, or there are too few classes to split.
    """
    text, audio = _check_inputs(text, audio, labels)
    n_classes = text.shape[0]
    splits = make_splits(n_classes, cfg.n_splits, cfg.train_frac, cfg.seed)
    n_splits = len(splits)
    masks = split_masks(splits, n_classes)  # (S, C)
    test_idx = np.stack([te for _, te in splits])  # (S, Q)
    n_test = test_idx.shape[1]
    inits = init_params(text.shape[1], audio.shape[1], cfg.shared_dim, cfg.seed, range(n_splits))
    pairing = np.tile(np.arange(n_classes), (n_splits, 1))

    if cfg.permutation_control:
        # The control probes ride in the same batch: same splits, same initial weights, only the
        # text rows of the training classes shuffled. Probes [0, S) are real, [S, 2S) controls.
        masks = np.concatenate([masks, masks])
        test_idx_all = np.concatenate([test_idx, test_idx])
        inits = ProbeParams.cat([inits, inits])
        pairing = np.concatenate([pairing, shuffled_pairing(splits, n_classes, cfg.seed)])
    else:
        test_idx_all = test_idx

    trained = train_probes(text, audio, masks, cfg, inits, pairing)
    scores, targets = heldout_scores(trained.probes, text, audio, test_idx_all, cfg.candidates)
    ranks = retrieval_ranks(scores, targets)  # (S or 2S, Q)
    real = ranks[:n_splits]
    n_candidates = scores.shape[-1]

    metrics = summarize_ranks(real, cfg.ks)
    for k in cfg.ks:
        metrics[f"chance@{k}"] = chance_at_k(k, n_candidates)
    metrics["above_chance@1"] = above_chance_pvalue(int((real <= 1).sum()), real.size, chance_at_k(1, n_candidates))
    if cfg.permutation_control:
        metrics.update(summarize_ranks(ranks[n_splits:], cfg.ks, prefix="perm_"))
    if cfg.procrustes:
        p_scores, p_targets = procrustes_scores(text, audio, splits, cfg.shared_dim, cfg.standardize, cfg.candidates)
        metrics.update(summarize_ranks(retrieval_ranks(p_scores, p_targets), cfg.ks, prefix="procrustes_"))
    metrics["final_loss"] = float(trained.final_loss[:n_splits].mean())
    metrics["n_classes"] = float(n_classes)
    metrics["n_train_classes"] = float(n_classes - n_test)
    metrics["n_test_classes"] = float(n_test)

    return ProbeResult(
        metrics=metrics,
        loss_curve=trained.loss_curve[:, :n_splits].mean(dim=1).tolist(),
        per_class=per_class_rows(real, test_idx, labels),
    )
