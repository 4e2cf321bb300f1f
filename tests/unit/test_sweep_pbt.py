"""Population-based training in sweep files (tune.scheduler: {name: pbt}): what is refused and why, the
translation into Ray Tune's mutations, and the trainable's checkpoints (every perturbation interval,
counted on across restarts, each naming its trial and iteration)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ausweep.config import ConfigError
from ausweep.study import CHECKPOINT
from ausweep.sweep.runner import CHECKPOINT_META, _report_results, run_sweep, sweep_fingerprint
from ausweep.sweep.spec import load_sweep

REPO = Path(__file__).resolve().parents[2]
MUTATIONS = {"train.lr": {"loguniform": [1e-4, 1e-2]}, "train.weight_decay": [0.0, 0.01, 0.1]}


def _write(tmp_path, mutations=None, space=None, metric="dev/acc", **scheduler):
    spec = {"study": "audiobert", "config": str(REPO / "configs" / "audiobert" / "demo.yaml"),
            "search_space": {"train.lr": {"loguniform": [1e-4, 1e-2]}} if space is None else space,
            "tune": {"metric": metric, "mode": "max", "num_samples": 4,
                     "scheduler": {"name": "pbt", "perturbation_interval": 2,
                                   "hyperparam_mutations": MUTATIONS if mutations is None else mutations, **scheduler}}}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_pbt_sweep_parses_and_runs_dry(tmp_path):
    sweep = run_sweep(str(_write(tmp_path)), dry_run=True)
    s = sweep.spec.tune.scheduler
    assert (s.name, s.perturbation_interval, s.quantile_fraction, s.perturbation_factors) == ("pbt", 2, 0.25, [1.2, 0.8])
    assert list(sweep.space) == ["train.lr"]


@pytest.mark.parametrize("mutations, field, message", [
    ({"adapter.lora_r": [4, 8, 16]}, "hyperparam_mutations.adapter.lora_r", "sets the shapes of the weights"),
    ({"adapter.target_modules": [["query"], ["query", "value"]]}, "hyperparam_mutations.adapter.target_modules",
     "sets the shapes"),
    ({"adapter.lora_dropout": {"uniform": [0.0, 0.2]}}, "hyperparam_mutations.adapter.lora_dropout",
     "applies only train.lr, train.weight_decay, train.max_grad_norm"),
])
def test_mutations_the_study_cannot_apply_are_refused_with_the_reason(tmp_path, mutations, field, message):
    with pytest.raises(ConfigError, match=rf"p\.yaml.*tune\.scheduler\.{field}.*{message}"):
        run_sweep(str(_write(tmp_path, {**MUTATIONS, **mutations})), dry_run=True)


@pytest.mark.parametrize("kw, field, message", [
    ({"space": {"train.lr": {"loguniform": [1e-4, 1e-2]}, "task": {"grid": ["animal", "pitch"]}}},
     "search_space.task", "copies a better trial's whole config"),
    ({"metric": "test/acc"}, "tune.metric", "PBT ranks trials by it"),
    ({"mutations": {}}, "tune.scheduler.hyperparam_mutations", "at least one key"),
    ({"mutations": {"train.lr": {"normal": [0, 1]}}}, "tune.scheduler.hyperparam_mutations.train.lr", "expected a list"),
    ({"mutations": {"train.lr": {"loguniform": [0, 1]}}}, "hyperparam_mutations.train.lr.loguniform", "low > 0"),
    ({"mutations": {"train": {"lr": [1e-3, 1e-2]}}}, "hyperparam_mutations.train", "keys are dotted config keys"),
])
def test_a_population_pbt_cannot_keep_apart_or_rank_is_refused(tmp_path, kw, field, message):
    mutations = kw.pop("mutations", None)
    with pytest.raises(ConfigError, match=rf"p\.yaml.*{field}.*{message}"):
        load_sweep(str(_write(tmp_path, mutations, **kw)))


def test_pbt_needs_random_search_and_a_study_that_restores_checkpoints(tmp_path):
    path = _write(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["tune"]["search"] = {"name": "optuna"}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"tune\.search\.name.*name: random"):
        load_sweep(str(path))
    probe = {"study": "probe", "overrides": {"data.source": "demo"}, "search_space": {"probe.lr": {"loguniform": [1e-4, 1e-1]}},
             "tune": {"metric": "val/acc@1", "scheduler": {"name": "pbt", "hyperparam_mutations": {"probe.lr": {"loguniform": [1e-4, 1e-1]}}}}}
    path.write_text(yaml.safe_dump(probe))
    with pytest.raises(ConfigError, match=r"tune\.scheduler\.name.*'probe' cannot restore a trial"):
        run_sweep(str(path), dry_run=True)
    probe["tune"]["scheduler"]["name"] = "asha"
    path.write_text(yaml.safe_dump(probe))
    with pytest.raises(ConfigError, match=r"hyperparam_mutations.*only population-based training"):
        load_sweep(str(path))


def test_mutations_become_ray_tune_domains_nested_like_the_config():
    from ray.tune.search.sample import Float

    from ausweep.sweep.pbt import tune_mutations

    out = tune_mutations({**MUTATIONS, "train.max_grad_norm": {"choice": [0.5, 1.0]}})
    assert set(out) == {"train"} and out["train"]["weight_decay"] == [0.0, 0.01, 0.1]
    lr = out["train"]["lr"]
    assert isinstance(lr, Float) and (lr.lower, lr.upper) == (1e-4, 1e-2) and "LogUniform" in type(lr.sampler).__name__
    assert out["train"]["max_grad_norm"] == [0.5, 1.0]  # a list: moved to a neighbouring value, not multiplied


def test_shipped_pbt_preset_and_fingerprints(monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)
    sweep = run_sweep("lora_rank", "pbt", {"retrieval": {"corpus": {"root": str(tmp_path)}}}, dry_run=True)
    s = sweep.spec.tune.scheduler
    assert s.name == "pbt" and sweep.spec.tune.metric == "dev/acc" and sweep.spec.tune.num_samples == 4
    assert set(sweep.space) <= set(s.hyperparam_mutations)  # the population shares everything else
    # checkpoints (perturbation points) never fall on the last epoch, where a clone would train no further
    assert sweep.base["train"]["epochs"] % s.perturbation_interval != 0
    assert sweep_fingerprint(sweep)["tune"]["scheduler.perturbation_interval"] == 3
    # sweeps without PBT keep the fingerprints they had before PBT's settings existed (their --resume still matches)
    demo = sweep_fingerprint(load_sweep("lora_rank", "demo"))
    assert not any(k.startswith("scheduler.") and k.split(".")[1] not in ("name", "max_t", "grace_period", "reduction_factor")
                   for k in demo["tune"])


class _Study:
    """Epoch rows offering a state (the epoch number), then a final row without one."""

    def __init__(self, start=0, epochs=5):
        self.start, self.epochs, self.saved = start, epochs, []

    def trial(self):
        for e in range(self.start, self.epochs):
            yield {"epoch": e, "dev/acc": e / 10, CHECKPOINT: lambda folder, e=e: (folder / "state.txt").write_text(str(e))}
        yield {"dev/acc": 0.9, "test/acc": 0.8, "artifacts": {"predictions.csv": "a\n"}}


def _reporter():
    reported = []

    def report(result, checkpoint=None):
        saved = None
        if checkpoint is not None:  # Tune copies the folder before report returns; so does this
            folder = Path(checkpoint.path)
            saved = {"state": (folder / "state.txt").read_text(), **json.loads((folder / CHECKPOINT_META).read_text())}
        reported.append((result, saved))
    return reported, report


def test_trainable_checkpoints_every_interval_counting_on_after_a_restart(tmp_path):
    reported, report = _reporter()
    _report_results(_Study().trial(), report, tmp_path, checkpoint_every=2, extra={"pbt/train.lr": 0.01}, trial_id="t1")
    assert [saved for _, saved in reported] == [None, {"state": "1", "iteration": 2, "trial_id": "t1"}, None,
                                                {"state": "3", "iteration": 4, "trial_id": "t1"}, None, None]
    assert all(CHECKPOINT not in r and r["pbt/train.lr"] == 0.01 for r, _ in reported)
    assert reported[-1][0]["ausweep_artifact_dir"].endswith("result_00005")

    # restarted from the iteration-2 checkpoint (epochs 0, 1 done) by a clone: counting goes on from there
    reported, report = _reporter()
    _report_results(_Study(start=2).trial(), report, tmp_path, checkpoint_every=2, start=2,
                    extra={"pbt/train.lr": 0.012, "tags": {"ausweep.pbt.cloned_from": "t0@2"}}, trial_id="t2")
    assert [saved and saved["iteration"] for _, saved in reported] == [None, 4, None, None]
    assert reported[1][1] == {"state": "3", "iteration": 4, "trial_id": "t2"}
    assert reported[0][0]["tags"] == {"ausweep.pbt.cloned_from": "t0@2"} and "tags" not in reported[1][0]
    assert reported[-1][0]["ausweep_artifact_dir"].endswith("result_00005")  # the same numbering as uninterrupted

    # without PBT no result is checkpointed, and the state offers are dropped before Tune sees them
    reported, report = _reporter()
    _report_results(_Study().trial(), report, tmp_path)
    assert all(saved is None and CHECKPOINT not in r for r, saved in reported)


def test_pb2_takes_ranges_as_its_bandits_bounds(tmp_path):
    pytest.importorskip("sklearn")  # PB2's Gaussian process (installed with mlflow)
    from ausweep.sweep.pbt import make_pbt
    from ausweep.sweep.schedulers import CheckpointedPB2

    with pytest.raises(ConfigError, match=r"hyperparam_mutations\.train\.weight_decay.*PB2 searches continuous bounds"):
        load_sweep(str(_write(tmp_path, name="pb2")))
    bounds = {"train.lr": {"loguniform": [1e-4, 1e-2]}, "train.weight_decay": {"uniform": [0.0, 0.1]}}
    sweep = run_sweep(str(_write(tmp_path, bounds, name="pb2")), dry_run=True)
    pb2 = make_pbt(sweep.spec.tune.scheduler, seed=0)
    assert isinstance(pb2, CheckpointedPB2) and pb2._hyperparam_bounds == {"train": {"lr": [1e-4, 1e-2], "weight_decay": [0.0, 0.1]}}
