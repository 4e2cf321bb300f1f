"""A generated, offline DEMO sound set. It is NOT FSD50K, and no result on it says anything about
FSD50K or about the Ngo & Kim study.

Why it exists: the pipeline (data -> extract -> probe -> sweep) has to run end to end on a laptop,
in CI and in tests, without downloading the 30 GB FSD50K. This module writes a small set of
everyday sounds whose names a language model knows ("siren", "doorbell", "man speaking"),
synthesised with ``sox`` (tones, noise, plucked strings) and voiced with ``espeak-ng`` (speech).
Clips within a class vary in pitch, tempo, voice and wording, so an audio encoder can tell the
classes apart without every clip being a copy.

The set is generated once into a cache folder (``$AUSWEEP_CACHE/demo_sounds`` or
``~/.cache/ausweep/demo_sounds``) with a ``manifest.json`` and a ``README.txt`` that say what it
is. Later calls with the same parameters reuse it. Generation writes into a temporary folder next
to the cache and renames it into place when complete, so a crash never leaves a partial set that
looks complete.

This module holds the recipes (one per class); the sox/espeak-ng machinery that runs them and the
atomic install are in :mod:`ausweep.data.synth`. Needs ``sox`` and ``espeak-ng`` on the PATH (``apt-get install sox espeak-ng``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ausweep.data import Clip, SoundSet
from ausweep.data.synth import (
    FEMALE_VOICES,
    MALE_VOICES,
    MAX_CLIP_SECONDS,
    Ctx,
    DemoToolError,
    fmt,
    install_folder,
    made_by,
    midi_hz,
    new_partial_dir,
    read_manifest,
    render_clip,
    require_tools,
)

__all__ = ["DEMO_CLASSES", "GENERATOR_VERSION", "DemoClass", "DemoToolError", "default_demo_dir", "make_demo_soundset"]

logger = logging.getLogger(__name__)

# Bump whenever a recipe changes what it writes: a cache from another version is regenerated.
GENERATOR_VERSION = 1
_GENERATOR = "ausweep.data.demo"  # the manifest's "generator": what marks a folder as ours to replace

README = """\
GENERATED DEMO SOUNDS - THIS IS NOT FSD50K.

Every file here was synthesised by ausweep.data.demo (generator version {version}) with sox and
espeak-ng: tones, noise and plucked strings for the object classes, a speech synthesiser for the
speech classes. They stand in for real recordings so the ausweep pipeline can run offline.
Nothing measured on these sounds says anything about FSD50K or about real-world audio.

