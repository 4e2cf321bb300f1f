"""Stage 1 of the pipeline: sound sets, the (class, clip) lists that extraction reads.

A :class:`SoundSet` names its classes, the text that stands for each class in the LM template,
and its clips. Sources: FSD50K in its released layout (:mod:`ausweep.data.fsd50k`),
LAION-Audio-630K's webdataset tar shards (:mod:`ausweep.data.laion630k`, clips read inside the
shards: :mod:`ausweep.data.tars`) and the generated offline demo set (:mod:`ausweep.data.demo`).
:mod:`ausweep.data.audio` reads audio files with one clear error per bad file.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Clip:
    path: str  # absolute path of the audio file, or of a member of a tar shard: "/abs/12.tar#12/345.flac"
    label: str  # class id, one of SoundSet.classes: the class this entry counts the clip for
    # Every class of the set the file carries in its ground truth (label among them); () = just
    # label. A multi-label file may be listed under one class but still belong to another.
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class SoundSet:
    """Classes and their clips. ``class_text[c]`` is the object phrase put into the LM template."""

    name: str
    classes: tuple[str, ...]
    class_text: dict[str, str]
    clips: tuple[Clip, ...]
    meta: dict[str, str] = field(default_factory=dict)

    def digest(self) -> str:
        """Content hash of the set: class list, texts, and each clip's path, size and mtime-free
        content identity (file size + first/last bytes hash), so the extraction cache notices a
        changed file but not a moved checkout. Each file version is read once, then memoised
        (:func:`_file_identity`)."""
        h = hashlib.sha256()
        h.update(json.dumps([self.name, list(self.classes), self.class_text], sort_keys=True).encode())
        for clip in self.clips:
            h.update(clip.label.encode())
            if clip.labels:
                h.update(json.dumps(list(clip.labels)).encode())
            h.update(_file_identity(clip.path).encode())
        return h.hexdigest()[:16]

    def clips_of(self, label: str) -> list[Clip]:
        return [c for c in self.clips if c.label == label]


def _file_identity(path: str, chunk: int = 1 << 16) -> str:
    """``name:size:sha1(first and last chunk)`` of the file at ``path`` (``name:missing`` if unreadable).

    Memoised on (absolute path, size, mtime in ns): in this process, and in
    ``$AUSWEEP_CACHE/file_identity.jsonl`` (else ``~/.cache/ausweep/``) for every process that
    shares that folder. So a sweep reads each clip once (in ``prepare``, which extracts), and its
    trials, each a fresh process, pay a ``stat`` per clip instead of reading 128 KiB of it. A
    changed file has a new size or mtime and is read again. A file modified in the last
    :data:`RACY_SECONDS` is read but not memoised: a second write within the file system's clock
    tick could leave size and mtime as they were (git's "racy clean" problem).
    """
    import os

    from ausweep.data.tars import member_size, split_member_path

    in_tar = split_member_path(path)
    if in_tar is not None:  # a member of a tar shard: its name and size, and the shard's identity
        shard, member = in_tar
        size = member_size(shard, member)
        if size is None:
            return f"{member}:missing"
        return f"{member}:{size}:{_file_identity(shard, chunk)}"
    try:
        st = os.stat(path)
    except OSError:
        return f"{os.path.basename(path)}:missing"
    key = f"{os.path.abspath(path)}\t{st.st_size}\t{st.st_mtime_ns}\t{chunk}"
    memo = _memo_path()
    _load_memo(memo)
    hit = _IDENTITIES.get(key)
    if hit is not None:
        return hit
    ident = _read_identity(path, st.st_size, chunk)
    if not ident.endswith(":missing") and time.time() - st.st_mtime_ns / 1e9 > RACY_SECONDS:
        _IDENTITIES[key] = ident
        _append_memo(memo, key, ident)
    return ident


RACY_SECONDS = 2.0
MEMO_NAME = "file_identity.jsonl"
_IDENTITIES: dict[str, str] = {}  # memo key -> identity, this process
_LOADED: set[str] = set()  # memo files read into _IDENTITIES


def _read_identity(path: str, size: int, chunk: int) -> str:
    import os

    try:
        with open(path, "rb") as f:
            head = f.read(chunk)
            if size > chunk:
                f.seek(max(size - chunk, chunk))
                head += f.read(chunk)
    except OSError:
        return f"{os.path.basename(path)}:missing"
    return f"{os.path.basename(path)}:{size}:{hashlib.sha1(head).hexdigest()}"


def _memo_path() -> str:
    from ausweep.files import cache_root

    return str(cache_root() / MEMO_NAME)


def _load_memo(memo: str) -> None:
    """Read ``memo`` into :data:`_IDENTITIES` once per process. Lines another process was still
    writing (or any unreadable line) are skipped: their files are simply read again."""
    if memo in _LOADED:
        return
    _LOADED.add(memo)
    try:
        with open(memo, encoding="utf-8") as f:
            for line in f:
                try:
                    key, ident = json.loads(line)
                except (ValueError, TypeError):
                    continue
                if isinstance(key, str) and isinstance(ident, str):
                    _IDENTITIES[key] = ident
    except OSError:
        pass


def _append_memo(memo: str, key: str, ident: str) -> None:
    """One line, one ``write`` in append mode (atomic on local file systems; a torn line on a
    network file system is skipped when read). A memo that cannot be written is no error."""
    import os

    try:
        os.makedirs(os.path.dirname(memo), exist_ok=True)
        with open(memo, "a", encoding="utf-8") as f:
            f.write(json.dumps([key, ident]) + "\n")
    except OSError:
        pass
