"""Audio-language models that transformers loads natively (Qwen2-Audio, Audio Flamingo 3, Qwen2.5-Omni's thinker):
load one with its processor, render its chat template around a clip, find the audio tokens.

Where it sits: a shared model layer (like :mod:`ausweep.models.heads` for text LMs). Analyses such as
the lens study take a :class:`NativeLALM` and get left-padded model inputs whose last position is
the last prompt token, plus a mask of the audio placeholder positions. Each architecture is one
:class:`NativeSpec`: its transformers class, its hub checkpoint, its audio placeholder token, and
the folder of vendored processor files (``resources/lalm/<name>/``: the chat template and the
feature-extractor settings, with their provenance in ``SOURCE.md``; ``python -m
ausweep.models.verify`` compares them with the hub's).

Names a user can give (:func:`spec_of`, :func:`is_native`):

* a short name of :data:`NATIVE` (``qwen2-audio``, ``audioflamingo3``, ``qwen2.5-omni``): the hub
  checkpoint, loaded with its own processor (``AutoProcessor``; for Qwen2.5-Omni the audio and text
  half of it, :class:`AudioOnlyProcessor`), which must be in the local HF cache when offline;
* ``tiny-<short name>``: a 2-layer random model of that architecture built in-process from a small
  config, with a tiny byte-level tokenizer and the *vendored* chat template and feature-extractor
  settings (tests and offline demos: plumbing only, its answers mean nothing);
* a local folder or locally cached hub id whose ``config.json`` has one of the known ``model_type`` values.

The audio goes through the model's own processor, which expands the single placeholder of the
chat template into one token per audio frame of the encoder's output; the positions of those
tokens are where the model reads the clip.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

SAMPLING_RATE = 16000


@dataclass(frozen=True)
class NativeSpec:
    """One audio-language architecture transformers loads natively."""

    name: str                 # short name, also the resources folder
    model_type: str           # config.json's model_type
    model_class: str          # transformers class with the LM head
    processor_class: str
    hub_id: str               # the checkpoint AudioLens-style studies use
    audio_token: str          # the placeholder the chat template writes for a clip
    extra_tokens: tuple[str, ...] = ()  # other special tokens the template writes
    tiny: dict[str, Any] = field(default_factory=dict)  # audio_config overrides for the tiny build
    processor_kwargs: dict[str, Any] = field(default_factory=dict)
    # "native": the transformers processor; "audio_only": AudioOnlyProcessor, the audio and text half of
    # a processor whose other halves (images, video) need packages this project does not install
    processor_mode: str = "native"

    def resource(self, filename: str) -> Path:
        return Path(str(resources.files("ausweep.models") / "resources" / "lalm" / self.name / filename))


# The tiny audio encoders read 1 s windows (100 mel frames -> 50 positions -> 25 audio tokens after
# the 2x pooling both architectures apply), not 30 s, so a CPU test runs in a second.
_TINY_WHISPERISH = dict(num_mel_bins=16, d_model=32, encoder_layers=1, encoder_attention_heads=2,
                        encoder_ffn_dim=64, max_source_positions=50)

NATIVE: dict[str, NativeSpec] = {
    "qwen2-audio": NativeSpec(
        name="qwen2-audio", model_type="qwen2_audio", model_class="Qwen2AudioForConditionalGeneration",
        processor_class="Qwen2AudioProcessor", hub_id="Qwen/Qwen2-Audio-7B-Instruct", audio_token="<|AUDIO|>",
        extra_tokens=("<|im_start|>", "<|im_end|>", "<|audio_bos|>", "<|audio_eos|>"),
        tiny=_TINY_WHISPERISH,
    ),
    "audioflamingo3": NativeSpec(
        name="audioflamingo3", model_type="audioflamingo3", model_class="AudioFlamingo3ForConditionalGeneration",
        processor_class="AudioFlamingo3Processor", hub_id="nvidia/audio-flamingo-3-hf", audio_token="<sound>",
        extra_tokens=("<|im_start|>", "<|im_end|>"),
        tiny=dict(_TINY_WHISPERISH, num_hidden_layers=1, num_attention_heads=2, hidden_size=32, intermediate_size=64),
        processor_kwargs={"max_audio_len": 1},
    ),
    "qwen2.5-omni": NativeSpec(
        name="qwen2.5-omni", model_type="qwen2_5_omni_thinker", model_class="Qwen2_5OmniThinkerForConditionalGeneration",
        processor_class="Qwen2_5OmniProcessor", hub_id="Qwen/Qwen2.5-Omni-7B", audio_token="<|AUDIO|>",
        extra_tokens=("<|im_start|>", "<|im_end|>", "<|audio_bos|>", "<|audio_eos|>", "<|vision_bos|>",
                      "<|vision_eos|>", "<|IMAGE|>", "<|VIDEO|>"),
        tiny=dict(num_mel_bins=16, d_model=32, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=64,
                  max_source_positions=50, n_window=50, output_dim=32),
        processor_mode="audio_only",
    ),
}
_BY_TYPE = {s.model_type: s for s in NATIVE.values()}
_BY_TYPE["qwen2_5_omni"] = NATIVE["qwen2.5-omni"]  # the full Omni checkpoint: its thinker is loaded


def known() -> list[str]:
    return [*NATIVE, *(f"tiny-{n}" for n in NATIVE)]


def is_native(name: str) -> bool:
    """Whether ``name`` names a native LALM (a short name, ``tiny-<short name>``, or a folder / cached
    hub id whose config.json has a known model_type); reads at most one local file."""
    if name in NATIVE or name.removeprefix("tiny-") in NATIVE:
        return True
    return _model_type(name) in _BY_TYPE


def _model_type(name: str) -> str | None:
    cfg = Path(name).expanduser() / "config.json"
    if cfg.is_file():
        try:
            return json.loads(cfg.read_text()).get("model_type")
        except (OSError, json.JSONDecodeError):
            return None
    try:  # a hub id already in the local cache (never downloads)
        from transformers.utils import cached_file

        path = cached_file(name, "config.json", local_files_only=True, _raise_exceptions_for_missing_entries=False,
                           _raise_exceptions_for_connection_errors=False)
    except Exception:  # noqa: BLE001 -- not a repo id, or not cached
        return None
    if isinstance(path, str):
        return json.loads(Path(path).read_text()).get("model_type")
    return None


def spec_of(name: str) -> NativeSpec:
    if name in NATIVE:
        return NATIVE[name]
    if name.startswith("tiny-") and name[5:] in NATIVE:
        return NATIVE[name[5:]]
    mt = _model_type(name)
    if mt in _BY_TYPE:
        return _BY_TYPE[mt]
    raise ValueError(f"{name!r} is not a native audio-language model (known: {', '.join(known())}, or a folder "
                     f"whose config.json has model_type {' / '.join(_BY_TYPE)})")


# ----------------------------------------------------------------------------- vendored processor files


def chat_template(spec: NativeSpec) -> str:
    """The vendored chat template of ``spec``'s processor (``resources/lalm/<name>/chat_template.jinja``)."""
    return spec.resource("chat_template.jinja").read_text()


