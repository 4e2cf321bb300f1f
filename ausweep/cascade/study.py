"""The cascade: audio -> text description (a pluggable describer) -> a text-only LLM answers.

Where it sits: between the text-only knowledge scores (:mod:`ausweep.benchmarks.scoring`, no audio)
and the audio-grounded LALMs (:mod:`ausweep.lalm`, audio embeddings fed to the LLM). The cascade
hears the clip only through a describer (:mod:`ausweep.cascade.describe`: Whisper ASR, a numpy
pitch describer, any hub ASR / audio-classification model, a caption by a native audio-language
model (``lalm:qwen2-audio``), or ``none``) and puts its words before
the question (:func:`ausweep.benchmarks.mcq.format_prompt` ``context``); the same scorer then ranks
the options. With ``describer=none`` it is exactly the text-only baseline on the same items.

    python -m ausweep.sweep cascade --preset demo     # offline: smollm2-135m + tiny LMs x {whisper-tiny.en, none}
    python -m ausweep.sweep cascade                   # hub backbones x describers (GPU)

:func:`run` works with no Ray; the sweep's Tune trainable wraps :func:`trial`. Metric keys are the
scorer's (``acc``: the macro average over categories; ``acc_micro``: over items; ``acc/<category>``,
``acc/<category>/<subcategory>``, ``n``...) plus ``described`` (the fraction of items whose
description was not empty).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ausweep.benchmarks.mcq import MCItem
from ausweep.cascade.config import CascadeConfig
from ausweep.cascade.describe import Describer, check_describer, get_describer
from ausweep.config import ConfigError, to_dict
from ausweep.study import Study
from ausweep.track.artifacts import rows_to_csv

log = logging.getLogger(__name__)


def describe_items(items: Sequence[MCItem], describer: str | Describer, device: str = "cpu",
                   batch_size: int = 8) -> tuple[list[str], list[str | None]]:
    """Descriptions (``""`` for items without audio) and the contexts the prompt gets (None: no
    context line, so an empty description leaves the prompt exactly text-only). ``describer``: a
    name (default options) or a :class:`Describer` made with :func:`get_describer`."""
    d = get_describer(describer, device=device, batch_size=batch_size) if isinstance(describer, str) else describer
    with_audio = [i for i, it in enumerate(items) if it.audio]
    texts = d.describe([items[i].audio for i in with_audio]) if with_audio else []  # type: ignore[misc]
    descriptions = [""] * len(items)
    for i, text in zip(with_audio, texts):
        descriptions[i] = text
    return descriptions, [d.context(t) for t in descriptions]


def run_cascade(lm: Any, items: Sequence[MCItem], describer: str | Describer, method: str = "loglik",
                batch_size: int = 16, length_norm: bool = False, progress: bool = False, device: str | None = None,
                describe_batch_size: int = 8) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Describe each item's audio, then score the items with the text scorer with the description
    as context. ``lm`` is an :class:`ausweep.models.heads.LMWithHead` (causal); the describer runs
    on ``device`` (default: the LM's). Returns ``(metrics, rows)``: the scorer's metrics plus
    ``described``, and its per-item rows with ``describer`` and ``description`` columns."""
    from ausweep.benchmarks.scoring import evaluate_items

    items = list(items)
    if not items:
        raise ValueError("no items to score")
    d = get_describer(describer, device=device or lm.device, batch_size=describe_batch_size) if isinstance(describer, str) else describer
    descriptions, contexts = describe_items(items, d)
    metrics, rows = evaluate_items(lm, items, method=method, contexts=contexts, batch_size=batch_size,
                                   length_norm=length_norm, progress=progress)
    metrics = {**metrics, "described": sum(bool(t) for t in descriptions) / len(items)}
    rows = [{**row, "describer": d.name, "description": text} for row, text in zip(rows, descriptions)]
    return metrics, rows


# ----------------------------------------------------------------------------- one trial


def manifest_path(cfg: CascadeConfig) -> Path:
    """The items file: ``cfg.manifest``, else the default demo eval set (generated if missing)."""
    if cfg.manifest is not None:
        return Path(cfg.manifest).expanduser()
    from ausweep.data.demo_mc import ensure_default_demo_sets

    return ensure_default_demo_sets(progress=cfg.progress)["eval"]


def load_items(cfg: CascadeConfig) -> list[MCItem]:
    from ausweep.benchmarks.mcq import load_mc

    return load_mc(manifest_path(cfg))[: cfg.max_items]


def make_describer(cfg: CascadeConfig, device: str) -> Describer:
    """``cfg``'s describer on ``device`` with its options (the caption prompt and length, the dtype)."""
    return get_describer(cfg.describer, device=device, batch_size=cfg.describe_batch_size,
                         caption_prompt=cfg.caption_prompt, caption_max_new_tokens=cfg.caption_max_new_tokens,
                         dtype=cfg.dtype)


