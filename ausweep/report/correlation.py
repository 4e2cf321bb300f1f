"""Does text-only auditory knowledge predict audio-grounded accuracy? One point per LLM backbone.

The AKB-2000 study scores many LLM backbones on auditory questions from text alone, trains an
audio-grounded model (Whisper -> Q-Former -> LLM) on each with one training recipe, and finds the
two scores correlate (r = 0.71-0.82). Here the two sides are two finished sweeps in MLflow:

* the *text* sweep (``knowledge_text`` by default): child runs with the backbone in param ``model``;
* the *audio* sweep (``lalm_backbone``): child runs with the backbone in param ``lalm.llm``.

**Tasks, not category names.** Both sides log ``acc/<category>/<subcategory>``
(:func:`ausweep.benchmarks.mcq.accuracy_metrics`); names are read back from the stored keys exactly
as the question files wrote them (:func:`metric_name`). The declared task map
(:mod:`ausweep.benchmarks.tasks`, ``configs/backbone_tasks.yaml``) says which categories ask the
same question on each side; only those *paired* tasks are correlated. Tasks on one side and
categories the map does not name are listed as unpaired. The headline row ``all`` is the macro
average over the paired tasks (each task weighs the same), computed alike on both sides;
``all_micro`` weighs every item the same.

**One run per backbone, one recipe for all.** A backbone with one run per side needs no choice.
With several (a hyperparameter grid), the report chooses on ``select_metric``, which must be
measured on a dev split (``dev/...``; the ``lalm_backbone`` trials score their dev split there),
never on the evaluation items it then reports: ``select=shared`` takes the one recipe with the best
mean dev score over backbones, ``select=per_backbone`` each backbone's best. Choosing on evaluation
data, or backbones whose chosen runs were trained differently, stops the report with an error;
``allow_eval_selection`` / ``allow_recipe_mismatch`` go on anyway and mark the report loudly (the
table, ``WARNINGS.txt``, the plot's title, the MLflow run's name and ``ausweep.report.*`` tags).

    python -m ausweep.report correlation
    python -m ausweep.report correlation --preset demo
    python -m ausweep.report correlation text_run=<parent id> audio_run=<parent id>
    python -m ausweep.report correlation audio_filter='{train.lr: 1.0e-4}'   # a recipe chosen by hand
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import textwrap
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ausweep.config import option

log = logging.getLogger(__name__)

ALL = "all"  # the macro average over paired tasks
ALL_MICRO = "all_micro"  # every item of the paired tasks weighing the same
ANY_PRESET = "*"  # `preset='*'`: sweeps run with any preset, or none
DEV_PREFIX = "dev/"  # metrics measured on a dev split, disjoint from the evaluation items
# Params that say how a run was executed, not what it computed.
NOT_RECIPE = ("progress", "storage", "device", "batch_size", "eval_batch_size", "describe_batch_size", "revision",
              "train.checkpoint_every", "train.keep_checkpoints", "train.log_every", "train.cpus_per_worker",
              "train.stop_after_steps")


@dataclass(frozen=True)
class CorrelationConfig:
    text_experiment: str = option("knowledge_text", help="MLflow experiment (sweep name) of the text-only scores.")
    audio_experiment: str = option("lalm_backbone", help="MLflow experiment (sweep name) of the audio-grounded scores.")
    text_run: str | None = option(None, help="Parent run id of the text sweep; default: its latest finished sweep run with `preset`.")
    audio_run: str | None = option(None, help="Parent run id of the audio sweep; default: its latest finished sweep run with `preset`.")
    preset: str = option("", help="Only sweeps run with this preset (e.g. demo). Default '': sweeps run without a preset, the one-recipe sweeps, so a tuning preset (lalm_backbone --preset tune / hparams, which give each backbone its own recipe) is never compared by default; '*': any preset.")
    text_backbone_param: str = option("model", help="Param that names the backbone in the text sweep's child runs.")
    audio_backbone_param: str = option("lalm.llm", help="Param that names the backbone in the audio sweep's child runs.")
    task_map: str | None = option(None, help="YAML task map pairing text and audio categories (ausweep.benchmarks.tasks); default configs/backbone_tasks.yaml.")
    metric: str = option("acc", help="Accuracy prefix of the per-category metrics (acc/<category>/<subcategory>, counted by n/...).")
    select: Literal["shared", "per_backbone"] = option("shared", help="When a backbone has several runs on a side: 'shared' picks the one recipe with the best mean select_metric over backbones; 'per_backbone' picks each backbone's best run (recipes then differ: needs allow_recipe_mismatch).")
    select_metric: str = option("dev/acc", help="Metric runs are chosen on; it must be measured on a dev split ('dev/...'), not on the evaluation items the report correlates.")
    text_filter: dict[str, Any] = option({}, help="Keep only text runs whose params have these values, e.g. '{length_norm: false}': a recipe fixed by hand, before looking at scores.")
    audio_filter: dict[str, Any] = option({}, help="Keep only audio runs whose params have these values, e.g. '{train.lr: 1.0e-4, lalm.num_queries: 64}'.")
    ignore_params: list[str] = option(list(NOT_RECIPE), help="Params that do not make a recipe (how a run was executed); every other param except the backbone must agree across backbones.")
    allow_eval_selection: bool = option(False, help="Choose among a backbone's runs on a metric that is not from a dev split. The report is then marked SELECTED ON EVALUATION DATA.")
    allow_recipe_mismatch: bool = option(False, help="Correlate backbones whose chosen runs differ in recipe. The report is then marked RECIPES DIFFER ACROSS BACKBONES.")
    min_backbones: int = option(3, help="Fewest backbones on both sides for a correlation to be reported (r of 2 points is always +-1).")
    tracking_uri: str | None = option(None, help="MLflow tracking URI; default: $MLFLOW_TRACKING_URI or ./mlruns.db.")
    out_dir: str | None = option(None, help="Also write correlation.csv, points.csv, unpaired.csv, selection.csv and scatter.png here.")
    log_to_mlflow: bool = option(True, help="Log the report as a run of the MLflow experiment `correlation`.")

    def __post_init__(self) -> None:
        if self.min_backbones < 3:
            raise ValueError(f"min_backbones must be >= 3, got {self.min_backbones}")


class ReportError(ValueError):
    """The sweeps to compare cannot be found, do not overlap, or would be compared unfairly."""


@dataclass(frozen=True)
class Run:
    """One finished child run: its backbone, params (as MLflow stores them: strings) and metrics."""

    run_id: str
    backbone: str
    params: dict[str, str]
    metrics: dict[str, float]


@dataclass
class Selection:
    """The run kept per backbone on one side, and what the choice had to assume."""

    runs: dict[str, Run]
    notes: list[str] = field(default_factory=list)
    selected_on_eval: bool = False
    recipe_mismatch: bool = False


# ----------------------------------------------------------------------------- choosing runs


def recipe(run: Run, backbone_param: str, ignore: tuple[str, ...] | list[str] = NOT_RECIPE) -> tuple[tuple[str, str], ...]:
    """What a run was trained / scored with, apart from its backbone: its params minus ``ignore``."""
    return tuple(sorted((k, v) for k, v in run.params.items()
                        if k != backbone_param and k not in ignore and not k.startswith("ausweep.")))


def _same_value(param: str, wanted: Any) -> bool:
    if isinstance(wanted, bool):
        return param.lower() == str(wanted).lower()
    if isinstance(wanted, (int, float)):
        try:
            return math.isclose(float(param), float(wanted), rel_tol=1e-9)
        except ValueError:
            return False
    return param == ("None" if wanted is None else str(wanted))


def filter_runs(runs: list[Run], wanted: dict[str, Any], side: str) -> list[Run]:
    """The runs whose params have the ``wanted`` values (a hand-fixed recipe)."""
    if not wanted:
        return runs
    from ausweep.config import flatten

    flat = flatten(wanted)
    kept = [r for r in runs if all(k in r.params and _same_value(r.params[k], v) for k, v in flat.items())]
    if not kept:
        raise ReportError(f"{side} side: no run has {flat} (runs have e.g. {dict(list(runs[0].params.items())[:8])})")
    return kept


def _differs(recipes: list[tuple[tuple[str, str], ...]]) -> list[str]:
    keys = sorted({k for r in recipes for k, _ in r})
    return [k for k in keys if len({dict(r).get(k) for r in recipes}) > 1]


def select_runs(runs: list[Run], side: str, backbone_param: str, *, select: str = "shared",
                select_metric: str = "dev/acc", ignore: tuple[str, ...] | list[str] = NOT_RECIPE,
                allow_eval_selection: bool = False, allow_recipe_mismatch: bool = False) -> Selection:
    """One run per backbone, chosen without looking at evaluation scores.

    A backbone with one run keeps it. With several, runs are ranked on ``select_metric``, which must
    be a dev metric (``dev/...``) unless ``allow_eval_selection``. Then the kept runs must share one
    recipe (params other than the backbone and ``ignore``) unless ``allow_recipe_mismatch``.
    Raises :class:`ReportError` naming the backbones and params at fault.
    """
    if select not in ("shared", "per_backbone"):
        raise ValueError(f"select must be 'shared' or 'per_backbone', got {select!r}")
    groups: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        groups[r.backbone].append(r)
    out = Selection({})
    several = {b: rs for b, rs in groups.items() if len(rs) > 1}
    if not several:
        out.runs = {b: rs[0] for b, rs in groups.items()}
    else:
        varied = _differs([recipe(r, backbone_param, ignore) for r in runs])
        what = f"{side} side: {', '.join(f'{b} has {len(rs)} runs' for b, rs in sorted(several.items()))}" + (
            f" (differing in {', '.join(varied)})" if varied else " (with the same recipe)")
        if not select_metric.startswith(DEV_PREFIX):
            if not allow_eval_selection:
                raise ReportError(f"{what}: choosing among them on '{select_metric}' would select on the evaluation items "
                                  f"the report correlates. Choose on a dev split (select_metric=dev/acc: the lalm_backbone "
                                  f"trials score one), fix the recipe by hand ({side}_filter='{{{varied[0] if varied else 'key'}: value}}'), "
                                  "run a sweep with one recipe, or pass allow_eval_selection=true to go on with a marked report")
            out.selected_on_eval = True
        missing = sorted({r.backbone for r in runs if not isinstance(r.metrics.get(select_metric), (int, float))})
        if missing:
            raise ReportError(f"{what}: no '{select_metric}' to choose on in the runs of {', '.join(missing)}. "
                              f"Fix the recipe by hand ({side}_filter=...), or run the sweep with a dev split")
        chosen = _choose(groups, side, backbone_param, select, select_metric, ignore, allow_recipe_mismatch, out)
        out.runs = chosen
        out.notes.append(f"{what}; chose {'one shared recipe' if select == 'shared' else 'per backbone'} "
                         f"on {select_metric}" + (" (EVALUATION DATA)" if out.selected_on_eval else ""))
    recipes = {b: recipe(r, backbone_param, ignore) for b, r in out.runs.items()}
    varied = _differs(list(recipes.values()))
    if varied:
        detail = "; ".join(f"{k}: " + ", ".join(f"{b}={dict(rc).get(k)}" for b, rc in sorted(recipes.items())) for k in varied)
        if not allow_recipe_mismatch:
            raise ReportError(f"{side} side: the backbones' runs differ in recipe ({detail}). The comparison needs one "
                              "recipe for every backbone: run the sweep with one recipe, choose one by hand "
                              f"({side}_filter=...), use select=shared, or pass allow_recipe_mismatch=true to go on with a marked report")
        out.recipe_mismatch = True
        out.notes.append(f"{side} side: RECIPES DIFFER ACROSS BACKBONES ({detail})")
    return out


def _choose(groups: dict[str, list[Run]], side: str, backbone_param: str, select: str, metric: str,
            ignore: tuple[str, ...] | list[str], allow_mismatch: bool, out: Selection) -> dict[str, Run]:
    def best(rs: list[Run]) -> Run:
        return max(rs, key=lambda r: (r.metrics[metric], r.run_id))

    if select == "per_backbone":
        return {b: best(rs) for b, rs in groups.items()}
    by_recipe: dict[tuple, dict[str, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for b, rs in groups.items():
        for r in rs:
            by_recipe[recipe(r, backbone_param, ignore)][b].append(r)
    complete = {rc: bs for rc, bs in by_recipe.items() if set(bs) == set(groups)}
    if not complete:
        if not allow_mismatch:
            raise ReportError(f"{side} side: no recipe was run for every backbone ({len(by_recipe)} recipes, "
                              f"{len(groups)} backbones); failed trials? Re-run them, or pass select=per_backbone "
                              "allow_recipe_mismatch=true")
        out.notes.append(f"{side} side: no recipe covers every backbone; each backbone's best run instead")
        return {b: best(rs) for b, rs in groups.items()}

    def mean_score(item: tuple[tuple, dict[str, list[Run]]]) -> tuple[float, str]:
        rc, bs = item
        return sum(best(rs).metrics[metric] for rs in bs.values()) / len(bs), repr(rc)

    rc, bs = max(complete.items(), key=mean_score)
    for b, rs in bs.items():
        if len(rs) > 1:
            out.notes.append(f"{side} side: {b} has {len(rs)} runs of the chosen recipe; kept the best on {metric}")
    return {b: best(rs) for b, rs in bs.items()}


# ----------------------------------------------------------------------------- pairing by task


def task_scores(selection: Selection, side: str, task_map: Any, metric: str = "acc") -> dict[str, dict[str, Any]]:
    """``{backbone: {task: TaskScore}}`` on ``side`` for the chosen runs."""
    return {b: task_map.scores(side, r.metrics, metric) for b, r in selection.runs.items()}


def pair_tasks(text: dict[str, dict[str, Any]], audio: dict[str, dict[str, Any]], task_map: Any,
               unmapped: dict[str, list[str]] | None = None) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]], list[dict[str, Any]]]:
    """Per-backbone scores of the paired tasks on each side, plus ``all`` (their macro average) and
    ``all_micro`` (their items pooled) for backbones that have every paired task; and the unpaired rows."""
    present = {s: {t for per in side.values() for t in per} for s, side in (("text", text), ("audio", audio))}
    paired = [t.name for t in task_map.tasks if t.name in present["text"] and t.name in present["audio"]]
    unpaired: list[dict[str, Any]] = []
    for t in task_map.tasks:
        if t.name in paired:
            continue
        on = [s for s in ("text", "audio") if t.name in present[s]]
        declared = [s for s in ("text", "audio") if t.entries(s)]
        if not on:
            continue
        if len(declared) == 1:
            reason = f"declared on the {declared[0]} side only"
        else:
            missing = "audio" if on == ["text"] else "text"
            reason = f"not in the {missing} sweep's runs ({', '.join(t.entries(missing))})"
        unpaired.append({"task": t.name, "side": "+".join(on), "categories": ", ".join(t.entries(on[0])),
                         "reason": reason, "question": t.question})
    for side, keys in (unmapped or {}).items():
        for k in keys:
            unpaired.append({"task": "", "side": side, "categories": k, "reason": "no task in the task map names it",
                             "question": ""})
    sides: list[dict[str, dict[str, float]]] = []
    for per_side in (text, audio):
        scores: dict[str, dict[str, float]] = {}
        for b, per in per_side.items():
            row = {t: per[t].acc for t in paired if t in per}
            if paired and all(t in per for t in paired):
                row[ALL] = sum(per[t].acc for t in paired) / len(paired)
                n = sum(per[t].n for t in paired)
                row[ALL_MICRO] = sum(per[t].acc * per[t].n for t in paired) / n if n else math.nan
            scores[b] = row
        sides.append(scores)
    return sides[0], sides[1], unpaired


def correlate(text: dict[str, dict[str, float]], audio: dict[str, dict[str, float]],
              min_backbones: int = 3) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per shared row (task, ``all``, ``all_micro``): n, Pearson r / p, Spearman rho / p over the
    backbones on both sides.

    Returns ``(table, points)``; ``points`` are (category, backbone, text, audio) rows. A row
    with fewer than ``min_backbones`` shared backbones, or with a side that does not vary, gets NaN
    (and a ``note``) rather than a meaningless r.
    """
    from scipy import stats

    shared = sorted(set(text) & set(audio))
    categories = sorted({c for b in shared for c in text[b]} & {c for b in shared for c in audio[b]},
                        key=lambda c: (c != ALL, c != ALL_MICRO, c))
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


