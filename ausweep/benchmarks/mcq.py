"""The multiple-choice item format shared by every knowledge benchmark, text-only or with audio.

One item is a question, its options, the index of the right option, a category and a
subcategory (per-category accuracy is what the LLM-backbone study compares), and for audio sets
the path of a clip. Files are JSONL (one object per line), YAML (a list, or ``{items: [...]}``)
or CSV (``options`` joined by ``|``); the same loader reads AKB-2000-style text sets a user
brings, the generated phonology set and audio manifests (``audio`` relative to the file).

    {"id": "rhyme-0001", "question": "Which word rhymes with 'cat'?",
     "options": ["hat", "dog", "cup", "tree"], "answer": "hat",
     "category": "phonology", "subcategory": "rhyme"}

``answer`` may be the option text, its 0-based index, or a letter (``"A"``..). Every error names
the file, the line (or item number) and the field.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

from ausweep.config import FileFormatError
from ausweep.files import jsonl_records, write_jsonl_atomic
from ausweep.track.keys import join_key

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
SUFFIXES = (".jsonl", ".json", ".yaml", ".yml", ".csv")
KEY_MAX = 250  # MLflow's limit on a metric key; checked on the longest key a category makes (dev/acc/<c>/<s>)


class MCFormatError(FileFormatError):
    """A multiple-choice file that cannot be read: the message names the file, item and field."""



@dataclass(frozen=True)
class MCItem:
    """One multiple-choice question. ``answer`` is the 0-based index of the right option;
    ``audio`` is an absolute path for audio items, None for text-only ones."""

    id: str
    question: str
    options: tuple[str, ...]
    answer: int
    category: str = ""
    subcategory: str = ""
    audio: str | None = None

    def __post_init__(self) -> None:
        if len(self.options) < 2:
            raise ValueError(f"item {self.id!r}: needs at least 2 options, got {list(self.options)}")
        if len(set(self.options)) != len(self.options):
            raise ValueError(f"item {self.id!r}: repeated options {list(self.options)}")
        if not 0 <= self.answer < len(self.options):
            raise ValueError(f"item {self.id!r}: answer index {self.answer} outside 0..{len(self.options) - 1}")

    @property
    def answer_text(self) -> str:
        return self.options[self.answer]

    @property
    def answer_letter(self) -> str:
        return LETTERS[self.answer]

    def to_record(self, relative_to: str | os.PathLike | None = None) -> dict[str, Any]:
        """A JSON-able dict that :func:`parse_item` reads back (``answer`` as option text)."""
        rec = asdict(self)
        rec["options"] = list(self.options)
        rec["answer"] = self.answer_text
        if self.audio is not None and relative_to is not None:
            rec["audio"] = os.path.relpath(self.audio, relative_to)
        if rec["audio"] is None:
            del rec["audio"]
        return rec


def parse_item(rec: Any, path: str | os.PathLike, where: str, base: Path | None = None,
               default_id: str = "", check_audio: bool = True) -> MCItem:
    """One record (a dict) as an :class:`MCItem`; ``base`` resolves relative audio paths."""
    if not isinstance(rec, dict):
        raise MCFormatError(path, where, "", f"expected an object with question/options/answer, got {type(rec).__name__}")
    for key in ("question", "options", "answer"):
        if key not in rec or rec[key] in (None, ""):
            raise MCFormatError(path, where, key, "missing")
    unknown = set(rec) - {"id", "question", "options", "answer", "category", "subcategory", "audio"}
    if unknown:
        raise MCFormatError(path, where, sorted(unknown)[0], "unknown field (expected id, question, options, answer, category, subcategory, audio)")
    options = rec["options"]
    if isinstance(options, str):
        options = [o.strip() for o in options.split("|")]
    if not isinstance(options, list) or not all(isinstance(o, (str, int, float)) for o in options):
        raise MCFormatError(path, where, "options", f"expected a list of strings, got {options!r}")
    options = tuple(str(o) for o in options)
    if len(options) < 2:
        raise MCFormatError(path, where, "options", f"needs at least 2 options, got {list(options)}")
    if len(set(options)) != len(options):
        raise MCFormatError(path, where, "options", f"repeated options {list(options)}")
    answer = _answer_index(rec["answer"], options, path, where)
    audio = rec.get("audio")
    if audio is not None:
        p = Path(str(audio))
        if not p.is_absolute() and base is not None:
            p = base / p
        if check_audio and not p.is_file():
            raise MCFormatError(path, where, "audio", f"audio file {p} does not exist")
        audio = str(p)
    category = _category_name(rec.get("category"), path, where, "category")
    subcategory = _category_name(rec.get("subcategory"), path, where, "subcategory")
    if subcategory and not category:
        raise MCFormatError(path, where, "subcategory", f"{subcategory!r} has no category; give the item a category too")
    key = join_key("dev", "acc", *(n for n in (category, subcategory) if n))
    if len(key) > KEY_MAX:
        raise MCFormatError(path, where, "category" if len(join_key("dev", "acc", category)) > KEY_MAX else "subcategory",
                            f"too long: the metric key {key[:60]!r}... would have {len(key)} characters "
                            f"(MLflow keys hold {KEY_MAX}; characters outside letters, digits, _ - . and space take up to 9 each)")
    return MCItem(id=str(rec.get("id") or default_id), question=str(rec["question"]), options=options, answer=answer,
                  category=category, subcategory=subcategory, audio=audio)


def _category_name(value: Any, path: Any, where: str, field: str) -> str:
    """A category or subcategory name as written (any characters: metric keys escape them), or ""
    for none. Refused: a non-string, a name of only whitespace, leading or trailing whitespace (the
    task map strips its entries, so such a category could never be paired)."""
    if value is None or value == "":
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise MCFormatError(path, where, field, f"expected a name (a string), got {value!r}")
    name = str(value)
    if not name.strip():
        raise MCFormatError(path, where, field, f"{name!r} is only whitespace; leave the field out for none")
    if name != name.strip():
        raise MCFormatError(path, where, field, f"{name!r} has leading or trailing whitespace")
    return name


def _answer_index(answer: Any, options: tuple[str, ...], path: Any, where: str) -> int:
    if isinstance(answer, bool):
        raise MCFormatError(path, where, "answer", f"expected option text, index or letter, got {answer!r}")
    if isinstance(answer, int):
        if 0 <= answer < len(options):
            return answer
        raise MCFormatError(path, where, "answer", f"index {answer} outside 0..{len(options) - 1}")
    text = str(answer).strip()
    if text in options:
        return options.index(text)
    if len(text) == 1 and text.upper() in LETTERS[: len(options)]:
        return LETTERS.index(text.upper())
    if text.isdigit() and int(text) < len(options):
        return int(text)
    raise MCFormatError(path, where, "answer", f"{answer!r} is not one of the options {list(options)} (nor an index or letter)")


def load_mc(path: str | os.PathLike, check_audio: bool = True) -> list[MCItem]:
    """Every item of a JSONL / JSON / YAML / CSV multiple-choice file, in file order.

    Relative ``audio`` paths are taken from the file's folder; ``check_audio`` fails on a missing
    clip at load time rather than halfway through an evaluation. Ids default to ``<stem>-<n>`` and
    must be unique.
    """
    path = Path(path)
    if not path.is_file():
        raise MCFormatError(path, "", "", "file does not exist")
    if path.suffix not in SUFFIXES:
        raise MCFormatError(path, "", "", f"unsupported suffix {path.suffix!r}; use one of {list(SUFFIXES)}")
    base = path.parent
    records: list[tuple[str, Any]] = []
    if path.suffix == ".jsonl":
        records = [(f"line {n}", rec) for n, rec in jsonl_records(path, MCFormatError)]
    elif path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            for n, row in enumerate(csv.DictReader(f), 2):
                records.append((f"line {n}", {k: v for k, v in row.items() if k is not None and v not in (None, "")}))
    else:
        import yaml

        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f) if path.suffix == ".json" else yaml.safe_load(f)
        except (json.JSONDecodeError, yaml.YAMLError) as e:
            raise MCFormatError(path, "", "", f"cannot parse: {e}") from None
        if isinstance(data, dict) and "items" in data:
            data = data["items"]
        if not isinstance(data, list):
            raise MCFormatError(path, "", "items", "expected a list of items (or a mapping with an 'items' list)")
        records = [(f"item {n}", rec) for n, rec in enumerate(data, 1)]
    if not records:
        raise MCFormatError(path, "", "", "no items")
    items = [parse_item(rec, path, where, base=base, default_id=f"{path.stem}-{n}", check_audio=check_audio)
             for n, (where, rec) in enumerate(records, 1)]
    seen: dict[str, str] = {}
    for (where, _), it in zip(records, items):
        if it.id in seen:
            raise MCFormatError(path, where, "id", f"id {it.id!r} repeats the one at {seen[it.id]}")
        seen[it.id] = where
    return items


def save_jsonl(items: Iterable[MCItem], path: str | os.PathLike) -> Path:
    """Write items as JSONL atomically (a crash never leaves a half-written set); audio paths are
    stored relative to the file's folder so the folder can be moved."""
    path = Path(path)
    write_jsonl_atomic(path, [it.to_record(relative_to=path.parent) for it in items])
    return path


