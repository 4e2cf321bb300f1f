"""bench/gpu/run.py's bookkeeping: the probe FLOP count, the vendored configs, the budget (issue 16)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("ausweep_gpu_bench", REPO / "bench" / "gpu" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("restrict", [True, False])
def test_probe_step_flops_match_torch_flop_counter(bench, restrict):
    """The per-step matmul count equals what torch's FlopCounterMode sees per extra training step."""
    from torch.utils.flop_counter import FlopCounterMode

    from ausweep.probe import ProbeConfig, init_params, make_splits, split_masks, train_probes
    from ausweep.probe.train import n_train_classes

    n_classes, dt, da, n_probes = 20, 24, 16, 3
    rng = torch.Generator().manual_seed(0)
    text, audio = torch.randn(n_classes, dt, generator=rng), torch.randn(n_classes, da, generator=rng)
    masks = split_masks(make_splits(n_classes, n_probes, 0.7, 0), n_classes)

    def flops(epochs: int) -> int:
        cfg = ProbeConfig(epochs=epochs, shared_dim=8, restrict_to_span=restrict)
        with FlopCounterMode(display=False) as counter:
            train_probes(text, audio, masks, cfg, init_params(dt, da, 8, 0, range(n_probes)))
        return counter.get_total_flops()

    per_step = (flops(4) - flops(1)) // 3  # the one-off work (span bases, final loss) cancels
    n_rows = n_train_classes(n_classes, 0.7)
    assert per_step == n_probes * bench.probe_step_flops(n_rows, dt, da, 8, restrict)


@pytest.mark.parametrize(("name", "cls", "expected"), [
    # published sizes: Qwen2.5 model cards (1.54B / 7.61B parameters), Whisper large-v3 1,543,490,560
    # (encoder + decoder), AST AudioSet 86.2M without its 527-class head
    ("qwen2.5-1.5b", "causal", 1_543_714_304),
    ("qwen2.5-7b", "causal", 7_615_616_512),
    ("whisper-large-v3", "whisper", 1_543_490_560),
    ("ast-audioset", "ast", 86_187_264),
])
def test_vendored_configs_give_the_published_sizes(bench, name, cls, expected):
    import transformers as tf

    config = bench.load_config(name)
    with torch.device("meta"):  # shapes only: no memory, no init
        model = {"causal": tf.AutoModelForCausalLM.from_config, "whisper": tf.WhisperModel,
                 "ast": tf.ASTModel}[cls](config)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_every_vendored_config_says_where_it_comes_from():
    configs = sorted(p.stem for p in (REPO / "bench" / "gpu" / "configs").glob("*.json"))
    provenance = (REPO / "bench" / "gpu" / "configs" / "README.md").read_text()
    assert configs
    for name in configs:
        json.loads((REPO / "bench" / "gpu" / "configs" / f"{name}.json").read_text())
        assert f"`{name}.json`" in provenance


def test_tiny_configs_shrink_every_family(bench):
    for name in ("qwen2.5-1.5b", "whisper-large-v3", "ast-audioset"):
        full, tiny = bench.load_config(name), bench.load_config(name, tiny=True)
        assert type(full) is type(tiny)
        assert tiny.num_hidden_layers == 2 < full.num_hidden_layers


def test_equivalence_part_stops_its_child_at_its_share_and_says_why(bench):
    """Part 4 runs in a child process that is stopped when the part's share runs out: every check
    it did not finish is a row with the reason, and the part is reported as skipped, not failed."""
    import argparse
    import time

    budget = bench.Budget(1e9)
    budget.start_part(2.0)  # less than the child needs to import torch
    t0 = time.monotonic()
    res = bench.part_equivalence(argparse.Namespace(cpu=True, tiny=True), budget)
    assert time.monotonic() - t0 < 30
    assert sorted(r["reference"] for r in res["rows"]) == ["audiomae", "laion_clap", "pann", "passt"]
    # either the child was stopped at the share, or (a fast start) it saw the share too small for each
    # check and skipped it itself; both rows say why
    assert all(r["status"].startswith("skipped: ") and ("stopped after" in r["status"] or "left in the budget" in r["status"])
               for r in res["rows"]), res["rows"]
    assert res["status"] == "skipped" and res["reason"]
