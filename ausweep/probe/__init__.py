"""Stage 4 of the pipeline: the contrastive linear probe of Ngo & Kim, "What do language models hear?" (2024).

Input is what extraction (stage 3) leaves: one text embedding per sound class and either one
audio embedding per class or per-clip audio embeddings with their labels. Two linear maps carry
both sides into a shared space, trained with CLIP's symmetric InfoNCE loss on a random 70 % of the
classes; the probe is scored by how well each held-out class's audio vector retrieves its own text
(accuracy@K, against chance). Nested: hyperparameters are judged by a selection probe on
validation classes carved out of the training classes (``val/*``), never on the held-out classes
(``test/*``). A permutation control (text rows shuffled among the training classes) and an
orthogonal Procrustes baseline are scored like the probe. With per-clip audio, a clip labelled on
both sides of a split feeds neither (:mod:`.clips`). All splits, their selection probes and
controls train together in one batched computation.

* :func:`run` -- the stage as a plain function: ``run(text, audio, labels, cfg) -> ProbeResult``.
* :class:`ProbeConfig` -- its settings.
* :mod:`.train` -- splits and the batched trainer; :mod:`.metrics` -- retrieval scoring;
  :mod:`.procrustes` -- the baseline; :mod:`.clips` -- per-split class means and clip exclusion;
  :mod:`.planted` -- known-answer embeddings at the paper's sizes.

Works with no Ray and no MLflow; the sweep wraps :func:`run` and logs ``ProbeResult``.
"""

from __future__ import annotations

from ausweep.probe.clips import ClipTable, class_means, excluded_clips
from ausweep.probe.config import ProbeConfig
from ausweep.probe.metrics import (
    above_chance_pvalue,
    accuracy_at_k,
    chance_at_k,
    masked_ranks,
    retrieval_ranks,
    standard_error,
)
from ausweep.probe.procrustes import orthogonal_procrustes, procrustes_scores
from ausweep.probe.run import ProbeResult, run
from ausweep.probe.train import (
    FittedProbes,
    ProbeParams,
    TrainResult,
    carve_validation,
    class_scores,
    init_params,
    make_splits,
    shuffled_pairing,
    split_masks,
    train_probes,
)

__all__ = [
    "ClipTable",
    "FittedProbes",
    "ProbeConfig",
    "ProbeParams",
    "ProbeResult",
    "TrainResult",
    "above_chance_pvalue",
    "accuracy_at_k",
    "carve_validation",
    "chance_at_k",
    "class_means",
    "class_scores",
    "excluded_clips",
    "init_params",
    "make_splits",
    "masked_ranks",
    "orthogonal_procrustes",
    "procrustes_scores",
    "retrieval_ranks",
    "run",
    "shuffled_pairing",
    "split_masks",
    "standard_error",
    "train_probes",
]
