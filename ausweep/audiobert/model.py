"""AudioBERT (Ok, Yoo & Lee, ICASSP 2025): a masked LM that reads an audio embedding at each auditory span.

Given a sentence such as "a [MASK] says woof", the span detector finds the auditory spans ("woof";
"a flute has a [MASK] pitch than a tuba" has two), CLAP retrieval turns each into an audio clip
embedding, and this model

1. maps each audio embedding (d_audio) to the LM's hidden size with one learned linear projection;
2. writes each projected vector over the *word* embedding of its span's first token (the position,
   token-type embeddings and LayerNorm are then applied by BERT as usual), via ``inputs_embeds``;
3. runs the masked LM with LoRA adapters on the attention projections -- but only for sentences
   that have at least one auditory span. Sentences without one go through the untouched
   pretrained model.

Why gate by running two groups rather than, say, zeroing the LoRA output per row: with the adapters
disabled (``PeftModel.disable_adapter()``), the no-span rows are computed by exactly the pretrained
weights, so AudioBERT is *guaranteed* to leave text without auditory content as the pretrained model
had it (the property the paper relies on for general-text performance), bit for bit, whatever the
adapters learn. Splitting the batch costs at most two forward passes of smaller groups; the rows are
scattered back into their original order. Rows without a span contribute no gradient (nothing
trainable is on their path).

Only the LoRA matrices and the projection train; the LM (incl. its tied MLM head) stays frozen.

With ``audio_source="ast"`` (upstream's code) the vector written at a span is not a cached embedding
but an AST's last hidden states, averaged over all its tokens, computed from the retrieved clip's
audio features in the forward pass; the AST then trains with LoRA (its parameters require grad, so
the training loop's optimiser holds them). The features of the clips retrieved for a data set are
kept in one bank (:meth:`AudioBert.set_audio_bank`, (U, frames, mels)) and rows name theirs by index
(``audio_clip``), so a batch never copies a spectrogram per sentence.

Differences from the upstream code (github.com/HJ-Ok/AudioBERT, ``AK_BERT``), which (a) uses AST's
mean-pooled 768-d output directly (no projection, so it needs d_audio == hidden; here that is
``audio_source="ast"``, while the default injects the retrieved clip's frozen CLAP embedding through
a projection, as the paper describes), (b) keeps LoRA on for every row, and (c) overwrites the
*output* of ``bert.embeddings`` (after position embeddings and LayerNorm) and then feeds that back
in as ``inputs_embeds``, so positions are added twice. Here gating follows the paper's description,
and the audio vector replaces only the word embedding. (Upstream's animal-task code writes a
variable it never defines, ``expanded_mean_audio_embs_1``; its pitch-task code defines it, and the
AST path here follows that.)
"""

from __future__ import annotations

import numbers
import re
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ausweep.audiobert.config import AudioBertConfig
from ausweep.audiobert.train import IGNORE_INDEX

