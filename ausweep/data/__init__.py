"""Stage 1 of the pipeline: sound sets, the (class, clip) lists that extraction reads.

A :class:`SoundSet` names its classes, the text that stands for each class in the LM template,
and its clips. Sources: FSD50K in its released layout (:mod:`ausweep.data.fsd50k`) and the
generated offline demo set (:mod:`ausweep.data.demo`). :mod:`ausweep.data.audio` reads audio
files with one clear error per bad file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Clip:
    path: str  # absolute path of the audio file
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
        changed file but not a moved checkout."""
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
    import os

    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(chunk)
            if size > chunk:
                f.seek(max(size - chunk, chunk))
                head += f.read(chunk)
    except OSError:
        return f"{os.path.basename(path)}:missing"
    return f"{os.path.basename(path)}:{size}:{hashlib.sha1(head).hexdigest()}"
