"""Released checkpoint files (not hub repositories) that some audio encoders load: where they live.

PaSST and PANN publish a single ``.pt`` / ``.pth`` file each (a GitHub release, Zenodo). An
:class:`OfficialFile` names that file and its official URL; :func:`locate` finds it:

1. ``checkpoint=/path/to/file`` given to the loader (the per-model option),
2. ``$AUSWEEP_CHECKPOINTS/<file name>`` (a folder of checkpoint files, e.g. on shared storage),
3. ``<cache>/checkpoints/<file name>`` (``$AUSWEEP_CACHE``, else ``~/.cache/ausweep``),
4. else, on a machine with network (``HF_HUB_OFFLINE`` unset), downloaded once from the official
   URL into (3), atomically; offline it fails at once with one line saying which file, where to get
   it and where to put it.

Imports only the standard library.
"""

from __future__ import annotations

import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ausweep.files import cache_root
from ausweep.models.catalog import ModelUnavailableError, hub_offline

CHECKPOINTS_ENV = "AUSWEEP_CHECKPOINTS"


@dataclass(frozen=True)
class OfficialFile:
    """One released checkpoint: its file name, official URL and the model it belongs to."""

    model: str  # registry name, for messages
    filename: str
    url: str
    min_bytes: int = 1  # a smaller file is a failed or partial download

    def candidates(self) -> list[Path]:
        """Where the file is looked for, in order (without an explicit ``checkpoint``)."""
        out = []
        if os.environ.get(CHECKPOINTS_ENV):
            out.append(Path(os.environ[CHECKPOINTS_ENV]).expanduser() / self.filename)
        out.append(default_dir() / self.filename)
        return out

    def missing_message(self, looked: list[Path]) -> str:
        where = " or ".join(str(p) for p in looked)
        return (
            f"audio model '{self.model}' needs its checkpoint file {self.filename}, not found at {where}: "
            f"download it from {self.url} and put it there (or set {CHECKPOINTS_ENV} to its folder, "
            f"or pass checkpoint=/path/to/{self.filename})"
        )


def default_dir() -> Path:
    """``<cache>/checkpoints``: where downloads go and files are looked for last."""
    return cache_root() / "checkpoints"


def locate(spec: OfficialFile, checkpoint: str | os.PathLike | None = None, download: bool | None = None) -> Path:
    """The checkpoint file for ``spec``: ``checkpoint`` if given (it must exist), else the first of
    :meth:`OfficialFile.candidates` that exists, else a download from the official URL when online
    (``download=None``: online unless ``HF_HUB_OFFLINE``). Raises :class:`ModelUnavailableError`."""
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise ModelUnavailableError(
                f"audio model '{spec.model}': checkpoint file {path} does not exist "
                f"(the official file is {spec.filename}, from {spec.url})"
            )
        return path
    looked = spec.candidates()
    for path in looked:
        if path.is_file():
            if path.stat().st_size < spec.min_bytes:
                raise ModelUnavailableError(
                    f"audio model '{spec.model}': {path} has {path.stat().st_size} bytes, fewer than the "
                    f"{spec.min_bytes} of the official file (a partial download?); delete it and download "
                    f"it again from {spec.url}"
                )
            return path
    if download is None:
        download = not hub_offline()
    if not download:
        raise ModelUnavailableError(spec.missing_message(looked))
    return fetch(spec, default_dir() / spec.filename)


def fetch(spec: OfficialFile, dest: Path) -> Path:
    """Download ``spec.url`` to ``dest`` through a temporary sibling (no partial file at ``dest``)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(spec.url, timeout=60) as resp:  # noqa: S310
            while chunk := resp.read(1 << 20):
                out.write(chunk)
        size = Path(tmp).stat().st_size
        if size < spec.min_bytes:
            raise ModelUnavailableError(
                f"audio model '{spec.model}': download of {spec.url} gave {size} bytes, fewer than the "
                f"{spec.min_bytes} expected; put the file at {dest} by hand"
            )
        os.replace(tmp, dest)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, ModelUnavailableError):
            raise
        raise ModelUnavailableError(
            f"{spec.missing_message([dest])} (the download failed: {e})"
        ) from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def _numpy_globals() -> list:
    """NumPy arrays, scalars and dtypes, which training scripts saved beside the weights (PANN's
    iteration counter and sampler state): allowed to unpickle (they build data, run no code), also
    under numpy 1's module names."""
    import numpy as np

    core = np._core.multiarray
    dtypes = sorted({type(np.dtype(c)) for c in "?bhilqpBHILQPefdgFDGSUV"}, key=lambda t: t.__name__)
    return [np.dtype, np.ndarray, core._reconstruct, core.scalar, *dtypes,
            (core._reconstruct, "numpy.core.multiarray._reconstruct"), (core.scalar, "numpy.core.multiarray.scalar")]


def load_state_dict(path: Path, model_name: str, inner_key: str | None = None) -> dict:
    """``torch.load`` a checkpoint (weights only) and return its state dict; ``inner_key`` names the
    entry that holds it when the file wraps it (PANN: ``{"model": ..., "iteration": ...}``)."""
    import torch

    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not this file"
        raise ValueError(f"audio model '{model_name}': cannot read checkpoint {path}: {e}") from e
    if inner_key is not None and isinstance(obj, dict) and inner_key in obj and isinstance(obj[inner_key], dict):
        obj = obj[inner_key]
    if not isinstance(obj, dict) or not all(hasattr(v, "shape") for v in obj.values()):
        raise ValueError(f"audio model '{model_name}': checkpoint {path} does not hold a state dict of tensors")
    return obj


def load_strict(module, state: dict, path: Path, model_name: str, optional: tuple[str, ...] = ("num_batches_tracked",)) -> None:
    """Load ``state`` into ``module`` requiring the same keys and shapes both ways: every key of the
    file is consumed and every weight of the module is set. Keys ending in ``optional`` (BatchNorm's
    step counter, unused at inference) may be absent from the file."""
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.endswith(optional)]
    unused = [k for k in state if k not in own]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unused or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys (e.g. {missing[:3]})")
        if unused:
            parts.append(f"{len(unused)} keys not used (e.g. {unused[:3]})")
        if shapes:
            parts.append(f"shape mismatch ({shapes[:3]})")
        raise ValueError(f"audio model '{model_name}': checkpoint {path} does not fit: " + "; ".join(parts))
    module.load_state_dict({k: v for k, v in state.items()}, strict=False)
