"""Check ausweep's audio encoders against their reference implementations on the real checkpoints.

Run once on a machine with network (and the reference packages installed)::

    python -m ausweep.models.verify passt pann-cnn14 hubert-base
    python -m ausweep.models.verify passt --checkpoint passt=/data/passt-s-f128-p16-s10-ap.476-swa.pt

For each NAME it gets the official checkpoint (downloaded once into ``<cache>/checkpoints`` unless
it is already there or given with ``--checkpoint``), builds the reference implementation from that
same file, runs both on a few generated clips (``--clips``: lengths in seconds; the defaults include
one longer than PaSST's 10 s window) or on ``--audio`` files, and prints the largest absolute
difference per clip. Exit status: 0 when every difference is below ``--atol``, 1 when one is not, 2
when a check could not run (no network, a reference package missing); the reason is printed.

The unit tests check the same equivalence offline on random weights in the official layout
(``tests/unit/test_passt.py``, ``test_pann.py``, ``test_ssl_audio.py``); this script adds the
released weights.

Adding an encoder: write ``verify_<x>(checkpoint, clips, device) -> list[Check]`` in its own
module (``clips`` are mono float32 waveforms at the encoder's sample rate, made by the
``make_clips`` callable given) and add one line to :data:`VERIFIERS`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import math
import sys
import tempfile
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: NAME -> "module:function" of its verifier, imported only when that NAME is checked.
VERIFIERS: dict[str, str] = {
    "passt": "ausweep.models.verify:verify_passt",
    "pann-cnn14": "ausweep.models.verify:verify_pann",
    "hubert-base": "ausweep.models.verify:verify_hubert",
    "audiomae": "ausweep.models.audiomae:verify_audiomae",
    "audiomae-ft": "ausweep.models.audiomae:verify_audiomae_ft",
    "laion-clap": "ausweep.models.laion_clap:verify_laion_clap",
    "laion-clap-fusion": "ausweep.models.laion_clap:verify_laion_clap_fusion",
    "laion-clap-music-speech": "ausweep.models.laion_clap:verify_laion_clap_music_speech",
    "laion-clap-music": "ausweep.models.laion_clap:verify_laion_clap_music",
    "lalm-qwen2-audio": "ausweep.models.native_lalm:verify_qwen2_audio",
    "lalm-audioflamingo3": "ausweep.models.native_lalm:verify_audioflamingo3",
    "lalm-qwen2.5-omni": "ausweep.models.native_lalm:verify_qwen2_5_omni",
    "backbones": "ausweep.lalm.plan:verify_backbones",  # the vendored config.json of every LALM backbone
}

DEFAULT_CLIPS_S = (1.0, 4.2, 12.5)


class CannotVerify(RuntimeError):
    """A check that cannot run here (no network, a reference package missing); the message says why."""


@dataclass(frozen=True)
class Check:
    """One comparison: which model, what was compared (clip, pooling), and the largest |difference|."""

    name: str
    what: str
    max_abs_diff: float


MakeClips = Callable[[int], list[np.ndarray]]


def generated_clips(seconds: Sequence[float], seed: int = 0) -> MakeClips:
    """Clips of the given lengths at any sample rate: a chirp, a tone pair and noise bursts, mixed."""

    def make(sr: int) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        out = []
        for i, s in enumerate(seconds):
            t = np.arange(int(round(s * sr))) / sr
            chirp = np.sin(2 * np.pi * (100 + 900 * t / max(s, 1e-3)) * t * (1 + i))
            tones = 0.5 * np.sin(2 * np.pi * 440 * t) * np.sin(2 * np.pi * 3 * t)
            bursts = rng.standard_normal(len(t)) * (np.sin(2 * np.pi * 1.5 * t) > 0.5)
            out.append((0.3 * chirp + 0.2 * tones + 0.1 * bursts).astype(np.float32))
        return out

    return make


def file_clips(paths: Sequence[str]) -> MakeClips:
    """Mono clips read from audio files (soundfile) and resampled to the encoder's rate."""

    def make(sr: int) -> list[np.ndarray]:
        import soundfile as sf

        from ausweep.models.audio import resample

        out = []
        for p in paths:
            wave, file_sr = sf.read(p, dtype="float32", always_2d=True)
            out.append(resample(wave.mean(1), file_sr, sr))
        return out

    return make


def _max_diffs(name: str, what: str, got: np.ndarray, expected: np.ndarray) -> list[Check]:
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    if got.shape != expected.shape:
        return [Check(name, f"{what}: shapes {got.shape} vs {expected.shape}", math.inf)]
    return [Check(name, f"{what} clip {i}", float(np.abs(g - e).max())) for i, (g, e) in enumerate(zip(got, expected))]


