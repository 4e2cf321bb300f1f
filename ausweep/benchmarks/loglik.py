"""Causal-LM log-likelihood of continuations: the scorer every multiple-choice study shares.

:func:`score_continuations` gives log p(continuation | context) for token-id inputs built by
:func:`ausweep.benchmarks.metrics.build_candidate_input` (or any :class:`~ausweep.benchmarks.metrics.CandidateInput`),
in batches of similar length, computing the LM head only at the scored positions, in float32
(:func:`float32_head`). The AuditoryBench baselines, the text-only knowledge scorer and the cascade
all rank options with it.

:func:`encode_pair` is the one rule that splits a (context, continuation) pair into tokens, taken
from lm-evaluation-harness. The text-only scorer (:mod:`ausweep.benchmarks.scoring`) and the
audio-grounded one (:mod:`ausweep.lalm.data`, training and scoring) both use it, so one backbone
sees the same tokens for the same question on both sides of the LLM-backbone study.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ausweep.benchmarks import metrics as M
from ausweep.models.heads import LMWithHead

log = logging.getLogger(__name__)


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """``(context_ids, continuation_ids)`` as lm-evaluation-harness splits a loglikelihood request.

    This is lm-eval's ``TemplateLM._encode_pair`` (``lm_eval/api/model.py``) with ``HFLM.tok_encode``
    (``lm_eval/models/huggingface.py``) at its defaults (``add_bos_token=None``), checked against
    lm-eval 0.4.13 in ``tests/unit/test_knowledge.py``:

    * trailing whitespace of the context moves to the front of the continuation;
    * ``whole = encode(context + continuation)`` and ``ctx = encode(context)`` with the tokenizer's
      own special tokens (Llama's BOS; nothing for GPT-2, Qwen or SmolLM2). No BOS-like token is
      added when the tokenizer adds none, and none when the text already starts with it;
    * the continuation is ``whole[len(ctx):]``: a merge across the boundary cannot change the context's count.

    An empty context is lm-eval's ``loglikelihood`` branch: the prefix token (BOS, else EOS) is the
    context, unless the continuation already starts with it.
    """
    from ausweep.benchmarks.metrics import prefix_token_id

    if not context:
        cont = list(tokenizer(continuation, add_special_tokens=False)["input_ids"])
        prefix = prefix_token_id(tokenizer)
        if not cont:
            raise ValueError("the continuation has no tokens")
        if prefix is None:
            raise ValueError(f"{type(tokenizer).__name__} has no BOS or EOS token to score a continuation with no context")
        return ([prefix], cont) if cont[0] != prefix else (cont[:1], cont[1:])
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    whole = tok_encode(tokenizer, context + continuation)
    ctx = tok_encode(tokenizer, context)
    return ctx, whole[len(ctx):]


def tok_encode(tokenizer: Any, text: str) -> list[int]:
    """lm-eval's ``HFLM.tok_encode`` at its defaults: the tokenizer's own special tokens, none when
    the text already starts with the (decoded) prefix token."""
    from ausweep.benchmarks.metrics import prefix_token_id

    prefix = prefix_token_id(tokenizer)
    starts_with_it = prefix is not None and text.startswith(tokenizer.decode(prefix))
    kwargs = {"add_special_tokens": False} if starts_with_it else {}
    return list(tokenizer(text, **kwargs)["input_ids"])


@contextlib.contextmanager
def float32_head(model: Any) -> Iterator[None]:
    """Inside the block, ``model``'s output layer multiplies float32 hidden states by a float32 copy
    of its weights, so the logits are float32 even when the model runs in bfloat16.

    Why: a bfloat16 logit keeps 8 significant bits (steps of 0.125 near 20), coarser than the gaps
    between options' log-likelihoods, and a later ``.float()`` cannot bring the lost bits back. The
    transformer layers still run in the model's dtype. Costs one float32 copy of the head's weights
    (3 GB for a 150k x 5120 head) while the block runs; with float32 weights it does nothing. Logit
    soft-capping or scaling (Gemma 2, Cohere) is applied by the model after this layer, in float32.
    """
    import torch
    import torch.nn.functional as F

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None or getattr(head, "weight", None) is None or head.weight.dtype == torch.float32:
        yield
        return
    if not isinstance(head, torch.nn.Linear):
        raise TypeError(f"the output layer is a {type(head).__name__}, not a Linear layer: cannot compute it in "
                        "float32; load the model with dtype=float32")
    weight = head.weight.detach().float()
    bias = None if head.bias is None else head.bias.detach().float()

    def hook(module: Any, args: tuple[Any, ...], output: Any) -> Any:
        return F.linear(args[0].float(), weight, bias)

    handle = head.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


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
    with torch.no_grad(), float32_head(lm.model):
        for batch in length_batches(range(len(inputs)), key=lambda r: len(inputs[r].input_ids), size=batch_size,
                                    progress=progress, desc=desc):
            ids, attn = pad_sequences([inputs[r].input_ids for r in batch], pad)
            ids, attn = ids.to(lm.device), attn.to(lm.device)
            # Only the positions that predict continuation tokens need the LM head: with 50-150k-token
            # vocabularies the head over every position costs more time and memory than it is worth.
            lo = min(inputs[r].start for r in batch) - 1
            hi = max(len(inputs[r].input_ids) for r in batch) - 1
            logits = lm.model(input_ids=ids, attention_mask=attn,
                              logits_to_keep=torch.arange(lo, hi, device=ids.device)).logits  # (b, hi - lo, V) float32
            offset = 0 if logits.shape[1] == ids.shape[1] else lo  # a model that ignores logits_to_keep
            for b, r in enumerate(batch):
                ci = inputs[r]
                end = len(ci.input_ids)
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
