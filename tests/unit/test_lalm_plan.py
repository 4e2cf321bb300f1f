"""The LALM memory plan: parameter counts on the meta device, model states as DeepSpeed estimates them."""

from __future__ import annotations

import json

import pytest

from ausweep.lalm.model import LALMConfig
from ausweep.lalm.plan import _largest_layer, _unique_params, backbone_config, build_meta, lora_parameters, main, model_states


def _folder(tmp_path, name, **shape):
    import transformers as tf

    conf = tf.Qwen3Config(vocab_size=2048, hidden_size=128, intermediate_size=352, num_hidden_layers=3, num_attention_heads=4,
                          num_key_value_heads=2, head_dim=32, **shape)
    folder = tmp_path / name
    conf.save_pretrained(folder)
    return folder, conf


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("stage", [2, 3])
def test_full_finetuning_model_states_agree_with_deepspeeds_estimators(tmp_path, tied, stage):
    import transformers as tf
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs, model_to_params
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    folder, conf = _folder(tmp_path, "lm", tie_word_embeddings=tied)
    _, meta_llm, _, _ = build_meta(LALMConfig(encoder="tiny-whisper", llm=str(folder), llm_mode="full"))
    assert next(meta_llm.parameters()).is_meta  # no storage: a 14B config costs nothing
    n = sum(p.numel() for p in _unique_params(meta_llm))
    largest = _largest_layer(meta_llm)

    real = tf.AutoModelForCausalLM.from_config(conf)  # DeepSpeed counts a real model (shared tensors once)
    ds_total, ds_largest = model_to_params(real)
    assert (n, largest) == (ds_total, ds_largest)
    for gpus, nodes in ((8, 1), (8, 4), (1, 1)):
        ours = model_states(n, 0, largest, gpus * nodes, stage)
        ours_total = ours["params"] + ours["grads"] + ours["optimizer"] + ours["live_buffers"]
        if stage == 2:
            _, ds_gpu = estimate_zero2_model_states_mem_needs(ds_total, gpus, nodes, cpu_offload=False)
        else:
            _, ds_gpu, _ = estimate_zero3_model_states_mem_needs(ds_total, ds_largest, gpus, nodes, cpu_offload=False,
                                                                 cpu_offload_params=False)
        assert ours_total == pytest.approx(ds_gpu, rel=0.05), (gpus, nodes)
        # with the optimizer offloaded, the GPU keeps the weights (DeepSpeed: 2 B x N for ZeRO-2)
        off = model_states(n, 0, largest, gpus * nodes, stage, offload_optimizer=True)
        if stage == 2:
            _, ds_off = estimate_zero2_model_states_mem_needs(ds_total, gpus, nodes, cpu_offload=True)
        else:
            _, ds_off, _ = estimate_zero3_model_states_mem_needs(ds_total, ds_largest, gpus, nodes, cpu_offload=True,
                                                                 cpu_offload_params=False)
        assert off["params"] + off["grads"] + off["optimizer"] + off["live_buffers"] == pytest.approx(ds_off, rel=0.05)


def test_lora_count_is_what_peft_adds():
    from peft import LoraConfig, get_peft_model

    from ausweep.models.tiny import build_tiny_text

    for name, targets in (("tiny-llama", ["q_proj", "v_proj"]), ("tiny-gpt2", ["c_attn", "c_proj"])):
        model = build_tiny_text(name, head=True)[0]
        expected = lora_parameters(model, targets, r=4)
        before = sum(p.numel() for p in model.parameters())
        peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=targets, fan_in_fan_out=name == "tiny-gpt2"))
        assert sum(p.numel() for p in peft_model.parameters()) - before == expected > 0


def test_vendored_backbones_build_with_their_published_sizes():
    # the shapes that matter, transcribed from the hub (see the folder's SOURCE.md): sizes in 1e9
    published = {"Qwen/Qwen3-14B": 14.77, "Qwen/Qwen3-8B": 8.19, "Qwen/Qwen3-4B": 4.02, "Qwen/Qwen2.5-7B-Instruct": 7.62,
                 "meta-llama/Llama-3.1-8B-Instruct": 8.03, "allenai/OLMo-2-1124-7B-Instruct": 7.30,
                 "mistralai/Mistral-7B-Instruct-v0.3": 7.25, "qwen3-14b": 14.77}
    import torch
    import transformers as tf

    for name, size in published.items():
        with torch.device("meta"):
            model = tf.AutoModelForCausalLM.from_config(backbone_config(name))
        assert sum(p.numel() for p in _unique_params(model)) / 1e9 == pytest.approx(size, abs=0.01), name


