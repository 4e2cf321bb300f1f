"""AudioLens (Yang, Ho, Lee & Lee, ASRU 2025) as a sweepable study (``lens``): where do auditory
attributes resolve inside a language model?

One trial = one model (a causal LM on text items, or an audio-language model on clips) x a set of
attributes x one prompt style. For every item the model reads the context (or the clip), the
question and the probing prompt ("... The sound file's animal is"), and :mod:`ausweep.lens.lens`
projects every layer at the chosen positions onto the vocabulary. Per attribute the trial reports:

* ``<A>/acc``: the final answer (the top option by the model's logits at the last position) is
  right; ``<A>/acc_cc`` the same chance-corrected, ``(acc - 1/K) / (1 - 1/K)``, and
  ``<A>/n_options`` K, which every accuracy and resolution-layer statistic depends on;
* ``<A>/resolution_layer``: mean over resolved items of the first layer from which the right option
  stays top-1 among the options (by log-probability) through the last layer (at ``resolve_at``);
  ``_rel`` divides by the last layer's number; ``<A>/resolved_frac`` the share that resolve at all;
* ``<A>/first_top1_layer``, ``<A>/p_label_last`` (mean probability at the last layer) and
  ``<A>/corr_correct_first_top1`` (point-biserial, per item; never top-1 counts as L+1);
* with ``enhance.source`` set (the enhancement feeds layer ``source``'s state into layer ``target``
  at the probed position): ``<A>/acc_A``, ``<A>/acc_B``, ``<A>/enhance/acc_A``,
  ``<A>/enhance/acc_B`` and ``.../delta_*``, on two fixed, seeded halves of the items
  (``enhance.split_seed``) and never on both: the sweep summary chooses source and coefficient on
  A and reports them on B (``enhancement.csv``).

The correlation of accuracy with the resolution layer is taken across every (trial, attribute)
by the sweep summary and logged as the parent run's metrics ``corr_acc_resolution`` and
``corr_acc_cc_resolution`` (chance-corrected).

Artifacts: ``curves.csv`` (per layer, position and group), ``heatmap.csv``, ``items.json``,
``config.yaml``, and the figures ``plots/heatmap.png`` and ``plots/curves.png`` (PNG bytes, which
the MLflow callback logs into the trial's child run byte for byte).

    python -m ausweep.sweep lens                      # hub LMs x attributes x prompt styles (GPU)
    python -m ausweep.sweep lens --preset demo        # SmolLM2-135M offline on the generated text set
    python -m ausweep.sweep lens --preset demo_audio  # an untrained Whisper-tiny.en + SmolLM2 LALM on generated tones
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ausweep.config import ConfigError, to_dict
from ausweep.lens.analysis import Enhancement, Outcome, trial_artifacts
from ausweep.lens.config import LensConfig
from ausweep.study import Study

log = logging.getLogger(__name__)

def demo_audio_root(cfg: LensConfig) -> Path:
    """The generated SAKURA-style folder (made once, atomically: a temp folder renamed into place)."""
    from ausweep.lens.data import make_demo_sakura

    if cfg.demo_root:
        root = Path(cfg.demo_root).expanduser()
    else:
        from ausweep.files import cache_root

        root = cache_root() / "demo" / "lens" / "sakura-tones-v1"
    if not (root / "Animal" / "metadata.csv").is_file():
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
        try:
            make_demo_sakura(tmp)
            try:
                os.replace(tmp, root)
            except OSError:  # another trial made it first
                if not (root / "Animal" / "metadata.csv").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def load_items(cfg: LensConfig, prompts: Any) -> list[Any]:
    from ausweep.lens.data import demo_text_items, load_sakura, load_text_items

    if cfg.data == "demo":
        return demo_text_items(cfg.attributes, prompts.options, cfg.max_items, cfg.controls)
    if cfg.data == "demo-audio":
        return load_sakura(demo_audio_root(cfg), cfg.attributes, prompts.options, cfg.context_template, cfg.max_items)
    path = Path(cfg.data).expanduser()
    if path.is_dir():
        return load_sakura(path, cfg.attributes, prompts.options, cfg.context_template, cfg.max_items)
    return load_text_items(path, cfg.attributes, prompts.options, cfg.max_items, cfg.controls)


def get_prompts(cfg: LensConfig) -> Any:
    from ausweep.lens.data import load_prompts

    return load_prompts(cfg.attributes, cfg.prompts_file, cfg.options, cfg.probing_prompts, cfg.questions, cfg.attribute_words)


_MODEL_CACHE: dict[tuple, Any] = {}


def load_model(cfg: LensConfig, device: str) -> Any:
    """The model of ``cfg``; the last one loaded is kept, so a Tune worker reused for the next
    trial of the same model (reuse_actors) does not load it again."""
    from ausweep.lens.lens import load_lalm_model, load_native_model, load_text_model
    from ausweep.models.native_lalm import is_native

    key = (cfg.lalm, None if cfg.lalm else cfg.model, device, cfg.dtype)
    if key not in _MODEL_CACHE:
        _MODEL_CACHE.clear()
        if cfg.lalm and is_native(cfg.lalm):
            _MODEL_CACHE[key] = load_native_model(cfg.lalm, device, cfg.dtype)
        else:
            _MODEL_CACHE[key] = load_lalm_model(cfg.lalm, device) if cfg.lalm else load_text_model(cfg.model, device, cfg.dtype)
    return _MODEL_CACHE[key]


# ----------------------------------------------------------------------------- one trial


def first_layer(cfg: LensConfig) -> int:
    """The hidden-state index of layer 0 in the trial's numbering (``layers``)."""
    return 1 if cfg.layers == "audiolens" else 0