manifest.json lists every class, its object phrase and each clip with the recipe parameters
that made it. Delete this folder to force regeneration.
"""


# ----------------------------------------------------------------------------- recipe helpers


Recipe = Callable[[np.random.Generator, Ctx], tuple[dict[str, Any], list[list[str]]]]


@dataclass(frozen=True)
class DemoClass:
    name: str  # class id, e.g. "alarm_clock"
    text: str  # object phrase for the LM template, e.g. "alarm clock"
    tool: str  # "sox" or "espeak-ng": what makes it
    recipe: Recipe


# ----------------------------------------------------------------------------- sox recipes
# Each recipe draws its parameters from the clip's own RNG and returns (parameters, commands).
# The parameters go into the manifest; tests read "freq_hz" back to check the pitch.


def _siren(r: np.random.Generator, c: Ctx) -> tuple[dict, list[list[str]]]:
    # Two-tone wail: the pitch bends up an interval and back down, again and again. (bend keeps
    # the phase continuous; splicing sweep files together would click at every turn.)
    lo = r.uniform(550, 800)
    hi = lo * r.uniform(1.6, 2.1)
    half = r.uniform(0.3, 0.55)
    cents = 1200 * np.log2(hi / lo)
    turns = int(np.ceil(MAX_CLIP_SECONDS / half))
    bends = [f"0,{fmt(cents if i % 2 == 0 else -cents, 1)},{fmt(half)}" for i in range(turns)]
    return {"low_hz": round(lo, 1), "high_hz": round(hi, 1), "sweep_s": round(half, 3)}, [
        c.synth(c.raw, "synth", fmt(MAX_CLIP_SECONDS), "sine", fmt(lo, 1), "gain", "-6", "bend", "-f", "80", *bends),
    ]


def _doorbell(r: np.random.Generator, c: Ctx) -> tuple[dict, list[list[str]]]:
    # Ding-dong: two struck tones (fundamental + octave), the second a third/fourth/fifth lower.
    f1 = r.uniform(600, 880)
    f2 = f1 * float(r.choice([0.8, 0.75, 2 / 3]))
    ding, dong = c.path("ding.wav"), c.path("dong.wav")
    t1 = r.uniform(0.55, 0.75)

    def strike(out: str, f: float, dur: float) -> list[str]:
        ring = 2.5 * dur  # decay over longer than the note, then cut: a bell still ringing
        return c.synth(out, "synth", fmt(ring), "sine", fmt(f, 1), "sine", fmt(2 * f, 1),
                       "remix", "1v1,2v0.35", "fade", "l", "0.003", fmt(ring), fmt(ring - 0.003), "trim", "0", fmt(dur))

    return {"ding_hz": round(f1, 1), "dong_hz": round(f2, 1)}, [
        strike(ding, f1, t1),
        strike(dong, f2, MAX_CLIP_SECONDS - t1),
        c.sox([ding, dong], c.raw),
    ]


def _telephone(r: np.random.Generator, c: Ctx) -> tuple[dict, list[list[str]]]:
    # The North American ring tone pair, 440 + 480 Hz, in a double-ring cadence.
    detune = r.uniform(0.98, 1.02)
    on, gap, lead = r.uniform(0.35, 0.45), r.uniform(0.15, 0.25), r.uniform(0.0, 0.2)
    tone = c.path("tone.wav")
    return {"freq_hz": [round(440 * detune, 1), round(480 * detune, 1)], "on_s": round(on, 3)}, [
        c.synth(tone, "synth", fmt(on), "sine", fmt(440 * detune, 1), "sine", fmt(480 * detune, 1), "remix", "-",
                "fade", "t", "0.01", fmt(on), "0.01"),
        c.sox([tone], c.raw, "pad", "0", fmt(gap), "repeat", "1", "pad", fmt(lead), "0.4"),
    ]


def _alarm_clock(r: np.random.Generator, c: Ctx) -> tuple[dict, list[list[str]]]:
    # Fast piezo beeps in groups of four: a square tone gated by a square LFO at the beep rate
    # and by another at 1/8 of it (four beeps on, four beeps' time off).
    freq = r.uniform(2000, 3200)
    rate = r.uniform(8, 11)
    dur = fmt(MAX_CLIP_SECONDS)
    return {"freq_hz": round(freq, 1), "beeps_per_s": round(rate, 2)}, [
        c.synth(c.raw, "synth", dur, "square", fmt(freq, 1), "synth", dur, "square", "amod", fmt(rate, 3),
                "synth", dur, "square", "amod", fmt(rate / 8, 3)),
    ]


def _vibrato(depth_cents: float, rate_hz: float, seconds: float) -> list[str]:
    """``bend`` arguments swinging the pitch +-depth around its start at ``rate_hz``."""
    half = 1 / (2 * rate_hz)
    bends = [f"0,{fmt(depth_cents, 1)},{fmt(half / 2)}"]
    sign = -1
    while (len(bends) - 0.5) * half < seconds:
        bends.append(f"0,{fmt(sign * 2 * depth_cents, 1)},{fmt(half)}")
        sign = -sign
    return ["bend", "-f", "80", *bends]


def _whistle(r: np.random.Generator, c: Ctx) -> tuple[dict, list[list[str]]]:
    freq = r.uniform(1500, 2600)
    dur = r.uniform(1.2, MAX_CLIP_SECONDS)
    depth, rate = r.uniform(30, 70), r.uniform(4.5, 6.5)
    return {"freq_hz": round(freq, 1), "vibrato_cents": round(depth, 1), "vibrato_hz": round(rate, 2)}, [
        c.synth(c.raw, "synth", fmt(dur), "sine", fmt(freq, 1), "gain", "-6", *_vibrato(depth, rate, dur),
                "fade", "h", "0.05", fmt(dur), "0.1"),
    ]


def _church_bell(r: np.random.Generator, c: Ctx) -> tuple[dict, list[list[str]]]:
    # A bell's partials: hum (1/2), prime, minor-third tierce (1.2), quint, nominal (2), and above.
    f0 = r.uniform(160, 330)
    ratios = [0.5, 1.0, 1.2, 1.5, 2.0, 2.5, 3.0]
    gains = [0.6, 1.0, 0.5, 0.3, 0.6, 0.2, 0.15]
    tones = [a for ratio in ratios for a in ("sine", fmt(f0 * ratio, 1))]
    weights = ",".join(f"{i + 1}v{g}" for i, g in enumerate(gains))
    ring = 5.0
    return {"freq_hz": round(f0, 1)}, [
        c.synth(c.raw, "synth", fmt(ring), *tones, "remix", weights, "fade", "l", "0.002", fmt(ring), fmt(ring - 0.002),
                "trim", "0", fmt(MAX_CLIP_SECONDS)),
    ]


def _drum(r: np.random.Generator, c: Ctx) -> tuple[dict, list[list[str]]]:
    # A tom/kick: a sine falling in pitch plus a little noise for the stick, struck a few times.
    f0 = r.uniform(50, 110)
    hit = r.uniform(0.2, 0.35)
    period = hit + r.uniform(0.05, 0.3)
    hits = int(MAX_CLIP_SECONDS // period)
    return {"freq_hz": round(f0, 1), "period_s": round(period, 3), "hits": hits}, [
        c.synth(c.raw, "synth", fmt(hit), "sine", f"{fmt(2.5 * f0, 1)}:{fmt(f0, 1)}", "brownnoise", "remix", "1v1,2v0.25",
                "fade", "l", "0.001", fmt(hit), fmt(hit - 0.001), "pad", "0", fmt(period - hit), "repeat", str(hits - 1)),
    ]


def _noise(r: np.random.Generator, c: Ctx, kind: str, *effects: str) -> list[str]:
    # sox -R gives every clip the same noise; starting at a random offset makes them differ.
    skip = r.uniform(0, 3)
    return c.synth(c.raw, "synth", fmt(skip + MAX_CLIP_SECONDS), kind, *effects, "trim", fmt(skip))


def _wind(r: np.random.Generator, c: Ctx) -> tuple[dict, list[list[str]]]:
    # Low rumbling noise swelling in gusts.
    cutoff, gust_hz, depth = r.uniform(300, 900), r.uniform(0.4, 1.2), r.uniform(50, 85)
    return {"cutoff_hz": round(cutoff, 1), "gust_hz": round(gust_hz, 2)}, [
        _noise(r, c, "pinknoise", "highpass", "40", "lowpass", fmt(cutoff, 1), "lowpass", fmt(cutoff, 1),
               "tremolo", fmt(gust_hz, 2), fmt(depth, 1)),
    ]


def _rain(r: np.random.Generator, c: Ctx) -> tuple[dict, list[list[str]]]:
    # Steady broadband hiss with a fast patter.
    cutoff, patter = r.uniform(500, 1200), r.uniform(9, 17)
    return {"highpass_hz": round(cutoff, 1), "patter_hz": round(patter, 1)}, [
        _noise(r, c, "whitenoise", "highpass", fmt(cutoff, 1), "lowpass", "6500", "tremolo", fmt(patter, 1), "25"),
    ]


def _engine(r: np.random.Generator, c: Ctx) -> tuple[dict, list[list[str]]]:
    # A low sawtooth hum with its octave and some rumble, throbbing at the firing rate.
    f0 = r.uniform(30, 65)
    dur = fmt(MAX_CLIP_SECONDS)
    return {"freq_hz": round(f0, 1)}, [
        c.synth(c.raw, "synth", dur, "sawtooth", fmt(f0, 2), "sawtooth", fmt(2.01 * f0, 2), "brownnoise",
                "remix", "1v1,2v0.5,3v0.3", "lowpass", "700", "tremolo", fmt(f0 / 3, 2), "40"),
    ]


_GUITAR_CHORDS = {  # standard open voicings, MIDI notes from the low string up
    "G": [43, 47, 50, 55, 59, 67],
    "C": [48, 52, 55, 60, 64],
    "D": [50, 57, 62, 66],
    "Em": [40, 47, 52, 55, 59, 64],
    "Am": [45, 52, 57, 60, 64],
    "E": [40, 47, 52, 56, 59, 64],
}


def _guitar(r: np.random.Generator, c: Ctx) -> tuple[dict, list[list[str]]]:
    # A strummed chord: one plucked string per channel, each delayed a little more, mixed down.
    name = list(_GUITAR_CHORDS)[(c.k + int(r.integers(0, len(_GUITAR_CHORDS)))) % len(_GUITAR_CHORDS)]
    notes = _GUITAR_CHORDS[name]
    strum = r.uniform(0.015, 0.05)
    dur = r.uniform(1.4, MAX_CLIP_SECONDS)
    plucks = [a for n in notes for a in ("pluck", fmt(midi_hz(n), 2))]
    delays = [fmt(i * strum) for i in range(len(notes))]
    return {"chord": name, "strum_s": round(strum, 3)}, [
        c.synth(c.raw, "synth", fmt(dur), *plucks, "delay", *delays, "remix", "-", "fade", "t", "0", fmt(dur), "0.1"),
    ]


def _organ(r: np.random.Generator, c: Ctx) -> tuple[dict, list[list[str]]]:
    # A sustained triad of drawbar-like sines (fundamental, octave, two octaves), gently swirling.
    root = int(r.integers(48, 58))
    third = 4 if r.random() < 0.5 else 3
    notes = [root, root + third, root + 7]
    tones, weights = [], []
    for n in notes:
        for mult, g in ((1, 1.0), (2, 0.6), (4, 0.3)):
            tones += ["sine", fmt(midi_hz(n) * mult, 2)]
            weights.append(f"{len(weights) + 1}v{g}")
    dur = r.uniform(1.3, MAX_CLIP_SECONDS)
    return {"notes_midi": notes}, [
        c.synth(c.raw, "synth", fmt(dur), *tones, "remix", ",".join(weights), "tremolo", fmt(r.uniform(5, 7), 2), "15",
                "fade", "t", "0.06", fmt(dur), "0.15"),
    ]


def _flute(r: np.random.Generator, c: Ctx) -> tuple[dict, list[list[str]]]:
    # A breathy, nearly pure tone with weak harmonics and vibrato, in one or two notes.
    freq = r.uniform(520, 1000)
    steps = [0] if r.random() < 0.5 else [0, int(r.choice([2, 3, 5, -2]))]
    seconds = MAX_CLIP_SECONDS / len(steps)
    cmds, files = [], []
    for i, step in enumerate(steps):
        f, out = freq * 2 ** (step / 12), c.path(f"note{i}.wav")
        cmds.append(c.synth(out, "synth", fmt(seconds), "sine", fmt(f, 1), "sine", fmt(2 * f, 1), "sine", fmt(3 * f, 1),
                            "pinknoise", "remix", "1v1,2v0.2,3v0.08,4v0.05", "gain", "-6",
                            *_vibrato(r.uniform(15, 35), r.uniform(4.5, 5.5), seconds),
                            "fade", "h", "0.08", fmt(seconds), "0.08"))
        files.append(out)
    cmds.append(c.sox(files, c.raw))
    return {"freq_hz": round(freq, 1), "steps": steps}, cmds


def _car_horn(r: np.random.Generator, c: Ctx) -> tuple[dict, list[list[str]]]:
    # Two reedy tones a major third apart, honked once or twice.
    f1 = r.uniform(380, 460)
    honks = int(r.integers(1, 3))
    honk = r.uniform(0.35, 0.6) if honks == 2 else r.uniform(1.0, 1.6)
    return {"freq_hz": [round(f1, 1), round(1.25 * f1, 1)], "honks": honks}, [
        c.synth(c.raw, "synth", fmt(honk), "sawtooth", fmt(f1, 1), "sawtooth", fmt(1.25 * f1, 1), "remix", "-",
                "lowpass", "2500", "fade", "t", "0.02", fmt(honk), "0.03", "pad", "0", fmt(r.uniform(0.12, 0.25)),
                "repeat", str(honks - 1)),
    ]


def _ticking_clock(r: np.random.Generator, c: Ctx) -> tuple[dict, list[list[str]]]:
    # Tick-tock: short high clicks, alternately pitched, on the beat.
    f = r.uniform(2000, 4000)
    beat = r.uniform(0.4, 0.5)
    tick, tock = c.path("tick.wav"), c.path("tock.wav")

    def click(out: str, freq: float) -> list[str]:
        return c.synth(out, "synth", "0.02", "square", fmt(freq, 1), "fade", "l", "0.001", "0.02", "0.018",
                       "pad", "0", fmt(beat - 0.02))

    reps = int(MAX_CLIP_SECONDS // (2 * beat))
    return {"freq_hz": round(f, 1), "beat_s": round(beat, 3)}, [
        click(tick, f),
        click(tock, 0.75 * f),
        c.sox([tick, tock] * reps, c.raw),
    ]


def _heartbeat(r: np.random.Generator, c: Ctx) -> tuple[dict, list[list[str]]]:
    # Lub-dub: two low thumps, the second softer, at a resting-to-brisk pulse.
    bpm = r.uniform(60, 100)
    period = 60 / bpm
    f = r.uniform(45, 70)
    lub, dub = c.path("lub.wav"), c.path("dub.wav")
    gap = r.uniform(0.08, 0.14)
    beats = max(2, int(np.ceil(MAX_CLIP_SECONDS / period)))
    return {"bpm": round(bpm, 1), "freq_hz": round(f, 1)}, [
        c.synth(lub, "synth", "0.12", "sine", f"{fmt(1.6 * f, 1)}:{fmt(f, 1)}", "fade", "h", "0.01", "0.12", "0.09",
                "pad", "0", fmt(gap)),
        c.synth(dub, "synth", "0.1", "sine", f"{fmt(2.0 * f, 1)}:{fmt(1.2 * f, 1)}", "fade", "h", "0.01", "0.1", "0.08",
                "vol", "0.6", "pad", "0", fmt(period - 0.22 - gap)),
        c.sox([lub, dub] * beats, c.raw),
    ]


def _bird(r: np.random.Generator, c: Ctx) -> tuple[dict, list[list[str]]]:
    # Quick high chirps sweeping up (or down), in a burst.
    f1 = r.uniform(2500, 3800)
    f2 = f1 * (r.uniform(1.25, 1.6) if r.random() < 0.6 else r.uniform(0.6, 0.8))
    chirp = r.uniform(0.05, 0.12)
    gap = r.uniform(0.04, 0.15)
    n = int(np.ceil(r.uniform(1.1, 1.8) / (chirp + gap)))  # a burst of 1.1-1.8 s
    return {"freq_hz": [round(f1, 1), round(f2, 1)], "chirps": n}, [
        c.synth(c.raw, "synth", fmt(chirp), "sine", f"{fmt(f1, 1)}:{fmt(f2, 1)}", "fade", "h", "0.008", fmt(chirp), "0.02",
                "pad", "0", fmt(gap), "repeat", str(n - 1), "pad", fmt(r.uniform(0, 0.3)), "0"),
    ]


# ----------------------------------------------------------------------------- speech recipes

_SENTENCES = [
    "Could you tell me where the train station is, please?",
    "I think it is going to rain later this afternoon.",
    "We should leave early to avoid the morning traffic.",
    "The meeting has been moved to Thursday at ten.",
    "Please remember to turn off the lights when you leave.",
    "My sister bought a new bicycle last weekend.",
    "The library closes at eight o'clock tonight.",
    "Can you pass me the salt and the pepper?",
    "I have never seen such a beautiful sunset before.",
    "Let me know when you have finished reading the report.",
    "The coffee shop on the corner makes excellent bread.",
    "He forgot his umbrella on the bus again.",
]
_CHILD_SENTENCES = [
    "Look at my drawing, it is a big red dinosaur!",
    "Can we go to the playground after lunch, please?",
    "I want to build a castle in the sand today.",
    "My teddy bear is called Mister Buttons.",
    "Mommy, can I have some more apple juice?",
    "I can count all the way to one hundred!",
]
_SHOUTS = [
    "Hey! Watch out! Get back here!",
    "Stop! Stop right there! Hey!",
    "Help! Somebody help me, over here!",
    "Come on! Run! Run faster!",
    "Look out! Move out of the way!",
]


def _pick(pool: list[str], k: int, offset: int = 0) -> str:
    # Consecutive clips read consecutive lines: distinct within a class up to len(pool) clips.
    return pool[(k + offset) % len(pool)]


def _speech(c: Ctx, speak: list[str], *effects: str) -> list[list[str]]:
    # Drop espeak's leading silence so the 2 s window is speech.
    return [speak, c.sox([speak[speak.index("-w") + 1]], c.raw, "silence", "1", "0.02", "1%", *effects)]


def _man_speaking(r: np.random.Generator, c: Ctx) -> tuple[dict, list[list[str]]]:
    voice = MALE_VOICES[(c.k + int(r.integers(0, len(MALE_VOICES)))) % len(MALE_VOICES)]
    text, pitch, speed = _pick(_SENTENCES, c.k), int(r.integers(25, 50)), int(r.integers(150, 185))
    return {"voice": voice, "pitch": pitch, "speed": speed, "text": text}, _speech(
        c, c.speak(c.path("say.wav"), text, voice, speed, pitch))


def _woman_speaking(r: np.random.Generator, c: Ctx) -> tuple[dict, list[list[str]]]:
    voice = FEMALE_VOICES[(c.k + int(r.integers(0, len(FEMALE_VOICES)))) % len(FEMALE_VOICES)]
    text, pitch, speed = _pick(_SENTENCES, c.k, 4), int(r.integers(55, 80)), int(r.integers(150, 185))
    return {"voice": voice, "pitch": pitch, "speed": speed, "text": text}, _speech(
        c, c.speak(c.path("say.wav"), text, voice, speed, pitch))


def _child_speaking(r: np.random.Generator, c: Ctx) -> tuple[dict, list[list[str]]]:
    # espeak has no child voice: a high female voice, shifted up (formants too) by sox's pitch.
    voice = FEMALE_VOICES[(c.k + int(r.integers(0, len(FEMALE_VOICES)))) % len(FEMALE_VOICES)]
    text, pitch, speed = _pick(_CHILD_SENTENCES, c.k), int(r.integers(80, 99)), int(r.integers(165, 195))
    shift = int(r.integers(300, 500))
    return {"voice": voice, "pitch": pitch, "speed": speed, "shift_cents": shift, "text": text}, _speech(
        c, c.speak(c.path("say.wav"), text, voice, speed, pitch), "pitch", str(shift))


def _whispering(r: np.random.Generator, c: Ctx) -> tuple[dict, list[list[str]]]:
    voice = ["en-us+whisper", "en-us+whisperf"][(c.k + int(r.integers(0, 2))) % 2]
    text, speed = _pick(_SENTENCES, c.k, 8), int(r.integers(140, 170))
    return {"voice": voice, "speed": speed, "text": text}, _speech(
        c, c.speak(c.path("say.wav"), text, voice, speed, 50))


def _shouting(r: np.random.Generator, c: Ctx) -> tuple[dict, list[list[str]]]:
    # Loud, high, fast exclamations, driven into a little distortion.
    voice = (MALE_VOICES + FEMALE_VOICES)[(c.k * 3 + int(r.integers(0, 12))) % 12]
    text, pitch, speed = _pick(_SHOUTS, c.k), int(r.integers(70, 95)), int(r.integers(190, 230))
    return {"voice": voice, "pitch": pitch, "speed": speed, "text": text}, _speech(
        c, c.speak(c.path("say.wav"), text, voice, speed, pitch, amplitude=200), "overdrive", "12")


def _crowd(r: np.random.Generator, c: Ctx) -> tuple[dict, list[list[str]]]:
    # Several people talking at once in a room: overlapping voices, staggered, with reverb.
    n = int(r.integers(5, 8))
    voices = MALE_VOICES + FEMALE_VOICES
    cmds, parts = [], []
    for i in range(n):
        out = c.path(f"v{i}.wav")
        voice = voices[int(r.integers(0, len(voices)))]
        text = _SENTENCES[int(r.integers(0, len(_SENTENCES)))]
        cmds.append(c.speak(out, text, voice, int(r.integers(150, 190)), int(r.integers(25, 80))))
        shifted = c.path(f"p{i}.wav")
        cmds.append(c.sox([out], shifted, "pad", fmt(r.uniform(0, 0.8)), "0"))
        parts.append((shifted, r.uniform(0.5, 1.0)))
    cmds.append(c.mix(parts, c.raw, "trim", "0.3", "reverb", fmt(r.uniform(30, 70), 0)))
    return {"voices": n}, cmds


# Order matters only for display: it is the class order of the SoundSet.
DEMO_CLASSES: tuple[DemoClass, ...] = (
    DemoClass("siren", "siren", "sox", _siren),
    DemoClass("doorbell", "doorbell", "sox", _doorbell),
    DemoClass("telephone", "telephone", "sox", _telephone),
    DemoClass("alarm_clock", "alarm clock", "sox", _alarm_clock),
    DemoClass("whistle", "whistle", "sox", _whistle),
    DemoClass("church_bell", "church bell", "sox", _church_bell),
    DemoClass("drum", "drum", "sox", _drum),
    DemoClass("wind", "wind", "sox", _wind),
    DemoClass("rain", "rain", "sox", _rain),
    DemoClass("engine", "engine", "sox", _engine),
    DemoClass("guitar", "guitar", "sox", _guitar),
    DemoClass("organ", "organ", "sox", _organ),
    DemoClass("flute", "flute", "sox", _flute),
    DemoClass("car_horn", "car horn", "sox", _car_horn),
    DemoClass("ticking_clock", "ticking clock", "sox", _ticking_clock),
    DemoClass("heartbeat", "heartbeat", "sox", _heartbeat),
    DemoClass("bird", "bird", "sox", _bird),
    DemoClass("man_speaking", "man speaking", "espeak-ng", _man_speaking),
    DemoClass("woman_speaking", "woman speaking", "espeak-ng", _woman_speaking),
    DemoClass("child_speaking", "child speaking", "espeak-ng", _child_speaking),
    DemoClass("whispering", "whispering", "espeak-ng", _whispering),
    DemoClass("shouting", "shouting", "espeak-ng", _shouting),
    DemoClass("crowd", "crowd", "espeak-ng", _crowd),
)


# ----------------------------------------------------------------------------- generation


def default_demo_dir() -> Path:
    """``$AUSWEEP_CACHE/demo_sounds`` if ``AUSWEEP_CACHE`` is set, else ``~/.cache/ausweep/demo_sounds``."""
    from ausweep.files import cache_root

    return cache_root() / "demo_sounds"


def make_demo_soundset(
    out_dir: str | Path | None = None, clips_per_class: int = 4, sample_rate: int = 16000, seed: int = 0
) -> SoundSet:
    """The generated demo sound set (NOT FSD50K): ``clips_per_class`` clips of 1-2 s for each of
    :data:`DEMO_CLASSES`, 16-bit mono wav at ``sample_rate``.

    Reuses ``out_dir`` (default :func:`default_demo_dir`) when its manifest matches the generator
    version and these parameters; otherwise generates a fresh set atomically (an existing demo set
    with other parameters is replaced; a non-empty folder that is not a demo set is left alone and
    raises). Raises :class:`DemoToolError` when sox or espeak-ng is missing or fails.
    """
    if clips_per_class < 1:
        raise ValueError(f"clips_per_class must be >= 1, got {clips_per_class}")
    if sample_rate < 16000:
        raise ValueError(f"sample_rate must be >= 16000 (bird chirps and rain reach ~6.5 kHz), got {sample_rate}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    out_dir = Path(out_dir).expanduser().absolute() if out_dir is not None else default_demo_dir().absolute()
    params = {"clips_per_class": int(clips_per_class), "sample_rate": int(sample_rate), "seed": int(seed)}

    manifest = _read_valid_manifest(out_dir, params)
    if manifest is not None:
        logger.debug("demo sounds: reusing %s", out_dir)
        return _soundset(out_dir, manifest)

    if out_dir.exists() and any(out_dir.iterdir()) and not _is_demo_set(out_dir):
        raise FileExistsError(f"{out_dir}: exists, is not empty and is not a demo sound set; refusing to overwrite it")
    require_tools()
    tmp = new_partial_dir(out_dir)
    try:
        start = time.perf_counter()
        manifest = _generate(tmp, params)
        logger.info("demo sounds: generated %d clips in %.1f s into %s",
                    sum(len(c["clips"]) for c in manifest["classes"]), time.perf_counter() - start, out_dir)
        install_folder(tmp, out_dir, lambda folder: _read_valid_manifest(folder, params) is not None)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already when installed
    manifest = _read_valid_manifest(out_dir, params)
    if manifest is None:  # pragma: no cover - would mean a concurrent writer with other parameters
        raise RuntimeError(f"{out_dir}: demo set was replaced while it was being installed; run again")
    return _soundset(out_dir, manifest)


@dataclass(frozen=True)
class _Job:
    """One clip to make: its recipe's parameters and commands, and where the clip goes."""

    cls: DemoClass
    ctx: Ctx
    recipe: dict[str, Any]
    commands: list[list[str]]
    out: Path


