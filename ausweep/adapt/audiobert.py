"""AudioBERT (Ok, Yoo & Lee, ICASSP 2025): a masked LM that reads an audio embedding at the auditory span.

Given a sentence such as "a [MASK] says woof", the span detector finds the auditory span ("woof"),
CLAP retrieval turns it into an audio clip embedding, and this model

1. maps the audio embedding (B, d_audio) to the LM's hidden size with a learned linear projection;
2. writes the projected vector over the *word* embedding of the span's first token (the position,
   token-type embeddings and LayerNorm are then applied by BERT as usual), via ``inputs_embeds``;
3. runs the masked LM with LoRA adapters on the attention projections -- but only for sentences
   that have an auditory span. Sentences without one go through the untouched pretrained model.

Why gate by running two groups rather than, say, zeroing the LoRA output per row: with the adapters
disabled (``PeftModel.disable_adapter()``), the no-span rows are computed by exactly the pretrained
weights, so AudioBERT is *guaranteed* to leave text without auditory content as the pretrained model
had it (the property the paper relies on for general-text performance), bit for bit, whatever the
adapters learn. Splitting the batch costs at most two forward passes of smaller groups; the rows are
scattered back into their original order. Rows without a span contribute no gradient (nothing
trainable is on their path).

Only the LoRA matrices and the projection train; the LM (incl. its tied MLM head) stays frozen.

Two deliberate differences from the upstream code (github.com/HJ-Ok/AudioBERT, ``AK_BERT``), which
(a) uses AST's mean-pooled 768-d output directly (no projection, so it needs d_audio == hidden) and
(b) keeps LoRA on for every row, and (c) overwrites the *output* of ``bert.embeddings`` (after
position embeddings and LayerNorm) and then feeds that back in as ``inputs_embeds``, so positions
are added twice. Here the projection makes any audio encoder usable, gating follows the paper's
description, and the audio vector replaces only the word embedding.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ausweep.adapt.config import AudioBertConfig
from ausweep.adapt.train import IGNORE_INDEX

NO_SPAN = -1  # span_first_token value of a sentence without an auditory span


def lora_param_formula(hidden: int, n_layers: int, r: int, targets: Sequence[str]) -> int:
    """LoRA parameters on BERT's square attention projections: ``n_layers * len(targets) * r * 2 * hidden``.

    Each adapted ``Linear(hidden, hidden)`` gets A (r x hidden) and B (hidden x r), no bias.
    """
    return n_layers * len(targets) * r * (hidden + hidden)


def projection_param_formula(d_audio: int, hidden: int) -> int:
    """Parameters of the audio projection ``Linear(d_audio, hidden)``: weight plus bias."""
    return d_audio * hidden + hidden


class AudioBert(nn.Module):
    """A ``BertForMaskedLM`` (or any masked LM with a word-embedding layer) with audio injection
    and span-gated LoRA.

    Args:
        mlm: the pretrained masked LM. It is wrapped **in place** by PEFT (its attention layers get
            LoRA modules and its weights are frozen); pass a copy if you need the original.
        cfg: LoRA settings, ``d_audio`` and the seed of the new weights.

    Attributes:
        lm: the ``peft.PeftModel`` around ``mlm``.
        audio_proj: ``Linear(d_audio, hidden)``.
    """

    def __init__(self, mlm: nn.Module, cfg: AudioBertConfig | None = None):
        super().__init__()
        from peft import LoraConfig, get_peft_model

        cfg = cfg or AudioBertConfig()
        self.cfg = cfg
        self.hidden_size = int(mlm.config.hidden_size)
        self.n_layers = int(mlm.config.num_hidden_layers)
        lora = LoraConfig(
            r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
            target_modules=list(cfg.target_modules), bias="none",
        )
        # Seed the new weights (LoRA A, the projection) so a config gives one model in every process.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5
                warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
                self.lm = get_peft_model(mlm, lora)
            self.audio_proj = nn.Linear(cfg.d_audio, self.hidden_size)
        for name, p in self.lm.named_parameters():  # PEFT froze the base already; make sure of it
            p.requires_grad_("lora_" in name)

    # ------------------------------------------------------------------ parameters

    def trainable_parameter_count(self) -> int:
        """Parameters that train: the LoRA matrices plus the audio projection."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def lora_parameter_count(self) -> int:
        return sum(p.numel() for n, p in self.lm.named_parameters() if p.requires_grad and "lora_" in n)

    # ------------------------------------------------------------------ forward

    @property
    def word_embeddings(self) -> nn.Embedding:
        return self.lm.get_input_embeddings()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        span_first_token: torch.Tensor,
        audio_embedding: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Masked-LM logits.

        Args:
            input_ids: (B, T) int64 token ids (with ``[MASK]`` where the answer goes).
            attention_mask: (B, T) 0/1.
            span_first_token: (B,) int64, index in ``[0, T)`` of the first token of the detected
                auditory span, or -1 (:data:`NO_SPAN`) for a sentence without one.
            audio_embedding: (B, d_audio) float; ignored (conventionally zeros) where there is no span.
            token_type_ids: optional (B, T).

        Returns:
            (B, T, vocab) logits. Rows without a span are exactly the pretrained model's logits.
        """
        B, T = input_ids.shape
        if span_first_token.shape != (B,):
            raise ValueError(f"span_first_token must have shape ({B},), got {tuple(span_first_token.shape)}")
        if audio_embedding.shape != (B, self.cfg.d_audio):
            raise ValueError(
                f"audio_embedding must have shape ({B}, {self.cfg.d_audio}), got {tuple(audio_embedding.shape)}"
            )
        if bool(((span_first_token < NO_SPAN) | (span_first_token >= T)).any()):
            raise ValueError(f"span_first_token must be -1 or in [0, {T}), got {span_first_token.tolist()}")

        has_span = span_first_token >= 0  # (B,)
        with_rows = has_span.nonzero().squeeze(1)  # (b1,)
        without_rows = (~has_span).nonzero().squeeze(1)  # (b0,)

        def extra(rows: torch.Tensor) -> dict[str, torch.Tensor]:
            return {} if token_type_ids is None else {"token_type_ids": token_type_ids[rows]}

        parts: list[tuple[torch.Tensor, torch.Tensor]] = []
        if len(with_rows):
            ids = input_ids[with_rows]  # (b1, T)
            embeds = self.word_embeddings(ids)  # (b1, T, H)
            audio = self.audio_proj(audio_embedding[with_rows].to(self.audio_proj.weight.dtype))  # (b1, H)
            at = (torch.arange(len(with_rows), device=ids.device), span_first_token[with_rows])
            embeds = embeds.index_put(at, audio.to(embeds.dtype))  # out of place: keeps autograd simple
            out = self.lm(inputs_embeds=embeds, attention_mask=attention_mask[with_rows], **extra(with_rows))
            parts.append((with_rows, out.logits))
        if len(without_rows):
            with self.lm.disable_adapter():
                out = self.lm(
                    input_ids=input_ids[without_rows], attention_mask=attention_mask[without_rows],
                    **extra(without_rows),
                )
            parts.append((without_rows, out.logits))

        if len(parts) == 1:
            return parts[0][1]
        first = parts[0][1]
        logits = first.new_empty((B,) + tuple(first.shape[1:]))
        for rows, part in parts:
            logits = logits.index_copy(0, rows, part.to(logits.dtype))
        return logits


# ----------------------------------------------------------------------------- encoding


def first_token_of_span(offsets: Sequence[tuple[int, int]], span: tuple[int, int] | None,
                        special: Sequence[int] | None = None) -> int:
    """Index of the first token whose character offsets overlap ``span = (start, end)``; -1 if none.

    ``offsets`` is one sentence's ``offset_mapping``; tokens flagged in ``special`` (1 = special
    token, e.g. [CLS] with offsets (0, 0)) never match.
    """
    if span is None:
        return NO_SPAN
    s, e = span
    for i, (a, b) in enumerate(offsets):
        if special is not None and special[i]:
            continue
        if b > a and a < e and b > s:
            return i
    return NO_SPAN


def encode_masked(
    tokenizer: Any,
    sentences: Sequence[str],
    spans: Sequence[tuple[int, int] | None],
    answers: Sequence[str] | None = None,
    max_length: int = 128,
) -> dict[str, torch.Tensor]:
    """Tokenise masked sentences for :class:`AudioBert` (and build MLM labels from ``answers``).

    Each sentence holds one ``tokenizer.mask_token`` (``[MASK]``). With ``answers``, the mask is
    widened to as many mask tokens as the answer has word-pieces ("sea lion" -> two), and ``labels``
    holds the answer's ids there (-100 elsewhere). ``spans`` are character spans of the auditory
    span in the *given* sentence (e.g. from the span detector), or None; they are shifted when the
    mask before them is widened.

    Returns:
        ``input_ids`` (N, T), ``attention_mask`` (N, T), ``span_first_token`` (N,) (-1 where the span
        is None or was truncated away) and, with answers, ``labels`` (N, T).
    """
    if len(spans) != len(sentences) or (answers is not None and len(answers) != len(sentences)):
        raise ValueError("sentences, spans and answers must have the same length")
    mask = tokenizer.mask_token
    texts, new_spans, answer_ids = [], [], []
    for i, (text, span) in enumerate(zip(sentences, spans)):
        where = [m.start() for m in re.finditer(re.escape(mask), text)]
        if len(where) != 1:
            raise ValueError(f"sentence {i} must contain exactly one {mask}, found {len(where)}: {text!r}")
        if answers is not None:
            ids = tokenizer(answers[i], add_special_tokens=False)["input_ids"]
            if not ids:
                raise ValueError(f"answer {i} ({answers[i]!r}) tokenises to nothing")
            widened = " ".join([mask] * len(ids))
            shift = len(widened) - len(mask)
            text = text[: where[0]] + widened + text[where[0] + len(mask) :]
            if span is not None and span[0] >= where[0] + len(mask):
                span = (span[0] + shift, span[1] + shift)
            answer_ids.append(ids)
        texts.append(text)
        new_spans.append(span)

    enc = tokenizer(
        texts, padding=True, truncation=True, max_length=max_length, return_offsets_mapping=True,
        return_special_tokens_mask=True, return_tensors="pt",
    )
    first = [
        first_token_of_span(off.tolist(), span, spec.tolist())
        for off, span, spec in zip(enc["offset_mapping"], new_spans, enc["special_tokens_mask"])
    ]
    out = {
        "input_ids": enc["input_ids"],
        "attention_mask": enc["attention_mask"],
        "span_first_token": torch.tensor(first, dtype=torch.long),
    }
    if answers is not None:
        labels = torch.full_like(enc["input_ids"], IGNORE_INDEX)
        for i, ids in enumerate(answer_ids):
            pos = (enc["input_ids"][i] == tokenizer.mask_token_id).nonzero().squeeze(1)
            if len(pos) != len(ids):
                raise ValueError(f"sentence {i}: the masks were truncated away (max_length={max_length})")
            labels[i, pos] = torch.tensor(ids)
        out["labels"] = labels
    return out
