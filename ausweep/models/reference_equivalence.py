"""ausweep's audio encoders against the papers' reference packages, on random weights, offline.

One place for the comparisons that both the unit tests (``tests/unit/test_passt.py``,
``test_pann.py``, ``test_audiomae.py``, ``test_laion_clap.py``) and the GPU script
(``bench/gpu/run.py``, part 4) run, so the two cannot drift. Each check builds the reference model
with random (seeded) weights, saves it in the layout of the released file, loads that file through
ausweep's loader, runs both on the same clips on ``device`` and returns the largest absolute
differences of the embeddings:

* ``passt``: ausweep's PaSST against ``hear21passt`` (its ``PaSST`` and its eval front end,
  ``AugmentMelSTFT``: Kaldi mel banks from torchaudio, with windowing of long clips by its wrapper).
* ``pann``: ausweep's CNN14 against ``panns_inference.models.Cnn14`` (torchlibrosa's front end).
* ``audiomae``: :func:`ausweep.models.audiomae.compare_with_reference`, the pre-trained and the
  fine-tuned encoder against timm's ``VisionTransformer`` (the class the official models_vit.py
  subclasses; that file is not on PyPI).
* ``laion_clap``: :func:`ausweep.models.laion_clap.compare_with_reference`, against laion_clap's own
  ``CLAP`` (audio and text towers).

Stand-ins. A package a reference imports is stood in for only where the real one does not import
here, and only for the duration of the check; every result lists which packages were real (with
their versions) and which were stood in for, and why (``packages``, ``stand_ins``):

* ``torchaudio`` (hear21passt's front end): ``compliance.kaldi.get_mel_banks`` is ausweep's
  :func:`~ausweep.models.passt.kaldi_mel_banks`; the training-time masking modules are identities.
* ``torchvision`` (timm and laion_clap import it at module level; these models never use it):
  placeholders that refuse to be instantiated.
* ``timm`` (hear21passt's ViT helpers import its hub download function only): a function that refuses.
* ``librosa`` (torchlibrosa makes its STFT kernels and mel matrix with it when a model is built:
  they are weights, saved in the file and read back, so the comparison does not rest on them):
  ``get_window`` (scipy's, as librosa calls it), ``pad_center``, ``filters.mel`` (Slaney, from
  transformers' ``mel_filter_bank``; ``tests/unit/test_reference_equivalence.py`` pins it to
  librosa's). librosa needs numba and llvmlite (about 45 MB), too large to carry to a GPU machine.
* ``matplotlib`` (panns_inference imports pyplot and never uses it for CNN14): empty modules.

Always stood in for, because they touch the network: panns_inference's label CSV (downloaded at
import when absent; ``HOME`` points at a temporary folder holding a 527-row file of that format),
laion_clap's ``roberta-base`` from the hub (a small random RoBERTa, see
:func:`ausweep.models.laion_clap.reference_model`, which also stands in for its data-pipeline imports).

On a GPU, TF32 is switched off for the comparison (both sides in full float32) and restored.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.metadata
import importlib.util
import os
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Largest absolute difference allowed, relative to the outputs' scale when that exceeds 1.
TOLERANCE = 1e-4

#: The reference package each check compares with, and the other packages its code path imports.
REFERENCES = {
    "passt": ("hear21passt", ("torchaudio", "timm", "torchvision")),
    "pann": ("panns_inference", ("torchlibrosa", "librosa", "matplotlib")),
    "audiomae": ("timm", ("torchvision",)),
    "laion_clap": ("laion_clap", ("torchlibrosa", "librosa", "torchvision")),
}
#: What each check stands in for on every machine (it touches the network).
ALWAYS = {
    "pann": {"panns_inference label CSV": "downloaded at import: a 527-row file in a temporary HOME"},
    "laion_clap": {"roberta-base (hub)": "a small random RoBERTa text branch",
                   "h5py/ftfy/wget/braceexpand/webdataset": "laion_clap's data pipeline, empty modules where missing"},
}
#: Modules of the reference packages, forgotten after each check (they may hold stand-ins).
_REFERENCE_MODULES = ("hear21passt", "panns_inference", "torchlibrosa", "clap_module", "laion_clap")


class Unavailable(Exception):
    """A check cannot run here (its reference package is not installed); the message says which."""


# ----------------------------------------------------------------------------- stand-ins


def _under(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


class _StandIn(types.ModuleType):
    """A module put in place of a package that does not import here (with a spec, so that
    ``importlib.util.find_spec`` answers; no distribution metadata, so transformers' checks say absent)."""

    __path__: list[str] = []

    def __init__(self, name: str):
        super().__init__(name)
        self.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)


