"""FSD50K as a :class:`~ausweep.data.SoundSet`: the real data behind the probing study.

Ngo & Kim (2024) pair each FSD50K class's text ("the sound of <object>") with audio clips of that
class. This module reads the dataset in its *released* layout (Zenodo record 4060432)::

    root/FSD50K.ground_truth/dev.csv     fname,labels,mids,split   (split: train | val)
    root/FSD50K.ground_truth/eval.csv    fname,labels,mids
    root/FSD50K.dev_audio/<fname>.wav
    root/FSD50K.eval_audio/<fname>.wav

``labels`` is a quoted, comma-separated list. FSD50K propagates labels up the AudioSet ontology, so
a barking clip is labelled ``Bark,Dog,Domestic_animals_and_pets,Animal``.

The class vocabulary ships with the package (``resources/fsd50k_vocabulary.csv``, see
``resources/SOURCE.md``): 200 classes, 143 of them leaves in this reconstruction (FSD50K documents
144). Extraction (stage 3) reads the clips of the returned sound set.
"""

from __future__ import annotations

import csv
import difflib
import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ausweep.data import Clip, SoundSet

logger = logging.getLogger(__name__)

SPLITS = ("eval", "dev", "train", "val")
_VOCAB_COLUMNS = ("index", "label", "mid", "audioset_name", "is_leaf_in_vocab")


class FSD50KError(ValueError):
    """The FSD50K tree or vocabulary is missing something. One line naming the file (and field)."""

    def __init__(self, where: str | Path, message: str, field: str | None = None):
        self.where, self.field = str(where), field
        fld = f"column '{field}': " if field else ""
        super().__init__(f"{where}: {fld}{message}")


@dataclass(frozen=True)
class VocabEntry:
    index: int  # FSD50K's class index (0-199), the order of its vocabulary.csv
    label: str  # FSD50K label, e.g. "Male_speech_and_man_speaking"
    mid: str  # AudioSet ontology id, e.g. "/m/05zppz"
    audioset_name: str  # AudioSet display name, e.g. "Male speech, man speaking"
    is_leaf: bool  # no descendant of this class is among the 200


# ----------------------------------------------------------------------------- vocabulary


def _default_vocabulary_path() -> Path:
    from importlib.resources import files

    return Path(str(files("ausweep.data") / "resources" / "fsd50k_vocabulary.csv"))


def load_vocabulary(path: str | Path | None = None) -> list[VocabEntry]:
    """The FSD50K class vocabulary in index order. ``path`` defaults to the packaged copy."""
    path = Path(path) if path is not None else _default_vocabulary_path()
    return list(_load_vocabulary_cached(str(path)))


@lru_cache(maxsize=4)
def _load_vocabulary_cached(path: str) -> tuple[VocabEntry, ...]:
    if not Path(path).is_file():
        raise FSD50KError(path, "vocabulary file not found")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        _require_columns(reader.fieldnames, _VOCAB_COLUMNS, path)
        entries = []
        for line, row in enumerate(reader, start=2):
            try:
                entries.append(
                    VocabEntry(
                        index=int(row["index"]),
                        label=row["label"],
                        mid=row["mid"],
                        audioset_name=row["audioset_name"],
                        is_leaf=row["is_leaf_in_vocab"].strip() == "1",
                    )
                )
            except (TypeError, ValueError):
                raise FSD50KError(path, f"line {line}: malformed row {row}") from None
    entries.sort(key=lambda e: e.index)
    return tuple(entries)


def class_text(label: str, vocabulary: Sequence[VocabEntry] | None = None) -> str:
    """The object phrase for the LM template ("the sound of <phrase>") of an FSD50K label.

    Rule: the AudioSet display name, lowercased, with every synonym kept
    (``Male_speech_and_man_speaking`` -> "male speech, man speaking",
    ``Bathtub_(filling_or_washing)`` -> "bathtub (filling or washing)"). Synonyms stay because
    they carry the meaning a single word lacks ("chink, clink", "dishes, pots, and pans").
    All-capital words of two or more letters (acronyms) would keep their case; none of the 200
    display names has one. A label not in the vocabulary falls back to FSD50K's naming rule run
    backwards ("_and_" -> ", ", "_" -> " ").
    """
    by_label = {e.label: e for e in (vocabulary if vocabulary is not None else load_vocabulary())}
    entry = by_label.get(label)
    name = entry.audioset_name if entry else label.replace("_and_", ", ").replace("_", " ")
    return re.sub(r"[^\W\d_]+", _lower_word, name)  # letter runs: "Hi-hat" -> "hi", "hat"


