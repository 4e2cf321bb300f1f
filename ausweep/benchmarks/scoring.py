"""Score multiple-choice items with a causal LM, by option log-likelihood or by generation.

Where it sits: after a study loads its items (e.g. the ``knowledge_text`` sets) and before its metrics
(:func:`ausweep.benchmarks.mcq.accuracy_metrics`). Every item is asked with the one prompt layout of
:func:`~ausweep.benchmarks.mcq.format_prompt`, optionally after a context (a caption or a
transcript, for the cascade).

* ``method="loglik"``: each option is scored as the continuation ``" " + option`` after the
  prompt, by its summed token log-probability (the per-token mean with ``length_norm``). The best
  option is the prediction. This is lm-evaluation-harness's ``multiple_choice`` protocol; it needs
  no answer parsing and never yields an unparsable answer.
* ``method="generate"``: greedy decoding of a few tokens after the prompt (as a user turn of the
  tokenizer's chat template when it has one), read back by :func:`parse_answer` (a letter or an
  option's text). Unparsable answers count as wrong and are reported as ``unparsed`` (a fraction).

Tokens follow lm-evaluation-harness's defaults (:func:`~ausweep.benchmarks.loglik.encode_pair`):
the tokenizer's own special tokens only (Llama's BOS; none for GPT-2, Qwen, SmolLM2), and prompt and
option split as lm-eval splits a loglikelihood request. The audio-grounded scorer
(:mod:`ausweep.lalm.evaluate`) uses the same rule. Inputs are right-padded for scoring and
left-padded for generation, with attention masks, so a batch gives the same scores as one item at a
time. A prompt longer than the model's positions keeps its *last* tokens (the question's end, the
options and ``Answer:``); such items are counted in ``n_cropped``. Log-likelihood scoring gives base
and instruct models the same raw prompt (no chat template), as lm-evaluation-harness does by
default. Logits are float32 whatever the weights' dtype (:func:`~ausweep.benchmarks.loglik.float32_head`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, Literal

from ausweep.benchmarks import metrics as M
from ausweep.benchmarks.loglik import crop_candidate, encode_pair, float32_head, length_batches, score_continuations, tok_encode
from ausweep.benchmarks.mcq import LETTERS, MCItem, accuracy_metrics, format_prompt
from ausweep.models.heads import LMWithHead

Method = Literal["loglik", "generate"]
METHODS = ("loglik", "generate")


def evaluate_items(
    lm: LMWithHead,
    items: Sequence[MCItem],
    method: Method = "loglik",
    contexts: Sequence[str | None] | None = None,
    batch_size: int = 16,
    length_norm: bool = False,
    progress: bool = True,
    max_new_tokens: int = 8,
    chat_template: bool | None = None,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Score ``items`` with ``lm``: ``(metrics, one row per item)``.

    Metrics are :func:`~ausweep.benchmarks.mcq.accuracy_metrics` (``acc``: macro over categories,
    ``acc_micro``, ``acc/<category>``, ``acc/<category>/<subcategory>``, ``n``...) plus ``n_cropped``, and ``unparsed``
    for ``method="generate"``. ``contexts[i]`` (or None) goes before item ``i``'s question.
    ``chat_template`` (generate only): ask each prompt as a user turn of the tokenizer's chat
    template; None = when the tokenizer has one.
    """
    items = list(items)
    if not items:
        raise ValueError("no items to score")
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    if lm.kind != "causal":
        raise ValueError(f"'{lm.name}' is a {lm.kind} model; multiple-choice scoring needs a causal LM")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if contexts is None:
        contexts = [None] * len(items)
    elif len(contexts) != len(items):
        raise ValueError(f"{len(items)} items but {len(contexts)} contexts")
    prompts = [format_prompt(it, ctx) for it, ctx in zip(items, contexts)]
    if method == "loglik":
        scores, cropped = score_options(lm, prompts, [it.options for it in items], batch_size, length_norm, progress)
        predicted: list[int | None] = [M.argmax_choice(s) for s in scores]
        extra = [{"scores": " ".join(f"{s:.4f}" if math.isfinite(s) else str(s) for s in sc)} for sc in scores]
    else:
        texts, cropped = generate(lm, prompts, max_new_tokens, batch_size, progress, chat_template)
        predicted = [parse_answer(t, it) for t, it in zip(texts, items)]
        extra = [{"generation": t} for t in texts]
    metrics = accuracy_metrics(items, predicted)
    metrics["n_cropped"] = float(sum(cropped))
    if method == "generate":
        metrics["unparsed"] = sum(p is None for p in predicted) / len(items)
    rows = []
    for it, ctx, p, more, c in zip(items, contexts, predicted, extra, cropped):
        row: dict[str, Any] = {"id": it.id, "category": it.category, "subcategory": it.subcategory, "question": it.question}
        if any(x is not None for x in contexts):
            row["context"] = ctx or ""
        row.update(options=" | ".join(it.options), answer=it.answer_text,
                   predicted="" if p is None else it.options[p], correct=int(p == it.answer), **more, cropped=int(c))
        rows.append(row)
    return metrics, rows


