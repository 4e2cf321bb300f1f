"""Does text-only auditory knowledge predict audio-grounded accuracy? One point per LLM backbone.

The AKB-2000 study scores many LLM backbones on auditory questions from text alone, trains an
audio-grounded model (Whisper -> Q-Former -> LLM) on each, and finds the two scores correlate
(r = 0.71-0.82). Here the two sides are two finished sweeps in MLflow:

* the *text* sweep (``knowledge_text`` by default): child runs with the backbone in param ``model``;
* the *audio* sweep (``lalm_backbone``): child runs with the backbone in param ``lalm.llm``.

Both log ``acc`` and ``acc/<category>`` (:func:`ausweep.benchmarks.mcq.accuracy_metrics`). For every
category the two sides share, the report pairs the backbones present in both, computes Pearson r and
Spearman rho with their p-values, and draws a scatter plot. A backbone with several runs on one side
(e.g. a learning-rate sweep) counts once: its best run (``aggregate=best``) or the mean.

    python -m ausweep.report correlation
    python -m ausweep.report correlation --preset demo
    python -m ausweep.report correlation text_run=<parent id> audio_run=<parent id> aggregate=mean
"""

from __future__ import annotations

import logging
import math
import tempfile
import textwrap
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ausweep.config import option

log = logging.getLogger(__name__)

ALL = "all"  # the category name of the overall score (metric key ``acc``)


@dataclass(frozen=True)
class CorrelationConfig:
    text_experiment: str = option("knowledge_text", help="MLflow experiment (sweep name) of the text-only scores.")
    audio_experiment: str = option("lalm_backbone", help="MLflow experiment (sweep name) of the audio-grounded scores.")
    text_run: str | None = option(None, help="Parent run id of the text sweep; default: its latest finished sweep (with `preset`, if set).")
    audio_run: str | None = option(None, help="Parent run id of the audio sweep; default: its latest finished sweep (with `preset`, if set).")
    preset: str | None = option(None, help="Only sweeps run with this preset (e.g. demo); '' for sweeps run without one.")
    text_backbone_param: str = option("model", help="Param that names the backbone in the text sweep's child runs.")
    audio_backbone_param: str = option("lalm.llm", help="Param that names the backbone in the audio sweep's child runs.")
    metric: str = option("acc", help="Metric prefix: `acc` for overall, `acc/<category>` per category.")
    aggregate: Literal["best", "mean"] = option("best", help="How several runs of one backbone on one side count: the best run or the mean.")
    min_backbones: int = option(3, help="Fewest backbones on both sides for a correlation to be reported (r of 2 points is always +-1).")
    tracking_uri: str | None = option(None, help="MLflow tracking URI; default: $MLFLOW_TRACKING_URI or ./mlruns.db.")
    out_dir: str | None = option(None, help="Also write correlation.csv, points.csv and scatter.png here.")
    log_to_mlflow: bool = option(True, help="Log the report as a run of the MLflow experiment `correlation`.")

    def __post_init__(self) -> None:
        if self.min_backbones < 3:
            raise ValueError(f"min_backbones must be >= 3, got {self.min_backbones}")


class ReportError(ValueError):
    """The sweeps to compare cannot be found or do not overlap."""


# ----------------------------------------------------------------------------- pure parts


def category_of(key: str, metric: str) -> str | None:
    """``acc`` -> "all", ``acc/sound`` -> "sound"; subcategories and other metrics -> None."""
    if key == metric:
        return ALL
    if key.startswith(metric + "/"):
        rest = key[len(metric) + 1:]
        return rest if rest and "/" not in rest else None
    return None


def scores_by_backbone(runs: list[tuple[str, dict[str, float]]], metric: str = "acc",
                       aggregate: str = "best") -> dict[str, dict[str, float]]:
    """``[(backbone, metrics), ...]`` -> ``{backbone: {category: score}}``.

    With several runs per backbone, ``best`` keeps the run with the highest overall score (all its
    categories together, so a backbone's categories come from one trained model), ``mean`` averages
    each category over runs.
    """
    grouped: dict[str, list[dict[str, float]]] = defaultdict(list)
    for backbone, metrics in runs:
        cats = {c: float(v) for k, v in metrics.items() if (c := category_of(k, metric)) is not None}
        if cats:
            grouped[backbone].append(cats)
    out: dict[str, dict[str, float]] = {}
    for backbone, rows in grouped.items():
        if aggregate == "best":
            out[backbone] = max(rows, key=lambda r: r.get(ALL, -math.inf))
        elif aggregate == "mean":
            keys = {k for r in rows for k in r}
            out[backbone] = {k: sum(r[k] for r in rows if k in r) / sum(1 for r in rows if k in r) for k in keys}
        else:
            raise ValueError(f"aggregate must be 'best' or 'mean', got {aggregate!r}")
    return out


