"""tune.search in sweep files: parsing and refusals, the translation of ausweep's search space into
Optuna's and HyperOpt's (log scales, integer ranges, conditional keys), and the Pareto front."""

from __future__ import annotations

import csv
import math
import sys

import numpy as np
import pytest
import yaml

from ausweep.config import ConfigError
from ausweep.sweep.search import OptunaSpace, SearchSpec, hyperopt_space, make_search_alg, pareto_mask, write_pareto
from ausweep.sweep.spec import load_sweep

SPACE = {
    "probe.lr": {"loguniform": [1e-4, 1e-1]},
    "probe.shared_dim": {"choice": [4, 8, 16]},
    "probe.epochs": {"randint": [10, 13]},
    "probe.standardize": {"choice": [True, False]},
    "probe.weight_decay": {"loguniform": [1e-6, 1e-2], "when": {"probe.standardize": [True]}},
}


def _write(tmp_path, search=None, space=None, metric="val/acc@1", **tune):
    spec = {"study": "probe", "overrides": {"data.source": "demo"}, "search_space": SPACE if space is None else space,
            "tune": {"metric": metric, "mode": "max", "num_samples": 4, **tune}}
    if search is not None:
        spec["tune"]["search"] = search
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_optuna_search_parses_with_conditions(tmp_path):
    sweep = load_sweep(str(_write(tmp_path, {"name": "optuna", "seed": 3, "max_concurrent": 2})))
    s = sweep.spec.tune.search
    assert (s.name, s.seed, s.max_concurrent, s.model_based) == ("optuna", 3, 2, True)
    assert sweep.conditions == {"probe.weight_decay": {"probe.standardize": [True]}}
    assert sweep.space["probe.weight_decay"] == {"loguniform": [1e-6, 1e-2]}  # the condition is kept apart
    assert sweep.n_trials() == 4


def test_default_search_is_random(tmp_path):
    sweep = load_sweep(str(_write(tmp_path, space={"probe.lr": {"loguniform": [1e-4, 1e-1]}})))
    assert sweep.spec.tune.search == SearchSpec() and sweep.spec.tune.search.name == "random"


@pytest.mark.parametrize("search, space, field, words", [
    ({"name": "smac"}, None, "tune.search.name", "must be one of"),
    ({"name": "optuna"}, {"probe.lr": {"grid": [1e-3, 1e-2]}, "probe.shared_dim": {"choice": [4, 8]}},
     "tune.search.name", "search_space.probe.lr is a grid"),
    ({"name": "optuna"}, {"probe.lr": 1e-3}, "tune.search.name", "nothing to search"),
    (None, None, "search_space.probe.weight_decay.when", "model-based searcher"),
    ({"name": "optuna"}, {**SPACE, "probe.weight_decay": {"loguniform": [1e-6, 1e-2], "when": {"probe.lr": [1]}}},
     "search_space.probe.weight_decay.when", "must be a choice axis"),
    ({"name": "optuna"}, {**SPACE, "probe.weight_decay": {"loguniform": [1e-6, 1e-2], "when": {"probe.standardize": ["yes"]}}},
     "search_space.probe.weight_decay.when", "not among the values"),
    ({"name": "hyperopt", "objectives": [{"metric": "val/acc@1"}, {"metric": "n", "cost": True}]}, None,
     "tune.search", "need name: optuna"),
    ({"name": "optuna", "objectives": [{"metric": "val/acc@1"}]}, None, "tune.search", "two or more"),
    ({"name": "optuna", "objectives": [{"metric": "val/acc@5"}, {"metric": "n", "mode": "min", "cost": True}]}, None,
     "tune.search.objectives", "must be one of the objectives"),
    ({"name": "optuna", "objectives": [{"metric": "val/acc@1"}, {"metric": "test/acc@1"}]}, None,
     "tune.search.objectives.1.metric", "no validation or dev split"),
    ({"name": "random", "max_concurrent": 2}, {"probe.lr": {"loguniform": [1e-4, 1e-1]}}, "tune.search", "max_concurrent_trials"),
])
def test_bad_search_names_file_and_field(tmp_path, search, space, field, words):
    path = _write(tmp_path, search, space)
    with pytest.raises(ConfigError) as e:
        load_sweep(str(path))
    msg = str(e.value)
    assert str(path) in msg and f"field '{field}'" in msg and words in msg, msg


