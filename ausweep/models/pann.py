"""PANN CNN14 (Kong et al. 2020, "PANNs: Large-Scale Pretrained Audio Neural Networks for Audio
Pattern Recognition"), loaded from its official released checkpoint ``Cnn14_mAP=0.431.pth``.

CNN14 is trained with AudioSet's labels (supervised tagging, 527 classes), not self-supervised.

The model code here is ausweep's own, written to the layout of the released state dict (every key
of ``checkpoint["model"]`` is consumed, none is left over) and checked against the reference package
``panns_inference`` in ``tests/unit/test_pann.py`` (same embeddings within 1e-4). The reference
needs librosa and torchlibrosa; ausweep does not: the front end's STFT kernels and mel matrix are
weights of the checkpoint (``spectrogram_extractor.stft.conv_*``, ``logmel_extractor.melW``) and are
used as stored.

Front end: 32 kHz mono; STFT as two 1-D convolutions (1024-sample Hann window, hop 320 = 10 ms,
centred with reflection); power; 64 mel bands 50 Hz - 14 kHz (librosa/Slaney filters); 10 log10
(floor 1e-10); BatchNorm over mel bands. Model: six blocks of two 3x3 conv + BN + ReLU, 2x2 average
pooling after the first five; mean over frequency; max + mean over time; fc1 (2048) + ReLU.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ausweep.models.audio import AudioEncoderBase
from ausweep.models.checkpoint_files import OfficialFile, load_state_dict, load_strict, locate

PANN_FILE = OfficialFile(
    model="pann-cnn14",
    filename="Cnn14_mAP=0.431.pth",
    url="https://zenodo.org/record/3987831/files/Cnn14_mAP%3D0.431.pth?download=1",
    min_bytes=300_000_000,
)

SAMPLE_RATE = 32000
POOLINGS = ("embedding", "pooled")


def _modules() -> dict[str, type]:
    """The torch modules, built on first use so importing this file does not import torch."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Conv1dWeight(nn.Module):
        def __init__(self, out_channels: int, width: int):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(out_channels, 1, width), requires_grad=False)

    class Stft(nn.Module):
        """Real and imaginary DFT kernels (window applied) as the checkpoint stores them."""

        def __init__(self, n_fft: int):
            super().__init__()
            self.conv_real, self.conv_imag = Conv1dWeight(n_fft // 2 + 1, n_fft), Conv1dWeight(n_fft // 2 + 1, n_fft)

    class Spectrogram(nn.Module):
        def __init__(self, n_fft: int):
            super().__init__()
            self.stft = Stft(n_fft)

    class LogMel(nn.Module):
        def __init__(self, n_fft: int, mel_bins: int):
            super().__init__()
            self.melW = nn.Parameter(torch.zeros(n_fft // 2 + 1, mel_bins), requires_grad=False)

    class ConvBlock(nn.Module):
        def __init__(self, cin: int, cout: int):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
            self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
            self.bn1, self.bn2 = nn.BatchNorm2d(cout), nn.BatchNorm2d(cout)

        def forward(self, x: torch.Tensor, pool: int) -> torch.Tensor:
            x = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
            return F.avg_pool2d(x, pool) if pool > 1 else x

    class Cnn14(nn.Module):
        """CNN14 with the released state dict's parameter names. ``forward``: (B, samples) at 32 kHz
        -> (pooled conv features (B, 2048), embedding = ReLU(fc1(pooled)) (B, 2048))."""

        def __init__(self, n_fft: int = 1024, hop: int = 320, mel_bins: int = 64, classes: int = 527):
            super().__init__()
            self.hop, self.n_fft = hop, n_fft
            self.spectrogram_extractor = Spectrogram(n_fft)
            self.logmel_extractor = LogMel(n_fft, mel_bins)
            self.bn0 = nn.BatchNorm2d(mel_bins)
            widths = [1, 64, 128, 256, 512, 1024, 2048]
            for i in range(6):
                setattr(self, f"conv_block{i + 1}", ConvBlock(widths[i], widths[i + 1]))
            self.fc1 = nn.Linear(2048, 2048)
            self.fc_audioset = nn.Linear(2048, classes)  # in the file; its tag probabilities are not features

        def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            stft = self.spectrogram_extractor.stft
            x = F.pad(wave[:, None], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
            real = F.conv1d(x, stft.conv_real.weight, stride=self.hop)  # (B, bins, frames)
            imag = F.conv1d(x, stft.conv_imag.weight, stride=self.hop)
            power = (real**2 + imag**2).transpose(1, 2)[:, None]  # (B, 1, frames, bins)
            x = 10.0 * torch.log10(torch.clamp(power @ self.logmel_extractor.melW, min=1e-10))  # ref 1.0: no offset
            x = self.bn0(x.transpose(1, 3)).transpose(1, 3)  # BatchNorm over mel bands
            for i in range(6):
                x = getattr(self, f"conv_block{i + 1}")(x, 2 if i < 5 else 1)
            x = x.mean(3)  # over frequency: (B, 2048, frames / 32)
            pooled = x.max(2).values + x.mean(2)
            return pooled, F.relu(self.fc1(pooled))

    return {"Cnn14": Cnn14}


class PannEncoder(AudioEncoderBase):
    """PANN CNN14 (AudioSet tagging, mAP .431), one vector per clip.

    Clip length and windowing: each clip is encoded whole at its own length, as panns_inference's
    ``AudioTagging.inference`` does (CNN14 was trained on 10 s clips; the convolutions and the
    global pooling take any length). No windowing and no padding across a batch, so a clip's vector
    does not depend on its batch; clips shorter than 0.31 s (32 frames, what five 2x poolings need)
    are zero-padded to it (the reference fails on them).

    Pooling: ``embedding`` (default; ``mean`` is an alias): the 2048-d ReLU(fc1) output that
    panns_inference returns as ``embedding``, computed from the max + mean over time of the
    frequency-averaged last conv block; ``pooled``: that max + mean itself (2048-d, before fc1).
    """

    def __init__(self, net: Any, name: str = "pann-cnn14", device: str = "cpu", pooling: str = "embedding",
                 batch_size: int = 8):
        import torch

        if pooling == "mean":
            pooling = "embedding"
        if pooling not in POOLINGS:
            raise ValueError(f"audio model '{name}' supports pooling {POOLINGS} ('mean' = 'embedding'), got {pooling!r}")
        self.name, self.device, self.pooling, self.batch_size = name, device, pooling, batch_size
        self.sample_rate, self.dim = SAMPLE_RATE, 2048
        self.net = net.to(device).eval()
        self.min_samples = 31 * 320  # 32 frames after centring
        self._torch = torch

    def _embed_batch(self, waves: list[np.ndarray]) -> np.ndarray:
        torch = self._torch
        out = []
        with torch.no_grad():
            for w in waves:
                x = torch.from_numpy(w)
                if len(x) < self.min_samples:
                    x = torch.nn.functional.pad(x, (0, self.min_samples - len(x)))
                pooled, embedding = self.net(x[None].to(self.device))
                out.append((embedding if self.pooling == "embedding" else pooled)[0].float().cpu().numpy())
        return np.stack(out)


def load_pann(name: str = "pann-cnn14", device: str = "cpu", revision: str | None = None, checkpoint: str | None = None,
              **options: Any) -> PannEncoder:
    """CNN14 from the official ``Cnn14_mAP=0.431.pth`` (see :mod:`ausweep.models.checkpoint_files`
    for where it is looked for). Options: ``pooling``."""
    if revision is not None:
        raise ValueError(f"audio model '{name}' loads a released checkpoint file; it has no revisions")
    path = locate(PANN_FILE, checkpoint)
    state = load_state_dict(path, name, inner_key="model")
    if "fc_audioset.weight" not in state or "logmel_extractor.melW" not in state:
        raise ValueError(f"audio model '{name}': checkpoint {path} is not a PANN CNN14 state dict")
    net = _modules()["Cnn14"](n_fft=int(state["spectrogram_extractor.stft.conv_real.weight"].shape[-1]),
                              mel_bins=int(state["logmel_extractor.melW"].shape[1]),
                              classes=int(state["fc_audioset.weight"].shape[0]))
    load_strict(net, state, path, name)
    return PannEncoder(net, name=name, device=device, **options)