def plot_scatter(points: list[dict[str, Any]], table: list[dict[str, Any]], path: Path, warning: str = "") -> Path:
    """One panel per row: text-only (x) vs audio-grounded (y) accuracy, a labelled dot per
    backbone, r and rho in the title, the diagonal for reference; ``warning`` across the top in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cats = [r["category"] for r in table] or ["(nothing paired)"]
    ncol = min(3, len(cats))
    nrow = math.ceil(len(cats) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 4.0 * nrow + (0.6 if warning else 0)), squeeze=False)
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
        title = {ALL: "all paired tasks (macro)", ALL_MICRO: "all paired tasks (micro)"}.get(row["category"], row["category"])
        ax.set_title(f"{title} (n={row['n']})\n{stat}", fontsize=9)
        ax.set_xlabel("text-only accuracy")
        ax.set_ylabel("audio-grounded accuracy")
    for ax in list(axes.flat)[len(table):]:
        ax.axis("off")
    if warning:
        fig.suptitle("\n".join(textwrap.wrap(warning, 110)), color="red", fontsize=10, fontweight="bold")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- MLflow side


def latest_sweep(client: Any, experiment: str, preset: str | None) -> Any:
    """The most recent finished parent run of ``experiment`` (with ``preset``, if given)."""
    from ausweep.track.store import redact_uri

    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ReportError(f"no MLflow experiment '{experiment}' at {redact_uri(client.tracking_uri)}: run `python -m ausweep.sweep {experiment}` first")
    filt = "attributes.status = 'FINISHED' and tags.`ausweep.sweep` != ''"
    if preset is not None and preset != ANY_PRESET:
        filt += f" and tags.`ausweep.preset` = '{preset}'"
    runs = [r for r in client.search_runs([exp.experiment_id], filter_string=filt, order_by=["attributes.start_time DESC"], max_results=200)
            if "mlflow.parentRunId" not in r.data.tags]
    if not runs:
        which = "" if preset in (None, ANY_PRESET) else f" with preset '{preset}'" if preset else " run without a preset (--preset P or preset='*' for others)"
        raise ReportError(f"experiment '{experiment}' has no finished sweep{which}")
    return runs[0]


def finished_children(client: Any, parent: Any) -> list[Any]:
    """The finished child runs (MLflow ``Run`` objects) of sweep ``parent``."""
    return client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' and attributes.status = 'FINISHED'",
                              max_results=10000)


def child_runs(client: Any, parent: Any, backbone_param: str) -> list[Run]:
    """Every finished child run of sweep ``parent``."""
    out = []
    for c in finished_children(client, parent):
        backbone = c.data.params.get(backbone_param)
        if backbone is None:
            raise ReportError(f"run {c.info.run_id} of experiment {parent.info.experiment_id} has no param '{backbone_param}' "
                              f"(params: {', '.join(sorted(c.data.params)[:12])}); set the *_backbone_param option")
        out.append(Run(c.info.run_id, backbone, dict(c.data.params), {metric_name(k): v for k, v in c.data.metrics.items()}))
    if not out:
        raise ReportError(f"sweep run {parent.info.run_id} has no finished trials")
    return out


def metric_name(key: str) -> str:
    """A stored metric key as the sweep reported it, with category names as the question file wrote
    them: ``acc/Sound _x26_ Music/pitch`` -> ``acc/Sound & Music/pitch``, ``val/acc_at_1`` -> ``val/acc@1``
    (:mod:`ausweep.track.keys`). A level whose name holds a ``/`` stays escaped: the task map's
    ``category/subcategory`` entries cannot name it, and it must not pass for a category and a
    subcategory."""
    from ausweep.track.keys import split_key

    return "/".join(name if "/" not in name else level for level, name in zip(key.split("/"), split_key(key)))


@dataclass
class Report:
    """``metrics``: ``pearson_r/<row>``, ``spearman_rho/<row>``, ``n/<row>`` for the paired tasks and
    ``all`` / ``all_micro``; ``warning``: empty unless the comparison is unfair (then loud everywhere)."""

    metrics: dict[str, float]
    table: list[dict[str, Any]]
    unpaired: list[dict[str, Any]]
    notes: list[str]
    warning: str = ""


def run(cfg: CorrelationConfig) -> dict[str, float]:
    """Compute and log the report; returns its metrics (see :class:`Report`)."""
    return report(cfg).metrics


def report(cfg: CorrelationConfig) -> Report:
    """Read both sweeps, choose one run per backbone, pair by task, correlate, write and log the report."""
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from ausweep.benchmarks.tasks import load_task_map
    from ausweep.track.store import SweepTracker, split_credentials, tracking_uri

    task_map = load_task_map(cfg.task_map)
    uri = cfg.tracking_uri or tracking_uri()
    # as the sweep's tracker does: credentials travel in MLflow's own variables, never in a URI we print
    bare, credentials = split_credentials(uri)
    for key, value in credentials.items():
        os.environ.setdefault(key, value)
    client = MlflowClient(tracking_uri=bare)
    parents, selections, per_task, unmapped = {}, {}, {}, {}
    for side, exp, run_id, param, wanted in (
            ("text", cfg.text_experiment, cfg.text_run, cfg.text_backbone_param, cfg.text_filter),
            ("audio", cfg.audio_experiment, cfg.audio_run, cfg.audio_backbone_param, cfg.audio_filter)):
        parents[side] = client.get_run(run_id) if run_id else latest_sweep(client, exp, cfg.preset)
        runs = filter_runs(child_runs(client, parents[side], param), wanted, side)
        sel = select_runs(runs, side, param, select=cfg.select, select_metric=cfg.select_metric,
                          ignore=tuple(cfg.ignore_params), allow_eval_selection=cfg.allow_eval_selection,
                          allow_recipe_mismatch=cfg.allow_recipe_mismatch)
        selections[side] = sel
        per_task[side] = task_scores(sel, side, task_map, cfg.metric)
        unmapped[side] = sorted({k for r in sel.runs.values() for k in task_map.unmapped(side, r.metrics, cfg.metric)})
    text_b, audio_b = set(selections["text"].runs), set(selections["audio"].runs)
    if not text_b & audio_b:
        raise ReportError(f"no backbone is in both sweeps: text has {sorted(text_b)}, audio has {sorted(audio_b)}")
    text, audio, unpaired = pair_tasks(per_task["text"], per_task["audio"], task_map, unmapped)
    if not any(t for b in text_b & audio_b for t in text[b]):
        raise ReportError(f"no task of {task_map.path} is on both sides: the text runs have "
                          f"{sorted({t for p in per_task['text'].values() for t in p})}, the audio runs "
                          f"{sorted({t for p in per_task['audio'].values() for t in p})}")
    table, points = correlate(text, audio, cfg.min_backbones)
    warnings = [n for s in selections.values() for n in s.notes if "EVALUATION DATA" in n or "RECIPES DIFFER" in n]
    on_eval = any(s.selected_on_eval for s in selections.values())
    mismatch = any(s.recipe_mismatch for s in selections.values())
    warning = " ".join(w for w, on in (("SELECTED ON EVALUATION DATA.", on_eval), ("RECIPES DIFFER ACROSS BACKBONES.", mismatch)) if on)
    for note in (n for s in selections.values() for n in s.notes):
        (log.warning if note in warnings else log.info)("%s", note)
    for row in table:
        log.info("%-16s n=%d  pearson r=%.3f (p=%.3g)  spearman rho=%.3f (p=%.3g) %s", row["category"], row["n"],
                 row["pearson_r"], row["pearson_p"], row["spearman_rho"], row["spearman_p"], row["note"])
    for row in unpaired:
        log.info("unpaired: %s %s (%s): %s", row["side"], row["task"] or "-", row["categories"], row["reason"])

    metrics: dict[str, float] = {}
    for row in table:
        metrics[f"pearson_r/{row['category']}"] = row["pearson_r"]
        metrics[f"spearman_rho/{row['category']}"] = row["spearman_rho"]
        metrics[f"n/{row['category']}"] = float(row["n"])

    selection_rows = [{"side": side, "backbone": b, "run_id": r.run_id, cfg.select_metric: r.metrics.get(cfg.select_metric),
                       **{k: v for k, v in recipe(r, cfg.text_backbone_param if side == "text" else cfg.audio_backbone_param,
                                                  tuple(cfg.ignore_params))}}
                      for side, sel in selections.items() for b, r in sorted(sel.runs.items())]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(cfg.out_dir) if cfg.out_dir else Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        files = [out / "correlation.csv", out / "points.csv", out / "unpaired.csv", out / "selection.csv"]
        pd.DataFrame(table).to_csv(files[0], index=False)
        pd.DataFrame(points, columns=["category", "backbone", "text", "audio"]).to_csv(files[1], index=False)
        pd.DataFrame(unpaired, columns=["task", "side", "categories", "reason", "question"]).to_csv(files[2], index=False)
        pd.DataFrame(selection_rows).to_csv(files[3], index=False)
        if warning:
            (out / "WARNINGS.txt").write_text(warning + "\n" + "\n".join(warnings) + "\n")
            files.append(out / "WARNINGS.txt")
        files.append(plot_scatter(points, table, out / "scatter.png", warning))
        if cfg.log_to_mlflow:
            tracker = SweepTracker("correlation", uri=uri)
            name = f"{cfg.text_experiment}-vs-{cfg.audio_experiment}" + (" [UNFAIR: see WARNINGS.txt]" if warning else "")
            run_id = tracker.start_parent(
                name,
                params={"text_run": parents["text"].info.run_id, "audio_run": parents["audio"].info.run_id,
                        "metric": cfg.metric, "select": cfg.select, "select_metric": cfg.select_metric,
                        "text_filter": str(cfg.text_filter), "audio_filter": str(cfg.audio_filter),
                        "task_map": task_map.path, "paired_tasks": ",".join(r["category"] for r in table),
                        "preset": cfg.preset or ""},
                tags={"ausweep.report": "correlation",
                      "ausweep.report.selected_on_eval": str(on_eval).lower(),
                      "ausweep.report.recipe_mismatch": str(mismatch).lower(),
                      "ausweep.report.warning": warning or "none",
                      "ausweep.report.unpaired": ", ".join(f"{r['side']}:{r['task'] or r['categories']}" for r in unpaired)[:5000]},
            )
            tracker.log_metrics(run_id, {k: v for k, v in metrics.items() if not math.isnan(v)})
            for f in files:
                tracker.log_file(run_id, f)
            tracker.end(run_id)
            log.info("logged to MLflow run %s (experiment 'correlation')", run_id)
    return Report(metrics, table, unpaired, [n for sel in selections.values() for n in sel.notes], warning)


def format_table(rep: Report) -> str:
    """The report as a few aligned lines for the terminal: a banner when it is unfair, the rows, the unpaired tasks."""
    lines = []
    if rep.warning:
        bar = "!" * 72
        lines += [bar, f"!! {rep.warning}", "!! see WARNINGS.txt and the MLflow tags ausweep.report.*", bar]
    lines.append(f"{'category':<18}{'n':>4}{'pearson r':>12}{'spearman rho':>15}")
    for row in rep.table:
        lines.append(f"{row['category']:<18}{row['n']:>4}{row['pearson_r']:>12.3f}{row['spearman_rho']:>15.3f}")
    if rep.unpaired:
        lines.append("unpaired (not compared):")
        lines += [f"  {r['side']:<6} {r['task'] or r['categories']}: {r['reason']}" for r in rep.unpaired]
    return "\n".join(lines)
