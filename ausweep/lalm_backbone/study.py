"""The ``lalm_backbone`` study: which LLM backbone makes the best audio-language model?

One trial = one backbone (and one point of any other swept setting): build Whisper encoder ->
Q-Former -> LLM (:mod:`ausweep.lalm.model`), train it on (audio, instruction, response) data with
DeepSpeed under Ray Train (:func:`ausweep.lalm.train.fit`), then score it on an audio
multiple-choice set (:func:`ausweep.lalm.evaluate.evaluate_mc`). Metrics use the keys of the
text-only study (``acc``: macro over categories, ``acc_micro``, ``acc/<category>/<subcategory>``),
so ``python -m ausweep.report correlation`` can put the two side by side per backbone and task.

Training data, by default, is DeSTA-style self-distilled (``data.responses=distill``): the backbone
itself answers each training instruction from the clip's text metadata (caption, transcript,
attributes; :mod:`ausweep.lalm.distill`), once per backbone before any trial, and the LALM learns to
give that answer from the audio. ``data.responses=given`` trains on an instruction file as it is.
Evaluation is kept out of training twice over: no clip is in two of train / dev / eval, and no
training instruction contains an evaluation or dev question (the demo set's training instructions
are of other families altogether: describe, transcribe, count, loudness, duration).

Two item sets are scored: ``eval`` (reported: ``acc``...) and ``dev`` (``dev/acc``...), on clips
of their own and disjoint from the training clips (checked by content before any trial). The
default sweep trains every backbone with one fixed recipe; a sweep that searches anything else
(``--preset tune``) ranks on ``dev/acc`` and needs a dev set, so no choice is made on the items
that are reported.

    python -m ausweep.sweep lalm_backbone                  # hub backbones on GPUs, one recipe (see sweeps/lalm_backbone.yaml)
    python -m ausweep.sweep lalm_backbone --preset tune    # train.lr x lalm.num_queries, chosen on dev
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
from ausweep.lalm_backbone.config import LALMBackboneConfig, LALMDataConfig
from ausweep.study import RUN_DIR_ENV, Study
from ausweep.track.artifacts import rows_to_csv

log = logging.getLogger(__name__)


def demo_root(cfg: LALMDataConfig) -> Path:
    """The default sizes share the folder of the cascade study's demo set (same evaluation items,
    so cascade and audio-grounded scores compare item for item); other sizes get their own."""
    from ausweep.data import demo_mc as D

    if cfg.demo_root:
        return Path(cfg.demo_root).expanduser()
    sizes = (cfg.demo_n_train, cfg.demo_n_eval, cfg.demo_n_dev, cfg.demo_seed)
    if sizes == (D.DEFAULT_N_TRAIN, D.DEFAULT_N_EVAL, D.DEFAULT_N_DEV, D.DEFAULT_SEED):
        return D.default_demo_root()
    return D.default_demo_root().parent / f"lalm-seed{cfg.demo_seed}-{cfg.demo_n_train}-{cfg.demo_n_eval}-{cfg.demo_n_dev}"


def data_paths(cfg: LALMDataConfig, generate: bool = True, progress: bool = False) -> tuple[Path, Path, Path | None]:
    """``(training source, eval manifest, dev manifest or None)``; the training source is the
    clips' metadata JSONL with ``responses=distill`` and the instruction JSONL with ``given``. The
    demo sets are generated (once, atomically) when not given. The demo dev split is used only with
    the demo evaluation set."""
    distilled = cfg.responses == "distill"
    train, evals, dev = cfg.metadata if distilled else cfg.train, cfg.eval, cfg.dev
    if train is None or evals is None:
        from ausweep.data.demo_mc import make_demo_sets

        root = demo_root(cfg)
        paths = make_demo_sets(root, n_train=cfg.demo_n_train, n_eval=cfg.demo_n_eval, seed=cfg.demo_seed,
                               progress=progress, n_dev=cfg.demo_n_dev) if generate else {
            "train": root / "train.jsonl", "metadata": root / "train_metadata.jsonl", "eval": root / "eval.jsonl",
            "dev": root / "dev.jsonl"}
        if dev is None and evals is None:
            dev = str(paths["dev"])
        train = train or str(paths["metadata" if distilled else "train"])
        evals = evals or str(paths["eval"])
    return Path(train).expanduser(), Path(evals).expanduser(), None if dev is None else Path(dev).expanduser()


def training_data(cfg: LALMBackboneConfig, progress: bool = False) -> Path:
    """The instruction JSONL a trial trains on: ``data.train`` (or the demo set's) with
    ``responses=given``; else the backbone's self-distilled responses to the metadata's instructions
    (:func:`ausweep.lalm.distill.distill`: generated on first use, then cached per backbone)."""
    source = data_paths(cfg.data, generate=False)[0]
    if cfg.data.responses == "given":
        return source
    from ausweep.lalm.distill import distill

    return distill(cfg.lalm.llm, source, dataclasses.replace(cfg.data.distill, progress=progress and cfg.data.distill.progress),
                   dtype=cfg.lalm.dtype)


def training_instructions(cfg: LALMDataConfig, source: Path) -> tuple[list[str], list[str]]:
    """``(clip paths, instructions)`` of the training source (metadata or instruction JSONL), read
    without generating anything."""
    if cfg.responses == "given":
        from ausweep.lalm.data import load_instructions

        examples = load_instructions(source)
        return [ex.audio for ex in examples], [ex.instruction for ex in examples]
    from ausweep.lalm.distill import load_metadata

    clips = load_metadata(source)
    return [m.audio for m in clips], [ins for m in clips for ins in m.instructions]


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def check_held_out(instructions: list[str], questions: dict[str, list[str]]) -> None:
    """Raise ValueError when a training instruction contains a question of an evaluated set
    (``{split: [questions]}``, whitespace and case ignored; a question of fewer than three words
    only when it is the whole instruction): a model trained on the evaluation's own question would
    be measured on in-task fine-tuning, not on what it brings to the task."""
    asked: dict[str, tuple[str, str]] = {}
    for split, qs in questions.items():
        for q in qs:
            if q.strip():
                asked.setdefault(_norm(q), (split, q))
    for ins in dict.fromkeys(instructions):
        text = _norm(ins)
        for q, (split, original) in asked.items():
            if q == text or (q in text and len(q.split()) >= 3):
                raise ValueError(f"the training instruction {ins!r} contains the {split} question {original!r}; keep "
                                 "the evaluated question families out of training (data.responses=distill with the "
                                 "demo metadata does)")


def check_disjoint(splits: dict[str, list[str]]) -> None:
    """Raise ValueError when a clip is in two splits (``{split: [audio paths]}``), by path or by
    content: dev must not overlap eval (a choice made on it would be a choice made on the report)
    and neither may overlap train. Only files of equal size are hashed."""
    import hashlib
    import os

    owner: dict[str, str] = {}
    for split, paths in splits.items():
        for path in set(paths):
            other = owner.setdefault(os.path.realpath(path), split)
            if other != split:
                raise ValueError(f"clip {path} is in both the {other} and the {split} set")
    by_size: dict[int, list[str]] = {}
    for path in owner:
        by_size.setdefault(os.path.getsize(path), []).append(path)
    seen: dict[str, str] = {}
    for paths in by_size.values():
        if len({owner[p] for p in paths}) < 2:
            continue
        for path in paths:
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            first = seen.setdefault(digest, path)
            if owner[first] != owner[path]:
                raise ValueError(f"the {owner[first]} clip {first} and the {owner[path]} clip {path} have the same content")


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

    _, eval_path, dev_path = data_paths(cfg.data)
    train_path = training_data(cfg, progress=cfg.progress)
    items = load_mc(eval_path)[: cfg.data.max_eval_items]
    dev_items = load_mc(dev_path)[: cfg.data.max_eval_items] if dev_path is not None else []
    key = config_hash(to_dict(dataclasses.replace(cfg, progress=True)))
    result = fit(cfg.lalm, cfg.train, data_path=str(train_path), storage_path=str(storage_dir(cfg)), name=f"lalm-{key}")
    lalm = load_lalm(result["model_dir"])
    score = dict(batch_size=cfg.eval_batch_size, length_norm=cfg.length_norm, progress=cfg.progress)
    metrics, rows = evaluate_mc(lalm, items, **score)
    out = {f"train/{k}": v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    out.update(metrics)
    dev_rows: list[dict[str, Any]] = []
    if dev_items:
        dev_metrics, dev_rows = evaluate_mc(lalm, dev_items, **score)
        out.update({f"dev/{k}": v for k, v in dev_metrics.items()})
    out.update({f"params/{k}": float(v) for k, v in lalm.parameter_counts().items()})
    return {"metrics": out, "series": {"train/loss_curve": list(result.get("losses", []))}, "rows": rows,
            "dev_rows": dev_rows, "model_dir": str(result["model_dir"])}


def run(cfg: LALMBackboneConfig) -> dict[str, float]:
    """Train and evaluate one LALM with no sweep around it; returns the metrics."""
    return run_trial(cfg)["metrics"]


# ----------------------------------------------------------------------------- sweep hooks


def trial(cfg: LALMBackboneConfig) -> Iterator[dict[str, Any]]:
    import yaml

    cfg = dataclasses.replace(cfg, progress=False)
    out = run_trial(cfg)
    artifacts = {"predictions.csv": rows_to_csv(out["rows"]), "config.yaml": yaml.safe_dump(to_dict(cfg), sort_keys=False)}
    if out["dev_rows"]:
        artifacts["predictions_dev.csv"] = rows_to_csv(out["dev_rows"])
    yield {
        **out["metrics"],
        "series": out["series"],
        "artifacts": artifacts,
        "tags": {"ausweep.model_dir": out["model_dir"], "ausweep.backbone": cfg.lalm.llm,
                 "ausweep.splits": "report: eval; choose on: dev" if out["dev_rows"] else "report: eval; no dev split"},
    }


def prepare(configs: list[LALMBackboneConfig], space: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Driver side, before any trial: check model names (no weights loaded), generate the demo sets
    once (trials would otherwise race to write them), check that the data files load, that no
    clip is in two of train / dev / eval and that no training instruction is an evaluated question;
    then self-distil the training responses once per backbone (``data.responses=distill``), on
    ``data.distill.num_actors`` Ray actors. A sweep over anything but ``lalm.llm`` chooses among recipes,
    so every config needs a dev set to choose on."""
    from ausweep.benchmarks.mcq import MCFormatError, load_mc
    from ausweep.config import FileFormatError
    from ausweep.models.heads import check_lm_with_head, known_head_kind

    for c in configs:
        try:
            check_lm_with_head(c.lalm.llm, "causal")
            kind = known_head_kind(c.lalm.llm)
        except ValueError as e:
            raise ConfigError("", "lalm.llm", str(e)) from None
        if kind not in (None, "causal"):
            raise ConfigError("", "lalm.llm", f"'{c.lalm.llm}' is a masked LM; the LALM needs a causal LM (decoder)")
    searched = sorted(k for k in space if k != "lalm.llm")
    seen: set[tuple[Path, Path, Path | None]] = set()
    for c in configs:
        paths = data_paths(c.data, progress=True)
        if searched and paths[2] is None:
            raise ConfigError("", "data.dev", f"the sweep searches {', '.join(searched)}: choosing among recipes needs "
                              "a dev set (data.dev=<manifest>, clips apart from eval and train); the evaluation items "
                              "are only reported. Or sweep lalm.llm alone, with one recipe")
        if paths in seen:
            continue
        seen.add(paths)
        try:
            clips, instructions = training_instructions(c.data, paths[0])
            evals = load_mc(paths[1])
            dev = load_mc(paths[2]) if paths[2] is not None else []
            check_disjoint({"train": clips, "eval": [it.audio for it in evals if it.audio],
                            "dev": [it.audio for it in dev if it.audio]})
            check_held_out(instructions, {"eval": [it.question for it in evals], "dev": [it.question for it in dev]})
        except (MCFormatError, FileFormatError, ValueError, FileNotFoundError) as e:
            raise ConfigError("", "data", str(e)) from None
    done: set[str] = set()
    for c in configs:  # once per backbone, before trials race to write the same set
        if c.data.responses == "distill":
            from ausweep.lalm.distill import distill_dir

            key = str(distill_dir(c.lalm.llm, c.lalm.dtype, data_paths(c.data, generate=False)[0], c.data.distill))
            if key not in done:
                done.add(key)
                training_data(c, progress=True)
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
                    if (k in ("acc", "acc_micro", "dev/acc", "dev/acc_micro") or k.startswith(("acc/", "dev/acc/", "train/", "n/")))
                    and isinstance(v, (int, float))})
        records.append(rec)
    table = pd.DataFrame.from_records(records)
    csv_path = out_dir / "results.csv"
    table.to_csv(csv_path, index=False)
    out = [csv_path]
    if len(table) and "acc" in table:
        out.append(plot_accuracy(table, out_dir / "accuracy_by_backbone.png"))
    return out


