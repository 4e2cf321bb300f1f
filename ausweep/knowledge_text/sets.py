"""Named multiple-choice sets for the knowledge studies: generated, vendored, or a user's file.

Where it sits: between the item sources and the scorers. :func:`load_set` turns a set name into
:class:`~ausweep.benchmarks.mcq.MCItem` records, which :mod:`ausweep.benchmarks.scoring` scores.

* ``phonology``: generated from CMUdict (:mod:`.phonology`): rhyme, homophone, stress, syllables.
* ``music``: generated from equal temperament (:mod:`.music`): pitch_order, frequency, interval, chord.
* ``auditorybench``: AuditoryBench's test split (:mod:`ausweep.benchmarks.auditorybench`) as multiple
  choice, ``category="sound"``: ``animal`` (1,211 items, four options) and ``pitch`` (2,387 items,
  higher / lower). The ``[MASK]`` of each sentence becomes a blank ``___`` in the question.
* ``file:<path>``, or any path ending in ``.jsonl`` / ``.json`` / ``.yaml`` / ``.yml`` / ``.csv``: a
  user's file in the :mod:`.mcq` format, e.g. an AKB-2000 copy (not public, so not shipped).

``max_items`` keeps a set small for demos and tests without losing subcategories: items are taken
round-robin over (category, subcategory), in each group's own order, then put back in set order.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from ausweep.benchmarks.mcq import SUFFIXES, MCFormatError, MCItem, load_mc
from ausweep.registry import Registry

# Items per subcategory of a generated set when max_items is not given.
DEFAULT_PER_SUBCATEGORY = 100

SetLoader = Callable[[int | None, int], list[MCItem]]  # (max_items, seed) -> items
SETS: Registry[SetLoader] = Registry("knowledge set")


def load_set(name: str, max_items: int | None = None, seed: int = 0) -> list[MCItem]:
    """The items of set ``name`` (a registered name, ``file:<path>`` or a path), at most ``max_items``.

    ``seed`` changes the generated sets only; vendored and file sets keep their order.
    Raises UnknownNameError (listing the known sets) for an unknown name, and
    :class:`~ausweep.benchmarks.mcq.MCFormatError` for a missing or malformed file.
    """
    if max_items is not None and max_items < 1:
        raise ValueError(f"max_items must be >= 1 or None, got {max_items}")
    path = file_path(name)
    if path is not None:
        return take_balanced(_load_file(path), max_items)
    return SETS.get(name)(max_items, seed)


def check_set(name: str) -> None:
    """Validate ``name`` without generating anything: a known set, or a readable file in the MC format."""
    path = file_path(name)
    if path is None:
        SETS.entry(name)  # UnknownNameError lists the known sets
    else:
        _load_file(path)


def set_names() -> list[str]:
    return SETS.names()


def file_path(name: str) -> Path | None:
    """The file a set name points to (``file:<path>``, or a path with an MC-file suffix); None for registry names."""
    if name.startswith("file:"):
        return Path(name[len("file:"):]).expanduser()
    if name.endswith(SUFFIXES) or "/" in name or "\\" in name:
        return Path(name).expanduser()
    return None


def set_label(name: str) -> str:
    """A short name for file names and tables: the registry name, or the file's stem."""
    path = file_path(name)
    return path.stem if path is not None else name


def take_balanced(items: list[MCItem], max_items: int | None) -> list[MCItem]:
    """At most ``max_items`` items, round-robin over (category, subcategory), in the original order."""
    if max_items is None or len(items) <= max_items:
        return list(items)
    groups: dict[tuple[str, str], list[int]] = {}
    for i, it in enumerate(items):
        groups.setdefault((it.category, it.subcategory), []).append(i)
    chosen: list[int] = []
    queues = [iter(g) for g in groups.values()]
    while len(chosen) < max_items:
        for q in queues:
            i = next(q, None)
            if i is not None and len(chosen) < max_items:
                chosen.append(i)
    return [items[i] for i in sorted(chosen)]


def _load_file(path: Path) -> list[MCItem]:
    if not path.is_file():
        raise MCFormatError(path, "", "", "file does not exist. Sets that are not public (AKB-2000 among them) are not "
                            "shipped: give the path of your own copy in the multiple-choice format "
                            "(JSONL/YAML/CSV; see ausweep.benchmarks.mcq)")
    # Text-only scoring never opens the clips, so an audio manifest is usable before its clips are copied.
    return load_mc(path, check_audio=False)


# ----------------------------------------------------------------------------- registered sets


def _per_subcategory(max_items: int | None, n_sub: int) -> int:
    return DEFAULT_PER_SUBCATEGORY if max_items is None else math.ceil(max_items / n_sub)


@SETS.register("phonology", help="Generated from CMUdict: rhyme, homophone, stress, syllables (100 each by default).")
def _phonology(max_items: int | None, seed: int) -> list[MCItem]:
    from ausweep.knowledge_text.phonology import SUBCATEGORIES, generate_phonology

    return take_balanced(generate_phonology(_per_subcategory(max_items, len(SUBCATEGORIES)), seed), max_items)


@SETS.register("music", help="Generated from equal temperament (A4 = 440 Hz): pitch order, frequency, interval, chord quality (100 each by default).")
def _music(max_items: int | None, seed: int) -> list[MCItem]:
    from ausweep.knowledge_text.music import SUBCATEGORIES, generate_music

    return take_balanced(generate_music(_per_subcategory(max_items, len(SUBCATEGORIES)), seed), max_items)


@SETS.register("auditorybench", help="AuditoryBench test split as multiple choice: animal sounds (4 options), pitch (higher/lower).")
def _auditorybench(max_items: int | None, seed: int) -> list[MCItem]:
    return take_balanced(auditorybench_items("test"), max_items)


def auditorybench_items(split: str = "test", root: str | None = None) -> list[MCItem]:
    """AuditoryBench animal (MC format) and pitch items of ``split`` as MC items, animal first."""
    from ausweep.benchmarks.auditorybench import MASK, load_auditorybench

    out: list[MCItem] = []
    for task in ("animal", "pitch"):
        # Every row, as published: a text-only LLM never trains on AuditoryBench's train split, so
        # test rows that repeat a train row are no leak here (the fine-tuning studies drop them).
        for it in load_auditorybench(task, split, root=root, fmt="mc", cross_split_duplicates="keep"):  # type: ignore[arg-type]
            blank = it.sentence.replace(MASK, "___", 1)
            if task == "animal":
                question = f"Which animal fills the blank? {blank}"
            else:
                question = f"Fill in the blank with higher or lower: {blank}"
            out.append(MCItem(id=f"auditorybench-{task}-{split}-{it.index}", question=question, options=it.options,
                              answer=int(it.answer_option), category="sound", subcategory=task))  # type: ignore[arg-type]
    return out
