"""AuditoryBench metrics as pure functions over logits and token ids, plus the input builders.

Upstream (github.com/HJ-Ok/AudioBERT, ``model/AudioBERT/*/``) defines two metrics for masked LMs:

* **animal, exact match**: the sentence's one ``[MASK]`` becomes as many mask tokens as the gold
  animal has word pieces ("eagle owl" -> 2 masks for BERT). The prediction is the argmax at each
  mask position. An item counts as correct only when *every* piece matches (:func:`exact_match`).
* **pitch**: the argmax over the logits of ``lower`` and ``higher`` at the mask
  (:func:`pitch_prediction`; a tie goes to ``lower``, as in upstream's ``argmax`` over
  ``[lower, higher]``).

This module adds a third metric: **multiple-choice accuracy** over the four animal options.
Each option is scored by a log-likelihood and the best score is the prediction
(:func:`argmax_choice`, :func:`accuracy`).

Masked inputs (:func:`build_masked_input`) are made by tokenising the sentence with the answer
written in and replacing the answer's tokens with the mask token. For WordPiece (BERT) this is
exactly upstream's "repeat ``[MASK]`` k times", because WordPiece splits at spaces. For BPE
tokenizers it also keeps the pieces the answer has *in context* (``Ġeagle``). Upstream's
``tokenizer.encode("eagle owl")`` would give the piece without its leading space.
Upstream lower-cases the sentence before tokenising, which ``lowercase=True`` copies.

Causal inputs (:func:`build_candidate_input`) write the candidate into the sentence. They also
record where the candidate starts, so that :func:`sequence_logprob` can score the candidate and
the rest of the sentence given the words before it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MASK = "[MASK]"


# ----------------------------------------------------------------------------- building inputs


@dataclass(frozen=True)
class MaskedInput:
    """A masked-LM input: ``input_ids`` (T,) with the answer's ``k`` tokens replaced by the mask
    token at ``positions`` (k,), and the answer's own ids ``targets`` (k,) there."""

    input_ids: tuple[int, ...]
    positions: tuple[int, ...]
    targets: tuple[int, ...]


@dataclass(frozen=True)
class CandidateInput:
    """A causal-LM input: ``input_ids`` (T,) of the sentence with the candidate written in, led by
    a BOS-like token. Tokens ``start .. T-1`` (the candidate and everything after it) are scored."""

    input_ids: tuple[int, ...]
    start: int


def fill_slot(sentence: str, text: str) -> tuple[str, tuple[int, int]]:
    """Write ``text`` in place of the first ``[MASK]``; return the sentence and ``text``'s
    character span ``[start, end)`` in it."""
    i = sentence.find(MASK)
    if i < 0:
        raise ValueError(f"sentence has no {MASK}: {sentence!r}")
    return sentence[:i] + text + sentence[i + len(MASK):], (i, i + len(text))


def _lower(sentence: str) -> str:
    # Upstream: str(text).lower().replace("[mask]", "[MASK]")
    return sentence.lower().replace(MASK.lower(), MASK)


def encode_with_offsets(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]], list[bool]]:
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"{type(tokenizer).__name__} is a slow (Python) tokenizer; AuditoryBench scoring needs a fast "
            "tokenizer for character offsets (return_offsets_mapping)"
        )
    enc = tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True)
    ids = list(enc["input_ids"])
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    keep = [not s for s in enc["special_tokens_mask"]]
    return ids, offsets, keep


def _span_positions(text: str, span: tuple[int, int], offsets, keep) -> list[int]:
    from ausweep.models.text import span_token_mask

    return [int(i) for i in np.flatnonzero(span_token_mask(text, span, offsets, keep))]


def build_masked_input(tokenizer: Any, sentence: str, answer: str, lowercase: bool = False) -> MaskedInput:
    """The masked-LM input for scoring ``answer`` at the ``[MASK]`` of ``sentence``.

    The answer's tokens (those whose character offsets overlap it) become mask tokens, so the
    number of masks equals the number of pieces the answer has in context (upstream's rule).
    ``lowercase`` lower-cases the sentence and the answer first, as upstream does.
    """
    if tokenizer.mask_token_id is None:
        raise ValueError(f"{type(tokenizer).__name__} has no mask token; fill-mask scoring needs a masked LM")
    if lowercase:
        sentence, answer = _lower(sentence), answer.lower()
    text, span = fill_slot(sentence, answer)
    ids, offsets, keep = encode_with_offsets(tokenizer, text)
    positions = _span_positions(text, span, offsets, keep)
    if not positions:
        raise ValueError(f"no token covers {answer!r} in {text!r}")
    targets = tuple(ids[p] for p in positions)
    for p in positions:
        ids[p] = tokenizer.mask_token_id
    return MaskedInput(tuple(ids), tuple(positions), targets)


