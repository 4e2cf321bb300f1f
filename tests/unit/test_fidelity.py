"""FIDELITY.md is a checked document: every study has its table, and every config key it names exists.

A row's last column names the config key that changes the behaviour; a key that was renamed or
never existed would send a reader nowhere, so each one must resolve in the study's config classes
(or the sweep file's ``tune`` settings).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ausweep.config import describe
from ausweep.sweep.spec import SchedulerSpec, TuneSettings
from ausweep.sweep.studies import STUDIES

REPO = Path(__file__).resolve().parents[2]
_KEY = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_@]+)*(\.\*)?$")


def _sections() -> dict[str, list[list[str]]]:
    """Section heading -> table rows (cells), header and separator rows left out."""
    out: dict[str, list[list[str]]] = {}
    heading = None
    for line in (REPO / "FIDELITY.md").read_text().splitlines():
        if line.startswith("## "):
            heading = line[3:]
            out[heading] = []
        elif heading and line.startswith("|") and not set(line) <= set("|- "):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
            if cells[0] != "paper says":
                out[heading].append(cells)
    return out


def _studies_of(heading: str) -> list[str]:
    return [s for s in STUDIES.names() if f"`{s}`" in heading]


def _fields(heading: str) -> set[str]:
    names = {name for name, _, _ in describe(TuneSettings, prefix="tune.")}
    names |= {name for name, _, _ in describe(SchedulerSpec, prefix="tune.scheduler.")}
    for study in _studies_of(heading):
        names |= {name for name, _, _ in describe(STUDIES.get(study).config_cls)}
    if "report correlation" in heading:
        from ausweep.report.correlation import CorrelationConfig

        names |= {name for name, _, _ in describe(CorrelationConfig)}
    return names


def test_every_study_has_a_table():
    sections = _sections()
    covered = {s for heading in sections for s in _studies_of(heading)}
    assert covered == set(STUDIES.names())
    for heading, rows in sections.items():
        assert rows, f"FIDELITY.md section '{heading}' has no rows"
        for cells in rows:
            assert len(cells) == 4 and all(cells[:3]), f"{heading}: a row needs 4 cells, the first three filled: {cells}"


def _keys(cell: str) -> list[str]:
    """The config keys among a cell's backticked tokens (not paths, commands or values)."""
    out = []
    for token in re.findall(r"`([^`]+)`", cell):
        if token.startswith("--"):
            continue  # a command-line flag such as --preset NAME, not a config key
        if _KEY.match(token) and "." in token or token in {"dtype", "sets", "describer", "controls", "layers", "method",
                                                            "positions", "chat", "template", "fmt", "length_norm"}:
            out.append(token)
    return out


@pytest.mark.parametrize("heading", list(_sections()))
def test_named_config_keys_exist(heading):
    fields = _fields(heading)
    missing = []
    for cells in _sections()[heading]:
        for key in _keys(cells[3]):
            if key.startswith("ausweep."):
                continue  # a function, checked by import below
            wanted = key.removesuffix(".*")
            if not any(f == wanted or f.startswith(wanted + ".") or f.startswith(wanted.rstrip("*")) for f in fields):
                missing.append(key)
    assert not missing, f"FIDELITY.md '{heading}' names config keys that do not exist: {missing}"


def test_the_key_pattern_is_not_vacuous():
    assert _keys("`probe.val_fraction`, `tune.metric` and `configs/x.yaml`, `--preset layers`") == ["probe.val_fraction", "tune.metric"]
    assert "probe.no_such_key" not in _fields("Probing (`probe`)")
    assert "probe.val_fraction" in _fields("Probing (`probe`)")
