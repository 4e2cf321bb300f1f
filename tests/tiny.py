"""Shared tiny settings for tests: a fake FSD50K tree and tiny sweep files.

One place for the small models and data every integration test uses, so a test reads as
"run the CLI on the tiny sweep" rather than a page of setup.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

# Leaf classes of the FSD50K vocabulary, each given its own tone so audio encoders can tell them apart.
CLASSES = ["Bark", "Meow", "Accordion", "Applause", "Boiling", "Bass_drum", "Acoustic_guitar", "Siren", "Whispering", "Thunder"]
TINY_TEXT_MODELS = ["tiny-bert", "tiny-gpt2"]
TINY_AUDIO_MODEL = "tiny-ast"


def make_fsd50k(root: Path, classes: list[str] = CLASSES, clips_per_class: int = 3, sr: int = 16000) -> Path:
    """A fake FSD50K in the released layout: ground_truth/eval.csv and eval_audio/*.wav."""
    audio = root / "FSD50K.eval_audio"
    audio.mkdir(parents=True, exist_ok=True)
    rows = []
    fname = 1000
    rng = np.random.default_rng(0)
    for ci, label in enumerate(classes):
        for j in range(clips_per_class):
            freq = 200.0 * (1.25 ** ci) * (1 + 0.01 * j)
            t = np.arange(int(sr * 0.6)) / sr
            wave = 0.4 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
            sf.write(audio / f"{fname}.wav", wave.astype(np.float32), sr)
            rows.append((str(fname), label, "/m/x"))
            fname += 1
    gt = root / "FSD50K.ground_truth"
    gt.mkdir(parents=True, exist_ok=True)
    with open(gt / "eval.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["fname", "labels", "mids"])
        w.writerows(rows)
    return root


def write_sweep(path: Path, data_root: Path, cache_dir: Path, text_models=TINY_TEXT_MODELS, lrs=(1e-2, 3e-3),
                num_actors: int = 0, max_concurrent: int | None = None, epochs: int = 30) -> Path:
    """A tiny probe sweep: tiny LMs x a tiny audio model x lrs on the fake FSD50K."""
    spec = {
        "description": "tiny test sweep",
        "study": "probe",
        "overrides": {
            "data": {"source": "fsd50k", "root": str(data_root), "clips_per_class": 3, "max_seconds": 1.0},
            "audio": {"model": TINY_AUDIO_MODEL},
            "extract": {"num_actors": num_actors, "cache_dir": str(cache_dir), "shard_size": 8, "progress": False},
            "probe": {"epochs": epochs, "shared_dim": 8, "n_splits": 5},
        },
        "search_space": {"text.model": {"grid": list(text_models)}, "probe.lr": {"grid": list(lrs)}},
        "tune": {"metric": "val/acc@1", "mode": "max", "max_concurrent_trials": max_concurrent},
        "resources": {"cpu": 1, "gpu": 0},
    }
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path