def test_cli_plans_the_shipped_14b_preset_offline(capsys):
    assert main(["configs/lalm/qwen3-14b.yaml", "--json"]) == 0
    lora = json.loads(capsys.readouterr().out)
    assert main(["configs/lalm/qwen3-14b.yaml", "lalm.llm_mode=full", "--json"]) == 0
    full = json.loads(capsys.readouterr().out)
    n = full["counts"]["llm"]
    assert 14.7e9 < n < 14.8e9 and lora["counts"]["llm"] == n
    # ZeRO-3 over 8 GPUs: every weight sharded (bf16, 2 B)
    assert full["params"] == pytest.approx(2 * (n + full["counts"]["encoder"] + full["counts"]["qformer"]) / 8)
    assert lora["optimizer"] < full["optimizer"] / 50  # only ~0.19e9 parameters train under LoRA
    assert lora["per_gpu"] < 16 * 2**30 and full["per_gpu"] < 80 * 2**30
    assert main(["configs/lalm/qwen3-14b.yaml", "train.gradient_checkpointing=false", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["activations"] > 5 * lora["activations"]
    assert main(["configs/lalm/qwen3-14b.yaml", "lalm.llm=no/such-model"]) == 2
    assert "no/such-model" in capsys.readouterr().err


def test_host_memory_at_load_with_and_without_partitioned_loading(capsys):
    def run(*overrides):
        assert main(["configs/lalm/qwen3-14b.yaml", *overrides, "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    part, whole, offload = run(), run("train.zero_init=false"), run("train.offload_params=true")
    c = part["counts"]
    weights = 2 * (c["encoder"] + c["llm"])  # bf16
    built = 4 * c["qformer"] + 2 * c["lora"]  # the connector and adapters every rank builds whole
    # Without zero.Init every rank holds the whole model (~29 GiB for 14B): 8 of them per node.
    assert whole["host_at_load"] == pytest.approx(weights + built) and whole["checkpoint_mapped"] == 0
    assert 28 * 2**30 < whole["host_at_load"] < 30 * 2**30
    # Loaded into partitions on the GPUs, a rank's host memory is what it builds itself; rank 0
    # maps the checkpoint once per node.
    assert part["host_at_load"] == pytest.approx(built) and part["checkpoint_mapped"] == pytest.approx(weights)
    assert part["host_at_load"] < 1e9
    # With the partitions on the host: an eighth of the weights, plus a layer gathered while it loads.
    assert offload["host_at_load"] == pytest.approx(built + weights / 8 + 2 * 2 * c["largest_layer"])


@pytest.mark.parametrize("family", ["qwen3", "llama"])
def test_activation_estimate_matches_what_autograd_saves(tmp_path, family):
    """Without checkpointing, the per-layer estimate is what autograd keeps for the backward pass
    (the tensors saved during a bf16 forward, shared storage once, weights excluded)."""
    import dataclasses

    import torch
    import transformers as tf

    from ausweep.lalm.plan import activation_bytes, count

    shape = dict(vocab_size=4096, hidden_size=256, intermediate_size=704, num_hidden_layers=4, num_attention_heads=8,
                 num_key_value_heads=2, head_dim=32, attn_implementation="sdpa")
    conf = tf.Qwen3Config(**shape) if family == "qwen3" else tf.LlamaConfig(**shape)
    conf.save_pretrained(tmp_path / family)
    torch.manual_seed(0)
    model = tf.AutoModelForCausalLM.from_config(conf).to(torch.bfloat16)
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = {}

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    b, s = 2, 96
    ids = torch.randint(0, conf.vocab_size, (b, s))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=ids, labels=ids)
    measured = sum(v for k, v in saved.items() if k not in weights) - b * s * conf.vocab_size * 4  # less the fp32 log-softmax
    cfg = LALMConfig(encoder="tiny-whisper", llm=str(tmp_path / family), llm_mode="full", num_queries=32, max_text_tokens=64,
                     qformer_layers=1, dtype="bfloat16")
    c = count(cfg)
    assert c.qk_norm == (family == "qwen3")
    act, _ = activation_bytes(dataclasses.replace(c, encoder_frames=0), cfg, b, checkpointing=False)
    qformer, _ = activation_bytes(dataclasses.replace(c, layers=0, encoder_frames=0), cfg, b, checkpointing=False)
    assert act - qformer == pytest.approx(measured, rel=0.15)


def test_verify_backbones_reports_every_differing_field(tmp_path):
    """`python -m ausweep.models.verify backbones` against a folder of hub files: equal files give no
    difference, a changed shape field is found."""
    import shutil

    from ausweep.lalm.plan import BACKBONES, verify_backbones

    for p in BACKBONES.glob("*.json"):
        shutil.copy(p, tmp_path / p.name)
    assert all(c.max_abs_diff == 0 for c in verify_backbones(str(tmp_path)))
    changed = json.loads((tmp_path / "Qwen--Qwen3-8B.json").read_text())
    changed["num_key_value_heads"] = 4
    changed["transformers_version"] = "4.51.0"  # how it was saved: not compared
    (tmp_path / "Qwen--Qwen3-8B.json").write_text(json.dumps(changed))
    bad = [(c.name, c.what) for c in verify_backbones(str(tmp_path)) if c.max_abs_diff]
    assert bad == [("backbone Qwen/Qwen3-8B", "num_key_value_heads")]