NO_SPAN = -1  # span_first_token value of an absent span (no span, padding, or truncated away)
Span = tuple[int, int]  # character (start, end) of an auditory span in its sentence


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

        audio_encoder: with ``cfg.audio_source == "ast"``, the AST (a transformers ``ASTModel``, or
            any module called as ``audio_encoder(input_values=(n, frames, mels))`` that returns
            ``last_hidden_state`` (n, tokens, d_audio)); it trains jointly. None otherwise.

    Attributes:
        lm: the ``peft.PeftModel`` around ``mlm``.
        audio_proj: ``Linear(d_audio, hidden)``; with the AST and ``d_audio == hidden``, ``Identity``.
        audio_encoder: the AST, or None.
    """

    def __init__(self, mlm: nn.Module, cfg: AudioBertConfig | None = None, audio_encoder: nn.Module | None = None):
        super().__init__()
        from peft import LoraConfig, get_peft_model

        cfg = cfg or AudioBertConfig()
        self.cfg = cfg
        self.hidden_size = int(mlm.config.hidden_size)
        self.n_layers = int(mlm.config.num_hidden_layers)
        if (cfg.audio_source == "ast") != (audio_encoder is not None):
            raise ValueError(f"audio_source={cfg.audio_source!r} " + (
                "needs the AST as audio_encoder" if audio_encoder is None else "takes no audio_encoder"))
        if audio_encoder is not None:
            width = getattr(getattr(audio_encoder, "config", None), "hidden_size", cfg.d_audio)
            if int(width) != cfg.d_audio:
                raise ValueError(f"d_audio={cfg.d_audio} but the audio encoder is {width} wide")
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
            if audio_encoder is not None and cfg.d_audio == self.hidden_size:
                self.audio_proj: nn.Module = nn.Identity()  # upstream writes the AST mean as is
            else:
                self.audio_proj = nn.Linear(cfg.d_audio, self.hidden_size)
        for name, p in self.lm.named_parameters():  # PEFT froze the base already; make sure of it
            p.requires_grad_("lora_" in name)
        self.audio_encoder = audio_encoder
        if audio_encoder is not None:
            audio_encoder.requires_grad_(True)  # trained jointly, as upstream (AdamW over all its weights)
        self.register_buffer("audio_bank", None, persistent=False)

    def set_audio_bank(self, features: torch.Tensor) -> None:
        """The AST input features of the retrieved clips, (U, frames, mels); ``audio_clip`` indexes
        its rows. Not saved with the weights (it is data); it moves with the model (``.to``)."""
        if self.audio_encoder is None:
            raise ValueError("an audio bank needs audio_source='ast'")
        if features.ndim != 3 or features.shape[0] == 0:
            raise ValueError(f"audio bank must be (U, frames, mels) with U >= 1, got {tuple(features.shape)}")
        device = next(self.audio_encoder.parameters()).device
        self.audio_bank = features.to(device, torch.float32)

    def embed_audio(self, values: torch.Tensor) -> torch.Tensor:
        """(n, frames, mels) AST input features -> (n, d_audio): the mean of the AST's last hidden
        states over all its tokens (CLS and distillation tokens included), as upstream's code."""
        assert self.audio_encoder is not None
        dtype = next(self.audio_encoder.parameters()).dtype
        return self.audio_encoder(input_values=values.to(dtype)).last_hidden_state.mean(1)

    # ------------------------------------------------------------------ parameters

    def trainable_parameter_count(self) -> int:
        """Parameters that train: the LoRA matrices, the audio projection and, with
        ``audio_source="ast"``, the AST."""
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
        audio_embedding: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        audio_clip: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Masked-LM logits.

        Args:
            input_ids: (B, T) int64 token ids (with ``[MASK]`` where the answer goes).
            attention_mask: (B, T) 0/1.
            span_first_token: (B, K) int64, per sentence the index in ``[0, T)`` of the first token of
                each detected auditory span, -1 (:data:`NO_SPAN`) for an absent one (padding up to
                K, a span truncated away). (B,) is read as K = 1. The valid indices of a row must
                differ.
            audio_embedding: (B, K, d_audio) float, the audio of span k at ``[:, k]``; (B, d_audio)
                is read as K = 1. Entries of absent spans are ignored (conventionally zeros).
                ``audio_source="clap"`` only.
            token_type_ids: optional (B, T).
            audio_clip: ``audio_source="ast"`` only: (B, K) (or (B,)) int64, the row of the audio bank
                (:meth:`set_audio_bank`) holding span k's retrieved clip; -1 for absent spans.

        Returns:
            (B, T, vocab) logits. Rows without any span are exactly the pretrained model's logits.
        """
        B, T = input_ids.shape
        spans = span_first_token.unsqueeze(1) if span_first_token.ndim == 1 else span_first_token  # (B, K)
        if spans.ndim != 2 or spans.shape[0] != B or spans.shape[1] < 1:
            raise ValueError(f"span_first_token must have shape ({B},) or ({B}, K), got {tuple(span_first_token.shape)}")
        K = spans.shape[1]
        ast = self.audio_encoder is not None
        given = audio_clip if ast else audio_embedding
        if given is None or (audio_clip if not ast else audio_embedding) is not None:
            raise ValueError(f"audio_source={self.cfg.audio_source!r} reads "
                             + ("audio_clip (rows of the audio bank)" if ast else "audio_embedding") + ", and only that")
        if ast:
            clip_in = audio_clip.unsqueeze(1) if audio_clip.ndim == 1 else audio_clip  # (B, K)
            if clip_in.shape != (B, K):
                raise ValueError(f"audio_clip must have shape ({B}, {K}), got {tuple(audio_clip.shape)}")
            if self.audio_bank is None:
                raise ValueError("audio_clip needs an audio bank: call set_audio_bank first")
            n_bank = int(self.audio_bank.shape[0])
            present = clip_in[spans >= 0]
            if bool(((present < 0) | (present >= n_bank)).any()):
                raise ValueError(f"audio_clip of a present span must be in [0, {n_bank}), got {present.tolist()}")
        else:
            audio_in = audio_embedding.unsqueeze(1) if audio_embedding.ndim == 2 else audio_embedding  # (B, K, d)
            if audio_in.shape != (B, K, self.cfg.d_audio):
                want = f"({B}, {self.cfg.d_audio})" if K == 1 else ""
                want += (" or " if want else "") + f"({B}, {K}, {self.cfg.d_audio})"
                raise ValueError(f"audio_embedding must have shape {want}, got {tuple(audio_embedding.shape)}")
        if bool(((spans < NO_SPAN) | (spans >= T)).any()):
            raise ValueError(f"span_first_token must be -1 or in [0, {T}), got {span_first_token.tolist()}")
        if K > 1:
            # index_put with repeated indices keeps an unspecified one of the vectors: refuse instead
            ordered = spans.sort(dim=1).values
            if bool(((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)).any()):
                raise ValueError(f"two spans of a row start at the same token: {span_first_token.tolist()}")

        valid = spans >= 0  # (B, K)
        has_span = valid.any(1)  # (B,)
        with_rows = has_span.nonzero().squeeze(1)  # (b1,)
        without_rows = (~has_span).nonzero().squeeze(1)  # (b0,)

        def extra(rows: torch.Tensor) -> dict[str, torch.Tensor]:
            return {} if token_type_ids is None else {"token_type_ids": token_type_ids[rows]}

        parts: list[tuple[torch.Tensor, torch.Tensor]] = []
        if len(with_rows):
            ids = input_ids[with_rows]  # (b1, T)
            embeds = self.word_embeddings(ids)  # (b1, T, H)
            row, k = valid[with_rows].nonzero(as_tuple=True)  # (n,) each: the present spans of these rows
            # only present spans are projected, so whatever padding entries hold never reaches the model
            if ast:
                # each distinct clip of the batch goes through the AST once
                wanted, inverse = clip_in[with_rows][row, k].unique(return_inverse=True)  # (u,), (n,)
                picked = self.embed_audio(self.audio_bank[wanted])[inverse]  # (n, d_audio)
            else:
                picked = audio_in[with_rows][row, k]  # (n, d_audio)
            audio = self.audio_proj(picked.to(embeds.dtype if isinstance(self.audio_proj, nn.Identity)
                                              else self.audio_proj.weight.dtype))  # (n, H)
            at = (row, spans[with_rows][row, k])
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


def first_token_of_span(offsets: Sequence[tuple[int, int]], span: Span | None,
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


def _is_one_span(x: Any) -> bool:
    """True for one ``(start, end)`` pair, False for a list of them (or of None)."""
    return isinstance(x, Sequence) and len(x) == 2 and all(isinstance(v, numbers.Integral) for v in x)


def encode_masked(
    tokenizer: Any,
    sentences: Sequence[str],
    spans: Sequence[Span | None] | Sequence[Sequence[Span | None]],
    answers: Sequence[str] | None = None,
    max_length: int = 128,
) -> dict[str, torch.Tensor]:
    """Tokenise masked sentences for :class:`AudioBert` (and build MLM labels from ``answers``).

    Each sentence holds one ``tokenizer.mask_token`` (``[MASK]``). With ``answers``, the mask is
    widened to as many mask tokens as the answer has word-pieces ("sea lion" -> two), and ``labels``
    holds the answer's ids there (-100 elsewhere). ``spans`` are character spans of the auditory
    spans in the *given* sentence (e.g. from the span detector); each span after the mask is
    shifted when the mask is widened. Per sentence, either

    * one ``(start, end)`` or None (no span): ``span_first_token`` is then (N,), or
    * a list of them, k-th span's audio going to ``audio_embedding[:, k]``; None or an empty list
      means no span: ``span_first_token`` is then (N, K), K = the longest list (at least 1),
      padded with -1. A span keeps its slot k even when it is None or truncated away.

    Returns:
        ``input_ids`` (N, T), ``attention_mask`` (N, T), ``span_first_token`` (N,) or (N, K) (-1
        where there is no span, the span was truncated away, or -- with a warning -- its first token
        is that of an earlier span of the sentence) and, with answers, ``labels`` (N, T).
    """
    if len(spans) != len(sentences) or (answers is not None and len(answers) != len(sentences)):
        raise ValueError("sentences, spans and answers must have the same length")
    per_sentence = any(x is not None and not _is_one_span(x) for x in spans)
    if per_sentence:
        span_lists = [[] if x is None else [x] if _is_one_span(x) else list(x) for x in spans]
    else:
        span_lists = [[x] for x in spans]
    mask = tokenizer.mask_token
    texts, new_spans, answer_ids = [], [], []
    for i, (text, found) in enumerate(zip(sentences, span_lists)):
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
            found = [
                (sp[0] + shift, sp[1] + shift) if sp is not None and sp[0] >= where[0] + len(mask) else sp
                for sp in found
            ]
            answer_ids.append(ids)
        texts.append(text)
        new_spans.append(found)

    enc = tokenizer(
        texts, padding=True, truncation=True, max_length=max_length, return_offsets_mapping=True,
        return_special_tokens_mask=True, return_tensors="pt",
    )
    K = max([1] + [len(found) for found in new_spans])
    first = torch.full((len(texts), K), NO_SPAN, dtype=torch.long)
    for i, (off, found, spec) in enumerate(zip(enc["offset_mapping"], new_spans, enc["special_tokens_mask"])):
        off, spec = off.tolist(), spec.tolist()
        for k, span in enumerate(found):
            at = first_token_of_span(off, span, spec)
            if at != NO_SPAN and at in first[i, :k].tolist():
                # one token can carry only one audio vector; keep the earlier span's
                warnings.warn(f"sentence {i}: span {k} {span} starts at the same token as an earlier span; dropped",
                              stacklevel=2)
                at = NO_SPAN
            first[i, k] = at
    out = {
        "input_ids": enc["input_ids"],
        "attention_mask": enc["attention_mask"],
        "span_first_token": first if per_sentence else first[:, 0],
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