def _require(module: str, pin: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise CannotVerify(f"the reference needs {pin}: pip install --no-deps {pin} ({e})") from e


# ----------------------------------------------------------------------------- PaSST


@contextlib.contextmanager
def _passt_imports() -> Iterator[list[str]]:
    """Make hear21passt importable where torchaudio or timm cannot be: stand-ins for the two names it
    takes from them (torchaudio's Kaldi mel banks -> ausweep's, pinned by a unit test; timm's
    download helper, unused for a local file). Yields notes on what was stood in for."""
    from ausweep.models.passt import kaldi_mel_banks

    notes, added = [], {}
    try:  # the real one where it loads (not declared: the reference's optional front end)
        importlib.import_module("torchaudio")
    except Exception:  # noqa: BLE001 - any failure to load its compiled ops counts
        import torch

        def get_mel_banks(num_bins, window_length_padded, sample_freq, low_freq, high_freq, vtln_low, vtln_high,
                          vtln_warp_factor):  # torchaudio's signature
            if vtln_warp_factor != 1.0:
                raise NotImplementedError("VTLN warping")
            return kaldi_mel_banks(num_bins, window_length_padded, sample_freq, low_freq, high_freq), None

        class Masking(torch.nn.Module):
            def __init__(self, *a: Any, **k: Any):
                super().__init__()

        ta = types.ModuleType("torchaudio")
        ta.compliance = types.SimpleNamespace(kaldi=types.SimpleNamespace(get_mel_banks=get_mel_banks))
        ta.transforms = types.SimpleNamespace(FrequencyMasking=Masking, TimeMasking=Masking)
        added["torchaudio"] = ta
        notes.append("torchaudio does not load here: the reference's get_mel_banks is ausweep's kaldi_mel_banks")
    try:
        importlib.import_module("timm.models._hub")
    except Exception:  # noqa: BLE001
        hub = types.ModuleType("timm.models._hub")
        hub.download_cached_file = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no download"))
        added.update({"timm": types.ModuleType("timm"), "timm.models": types.ModuleType("timm.models"),
                      "timm.models._hub": hub})
        notes.append("timm does not load here: its download helper (unused) is stood in for")
    saved = {k: sys.modules.get(k) for k in added}
    sys.modules.update(added)
    try:
        yield notes
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def verify_passt(checkpoint: str | None, make_clips: MakeClips, device: str = "cpu") -> list[Check]:
    """hear21passt's ``get_scene_embeddings`` (its own model, loaded from the file by its own filter)
    vs ausweep's ``passt``, poolings ``tokens`` (embed_only) and ``scene`` (all)."""
    import torch

    from ausweep.models.checkpoint_files import locate
    from ausweep.models.passt import PASST_FILE, load_passt

    path = locate(PASST_FILE, checkpoint)
    _require("hear21passt", "hear21passt==0.0.26")
    with _passt_imports() as notes:
        for note in notes:
            print(f"  note: {note}")
        passt = importlib.import_module("hear21passt.models.passt")
        pre = importlib.import_module("hear21passt.models.preprocess")
        wrapper = importlib.import_module("hear21passt.wrapper")
        with contextlib.redirect_stdout(io.StringIO()):  # it prints the whole model
            net = passt.get_model(arch="passt_s_swa_p16_128_ap476", pretrained=False)
        net.load_state_dict(passt.checkpoint_filter_fn(torch.load(path, map_location="cpu", weights_only=True), net))
        mel = pre.AugmentMelSTFT(n_mels=128, sr=32000, win_length=800, hopsize=320, n_fft=1024, freqm=48, timem=192,
                                 htk=False, fmin=0.0, fmax=None, norm=1, fmin_aug_range=10, fmax_aug_range=2000)
        clips = make_clips(32000)
        checks = []
        for pooling, mode in (("tokens", "embed_only"), ("scene", "all")):
            ref = wrapper.PasstBasicWrapper(mel=mel, net=net, mode=mode).to(device).eval()
            with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):  # and shapes on its first run
                expected = np.stack([ref.get_scene_embeddings(torch.from_numpy(c)[None])[0].cpu().numpy() for c in clips])
            got = load_passt(checkpoint=str(path), device=device, pooling=pooling).embed(clips)
            checks += _max_diffs("passt", pooling, got, expected)
    return checks


# ----------------------------------------------------------------------------- PANN


def verify_pann(checkpoint: str | None, make_clips: MakeClips, device: str = "cpu") -> list[Check]:
    """panns_inference's ``AudioTagging(checkpoint_path=...).inference`` embedding vs ausweep's
    ``pann-cnn14``, clip by clip."""
    import os

    import torch

    from ausweep.models.checkpoint_files import _numpy_globals, locate
    from ausweep.models.pann import PANN_FILE, load_pann

    path = locate(PANN_FILE, checkpoint)
    _require("librosa", "librosa==0.11.0")
    _require("torchlibrosa", "torchlibrosa==0.1.0")
    labels = Path.home() / "panns_data" / "class_labels_indices.csv"
    with tempfile.TemporaryDirectory() as home:
        old_home = os.environ.get("HOME")
        if not labels.is_file():  # panns_inference fetches the label list at import; embeddings do not need it
            (Path(home) / "panns_data").mkdir()
            rows = ["index,mid,display_name"] + [f"{i},/m/{i},class {i}" for i in range(527)]
            (Path(home) / "panns_data" / "class_labels_indices.csv").write_text("\n".join(rows) + "\n")
            os.environ["HOME"] = home
            print("  note: panns_inference's label list is absent: a placeholder is used (labels are not compared)")
        try:
            inference = _require("panns_inference.inference", "panns-inference==0.1.1")
            # its torch.load is weights-only under torch >= 2.6: allow the numpy training state beside the weights
            with torch.serialization.safe_globals(_numpy_globals()):
                tagger = inference.AudioTagging(checkpoint_path=str(path), device=device)
        finally:
            if old_home is None:
                os.environ.pop("HOME", None)
            else:
                os.environ["HOME"] = old_home
    clips = make_clips(32000)
    expected = np.stack([tagger.inference(c[None])[1][0] for c in clips])
    got = load_pann(checkpoint=str(path), device=device).embed(clips)
    return _max_diffs("pann-cnn14", "embedding", got, expected)


