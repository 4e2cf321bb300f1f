"""LALM training end to end: real Ray Train workers running real DeepSpeed ZeRO-3 on CPU (gloo).

Tiny random Whisper + tiny random Llama behind a one-block Q-Former, on four sine-tone clips
with instructions. The two models are saved as checkpoints first, so the workers load them as a
real backbone loads: under ZeRO-3 partitioned initialisation (``train.zero_init``, the default).
Three training calls share the module (about 40 s each on 2 idle cores):

* ``full``: 8 steps in one call, a checkpoint every 4;
* ``split``: the same run stopped after 4 steps, then started again under the same name, so
  Ray Train hands the workers the step-4 checkpoint and they resume from it. Its first call loads
  the model whole (``zero_init=False``): the losses must not depend on how the model was loaded.

The four examples make exactly one global micro-batch (2 per worker x 2 workers), so every
step sees the same batch and the loss must fall.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ausweep.lalm.model import LALMConfig
from ausweep.lalm.train import TrainConfig, fit

pytestmark = pytest.mark.integration

STEPS, CKPT = 8, 4


def lalm_config(models: Path) -> LALMConfig:
    return LALMConfig(encoder=str(models / "whisper"), llm=str(models / "llama"), qformer_layers=1, num_queries=4,
                      qformer_heads=2, max_text_tokens=32)


def train_cfg(**kw) -> TrainConfig:
    # 2 workers x 0.5 CPU: the shared 2-CPU Ray session also runs the driver's tasks.
    return TrainConfig(lr=1e-2, max_steps=STEPS, warmup_steps=1, micro_batch_size=2, zero_stage=3,
                       num_workers=2, cpus_per_worker=0.5, checkpoint_every=CKPT, **kw)


@pytest.fixture(scope="module")
def tones(tmp_path_factory) -> Path:
    from ausweep.lalm.data import InstructionExample, save_instructions

    root = tmp_path_factory.mktemp("tones")
    sr, examples = 16000, []
    for i, freq in enumerate((220.0, 330.0, 1760.0, 2640.0)):
        t = np.arange(sr) / sr
        sf.write(root / f"tone{i}.wav", (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr)
        examples.append(InstructionExample(str(root / f"tone{i}.wav"), "Is this tone high or low?",
                                           "high" if freq > 1000 else "low"))
    return save_instructions(examples, root / "train.jsonl")


@pytest.fixture(scope="module")
def lalm(tmp_path_factory) -> LALMConfig:
    from tests.tiny import save_tiny_backbones

    return lalm_config(save_tiny_backbones(tmp_path_factory.mktemp("backbones")))


@pytest.fixture(scope="module")
def runs(tones, lalm, ray_session, tmp_path_factory) -> dict:
    storage = tmp_path_factory.mktemp("lalm_runs")
    full = fit(lalm, train_cfg(), tones, storage, "full")
    first = fit(lalm, train_cfg(stop_after_steps=CKPT, zero_init=False), tones, storage, "split")
    resumed = fit(lalm, train_cfg(), tones, storage, "split")
    return {"storage": storage, "data": tones, "lalm": lalm, "full": full, "first": first, "resumed": resumed}


def test_zero3_loss_decreases_over_steps(runs):
    full = runs["full"]
    losses = full["losses"]
    assert len(losses) == STEPS and all(math.isfinite(x) for x in losses)
    assert (full["step"], full["finished"], full["start_step"]) == (STEPS, 1.0, 0)
    # One fixed batch, lr 1e-2: the first two losses are ~5.9, the last two ~5.7 when this was written.
    assert np.mean(losses[-2:]) < np.mean(losses[:2]) - 0.05
    assert full["tokens_per_s"] > 0
    assert Path(full["model_dir"], "trainable.safetensors").is_file()


def test_resumed_run_matches_the_uninterrupted_one(runs):
    first, resumed, full = runs["first"], runs["resumed"], runs["full"]
    assert (first["step"], first["finished"]) == (CKPT, 0.0)
    # The second call really started from the checkpoint: it trained steps 5-8 only.
    assert (resumed["start_step"], resumed["step"], resumed["finished"]) == (CKPT, STEPS, 1.0)
    # Loaded whole (first) or into partitions (full): the same weights, the same losses.
    assert first["losses"] == pytest.approx(full["losses"][:CKPT], rel=1e-6, abs=0)
    # Same fp32 arithmetic in the same order on the same batch with the same dropout masks, and
    # ZeRO-3 restores the fp32 shards and Adam moments exactly; a 2-rank gloo sum does not depend
    # on order. So the next step's loss is expected to be bit-identical; 1e-6 relative leaves
    # room only for float noise, far below the ~1e-2 change one optimizer step makes.
    assert resumed["losses"][CKPT] == pytest.approx(full["losses"][CKPT], rel=1e-6, abs=0)
    assert resumed["losses"] == pytest.approx(full["losses"], rel=1e-6, abs=0)


def test_final_weights_are_gathered_and_equal_after_resume(runs):
    from safetensors.torch import load_file

    a = load_file(str(Path(runs["full"]["model_dir"]) / "trainable.safetensors"))
    b = load_file(str(Path(runs["resumed"]["model_dir"]) / "trainable.safetensors"))
    assert set(a) == set(b) and any("lora_A" in k for k in a) and any(k.startswith("qformer.") for k in a)
    for k in a:
        assert a[k].numel() > 0, k  # ZeRO-3 shards were gathered, not saved as empty placeholders
        assert np.allclose(a[k].numpy(), b[k].numpy(), rtol=1e-5, atol=1e-7), k


def test_trained_lalm_loads_and_differs_from_its_initial_weights(runs):
    import torch

    from ausweep.lalm.model import build_lalm, load_lalm

    trained = load_lalm(runs["full"]["model_dir"])
    init = build_lalm(runs["lalm"])  # same seed: the Q-Former starts from the same weights
    moved = [n for n, p in trained.qformer.named_parameters() if not torch.equal(p, dict(init.qformer.named_parameters())[n])]
    assert moved, "training did not change the Q-Former"
    assert trained.parameter_counts() == init.parameter_counts()


def test_existing_run_without_resume_is_refused(runs):
    with pytest.raises(FileExistsError, match="full"):
        fit(runs["lalm"], train_cfg(), runs["data"], runs["storage"], "full", resume=False)
