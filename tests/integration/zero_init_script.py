"""Run by tests/integration/test_lalm_zero_init.py under torchrun (2 CPU ranks, gloo): build a LoRA
LALM with and without ZeRO-3 partitioned loading and write, per rank, what each rank holds and
whether the gathered model computes what the whole one does.

argv: OUT MODELS_DIR. MODELS_DIR holds ``whisper/`` and ``llama/``, tiny models saved as checkpoints
(the from_pretrained path a real backbone takes) and ``tone0.wav``, ``tone1.wav``; the builtin tiny names are built whole and
partitioned after (the other path).
"""

import json
import os
import sys

os.environ.setdefault("DS_ACCELERATOR", "cpu")


def main(out: str, models: str) -> None:
    import deepspeed
    import torch
    import torch.distributed as dist
    from deepspeed.runtime.zero.partition_parameters import ZeroParamStatus, is_zero_param
    from transformers.integrations import is_deepspeed_zero3_enabled

    from ausweep.lalm.data import Collator, InstructionExample
    from ausweep.lalm.model import LALMConfig, build_lalm
    from ausweep.lalm.train import TrainConfig
    from ausweep.lalm.train.ds_config import deepspeed_config
    from ausweep.models.heads import lm_config

    deepspeed.init_distributed(dist_backend="gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    examples = [InstructionExample(f"{models}/tone{i}.wav", "High or low?", r) for i, r in enumerate(("low", "high"))]
    result = {"rank": rank, "world": world}
    cases = {
        "checkpoint": LALMConfig(encoder=f"{models}/whisper", llm=f"{models}/llama", qformer_layers=1, num_queries=4,
                                 qformer_heads=2, max_text_tokens=16),
        "builtin": LALMConfig(encoder="tiny-whisper", llm="tiny-llama", qformer_layers=1, num_queries=4,
                              qformer_heads=2, max_text_tokens=16),
    }
    for case, cfg in cases.items():
        hidden = int(lm_config(cfg.llm).get_text_config().hidden_size)
        ds = deepspeed_config(TrainConfig(zero_stage=3, micro_batch_size=1, num_workers=world), world, hidden_size=hidden)
        if case == "checkpoint":
            # The checkpoints come out of from_pretrained already partitioned (not partitioned after).
            from ausweep.lalm.model import _load_encoder
            from ausweep.models.heads import load_lm_with_head

            lm = load_lm_with_head(cfg.llm, kind="causal", zero3_config=ds).model
            enc, _ = _load_encoder(cfg.encoder, "cpu", cfg.dtype, ds)
            result["from_pretrained_partitioned"] = all(
                is_zero_param(p) and p.numel() == 0 for m in (lm, enc) for p in m.parameters())
            del lm, enc
        zl = build_lalm(cfg, zero3_config=ds)
        params = list(zl.parameters())
        held = sum(p.ds_tensor.numel() for p in params if is_zero_param(p))
        whole = sum(p.ds_numel for p in params if is_zero_param(p))
        batch = Collator(zl.tokenizer, zl.feature_extractor, cfg.max_text_tokens)(examples)
        with torch.no_grad():
            with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
                lora_b = [float(p.abs().sum()) for n, p in zl.named_parameters() if "lora_B" in n]
                logits_z = zl(**batch).logits
        plain = build_lalm(cfg)
        with torch.no_grad():
            logits = plain(**batch).logits
        result[case] = {
            "all_zero_params": all(is_zero_param(p) for p in params),
            "all_partitioned": all(p.ds_status == ZeroParamStatus.NOT_AVAILABLE for p in params),
            "placeholder_numel": sum(p.numel() for p in params),
            "n_params": len(params), "held": held, "whole": whole, "plain_total": plain.parameter_counts()["total"],
            "n_lora_b": len(lora_b), "lora_b_abs": sum(lora_b),
            "max_abs_diff": float((logits_z - logits).abs().max()), "logit_scale": float(logits.abs().max()),
            "hf_zero3_after": is_deepspeed_zero3_enabled(),  # the loading context does not leak
        }
        del zl, plain
    with open(f"{out}.rank{rank}.json", "w") as f:
        json.dump(result, f)
    dist.barrier()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
