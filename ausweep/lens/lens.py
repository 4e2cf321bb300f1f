"""The logit lens (and its Patchscope form) over a causal LM or an audio-language model.

Where it sits: :mod:`ausweep.lens.data` gives attribute items; this module builds each item's prompt,
runs the model once with ``output_hidden_states=True``, and projects the residual stream of every
layer at chosen positions through the model's own final norm and unembedding. For each candidate
option (its first sub-token, spelled as AudioLens's code spells it or ``" " + option``: see
:func:`option_token_ids`) it records the log-probability over the whole vocabulary and the rank, per layer and position (log-probabilities,
because early layers' probabilities underflow float32; every order and top-1 is taken on them).
:mod:`ausweep.lens.study` turns these into resolution layers, curves and plots.

Layers here are hidden-state indices ``0..L`` (``L`` = number of decoder blocks): 0 is the embedding
output, ``l`` the output of block ``l`` (1-based), so ``L`` is the last block's output, whose
projection is exactly the model's logits. (The study reports them in AudioLens's numbering by
default, ``l - 1``: see ``LensConfig.layers``.) transformers applies the final norm to the last entry of
``hidden_states`` (Llama, Qwen, GPT-2 alike) and not to the others, so the last block's raw output
is read with a forward hook instead, and every layer goes through the same ``norm -> unembed``.
A runtime check compares the layer-``L`` projection with the model's logits; an architecture that
changes logits after the unembedding (Gemma-2 softcapping, say) is refused with a clear error.

Nothing here re-implements a model's forward: states come from ``output_hidden_states`` and forward
hooks, and the Patchscope variant and the enhancement are forward hooks on the model's own blocks.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor

from ausweep.lens.data import LensItem, Prompts

log = logging.getLogger(__name__)

Method = Literal["logit", "patchscope"]

# Where each family keeps its final norm and its decoder blocks (dotted attribute paths).
NORM_PATHS = (
    "model.norm",                        # Llama, Mistral, Qwen2/3, Gemma, Phi-3, SmolLM
    "transformer.ln_f",                  # GPT-2, GPT-J, Falcon, Bloom
    "gpt_neox.final_layer_norm",         # Pythia, GPT-NeoX
    "model.decoder.final_layer_norm",    # OPT
    "model.final_layernorm",             # Phi-1/2
    "model.language_model.norm",         # multimodal wrappers (Qwen2-VL, Gemma-3 LM part)
)
LAYER_PATHS = (
    "model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers", "model.language_model.layers",
)


class UnsupportedModelError(ValueError):
    """The lens cannot find, or cannot trust, a model's final norm / blocks / unembedding."""


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def final_norm(model: Any) -> Any:
    """The final norm module of a transformers causal LM (``model.model.norm``, ``transformer.ln_f``...)."""
    for path in NORM_PATHS:
        m = _get(model, path)
        if m is not None:
            return m
    raise UnsupportedModelError(
        f"{type(model).__name__}: no final norm at any of {', '.join(NORM_PATHS)}; the logit lens "
        "supports Llama/Qwen/Mistral/Gemma/Phi, GPT-2/GPT-J/Falcon, GPT-NeoX and OPT style models "
        "(add the path to ausweep.lens.lens.NORM_PATHS)"
    )


def decoder_layers(model: Any) -> Any:
    """The decoder blocks (an ``nn.ModuleList``) of a transformers causal LM."""
    for path in LAYER_PATHS:
        m = _get(model, path)
        if m is not None and hasattr(m, "__len__") and len(m) > 0:
            return m
    raise UnsupportedModelError(
        f"{type(model).__name__}: no decoder blocks at any of {', '.join(LAYER_PATHS)} "
        "(add the path to ausweep.lens.lens.LAYER_PATHS)"
    )


def unembedding(model: Any) -> Any:
    head = model.get_output_embeddings()
    if head is None:
        raise UnsupportedModelError(f"{type(model).__name__} has no output embeddings (LM head)")
    return head


