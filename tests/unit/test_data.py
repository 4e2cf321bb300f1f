"""Unit tests for the data stage: audio reading, FSD50K (on a tiny fake tree in the released
layout), the vocabulary, bring-your-own embeddings, the data config, and the generated demo set."""

from __future__ import annotations

import csv
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ausweep.config import ConfigError, from_dict
from ausweep.data import Clip, SoundSet
from ausweep.data.audio import AudioReadError, read_audio
from ausweep.data.fsd50k import FSD50KError, class_text, load_fsd50k, load_vocabulary
from ausweep.data.npz import EmbeddingsFileError, align, load_embeddings_npz, save_embeddings_npz
from ausweep.data.sources import DATA_SOURCES, DataConfig, load_soundset

SHARED_FSD50K = Path("/work/shared/data/fsd50k")

# ----------------------------------------------------------------------------- audio


def _sine(freq: float, sr: int, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(wave: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / sr)[np.argmax(spectrum)])


def test_read_audio_resampling_keeps_frequency(tmp_path):
    path = tmp_path / "sine.wav"
    sf.write(path, _sine(1000, 44100, 1.0), 44100)
    wave = read_audio(path, 16000)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - 16000) <= 1
    assert abs(_peak_hz(wave, 16000) - 1000) < 5


def test_read_audio_mono_mixdown_truncation_and_range(tmp_path):
    path = tmp_path / "stereo.wav"
    left, right = _sine(440, 16000, 2.0), np.zeros(32000, np.float32)
    sf.write(path, np.stack([left, right], axis=1), 16000)
    wave = read_audio(path, 16000, max_seconds=0.5)
    assert wave.shape == (8000,)
    np.testing.assert_allclose(wave, left[:8000] / 2, atol=1e-4)  # mean of the two channels

    loud = tmp_path / "loud.wav"
    sf.write(loud, np.full(1600, 3.0, np.float32), 16000, subtype="FLOAT")
    assert np.abs(read_audio(loud, 16000)).max() <= 1.0


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: p.write_bytes(np.random.default_rng(0).bytes(2048)), "cannot be decoded"),
        (lambda p: None, "file not found"),
        (lambda p: sf.write(p, np.zeros(0, np.float32), 16000), "empty"),
        (lambda p: sf.write(p, np.array([0.1, np.nan, 0.2], np.float32), 16000, subtype="FLOAT"), "NaN/inf"),
    ],
    ids=["corrupt", "missing", "empty", "nan"],
)
def test_read_audio_errors_name_the_file(tmp_path, make, expected):
    path = tmp_path / "clip_42.wav"
    make(path)
    with pytest.raises(AudioReadError) as err:
        read_audio(path, 16000)
    message = str(err.value)
    assert str(path) in message and expected in message
    assert "\n" not in message
    assert isinstance(err.value, ValueError) and err.value.path == str(path)


# ----------------------------------------------------------------------------- fake FSD50K

# Labels as FSD50K releases them: propagated up the ontology, quoted, comma-separated.
DOG = "Dog,Domestic_animals_and_pets,Animal"
EVAL_ROWS = (
    [(str(100 + i), f"Bark,{DOG}") for i in range(10)]
    + [("200", f"Bark,Growling,{DOG}")]
    + [(str(300 + i), "Meow,Cat,Domestic_animals_and_pets,Animal") for i in range(3)]
    + [("400", "Siren"), ("401", "Siren")]
    + [("500", "Not_a_real_class")]
)
DEV_ROWS = [("10", "Siren", "train"), ("11", "Siren", "train"), ("12", "Siren", "val"), ("13", f"Bark,{DOG}", "val")]


