"""The ``lalm_backbone`` study: which LLM backbone makes the best audio-language model?

One trial = one (backbone, connector size, learning rate, ...) point: build Whisper encoder ->
Q-Former -> LLM (:mod:`ausweep.lalm.model`), train it on (audio, instruction, response) data with
DeepSpeed under Ray Train (:func:`ausweep.lalm.train.fit`), then score it on an audio
multiple-choice set (:func:`ausweep.lalm.evaluate.evaluate_mc`). Metrics use the keys of the
text-only study (``acc``, ``acc/<category>``), so ``python -m ausweep.report correlation`` can put
the two side by side per backbone.

    python -m ausweep.sweep lalm_backbone                  # hub backbones on GPUs (see sweeps/lalm_backbone.yaml)
    python -m ausweep.sweep lalm_backbone --preset demo    # offline, CPU: Whisper tiny.en + SmolLM2 / tiny LLMs

Training checkpoints live under ``$AUSWEEP_STORAGE/lalm_train/<config hash>``: a trial that is
re-run (``--resume`` after a crash, or a Tune retry) continues from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ausweep.config import ConfigError, config_hash, to_dict
from ausweep.study import RUN_DIR_ENV, Study
from ausweep.track.artifacts import rows_to_csv
from ausweep.lalm_backbone.config import LALMBackboneConfig, LALMDataConfig

log = logging.getLogger(__name__)


def demo_root(cfg: LALMDataConfig) -> Path:
    """The default sizes share the folder of the cascade study's demo set (same evaluation items,
    so cascade and audio-grounded scores compare item for item); other sizes get their own."""
    from ausweep.data import demo_mc as D

    if cfg.demo_root:
        return Path(cfg.demo_root).expanduser()
    if (cfg.demo_n_train, cfg.demo_n_eval, cfg.demo_seed) == (D.DEFAULT_N_TRAIN, D.DEFAULT_N_EVAL, D.DEFAULT_SEED):
        return D.default_demo_root()
    return D.default_demo_root().parent / f"lalm-seed{cfg.demo_seed}-{cfg.demo_n_train}-{cfg.demo_n_eval}"


def data_paths(cfg: LALMDataConfig, generate: bool = True, progress: bool = False) -> tuple[Path, Path]:
    """``(train JSONL, eval manifest)``; the demo sets are generated (once, atomically) when not given."""
    train, evals = cfg.train, cfg.eval
    if train is None or evals is None:
        from ausweep.data.demo_mc import make_demo_sets

        root = demo_root(cfg)
        paths = make_demo_sets(root, n_train=cfg.demo_n_train, n_eval=cfg.demo_n_eval, seed=cfg.demo_seed, progress=progress) if generate else {
            "train": root / "train.jsonl", "eval": root / "eval.jsonl"}
        train = train or str(paths["train"])
        evals = evals or str(paths["eval"])
    return Path(train).expanduser(), Path(evals).expanduser()


def storage_dir(cfg: LALMBackboneConfig) -> Path:
    """Where training runs go: ``cfg.storage``; inside a sweep, the sweep's own run folder (so
    ``--resume`` finds a crashed trial's checkpoints there); else ``$AUSWEEP_STORAGE`` or
    ``./ausweep_runs``. Always followed by ``lalm_train/``."""
    if cfg.storage:
        return Path(cfg.storage).expanduser().resolve() / "lalm_train"
    if os.environ.get(RUN_DIR_ENV):  # set by the sweep runner inside every trial
        return Path(os.environ[RUN_DIR_ENV]) / "lalm_train"
    root = os.environ.get("AUSWEEP_STORAGE") or "ausweep_runs"
    return Path(root).expanduser().resolve() / "lalm_train"


# ----------------------------------------------------------------------------- one trial


def run_trial(cfg: LALMBackboneConfig) -> dict[str, Any]:
    """Train and evaluate one LALM: ``{"metrics", "series", "rows", "model_dir"}``."""
    from ausweep.benchmarks.mcq import load_mc
    from ausweep.lalm.evaluate import evaluate_mc
    from ausweep.lalm.model import load_lalm
    from ausweep.lalm.train import fit

    train_path, eval_path = data_paths(cfg.data)
    items = load_mc(eval_path)[: cfg.data.max_eval_items]
    key = config_hash(to_dict(dataclasses.replace(cfg, progress=True)))
    result = fit(cfg.lalm, cfg.train, data_path=str(train_path), storage_path=str(storage_dir(cfg)), name=f"lalm-{key}")
    lalm = load_lalm(result["model_dir"])
    metrics, rows = evaluate_mc(lalm, items, batch_size=cfg.eval_batch_size, length_norm=cfg.length_norm, progress=cfg.progress)
    out = {f"train/{k}": v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    out.update(metrics)
    out.update({f"params/{k}": float(v) for k, v in lalm.parameter_counts().items()})
    return {"metrics": out, "series": {"train/loss_curve": list(result.get("losses", []))}, "rows": rows,
            "model_dir": str(result["model_dir"])}


def run(cfg: LALMBackboneConfig) -> dict[str, float]:
    """Train and evaluate one LALM with no sweep around it; returns the metrics."""
    return run_trial(cfg)["metrics"]


# ----------------------------------------------------------------------------- sweep hooks


def trial(cfg: LALMBackboneConfig) -> Iterator[dict[str, Any]]:
    import yaml

    cfg = dataclasses.replace(cfg, progress=False)
    out = run_trial(cfg)
    yield {
        **out["metrics"],
        "series": out["series"],
        "artifacts": {"predictions.csv": rows_to_csv(out["rows"]),
                      "config.yaml": yaml.safe_dump(to_dict(cfg), sort_keys=False)},
        "tags": {"ausweep.model_dir": out["model_dir"], "ausweep.backbone": cfg.lalm.llm},
    }


def prepare(configs: list[LALMBackboneConfig], space: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Driver side, before any trial: check model names (no weights loaded), generate the demo sets
    once (trials would otherwise race to write them) and check that the data files load."""
    from ausweep.benchmarks.mcq import MCFormatError, load_mc
    from ausweep.lalm.data import load_instructions
    from ausweep.models.heads import check_lm_with_head, known_head_kind

    for c in configs:
        try:
            check_lm_with_head(c.lalm.llm, "causal")
            kind = known_head_kind(c.lalm.llm)
        except ValueError as e:
            raise ConfigError("", "lalm.llm", str(e)) from None
        if kind not in (None, "causal"):
            raise ConfigError("", "lalm.llm", f"'{c.lalm.llm}' is a masked LM; the LALM needs a causal LM (decoder)")
    seen: set[tuple[Path, Path]] = set()
    for c in configs:
        paths = data_paths(c.data, progress=True)
        if paths in seen:
            continue
        seen.add(paths)
        try:
            load_instructions(paths[0])
            load_mc(paths[1])
        except (MCFormatError, ValueError, FileNotFoundError) as e:
            raise ConfigError("", "data", str(e)) from None
    return space


