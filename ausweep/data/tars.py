"""Members of tar shards as addressable clips: ``/data/shards/12.tar#12/345.flac``.

Webdataset corpora (LAION-Audio-630K, :mod:`ausweep.data.laion630k`) ship as uncompressed tar
shards of many small files. Unpacking them doubles the disk they take, so a clip inside one is
named by the shard's path, ``#``, and the member's name inside it, and read in place: the shard's
member table (name -> byte offset and size, from its headers) is built once per process and shard,
then a clip is one ``seek`` and one ``read``. Standard library only.
"""

from __future__ import annotations

import os
import tarfile
import threading
from collections import OrderedDict
from pathlib import Path

SEP = "#"
_INDEXES: OrderedDict[tuple[str, int, int], dict[str, tuple[int, int]]] = OrderedDict()
_MAX_INDEXES = 64  # shards whose member tables are kept (a few MB at most)
_LOCK = threading.Lock()


class TarMemberError(ValueError):
    """A shard or a member of it cannot be read. ``str()`` is one line naming the shard (and member)."""

    def __init__(self, where: str, reason: str):
        self.where, self.reason = where, " ".join(str(reason).split())
        super().__init__(f"{where}: {self.reason}")

    def __reduce__(self):  # survive pickling (Ray)
        return type(self), (self.where, self.reason)


def member_path(shard: str | Path, member: str) -> str:
    """The clip path of ``member`` inside ``shard``."""
    return f"{shard}{SEP}{member}"


def split_member_path(path: str | Path) -> tuple[str, str] | None:
    """``(shard, member)`` if ``path`` names a member of an existing ``.tar`` shard, else None
    (a plain file). The split is at the last ``.tar#``, so a member may itself contain ``#``."""
    path = str(path)
    i = path.rfind(".tar" + SEP)
    if i < 0:
        return None
    shard, member = path[: i + 4], path[i + 5 :]
    return (shard, member) if member and os.path.isfile(shard) else None


def shard_index(shard: str | Path) -> dict[str, tuple[int, int]]:
    """Regular members of an uncompressed tar: name -> (byte offset of its data, size), in file order.
    Built from the headers once per (path, size, mtime) and kept for the most recent shards."""
    shard = os.path.abspath(shard)
    try:
        st = os.stat(shard)
    except OSError as e:
        raise TarMemberError(shard, f"cannot open shard ({e.strerror or e})") from None
    key = (shard, st.st_size, st.st_mtime_ns)
    with _LOCK:
        hit = _INDEXES.get(key)
        if hit is not None:
            _INDEXES.move_to_end(key)
            return hit
    try:
        with tarfile.open(shard, mode="r:") as tf:  # "r:": uncompressed only; offsets must be file offsets
            index = {m.name: (m.offset_data, m.size) for m in tf if m.isreg()}
    except (tarfile.TarError, OSError, EOFError) as e:
        raise TarMemberError(shard, f"not a readable uncompressed tar ({type(e).__name__}: {e})") from None
    with _LOCK:
        _INDEXES[key] = index
        while len(_INDEXES) > _MAX_INDEXES:
            _INDEXES.popitem(last=False)
    return index


def read_member(shard: str | Path, member: str) -> bytes:
    """The bytes of ``member`` inside ``shard``, read in place."""
    index = shard_index(shard)
    where = member_path(shard, member)
    if member not in index:
        raise TarMemberError(where, f"no such member in the shard ({len(index)} members)")
    offset, size = index[member]
    try:
        with open(shard, "rb") as f:
            f.seek(offset)
            data = f.read(size)
    except OSError as e:
        raise TarMemberError(where, f"cannot be read ({e.strerror or e})") from None
    if len(data) != size:
        raise TarMemberError(where, f"truncated: {len(data)} of {size} bytes (is the shard complete?)")
    return data


def member_size(shard: str | Path, member: str) -> int | None:
    """Size in bytes of ``member`` inside ``shard``; None if the shard or member is missing."""
    try:
        hit = shard_index(shard).get(member)
    except TarMemberError:
        return None
    return None if hit is None else hit[1]
