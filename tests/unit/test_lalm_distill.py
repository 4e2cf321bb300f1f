"""DeSTA-style self-distillation (ausweep.lalm.distill): the prompt the backbone sees, the metadata
file's errors, and the cache: keyed by what determines the responses, resumed after a kill from the
shards that exist, with no row twice."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ausweep.lalm import distill as D

REPO = Path(__file__).resolve().parents[2]


def _metadata(tmp_path: Path, n: int = 3) -> Path:
    rows = []
    for k in range(n):
        t = np.arange(int(16000 * 0.3)) / 16000
        sf.write(tmp_path / f"c{k}.wav", (0.3 * np.sin(2 * np.pi * (300 + 100 * k) * t)).astype(np.float32), 16000)
        rows.append({"audio": f"c{k}.wav", "caption": f"a {300 + 100 * k} Hz sine tone, 0.3 s, loud",
                     "attributes": {"duration_s": 0.3, "loudness": "loud"},
                     "instructions": ["Describe the sound.", "How loud is the sound?"]})
    path = tmp_path / "meta.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_prompt_is_the_desta_metadata_line_then_the_instruction():
    speech = D.ClipMetadata("/a.wav", 'a female voice saying "toy band", quiet', "toy band",
                            (("loudness", "quiet"), ("speaker", "female")), ("Transcribe the speech.",))
    assert D.metadata_line(speech) == '"toy band" (Caption: a female voice saying "toy band", quiet; Loudness: quiet; Speaker: female)'
    tone = D.ClipMetadata("/b.wav", "a 440 Hz sine tone, 1.2 s, loud", None,
                          (("duration_s", "1.2"), ("loudness", "loud")), ("Describe the sound.",))
    assert D.metadata_line(tone) == "[00:00-00:01.2] a 440 Hz sine tone, 1.2 s, loud (Loudness: loud)"
    assert D.build_prompt(tone, "Describe the sound.", "M={metadata} I={instruction}") == \
        "M=[00:00-00:01.2] a 440 Hz sine tone, 1.2 s, loud (Loudness: loud) I=Describe the sound."
    prompt = D.build_prompt(tone, "Describe the sound.")
    assert prompt.startswith("Here is a description") and prompt.endswith("\nDescribe the sound.")

    from ausweep.models.tiny import build_tiny_text

    _, tok = build_tiny_text("tiny-llama", head=True)
    assert D.render(tok, "P") == ("P\nAnswer:", True)  # no chat template: plain text, the tokenizer's own BOS
    tok.chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}</s>{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
    assert D.render(tok, "P") == ("<user>P</s><assistant>", False)  # the template's special tokens are in the text
    assert D.render(tok, "P", chat_template=False) == ("P\nAnswer:", True)
    assert D.clean_response("<think>\nhmm\n</think>\n\n A tone. ") == "A tone."
    assert D.clean_response("<think> never closed") == ""

    with pytest.raises(ValueError, match="must contain {metadata} and {instruction}"):
        D.DistillConfig(prompt="{instruction} only")
    with pytest.raises(ValueError, match="not a valid template"):
        D.DistillConfig(prompt="{metadata} {instruction} {other}")


def test_metadata_errors_name_the_file_line_and_field(tmp_path):
    good = _metadata(tmp_path, 1)
    assert D.load_metadata(good)[0].audio == str(tmp_path / "c0.wav")
    rec = json.loads(good.read_text())
    for change, field in [({"instructions": []}, "instructions"), ({"caption": " "}, "caption"),
                          ({"attributes": {"x": [1]}}, "attributes"), ({"audio": "gone.wav"}, "audio"),
                          ({"transcript": ""}, "transcript"), ({"response": "x"}, "response")]:
        bad = tmp_path / "bad.jsonl"
        bad.write_text(json.dumps(rec) + "\n" + json.dumps({**rec, **change}) + "\n")
        with pytest.raises(D.MetadataFormatError, match=rf"bad.jsonl \(line 2\): field '{field}'"):
            D.load_metadata(bad)


KILL_AFTER_ONE_SHARD = """
import os, signal, sys
from ausweep.lalm import distill as D
real = D.Distiller.shard
def shard(self, rows, path):
    n = real(self, rows, path)
    os.kill(os.getpid(), signal.SIGKILL)  # killed for real: no cleanup, the lock file stays behind
    return n
D.Distiller.shard = shard
D.distill("tiny-llama", sys.argv[1], D.DistillConfig(cache_dir=sys.argv[2], shard_size=2, batch_size=1,
          max_new_tokens=3, progress=False))
"""


def test_distillation_is_cached_and_a_killed_run_resumes_from_its_shards(tmp_path):
    meta = _metadata(tmp_path)
    cache = tmp_path / "cache"
    cfg = D.DistillConfig(cache_dir=str(cache), shard_size=2, batch_size=1, max_new_tokens=3, progress=False)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", KILL_AFTER_ONE_SHARD, str(meta), str(cache)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr[-2000:]
    folder = D.distill_dir("tiny-llama", "float32", meta, cfg)
    shards = sorted((folder / "shards").glob("*.jsonl"))
    assert [p.name for p in shards] == ["rows-0000000-0000002.jsonl"] and not (folder / "train.jsonl").exists()
    assert list(cache.glob(".*.lock"))  # the dead run's lock, broken below because its process is gone
    first = shards[0].read_bytes(), shards[0].stat().st_mtime_ns

    out = D.distill("tiny-llama", meta, cfg)
    assert out == folder / "train.jsonl"
    assert (shards[0].read_bytes(), shards[0].stat().st_mtime_ns) == first  # kept, not generated again
    assert len(list((folder / "shards").glob("*.jsonl"))) == 3
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["audio"], r["instruction"]) for r in lines] == [
        (f"../../c{k}.wav", ins) for k in range(3) for ins in ("Describe the sound.", "How loud is the sound?")]
    assert all(r["response"] for r in lines)
    from ausweep.lalm.data import load_instructions

    assert len(load_instructions(out)) == 6

    # One uninterrupted run writes the same set: greedy decoding, shards joined in row order.
    fresh = D.distill("tiny-llama", meta, D.DistillConfig(cache_dir=str(tmp_path / "fresh"), shard_size=4,
                                                           max_new_tokens=3, progress=False))
    assert [json.loads(x)["response"] for x in fresh.read_text().splitlines()] == [r["response"] for r in lines]

    stamp = out.stat().st_mtime_ns
    assert D.distill("tiny-llama", meta, cfg) == out and out.stat().st_mtime_ns == stamp  # a hit: nothing rewritten
    # The key: backbone, generation settings, prompt and the metadata's content each make a new set.
    keys = {D.distill_dir("tiny-llama", "float32", meta, cfg), D.distill_dir("tiny-qwen2", "float32", meta, cfg),
            D.distill_dir("tiny-llama", "bfloat16", meta, cfg),
            D.distill_dir("tiny-llama", "float32", meta, D.DistillConfig(cache_dir=str(cache), max_new_tokens=4)),
            D.distill_dir("tiny-llama", "float32", meta, D.DistillConfig(cache_dir=str(cache), prompt="{metadata}\n{instruction}"))}
    assert len(keys) == 5
    how = dataclasses.replace(cfg, shard_size=7, batch_size=5, num_actors=2, progress=True)
    assert D.distill_dir("tiny-llama", "float32", meta, how) == folder  # how it is run is not what it makes
    meta.write_text(meta.read_text().replace("loud\"}", "quiet\"}", 1))
    assert D.distill_dir("tiny-llama", "float32", meta, cfg) != folder
