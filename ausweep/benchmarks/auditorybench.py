"""AuditoryBench (Ok, Yoo & Lee 2024, arXiv 2409.08199): the data, normalised, with its defects flagged.

The benchmark has two tasks, and each sentence has one ``[MASK]``:

* **animal** (animal sound recognition): "Hoot is the sound a [MASK] makes." -> "eagle owl".
* **pitch** (sound pitch comparison): "The sound of a flute has a [MASK] pitch than the sound of a
  tuba." -> "higher" / "lower".

The CSVs are vendored unchanged under ``ausweep/benchmarks/data/auditorybench/``.
``SOURCE.md`` there gives the upstream versions and blob hashes, and ``LICENSE.md`` the terms:
MIT, but upstream heads that section "License (TBD)". :func:`load_auditorybench` reads any
task, split and format into typed :class:`Item` records.

Choices made here (they also hold for the metrics and baselines):

* **Two formats for the animal task.** ``fmt="mc"`` (default) reads the newer upstream files, which
  add four options ``A``-``D`` and an ``Answer`` letter. ``fmt="mask"`` reads the older files
  (sentence and answer only). Upstream's README evaluates that format: dev has 593 rows there,
  but 592 in the MC file, which drops the row whose animal is "animal". Upstream's old
  mask-format *train* file is a copy of test (an upstream bug), so ``fmt="mask"`` train is the
  first three columns of the MC train file. Pitch has one format; ``fmt`` does not change it.
* **Gold answer for animal = the ``animal`` column.** The upstream exact-match metric compares
  against it. Our MC accuracy uses it too: ``answer_option`` is the index of the option equal
  to ``animal``, and the ``Answer`` letter is used only when no option equals it. In every
  shipped file the animal is one of the four options, so the letter is never needed.
  In 12 train, 2 dev, 1 test and 7 wiki rows the letter points to a *different* option
  (for example wiki "bleat ... [MASK]" with animal=deer, letter -> sheep). We keep those rows
  and give them the flag ``answer_letter_mismatch``. ``letter_option`` keeps upstream's letter,
  so you can score against it instead.
* **Rows are never edited, and dropped only for one reason** (the next point). We strip whitespace
  from every field and lower-case the pitch answers. Defects are listed in ``Item.flags``:

  - ``blank_span``: an auditory span is empty or whitespace only (pitch: train 3, dev 3,
    test 1, wiki 0; upstream cut these at an inch mark ``"``). Evaluation keeps these rows, since
    text-only baselines do not read spans. The span detector skips them when it trains.
  - ``answer_letter_mismatch``: see above (animal MC only).
  - ``duplicate``: the row, after normalisation, equals an earlier row of the same file (the
    first copy is not flagged). Animal MC train has 14 (16 in ``fmt="mask"``, which has no options
    to tell two rows apart). Legacy mask test has 1 (the MC test file gives the two copies
    different option orders). Pitch train has 110, dev 9, test 22.
  - ``multi_mask``: the sentence has more than one ``[MASK]`` (3 animal train rows, e.g. "The
    sound of a [MASK] singing ... is called a [MASK]."). Scorers fill the *first* ``[MASK]``.
    A masked LM sees the later one as an extra, unscored mask token.
  - ``in_train``: a dev, test or wiki row whose sentence and answer also appear in train, compared
    after :func:`normalise` (case-folded, runs of whitespace made one space, ends stripped).
    Counts per split (dev / test / wiki): animal 31 / 60 / 32, pitch 25 / 47 / 0, the same in
    both formats. Compared exactly (fields stripped, case kept) they are animal 31 / 58 / 0:
    two test rows and every wiki overlap differ from their train copy only in case ("Woof is
    the sound ..." vs "WOOF is the sound ..."; wiki writes "squeak is the sound a [MASK] makes."
    where train has "Squeak ..."). Ignoring punctuation as well would add near-copies such as
    "'meow'." vs "'meow.'" (animal test 70, dev 34); we do not, as punctuation can change a sentence.
* **Rows that also appear in train are left out of dev, test and wiki by default**
  (``cross_split_duplicates="drop"``): a model trained on train has seen the question and its
  answer, so scoring it there measures memory, and it would pick its best dev epoch partly on
  memory. ``"keep"`` scores every row, flagged ``in_train``; that is the published protocol, for
  comparison with the published numbers. Train itself is never filtered (its own repeats are
  the ``duplicate`` flag). :func:`n_in_train` gives how many rows the rule matches.
* **Column normalisation:** train's ``span`` column is ``description`` in the other animal files.
  The pitch wiki file orders its columns ``span1,span2,sentence,answer``. Columns are read by name.

Expected sizes (rows in the files, i.e. with ``cross_split_duplicates="keep"``), asserted in the
tests: animal train 4,211 / dev 592 (mc) or 593 (mask) / test 1,211 / wiki 197; pitch train 8,312 /
dev 1,178 / test 2,387 / wiki 3,625.
"""

