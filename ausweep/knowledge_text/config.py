"""The ``knowledge_text`` study's config: which LM, which multiple-choice sets, how to score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ausweep.config import option


@dataclass(frozen=True)
class KnowledgeConfig:
    model: str = option("smollm2-135m", help="Causal LM (the LLM backbone): a registry name (python -m ausweep ls), a hub id or a local folder.")
    revision: str | None = option(None, help="Hub revision (commit, tag) of the LM.")
    sets: list[str] = option(["phonology", "music", "auditorybench"], help="Multiple-choice sets: 'phonology', 'music', 'auditorybench', or 'file:<path>' / a path to a JSONL/YAML/CSV set (e.g. your AKB-2000 copy).")
    method: Literal["loglik", "generate"] = option("loglik", help="'loglik': pick the option with the highest log-likelihood after the prompt; 'generate': greedy answer, parsed as a letter or an option's text.")
    max_items: int | None = option(None, help="At most N items per set, taken evenly over its subcategories (demos, tests); generated sets default to 100 per subcategory.")
    batch_size: int = option(16, help="Sequences per forward pass (loglik: one sequence per option).")
    device: str = option("auto", help="'auto' (GPU if this process has one), 'cpu', 'cuda', 'cuda:1'...")
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = option("float32", help="Weights' dtype; bfloat16 for 7-14B models on one GPU. The transformer layers run in it; the output layer (logits) and the option scores are computed in float32 either way.")
    length_norm: bool = option(False, help="loglik: rank options by mean per-token log-probability instead of the sum (favours neither short nor long options).")
    max_new_tokens: int = option(8, help="generate: tokens to decode per answer.")
    chat_template: bool | None = option(None, help="generate: ask each question as a user turn of the tokenizer's chat template (null: when the tokenizer has one; chat-tuned models need it).")
    prefix_token: bool = option(False, help="loglik and generate: put a BOS-like token (BOS, else EOS: SmolLM2's <|im_start|>, GPT-2's <|endoftext|>) before each prompt whose tokenizer adds none. Off is lm-evaluation-harness's default, so scores compare with published lm-eval results; on, SmolLM2-135M's option log-likelihoods moved 1.5 nats on average and 14% of 100 AuditoryBench answers flipped. Tokenizers that add their own BOS (Llama) are unchanged.")
    scorer: Literal["ausweep", "lm_eval"] = option("ausweep", help="Who scores the options (loglik only): 'ausweep' (its own scorer, one pass over each prompt shared by its options) or 'lm_eval' (lm-evaluation-harness runs the sets exported as lm-eval tasks; see lm_eval_model). The two agree to float rounding.")
    lm_eval_model: Literal["hf", "vllm"] = option("hf", help="scorer=lm_eval: lm-eval's model backend. 'hf' wraps the model ausweep loaded (any registry name); 'vllm' loads the model's folder or hub id in vLLM (needs the vllm package and a GPU; registry names built in memory, the tiny-* models, have no folder).")
    seed: int = option(0, help="Seed of the generated sets (phonology, music); every backbone of a sweep sees the same items.")
    progress: bool = option(True, help="Show a progress bar (off inside sweep trials).")

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("model must be a non-empty name")
        if not self.sets:
            raise ValueError("sets must not be empty")
        if len(set(self.sets)) != len(self.sets):
            raise ValueError(f"sets has repeated entries: {self.sets}")
        from ausweep.knowledge_text.sets import set_label

        labels = [set_label(s) for s in self.sets]
        if len(set(labels)) != len(labels):
            raise ValueError(f"sets {self.sets} give two prediction files the same name; rename one file")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_items is not None and self.max_items < 1:
            raise ValueError(f"max_items must be >= 1 or null, got {self.max_items}")
        if self.scorer == "lm_eval":
            for key, bad, why in (("method", self.method != "loglik", "lm-eval scores options by log-likelihood only"),
                                  ("length_norm", self.length_norm, "lm-eval has no per-token mean (its acc_norm divides by bytes)"),
                                  ("prefix_token", self.prefix_token, "lm-eval's hf model adds no BOS-like token the tokenizer does not add")):
                if bad:
                    raise ValueError(f"scorer=lm_eval does not support {key}={getattr(self, key)!r}: {why}; use scorer=ausweep")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


# ----------------------------------------------------------------------------- one trial
