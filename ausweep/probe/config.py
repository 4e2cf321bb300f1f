"""Settings of the contrastive linear probe (one frozen, validated dataclass)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ausweep.config import option
from ausweep.data.sources import DataConfig
from ausweep.extract import ExtractConfig

CANDIDATES = ("all", "heldout")


@dataclass(frozen=True)
class ProbeConfig:
    """How to train and score the contrastive linear probe of Ngo & Kim (2024).

    Build it from a plain dict with :func:`ausweep.config.from_dict` (which checks keys and
    types); ``__post_init__`` checks the values themselves and raises ``ValueError``.
    """

    lr: float = option(1e-3, help="AdamW learning rate.")
    shared_dim: int = option(128, help="Dimension k of the shared space both linear maps project into.")
    temperature: float = option(
        0.07,
        help="Softmax temperature on cosine similarities. 0.07 is CLIP's initial value (Radford et al. "
        "2021); it is fixed, not learned, so probes of different layers and models are scored on one scale.",
    )
    weight_decay: float = option(1e-4, help="AdamW decoupled weight decay.")
    epochs: int = option(300, help="Optimisation steps; each step uses the full batch of training classes.")
    n_splits: int = option(5, help="Number of random train / held-out class splits (probes trained together).")
    train_frac: float = option(
        0.7, help="Fraction of classes used for training in each split; n_train = round-half-up(train_frac * C)."
    )
    val_fraction: float = option(
        0.2,
        help="Fraction of each split's training classes carved out as validation classes "
        "(round-half-up, seeded by (seed, split)). A selection probe trains on the rest and is scored on them "
        "(val/acc@K): sweeps rank configurations by it. The reported probe trains on all training classes and is "
        "scored on the held-out classes (test/acc@K), which no selection ever sees.",
    )
    seed: int = option(0, help="Seed of the splits, the validation classes, the initial weights and the permutation control.")
    ks: list[int] = option(
        [1, 3, 5, 10], help="K values of accuracy@K (retrieval of the true class text in the top K)."
    )
    candidates: Literal["all", "heldout"] = option(
        "all",
        help="Texts a query's audio retrieves among. 'all': a held-out class among all C classes, a validation "
        "class among its split's training classes (fit + validation; held-out classes never). 'heldout': a held-out "
        "class among its split's held-out classes, a validation class among the validation classes.",
    )
    permutation_control: bool = option(
        True,
        help="Also train, in the same batch, probes whose text rows are shuffled among the training classes "
        "(alignment broken): their held-out accuracy (perm_acc@K) should sit at chance.",
    )
    procrustes: bool = option(
        True, help="Also score the orthogonal Procrustes baseline (PCA to a common dim, best rotation)."
    )
    device: str = option("cpu", help="Torch device the probes train on ('cpu', 'cuda', 'cuda:1', ...).")
    standardize: bool = option(
        True, help="Standardise each side's features with the training classes' mean and std before projecting."
    )
    restrict_to_span: bool = option(
        True,
        help="Learn each linear map only on the span of its training classes' (standardised) features: W = V U, "
        "V an orthonormal basis of that span, U started from V^T W_init. With ~70 training classes and 512-1600 "
        "features the maps are underdetermined; false keeps random initial weights on every direction no training "
        "class spans, and they add noise to held-out projections (the probe then misses a planted linear relation "
        "when the spectrum is flat).",
    )

    def __post_init__(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(message)

        need(self.lr > 0, f"lr must be > 0, got {self.lr}")
        need(self.shared_dim >= 1, f"shared_dim must be >= 1, got {self.shared_dim}")
        need(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        need(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        need(self.n_splits >= 1, f"n_splits must be >= 1, got {self.n_splits}")
        need(0 < self.train_frac < 1, f"train_frac must be strictly between 0 and 1, got {self.train_frac}")
        need(0 < self.val_fraction < 1, f"val_fraction must be strictly between 0 and 1, got {self.val_fraction}")
        need(self.seed >= 0, f"seed must be >= 0 (it seeds numpy's SeedSequence), got {self.seed}")
        need(len(self.ks) > 0, "ks must name at least one K")
        need(
            all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in self.ks),
            f"every K in ks must be an integer >= 1, got {self.ks}",
        )
        need(len(set(self.ks)) == len(self.ks), f"ks has repeated values: {self.ks}")
        need(self.candidates in CANDIDATES, f"candidates must be one of {list(CANDIDATES)}, got {self.candidates!r}")
        need(
            self.device == "cpu" or self.device.startswith(("cuda", "mps")),
            f"device must be 'cpu', 'cuda[:N]' or 'mps', got {self.device!r}",
        )


@dataclass(frozen=True)
class TextSide:
    model: str = option("bert-base-uncased", help="Text LM: a registry name (python -m ausweep ls), a hub id or a local folder.")
    revision: str | None = option(None, help="Hub revision (commit, tag) of the LM.")
    layer: int = option(-1, help="Hidden-state index: 0 = embeddings, -1 = last layer. Sweep it with {grid: all}.")
    template: str = option("the sound of {}", help="Sentence around the object phrase; the representation averages the phrase's tokens.")
    phrase: Literal["name", "synonyms"] = option(
        "name",
        help="Object phrase of each class. 'name': one name, the first synonym of the class text with brackets "
        "dropped and the head noun singular ('Bird vocalization, bird call, bird song' -> 'bird vocalization', "
        "'Dishes, pots, and pans' -> 'dish'), so only that name's tokens are averaged. 'synonyms': the whole "
        "lower-cased AudioSet display name, every synonym and comma averaged together (ausweep's behaviour before "
        "this option).",
    )

    def __post_init__(self) -> None:
        if self.phrase not in ("name", "synonyms"):
            raise ValueError(f"phrase must be 'name' or 'synonyms', got {self.phrase!r}")


@dataclass(frozen=True)
class AudioSide:
    model: str = option("ast", help="Audio encoder: a registry name, a hub id or a local folder.")
    revision: str | None = option(None, help="Hub revision of the audio encoder.")


@dataclass(frozen=True)
class EmbeddingFiles:
    text: str | None = option(None, help="Precomputed per-class text embeddings (.npz with `labels`, `embeddings`); skips text extraction.")
    audio: str | None = option(None, help="Precomputed per-class audio embeddings (.npz); skips audio extraction.")


@dataclass(frozen=True)
class ProbeExperiment:
    data: DataConfig = option(DataConfig(), help="The sound set.")
    text: TextSide = option(TextSide(), help="The text side.")
    audio: AudioSide = option(AudioSide(), help="The audio side.")
    extract: ExtractConfig = option(ExtractConfig(), help="How embeddings are extracted and cached.")
    probe: ProbeConfig = option(ProbeConfig(), help="The contrastive probe.")
    embeddings: EmbeddingFiles = option(EmbeddingFiles(), help="Bring your own embeddings instead of extracting (one side or both).")


# ----------------------------------------------------------------------------- one experiment
