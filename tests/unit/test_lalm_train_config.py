"""LALM training settings: the DeepSpeed config TrainConfig produces, the data order, every preset file.

No Ray and no model here: DeepSpeed's own config parser (``DeepSpeedConfig``) checks the dicts.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from ausweep.config import ConfigError, from_dict
from ausweep.lalm.train import (
    DEEPSPEED_CONFIG_DIR,
    TrainConfig,
    deepspeed_config,
    load_deepspeed_file,
    load_preset,
    micro_batch_indices,
    micro_batches_per_epoch,
    resolve_deepspeed_file,
    total_steps,
)

REPO = Path(__file__).resolve().parents[2]
DS_FILES = sorted(DEEPSPEED_CONFIG_DIR.glob("*.json"))
PRESETS = sorted((REPO / "configs" / "lalm").glob("*.yaml"))


def _has_auto(d) -> bool:
    if isinstance(d, dict):
        return any(_has_auto(v) for v in d.values())
    if isinstance(d, list):
        return any(_has_auto(v) for v in d)
    return d == "auto"


@pytest.mark.parametrize("micro,accum,world", [(1, 1, 1), (4, 1, 2), (2, 3, 8), (3, 5, 7)])
def test_batch_sizes_are_consistent(micro, accum, world):
    cfg = deepspeed_config(TrainConfig(micro_batch_size=micro, grad_accum=accum), world)
    assert cfg["train_micro_batch_size_per_gpu"] == micro
    assert cfg["gradient_accumulation_steps"] == accum
    assert cfg["train_batch_size"] == micro * accum * world


@pytest.mark.parametrize("stage,precision,off_opt,off_par", [
    (2, "fp32", False, False), (2, "bf16", True, False), (3, "fp32", False, False),
    (3, "bf16", False, False), (3, "bf16", True, True), (3, "fp32", False, True),
])
def test_train_config_overrides_the_file(stage, precision, off_opt, off_par):
    t = TrainConfig(zero_stage=stage, precision=precision, offload_optimizer=off_opt, offload_params=off_par,
                    lr=3e-4, weight_decay=0.1, grad_clip=0.5)
    # The offload preset turns both offloads on: TrainConfig must still win over it.
    for base in (None, load_deepspeed_file(DEEPSPEED_CONFIG_DIR / "zero3_offload.json")):
        cfg = deepspeed_config(t, 2, base=base, hidden_size=32)
        zero = cfg["zero_optimization"]
        assert zero["stage"] == stage
        assert cfg["bf16"]["enabled"] is (precision == "bf16")
        assert ("offload_optimizer" in zero) is off_opt
        assert ("offload_param" in zero) is off_par
        assert stage == 3 or not any(k.startswith("stage3_") for k in zero)
        assert cfg["optimizer"]["type"] == "AdamW"
        params = cfg["optimizer"]["params"]
        assert (params["lr"], params["weight_decay"]) == (3e-4, 0.1)
        # DeepSpeed's CPU Adam only where the optimizer is offloaded (it needs a JIT build).
        assert params["torch_adam"] is (not off_opt)
        assert cfg["gradient_clipping"] == 0.5
        assert "scheduler" not in cfg and "fp16" not in cfg
        assert not _has_auto(cfg)


def test_bucket_sizes_follow_the_hidden_size_or_fall_back_to_deepspeed_defaults():
    t = TrainConfig(zero_stage=3)
    filled = deepspeed_config(t, 2, hidden_size=100)["zero_optimization"]
    assert filled["reduce_bucket_size"] == 100 * 100
    assert filled["stage3_prefetch_bucket_size"] == 9000
    assert filled["stage3_param_persistence_threshold"] == 1000
    dropped = deepspeed_config(t, 2)["zero_optimization"]
    assert "reduce_bucket_size" not in dropped and "stage3_prefetch_bucket_size" not in dropped


def test_auto_where_nothing_fills_it_names_the_field():
    with pytest.raises(ConfigError, match="steps_per_print"):
        deepspeed_config(TrainConfig(), 1, base={"steps_per_print": "auto"})


@pytest.mark.parametrize("path", DS_FILES, ids=lambda p: p.name)
def test_every_deepspeed_file_is_accepted_by_deepspeed(path):
    from deepspeed.runtime.config import DeepSpeedConfig

    raw = load_deepspeed_file(path)
    assert isinstance(raw.get("zero_optimization"), dict), path
    for stage, precision in itertools.product((2, 3), ("fp32", "bf16")):
        t = TrainConfig(zero_stage=stage, precision=precision, micro_batch_size=2, grad_accum=2,
                        deepspeed_config=path.name)
        # world size 1: DeepSpeedConfig reads the world size from torch.distributed (not started here).
        ds = DeepSpeedConfig(deepspeed_config(t, 1, hidden_size=64))
        assert ds.train_batch_size == 4 and ds.zero_optimization_stage == stage
        assert ds.bfloat16_config.enabled is (precision == "bf16")


def test_the_file_globs_found_every_shipped_file():
    """The parametrized tests above and below pass vacuously on an empty glob: check what they cover.
    Every DeepSpeed file the code or a preset names must be among DS_FILES, and the shipped
    presets among PRESETS."""
    from ausweep.config import load_yaml

    ds_names, preset_names = {p.name for p in DS_FILES}, {p.name for p in PRESETS}
    assert {"demo.yaml", "qwen3-14b.yaml"} <= preset_names, PRESETS
    named = {resolve_deepspeed_file(TrainConfig(zero_stage=z, offload_optimizer=o)).name
             for z in (2, 3) for o in (False, True) if not (z == 2 and o)}
    named |= {load_yaml(p).get("train", {}).get("deepspeed_config") for p in PRESETS} - {None}
    assert named == {"zero2.json", "zero3.json", "zero3_offload.json", "qwen3-14b_zero3.json"}
    assert named <= ds_names, f"named but not tested: {sorted(named - ds_names)}"


def test_default_file_follows_stage_and_offload():
    assert resolve_deepspeed_file(TrainConfig(zero_stage=2)).name == "zero2.json"
    assert resolve_deepspeed_file(TrainConfig(zero_stage=3)).name == "zero3.json"
    assert resolve_deepspeed_file(TrainConfig(zero_stage=3, offload_optimizer=True)).name == "zero3_offload.json"
    assert resolve_deepspeed_file(TrainConfig(deepspeed_config="qwen3-14b_zero3.json")).parent == DEEPSPEED_CONFIG_DIR


def test_bad_deepspeed_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match="deepspeed_config.*no-such.json"):
        resolve_deepspeed_file(TrainConfig(deepspeed_config="no-such.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"zero_optimization": {"stage": 3,}}')
    with pytest.raises(ConfigError, match=r"bad\.json.*line 1"):
        deepspeed_config(TrainConfig(deepspeed_config=str(bad)), 1)


@pytest.mark.parametrize("bad,field", [
    ({"zero_stage": 1}, "zero_stage"), ({"offload_params": True, "zero_stage": 2}, "offload_params"),
    ({"micro_batch_size": 0}, "micro_batch_size"), ({"cpus_per_worker": 0}, "cpus_per_worker"),
    ({"precision": "fp16"}, "precision"), ({"stop_after_steps": 0}, "stop_after_steps"),
])
def test_invalid_train_configs_are_rejected(bad, field):
    with pytest.raises(ConfigError, match=field):
        from_dict(TrainConfig, bad, where="test.yaml")


def test_fractional_worker_cpus_are_allowed():
    assert from_dict(TrainConfig, {"cpus_per_worker": 0.5}).cpus_per_worker == 0.5


# ----------------------------------------------------------------------------- data order


@pytest.mark.parametrize("n,micro,world", [(10, 2, 2), (7, 1, 3), (16, 4, 4)])
def test_each_epoch_gives_every_rank_distinct_examples(n, micro, world):
    per_epoch = micro_batches_per_epoch(n, micro, world)
    for epoch in range(2):
        seen = []
        for j in range(per_epoch):
            for rank in range(world):
                idx = micro_batch_indices(n, epoch * per_epoch + j, micro, world, rank, seed=3)
                assert len(idx) == micro
                seen += idx
        assert len(seen) == len(set(seen)) == per_epoch * micro * world  # no repeats within an epoch
        assert set(seen) <= set(range(n))


def test_data_order_depends_only_on_seed_epoch_and_rank():
    a = [micro_batch_indices(40, m, 2, 2, 1, seed=0) for m in range(20)]
    assert a == [micro_batch_indices(40, m, 2, 2, 1, seed=0) for m in range(20)]
    assert a != [micro_batch_indices(40, m, 2, 2, 1, seed=1) for m in range(20)]
    assert a[:10] != a[10:]  # epochs 0 and 1 are shuffled differently


def test_too_few_examples_for_one_global_batch():
    with pytest.raises(ValueError, match="fewer than one global micro-batch"):
        micro_batch_indices(3, 0, 2, 2, 0, seed=0)


def test_total_steps():
    assert total_steps(TrainConfig(max_steps=7), 1000, 8) == 7
    assert total_steps(TrainConfig(epochs=3, micro_batch_size=2, grad_accum=2), 40, 2) == 3 * 10 // 2
    assert total_steps(TrainConfig(micro_batch_size=4, grad_accum=8), 16, 2) == 1  # at least one step


# ----------------------------------------------------------------------------- preset files


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_every_lalm_preset_builds(path):
    lalm_cfg, train_cfg, _ = load_preset(path)
    ds = deepspeed_config(train_cfg, train_cfg.num_workers, hidden_size=64)
    assert ds["train_batch_size"] == train_cfg.micro_batch_size * train_cfg.grad_accum * train_cfg.num_workers
    assert lalm_cfg.llm and lalm_cfg.encoder


def test_presets_are_valid_lalm_backbone_study_configs():
    from ausweep.config import load_yaml
    from ausweep.lalm_backbone.study import LALMBackboneConfig

    for path in PRESETS:
        from_dict(LALMBackboneConfig, load_yaml(path), where=str(path))


def test_preset_overrides_and_errors(tmp_path):
    _, t, _ = load_preset(PRESETS[0], ["train.max_steps=3", "train.zero_stage=2"])
    assert (t.max_steps, t.zero_stage) == (3, 2)
    with pytest.raises(ConfigError, match="train.zero_stage"):
        load_preset(PRESETS[0], ["train.zero_stage=5"])
    bad = tmp_path / "p.yaml"
    bad.write_text("lalm: {}\nmodel: {}\n")
    with pytest.raises(ConfigError, match="p.yaml.*model"):
        load_preset(bad)


def test_qwen3_14b_preset_fits_one_node_of_eight_80gb_gpus():
    lalm_cfg, t, _ = load_preset(REPO / "configs" / "lalm" / "qwen3-14b.yaml")
    assert (t.num_workers, t.use_gpu, t.zero_stage, t.precision) == (8, True, 3, "bf16")
    # bf16 weights loaded as such (each rank holds a full copy before ZeRO-3 shards it) and
    # activations recomputed: the per-GPU budget of the preset's comment assumes both.
    assert lalm_cfg.dtype == "bfloat16" and t.gradient_checkpointing
    assert resolve_deepspeed_file(t).name == "qwen3-14b_zero3.json"


def test_fit_rejects_a_bad_data_file_before_starting_ray(tmp_path):
    from ausweep.lalm.data import InstructionFormatError
    from ausweep.lalm.model import LALMConfig
    from ausweep.lalm.train import fit

    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"audio": "missing.wav", "instruction": "Q?", "response": "A"}) + "\n")
    with pytest.raises(InstructionFormatError, match="train.jsonl.*line 1.*audio"):
        fit(LALMConfig(encoder="tiny-whisper", llm="tiny-llama"), TrainConfig(), data, tmp_path / "runs", "x")
    assert not (tmp_path / "runs").exists()
