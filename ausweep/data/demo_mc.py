"""Generated audio question sets with a known answer, for training and evaluating audio LLMs offline.

Where it sits: the LLM-backbone study compares what a backbone answers from text alone
(the ``knowledge_text`` study) with what it answers once it hears the sound (the ``lalm_backbone`` study, and the
``cascade`` study). Real audio benchmarks need a hub or a download; this
module writes a small DEMO set whose every answer is true by construction, in the categories of
the text-only sets (``sound``, ``music``, ``phonology``):

* sound: a pure tone, high (1.5-3 kHz) or low (100-300 Hz); a pure tone or noise; two tones, the
  second higher or lower;
* music: a major or a minor triad (three sines); two notes a major third, a perfect fifth or an
  octave apart;
* phonology: one common word spoken by espeak-ng (several voices), asking which option rhymes with
  it, or how many syllables it has (the word tables are checked against the CMU Pronouncing
  Dictionary by the tests).

It is NOT a benchmark of real-world audio: the sounds are synthetic and the questions easy.

The training clips are of other kinds (:data:`TRAIN_TASKS`: tones, noise, beeps, two notes, three
stacked notes, spoken words, loud or quiet) and are asked other question families
(:data:`TRAIN_FAMILIES`: describe, transcribe, count, loudness, duration). Every evaluation family
(pitch height, tone or noise, pitch direction, triad quality, interval, rhyme, syllables) is held
out of training, so a trained model is scored on questions it was never taught to answer.

:func:`make_demo_sets` writes, into one folder::

    eval.jsonl     MCItem records with ``audio`` (ausweep.benchmarks.mcq.load_mc reads it): the items reported
    dev.jsonl      more MCItem records, on other clips: the items hyperparameters are chosen on (with n_dev > 0)
    train_metadata.jsonl   the training clips' text metadata {audio, caption, transcript, attributes,
                   instructions}: what ausweep.lalm.distill turns into backbone-written responses
    train.jsonl    the same instructions answered from the metadata {audio, instruction, response}
                   (ausweep.lalm.data.load_instructions); the `given` training data
    clips/{eval,dev,train}/*.wav    16 kHz mono, 1-2 s; no clip is shared between splits
    manifest.json  parameters, every clip's recipe and sha256; written last

Generation runs in a temporary folder beside the target and is renamed into place when complete,
so an interrupted run never leaves a folder that looks complete; the same parameters reuse the
existing set; the same seed gives the same files. Needs ``sox`` and ``espeak-ng`` on the PATH.

    python -m ausweep.data.demo_mc OUT_DIR [--n-train 280] [--n-eval 70] [--n-dev 0] [--seed 0]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ausweep.data.synth import FEMALE_VOICES as _FEMALE_VOICES
from ausweep.data.synth import MALE_VOICES as _MALE_VOICES
from ausweep.data.synth import Ctx as _Ctx
from ausweep.data.synth import finish_command as _finish
from ausweep.data.synth import fmt as _f
from ausweep.data.synth import install_folder, made_by, new_partial_dir, read_manifest
from ausweep.data.synth import midi_hz as _midi_hz
from ausweep.data.synth import require_tools as _require_tools
from ausweep.data.synth import run_tool as _run
from ausweep.files import cache_root, write_jsonl_atomic, write_text_atomic

logger = logging.getLogger(__name__)

GENERATOR = "ausweep.lalm.demo_data"  # the module's old path, kept so sets generated before the move stay valid
# Bump whenever a recipe, a word table or a question changes: an older set is then regenerated.
GENERATOR_VERSION = 3  # 2: a dev split; 3: training clips with metadata, held-out question families
SPLITS = ("eval", "train", "dev")  # planned in this order: adding dev changed no eval or train clip
CATEGORIES = ("sound", "music", "phonology")
DEFAULT_N_TRAIN = 280
DEFAULT_N_EVAL = 70
DEFAULT_N_DEV = 70  # the default sets' dev split: as large as eval, so a choice made on it is as noisy as the report
DEFAULT_SEED = 0
SAMPLE_RATE = 16000
MARKER = ".ausweep-lalm-demo"  # written first: a folder holding it is ours to replace

README = """\
GENERATED DEMO AUDIO QUESTIONS - NOT A REAL-WORLD AUDIO BENCHMARK.

Made by ausweep.data.demo_mc (generator version {version}) with sox (tones, chords, noise) and
espeak-ng (single spoken words). Every answer is true by construction: the tone's frequency, the
chord's intervals and the spoken word are the recipe's own parameters (see manifest.json).

eval.jsonl   multiple-choice items (ausweep.benchmarks.mcq format, with audio): report these
dev.jsonl    multiple-choice items on other clips: choose hyperparameters on these (when made)
train_metadata.jsonl  training clips' text metadata (caption, transcript, attributes, instructions):
             the input of the DeSTA-style self-distillation (ausweep.lalm.distill)
