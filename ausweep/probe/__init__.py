"""Stage 4 of the pipeline: the contrastive linear probe of Ngo & Kim, "What do language models hear?" (2024).

Input is what extraction (stage 3) leaves: one text embedding and one audio embedding per sound
class, aligned by row. Two linear maps carry both sides into a shared space, trained with CLIP's
symmetric InfoNCE loss on a random 70 % of the classes; the probe is scored by how well each
held-out class's audio vector retrieves its own text (accuracy@K, against chance). A permutation
control (text rows shuffled among the training classes) and an orthogonal Procrustes baseline are
scored the same way. All splits, and their controls, train together in one batched computation.

* :func:`run` -- the stage as a plain function: ``run(text, audio, labels, cfg) -> ProbeResult``.
* :class:`ProbeConfig` -- its settings.
* :mod:`.train` -- splits and the batched trainer; :mod:`.metrics` -- retrieval scoring;
  :mod:`.procrustes` -- the baseline.

Works with no Ray and no MLflow; the sweep wraps :func:`run` and logs ``ProbeResult``.
"""

from __future__ import annotations

from ausweep.probe.config import ProbeConfig
from ausweep.probe.metrics import (
    above_chance_pvalue,
    accuracy_at_k,
    chance_at_k,
    retrieval_ranks,
    standard_error,
)
from ausweep.probe.procrustes import orthogonal_procrustes, procrustes_scores
from ausweep.probe.run import ProbeResult, run
from ausweep.probe.train import (
    FittedProbes,
    ProbeParams,
    TrainResult,
    heldout_scores,
    init_params,
    make_splits,
    shuffled_pairing,
    split_masks,
    train_probes,
)

__all__ = [
    "FittedProbes",
    "ProbeConfig",
    "ProbeParams",
    "ProbeResult",
    "TrainResult",
    "above_chance_pvalue",
    "accuracy_at_k",
    "chance_at_k",
    "heldout_scores",
    "init_params",
    "make_splits",
    "orthogonal_procrustes",
    "procrustes_scores",
    "retrieval_ranks",
    "run",
    "shuffled_pairing",
    "split_masks",
    "standard_error",
    "train_probes",
]
