"""The generated audio question sets (ausweep.data.demo_mc): every label is what the audio is.

Tones are checked by their own FFT (not by the pitch describer under test elsewhere), the word
tables against the CMU Pronouncing Dictionary, spoken words by the real Whisper tiny.en. Also:
eval and train share no clip, the same seed gives the same bytes, a complete set is reused, and a
damaged or interrupted one is never mistaken for complete.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from ausweep.benchmarks.mcq import load_mc
from ausweep.data import demo_mc as dd
from ausweep.data.audio import read_audio

pytestmark = pytest.mark.skipif(not (dd.shutil.which("sox") and dd.shutil.which("espeak-ng")),
                                reason="needs sox and espeak-ng")

N = 14  # two clips per task in each split


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("lalm") / "set"
    paths = dd.make_demo_sets(root, n_train=N, n_eval=N, seed=3, progress=False)
    manifest = json.loads(paths["manifest"].read_text())
    return paths, manifest


def _peaks(x: np.ndarray, sr: int = 16000, k: int = 1) -> list[float]:
    """The ``k`` strongest spectral peaks (Hz), at least 15 Hz apart, with parabolic refinement."""
    nfft = 1 << 18
    p = np.abs(np.fft.rfft(x * np.hanning(len(x)), nfft))
    hz = sr / nfft
    out: list[float] = []
    for b in np.argsort(-p):
        if b == 0 or b >= len(p) - 1 or any(abs(b * hz - f) < 15 for f in out):
            continue
        if not (p[b] >= p[b - 1] and p[b] >= p[b + 1]):
            continue
        a, c, d = np.log(p[b - 1 : b + 2])
        out.append((b + 0.5 * (a - d) / (a - 2 * c + d)) * hz)
        if len(out) == k:
            break
    return out


def _clips(manifest, sub, split="eval"):
    return [c for c in manifest["clips"] if c["subcategory"] == sub and c["split"] == split]


def _wave(paths, clip):
    return read_audio(paths["root"] / clip["file"], 16000)


def test_pitch_height_label_is_the_tone_measured(demo):
    paths, manifest = demo
    clips = _clips(manifest, "pitch_height") + _clips(manifest, "pitch_height", "train")
    assert {c["answer"] for c in clips} == {"high", "low"}
    for c in clips:
        (f,) = _peaks(_wave(paths, c))
        assert f == pytest.approx(c["recipe"]["freq_hz"], rel=0.005)
        assert (1500 <= f <= 3000) if c["answer"] == "high" else (100 <= f <= 300), (c, f)


def test_pitch_direction_and_intervals_measured(demo):
    paths, manifest = demo
    for c in _clips(manifest, "pitch_direction") + _clips(manifest, "interval"):
        x = _wave(paths, c)
        first, second = _peaks(x[: int(0.4 * 16000)])[0], _peaks(x[-int(0.3 * 16000):])[0]
        want = c["recipe"]["freq_hz"]
        assert first == pytest.approx(want[0], rel=0.01) and second == pytest.approx(want[1], rel=0.01), (c, first, second)
        semis = 12 * np.log2(second / first)
        if c["subcategory"] == "pitch_direction":
            assert (semis > 2.5) if c["answer"] == "higher" else (semis < -2.5), (c, semis)
        else:
            assert round(semis) == {"a major third": 4, "a perfect fifth": 7, "an octave": 12}[c["answer"]]


def test_triad_quality_measured(demo):
    paths, manifest = demo
    clips = _clips(manifest, "triad_quality") + _clips(manifest, "triad_quality", "train")
    assert {c["answer"] for c in clips} == {"major", "minor"}
    for c in clips:
        f = sorted(_peaks(_wave(paths, c), k=3))
        third = round(12 * np.log2(f[1] / f[0]))
        assert round(12 * np.log2(f[2] / f[0])) == 7
        assert third == (4 if c["answer"] == "major" else 3), (c, f)


def test_tone_or_noise_measured(demo):
    paths, manifest = demo
    clips = _clips(manifest, "tone_or_noise") + _clips(manifest, "tone_or_noise", "train")
    assert {c["answer"] for c in clips} == {"a pure tone", "noise"}
    for c in clips:
        x = _wave(paths, c)
        p = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
        f = np.fft.rfftfreq(len(x), 1 / 16000)
        if c["answer"] == "a pure tone":
            near = np.abs(f - c["recipe"]["freq_hz"]) < 15
            assert p[near].sum() / p.sum() > 0.95, c
        else:
            # Undo the noise colour (pink 1/f, brown 1/f^2), then a noise spectrum is flat: its
            # spectral flatness is ~0.56 (exponentially distributed bins); a tone's is ~0.
            slope = {"whitenoise": 0, "pinknoise": 1, "brownnoise": 2}[c["recipe"]["noise"]]
            band = (f > 200) & (f < 4000)
            q = p[band] * f[band] ** slope
            assert np.exp(np.log(q).mean()) / q.mean() > 0.3, c


def test_word_tables_match_cmudict():
    pronouncing = pytest.importorskip("pronouncing")

    def rhyming_parts(w):
        phones = pronouncing.phones_for_word(w)
        assert phones, f"{w!r} is not in CMUdict"
        return {pronouncing.rhyming_part(p) for p in phones}

    for i, group in enumerate(dd.RHYME_GROUPS):
        for a in group:
            assert all(rhyming_parts(a) & rhyming_parts(b) for b in group), group
            for other in dd.RHYME_GROUPS[i + 1 :]:
                assert not any(rhyming_parts(a) & rhyming_parts(b) for b in other), (a, other)
    assert all(sum(w in g for g in dd.RHYME_GROUPS) == 1 for w in dd.SPOKEN_RHYME_WORDS)
    for n, words in dd.SYLLABLE_WORDS.items():
        for w in words:
            assert {pronouncing.syllable_count(p) for p in pronouncing.phones_for_word(w)} == {n}, w


def test_eval_items_and_train_examples(demo):
    paths, manifest = demo
    items = load_mc(paths["eval"])
    assert len(items) == N and all(it.audio and Path(it.audio).is_file() for it in items)
    assert {it.category for it in items} == set(dd.CATEGORIES)
    by_id = {c["id"]: c for c in manifest["clips"]}
    for it in items:
        assert it.answer_text == by_id[it.id]["answer"]
        if it.subcategory == "rhyme":
            assert it.answer_text in next(g for g in dd.RHYME_GROUPS if by_id[it.id]["recipe"]["word"] in g)
        if it.subcategory == "syllables":
            assert it.answer == by_id[it.id]["recipe"]["syllables"] - 1
    lines = [json.loads(line) for line in paths["train"].read_text().splitlines()]
    assert len(lines) == 2 * N
    from ausweep.lalm.data import load_instructions
    from ausweep.lalm.distill import load_metadata

    examples = load_instructions(paths["train"])
    assert [e.response for e in examples] == [rec["response"] for rec in lines]
    assert {e.audio for e in examples} == {str(paths["root"] / rec["audio"]) for rec in lines}
    meta = load_metadata(paths["metadata"])  # the self-distillation's input: same clips, same instructions
    assert [(m.audio, ins) for m in meta for ins in m.instructions] == [(e.audio, e.instruction) for e in examples]
    by_file = {c["file"]: c for c in manifest["clips"]}
    for rec in lines:
        assert set(rec) == {"audio", "instruction", "response"}
        assert (paths["root"] / rec["audio"]).is_file()
        if rec["instruction"] in dd.TRAIN_FAMILIES["describe"]:
            assert rec["response"] == by_file[rec["audio"]]["caption"]
    assert sum(m.transcript is not None for m in meta) == N // len(dd.TRAIN_TASKS)  # the speech clips


def test_no_training_instruction_is_of_an_evaluation_family(demo):
    """The evaluation's question families are held out of training: the training families are
    others, every evaluation question is recognised as its own family, no training instruction as any."""
    paths, manifest = demo
    held_out = {s for _, s, _ in dd.TASKS}
    assert not held_out & set(dd.TRAIN_FAMILIES) and set(manifest["held_out_families"]) == held_out
    for it in load_mc(paths["eval"]):
        assert dd.eval_family_of(it.question) == it.subcategory, it.question
    allowed = {ins for templates in dd.TRAIN_FAMILIES.values() for ins in templates}
    assert {dd.eval_family_of(ins) for ins in allowed} == {None}
    trained = [json.loads(line)["instruction"] for line in paths["train"].read_text().splitlines()]
    trained += [ins for line in paths["metadata"].read_text().splitlines() for ins in json.loads(line)["instructions"]]
    assert set(trained) <= allowed and {dd.eval_family_of(ins) for ins in trained} == {None}
    questions = {it.question for it in load_mc(paths["eval"])}
    assert not any(q in ins for q in questions for ins in trained)


def test_training_clips_are_what_their_metadata_says(demo):
    paths, manifest = demo
    train = [c for c in manifest["clips"] if c["split"] == "train"]
    assert {c["subcategory"] for c in train} == {k for k, _, _ in dd.TRAIN_TASKS}
    assert {c["attributes"]["loudness"] for c in train} == {"loud", "quiet"}
    for c in train:
        x = _wave(paths, c)
        peak_db = 20 * np.log10(np.abs(x).max())
        assert peak_db == pytest.approx(-1.0 if c["attributes"]["loudness"] == "loud" else -1.0 - dd.QUIET_DB, abs=0.5), c
        if c["subcategory"] in ("tone", "beeps"):
            (f,) = _peaks(x)
            assert f == pytest.approx(c["recipe"]["freq_hz"], rel=0.01), c
            assert f"{c['recipe']['freq_hz']:.0f} Hz" in c["caption"], c
        if c["subcategory"] == "beeps":  # the count in the caption is the number of bursts heard
            env = np.convolve(np.abs(x) > 0.3 * np.abs(x).max(), np.ones(80), "same") > 0
            assert int(np.sum(np.diff(env.astype(int)) == 1)) == c["attributes"]["events"], c


def test_train_and_eval_share_no_clip(demo):
    paths, manifest = demo
    ev = [c for c in manifest["clips"] if c["split"] == "eval"]
    tr = [c for c in manifest["clips"] if c["split"] == "train"]
    assert not {c["file"] for c in ev} & {c["file"] for c in tr}
    assert not {c["sha256"] for c in ev} & {c["sha256"] for c in tr}
    train_audio = {json.loads(line)["audio"] for line in paths["train"].read_text().splitlines()}
    assert not train_audio & {os.path.relpath(it.audio, paths["root"]) for it in load_mc(paths["eval"])}
    for c in manifest["clips"]:
        assert hashlib.sha256((paths["root"] / c["file"]).read_bytes()).hexdigest() == c["sha256"]


def test_reused_and_deterministic(demo, tmp_path):
    paths, manifest = demo
    stamp = paths["manifest"].stat().st_mtime_ns
    assert dd.make_demo_sets(paths["root"], n_train=N, n_eval=N, seed=3, progress=False) == paths
    assert paths["manifest"].stat().st_mtime_ns == stamp  # reused, not regenerated
    again = json.loads(dd.make_demo_sets(tmp_path / "b", N, N, seed=3, progress=False)["manifest"].read_text())
    assert [c["sha256"] for c in again["clips"]] == [c["sha256"] for c in manifest["clips"]]
    other = json.loads(dd.make_demo_sets(tmp_path / "c", N, N, seed=4, progress=False)["manifest"].read_text())
    assert [c["sha256"] for c in other["clips"]] != [c["sha256"] for c in manifest["clips"]]


def test_damaged_or_interrupted_set_is_regenerated(tmp_path, monkeypatch):
    root = tmp_path / "set"
    paths = dd.make_demo_sets(root, n_train=7, n_eval=7, seed=0, progress=False)
    victim = root / json.loads(paths["manifest"].read_text())["clips"][3]["file"]
    victim.unlink()  # a half-deleted folder: its manifest lists a clip that is gone
    dd.make_demo_sets(root, n_train=7, n_eval=7, seed=0, progress=False)
    assert victim.is_file()

    # An interrupted generation leaves nothing that looks complete, and the next run finishes.
    calls = {"n": 0}
    real = dd._make_clip

    def dying(job, tmp):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt
        real(job, tmp)

    monkeypatch.setattr(dd, "_make_clip", dying)
    with pytest.raises(KeyboardInterrupt):
        dd.make_demo_sets(tmp_path / "cut", n_train=7, n_eval=7, seed=0, progress=False)
    assert not (tmp_path / "cut").exists()
    assert not list(tmp_path.glob(".cut.partial-*"))
    monkeypatch.setattr(dd, "_make_clip", real)

    # A folder of ours with no manifest (e.g. written by hand halfway) is replaced...
    half = tmp_path / "half"
    half.mkdir()
    (half / dd.MARKER).write_text("x")
    (half / "eval.jsonl").write_text("{}\n")
    assert load_mc(dd.make_demo_sets(half, 7, 7, seed=0, progress=False)["eval"])
    # ...but a folder that is not ours is never overwritten.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="foreign"):
        dd.make_demo_sets(foreign, 7, 7, seed=0, progress=False)


def test_cli(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        dd.main(["--help"])
    assert e.value.code == 0 and "--n-train" in capsys.readouterr().out
    assert dd.main([str(tmp_path / "cli"), "--n-train", "7", "--n-eval", "7", "--quiet"]) == 0
    assert len(load_mc(tmp_path / "cli" / "eval.jsonl")) == 7
    with pytest.raises(SystemExit) as e:
        dd.main([str(tmp_path / "bad"), "--n-eval", "0"])
    assert e.value.code == 2


@pytest.mark.realmodel
def test_whisper_hears_the_labelled_words(demo):
    """The spoken words are real speech: Whisper tiny.en transcribes most of them as labelled."""
    from ausweep.models import whisper_ct2

    if not whisper_ct2.is_available():
        pytest.skip(f"needs the weights: {whisper_ct2.INSTALL_HINT}")
    from ausweep.cascade.describe import get_describer

    paths, manifest = demo
    clips = [c for c in manifest["clips"] if c["category"] == "phonology"]
    assert len(clips) >= 4  # the evaluation's rhyme and syllable clips (training clips are other kinds since generator v3)
    heard = get_describer("whisper-tiny.en").describe([paths["root"] / c["file"] for c in clips])
    hits = [c["recipe"]["word"] in "".join(ch for ch in t.lower() if ch.isalpha() or ch == " ").split()
            for c, t in zip(clips, heard)]
    assert sum(hits) >= 0.6 * len(clips), list(zip([c["recipe"]["word"] for c in clips], heard))
