"""Causal-LM log-likelihood of continuations: the scorer every multiple-choice study shares.

:func:`score_continuations` gives log p(continuation | context) for token-id inputs built by
:func:`ausweep.benchmarks.metrics.build_candidate_input` (or any :class:`~ausweep.benchmarks.metrics.CandidateInput`),
in batches of similar length, computing the LM head only at the scored positions. The AuditoryBench
baselines, the text-only knowledge scorer and the cascade all rank options with it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from ausweep.benchmarks import metrics as M
from ausweep.models.heads import LMWithHead


def crop_candidate(ci: M.CandidateInput, limit: int | None) -> tuple[M.CandidateInput, bool]:
    n = len(ci.input_ids)
    if limit is None or n <= limit:
        return ci, False
    a = n - limit  # keep the last `limit` tokens; the token before the candidate must stay
    if a > ci.start - 1:
        raise ValueError(f"the candidate and the rest of the sentence ({n - ci.start} tokens) do not fit in {limit} positions")
    return M.CandidateInput(ci.input_ids[a:], ci.start - a), True


def score_continuations(lm: LMWithHead, inputs: Sequence[M.CandidateInput], batch_size: int = 16,
                        length_norm: bool = False, progress: bool = False, desc: str = "log-likelihood") -> list[float]:
    """log p(continuation | context) of each causal-LM input: the summed (or, with ``length_norm``,
    mean) log-probability of ``input_ids[start:]``, in batches of similar length."""
    import torch
    import torch.nn.functional as F

    tok = lm.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else (M.prefix_token_id(tok) or 0)
    scores = [math.nan] * len(inputs)
    for batch in length_batches(range(len(inputs)), key=lambda r: len(inputs[r].input_ids), size=batch_size,
                                progress=progress, desc=desc):
        ids, attn = pad_sequences([inputs[r].input_ids for r in batch], pad)
        ids, attn = ids.to(lm.device), attn.to(lm.device)
        # Only the positions that predict continuation tokens need the LM head: with 50-150k-token
        # vocabularies the head over every position costs more time and memory than it is worth.
        lo = min(inputs[r].start for r in batch) - 1
        hi = max(len(inputs[r].input_ids) for r in batch) - 1
        with torch.no_grad():
            logits = lm.model(input_ids=ids, attention_mask=attn,
                              logits_to_keep=torch.arange(lo, hi, device=ids.device)).logits  # (b, hi - lo, V)
        offset = 0 if logits.shape[1] == ids.shape[1] else lo  # a model that ignores logits_to_keep
        for b, r in enumerate(batch):
            ci = inputs[r]
            end = len(ci.input_ids)
            # float32 log-softmax over only the scored positions: bf16 is too coarse to rank options
            lg = logits[b, ci.start - 1 - offset : end - 1 - offset].float()  # (k, V)
            lp = -F.cross_entropy(lg, ids[b, ci.start : end], reduction="none")  # (k,)
            scores[r] = float(lp.mean() if length_norm else lp.sum())
    return scores


def pad_sequences(seqs: list[tuple[int, ...]], pad: int):
    """Right-padded ``input_ids`` and ``attention_mask``, both (b, T)."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), int(pad), dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    for b, s in enumerate(seqs):
        ids[b, : len(s)] = torch.tensor(s, dtype=torch.long)
        attn[b, : len(s)] = 1
    return ids, attn


def length_batches(indices: Iterable[int], key, size: int, progress: bool, desc: str):
    """Batches of indices, longest first (an out-of-memory error shows at once), with a progress bar."""
    from tqdm.auto import tqdm

    order = sorted(indices, key=lambda i: -key(i))
    chunks = [order[k : k + size] for k in range(0, len(order), size)]
    yield from tqdm(chunks, desc=desc, unit="batch", disable=not progress, leave=False)