def _generate(tmp: Path, params: dict[str, int]) -> dict[str, Any]:
    """Write every clip, the README and (last) the manifest into ``tmp``; return the manifest."""
    jobs: list[_Job] = []
    for cls in DEMO_CLASSES:
        (tmp / cls.name).mkdir()
        for k in range(params["clips_per_class"]):
            # One RNG per clip, keyed by class name and clip index: a clip does not change when
            # clips_per_class grows or another class is added.
            rng = np.random.default_rng((params["seed"], zlib.crc32(cls.name.encode()), k))
            ctx = Ctx(work=tmp / ".work" / f"{cls.name}_{k:02d}", sample_rate=params["sample_rate"], k=k)
            recipe, commands = cls.recipe(rng, ctx)
            jobs.append(_Job(cls, ctx, recipe, commands, tmp / cls.name / f"{cls.name}_{k:02d}.wav"))

    # Each clip is a few short sox/espeak runs, mostly process start-up: a few threads keep the
    # cores busy.
    with ThreadPoolExecutor(max_workers=max(2, min(8, 2 * (os.cpu_count() or 1)))) as pool:
        list(pool.map(_make_clip, jobs))
    shutil.rmtree(tmp / ".work", ignore_errors=True)

    import soundfile as sf

    classes = []
    for cls in DEMO_CLASSES:
        clips = [
            {
                "file": f"{cls.name}/{job.out.name}",
                "sha256": hashlib.sha256(job.out.read_bytes()).hexdigest(),
                "seconds": round(sf.info(str(job.out)).duration, 3),
                "recipe": job.recipe,
            }
            for job in jobs
            if job.cls is cls
        ]
        classes.append({"id": cls.name, "text": cls.text, "made_with": cls.tool, "clips": clips})
    manifest = {
        "generator": _GENERATOR,
        "version": GENERATOR_VERSION,
        "note": "GENERATED DEMO SOUNDS - NOT FSD50K",
        "params": params,
        "classes": classes,
    }
    (tmp / "README.txt").write_text(README.format(version=GENERATOR_VERSION))
    # The manifest is written last: a folder with a valid manifest is a complete set.
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _make_clip(job: _Job) -> None:
    render_clip(job.ctx, job.commands, job.out)


