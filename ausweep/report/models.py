"""Each language model's numbers from every study, side by side: ``python -m ausweep.report models``.

One row per language model that appears in a finished sweep of the tracking store (any sweep file of
a study: parent runs tagged ``ausweep.study``); one column per number a study reports about it
(:data:`COLUMNS`):

* ``probe``: held-out ``test/acc@1``, the trial chosen on ``val/acc@1`` among the model's trials
  (any audio encoder, any probe setting);
* ``auditorybench_baselines``: zero-shot ``animal/test/mc_acc`` and ``pitch/test/acc``, each chosen on
  its own dev split;
* ``audiobert`` (sweep ``lora_rank``): ``test/acc`` per task, chosen on ``dev/acc``;
* ``knowledge_text``: text-only accuracy per category (``acc/<category>``) and overall (``acc``);
* ``lalm_backbone``: the LALM built on the model, ``acc`` on the evaluation items, chosen on ``dev/acc``;
* ``lens``: resolution layer per attribute (``<attribute>/resolution_layer``), text-LM runs.

**Identity.** A model is its resolved source, not the name a sweep used: the registry name ``gpt2``
and the hub id ``openai-community/gpt2`` are one row (``hf:openai-community/gpt2``), a local folder is
its path, and a non-default revision is part of the identity. An alias table
(``configs/model_aliases.yaml``, editable) joins different models on purpose, e.g. a base model and
its instruct version; the ``joined`` column of the table says which were joined.

**Choosing a run.** When several runs give the same cell (a grid over hyperparameters, a model in two
sweeps), the run with the best value of the cell's *selection* metric is used: always a validation or
dev metric, never the reported one. A study without a dev metric (knowledge_text, lens) has no
hyperparameters to choose; there the most recent run is used and the report notes the others, so a
reader sees what was pooled. Every cell is traceable: ``sources.csv`` lists, per cell, the MLflow run
it came from, the metric it was chosen on and how many runs competed.

**Missing cells are blank**, never zero: in the CSV, the Markdown and the figure.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ausweep.config import option

log = logging.getLogger(__name__)

EXPERIMENT = "models"  # the MLflow experiment the report is logged to


@dataclass(frozen=True)
class Column:
    """What one study contributes to the table.

    ``metrics``: ``(reported, chosen_on)`` pairs; a reported name ending in ``/*`` stands for every
    metric one level below (``acc/*``: ``acc/music``, ``acc/phonology``...), each chosen on the same
    ``chosen_on`` metric (None: the study has nothing to choose on). ``group_by``: params whose values
    split the study's cells (AudioBERT's ``task``). ``only``: params a run must have these values of
    (string form) to count, e.g. lens runs of a text LM rather than a LALM.
    """

    study: str
    model_param: str
    metrics: tuple[tuple[str, str | None], ...]
    group_by: tuple[str, ...] = ()
    only: tuple[tuple[str, str], ...] = ()
    revision_param: str | None = None


COLUMNS: tuple[Column, ...] = (
    Column("probe", "text.model", (("test/acc@1", "val/acc@1"),), revision_param="text.revision"),
    Column("auditorybench_baselines", "model",
           (("animal/test/mc_acc", "animal/dev/mc_acc"), ("pitch/test/acc", "pitch/dev/acc")), revision_param="revision"),
    Column("audiobert", "model", (("test/acc", "dev/acc"),), group_by=("task",)),
    Column("knowledge_text", "model", (("acc", None), ("acc/*", None)), revision_param="revision"),
    Column("lalm_backbone", "lalm.llm", (("acc", "dev/acc"),)),
    Column("lens", "model", (("*/resolution_layer", None),), only=(("lalm", "None"),), revision_param="revision"),
)
DEFAULT_ALIASES = "configs/model_aliases.yaml"


@dataclass(frozen=True)
class ModelsConfig:
    preset: str | None = option(None, help="Only sweeps run with this preset (e.g. demo); '' for sweeps run without one; None: every finished sweep.")
    studies: list[str] = option([c.study for c in COLUMNS], help="Studies to read, in column order.")
    aliases: str | None = option(None, help=f"YAML alias table joining models on purpose (see the module doc); default {DEFAULT_ALIASES} when it exists.")
    tracking_uri: str | None = option(None, help="MLflow tracking URI; default: $MLFLOW_TRACKING_URI or ./mlruns.db.")
    out_dir: str | None = option(None, help="Also write models.csv, models.md, sources.csv and models.png here.")
    log_to_mlflow: bool = option(True, help=f"Log the report as a run of the MLflow experiment `{EXPERIMENT}`.")

    def __post_init__(self) -> None:
        known = [c.study for c in COLUMNS]
        unknown = [s for s in self.studies if s not in known]
        if unknown:
            raise ValueError(f"studies: unknown {unknown} (known: {', '.join(known)})")