def project(model: Any, states: Tensor) -> Tensor:
    """Residual-stream states ``(..., H)`` -> float32 logits ``(..., V)`` through the model's final
    norm and unembedding. ``states`` must be *pre-norm* (see the module docstring)."""
    return unembedding(model)(final_norm(model)(states)).float()


OptionSpelling = Literal["audiolens", "space"]


def option_token_ids(tokenizer: Any, options: Sequence[str], spelling: OptionSpelling = "audiolens") -> list[int]:
    """The token whose probability stands for each option: its first sub-token.

    ``"audiolens"`` (AudioLens's released code, ``inspect_desta_loop_across_layers`` in
    ``patchscopes/code/patchscopes_utils.py``): ``tokenizer.tokenize(option)``, no leading space,
    first token. With byte-level BPE tokenizers (Llama-3, GPT-2, SmolLM2) that is the spelling
    *inside* a word ("dog"), not the one that follows " is" (" dog"). ``"space"``: the first
    sub-token of ``" " + option`` (no special tokens), the token the model would emit next.
    """
    if spelling not in ("audiolens", "space"):
        raise ValueError(f"option spelling must be 'audiolens' or 'space', got {spelling!r}")
    ids = []
    for o in options:
        if spelling == "audiolens":
            toks = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(o))
        else:
            toks = tokenizer(" " + o, add_special_tokens=False)["input_ids"]
        if not toks:
            raise ValueError(f"option {o!r} tokenizes to nothing")
        ids.append(int(toks[0]))
    return ids


def collisions(options: Sequence[str], ids: Sequence[int]) -> list[list[str]]:
    """Groups of options that share their first sub-token (the lens cannot tell them apart)."""
    groups: dict[int, list[str]] = {}
    for o, i in zip(options, ids):
        groups.setdefault(i, []).append(o)
    return [g for g in groups.values() if len(g) > 1]


# ----------------------------------------------------------------------------- resolution


def top1_mask(scores: np.ndarray, label: int) -> np.ndarray:
    """``scores`` (layers, K) -> (layers,) bool: the label's option is strictly above every other.

    Pass log-probabilities (or logits): probabilities of early layers underflow to exact zeros,
    which tie, and a tie is never top-1."""
    scores = np.asarray(scores, dtype=np.float64)
    others = np.delete(scores, label, axis=-1)
    return scores[..., label] > others.max(axis=-1)


def resolution_layer(scores: np.ndarray, label: int) -> int | None:
    """The first layer from which the label's option stays top-1 among the options through the
    last layer; None when it is not top-1 at the last layer. ``scores`` (layers, K), ideally
    log-probabilities (see :func:`top1_mask`)."""
    top = top1_mask(scores, label)
    if not top[-1]:
        return None
    wrong = np.flatnonzero(~top)
    return int(wrong[-1] + 1) if wrong.size else 0


def first_top1_layer(scores: np.ndarray, label: int) -> int | None:
    """The first layer at which the label's option is top-1 among the options (it may be lost later)."""
    hits = np.flatnonzero(top1_mask(scores, label))
    return int(hits[0]) if hits.size else None


def top_option(scores: np.ndarray) -> np.ndarray:
    """Index of the top option along the last axis of ``scores`` (log-probabilities or logits)."""
    return np.asarray(scores).argmax(-1)


def among_options(logprobs: np.ndarray) -> np.ndarray:
    """Log-probabilities (..., K) -> each option's probability among the K options (float64),
    computed from log-probabilities so that options below float32's range keep their shares."""
    lp = np.asarray(logprobs, dtype=np.float64)
    z = lp - lp.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


# ----------------------------------------------------------------------------- model wrapper


