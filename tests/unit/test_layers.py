"""The layout as a checked contract: shared layers below, studies above, one name per study.

import-linter checks the imports (the contracts in pyproject.toml); it cannot see a lazy
``"module:attr"`` registry string, so a scan of every string constant in the shared layers does.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from ausweep.sweep.spec import list_sweeps, load_sweep
from ausweep.sweep.studies import STUDIES

REPO = Path(__file__).resolve().parents[2]
PKG = REPO / "ausweep"
APP = {"cli", "sweep", "report", "cluster", "adapt", "__main__"}
# A sweep file may keep a name users already type; every other sweep is named as its study.
SWEEP_ALIASES = {"lora_rank": "audiobert"}


def _contracts() -> list[dict]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def _study_packages() -> set[str]:
    (independence,) = [c for c in _contracts() if c["type"] == "independence"]
    return {m.removeprefix("ausweep.") for m in independence["modules"]}


def _shared_files() -> list[Path]:
    studies = _study_packages()
    out = []
    for path in sorted(PKG.rglob("*.py")):
        top = path.relative_to(PKG).parts[0].removesuffix(".py")
        if top not in studies and top not in APP:
            out.append(path)
    return out


def test_import_contracts_hold():
    """``lint-imports``: no study imports another, shared layers import no study and no app module."""
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
         "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_contracts_list_every_study_and_every_package():
    studies = _study_packages()
    assert studies == set(STUDIES.names())
    packages = {p.name for p in PKG.iterdir() if (p / "__init__.py").is_file()}
    modules = {p.stem for p in PKG.glob("*.py")} - {"__init__"}
    (shared,) = [c for c in _contracts() if c["name"].startswith("Shared layers")]
    shared_listed = {m.removeprefix("ausweep.") for m in shared["source_modules"]}
    # every package or top-level module is a study, the app layer, or a listed shared layer
    assert packages | modules == studies | (APP & (packages | modules)) | shared_listed


_MODULE_PATH = re.compile(r"^ausweep\.(\w+)[\w.]*(:[\w.]+)?$")


def test_shared_layers_name_no_study_in_strings():
    """No ``"ausweep.<study>..."`` string (a lazy registry target, an import_module argument) below the studies."""
    studies = _study_packages()
    offenders = []
    for path in _shared_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                m = _MODULE_PATH.match(node.value.strip())
                if m and m.group(1) in studies:
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}")
    assert not offenders, "\n".join(offenders)


def test_the_string_scan_finds_a_study_target(tmp_path):
    """The scan above is not vacuous: the pattern matches the registry strings a study would use."""
    assert _MODULE_PATH.match("ausweep.audiobert.retrieval:load_tiny_clap_audio").group(1) == "audiobert"
    assert _MODULE_PATH.match("ausweep.lens").group(1) == "lens"
    assert _MODULE_PATH.match("see ausweep.lens for details") is None


def test_loaded_registries_of_shared_layers_name_no_study():
    from ausweep.data.sources import DATA_SOURCES
    from ausweep.models import AUDIO_MODELS, TEXT_MODELS
    from ausweep.models.catalog import ensure_registered

    ensure_registered()
    studies = _study_packages()
    for reg in (TEXT_MODELS, AUDIO_MODELS, DATA_SOURCES):
        for name in reg.names():
            target = reg.entry(name).target
            text = target if isinstance(target, str) else getattr(target, "loader", "")
            if isinstance(text, str) and text.startswith("ausweep."):
                assert text.split(":")[0].split(".")[1] not in studies, (reg.kind, name, text)


@pytest.mark.parametrize("name", sorted(STUDIES.names()))
def test_one_name_per_study(name):
    """Study ``x`` is ``ausweep/x/``: its STUDY in ``x/study.py``, its config class in ``x/config.py``."""
    assert STUDIES.entry(name).target == f"ausweep.{name}.study:STUDY"
    study = STUDIES.get(name)
    assert study.name == name
    assert study.config_cls.__module__ == f"ausweep.{name}.config"


def test_sweeps_are_named_as_their_study():
    for sweep_name, _ in list_sweeps():
        study = load_sweep(sweep_name).spec.study
        assert study == SWEEP_ALIASES.get(sweep_name, sweep_name), (sweep_name, study)


def test_deprecated_adapt_entry_point_still_runs():
    proc = subprocess.run([sys.executable, "-m", "ausweep.adapt", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "python -m ausweep.audiobert" in proc.stdout
    assert "ausweep.adapt is now ausweep.audiobert" in proc.stderr
