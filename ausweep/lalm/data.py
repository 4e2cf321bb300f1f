"""Instruction data for the audio-grounded LLM: (clip, instruction, response) triples and batching.

Where it sits: between the data files (the generated demo set :mod:`ausweep.data.demo_mc`, or
a user's JSONL) and the model (:mod:`ausweep.lalm.model`). Training batches come from
:class:`Collator`; multiple-choice scoring batches from :func:`mc_batch`. Both tokenize the same
way, so a model trained on ``instruction -> response`` pairs is scored on ``prompt -> " option"``
exactly as it was trained:

    [audio queries] [instruction tokens (with the tokenizer's own BOS, if any)] [" " + response tokens] [eos]

The text is split into instruction and response tokens by
:func:`ausweep.benchmarks.loglik.encode_pair`, lm-evaluation-harness's rule, which the text-only
scorer uses too: a backbone sees the same tokens for a question with or without the clip.

A JSONL line looks like ``{"audio": "clips/dog.wav", "instruction": "What animal is this?",
"response": "a dog"}``; ``audio`` is relative to the file. Every error names the file, the line and
the field.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ausweep.config import FileFormatError
from ausweep.files import jsonl_records, write_jsonl_atomic

if TYPE_CHECKING:
    from torch import Tensor

    from ausweep.benchmarks.mcq import MCItem

IGNORE_INDEX = -100
FIELDS = ("audio", "instruction", "response")


class InstructionFormatError(FileFormatError):
    """An instruction file that cannot be read: the message names the file, line and field."""



@dataclass(frozen=True)
class InstructionExample:
    """One training example: a clip, what is asked about it, and the answer to learn."""

    audio: str  # absolute path of the clip (read at the feature extractor's rate, mono)
    instruction: str
    response: str


def load_instructions(path: str | os.PathLike, check_audio: bool = True) -> list[InstructionExample]:
    """Every example of a JSONL file ``{"audio", "instruction", "response"}``, in file order.

    Relative ``audio`` paths are taken from the file's folder; ``check_audio`` fails on a missing
    clip now rather than mid-training.
    """
    path = Path(path)
    out: list[InstructionExample] = []
    for n, rec in jsonl_records(path, InstructionFormatError):
        where = f"line {n}"
        unknown = sorted(set(rec) - set(FIELDS))
        if unknown:
            raise InstructionFormatError(path, where, unknown[0], f"unknown field (expected {', '.join(FIELDS)})")
        for key in FIELDS:
            value = rec.get(key)
            if not isinstance(value, str) or not value.strip():
                raise InstructionFormatError(path, where, key, "missing or not a non-empty string")
        audio = Path(rec["audio"])
        if not audio.is_absolute():
            audio = path.parent / audio
        if check_audio and not audio.is_file():
            raise InstructionFormatError(path, where, "audio", f"audio file {audio} does not exist")
        # normpath: "sets/../clips/a.wav" -> "clips/a.wav", so equal clips compare equal
        out.append(InstructionExample(os.path.normpath(os.path.abspath(audio)), rec["instruction"], rec["response"]))
    if not out:
        raise InstructionFormatError(path, "", "", "no examples")
    return out


def save_instructions(examples: Iterable[InstructionExample], path: str | os.PathLike) -> Path:
    """Write examples as JSONL atomically; audio paths relative to the file's folder so the
    folder can be moved."""
    path = Path(path)
    base = path.parent.resolve()
    write_jsonl_atomic(path, [{"audio": os.path.relpath(os.path.abspath(ex.audio), base),
                               "instruction": ex.instruction, "response": ex.response} for ex in examples])
    return path


# ----------------------------------------------------------------------------- tokens and audio


def continuation_text(prompt: str, continuation: str) -> str:
    """``continuation`` with a separating space unless the prompt already ends in whitespace
    (``"Answer:"`` + ``"a dog"`` -> ``" a dog"``, as the text-only scorer spells options)."""
    if not prompt or prompt[-1].isspace() or continuation[:1].isspace():
        return continuation
    return " " + continuation


def encode_pair(tokenizer: Any, prompt: str, continuation: str, max_tokens: int, eos: bool) -> tuple[list[int], int]:
    """``(ids, n_prompt)``: the prompt followed by the continuation (``continuation_text``), plus eos
    when ``eos``, split as lm-evaluation-harness splits a loglikelihood request
    (:func:`ausweep.benchmarks.loglik.encode_pair`: the tokenizer's own special tokens only, the
    continuation = the tokens of the whole text past those of the prompt alone).

    Longer than ``max_tokens``: the continuation keeps up to ``max_tokens - min(n_prompt,
    max_tokens // 2)`` tokens and the prompt loses its *start* (its end leads into the answer).
    """
    from ausweep.benchmarks.loglik import encode_pair as split_pair

    p, c = split_pair(tokenizer, prompt, continuation_text(prompt, continuation))
    if eos:
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no eos token to end responses with")
        c = c + [tokenizer.eos_token_id]
    if len(p) + len(c) > max_tokens:
        c = c[: max_tokens - min(len(p), max_tokens // 2)]
        p = p[len(p) - (max_tokens - len(c)):]
    return p + c, len(p)


def was_cropped(tokenizer: Any, prompt: str, continuation: str, max_tokens: int) -> bool:
    """Whether :func:`encode_pair` (no eos) must crop ``prompt`` + ``continuation`` to ``max_tokens``."""
    from ausweep.benchmarks.loglik import encode_pair as split_pair

    p, c = split_pair(tokenizer, prompt, continuation_text(prompt, continuation))
    return len(p) + len(c) > max_tokens


def pad_right(rows: Sequence[tuple[list[int], int]], pad_id: int) -> dict[str, Tensor]:
    """Right-padded ``input_ids`` / ``attention_mask`` / ``labels`` (B, T) from ``(ids, n_prompt)``
    rows; labels are -100 on the prompt and padding."""
    import torch

    longest = max(len(ids) for ids, _ in rows)
    ids_t = torch.full((len(rows), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), longest), dtype=torch.long)
    labels = torch.full((len(rows), longest), IGNORE_INDEX, dtype=torch.long)
    for i, (ids, n_prompt) in enumerate(rows):
        ids_t[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        mask[i, : len(ids)] = 1
        labels[i, n_prompt: len(ids)] = ids_t[i, n_prompt: len(ids)]
    return {"input_ids": ids_t, "attention_mask": mask, "labels": labels}


def audio_features(feature_extractor: Any, paths: Sequence[str]) -> Tensor:
    """``(B, n_mels, frames)`` float32 log-mels of the clips, each padded (or cut) to the extractor's
    window. A missing or unreadable clip raises ``AudioReadError`` naming it."""
    from ausweep.data.audio import read_audio

    sr = int(feature_extractor.sampling_rate)
    window_s = feature_extractor.n_samples / sr  # Whisper sees one window; decode no more than that
    waves = [read_audio(p, sr, max_seconds=window_s) for p in paths]
    out = feature_extractor(waves, sampling_rate=sr, return_tensors="pt")
    return out["input_features"].float()


class Collator:
    """Training batches: ``{"input_features" (B, n_mels, frames), "input_ids", "attention_mask",
    "labels" (B, T)}``. The text is the instruction, then ``" " + response + eos``; labels are -100
    on the instruction and padding, so the loss covers the response and its eos."""

    def __init__(self, tokenizer: Any, feature_extractor: Any, max_text_tokens: int = 256):
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; build the model with build_lalm, which sets one")
        self.tokenizer, self.feature_extractor, self.max_text_tokens = tokenizer, feature_extractor, max_text_tokens

    def __call__(self, examples: list[InstructionExample]) -> dict[str, Tensor]:
        if not examples:
            raise ValueError("Collator got an empty batch")
        rows = [encode_pair(self.tokenizer, ex.instruction, ex.response, self.max_text_tokens, eos=True) for ex in examples]
        batch = pad_right(rows, self.tokenizer.pad_token_id)
        return {"input_features": audio_features(self.feature_extractor, [ex.audio for ex in examples]), **batch}


def mc_batch(items: Sequence[MCItem], tokenizer: Any, feature_extractor: Any, max_text_tokens: int = 256) -> dict[str, Tensor]:
    """Scoring batch for multiple-choice items: one clip per item and one text row per (item, option).

    ``{"input_features" (B, n_mels, frames), "input_ids" / "attention_mask" / "labels" (N, T),
    "item_index" (N,)}`` where N is the total number of options, row ``r`` belongs to item
    ``item_index[r]``, and its labels mark the option's tokens (prompt = ``format_prompt(item)``,
    continuation ``" " + option``, no eos). Items without audio raise ``ValueError`` naming them.
    """
    import torch

    from ausweep.benchmarks.mcq import format_prompt

    for it in items:
        if not it.audio:
            raise ValueError(f"item {it.id!r} has no audio; the audio-grounded LLM scores audio items only")
    rows, owner = [], []
    for i, it in enumerate(items):
        prompt = format_prompt(it)
        for opt in it.options:
            rows.append(encode_pair(tokenizer, prompt, opt, max_text_tokens, eos=False))
            owner.append(i)
    batch = pad_right(rows, tokenizer.pad_token_id)
    return {"input_features": audio_features(feature_extractor, [it.audio for it in items]), **batch,
            "item_index": torch.tensor(owner, dtype=torch.long)}