def _write_csv(path: Path, header: list[str], rows: list[tuple[str, ...]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_MINIMAL)  # quotes the multi-label fields
        writer.writerow(header)
        for row in rows:
            mids = ",".join(f"/m/{i:05d}" for i, _ in enumerate(row[1].split(",")))
            writer.writerow([row[0], row[1], mids, *row[2:]])


@pytest.fixture
def fsd50k_root(tmp_path) -> Path:
    root = tmp_path / "FSD50K"
    _write_csv(root / "FSD50K.ground_truth" / "eval.csv", ["fname", "labels", "mids"], EVAL_ROWS)
    _write_csv(root / "FSD50K.ground_truth" / "dev.csv", ["fname", "labels", "mids", "split"], DEV_ROWS)
    for folder, rows in (("FSD50K.eval_audio", EVAL_ROWS), ("FSD50K.dev_audio", DEV_ROWS)):
        (root / folder).mkdir()
        for row in rows:
            sf.write(root / folder / f"{row[0]}.wav", _sine(300 + int(row[0]), 16000, 0.1), 16000)
    return root


def _names(soundset: SoundSet, label: str) -> list[str]:
    return [Path(c.path).stem for c in soundset.clips_of(label)]


def test_fake_tree_is_quoted_like_the_release(fsd50k_root):
    text = (fsd50k_root / "FSD50K.ground_truth" / "eval.csv").read_text()
    assert '"Bark,Dog,Domestic_animals_and_pets,Animal"' in text


def test_fsd50k_leaf_only_keeps_leaves_and_counts_multilabel_clips_for_each(fsd50k_root, caplog):
    with caplog.at_level(logging.WARNING):
        s = load_fsd50k(fsd50k_root, clips_per_class=100)
    assert s.classes == ("Bark", "Growling", "Meow", "Siren")  # vocabulary index order
    assert len(s.clips_of("Bark")) == 11 and _names(s, "Growling") == ["200"]
    assert "200" in _names(s, "Bark")  # one file, two classes
    assert s.class_text == {"Bark": "bark", "Growling": "growling", "Meow": "meow", "Siren": "siren"}
    assert all(Path(c.path).is_absolute() and Path(c.path).is_file() for c in s.clips)
    assert "Not_a_real_class" in caplog.text  # unknown labels are reported, not fatal
    assert s.meta["source"] == "fsd50k" and s.meta["split"] == "eval" and s.meta["clips_per_class"] == "100"


def test_fsd50k_all_classes_when_not_leaf_only(fsd50k_root):
    s = load_fsd50k(fsd50k_root, clips_per_class=100, leaf_only=False)
    assert {"Dog", "Animal", "Cat", "Domestic_animals_and_pets"} <= set(s.classes)
    assert len(s.clips_of("Animal")) == 14


def test_fsd50k_sampling_is_seeded_nested_and_independent_of_other_classes(fsd50k_root):
    a = load_fsd50k(fsd50k_root, clips_per_class=4, seed=0)
    assert len(a.clips_of("Bark")) == 4 and len(a.clips_of("Meow")) == 3  # fewer than asked: all
    assert a == load_fsd50k(fsd50k_root, clips_per_class=4, seed=0)
    assert a.digest() == load_fsd50k(fsd50k_root, clips_per_class=4, seed=0).digest()
    assert _names(a, "Bark") != _names(load_fsd50k(fsd50k_root, clips_per_class=4, seed=1), "Bark")
    assert _names(a, "Bark") == sorted(_names(a, "Bark"), key=int)  # deterministic order
    bigger = load_fsd50k(fsd50k_root, clips_per_class=6, seed=0)
    assert set(_names(a, "Bark")) < set(_names(bigger, "Bark"))
    only = load_fsd50k(fsd50k_root, clips_per_class=4, seed=0, classes=["Bark"])
    assert only.classes == ("Bark",) and _names(only, "Bark") == _names(a, "Bark")


def test_fsd50k_single_label_drops_multilabel_clips_and_empty_classes(fsd50k_root, caplog):
    with caplog.at_level(logging.DEBUG, logger="ausweep.data.fsd50k"):
        s = load_fsd50k(fsd50k_root, clips_per_class=100, single_label=True)
    assert "200" not in _names(s, "Bark") and len(s.clips_of("Bark")) == 10
    assert "Growling" not in s.classes
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "dropped" in r.getMessage()]
    assert len(warnings) == 1 and "140 of 143 classes" in warnings[0]  # one line, not one per class
    assert "Growling" in caplog.text


def test_fsd50k_dev_train_val_splits(fsd50k_root):
    assert _names(load_fsd50k(fsd50k_root, split="train"), "Siren") == ["10", "11"]
    val = load_fsd50k(fsd50k_root, split="val")
    assert val.classes == ("Bark", "Siren") and _names(val, "Siren") == ["12"]
    assert len(load_fsd50k(fsd50k_root, split="dev").clips) == 4
    assert all("FSD50K.dev_audio" in c.path for c in val.clips)


def test_fsd50k_classes_argument_is_checked(fsd50k_root):
    with pytest.raises(ValueError, match="did you mean Bark"):
        load_fsd50k(fsd50k_root, classes=["Barks"])
    with pytest.raises(ValueError, match="not a leaf"):
        load_fsd50k(fsd50k_root, classes=["Dog"])
    assert load_fsd50k(fsd50k_root, classes=["Dog"], leaf_only=False).classes == ("Dog",)


