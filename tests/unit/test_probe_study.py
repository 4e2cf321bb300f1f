"""The probe study's wiring: layer axes, layer selection, mixed .npz + extracted sides (no Ray)."""

import itertools

import numpy as np
import pytest

from ausweep.config import ConfigError, deep_merge, from_dict, unflatten
from ausweep.data.npz import save_embeddings_npz
from ausweep.probe.study import ProbeExperiment, expand_layers, load_embeddings, run, select_layer
from tests.tiny import make_fsd50k


def _cfg(**text):
    return from_dict(ProbeExperiment, {"text": {"model": "tiny-bert", **text}})


def _trial_configs(base: dict, space: dict) -> list[ProbeExperiment]:
    """What Tune runs: the base config crossed with every grid axis of the (expanded) space."""
    axes = [[(key, v) for v in dist["grid"]] for key, dist in space.items()]
    return [from_dict(ProbeExperiment, deep_merge(base, unflatten(dict(combo)))) for combo in itertools.product(*axes)]


def test_layers_all_with_one_lm_becomes_a_layer_grid():
    space = {"text.layer": {"grid": "all"}, "probe.lr": {"grid": [1, 2]}}
    out = expand_layers(space, [_cfg()], {"tiny-bert": 3})
    assert out == {"probe.lr": {"grid": [1, 2]}, "text.model": {"grid": ["tiny-bert"]}, "text.layer": {"grid": [0, 1, 2]}}


def test_layers_all_with_a_one_model_grid_runs_that_model():
    """The base config names tiny-bert (3 hidden states); the grid names only tiny-gpt2 (2). Every
    trial must run tiny-gpt2 at its own layers, not tiny-bert with tiny-gpt2's layer count."""
    base = {"text": {"model": "tiny-bert"}}
    space = {"text.model": {"grid": ["tiny-gpt2"]}, "text.layer": {"grid": "all"}, "probe.lr": {"grid": [0.1, 0.2]}}
    configs = [from_dict(ProbeExperiment, deep_merge(base, {"text": {"model": "tiny-gpt2"}}))]  # the grid points
    out = expand_layers(space, configs, {"tiny-gpt2": 2})
    trials = _trial_configs(base, out)
    assert sorted((c.text.model, c.text.layer, c.probe.lr) for c in trials) == [
        ("tiny-gpt2", layer, lr) for layer in (0, 1) for lr in (0.1, 0.2)
    ]


def test_layers_all_with_lms_of_different_depth_pairs_model_and_layer():
    space = {"text.model": {"grid": ["tiny-bert", "tiny-gpt2"]}, "text.layer": {"grid": "all"}}
    out = expand_layers(space, [_cfg(), _cfg(model="tiny-gpt2")], {"tiny-bert": 3, "tiny-gpt2": 2})
    pairs = [(d["model"], d["layer"]) for d in out["text"]["grid"]]
    assert pairs == [("tiny-bert", 0), ("tiny-bert", 1), ("tiny-bert", 2), ("tiny-gpt2", 0), ("tiny-gpt2", 1)]
    assert all(d["template"] == "the sound of {}" for d in out["text"]["grid"])  # the rest of `text` is kept
    assert expand_layers({"probe.lr": {"grid": [1]}}, [_cfg()], {}) == {"probe.lr": {"grid": [1]}}


def test_select_layer_bounds():
    emb = np.arange(3 * 4 * 2).reshape(3, 4, 2)
    np.testing.assert_array_equal(select_layer(emb, -1, "m"), emb[2])
    np.testing.assert_array_equal(select_layer(emb, 0, "m"), emb[0])
    with pytest.raises(ConfigError, match="m has 3 hidden states"):
        select_layer(emb, 3, "m")


def test_text_from_npz_audio_extracted(tmp_path):
    """One side from a file, the other extracted in-process: rows meet by class label."""
    root = make_fsd50k(tmp_path / "fsd")
    base = {"data": {"source": "fsd50k", "root": str(root), "clips_per_class": 3, "max_seconds": 1.0},
            "audio": {"model": "logmel-stats"}, "probe": {"epochs": 20, "shared_dim": 8},
            "extract": {"num_actors": 0, "cache_dir": str(tmp_path / "cache"), "progress": False}}
    labels = ["Whispering", "Bark", "Thunder", "Meow", "Siren"]  # a subset, in another order
    text = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)
    save_embeddings_npz(tmp_path / "t.npz", labels, text)
    cfg = from_dict(ProbeExperiment, {**base, "embeddings": {"text": str(tmp_path / "t.npz")}})
    emb = load_embeddings(cfg)
    assert sorted(emb.labels) == sorted(labels) and emb.text.shape == (5, 16) and emb.audio.n_classes == 5
    # per-clip audio over the common classes only: each kept clip feeds one of them
    assert emb.audio.feeds.sum(axis=0).tolist() == [3] * 5
    for i, label in enumerate(emb.labels):
        np.testing.assert_array_equal(emb.text[i], text[labels.index(label)])
    assert run(cfg).metrics["n_classes"] == 5



