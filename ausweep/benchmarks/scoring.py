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
    prefix_token: bool = False,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Score ``items`` with ``lm``: ``(metrics, one row per item)``.

    Metrics are :func:`~ausweep.benchmarks.mcq.accuracy_metrics` (``acc``: macro over categories,
    ``acc_micro``, ``acc/<category>``, ``acc/<category>/<subcategory>``, ``n``...) plus ``n_cropped``, and ``unparsed``
    for ``method="generate"``. ``contexts[i]`` (or None) goes before item ``i``'s question.
    ``chat_template`` (generate only): ask each prompt as a user turn of the tokenizer's chat
    template; None = when the tokenizer has one. ``prefix_token``: a BOS-like token before each
    prompt whose tokenizer adds none (not lm-eval's default; see :func:`score_options`).
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
        scores, cropped = score_options(lm, prompts, [it.options for it in items], batch_size, length_norm, progress,
                                        prefix_token=prefix_token)
        return loglik_results(items, scores, cropped, contexts)
    texts, cropped = generate(lm, prompts, max_new_tokens, batch_size, progress, chat_template, prefix_token)
    predicted = [parse_answer(t, it) for t, it in zip(texts, items)]
    return _results(items, contexts, predicted, [{"generation": t} for t in texts], cropped, method)


def loglik_results(items: Sequence[MCItem], scores: Sequence[Sequence[float]], cropped: Sequence[bool] | None = None,
                   contexts: Sequence[str | None] | None = None) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """:func:`evaluate_items`'s ``(metrics, rows)`` from every option's log-likelihood, whoever
    computed them (ausweep's scorer, or lm-evaluation-harness)."""
    items = list(items)
    if len(scores) != len(items) or any(len(s) != len(it.options) for s, it in zip(scores, items)):
        raise ValueError("scores must hold one value per option of every item")
    predicted: list[int | None] = [M.argmax_choice(s) for s in scores]
    extra = [{"scores": " ".join(f"{s:.4f}" if math.isfinite(s) else str(s) for s in sc)} for sc in scores]
    return _results(items, contexts or [None] * len(items), predicted, extra, cropped or [False] * len(items), "loglik")


def _results(items: list[MCItem], contexts: Sequence[str | None], predicted: list[int | None],
             extra: list[dict[str, Any]], cropped: Sequence[bool], method: str) -> tuple[dict[str, float], list[dict[str, Any]]]:
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


def continuation_input(tokenizer: Any, prompt: str, continuation: str, prefix_token: bool = False) -> M.CandidateInput:
    """Token ids of ``prompt + continuation``, split where lm-evaluation-harness splits them
    (:func:`~ausweep.benchmarks.loglik.encode_pair`): only the tokenizer's own special tokens, and
    ``start`` = the number of tokens of the prompt alone. ``prefix_token``: put the BOS-like token
    (:func:`~ausweep.benchmarks.metrics.prefix_token_id`) first when the tokenizer put no special
    token there (not lm-eval's default; see :func:`score_options`)."""
    ctx, cont = encode_pair(tokenizer, prompt, continuation)
    if not cont:
        raise ValueError(f"no token covers the continuation {continuation!r}")
    if prefix_token:
        ctx = with_prefix_token(tokenizer, ctx)
    return M.CandidateInput(tuple(ctx + cont), len(ctx))


def with_prefix_token(tokenizer: Any, ids: list[int]) -> list[int]:
    """``ids`` led by the BOS-like token, unless a special token (the tokenizer's own BOS) leads already."""
    if ids and ids[0] in set(tokenizer.all_special_ids):
        return ids
    lead = M.prefix_token_id(tokenizer)
    if lead is None:
        raise ValueError(f"{type(tokenizer).__name__} has no BOS or EOS token to put before the prompt")
    return [lead] + ids


def score_options(lm: LMWithHead, prompts: Sequence[str], options: Sequence[Sequence[str]], batch_size: int = 16,
                  length_norm: bool = False, progress: bool = False, prefix_token: bool = False,
                  shared_context: bool = True) -> tuple[list[list[float]], list[bool]]:
    """log p(" " + option | prompt) for every option of every prompt (summed, or the per-token mean),
    and whether each prompt had to be cropped from the left to fit.

    ``prefix_token``: put a BOS-like token before each prompt whose tokenizer adds none (SmolLM2's
    ``<|im_start|>``, GPT-2's ``<|endoftext|>``). Off by default, as in lm-evaluation-harness; it
    changes the scores, so numbers with it do not compare with published lm-eval results.

    ``shared_context`` (default): every option of a prompt is scored from one pass over the prompt
    (:func:`score_shared_context`), as lm-eval does for single-token options; with False, one pass
    per (prompt, option) (:func:`~ausweep.benchmarks.loglik.score_continuations`). The two give the
    same log-likelihoods up to float rounding (tested). A prompt cropped to fit is scored per option.
    """
    tok = lm.tokenizer
    cropped = [False] * len(prompts)
    scores = [[math.nan] * len(o) for o in options]
    shared: list[tuple[int, list[int], list[list[int]]]] = []  # (prompt, context ids, continuation ids per option)
    reqs: list[tuple[int, int, M.CandidateInput]] = []
    for i, (prompt, opts) in enumerate(zip(prompts, options)):
        cis = [continuation_input(tok, prompt, " " + opt, prefix_token) for opt in opts]
        ctx = cis[0].input_ids[: cis[0].start]
        fits = lm.max_length is None or max(len(ci.input_ids) for ci in cis) <= lm.max_length
        if shared_context and fits and all(ci.input_ids[: ci.start] == ctx for ci in cis):
            shared.append((i, list(ctx), [list(ci.input_ids[ci.start:]) for ci in cis]))
            continue
        for j, ci in enumerate(cis):
            ci, was_cropped = crop_candidate(ci, lm.max_length)
            cropped[i] |= was_cropped
            reqs.append((i, j, ci))
    if shared:
        values = score_shared_context(lm, [c for _, c, _ in shared], [o for _, _, o in shared], batch_size, length_norm,
                                      progress, f"{lm.name} options")
        for (i, _, _), v in zip(shared, values):
            scores[i] = v
    if reqs:
        values = score_continuations(lm, [ci for _, _, ci in reqs], batch_size, length_norm, progress, f"{lm.name} options")
        for (i, j, _), v in zip(reqs, values):
            scores[i][j] = v
    return scores, cropped


def score_shared_context(lm: LMWithHead, contexts: Sequence[list[int]], continuations: Sequence[Sequence[list[int]]],
                         batch_size: int = 16, length_norm: bool = False, progress: bool = False,
                         desc: str = "log-likelihood") -> list[list[float]]:
    """log p(continuation | context) for several continuations of each context, with one forward pass
    over each context.

    Contexts are batched (right-padded, longest first) so that a batch's continuations number at most
    ``batch_size`` (at least one context per batch). The pass over the contexts keeps their keys and
    values (``use_cache``) and the logits at each context's last position, which score every
    continuation's first token: when all continuations of a batch are single tokens (higher/lower,
    most animal names) that is all. Otherwise the cache is repeated once per continuation and the
    continuations' other tokens run in a second, short pass (explicit ``position_ids`` after each
    context's own length; the context's padding stays masked out).
    """
    import torch
    import torch.nn.functional as F

    from ausweep.benchmarks.loglik import pad_sequences

    tok = lm.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else (M.prefix_token_id(tok) or 0)
    scores = [[math.nan] * len(c) for c in continuations]
    order = sorted(range(len(contexts)), key=lambda i: -len(contexts[i]))
    batches: list[list[int]] = []
    for i in order:
        if batches and sum(len(continuations[k]) for k in batches[-1]) + len(continuations[i]) <= batch_size:
            batches[-1].append(i)
        else:
            batches.append([i])
    from tqdm.auto import tqdm

    with torch.no_grad(), float32_head(lm.model):
        for batch in tqdm(batches, desc=desc, unit="batch", disable=not progress, leave=False):
            ids, attn = pad_sequences([tuple(contexts[i]) for i in batch], pad)
            ids, attn = ids.to(lm.device), attn.to(lm.device)
            lens = torch.tensor([len(contexts[i]) for i in batch], device=lm.device)
            lo, hi = int(lens.min()) - 1, int(lens.max())
            out = lm.model(input_ids=ids, attention_mask=attn, use_cache=True,
                           logits_to_keep=torch.arange(lo, hi, device=ids.device))
            offset = 0 if out.logits.shape[1] == ids.shape[1] else lo  # a model that ignores logits_to_keep
            last = out.logits[torch.arange(len(batch), device=ids.device), lens - 1 - offset].float()  # (b, V)
            first_lp = last.log_softmax(-1)  # (b, V): log p(first continuation token | context)
            rows = [(b, j) for b, i in enumerate(batch) for j in range(len(continuations[i]))]
            conts = [continuations[batch[b]][j] for b, j in rows]
            width = max(len(c) for c in conts)
            tails: Any = None
            if width > 1:  # the continuations' later tokens, read after the cached context
                cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
                index = torch.tensor([b for b, _ in rows], device=ids.device)
                cache.reorder_cache(index)
                c_ids, c_attn = pad_sequences([tuple(c[:-1]) if len(c) > 1 else (pad,) for c in conts], pad)
                c_attn[[k for k, c in enumerate(conts) if len(c) == 1]] = 0
                c_ids, c_attn = c_ids.to(lm.device), c_attn.to(lm.device)
                positions = lens[index].unsqueeze(1) + torch.arange(c_ids.shape[1], device=ids.device)
                tails = lm.model(input_ids=c_ids, attention_mask=torch.cat([attn[index], c_attn], dim=1),
                                 position_ids=positions, use_cache=True, **{_cache_kwarg(lm.model): cache}).logits.float()
            del out
            for k, ((b, j), c) in enumerate(zip(rows, conts)):
                lp = [first_lp[b, c[0]]]
                if len(c) > 1:
                    lp += list(-F.cross_entropy(tails[k, : len(c) - 1], torch.tensor(c[1:], device=tails.device), reduction="none"))
                total = torch.stack(lp)
                scores[batch[b]][j] = float(total.mean() if length_norm else total.sum())
    return scores


def _cache_kwarg(model: Any) -> str:
    """``cache`` (transformers 5.x's name) where the model's forward takes it, else ``past_key_values``."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


# ----------------------------------------------------------------------------- generation


def generate(lm: LMWithHead, prompts: Sequence[str], max_new_tokens: int = 8, batch_size: int = 16,
             progress: bool = False, chat_template: bool | None = None,
             prefix_token: bool = False) -> tuple[list[str], list[bool]]:
    """Greedy continuations of ``prompts`` (at most ``max_new_tokens`` each, special tokens dropped),
    and whether each prompt had to be cropped from the left to fit.

    ``chat_template``: send each prompt as a user turn of the tokenizer's chat template and decode
    the assistant's reply (None: when the tokenizer has a template). Chat-tuned models need it:
    after a raw ``Answer:`` SmolLM2-Instruct ends its turn at once. Thinking modes (Qwen3) are
    switched off, so a few tokens reach the answer. ``prefix_token``: a BOS-like token before a
    raw prompt whose tokenizer adds none (a chat template writes its own).
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
        if prefix_token and not chat_template:
            ids = with_prefix_token(tok, ids)
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