@dataclass
class LensModel:
    """A causal LM ready for the lens: ``lm`` (transformers causal LM), its tokenizer, and for an
    audio-language model the ``lalm`` (``ausweep.lalm.model.LALM``) whose ``causal_lm`` is ``lm``."""

    name: str
    lm: Any
    tokenizer: Any
    lalm: Any = None
    native: Any = None  # ausweep.models.native_lalm.NativeLALM (whose model is lm)

    @property
    def audio(self) -> bool:
        return self.lalm is not None or self.native is not None

    @property
    def n_layers(self) -> int:
        return len(decoder_layers(self.lm))

    @property
    def device(self) -> Any:
        return next(self.lm.parameters()).device


def load_text_model(name: str, device: str = "cpu", dtype: str = "float32") -> LensModel:
    from ausweep.models.heads import load_lm_with_head

    lm = load_lm_with_head(name, kind="causal", device=device, dtype=dtype)
    _check_supported(lm.model)
    return LensModel(name, lm.model, lm.tokenizer)


def load_lalm_model(spec: str, device: str = "cpu") -> LensModel:
    """``spec``: a folder saved by ``LALM.save_trained``, or ``untrained:<encoder>+<llm>`` for a
    LALM with a freshly initialised (seeded) connector and a frozen LLM (plumbing runs)."""
    from ausweep.lalm.model import LALMConfig, build_lalm, load_lalm

    if spec.startswith("untrained:"):
        encoder, _, llm = spec[len("untrained:"):].partition("+")
        if not encoder or not llm:
            raise ValueError(f"lalm {spec!r}: expected 'untrained:<encoder>+<llm>', e.g. untrained:whisper-tiny.en+smollm2-135m")
        lalm = build_lalm(LALMConfig(encoder=encoder, llm=llm, llm_mode="frozen"), device=device)
    else:
        lalm = load_lalm(spec, device=device)
    lalm.eval()
    _check_supported(lalm.causal_lm)
    return LensModel(spec, lalm.causal_lm, lalm.tokenizer, lalm=lalm)


def load_native_model(name: str, device: str = "cpu", dtype: str = "float32") -> LensModel:
    """A native transformers LALM (Qwen2-Audio, Audio Flamingo 3, their ``tiny-`` builds; see
    :mod:`ausweep.models.native_lalm`) with its processor."""
    from ausweep.models.native_lalm import load_native_lalm

    native = load_native_lalm(name, device=device, dtype=dtype)
    _check_supported(native.model)
    return LensModel(name, native.model, native.tokenizer, native=native)


def _check_supported(lm: Any) -> None:
    final_norm(lm)
    decoder_layers(lm)
    unembedding(lm)


# ----------------------------------------------------------------------------- prompts and positions


@dataclass(frozen=True)
class PromptSettings:
    """How an item becomes the text the model reads (see ``LensConfig`` for the meaning of each)."""

    style: str = "default"
    question: str = "plain"
    is_suffix: bool = True
    template: str = "{context}\nQuestion: {question}\nAnswer: {probe}"
    audio_template: str = "{question} {probe}"
    chat: bool = False
    option_spelling: str = "audiolens"


@dataclass
class Encoded:
    """One batch, left-padded so that offset -1 is every row's last token."""

    kwargs: dict[str, Any]       # input_ids or inputs_embeds, attention_mask, position_ids
    lengths: list[int]           # text tokens per row
    attribute_offsets: list[int]  # per row: offset from the end of the attribute word's last sub-token
    texts: list[str]
    tail_tokens: list[list[str]]  # per row: the last tokens (heatmap labels)
    attribute_starts: list[int] = field(default_factory=list)  # per row: offset from the end of the word's first sub-token
    audio_mask: Any = None       # (B, T) bool: where the model reads the clip (None: no audio)


