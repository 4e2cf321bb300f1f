"""Sweep files: every shipped sweep and preset validates; malformed files fail naming file and field."""

from pathlib import Path

import pytest

from ausweep.config import ConfigError, from_dict, unflatten
from ausweep.registry import UnknownNameError
from ausweep.sweep.spec import list_sweeps, load_sweep, to_tune_space
from ausweep.sweep.studies import STUDIES

REPO = Path(__file__).resolve().parents[2]


def _fsd50k_without_root(base, prefix=""):
    """Dotted paths of the config sections that read FSD50K but have no root yet."""
    found = []
    for key, value in base.items():
        if isinstance(value, dict):
            if value.get("source") == "fsd50k" and not value.get("root"):
                found.append(prefix + key)
            found += _fsd50k_without_root(value, prefix + key + ".")
    return found


def _shipped():
    out = []
    for path in sorted((REPO / "sweeps").glob("*.yaml")):
        import yaml

        presets = list((yaml.safe_load(path.read_text()) or {}).get("presets", {}))
        out += [(path.stem, None)] + [(path.stem, p) for p in presets]
    return out


@pytest.mark.parametrize("name, preset", _shipped())
def test_every_shipped_sweep_and_preset_validates(name, preset, monkeypatch):
    monkeypatch.chdir(REPO)
    sweep = load_sweep(name, preset)
    roots = _fsd50k_without_root(sweep.base)
    if roots:  # the user must say where FSD50K lives
        with pytest.raises(ConfigError, match="root"):
            from_dict(STUDIES.get(sweep.spec.study).config_cls, sweep.config_dicts()[0], where=str(sweep.path))
        sweep = load_sweep(name, preset, unflatten({f"{r}.root": "/data/FSD50K" for r in roots}))
    study = STUDIES.get(sweep.spec.study)
    for cfg in sweep.config_dicts():
        from_dict(study.config_cls, cfg, where=str(sweep.path))
    assert sweep.n_trials() >= 1
    # every config file under configs/ for this study builds too
    assert to_tune_space(sweep.base, sweep.space)


def test_list_includes_probe(monkeypatch):
    monkeypatch.chdir(REPO)
    names = dict(list_sweeps())
    assert "probe" in names and names["probe"]


def _write(tmp_path, text):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize(
    "text, field",
    [
        ("study: probe\nsearch_space:\n  probe.lr: {gird: [1, 2]}\n", "search_space.probe.lr"),
        ("study: probe\nsearch_space:\n  probe.lr: {loguniform: [0, 1]}\n", "search_space.probe.lr.loguniform"),
        ("study: probe\nsearch_space:\n  probe.lr: {grid: []}\n", "search_space.probe.lr.grid"),
        ("study: probe\ntune: {mode: maximum}\n", "tune.mode"),
        ("study: probe\nsurch_space: {}\n", "surch_space"),
    ],
)
def test_malformed_sweep_names_file_and_field(tmp_path, text, field):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_sweep(path)
    assert path in str(e.value) and f"'{field}'" in str(e.value)


def test_yaml_syntax_error_names_line(tmp_path):
    path = _write(tmp_path, "study: probe\nsearch_space: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML at line"):
        load_sweep(path)


def test_unknown_sweep_and_preset(monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(UnknownNameError, match="unknown sweep 'prob'.*did you mean probe"):
        load_sweep("prob")
    with pytest.raises(ConfigError, match="no preset 'dmeo'"):
        load_sweep("probe", "dmeo")


def test_presets_overrides_and_grid_count(monkeypatch):
    monkeypatch.chdir(REPO)
    sweep = load_sweep("probe", "demo")
    assert sweep.base["data"]["source"] == "demo"
    assert sweep.n_trials() == 2 * 2 * 2
    # a CLI override fixes a searched key and removes the axis
    fixed = load_sweep("probe", "demo", {"probe": {"lr": 0.01}})
    assert "probe.lr" not in fixed.space and fixed.base["probe"]["lr"] == 0.01
    assert fixed.n_trials() == 4
    space = to_tune_space(fixed.base, fixed.space)
    assert space["text"]["model"] == {"grid_search": ["minilm", "smollm2-135m"]}
    assert space["probe"]["lr"] == 0.01


def test_command_line_tune_and_resources_set_the_sweep_not_the_trial(monkeypatch):
    from ausweep.config import parse_overrides

    monkeypatch.chdir(REPO)
    sweep = load_sweep("lora_rank", "demo", parse_overrides(["tune.max_concurrent_trials=2", "resources.cpu=2", "train.epochs=3"]))
    assert sweep.spec.tune.max_concurrent_trials == 2 and sweep.spec.resources.cpu == 2
    assert sweep.spec.resources.gpu == 0  # the preset's other resources stay
    assert "tune" not in sweep.base and "resources" not in sweep.base and sweep.base["train"]["epochs"] == 3
    with pytest.raises(ConfigError, match="command line.*max_concurent"):
        load_sweep("lora_rank", "demo", parse_overrides(["tune.max_concurent=2"]))


@pytest.mark.parametrize("metric, selects", [
    ("val_acc@1", True), ("val/acc@1", True), ("dev/acc", True), ("pitch/dev/acc", True),
    ("acc@1", False), ("test_acc@1", False), ("pitch/test/acc", False), ("acc", False), ("evaluation", False),
])
def test_selection_metric_names(metric, selects):
    from ausweep.sweep.spec import is_selection_metric

    assert is_selection_metric(metric) is selects


@pytest.mark.parametrize("search, tune", [
    ("probe.lr: {loguniform: [1.0e-4, 1.0e-2]}", "{metric: acc@1}"),                 # a random search
    ("probe.lr: {grid: [1.0e-3, 1.0e-2]}", "{metric: acc@1, scheduler: {name: asha}}"),  # early stopping
])
def test_a_search_on_held_out_data_is_refused(tmp_path, search, tune):
    path = tmp_path / "s.yaml"
    path.write_text(f"study: probe\nsearch_space:\n  {search}\ntune: {tune}\n")
    with pytest.raises(ConfigError, match=r"s\.yaml.*tune\.metric.*'acc@1' names no validation or dev split"):
        load_sweep(str(path))
    # the same search on a validation metric loads, and a plain grid of conditions may rank by anything
    path.write_text(path.read_text().replace("metric: acc@1", "metric: val_acc@1"))
    assert load_sweep(str(path)).spec.tune.metric == "val_acc@1"
    path.write_text("study: probe\nsearch_space:\n  text.model: {grid: [minilm, tiny-bert]}\ntune: {metric: acc@1}\n")
    assert load_sweep(str(path)).spec.tune.metric == "acc@1"


@pytest.mark.parametrize("name, preset", [s for s in _shipped()])
def test_every_shipped_search_selects_on_validation_data(name, preset, monkeypatch):
    """Random search or ASHA in a shipped sweep ranks trials on a validation/dev metric (load_sweep checks)."""
    from ausweep.sweep.spec import is_selection_metric

    monkeypatch.chdir(REPO)
    sweep = load_sweep(name, preset)
    sampled = [k for k, d in sweep.space.items() if next(iter(d)) != "grid"]
    if sampled or sweep.spec.tune.scheduler.name != "fifo":
        assert is_selection_metric(sweep.spec.tune.metric)
