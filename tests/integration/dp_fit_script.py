"""Run by tests/integration/test_adapt_data_parallel.py under torchrun (or alone): fit a tiny
masked LM with LoRA through ausweep.audiobert.train.fit and save the trained weights of this rank."""

import os
import sys

import torch


def main(out: str) -> None:
    from peft import LoraConfig, get_peft_model

    from ausweep.audiobert.config import TrainConfig
    from ausweep.audiobert.train import fit, trainable_state_dict
    from ausweep.models.tiny import build_tiny_text

    model, tok = build_tiny_text("tiny-bert", head=True)
    model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = 0.0
    for m in model.modules():  # no dropout: the two runs must see the same function
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    torch.manual_seed(0)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["query", "value"]))
    words = ["dog", "cat", "cow", "bird", "violin", "piano", "drum", "bell"]
    enc = tok([f"the sound of a {tok.mask_token}" for _ in words], padding=True, return_tensors="pt")
    labels = torch.full_like(enc["input_ids"], -100)
    mask_pos = enc["input_ids"] == tok.mask_token_id
    labels[mask_pos] = torch.tensor(tok.convert_tokens_to_ids(words))  # one labelled token per row
    data = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}
    cfg = TrainConfig(lr=5e-2, epochs=3, batch_size=4, warmup_ratio=0.0, max_grad_norm=0.0, seed=0, restore_best=False)
    result = fit(model, data, cfg)
    rank = int(os.environ.get("RANK", "0"))
    torch.save({"state": trainable_state_dict(model), "losses": [h["train_loss"] for h in result.history]},
               f"{out}.rank{rank}.pt")


if __name__ == "__main__":
    main(sys.argv[1])