# ----------------------------------------------------------------------------- log-likelihood


def continuation_input(tokenizer: Any, prompt: str, continuation: str) -> M.CandidateInput:
    """Token ids of ``prompt + continuation``, split where lm-evaluation-harness splits them
    (:func:`~ausweep.benchmarks.loglik.encode_pair`): only the tokenizer's own special tokens, and
    ``start`` = the number of tokens of the prompt alone."""
    ctx, cont = encode_pair(tokenizer, prompt, continuation)
    if not cont:
        raise ValueError(f"no token covers the continuation {continuation!r}")
    return M.CandidateInput(tuple(ctx + cont), len(ctx))


def score_options(lm: LMWithHead, prompts: Sequence[str], options: Sequence[Sequence[str]], batch_size: int = 16,
                  length_norm: bool = False, progress: bool = False) -> tuple[list[list[float]], list[bool]]:
    """log p(" " + option | prompt) for every option of every prompt (summed, or the per-token mean),
    and whether each prompt had to be cropped from the left to fit."""
    reqs: list[tuple[int, int, M.CandidateInput]] = []
    cropped = [False] * len(prompts)
    for i, (prompt, opts) in enumerate(zip(prompts, options)):
        for j, opt in enumerate(opts):
            ci, was_cropped = crop_candidate(continuation_input(lm.tokenizer, prompt, " " + opt), lm.max_length)
            cropped[i] |= was_cropped
            reqs.append((i, j, ci))
    values = score_continuations(lm, [ci for _, _, ci in reqs], batch_size, length_norm, progress, f"{lm.name} options")
    scores = [[math.nan] * len(o) for o in options]
    for (i, j, _), v in zip(reqs, values):
        scores[i][j] = v
    return scores, cropped


# ----------------------------------------------------------------------------- generation


