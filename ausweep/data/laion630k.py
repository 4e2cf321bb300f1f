"""LAION-Audio-630K as a :class:`~ausweep.data.SoundSet`: AudioBERT's retrieval corpus.

AudioBERT retrieves, for each auditory span, the nearest clip of LAION-Audio-630K by CLAP. LAION
releases it (its Freesound part: huggingface.co/datasets/Meranti/CLAP_freesound) in webdataset
layout, as written by ``make_tar.py`` of github.com/LAION-AI/audio-dataset
(``data_preprocess/README.md``, "Webdataset format")::

    root/<subset>/<split>/sizes.json     {"name0.tar": 512, ...}   (optional; checked when present)
    root/<subset>/<split>/name0.tar      <key>.flac + <key>.json, one pair per sample
    root/<subset>/<split>/name1.tar      ...

Each ``<key>.json`` holds ``"text"``: the sample's captions (a non-empty list of strings), and
optionally ``"tag"`` and ``"original_data"``. Audio is FLAC at 48 kHz (``.wav`` is read too).
``make_tar.py`` adds files by their path, so a key may include folders inside the tar; members
pair up as webdataset does it, by the name up to the first dot of the file name.

``root`` is any folder above the shards: every ``*.tar`` below it, in natural order of its relative
path (``name2`` before ``name10``), then its samples in the shard's order. Nothing is unpacked: a
clip's path is ``<shard>#<member>`` (:mod:`ausweep.data.tars`), which extraction (sharded over Ray
actors, cached, as for FSD50K) reads in place. A sample has no class; it is its own class, named
``<shard relative to root>#<key>``, and its text (``class_text``) is its first caption.

A shard's samples and captions are read from its headers and JSON members once and kept beside the
file-identity memo (``$AUSWEEP_CACHE/laion630k_index/``, keyed by the shard's path, size and
mtime), so a sweep's trials list 630K samples without reading the shards again.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

from ausweep.data import RACY_SECONDS, Clip, SoundSet
from ausweep.data.tars import TarMemberError, member_path, read_member, shard_index

AUDIO_EXTENSIONS = ("flac", "wav")
INDEX_VERSION = 1


class LaionError(ValueError):
    """The shard tree is missing something or a sample is malformed. One line naming the file
    (the shard, or ``shard#member``) and, where it applies, the field."""

    def __init__(self, where: str | Path, message: str, field: str | None = None):
        self.where, self.field = str(where), field
        fld = f"field '{field}': " if field else ""
        super().__init__(f"{where}: {fld}{message}")


def load_laion630k(root: str | Path, max_clips: int | None = None) -> SoundSet:
    """Every sample of the webdataset shards under ``root`` (the first ``max_clips`` with a limit).

    Raises :class:`LaionError` naming the file when ``root`` holds no shard, a shard is not a
    readable tar, a sample lacks its audio or its JSON, a JSON has no usable ``text``, or a shard
    holds fewer samples than its folder's ``sizes.json`` lists (an incomplete download).
    """
    if max_clips is not None and max_clips < 1:
        raise ValueError(f"max_clips must be >= 1 or None, got {max_clips}")
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise LaionError(root, "LAION-Audio-630K root not found (a folder holding its webdataset .tar shards, "
                               "e.g. from huggingface.co/datasets/Meranti/CLAP_freesound)")
    shards = sorted(root.rglob("*.tar"), key=lambda p: _natural(p.relative_to(root).as_posix()))
    if not shards:
        raise LaionError(root, "no .tar shards below this folder")
    classes: list[str] = []
    texts: dict[str, str] = {}
    clips: list[Clip] = []
    for shard in shards:
        rel = shard.relative_to(root).as_posix()
        for key, audio, caption in _shard_samples(shard):
            label = f"{rel}#{key}"
            classes.append(label)
            texts[label] = caption
            clips.append(Clip(path=member_path(shard, audio), label=label))
            if max_clips is not None and len(clips) >= max_clips:
                break
        if max_clips is not None and len(clips) >= max_clips:
            break
    return SoundSet(
        name="laion630k",
        classes=tuple(classes),
        class_text=texts,
        clips=tuple(clips),
        meta={"source": "laion630k", "root": str(root), "shards": str(len(shards)), "max_clips": str(max_clips),
              "class_text": "first caption of the sample's json 'text'"},
    )


def _natural(s: str) -> list:
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", s)]


def _sample_key(member: str) -> tuple[str, str]:
    """``("dir/123", "flac")`` for ``dir/123.flac``: webdataset's key is the name up to the first
    dot of the file name; the rest is the extension."""
    folder, _, name = member.rpartition("/")
    stem, _, ext = name.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def _shard_samples(shard: Path) -> list[tuple[str, str, str]]:
    """``(key, audio member, first caption)`` per sample of ``shard``, in the shard's order; from the
    on-disk index when the shard is unchanged since it was written."""
    st = shard.stat()
    memo = _index_path(shard, st.st_size, st.st_mtime_ns)
    if memo is not None:
        try:
            with open(memo, encoding="utf-8") as f:
                cached = json.load(f)
            if cached.get("version") == INDEX_VERSION:
                return [tuple(s) for s in cached["samples"]]
        except (OSError, ValueError, KeyError, TypeError):
            pass  # absent or unreadable: read the shard
    samples = _read_shard(shard)
    _check_sizes(shard, len(samples))
    # a shard written in the last moments could be rewritten within the file system's clock tick
    # with the same size and mtime ("racy clean", as in ausweep.data._file_identity): not memoised
    if memo is not None and time.time() - st.st_mtime_ns / 1e9 > RACY_SECONDS:
        _write_atomic(memo, json.dumps({"version": INDEX_VERSION, "samples": samples}))
    return samples


def _read_shard(shard: Path) -> list[tuple[str, str, str]]:
    try:
        index = shard_index(shard)
    except TarMemberError as e:
        raise LaionError(e.where, e.reason) from None
    audio: dict[str, str] = {}
    meta: dict[str, str] = {}
    order: list[str] = []
    for member in index:
        key, ext = _sample_key(member)
        if ext in AUDIO_EXTENSIONS:
            if key in audio:
                raise LaionError(member_path(shard, member), f"second audio file for sample '{key}' ({audio[key]})")
            audio[key] = member
        elif ext == "json":
            meta[key] = member
        else:
            continue  # other files of a sample (webdataset allows any) are not needed
        if key not in order:
            order.append(key)
    samples = []
    for key in order:
        if key not in audio:
            raise LaionError(member_path(shard, meta[key]), f"sample '{key}' has a .json but no "
                                                            f"{' or '.join('.' + e for e in AUDIO_EXTENSIONS)} audio")
        if key not in meta:
            raise LaionError(member_path(shard, audio[key]), f"sample '{key}' has audio but no .json captions")
        samples.append((key, audio[key], _first_caption(shard, meta[key])))
    if not samples:
        raise LaionError(shard, "holds no samples (no .flac/.wav + .json pairs)")
    return samples


def _first_caption(shard: Path, member: str) -> str:
    where = member_path(shard, member)
    try:
        obj = json.loads(read_member(shard, member).decode("utf-8"))
    except TarMemberError as e:
        raise LaionError(e.where, e.reason) from None
    except (UnicodeDecodeError, ValueError) as e:
        raise LaionError(where, f"not valid JSON ({type(e).__name__}: {e})") from None
    text = obj.get("text") if isinstance(obj, dict) else None
    if isinstance(text, str):
        text = [text]
    if not isinstance(text, list) or not text or not all(isinstance(t, str) for t in text) or not text[0].strip():
        raise LaionError(where, f"must be a non-empty list of caption strings, got {text!r}", field="text")
    return " ".join(text[0].split())


def _check_sizes(shard: Path, n: int) -> None:
    sizes = shard.parent / "sizes.json"
    if not sizes.is_file():
        return
    try:
        listed = json.loads(sizes.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise LaionError(sizes, f"not valid JSON ({type(e).__name__}: {e})") from None
    want = listed.get(shard.name) if isinstance(listed, dict) else None
    if want is not None and int(want) != n:
        raise LaionError(sizes, f"lists {want} samples, the shard holds {n} (is the download complete?)",
                         field=shard.name)


def _index_path(shard: Path, size: int, mtime_ns: int) -> Path | None:
    from ausweep.files import cache_root

    try:
        folder = cache_root() / "laion630k_index"
    except Exception:  # no usable cache folder: read the shards every time
        return None
    key = hashlib.sha256(f"{shard.resolve()}\t{size}\t{mtime_ns}".encode()).hexdigest()[:32]
    return folder / f"{key}.json"


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with :func:`ausweep.files.write_text_atomic`; an unwritable cache is no error."""
    import contextlib

    from ausweep.files import write_text_atomic

    with contextlib.suppress(OSError):
        write_text_atomic(path, text)