def _is_demo_set(out_dir: Path) -> bool:
    """Whether ``out_dir`` holds a demo set (any version or parameters), i.e. may be replaced."""
    return made_by(out_dir, _GENERATOR)


def _read_valid_manifest(out_dir: Path, params: dict[str, int]) -> dict[str, Any] | None:
    """The manifest if ``out_dir`` holds a complete set made by this generator version with these
    parameters (same classes, every listed file present), else None."""
    manifest = read_manifest(out_dir, _GENERATOR, GENERATOR_VERSION, params)
    if manifest is None or [c.get("id") for c in manifest.get("classes", [])] != [c.name for c in DEMO_CLASSES]:
        return None
    for cls in manifest["classes"]:
        if len(cls.get("clips", [])) != params["clips_per_class"]:
            return None
        for clip in cls["clips"]:
            if not (out_dir / clip["file"]).is_file():
                return None
    return manifest


def _soundset(out_dir: Path, manifest: dict[str, Any]) -> SoundSet:
    params = manifest["params"]
    return SoundSet(
        name="demo",
        classes=tuple(c["id"] for c in manifest["classes"]),
        class_text={c["id"]: c["text"] for c in manifest["classes"]},
        clips=tuple(
            Clip(path=str(out_dir / clip["file"]), label=c["id"]) for c in manifest["classes"] for clip in c["clips"]
        ),
        meta={
            "source": "demo",
            "note": "generated demo sounds (sox + espeak-ng), NOT FSD50K",
            "root": str(out_dir),
            "generator_version": str(manifest["version"]),
            "clips_per_class": str(params["clips_per_class"]),
            "sample_rate": str(params["sample_rate"]),
            "seed": str(params["seed"]),
        },
    )