def prompt_text(item: LensItem, prompts: Prompts, ps: PromptSettings, tokenizer: Any, audio: bool) -> tuple[str, int]:
    """``(text, probe_start)``: the text the model reads after the audio (if any) and the character
    index where the probing prompt starts in it.

    ``ps.chat``: the tokenizer's own chat template, with the probing prompt where AudioLens puts it
    (``inspect_desta_loop_across_layers``: messages ``[audio, user: question, assistant: probing
    prompt]``, rendered without a generation prompt, the final end-of-turn token dropped). The
    user turn holds the question (and a text LM's context, which stands in for the audio); the
    probing prompt opens the assistant turn. Otherwise ``ps.template`` (text LMs) or
    ``ps.audio_template`` (LALMs: ausweep's LALMs train on "instruction, then response" with no
    chat template, so the question is the instruction and the probing prompt opens the response).
    """
    question = prompts.question(item.attribute, ps.question)
    probe = prompts.probe_text(item.attribute, ps.style, ps.is_suffix)
    if not audio and item.context is None:
        raise ValueError(f"item {item.id!r} has no text context; a text-only LM needs one "
                         "(a JSONL text set, or context_template for a SAKURA folder)")
    if ps.chat:
        user = question if audio else "\n".join(x for x in (item.context, question) if x)
        body = chat_prefix(tokenizer, user)
    else:
        marker = "\x00PROBE\x00"
        if audio:
            body = ps.audio_template.format(question=question, probe=marker, context=item.context or "").lstrip()
        else:
            body = ps.template.format(context=item.context, question=question, probe=marker)
        start = body.index(marker)
        return body.replace(marker, probe), start
    return body + probe, len(body)


def native_prompt_text(native: Any, item: LensItem, prompts: Prompts, ps: PromptSettings) -> tuple[str, int]:
    """``(text, probe_start)`` for a native LALM: always the processor's own chat template, the clip
    and the question in the user turn, the probing prompt opening the assistant turn (AudioLens's
    layout, see :func:`prompt_text`); the text holds the model's one audio placeholder."""
    if item.audio is None:
        raise ValueError(f"item {item.id!r} has no audio; an audio-language model needs a clip per item")
    body = native.chat_prefix(prompts.question(item.attribute, ps.question))
    return body + prompts.probe_text(item.attribute, ps.style, ps.is_suffix), len(body)