class _PlaceholderMeta(type):
    def __getattr__(cls, name: str) -> str:
        if name.startswith("__"):
            raise AttributeError(name)
        return f"{cls.__name__}.{name}"  # enum-like members (InterpolationMode.BILINEAR) used as dict keys


def _refuse(self: Any, *args: Any, **kwargs: Any) -> None:
    raise RuntimeError(f"{type(self).__name__} is a stand-in (torchvision does not import here) and cannot be used")


class _TorchvisionModule(_StandIn):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        cls = _PlaceholderMeta(name, (), {"__init__": _refuse})
        setattr(self, name, cls)
        return cls


class _TorchvisionFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if _under(fullname, ("torchvision",)):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec: Any) -> types.ModuleType:
        return _TorchvisionModule(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def _torchaudio_stand_in() -> dict[str, types.ModuleType]:
    import torch

    from ausweep.models.passt import kaldi_mel_banks

    def get_mel_banks(num_bins: int, window_length_padded: int, sample_freq: float, low_freq: float, high_freq: float,
                      vtln_low: float, vtln_high: float, vtln_warp_factor: float) -> tuple[Any, None]:
        if vtln_warp_factor != 1.0:
            raise NotImplementedError("the torchaudio stand-in has no VTLN warping")
        return kaldi_mel_banks(num_bins, window_length_padded, sample_freq, low_freq, high_freq), None

    class Masking(torch.nn.Module):  # training-time SpecAugment; eval never calls it
        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__()

        def forward(self, x: Any) -> Any:
            return x

    mods = {n: _StandIn(n) for n in ("torchaudio", "torchaudio.compliance", "torchaudio.compliance.kaldi",
                                     "torchaudio.transforms")}
    mods["torchaudio.compliance.kaldi"].get_mel_banks = get_mel_banks
    mods["torchaudio.compliance"].kaldi = mods["torchaudio.compliance.kaldi"]
    mods["torchaudio"].compliance = mods["torchaudio.compliance"]
    mods["torchaudio.transforms"].FrequencyMasking = mods["torchaudio.transforms"].TimeMasking = Masking
    mods["torchaudio"].transforms = mods["torchaudio.transforms"]
    return mods


def _timm_hub_stand_in() -> dict[str, types.ModuleType]:
    def download_cached_file(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the reference is built with random weights; nothing is downloaded")

    mods = {n: _StandIn(n) for n in ("timm", "timm.models", "timm.models._hub")}
    mods["timm.models._hub"].download_cached_file = download_cached_file
    return mods


def librosa_pad_center(data: np.ndarray, *, size: int, axis: int = -1, **kwargs: Any) -> np.ndarray:
    """librosa.util.pad_center: ``data`` padded on both sides of ``axis`` to ``size`` (left gets the floor)."""
    n = data.shape[axis]
    if size < n:
        raise ValueError(f"target size ({size}) must be at least input size ({n})")
    widths = [(0, 0)] * data.ndim
    widths[axis] = ((size - n) // 2, size - n - (size - n) // 2)
    return np.pad(data, widths, **kwargs)


def librosa_mel(*, sr: float, n_fft: int, n_mels: int = 128, fmin: float = 0.0, fmax: float | None = None,
                htk: bool = False, norm: str | None = "slaney", dtype: Any = np.float32) -> np.ndarray:
    """librosa.filters.mel, (n_mels, 1 + n_fft // 2), through transformers' ``mel_filter_bank``."""
    from transformers.audio_utils import mel_filter_bank

    if norm not in ("slaney", None):
        raise NotImplementedError(f"the librosa stand-in has only norm='slaney' or None, not {norm!r}")
    banks = mel_filter_bank(num_frequency_bins=1 + n_fft // 2, num_mel_filters=n_mels, min_frequency=fmin,
                            max_frequency=sr / 2 if fmax is None else fmax, sampling_rate=sr, norm=norm,
                            mel_scale="htk" if htk else "slaney")
    return banks.T.astype(dtype)


def _librosa_stand_in() -> dict[str, types.ModuleType]:
    import scipy.signal

    def get_window(window: Any, Nx: int, *, fftbins: bool = True) -> np.ndarray:  # noqa: N803 - librosa's name
        return scipy.signal.get_window(window, Nx, fftbins=fftbins)

    class ParameterError(Exception):
        pass

    mods = {n: _StandIn(n) for n in ("librosa", "librosa.filters", "librosa.util", "librosa.util.exceptions")}
    mods["librosa.filters"].get_window, mods["librosa.filters"].mel = get_window, librosa_mel
    mods["librosa.util"].pad_center = librosa_pad_center
    mods["librosa.util.exceptions"].ParameterError = ParameterError
    mods["librosa.util"].exceptions = mods["librosa.util.exceptions"]
    mods["librosa"].filters, mods["librosa"].util = mods["librosa.filters"], mods["librosa.util"]
    return mods


def _matplotlib_stand_in() -> dict[str, types.ModuleType]:
    mods = {n: _StandIn(n) for n in ("matplotlib", "matplotlib.pyplot")}
    mods["matplotlib"].pyplot = mods["matplotlib.pyplot"]
    return mods


_STAND_INS: dict[str, tuple[Callable[[], dict[str, types.ModuleType]], str]] = {
    "torchaudio": (_torchaudio_stand_in, "compliance.kaldi.get_mel_banks = ausweep's kaldi_mel_banks; masking = identity"),
    "timm": (_timm_hub_stand_in, "timm.models._hub.download_cached_file only (refuses)"),
    "librosa": (_librosa_stand_in, "get_window (scipy), util.pad_center, filters.mel (transformers' Slaney filters)"),
    "matplotlib": (_matplotlib_stand_in, "empty pyplot (imported, unused for CNN14)"),
}


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _try_import(name: str) -> str | None:
    """None when the real ``name`` imports (it stays imported), else why not (nothing left behind)."""
    mod = sys.modules.get(name)
    if mod is not None:
        return "a stand-in is loaded" if isinstance(mod, _StandIn) else None
    before = set(sys.modules)
    try:
        importlib.import_module(name)
        return None
    except Exception as e:  # noqa: BLE001 - ImportError, or compiled ops failing to load (OSError, RuntimeError)
        for n in set(sys.modules) - before:
            if _under(n, (name,)):
                del sys.modules[n]
        return f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"


class StandIns:
    """The packages a check imports: real where they import here, stood in for otherwise (recorded)."""

    def __init__(self, always: dict[str, str] | None = None):
        self.packages: dict[str, str] = {}
        self.stand_ins: dict[str, str] = dict(always or {})
        self._added: list[str] = []
        self._finder: _TorchvisionFinder | None = None

    def need(self, name: str) -> bool:
        """Make ``name`` importable; True when it is the real package."""
        if name in self.packages:
            return not self.packages[name].startswith("stand-in")
        if name == "timm" and "torchvision" not in self.packages:
            self.need("torchvision")  # timm imports torchvision at module level
        why = _try_import(name)
        if why is None:
            self.packages[name] = f"real {_version(name)}"
            return True
        if name == "torchvision":
            with contextlib.suppress(Exception):  # transformers decides at import whether torchvision is there
                import transformers.models.auto.image_processing_auto  # noqa: F401
            self._finder = _TorchvisionFinder()
            sys.meta_path.insert(0, self._finder)
            what = "placeholders that refuse to be instantiated"
        elif name in _STAND_INS:
            make, what = _STAND_INS[name]
            for mod_name, mod in make().items():
                if mod_name not in sys.modules:
                    sys.modules[mod_name] = mod
                    self._added.append(mod_name)
        else:
            raise Unavailable(f"{name} does not import here ({why})")
        self.packages[name] = f"stand-in ({why})"
        self.stand_ins[name] = what
        return False

    def close(self) -> None:
        if self._finder is not None:
            sys.meta_path.remove(self._finder)
        for name in [n for n in sys.modules if isinstance(sys.modules[n], _StandIn)]:
            del sys.modules[name]
        for name in [n for n in sys.modules if _under(n, _REFERENCE_MODULES)]:
            del sys.modules[name]  # the reference packages may hold stand-ins: import them afresh next time


@contextlib.contextmanager
def stand_ins(*names: str, always: dict[str, str] | None = None) -> Iterator[StandIns]:
    """``names`` importable for the block (real where they import); afterwards the stand-ins and the
    reference packages' modules are forgotten. Yields the record."""
    record = StandIns(always)
    try:
        for name in names:
            record.need(name)
        yield record
    finally:
        record.close()


def _reference_package(name: str, record: StandIns) -> None:
    if importlib.util.find_spec(name) is None:
        raise Unavailable(f"the reference package {name} is not installed (bench/gpu/wheels.sh carries it)")
    record.packages[name] = f"real {_version(name)}"


@contextlib.contextmanager
def _full_float32(device: str) -> Iterator[None]:
    import torch

    if not device.startswith("cuda"):
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _clips(lengths_s: Sequence[float], sample_rate: int, seed: int) -> list[np.ndarray]:
    """Tones plus noise, one frequency per clip (the unit tests' clips)."""
    rng = np.random.default_rng(seed)
    out = []
    for i, s in enumerate(lengths_s):
        t = np.arange(int(s * sample_rate)) / sample_rate
        out.append((0.3 * np.sin(2 * np.pi * (220 + 170 * i) * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32))
    return out


# ----------------------------------------------------------------------------- PaSST


@contextlib.contextmanager
def passt_reference() -> Iterator[tuple[types.SimpleNamespace, StandIns]]:
    """hear21passt's modules (``passt``, ``preprocess``, ``wrapper``) and the stand-in record."""
    with stand_ins("torchaudio", "timm") as record:
        _reference_package("hear21passt", record)
        kaldi = importlib.import_module("torchaudio.compliance.kaldi")
        if not hasattr(kaldi, "get_mel_banks"):  # a torchaudio without Kaldi compliance: say so, stand nothing in
            raise Unavailable(f"torchaudio {_version('torchaudio')} has no compliance.kaldi.get_mel_banks, "
                              "which hear21passt's front end calls")
        yield types.SimpleNamespace(
            passt=importlib.import_module("hear21passt.models.passt"),
            preprocess=importlib.import_module("hear21passt.models.preprocess"),
            wrapper=importlib.import_module("hear21passt.wrapper"),
        ), record


def passt_wrapper(ref: types.SimpleNamespace, net: Any, window_ms: int = 10000, hop_ms: int = 2500,
                  mode: str = "embed_only") -> Any:
    """hear21passt's ``PasstBasicWrapper`` with the front end exactly as ``hear21passt.base.get_basic_model`` builds it."""
    mel = ref.preprocess.AugmentMelSTFT(n_mels=128, sr=32000, win_length=800, hopsize=320, n_fft=1024, freqm=48,
                                        timem=192, htk=False, fmin=0.0, fmax=None, norm=1, fmin_aug_range=10,
                                        fmax_aug_range=2000)
    return ref.wrapper.PasstBasicWrapper(mel=mel, net=net, max_model_window=window_ms, scene_hop=hop_ms, mode=mode).eval()


def passt_equivalence(device: str = "cpu", tiny: bool = True, seed: int = 0) -> dict[str, Any]:
    """ausweep's PaSST (``pooling='scene'``: the 527 logits and the token features) against
    hear21passt's ``get_scene_embeddings``, clips shorter than, equal to and longer than the window.
    ``tiny``: 2 blocks, 192 wide, a 2 s window; else the released architecture with its 10 s window."""
    import contextlib as _cl
    import io

    import torch

    from ausweep.models.passt import PASST_FILE, load_passt

    with passt_reference() as (ref, record), tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(seed)
        with _cl.redirect_stdout(io.StringIO()):  # hear21passt prints its settings
            if tiny:
                net = ref.passt.PaSST(img_size=(128, 198), stride=10, embed_dim=192, depth=2, num_heads=3, distilled=True)
                window_s, hop_s, lengths = 2.0, 0.5, (0.4, 1.3, 2.0, 3.3, 5.05)
            else:
                net = ref.passt.get_model(arch="passt_s_swa_p16_128_ap476", pretrained=False, fstride=10, tstride=10,
                                          input_fdim=128, input_tdim=998)
                window_s, hop_s, lengths = 10.0, 2.5, (1.0, 10.0, 13.3)
            path = Path(tmp) / PASST_FILE.filename
            torch.save(net.state_dict(), path)
            wrapper = passt_wrapper(ref, net, int(window_s * 1000), int(hop_s * 1000), mode="all").to(device)
        clips = _clips(lengths, 32000, seed)
        with _full_float32(device):
            enc = load_passt(checkpoint=str(path), pooling="scene", window_s=window_s, hop_s=hop_s, batch_size=2, device=device)
            with torch.no_grad():
                want = np.stack([wrapper.get_scene_embeddings(torch.from_numpy(c)[None])[0].cpu().numpy() for c in clips])
            got = enc.embed(clips)
        keys_equal = set(enc.net.state_dict()) == set(net.state_dict())
    classes = 527
    return _result(record, {"scene_logits": float(np.abs(got[:, :classes] - want[:, :classes]).max()),
                            "scene_tokens": float(np.abs(got[:, classes:] - want[:, classes:]).max())},
                   scale=float(np.abs(want).max()), checks={"every_key_consumed": keys_equal},
                   size=f"{'tiny' if tiny else 'released'} PaSST, clips {list(lengths)} s, window {window_s} s")


# ----------------------------------------------------------------------------- PANN


@contextlib.contextmanager
def pann_reference() -> Iterator[tuple[types.ModuleType, StandIns]]:
    """``panns_inference.models`` (its label CSV in a temporary HOME) and the stand-in record."""
    with stand_ins("librosa", "matplotlib", always=ALWAYS["pann"]) as record, tempfile.TemporaryDirectory() as tmp:
        _reference_package("panns_inference", record)
        _reference_package("torchlibrosa", record)
        home = Path(tmp) / "home"
        (home / "panns_data").mkdir(parents=True)
        rows = ["index,mid,display_name"] + [f'{i},/m/{i:05d},"class {i}"' for i in range(527)]
        (home / "panns_data" / "class_labels_indices.csv").write_text("\n".join(rows) + "\n")
        saved = os.environ.get("HOME")
        os.environ["HOME"] = str(home)
        try:
            models = importlib.import_module("panns_inference.models")
            if importlib.import_module("panns_inference.config").classes_num != 527:
                raise RuntimeError("panns_inference did not read the 527-row label file")
        finally:
            if saved is None:
                os.environ.pop("HOME", None)
            else:
                os.environ["HOME"] = saved
        yield models, record


def random_cnn14(models: types.ModuleType, seed: int = 0) -> Any:
    """The reference CNN14 as panns_inference's AudioTagging builds it, with random weights and
    random BatchNorm statistics (fresh ones are 0/1, which would hide a mixed-up buffer)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = models.Cnn14(sample_rate=32000, window_size=1024, hop_size=320, mel_bins=64, fmin=50, fmax=14000,
                           classes_num=527)
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.normal_(0, 0.1)
                m.num_batches_tracked.fill_(1000)
    return net.eval()


def pann_equivalence(device: str = "cpu", tiny: bool = True, seed: int = 0) -> dict[str, Any]:
    """ausweep's CNN14 ``embedding`` against panns_inference's (what ``AudioTagging.inference`` returns),
    clip by clip. CNN14 has one size; ``tiny`` only shortens the clips."""
    import torch

    from ausweep.models.pann import PANN_FILE, load_pann

    with pann_reference() as (models, record), tempfile.TemporaryDirectory() as tmp:
        net = random_cnn14(models, seed)
        path = Path(tmp) / PANN_FILE.filename
        torch.save({"model": net.state_dict(), "iteration": 0}, path)  # the released file's layout
        lengths = (1.0, 1.37, 0.5) if tiny else (1.0, 4.7, 10.0)
        clips = _clips(lengths, 32000, seed)
        with _full_float32(device):
            enc = load_pann(checkpoint=str(path), device=device)
            net = net.to(device)
            with torch.no_grad():
                want = np.stack([net(torch.from_numpy(c)[None].to(device))["embedding"][0].cpu().numpy() for c in clips])
            got = enc.embed(clips)
        keys_equal = set(enc.net.state_dict()) == set(net.state_dict())
    return _result(record, {"embedding": float(np.abs(got - want).max())}, scale=float(np.abs(want).max()),
                   checks={"every_key_consumed": keys_equal}, size=f"CNN14 (released size), clips {list(lengths)} s")


# ----------------------------------------------------------------------------- AudioMAE


def audiomae_equivalence(device: str = "cpu", tiny: bool = True, seed: int = 0) -> dict[str, Any]:
    """:func:`ausweep.models.audiomae.compare_with_reference` for both files (pre-trained: all tokens
    and their mean; fine-tuned: the pooled vector and the logits), against timm's VisionTransformer.
    ``tiny``: a 2-block, 32-wide ViT on 64 x 32 fbank (the unit test's); else the released ViT-B/16."""
    from ausweep.models.audiomae import AudioMAEConfig, compare_with_reference

    small = dict(frames=64, mels=32, dim=32, depth=2, heads=4, num_classes=7)
    with stand_ins("timm") as record:
        diffs: dict[str, float] = {}
        scale = 0.0
        with _full_float32(device):
            for kind in ("pretrained", "finetuned"):
                cfg = AudioMAEConfig(kind=kind, **small) if tiny else None
                out = compare_with_reference(kind, cfg=cfg, device=device, seed=seed)
                scale = max(scale, out.pop("scale"))
                diffs.update({f"{kind}_{k}": v for k, v in out.items()})
        if "finetuned_fbank" in diffs:
            record.packages.setdefault("torchaudio", f"real {_version('torchaudio')} (fbank compared with the official call)")
    return _result(record, diffs, scale=scale, size="tiny ViT (2 blocks, 32 wide)" if tiny else "ViT-B/16 (released size)")


# ----------------------------------------------------------------------------- LAION-CLAP


def laion_clap_equivalence(device: str = "cpu", tiny: bool = True, seed: int = 0) -> dict[str, Any]:
    """:func:`ausweep.models.laion_clap.compare_with_reference`: HTSAT-tiny at full size (both
    ``tiny`` values) with a small random RoBERTa, audio and text embeddings."""
    from ausweep.models.laion_clap import compare_with_reference

    with stand_ins(always=ALWAYS["laion_clap"]) as record:
        _reference_package("laion_clap", record)
        _reference_package("torchlibrosa", record)
        with contextlib.suppress(Exception):  # transformers' CLAP side first (its lazy imports see the real world)
            import transformers.models.clap.modeling_clap  # noqa: F401
        for name in ("librosa", "torchvision"):  # torchlibrosa's front end; laion_clap's utils.py
            record.need(name)
        with _full_float32(device):
            out = compare_with_reference(device=device, seed=seed)
    scale = out.pop("scale")
    return _result(record, out, scale=scale, size="HTSAT-tiny (released size), RoBERTa text branch 1 layer")


# ----------------------------------------------------------------------------- entry point


def _result(record: StandIns, diffs: dict[str, float], scale: float, size: str,
            checks: dict[str, bool] | None = None) -> dict[str, Any]:
    max_diff = max(diffs.values())
    tolerance = TOLERANCE * max(1.0, scale)
    checks = checks or {}
    return {"max_diff": max_diff, "tolerance": tolerance, "ok": bool(max_diff < tolerance and all(checks.values())),
            "diffs": diffs, "scale": scale, **({"checks": checks} if checks else {}), "size": size,
            "packages": dict(sorted(record.packages.items())), "stand_ins": dict(sorted(record.stand_ins.items())),
            "real": sorted(k for k, v in record.packages.items() if v.startswith("real"))}


CHECKS: dict[str, Callable[..., dict[str, Any]]] = {
    "passt": passt_equivalence,
    "pann": pann_equivalence,
    "audiomae": audiomae_equivalence,
    "laion_clap": laion_clap_equivalence,
}


def reference_equivalence(name: str, device: str = "cpu", tiny: bool = True, seed: int = 0) -> dict[str, Any]:
    """Run check ``name`` (one of :data:`CHECKS`) and return its result: ``max_diff`` against
    ``tolerance`` (``ok``), each difference, the output scale, which packages were real and which
    stood in for, ``device`` and ``seconds``. Raises :class:`Unavailable` when the reference package
    is not installed."""
    if name not in CHECKS:
        raise ValueError(f"unknown reference check {name!r}; known: {sorted(CHECKS)}")
    t0 = time.perf_counter()
    out = CHECKS[name](device=device, tiny=tiny, seed=seed)
    return {**out, "device": device, "seconds": time.perf_counter() - t0}
