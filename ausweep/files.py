"""File helpers every stage shares: atomic text writes, and JSONL reading with located errors.

A write goes to a temporary file in the same folder and is renamed onto the final name
(``os.replace`` is atomic on POSIX), so a crash never leaves a half-written manifest or item set
that a later run would take for complete.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ausweep.config import FileFormatError


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` (parents created) all at once or not at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_jsonl_atomic(path: str | os.PathLike, records: Iterator[dict[str, Any]] | list[dict[str, Any]]) -> Path:
    """One JSON object per line, written with :func:`write_text_atomic`."""
    return write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def jsonl_records(path: str | os.PathLike, error: type[FileFormatError] = FileFormatError) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for every non-blank line of a JSONL file. A missing file, a line
    that is not JSON or not a JSON object raises ``error`` naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise error(path, "", "", "file does not exist")
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"line {n}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise error(path, where, "", f"invalid JSON: {e.msg}") from None
            if not isinstance(rec, dict):
                raise error(path, where, "", f"expected a JSON object, got {type(rec).__name__}")
            yield n, rec
