"""Attention knockout: does the answer come from querying the audio, or from the attribute mention?

AudioLens's third finding is that "LALMs rely heavily on querying auditory inputs rather than on
hidden states at attribute-mentioning positions". This module gives the measurement behind such a
claim, the attention knockout of Geva et al. (2023, "Dissecting recall of factual associations"):
the probed position (the last token, whose logits give the answer) is stopped from attending to a
set of key positions (the audio tokens; or, separately, the tokens of the attribute word) in every
decoder block from block ``l`` upward, for ``l = 0 .. L`` (``l = L``: no block, the unchanged
model). Accuracy and the right option's probability against ``l`` show from which depth on the
answer no longer needs those positions: if knocking out the audio from block ``l`` on still costs
accuracy for late ``l``, the model is still reading the audio there.

Only the probed query row is masked; every other position still attends as before, so information
that reached other tokens (e.g. the question after the audio) earlier still flows (as in Geva et al.).

How: a forward pre-hook on each knocked block's attention module rewrites the ``attention_mask``
keyword the decoder layer passes it, for the eager (additive float mask: blocked entries set to the
dtype's minimum) and SDPA (boolean mask: blocked entries False; a ``None`` mask, which SDPA reads as
"causal", is replaced by the explicit causal mask) implementations of transformers 5. Flash
attention takes no 4D mask and is refused.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ausweep.lens.lens import UnsupportedModelError, _keep_kwargs, decoder_layers, hooks

if TYPE_CHECKING:
    from torch import Tensor

TARGETS = ("audio", "attribute")
ATTENTION_NAMES = ("self_attn", "attn", "attention", "self_attention")
SUPPORTED_ATTENTION = ("eager", "sdpa")


def attention_module(block: Any) -> Any:
    """The self-attention module of a decoder block (``self_attn`` for Llama/Qwen, ``attn`` for GPT-2)."""
    for name in ATTENTION_NAMES:
        m = getattr(block, name, None)
        if m is not None:
            return m
    raise UnsupportedModelError(f"{type(block).__name__}: no attention module at any of {', '.join(ATTENTION_NAMES)}")


def attention_implementation(lm: Any) -> str:
    cfg = lm.config
    impl = getattr(cfg.get_text_config(), "_attn_implementation", None) or getattr(cfg, "_attn_implementation", None)
    return str(impl or "eager")


def _knocked(mask: Tensor | None, block: Tensor) -> Tensor:
    """``mask`` as the attention module receives it (None, bool (B|1, 1, T, T) True = attend, or
    additive float) with the entries of ``block`` (B, 1, T, T) removed."""
    import torch

    b, _, t, _ = block.shape
    if mask is None:  # SDPA's "is_causal" shortcut: spell the causal mask out
        causal = torch.ones(t, t, dtype=torch.bool, device=block.device).tril()
        return (causal[None, None] & ~block).expand(b, 1, t, t)
    if mask.shape[-1] != t or mask.shape[-2] != t:
        raise UnsupportedModelError(f"attention mask of shape {tuple(mask.shape)} for {t} positions; the knockout "
                                    "needs the full (B, 1, T, T) mask of a forward without cache")
    if mask.dtype == torch.bool:
        return mask & ~block.to(mask.device)
    return mask.masked_fill(block.to(mask.device), torch.finfo(mask.dtype).min)


@contextlib.contextmanager
def knockout(lm: Any, block: Tensor, from_block: int) -> Iterator[None]:
    """While open, decoder blocks ``from_block ..`` (0-based) of ``lm`` cannot attend where ``block``
    (B, T, T) bool is True (query, key). ``from_block == len(blocks)`` knocks out nothing."""
    impl = attention_implementation(lm)
    if impl not in SUPPORTED_ATTENTION:
        raise UnsupportedModelError(f"{type(lm).__name__}: attention knockout needs eager or sdpa attention, "
                                    f"the model uses {impl!r} (load it with attn_implementation='sdpa')")
    blocks = decoder_layers(lm)
    if not 0 <= from_block <= len(blocks):
        raise ValueError(f"from_block must be in 0..{len(blocks)}, got {from_block}")
    full = block[:, None]

    def pre(module, args, kwargs):
        kwargs = dict(kwargs)
        if "attention_mask" not in kwargs:
            raise UnsupportedModelError(f"{type(module).__name__} is not called with an attention_mask keyword")
        kwargs["attention_mask"] = _knocked(kwargs["attention_mask"], full)
        return args, kwargs

    handles = [attention_module(blk).register_forward_pre_hook(pre, with_kwargs=True) for blk in blocks[from_block:]]
    with hooks(*handles):
        yield


def final_query_block(keys: Tensor) -> Tensor:
    """``keys`` (B, T) bool -> (B, T, T): the last position (the probed one) may not attend to them."""
    import torch

    b, t = keys.shape
    out = torch.zeros(b, t, t, dtype=torch.bool, device=keys.device)
    out[:, -1, :] = keys
    return out


def span_mask(starts: Sequence[int], ends: Sequence[int], seq: int, device: Any = None) -> Tensor:
    """(B, T) bool, True on offsets ``starts[i] .. ends[i]`` (from the end, inclusive) of each row."""
    import torch

    out = torch.zeros(len(starts), seq, dtype=torch.bool, device=device)
    for i, (s, e) in enumerate(zip(starts, ends, strict=True)):
        out[i, seq + s : seq + e + 1] = True
    return out


def target_keys(enc: Any, target: str) -> Tensor | None:
    """The key positions (B, T) of ``target`` in a batch of :class:`ausweep.lens.lens.Encoded`, or
    None when the batch has none (``audio`` for a text LM)."""
    seq = enc.kwargs["attention_mask"].shape[1]
    if target == "audio":
        return enc.audio_mask
    if target == "attribute":
        return span_mask(enc.attribute_starts, enc.attribute_offsets, seq, enc.kwargs["attention_mask"].device)
    raise ValueError(f"knockout target must be one of {TARGETS}, got {target!r}")


def knockout_curve(lm: Any, kwargs: dict[str, Any], keys: Tensor, option_ids: Sequence[int],
                   layers: Sequence[int] | None = None) -> np.ndarray:
    """Log-probabilities (B, len(layers), K) of the options at the last position with the last
    position's attention to ``keys`` (B, T) removed from block ``l`` on, for each ``l`` of
    ``layers`` (default ``0 .. L``; ``L`` = the unchanged model)."""
    import torch

    n = len(decoder_layers(lm))
    layers = list(range(n + 1)) if layers is None else list(layers)
    block = final_query_block(keys.to(kwargs["attention_mask"].device))
    opt = torch.tensor(list(option_ids), dtype=torch.long)
    out = []
    for first in layers:
        with torch.no_grad(), knockout(lm, block, first):
            logits = lm(**kwargs, use_cache=False, **_keep_kwargs(lm, 1)).logits[:, -1].float()
        out.append(torch.log_softmax(logits, -1)[:, opt.to(logits.device)].cpu())
    return torch.stack(out, 1).numpy()


# ----------------------------------------------------------------------------- curves


def curve_rows(attr: str, target: str, logprobs: np.ndarray, labels: np.ndarray, layers: Sequence[int],
               n_blocks: int, n_keys: np.ndarray) -> list[dict[str, Any]]:
    """One row per ``from_block`` (0-based; ``n_blocks`` = nothing knocked out): accuracy, mean
    probability of the right option (of the vocabulary; among the options) and the number of
    knocked-out key positions per item (mean)."""
    from ausweep.lens.lens import among_options

    rows = []
    idx = np.arange(len(labels))
    for j, first in enumerate(layers):
        lp = logprobs[:, j]
        rows.append({
            "attribute": attr, "target": target, "from_block": int(first), "knocked_blocks": int(n_blocks - first),
            "n": len(labels), "n_options": lp.shape[-1],
            "acc": float((lp.argmax(-1) == labels).mean()),
            "p_label_mean": float(np.exp(lp[idx, labels].astype(np.float64)).mean()),
            "p_label_among_options_mean": float(among_options(lp)[idx, labels].mean()),
            "keys_mean": float(np.mean(n_keys)),
        })
    return rows


def knockout_png(curves: dict[str, dict[str, list[dict[str, Any]]]], title: str = "") -> bytes:
    """One panel per attribute: accuracy (solid) and p(right option | options) (dashed) against the
    first knocked-out block, one colour per target; dotted: chance."""
    from ausweep.lens.plots import PANEL, _plt, _png

    plt = _plt()
    n = max(1, len(curves))
    fig, axes = plt.subplots(1, n, figsize=(PANEL[0] * n, PANEL[1]), squeeze=False)
    colors = {"audio": "tab:blue", "attribute": "tab:orange"}
    for ax, (attr, by_target) in zip(axes[0], curves.items(), strict=False):
        k = None
        for target, rows in by_target.items():
            x = [r["from_block"] for r in rows]
            c = colors.get(target, "gray")
            ax.plot(x, [r["acc"] for r in rows], color=c, ls="-", marker="o", ms=3, label=f"{target}: accuracy")
            ax.plot(x, [r["p_label_among_options_mean"] for r in rows], color=c, ls="--", label=f"{target}: p(right | options)")
            k = rows[0]["n_options"]
        if k:
            ax.axhline(1.0 / k, color="gray", lw=0.8, ls=":")
        ax.set_xlabel("knocked out from block l on (l = L: none)")
        ax.set_ylabel("last position")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{attr}: attention knockout", fontsize=9)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.12 / n ** 0.5, right=0.97, bottom=0.12, top=0.85, wspace=0.35)
    return _png(fig)
