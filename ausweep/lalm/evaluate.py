"""Score an audio-grounded LLM on audio multiple-choice items, by option log-likelihood.

Where it sits: the last step of a ``lalm_backbone`` trial, after
training. It follows the text-only scorer (:mod:`ausweep.benchmarks.scoring`, ``method="loglik"``)
so the two can be compared per backbone: the prompt is
:func:`~ausweep.benchmarks.mcq.format_prompt`, each option is the continuation ``" " + option``,
ranked by its summed token log-probability (per-token mean with ``length_norm``), and the metrics
are :func:`~ausweep.benchmarks.mcq.accuracy_metrics`. Prompt and option are split into tokens by the
text scorer's rule too (lm-evaluation-harness's, :func:`ausweep.benchmarks.loglik.encode_pair`), as
the training :class:`~ausweep.lalm.data.Collator` splits instruction and response. The one
difference: the LLM reads the clip's audio queries before the prompt.

Each clip is encoded once per item and its audio embeddings are shared by the item's options. The
LLM's output layer runs in float32 (:func:`ausweep.benchmarks.loglik.float32_head`), so a bfloat16
backbone's option scores are not rounded to bfloat16 logits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ausweep.benchmarks.mcq import MCItem, accuracy_metrics

if TYPE_CHECKING:
    from ausweep.lalm.model import LALM


def evaluate_mc(
    lalm: LALM,
    items: Sequence[MCItem],
    batch_size: int = 8,
    length_norm: bool = False,
    progress: bool = True,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """``(metrics, rows)`` for ``items`` (each with an ``audio`` clip).

    ``batch_size`` is items per forward pass (each contributes one row per option). Metrics
    (:func:`~ausweep.benchmarks.mcq.accuracy_metrics`): ``acc`` (macro over categories),
    ``acc_micro``, ``n``, ``acc/<category>``, ``n/<category>``, ``acc/<category>/<subcategory>``, and
    ``n_cropped`` (items whose prompt + option exceeded ``config.max_text_tokens`` and lost the
    prompt's start). Rows, one per item: id, category, subcategory, question, options
    (``" | "``-joined), answer, predicted, correct (0/1), scores (one per option,
    space-separated), cropped (0/1).
    """
    import torch
    from tqdm.auto import tqdm

    from ausweep.benchmarks.loglik import float32_head
    from ausweep.benchmarks.metrics import argmax_choice

    items = list(items)
    if not items:
        raise ValueError("no items to score")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for it in items:  # fail before any compute, naming the item
        if not it.audio:
            raise ValueError(f"item {it.id!r} has no audio; the audio-grounded LLM scores audio items only")

    was_training = lalm.training
    lalm.eval()
    scores: list[list[float]] = []
    cropped: list[bool] = []
    chunks = [items[k: k + batch_size] for k in range(0, len(items), batch_size)]
    try:
        with torch.no_grad(), float32_head(lalm.causal_lm):
            for chunk in tqdm(chunks, desc="lalm options", unit="batch", disable=not progress, leave=False):
                s, c = _score_chunk(lalm, chunk, length_norm)
                scores.extend(s)
                cropped.extend(c)
    finally:
        lalm.train(was_training)

    predicted: list[int | None] = [argmax_choice(s) for s in scores]
    metrics = accuracy_metrics(items, predicted)
    metrics["n_cropped"] = float(sum(cropped))
    rows = []
    for it, p, sc, c in zip(items, predicted, scores, cropped):
        rows.append({
            "id": it.id, "category": it.category, "subcategory": it.subcategory, "question": it.question,
            "options": " | ".join(it.options), "answer": it.answer_text, "predicted": it.options[p],
            "correct": int(p == it.answer),
            "scores": " ".join(f"{x:.4f}" if math.isfinite(x) else str(x) for x in sc),
            "cropped": int(c),
        })
    return metrics, rows


def _score_chunk(lalm: LALM, chunk: list[MCItem], length_norm: bool) -> tuple[list[list[float]], list[bool]]:
    """Option scores for a few items: one encoder / Q-Former pass per clip, one LLM pass for all options."""
    import torch

    from ausweep.benchmarks.mcq import format_prompt
    from ausweep.lalm.data import mc_batch, was_cropped

    tok = lalm.tokenizer
    batch = mc_batch(chunk, tok, lalm.feature_extractor, lalm.config.max_text_tokens)
    audio = lalm.audio_embeds(batch["input_features"].to(lalm.device))  # (B, Q, H)
    owner = batch["item_index"].to(audio.device)
    out = lalm.forward_embeds(audio[owner], batch["input_ids"], batch["attention_mask"])
    q = audio.shape[1]
    ids = batch["input_ids"].to(audio.device)
    labels = batch["labels"].to(audio.device)
    # Text token t sits at position q + t and is predicted by the logits at q + t - 1.
    logits = out.logits[:, q - 1: q - 1 + ids.shape[1]]  # (N, T, V), float32 (float32_head)
    keep = labels != -100  # the option's tokens
    # Log-softmax over the option positions only: a second (N, T, V) copy is large for 150k vocabularies.
    picked = torch.log_softmax(logits[keep].float(), dim=-1)  # (K, V)
    token_lp = picked.gather(-1, ids[keep].unsqueeze(-1)).squeeze(-1)  # (K,)
    row_of = keep.nonzero()[:, 0]
    n_rows = ids.shape[0]
    total = torch.zeros(n_rows, device=token_lp.device).index_add_(0, row_of, token_lp)
    count = torch.zeros(n_rows, device=token_lp.device).index_add_(0, row_of, torch.ones_like(token_lp))
    row_scores = torch.where(count > 0, total / count.clamp(min=1), total) if length_norm else total
    row_scores = torch.where(count > 0, row_scores, torch.full_like(row_scores, -math.inf)).tolist()

    scores: list[list[float]] = [[] for _ in chunk]
    for r, i in enumerate(batch["item_index"].tolist()):
        scores[i].append(row_scores[r])
    limit = lalm.config.max_text_tokens
    cropped = [any(was_cropped(tok, format_prompt(it), o, limit) for o in it.options) for it in chunk]
    return scores, cropped
