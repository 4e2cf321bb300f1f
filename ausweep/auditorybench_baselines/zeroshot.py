"""Zero-shot, text-only AuditoryBench baselines: what an LM answers with no audio at all.

**Masked LMs** (BERT) use fill-mask, as upstream does (:mod:`ausweep.benchmarks.metrics`):

* animal ``exact_match``: write the gold answer into the sentence, mask its pieces, and check
  that the argmax at every mask is the right piece. This is upstream's metric and comparable with
  the published BERT rows.
* animal ``mc_acc``: each of the four options is masked in the same way and scored by the summed
  log-probability of its pieces at its masks (the mean with ``length_norm``). The best-scoring
  option is the prediction. Upstream has no MC metric for masked LMs; this one is ours.
* pitch ``acc``: ``higher`` vs ``lower`` at the mask. When both are single pieces (every BERT
  vocabulary) the two masked inputs are identical, and comparing log-probabilities there is the same
  as upstream's logit argmax. Otherwise each word's pieces are scored like an MC option.

**Causal LMs** rank candidates by log-likelihood. Each candidate (the four animal options; ``higher``
/ ``lower``) is written into the ``[MASK]``. Its score is log p(candidate *and the rest of the
sentence* | the words before it), summed over tokens, or averaged with ``length_norm``.
Why not the whole sentence: the words before the candidate are the same for every candidate, so
for sums the ranking is the same, and for averages it would only dilute the part that differs. Why
not only the candidate's tokens: in "[MASK] make a chirp sound." nothing before the mask mentions the
sound, so the evidence is in the words after the candidate. The open-vocabulary exact match is
not defined upstream for causal LMs, so causal LMs report ``mc_acc`` for animal (and need
``fmt="mc"``).

Inputs longer than the model's positions (only the tiny test models, 64 positions) are cropped to
a window that keeps every scored token: around the masks for masked LMs, or the last tokens for
causal LMs. Such items are counted in ``n_cropped``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from ausweep.benchmarks import metrics as M
from ausweep.benchmarks.auditorybench import PITCH_OPTIONS, Item
from ausweep.benchmarks.loglik import crop_candidate, length_batches, pad_sequences, score_continuations
from ausweep.models.heads import LMWithHead

# ----------------------------------------------------------------------------- public API


def evaluate(
    lm: LMWithHead,
    items: Sequence[Item],
    batch_size: int = 16,
    length_norm: bool = False,
    lowercase: bool = True,
    progress: bool = False,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Score ``items`` (all of one task) with ``lm``: ``(metrics, one prediction row per item)``.

    Metric keys have no task/split prefix: ``exact_match`` (masked LMs, animal), ``mc_acc``
    (animal with options), ``acc`` (pitch), ``n`` and ``n_cropped``. ``lowercase`` applies to
    masked LMs only, as in upstream.
    """
    items = list(items)
    if not items:
        return {"n": 0.0}, []
    tasks = {it.task for it in items}
    if len(tasks) != 1:
        raise ValueError(f"evaluate() takes items of one task, got {sorted(tasks)}")
    task = tasks.pop()
    if lm.kind == "mlm":
        rows, n_cropped = _mlm(lm, items, batch_size, length_norm, lowercase, progress)
    elif lm.kind == "causal":
        if task == "animal" and not all(it.options for it in items):
            raise ValueError(
                "causal LMs answer the animal task only as multiple choice (upstream defines no open-vocabulary "
                "exact match for them): load it with fmt='mc', or leave out the animal task"
            )
        rows, n_cropped = _causal(lm, items, batch_size, length_norm, progress)
    else:
        raise ValueError(f"unknown LM kind {lm.kind!r}")
    out: dict[str, float] = {}
    if task == "animal":
        if lm.kind == "mlm":
            out["exact_match"] = M.accuracy(r["exact_match"] for r in rows)
        if all(it.options for it in items):
            out["mc_acc"] = M.accuracy(r["mc_correct"] for r in rows)
    else:
        out["acc"] = M.accuracy(r["correct"] for r in rows)
    out["n"] = float(len(rows))
    out["n_cropped"] = float(n_cropped)
    return out, rows


def candidates(item: Item) -> tuple[str, ...]:
    """What is ranked for ``item``: the MC options (animal) or ``("higher", "lower")`` (pitch)."""
    return PITCH_OPTIONS if item.task == "pitch" else item.options


# ----------------------------------------------------------------------------- masked LMs


