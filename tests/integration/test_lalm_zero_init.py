"""ZeRO-3 partitioned loading of the LALM on two CPU ranks (torchrun, gloo, real DeepSpeed).

A tiny Whisper and a tiny Llama are saved as checkpoints and loaded the way a real backbone is
(``from_pretrained`` under ``deepspeed.zero.Init``); the builtin tiny names, built whole, are
partitioned right after. Either way each rank ends up holding half of every weight and the gathered
model computes exactly what the same LALM built without ZeRO computes: the LoRA adapters (B = 0),
Q-Former and projection are initialised outside zero.Init, where an in-place init would be lost.
Training with it is covered by test_lalm_deepspeed.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]
SCRIPT = Path(__file__).with_name("zero_init_script.py")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    from tests.tiny import save_tiny_backbones

    models = save_tiny_backbones(tmp_path_factory.mktemp("zero_init"))
    sr = 16000
    t = np.arange(sr) / sr
    for i, freq in enumerate((220.0, 1760.0)):
        sf.write(models / f"tone{i}.wav", (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    out = models / "out"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(SCRIPT), str(out), str(models)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [json.loads(Path(f"{out}.rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.parametrize("case", ["checkpoint", "builtin"])
def test_each_rank_holds_its_half_of_every_weight(ranks, case):
    r0, r1 = ranks[0][case], ranks[1][case]
    assert r0["all_zero_params"] and r0["all_partitioned"] and r0["placeholder_numel"] == 0
    whole = r0["whole"]
    assert whole == r1["whole"] == r0["plain_total"] > 0  # the partitions make up the whole model
    # Each parameter's partition is padded to a multiple of the world size: the share is half, up
    # to at most one element per parameter.
    assert r0["held"] == r1["held"]
    assert whole <= 2 * r0["held"] < whole + 2 * r0["n_params"]


def test_checkpoints_load_partitioned_not_whole_then_partitioned(ranks):
    assert ranks[0]["from_pretrained_partitioned"] and ranks[1]["from_pretrained_partitioned"]


@pytest.mark.parametrize("case", ["checkpoint", "builtin"])
def test_gathered_model_computes_what_the_unpartitioned_one_does(ranks, case):
    for r in ranks:
        c = r[case]
        assert c["n_lora_b"] > 0 and c["lora_b_abs"] == 0.0  # peft's zero B survived partitioning
        assert c["logit_scale"] > 0 and c["max_abs_diff"] <= 1e-6 * c["logit_scale"]
        assert not c["hf_zero3_after"]