def evaluate_config(cfg: CascadeConfig) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Load the LM and the items of ``cfg`` and run the cascade."""
    from ausweep.extract.worker import resolve_device
    from ausweep.models.heads import load_lm_with_head

    items = load_items(cfg)
    device = resolve_device(cfg.device)
    describer = make_describer(cfg, device)
    # Describe first and free the describer's model before the LM loads: a 7B captioner and a 14B LM
    # need not share one GPU. The descriptions stay cached, so run_cascade does not describe again.
    describe_items(items, describer)
    describer.release()
    lm = load_lm_with_head(cfg.model, kind="causal", device=device, revision=cfg.revision, dtype=cfg.dtype)
    metrics, rows = run_cascade(lm, items, describer, method=cfg.method, batch_size=cfg.batch_size,
                                length_norm=cfg.length_norm, progress=cfg.progress, device=device,
                                describe_batch_size=cfg.describe_batch_size)
    log.info("cascade %s + %s on %d items: %s", cfg.model, cfg.describer, len(items), metrics)
    return metrics, rows


def run(cfg: CascadeConfig) -> dict[str, float]:
    """One cascade evaluation: ``{"acc": ..., "acc/sound": ..., "described": ..., ...}``."""
    return evaluate_config(cfg)[0]


# ----------------------------------------------------------------------------- sweep hooks


def trial(cfg: CascadeConfig) -> Iterator[dict[str, Any]]:
    """One Tune trial: metrics, per-item rows (with descriptions) as CSV, the config as YAML."""
    import yaml

    cfg = dataclasses.replace(cfg, progress=False)
    metrics, rows = evaluate_config(cfg)
    yield {
        **metrics,
        "artifacts": {"predictions.csv": rows_to_csv(rows), "config.yaml": yaml.safe_dump(to_dict(cfg), sort_keys=False)},
        "tags": {"ausweep.describer": cfg.describer, "ausweep.data": cfg.manifest or "demo/lalm (generated)"},
    }


def prepare(configs: list[CascadeConfig], space: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Driver side: check every model and describer name (no weights, no network) and the items
    file; generate the default demo set once here, so trials do not race to make it."""
    from ausweep.benchmarks.mcq import MCFormatError, load_mc
    from ausweep.models.heads import check_lm_with_head
    from ausweep.registry import UnknownNameError

    for c in configs:
        try:
            check_lm_with_head(c.model, "causal")
        except ValueError as e:  # NoHeadError (a masked LM), a bad folder
            raise ConfigError("", "model", str(e)) from None
        try:
            check_describer(c.describer)
        except (UnknownNameError, ValueError) as e:
            raise ConfigError("", "describer", str(e)) from None
    for path in sorted({str(manifest_path(c)) for c in configs}):
        try:
            items = load_mc(path)
        except MCFormatError as e:
            raise ConfigError("", "manifest", str(e)) from None
        if not any(it.audio for it in items):
            raise ConfigError("", "manifest", f"{path} has no items with audio; the cascade describes audio")
    return space


def summarize(rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """``results.csv`` (one line per trial) and ``accuracy.png`` (accuracy per category, one group
    of bars per backbone, one bar per describer)."""
    table = results_table(rows)
    csv_path = out_dir / "results.csv"
    table.to_csv(csv_path, index=False)
    out = [csv_path]
    plot = plot_accuracy(table, out_dir / "accuracy.png")
    if plot is not None:
        out.append(plot)
    return out


def results_table(rows: list[dict[str, Any]]):
    import pandas as pd

    from ausweep.config import with_defaults

    records = []
    for r in rows:
        cfg = with_defaults(CascadeConfig, r.get("config"))
        rec = {k: cfg.get(k) for k in ("model", "describer", "method", "manifest", "max_items", "dtype")}
        rec.update({k: v for k, v in (r.get("metrics") or {}).items()
                    if (k in ("acc", "acc_micro", "n", "described") or k.startswith(("acc/", "n/")))
                    and isinstance(v, (int, float)) and not isinstance(v, bool)})
        records.append(rec)
    return pd.DataFrame.from_records(records)


def plot_accuracy(table, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    if table.empty or "acc" not in table.columns:
        return None
    cats = ["acc"] + sorted(c for c in table.columns if c.startswith("acc/") and c.count("/") == 1)
    models = list(dict.fromkeys(table["model"]))
    describers = list(dict.fromkeys(table["describer"]))
    fig, axes = plt.subplots(1, len(cats), figsize=(3.2 * len(cats) + 1, 4.5), squeeze=False, sharey=True)
    width = 0.8 / max(len(describers), 1)
    x = np.arange(len(models))
    for ax, cat in zip(axes[0], cats):
        for j, d in enumerate(describers):
            vals = [table[(table["model"] == m) & (table["describer"] == d)][cat].astype(float).mean() for m in models]
            ax.bar(x + j * width, vals, width, label=d)
        ax.set_xticks(x + 0.4 - width / 2, models, rotation=25, ha="right", fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title("all (macro over categories)" if cat == "acc" else cat.split("/", 1)[1])
    axes[0][0].set_ylabel("accuracy")
    axes[0][-1].legend(title="describer", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


STUDY = Study(
    name="cascade",
    config_cls=CascadeConfig,
    prepare=prepare,
    trial=trial,
    summarize=summarize,
    description="Cascade baseline: a describer (ASR / pitch / an audio-language model's caption / none) turns the audio into text, a text-only LLM answers the multiple-choice question.",
)