def test_fsd50k_errors_name_file_and_field(fsd50k_root, tmp_path):
    gt = fsd50k_root / "FSD50K.ground_truth"
    with pytest.raises(FSD50KError, match="FSD50K root not found") as err:
        load_fsd50k(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)

    _write_csv(gt / "dev.csv", ["fname", "labels", "mids"], [r[:2] for r in DEV_ROWS])  # no split column
    with pytest.raises(FSD50KError) as err:
        load_fsd50k(fsd50k_root, split="train")
    assert str(gt / "dev.csv") in str(err.value) and "'split'" in str(err.value)

    (gt / "eval.csv").write_text("fname,mids\n1,/m/x\n")
    with pytest.raises(FSD50KError) as err:
        load_fsd50k(fsd50k_root)
    assert str(gt / "eval.csv") in str(err.value) and "'labels'" in str(err.value)

    (gt / "eval.csv").unlink()
    with pytest.raises(FSD50KError, match="eval.csv: ground-truth file not found"):
        load_fsd50k(fsd50k_root)


def test_fsd50k_missing_audio_file_is_named(fsd50k_root):
    (fsd50k_root / "FSD50K.eval_audio" / "400.wav").unlink()
    with pytest.raises(FSD50KError, match=r"400\.wav: audio file not found"):
        load_fsd50k(fsd50k_root)


# ----------------------------------------------------------------------------- vocabulary


def test_vocabulary_has_200_classes_143_leaves():
    vocab = load_vocabulary()
    assert len(vocab) == 200 and sum(e.is_leaf for e in vocab) == 143
    assert [e.index for e in vocab] == list(range(200))
    assert {e.label for e in vocab if not e.is_leaf} >= {"Animal", "Dog", "Music", "Vehicle"}


def test_vocabulary_order_matches_lbl_map():
    lbl_map = SHARED_FSD50K / "lbl_map.json"
    if not lbl_map.is_file():
        pytest.skip(f"{lbl_map} not available")
    mapping = json.loads(lbl_map.read_text())
    assert [(e.label, e.index) for e in load_vocabulary()] == sorted(mapping.items(), key=lambda kv: kv[1])


def test_vocabulary_resource_is_the_shared_file():
    shared = SHARED_FSD50K / "vocabulary_reconstructed.csv"
    if not shared.is_file():
        pytest.skip(f"{shared} not available")
    packaged = Path(__file__).parents[2] / "ausweep" / "data" / "resources" / "fsd50k_vocabulary.csv"
    assert packaged.read_bytes() == shared.read_bytes()


@pytest.mark.parametrize(
    "label, text",
    [
        ("Accelerating_and_revving_and_vroom", "accelerating, revving, vroom"),
        ("Bathtub_(filling_or_washing)", "bathtub (filling or washing)"),
        ("Male_speech_and_man_speaking", "male speech, man speaking"),
        ("Boat_and_Water_vehicle", "boat, water vehicle"),
        ("Hi-hat", "hi-hat"),
        ("Made_up_and_TV_thing", "made up, TV thing"),  # not in the vocabulary: naming rule reversed
    ],
)
def test_class_text(label, text):
    assert class_text(label) == text


# ----------------------------------------------------------------------------- npz


def test_npz_round_trip(tmp_path):
    path = tmp_path / "sub" / "text.npz"
    emb = np.random.default_rng(0).normal(size=(4, 3))
    save_embeddings_npz(path, ["a", "b", "c", "d"], emb)
    labels, loaded = load_embeddings_npz(path)
    assert labels == ["a", "b", "c", "d"] and loaded.dtype == np.float32
    np.testing.assert_allclose(loaded, emb, rtol=1e-6)
    assert [p.name for p in path.parent.iterdir()] == ["text.npz"]  # no temp file left behind


