"""The declared task map of the LLM-backbone study: which categories ask the same question on the
text-only side and on the audio-grounded side.

Where it sits: between the studies' per-category accuracies (:func:`ausweep.benchmarks.mcq.accuracy_metrics`
keys ``acc/<category>/<subcategory>``) and the report that relates the two sides
(``python -m ausweep.report correlation``). Category names alone do not say what was asked: "sound"
is AuditoryBench on the text side and generated tones on the audio side. The map, a YAML file
(``configs/backbone_tasks.yaml`` by default), names each task once and lists the categories that
ask it on each side::

    tasks:
      chord_quality:
        domain: music
        question: the quality of a triad
        text: [music/chord]
        audio: [music/triad_quality]

A task with entries on both sides is *paired*; a task on one side, or a category no task names, is
*unpaired* and never compared. A task's accuracy on a side pools its entries' items
(``n/<entry>``-weighted).

Importing this module reads no file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ausweep.config import FileFormatError
from ausweep.files import resources_root

SIDES = ("text", "audio")
DEFAULT_TASK_MAP = resources_root() / "configs" / "backbone_tasks.yaml"
_FIELDS = ("domain", "question", *SIDES)


class TaskMapError(FileFormatError):
    """A task map that cannot be read: the message names the file, the task and the field."""


@dataclass(frozen=True)
class Task:
    """One question, asked by ``text`` categories from text alone and by ``audio`` categories with a clip."""

    name: str
    domain: str = ""
    question: str = ""
    text: tuple[str, ...] = ()
    audio: tuple[str, ...] = ()

    @property
    def paired(self) -> bool:
        return bool(self.text) and bool(self.audio)

    def entries(self, side: str) -> tuple[str, ...]:
        return self.text if side == "text" else self.audio


@dataclass(frozen=True)
class TaskScore:
    """A task's accuracy on one side and the items behind it; ``entries`` are the categories found."""

    acc: float
    n: float
    entries: tuple[str, ...]


@dataclass(frozen=True)
class TaskMap:
    tasks: tuple[Task, ...]
    path: str = ""

    def task(self, name: str) -> Task:
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(name)

    def task_of(self, side: str, key: str) -> str | None:
        """The task that ``key`` (``category/subcategory``) belongs to on ``side``, or None."""
        category = key.split("/", 1)[0]
        for t in self.tasks:
            for e in t.entries(side):
                if e == key or e == category:
                    return t.name
        return None

    def scores(self, side: str, metrics: Mapping[str, float], prefix: str = "acc") -> dict[str, TaskScore]:
        """``{task: TaskScore}`` for the tasks of ``side`` whose categories are in ``metrics``
        (keys ``<prefix>/<entry>`` with counts ``n/<entry>``; a missing count weighs 1)."""
        _check_side(side)
        out: dict[str, TaskScore] = {}
        for t in self.tasks:
            found = [e for e in t.entries(side) if f"{prefix}/{e}" in metrics]
            if not found:
                continue
            weights = [float(metrics.get(f"n/{e}", 1.0)) for e in found]
            total = sum(weights)
            acc = sum(float(metrics[f"{prefix}/{e}"]) * w for e, w in zip(found, weights)) / total if total else float("nan")
            out[t.name] = TaskScore(acc, total, tuple(found))
        return out

    def unmapped(self, side: str, metrics: Mapping[str, float], prefix: str = "acc") -> list[str]:
        """The categories in ``metrics`` (``<prefix>/<category>[/<subcategory>]``) that no task of
        ``side`` names: subcategories, and categories that have no subcategories."""
        _check_side(side)
        keys = [k[len(prefix) + 1:] for k in metrics if k.startswith(prefix + "/") and k.count("/") in (1, 2)]
        with_sub = {k.split("/", 1)[0] for k in keys if "/" in k}
        leaves = [k for k in keys if "/" in k or k not in with_sub]
        return sorted(k for k in leaves if self.task_of(side, k) is None)


def load_task_map(path: str | os.PathLike | None = None) -> TaskMap:
    """The task map in ``path`` (default :data:`DEFAULT_TASK_MAP`). Every error names the file, the task and the field."""
    import yaml

    path = Path(path).expanduser() if path is not None else DEFAULT_TASK_MAP
    if not path.is_file():
        raise TaskMapError(path, "", "", "file does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise TaskMapError(path, "", "", f"cannot parse: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), dict) or not data["tasks"]:
        raise TaskMapError(path, "", "tasks", "expected a mapping 'tasks: {name: {domain, question, text, audio}}'")
    extra = sorted(set(data) - {"tasks"})
    if extra:
        raise TaskMapError(path, "", extra[0], "unknown top-level key (expected only 'tasks')")
    tasks: list[Task] = []
    named: dict[str, list[tuple[str, str]]] = {side: [] for side in SIDES}  # side -> [(entry, task)]
    for name, spec in data["tasks"].items():
        where = f"task {name!r}"
        if not isinstance(spec, dict):
            raise TaskMapError(path, where, "", "expected a mapping with domain, question, text and/or audio")
        unknown = sorted(set(spec) - set(_FIELDS))
        if unknown:
            raise TaskMapError(path, where, unknown[0], f"unknown field (expected {', '.join(_FIELDS)})")
        sides = {s: _entries(spec.get(s), path, where, s) for s in SIDES}
        if not any(sides.values()):
            raise TaskMapError(path, where, "text", "a task needs categories on at least one side (text, audio)")
        for field in ("domain", "question"):
            if spec.get(field) is not None and not isinstance(spec[field], str):
                raise TaskMapError(path, where, field, f"expected a string, got {spec[field]!r}")
        for side, entries in sides.items():
            for e in entries:  # an entry, or a whole category and one of its subcategories, in two places
                other = next((t for f, t in named[side] if f == e or f.startswith(e + "/") or e.startswith(f + "/")), None)
                if other is not None:
                    raise TaskMapError(path, where, side, f"{e!r} overlaps a category of task {other!r}")
                named[side].append((e, str(name)))
        tasks.append(Task(str(name), spec.get("domain") or "", spec.get("question") or "", sides["text"], sides["audio"]))
    return TaskMap(tuple(tasks), str(path))


def _entries(value: Any, path: Path, where: str, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise TaskMapError(path, where, field, f"expected a list of 'category' or 'category/subcategory' strings, got {value!r}")
    for v in value:
        if v.count("/") > 1 or v.startswith("/") or v.endswith("/"):
            raise TaskMapError(path, where, field, f"{v!r} is not 'category' or 'category/subcategory'")
    return tuple(v.strip() for v in value)


def _check_side(side: str) -> None:
    if side not in SIDES:
        raise ValueError(f"side must be one of {list(SIDES)}, got {side!r}")
