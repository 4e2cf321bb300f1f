"""LAION-CLAP's original checkpoint files (``630k-audioset-best.pt``, ...) as a transformers ``ClapModel``.

The ``laion_clap`` package (github.com/LAION-AI/CLAP) releases ``.pt`` files of its own ``CLAP``
module: an HTSAT audio branch, a RoBERTa-base text branch and two projection MLPs. transformers'
``ClapModel`` is the same network under other names (``laion/clap-htsat-*`` on the hub were
converted from these files), so :func:`convert_state_dict` renames the keys and splits HTSAT's
fused ``qkv`` into query/key/value; the model then runs through transformers and
:class:`ausweep.models.audio.ClapAudioEncoder` like the hub CLAP (``clap``).

Every key of the file is accounted for: renamed into ``ClapModel``, checked (the STFT kernels and
mel matrix of HTSAT's built-in frontend must equal the ``ClapFeatureExtractor``'s; the text
branch's ``position_ids`` must be ``arange``), a shifted-window ``attn_mask`` buffer (a function of
the sizes, which transformers recomputes; the equivalence test covers it), or one of the named groups ``ClapModel`` has no
place for and embeddings never use (:data:`UNUSED`: the training-only ``audio_transform`` /
``text_transform`` MLPs, HTSAT's AudioSet classifier ``tscam_conv`` / ``head``).

Registry names and files (``OFFICIAL``), 48 kHz, 10 s window, 512-d joint space:

* ``laion-clap``: ``630k-audioset-best.pt`` (HTSAT-tiny, no fusion; AudioBERT upstream's CLAP setting)
* ``laion-clap-fusion``: ``630k-audioset-fusion-best.pt`` (HTSAT-tiny, feature fusion)
* ``laion-clap-music-speech``: ``music_speech_audioset_epoch_15_esc_89.98.pt`` (HTSAT-base)
* ``laion-clap-music``: ``music_audioset_epoch_15_esc_90.14.pt`` (HTSAT-base)

Frontend, pooling (as ``clap``): 48 kHz mono; log-mel (64 Slaney bins 50-14000 Hz, 1024-point
Hann STFT, hop 480, power to dB) of a 10 s window; shorter clips are repeated then zero-padded
(``repeatpad``, LAION's eval setting), longer ones cropped at a seeded random offset (no fusion) or
fused from three seeded crops plus the whole clip shrunk (fusion). HTSAT pools its last
stage by averaging over time and frequency; ``proj`` (default) is the unit-length 512-d joint
embedding, ``pooled`` HTSAT's pooled output. LAION's own ``get_audio_embedding_from_data``
quantises the waveform to int16 first; ausweep does not (a difference of at most 1/32768 per sample).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

SAMPLE_RATE = 48000
LAION_CLAP_HUB = "https://huggingface.co/lukewys/laion_clap/resolve/main/"


@dataclass(frozen=True)
class LaionCheckpoint:
    """One released file: its name, the HTSAT size it holds and whether it uses feature fusion."""

    filename: str
    amodel: str  # "HTSAT-tiny" | "HTSAT-base"
    fusion: bool
    what: str

    @property
    def url(self) -> str:
        return LAION_CLAP_HUB + self.filename


#: The files laion_clap's own loader (hook.CLAP_Module.load_ckpt) and README name, by registry name.
OFFICIAL = {
    "laion-clap": LaionCheckpoint("630k-audioset-best.pt", "HTSAT-tiny", False, "HTSAT-tiny, LAION-630K + AudioSet"),
    "laion-clap-fusion": LaionCheckpoint("630k-audioset-fusion-best.pt", "HTSAT-tiny", True,
                                         "HTSAT-tiny with feature fusion, LAION-630K + AudioSet"),
    "laion-clap-music-speech": LaionCheckpoint("music_speech_audioset_epoch_15_esc_89.98.pt", "HTSAT-base", False,
                                               "HTSAT-base, music + speech + AudioSet"),
    "laion-clap-music": LaionCheckpoint("music_audioset_epoch_15_esc_90.14.pt", "HTSAT-base", False,
                                        "HTSAT-base, music + AudioSet"),
}

#: HTSAT sizes, from laion_clap's htsat.create_htsat_model and model_configs/HTSAT-*.json.
HTSAT = {
    "HTSAT-tiny": dict(patch_embeds_hidden_size=96, depths=[2, 2, 6, 2], hidden_size=768),
    "HTSAT-base": dict(patch_embeds_hidden_size=128, depths=[2, 2, 12, 2], hidden_size=1024),
}

#: roberta-base, the text branch every released file uses (laion_clap's CLAP(tmodel="roberta")).
ROBERTA_BASE = dict(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                    intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                    layer_norm_eps=1e-5, hidden_act="gelu")

#: Key prefixes of a LAION file that ClapModel has no place for; none of them feeds an embedding.
UNUSED = {
    "audio_transform.": "training-only MLP on audio embeddings (LAION's mlp loss)",
    "text_transform.": "training-only MLP on text embeddings (LAION's mlp loss)",
    "audio_branch.tscam_conv.": "HTSAT's AudioSet (527-class) token-semantic head",
    "audio_branch.head.": "HTSAT's AudioSet (527-class) head",
}
#: Keys checked against the feature extractor / transformers' own buffers instead of loaded.
CHECKED = ("audio_branch.spectrogram_extractor.stft.conv_real.weight", "audio_branch.spectrogram_extractor.stft.conv_imag.weight",
           "audio_branch.logmel_extractor.melW", "text_branch.embeddings.position_ids")


def clap_config(amodel: str, fusion: bool, text: dict[str, Any] | None = None) -> Any:
    """The ``transformers.ClapConfig`` of a LAION-CLAP file (``text`` overrides roberta-base, for tests)."""
    import transformers as tf

    if amodel not in HTSAT:
        raise ValueError(f"unknown LAION-CLAP audio model {amodel!r}; known: {sorted(HTSAT)}")
    audio = dict(HTSAT[amodel], num_attention_heads=[4, 8, 16, 32], window_size=8, spec_size=256, num_mel_bins=64,
                 patch_size=4, patch_stride=[4, 4], enable_fusion=fusion, fusion_type="aff_2d" if fusion else None,
                 projection_hidden_act="relu", layer_norm_eps=1e-5)
    text = dict(ROBERTA_BASE, **(text or {}), projection_hidden_act="relu")
    return tf.ClapConfig(text_config=text, audio_config=audio, projection_dim=512)


def feature_extractor(fusion: bool) -> Any:
    """LAION-CLAP's eval frontend as a ``ClapFeatureExtractor`` (see module docstring)."""
    import transformers as tf

    return tf.ClapFeatureExtractor(feature_size=64, sampling_rate=SAMPLE_RATE, hop_length=480, fft_window_size=1024,
                                   max_length_s=10, frequency_min=50, frequency_max=14000, padding_value=0.0,
                                   truncation="fusion" if fusion else "rand_trunc", padding="repeatpad")