class ReportError(ValueError):
    """Nothing to report, or an alias table that cannot be read."""


@dataclass(frozen=True)
class Cell:
    """One number of the table and where it came from."""

    model: str
    column: str
    value: float
    run_id: str
    experiment_id: str
    chosen_on: str | None
    candidates: int
    note: str = ""


@dataclass
class ModelsReport:
    columns: list[str]
    rows: dict[str, dict[str, Cell]]
    names: dict[str, set[str]] = field(default_factory=dict)  # model -> names the sweeps used
    joined: dict[str, list[str]] = field(default_factory=dict)  # alias -> identities joined
    notes: list[str] = field(default_factory=list)

    def value(self, model: str, column: str) -> float | None:
        cell = self.rows.get(model, {}).get(column)
        return None if cell is None else cell.value


# ----------------------------------------------------------------------------- identity


def model_identity(name: str, revision: str | None = None) -> str:
    """``hf:<hub id>``, ``pypi:<dist>``, ``local:<path>``, ``builtin:tiny:<name>``, with ``@<revision>``
    when one is set: what a model is, whatever name a sweep gave it."""
    from ausweep.models.text import text_model_identity

    rev = None if revision in (None, "", "None", "main") else revision
    try:
        ident = text_model_identity(name, rev)
    except Exception:  # not a text model this install knows (e.g. a LALM folder): its name is all we have
        return name + (f"@{rev}" if rev else "")
    source = ident.get("source", name)
    if source == "local":
        source = f"local:{Path(name).expanduser().resolve()}"
    elif source == "builtin:tiny":
        source = f"builtin:tiny:{name}"
    return source + (f"@{rev}" if rev else "")


def load_aliases(path: str | os.PathLike | None) -> dict[str, str]:
    """``{identity or name: alias}`` from an alias table ``{aliases: {alias: [member, ...]}}``; a
    member is a registry name, hub id, local path or identity (``hf:...``)."""
    from ausweep.config import load_yaml

    if path is None:
        default = _default_aliases()
        if not default.is_file():
            return {}
        path = default
    p = Path(path)
    if not p.is_file():
        raise ReportError(f"{p}: alias table not found")
    raw = load_yaml(p) or {}
    groups = raw.get("aliases", {}) if isinstance(raw, dict) else None
    if not isinstance(groups, dict):
        raise ReportError(f"{p}: field 'aliases' must map an alias to a list of models")
    out: dict[str, str] = {}
    for alias, members in groups.items():
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise ReportError(f"{p}: field 'aliases.{alias}' must be a list of model names")
        for m in members:
            ident = m if ":" in m.split("/")[0] else model_identity(m)
            if ident in out and out[ident] != alias:
                raise ReportError(f"{p}: model '{m}' is in both 'aliases.{out[ident]}' and 'aliases.{alias}'")
            out[ident] = str(alias)
    return out


def _default_aliases() -> Path:
    from ausweep.files import resources_root

    return resources_root() / DEFAULT_ALIASES


# ----------------------------------------------------------------------------- reading and choosing


def finished_sweeps(client: Any, study: str, preset: str | None) -> list[Any]:
    """Every finished sweep (parent run) of ``study``, in any experiment (a user's own sweep file of
    the study counts too), with ``preset`` if given; newest first."""
    experiments = [e.experiment_id for e in client.search_experiments(max_results=10000)]
    if not experiments:
        return []
    filt = f"attributes.status = 'FINISHED' and tags.`ausweep.study` = '{study}'"
    if preset is not None:
        filt += f" and tags.`ausweep.preset` = '{preset}'"
    return [r for r in client.search_runs(experiments, filter_string=filt, order_by=["attributes.start_time DESC"],
                                          max_results=10000)
            if "mlflow.parentRunId" not in r.data.tags]


def _expand(pattern: str, metrics: dict[str, float]) -> list[str]:
    """The metric names a reported name stands for (``acc/*``: one level below ``acc``)."""
    if "*" not in pattern:
        return [pattern] if pattern in metrics else []
    head, _, tail = pattern.partition("*")
    depth = pattern.count("/")
    return sorted(k for k in metrics if k.startswith(head) and k.endswith(tail) and k.count("/") == depth
                  and len(k) > len(head) + len(tail))