@pytest.mark.parametrize(
    "arrays, key, fragment",
    [
        ({"embeddings": np.zeros((2, 3))}, "labels", "missing"),
        ({"labels": np.array(["a", "b"])}, "embeddings", "missing"),
        ({"labels": np.array(["a", "b"]), "embeddings": np.zeros((3, 4))}, "embeddings", "3 rows"),
        ({"labels": np.array(["a", "b"]), "embeddings": np.zeros(2)}, "embeddings", "shape (C, d)"),
        ({"labels": np.array(["a", "b"]), "embeddings": np.array([[0.0, np.inf], [1, 2]])}, "embeddings", "NaN/inf"),
        ({"labels": np.array(["a", "a"]), "embeddings": np.zeros((2, 2))}, "labels", "duplicate"),
        ({"labels": np.array(["a", None], dtype=object), "embeddings": np.zeros((2, 2))}, "labels", "pickle"),
    ],
    ids=["no-labels", "no-embeddings", "rows", "1d", "inf", "duplicate", "object"],
)
def test_npz_errors_name_file_and_key(tmp_path, arrays, key, fragment):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(EmbeddingsFileError) as err:
        load_embeddings_npz(path)
    message = str(err.value)
    assert str(path) in message and f"'{key}'" in message and fragment in message


def test_npz_missing_or_corrupt_file(tmp_path):
    with pytest.raises(EmbeddingsFileError, match="file not found"):
        load_embeddings_npz(tmp_path / "none.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(EmbeddingsFileError, match="junk.npz"):
        load_embeddings_npz(tmp_path / "junk.npz")
    with pytest.raises(EmbeddingsFileError, match="duplicate"):
        save_embeddings_npz(tmp_path / "out.npz", ["a", "a"], np.zeros((2, 2)))
    assert not (tmp_path / "out.npz").exists()


def test_align_keeps_common_labels_in_text_order():
    t_labels, t = ["dog", "cat", "siren", "rain", "text-only"], np.arange(10.0).reshape(5, 2)
    a_labels, a = ["rain", "siren", "cat", "dog", "audio-only"], 10 * np.arange(15.0).reshape(5, 3)
    labels, T, A = align(t_labels, t, a_labels, a)
    assert labels == ["dog", "cat", "siren", "rain"]
    for i, label in enumerate(labels):
        np.testing.assert_array_equal(T[i], t[t_labels.index(label)])
        np.testing.assert_array_equal(A[i], a[a_labels.index(label)])
    with pytest.raises(ValueError, match="share 2 labels"):
        align(["a", "b", "c"], np.zeros((3, 2)), ["a", "b", "x"], np.zeros((3, 2)))
    with pytest.raises(ValueError, match="audio"):
        align(["a", "b", "c"], np.zeros((3, 2)), ["a", "b", "c"], np.zeros((2, 2)))


# ----------------------------------------------------------------------------- SoundSet


def test_digest_changes_when_a_clip_file_changes(tmp_path):
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"{i}.wav")
        sf.write(paths[-1], _sine(440 + 100 * i, 16000, 0.2), 16000)
    s = SoundSet("t", ("a",), {"a": "a"}, tuple(Clip(str(p), "a") for p in paths))
    before = s.digest()
    assert s.digest() == before
    sf.write(paths[1], _sine(880, 16000, 0.2), 16000)
    assert s.digest() != before



def _clip_opens(monkeypatch, paths) -> list[str]:
    """Record every ``open`` of one of ``paths`` by ausweep.data (the real open still runs)."""
    import builtins

    import ausweep.data as data

    wanted, opened = {str(p) for p in paths}, []

    def counting_open(file, *args, **kw):
        if str(file) in wanted:
            opened.append(str(file))
        return builtins.open(file, *args, **kw)

    monkeypatch.setattr(data, "open", counting_open, raising=False)
    return opened


