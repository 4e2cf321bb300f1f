"""The ``auditorybench_baselines`` study's config: which LM, tasks and splits, and how to score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ausweep.config import option


@dataclass(frozen=True)
class BaselineConfig:
    model: str = option("bert-base-uncased", help="LM to score: a registry name (python -m ausweep ls), a hub id or a local folder. Masked LMs use fill-mask; causal LMs rank candidates by log-likelihood.")
    revision: str | None = option(None, help="Hub revision (commit, tag) of the LM.")
    kind: Literal["auto", "mlm", "causal"] = option("auto", help="'mlm' (fill-mask) or 'causal' (log-likelihood ranking); 'auto' reads it from the registry or the checkpoint's architectures.")
    tasks: list[Literal["animal", "pitch"]] = option(["animal", "pitch"], help="AuditoryBench tasks: animal sound recognition, sound pitch comparison.")
    splits: list[Literal["train", "dev", "test", "wiki"]] = option(["dev", "test", "wiki"], help="Splits to score. dev is for choosing (the sweep ranks trials on pitch/dev/acc); test and wiki are held out; the published numbers are on test.")
    fmt: Literal["mc", "mask"] = option("mc", help="Animal-task file format: 'mc' (4 options; gives exact match and MC accuracy) or 'mask' (upstream's original files: exact match only, dev has 593 rows instead of 592). Test and wiki hold the same questions in both.")
    cross_split_duplicates: Literal["drop", "keep"] = option("drop", help="Dev/test/wiki rows whose sentence and answer also appear in train (case- and whitespace-insensitive; animal test 60, pitch test 47): 'drop' scores without them; 'keep' scores every row, as the published numbers were, for comparison with them. Either way <task>/<split>/n_in_train counts them.")
    max_items: int | None = option(None, help="Score only the first N items of each split (demos, tests), counted after cross_split_duplicates.")
    batch_size: int = option(16, help="Sequences per forward pass.")
    device: str = option("auto", help="'auto' (GPU if this process has one), 'cpu', 'cuda', 'cuda:1'...")
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = option("float32", help="Weights' dtype; bfloat16 for 7-8B models on one GPU. Causal LMs: the output layer (logits) and the scores are float32 either way. Masked LMs: the logits come out in this dtype; only their log-softmax is float32.")
    length_norm: bool = option(False, help="Rank candidates by the mean per-token log-probability instead of the sum (favours neither short nor long option names).")
    lowercase: bool = option(True, help="Masked LMs: lower-case sentence and answer first, as upstream does (no effect on uncased models).")
    progress: bool = option(True, help="Show a progress bar (off inside sweep trials).")
    data_root: str | None = option(None, help="Folder with the AuditoryBench CSVs in the vendored layout; default: the copy shipped in the package.")

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("model must be a non-empty name")
        for name in ("tasks", "splits"):
            values = getattr(self, name)
            if not values:
                raise ValueError(f"{name} must not be empty")
            if len(set(values)) != len(values):
                raise ValueError(f"{name} has repeated entries: {values}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_items is not None and self.max_items < 1:
            raise ValueError(f"max_items must be >= 1 or null, got {self.max_items}")
