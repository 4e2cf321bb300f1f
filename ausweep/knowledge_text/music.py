"""A generated music-theory set with answers computed from first principles.

Where it sits: one of the named sets of :mod:`ausweep.knowledge_text.sets` (``"music"``), scored by
:mod:`ausweep.benchmarks.scoring`. Every answer follows from twelve-tone equal temperament with
A4 = 440 Hz (:func:`frequency`) and scientific pitch notation (octave numbers change at C, so
B3 is just below C4). ``category="music"``; subcategories:

* ``pitch_order``: "Which of these notes has the highest (lowest) pitch?", four notes (no two
  enharmonic) within about an octave and a half, often across an octave boundary.
* ``frequency``: "... which note has a fundamental frequency of about 262 Hz?", four notes.
* ``interval``: "How many semitones are there from C4 up to G4?", four consecutive counts.
* ``chord``: "What is the quality of the triad A-C-E?" (major / minor / diminished / augmented),
  root position and spelled as stacked thirds (C#-E#-G#, not C#-F-G#).
"""

from __future__ import annotations

import random
import re

from ausweep.benchmarks.mcq import MCItem

SUBCATEGORIES = ("pitch_order", "frequency", "interval", "chord")
LETTER_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
ACCIDENTALS = {"": 0, "#": 1, "b": -1, "##": 2, "bb": -2}
TRIADS = {"major": (4, 7), "minor": (3, 7), "diminished": (3, 6), "augmented": (4, 8)}
_NOTE = re.compile(r"^([A-G])(##|bb|#|b)?(-?\d+)$")


def midi(note: str) -> int:
    """MIDI number of a note in scientific pitch notation: ``"A4"`` -> 69, ``"C4"`` -> 60, ``"B#3"`` -> 60."""
    m = _NOTE.match(note)
    if m is None:
        raise ValueError(f"not a note name (letter, optional #/b, octave): {note!r}")
    letter, acc, octave = m.group(1), m.group(2) or "", int(m.group(3))
    return 12 * (octave + 1) + LETTER_PC[letter] + ACCIDENTALS[acc]


def frequency(note: str | int, a4: float = 440.0) -> float:
    """Equal-tempered frequency in Hz of a note name or MIDI number."""
    n = midi(note) if isinstance(note, str) else note
    return a4 * 2.0 ** ((n - 69) / 12)


def spell(number: int, rng: random.Random | None = None) -> str:
    """A name for MIDI ``number``: the natural when there is one, else a sharp or (with ``rng``, half the time) a flat."""
    pc, octave = number % 12, number // 12 - 1
    for letter, base in LETTER_PC.items():
        if base == pc:
            return f"{letter}{octave}"
    if rng is not None and rng.random() < 0.5:
        letter = next(lt for lt, b in LETTER_PC.items() if b == pc + 1)
        return f"{letter}b{octave}"
    letter = next(lt for lt, b in LETTER_PC.items() if b == pc - 1)
    return f"{letter}#{octave}"


def triad(root: str, quality: str) -> tuple[str, str, str] | None:
    """The root-position triad on ``root`` (a pitch class such as ``"F#"``), spelled in thirds; None
    when that spelling would need a double sharp or flat."""
    letters = "CDEFGAB"
    m = re.match(r"^([A-G])(#|b)?$", root)
    if m is None:
        raise ValueError(f"not a pitch class: {root!r}")
    root_pc = LETTER_PC[m.group(1)] + ACCIDENTALS[m.group(2) or ""]
    notes = [root]
    for step, semis in zip((2, 4), TRIADS[quality]):
        letter = letters[(letters.index(m.group(1)) + step) % 7]
        acc = (root_pc + semis - LETTER_PC[letter] + 6) % 12 - 6  # in -6..5
        if abs(acc) > 1:
            return None
        notes.append(letter + {0: "", 1: "#", -1: "b"}[acc])
    return tuple(notes)  # type: ignore[return-value]


def chord_quality(notes: tuple[str, ...]) -> str:
    """Quality of a root-position triad from its pitch classes (the inverse of :func:`triad`)."""
    pcs = [midi(n + "4") % 12 for n in notes]
    shape = ((pcs[1] - pcs[0]) % 12, (pcs[2] - pcs[0]) % 12)
    for q, s in TRIADS.items():
        if s == shape:
            return q
    raise ValueError(f"{'-'.join(notes)} is not a major, minor, diminished or augmented triad")


# ----------------------------------------------------------------------------- the set


def generate_music(n_per_subcategory: int = 100, seed: int = 0,
                   subcategories: tuple[str, ...] = SUBCATEGORIES) -> list[MCItem]:
    """``n_per_subcategory`` items of each subcategory, grouped by subcategory; deterministic per seed."""
    if n_per_subcategory < 1:
        raise ValueError(f"n_per_subcategory must be >= 1, got {n_per_subcategory}")
    unknown = [s for s in subcategories if s not in SUBCATEGORIES]
    if unknown:
        raise ValueError(f"unknown music subcategories {unknown}; known: {list(SUBCATEGORIES)}")
    makers = {"pitch_order": _pitch_order, "frequency": _frequency, "interval": _interval, "chord": _chord}
    items: list[MCItem] = []
    for sub in subcategories:
        rng = random.Random(f"music-{sub}-{seed}")
        for k in range(n_per_subcategory):
            q, opts, ans = makers[sub](rng)
            items.append(MCItem(id=f"music-{sub}-{k:04d}", question=q, options=tuple(opts), answer=ans,
                                category="music", subcategory=sub))
    return items


def _distinct_notes(rng: random.Random, lo: int, hi: int, k: int) -> list[int]:
    return rng.sample(range(lo, hi + 1), k)


def _pitch_order(rng: random.Random) -> tuple[str, list[str], int]:
    c = 12 * rng.randint(3, 6)  # a C (C2..C5); the notes straddle it, so octave numbers matter
    numbers = _distinct_notes(rng, c - 8, c + 8, 4)
    names = [spell(n, rng) for n in numbers]
    highest = rng.random() < 0.5
    best = max(numbers) if highest else min(numbers)
    return (f"Which of these notes has the {'highest' if highest else 'lowest'} pitch?", names, numbers.index(best))


def _frequency(rng: random.Random) -> tuple[str, list[str], int]:
    numbers = _distinct_notes(rng, 36, 96, 4)  # C2..C7
    answer = rng.randrange(4)
    hz = frequency(numbers[answer])
    return (f"In equal temperament with A4 = 440 Hz, which note has a fundamental frequency of about {hz:.0f} Hz?",
            [spell(n, rng) for n in numbers], answer)


def _interval(rng: random.Random) -> tuple[str, list[str], int]:
    low = rng.randint(48, 72)
    semis = rng.randint(1, 12)
    lo_name, hi_name = spell(low, rng), spell(low + semis, rng)
    start = rng.randint(max(1, semis - 3), semis)
    opts = [str(s) for s in range(start, start + 4)]
    return f"How many semitones are there from {lo_name} up to {hi_name}?", opts, opts.index(str(semis))


def _chord(rng: random.Random) -> tuple[str, list[str], int]:
    roots = ["C", "C#", "Db", "D", "Eb", "E", "F", "F#", "Gb", "G", "Ab", "A", "Bb", "B"]
    while True:
        quality = rng.choice(list(TRIADS))
        notes = triad(rng.choice(roots), quality)
        if notes is not None:
            break
    opts = list(TRIADS)
    return f"What is the quality of the triad {'-'.join(notes)}?", opts, opts.index(quality)