def feature_extractor_settings(spec: NativeSpec) -> dict[str, Any]:
    """The vendored ``preprocessor_config.json`` of ``spec``'s processor."""
    return json.loads(spec.resource("preprocessor_config.json").read_text())


# ----------------------------------------------------------------------------- the model


@dataclass
class NativeLALM:
    """A native audio-language model: ``model`` (its ``...ForConditionalGeneration``), ``processor``
    (feature extractor + tokenizer + chat template) and the audio placeholder's token id."""

    name: str
    spec: NativeSpec
    model: Any
    processor: Any

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @property
    def audio_token_id(self) -> int:
        return int(self.tokenizer.convert_tokens_to_ids(self.spec.audio_token))

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def chat_prefix(self, user: str) -> str:
        """The chat text that leads into the assistant's answer: ``[user: (audio, user text),
        assistant: ...]`` rendered by the processor's own template and cut where the assistant's
        words begin; holds exactly one audio placeholder."""
        marker = "\x00ASSISTANT\x00"
        msgs = [
            {"role": "user", "content": [{"type": "audio", "audio": "clip"}, {"type": "text", "text": user.strip()}]},
            {"role": "assistant", "content": [{"type": "text", "text": marker}]},
        ]
        text = self.processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=False)
        if isinstance(text, list):
            text = text[0]
        if text.count(marker) != 1:
            raise ValueError(f"{self.name}: the chat template does not render the assistant turn's text verbatim")
        text = text[: text.index(marker)]
        if text.count(self.spec.audio_token) != 1:
            raise ValueError(f"{self.name}: the chat template wrote {text.count(self.spec.audio_token)} "
                             f"{self.spec.audio_token} placeholders for one clip")
        return text

    def encode(self, texts: Sequence[str], audios: Sequence[Any]) -> tuple[dict[str, Any], Tensor]:
        """``(model kwargs, audio_mask (B, T) bool)`` for prompts holding one audio placeholder each
        and their clips (float arrays at 16 kHz), LEFT-padded: position -1 is each row's last token."""
        tok = self.tokenizer
        tok.padding_side = "left"
        # padding for the text only: the feature extractor keeps its own (a fixed window per clip)
        out = self.processor(text=list(texts), audio=list(audios), text_kwargs={"padding": True, "padding_side": "left"},
                             audio_kwargs={"sampling_rate": SAMPLING_RATE}, return_tensors="pt")
        kwargs = {k: v.to(self.device) for k, v in out.items() if k in _MODEL_INPUTS}
        if "input_features" in kwargs:
            kwargs["input_features"] = kwargs["input_features"].to(self.model.dtype)
        mask = kwargs["attention_mask"]
        if bool((mask[:, -1] == 0).any()):
            raise RuntimeError(f"{self.name}: the processor padded on the right; the lens needs left padding")
        return kwargs, kwargs["input_ids"] == self.audio_token_id