from __future__ import annotations

import csv
import functools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from importlib.resources import files
from pathlib import Path
from typing import Literal, get_args

Task = Literal["animal", "pitch"]
Split = Literal["train", "dev", "test", "wiki"]
Format = Literal["mc", "mask"]
CrossSplit = Literal["drop", "keep"]

TASKS: tuple[str, ...] = get_args(Task)
SPLITS: tuple[str, ...] = get_args(Split)
FORMATS: tuple[str, ...] = get_args(Format)
CROSS_SPLIT: tuple[str, ...] = get_args(CrossSplit)
FLAGS = ("blank_span", "answer_letter_mismatch", "duplicate", "multi_mask", "in_train")
MASK = "[MASK]"
PITCH_OPTIONS = ("higher", "lower")
LETTERS = ("A", "B", "C", "D")

# Rows per (task, split, fmt) in the files, from the upstream README table and SOURCE.md (MC dev: 592).
EXPECTED_ROWS: dict[tuple[str, str, str], int] = {
    ("animal", "train", "mc"): 4211, ("animal", "dev", "mc"): 592,
    ("animal", "test", "mc"): 1211, ("animal", "wiki", "mc"): 197,
    ("animal", "train", "mask"): 4211, ("animal", "dev", "mask"): 593,
    ("animal", "test", "mask"): 1211, ("animal", "wiki", "mask"): 197,
    **{("pitch", s, f): n for s, n in zip(SPLITS, (8312, 1178, 2387, 3625)) for f in FORMATS},
}

# Published test accuracies (percent, as printed; our metrics are fractions in [0, 1]).
# Sources: the Imagine-to-Hear README (github.com/uso7d0/ImagineToHear: "BERT-base" and "AudioBERT"
# rows, with dev / test / wiki) and the AudioBERT README (github.com/HJ-Ok/AudioBERT: "BERT-large"
# and "LLaMA3.1-8B", test only). The AudioBERT README reports AudioBERT itself at 36.69 / 76.31.
# Here we use the Imagine-to-Hear numbers, which come from the later paper.
# Protocol: masked LMs use the upstream fill-mask metrics on the mask-format data (animal = exact
# match of all the answer's word pieces, pitch = higher-vs-lower logit at the mask). The README does
# not say how LLaMA3.1-8B was scored, so our causal-LM multiple-choice numbers are not directly
# comparable with its row.
REFERENCE: dict[str, dict[str, float]] = {
    "BERT-base": {
        "animal/dev": 15.51, "animal/test": 13.46, "animal/wiki": 3.05,
        "pitch/dev": 59.42, "pitch/test": 60.41, "pitch/wiki": 48.06,
    },
    "AudioBERT": {
        "animal/dev": 38.28, "animal/test": 36.63, "animal/wiki": 14.32,
        "pitch/dev": 73.18, "pitch/test": 74.83, "pitch/wiki": 55.31,
    },
    "BERT-large": {"animal/test": 15.85, "pitch/test": 58.90},
    "LLaMA3.1-8B": {"animal/test": 21.80, "pitch/test": 62.55},
}
REFERENCE_SOURCES: dict[str, str] = {
    "BERT-base": "Imagine-to-Hear README (uso7d0/ImagineToHear), Results tables",
    "AudioBERT": "Imagine-to-Hear README (uso7d0/ImagineToHear), Results tables",
    "BERT-large": "AudioBERT README (HJ-Ok/AudioBERT), Results table",
    "LLaMA3.1-8B": "AudioBERT README (HJ-Ok/AudioBERT), Results table",
}
# Our model names -> the published row they reproduce (text-only baselines only).
REFERENCE_FOR_MODEL: dict[str, str] = {
    "bert-base-uncased": "BERT-base",
    "google-bert/bert-base-uncased": "BERT-base",
    "bert-large-uncased": "BERT-large",
    "google-bert/bert-large-uncased": "BERT-large",
    "llama-3.1-8b": "LLaMA3.1-8B",
    "meta-llama/Llama-3.1-8B": "LLaMA3.1-8B",
}


