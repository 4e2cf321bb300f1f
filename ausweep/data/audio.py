"""Reading audio files: the one place the pipeline turns a clip path into a waveform.

Extraction (stage 3) calls :func:`read_audio` for every clip of a :class:`~ausweep.data.SoundSet`
and hands the waveform to an audio encoder. Every way a file can be bad (missing, corrupt, empty,
non-finite samples) raises :class:`AudioReadError` with a one-line message naming the file, so a
sweep over thousands of FSD50K clips points at the clip to fix instead of dying in a decoder.
"""

from __future__ import annotations

import io
import math
from fractions import Fraction
from pathlib import Path

import numpy as np


class AudioReadError(ValueError):
    """An audio file could not be turned into a waveform. ``str()`` is one line: ``<path>: <what>``."""

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = str(path), " ".join(str(reason).split())  # one line, always
        super().__init__(f"{self.path}: {self.reason}")

    def __reduce__(self):  # survive pickling, so a Ray actor's error reaches the driver intact
        return type(self), (self.path, self.reason)


def read_audio(path: str | Path, sample_rate: int, max_seconds: float | None = None) -> np.ndarray:
    """Read ``path`` as a float32 mono waveform ``(num_samples,)`` in [-1, 1] at ``sample_rate``.

    Channels are averaged to mono; a file at another rate is resampled with a polyphase filter
    (``scipy.signal.resample_poly``); with ``max_seconds`` only the first ``max_seconds`` are kept
    (and only about that much is decoded, so long FSD50K dev clips stay cheap). Any format
    libsndfile reads works (wav, flac, ogg). ``path`` may name a member of a tar shard,
    ``shard.tar#key.flac`` (:mod:`ausweep.data.tars`), which is read without unpacking the shard.

    Raises :class:`AudioReadError` naming the file when it is missing, cannot be decoded, holds no
    samples, or holds NaN/inf samples.
    """
    import soundfile as sf  # the data stage is importable without the audio stack

    from ausweep.data.tars import TarMemberError, read_member, split_member_path

    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if max_seconds is not None and max_seconds <= 0:
        raise ValueError(f"max_seconds must be positive or None, got {max_seconds}")
    in_tar = split_member_path(path)
    source: str | io.BytesIO
    if in_tar is not None:  # "shard.tar#member.flac": read in place (ausweep.data.tars)
        try:
            source = io.BytesIO(read_member(*in_tar))
        except TarMemberError as e:
            raise AudioReadError(e.where, e.reason) from None
    else:
        path = Path(path)
        if not path.is_file():
            raise AudioReadError(path, "file not found" if not path.exists() else "not a regular file")
        source = str(path)
    try:
        with sf.SoundFile(source) as f:
            file_rate = f.samplerate
            # Decode a little past max_seconds only: resampling needs no more than that.
            frames = -1 if max_seconds is None else int(math.ceil(max_seconds * file_rate)) + 1
            data = f.read(frames=frames, dtype="float32", always_2d=True)
    except Exception as e:  # libsndfile raises LibsndfileError/RuntimeError/TypeError by version
        raise AudioReadError(path, f"cannot be decoded as audio ({type(e).__name__}: {e})") from None
    if data.shape[0] == 0:
        raise AudioReadError(path, "is empty (0 samples)")
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise AudioReadError(path, f"contains {bad} NaN/inf samples")

    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if file_rate != sample_rate:
        from scipy.signal import resample_poly

        ratio = Fraction(sample_rate, file_rate)  # 16000/44100 -> 160/441
        wave = resample_poly(wave, ratio.numerator, ratio.denominator).astype(np.float32)
    if max_seconds is not None:
        wave = wave[: int(round(max_seconds * sample_rate))]
    # Float files may exceed full scale and the resampling filter can overshoot slightly;
    # encoders expect [-1, 1].
    return np.clip(wave, -1.0, 1.0).astype(np.float32, copy=False)