def _crop_masked(mi: M.MaskedInput, limit: int | None) -> tuple[M.MaskedInput, bool]:
    n = len(mi.input_ids)
    if limit is None or n <= limit:
        return mi, False
    lo, hi = min(mi.positions), max(mi.positions)
    if hi - lo + 1 > limit:
        raise ValueError(f"the answer's {hi - lo + 1} tokens do not fit in {limit} positions")
    # a window [a, a + limit) centred on the masks, inside the input, holding every mask
    a = min(max((lo + hi) // 2 - limit // 2, max(0, hi - limit + 1)), min(n - limit, lo))
    return M.MaskedInput(mi.input_ids[a : a + limit], tuple(p - a for p in mi.positions), mi.targets), True


def _mlm(lm: LMWithHead, items: list[Item], batch_size: int, length_norm: bool, lowercase: bool, progress: bool):
    tok = lm.tokenizer
    # One forward per distinct masked input: for BERT every option with the same piece count
    # shares one (the masks hide what differs), and the gold answer is one of the options.
    unique: dict[tuple, int] = {}
    inputs: list[M.MaskedInput] = []
    wanted: dict[int, set[tuple[int, ...]]] = defaultdict(set)
    cropped: set[int] = set()

    def request(i: int, sentence: str, text: str) -> tuple[int, tuple[int, ...]]:
        mi, was_cropped = _crop_masked(M.build_masked_input(tok, sentence, text, lowercase), lm.max_length)
        if was_cropped:
            cropped.add(i)
        key = (mi.input_ids, mi.positions)
        if key not in unique:
            unique[key] = len(inputs)
            inputs.append(mi)
        u = unique[key]
        wanted[u].add(mi.targets)
        return u, mi.targets

    plans = []
    for i, it in enumerate(items):
        gold = request(i, it.sentence, it.answer) if it.task == "animal" else None
        cands = [request(i, it.sentence, c) for c in candidates(it)]
        plans.append((gold, cands))

    argmax, scores = _run_masked(lm, inputs, wanted, batch_size, length_norm, progress)
    rows = []
    for it, (gold, cands) in zip(items, plans):
        cand_scores = [scores[u][t] for u, t in cands]
        row: dict[str, Any] = {"index": it.index, "sentence": it.sentence, "answer": it.answer}
        if it.task == "animal":
            u, t = gold
            pred = argmax[u]
            row["exact_prediction"] = tok.decode(pred).strip()
            row["exact_match"] = int(M.exact_match(pred, t))
            row["n_pieces"] = len(t)
            _add_choice(row, it, cand_scores)
        else:
            _add_pitch(row, it, cand_scores)
        row["flags"] = " ".join(it.flags)
        rows.append(row)
    return rows, len(cropped)


def _run_masked(lm: LMWithHead, inputs: list[M.MaskedInput], wanted, batch_size: int, length_norm: bool, progress: bool):
    import torch

    argmax: list[list[int]] = [[] for _ in inputs]
    scores: list[dict[tuple[int, ...], float]] = [{} for _ in inputs]
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    for batch in length_batches(range(len(inputs)), key=lambda u: len(inputs[u].input_ids), size=batch_size,
                          progress=progress, desc=f"{lm.name} fill-mask"):
        ids, attn = pad_sequences([inputs[u].input_ids for u in batch], pad)
        with torch.no_grad():
            logits = lm.model(input_ids=ids.to(lm.device), attention_mask=attn.to(lm.device)).logits  # (b, T, V)
        for b, u in enumerate(batch):
            mi = inputs[u]
            lg = logits[b, list(mi.positions)].float()  # (k, V)
            argmax[u] = M.mask_predictions(lg, range(len(mi.positions)))
            for t in wanted[u]:
                scores[u][t] = M.masked_logprob(lg, range(len(mi.positions)), t, mean=length_norm)
    return argmax, scores


# ----------------------------------------------------------------------------- causal LMs


def _causal(lm: LMWithHead, items: list[Item], batch_size: int, length_norm: bool, progress: bool):
    tok = lm.tokenizer
    reqs: list[tuple[int, int, M.CandidateInput]] = []
    cropped: set[int] = set()
    for i, it in enumerate(items):
        for j, c in enumerate(candidates(it)):
            ci, was_cropped = crop_candidate(M.build_candidate_input(tok, it.sentence, c), lm.max_length)
            if was_cropped:
                cropped.add(i)
            reqs.append((i, j, ci))
    values = score_continuations(lm, [ci for _, _, ci in reqs], batch_size, length_norm, progress, f"{lm.name} log-likelihood")
    scores = {(i, j): v for (i, j, _), v in zip(reqs, values)}
    rows = []
    for i, it in enumerate(items):
        cand_scores = [scores[(i, j)] for j in range(len(candidates(it)))]
        row: dict[str, Any] = {"index": it.index, "sentence": it.sentence, "answer": it.answer}
        if it.task == "animal":
            _add_choice(row, it, cand_scores)
        else:
            _add_pitch(row, it, cand_scores)
        row["flags"] = " ".join(it.flags)
        rows.append(row)
    return rows, len(cropped)


# ----------------------------------------------------------------------------- shared


def _add_pitch(row: dict[str, Any], it: Item, cand_scores: list[float]) -> None:
    """Pitch columns of a prediction row: the choice between the "higher" and "lower" scores."""
    pred = M.choose_pitch(cand_scores[0], cand_scores[1])
    row.update(prediction=pred, correct=int(pred == it.answer), score_higher=cand_scores[0], score_lower=cand_scores[1])


def _add_choice(row: dict[str, Any], it: Item, scores: list[float]) -> None:
    if not it.options:
        return
    k = M.argmax_choice(scores)
    row.update(
        mc_prediction=it.options[k], mc_gold=it.options[it.answer_option],
        mc_correct=int(k == it.answer_option),
        mc_letter_gold=it.options[it.letter_option] if it.letter_option is not None else "",
        mc_scores=" ".join(f"{s:.4f}" if math.isfinite(s) else str(s) for s in scores),
    )