@dataclass(frozen=True)
class Item:
    """One AuditoryBench question.

    ``sentence`` holds ``[MASK]`` where the answer goes. ``answer`` is the animal name (may be
    several words) or ``"higher"`` / ``"lower"``. ``spans`` are the auditory spans: ``(description,)``
    for animal and ``(span1, span2)`` for pitch. ``options`` are the four MC options for animal
    (``()`` in the mask format) or ``("higher", "lower")`` for pitch. ``answer_option`` is the
    gold index into ``options`` (None without options). ``letter_option`` is the index that
    upstream's ``Answer`` letter gives (animal MC only). ``index`` is the 0-based row in the
    file. ``flags`` are the defect flags (see the module docstring).
    """

    task: str
    split: str
    index: int
    sentence: str
    answer: str
    spans: tuple[str, ...]
    options: tuple[str, ...] = ()
    answer_option: int | None = None
    letter_option: int | None = None
    flags: tuple[str, ...] = ()


def data_root() -> Path:
    """The vendored data folder inside the installed package."""
    return Path(str(files("ausweep.benchmarks") / "data" / "auditorybench"))


def data_file(task: str, split: str, fmt: str = "mc", root: str | Path | None = None) -> Path:
    """The CSV holding ``task`` / ``split`` / ``fmt`` (see the module docstring for the mapping)."""
    _check(task, split, fmt)
    base = Path(root) if root is not None else data_root()
    if task == "pitch":
        return base / "sound_pitch" / f"{split}.csv"
    if fmt == "mask" and split != "train":  # no usable legacy train file upstream (it duplicates test)
        return base / "animal_sound" / "legacy_mask_format" / f"{split}.csv"
    return base / "animal_sound" / f"{split}.csv"


def load_auditorybench(
    task: Task, split: Split, root: str | Path | None = None, fmt: Format = "mc",
    cross_split_duplicates: CrossSplit = "drop",
) -> list[Item]:
    """The items of ``task`` / ``split`` in file order; ``root`` overrides the vendored data folder.

    ``cross_split_duplicates="drop"`` (default) leaves out the dev, test and wiki rows that also
    appear in train (flag ``in_train``; see the module docstring); ``"keep"`` returns every row of
    the file, as the published numbers were scored. ``Item.index`` is always the row in the file.
    """
    _check(task, split, fmt, cross_split_duplicates)
    items = _load(task, split, str(root) if root is not None else None, fmt)
    if cross_split_duplicates == "keep":
        return list(items)
    return [it for it in items if "in_train" not in it.flags]


def n_in_train(task: Task, split: Split, root: str | Path | None = None, fmt: Format = "mc") -> int:
    """How many rows of ``task`` / ``split`` also appear in train (what ``"drop"`` leaves out; 0 for train)."""
    _check(task, split, fmt)
    return sum("in_train" in it.flags for it in _load(task, split, str(root) if root is not None else None, fmt))