def generate(lm: LMWithHead, prompts: Sequence[str], max_new_tokens: int = 8, batch_size: int = 16,
             progress: bool = False, chat_template: bool | None = None) -> tuple[list[str], list[bool]]:
    """Greedy continuations of ``prompts`` (at most ``max_new_tokens`` each, special tokens dropped),
    and whether each prompt had to be cropped from the left to fit.

    ``chat_template``: send each prompt as a user turn of the tokenizer's chat template and decode
    the assistant's reply (None: when the tokenizer has a template). Chat-tuned models need it:
    after a raw ``Answer:`` SmolLM2-Instruct ends its turn at once. Thinking modes (Qwen3) are
    switched off, so a few tokens reach the answer.
    """
    import torch
    from transformers import GenerationConfig

    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    tok = lm.tokenizer
    limit = None if lm.max_length is None else lm.max_length - max_new_tokens
    if limit is not None and limit < 2:
        raise ValueError(f"'{lm.name}' has {lm.max_length} positions: no room for a prompt and {max_new_tokens} new tokens")
    if chat_template is None:
        chat_template = bool(getattr(tok, "chat_template", None))
    elif chat_template and not getattr(tok, "chat_template", None):
        raise ValueError(f"'{lm.name}' has no chat template; use chat_template=False (or None)")
    inputs: list[list[int]] = []
    cropped = [False] * len(prompts)
    for i, prompt in enumerate(prompts):
        ids = _chat_ids(tok, prompt) if chat_template else tok_encode(tok, prompt)
        if limit is not None and len(ids) > limit:
            ids = ids[len(ids) - limit :]  # the prompt's end, as lm-eval's generate_until left-truncates
            cropped[i] = True
        inputs.append(ids)
    pad = tok.pad_token_id if tok.pad_token_id is not None else (M.prefix_token_id(tok) or 0)
    eos = lm.model.generation_config.eos_token_id
    if eos is None:
        eos = tok.eos_token_id
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                              pad_token_id=pad, eos_token_id=eos)
    texts = [""] * len(prompts)
    with torch.no_grad(), float32_head(lm.model):  # greedy argmax over float32 logits
        for batch in length_batches(range(len(inputs)), key=lambda i: len(inputs[i]), size=batch_size,
                                    progress=progress, desc=f"{lm.name} generate"):
            width = max(len(inputs[i]) for i in batch)
            ids = torch.full((len(batch), width), int(pad), dtype=torch.long)
            attn = torch.zeros((len(batch), width), dtype=torch.long)
            for b, i in enumerate(batch):  # left padding: every prompt ends where generation starts
                ids[b, width - len(inputs[i]):] = torch.tensor(inputs[i], dtype=torch.long)
                attn[b, width - len(inputs[i]):] = 1
            out = lm.model.generate(input_ids=ids.to(lm.device), attention_mask=attn.to(lm.device),
                                    generation_config=config)
            for b, i in enumerate(batch):
                texts[i] = tok.decode(out[b, width:], skip_special_tokens=True)
    return texts, cropped


def _chat_ids(tokenizer: Any, prompt: str) -> list[int]:
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True, enable_thinking=False)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])  # the template writes its own BOS


# ----------------------------------------------------------------------------- answer parsing

_PREFIX = re.compile(r"^\s*(?:the\s+)?(?:correct\s+|right\s+|best\s+)?(?:answer|option|choice)\s*(?:is|:|=)?\s*", re.IGNORECASE)


def parse_answer(text: str, item: MCItem) -> int | None:
    """The option a generated answer names, or None.

    Read from the first non-empty line, after an ``Answer:`` / ``The answer is`` prefix: a letter
    of an option (``B``, ``B.``, ``B)``, ``(B)``, ``B: dog``), else the option whose text comes
    first (case-insensitive, whole words; on a tie the longest, so "owl monkey" beats "owl"). A
    lone lower-case letter counts only on its own ("b", "(b)"), since "a" is usually the article.
    """
    lines = [ln for ln in _PREFIX.sub("", text.strip(), count=1).splitlines() if ln.strip()]
    if not lines:
        return None
    line = _PREFIX.sub("", lines[0].strip(), count=1).strip()
    letters = LETTERS[: len(item.options)]
    m = (re.match(r"^\(([A-Za-z])\)", line)
         or re.match(r"^([A-Z])(?:[.):,]|$)", line)
         or re.match(r"^([a-z])[.)]?$", line))
    if m and m.group(1).upper() in letters:
        return letters.index(m.group(1).upper())
    m = re.match(r"^([A-Z])\s+(.+)$", line)  # "B dog": a letter only when the option's text follows
    if m and m.group(1) in letters and line[2:].strip().lower().startswith(item.options[letters.index(m.group(1))].lower()):
        return letters.index(m.group(1))
    best: tuple[int, int, int] | None = None  # (position, -length, index)
    low = line.lower()
    for k, opt in enumerate(item.options):
        hit = re.search(rf"(?<!\w){re.escape(opt.lower().strip())}(?!\w)", low)
        if hit:
            key = (hit.start(), -len(opt), k)
            best = key if best is None or key < best else best
    return None if best is None else best[2]