def test_a_searcher_on_held_out_data_is_refused(tmp_path):
    path = _write(tmp_path, {"name": "optuna"}, metric="test/acc@1")
    with pytest.raises(ConfigError, match=r"field 'tune.metric'.*names no validation or dev split"):
        load_sweep(str(path))


def test_missing_searcher_package_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "hyperopt", None)  # as if not installed: importing it raises ImportError
    path = _write(tmp_path, {"name": "hyperopt"})
    with pytest.raises(ConfigError) as e:
        load_sweep(str(path))
    assert str(path) in str(e.value) and "field 'tune.search.name'" in str(e.value)
    assert "pip install 'ausweep[search]'" in str(e.value)


def test_a_condition_fixed_on_the_command_line_holds_or_drops_the_key(tmp_path):
    path = str(_write(tmp_path, {"name": "optuna"}))
    on = load_sweep(path, overrides={"probe": {"standardize": True}})
    assert "probe.weight_decay" in on.space and not on.conditions  # searched in every trial
    off = load_sweep(path, overrides={"probe": {"standardize": False}})
    assert "probe.weight_decay" not in off.space and not off.conditions  # keeps its base value


def _parsed(tmp_path):
    sweep = load_sweep(str(_write(tmp_path, {"name": "optuna"})))
    return sweep.space, sweep.conditions


def test_optuna_space_log_scale_integers_and_conditions(tmp_path):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space, conditions = _parsed(tmp_path)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    define = OptunaSpace(space, conditions)
    lrs, epochs = [], set()
    for _ in range(400):
        trial = study.ask()
        assert define(trial) is None
        p = trial.params
        assert ("probe/weight_decay" in p) == p["probe/standardize"]
        assert p["probe/shared_dim"] in (4, 8, 16)
        lrs.append(p["probe/lr"])
        epochs.add(p["probe/epochs"])
        study.tell(trial, 0.0)
    assert epochs == {10, 11, 12}  # randint [low, high), as Tune's
    logs = np.log10(lrs)
    assert logs.min() >= -4 and logs.max() <= -1
    # log-uniform: each decade gets about a third of the draws (uniform would give the top one ~90 %)
    assert np.histogram(logs, bins=3, range=(-4, -1))[0] == pytest.approx([400 / 3] * 3, rel=0.25)


def test_optuna_space_chooses_values_optuna_cannot_store_by_index():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    choices = [[1, 5], [1, 3, 5, 10]]
    define = OptunaSpace({"probe.ks": {"choice": choices}}, {})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(20):
        trial = study.ask()
        fixed = define(trial)
        assert fixed["probe/ks"] == choices[trial.params["probe/ks"]]
        seen.add(tuple(fixed["probe/ks"]))
        study.tell(trial, 0.0)
    assert seen == {tuple(c) for c in choices}


def test_hyperopt_space_nested_configs_and_conditions(tmp_path):
    pytest.importorskip("hyperopt")
    from ausweep.sweep.searchers import FlatHyperOptSearch

    space, conditions = _parsed(tmp_path)
    searcher = FlatHyperOptSearch(hyperopt_space(space, conditions), metric="val/acc@1", mode="max",
                                  n_initial_points=5, random_state_seed=0)
    seen = set()
    for i in range(60):
        cfg = searcher.suggest(f"t{i}")
        p = cfg["probe"]
        assert set(cfg) == {"probe"}
        assert ("weight_decay" in p) == p["standardize"]
        assert 1e-4 <= p["lr"] <= 1e-1 and p["shared_dim"] in (4, 8, 16)
        assert type(p["epochs"]) is int and 10 <= p["epochs"] < 13  # a plain int: the typed config checks it
        if "weight_decay" in p:
            assert 1e-6 <= p["weight_decay"] <= 1e-2
        seen.add(p["standardize"])
        searcher.on_trial_complete(f"t{i}", {"val/acc@1": -abs(math.log10(p["lr"]) + 2)})
    assert seen == {True, False}