def _column_name(col: Column, group: tuple[str, ...], metric: str) -> str:
    return "/".join((col.study, *group, metric))


def study_cells(col: Column, runs: list[tuple[Any, int]], aliases: dict[str, str],
                names: dict[str, set[str]], joined: dict[str, set[str]]) -> tuple[list[Cell], list[str]]:
    """The cells of one study from its finished child runs ``(run, start_time)``: per (model, group,
    metric), the run chosen on the metric's selection metric, or the newest where there is none."""
    from ausweep.report.correlation import metric_name

    candidates: dict[tuple[str, str, str | None], list[tuple[Any, float, float]]] = {}
    notes: list[str] = []
    for run, start in runs:
        params = run.data.params
        if any(params.get(k) != v for k, v in col.only):
            continue
        name = params.get(col.model_param)
        if name is None:
            notes.append(f"{col.study}: run {run.info.run_id} has no param '{col.model_param}'; left out")
            continue
        ident = model_identity(name, params.get(col.revision_param) if col.revision_param else None)
        model = aliases.get(ident, ident)
        names.setdefault(model, set()).add(name)
        if model != ident:
            joined.setdefault(model, set()).add(ident)
        metrics = {metric_name(k): v for k, v in run.data.metrics.items()}
        group = tuple(str(params.get(g, "")) for g in col.group_by)
        for reported, chosen_on in col.metrics:
            for metric in _expand(reported, metrics):
                value = metrics[metric]
                if value is None or math.isnan(value):
                    continue
                key = (model, _column_name(col, group, metric), chosen_on)
                sel = metrics.get(chosen_on, math.nan) if chosen_on else float(start)
                candidates.setdefault(key, []).append((run, value, sel))
    cells = []
    for (model, column, chosen_on), cands in candidates.items():
        usable = [c for c in cands if not math.isnan(c[2])]
        if not usable:
            notes.append(f"{column} for {model}: no run has its selection metric {chosen_on}; left blank")
            continue
        run, value, _ = max(usable, key=lambda c: c[2])
        note = ""
        if chosen_on is None and len(cands) > 1:
            note = f"newest of {len(cands)} runs (no dev metric to choose on): also {', '.join(c[0].info.run_id for c in cands if c[0] is not run)}"
            notes.append(f"{column} for {model}: {note}")
        cells.append(Cell(model, column, float(value), run.info.run_id, run.info.experiment_id, chosen_on, len(cands), note))
    return cells, notes


def build(client: Any, cfg: ModelsConfig) -> ModelsReport:
    """Read every study's finished sweeps and lay out the table (nothing written)."""
    aliases = load_aliases(cfg.aliases)
    cols = [c for c in COLUMNS if c.study in cfg.studies]
    rows: dict[str, dict[str, Cell]] = {}
    names: dict[str, set[str]] = {}
    joined: dict[str, set[str]] = {}
    notes: list[str] = []
    order: list[str] = []
    for col in sorted(cols, key=lambda c: cfg.studies.index(c.study)):
        sweeps = finished_sweeps(client, col.study, cfg.preset)
        if not sweeps:
            notes.append(f"{col.study}: no finished sweep" + (f" with preset '{cfg.preset}'" if cfg.preset is not None else ""))
            continue
        from ausweep.report.correlation import finished_children

        runs = [(c, c.info.start_time or 0) for p in sweeps for c in finished_children(client, p)]
        cells, n = study_cells(col, runs, aliases, names, joined)
        notes += n
        for cell in sorted(cells, key=lambda c: c.column):
            rows.setdefault(cell.model, {})[cell.column] = cell
            if cell.column not in order:
                order.append(cell.column)
    if not rows:
        raise ReportError("no language model in any finished sweep" + (f" with preset '{cfg.preset}'" if cfg.preset is not None else "")
                          + ": run a sweep first (e.g. `python -m ausweep.sweep probe --preset demo`)")
    return ModelsReport(order, rows, names, {k: sorted(v) for k, v in joined.items()}, notes)


# ----------------------------------------------------------------------------- output


def table_rows(rep: ModelsReport) -> list[dict[str, Any]]:
    """One dict per model: ``model``, ``names`` (as the sweeps wrote them), ``joined``, then every
    column; a missing cell is None (blank in CSV and Markdown)."""
    out = []
    for model in sorted(rep.rows):
        row: dict[str, Any] = {"model": model, "names": ", ".join(sorted(rep.names.get(model, ()))),
                               "joined": ", ".join(rep.joined.get(model, []))}
        row.update({c: rep.value(model, c) for c in rep.columns})
        out.append(row)
    return out