def _rename(key: str) -> str | None:
    """LAION key -> ClapModel key (None: qkv, handled by the caller)."""
    for old, new in (("audio_projection.0.", "audio_projection.linear1."), ("audio_projection.2.", "audio_projection.linear2."),
                     ("text_projection.0.", "text_projection.linear1."), ("text_projection.2.", "text_projection.linear2.")):
        if key.startswith(old):
            return new + key[len(old):]
    if key.startswith("text_branch."):
        return "text_model." + key[len("text_branch."):]
    if key.startswith("logit_scale_"):
        return key
    if not key.startswith("audio_branch."):
        raise KeyError(key)
    k = "audio_model.audio_encoder." + key[len("audio_branch."):]
    for old, new in ((".bn0.", ".batch_norm."), (".norm1.", ".layernorm_before."), (".norm2.", ".layernorm_after."),
                     (".attn.relative_position_bias_table", ".attention.self.relative_position_bias_table"),
                     (".attn.relative_position_index", ".attention.self.relative_position_index"),
                     (".attn.proj.", ".attention.output.dense."), (".mlp.fc1.", ".intermediate.dense."),
                     (".mlp.fc2.", ".output.dense.")):
        k = k.replace(old, new)
    return None if ".attn.qkv." in k else k


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a LAION-CLAP file (``{"state_dict": ...}`` or bare; DDP's ``module.`` stripped)."""
    from ausweep.models.checkpoint_files import _numpy_globals

    path = Path(path)
    try:
        with torch.serialization.safe_globals(_numpy_globals()):  # training state saved beside the weights
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not this file"
        raise ValueError(f"{path}: not a readable LAION-CLAP checkpoint ({type(e).__name__}: {str(e)[:200]})") from e
    state = blob.get("state_dict", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: field 'state_dict' is not a state dict of tensors")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()}


def check_front_end(state: dict[str, torch.Tensor], fe: Any, source: str) -> None:
    """HTSAT's built-in STFT kernels and mel matrix must be the feature extractor's (1e-5)."""
    real = state["audio_branch.spectrogram_extractor.stft.conv_real.weight"][:, 0].double()  # (bins, n_fft)
    imag = state["audio_branch.spectrogram_extractor.stft.conv_imag.weight"][:, 0].double()
    n_fft = real.shape[1]
    n = torch.arange(n_fft, dtype=torch.float64)
    k = torch.arange(real.shape[0], dtype=torch.float64)[:, None]
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)  # librosa's get_window("hann", fftbins=True)
    ang = 2 * np.pi * k * n / n_fft
    mel = state["audio_branch.logmel_extractor.melW"].double()  # (bins, mels): librosa's Slaney filters
    # the non-fusion input path; fusion files carry the same matrix, their input mel is computed outside HTSAT (HTK)
    ours = torch.from_numpy(np.asarray(fe.mel_filters_slaney, dtype=np.float64))
    errs = {"stft real": float((real - torch.cos(ang) * window).abs().max()),
            "stft imag": float((imag.abs() - (torch.sin(ang) * window).abs()).abs().max()),
            "mel matrix": float((mel - ours.double()).abs().max()) if ours.shape == mel.shape else float("inf")}
    bad = {k: v for k, v in errs.items() if not v < 1e-5}
    if bad:
        raise ValueError(f"{source}: HTSAT's built-in frontend differs from ClapFeatureExtractor's ({bad}); "
                         "not a 48 kHz / 1024-point / 64-mel LAION-CLAP file")


def convert_state_dict(state: dict[str, torch.Tensor], model: Any, source: str = "checkpoint",
                       fe: Any = None) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``(ClapModel state dict, keys deliberately not loaded)`` from a LAION-CLAP state dict.

    Requires every ``ClapModel`` weight to come from the file (its own ``position_ids`` /
    ``token_type_ids`` buffers excepted) and every key of the file to be renamed, checked
    (:data:`CHECKED`) or in an :data:`UNUSED` group; otherwise ``ValueError`` naming the keys.
    """
    want = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    unused: list[str] = []
    stray: list[str] = []
    for key, value in state.items():
        if key in CHECKED or (key.startswith("audio_branch.layers.") and key.endswith(".attn_mask")):
            continue  # checked below, or a shifted-window mask that transformers recomputes from the sizes
        if key.startswith(tuple(UNUSED)):
            unused.append(key)
            continue
        try:
            new = _rename(key)
        except KeyError:
            stray.append(key)
            continue
        if new is None:  # HTSAT's fused qkv (3d, d) / (3d,) -> query, key, value
            base = "audio_model.audio_encoder." + key[len("audio_branch."):].replace(".attn.qkv.", ".attention.self.")
            for part, chunk in zip(("query", "key", "value"), value.chunk(3, dim=0)):
                out[base.replace(".attention.self.", f".attention.self.{part}.")] = chunk.clone()
            continue
        out[new] = value
    own_buffers = {k for k in want if k.endswith(("embeddings.position_ids", "embeddings.token_type_ids"))}
    missing = sorted(set(want) - set(out) - own_buffers)
    stray += sorted(set(out) - set(want))
    shapes = sorted(f"{k} {tuple(out[k].shape)} != {tuple(want[k].shape)}" for k in set(out) & set(want)
                    if out[k].shape != want[k].shape)
    if missing or stray or shapes:
        raise ValueError(f"{source}: does not fit the LAION-CLAP ClapModel: missing {missing[:4]}, unexpected "
                         f"{stray[:4]}, wrong shape {shapes[:3]} ({len(missing)}, {len(stray)}, {len(shapes)} in all)")
    pos = state.get("text_branch.embeddings.position_ids")
    if pos is not None and not torch.equal(pos.flatten().long(), torch.arange(pos.numel())):
        raise ValueError(f"{source}: text_branch.embeddings.position_ids is not 0..{pos.numel() - 1}")
    if fe is not None:
        check_front_end(state, fe, source)
    for k in own_buffers:
        out[k] = want[k]
    return out, sorted(unused)


def load_clap_model(name: str, checkpoint: str | Path, text: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """``(ClapModel, ClapFeatureExtractor)`` from LAION-CLAP file ``checkpoint`` of registry entry ``name``."""
    import transformers as tf

    spec = OFFICIAL[name]
    state = read_state_dict(checkpoint)
    config = clap_config(spec.amodel, spec.fusion, text)
    model = tf.ClapModel(config)
    fe = feature_extractor(spec.fusion)
    converted, _ = convert_state_dict(state, model, str(checkpoint), fe)
    model.load_state_dict(converted, strict=True)
    return model.float().eval(), fe


#: The tokenizer every released file was trained with (laion_clap's RobertaTokenizer("roberta-base")).
TOKENIZER = "FacebookAI/roberta-base"


def load_clap_text_audio(name: str = "laion-clap", checkpoint: str | None = None, device: str = "cpu",
                         tokenizer: str = TOKENIZER, text: dict[str, Any] | None = None, **kw: Any) -> Any:
    """Both towers of LAION-CLAP file ``name`` as a :class:`~ausweep.models.clap.ClapTextAudio`, for
    AudioBERT's text-to-audio retrieval in the same joint space as the ``name`` audio vectors.
    The tokenizer comes from the hub (cached; ``HF_HUB_OFFLINE`` honoured)."""
    import transformers as tf

    from ausweep.models.clap import ClapTextAudio
    from ausweep.models.text import hub_errors

    model, fe = load_clap_model(name, locate_checkpoint(name, checkpoint), text=text)
    with hub_errors(tokenizer, None):
        tok = tf.AutoTokenizer.from_pretrained(tokenizer)
    return ClapTextAudio(model, tok, fe, device=device, name=name, **kw)


def locate_checkpoint(name: str, checkpoint: str | None = None, download: bool | None = None) -> Path:
    """The file of ``name`` as :mod:`ausweep.models.checkpoint_files` finds it (one-line error if absent)."""
    from ausweep.models.checkpoint_files import OfficialFile, locate

    if name not in OFFICIAL:
        raise ValueError(f"unknown LAION-CLAP checkpoint {name!r}; known: {sorted(OFFICIAL)}")
    spec = OFFICIAL[name]
    # the smallest file (HTSAT-tiny + RoBERTa-base, float32) is ~1.7 GB; a few hundred kB is an error page
    return locate(OfficialFile(model=name, filename=spec.filename, url=spec.url, min_bytes=100_000_000),
                  checkpoint, download=download)


def load_laion_clap(name: str = "laion-clap", checkpoint: str | None = None, device: str = "cpu",
                    revision: str | None = None, download: bool | None = None, **options: Any) -> Any:
    """Registry loader: LAION-CLAP file ``name``'s audio tower as a
    :class:`~ausweep.models.audio.ClapAudioEncoder` (options: ``pooling`` proj|pooled, ``batch_size``)."""
    from ausweep.models.audio import ClapAudioEncoder

    if revision is not None:
        raise ValueError(f"audio model '{name}' loads an official checkpoint file; it has no revisions (pass checkpoint=PATH)")
    model, fe = load_clap_model(name, locate_checkpoint(name, checkpoint, download))
    return ClapAudioEncoder(model, fe, name, device=device, **options)


# ----------------------------------------------------------------------------- python -m ausweep.models.verify


def _verify(name: str, checkpoint: str | None, make_clips: Any, device: str) -> list[Any]:
    """laion_clap's own ``CLAP_Module`` (``load_ckpt`` of the same file, ``get_audio_embedding_from_data``)
    vs ausweep's encoder. Clips are quantised to int16 first (LAION's loader does, ausweep does not) and
    only clips up to 10 s are compared: longer ones get a random crop (or random fusion crops) in both."""
    from ausweep.models.verify import CannotVerify, Check

    spec = OFFICIAL[name]
    path = locate_checkpoint(name, checkpoint)
    try:
        import laion_clap
    except Exception as e:  # noqa: BLE001 - its imports (torchvision, h5py, wget...) fail in many ways
        raise CannotVerify(f"the reference needs laion_clap==1.1.7 with its dependencies (torchvision, h5py, "
                           f"wget, ftfy, braceexpand, webdataset) and roberta-base from the hub ({e})") from e
    ref = laion_clap.CLAP_Module(enable_fusion=spec.fusion, amodel=spec.amodel, device=device)
    ref.load_ckpt(str(path), verbose=False)
    clips = [np.round(np.clip(c, -1, 1) * 32767) / 32767 for c in make_clips(SAMPLE_RATE) if len(c) <= 10 * SAMPLE_RATE]
    if not clips:
        raise CannotVerify("every clip is longer than 10 s; LAION-CLAP crops those at random (pass --clips 1,4.2,10)")
    enc = load_laion_clap(name, checkpoint=str(path), device=device)
    checks = []
    for i, c in enumerate(clips):
        want = ref.get_audio_embedding_from_data(x=c[None].astype(np.float32), use_tensor=False)[0]
        checks.append(Check(name, f"proj clip {i} ({len(c) / SAMPLE_RATE:.1f} s)", float(np.abs(enc.embed([c])[0] - want).max())))
    return checks


def verify_laion_clap(checkpoint: str | None, make_clips: Any, device: str = "cpu") -> list[Any]:
    return _verify("laion-clap", checkpoint, make_clips, device)


def verify_laion_clap_fusion(checkpoint: str | None, make_clips: Any, device: str = "cpu") -> list[Any]:
    return _verify("laion-clap-fusion", checkpoint, make_clips, device)


def verify_laion_clap_music_speech(checkpoint: str | None, make_clips: Any, device: str = "cpu") -> list[Any]:
    return _verify("laion-clap-music-speech", checkpoint, make_clips, device)


def verify_laion_clap_music(checkpoint: str | None, make_clips: Any, device: str = "cpu") -> list[Any]:
    return _verify("laion-clap-music", checkpoint, make_clips, device)


# ----------------------------------------------------------------------------- reference comparison

#: Small RoBERTa for reference builds without the hub (the audio tower is full size either way).
SMALL_TEXT = dict(vocab_size=99, num_hidden_layers=1, intermediate_size=64, max_position_embeddings=40)


def reference_model(amodel: str = "HTSAT-tiny", fusion: bool = False, text: dict[str, Any] | None = None,
                    seed: int = 0) -> Any:
    """laion_clap's own ``CLAP`` (its ``create_model``) with random weights, built offline.

    Its data-pipeline imports (h5py, ftfy, wget, braceexpand, webdataset) are stood in for by empty
    modules where missing, and ``CLAP.__init__``'s ``RobertaModel.from_pretrained('roberta-base')``
    by a random RoBERTa of ``text`` (default :data:`SMALL_TEXT`). torchvision must import (a test
    stubs it). BatchNorm statistics are randomised too, so that they matter in comparisons.
    """
    import importlib
    import importlib.machinery
    import importlib.util
    import os
    import sys
    import types

    import transformers

    spec = importlib.util.find_spec("laion_clap")
    if spec is None:
        raise ModuleNotFoundError("laion_clap is not installed (pip install --no-deps laion_clap==1.1.7)", name="laion_clap")
    pkg = os.path.dirname(spec.origin)
    for name in ("ftfy", "h5py", "wget", "braceexpand", "webdataset"):  # data pipeline only
        if name not in sys.modules and importlib.util.find_spec(name) is None:
            sys.modules[name] = types.ModuleType(name)
            sys.modules[name].__spec__ = importlib.machinery.ModuleSpec(name, None)
    sys.path.insert(0, pkg)  # laion_clap imports its clap_module as a top-level package
    try:
        clap_module = importlib.import_module("clap_module")
        clap_model = importlib.import_module("clap_module.model")
    finally:
        sys.path.remove(pkg)
    config = transformers.RobertaConfig(**dict(ROBERTA_BASE, **(text or SMALL_TEXT)))

    class _Roberta:
        @staticmethod
        def from_pretrained(name: str) -> Any:
            return transformers.RobertaModel(config)

    real = clap_model.RobertaModel
    clap_model.RobertaModel = _Roberta
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model, _ = clap_module.create_model(amodel, "roberta", precision="fp32", device="cpu", enable_fusion=fusion,
                                                fusion_type="aff_2d" if fusion else "None")
            for name, buf in model.named_buffers():
                if name.endswith("running_mean"):
                    buf.normal_(0, 0.5)
                elif name.endswith("running_var"):
                    buf.uniform_(0.5, 2.0)
    finally:
        clap_model.RobertaModel = real
    return model.eval()


def save_official_layout(model: Any, path: str | Path, max_positions: int) -> dict[str, torch.Tensor]:
    """Save a reference ``CLAP`` as the released files are: ``{"state_dict": {"module." + key: ...}}``
    with the ``text_branch.embeddings.position_ids`` buffer older transformers saved."""
    state = {"module." + k: v for k, v in model.state_dict().items()}
    state["module.text_branch.embeddings.position_ids"] = torch.arange(max_positions)[None]
    torch.save({"epoch": 45, "state_dict": state}, path)
    return state


def compare_with_reference(device: str = "cpu", amodel: str = "HTSAT-tiny", seed: int = 0) -> dict[str, float]:
    """Max abs differences, ausweep vs laion_clap's own CLAP, on random weights in the official layout.

    For the GPU script (and the unit test): audio embeddings of a 10 s clip and a 3.3 s clip
    (repeat-padded, as LAION's eval does), text embeddings of two id sequences. Each < 1e-4 on CPU.
    """
    import tempfile

    import transformers as tf

    from ausweep.models.audio import ClapAudioEncoder

    # transformers' side first: its lazy imports must not run while a test stands in for torchvision
    model = tf.ClapModel(clap_config(amodel, False, SMALL_TEXT))
    fe = feature_extractor(False)
    ref = reference_model(amodel, fusion=False, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        save_official_layout(ref, Path(tmp) / "ref.pt", SMALL_TEXT["max_position_embeddings"])
        state = read_state_dict(Path(tmp) / "ref.pt")
    converted, _ = convert_state_dict(state, model, "reference", fe)
    model.load_state_dict(converted, strict=True)

    enc = ClapAudioEncoder(model.eval(), fe, "reference", device=device)
    g = np.random.default_rng(seed)
    waves = [np.round(0.3 * g.standard_normal(int(s * SAMPLE_RATE)).clip(-1, 1) * 32767).astype(np.float32) / 32767
             for s in (10.0, 3.3)]
    batch = []
    for w in waves:  # laion_clap's get_audio_features, 'repeatpad' for short clips
        x = np.tile(w, 480000 // len(w)) if len(w) < 480000 else w[:480000]
        batch.append({"waveform": torch.from_numpy(np.pad(x, (0, 480000 - len(x)))), "longer": torch.tensor([False])})
    ids = torch.tensor([[0, 5, 17, 42, 2, 1, 1], [0, 8, 9, 2, 1, 1, 1]])
    mask = (ids != 1).long()
    ref = ref.to(device)
    with torch.no_grad():
        want = ref.get_audio_embedding(batch).cpu().numpy()
        want_t = torch.nn.functional.normalize(ref.encode_text({"input_ids": ids, "attention_mask": mask}, device), dim=-1)
        got_t = model.get_text_features(input_ids=ids.to(device), attention_mask=mask.to(device))
        got_t = torch.nn.functional.normalize(got_t if isinstance(got_t, torch.Tensor) else got_t.pooler_output, dim=-1)
    got = enc.embed(waves)
    return {"audio_proj": float(np.abs(got - want).max()), "text_proj": float((got_t - want_t).abs().max()),
            "scale": float(np.abs(want).max())}