def hidden_index(layer: int, n_blocks: int, cfg: LensConfig, name: str) -> int:
    """A layer number of ``cfg``'s numbering -> its hidden-state index (0 = embeddings, L = last
    block). Negative numbers count from the end in both numberings (-1 = the last block)."""
    first = first_layer(cfg)
    j = layer + first if layer >= 0 else n_blocks + 1 + layer
    if not first <= j <= n_blocks:
        raise ConfigError("", f"enhance.{name}", f"layer {layer} is outside {0}..{n_blocks - first} "
                          f"(layers={cfg.layers}; the model has {n_blocks} blocks)")
    return j


def enhancement_of(cfg: LensConfig, n_blocks: int) -> Enhancement | None:
    """The trial's enhancement in hidden-state indices, checked against the model's depth."""
    e = cfg.enhance
    if e.source is None:
        return None
    src, tgt = hidden_index(e.source, n_blocks, cfg, "source"), hidden_index(e.target, n_blocks, cfg, "target")
    if src >= tgt:
        raise ConfigError("", "enhance.source", f"source layer {e.source} must come before target layer {e.target}")
    return Enhancement(src, tgt, e.coef, e.mode, e.position)


def analyze(cfg: LensConfig) -> Outcome:
    """Load the model and items of ``cfg`` and run the lens over every item."""
    from ausweep.extract.worker import resolve_device
    from ausweep.lens import analysis as A
    from ausweep.lens.lens import PromptSettings

    prompts = get_prompts(cfg)
    items = load_items(cfg, prompts)
    model = load_model(cfg, resolve_device(cfg.device))
    if not model.audio and any(it.context is None for it in items):
        raise ConfigError("", "context_template", "a text LM needs a text context per item: set context_template for a SAKURA folder, or use a JSONL text set")
    n = model.n_layers
    first = first_layer(cfg)
    last = n - first  # the last layer's number
    ps = PromptSettings(cfg.prompt_style, cfg.question, cfg.is_suffix, cfg.template, cfg.audio_template, cfg.chat,
                        cfg.option_tokens)
    enh = enhancement_of(cfg, n)
    resolve = cfg.resolve_position
    metrics: dict[str, float] = {"n_layers": float(n)}
    records: list[dict[str, Any]] = []
    curves_rows: list[dict[str, Any]] = []
    heat_rows: list[dict[str, Any]] = []
    heat_fig: dict[str, tuple[list[str], np.ndarray]] = {}
    curves: dict[str, A.Curves] = {}
    knock: dict[str, dict[str, list[dict[str, Any]]]] = {}
    knock_rows: list[dict[str, Any]] = []
    by_attr = A.group_by_attribute(items)
    n_options = {a: len(prompts.options[a]) for a in by_attr}
    for attr, group in by_attr.items():
        lens = A.lens_attribute(model, group, prompts, ps, cfg.positions, cfg.heatmap_tokens, cfg.method,
                                cfg.patch_at, cfg.batch_size, enh, first, cfg.knockout.targets, cfg.knockout.every)
        res = A.attribute_result(attr, group, lens, resolve, last, cfg.enhance.split_seed if enh else None)
        metrics.update(res.metrics)
        records += res.records
        if res.curves is not None:
            curves[attr], heat_fig[attr] = res.curves, res.heat
            curves_rows += res.curves.rows
            heat_rows += res.heat_rows
        if res.knockout:
            knock[attr] = res.knockout
            knock_rows += [r for rows in res.knockout.values() for r in rows]
    metrics.update(A.overall_metrics(records, n_options))
    if enh is not None:
        metrics.update({"enhance/source_layer": float(enh.source - first), "enhance/target_layer": float(enh.target - first)})
    title = f"{cfg.lalm or cfg.model} | {cfg.prompt_style} prompt | {cfg.method}"
    files = A.figures(heat_fig, curves, resolve, title, n_options,
                      "layer (0 = first block's output)" if first else "layer (0 = embeddings)")
    if knock:
        from ausweep.lens.knockout import knockout_png

        files["plots/knockout.png"] = knockout_png(knock, title)
    series = {k: v for c in curves.values() for k, v in c.series.items()}
    return Outcome(metrics, records, curves_rows, heat_rows, files, series, n, knock_rows)