_MODEL_INPUTS = ("input_ids", "attention_mask", "input_features", "feature_attention_mask", "input_features_mask")


class AudioOnlyProcessor:
    """The audio and text half of a transformers processor (Qwen2.5-Omni's), for audio-only prompts.

    ``Qwen2_5OmniProcessor`` also holds an image and a video processor, and its video processor
    needs torchvision, which this project does not install; the lens sends no image or video. This
    does what that processor does for text + audio (``_process_audio`` in
    ``transformers/models/qwen2_5_omni/processing_qwen2_5_omni.py``, transformers 5.24): the feature
    extractor with ``padding="max_length"`` and an attention mask (renamed ``feature_attention_mask``),
    each audio placeholder replaced by ``_get_feat_extract_output_lengths(frames)`` copies (transformers'
    own function), the text tokenized left-padded. A test compares it with the real processor where
    torchvision is installed."""

    def __init__(self, feature_extractor: Any, tokenizer: Any, chat_template: str, audio_token: str,
                 token_lengths: Any):
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self.audio_token = audio_token
        self._lengths = token_lengths

    def apply_chat_template(self, conversation: list[dict[str, Any]], tokenize: bool = False,
                            add_generation_prompt: bool = False) -> str:
        if tokenize:
            raise ValueError("AudioOnlyProcessor renders text only (tokenize=False)")
        return self.tokenizer.apply_chat_template(conversation, chat_template=self.chat_template, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)

    def __call__(self, text: Sequence[str], audio: Sequence[Any], text_kwargs: dict[str, Any] | None = None,
                 audio_kwargs: dict[str, Any] | None = None, return_tensors: str = "pt") -> Any:
        from transformers import BatchFeature

        text_kwargs, audio_kwargs = dict(text_kwargs or {}), dict(audio_kwargs or {})
        audio_kwargs.update(padding="max_length", return_attention_mask=True)
        feats = self.feature_extractor(list(audio), return_tensors="pt", **audio_kwargs)
        feats["feature_attention_mask"] = feats.pop("attention_mask")
        counts = self._lengths(feats["feature_attention_mask"].sum(-1)).tolist()
        marker, expanded, k = "\x00A\x00", [], 0
        for t in text:
            n = t.count(self.audio_token)
            parts = t.replace(self.audio_token, marker).split(marker)
            out = parts[0]
            for j in range(n):
                out += self.audio_token * int(counts[k + j]) + parts[j + 1]
            k += n
            expanded.append(out)
        if k != len(counts):
            raise ValueError(f"{k} {self.audio_token} placeholders in the text for {len(counts)} clips")
        enc = self.tokenizer(expanded, return_tensors=return_tensors, **text_kwargs)
        return BatchFeature({**enc, **feats})


