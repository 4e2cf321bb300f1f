"""Per-clip audio and the rule that keeps a clip out of both sides of a class split.

FSD50K clips carry several labels. If a clip labelled *Bark* and *Growling* fed the audio vector of
*Bark* (a training class) and of *Growling* (a held-out class), the held-out class would be scored
on audio the probe was trained on. So the probe takes per-clip embeddings and, for every split,
builds the class vectors itself:

* a clip whose labels fall on both sides of the split (a training class and a held-out class)
  feeds neither side in that split;
* a clip whose labels all lie on one side feeds the classes it was sampled for, as before.

"Sides" are those of the probe being trained: training vs held-out classes for the probe whose
held-out accuracy is reported (and its permutation control), fit vs validation classes for the
probe that scores hyperparameters on validation. A class left with no clip in a split drops out
of that split: out of the training classes, or out of the queries (its text stays a retrieval
candidate, since the text side needs no audio). :func:`exclusion_log` reports all of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch


@dataclass(frozen=True)
class ClipTable:
    """Per-clip audio embeddings over the C classes of a probe run.

    Attributes:
        embeddings: (N, da) one row per clip (audio file).
        feeds: (N, C) bool, the classes the clip was sampled for: it counts in their class means.
        labels: (N, C) bool, every one of the C classes the clip carries in the ground truth
            (``feeds`` is a subset). A clip sampled for *Bark* only may still be labelled *Growling*.
        ids: N clip ids (file paths), for the exclusion log.
    """

    embeddings: np.ndarray
    feeds: np.ndarray
    labels: np.ndarray
    ids: tuple[str, ...]

    def __post_init__(self) -> None:
        n = self.embeddings.shape[0]
        if self.embeddings.ndim != 2:
            raise ValueError(f"clip embeddings must be (N, d), got shape {self.embeddings.shape}")
        if self.feeds.shape != self.labels.shape or self.feeds.shape[0] != n or len(self.ids) != n:
            raise ValueError(
                f"{n} clip embeddings, {len(self.ids)} ids, feeds {self.feeds.shape}, labels {self.labels.shape}: "
                "they must agree on the number of clips (and feeds and labels on the classes)"
            )
        if (self.feeds & ~self.labels).any():
            raise ValueError("a clip feeds a class it is not labelled with")
        bad = ~np.isfinite(self.embeddings).all(axis=1)
        if bad.any():
            raise ValueError(f"clip embeddings have NaN or inf, first clip {self.ids[int(np.flatnonzero(bad)[0])]}")

    @property
    def n_classes(self) -> int:
        return self.feeds.shape[1]

    @classmethod
    def build(
        cls,
        embeddings: np.ndarray,
        ids: Sequence[str],
        feeds: Sequence[Sequence[str]],
        labels: Sequence[Sequence[str]],
        classes: Sequence[str],
    ) -> ClipTable:
        """A table over ``classes`` from per-clip class names. Names not among ``classes`` are
        ignored (a class dropped when text and audio were aligned is in no split); a clip that
        feeds none of ``classes`` is left out."""
        index = {c: j for j, c in enumerate(classes)}
        n = len(ids)
        feed_m = np.zeros((n, len(classes)), dtype=bool)
        label_m = np.zeros((n, len(classes)), dtype=bool)
        for i, (f, lab) in enumerate(zip(feeds, labels, strict=True)):
            feed_m[i, [index[c] for c in f if c in index]] = True
            label_m[i, [index[c] for c in (*lab, *f) if c in index]] = True
        keep = feed_m.any(axis=1)
        emb = np.asarray(embeddings, dtype=np.float32)
        return cls(emb[keep], feed_m[keep], label_m[keep], tuple(i for i, k in zip(ids, keep) if k))


def excluded_clips(labels: np.ndarray, train_side: np.ndarray, query_side: np.ndarray) -> np.ndarray:
    """(P, N) bool: clip n is excluded from probe p because its labels meet both of p's sides.

    Args:
        labels: (N, C) bool, each clip's classes (:attr:`ClipTable.labels`).
        train_side, query_side: (P, C) bool, disjoint class sets of each probe.
    """
    labels = np.asarray(labels, dtype=np.int64)
    on_train = labels @ np.asarray(train_side, dtype=np.int64).T > 0  # (N, P)
    on_query = labels @ np.asarray(query_side, dtype=np.int64).T > 0
    return (on_train & on_query).T


def class_means(
    clips: ClipTable, excluded: np.ndarray, device: str | torch.device = "cpu"
) -> tuple[np.ndarray, torch.Tensor]:
    """Each probe's class vectors from the clips it may use, in one batched product.

    Returns:
        counts (P, C) int, the clips behind each class vector, and means (P, C, da) float32 on
        ``device``: the mean of class c's usable clips in probe p, zeros where ``counts`` is 0.
    """
    use = clips.feeds[None, :, :] & ~np.asarray(excluded, dtype=bool)[:, :, None]  # (P, N, C)
    counts = use.sum(axis=1)  # (P, C)
    weights = use.transpose(0, 2, 1).astype(np.float32) / np.maximum(counts, 1)[:, :, None].astype(np.float32)
    weights = torch.as_tensor(weights, device=device)
    emb = torch.as_tensor(clips.embeddings, dtype=torch.float32, device=device)
    return counts, torch.matmul(weights, emb)  # (P, C, N) @ (N, da)


def exclusion_log(
    clips: ClipTable,
    excluded: np.ndarray,
    counts: np.ndarray,
    train_side: np.ndarray,
    query_side: np.ndarray,
    labels: Sequence[str],
    names: Sequence[tuple[int, str]],
) -> list[dict]:
    """One row per probe: what its split excluded.

    Args:
        names: ``(split, kind)`` of each probe, e.g. ``(0, "test")`` for split 0's train vs held-out
            probe and ``(0, "val")`` for its fit vs validation probe.

    Returns:
        dicts ``{split, sides, clips, excluded_clips, train_classes_without_clips,
        query_classes_without_clips, excluded_example}``; class lists are ``;``-joined labels.
    """
    rows = []
    for p, (split, kind) in enumerate(names):
        relevant = (clips.labels & (train_side[p] | query_side[p])).any(axis=1)  # clips of this probe's classes
        gone = excluded[p] & relevant
        rows.append(
            {
                "split": split,
                "sides": "train|heldout" if kind == "test" else "fit|val",
                "clips": int(relevant.sum()),
                "excluded_clips": int(gone.sum()),
                "train_classes_without_clips": ";".join(labels[c] for c in np.flatnonzero(train_side[p] & (counts[p] == 0))),
                "query_classes_without_clips": ";".join(labels[c] for c in np.flatnonzero(query_side[p] & (counts[p] == 0))),
                "excluded_example": clips.ids[int(np.flatnonzero(gone)[0])] if gone.any() else "",
            }
        )
    return rows