def test_model_based_param_space_leaves_the_swept_keys_to_the_searcher(tmp_path):
    sweep = load_sweep(str(_write(tmp_path, {"name": "optuna", "max_concurrent": 2})))
    base = {**sweep.base, "probe": {"lr": 0.5, "weight_decay": 0.25, "seed": 1}}
    alg, param_space = make_search_alg(sweep.spec.tune.search, "val/acc@1", "max", 0, base, sweep.space, sweep.conditions)
    # the conditional key keeps its base value for trials whose condition fails; the rest comes from the searcher
    assert param_space["probe"] == {"weight_decay": 0.25, "seed": 1}
    assert type(alg).__name__ == "ConcurrencyLimiter" and type(alg.searcher).__name__ == "TolerantOptunaSearch"


def test_tpe_learns_from_finished_trials():
    """The searcher as the sweep builds it, driven by hand: after its startup trials TPE samples near the
    optimum (lr = 1e-3) far more often than the log-uniform prior would."""
    spec = SearchSpec(name="optuna", seed=0, n_startup_trials=5)
    space = {"probe.lr": {"loguniform": [1e-5, 1e-1]}}
    searcher, _ = make_search_alg(spec, "val/acc@1", "max", 0, {}, space, {})
    near = 0
    for i in range(40):
        lr = searcher.suggest(f"t{i}")["probe"]["lr"]
        searcher.on_trial_complete(f"t{i}", {"val/acc@1": -abs(math.log10(lr) + 3), "training_iteration": 1})
        near += i >= 10 and abs(math.log10(lr) + 3) < 0.5
    assert near >= 15  # of the last 30; the prior puts 25 % of draws there (7.5 expected)


def test_pareto_mask_known_answer():
    # (accuracy max, parameters min)
    points = [(0.9, 100), (0.8, 10), (0.85, 200), (0.8, 20), (0.5, 5), (0.9, 100)]
    assert pareto_mask(points, ["max", "min"]) == [True, True, False, False, True, True]


def test_write_pareto_csv_and_png(tmp_path):
    from ausweep.sweep.search import Objective

    rows = [{"config": {"adapter": {"lora_r": r}}, "metrics": {"dev/acc": acc, "trainable_params": n}}
            for r, acc, n in [(4, 0.6, 1e4), (8, 0.7, 2e4), (16, 0.65, 4e4), (32, 0.8, 8e4), (64, float("nan"), 1.6e5)]]
    objectives = [Objective("dev/acc", "max"), Objective("trainable_params", "min", cost=True)]
    paths = write_pareto(rows, objectives, ["adapter.lora_r"], tmp_path)
    assert [p.name for p in paths] == ["pareto.csv", "pareto.png"] and paths[1].stat().st_size > 1000
    with paths[0].open() as f:
        table = list(csv.DictReader(f))
    assert [(r["adapter.lora_r"], r["on_front"]) for r in table] == [("4", "True"), ("8", "True"), ("16", "False"), ("32", "True")]


def test_multi_objective_searcher_checks_the_tune_metric_and_learns_from_final_rows():
    """Tune sees only tune.metric (an epoch row may lack the cost); the final row must hold every objective."""
    from ausweep.sweep.search import Objective

    spec = SearchSpec(name="optuna", seed=0, n_startup_trials=2,
                      objectives=[Objective("trainable_params", "min", cost=True), Objective("dev/acc", "max")])
    searcher, _ = make_search_alg(spec, "dev/acc", "max", 0, {}, {"adapter.lora_r": {"choice": [1, 4, 16]}}, {})
    assert searcher.metric == "dev/acc"
    for i in range(3):
        r = searcher.suggest(f"t{i}")["adapter"]["lora_r"]
        searcher.on_trial_result(f"t{i}", {"dev/acc": 0.5, "training_iteration": 1})  # an epoch row: no cost yet
        final = {"dev/acc": 0.5 + 0.01 * r} if i == 2 else {"dev/acc": 0.5 + 0.01 * r, "trainable_params": 100 * r}
        searcher.on_trial_complete(f"t{i}", final)
    study = searcher._ot_study
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]  # tune.metric first
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE", "PRUNED"]
    assert all(t.values[1] == 100 * t.params["adapter/lora_r"] for t in study.trials[:2])
