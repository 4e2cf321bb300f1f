"""The auditory span detector: token classification on a BERT encoder.

AudioBERT first has to find *where* a sentence talks about a sound ("the dog's *woof* ...",
"the *sound of a flute* is [MASK] than ..."): that span's text is what retrieves audio, and its
first token is where the audio embedding is injected. Training data are (sentence, span strings)
pairs, as AuditoryBench gives them (the ``description``/``span`` or ``span1``/``span2`` columns).

Tag scheme: **BIO** by default (O = 0, B = 1, I = 2): B marks exactly the token AudioBERT writes the
audio over, and two adjacent spans ("a bark and a meow" tagged token by token) stay two spans.
``scheme="binary"`` (O = 0, AUD = 1) is what upstream AudioBERT trains (``num_labels=2``); adjacent
spans then merge. Every word-piece of a span is tagged (B on the first piece only); special and
padding tokens get -100 and carry no loss.

Span strings are located in their sentence case-insensitively, preferring a whole-word match over
a match inside a longer word; a sentence's spans must not overlap (a repeated span string finds
its next occurrence). Spans that cannot be placed (empty, absent, overlapping, or truncated away)
are skipped *and reported*: returned in ``missing`` and announced with a warning.

Metrics: token precision / recall / F1 of "is this token auditory" (B or I vs O) over the real
tokens, and exact-match span precision / recall / F1 over character spans (a predicted span counts
only if both its ends equal a gold span's). Gold spans are compared as the tokenizer can express
them: the located span widened to whole tokens, so a detector is not penalised for word-piece
boundaries it cannot see. Empty denominators give 0 (as seqeval / scikit-learn with zero_division=0).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ausweep.audiobert.config import TrainConfig
from ausweep.audiobert.train import IGNORE_INDEX, TrainResult, fit

Span = tuple[int, int]  # character offsets [start, end) in the sentence

SCHEMES: dict[str, tuple[str, ...]] = {"bio": ("O", "B", "I"), "binary": ("O", "AUD")}
O, B, I = 0, 1, 2  # noqa: E741 -- the BIO tag names; in the binary scheme AUD = 1


# ----------------------------------------------------------------------------- labels


def locate_spans(sentence: str, spans: Sequence[str]) -> tuple[list[Span], list[tuple[str, str]]]:
    """Character positions of ``spans`` in ``sentence``.

    Each span string is matched case-insensitively (surrounding whitespace ignored), preferring a
    whole-word occurrence, and never overlapping a span already placed. Returns ``(found, missing)``:
    ``found`` sorted by start; ``missing`` as ``(span, reason)`` pairs.
    """
    found: list[Span] = []
    missing: list[tuple[str, str]] = []
    for span in spans:
        text = "" if span is None else str(span).strip()
        if not text:
            missing.append((str(span), "empty span"))
            continue
        place = None
        for pattern in (rf"(?<!\w){re.escape(text)}(?!\w)", re.escape(text)):
            for m in re.finditer(pattern, sentence, flags=re.IGNORECASE):
                if all(m.end() <= s or m.start() >= e for s, e in found):
                    place = (m.start(), m.end())
                    break
            if place:
                break
        if place is None:
            in_text = re.search(re.escape(text), sentence, flags=re.IGNORECASE)
            missing.append((text, "overlaps another span" if in_text else "not in the sentence"))
        else:
            found.append(place)
    return sorted(found), missing


def token_tags(offsets: Sequence[Span], special: Sequence[int], spans: Sequence[Span], scheme: str = "bio") -> list[int]:
    """Tag ids for one tokenised sentence: tokens overlapping a span get B/I (or AUD), others O,
    special and padding tokens -100."""
    tags = []
    for (a, b), is_special in zip(offsets, special):
        if is_special or b <= a:
            tags.append(IGNORE_INDEX)
        else:
            tags.append(O)
    for s, e in spans:
        first = True
        for i, (a, b) in enumerate(offsets):
            if tags[i] != IGNORE_INDEX and a < e and b > s:
                tags[i] = (B if first else I) if scheme == "bio" else 1
                first = False
    return tags


def decode_tags(tags: Sequence[int], offsets: Sequence[Span], scheme: str = "bio") -> list[Span]:
    """Character spans from one sentence's tag ids (-100 = skip: special / padding tokens).

    BIO: B opens a span, I continues it (an I after O opens one too, leniently); binary: runs of AUD.
    A span runs from its first token's start to its last token's end.
    """
    spans: list[Span] = []
    cur: list[int] | None = None
    for tag, (a, b) in zip(tags, offsets):
        if tag == IGNORE_INDEX:
            continue
        inside = tag != O
        starts = inside and (cur is None or (scheme == "bio" and tag == B))
        if not inside or starts:
            if cur is not None:
                spans.append((cur[0], cur[1]))
            cur = [a, b] if starts else None
        else:
            cur[1] = b
    if cur is not None:
        spans.append((cur[0], cur[1]))
    return spans


@dataclass
class SpanEncoding:
    """Tokenised sentences with tags. ``input_ids``, ``attention_mask``, ``labels``: (N, T);
    ``offsets``: per sentence, per token (start, end); ``missing``: (sentence index, span, reason)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    offsets: list[list[Span]]
    missing: list[tuple[int, str, str]]

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask, "labels": self.labels}