# ----------------------------------------------------------------------------- HuBERT


def verify_hubert(checkpoint: str | None, make_clips: MakeClips, device: str = "cpu") -> list[Check]:
    """transformers' HubertModel on facebook/hubert-base-ls960 (mean of last_hidden_state) vs
    ausweep's ``hubert-base``; ``checkpoint`` may name a local copy of the hub folder."""
    import torch
    import transformers as tf

    from ausweep.models.audio import load_audio_encoder
    from ausweep.models.catalog import ModelUnavailableError

    source = checkpoint or "facebook/hubert-base-ls960"
    try:
        model = tf.HubertModel.from_pretrained(source).to(device).eval()
        fe = tf.AutoFeatureExtractor.from_pretrained(source)
        enc = load_audio_encoder(checkpoint or "hubert-base", device=device)
    except (OSError, ModelUnavailableError) as e:
        raise CannotVerify(f"cannot load {source} (no network or not cached): {str(e).splitlines()[0]}") from e
    clips = make_clips(16000)
    with torch.no_grad():
        expected = np.stack([model(fe(c, sampling_rate=16000, return_tensors="pt")["input_values"].to(device))
                             .last_hidden_state[0].mean(0).cpu().numpy() for c in clips])
    return _max_diffs("hubert-base", "mean", enc.embed(clips), expected)


# ----------------------------------------------------------------------------- CLI


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ausweep.models.verify", description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", metavar="NAME", help=f"encoders to check: {', '.join(VERIFIERS)}")
    p.add_argument("--list", action="store_true", help="list the encoders that can be checked and exit")
    p.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH",
                   help="use this checkpoint file (or hub folder) for NAME instead of finding or downloading it")
    p.add_argument("--clips", default=",".join(str(s) for s in DEFAULT_CLIPS_S),
                   help="lengths in seconds of the generated clips, comma-separated")
    p.add_argument("--audio", nargs="+", default=None, metavar="FILE", help="audio files to use instead of generated clips")
    p.add_argument("--atol", type=float, default=1e-4, help="largest absolute difference accepted")
    p.add_argument("--device", default="cpu", help="torch device for both implementations")
    args = p.parse_args(argv)
    if not args.list and not args.names:
        p.error("name at least one encoder (or --list)")
    unknown = [n for n in args.names if n not in VERIFIERS]
    if unknown:
        p.error(f"no verifier for {', '.join(unknown)}; known: {', '.join(VERIFIERS)}")
    checkpoints = {}
    for item in args.checkpoint:
        name, sep, path = item.partition("=")
        if not sep or not path or name not in VERIFIERS:
            p.error(f"--checkpoint takes NAME=PATH with NAME one of {', '.join(VERIFIERS)}, got {item!r}")
        checkpoints[name] = path
    args.checkpoints = checkpoints
    try:
        args.seconds = [float(s) for s in args.clips.split(",") if s.strip()]
    except ValueError:
        p.error(f"--clips takes comma-separated seconds, got {args.clips!r}")
    if not args.seconds or any(not (0 < s <= 120) for s in args.seconds):
        p.error(f"--clips lengths must be in (0, 120] seconds, got {args.clips!r}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from ausweep.models.catalog import ModelUnavailableError

    args = _parse(argv)
    if args.list:
        for name, target in VERIFIERS.items():
            print(f"{name:<14} {target}")
        return 0
    make_clips = file_clips(args.audio) if args.audio else generated_clips(args.seconds)
    differs = cannot = False
    for name in args.names:
        module, _, fn = VERIFIERS[name].partition(":")
        print(f"{name}:")
        try:
            checks = getattr(importlib.import_module(module), fn)(args.checkpoints.get(name), make_clips, args.device)
        except (CannotVerify, ModelUnavailableError) as e:
            print(f"  cannot verify {name}: {e}")
            cannot = True
            continue
        for c in checks:
            ok = c.max_abs_diff < args.atol
            print(f"  {c.what:<28} max |diff| {c.max_abs_diff:.3g}  {'ok' if ok else 'DIFFERS'}")
            differs |= not ok
    return 1 if differs else 2 if cannot else 0


if __name__ == "__main__":
    sys.exit(main())