def categories(items: Iterable[MCItem]) -> dict[str, int]:
    """Item count per category, in first-seen order."""
    out: dict[str, int] = {}
    for it in items:
        out[it.category] = out.get(it.category, 0) + 1
    return out


# ----------------------------------------------------------------------------- prompts and scores


def format_prompt(item: MCItem, context: str | None = None) -> str:
    """The one prompt layout every scorer uses (text LLMs, the cascade, the audio-grounded LALMs),
    so scores differ by model, not by wording::

        [Context: <context>\\n]Question: <question>
        Options: A. <opt> B. <opt> ...
        Answer:

    The continuation scored or generated after ``Answer:`` is ``" <option text>"``; generations may
    also answer with the letter (see :mod:`ausweep.benchmarks.scoring`).
    """
    opts = " ".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(item.options))
    head = f"Context: {context}\n" if context else ""
    return f"{head}Question: {item.question}\nOptions: {opts}\nAnswer:"


def accuracy_metrics(items: list[MCItem], predicted: list[int | None]) -> dict[str, float]:
    """Accuracy overall, per category and per subcategory, with item counts; fractions in [0, 1].

    * ``acc``: the **macro** average over categories, each category weighing the same whatever its
      size, so one large set (AuditoryBench's 2,387 pitch items, say) does not decide the headline.
      Items with no category form one more group.
    * ``acc_micro``: every item weighing the same (correct / all items), beside it.
    * ``acc/<category>``, ``n/<category>``: the category's items pooled.
    * ``acc/<category>/<subcategory>``, ``n/<category>/<subcategory>``.
    * ``n``: all items.

    Category and subcategory names are escaped into key levels with
    :func:`ausweep.track.keys.join_key` ("Sound & Music" -> ``Sound _x26_ Music``, a ``/`` inside a
    name -> ``_x2f_``; most names need nothing), so every key is one MLflow accepts and
    :func:`ausweep.track.keys.split_key` gives the names back exactly.

    A prediction of None (an unparsable generation) counts as wrong.
    """
    if len(items) != len(predicted):
        raise ValueError(f"{len(items)} items but {len(predicted)} predictions")
    if not items:
        raise ValueError("no items to score")
    groups: dict[tuple[str, ...], list[bool]] = {}
    categories: dict[str, list[bool]] = {}
    for it, p in zip(items, predicted):
        ok = p == it.answer
        categories.setdefault(it.category, []).append(ok)
        keys: list[tuple[str, ...]] = [()]
        if it.category:
            keys.append((it.category,))
            if it.subcategory:
                keys.append((it.category, it.subcategory))
        for k in keys:
            groups.setdefault(k, []).append(ok)
    out: dict[str, float] = {}
    for k, oks in groups.items():
        out[join_key("acc", *k)] = sum(oks) / len(oks)
        out[join_key("n", *k)] = float(len(oks))
    out["acc_micro"] = out.pop("acc")
    out["acc"] = sum(sum(oks) / len(oks) for oks in categories.values()) / len(categories)
    return out
