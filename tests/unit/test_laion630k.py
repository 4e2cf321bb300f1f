"""LAION-Audio-630K's webdataset layout as a sound set, read in place, and extracted like FSD50K.

A tiny generated tree in the released layout (:func:`tests.tiny.make_laion630k`: ``<name><i>.tar``
shards of ``<key>.flac`` + ``<key>.json`` pairs, members stored under their folder path, ``sizes.json``).
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ausweep.data import _file_identity
from ausweep.data.audio import AudioReadError, read_audio
from ausweep.data.laion630k import LaionError, load_laion630k
from ausweep.data.sources import DataConfig, load_soundset
from ausweep.data.tars import split_member_path
from tests.tiny import make_laion630k

SR = 48000  # LAION's processed audio is FLAC at 48 kHz


def _wave(seed: int, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (0.3 * np.sin(2 * np.pi * (200 + 150 * seed) * t)).astype(np.float32)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _audio_bytes(wave: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, SR, format=fmt.upper(), subtype="PCM_16")
    return buf.getvalue()


SHARDS = {
    "name0.tar": [("11", "flac", ["A dog barks twice.", "Barking."]), ("12", "flac", ["Rain on a roof."])],
    "name10.tar": [("31", "wav", ["A church bell rings."])],
    "name2.tar": [("21", "flac", ["  A   cat meows. "]), ("22", "flac", ["Thunder rumbles."])],
}


@pytest.fixture
def tree(tmp_path, monkeypatch):
    monkeypatch.setenv("AUSWEEP_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "laion" / "freesound_no_overlap" / "train"
    waves = make_laion630k(root, SHARDS)
    return tmp_path / "laion", waves


def test_the_released_layout_loads_in_natural_shard_order_with_first_captions(tree):
    root, _ = tree
    s = load_laion630k(root)
    keys = [c.label.rsplit("#", 1)[1] for c in s.clips]
    assert keys == ["fsx/processed/train/" + k for k in ("11", "12", "21", "22", "31")]  # name2 before name10
    assert s.classes == tuple(c.label for c in s.clips) and len(set(s.classes)) == 5
    assert s.clips[0].label == "freesound_no_overlap/train/name0.tar#fsx/processed/train/11"
    assert [s.class_text[c] for c in s.classes] == ["A dog barks twice.", "Rain on a roof.", "A cat meows.",
                                                     "Thunder rumbles.", "A church bell rings."]
    shard = (root / "freesound_no_overlap" / "train" / "name10.tar").resolve()
    assert s.clips[4].path == f"{shard}#fsx/processed/train/31.wav"
    assert split_member_path(s.clips[4].path) == (str(shard), "fsx/processed/train/31.wav")
    assert [c.label for c in load_laion630k(root, max_clips=3).clips] == list(s.classes[:3])
    # through the data config, as AudioBERT's retrieval.corpus names it
    assert load_soundset(DataConfig(source="laion630k", root=str(root), max_clips=2)).classes == s.classes[:2]
    with pytest.raises(ValueError, match="root"):
        DataConfig(source="laion630k")


def test_a_member_reads_as_the_same_audio_as_the_file_unpacked(tree, tmp_path):
    root, waves = tree
    s = load_laion630k(root)
    for clip, key in zip(s.clips, ["11", "12", "21", "22", "31"]):
        plain = tmp_path / f"plain_{key}.wav"
        sf.write(plain, waves[key], SR, subtype="FLOAT")
        for sr, max_s in ((SR, None), (16000, 0.25)):
            np.testing.assert_allclose(read_audio(clip.path, sr, max_s), read_audio(plain, sr, max_s), atol=1e-6)
    with pytest.raises(AudioReadError, match=r"name0\.tar#nope\.flac: no such member"):
        read_audio(str(s.clips[0].path).rsplit("#", 1)[0] + "#nope.flac", 16000)


def test_a_member_identity_follows_its_shard(tree):
    root, _ = tree
    s = load_laion630k(root)
    a, b = _file_identity(s.clips[0].path), _file_identity(s.clips[1].path)
    assert a != b and a.startswith("fsx/processed/train/11.flac:")
    assert _file_identity(s.clips[0].path.rsplit("#", 1)[0] + "#absent.flac") == "absent.flac:missing"
    digest = s.digest()
    shard = Path(s.clips[0].path.rsplit("#", 1)[0])
    with tarfile.open(shard, "a") as tar:  # the shard changes: its members' identities (and the digest) change
        _add(tar, "extra.txt", b"x")
    assert _file_identity(s.clips[0].path) != a
    assert load_laion630k(root).digest() != digest


@pytest.mark.parametrize("case, match", [
    ("no_json", r"name0\.tar#k1\.flac: sample 'k1' has audio but no \.json"),
    ("no_audio", r"name0\.tar#k1\.json: sample 'k1' has a \.json but no \.flac or \.wav audio"),
    ("bad_text", r"name0\.tar#k1\.json: field 'text': must be a non-empty list"),
    ("bad_json", r"name0\.tar#k1\.json: not valid JSON"),
    ("sizes", r"sizes\.json: field 'name0\.tar': lists 5 samples, the shard holds 1"),
    ("empty", r"no \.tar shards"),
    ("not_tar", r"name0\.tar: not a readable uncompressed tar"),
])
def test_a_broken_tree_fails_naming_the_file_and_field(tmp_path, monkeypatch, case, match):
    monkeypatch.setenv("AUSWEEP_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "shards"
    root.mkdir()
    if case == "not_tar":
        (root / "name0.tar").write_bytes(b"\x00not a tar" * 10)
    elif case != "empty":
        with tarfile.open(root / "name0.tar", "w") as tar:
            if case != "no_audio":
                _add(tar, "k1.flac", _audio_bytes(_wave(0), "flac"))
            if case != "no_json":
                meta = {"bad_text": b'{"text": []}', "bad_json": b"{text"}.get(case, b'{"text": ["a sound"]}')
                _add(tar, "k1.json", meta)
        if case == "sizes":
            (root / "sizes.json").write_text('{"name0.tar": 5}')
    with pytest.raises(LaionError, match=match):
        load_laion630k(root)


def test_sharded_extraction_reads_the_members_in_place(tree, tmp_path):
    """ausweep.extract over the corpus, shard by shard, with a tiny CLAP: the same vectors as the
    encoder on the unpacked audio; a second run computes nothing."""
    from ausweep.extract import ExtractConfig, audio_clip_embeddings
    from ausweep.models.audio import load_audio_encoder

    root, waves = tree
    s = load_laion630k(root)
    cfg = ExtractConfig(num_actors=0, shard_size=2, batch_size=2, cache_dir=str(tmp_path / "emb"), progress=False)
    emb = audio_clip_embeddings("tiny-clap-joint", None, s, cfg, max_seconds=2.0)
    enc = load_audio_encoder("tiny-clap-joint")
    plain = []
    for key in ["11", "12", "21", "22", "31"]:
        path = tmp_path / f"{key}.wav"
        sf.write(path, waves[key], SR, subtype="FLOAT")
        plain.append(read_audio(path, enc.sample_rate, max_seconds=2.0))
    assert emb.shape == (5, enc.dim)
    np.testing.assert_allclose(emb, enc.embed(plain), atol=1e-5)
    entries = sorted((tmp_path / "emb").rglob("*.npz"))
    assert len(entries) == 3  # ceil(5 / 2) shards, one cache entry each
    stamps = [p.stat().st_mtime_ns for p in entries]
    again = audio_clip_embeddings("tiny-clap-joint", None, load_laion630k(root), cfg, max_seconds=2.0)
    assert np.array_equal(again, emb) and [p.stat().st_mtime_ns for p in entries] == stamps
