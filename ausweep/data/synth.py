"""Machinery of the generated audio sets: sox and espeak-ng command lines, running them, and putting
a generated folder in place atomically.

Where it sits: shared by the recipes of :mod:`ausweep.data.demo` (the demo sound set) and
:mod:`ausweep.data.demo_mc` (the generated multiple-choice audio sets). It knows nothing of their
classes or questions: a recipe turns a clip's RNG and a :class:`Ctx` into command lines, and
:func:`render_clip` runs them and writes the clip.

A generated set is written into a ``.<name>.partial-*`` folder beside its target
(:func:`new_partial_dir`) and renamed into place when complete (:func:`install_folder`), so a crash
never leaves a partial set that looks complete; a crashed run's partial folder is removed by a later
run once it is an hour old.

Needs ``sox`` and ``espeak-ng`` on the PATH (``apt-get install sox espeak-ng``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_CLIP_SECONDS = 2.0  # what :func:`finish_command` trims every clip to
STALE_PARTIAL_SECONDS = 3600  # a ".partial-" folder older than this is a crashed run's leftovers

# espeak-ng voice variants that sound distinct from one another.
MALE_VOICES = ["en-us+m1", "en-us+m2", "en-us+m3", "en-gb+m4", "en-us+m5", "en-gb+m6", "en-us+m7"]
FEMALE_VOICES = ["en-us+f1", "en-us+f2", "en-gb+f3", "en-us+f4", "en-gb+f5"]


class DemoToolError(RuntimeError):
    """sox or espeak-ng is missing, or one of their runs failed."""


def require_tools() -> None:
    """Raise :class:`DemoToolError` naming the missing tools (and how to install them)."""
    missing = [tool for tool in ("sox", "espeak-ng") if shutil.which(tool) is None]
    if missing:
        raise DemoToolError(
            f"the demo sound set is generated with sox and espeak-ng; not found on PATH: {', '.join(missing)} "
            f"(install with: apt-get install {' '.join(missing)})"
        )


# ----------------------------------------------------------------------------- command lines


def fmt(x: float, digits: int = 3) -> str:
    """Fixed formatting for numbers passed to sox, so the same parameters give the same commands."""
    return f"{x:.{digits}f}"


def midi_hz(note: int) -> float:
    """Equal-tempered frequency of a MIDI note (69 = A4 = 440 Hz)."""
    return 440.0 * 2 ** ((note - 69) / 12)


@dataclass(frozen=True)
class Ctx:
    """What a recipe needs to write one clip: a scratch folder, the rate, and the clip's index."""

    work: Path
    sample_rate: int
    k: int  # index of the clip within its class (or task)

    @property
    def raw(self) -> str:
        """Every recipe's last command writes here; :func:`finish_command` turns it into the clip."""
        return self.path("raw.wav")

    def path(self, name: str) -> str:
        return str(self.work / name)

    def _fmt(self) -> list[str]:
        # 32-bit float intermediates: no clipping or dither noise before the final normalisation.
        return ["-r", str(self.sample_rate), "-c", "1", "-e", "floating-point", "-b", "32"]

    def synth(self, out: str, *effects: str) -> list[str]:
        """``sox -n <out> synth ...``. ``-R`` seeds sox's noise generators: same file every run."""
        return ["sox", "-R", "-n", *self._fmt(), out, *effects]

    def sox(self, inputs: list[str], out: str, *effects: str) -> list[str]:
        """Concatenate ``inputs`` into ``out`` through ``effects``."""
        return ["sox", "-R", *inputs, *self._fmt(), out, *effects]

    def mix(self, inputs: list[tuple[str, float]], out: str, *effects: str) -> list[str]:
        """Mix ``(file, gain)`` pairs into ``out``."""
        args: list[str] = []
        for name, gain in inputs:
            args += ["-v", fmt(gain), name]
        return ["sox", "-R", "-m", *args, *self._fmt(), out, *effects]

    def speak(self, out: str, text: str, voice: str, speed: int, pitch: int, amplitude: int = 100) -> list[str]:
        return ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-a", str(amplitude), "-w", out, text]


