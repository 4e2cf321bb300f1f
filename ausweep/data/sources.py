"""The data stage's config and its registry of sound-set sources.

``DataConfig`` is the ``data:`` section of a study config; :func:`load_soundset` turns it into a
:class:`~ausweep.data.SoundSet` for extraction (stage 3). Sources are named through
:data:`DATA_SOURCES` (lazy entries, listed by ``python -m ausweep ls``):

* ``fsd50k``: the real dataset in its released layout (:mod:`ausweep.data.fsd50k`);
* ``laion630k``: LAION-Audio-630K's webdataset tar shards, one class per sample (its caption), AudioBERT's
  retrieval corpus (:mod:`ausweep.data.laion630k`);
* ``demo``: generated offline sounds, NOT FSD50K (:mod:`ausweep.data.demo`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Literal

from ausweep.config import option
from ausweep.data import SoundSet
from ausweep.registry import Registry

_SPLITS = ("eval", "dev", "train", "val")


@dataclass(frozen=True)
class DataConfig:
    source: Literal["fsd50k", "laion630k", "demo"] = option(
        "demo", help="where the sounds come from: 'fsd50k' (the real dataset, needs root), 'laion630k' "
                     "(LAION-Audio-630K's webdataset .tar shards, needs root; every sample is its own class, "
                     "its text the sample's first caption: a retrieval corpus) or 'demo' (generated offline "
                     "with sox/espeak-ng; NOT FSD50K)")
    root: str | None = option(
        None, help="fsd50k: the folder holding FSD50K.ground_truth/ and FSD50K.{dev,eval}_audio/. "
                   "laion630k: a folder above the .tar shards (every *.tar below it is read, in place). "
                   "demo: the cache folder (default $AUSWEEP_CACHE/demo_sounds or ~/.cache/ausweep/demo_sounds)")
    split: str = option("eval", help="fsd50k split: eval, dev, or train/val (dev.csv's split column); ignored by "
                                     "demo and laion630k (point root at the split's folder of shards)")
    clips_per_class: int = option(20, help="clips per class (fsd50k: at most this many, seeded sample; demo: "
                                           "exactly; laion630k: ignored, a sample is its own class)")
    max_clips: int | None = option(
        None, help="laion630k: only the first this many samples, in shard order (natural order of the shards' "
                   "paths, then each shard's own order); None = all. Ignored by fsd50k and demo")
    leaf_only: bool = option(True, help="fsd50k: only leaf classes of the vocabulary (143 here; FSD50K documents 144)")
    single_label: bool = option(
        False, help="fsd50k: only clips with exactly one label among the selected classes (default: a clip counts "
                    "for each of its selected labels)")
    seed: int = option(0, help="seed for choosing clips (fsd50k) or generating them (demo)")
    max_seconds: float = option(10.0, help="clips are truncated to this many seconds when read for extraction")
    sample_rate: int = option(
        16000, help="informational for fsd50k (each encoder resamples to its own rate); demo clips are written at "
                    "it (demo needs >= 16000)")

    def __post_init__(self) -> None:
        if self.source not in ("fsd50k", "laion630k", "demo"):
            raise ValueError(f"source must be 'fsd50k', 'laion630k' or 'demo', got {self.source!r}")
        if self.source == "fsd50k" and not self.root:
            raise ValueError("root: source 'fsd50k' needs the FSD50K folder (data.root=/path/to/FSD50K)")
        if self.source == "laion630k" and not self.root:
            raise ValueError("root: source 'laion630k' needs the folder of its .tar shards (data.root=/path/to/shards)")
        if self.max_clips is not None and self.max_clips < 1:
            raise ValueError(f"max_clips must be >= 1 or None, got {self.max_clips}")
        if self.split not in _SPLITS:
            raise ValueError(f"split must be one of {list(_SPLITS)}, got {self.split!r}")
        if self.clips_per_class < 1:
            raise ValueError(f"clips_per_class must be >= 1, got {self.clips_per_class}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if not self.max_seconds > 0:
            raise ValueError(f"max_seconds must be positive, got {self.max_seconds}")
        if self.sample_rate < 8000:
            raise ValueError(f"sample_rate must be >= 8000, got {self.sample_rate}")


DATA_SOURCES: Registry[Callable[[DataConfig], SoundSet]] = Registry("data source")
DATA_SOURCES.register("fsd50k", "ausweep.data.sources:_load_fsd50k", help="FSD50K in its released layout (data.root)")
DATA_SOURCES.register("laion630k", "ausweep.data.sources:_load_laion630k",
                      help="LAION-Audio-630K's webdataset .tar shards (data.root), read in place")
DATA_SOURCES.register("demo", "ausweep.data.sources:_load_demo", help="generated offline demo sounds (NOT FSD50K)")


def load_soundset(cfg: DataConfig) -> SoundSet:
    """The sound set ``cfg`` describes. ``meta`` also records ``max_seconds`` for extraction."""
    soundset = DATA_SOURCES.get(cfg.source)(cfg)
    return dataclasses.replace(soundset, meta={**soundset.meta, "max_seconds": str(cfg.max_seconds)})


def _load_fsd50k(cfg: DataConfig) -> SoundSet:
    from ausweep.data.fsd50k import load_fsd50k

    assert cfg.root is not None  # DataConfig checked it
    return load_fsd50k(cfg.root, split=cfg.split, clips_per_class=cfg.clips_per_class, leaf_only=cfg.leaf_only,
                       single_label=cfg.single_label, seed=cfg.seed)


def _load_laion630k(cfg: DataConfig) -> SoundSet:
    from ausweep.data.laion630k import load_laion630k

    assert cfg.root is not None  # DataConfig checked it
    return load_laion630k(cfg.root, max_clips=cfg.max_clips)


def _load_demo(cfg: DataConfig) -> SoundSet:
    from ausweep.data.demo import make_demo_soundset

    return make_demo_soundset(cfg.root, clips_per_class=cfg.clips_per_class, sample_rate=cfg.sample_rate, seed=cfg.seed)