train.jsonl  the same instructions answered from the metadata (audio, instruction, response)
Training instructions never come from an evaluation question family (describe, transcribe, count,
loudness, duration only; see manifest.json "train_families").
Delete this folder to force regeneration.
"""

# ----------------------------------------------------------------------------- word tables
# Common words only, so a small LM has seen them. Every word in a group rhymes with every other one
# and with no word of another group; every syllable count holds for all of a word's CMUdict
# pronunciations (the tests check both against the CMU Pronouncing Dictionary).

RHYME_GROUPS: tuple[tuple[str, ...], ...] = (
    ("cat", "hat", "bat", "mat"), ("dog", "log", "fog"), ("cake", "lake", "snake", "bake"),
    ("tree", "bee", "key", "sea"), ("light", "night", "kite", "white"), ("rain", "train", "chain", "plane"),
    ("ring", "king", "sing", "wing"), ("book", "cook", "hook", "look"), ("moon", "spoon", "tune", "noon"),
    ("boat", "coat", "goat", "note"), ("bell", "shell", "well", "smell"), ("sun", "fun", "run", "bun"),
    ("car", "star", "jar", "far"), ("bear", "chair", "hair", "pear"), ("fish", "dish", "wish"),
    ("bed", "red", "bread", "head"), ("door", "floor", "more", "store"), ("ball", "wall", "tall", "call"),
    ("nose", "rose", "hose", "toes"), ("hand", "sand", "band", "land"), ("pen", "ten", "hen", "men"),
    ("game", "name", "frame", "same"), ("mouse", "house"), ("clock", "sock", "rock", "lock"),
    ("toy", "joy", "boy"), ("nail", "mail", "tail", "sail"), ("like", "bike", "hike"), ("cup", "pup"),
    ("blue", "glue", "zoo", "shoe"),
)

# The words a clip may SPEAK. Whisper tiny.en mishears many isolated espeak-ng words ("cat" ->
# "Cut", "hand" -> "And", "tree" -> "3"); these are the ones it transcribed right for at least 3 of
# 4 espeak voices at 145 words/min, so a cascade through ASR is not doomed by the recogniser alone.
# Other group members still serve as answers and distractors (text only).
SPOKEN_RHYME_WORDS: tuple[str, ...] = (
    "snake", "key", "light", "kite", "rain", "train", "ring", "king", "sing", "wing", "look", "well", "run",
    "fish", "wish", "red", "more", "rose", "band", "game", "frame", "house", "toy", "joy", "nail", "like",
    "cup", "blue",
)

SYLLABLE_WORDS: dict[int, tuple[str, ...]] = {  # all spoken; chosen the same way as above
    1: ("house", "cloud", "milk", "fish", "light", "rain", "train", "game", "snake", "toy", "wish", "red"),
    2: ("monkey", "pencil", "table", "basket", "window"),
    3: ("computer", "tomorrow", "potato", "telephone"),
    4: ("activity", "education", "information", "invisible"),
}
_NUMBER_WORDS = ("one", "two", "three", "four")
_VOICES = tuple(_MALE_VOICES + _FEMALE_VOICES)


# ----------------------------------------------------------------------------- tasks
# A task draws one clip's parameters from its RNG and returns what the clip is (a _Spec). ``j`` is
# the clip's index within its task and split: labels cycle with it, so answers are balanced.


@dataclass(frozen=True)
class _Spec:
    question: str
    options: tuple[str, ...]
    answer: str
    description: str  # the open answer: what a captioner should say ("a high tone")
    open_instruction: str
    open_response: str
    recipe: dict[str, Any]
    commands: list[list[str]]
    dedup_key: str = ""  # identical keys would give identical clips (espeak is deterministic)
    gain_db: float = 0.0


def _shuffled(r: np.random.Generator, options: Sequence[str]) -> tuple[str, ...]:
    return tuple(options[i] for i in r.permutation(len(options)))


def _tone(c: _Ctx, out: str, freq: float, seconds: float) -> list[str]:
    return c.synth(out, "synth", _f(seconds), "sine", _f(freq, 2), "fade", "h", "0.02", _f(seconds), "0.05")


def _pitch_height(r: np.random.Generator, c: _Ctx, j: int) -> _Spec:
    high = (j + int(r.integers(0, 2))) % 2 == 0
    freq = float(r.uniform(1500, 3000) if high else r.uniform(100, 300))
    dur = float(r.uniform(1.0, 1.6))
    label = "high" if high else "low"
    return _Spec("Is the tone high or low in pitch?", _shuffled(r, ["high", "low"]), label,
                 f"a {label} tone", "Describe the sound.", f"a {label} tone",
                 {"freq_hz": round(freq, 2), "seconds": round(dur, 3)}, [_tone(c, c.raw, freq, dur)])


def _tone_or_noise(r: np.random.Generator, c: _Ctx, j: int) -> _Spec:
    tone = (j + int(r.integers(0, 2))) % 2 == 0
    dur = float(r.uniform(1.0, 1.6))
    if tone:
        freq = float(r.uniform(200, 2000))
        recipe: dict[str, Any] = {"freq_hz": round(freq, 2), "seconds": round(dur, 3)}
        cmd = _tone(c, c.raw, freq, dur)
        label, desc = "a pure tone", "a steady pure tone"
    else:
        kind = str(r.choice(["whitenoise", "pinknoise", "brownnoise"]))
        skip = float(r.uniform(0, 3))  # sox -R repeats its noise: a random start makes clips differ
        recipe = {"noise": kind, "seconds": round(dur, 3)}
        cmd = c.synth(c.raw, "synth", _f(skip + dur), kind, "trim", _f(skip), "fade", "h", "0.02", _f(dur), "0.05")
        label, desc = "noise", f"a burst of {kind.replace('noise', ' noise')}"
    return _Spec("Is the sound a pure tone or noise?", _shuffled(r, ["a pure tone", "noise"]), label,
                 desc, "Describe the sound.", desc, recipe, [cmd])


def _pitch_direction(r: np.random.Generator, c: _Ctx, j: int) -> _Spec:
    up = (j + int(r.integers(0, 2))) % 2 == 0
    f1 = float(r.uniform(250, 1200))
    ratio = 2 ** (float(r.uniform(3, 12)) / 12)  # a minor third to an octave: clearly audible
    f2 = f1 * ratio if up else f1 / ratio
    note, gap = float(r.uniform(0.5, 0.7)), float(r.uniform(0.1, 0.25))
    a, b = c.path("a.wav"), c.path("b.wav")
    label = "higher" if up else "lower"
    desc = f"two tones, the second {label} than the first"
    return _Spec("Is the second tone higher or lower than the first?", _shuffled(r, ["higher", "lower"]), label,
                 desc, "Describe the sound.", desc,
                 {"freq_hz": [round(f1, 2), round(f2, 2)], "note_s": round(note, 3), "gap_s": round(gap, 3)},
                 [_tone(c, a, f1, note), c.sox([a], c.path("a_pad.wav"), "pad", "0", _f(gap)), _tone(c, b, f2, note),
                  c.sox([c.path("a_pad.wav"), b], c.raw)])


def _triad(r: np.random.Generator, c: _Ctx, j: int) -> _Spec:
    major = (j + int(r.integers(0, 2))) % 2 == 0
    root = int(r.integers(48, 67))  # C3..F#4
    notes = [root, root + (4 if major else 3), root + 7]
    dur = float(r.uniform(1.2, 1.8))
    tones = [a for n in notes for a in ("sine", _f(_midi_hz(n), 2))]
    label = "major" if major else "minor"
    return _Spec("Is the chord major or minor?", _shuffled(r, ["major", "minor"]), label,
                 f"a {label} chord", "Describe the sound.", f"a {label} chord",
                 {"notes_midi": notes, "freq_hz": [round(_midi_hz(n), 2) for n in notes], "seconds": round(dur, 3)},
                 [c.synth(c.raw, "synth", _f(dur), *tones, "remix", "-", "fade", "h", "0.02", _f(dur), "0.1")])


_INTERVALS = (("a major third", 4), ("a perfect fifth", 7), ("an octave", 12))


def _interval(r: np.random.Generator, c: _Ctx, j: int) -> _Spec:
    name, semis = _INTERVALS[(j + int(r.integers(0, len(_INTERVALS)))) % len(_INTERVALS)]
    low = int(r.integers(50, 70))
    notes = [low, low + semis]
    note = float(r.uniform(0.6, 0.8))
    a, b = c.path("a.wav"), c.path("b.wav")
    desc = f"two notes {name} apart"
    return _Spec("Which interval separates the two notes?", _shuffled(r, [n for n, _ in _INTERVALS]), name,
                 desc, "Describe the sound.", desc,
                 {"notes_midi": notes, "freq_hz": [round(_midi_hz(n), 2) for n in notes], "note_s": round(note, 3)},
                 [_tone(c, a, _midi_hz(notes[0]), note), _tone(c, b, _midi_hz(notes[1]), note), c.sox([a, b], c.raw)])


def _say(r: np.random.Generator, c: _Ctx, word: str) -> tuple[dict[str, Any], list[list[str]], str]:
    voice = _VOICES[int(r.integers(0, len(_VOICES)))]
    speed, pitch = int(r.integers(130, 170)), int(r.integers(30, 70))
    # espeak's own short leading silence is kept: trimming it by level cuts quiet onsets
    # ("hand" -> "and", "fish" -> "ish"), which Whisper then mishears.
    cmds = [c.speak(c.raw, word, voice, speed, pitch)]
    return {"word": word, "voice": voice, "speed": speed, "pitch": pitch}, cmds, f"{word}|{voice}|{speed}|{pitch}"


def _rhyme(r: np.random.Generator, c: _Ctx, j: int) -> _Spec:
    word = SPOKEN_RHYME_WORDS[int(r.integers(0, len(SPOKEN_RHYME_WORDS)))]
    g = next(h for h, grp in enumerate(RHYME_GROUPS) if word in grp)
    rhymes = [w for w in RHYME_GROUPS[g] if w != word]
    answer = rhymes[int(r.integers(0, len(rhymes)))]
    others = [w for h, grp in enumerate(RHYME_GROUPS) if h != g for w in grp]
    distractors = [others[i] for i in r.choice(len(others), size=3, replace=False)]
    recipe, cmds, key = _say(r, c, word)
    return _Spec("Which word rhymes with the spoken word?", _shuffled(r, [answer, *distractors]), answer,
                 f'the spoken word "{word}"', "What word is spoken?", word, recipe, cmds, key)


def _syllables(r: np.random.Generator, c: _Ctx, j: int) -> _Spec:
    n = (j + int(r.integers(0, 4))) % 4 + 1
    words = SYLLABLE_WORDS[n]
    word = words[int(r.integers(0, len(words)))]
    recipe, cmds, key = _say(r, c, word)
    recipe["syllables"] = n
    # Number words in their natural order: the question is about a count, not a position.
    return _Spec("How many syllables does the spoken word have?", _NUMBER_WORDS, _NUMBER_WORDS[n - 1],
                 f'the spoken word "{word}"', "What word is spoken?", word, recipe, cmds, key)


Task = Callable[[np.random.Generator, _Ctx, int], _Spec]
# (category, subcategory, task); clips cycle through them, so every category gets its share.
TASKS: tuple[tuple[str, str, Task], ...] = (
    ("sound", "pitch_height", _pitch_height),
    ("sound", "tone_or_noise", _tone_or_noise),
    ("sound", "pitch_direction", _pitch_direction),
    ("music", "triad_quality", _triad),
    ("music", "interval", _interval),
    ("phonology", "rhyme", _rhyme),
    ("phonology", "syllables", _syllables),
)


# ----------------------------------------------------------------------------- training clips
# The training split is NOT drawn from TASKS: its clips carry text metadata (a caption, a
# transcript for speech, attributes) and are asked instructions of other families (below), so
# that the evaluation measures transfer, not in-task fine-tuning. Captions state the physics
# ("a 2400 Hz sine tone", "C4, E4 and G4 sounded together"), never an evaluation label ("a high
# tone", "a major chord"): a backbone that knows what 2400 Hz or C-E-G is can say so itself (the
# DeSTA self-distillation in ausweep.lalm.distill), and the LALM learns to say it from the audio.

# Instruction families of the training data; none is a family of TASKS (the evaluation's).
TRAIN_FAMILIES: dict[str, tuple[str, ...]] = {
    "describe": ("Describe the sound.", "What do you hear in this clip?", "Write a one-sentence caption for this audio."),
    "transcribe": ("Transcribe the speech.", "What words are spoken in the clip?"),
    "count": ("How many separate sounds do you hear?", "Count the sound events in the clip."),
    "loudness": ("Is the clip loud or quiet?", "How loud is the sound?"),
    "duration": ("How long does the sound last?", "About how many seconds long is the clip?"),
}
# Words that would put an instruction in an evaluation family (TASKS' subcategories); the tests
# check that no training instruction holds one. README: "held-out question families".
EVAL_FAMILY_TERMS: dict[str, tuple[str, ...]] = {
    "pitch_height": ("high or low", "pitch"),
    "tone_or_noise": ("tone or noise", "pure tone"),
    "pitch_direction": ("higher or lower", "higher", "lower"),
    "triad_quality": ("major", "minor", "chord"),
    "interval": ("interval", "third", "fifth", "octave"),
    "rhyme": ("rhyme",),
    "syllables": ("syllable",),
}
QUIET_DB = 20.0  # a "quiet" training clip peaks 20 dB below a "loud" one (-21 vs -1 dBFS)
_NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def eval_family_of(instruction: str) -> str | None:
    """The evaluation family (a subcategory of :data:`TASKS`) whose terms ``instruction`` uses, or None."""
    text = instruction.casefold()
    for family, terms in EVAL_FAMILY_TERMS.items():
        if any(term in text for term in terms):
            return family
    return None


@dataclass(frozen=True)
class _TrainSpec:
    caption: str
    transcript: str | None
    attributes: dict[str, Any]
    answers: dict[str, str]  # family -> the ground-truth response (the `given` training data)
    recipe: dict[str, Any]
    commands: list[list[str]]
    dedup_key: str = ""
    gain_db: float = 0.0  # applied after peak normalisation: -QUIET_DB for a quiet clip


def _note_name(midi: int) -> str:
    return f"{_NOTE_NAMES[midi % 12]}{midi // 12 - 1}"


def _loudness(r: np.random.Generator, j: int) -> tuple[str, float]:
    loud = (j + int(r.integers(0, 2))) % 2 == 0
    return ("loud", 0.0) if loud else ("quiet", -QUIET_DB)


def _count_word(n: int) -> str:
    return _NUMBER_WORDS[n - 1]


def _physical(caption: str, transcript: str | None, seconds: float, level: str, n_events: int | None,
              recipe: dict[str, Any], commands: list[list[str]], gain: float, extra: dict[str, Any],
              dedup_key: str = "") -> _TrainSpec:
    attributes = {"duration_s": round(seconds, 1), "loudness": level, **extra}
    answers = {"describe": caption, "loudness": level, "duration": f"about {seconds:.1f} seconds"}
    if n_events is not None:
        answers["count"] = _count_word(n_events)
        attributes["events"] = n_events
    if transcript is not None:
        answers["transcribe"] = transcript
    return _TrainSpec(caption, transcript, attributes, answers, recipe, commands, dedup_key, gain)


def _train_tone(r: np.random.Generator, c: _Ctx, j: int) -> _TrainSpec:
    freq = float(np.exp(r.uniform(np.log(120), np.log(2800))))
    dur = float(r.uniform(0.6, 1.8))
    level, gain = _loudness(r, j)
    caption = f"a {freq:.0f} Hz sine tone, {dur:.1f} s, {level}"
    return _physical(caption, None, dur, level, 1, {"freq_hz": round(freq, 2), "seconds": round(dur, 3)},
                     [_tone(c, c.raw, freq, dur)], gain, {"frequency_hz": round(freq)})


def _train_noise(r: np.random.Generator, c: _Ctx, j: int) -> _TrainSpec:
    kind = str(r.choice(["whitenoise", "pinknoise", "brownnoise"]))
    dur = float(r.uniform(0.6, 1.8))
    skip = float(r.uniform(0, 3))
    level, gain = _loudness(r, j)
    colour = kind.replace("noise", "")
    caption = f"a {dur:.1f} s burst of {colour} noise, {level}"
    cmd = c.synth(c.raw, "synth", _f(skip + dur), kind, "trim", _f(skip), "fade", "h", "0.02", _f(dur), "0.05")
    return _physical(caption, None, dur, level, 1, {"noise": kind, "seconds": round(dur, 3)}, [cmd], gain,
                     {"noise_colour": colour})


def _train_beeps(r: np.random.Generator, c: _Ctx, j: int) -> _TrainSpec:
    n = j % 3 + 2  # 2..4 beeps, cycling
    freq = float(r.uniform(400, 2000))
    beep, gap = float(r.uniform(0.12, 0.2)), float(r.uniform(0.12, 0.2))
    level, gain = _loudness(r, j)
    total = n * beep + (n - 1) * gap
    cmds, parts = [], []
    for k in range(n):
        part = c.path(f"b{k}.wav")
        cmds.append(_tone(c, part, freq, beep))
        if k < n - 1:
            cmds.append(c.sox([part], c.path(f"p{k}.wav"), "pad", "0", _f(gap)))
            part = c.path(f"p{k}.wav")
        parts.append(part)
    cmds.append(c.sox(parts, c.raw))
    caption = f"{_count_word(n)} short beeps of a {freq:.0f} Hz tone, {total:.1f} s, {level}"
    return _physical(caption, None, total, level, n, {"freq_hz": round(freq, 2), "beeps": n, "beep_s": round(beep, 3),
                                                      "gap_s": round(gap, 3)}, cmds, gain, {"frequency_hz": round(freq)})


def _train_notes(r: np.random.Generator, c: _Ctx, j: int) -> _TrainSpec:
    first = int(r.integers(48, 72))
    second = first + int(r.choice([-1, 1])) * int(r.integers(1, 13))
    note = float(r.uniform(0.5, 0.8))
    level, gain = _loudness(r, j)
    a, b = c.path("a.wav"), c.path("b.wav")
    f1, f2 = _midi_hz(first), _midi_hz(second)
    caption = (f"two sine notes one after the other, {_note_name(first)} ({f1:.0f} Hz) then "
               f"{_note_name(second)} ({f2:.0f} Hz), {2 * note:.1f} s, {level}")
    return _physical(caption, None, 2 * note, level, 2,
                     {"notes_midi": [first, second], "freq_hz": [round(f1, 2), round(f2, 2)], "note_s": round(note, 3)},
                     [_tone(c, a, f1, note), _tone(c, b, f2, note), c.sox([a, b], c.raw)], gain,
                     {"notes": f"{_note_name(first)} {_note_name(second)}"})


def _train_stack(r: np.random.Generator, c: _Ctx, j: int) -> _TrainSpec:
    root = int(r.integers(48, 67))
    shape = [(0, 4, 7), (0, 3, 7), (0, 3, 6), (0, 4, 8), (0, 5, 7), (0, 2, 7)][int(r.integers(0, 6))]
    notes = [root + s for s in shape]
    dur = float(r.uniform(1.0, 1.8))
    level, gain = _loudness(r, j)
    tones = [a for n in notes for a in ("sine", _f(_midi_hz(n), 2))]
    names = [_note_name(n) for n in notes]
    hz = [f"{_midi_hz(n):.0f}" for n in notes]
    caption = (f"three sine notes sounded together, {names[0]}, {names[1]} and {names[2]} "
               f"({hz[0]}, {hz[1]} and {hz[2]} Hz), {dur:.1f} s, {level}")
    return _physical(caption, None, dur, level, None,
                     {"notes_midi": notes, "freq_hz": [round(_midi_hz(n), 2) for n in notes], "seconds": round(dur, 3)},
                     [c.synth(c.raw, "synth", _f(dur), *tones, "remix", "-", "fade", "h", "0.02", _f(dur), "0.1")], gain,
                     {"notes": " ".join(names)})


_TRAIN_WORDS = tuple(sorted({w for ws in SYLLABLE_WORDS.values() for w in ws} | set(SPOKEN_RHYME_WORDS)))


def _train_speech(r: np.random.Generator, c: _Ctx, j: int) -> _TrainSpec:
    n = j % 2 + 1  # one word or two
    words = [_TRAIN_WORDS[int(r.integers(0, len(_TRAIN_WORDS)))] for _ in range(n)]
    text = " ".join(words)
    recipe, cmds, key = _say(r, c, text)
    level, gain = _loudness(r, j)
    voice = "male" if recipe["voice"] in _MALE_VOICES else "female"
    seconds = 0.5 * n + 0.3  # espeak's length is not known before rendering: a round figure
    caption = f'a {voice} voice saying "{text}", {level}'
    spec = _physical(caption, text, seconds, level, None, {**recipe, "words": words}, cmds, gain,
                     {"speaker": voice}, key)
    answers = {k: v for k, v in spec.answers.items() if k != "duration"}  # a guessed length is no answer
    attributes = {k: v for k, v in spec.attributes.items() if k != "duration_s"}
    return dataclasses.replace(spec, answers=answers, attributes=attributes)


TrainTask = Callable[[np.random.Generator, _Ctx, int], _TrainSpec]
# (kind, recipe, instruction families asked besides "describe"); clips cycle through them.
TRAIN_TASKS: tuple[tuple[str, TrainTask, tuple[str, ...]], ...] = (
    ("tone", _train_tone, ("loudness", "duration", "count")),
    ("noise", _train_noise, ("loudness", "duration", "count")),
    ("beeps", _train_beeps, ("count", "loudness", "duration")),
    ("notes", _train_notes, ("count", "duration", "loudness")),
    ("stack", _train_stack, ("loudness", "duration")),
    ("speech", _train_speech, ("transcribe",)),
)


def _train_instructions(r: np.random.Generator, kind_families: tuple[str, ...], j: int) -> list[tuple[str, str]]:
    """``[(family, instruction)]`` of one training clip: a description and one other family."""
    describe = TRAIN_FAMILIES["describe"]
    other = kind_families[j % len(kind_families)]
    templates = TRAIN_FAMILIES[other]
    return [("describe", describe[int(r.integers(0, len(describe)))]), (other, templates[int(r.integers(0, len(templates)))])]


# ----------------------------------------------------------------------------- generation


@dataclass(frozen=True)
class _Job:
    split: str
    category: str
    subcategory: str
    index: int  # within the split
    spec: _Spec | _TrainSpec
    ctx: _Ctx
    rel: str  # clip path relative to the set's folder


def default_demo_root() -> Path:
    """``$AUSWEEP_CACHE/demo/lalm`` (default ``~/.cache/ausweep/demo/lalm``); not created here."""
    return cache_root() / "demo" / "lalm"


def ensure_default_demo_sets(progress: bool = False) -> dict[str, Path]:
    """The shared default set in :func:`default_demo_root` (generated on first use), with its dev split."""
    return make_demo_sets(default_demo_root(), DEFAULT_N_TRAIN, DEFAULT_N_EVAL, DEFAULT_SEED, progress=progress,
                          n_dev=DEFAULT_N_DEV)


def make_demo_sets(root: str | os.PathLike, n_train: int = DEFAULT_N_TRAIN, n_eval: int = DEFAULT_N_EVAL,
                   seed: int = DEFAULT_SEED, progress: bool = True, n_dev: int = 0) -> dict[str, Path]:
    """Generate (or reuse) the demo audio question sets in ``root``.

    ``n_eval`` clips become multiple-choice items (``eval.jsonl``); ``n_train`` clips of the
    training kinds (:data:`TRAIN_TASKS`) get text metadata (``train_metadata.jsonl``: caption,
    transcript, attributes and two instructions of :data:`TRAIN_FAMILIES`) and those instructions
    answered from the metadata (``train.jsonl``: "Describe the sound." -> "a 440 Hz sine tone,
    1.2 s, loud"). No training instruction is of an evaluation family.
    ``n_dev`` more clips become multiple-choice items of ``dev.jsonl``, for choosing hyperparameters
    without touching the evaluation items. Clips cycle through :data:`TASKS` (training clips through
    :data:`TRAIN_TASKS`), so the categories are balanced; no clip (and no spoken word in the same voice, speed and pitch) is in two splits.

    Returns ``{"root", "eval", "dev", "train", "metadata", "manifest"}`` paths (``dev`` exists when ``n_dev > 0``). A complete set made with the same
    parameters and generator version is reused; an older or incomplete set of ours is replaced;
    a non-empty folder that is not ours raises FileExistsError.
    """
    if n_eval < 1 or n_train < 0 or n_dev < 0:
        raise ValueError(f"need n_eval >= 1, n_train >= 0 and n_dev >= 0, got n_eval={n_eval}, n_train={n_train}, n_dev={n_dev}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    root = Path(root).expanduser().absolute()
    params = {"n_train": int(n_train), "n_eval": int(n_eval), "n_dev": int(n_dev), "seed": int(seed), "sample_rate": SAMPLE_RATE}
    if _read_valid_manifest(root, params) is not None:
        logger.debug("lalm demo sets: reusing %s", root)
        return _paths(root)
    if root.exists() and (not root.is_dir() or (any(root.iterdir()) and not _is_ours(root))):
        raise FileExistsError(f"{root}: exists, is not empty and is not an ausweep LALM demo set; refusing to overwrite it")
    _require_tools()
    tmp = new_partial_dir(root)
    try:
        (tmp / MARKER).write_text(f"{GENERATOR}\n")
        start = time.perf_counter()
        _generate(tmp, params, progress)
        logger.info("lalm demo sets: %d eval + %d dev + %d train clips in %.1f s -> %s",
                    n_eval, n_dev, n_train, time.perf_counter() - start, root)
        install_folder(tmp, root, lambda d: _read_valid_manifest(d, params) is not None)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if _read_valid_manifest(root, params) is None:  # pragma: no cover - a concurrent writer with other parameters
        raise RuntimeError(f"{root}: the demo set was replaced while it was being installed; run again")
    return _paths(root)


def _paths(root: Path) -> dict[str, Path]:
    return {"root": root, "eval": root / "eval.jsonl", "dev": root / "dev.jsonl", "train": root / "train.jsonl",
            "metadata": root / "train_metadata.jsonl", "manifest": root / "manifest.json"}


def _plan(tmp: Path, params: dict[str, int]) -> list[_Job]:
    """Every clip's parameters and commands, eval first, then train, then dev. A clip's RNG is keyed
    by (seed, split, task, index), so a clip does not change when another split grows."""
    jobs: list[_Job] = []
    used: set[str] = set()
    for split, n in ((s, params.get(f"n_{s}", 0)) for s in SPLITS):
        tasks = _TRAIN_AS_TASKS if split == "train" else TASKS
        per_task = [0] * len(tasks)
        for i in range(n):
            t = i % len(tasks)
            category, sub, task = tasks[t]
            j = per_task[t]
            per_task[t] += 1
            ctx = _Ctx(work=tmp / ".work" / f"{split}_{i:05d}", sample_rate=params["sample_rate"], k=j)
            for attempt in range(100):
                rng = np.random.default_rng((params["seed"], zlib.crc32(split.encode()), zlib.crc32(sub.encode()), j, attempt))
                spec = task(rng, ctx, j)
                # A spoken word with the same voice, speed and pitch is the same file: redraw, so
                # no clip is shared between (or repeated within) the splits.
                if not spec.dedup_key or spec.dedup_key not in used:
                    break
            else:  # pragma: no cover - the word x voice x speed x pitch space is far larger than any set
                raise ValueError(f"cannot draw {n} distinct {sub} clips; lower n_train/n_eval")
            if spec.dedup_key:
                used.add(spec.dedup_key)
            jobs.append(_Job(split, category, sub, i, spec, ctx, f"clips/{split}/{sub}_{i:05d}.wav"))
    return jobs


# The training kinds in the shape of TASKS, for _plan.
_TRAIN_AS_TASKS: tuple[tuple[str, str, Any], ...] = tuple(("train", kind, task) for kind, task, _ in TRAIN_TASKS)
_TRAIN_FAMILIES_OF = {kind: families for kind, _, families in TRAIN_TASKS}


def _generate(tmp: Path, params: dict[str, int], progress: bool) -> None:
    """Clips, eval.jsonl, dev.jsonl (n_dev > 0), train.jsonl, README and (last) manifest.json, all inside ``tmp``."""
    from tqdm.auto import tqdm

    from ausweep.benchmarks.mcq import MCItem, save_jsonl

    jobs = _plan(tmp, params)
    for split in SPLITS:
        (tmp / "clips" / split).mkdir(parents=True, exist_ok=True)
    # Each clip is a few short sox/espeak runs, mostly process start-up: threads keep cores busy.
    with ThreadPoolExecutor(max_workers=max(2, min(8, 2 * (os.cpu_count() or 1)))) as pool:
        bar = tqdm(total=len(jobs), desc="demo clips", unit="clip", disable=not progress, dynamic_ncols=True)
        try:
            for _ in pool.map(lambda job: _make_clip(job, tmp), jobs):
                bar.update()
        finally:
            bar.close()
    shutil.rmtree(tmp / ".work", ignore_errors=True)

    mc_items: dict[str, list[MCItem]] = {"eval": [], "dev": []}
    train: list[dict[str, str]] = []
    metadata: list[dict[str, Any]] = []
    records = []
    for job in jobs:
        audio = str(tmp / job.rel)
        if isinstance(job.spec, _TrainSpec):
            rec = _train_records(job, audio, params["seed"], train, metadata)
            records.append({"file": job.rel, "split": job.split, "id": f"train-{job.subcategory}-{job.index:05d}",
                            "category": job.category, "subcategory": job.subcategory, **rec,
                            "sha256": hashlib.sha256((tmp / job.rel).read_bytes()).hexdigest(),
                            "recipe": job.spec.recipe})
            continue
        item = MCItem(id=f"{job.split}-{job.subcategory}-{job.index:05d}", question=job.spec.question,
                      options=job.spec.options, answer=job.spec.options.index(job.spec.answer),
                      category=job.category, subcategory=job.subcategory, audio=audio)
        mc_items[job.split].append(item)
        records.append({"file": job.rel, "split": job.split, "id": item.id, "category": job.category,
                        "subcategory": job.subcategory, "answer": job.spec.answer,
                        "description": job.spec.description,
                        "sha256": hashlib.sha256((tmp / job.rel).read_bytes()).hexdigest(),
                        "recipe": job.spec.recipe})
    save_jsonl(mc_items["eval"], tmp / "eval.jsonl")
    if mc_items["dev"]:
        save_jsonl(mc_items["dev"], tmp / "dev.jsonl")
    _save_train(train, tmp / "train.jsonl")
    write_jsonl_atomic(tmp / "train_metadata.jsonl",
                       [{**m, "audio": os.path.relpath(m["audio"], tmp)} for m in metadata])
    (tmp / "README.txt").write_text(README.format(version=GENERATOR_VERSION))
    manifest = {"generator": GENERATOR, "version": GENERATOR_VERSION, "note": "GENERATED DEMO AUDIO - NOT A REAL BENCHMARK",
                "params": params, "tasks": [f"{c}/{s}" for c, s, _ in TASKS],
                "train_kinds": [k for k, _, _ in TRAIN_TASKS], "train_families": sorted(TRAIN_FAMILIES),
                "held_out_families": [s for _, s, _ in TASKS], "clips": records}
    # Written last, atomically: a folder with a valid manifest is a complete set.
    write_text_atomic(tmp / "manifest.json", json.dumps(manifest, indent=1) + "\n")


def _train_records(job: _Job, audio: str, seed: int, train: list[dict[str, str]], metadata: list[dict[str, Any]]) -> dict[str, Any]:
    """Append one training clip's instruction examples (answered from its metadata) to ``train``
    and its metadata line to ``metadata``; return what the manifest records of it."""
    spec = job.spec
    assert isinstance(spec, _TrainSpec)
    r = np.random.default_rng((seed, zlib.crc32(b"instructions"), zlib.crc32(job.subcategory.encode()), job.index))
    asked = _train_instructions(r, _TRAIN_FAMILIES_OF[job.subcategory], job.ctx.k)
    for family, instruction in asked:
        train.append({"audio": audio, "instruction": instruction, "response": spec.answers[family]})
    meta: dict[str, Any] = {"audio": audio, "caption": spec.caption}
    if spec.transcript is not None:
        meta["transcript"] = spec.transcript
    meta.update(attributes=spec.attributes, instructions=[i for _, i in asked])
    metadata.append(meta)
    return {"caption": spec.caption, "transcript": spec.transcript, "attributes": spec.attributes,
            "families": [f for f, _ in asked]}


def _save_train(rows: list[dict[str, str]], path: Path) -> None:
    from ausweep.lalm.data import InstructionExample, save_instructions

    save_instructions([InstructionExample(**r) for r in rows], path)


def _make_clip(job: _Job, tmp: Path) -> None:
    job.ctx.work.mkdir(parents=True)
    out = tmp / job.rel
    for argv in job.spec.commands:
        _run(argv, out)
    finish = _finish(job.ctx, out)  # mono 16-bit, <= 2 s, short fades, peak -1 dBFS
    _run(finish + (["gain", _f(job.spec.gain_db, 1)] if job.spec.gain_db else []), out)
    shutil.rmtree(job.ctx.work, ignore_errors=True)


def _is_ours(root: Path) -> bool:
    return (root / MARKER).is_file() or made_by(root, GENERATOR)


def _read_valid_manifest(root: Path, params: dict[str, int]) -> dict[str, Any] | None:
    """The manifest when ``root`` holds a complete set of this version with these parameters
    (both JSONL files and every clip present), else None."""
    manifest = read_manifest(root, GENERATOR, GENERATOR_VERSION, params)
    if manifest is None:
        return None
    clips = manifest.get("clips")
    if not isinstance(clips, list) or len(clips) != params["n_eval"] + params["n_train"] + params["n_dev"]:
        return None
    if not all((root / name).is_file() for name in ("eval.jsonl", "train.jsonl", "train_metadata.jsonl")):
        return None
    if params["n_dev"] and not (root / "dev.jsonl").is_file():
        return None
    if not all(isinstance(c, dict) and (root / str(c.get("file"))).is_file() for c in clips):
        return None
    return manifest


# ----------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ausweep.data.demo_mc",
        description="Generate the offline demo audio question sets (sound, music, phonology) with sox and "
                    "espeak-ng: OUT_DIR/eval.jsonl (multiple choice) and OUT_DIR/train.jsonl (instructions).",
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="Folder to write (reused when already complete with these parameters).")
    parser.add_argument("--n-train", type=int, default=DEFAULT_N_TRAIN, help=f"Training clips (default {DEFAULT_N_TRAIN}); each gives two instruction examples.")
    parser.add_argument("--n-eval", type=int, default=DEFAULT_N_EVAL, help=f"Evaluation clips = multiple-choice items (default {DEFAULT_N_EVAL}).")
    parser.add_argument("--n-dev", type=int, default=0, help=f"Dev clips = multiple-choice items for choosing hyperparameters (default 0; the studies' default sets have {DEFAULT_N_DEV}).")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"Seed of every clip's parameters (default {DEFAULT_SEED}).")
    parser.add_argument("--quiet", action="store_true", help="No progress bar.")
    args = parser.parse_args(argv)
    try:
        paths = make_demo_sets(args.out_dir, args.n_train, args.n_eval, args.seed, progress=not args.quiet, n_dev=args.n_dev)
    except (ValueError, FileExistsError, RuntimeError) as e:  # DemoToolError is a RuntimeError
        parser.exit(2, f"error: {e}\n")
    for key in ("eval", "dev", "train", "metadata", "manifest"):
        if paths[key].exists():
            print(f"{key}: {paths[key]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