def _omni_token_lengths() -> Any:
    from transformers.models.qwen2_5_omni.processing_qwen2_5_omni import _get_feat_extract_output_lengths

    return _get_feat_extract_output_lengths


def _load_processor(spec: NativeSpec, source: str) -> Any:
    import transformers

    if spec.processor_mode == "native":
        return transformers.AutoProcessor.from_pretrained(source)
    from transformers.utils import cached_file

    template = None
    for filename in ("chat_template.jinja", "chat_template.json"):
        path = cached_file(source, filename, _raise_exceptions_for_missing_entries=False)
        if path:
            text = Path(path).read_text()
            template = json.loads(text)["chat_template"] if filename.endswith(".json") else text
            break
    if template is None:
        raise FileNotFoundError(f"{source}: no chat_template.jinja / chat_template.json (the processor's chat template)")
    return AudioOnlyProcessor(transformers.WhisperFeatureExtractor.from_pretrained(source),
                              transformers.AutoTokenizer.from_pretrained(source), template, spec.audio_token,
                              _omni_token_lengths())


def load_native_lalm(name: str, device: str = "cpu", dtype: str = "float32") -> NativeLALM:
    """A native LALM by ``name`` (see the module docstring), in eval mode on ``device``."""
    import torch

    spec = spec_of(name)
    if name.startswith("tiny-") and name[5:] in NATIVE:
        model, processor = build_tiny_native(spec)
        model = model.to(device)
    else:
        import transformers

        source = spec.hub_id if name in NATIVE else name
        cls = getattr(transformers, spec.model_class)
        model = cls.from_pretrained(source, dtype=getattr(torch, dtype)).to(device)
        processor = _load_processor(spec, source)
    model.eval()
    return NativeLALM(name, spec, model, processor)


# ----------------------------------------------------------------------------- tiny builds


def tiny_tokenizer(spec: NativeSpec) -> Any:
    """The tiny byte-level Qwen-style tokenizer (:func:`ausweep.models.tiny.tiny_tokenizer`) with
    ``spec``'s placeholder and chat special tokens added."""
    from transformers import PreTrainedTokenizerFast

    from ausweep.models.tiny import tiny_tokenizer as base

    tok = base("qwen-bpe")
    tok.add_special_tokens({"additional_special_tokens": [*spec.extra_tokens, spec.audio_token]})
    named = {"audio_token": spec.audio_token}
    return PreTrainedTokenizerFast(tokenizer_object=tok._tokenizer, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                   extra_special_tokens=named, padding_side="left")


def tiny_feature_extractor(spec: NativeSpec) -> Any:
    """The vendored feature-extractor settings with the tiny encoder's sizes: 16 mel bins, 1 s windows."""
    from transformers import WhisperFeatureExtractor

    settings = feature_extractor_settings(spec)
    settings.pop("feature_extractor_type", None)
    settings.pop("processor_class", None)
    settings.update(feature_size=spec.tiny["num_mel_bins"], chunk_length=1, n_samples=SAMPLING_RATE,
                    nb_max_frames=100)
    return WhisperFeatureExtractor(**settings)


def tiny_native_config(spec: NativeSpec, tokenizer: Any) -> Any:
    """A 2-layer config of ``spec``'s architecture (hidden 32), sized to ``tokenizer``."""
    import transformers

    text = dict(model_type="qwen2", vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128,
                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False)
    cfg_cls = getattr(transformers, spec.model_class.replace("ForConditionalGeneration", "Config"))
    tid = tokenizer.convert_tokens_to_ids
    audio = dict(spec.tiny)
    if spec.name == "qwen2.5-omni":
        # the thinker's text model uses multimodal rotary sections (time, height, width) summing to head_dim / 2
        text.pop("model_type")
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]}
        vision = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32, fullatt_block_indexes=[0])
        return cfg_cls(audio_config=audio, vision_config=vision, text_config=text, audio_token_index=tid(spec.audio_token),
                       image_token_index=tid("<|IMAGE|>"), video_token_index=tid("<|VIDEO|>"),
                       audio_start_token_id=tid("<|audio_bos|>"), audio_end_token_id=tid("<|audio_eos|>"),
                       vision_start_token_id=tid("<|vision_bos|>"), user_token_id=tid("<|im_start|>"))
    return cfg_cls(audio_config=audio, text_config=text, audio_token_id=tid(spec.audio_token))


