"""Zero-shot text-only AuditoryBench baselines as a sweepable study (``auditorybench_baselines``).

One trial = one LM scored on the chosen tasks and splits (see :mod:`ausweep.auditorybench_baselines.zeroshot`
for how). :func:`run` works with no Ray; the sweep's Tune trainable wraps :func:`trial`.

Metric keys are ``<task>/<split>/<metric>`` (MLflow allows ``/``): ``animal/test/exact_match``
(masked LMs; upstream's metric), ``animal/test/mc_acc`` (4-way multiple choice), ``pitch/test/acc``,
``<task>/<split>/n`` (items scored), ``<task>/<split>/n_in_train`` (rows of the split that also
appear in train) and ``<task>/<split>/n_dropped`` (those left out: all of them under the default
``cross_split_duplicates="drop"``, none under ``"keep"``). Accuracies are fractions in [0, 1].

Dev is for choosing, test and wiki are held out: the sweep ranks its trials on ``pitch/dev/acc``,
and the summary's table and plot name each column's role. The published numbers
(:data:`~ausweep.benchmarks.auditorybench.REFERENCE`) are percentages on every test row
(``cross_split_duplicates="keep"``), and each trial records them as tags.

    python -m ausweep.sweep auditorybench_baselines                  # bert-base/large, Llama-3.1-8B, Qwen2.5-7B (GPU)
    python -m ausweep.sweep auditorybench_baselines --preset demo    # smollm2-135m offline, first 200 test items per task
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ausweep.auditorybench_baselines.config import BaselineConfig
from ausweep.benchmarks.auditorybench import (
    REFERENCE,
    REFERENCE_FOR_MODEL,
    data_file,
    load_auditorybench,
    n_in_train,
)
from ausweep.config import ConfigError, to_dict
from ausweep.study import Study
from ausweep.track.artifacts import rows_to_csv

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- one trial


@dataclass
class Outcome:
    metrics: dict[str, float]
    predictions: dict[str, list[dict[str, Any]]]  # "<task>_<split>" -> one row per item
    kind: str


def evaluate_config(cfg: BaselineConfig) -> Outcome:
    """Load the LM once and score every (task, split) of ``cfg``."""
    from ausweep.auditorybench_baselines.zeroshot import evaluate
    from ausweep.extract.worker import resolve_device
    from ausweep.models.heads import load_lm_with_head

    lm = load_lm_with_head(cfg.model, kind=cfg.kind, device=resolve_device(cfg.device), revision=cfg.revision, dtype=cfg.dtype)
    _check_kind(cfg, lm.kind)
    metrics: dict[str, float] = {}
    predictions: dict[str, list[dict[str, Any]]] = {}
    for task in cfg.tasks:
        for split in cfg.splits:
            items = load_auditorybench(task, split, root=cfg.data_root, fmt=cfg.fmt,
                                       cross_split_duplicates=cfg.cross_split_duplicates)[: cfg.max_items]
            m, rows = evaluate(lm, items, batch_size=cfg.batch_size, length_norm=cfg.length_norm,
                               lowercase=cfg.lowercase, progress=cfg.progress)
            m.update(overlap_counts(cfg, task, split))
            metrics.update({f"{task}/{split}/{k}": v for k, v in m.items()})
            predictions[f"{task}_{split}"] = rows
            log.info("%s %s/%s: %s", cfg.model, task, split, m)
    return Outcome(metrics, predictions, lm.kind)


def run(cfg: BaselineConfig) -> dict[str, float]:
    """Score one LM on AuditoryBench: ``{"animal/test/mc_acc": ..., "pitch/test/acc": ..., ...}``."""
    return evaluate_config(cfg).metrics


def overlap_counts(cfg: BaselineConfig, task: str, split: str) -> dict[str, float]:
    """``n_in_train``: rows of the whole split that also appear in train; ``n_dropped``: how many of
    them ``cfg`` leaves out (all under "drop", none under "keep")."""
    found = n_in_train(task, split, root=cfg.data_root, fmt=cfg.fmt)  # type: ignore[arg-type]
    return {"n_in_train": float(found), "n_dropped": float(found if cfg.cross_split_duplicates == "drop" else 0)}


def reference_tags(model: str) -> dict[str, Any]:
    """Every published number as a tag (``ausweep.reference.<row>.<task>/<split>``, percent), and
    which published row this model reproduces, if any."""
    tags: dict[str, Any] = {"ausweep.reference.row": REFERENCE_FOR_MODEL.get(model, "")}
    for row, numbers in REFERENCE.items():
        for key, value in numbers.items():
            tags[f"ausweep.reference.{row}.{key}"] = value
    return tags


# ----------------------------------------------------------------------------- sweep hooks


def trial(cfg: BaselineConfig) -> Iterator[dict[str, Any]]:
    """One Tune trial: metrics, per-item predictions as CSV artifacts, reference numbers as tags."""
    import yaml

    cfg = dataclasses.replace(cfg, progress=False)
    out = evaluate_config(cfg)
    artifacts = {f"predictions/{name}.csv": rows_to_csv(rows) for name, rows in out.predictions.items()}
    artifacts["config.yaml"] = yaml.safe_dump(to_dict(cfg), sort_keys=False)
    dropped = {f"ausweep.n_dropped.{k.rsplit('/', 1)[0]}": int(v) for k, v in out.metrics.items() if k.endswith("/n_dropped")}
    yield {
        **out.metrics,
        "artifacts": artifacts,
        "tags": {"ausweep.lm_kind": out.kind, "ausweep.data": f"auditorybench/{cfg.fmt}",
                 "ausweep.cross_split_duplicates": cfg.cross_split_duplicates, **dropped, **reference_tags(cfg.model)},
    }


def prepare(configs: list[BaselineConfig], space: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Driver side: check every model name (no weights, no network) and data file; the space is returned unchanged."""
    from ausweep.models.heads import check_lm_with_head, known_head_kind

    for c in configs:
        try:
            check_lm_with_head(c.model, c.kind)
        except ValueError as e:  # NoHeadError, a bad folder
            raise ConfigError("", "model", str(e)) from None
        known = c.kind if c.kind != "auto" else known_head_kind(c.model)
        if known is not None:
            _check_kind(c, known)
        for task in c.tasks:
            for split in {*c.splits, "train"}:  # train: to find the other splits' rows that repeat it
                path = data_file(task, split, c.fmt, c.data_root)
                if not path.is_file():
                    raise ConfigError("", "data_root", f"AuditoryBench file {path} is missing")
    return space


