"""The ``lalm_backbone`` study's config: the LALM (:class:`~ausweep.lalm.model.LALMConfig`), its training
(:class:`~ausweep.lalm.train.TrainConfig`) and the audio data (train, dev to choose on, eval to report).
"""

from __future__ import annotations

from dataclasses import dataclass

from ausweep.config import option
from ausweep.lalm.distill import DistillConfig
from ausweep.lalm.model import LALMConfig
from ausweep.lalm.train import TrainConfig


@dataclass(frozen=True)
class LALMDataConfig:
    responses: str = option("distill", help="Where training responses come from. 'distill' (DeSTA): each backbone writes them itself from the clips' text metadata (data.metadata; ausweep.lalm.distill), so the data depends on lalm.llm. 'given': the instruction file data.train as it is.")
    metadata: str | None = option(None, help="responses=distill: the training clips' metadata, JSONL of {audio, caption, transcript?, attributes?, instructions} (audio relative to the file). None: the generated demo set's.")
    distill: DistillConfig = option(DistillConfig(), help="responses=distill: how the backbone writes them (prompt, generation length, Ray actors, cache).")
    train: str | None = option(None, help="responses=given: instruction data, JSONL of {audio, instruction, response} (audio relative to the file). None: the generated demo set's (responses written from the metadata).")
    eval: str | None = option(None, help="Audio multiple-choice manifest the trial reports (acc, acc/<category>...): JSONL/YAML/CSV of question, options, answer, category, audio. None: the generated demo set.")
    dev: str | None = option(None, help="Audio multiple-choice manifest to choose hyperparameters on (metrics dev/acc, dev/acc/<category>...); its clips must be in neither eval nor train. None: the generated demo set's dev split when eval is generated too, else no dev metrics (and a sweep over anything but the backbone is refused).")
    demo_root: str | None = option(None, help="Where the demo sets are generated (default $AUSWEEP_CACHE/demo/lalm).")
    demo_n_train: int = option(280, help="Generated training clips (demo set; two instructions each).")
    demo_n_eval: int = option(70, help="Generated evaluation items (demo set).")
    demo_n_dev: int = option(70, help="Generated dev items (demo set), on clips of their own.")
    demo_seed: int = option(0, help="Seed of the generated demo sets.")
    max_eval_items: int | None = option(None, help="Score only the first N evaluation items (and the first N dev items).")

    def __post_init__(self) -> None:
        if self.demo_n_train < 1 or self.demo_n_eval < 1 or self.demo_n_dev < 1:
            raise ValueError("demo_n_train, demo_n_eval and demo_n_dev must be >= 1")
        if self.responses not in ("distill", "given"):
            raise ValueError(f"data.responses must be 'distill' or 'given', got {self.responses!r}")
        if self.responses == "distill" and self.train is not None:
            raise ValueError("data.train is an instruction file of given responses: set data.responses=given to train on "
                             "it, or give the clips' metadata as data.metadata to have each backbone write the responses")
        if self.responses == "given" and self.metadata is not None:
            raise ValueError("data.metadata is read by self-distillation (data.responses=distill); with responses=given "
                             "the instructions and responses are data.train")


@dataclass(frozen=True)
class LALMBackboneConfig:
    lalm: LALMConfig = option(LALMConfig(), help="The model: encoder, Q-Former size, LLM backbone and how it trains.")
    train: TrainConfig = option(TrainConfig(), help="DeepSpeed training under Ray Train.")
    data: LALMDataConfig = option(LALMDataConfig(), help="Training and evaluation data.")
    eval_batch_size: int = option(8, help="Items per forward pass when scoring options.")
    length_norm: bool = option(False, help="Rank options by mean per-token log-probability instead of the sum.")
    storage: str | None = option(None, help="Where training checkpoints go, under lalm_train/lalm-<config hash>; default: the sweep's run folder (a plain run: $AUSWEEP_STORAGE or ./ausweep_runs).")
    progress: bool = option(True, help="Progress bars (off inside sweep trials).")

    def __post_init__(self) -> None:
        if self.eval_batch_size < 1:
            raise ValueError(f"eval_batch_size must be >= 1, got {self.eval_batch_size}")


# ----------------------------------------------------------------------------- data