def build_tiny_native(spec: NativeSpec) -> tuple[Any, Any]:
    """``(model, processor)``: a seeded tiny random model of ``spec``'s architecture and its processor
    built from the tiny tokenizer and the vendored chat template and feature-extractor settings."""
    import transformers

    from ausweep.models.tiny import _seeded

    tok = tiny_tokenizer(spec)
    cfg = tiny_native_config(spec, tok)
    model = _seeded(lambda: getattr(transformers, spec.model_class)(cfg))
    if spec.processor_mode == "audio_only":
        processor = AudioOnlyProcessor(tiny_feature_extractor(spec), tok, chat_template(spec), spec.audio_token,
                                       _omni_token_lengths())
    else:
        proc_cls = getattr(transformers, spec.processor_class)
        processor = proc_cls(feature_extractor=tiny_feature_extractor(spec), tokenizer=tok,
                             chat_template=chat_template(spec), **spec.processor_kwargs)
    return model.eval(), processor


# ----------------------------------------------------------------------------- verification against the hub


def verify_vendored(name: str, checkpoint: str | None, make_clips: Any, device: str = "cpu") -> list[Any]:
    """Compare ``name``'s vendored files with the hub processor's (``checkpoint``: a local copy of the
    hub folder instead): the chat template's text and the prompt it renders for a clip (difference 0
    when identical, 1 when not), each feature-extractor setting (0 / 1), and the log-mel features of
    the clips (largest absolute difference). For ``python -m ausweep.models.verify lalm-<name>``."""
    from transformers import WhisperFeatureExtractor

    from ausweep.models.verify import CannotVerify, Check

    spec = NATIVE[name]
    source = checkpoint or spec.hub_id
    try:
        hub = _load_processor(spec, source)
    except OSError as e:
        raise CannotVerify(f"cannot load the processor of {source} (no network or not cached): {str(e).splitlines()[0]}") from e
    label = f"lalm-{name}"
    checks = [Check(label, "chat_template text", float(hub.chat_template != chat_template(spec)))]
    ours = NativeLALM(name, spec, None, hub)
    rendered = ours.chat_prefix("What is it?")
    hub.chat_template = chat_template(spec)
    checks.append(Check(label, "chat prefix rendered", float(NativeLALM(name, spec, None, hub).chat_prefix("What is it?") != rendered)))
    settings = feature_extractor_settings(spec)
    theirs = hub.feature_extractor.to_dict()
    for key, value in sorted(settings.items()):
        if key == "processor_class":  # written beside the settings by save_pretrained, not one of them
            continue
        checks.append(Check(label, f"feature extractor {key}", float(theirs.get(key) != value)))
    fe = WhisperFeatureExtractor(**{k: v for k, v in settings.items() if k not in ("feature_extractor_type", "processor_class")})
    for i, clip in enumerate(make_clips(SAMPLING_RATE)):
        a = fe(clip, sampling_rate=SAMPLING_RATE, return_tensors="np")["input_features"]
        b = hub.feature_extractor(clip, sampling_rate=SAMPLING_RATE, return_tensors="np")["input_features"]
        diff = float(abs(a - b).max()) if a.shape == b.shape else float("inf")
        checks.append(Check(label, f"log-mel clip {i}", diff))
    return checks


def verify_qwen2_audio(checkpoint: str | None, make_clips: Any, device: str = "cpu") -> list[Any]:
    return verify_vendored("qwen2-audio", checkpoint, make_clips, device)


def verify_audioflamingo3(checkpoint: str | None, make_clips: Any, device: str = "cpu") -> list[Any]:
    return verify_vendored("audioflamingo3", checkpoint, make_clips, device)


def verify_qwen2_5_omni(checkpoint: str | None, make_clips: Any, device: str = "cpu") -> list[Any]:
    return verify_vendored("qwen2.5-omni", checkpoint, make_clips, device)
