"""The ``cascade`` study's config: the describer that turns audio into text, and the LM that answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ausweep.config import option


@dataclass(frozen=True)
class CascadeConfig:
    model: str = option("smollm2-135m", help="Causal LM that answers: a registry name (python -m ausweep ls), a hub id (Qwen/Qwen2.5-7B-Instruct) or a local folder.")
    revision: str | None = option(None, help="Hub revision (commit, tag) of the LM.")
    describer: str = option("whisper-tiny.en", help="Audio -> text: 'whisper-tiny.en' (offline ASR), 'pitch' (numpy spectral peaks, not a neural model), 'none' (text-only baseline on the same items), 'hf:<id or folder>' (a transformers ASR or audio-classification model) or 'lalm:<name>' (a caption by a native audio-language model: qwen2-audio, audioflamingo3, qwen2.5-omni, a folder of one; tiny-<name> random builds for tests).")
    caption_prompt: str = option("Describe the sound in one sentence.", help="The instruction an 'lalm:' describer gets after each clip in its chat template; its greedy answer is the caption the LM reads. Ignored by other describers.")
    caption_max_new_tokens: int = option(64, help="Most tokens an 'lalm:' describer writes per caption (greedy decoding). Ignored by other describers.")
    manifest: str | None = option(None, help="Multiple-choice file with audio (ausweep.benchmarks.mcq format: JSONL/YAML/CSV). Default: the generated demo eval set in $AUSWEEP_CACHE/demo/lalm (made on first use; NOT a real-world benchmark).")
    method: Literal["loglik", "generate"] = option("loglik", help="'loglik' ranks each option by the LM's log-probability after 'Answer:'; 'generate' decodes greedily and matches the option text or letter.")
    max_items: int | None = option(None, help="Score only the first N items (the demo set cycles through its tasks, so any N is balanced).")
    batch_size: int = option(16, help="LM sequences per forward pass.")
    describe_batch_size: int = option(8, help="Clips per describer call.")
    length_norm: bool = option(False, help="Rank options by the mean per-token log-probability instead of the sum.")
    device: str = option("auto", help="'auto' (GPU if this process has one), 'cpu', 'cuda', 'cuda:1'... for both the LM and the describer.")
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = option("float32", help="LM weights' dtype; bfloat16 for 7-14B models on one GPU. The output layer (logits) and the option scores are float32 either way. An 'lalm:' describer loads in the same dtype ('auto': bfloat16 on a GPU, float32 on CPU).")
    progress: bool = option(True, help="Show a progress bar (off inside sweep trials).")

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("model must be a non-empty name")
        if not self.describer:
            raise ValueError("describer must be a non-empty name")
        if self.batch_size < 1 or self.describe_batch_size < 1:
            raise ValueError(f"batch sizes must be >= 1, got {self.batch_size}, {self.describe_batch_size}")
        if not self.caption_prompt.strip():
            raise ValueError("caption_prompt must not be empty")
        if self.caption_max_new_tokens < 1:
            raise ValueError(f"caption_max_new_tokens must be >= 1, got {self.caption_max_new_tokens}")
        if self.max_items is not None and self.max_items < 1:
            raise ValueError(f"max_items must be >= 1 or null, got {self.max_items}")


# ----------------------------------------------------------------------------- the cascade
