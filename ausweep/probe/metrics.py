"""Retrieval scoring shared by the probe, its permutation control and the Procrustes baseline.

Pure numpy: every function takes arrays (scores, ranks) and returns arrays or floats, so each one
is checked against hand-computed numbers in the unit tests.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats


def retrieval_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based rank of each query's true candidate.

    Args:
        scores: (..., Q, N) similarity of each of Q queries to each of N candidates (higher is closer).
        targets: (..., Q) integer index in ``[0, N)`` of each query's true candidate.

    Returns:
        (..., Q) int array. Ties count against the query: the rank is the number of candidates
        scoring *at least* as high as the true one (itself included). A collapsed probe that gives
        every candidate the same score therefore ranks last, never first.
    """
    scores = np.asarray(scores)
    targets = np.asarray(targets)
    if np.isnan(scores).any():
        raise ValueError("retrieval scores contain NaN")
    true_scores = np.take_along_axis(scores, targets[..., None], axis=-1)  # (..., Q, 1)
    return (scores >= true_scores).sum(axis=-1)


def masked_ranks(scores: np.ndarray, queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """1-based rank of each query class's own text among the candidate texts, 0 where no query.

    Args:
        scores: (P, C, C) similarity of class q's audio (row q) to class c's text (column c).
        queries: (P, C) bool, the classes probe p is scored on.
        candidates: (P, C) bool, the texts probe p's queries retrieve among; every query must be
            one of its own candidates.

    Returns:
        (P, C) int: for a query, the number of candidates scoring *at least* as high as its own
        text (ties count against it, as in :func:`retrieval_ranks`); 0 for a class that is no query.
    """
    scores = np.asarray(scores)
    queries = np.asarray(queries, dtype=bool)
    candidates = np.asarray(candidates, dtype=bool)
    if (queries & ~candidates).any():
        raise ValueError("every query class must be among its own retrieval candidates")
    if np.isnan(scores[queries]).any():
        raise ValueError("retrieval scores contain NaN")
    own = np.diagonal(scores, axis1=1, axis2=2)[..., None]  # (P, C, 1)
    ranks = ((scores >= own) & candidates[:, None, :]).sum(axis=-1)
    return np.where(queries, ranks, 0)


def accuracy_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """Fraction of queries whose true candidate is in the top ``k``: (..., Q) ranks -> (...).

    A rank of 0 marks "no query" (see :func:`masked_ranks`) and counts in neither numerator nor
    denominator; a row with no query at all gives NaN.
    """
    ranks = np.asarray(ranks)
    asked = ranks >= 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return (asked & (ranks <= k)).sum(axis=-1) / asked.sum(axis=-1)


def chance_at_k(k: int, n_candidates: int) -> float:
    """Expected accuracy@k of a retriever that ranks candidates at random: ``min(1, k / n_candidates)``."""
    if n_candidates < 1:
        raise ValueError(f"n_candidates must be >= 1, got {n_candidates}")
    return min(1.0, k / n_candidates)


def standard_error(values: Sequence[float] | np.ndarray) -> float:
    """Standard error of the mean, ``std(ddof=1) / sqrt(n)``; NaN for fewer than two values."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return float("nan")
    return float(values.std(ddof=1) / math.sqrt(values.size))


def above_chance_pvalue(hits: int, trials: int, chance: float) -> float:
    """One-sided binomial p-value that a hit rate of ``hits / trials`` exceeds ``chance``.

    Treats every held-out retrieval (over all splits) as an independent Bernoulli(chance) trial
    under the null. Retrievals are not truly independent (a class held out in several splits is
    counted each time, and the queries of one split share a probe), so read it as a guide,
    not an exact test; a permutation control (``perm_acc@K``) is the stronger check.
    """
    if trials < 1:
        return float("nan")
    return float(stats.binomtest(int(hits), int(trials), min(chance, 1.0), alternative="greater").pvalue)


def summarize_ranks(ranks: np.ndarray, ks: Sequence[int], prefix: str = "") -> dict[str, float]:
    """``{prefix}acc@K`` (mean over splits) and ``{prefix}acc@K_se`` (its standard error).

    Args:
        ranks: (S, Q) ranks of each split's queries (0 = no query, see :func:`accuracy_at_k`).
    """
    out: dict[str, float] = {}
    for k in ks:
        per_split = accuracy_at_k(ranks, k)  # (S,)
        per_split = per_split[~np.isnan(per_split)]
        out[f"{prefix}acc@{k}"] = float(per_split.mean()) if per_split.size else float("nan")
        out[f"{prefix}acc@{k}_se"] = standard_error(per_split)
    return out


def per_class_rows(ranks: np.ndarray, labels: Sequence[str]) -> list[dict]:
    """One row per class: how it fared over the splits where it was queried.

    Args:
        ranks: (S, C) rank of class c's query in split s, 0 where it was no query (see
            :func:`masked_ranks`).
        labels: C class names.

    Returns:
        C dicts ``{label, n_heldout, hit@1, hit@5, mean_rank}``; a class never queried has
        ``n_heldout == 0`` and NaN rates.
    """
    ranks = np.asarray(ranks)
    asked = ranks >= 1
    count = asked.sum(axis=0)
    hit1 = (asked & (ranks <= 1)).sum(axis=0)
    hit5 = (asked & (ranks <= 5)).sum(axis=0)
    rank_sum = np.where(asked, ranks, 0).sum(axis=0)
    rows = []
    for c, label in enumerate(labels):
        m = int(count[c])
        rows.append(
            {
                "label": label,
                "n_heldout": m,
                "hit@1": float(hit1[c] / m) if m else float("nan"),
                "hit@5": float(hit5[c] / m) if m else float("nan"),
                "mean_rank": float(rank_sum[c] / m) if m else float("nan"),
            }
        )
    return rows
