"""Every third-party package ausweep imports is declared, and the installed versions meet the bounds.

Declared means: in pyproject.toml's ``dependencies``, in one of its optional extras, or among the
packages the Makefile installs beside them (``OFFLINE_MODELS``, ``REFERENCES``, ``REFERENCE_DEPS``). Imports inside
functions (lazy imports of heavy or optional packages) count too.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest itself depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "ausweep"


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _requirements() -> list[Requirement]:
    project = _pyproject()["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project.get("optional-dependencies", {}).values():
        reqs += [Requirement(r) for r in extra]
    return reqs


def _no_deps_models() -> set[str]:
    """The packages the Makefile installs beside the extras: the model packages and reference
    implementations (``OFFLINE_MODELS``, ``REFERENCES``, with --no-deps) and ``REFERENCE_DEPS``."""
    text = (ROOT / "Makefile").read_text()
    names = set()
    for var in ("OFFLINE_MODELS", "REFERENCES", "REFERENCE_DEPS"):
        m = re.search(rf"^{var}\s*:=\s*(.*)$", text, re.MULTILINE)
        assert m, f"Makefile: {var} not found"
        names |= {canonicalize_name(Requirement(r).name) for r in m.group(1).split()}
    return names


def third_party_imports(root: Path) -> dict[str, set[str]]:
    """``{top-level module: {files importing it}}`` for every absolute import under ``root`` that is
    neither the standard library nor ausweep itself, wherever in a file it appears."""
    found: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "ausweep":
                    found.setdefault(top, set()).add(str(path.relative_to(root.parent)))
    return found


def test_scan_sees_lazy_imports():
    # psutil is imported only inside functions of ausweep.cluster.local; the scan must see it.
    found = third_party_imports(PACKAGE)
    assert "ausweep/cluster/local.py" in found["psutil"]
    assert "os" not in found and "ausweep" not in found


def test_every_imported_package_is_declared():
    declared = {canonicalize_name(r.name) for r in _requirements()} | _no_deps_models()
    dists = md.packages_distributions()
    missing = []
    for module, files in sorted(third_party_imports(PACKAGE).items()):
        # A module can ship in several distributions (mlflow: mlflow, mlflow-skinny, ...); any one counts.
        candidates = {canonicalize_name(d) for d in dists.get(module, [])} or {canonicalize_name(module)}
        if not candidates & declared:
            missing.append(f"{module} (distribution {sorted(candidates)}; imported in {sorted(files)[:3]})")
    assert not missing, "imported but not declared in pyproject.toml or the Makefile:\n  " + "\n  ".join(missing)


def test_core_dependencies_have_lower_bounds():
    unbounded = [str(r) for r in map(Requirement, _pyproject()["project"]["dependencies"])
                 if not any(s.operator in (">=", "~=", "==") for s in r.specifier)]
    assert not unbounded, f"core dependencies without a lower bound: {unbounded}"


@pytest.mark.parametrize("req", _requirements(), ids=str)
def test_installed_version_meets_declared_bound(req: Requirement):
    try:
        version = md.version(req.name)
    except md.PackageNotFoundError:
        pytest.skip(f"{req.name} is not installed here (an optional extra)")
    # A local build (torch 2.13.0+cpu) satisfies >=2.3; prereleases count as tested too.
    assert req.specifier.contains(version, prereleases=True), f"installed {req.name} {version} does not meet {req}"