def normalise(text: str) -> str:
    """The form in which two rows are compared across splits: case-folded, whitespace runs made one space."""
    return " ".join(text.casefold().split())


def flag_counts(items: Iterable[Item]) -> dict[str, int]:
    """How many items carry each flag (every flag in :data:`FLAGS` is present, possibly 0)."""
    counts = Counter(f for it in items for f in it.flags)
    return {f: counts.get(f, 0) for f in FLAGS}


# ----------------------------------------------------------------------------- internals


def _check(task: str, split: str, fmt: str, cross_split: str = "drop") -> None:
    for value, known, what in ((task, TASKS, "task"), (split, SPLITS, "split"), (fmt, FORMATS, "fmt"),
                               (cross_split, CROSS_SPLIT, "cross_split_duplicates")):
        if value not in known:
            raise ValueError(f"AuditoryBench {what} must be one of {list(known)}, got {value!r}")


def _read(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"AuditoryBench file {path} is missing (is the package data installed?)")
    with open(path, newline="", encoding="utf-8") as f:
        return [{k.strip(): (v or "").strip() for k, v in row.items()} for row in csv.DictReader(f)]


def _col(row: dict[str, str], *names: str, path: Path) -> str:
    for n in names:
        if n in row:
            return row[n]
    raise ValueError(f"{path}: no column {' or '.join(repr(n) for n in names)} (columns: {list(row)})")


@functools.lru_cache(maxsize=32)
def _load(task: str, split: str, root: str | None, fmt: str) -> tuple[Item, ...]:
    path = data_file(task, split, fmt, root)
    rows = _read(path)
    # (normalised sentence, normalised answer) of every train row, to flag copies in other splits
    in_train: set[tuple[str, str]] = set()
    if split != "train":
        try:
            in_train = {_cross_key(it) for it in _load(task, "train", root, fmt)}
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{e}; it is needed to flag the {split} rows that also appear in train") from None
    items: list[Item] = []
    seen: set[tuple] = set()
    for i, row in enumerate(rows):
        flags: list[str] = []
        sentence = _col(row, "sentence", path=path)
        if task == "pitch":
            answer = _col(row, "answer", path=path).lower()
            if answer not in PITCH_OPTIONS:
                raise ValueError(f"{path}: row {i}: pitch answer must be higher or lower, got {answer!r}")
            spans = (_col(row, "span1", path=path), _col(row, "span2", path=path))
            options, gold, letter = PITCH_OPTIONS, PITCH_OPTIONS.index(answer), None
        else:
            answer = _col(row, "animal", path=path)
            spans = (_col(row, "description", "span", path=path),)
            options, gold, letter = (), None, None
            if fmt == "mc":
                options = tuple(_col(row, c, path=path) for c in LETTERS)
                letter_str = _col(row, "Answer", path=path).upper()
                if letter_str not in LETTERS:
                    raise ValueError(f"{path}: row {i}: Answer must be one of A-D, got {letter_str!r}")
                letter = LETTERS.index(letter_str)
                gold = options.index(answer) if answer in options else letter
                if options[letter] != answer:
                    flags.append("answer_letter_mismatch")
        if any(not s for s in spans):
            flags.append("blank_span")
        n_masks = sentence.count(MASK)
        if n_masks == 0:
            raise ValueError(f"{path}: row {i}: sentence has no {MASK}: {sentence!r}")
        if n_masks > 1:
            flags.append("multi_mask")
        key = (sentence, answer, spans, options, gold)
        if key in seen:
            flags.append("duplicate")
        seen.add(key)
        item = Item(task, split, i, sentence, answer, spans, options, gold, letter, tuple(flags))
        if _cross_key(item) in in_train:
            item = replace(item, flags=(*item.flags, "in_train"))
        items.append(item)
    return tuple(items)


def _cross_key(item: Item) -> tuple[str, str]:
    return normalise(item.sentence), normalise(item.answer)
