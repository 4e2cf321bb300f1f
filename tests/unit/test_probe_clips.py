"""Clip exclusion per class split: on a multi-label FSD50K tree, no clip feeds a training class and
a held-out (or a fit and a validation) class of the same split. Tiny audio model, no Ray."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ausweep.config import from_dict
from ausweep.data.fsd50k import load_fsd50k
from ausweep.data.npz import save_embeddings_npz
from ausweep.extract import ExtractConfig, audio_clip_table
from ausweep.probe import ClipTable, ProbeConfig, class_means, excluded_clips, run
from ausweep.probe.run import probe_sides
from ausweep.probe.study import CLIPS_CHECKED, CLIPS_UNCHECKED, ProbeExperiment, load_embeddings
from ausweep.probe.study import run as run_study
from tests.tiny import TINY_AUDIO_MODEL

LEAVES = ["Accordion", "Applause", "Bark", "Boiling", "Growling", "Meow", "Purr", "Siren", "Thunder", "Whispering",
          "Acoustic_guitar", "Bass_drum"]
# Multi-label files: (labels, how many). Non-leaf ancestors ride along as in the release.
MULTI = [("Bark,Growling,Dog,Domestic_animals_and_pets,Animal", 4), ("Meow,Purr,Cat,Animal", 3),
         ("Siren,Thunder", 2), ("Applause,Whispering,Accordion", 2), ("Boiling,Bass_drum", 1)]
SINGLES = 4
CLIPS_PER_CLASS = 6  # Bark has 4 + 4 candidates: some multi-label files are sampled for one class only


def make_multilabel_fsd50k(root: Path) -> tuple[Path, dict[str, set[str]]]:
    """A fake FSD50K eval split with single- and multi-label clips; returns the root and each
    file name's leaf labels (the ground truth an independent check reads)."""
    audio = root / "FSD50K.eval_audio"
    audio.mkdir(parents=True)
    sr, rows, truth = 16000, [], {}
    rng = np.random.default_rng(0)
    t = np.arange(int(sr * 0.5)) / sr
    fname = 5000

    def add(labels: str, freq: float) -> None:
        nonlocal fname
        wave = 0.4 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
        sf.write(audio / f"{fname}.wav", wave.astype(np.float32), sr)
        rows.append((str(fname), labels, "/m/x"))
        truth[str(fname)] = {x for x in labels.split(",") if x in LEAVES}
        fname += 1

    for ci, leaf in enumerate(LEAVES):
        for j in range(SINGLES):
            add(leaf, 150.0 * 1.2**ci * (1 + 0.02 * j))
    for mi, (labels, n) in enumerate(MULTI):
        for j in range(n):
            add(labels, 300.0 + 97.0 * mi + 11.0 * j)
    gt = root / "FSD50K.ground_truth"
    gt.mkdir()
    with open(gt / "eval.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["fname", "labels", "mids"])
        w.writerows(rows)
    return root, truth


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multilabel")
    root, truth = make_multilabel_fsd50k(tmp / "fsd")
    soundset = load_fsd50k(root, clips_per_class=CLIPS_PER_CLASS)
    cfg = ExtractConfig(num_actors=0, cache_dir=str(tmp / "cache"), progress=False, shard_size=16)
    clips = audio_clip_table(TINY_AUDIO_MODEL, None, soundset, cfg, 1.0)
    return tmp, root, truth, soundset, clips


def _one_hot_table(clips, classes) -> ClipTable:
    """The tree's clips with embedding = one-hot clip id: a class vector's non-zero entries are
    exactly the clips that fed it."""
    return ClipTable.build(np.eye(len(clips.ids), dtype=np.float32), clips.ids, clips.feeds, clips.labels, classes)


def test_sound_set_records_every_label_of_a_clip(tree):
    _, _, truth, soundset, clips = tree
    assert set(soundset.classes) == set(LEAVES)
    by_path = {Path(p).stem: (set(f), set(lab)) for p, f, lab in zip(clips.ids, clips.feeds, clips.labels)}
    assert len(by_path) == len(clips.ids)  # one row per file, however many classes list it
    assert set(by_path) <= set(truth)
    for name, (feeds, labels) in by_path.items():
        assert labels == truth[name] and feeds <= labels
    # the point of `labels`: a file sampled for one class only still carries its other label
    assert any(len(f) < len(lab) for f, lab in by_path.values())


def test_no_clip_feeds_both_sides_of_any_split(tree):
    _, _, truth, soundset, clips = tree
    classes = list(soundset.classes)
    table = _one_hot_table(clips, classes)
    cfg = ProbeConfig(val_fraction=0.25)
    train_side, query_side = probe_sides(len(classes), cfg)
    excluded = excluded_clips(table.labels, train_side, query_side)
    counts, means = class_means(table, excluded)
    fed = means.numpy() > 0  # (P, C, N): clip n feeds class c in probe p
    for p in range(len(train_side)):
        train_clips = {table.ids[n] for n in np.flatnonzero(fed[p, train_side[p]].any(axis=0))}
        query_clips = {table.ids[n] for n in np.flatnonzero(fed[p, query_side[p]].any(axis=0))}
        assert train_clips and query_clips
        assert not train_clips & query_clips, f"probe {p}: clips on both sides {sorted(train_clips & query_clips)}"
        # and by the ground truth: no clip on one side is labelled with a class of the other
        train_names = {classes[c] for c in np.flatnonzero(train_side[p])}
        query_names = {classes[c] for c in np.flatnonzero(query_side[p])}
        for clip in train_clips:
            assert not truth[Path(clip).stem] & query_names
        for clip in query_clips:
            assert not truth[Path(clip).stem] & train_names
        # a clip labelled on one side only still feeds its classes: class means are means of the usable clips
        np.testing.assert_allclose(means.numpy()[p].sum(axis=1)[counts[p] > 0], 1.0, rtol=1e-6)
    assert excluded.any(), "the tree has multi-label clips across some split"
    # Without exclusion the check above fails: it can tell leaking class means from clean ones.
    _, leaky = class_means(table, np.zeros_like(excluded))
    fed = leaky.numpy() > 0
    assert any((fed[p, train_side[p]].any(axis=0) & fed[p, query_side[p]].any(axis=0)).any() for p in range(len(train_side)))


def test_probe_counts_and_logs_what_each_split_excludes(tree):
    tmp, root, truth, soundset, clips = tree
    cfg = from_dict(ProbeExperiment, {
        "data": {"source": "fsd50k", "root": str(root), "clips_per_class": CLIPS_PER_CLASS, "max_seconds": 1.0},
        "text": {"model": "tiny-bert"}, "audio": {"model": TINY_AUDIO_MODEL},
        "probe": {"epochs": 20, "shared_dim": 8, "val_fraction": 0.25},
        "extract": {"num_actors": 0, "cache_dir": str(tmp / "cache"), "progress": False, "shard_size": 16},
    })
    emb = load_embeddings(cfg)
    assert isinstance(emb.audio, ClipTable) and emb.clip_leakage == CLIPS_CHECKED
    result = run_study(cfg)
    classes = emb.labels
    train_side, query_side = probe_sides(len(classes), cfg.probe)
    chosen = {Path(p).stem for p in clips.ids}
    expected = []  # an independent count from the ground truth
    for p in range(len(train_side)):
        a = {classes[c] for c in np.flatnonzero(train_side[p])}
        b = {classes[c] for c in np.flatnonzero(query_side[p])}
        expected.append(sum(bool(truth[f] & a) and bool(truth[f] & b) for f in chosen))
    assert [row["excluded_clips"] for row in result.clip_log] == expected
    assert [row["sides"] for row in result.clip_log] == ["train|heldout"] * 5 + ["fit|val"] * 5
    m = result.metrics
    assert m["test/excluded_clips"] == pytest.approx(np.mean(expected[:5])) and m["test/excluded_clips"] > 0
    assert m["val/excluded_clips"] == pytest.approx(np.mean(expected[5:]))
    assert m["test/queries"] <= m["n_test_classes"] and m["val/queries"] <= m["n_val_classes"]


def test_a_class_left_without_clips_drops_out_of_that_split(caplog):
    """Class 'c3' has only clips also labelled 'c0'. In a split that puts them on opposite sides,
    c3 has no audio: it is not trained on / not scored there, and the log names it."""
    rng = np.random.default_rng(0)
    n_classes, per = 12, 3
    classes = [f"c{i}" for i in range(n_classes)]
    feeds, labels, ids = [], [], []
    for c in classes:
        for j in range(per):
            ids.append(f"{c}-{j}")
            feeds.append((c,))
            labels.append((c, "c0") if c == "c3" else (c,))
    text = rng.standard_normal((n_classes, 8)).astype(np.float32)
    emb = np.concatenate([np.repeat(text, per, axis=0) @ rng.standard_normal((8, 6))]).astype(np.float32)
    table = ClipTable.build(emb, ids, feeds, labels, classes)
    cfg = ProbeConfig(epochs=5, shared_dim=4, val_fraction=0.25, procrustes=True)
    with caplog.at_level("INFO", logger="ausweep.probe.run"):
        result = run(text, table, classes, cfg)
    train_side, query_side = probe_sides(n_classes, cfg)
    apart = [p for p in range(10) if (train_side[p, 0] and query_side[p, 3]) or (train_side[p, 3] and query_side[p, 0])]
    assert apart, "some split separates c0 and c3"
    for p, row in enumerate(result.clip_log):
        where = "query_classes_without_clips" if query_side[p, 3] else "train_classes_without_clips"
        assert (row[where] == "c3") == (p in apart)
        assert row["excluded_clips"] == (per if p in apart else 0)
    assert "c3" in caplog.text
    heldout_apart = [p for p in apart if p < 5 and query_side[p, 3]]
    rows = {r["label"]: r for r in result.per_class}
    assert rows["c3"]["n_heldout"] == int(query_side[:5, 3].sum()) - len(heldout_apart)


def test_clip_table_keeps_the_run_classes_only():
    table = ClipTable.build(np.eye(3, dtype=np.float32), ["x", "y", "z"], [("a",), ("b", "gone"), ("gone",)],
                            [("a", "b"), ("b", "gone"), ("gone",)], ["a", "b"])
    assert table.ids == ("x", "y")  # z feeds no class of the run
    np.testing.assert_array_equal(table.feeds, [[True, False], [False, True]])
    np.testing.assert_array_equal(table.labels, [[True, True], [False, True]])
    with pytest.raises(ValueError, match="feeds a class it is not labelled with"):
        ClipTable(np.eye(1, dtype=np.float32), np.array([[True]]), np.array([[False]]), ("x",))


def test_bring_your_own_audio_is_tagged_unchecked(tmp_path):
    rng = np.random.default_rng(0)
    labels = [f"k{i}" for i in range(12)]
    save_embeddings_npz(tmp_path / "t.npz", labels, rng.standard_normal((12, 6)))
    save_embeddings_npz(tmp_path / "a.npz", labels, rng.standard_normal((12, 5)))
    cfg = from_dict(ProbeExperiment, {"embeddings": {"text": str(tmp_path / "t.npz"), "audio": str(tmp_path / "a.npz")}})
    emb = load_embeddings(cfg)
    assert emb.clip_leakage == CLIPS_UNCHECKED and "unchecked" in CLIPS_UNCHECKED
    assert isinstance(emb.audio, np.ndarray) and emb.audio_dim == 5


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