def object_name(text: str) -> str:
    """One name for a class, from its text (e.g. :func:`class_text`): the object of "the sound of {}".

    Rule: the first synonym (text before the first comma), brackets around a qualifier dropped but
    its words kept, the head noun (last word before any qualifier) made singular where the ending
    is regular, letters lower-cased except acronyms. ``"bird vocalization, bird call, bird song"`` ->
    ``"bird vocalization"``; ``"dishes, pots, and pans"`` -> ``"dish"``; ``"rattle (instrument)"`` ->
    ``"rattle instrument"`` (the qualifier tells it from ``"rattle"``); ``"hi-hat"`` stays. The
    result holds no comma or bracket, so averaging its tokens averages the name's words only.
    Over FSD50K's 200 classes the names are all distinct (a unit test checks it).
    """
    first = text.split(",")[0].strip()
    head, _, qualifier = first.partition("(")
    words = head.split()
    if words:
        words[-1] = _singular(words[-1])
    name = " ".join([*words, *qualifier.replace(")", " ").split()])
    return re.sub(r"[^\W\d_]+", _lower_word, name)


# Plural in form, one thing in meaning: never cut to a singular ("the sound of scissor").
_PLURALIA_TANTUM = frozenset({"scissors", "pliers", "tongs", "trousers", "pants", "glasses", "binoculars", "clothes",
                              "news", "series", "species", "bagpipes"})


def _singular(word: str) -> str:
    """Regular English plurals only: "dishes" -> "dish", "fireworks" -> "firework"; "bus", "hiss",
    "glass", "scissors" and words not ending in s are left alone."""
    lower = word.lower()
    if lower in _PLURALIA_TANTUM:
        return word
    if lower.endswith(("shes", "ches", "xes", "sses", "zzes")):
        return word[:-2]
    if lower.endswith("ies") and len(word) > 4:
        return word[:-3] + ("Y" if word[-1].isupper() else "y")
    if lower.endswith("s") and not lower.endswith(("ss", "us", "is", "ous")) and len(word) > 3:
        return word[:-1]
    return word


def class_name(label: str, vocabulary: Sequence[VocabEntry] | None = None) -> str:
    """:func:`object_name` of an FSD50K label's :func:`class_text`: ``Bird_vocalization_and_bird_call_and_bird_song``
    -> ``"bird vocalization"``."""
    return object_name(class_text(label, vocabulary))


def _lower_word(match: re.Match) -> str:
    word = match.group()
    return word if len(word) > 1 and word.isupper() else word.lower()


# ----------------------------------------------------------------------------- clips


