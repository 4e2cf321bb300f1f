"""How many trials a sweep runs at once (ausweep.runtime), without Ray.

The bug these guard against: capping ``max_concurrent_trials`` at the GPUs a cluster has *now*
stops an autoscaling cluster from ever growing (Tune never asks for more than is there).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ausweep.config import ConfigError
from ausweep.runtime import (
    Capacity,
    NodeGroup,
    decide_max_concurrent,
    launcher_capacity,
    max_concurrent_trials,
    max_trials,
    trials_per_node,
)
from ausweep.sweep.runner import storage_root
from ausweep.sweep.spec import load_sweep

REPO = Path(__file__).resolve().parents[2]
GPU_TRIAL = {"CPU": 2, "GPU": 0.5}


def _sweep_resources(name: str) -> dict[str, float]:
    res = load_sweep(name).spec.resources
    return {"CPU": res.cpu, "GPU": res.gpu}


def test_trials_per_node_counts_fractions_exactly_and_the_scarcest_resource_binds():
    assert trials_per_node({"CPU": 16, "GPU": 1}, {"CPU": 0, "GPU": 0.1}) == 10
    assert trials_per_node({"CPU": 16, "GPU": 0.3}, {"GPU": 0.1}) == 3  # 0.3 / 0.1 = 2.999... in floats
    assert trials_per_node({"CPU": 4, "GPU": 1}, GPU_TRIAL) == 2
    assert trials_per_node({"CPU": 3, "GPU": 8}, GPU_TRIAL) == 1  # CPUs run out first
    assert trials_per_node({"CPU": 96}, GPU_TRIAL) == 0  # no GPU on the node
    with pytest.raises(ValueError):
        trials_per_node({"CPU": 4}, {"CPU": 0, "GPU": 0})


@pytest.mark.parametrize("file", ["aws.yaml", "gcp.yaml"])
def test_the_launcher_configs_largest_cluster_holds_48_lora_rank_trials(file):
    """8 one-GPU nodes (2 trials each at {cpu 2, gpu 0.5}) + 2 eight-GPU nodes (16 each); the head has no CPUs."""
    config = yaml.safe_load((REPO / "cluster" / file).read_text())
    capacity = launcher_capacity(config, source=file)
    assert capacity is not None and capacity.max_workers == 10 and not capacity.fixed
    assert sum(g.head for g in capacity.groups) == 1
    trial = _sweep_resources("lora_rank")
    assert trial == GPU_TRIAL
    assert max_trials(capacity, trial) == 48
    decision = decide_max_concurrent(trial, capacity=capacity)
    assert decision.max_concurrent == 48 and file in decision.reason and decision.warning is None


def test_the_launchers_max_workers_is_shared_and_filled_with_the_roomiest_nodes_first():
    config = {
        "max_workers": 3,
        "head_node_type": "head",
        "available_node_types": {
            "head": {"resources": {"CPU": 0}},
            "small": {"resources": {"CPU": 4, "GPU": 1}, "max_workers": 5},  # 2 trials a node
            "big": {"resources": {"CPU": 32, "GPU": 4}, "max_workers": 2},  # 8 trials a node
            "cpu": {"resources": {"CPU": 64}, "max_workers": 3},  # holds none: must not use up the budget
        },
    }
    capacity = launcher_capacity(config, source="test")
    assert max_trials(capacity, GPU_TRIAL) == 2 * 8 + 1 * 2
    config["max_workers"] = 100
    assert max_trials(launcher_capacity(config, source="test"), GPU_TRIAL) == 2 * 8 + 5 * 2
    # A worker type without its own max_workers may use the whole budget (Ray fills it in the same way).
    del config["available_node_types"]["small"]["max_workers"]
    assert max_trials(launcher_capacity(config, source="test"), GPU_TRIAL) == 2 * 8 + 98 * 2
    # A type whose resources Ray would detect at start-up: the largest cluster is not known.
    config["available_node_types"]["auto"] = {"node_config": {}}
    assert launcher_capacity(config, source="test") is None


def test_an_autoscaling_cluster_is_not_capped_at_the_gpus_it_has_now():
    """The regression: one GPU node is up, the autoscaler may add more. The old rule gave 2."""
    unknown = decide_max_concurrent(GPU_TRIAL, capacity=None)
    assert unknown.max_concurrent is None and "autoscale" in unknown.reason
    unlimited = Capacity((NodeGroup({"CPU": 4, "GPU": 1}, None),), source="gcs")
    assert decide_max_concurrent(GPU_TRIAL, capacity=unlimited).max_concurrent is None
    bounded = Capacity((NodeGroup({"CPU": 4, "GPU": 1}, 6),), source="gcs", max_resources={"GPU": 4})
    assert decide_max_concurrent(GPU_TRIAL, capacity=bounded).max_concurrent == 8  # 4 GPUs / 0.5


def test_a_fixed_cluster_is_capped_at_what_fits_on_its_nodes():
    two_nodes = Capacity((NodeGroup({"CPU": 8, "GPU": 1}, 1), NodeGroup({"CPU": 8, "GPU": 1}, 1)),
                         source="this process's own Ray", fixed=True)
    # 0.6 GPU a trial: 2 GPUs hold 3 shares in total but only one per node.
    assert decide_max_concurrent({"CPU": 1, "GPU": 0.6}, capacity=two_nodes).max_concurrent == 2
    no_gpu = Capacity((NodeGroup({"CPU": 2}, 1),), source="laptop", fixed=True)
    stuck = decide_max_concurrent(GPU_TRIAL, capacity=no_gpu)
    assert stuck.max_concurrent is None and "wait forever" in stuck.warning and "nothing adds nodes" in stuck.warning


def test_explicit_settings_win_file_first_then_environment():
    fixed = Capacity((NodeGroup({"CPU": 4, "GPU": 1}, 1),), source="laptop", fixed=True)
    assert decide_max_concurrent(GPU_TRIAL, file_value=5, env_value="7", capacity=fixed).max_concurrent == 5
    env = decide_max_concurrent(GPU_TRIAL, env_value=" 7 ", capacity=fixed)
    assert env.max_concurrent == 7 and "AUSWEEP_MAX_CONCURRENT" in env.reason
    assert decide_max_concurrent(GPU_TRIAL, env_value="", capacity=fixed).max_concurrent == 2
    for bad in ("0", "two", "1.5"):
        with pytest.raises(ConfigError, match=r"\$AUSWEEP_MAX_CONCURRENT.*>= 1"):
            decide_max_concurrent(GPU_TRIAL, env_value=bad)
    cpu_only = decide_max_concurrent({"CPU": 1, "GPU": 0}, capacity=fixed)
    assert cpu_only.max_concurrent is None and "no GPU" in cpu_only.reason


def test_max_concurrent_trials_reads_the_environment_without_asking_ray(monkeypatch):
    # With an explicit setting (or CPU-only trials) no cluster is inspected: no Ray is running here.
    monkeypatch.setenv("AUSWEEP_MAX_CONCURRENT", "3")
    assert max_concurrent_trials(GPU_TRIAL).max_concurrent == 3
    assert max_concurrent_trials(GPU_TRIAL, file_value=4).max_concurrent == 4
    monkeypatch.delenv("AUSWEEP_MAX_CONCURRENT")
    assert max_concurrent_trials({"CPU": 1, "GPU": 0}).max_concurrent is None


def _tiny_sweep(tmp_path: Path, **extra) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"study": "probe", **extra}))
    return path


def test_storage_root_takes_folders_and_file_uris_and_refuses_object_store_uris(tmp_path, monkeypatch):
    monkeypatch.delenv("AUSWEEP_STORAGE", raising=False)
    sweep = load_sweep(str(_tiny_sweep(tmp_path)))
    assert storage_root(sweep, str(tmp_path / "runs")) == tmp_path / "runs"
    assert storage_root(sweep, f"file://{tmp_path}/runs") == tmp_path / "runs"
    monkeypatch.setenv("AUSWEEP_STORAGE", "s3://bucket/runs")
    with pytest.raises(ConfigError, match=r"\$AUSWEEP_STORAGE.*s3://"):
        storage_root(sweep)
    assert storage_root(sweep, str(tmp_path)) == tmp_path  # --storage wins over the environment
    in_file = load_sweep(str(_tiny_sweep(tmp_path, storage_path="gs://b/runs")))
    with pytest.raises(ConfigError, match=r"s\.yaml \(storage_path\).*gs://"):
        storage_root(in_file)
