"""bench/gpu/run.sh --cpu --tiny: the GPU measurement script runs every part, on the CPU at tiny sizes.

The script is meant for a GPU machine lent for a few minutes (issue 16); this keeps it from rotting
between loans. Real DeepSpeed (gloo, world size 1), real transformers models built from the
vendored configs, ausweep's real extraction worker. Timings on a shared CI machine mean nothing;
what is checked is that every part either measured numbers or says why it skipped, and that the
batched probes equal the ones trained alone.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

REPO = Path(__file__).resolve().parents[2]
PARTS = {"probe", "lalm", "extract", "equivalence"}


def _run(out: Path, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    env = {**os.environ, "AUSWEEP_GPU_WHEELS": "0", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([str(REPO / "bench" / "gpu" / "run.sh"), "--cpu", "--tiny", "--out", str(out), *extra],
                          env=env, capture_output=True, text=True, timeout=360)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc, json.loads((out / "results.json").read_text())


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_cpu_tiny_run_measures_or_explains_every_part(tmp_path):
    proc, res = _run(tmp_path)
    assert res["schema"] == "ausweep-gpu-bench-1" and res["finished"] and res["device"] == "cpu"
    assert set(res["parts"]) == PARTS
    assert "| part | case | result | status |" in proc.stdout
    for name, part in res["parts"].items():
        assert part["status"] in ("ok", "partial", "skipped"), (name, part.get("reason"), part.get("traceback"))
        if part["status"] == "skipped":
            assert part["reason"], name
        for skipped in part.get("skipped", []):
            assert skipped["reason"], (name, skipped)

    probe = res["parts"]["probe"]
    if probe["status"] != "skipped":
        assert sorted([r["S"] for r in probe["rows"]] + [s["S"] for s in probe["skipped"]]) == [2, 4, 8]
        assert _positive(probe["one_at_a_time"]["probes_per_s"])
        for r in probe["rows"]:
            assert _positive(r["probes_per_s"]) and _positive(r["speedup"]) and _positive(r["achieved_tflops"])
            # each split's start depends only on (seed, split): batched or alone, the same weights
            assert r["max_param_diff_vs_single"] <= 1e-5

    lalm = res["parts"]["lalm"]
    if lalm["status"] != "skipped":
        assert "ausweep.lalm.plan" in lalm["memory_plan"]
        ran = [(r["llm"], r["zero"]) for r in lalm["rows"]] + [(s["llm"], s["zero"]) for s in lalm["skipped"]]
        assert sorted(ran) == [("qwen2.5-1.5b", 2), ("qwen2.5-1.5b", 3)]
        for r in lalm["rows"]:
            assert "error" not in r, r.get("traceback")
            assert _positive(r["text_tokens_per_s"]) and _positive(r["mfu_llm_vs_cpu_gemm"])
            assert math.isfinite(r["loss_first"]) and math.isfinite(r["loss_last"])
            assert r["n_trainable"] < r["n_llm"] + r["n_encoder"]  # LoRA: the backbone stays frozen
            assert r["memory_plan"]["status"]  # the plan's prediction, or why there is none

    extract = res["parts"]["extract"]
    if extract["status"] != "skipped":
        ran = [r["model"] for r in extract["rows"]] + [s["model"] for s in extract["skipped"]]
        assert sorted(ran) == ["ast-audioset", "whisper-large-v3"]
        for r in extract["rows"]:
            assert _positive(r["ausweep_clips_per_s"]) and _positive(r["bare_clips_per_s"]) and r["dtype"] == "float32"

    # part 4: ausweep.models.reference_equivalence, real packages where they import, stand-ins named
    eq = res["parts"]["equivalence"]
    assert sorted(r["reference"] for r in eq["rows"]) == ["audiomae", "laion_clap", "pann", "passt"]
    for r in eq["rows"]:
        if r["status"] == "ok":
            assert r["max_diff"] < r["tolerance"] <= 1e-4 * max(1.0, r["scale"]), r
            assert r["scale"] > 0.05 and r["device"] == "cpu"  # not comparing zeros
            assert {r["package"], *r["imports"]} <= set(r["packages"]), r  # each real, or a named stand-in
            assert all(v.startswith("real") or k in r["stand_ins"] for k, v in r["packages"].items()), r
        else:  # an explicit reason: the reference is not installed, or the budget ran out
            assert r["status"].startswith(("not available: ", "skipped: ")) and len(r["status"]) > 20, r
    assert any(r["status"] == "ok" for r in eq["rows"]) or eq["status"] == "skipped"


def test_a_spent_budget_skips_every_part_and_says_so(tmp_path):
    _, res = _run(tmp_path, "--budget-s", "1")
    assert res["finished"] and set(res["parts"]) == PARTS
    for part in res["parts"].values():
        assert part["status"] == "skipped" and "budget" in part["reason"]