def finish_command(ctx: Ctx, out: Path) -> list[str]:
    """The last step of every clip: mono 16-bit at the target rate, at most MAX_CLIP_SECONDS, short
    fades against clicks, peak-normalised to -1 dBFS so loudness is no cue to the class."""
    return ["sox", "-R", ctx.raw, "-r", str(ctx.sample_rate), "-c", "1", "-b", "16", str(out),
            "remix", "-", "trim", "0", fmt(MAX_CLIP_SECONDS), "fade", "h", "0.005", "-0", "0.02", "norm", "-1"]


# ----------------------------------------------------------------------------- running them


def run_tool(argv: list[str], out: Path) -> None:
    """Run one sox/espeak-ng command for clip ``out``; a failure raises :class:`DemoToolError`."""
    try:
        proc = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DemoToolError(f"{argv[0]} could not run while making {out.name}: {e}") from None
    if proc.returncode != 0:
        err = " ".join(proc.stderr.split())[-300:]
        raise DemoToolError(f"{argv[0]} failed (exit {proc.returncode}) while making {out.name}: {err}")


def render_clip(ctx: Ctx, commands: list[list[str]], out: Path) -> None:
    """Run a recipe's ``commands`` in ``ctx.work``, write the finished clip to ``out``, and remove
    the scratch folder."""
    ctx.work.mkdir(parents=True)
    for argv in commands:
        run_tool(argv, out)
    run_tool(finish_command(ctx, out), out)
    shutil.rmtree(ctx.work, ignore_errors=True)


# ----------------------------------------------------------------------------- the generated folder


def new_partial_dir(out_dir: Path) -> Path:
    """A fresh ``.<name>.partial-*`` folder beside ``out_dir`` to generate into (crashed runs'
    leftovers are removed first). The caller removes it if it is not installed."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is an ordinary folder
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def remove_stale_partials(out_dir: Path) -> None:
    """Remove ``.<name>.partial-*`` folders beside ``out_dir`` older than STALE_PARTIAL_SECONDS."""
    now = time.time()
    for p in out_dir.parent.glob(f".{out_dir.name}.partial-*"):
        try:
            if now - p.stat().st_mtime > STALE_PARTIAL_SECONDS:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass


def install_folder(tmp: Path, out_dir: Path, is_complete: Callable[[Path], bool]) -> None:
    """Move the finished folder ``tmp`` into place at ``out_dir``, replacing what is there.

    ``is_complete(out_dir)`` says whether ``out_dir`` already holds the wanted set: then another
    process finished first, and its set is kept.
    """
    if is_complete(out_dir):
        return
    old = None
    if out_dir.exists():  # an older set of ours (other parameters or version), or an empty folder
        old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(out_dir, old)
    try:
        os.rename(tmp, out_dir)
    except OSError:
        if not is_complete(out_dir):  # not a concurrent writer's set: a real error
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def made_by(out_dir: Path, generator: str) -> bool:
    """Whether ``out_dir``'s manifest names ``generator`` (any version or parameters), i.e. whether
    the folder is that generator's to replace."""
    try:
        return json.loads((out_dir / "manifest.json").read_text()).get("generator") == generator
    except (OSError, ValueError, AttributeError):
        return False


def read_manifest(out_dir: Path, generator: str, version: int, params: dict[str, Any]) -> dict[str, Any] | None:
    """``out_dir/manifest.json`` if it is a JSON object written by ``generator`` at ``version`` with
    these ``params``, else None. The caller checks what the set itself must hold."""
    try:
        manifest = json.loads((out_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if (
        not isinstance(manifest, dict)
        or manifest.get("generator") != generator
        or manifest.get("version") != version
        or manifest.get("params") != params
    ):
        return None
    return manifest