def one_per_backbone(table, cols: list[str]):
    """``(rows, how)``: one row of ``table`` per ``lalm.llm``. Several trials of a backbone: the one
    with the best ``dev/acc``; without dev scores, the mean of ``cols`` (never the best on ``acc``)."""
    if not table["lalm.llm"].duplicated().any():
        return table, "one trial per backbone"
    if "dev/acc" in table and table["dev/acc"].notna().all():
        return table.sort_values("dev/acc", ascending=False).groupby("lalm.llm", sort=False).head(1), "trial chosen on dev/acc"
    return table.groupby("lalm.llm", sort=False, as_index=False)[cols].mean(), "mean over trials (no dev scores)"


def plot_accuracy(table, path: Path) -> Path:
    """Evaluation accuracy per backbone, overall (macro) and per category, as grouped bars. With
    several trials per backbone, the one with the best ``dev/acc`` (never the best on evaluation
    items); without dev scores, their mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cols = ["acc"] + sorted(c for c in table.columns if c.startswith("acc/") and c.count("/") == 1)
    best, how = one_per_backbone(table, cols)
    x = np.arange(len(best))
    width = 0.8 / len(cols)
    fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(best) * len(cols) ** 0.5), 3.6))
    for i, c in enumerate(cols):
        ax.bar(x + i * width, best[c].fillna(0), width, label="all (macro)" if c == "acc" else c.split("/", 1)[1])
    ax.set_xticks(x + width * (len(cols) - 1) / 2)
    ax.set_xticklabels([str(b).split("/")[-1] for b in best["lalm.llm"]], rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("evaluation accuracy")
    ax.set_title(f"audio-grounded accuracy by LLM backbone ({how})")
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