def chat_prefix(tokenizer: Any, user: str) -> str:
    """The chat-template text that leads into the assistant's answer to ``user``: the conversation
    ``[user, assistant]`` rendered by the tokenizer's own template and cut where the assistant's
    words begin (what AudioLens gets by dropping the last token, without depending on the template
    ending in exactly one end-of-turn token). A leading BOS the tokenizer adds itself is removed,
    so the model reads one BOS, not two."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("chat=true but the tokenizer has no chat template")
    marker = "\x00ASSISTANT\x00"
    msgs = [{"role": "user", "content": user.strip()}, {"role": "assistant", "content": marker}]
    text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=False)
    if text.count(marker) != 1:
        raise ValueError("the chat template does not render the assistant turn's text verbatim")
    text = text[: text.index(marker)]
    bos = getattr(tokenizer, "bos_token", None)
    if bos and text.startswith(bos) and tokenizer("", add_special_tokens=True)["input_ids"][:1] == [tokenizer.bos_token_id]:
        text = text[len(bos):]
    return text


def _token_offsets(tokenizer: Any, text: str, add_special_tokens: bool = True) -> tuple[list[int], list[tuple[int, int]]]:
    enc = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]


def attribute_offset(ids: list[int], offsets: list[tuple[int, int]], text: str, probe_start: int, word: str,
                     first: bool = False) -> int:
    """Offset from the end (-1 = last token) of the token that holds the attribute word's last
    character in the probing prompt (``first``: its first character)."""
    at = text.lower().find(word.lower(), probe_start)
    if at < 0:
        raise ValueError(f"attribute word {word!r} not found in the probing prompt of {text!r}")
    last_char = at if first else at + len(word) - 1
    for i in range(len(ids) - 1, -1, -1):
        s, e = offsets[i]
        if s <= last_char < e:
            return i - len(ids)
    raise ValueError(f"no token covers the attribute word {word!r} in {text!r}")


def encode_batch(model: LensModel, items: Sequence[LensItem], prompts: Prompts, ps: PromptSettings,
                 tail: int = 8, audio_features: Any = None, max_text_tokens: int | None = None) -> Encoded:
    """Tokenize (and for a LALM, embed the audio of) ``items`` into one left-padded batch."""
    import torch

    tok = model.tokenizer
    audio = model.audio
    texts, id_rows, attr_offsets, attr_starts, tails = [], [], [], [], []
    for it in items:
        if model.native is not None:
            text, start = native_prompt_text(model.native, it, prompts, ps)
        else:
            text, start = prompt_text(it, prompts, ps, tok, audio)
        ids, offsets = _token_offsets(tok, text)
        if max_text_tokens is not None:
            ids, offsets = ids[-max_text_tokens:], offsets[-max_text_tokens:]
        word = prompts.words[it.attribute]
        attr_offsets.append(attribute_offset(ids, offsets, text, start, word))
        attr_starts.append(attribute_offset(ids, offsets, text, start, word, first=True))
        texts.append(text)
        id_rows.append(ids)
        tails.append([tok.decode([i]) for i in ids[-tail:]])
    device = model.device
    if model.native is not None:
        from ausweep.data.audio import read_audio
        from ausweep.models.native_lalm import SAMPLING_RATE

        waves = [read_audio(it.audio, SAMPLING_RATE) for it in items]
        kwargs, audio_mask = model.native.encode(texts, waves)
        ids_t = kwargs["input_ids"].cpu()
        for i, r in enumerate(id_rows):  # the processor expands only the placeholder: the tail must match
            k = -min(attr_offsets[i], attr_starts[i])
            if ids_t[i, -k:].tolist() != r[-k:]:
                raise RuntimeError(f"{model.name}: the processor's last {k} tokens differ from the prompt's "
                                   "tokenization; the attribute position would be wrong")
        lengths = kwargs["attention_mask"].sum(-1).tolist()
        return Encoded(kwargs, lengths, attr_offsets, texts, tails, attr_starts, audio_mask)
    if audio:
        embeds, mask = model.lalm.prompt_embeds(audio_features.to(device), texts)
        from ausweep.lalm.model import position_ids_from_mask

        kwargs = {"inputs_embeds": embeds, "attention_mask": mask, "position_ids": position_ids_from_mask(mask)}
        # [pads][audio queries][text]: the queries sit just before each row's text tokens
        n_q = embeds.shape[1] - max(len(r) for r in id_rows)
        seq = embeds.shape[1]
        audio_mask = torch.zeros(mask.shape, dtype=torch.bool, device=mask.device)
        for i, r in enumerate(id_rows):
            audio_mask[i, seq - len(r) - n_q : seq - len(r)] = True
        return Encoded(kwargs, [len(r) for r in id_rows], attr_offsets, texts, tails, attr_starts, audio_mask)
    else:
        pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        longest = max(len(r) for r in id_rows)
        ids_t = torch.full((len(id_rows), longest), pad, dtype=torch.long)
        mask = torch.zeros((len(id_rows), longest), dtype=torch.long)
        for i, r in enumerate(id_rows):
            ids_t[i, longest - len(r):] = torch.tensor(r, dtype=torch.long)
            mask[i, longest - len(r):] = 1
        # Left padding: positions must skip the pads (generate() does the same), or absolute
        # position embeddings (GPT-2) and rotary phases would shift with the pad count.
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        kwargs = {"input_ids": ids_t.to(device), "attention_mask": mask.to(device), "position_ids": pos.to(device)}
    return Encoded(kwargs, [len(r) for r in id_rows], attr_offsets, texts, tails, attr_starts)


def resolve_offsets(spec: Sequence[int | str], enc: Encoded, tail: int) -> tuple[list[str], Tensor]:
    """Named positions (``final``, ``attribute``, negative offsets) plus the last ``tail`` positions,
    as ``(names, offsets (B, P))``; offsets count from the end of each row (-1 = last token)."""
    import torch

    names: list[str] = []
    cols: list[list[int]] = []
    for s in spec:
        if s == "final":
            names.append("final")
            cols.append([-1] * len(enc.lengths))
        elif s == "attribute":
            names.append("attribute")
            cols.append(list(enc.attribute_offsets))
        else:
            names.append(str(int(s)))
            cols.append([int(s)] * len(enc.lengths))
    for k in range(tail, 0, -1):
        names.append(f"tail{-k}")
        cols.append([-k] * len(enc.lengths))
    offsets = torch.tensor(cols, dtype=torch.long).T  # (B, P)
    too_far = offsets + torch.tensor(enc.lengths)[:, None] < 0
    offsets = torch.where(too_far, torch.full_like(offsets, -1), offsets)  # shorter than the offset: clamp to the last token
    return names, offsets


# ----------------------------------------------------------------------------- hooks


def _hidden_of(output: Any) -> Any:
    return output[0] if isinstance(output, tuple) else output


def _with_hidden(output: Any, hidden: Any) -> Any:
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


@contextlib.contextmanager
def hooks(*handles: Any) -> Iterator[None]:
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _gather(states: Tensor, positions: Tensor) -> Tensor:
    """``states`` (B, T, H), absolute ``positions`` (B, P) -> (B, P, H)."""
    import torch

    b = torch.arange(states.shape[0], device=states.device)[:, None]
    return states[b, positions.to(states.device)]


def _scatter(states: Tensor, positions: Tensor, values: Tensor) -> Tensor:
    import torch

    out = states.clone()
    b = torch.arange(states.shape[0], device=states.device)[:, None]
    out[b, positions.to(states.device)] = values.to(out.dtype)
    return out


@contextlib.contextmanager
def enhancement(lm: Any, source: int, target: int, coef: float, mode: str, positions: Tensor) -> Iterator[None]:
    """Feed layer ``source``'s state forward into layer ``target`` at ``positions`` (B, P; absolute)
    while the context is open: ``add`` gives ``h_t + coef * h_s``, ``mix`` gives
    ``(1 - coef) * h_t + coef * h_s``. Layers are hidden-state indices (0 = embeddings, L = last
    block); ``0 <= source < target <= L``. The hooks are removed on exit."""
    blocks = decoder_layers(lm)
    n = len(blocks)
    if not (0 <= source < target <= n):
        raise ValueError(f"enhancement needs 0 <= source < target <= {n}, got source={source}, target={target}")
    if mode not in ("add", "mix"):
        raise ValueError(f"enhancement mode must be 'add' or 'mix', got {mode!r}")
    saved: dict[str, Any] = {}

    def grab_input(module, args, kwargs):
        h = args[0] if args else kwargs["hidden_states"]
        saved["h"] = _gather(h, positions)

    def grab_output(module, args, output):
        saved["h"] = _gather(_hidden_of(output), positions)

    def feed(module, args, output):
        h = _hidden_of(output)
        cur = _gather(h, positions)
        src = saved["h"].to(cur.dtype)
        new = cur + coef * src if mode == "add" else (1.0 - coef) * cur + coef * src
        return _with_hidden(output, _scatter(h, positions, new))

    if source == 0:
        grab = blocks[0].register_forward_pre_hook(grab_input, with_kwargs=True)
    else:
        grab = blocks[source - 1].register_forward_hook(grab_output)
    with hooks(grab, blocks[target - 1].register_forward_hook(feed)):
        yield


# ----------------------------------------------------------------------------- the lens


@dataclass
class BatchLens:
    """The lens of one batch: ``logprobs`` / ``ranks`` (B, L+1, P, K) for K options at P positions
    (log-probability over the whole vocabulary; rank 0 = top token); ``final`` (B, K) the model's
    own logits of the options at the last position.

    Options are compared by log-probability: at early layers a real model's option probabilities
    fall below float32's smallest value (1.4e-45), become exact zeros and tie, while their
    log-probabilities (-110, -150, ...) still order them. ``probs`` is for reading only.
    """

    logprobs: np.ndarray
    ranks: np.ndarray
    final: np.ndarray
    positions: list[str] = field(default_factory=list)

    @property
    def probs(self) -> np.ndarray:
        """``exp(logprobs)`` in float64 (exact zeros only below about 1e-308)."""
        return np.exp(self.logprobs.astype(np.float64))


def _option_stats(logits: Tensor, option_ids: Tensor, rank_columns: int | None = None) -> tuple[Tensor, Tensor]:
    """float logits (B, P, V) -> (log-probabilities, ranks) of the options (B, P, K); rank 0 = top
    token; ranks only for the first ``rank_columns`` positions (-1 for the rest). Log-probabilities,
    not probabilities: see :class:`BatchLens`."""
    import torch

    logp = torch.log_softmax(logits.float(), dim=-1)
    chosen = logp[..., option_ids]
    cols = logits.shape[1] if rank_columns is None else min(rank_columns, logits.shape[1])
    ranks = torch.full(chosen.shape, -1, dtype=torch.long, device=chosen.device)
    for k in range(chosen.shape[-1]):  # one option at a time keeps the comparison at (B, P, V)
        ranks[:, :cols, k] = (logp[:, :cols] > chosen[:, :cols, k : k + 1]).sum(-1)
    return chosen, ranks


def _keep_kwargs(lm: Any, keep: int) -> dict[str, int]:
    """``logits_to_keep`` when the model takes it: the LM head then runs on the last ``keep``
    positions only (most of a small model's compute otherwise)."""
    import inspect

    return {"logits_to_keep": keep} if "logits_to_keep" in inspect.signature(lm.forward).parameters else {}


def lens_batch(lm: Any, kwargs: dict[str, Any], offsets: Tensor, option_ids: Sequence[int],
               method: Method = "logit", patch_at: str = "output", check: bool = True,
               rank_columns: int | None = None) -> BatchLens:
    """Run the model once on a left-padded batch and read every layer at ``offsets`` (B, P; from the end).

    ``logit``: project each layer's state through the final norm and unembedding.
    ``patchscope``: for each layer l, run the model again with l's state patched into the last
    block at those positions and read the model's own logits. ``patch_at="output"`` replaces the
    last block's output (the final norm and unembedding follow); ``"input"`` replaces its input,
    so the last block itself still runs on top (one position per run, as positions would see
    each other's patched states through attention).

    Ranks are computed for the first ``rank_columns`` positions only (all when None; -1 elsewhere):
    a rank compares each option with the whole vocabulary, which costs more than the projection.
    """
    import torch

    blocks = decoder_layers(lm)
    n = len(blocks)
    seq = kwargs["attention_mask"].shape[1]
    positions = offsets + seq  # absolute
    opt = torch.tensor(list(option_ids), dtype=torch.long, device=lm.get_output_embeddings().weight.device)
    raw: dict[str, Any] = {}

    def grab_last(module, args, output):
        raw["h"] = _hidden_of(output)

    if method not in ("logit", "patchscope"):
        raise ValueError(f"method must be 'logit' or 'patchscope', got {method!r}")
    keep = int(-offsets.min())  # the model's own logits are needed only at the probed tail
    with torch.no_grad(), hooks(blocks[-1].register_forward_hook(grab_last)):
        out = lm(**kwargs, output_hidden_states=True, use_cache=False, **_keep_kwargs(lm, keep))
    hs = out.hidden_states
    if len(hs) != n + 1:
        raise UnsupportedModelError(f"{type(lm).__name__}: {len(hs)} hidden states for {n} blocks; expected {n + 1}")
    states = [*hs[:n], raw["h"]]  # every entry pre-norm
    b = torch.arange(positions.shape[0], device=kwargs["attention_mask"].device)[:, None]
    kept = out.logits.shape[1]
    model_logits = out.logits[b, (offsets + kept).to(out.logits.device)].float()  # (B, P, V)
    logps, ranks = [], []
    with torch.no_grad():
        for layer in range(n + 1):
            if method == "logit":
                logits = project(lm, _gather(states[layer], positions))
                if layer == n and check:
                    _check_last(lm, logits, model_logits)
            else:
                logits = _patched_logits(lm, kwargs, states, layer, positions, patch_at, keep)
            lp, r = _option_stats(logits.to(opt.device), opt, rank_columns)
            logps.append(lp)
            ranks.append(r)
    final = out.logits[:, -1].float()[:, opt.to(out.logits.device)]
    return BatchLens(
        logprobs=torch.stack(logps, 1).cpu().numpy(), ranks=torch.stack(ranks, 1).cpu().numpy(),
        final=final.cpu().numpy(),
    )


def _patched_logits(lm: Any, kwargs: dict, states: list, layer: int, positions: Tensor, patch_at: str,
                    keep: int) -> Tensor:
    """Model logits (B, P, V) at ``positions`` with layer ``layer``'s states patched into the last block."""
    import torch

    blocks = decoder_layers(lm)
    b = torch.arange(positions.shape[0], device=kwargs["attention_mask"].device)[:, None]
    extra = _keep_kwargs(lm, keep)
    if patch_at == "output":
        src = _gather(states[layer], positions)

        def patch(module, args, output):
            return _with_hidden(output, _scatter(_hidden_of(output), positions, src))

        with hooks(blocks[-1].register_forward_hook(patch)):
            logits = lm(**kwargs, use_cache=False, **extra).logits
        return logits[b, (positions - kwargs["attention_mask"].shape[1] + logits.shape[1]).to(logits.device)].float()
    if patch_at != "input":
        raise ValueError(f"patch_at must be 'output' or 'input', got {patch_at!r}")
    cols = []
    for j in range(positions.shape[1]):
        pos = positions[:, j : j + 1]
        src = _gather(states[layer], pos)

        def patch_in(module, args, kw, pos=pos, src=src):
            if args:
                return (_scatter(args[0], pos, src), *args[1:]), kw
            kw = dict(kw)
            kw["hidden_states"] = _scatter(kw["hidden_states"], pos, src)
            return args, kw

        with hooks(blocks[-1].register_forward_pre_hook(patch_in, with_kwargs=True)):
            logits = lm(**kwargs, use_cache=False, **extra).logits
        cols.append(logits[b, (pos - kwargs["attention_mask"].shape[1] + logits.shape[1]).to(logits.device)].float())
    return torch.cat(cols, dim=1)


def _check_last(lm: Any, lens_logits: Tensor, model_logits: Tensor) -> None:
    import torch

    a, m = lens_logits.to(model_logits.device), model_logits
    fp32 = next(lm.parameters()).dtype == torch.float32
    tol = 1e-3 if fp32 else 5e-2
    scale = float(m.abs().max().clamp(min=1.0))
    err = float((a - m).abs().max())
    if err > tol * scale:
        raise UnsupportedModelError(
            f"{type(lm).__name__}: the last layer's projection (final norm + unembedding) differs from the "
            f"model's logits by {err:.3g} (scale {scale:.3g}); the model transforms its logits after the "
            "unembedding (e.g. softcapping or scaling), which the logit lens does not model; use method=patchscope"
        )


def predict(final: np.ndarray) -> np.ndarray:
    """Index of the top option per row of the model's option logits (B, K)."""
    return top_option(final)


def enhanced_final(lm: Any, kwargs: dict[str, Any], option_ids: Sequence[int], source: int, target: int,
                   coef: float, mode: str, offsets: Tensor) -> np.ndarray:
    """The options' logits (B, K) at the last position with :func:`enhancement` active at ``offsets``."""
    import torch

    positions = offsets + kwargs["attention_mask"].shape[1]
    with torch.no_grad(), enhancement(lm, source, target, coef, mode, positions):
        logits = lm(**kwargs, use_cache=False, **_keep_kwargs(lm, 1)).logits[:, -1].float()
    return logits[:, torch.tensor(list(option_ids), device=logits.device)].cpu().numpy()
