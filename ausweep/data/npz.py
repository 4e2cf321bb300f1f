"""Bring-your-own embeddings: class-level vectors in a ``.npz`` file, for skipping extraction.

The probe (stage 4) needs, per class, one text vector and one audio vector. Extraction (stage 3)
normally computes them from a model and a :class:`~ausweep.data.SoundSet`; a user who already has
them (from another toolkit, or the paper's own features) can pass two ``.npz`` files instead,
each holding

* ``labels``: ``(C,)`` array of class names (a string array, not pickled objects), and
* ``embeddings``: ``(C, d)`` array of finite floats, row ``i`` belonging to ``labels[i]``.

:func:`align` then pairs the text and audio files on their common labels.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np


class EmbeddingsFileError(ValueError):
    """An embeddings file is missing, unreadable or malformed. One line naming the file and key."""

    def __init__(self, path: str | Path, message: str, key: str | None = None):
        self.path, self.key = str(path), key
        where = f"key '{key}': " if key else ""
        super().__init__(f"{path}: {where}{message}")


def load_embeddings_npz(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Read ``(labels, embeddings)`` from ``path``: a list of C unique class names and a float32
    ``(C, d)`` array. Raises :class:`EmbeddingsFileError` naming the file and key for a missing
    file or key, a shape mismatch, non-finite values or duplicate labels."""
    path = Path(path)
    if not path.is_file():
        raise EmbeddingsFileError(path, "file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            for key in ("labels", "embeddings"):
                if key not in keys:
                    raise EmbeddingsFileError(path, f"missing (file has: {', '.join(sorted(keys)) or 'nothing'})", key)
            labels_arr = _read_key(data, "labels", path)
            emb = _read_key(data, "embeddings", path)
    except EmbeddingsFileError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise EmbeddingsFileError(path, f"not a readable .npz file ({type(e).__name__}: {e})") from None
    if labels_arr.dtype.kind not in "US":
        raise EmbeddingsFileError(path, f"expected an array of strings, got dtype {labels_arr.dtype}", "labels")
    if labels_arr.ndim != 1:
        raise EmbeddingsFileError(path, f"expected shape (C,), got {labels_arr.shape}", "labels")
    labels = [x.decode() if isinstance(x, bytes) else str(x) for x in labels_arr.tolist()]
    return labels, _check(path, labels, emb)


def _read_key(data: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    try:
        return data[key]
    except ValueError as e:
        # Object arrays (e.g. a list of Python strings saved without dtype=str) need pickle,
        # which we never load from a file somebody handed us.
        raise EmbeddingsFileError(path, f"cannot be read without pickle ({e}); save it as a plain "
                                        "string/float array, e.g. np.asarray(labels, dtype=str)", key) from None


def _check(path: str | Path, labels: Sequence[str], emb: np.ndarray) -> np.ndarray:
    """Validate one labels/embeddings pair; return the embeddings as float32."""
    emb = np.asarray(emb)
    if emb.dtype.kind not in "fiu":
        raise EmbeddingsFileError(path, f"expected a numeric array, got dtype {emb.dtype}", "embeddings")
    if emb.ndim != 2:
        raise EmbeddingsFileError(path, f"expected shape (C, d), got {emb.shape}", "embeddings")
    if emb.shape[0] != len(labels):
        raise EmbeddingsFileError(path, f"has {emb.shape[0]} rows but 'labels' has {len(labels)} entries", "embeddings")
    if not np.isfinite(emb).all():
        rows = np.flatnonzero(~np.isfinite(emb).all(axis=1))
        raise EmbeddingsFileError(
            path, f"{len(rows)} rows hold NaN/inf (first: row {rows[0]}, label {labels[rows[0]]!r})", "embeddings")
    seen: set[str] = set()
    dups = [label for label in labels if label in seen or seen.add(label)]
    if dups:
        raise EmbeddingsFileError(path, f"duplicate labels: {sorted(set(dups))[:5]}", "labels")
    return emb.astype(np.float32, copy=False)


def save_embeddings_npz(path: str | Path, labels: Sequence[str], embeddings: np.ndarray) -> None:
    """Write ``labels`` and ``embeddings`` ``(C, d)`` to ``path`` in the format
    :func:`load_embeddings_npz` reads, atomically (a temp file in the same folder, then renamed),
    so a reader never sees half a file. The same checks as loading apply before anything is
    written."""
    path = Path(path)
    labels = [str(label) for label in labels]
    emb = _check(path, labels, np.asarray(embeddings))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:  # a file object: np.savez would append ".npz" to a name
            np.savez(f, labels=np.asarray(labels, dtype=str), embeddings=emb)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def align(
    text_labels: Sequence[str], text_emb: np.ndarray, audio_labels: Sequence[str], audio_emb: np.ndarray
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Restrict text ``(Ct, dt)`` and audio ``(Ca, da)`` embeddings to their common labels.

    Returns ``(labels, T, A)`` with ``T[i]`` and ``A[i]`` both belonging to ``labels[i]``, in the
    order the labels appear in ``text_labels``. Raises ``ValueError`` if fewer than 3 labels are
    shared (a contrastive probe with a train/test split of classes needs at least that).
    """
    text_emb, audio_emb = np.asarray(text_emb), np.asarray(audio_emb)
    for name, labels, emb in (("text", text_labels, text_emb), ("audio", audio_labels, audio_emb)):
        if emb.ndim != 2 or emb.shape[0] != len(labels):
            raise ValueError(f"{name}: {len(labels)} labels but embeddings of shape {emb.shape}; "
                             f"expected ({len(labels)}, d)")
    audio_index = {label: i for i, label in enumerate(audio_labels)}
    common = [label for label in dict.fromkeys(text_labels) if label in audio_index]
    if len(common) < 3:
        raise ValueError(
            f"text and audio embeddings share {len(common)} labels ({common}); need at least 3. "
            f"Text labels look like {list(text_labels)[:3]}, audio labels like {list(audio_labels)[:3]}"
        )
    text_index = {label: i for i, label in reversed(list(enumerate(text_labels)))}  # first occurrence wins
    t = text_emb[[text_index[label] for label in common]]
    a = audio_emb[[audio_index[label] for label in common]]
    return common, t, a