def run(cfg: LensConfig) -> dict[str, float]:
    """The lens of one model on one item set: ``{"acc": ..., "Animal/resolution_layer": ..., ...}``."""
    return analyze(cfg).metrics


# ----------------------------------------------------------------------------- sweep hooks


def trial(cfg: LensConfig) -> Iterator[dict[str, Any]]:
    """One Tune trial: metrics, per-layer curves as series (step = layer), text artifacts and the
    PNG figures."""
    out = analyze(cfg)
    artifacts = trial_artifacts(out, to_dict(cfg))
    yield {
        **{k: v for k, v in out.metrics.items() if not np.isnan(v)},  # NaN (no resolved item) is left out
        "series": out.series,
        "artifacts": artifacts,
        "tags": {"ausweep.lens.model": cfg.lalm or cfg.model, "ausweep.lens.data": cfg.data},
    }


def prepare(configs: list[LensConfig], space: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Driver side: check model names, prompts and data paths (no weights, no network)."""
    from ausweep.lens.data import LensDataError, demo_text_items
    from ausweep.models.heads import check_lm_with_head
    from ausweep.models.native_lalm import is_native

    for c in configs:
        if c.lalm is None:
            try:
                check_lm_with_head(c.model, "causal")
            except ValueError as e:
                raise ConfigError("", "model", str(e)) from None
        elif is_native(c.lalm):
            pass  # a native transformers LALM: its name was resolved by is_native (no weights read)
        elif c.lalm.startswith("untrained:"):
            enc, _, llm = c.lalm[len("untrained:"):].partition("+")
            if not enc or not llm:
                raise ConfigError("", "lalm", f"expected 'untrained:<encoder>+<llm>', got {c.lalm!r}")
            try:
                check_lm_with_head(llm, "causal")
            except ValueError as e:
                raise ConfigError("", "lalm", str(e)) from None
        elif not (Path(c.lalm).expanduser() / "config.json").is_file():
            raise ConfigError("", "lalm", f"{c.lalm}: not a saved LALM folder (no config.json)")
        try:
            prompts = get_prompts(c)
            if c.data == "demo":
                demo_text_items(c.attributes, prompts.options, 1)
        except LensDataError as e:
            raise ConfigError("", e.field or "attributes", str(e)) from None
        if c.data not in ("demo", "demo-audio") and not Path(c.data).expanduser().exists():
            raise ConfigError("", "data", f"{c.data}: no such file or folder")
        if c.data == "demo-audio" and c.lalm is None and c.context_template is None:
            raise ConfigError("", "data", "'demo-audio' is audio; a text LM needs lalm=... or context_template")
        if c.lalm is not None and c.data == "demo":
            raise ConfigError("", "data", "an audio-language model needs audio items: data=demo-audio or a SAKURA folder")
    return space


def summarize(rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """``results.csv`` (one line per trial and attribute, K and the chance-corrected accuracy beside
    the raw one), ``accuracy_vs_resolution.png``, ``metrics.json`` (the correlation of accuracy
    with the resolution layer across every trial and attribute; the runner logs it as the parent
    run's metrics) and, for enhancement trials, ``enhancement.csv`` (chosen on half A, scored on
    half B). Each trial's own figures are in its child run."""
    from ausweep.files import write_text_atomic
    from ausweep.lens import summary as S
    from ausweep.lens.plots import accuracy_vs_resolution

    table = S.results_table(rows)
    out = [out_dir / "results.csv"]
    table.to_csv(out[0], index=False)
    corr = S.correlations(table)
    out.append(write_text_atomic(out_dir / "metrics.json", json.dumps(S.finite(corr), indent=1) + "\n"))
    plot = accuracy_vs_resolution(table, out_dir / "accuracy_vs_resolution.png", corr)
    if plot is not None:
        out.append(plot)
    chosen = S.choose_enhancement(rows)
    if not chosen.empty:
        out.append(out_dir / "enhancement.csv")
        chosen.to_csv(out[-1], index=False)
    return out


def results_table(rows: list[dict[str, Any]]):
    """One line per (trial, attribute); see :func:`ausweep.lens.summary.results_table`."""
    from ausweep.lens.summary import results_table as table

    return table(rows)


STUDY = Study(
    name="lens",
    config_cls=LensConfig,
    prepare=prepare,
    trial=trial,
    summarize=summarize,
    description="AudioLens: logit lens over an LM / audio-language model; where auditory attributes resolve, by layer.",
)