def prefix_token_id(tokenizer: Any) -> int | None:
    """The token a causal LM reads before the sentence: BOS, else EOS (GPT-2 and Qwen use
    ``<|endoftext|>`` both ways). Not needed when the tokenizer adds BOS itself (Llama)."""
    for tid in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if tid is not None:
            return int(tid)
    return None


def build_candidate_input(tokenizer: Any, sentence: str, candidate: str) -> CandidateInput:
    """The causal-LM input for ``candidate`` written into ``sentence``'s ``[MASK]``.

    A BOS-like token (:func:`prefix_token_id`) leads unless the tokenizer put a special token
    first, so a candidate at the very start of the sentence ("[MASK] make a chirp sound.") is
    scored too. ``start`` is the first token after the words before the candidate.
    """
    text, span = fill_slot(sentence, candidate)
    ids, offsets, keep = encode_with_offsets(tokenizer, text)
    # A trailing special token (an EOS some tokenizers append) is not part of the sentence.
    while len(ids) > 1 and not keep[-1]:
        ids.pop()
        offsets.pop()
        keep.pop()
    if not _span_positions(text, span, offsets, keep):
        raise ValueError(f"no token covers {candidate!r} in {text!r}")
    # Score from the first token past the words before the candidate. This includes a bare-space
    # token that byte-level BPE may emit before it, so every candidate is scored from the same
    # point whether or not its space merged into its first piece.
    context_end = len(text[: span[0]].rstrip())
    start = next(j for j, ((_, e), k) in enumerate(zip(offsets, keep)) if k and e > context_end)
    if keep[0]:  # no special token leads: prepend one
        lead = prefix_token_id(tokenizer)
        if lead is None:
            raise ValueError(f"{type(tokenizer).__name__} has no BOS or EOS token to start the sentence with")
        ids, start = [lead] + ids, start + 1
    return CandidateInput(tuple(ids), start)


# ----------------------------------------------------------------------------- pure metrics


def _t(x: Any):
    import torch

    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def mask_predictions(logits: Any, positions: Sequence[int]) -> list[int]:
    """Argmax token id at each mask position; ``logits`` (T, V)."""
    lg = _t(logits)
    return [int(i) for i in lg[list(positions)].argmax(-1)]


def exact_match(predicted: Sequence[int], targets: Sequence[int]) -> bool:
    """Upstream's animal metric: every predicted piece equals the answer's piece, and the counts agree."""
    return len(predicted) == len(targets) and all(int(p) == int(t) for p, t in zip(predicted, targets))


def masked_logprob(logits: Any, positions: Sequence[int], targets: Sequence[int], mean: bool = False) -> float:
    """Sum (or ``mean``) over mask positions of log p(target piece); ``logits`` (T, V).

    The masks are scored independently, like the argmax of the exact-match metric."""
    lg = _t(logits)[list(positions)].float().log_softmax(-1)  # (k, V)
    lp = lg[range(len(positions)), list(targets)]
    return float(lp.mean() if mean else lp.sum())


def choose_pitch(score_higher: float, score_lower: float) -> str:
    """``"higher"`` if it scores strictly more, else ``"lower"`` (upstream's tie rule)."""
    return "higher" if score_higher > score_lower else "lower"


def pitch_prediction(mask_logits: Any, higher_id: int, lower_id: int) -> str:
    """Upstream's pitch metric: the larger of the ``higher`` / ``lower`` logits at the mask; ``mask_logits`` (V,)."""
    lg = _t(mask_logits)
    return choose_pitch(float(lg[higher_id]), float(lg[lower_id]))


def sequence_logprob(logits: Any, input_ids: Sequence[int], start: int, end: int | None = None, mean: bool = False) -> float:
    """Sum (or ``mean``) of log p(token t | tokens < t) for t in ``[start, end)``.

    ``logits`` (T, V) are a causal LM's outputs for ``input_ids`` (T,); position t-1 predicts token t.
    """
    if start < 1:
        raise ValueError("start must be >= 1: the first token has no prediction")
    lg = _t(logits).float()
    ids = _t(input_ids).long()
    end = len(ids) if end is None else end
    lp = lg[start - 1 : end - 1].log_softmax(-1).gather(-1, ids[start:end, None])[:, 0]
    return float(lp.mean() if mean else lp.sum())


def argmax_choice(scores: Sequence[float]) -> int:
    """Index of the best score (the first one on ties)."""
    best, arg = -math.inf, 0
    for i, s in enumerate(scores):
        if s > best:
            best, arg = s, i
    return arg


def accuracy(correct: Iterable[bool | int]) -> float:
    """Mean of 0/1 outcomes; NaN for none."""
    vals = [bool(c) for c in correct]
    return float(sum(vals) / len(vals)) if vals else math.nan