def correlate(text: dict[str, dict[str, float]], audio: dict[str, dict[str, float]],
              min_backbones: int = 3) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per shared category: n, Pearson r / p, Spearman rho / p over the backbones on both sides.

    Returns ``(table, points)``; ``points`` are (category, backbone, text, audio) rows. A category
    with fewer than ``min_backbones`` shared backbones, or with a side that does not vary, gets NaN
    (and a ``note``) rather than a meaningless r.
    """
    from scipy import stats

    shared = sorted(set(text) & set(audio))
    categories = sorted({c for b in shared for c in text[b]} & {c for b in shared for c in audio[b]},
                        key=lambda c: (c != ALL, c))
    table, points = [], []
    for cat in categories:
        pairs = [(b, text[b][cat], audio[b][cat]) for b in shared if cat in text[b] and cat in audio[b]]
        points += [{"category": cat, "backbone": b, "text": t, "audio": a} for b, t, a in pairs]
        row: dict[str, Any] = {"category": cat, "n": len(pairs), "pearson_r": math.nan, "pearson_p": math.nan,
                               "spearman_rho": math.nan, "spearman_p": math.nan, "note": ""}
        xs, ys = [p[1] for p in pairs], [p[2] for p in pairs]
        if len(pairs) < min_backbones:
            row["note"] = f"only {len(pairs)} backbone(s) on both sides (need {min_backbones})"
        elif len(set(xs)) < 2 or len(set(ys)) < 2:
            row["note"] = "one side has the same score for every backbone"
        else:
            pr = stats.pearsonr(xs, ys)
            sr = stats.spearmanr(xs, ys)
            row.update(pearson_r=float(pr.statistic), pearson_p=float(pr.pvalue),
                       spearman_rho=float(sr.statistic), spearman_p=float(sr.pvalue))
        table.append(row)
    return table, points


def plot_scatter(points: list[dict[str, Any]], table: list[dict[str, Any]], path: Path) -> Path:
    """One panel per category: text-only (x) vs audio-grounded (y) accuracy, a labelled dot per
    backbone, r and rho in the title, the diagonal for reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cats = [r["category"] for r in table]
    ncol = min(3, len(cats))
    nrow = math.ceil(len(cats) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 4.0 * nrow), squeeze=False)
    for ax, row in zip(axes.flat, table):
        pts = [p for p in points if p["category"] == row["category"]]
        ax.scatter([p["text"] for p in pts], [p["audio"] for p in pts], s=28)
        for p in pts:
            ax.annotate(p["backbone"].split("/")[-1], (p["text"], p["audio"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        ax.plot([0, 1], [0, 1], ls=":", c="grey", lw=0.8)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        stat = (f"r={row['pearson_r']:.2f}, rho={row['spearman_rho']:.2f}" if not math.isnan(row["pearson_r"])
                else "\n".join(textwrap.wrap(row["note"], 40)))
        ax.set_title(f"{row['category']} (n={row['n']})\n{stat}", fontsize=9)
        ax.set_xlabel("text-only accuracy")
        ax.set_ylabel("audio-grounded accuracy")
    for ax in list(axes.flat)[len(table):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- MLflow side


def latest_sweep(client: Any, experiment: str, preset: str | None) -> Any:
    """The most recent finished parent run of ``experiment`` (with ``preset``, if given)."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ReportError(f"no MLflow experiment '{experiment}' at {client.tracking_uri}: run `python -m ausweep.sweep {experiment}` first")
    filt = "attributes.status = 'FINISHED' and tags.`ausweep.sweep` != ''"
    if preset is not None:
        filt += f" and tags.`ausweep.preset` = '{preset}'"
    runs = [r for r in client.search_runs([exp.experiment_id], filter_string=filt, order_by=["attributes.start_time DESC"], max_results=200)
            if "mlflow.parentRunId" not in r.data.tags]
    if not runs:
        which = f" with preset '{preset}'" if preset is not None else ""
        raise ReportError(f"experiment '{experiment}' has no finished sweep{which}")
    return runs[0]


def child_scores(client: Any, parent: Any, backbone_param: str) -> list[tuple[str, dict[str, float]]]:
    """``(backbone, metrics)`` of every finished child run of sweep ``parent``."""
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' and attributes.status = 'FINISHED'",
                                  max_results=10000)
    out = []
    for c in children:
        backbone = c.data.params.get(backbone_param)
        if backbone is None:
            raise ReportError(f"run {c.info.run_id} of experiment {parent.info.experiment_id} has no param '{backbone_param}' "
                              f"(params: {', '.join(sorted(c.data.params)[:12])}); set the *_backbone_param option")
        out.append((backbone, dict(c.data.metrics)))
    if not out:
        raise ReportError(f"sweep run {parent.info.run_id} has no finished trials")
    return out


def run(cfg: CorrelationConfig) -> dict[str, float]:
    """Compute the report; returns ``{"pearson_r/<category>": ..., "spearman_rho/<category>": ..., "n/<category>": ...}``."""
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from ausweep.track.store import SweepTracker, tracking_uri

    uri = cfg.tracking_uri or tracking_uri()
    client = MlflowClient(tracking_uri=uri)
    sides = {}
    for side, exp, run_id, param in (("text", cfg.text_experiment, cfg.text_run, cfg.text_backbone_param),
                                     ("audio", cfg.audio_experiment, cfg.audio_run, cfg.audio_backbone_param)):
        parent = client.get_run(run_id) if run_id else latest_sweep(client, exp, cfg.preset)
        sides[side] = (parent, scores_by_backbone(child_scores(client, parent, param), cfg.metric, cfg.aggregate))
    (text_parent, text), (audio_parent, audio) = sides["text"], sides["audio"]
    if not set(text) & set(audio):
        raise ReportError(f"no backbone is in both sweeps: text has {sorted(text)}, audio has {sorted(audio)}")
    table, points = correlate(text, audio, cfg.min_backbones)
    for row in table:
        log.info("%-12s n=%d  pearson r=%.3f (p=%.3g)  spearman rho=%.3f (p=%.3g) %s", row["category"], row["n"],
                 row["pearson_r"], row["pearson_p"], row["spearman_rho"], row["spearman_p"], row["note"])

    metrics: dict[str, float] = {}
    for row in table:
        metrics[f"pearson_r/{row['category']}"] = row["pearson_r"]
        metrics[f"spearman_rho/{row['category']}"] = row["spearman_rho"]
        metrics[f"n/{row['category']}"] = float(row["n"])

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(cfg.out_dir) if cfg.out_dir else Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        files = [out / "correlation.csv", out / "points.csv"]
        pd.DataFrame(table).to_csv(files[0], index=False)
        pd.DataFrame(points).to_csv(files[1], index=False)
        files.append(plot_scatter(points, table, out / "scatter.png"))
        if cfg.log_to_mlflow:
            tracker = SweepTracker("correlation", uri=uri)
            run_id = tracker.start_parent(
                f"{cfg.text_experiment}-vs-{cfg.audio_experiment}",
                params={"text_run": text_parent.info.run_id, "audio_run": audio_parent.info.run_id,
                        "metric": cfg.metric, "aggregate": cfg.aggregate, "preset": cfg.preset or ""},
                tags={"ausweep.report": "correlation"},
            )
            tracker.log_metrics(run_id, {k: v for k, v in metrics.items() if not math.isnan(v)})
            for f in files:
                tracker.log_file(run_id, f)
            tracker.end(run_id)
            log.info("logged to MLflow run %s (experiment 'correlation')", run_id)
    return metrics


def format_table(metrics: dict[str, float]) -> str:
    """The report as a few aligned lines for the terminal."""
    cats = [k.split("/", 1)[1] for k in metrics if k.startswith("n/")]
    lines = [f"{'category':<14}{'n':>4}{'pearson r':>12}{'spearman rho':>15}"]
    for c in cats:
        lines.append(f"{c:<14}{int(metrics[f'n/{c}']):>4}{metrics[f'pearson_r/{c}']:>12.3f}{metrics[f'spearman_rho/{c}']:>15.3f}")
    return "\n".join(lines)
