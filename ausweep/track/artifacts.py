"""Small artifact formats the studies hand to the tracker, and the folder a trial writes them to.

A study's ``trial()`` yields ``"artifacts"``: ``{relative_path: text or bytes}`` (per-class CSV,
resolved YAML, PNG plots). The sweep's trainable writes them with :func:`write_artifacts` into a
folder on the sweep's storage and reports only that folder's path, so no file content travels
through Tune (its result.json, progress.csv and experiment state hold numbers and paths).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from pathlib import Path, PurePosixPath
from typing import Any, Mapping, Sequence


def rows_to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """CSV text of a list of dicts (columns from the first row); empty text for no rows."""
    if not rows:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _relative(name: Any) -> PurePosixPath:
    if not isinstance(name, str) or any(p in ("", ".", "..") for p in name.split("/")):
        raise ValueError(f"artifact name {name!r}: give a relative path like 'plots/heatmap.png' (no '..', no leading '/')")
    return PurePosixPath(name)


def write_artifacts(folder: str | os.PathLike, artifacts: Mapping[str, str | bytes]) -> Path:
    """Write ``artifacts`` (name -> text or bytes) under ``folder`` and return it.

    The files are written into a sibling staging folder that is renamed into place at the end, so
    ``folder`` either holds every artifact or does not exist; an earlier ``folder`` (a retried
    trial writing the same result again) is replaced. A bad name or content is a ValueError naming
    the artifact, before anything is written.
    """
    folder = Path(folder)
    items = []
    for name, content in artifacts.items():
        if not isinstance(content, (str, bytes)):
            raise ValueError(f"artifact {name!r}: content must be text or bytes, not {type(content).__name__}")
        items.append((_relative(name), content))
    stage = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    for rel, content in items:
        path = stage.joinpath(*rel.parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(stage, folder)
    return folder
