"""PaSST (Koutini et al. 2022, "Efficient Training of Audio Transformers with Patchout"), loaded
from its official released checkpoint file, as an audio encoder of the probing study.

The model code here is ausweep's own, written to the layout of the released state dict (every key
of ``passt-s-f128-p16-s10-ap.476-swa.pt`` is consumed, none is left over) and checked against the
reference package ``hear21passt`` in ``tests/unit/test_passt.py`` (same embeddings within 1e-4).
The reference is not needed at run time; its front end imports torchaudio, which has no build for
the torch used here, so :func:`kaldi_mel_banks` re-implements the one torchaudio function it uses.

Front end (hear21passt's ``AugmentMelSTFT`` in eval mode): 32 kHz mono; pre-emphasis (x[t] -
0.97 x[t-1]); STFT with an 800-sample symmetric Hann window, 1024-point FFT, hop 320 (10 ms),
centred with reflection; power; 128 Kaldi mel bands from 0 to 15 kHz; ``(log(mel + 1e-5) + 4.5) /
5``. Model: 16x16 patches at stride 10 (12 frequency x up to 99 time positions for 10 s), separate
frequency and time position embeddings, CLS and distillation tokens, 12 ViT blocks of width 768.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ausweep.models.audio import AudioEncoderBase
from ausweep.models.checkpoint_files import OfficialFile, load_state_dict, load_strict, locate

PASST_FILE = OfficialFile(
    model="passt",
    filename="passt-s-f128-p16-s10-ap.476-swa.pt",
    url="https://github.com/kkoutini/PaSST/releases/download/v0.0.1-audioset/passt-s-f128-p16-s10-ap.476-swa.pt",
    min_bytes=100_000_000,
)

SAMPLE_RATE = 32000
POOLINGS = ("tokens", "patches", "scene")


def kaldi_mel_banks(num_bins: int, n_fft: int, sample_rate: float, low_freq: float, high_freq: float) -> Any:
    """float32 (num_bins, n_fft // 2): Kaldi's triangular mel filters, as
    ``torchaudio.compliance.kaldi.get_mel_banks`` returns them without VTLN warping (factor 1.0).

    Kaldi's mel scale is ``1127 ln(1 + f / 700)``; the triangles are equally spaced and evaluated
    on that scale at the FFT bin frequencies ``k * sample_rate / n_fft`` for ``k < n_fft / 2`` (the
    Nyquist bin has no filter). ``high_freq <= 0`` counts back from the Nyquist frequency.
    """
    import torch

    nyquist = 0.5 * sample_rate
    if high_freq <= 0.0:
        high_freq += nyquist
    if not (num_bins > 3 and n_fft % 2 == 0 and 0.0 <= low_freq < nyquist and 0.0 < high_freq <= nyquist
            and low_freq < high_freq):
        raise ValueError(f"bad mel bank: {num_bins} bins, n_fft {n_fft}, {low_freq}-{high_freq} Hz at {sample_rate} Hz")

    def mel(f: float) -> float:
        return 1127.0 * math.log(1.0 + f / 700.0)

    lo, hi = mel(low_freq), mel(high_freq)
    step = (hi - lo) / (num_bins + 1)
    k = torch.arange(num_bins).unsqueeze(1)  # (bins, 1)
    left, centre, right = lo + k * step, lo + (k + 1.0) * step, lo + (k + 2.0) * step
    # float arithmetic in the order torchaudio uses, so the filters agree to the last bit
    bin_mel = (1127.0 * (1.0 + (sample_rate / n_fft) * torch.arange(n_fft / 2) / 700.0).log()).unsqueeze(0)
    rising = (bin_mel - left) / (centre - left)
    falling = (right - bin_mel) / (right - centre)
    return torch.max(torch.zeros(1), torch.min(rising, falling))


def _modules() -> dict[str, type]:
    """The torch modules, built on first use so importing this file does not import torch."""
    import torch
    from torch import nn

    class PasstMel(nn.Module):
        """(B, samples) at 32 kHz -> (B, 128, frames) normalised log-mel; frames = 1 + (samples - 1) // 320."""

        def __init__(self, n_mels: int = 128, sample_rate: int = SAMPLE_RATE, win_length: int = 800,
                     hop: int = 320, n_fft: int = 1024, fmin: float = 0.0, fmax: float = 15000.0):
            super().__init__()
            self.n_fft, self.hop, self.win_length = n_fft, hop, win_length
            self.register_buffer("window", torch.hann_window(win_length, periodic=False), persistent=False)
            banks = torch.nn.functional.pad(kaldi_mel_banks(n_mels, n_fft, sample_rate, fmin, fmax), (0, 1))
            self.register_buffer("mel_basis", banks, persistent=False)  # (n_mels, n_fft // 2 + 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x[:, 1:] - 0.97 * x[:, :-1]  # pre-emphasis (one sample shorter, as a valid conv1d)
            spec = torch.stft(x, self.n_fft, hop_length=self.hop, win_length=self.win_length, window=self.window,
                              center=True, normalized=False, return_complex=True)
            power = torch.view_as_real(spec).pow(2).sum(-1)  # (B, bins, frames)
            mel = torch.matmul(self.mel_basis, power)
            return ((mel + 1e-5).log() + 4.5) / 5.0

    class Mlp(nn.Module):
        def __init__(self, dim: int, hidden: int):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(nn.functional.gelu(self.fc1(x)))

    class Attention(nn.Module):
        def __init__(self, dim: int, heads: int):
            super().__init__()
            self.heads = heads
            self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, n, d = x.shape
            q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
            weights = ((q @ k.transpose(-2, -1)) * (d // self.heads) ** -0.5).softmax(-1)
            return self.proj((weights @ v).transpose(1, 2).reshape(b, n, d))

    class Block(nn.Module):
        def __init__(self, dim: int, heads: int):
            super().__init__()
            self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
            self.attn, self.mlp = Attention(dim, heads), Mlp(dim, 4 * dim)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))

    class PatchEmbed(nn.Module):
        def __init__(self, dim: int, patch: int, stride: int):
            super().__init__()
            self.proj = nn.Conv2d(1, dim, kernel_size=patch, stride=stride)

    class PasstNet(nn.Module):
        """PaSST-S with the released state dict's parameter names. ``forward``: (B, 1, mels, frames)
        -> hidden (B, 2 + f * t, D) after the final norm (CLS, distillation, then patches frequency-
        major) and the AudioSet logits (B, classes) of the mean of the two tokens."""

        def __init__(self, dim: int = 768, depth: int = 12, heads: int = 12, patch: int = 16, stride: int = 10,
                     f_grid: int = 12, t_grid: int = 99, classes: int = 527):
            super().__init__()
            self.patch_embed = PatchEmbed(dim, patch, stride)
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
            self.dist_token = nn.Parameter(torch.zeros(1, 1, dim))
            self.new_pos_embed = nn.Parameter(torch.zeros(1, 2, dim))
            self.freq_new_pos_embed = nn.Parameter(torch.zeros(1, dim, f_grid, 1))
            self.time_new_pos_embed = nn.Parameter(torch.zeros(1, dim, 1, t_grid))
            self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
            self.norm = nn.LayerNorm(dim, eps=1e-6)
            self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, classes))
            self.head_dist = nn.Linear(dim, classes)  # the distillation head: in the file, unused for features

        def forward(self, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = self.patch_embed.proj(spec)  # (B, D, f, t)
            t = x.shape[-1]
            if t > self.time_new_pos_embed.shape[-1]:
                raise ValueError(f"PaSST input has {t} time patches; the checkpoint has positions for "
                                 f"{self.time_new_pos_embed.shape[-1]}")
            x = x + self.time_new_pos_embed[..., :t] + self.freq_new_pos_embed  # shorter clips: first t positions
            x = x.flatten(2).transpose(1, 2)  # (B, f * t, D)
            tokens = torch.cat([self.cls_token + self.new_pos_embed[:, :1], self.dist_token + self.new_pos_embed[:, 1:]], 1)
            x = self.norm(self.blocks(torch.cat([tokens.expand(len(x), -1, -1), x], 1)))
            return x, self.head((x[:, 0] + x[:, 1]) / 2)

    return {"PasstMel": PasstMel, "PasstNet": PasstNet}


def passt_net(**arch: Any) -> Any:
    """A randomly initialised :class:`PasstNet`; the defaults are the released PaSST-S architecture."""
    return _modules()["PasstNet"](**arch)


def build_passt(state: dict, stride: int = 10) -> Any:
    """A :class:`PasstNet` shaped after a state dict (width, depth, grids and classes read from it;
    heads = width / 64 as in every released PaSST; ``stride`` is not in the weights)."""
    dim = int(state["cls_token"].shape[-1])
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    return passt_net(
        dim=dim, depth=depth, heads=dim // 64, patch=int(state["patch_embed.proj.weight"].shape[-1]), stride=stride,
        f_grid=int(state["freq_new_pos_embed"].shape[2]), t_grid=int(state["time_new_pos_embed"].shape[3]),
        classes=int(state["head.1.weight"].shape[0]),
    )


class PasstEncoder(AudioEncoderBase):
    """PaSST-S (AudioSet, mAP .476, SWA), one vector per clip, computed as hear21passt's
    ``get_scene_embeddings`` computes it.

    Clip length and windowing: a clip of up to ``window_s`` (10 s, the training length) is encoded
    whole at its own length (the time position embeddings are cut to it; no padding, so a clip's
    vector does not depend on its batch). A longer clip is cut into 10 s windows every 2.5 s after
    reflection-padding 5 s at both ends, and the windows' vectors are averaged. Clips shorter than
    0.15 s (16 frames, one patch) are zero-padded to it; the reference would fail on them.

    Pooling, all after the final layer norm of the last block: ``tokens`` (default; ``mean`` is an
    alias): the mean of the CLS and distillation tokens (768-d), the features PaSST's classifier
    reads and hear21passt's ``embed_only`` embedding; ``scene``: hear21passt's default 1295-d scene
    embedding, the 527 AudioSet logits followed by those features; ``patches``: the mean of the
    patch tokens (768-d).
    """

    def __init__(self, net: Any, name: str = "passt", device: str = "cpu", pooling: str = "tokens",
                 batch_size: int = 8, window_s: float = 10.0, hop_s: float = 2.5):
        import torch

        if pooling == "mean":
            pooling = "tokens"
        if pooling not in POOLINGS:
            raise ValueError(f"audio model '{name}' supports pooling {POOLINGS} ('mean' = 'tokens'), got {pooling!r}")
        self.name, self.device, self.pooling, self.batch_size = name, device, pooling, batch_size
        self.sample_rate = SAMPLE_RATE
        self.mel = _modules()["PasstMel"]().to(device).eval()
        self.net = net.to(device).eval()
        self._torch = torch
        self.window, self.hop = int(window_s * SAMPLE_RATE), int(hop_s * SAMPLE_RATE)
        self.min_samples = 1 + 320 * 15  # 16 frames after pre-emphasis
        classes = int(net.head[1].out_features)
        width = int(net.cls_token.shape[-1])
        self.dim = classes + width if pooling == "scene" else width

    def _segments(self, wave: np.ndarray) -> Any:
        """(S, samples): the clip itself, or its 10 s windows (see the class docstring)."""
        torch = self._torch
        x = torch.from_numpy(wave)
        if len(x) < self.min_samples:
            x = torch.nn.functional.pad(x, (0, self.min_samples - len(x)))
        if len(x) <= self.window:
            return x[None]
        pad = self.window // 2
        padded = torch.nn.functional.pad(x[None, None], (pad, pad), mode="reflect")[0, 0]
        starts = range(0, len(padded) - self.window + 1, self.hop)
        return torch.stack([padded[s : s + self.window] for s in starts])

    def _pool(self, segments: Any) -> Any:
        hidden, logits = self.net(self.mel(segments.to(self.device)).unsqueeze(1))
        features = (hidden[:, 0] + hidden[:, 1]) / 2
        if self.pooling == "tokens":
            return features
        if self.pooling == "scene":
            return self._torch.cat([logits, features], 1)
        return hidden[:, 2:].mean(1)

    def _embed_batch(self, waves: list[np.ndarray]) -> np.ndarray:
        torch = self._torch
        out = []
        with torch.no_grad():
            for w in waves:
                segs = self._segments(w)
                vecs = torch.cat([self._pool(segs[i : i + self.batch_size]) for i in range(0, len(segs), self.batch_size)])
                out.append(vecs.mean(0).float().cpu().numpy())
        return np.stack(out)


def load_passt(name: str = "passt", device: str = "cpu", revision: str | None = None, checkpoint: str | None = None,
               **options: Any) -> PasstEncoder:
    """PaSST-S from the official ``passt-s-f128-p16-s10-ap.476-swa.pt`` (see
    :mod:`ausweep.models.checkpoint_files` for where it is looked for). Options: ``pooling``,
    ``batch_size`` (windows per forward pass), ``window_s``, ``hop_s``."""
    if revision is not None:
        raise ValueError(f"audio model '{name}' loads a released checkpoint file; it has no revisions")
    path = locate(PASST_FILE, checkpoint)
    state = load_state_dict(path, name, inner_key="model")
    try:
        net = build_passt(state)
    except KeyError as e:
        raise ValueError(f"audio model '{name}': checkpoint {path} is not a PaSST state dict (no key {e})") from e
    load_strict(net, state, path, name)
    return PasstEncoder(net, name=name, device=device, **options)