def _row(lm, layer, lr, val1, test1, val5=0.5):
    metrics = {"val/acc@1": val1, "val/acc@5": val5, "test/acc@1": test1, "test/acc@1_se": 0.01, "test/acc@5": test1,
               "test/chance@1": 0.1, "test/chance@5": 0.5, "test/perm_acc@1": 0.1, "test/perm_acc@5": 0.5}
    return {"config": {"text": {"model": lm, "layer": layer}, "audio": {"model": "ast"}, "probe": {"lr": lr}}, "metrics": metrics}


def test_summary_chooses_on_validation_and_reports_heldout(tmp_path):
    """The trial with the best held-out accuracy is not chosen when another has the better
    validation accuracy: results.csv flags the validation choice, selected.csv reports its held-out numbers."""
    import pandas as pd

    from ausweep.probe.study import summarize

    rows = [
        _row("bert", -1, 1e-3, val1=0.6, test1=0.9),  # best on the held-out classes, not on validation
        _row("bert", -1, 3e-4, val1=0.7, test1=0.5),  # best on validation: chosen
        _row("bert", 3, 1e-3, val1=0.4, test1=0.4, val5=0.9),  # a tie on val/acc@1, broken by val/acc@5
        _row("bert", 3, 3e-4, val1=0.4, test1=0.8, val5=0.6),
        _row("gpt2", -1, 1e-3, val1=0.2, test1=0.3),
    ]
    paths = summarize(rows, tmp_path)
    assert {p.name for p in paths} >= {"results.csv", "selected.csv", "acc_at_k.png", "acc_by_layer.png"}
    results = pd.read_csv(tmp_path / "results.csv")
    assert {"val/acc@1", "test/acc@1", "chosen_on_val"} <= set(results.columns)
    assert results["chosen_on_val"].tolist() == [False, True, True, False, True]
    selected = pd.read_csv(tmp_path / "selected.csv")
    got = {(r.lm, r.layer): (r.lr, r["test/acc@1"]) for _, r in selected.iterrows()}
    assert got == {("bert", -1): (3e-4, 0.5), ("bert", 3): (1e-3, 0.4), ("gpt2", -1): (1e-3, 0.3)}


def test_every_probe_sweep_and_preset_ranks_trials_on_validation():
    from ausweep.sweep.spec import load_sweep

    sweep = load_sweep("probe")
    for preset in [None, *sweep.spec.presets]:
        tune = load_sweep("probe", preset).spec.tune
        assert (tune.metric, tune.mode) == ("val/acc@1", "max"), preset


@pytest.mark.parametrize(
    "text, name",
    [
        ("bird vocalization, bird call, bird song", "bird vocalization"),
        ("dishes, pots, and pans", "dish"),
        ("male speech, man speaking", "male speech"),
        ("fireworks", "firework"),
        ("scissors", "scissors"),  # plural in form only
        ("bus", "bus"),
        ("hiss", "hiss"),
        ("rattle (instrument)", "rattle instrument"),
        ("bathtub (filling or washing)", "bathtub filling or washing"),
        ("hi-hat", "hi-hat"),
        ("Made up, TV thing", "made up"),
        ("man speaking", "man speaking"),  # a demo-set name is already one name
    ],
)
def test_object_name(text, name):
    from ausweep.data.fsd50k import object_name

    assert object_name(text) == name


def test_object_names_of_the_fsd50k_vocabulary_are_distinct_single_names():
    from ausweep.data.fsd50k import class_name, load_vocabulary

    names = [class_name(e.label) for e in load_vocabulary()]
    assert len(names) == 200 and len(set(names)) == 200
    assert not [n for n in names if set(n) & set(",()") or n != n.strip() or "  " in n]
    assert class_name("Bird_vocalization_and_bird_call_and_bird_song") == "bird vocalization"


@pytest.mark.parametrize("phrase", ["name", "synonyms"])
def test_text_side_averages_only_the_object_phrase(tmp_path, phrase):
    """'name': the text vector of a multi-synonym class is the mean over the tokens of its one name
    in "the sound of <name>"; 'synonyms' keeps the whole display name (the old behaviour)."""
    from ausweep.models.text import load_text_encoder

    root = make_fsd50k(tmp_path / "fsd", classes=["Dishes_and_pots_and_pans", "Bark", "Male_speech_and_man_speaking", "Meow"])
    cfg = from_dict(ProbeExperiment, {
        "data": {"source": "fsd50k", "root": str(root), "clips_per_class": 3, "max_seconds": 1.0},
        "text": {"model": "tiny-bert", "layer": -1, "phrase": phrase}, "audio": {"model": "logmel-stats"},
        "extract": {"num_actors": 0, "cache_dir": str(tmp_path / "cache"), "progress": False}})
    emb = load_embeddings(cfg)
    enc = load_text_encoder("tiny-bert")
    want = {"name": {"Dishes_and_pots_and_pans": "dish", "Male_speech_and_man_speaking": "male speech"},
            "synonyms": {"Dishes_and_pots_and_pans": "dishes, pots, and pans", "Male_speech_and_man_speaking": "male speech, man speaking"}}
    for label, obj in want[phrase].items():
        prefix = "the sound of "
        direct = enc.encode_spans([prefix + obj], [(len(prefix), len(prefix) + len(obj))], [-1])[0, 0]
        np.testing.assert_allclose(emb.text[emb.labels.index(label)], direct, rtol=1e-4, atol=1e-5)
