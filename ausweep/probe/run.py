"""The probe stage as one plain function: embeddings in, metrics out. No Ray, no MLflow."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from ausweep.probe.clips import ClipTable, class_means, excluded_clips, exclusion_log
from ausweep.probe.config import ProbeConfig
from ausweep.probe.metrics import (
    above_chance_pvalue,
    chance_at_k,
    masked_ranks,
    per_class_rows,
    summarize_ranks,
)
from ausweep.probe.procrustes import procrustes_scores
from ausweep.probe.train import (
    ProbeParams,
    carve_validation,
    class_scores,
    init_params,
    make_splits,
    shuffled_pairing,
    split_masks,
    train_probes,
)

log = logging.getLogger(__name__)


@dataclass
class ProbeResult:
    """What one probe run produces.

    Attributes:
        metrics: flat ``{name: value}``; see :func:`run` for the names.
        loss_curve: mean train loss over the splits' reported probes before each step (length
            ``epochs``), for logging with ``step=i``.
        per_class: one row per class, ``{label, n_heldout, hit@1, hit@5, mean_rank}`` over the splits
            where it was held out and scored (NaN rates for a class never scored).
        clip_log: with per-clip audio, one row per split and side pair saying which clips were
            excluded (see :func:`~ausweep.probe.clips.exclusion_log`); empty with per-class audio.
    """

    metrics: dict[str, float]
    loss_curve: list[float] = field(default_factory=list)
    per_class: list[dict] = field(default_factory=list)
    clip_log: list[dict] = field(default_factory=list)


def _check_inputs(
    text: np.ndarray, audio: np.ndarray | ClipTable, labels: Sequence[str]
) -> tuple[np.ndarray, np.ndarray | ClipTable]:
    text = np.asarray(text, dtype=np.float32)
    sides = [("text", text)]
    if isinstance(audio, ClipTable):
        if audio.n_classes != text.shape[0]:
            raise ValueError(f"text has {text.shape[0]} class rows but the clip table has {audio.n_classes} classes")
    else:
        audio = np.asarray(audio, dtype=np.float32)
        sides.append(("audio", audio))
    for name, x in sides:
        if x.ndim != 2:
            raise ValueError(f"{name} embeddings must be a 2-D array (classes x dim), got shape {x.shape}")
        bad = ~np.isfinite(x).all(axis=1)
        if bad.any():
            rows = np.flatnonzero(bad)
            raise ValueError(
                f"{name} embeddings have NaN or inf in {len(rows)} class row(s), first {rows[:5].tolist()}"
            )
    if isinstance(audio, np.ndarray) and text.shape[0] != audio.shape[0]:
        raise ValueError(
            f"text has {text.shape[0]} class rows but audio has {audio.shape[0]}; row i of both must be class i"
        )
    if len(labels) != text.shape[0]:
        raise ValueError(f"{len(labels)} labels for {text.shape[0]} class rows")
    return text, audio


def probe_sides(n_classes: int, cfg: ProbeConfig) -> tuple[np.ndarray, np.ndarray]:
    """The two class sides of every probe :func:`run` scores, each (2S, C) bool.

    Rows ``[0, S)``: split s's training classes and its held-out classes (the reported probe and
    its permutation control). Rows ``[S, 2S)``: split s's fit classes and its validation classes
    (the selection probe). Per-clip audio is averaged per row (:mod:`.clips`).
    """
    splits = make_splits(n_classes, cfg.n_splits, cfg.train_frac, cfg.seed)
    train = split_masks(splits, n_classes)  # (S, C)
    fit = split_masks(carve_validation(splits, cfg.val_fraction, cfg.seed), n_classes)
    return np.concatenate([train, fit]), np.concatenate([~train, train & ~fit])


def run(text: np.ndarray, audio: np.ndarray | ClipTable, labels: Sequence[str], cfg: ProbeConfig) -> ProbeResult:
    """Train and score the contrastive linear probe of Ngo & Kim (2024), nested: hyperparameters
    are judged on validation classes, the reported accuracy is on held-out classes.

    Each of ``cfg.n_splits`` class splits holds out ``1 - train_frac`` of the classes (the *test*
    side: ``test/*`` metrics) and carves ``val_fraction`` of its training classes into validation
    classes. Per split, three probes train together in one batched computation
    (:func:`~ausweep.probe.train.train_probes`):

    * the *selection* probe trains on the fit classes (training minus validation) and is scored on
      the validation classes: ``val/*`` metrics, the ones a sweep ranks configurations by. Its
      validation audio retrieves among the texts of the split's training classes (``candidates:
      all``) or of its validation classes only (``heldout``); held-out classes are never candidates;
    * the *reported* probe trains on all training classes and is scored on the held-out classes,
      whose audio retrieves among all C texts (``all``) or the held-out ones (``heldout``);
    * its permutation control, trained on shuffled pairs (``cfg.permutation_control``).

    With per-clip ``audio`` (a :class:`~ausweep.probe.clips.ClipTable`) every probe builds its own
    class vectors, leaving out the clips whose labels fall on both of its sides (:mod:`.clips`).

    Args:
        text: (C, dt) text embeddings, one row per class.
        audio: (C, da) per-class audio embeddings (row i is the class of text row i; no clip can
            be checked), or a :class:`~ausweep.probe.clips.ClipTable` over the same C classes.
        labels: the C class names.

    Returns:
        :class:`ProbeResult` whose ``metrics`` are, for every K in ``cfg.ks``:

        * ``val/acc@K``, ``val/acc@K_se``: validation accuracy@K, mean over splits and its
          standard error, and ``val/chance@K``;
        * ``test/acc@K``, ``test/acc@K_se``: held-out accuracy@K, and ``test/chance@K``
          (``min(1, K / n_candidates)``);
        * ``test/perm_acc@K``, ``test/perm_acc@K_se``: the permutation control (if enabled);
        * ``test/procrustes_acc@K``, ``test/procrustes_acc@K_se``: the Procrustes baseline (if enabled);

        and ``test/above_chance@1`` (one-sided binomial p-value that test/acc@1 exceeds chance,
        pooling all held-out retrievals; see :func:`~ausweep.probe.metrics.above_chance_pvalue`),
        ``final_loss`` (mean over splits of the reported probes' train loss with their final
        weights), ``n_classes``, and per split ``n_train_classes`` (fit + validation),
        ``n_fit_classes``, ``n_val_classes``, ``n_test_classes``. With per-clip audio also
        ``test/excluded_clips`` and ``val/excluded_clips`` (mean per split) and ``test/queries``,
        ``val/queries`` (classes scored per split, fewer than ``n_test_classes`` /
        ``n_val_classes`` when a class lost every clip).

    Raises:
        ValueError: shapes disagree, inputs hold NaN/inf, there are too few classes to split, or
            exclusion leaves a split with fewer than 2 training classes or no query.
    """
    text, audio = _check_inputs(text, audio, labels)
    n_classes = text.shape[0]
    train_side, query_side = probe_sides(n_classes, cfg)
    n_splits = cfg.n_splits
    train, fit, val = train_side[:n_splits], train_side[n_splits:], query_side[n_splits:]

    clip_log: list[dict] = []
    extra: dict[str, float] = {}
    if isinstance(audio, ClipTable):
        excluded = excluded_clips(audio.labels, train_side, query_side)  # (2S, N)
        counts, class_audio = class_means(audio, excluded, cfg.device)  # (2S, C), (2S, C, da)
        has_audio = counts > 0
        names = [(s, "test") for s in range(n_splits)] + [(s, "val") for s in range(n_splits)]
        clip_log = exclusion_log(audio, excluded, counts, train_side, query_side, labels, names)
        for row in clip_log:
            log.info("split %d (%s): %d of %d clips excluded; classes left without clips: train [%s], queries [%s]",
                     row["split"], row["sides"], row["excluded_clips"], row["clips"],
                     row["train_classes_without_clips"], row["query_classes_without_clips"])
        n_excluded = np.array([row["excluded_clips"] for row in clip_log], dtype=float)
        extra["test/excluded_clips"] = float(n_excluded[:n_splits].mean())
        extra["val/excluded_clips"] = float(n_excluded[n_splits:].mean())
    else:
        class_audio = torch.as_tensor(audio)  # (C, da), the same for every probe
        has_audio = np.ones_like(train_side)
    train_eff, query_eff = train_side & has_audio, query_side & has_audio
    for p in range(2 * n_splits):
        kind = "training" if p < n_splits else "fit"
        if train_eff[p].sum() < 2 or not query_eff[p].any():
            raise ValueError(
                f"split {p % n_splits}: after clip exclusion {int(train_eff[p].sum())} {kind} classes and "
                f"{int(query_eff[p].sum())} query classes have clips; a probe needs at least 2 and 1"
            )

    inits = init_params(text.shape[1], class_audio.shape[-1], cfg.shared_dim, cfg.seed, range(n_splits))
    identity = np.tile(np.arange(n_classes), (n_splits, 1))
    masks, groups, pairing = [train_eff[:n_splits], train_eff[n_splits:]], [inits, inits], [identity, identity]
    if cfg.permutation_control:
        # The control probes ride in the same batch: same splits, same initial weights, only the
        # text rows of the training classes shuffled. Probes [2S, 3S).
        masks.append(train_eff[:n_splits])
        groups.append(inits)
        pairing.append(shuffled_pairing(train_eff[:n_splits], cfg.seed))
    n_groups = len(masks)
    if class_audio.ndim == 3:  # the control uses the reported probes' class vectors
        probe_audio = torch.cat([class_audio, class_audio[:n_splits]]) if n_groups == 3 else class_audio
    else:
        probe_audio = class_audio
    trained = train_probes(text, probe_audio, np.concatenate(masks), cfg, ProbeParams.cat(groups), np.concatenate(pairing))
    scores = class_scores(trained.probes, text, probe_audio)  # (P, C, C)

    every = np.ones((n_splits, n_classes), dtype=bool)
    test_candidates = every if cfg.candidates == "all" else ~train
    val_candidates = train if cfg.candidates == "all" else val
    test_ranks = masked_ranks(scores[:n_splits], query_eff[:n_splits], test_candidates)
    val_ranks = masked_ranks(scores[n_splits : 2 * n_splits], query_eff[n_splits:], val_candidates)
    n_test_candidates = int(test_candidates[0].sum())
    n_val_candidates = int(val_candidates[0].sum())

    metrics = summarize_ranks(val_ranks, cfg.ks, prefix="val/")
    for k in cfg.ks:
        metrics[f"val/chance@{k}"] = chance_at_k(k, n_val_candidates)
    metrics.update(summarize_ranks(test_ranks, cfg.ks, prefix="test/"))
    for k in cfg.ks:
        metrics[f"test/chance@{k}"] = chance_at_k(k, n_test_candidates)
    scored = test_ranks >= 1
    metrics["test/above_chance@1"] = above_chance_pvalue(
        int((scored & (test_ranks <= 1)).sum()), int(scored.sum()), chance_at_k(1, n_test_candidates)
    )
    if cfg.permutation_control:
        perm_ranks = masked_ranks(scores[2 * n_splits :], query_eff[:n_splits], test_candidates)
        metrics.update(summarize_ranks(perm_ranks, cfg.ks, prefix="test/perm_"))
    if cfg.procrustes:
        split_audio = class_audio[:n_splits].cpu().numpy() if class_audio.ndim == 3 else audio
        p_scores = procrustes_scores(text, split_audio, train_eff[:n_splits], cfg.shared_dim, cfg.standardize)
        p_ranks = masked_ranks(p_scores, query_eff[:n_splits], test_candidates)
        metrics.update(summarize_ranks(p_ranks, cfg.ks, prefix="test/procrustes_"))
    metrics["final_loss"] = float(trained.final_loss[:n_splits].mean())
    metrics["n_classes"] = float(n_classes)
    metrics["n_train_classes"] = float(train[0].sum())
    metrics["n_fit_classes"] = float(fit[0].sum())
    metrics["n_val_classes"] = float(val[0].sum())
    metrics["n_test_classes"] = float(n_classes - train[0].sum())
    if extra:
        metrics.update(extra)
        metrics["test/queries"] = float(query_eff[:n_splits].sum(axis=1).mean())
        metrics["val/queries"] = float(query_eff[n_splits:].sum(axis=1).mean())

    return ProbeResult(
        metrics=metrics,
        loss_curve=trained.loss_curve[:, :n_splits].mean(dim=1).tolist(),
        per_class=per_class_rows(test_ranks, labels),
        clip_log=clip_log,
    )