def to_markdown(rep: ModelsReport) -> str:
    header = ["model", "names", "joined", *rep.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table_rows(rep):
        cells = [row["model"], row["names"], row["joined"]] + [
            "" if row[c] is None else f"{row[c]:.4g}" for c in rep.columns]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rep: ModelsReport, path: Path) -> Path:
    """A heat map, one row per model and one column per number, each column scaled to its own range
    (accuracies and layers differ in scale); values printed in the cells, missing cells blank."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    models = sorted(rep.rows)
    vals = np.array([[np.nan if rep.value(m, c) is None else rep.value(m, c) for c in rep.columns] for m in models], dtype=float)
    scaled = np.full_like(vals, np.nan)
    for j in range(vals.shape[1]):
        col = vals[:, j]
        if np.isfinite(col).any():
            lo, hi = np.nanmin(col), np.nanmax(col)
            scaled[:, j] = 0.5 if hi == lo else (col - lo) / (hi - lo)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(rep.columns) + 3), max(2.5, 0.45 * len(models) + 1.5)))
    ax.imshow(np.ma.masked_invalid(scaled), aspect="auto", cmap="viridis", vmin=0, vmax=1)
    for i in range(vals.shape[0]):
        for j in range(vals.shape[1]):
            if np.isfinite(vals[i, j]):
                ax.text(j, i, f"{vals[i, j]:.3g}", ha="center", va="center", fontsize=7,
                        color="white" if scaled[i, j] < 0.5 else "black")
    ax.set_xticks(range(len(rep.columns)), rep.columns, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(models)), models, fontsize=7)
    ax.set_title("Each language model across studies (colour: per-column rank; blank: not run)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def report(cfg: ModelsConfig) -> ModelsReport:
    """Build the table, write it (CSV, Markdown, sources, figure) and log it to MLflow."""
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from ausweep.track.store import SweepTracker, split_credentials, tracking_uri

    uri = cfg.tracking_uri or tracking_uri()
    bare, credentials = split_credentials(uri)
    for key, value in credentials.items():
        os.environ.setdefault(key, value)
    rep = build(MlflowClient(tracking_uri=bare), cfg)
    for note in rep.notes:
        log.info("%s", note)
    sources = [{"model": c.model, "column": c.column, "value": c.value, "experiment_id": c.experiment_id, "run_id": c.run_id,
                "chosen_on": c.chosen_on or "", "candidates": c.candidates, "note": c.note}
               for cells in rep.rows.values() for c in cells.values()]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(cfg.out_dir) if cfg.out_dir else Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        files = [out / "models.csv", out / "models.md", out / "sources.csv"]
        pd.DataFrame(table_rows(rep), columns=["model", "names", "joined", *rep.columns]).to_csv(files[0], index=False)
        files[1].write_text(to_markdown(rep))
        pd.DataFrame(sources).sort_values(["model", "column"]).to_csv(files[2], index=False)
        files.append(plot(rep, out / "models.png"))
        if rep.notes:
            (out / "notes.txt").write_text("\n".join(rep.notes) + "\n")
            files.append(out / "notes.txt")
        if cfg.log_to_mlflow:
            tracker = SweepTracker(EXPERIMENT, uri=uri)
            run_id = tracker.start_parent(
                "models" + (f"-{cfg.preset}" if cfg.preset else ""),
                params={"preset": "" if cfg.preset is None else cfg.preset, "studies": ",".join(cfg.studies),
                        "aliases": str(cfg.aliases or _default_aliases()), "models": len(rep.rows), "columns": len(rep.columns)},
                tags={"ausweep.report": "models",
                      "ausweep.report.source_runs": ",".join(sorted({c["run_id"] for c in sources}))[:5000]},
            )
            for f in files:
                tracker.log_file(run_id, f)
            tracker.end(run_id)
            log.info("logged to MLflow run %s (experiment '%s')", run_id, EXPERIMENT)
    return rep


def run(cfg: ModelsConfig) -> dict[str, float]:
    """Build, write and log the report; returns its size (models, columns, filled cells)."""
    rep = report(cfg)
    return {"models": float(len(rep.rows)), "columns": float(len(rep.columns)),
            "cells": float(sum(len(r) for r in rep.rows.values()))}