def encode_spans(
    tokenizer: Any,
    sentences: Sequence[str],
    spans: Sequence[Sequence[str]] | None = None,
    scheme: str = "bio",
    max_length: int = 128,
    warn: bool = True,
) -> SpanEncoding:
    """Tokenise ``sentences`` (a fast tokenizer: offsets are needed) and tag the located ``spans``.

    ``spans[i]`` lists sentence i's span strings (may be empty). Without ``spans`` all tags are O
    (for prediction). Spans that cannot be placed, or that fall wholly past ``max_length`` tokens,
    go to ``missing`` and, with ``warn``, into one warning.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {list(SCHEMES)}, got {scheme!r}")
    if spans is not None and len(spans) != len(sentences):
        raise ValueError(f"{len(sentences)} sentences but {len(spans)} span lists")
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("the span detector needs a fast tokenizer (character offsets)")
    enc = tokenizer(
        list(sentences), padding=True, truncation=True, max_length=max_length,
        return_offsets_mapping=True, return_special_tokens_mask=True, return_tensors="pt",
    )
    offsets = [[(int(a), int(b)) for a, b in off] for off in enc["offset_mapping"].tolist()]
    special = enc["special_tokens_mask"].tolist()
    labels, missing = [], []
    for i, sentence in enumerate(sentences):
        found, lost = locate_spans(sentence, spans[i] if spans is not None else [])
        missing += [(i, s, why) for s, why in lost]
        tags = token_tags(offsets[i], special[i], found, scheme)
        for s, e in found:
            if not any(t != IGNORE_INDEX and a < e and b > s for t, (a, b) in zip(tags, offsets[i])):
                missing.append((i, sentence[s:e], f"truncated (past max_length={max_length} tokens)"))
        labels.append(tags)
    if missing and warn:
        shown = "; ".join(f"#{i} {s!r}: {why}" for i, s, why in missing[:5])
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        warnings.warn(f"{len(missing)} span(s) could not be placed and were skipped: {shown}{more}", stacklevel=2)
    return SpanEncoding(enc["input_ids"], enc["attention_mask"], torch.tensor(labels), offsets, missing)


# ----------------------------------------------------------------------------- metrics


def _prf(tp: int, n_pred: int, n_gold: int) -> dict[str, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def token_prf(gold: Sequence[Sequence[int]], pred: Sequence[Sequence[int]]) -> dict[str, float]:
    """Precision / recall / F1 of "auditory token" (tag != O) over positions where gold != -100."""
    tp = n_pred = n_gold = 0
    for g_row, p_row in zip(gold, pred, strict=True):
        for g, p in zip(g_row, p_row, strict=True):
            if g == IGNORE_INDEX:
                continue
            tp += int(g != O and p != O)
            n_pred += int(p != O)
            n_gold += int(g != O)
    return _prf(tp, n_pred, n_gold)


def span_prf(gold: Sequence[Sequence[Span]], pred: Sequence[Sequence[Span]]) -> dict[str, float]:
    """Exact-match precision / recall / F1 over character spans, pooled over sentences."""
    tp = n_pred = n_gold = 0
    for g, p in zip(gold, pred, strict=True):
        g, p = {tuple(x) for x in g}, {tuple(x) for x in p}
        tp += len(g & p)
        n_pred += len(p)
        n_gold += len(g)
    return _prf(tp, n_pred, n_gold)


# ----------------------------------------------------------------------------- the detector


class SpanDetector:
    """A token classifier that tags auditory spans.

    Args:
        model: a token-classification model (``AutoModelForTokenClassification``) with
            ``num_labels == len(SCHEMES[scheme])``.
        tokenizer: its fast tokenizer.
        scheme: ``"bio"`` or ``"binary"`` (see the module docstring).
        max_length: tokens per sentence (longer sentences are truncated).
        device: where the model runs.
    """

    def __init__(self, model: Any, tokenizer: Any, scheme: str = "bio", max_length: int = 128, device: str = "cpu"):
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {list(SCHEMES)}, got {scheme!r}")
        n = len(SCHEMES[scheme])
        if int(model.config.num_labels) != n:
            raise ValueError(f"scheme {scheme!r} has {n} tags but the model has num_labels={model.config.num_labels}")
        self.model, self.tokenizer, self.scheme = model.to(device), tokenizer, scheme
        self.max_length, self.device = max_length, device

    @classmethod
    def from_pretrained(cls, name_or_path: str = "bert-base-uncased", scheme: str = "bio", device: str = "cpu",
                        revision: str | None = None, **kw: Any) -> SpanDetector:
        """A detector on a pretrained encoder (hub id or local folder); the tag head starts random
        unless the checkpoint is already a detector with matching labels."""
        from transformers import AutoModelForTokenClassification, AutoTokenizer

        from ausweep.models.text import hub_errors

        tags = SCHEMES[scheme]
        with hub_errors(name_or_path, revision):
            tokenizer = AutoTokenizer.from_pretrained(name_or_path, revision=revision)
            model = AutoModelForTokenClassification.from_pretrained(
                name_or_path, revision=revision, num_labels=len(tags),
                id2label=dict(enumerate(tags)), label2id={t: i for i, t in enumerate(tags)},
            )
        return cls(model, tokenizer, scheme=scheme, device=device, **kw)

    @classmethod
    def tiny(cls, scheme: str = "bio", seed: int = 0, **kw: Any) -> SpanDetector:
        """A detector on the tiny random BERT of :mod:`ausweep.models.tiny` (tests, smoke runs)."""
        from transformers import AutoModelForTokenClassification

        from ausweep.models.tiny import TINY_TEXT, tiny_text_config, tiny_tokenizer

        tags = SCHEMES[scheme]
        tokenizer = tiny_tokenizer(TINY_TEXT["tiny-bert"]["tokenizer"])
        config = tiny_text_config("tiny-bert", tokenizer)
        # len(tokenizer) undercounts when the tiny vocabulary lists a token twice ("a" is both a
        # letter and a word there, leaving a gap), so size the embeddings by the largest id.
        config.vocab_size = max(len(tokenizer), max(tokenizer.get_vocab().values()) + 1)
        config.num_labels = len(tags)
        config.id2label, config.label2id = dict(enumerate(tags)), {t: i for i, t in enumerate(tags)}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AutoModelForTokenClassification.from_config(config)
        return cls(model, tokenizer, scheme=scheme, **kw)

    # ------------------------------------------------------------------ data

    def encode(self, sentences: Sequence[str], spans: Sequence[Sequence[str]] | None = None, warn: bool = True) -> SpanEncoding:
        """:func:`encode_spans` with this detector's tokenizer, scheme and ``max_length``."""
        return encode_spans(self.tokenizer, sentences, spans, self.scheme, self.max_length, warn=warn)

    # ------------------------------------------------------------------ training

    def fit(
        self,
        sentences: Sequence[str],
        spans: Sequence[Sequence[str]],
        cfg: TrainConfig | None = None,
        dev_sentences: Sequence[str] | None = None,
        dev_spans: Sequence[Sequence[str]] | None = None,
    ) -> TrainResult:
        """Fine-tune the whole encoder and tag head (upstream: 5 epochs, lr 1e-5, batch 16).

        With a dev set, the epoch with the best exact-span F1 (``dev_span_f1``) is kept.
        """
        cfg = cfg or TrainConfig(lr=1e-5, epochs=5, batch_size=16, warmup_ratio=0.0, device=self.device)
        train = self.encode(sentences, spans)
        eval_fn = None
        if dev_sentences is not None:
            dev = self.encode(dev_sentences, dev_spans, warn=False)

            def eval_fn(_model: Any) -> dict[str, float]:
                return self._score(dev, self._predict_tags(dev))

        for p in self.model.parameters():
            p.requires_grad_(True)
        result = fit(self.model, train.tensors(), cfg, eval_fn=eval_fn, metric="span_f1")
        self.model.to(self.device)
        return result

    # ------------------------------------------------------------------ prediction

    @torch.no_grad()
    def _predict_tags(self, enc: SpanEncoding, batch_size: int = 64) -> list[list[int]]:
        """Argmax tags (N, T) with -100 where the encoding has -100 (special / padding tokens)."""
        was_training = self.model.training
        self.model.eval()
        device = next(self.model.parameters()).device
        rows = []
        try:
            for start in range(0, len(enc.input_ids), batch_size):
                ids = enc.input_ids[start : start + batch_size].to(device)
                mask = enc.attention_mask[start : start + batch_size].to(device)
                rows.append(self.model(input_ids=ids, attention_mask=mask).logits.argmax(-1).cpu())
        finally:
            self.model.train(was_training)
        tags = torch.cat(rows) if rows else enc.labels.clone()
        tags[enc.labels == IGNORE_INDEX] = IGNORE_INDEX
        return tags.tolist()

    def predict_spans(self, sentences: Sequence[str], batch_size: int = 64) -> list[list[Span]]:
        """Per sentence, the detected auditory spans as character ``(start, end)`` pairs."""
        if not sentences:
            return []
        enc = self.encode(sentences, None, warn=False)
        tags = self._predict_tags(enc, batch_size)
        return [decode_tags(t, off, self.scheme) for t, off in zip(tags, enc.offsets)]

    def _score(self, enc: SpanEncoding, pred_tags: list[list[int]]) -> dict[str, float]:
        gold_tags = enc.labels.tolist()
        gold = [decode_tags(t, off, self.scheme) for t, off in zip(gold_tags, enc.offsets)]
        pred = [decode_tags(t, off, self.scheme) for t, off in zip(pred_tags, enc.offsets)]
        tok, spn = token_prf(gold_tags, pred_tags), span_prf(gold, pred)
        return {**{f"token_{k}": v for k, v in tok.items()}, **{f"span_{k}": v for k, v in spn.items()},
                "n_missing": float(len(enc.missing))}

    def evaluate(self, sentences: Sequence[str], spans: Sequence[Sequence[str]]) -> dict[str, float]:
        """``token_precision/recall/f1``, ``span_precision/recall/f1`` and ``n_missing`` (gold spans
        that could not be placed, which are left out of the gold set)."""
        enc = self.encode(sentences, spans)
        return self._score(enc, self._predict_tags(enc))