def test_digest_reads_each_file_once_per_version_across_processes(tmp_path, monkeypatch):
    """The first digest reads every clip; a second one, in this process or in a fresh one (a Tune
    trial) sharing $AUSWEEP_CACHE, reads none; a changed clip is read again and changes the digest."""
    import os

    import ausweep.data as data

    monkeypatch.setenv("AUSWEEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "_IDENTITIES", {})
    monkeypatch.setattr(data, "_LOADED", set())
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.wav")
        sf.write(paths[-1], _sine(440 + 100 * i, 16000, 0.2), 16000)
        os.utime(paths[-1], ns=(1_600_000_000 * 10**9,) * 2)  # settled files (not just written)
    s = SoundSet("t", ("a",), {"a": "a"}, tuple(Clip(str(p), "a") for p in paths))
    opened = _clip_opens(monkeypatch, paths)
    first = s.digest()
    assert sorted(opened) == sorted(map(str, paths))
    opened.clear()
    assert s.digest() == first and opened == []  # same process
    monkeypatch.setattr(data, "_IDENTITIES", {})  # a fresh process: only the memo file is left
    monkeypatch.setattr(data, "_LOADED", set())
    assert s.digest() == first and opened == []
    assert (tmp_path / "cache" / data.MEMO_NAME).is_file()
    # same size, new content and mtime: read again, new digest
    sf.write(paths[1], _sine(880, 16000, 0.2), 16000)
    os.utime(paths[1], ns=(1_600_000_100 * 10**9,) * 2)
    changed = s.digest()
    assert opened == [str(paths[1])] and changed != first
    opened.clear()
    assert s.digest() == changed and opened == []


def test_a_just_written_file_is_not_memoised(tmp_path, monkeypatch):
    """Two writes within one clock tick can leave size and mtime alike: fresh files are always read."""
    import ausweep.data as data

    monkeypatch.setenv("AUSWEEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "_IDENTITIES", {})
    monkeypatch.setattr(data, "_LOADED", set())
    path = tmp_path / "fresh.wav"
    sf.write(path, _sine(440, 16000, 0.2), 16000)
    opened = _clip_opens(monkeypatch, [path])
    s = SoundSet("t", ("a",), {"a": "a"}, (Clip(str(path), "a"),))
    assert s.digest() == s.digest() and len(opened) == 2


# ----------------------------------------------------------------------------- config


def test_data_config_validates():
    assert DataConfig().source == "demo"
    assert set(DATA_SOURCES.names()) == {"demo", "fsd50k", "laion630k"}
    with pytest.raises(ConfigError, match="root"):
        from_dict(DataConfig, {"source": "fsd50k"}, where="study.yaml", prefix="data")
    with pytest.raises(ConfigError, match="must be one of"):
        from_dict(DataConfig, {"source": "audioset"}, where="study.yaml", prefix="data")
    with pytest.raises(ConfigError, match="clips_per_class"):
        from_dict(DataConfig, {"clips_per_class": 0})
    with pytest.raises(ConfigError, match="split"):
        from_dict(DataConfig, {"split": "test"})


def test_load_soundset_fsd50k(fsd50k_root):
    cfg = from_dict(DataConfig, {"source": "fsd50k", "root": str(fsd50k_root), "clips_per_class": 2, "max_seconds": 5})
    s = load_soundset(cfg)
    assert s.classes == ("Bark", "Growling", "Meow", "Siren") and len(s.clips_of("Bark")) == 2
    assert s.meta["max_seconds"] == "5.0" and s.meta["source"] == "fsd50k"


# ----------------------------------------------------------------------------- demo

needs_tools = pytest.mark.skipif(
    shutil.which("sox") is None or shutil.which("espeak-ng") is None, reason="sox and espeak-ng are not installed"
)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    if shutil.which("sox") is None or shutil.which("espeak-ng") is None:
        pytest.skip("sox and espeak-ng are not installed")
    from ausweep.data.demo import make_demo_soundset

    out = tmp_path_factory.mktemp("cache") / "demo_sounds"
    make_demo_soundset(out, clips_per_class=2)
    return out


@needs_tools
def test_demo_set_has_every_class_with_readable_clips(demo_dir):
    from ausweep.data.demo import DEMO_CLASSES, make_demo_soundset

    s = make_demo_soundset(demo_dir, clips_per_class=2)
    assert 16 <= len(s.classes) <= 24 and s.classes == tuple(c.name for c in DEMO_CLASSES)
    assert s.class_text["man_speaking"] == "man speaking" and s.class_text["siren"] == "siren"
    assert "NOT FSD50K" in s.meta["note"] and s.meta["source"] == "demo"
    for label in s.classes:
        clips = s.clips_of(label)
        assert len(clips) == 2
        waves = [read_audio(c.path, 16000) for c in clips]
        for clip, wave in zip(clips, waves, strict=True):
            assert sf.info(clip.path).samplerate == 16000 and sf.info(clip.path).channels == 1
            assert 1.0 <= len(wave) / 16000 <= 2.0, clip.path
            assert np.abs(wave).max() > 0.5, clip.path  # normalised, not silent
        assert not np.array_equal(waves[0][:16000], waves[1][:16000]), f"{label}: clips are copies"
    assert "NOT FSD50K" in (demo_dir / "README.txt").read_text()


@needs_tools
def test_demo_cache_is_reused(demo_dir):
    from ausweep.data.demo import make_demo_soundset

    mtime = (demo_dir / "manifest.json").stat().st_mtime_ns
    first = make_demo_soundset(demo_dir, clips_per_class=2)
    start = time.perf_counter()
    second = make_demo_soundset(demo_dir, clips_per_class=2)
    assert time.perf_counter() - start < 0.5
    assert second == first and second.digest() == first.digest()
    assert (demo_dir / "manifest.json").stat().st_mtime_ns == mtime


@needs_tools
def test_demo_generation_is_deterministic(demo_dir, tmp_path):
    from ausweep.data.demo import make_demo_soundset

    again = make_demo_soundset(tmp_path / "demo_sounds", clips_per_class=2)
    assert (tmp_path / "demo_sounds" / "manifest.json").read_text() == (demo_dir / "manifest.json").read_text()
    assert again.digest() == make_demo_soundset(demo_dir, clips_per_class=2).digest()  # paths differ, content not
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


@needs_tools
@pytest.mark.parametrize("label, tolerance", [("alarm_clock", 0.02), ("whistle", 0.05), ("church_bell", 0.02)])
def test_demo_tone_pitch_matches_recipe(demo_dir, label, tolerance):
    manifest = json.loads((demo_dir / "manifest.json").read_text())
    (cls,) = [c for c in manifest["classes"] if c["id"] == label]
    for clip in cls["clips"]:
        wave = read_audio(demo_dir / clip["file"], 16000)
        want = clip["recipe"]["freq_hz"]  # for the bell: its prime, the strongest partial
        assert abs(_peak_hz(wave, 16000) - want) / want < tolerance, clip


@needs_tools
def test_demo_regenerates_on_other_parameters_and_protects_other_folders(demo_dir, tmp_path):
    from ausweep.data.demo import make_demo_soundset

    out = tmp_path / "demo_sounds"
    shutil.copytree(demo_dir, out)
    s = make_demo_soundset(out, clips_per_class=1, seed=3)
    assert len(s.clips) == len(s.classes)
    assert json.loads((out / "manifest.json").read_text())["params"]["clips_per_class"] == 1
    assert not (out / "siren" / "siren_01.wav").exists()

    precious = tmp_path / "my_folder"
    precious.mkdir()
    (precious / "thesis.txt").write_text("do not delete")
    with pytest.raises(FileExistsError, match="not a demo sound set"):
        make_demo_soundset(precious, clips_per_class=1)
    (precious / "manifest.json").write_text('{"generator": "somebody else"}')
    with pytest.raises(FileExistsError, match="not a demo sound set"):
        make_demo_soundset(precious, clips_per_class=1)
    assert (precious / "thesis.txt").exists()


@needs_tools
def test_demo_crash_leaves_no_set_that_looks_complete(tmp_path, monkeypatch):
    from ausweep.data import demo

    calls = []

    def flaky(job):
        calls.append(job)
        if len(calls) > 3:
            raise demo.DemoToolError("simulated crash")
        real_make_clip(job)

    real_make_clip = demo._make_clip
    monkeypatch.setattr(demo, "_make_clip", flaky)
    with pytest.raises(demo.DemoToolError, match="simulated crash"):
        demo.make_demo_soundset(tmp_path / "demo_sounds", clips_per_class=1)
    assert list(tmp_path.iterdir()) == []


def test_demo_missing_tools_is_one_clear_error(tmp_path, monkeypatch):
    from ausweep.data import demo

    monkeypatch.setattr(demo.shutil, "which", lambda name: None if name == "espeak-ng" else "/usr/bin/" + name)
    with pytest.raises(demo.DemoToolError, match="apt-get install espeak-ng"):
        demo.make_demo_soundset(tmp_path / "demo_sounds")


def test_demo_default_dir_respects_ausweep_cache(monkeypatch, tmp_path):
    from ausweep.data.demo import default_demo_dir

    monkeypatch.setenv("AUSWEEP_CACHE", str(tmp_path))
    assert default_demo_dir() == tmp_path / "demo_sounds"
    monkeypatch.delenv("AUSWEEP_CACHE")
    assert default_demo_dir() == Path.home() / ".cache" / "ausweep" / "demo_sounds"


@needs_tools
def test_load_soundset_demo(demo_dir):
    s = load_soundset(DataConfig(source="demo", root=str(demo_dir), clips_per_class=2))
    assert s.meta["source"] == "demo" and s.meta["max_seconds"] == "10.0" and len(s.clips) == 2 * len(s.classes)


def test_audio_read_error_survives_pickling():
    import pickle

    e = pickle.loads(pickle.dumps(AudioReadError("/x/a.wav", "cannot be decoded")))
    assert isinstance(e, AudioReadError) and e.path == "/x/a.wav" and str(e) == "/x/a.wav: cannot be decoded"