def summarize(rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """``results.csv`` (one line per trial) and ``accuracy_by_backbone.png`` (per category)."""
    import pandas as pd

    from ausweep.config import flatten

    records = []
    for r in rows:
        flat = flatten(r.get("config") or {})
        rec = {k: flat.get(k) for k in ("lalm.llm", "lalm.encoder", "lalm.num_queries", "lalm.qformer_layers", "lalm.llm_mode", "train.lr")}
        rec.update({k: v for k, v in (r.get("metrics") or {}).items()
                    if (k == "acc" or k.startswith(("acc/", "train/", "n/"))) and isinstance(v, (int, float))})
        records.append(rec)
    table = pd.DataFrame.from_records(records)
    csv_path = out_dir / "results.csv"
    table.to_csv(csv_path, index=False)
    out = [csv_path]
    if len(table) and "acc" in table:
        out.append(plot_accuracy(table, out_dir / "accuracy_by_backbone.png"))
    return out


def plot_accuracy(table, path: Path) -> Path:
    """Best accuracy per backbone, overall and per category, as grouped bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cols = ["acc"] + sorted(c for c in table.columns if c.startswith("acc/") and c.count("/") == 1)
    best = table.sort_values("acc", ascending=False).groupby("lalm.llm", sort=False).head(1)
    x = np.arange(len(best))
    width = 0.8 / len(cols)
    fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(best) * len(cols) ** 0.5), 3.6))
    for i, c in enumerate(cols):
        ax.bar(x + i * width, best[c].fillna(0), width, label="overall" if c == "acc" else c.split("/", 1)[1])
    ax.set_xticks(x + width * (len(cols) - 1) / 2)
    ax.set_xticklabels([str(b).split("/")[-1] for b in best["lalm.llm"]], rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (best trial)")
    ax.set_title("audio-grounded accuracy by LLM backbone")
    ax.legend(fontsize=7, ncol=min(4, len(cols)))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


STUDY = Study(
    name="lalm_backbone",
    config_cls=LALMBackboneConfig,
    prepare=prepare,
    trial=trial,
    summarize=summarize,
    description="Whisper encoder + Q-Former + LLM backbone, trained with DeepSpeed under Ray Train, scored on audio multiple choice.",
)