def summarize(rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """``results.csv`` (one line per trial, dev columns first), ``results.md`` (the same, ranked on
    :data:`SELECTION_METRIC`, each column named as selection or held out) and ``test_accuracy.png``
    (held-out test accuracy per model as bars, dev as markers, the published numbers as dashed lines)."""
    from ausweep.files import write_text_atomic

    table = results_table(rows)
    csv_path = out_dir / "results.csv"
    table.to_csv(csv_path, index=False)
    md_path = out_dir / "results.md"
    write_text_atomic(md_path, results_markdown(table))
    out = [csv_path, md_path]
    plot = plot_test_accuracy(table, out_dir / "test_accuracy.png")
    if plot is not None:
        out.append(plot)
    return out


# ----------------------------------------------------------------------------- tables and plots

# What the sweep ranks its trials on (sweeps/auditorybench_baselines.yaml's tune.metric; a test keeps
# the two equal). A dev metric: test and wiki are never used to choose.
SELECTION_METRIC = "pitch/dev/acc"
# The role of each split's numbers in a summary.
ROLE = {"dev": "selection", "test": "held out", "wiki": "held out", "train": "train"}
_SETTINGS = ("model", "kind", "fmt", "cross_split_duplicates", "length_norm", "max_items", "dtype")


def results_table(rows: list[dict[str, Any]]):
    """One line per trial: model, the settings that change scores, then every metric (dev first,
    then test, wiki, train)."""
    import pandas as pd

    from ausweep.config import with_defaults

    records = []
    for r in rows:
        cfg = with_defaults(BaselineConfig, r.get("config"))
        rec = {k: cfg.get(k) for k in _SETTINGS}
        # benchmark metrics only ("animal/test/mc_acc"), not Tune's bookkeeping (timestamp, pid...)
        rec.update({k: v for k, v in (r.get("metrics") or {}).items()
                    if k.count("/") == 2 and isinstance(v, (int, float)) and not isinstance(v, bool)})
        records.append(rec)
    table = pd.DataFrame.from_records(records)
    order = list(ROLE)
    metrics = sorted((c for c in table.columns if c not in _SETTINGS),
                     key=lambda c: (order.index(c.split("/")[1]) if c.split("/")[1] in order else len(order), c))
    return table[[c for c in _SETTINGS if c in table.columns] + metrics]


def results_markdown(table) -> str:
    """``table`` as markdown, trials ranked on :data:`SELECTION_METRIC`, accuracy columns headed
    ``<task>/<split>/<metric> (selection)`` for dev and ``(held out)`` for test and wiki."""
    acc = [c for c in table.columns if c.count("/") == 2 and c.rsplit("/", 1)[1] in ("acc", "mc_acc", "exact_match")]
    if SELECTION_METRIC in table.columns:
        table = table.sort_values(SELECTION_METRIC, ascending=False, na_position="last")
    settings = [c for c in ("model", "kind", "fmt", "cross_split_duplicates", "length_norm", "max_items") if c in table.columns]
    heads = settings + [f"{c} ({ROLE.get(c.split('/')[1], '?')})" for c in acc]
    lines = [
        f"Trials ranked on {SELECTION_METRIC} (dev: selection). test and wiki are held out: never used to choose.",
        "",
        "| " + " | ".join(heads) + " |",
        "|" + "---|" * len(heads),
    ]
    for _, row in table.iterrows():
        cells = [str(row[c]) for c in settings] + ["" if row[c] != row[c] else f"{row[c]:.4f}" for c in acc]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# Bars per task: (metric, legend label, hatch). Chance: pitch 1/2, animal MC 1/4.
_BARS = {
    "animal": [("animal/test/exact_match", "exact match (upstream metric)", ""), ("animal/test/mc_acc", "4-way multiple choice", "//")],
    "pitch": [("pitch/test/acc", "higher vs lower", "")],
}
_CHANCE = {"animal": 0.25, "pitch": 0.5}


def plot_test_accuracy(table, path: Path) -> Path | None:
    """Grouped bars of held-out test accuracy per trial, one panel per task; the same metric on dev
    (selection) as black markers; dashed lines = published test numbers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    tasks = [t for t, bars in _BARS.items() if any(m in table.columns for m, _, _ in bars)]
    if table.empty or not tasks:
        return None
    labels = [_label(row, table) for _, row in table.iterrows()]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 6), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, task in zip(axes[0], tasks):
        bars = [b for b in _BARS[task] if b[0] in table.columns]
        x = np.arange(len(table))
        width = 0.8 / len(bars)
        for j, (metric, name, hatch) in enumerate(bars):
            # NaN (a metric a model does not have, e.g. exact match for a causal LM) draws no bar
            ax.bar(x + j * width, table[metric].astype(float), width, label=f"{name}, test (held out)", hatch=hatch,
                   color="white" if hatch else "tab:gray", edgecolor="black")
            dev = metric.replace("/test/", "/dev/")
            if dev in table.columns:
                ax.plot(x + j * width, table[dev].astype(float), "k_", markersize=14, mew=2,
                        label="dev (selection)" if j == 0 else None)
        for k, (row, numbers) in enumerate(REFERENCE.items()):
            if f"{task}/test" in numbers:
                y = numbers[f"{task}/test"] / 100
                ax.axhline(y, ls="--", lw=1, color=colors[k % len(colors)], label=f"{row} (published, all test rows) {y:.1%}")
        ax.axhline(_CHANCE[task], ls=":", lw=1, color="black", label="chance (MC)" if task == "animal" else "chance")
        ax.set_xticks(x + 0.4 - width / 2, labels, rotation=20, ha="right", fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_ylabel("accuracy (bars: test, held out)")
        ax.set_title({"animal": "Animal sound recognition", "pitch": "Sound pitch comparison"}[task])
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2, frameon=False)
    fig.suptitle(f"Trials are ranked on {SELECTION_METRIC} (dev); test is held out", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _label(row, table) -> str:
    label = str(row.get("model"))
    if table["model"].duplicated(keep=False).get(row.name, False):  # the same model more than once: say how it differs
        extras = [f"{k}={row[k]}" for k in ("fmt", "cross_split_duplicates", "length_norm", "max_items", "dtype")
                  if table[k].nunique(dropna=False) > 1]
        label += " (" + ", ".join(extras) + ")" if extras else f" #{row.name}"
    return label


# ----------------------------------------------------------------------------- helpers


def _check_kind(cfg: BaselineConfig, kind: str) -> None:
    if kind == "causal" and cfg.fmt == "mask" and "animal" in cfg.tasks:
        raise ConfigError(
            "", "fmt",
            f"'{cfg.model}' is a causal LM: it answers the animal task only as multiple choice "
            "(upstream defines no open-vocabulary exact match for causal LMs); use fmt=mc or tasks=[pitch]",
        )


STUDY = Study(
    name="auditorybench_baselines",
    config_cls=BaselineConfig,
    prepare=prepare,
    trial=trial,
    summarize=summarize,
    description="Zero-shot text-only AuditoryBench baselines: masked LMs by fill-mask, causal LMs by log-likelihood ranking.",
)
