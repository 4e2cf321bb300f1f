"""Stand-ins for what reference packages import but cannot have here, for equivalence tests only.

timm and laion_clap import torchvision at module level (timm: ``FrozenBatchNorm2d`` in
``timm.layers``, data transforms; laion_clap: ``clap_module/transform.py`` and ``utils.py``), and
torchvision's wheels do not load beside the CPU torch here. None of that code runs in the model
paths the tests compare, so :func:`torchvision_stub` lets the import succeed with placeholder
classes that refuse to be instantiated. The stub is visible only inside the ``with`` block: the
finder and the placeholder modules are removed afterwards, so transformers' own checks for
torchvision still see none.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Iterator


class _PlaceholderMeta(type):
    def __getattr__(cls, name: str) -> str:
        if name.startswith("__"):
            raise AttributeError(name)
        return f"{cls.__name__}.{name}"  # enum-like members (InterpolationMode.BILINEAR) used as dict keys


def _refuse(self, *args, **kwargs):
    raise RuntimeError(f"torchvision is stubbed in this test: {type(self).__name__} cannot be used")


class _StubModule(types.ModuleType):
    __path__: list[str] = []

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        cls = _PlaceholderMeta(name, (), {"__init__": _refuse})
        setattr(self, name, cls)
        return cls


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return _StubModule(spec.name)

    def exec_module(self, module):
        pass


@contextlib.contextmanager
def torchvision_stub() -> Iterator[None]:
    """Import reference packages inside this block; torchvision resolves to placeholders."""
    if "torchvision" in sys.modules and not isinstance(sys.modules["torchvision"], _StubModule):
        yield  # a real torchvision is loaded: nothing to stand in for
        return
    try:  # transformers decides at import whether torchvision is there: let it decide before the stub
        import transformers.models.auto.image_processing_auto  # noqa: F401
    except Exception:  # noqa: BLE001 - transformers absent or different: nothing to settle
        pass
    finder = _StubFinder()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            if isinstance(sys.modules[name], _StubModule):
                del sys.modules[name]


def import_timm_vit():
    """``timm.models.vision_transformer`` imported under :func:`torchvision_stub` (None without timm)."""
    import importlib.util

    if importlib.util.find_spec("timm") is None:
        return None
    with torchvision_stub():
        import timm.models.vision_transformer as vit
    return vit
