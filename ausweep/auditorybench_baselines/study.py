"""Zero-shot text-only AuditoryBench baselines as a sweepable study (``auditorybench_baselines``).

One trial = one LM scored on the chosen tasks and splits (see :mod:`ausweep.auditorybench_baselines.zeroshot`
for how). :func:`run` works with no Ray; the sweep's Tune trainable wraps :func:`trial`.

Metric keys are ``<task>/<split>/<metric>`` (MLflow allows ``/``): ``animal/test/exact_match``
(masked LMs; upstream's metric), ``animal/test/mc_acc`` (4-way multiple choice), ``pitch/test/acc``,
and ``<task>/<split>/n`` (items scored). Accuracies are fractions in [0, 1]. The published
numbers (:data:`~ausweep.benchmarks.auditorybench.REFERENCE`) are percentages, and each trial
records them as tags.

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

from ausweep.benchmarks.auditorybench import (
    REFERENCE,
    REFERENCE_FOR_MODEL,
    data_file,
    load_auditorybench,
)
from ausweep.config import ConfigError, to_dict
from ausweep.study import Study
from ausweep.track.artifacts import rows_to_csv
from ausweep.auditorybench_baselines.config import BaselineConfig

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
            items = load_auditorybench(task, split, root=cfg.data_root, fmt=cfg.fmt)[: cfg.max_items]
            m, rows = evaluate(lm, items, batch_size=cfg.batch_size, length_norm=cfg.length_norm,
                               lowercase=cfg.lowercase, progress=cfg.progress)
            metrics.update({f"{task}/{split}/{k}": v for k, v in m.items()})
            predictions[f"{task}_{split}"] = rows
            log.info("%s %s/%s: %s", cfg.model, task, split, m)
    return Outcome(metrics, predictions, lm.kind)


def run(cfg: BaselineConfig) -> dict[str, float]:
    """Score one LM on AuditoryBench: ``{"animal/test/mc_acc": ..., "pitch/test/acc": ..., ...}``."""
    return evaluate_config(cfg).metrics


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
    yield {
        **out.metrics,
        "artifacts": artifacts,
        "tags": {"ausweep.lm_kind": out.kind, "ausweep.data": f"auditorybench/{cfg.fmt}", **reference_tags(cfg.model)},
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
            for split in c.splits:
                path = data_file(task, split, c.fmt, c.data_root)
                if not path.is_file():
                    raise ConfigError("", "data_root", f"AuditoryBench file {path} is missing")
    return space


def summarize(rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """``results.csv`` (one line per trial) and ``test_accuracy.png`` (test accuracy per model, with
    the published numbers as dashed lines)."""
    table = results_table(rows)
    csv_path = out_dir / "results.csv"
    table.to_csv(csv_path, index=False)
    out = [csv_path]
    plot = plot_test_accuracy(table, out_dir / "test_accuracy.png")
    if plot is not None:
        out.append(plot)
    return out


# ----------------------------------------------------------------------------- tables and plots


def results_table(rows: list[dict[str, Any]]):
    """One line per trial: model, the settings that change scores, then every metric."""
    import pandas as pd

    from ausweep.config import with_defaults

    records = []
    for r in rows:
        cfg = with_defaults(BaselineConfig, r.get("config"))
        rec = {k: cfg.get(k) for k in ("model", "kind", "fmt", "length_norm", "max_items", "dtype")}
        # benchmark metrics only ("animal/test/mc_acc"), not Tune's bookkeeping (timestamp, pid...)
        rec.update({k: v for k, v in (r.get("metrics") or {}).items()
                    if k.count("/") == 2 and isinstance(v, (int, float)) and not isinstance(v, bool)})
        records.append(rec)
    return pd.DataFrame.from_records(records)


# Bars per task: (metric, legend label, hatch). Chance: pitch 1/2, animal MC 1/4.
_BARS = {
    "animal": [("animal/test/exact_match", "exact match (upstream metric)", ""), ("animal/test/mc_acc", "4-way multiple choice", "//")],
    "pitch": [("pitch/test/acc", "higher vs lower", "")],
}
_CHANCE = {"animal": 0.25, "pitch": 0.5}


def plot_test_accuracy(table, path: Path) -> Path | None:
    """Grouped bars of test accuracy per trial, one panel per task; dashed lines = published test numbers."""
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
            ax.bar(x + j * width, table[metric].astype(float), width, label=name, hatch=hatch,
                   color="white" if hatch else "tab:gray", edgecolor="black")
        for k, (row, numbers) in enumerate(REFERENCE.items()):
            if f"{task}/test" in numbers:
                y = numbers[f"{task}/test"] / 100
                ax.axhline(y, ls="--", lw=1, color=colors[k % len(colors)], label=f"{row} (published) {y:.1%}")
        ax.axhline(_CHANCE[task], ls=":", lw=1, color="black", label="chance (MC)" if task == "animal" else "chance")
        ax.set_xticks(x + 0.4 - width / 2, labels, rotation=20, ha="right", fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_ylabel("test accuracy")
        ax.set_title({"animal": "Animal sound recognition", "pitch": "Sound pitch comparison"}[task])
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _label(row, table) -> str:
    label = str(row.get("model"))
    if table["model"].duplicated(keep=False).get(row.name, False):  # the same model more than once: say how it differs
        extras = [f"{k}={row[k]}" for k in ("fmt", "length_norm", "max_items", "dtype") if table[k].nunique(dropna=False) > 1]
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