def load_fsd50k(
    root: str | Path,
    split: str = "eval",
    clips_per_class: int | None = 20,
    leaf_only: bool = True,
    single_label: bool = False,
    seed: int = 0,
    classes: Iterable[str] | None = None,
) -> SoundSet:
    """Up to ``clips_per_class`` clips of each FSD50K class from the released layout under ``root``.

    * ``split``: ``eval`` (eval.csv), ``dev`` (all of dev.csv), or ``train``/``val`` (the rows of
      dev.csv with that value in its ``split`` column).
    * ``leaf_only``: keep only leaf classes (143 here). Because FSD50K propagates labels to
      ancestors, a clip labelled ``Bark,Dog,Animal`` then counts for ``Bark`` only.
    * A clip counts for *every* selected class among its labels (so one file can appear under two
      classes, e.g. ``Bark`` and ``Growling``); this keeps every class's clips representative
      rather than biased to clips that happen to be single-labelled. Each :class:`Clip` lists all
      the returned classes its file carries in ``labels`` (whether or not it was sampled for them),
      which the probe uses to keep a clip out of both sides of a class split. ``single_label=True``
      instead keeps only clips with exactly one label in the class selection. (With
      ``leaf_only=False`` that leaves almost only top-level classes, since ancestors are labelled
      too.)
    * ``classes``: restrict to these FSD50K labels (e.g. ``["Bark", "Siren"]``).
    * Sampling: per class, a permutation seeded by ``(seed, class index)`` picks the clips, so a
      class's picks do not depend on which other classes are selected, and a larger
      ``clips_per_class`` extends a smaller one. ``None`` takes every clip. Clips come out in
      vocabulary order, then by file name.

    A class left with no clips is dropped with a warning. Raises :class:`FSD50KError` naming the
    file (and column) when the root, a CSV, a column, or a chosen audio file is missing.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if clips_per_class is not None and clips_per_class < 1:
        raise ValueError(f"clips_per_class must be >= 1 or None, got {clips_per_class}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FSD50KError(
            root,
            "FSD50K root not found (expected FSD50K.ground_truth/ and FSD50K.*_audio/ from zenodo.org/record/4060432)",
        )

    vocab = load_vocabulary()
    selection = _select_classes(vocab, classes, leaf_only)
    selected = {e.label for e in selection}

    csv_path = root / "FSD50K.ground_truth" / ("eval.csv" if split == "eval" else "dev.csv")
    audio_dir = root / ("FSD50K.eval_audio" if split == "eval" else "FSD50K.dev_audio")
    rows = _read_ground_truth(csv_path, split)
    known = {e.label for e in vocab}

    candidates: dict[str, list[str]] = {e.label: [] for e in selection}
    file_labels: dict[str, set[str]] = {}
    unknown: set[str] = set()
    for fname, labels in rows:
        unknown.update(label for label in labels if label not in known)
        hits = [label for label in labels if label in selected]
        if single_label and len(set(hits)) != 1:
            continue
        file_labels[fname] = set(hits)
        for label in dict.fromkeys(hits):  # de-duplicated, order kept
            candidates[label].append(fname)
    if unknown:
        logger.warning("%s: %d labels not in the FSD50K vocabulary were ignored (e.g. %s)",
                       csv_path, len(unknown), sorted(unknown)[:3])

    chosen: list[tuple[VocabEntry, list[str]]] = []
    empty: list[str] = []
    for entry in selection:
        fnames = sorted(candidates[entry.label], key=_fname_key)
        if not fnames:
            empty.append(entry.label)
            continue
        if clips_per_class is not None and len(fnames) > clips_per_class:
            order = np.random.default_rng((seed, entry.index)).permutation(len(fnames))
            fnames = sorted((fnames[i] for i in order[:clips_per_class]), key=_fname_key)
        chosen.append((entry, fnames))
    kept = [entry for entry, _ in chosen]
    # Each clip also records every kept class it is labelled with, sampled for it or not, so the
    # probe can keep a clip out of both sides of a class split (ausweep.probe.clips).
    order_of = {e.label: i for i, e in enumerate(kept)}
    clips = [
        Clip(path=str((audio_dir / f"{f}.wav").resolve()), label=entry.label,
             labels=tuple(sorted(file_labels[f] & order_of.keys(), key=order_of.__getitem__)))
        for entry, fnames in chosen for f in fnames
    ]
    if not kept:
        raise FSD50KError(csv_path, f"no clips for any of the {len(selection)} selected classes")
    if empty:
        # One line, not one per class: a subset of FSD50K can leave most classes empty.
        logger.warning("FSD50K %s: %d of %d classes have no clips%s and are dropped (e.g. %s)", split, len(empty),
                       len(selection), " with a single label" if single_label else "", ", ".join(empty[:3]))
        logger.debug("FSD50K %s: dropped classes: %s", split, ", ".join(empty))
    _check_audio_present(audio_dir, clips)

    return SoundSet(
        name=f"fsd50k-{split}",
        classes=tuple(e.label for e in kept),
        class_text={e.label: class_text(e.label, vocab) for e in kept},
        clips=tuple(clips),
        meta={
            "source": "fsd50k",
            "root": str(root),
            "split": split,
            "clips_per_class": str(clips_per_class),
            "leaf_only": str(leaf_only),
            "single_label": str(single_label),
            "seed": str(seed),
            "vocabulary": "reconstructed (200 classes, 143 leaves); see ausweep/data/resources/SOURCE.md",
        },
    )


def _select_classes(vocab: list[VocabEntry], classes: Iterable[str] | None, leaf_only: bool) -> list[VocabEntry]:
    if classes is None:
        return [e for e in vocab if e.is_leaf or not leaf_only]
    by_label = {e.label: e for e in vocab}
    wanted = list(dict.fromkeys(classes))
    for name in wanted:
        if name not in by_label:
            close = difflib.get_close_matches(name, list(by_label), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"unknown FSD50K class {name!r}{hint} (labels look like 'Male_speech_and_man_speaking')")
        if leaf_only and not by_label[name].is_leaf:
            raise ValueError(f"FSD50K class {name!r} is not a leaf class; pass leaf_only=False to use it")
    return sorted((by_label[n] for n in wanted), key=lambda e: e.index)


def _read_ground_truth(csv_path: Path, split: str) -> list[tuple[str, list[str]]]:
    if not csv_path.is_file():
        raise FSD50KError(csv_path, "ground-truth file not found")
    with open(csv_path, newline="", encoding="utf-8-sig") as f:  # -sig: tolerate a BOM from spreadsheet edits
        reader = csv.DictReader(f)
        needed = ("fname", "labels") + (("split",) if split in ("train", "val") else ())
        _require_columns(reader.fieldnames, needed, csv_path)
        rows = []
        for row in reader:
            if split in ("train", "val") and (row["split"] or "").strip() != split:
                continue
            fname = (row["fname"] or "").strip()
            labels = [name.strip() for name in (row["labels"] or "").split(",") if name.strip()]
            if fname and labels:
                rows.append((fname, labels))
    return rows


def _require_columns(found: Sequence[str] | None, needed: Iterable[str], path: str | Path) -> None:
    have = [c.strip() for c in (found or [])]
    for col in needed:
        if col not in have:
            raise FSD50KError(path, f"missing (header has: {', '.join(have) or 'nothing'})", field=col)


def _fname_key(fname: str) -> tuple[int, int, str]:
    # FSD50K file names are Freesound ids: sort numerically so the order reads naturally.
    return (0, int(fname), "") if fname.isdigit() else (1, 0, fname)


def _check_audio_present(audio_dir: Path, clips: list[Clip]) -> None:
    if not audio_dir.is_dir():
        raise FSD50KError(audio_dir, "audio folder not found (unzip the FSD50K audio next to FSD50K.ground_truth/)")
    missing = [c.path for c in clips if not Path(c.path).is_file()]
    if missing:
        raise FSD50KError(missing[0], f"audio file not found ({len(missing)} of {len(clips)} chosen clips are missing)")
