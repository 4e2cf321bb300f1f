"""Shared tiny settings for tests: a fake FSD50K tree, fake LAION-Audio-630K shards and tiny sweep files.

One place for the small models and data every integration test uses, so a test reads as
"run the CLI on the tiny sweep" rather than a page of setup.
"""

from __future__ import annotations

import csv
import io
import json
import tarfile
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


def _tar_add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_laion630k(folder: Path, shards: dict[str, list[tuple[str, str, list[str]]]], sizes: bool = True,
                   prefix: str = "fsx/processed/train/", sr: int = 48000, seconds: float = 0.5) -> dict[str, np.ndarray]:
    """LAION-Audio-630K's released webdataset layout (``make_tar.py``) under ``folder``: per shard
    name, samples ``(key, 'flac' | 'wav', captions)`` as ``<prefix><key>.<ext>`` + ``<prefix><key>.json``
    (members stored under a folder path, as make_tar.py adds them), and ``sizes.json``. Each sample
    is its own tone at ``sr``. Returns key -> the waveform as stored (16-bit)."""
    folder.mkdir(parents=True, exist_ok=True)
    waves: dict[str, np.ndarray] = {}
    t = np.arange(int(sr * seconds)) / sr
    for shard, samples in shards.items():
        with tarfile.open(folder / shard, "w") as tar:
            for key, fmt, captions in samples:
                i = len(waves)
                wave = (0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t)
                        + 0.02 * np.random.default_rng(i).standard_normal(len(t))).astype(np.float32)
                buf = io.BytesIO()
                sf.write(buf, wave, sr, format=fmt.upper(), subtype="PCM_16")
                waves[key] = sf.read(io.BytesIO(buf.getvalue()), dtype="float32")[0]
                _tar_add(tar, f"{prefix}{key}.{fmt}", buf.getvalue())
                _tar_add(tar, f"{prefix}{key}.json",
                         json.dumps({"text": captions, "tag": ["x"], "original_data": {}}).encode())
    if sizes:
        (folder / "sizes.json").write_text(json.dumps({s: len(v) for s, v in shards.items()}))
    return waves


def write_planted_embeddings(folder: Path, n_classes: int, d_text: int, d_audio: int, noise: float = 0.3,
                             seed: int = 0) -> tuple[Path, Path]:
    """Per-class ``text.npz`` and ``audio.npz`` (bring-your-own embeddings) with a planted linear
    relation (:func:`ausweep.probe.planted.planted_pair`): probe sweeps with no extraction and no model."""
    from ausweep.data.npz import save_embeddings_npz
    from ausweep.probe.planted import planted_pair

    text, audio = planted_pair(n_classes, d_text, d_audio, noise=noise, seed=seed)
    labels = [f"class_{i}" for i in range(n_classes)]
    save_embeddings_npz(folder / "text.npz", labels, text)
    save_embeddings_npz(folder / "audio.npz", labels, audio)
    return folder / "text.npz", folder / "audio.npz"


def save_tiny_backbones(folder: Path) -> Path:
    """tiny-llama (with its LM head) and tiny-whisper saved as checkpoint folders ``llama`` and
    ``whisper`` under ``folder``: backbones that load from files, as real ones do."""
    from ausweep.models.tiny import build_tiny_audio, build_tiny_text

    llm, tok = build_tiny_text("tiny-llama", head=True)
    llm.save_pretrained(folder / "llama")
    tok.save_pretrained(folder / "llama")
    whisper, fe = build_tiny_audio("tiny-whisper")
    whisper.save_pretrained(folder / "whisper")
    fe.save_pretrained(folder / "whisper")
    return folder
