"""AudioLens (Yang, Ho, Lee & Lee, ASRU 2025) as a sweepable study (``lens``): where do auditory
attributes resolve inside a language model?

One trial = one model (a causal LM on text items, or an audio-language model on clips) x a set of
attributes x one prompt style. For every item the model reads the context (or the clip), the
question and the probing prompt ("... The sound file's animal is"), and :mod:`ausweep.lens.lens`
projects every layer at the chosen positions onto the vocabulary. Per attribute the trial reports:

* ``<A>/acc``: the final answer (the top option by the model's logits at the last position) is right;
* ``<A>/resolution_layer``: mean over resolved items of the first layer from which the right option
  stays top-1 among the options through the last layer (at ``resolve_at``); ``_rel`` divides by the
  number of layers; ``<A>/resolved_frac`` the share of items that resolve at all;
* ``<A>/first_top1_layer``, ``<A>/p_label_last`` (mean probability at the last layer) and
  ``<A>/corr_correct_first_top1`` (point-biserial, per item; never top-1 counts as L+1);
* ``corr_acc_resolution``: Pearson r of accuracy and relative resolution layer across attributes
  (3 or more); the sweep summary computes it across every (trial, attribute);
* with ``enhance.source`` set: ``<A>/acc_enhanced`` and ``acc_enhanced_delta`` (the enhancement
  feeds layer ``source``'s state into layer ``target`` at the probed position).

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ausweep.config import ConfigError, to_dict
from ausweep.study import Study
from ausweep.track.artifacts import rows_to_csv
from ausweep.lens.config import LensConfig

log = logging.getLogger(__name__)

def demo_audio_root(cfg: LensConfig) -> Path:
    """The generated SAKURA-style folder (made once, atomically: a temp folder renamed into place)."""
    from ausweep.lens.data import make_demo_sakura

    if cfg.demo_root:
        root = Path(cfg.demo_root).expanduser()
    else:
        cache = os.environ.get("AUSWEEP_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ausweep")
        root = Path(cache) / "demo" / "lens" / "sakura-tones-v1"
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
        return demo_text_items(cfg.attributes, prompts.options, cfg.max_items)
    if cfg.data == "demo-audio":
        return load_sakura(demo_audio_root(cfg), cfg.attributes, prompts.options, cfg.context_template, cfg.max_items)
    path = Path(cfg.data).expanduser()
    if path.is_dir():
        return load_sakura(path, cfg.attributes, prompts.options, cfg.context_template, cfg.max_items)
    return load_text_items(path, cfg.attributes, prompts.options, cfg.max_items)


def get_prompts(cfg: LensConfig) -> Any:
    from ausweep.lens.data import load_prompts

    return load_prompts(cfg.attributes, cfg.prompts_file, cfg.options, cfg.probing_prompts, cfg.questions, cfg.attribute_words)


_MODEL_CACHE: dict[tuple, Any] = {}


def load_model(cfg: LensConfig, device: str) -> Any:
    """The model of ``cfg``; the last one loaded is kept, so a Tune worker reused for the next
    trial of the same model (reuse_actors) does not load it again."""
    from ausweep.lens.lens import load_lalm_model, load_text_model

    key = (cfg.lalm, None if cfg.lalm else cfg.model, device, cfg.dtype)
    if key not in _MODEL_CACHE:
        _MODEL_CACHE.clear()
        _MODEL_CACHE[key] = load_lalm_model(cfg.lalm, device) if cfg.lalm else load_text_model(cfg.model, device, cfg.dtype)
    return _MODEL_CACHE[key]


# ----------------------------------------------------------------------------- one trial


@dataclass
class Outcome:
    metrics: dict[str, float]
    items: list[dict[str, Any]]
    curves: list[dict[str, Any]]
    heatmap: list[dict[str, Any]]
    files: dict[str, bytes]
    series: dict[str, list[float]]
    n_layers: int


def _layer_index(i: int, n: int, name: str) -> int:
    j = i if i >= 0 else n + 1 + i
    if not 0 <= j <= n:
        raise ConfigError("", f"enhance.{name}", f"layer {i} is outside 0..{n} (the model has {n} blocks)")
    return j


def analyze(cfg: LensConfig) -> Outcome:
    """Load the model and items of ``cfg`` and run the lens over every item."""
    from ausweep.extract.worker import resolve_device
    from ausweep.lens import lens as L
    from ausweep.lens.plots import curves_png, heatmap_png

    prompts = get_prompts(cfg)
    items = load_items(cfg, prompts)
    model = load_model(cfg, resolve_device(cfg.device))
    if model.lalm is None and any(it.context is None for it in items):
        raise ConfigError("", "context_template", "a text LM needs a text context per item: set context_template for a SAKURA folder, or use a JSONL text set")
    n = model.n_layers
    ps = L.PromptSettings(cfg.prompt_style, cfg.question, cfg.is_suffix, cfg.template, cfg.audio_template, cfg.chat)
    enh = cfg.enhance
    src = tgt = None
    if enh.source is not None:
        src, tgt = _layer_index(enh.source, n, "source"), _layer_index(enh.target, n, "target")
        if src >= tgt:
            raise ConfigError("", "enhance.source", f"source layer {src} must come before target layer {tgt}")
    resolve = cfg.resolve_position
    records: list[dict[str, Any]] = []
    metrics: dict[str, float] = {"n_layers": float(n)}
    curves_rows: list[dict[str, Any]] = []
    heat_rows: list[dict[str, Any]] = []
    heat_fig: dict[str, tuple[list[str], np.ndarray]] = {}
    curve_fig: dict[str, dict[str, np.ndarray]] = {}
    curve_n: dict[str, dict[str, int]] = {}
    series: dict[str, list[float]] = {}
    by_attr: dict[str, list[Any]] = {}
    for it in items:
        by_attr.setdefault(it.attribute, []).append(it)
    for attr, group in by_attr.items():
        options = prompts.options[attr]
        opt_ids = L.option_token_ids(model.tokenizer, options)
        clash = L.collisions(options, opt_ids)
        if clash:
            log.warning("%s: options share a first sub-token with this tokenizer: %s", attr, clash)
        metrics[f"{attr}/first_token_collisions"] = float(sum(len(c) for c in clash))
        probs, ranks, finals, enhanced, names, tails, offsets_all, encs = [], [], [], [], None, [], [], []
        for start in range(0, len(group), cfg.batch_size):
            batch = group[start : start + cfg.batch_size]
            feats = None
            if model.lalm is not None:
                from ausweep.lalm.data import audio_features

                feats = audio_features(model.lalm.feature_extractor, [it.audio for it in batch])
            max_tok = model.lalm.config.max_text_tokens if model.lalm is not None else None
            enc = L.encode_batch(model, batch, prompts, ps, tail=cfg.heatmap_tokens, audio_features=feats, max_text_tokens=max_tok)
            names, offsets = L.resolve_offsets(cfg.positions, enc, cfg.heatmap_tokens)
            out = L.lens_batch(model.lm, enc.kwargs, offsets, opt_ids, cfg.method, cfg.patch_at,
                               rank_columns=len(cfg.positions))
            probs.append(out.probs)
            ranks.append(out.ranks)
            finals.append(out.final)
            tails.extend(enc.tail_tokens)
            encs.extend(enc.texts)
            offsets_all.append(offsets.numpy())
            if src is not None:
                _, eoff = L.resolve_offsets([enh.position], enc, 0)
                enhanced.append(L.enhanced_final(model.lm, enc.kwargs, opt_ids, src, tgt, enh.coef, enh.mode, eoff))
        P = np.concatenate(probs)          # (N, n+1, positions, K)
        R = np.concatenate(ranks)
        F = np.concatenate(finals)         # (N, K)
        labels = np.array([options.index(it.label) for it in group])
        pred = L.predict(F)
        correct = pred == labels
        ri = names.index(resolve)
        res = [L.resolution_layer(P[i, :, ri], labels[i]) for i in range(len(group))]
        first = [L.first_top1_layer(P[i, :, ri], labels[i]) for i in range(len(group))]
        p_label = P[np.arange(len(group)), :, :, labels]  # (N, n+1, positions)
        # among the options only: the raw vocabulary probability of any option is near 0 until the
        # last layers of small models, which hides which option leads before then
        p_rel = p_label / np.clip(P.sum(-1), 1e-30, None)
        r_label = R[np.arange(len(group)), :, :, labels]
        resolved = [r for r in res if r is not None]
        metrics[f"{attr}/n"] = float(len(group))
        metrics[f"{attr}/acc"] = float(correct.mean())
        metrics[f"{attr}/resolved_frac"] = len(resolved) / len(group)
        metrics[f"{attr}/resolution_layer"] = float(np.mean(resolved)) if resolved else float("nan")
        metrics[f"{attr}/resolution_layer_rel"] = float(np.mean(resolved)) / n if resolved else float("nan")
        reached = [f for f in first if f is not None]
        metrics[f"{attr}/first_top1_layer"] = float(np.mean(reached)) if reached else float("nan")
        metrics[f"{attr}/p_label_last"] = float(p_label[:, n, ri].mean())
        metrics[f"{attr}/corr_correct_first_top1"] = _corr(correct.astype(float), np.array([n + 1 if f is None else f for f in first], float))
        if enhanced:
            E = np.concatenate(enhanced)
            epred = L.predict(E)
            metrics[f"{attr}/acc_enhanced"] = float((epred == labels).mean())
        # curves: every named position x {all, correct, incorrect}
        named = [j for j, nm in enumerate(names) if not nm.startswith("tail")]
        for j in named:
            for gname, mask in (("all", np.ones_like(correct)), ("correct", correct), ("incorrect", ~correct)):
                if not mask.any():
                    continue
                for layer in range(n + 1):
                    top = P[mask, layer, j].argmax(-1) == labels[mask]
                    curves_rows.append({
                        "attribute": attr, "position": names[j], "group": gname, "layer": layer, "n": int(mask.sum()),
                        "p_label_mean": float(p_label[mask, layer, j].mean()),
                        "p_label_among_options_mean": float(p_rel[mask, layer, j].mean()),
                        "rank_label_median": float(np.median(r_label[mask, layer, j])),
                        "top1_among_options": float(top.mean()),
                    })
                if names[j] == resolve:
                    curve_fig.setdefault(attr, {})[gname] = p_rel[mask, :, j].mean(0)
                    curve_n.setdefault(attr, {})[gname] = int(mask.sum())
                    series[f"p_label/{attr}/{gname}"] = [float(v) for v in p_label[mask, :, j].mean(0)]
        tail_idx = [j for j, nm in enumerate(names) if nm.startswith("tail")]
        mat = p_label[:, :, tail_idx].mean(0)  # (n+1, tail)
        heat_fig[attr] = (tails[0], mat)
        for k, j in enumerate(tail_idx):
            for layer in range(n + 1):
                heat_rows.append({"attribute": attr, "offset": int(names[j][4:]), "token": tails[0][k] if k < len(tails[0]) else "",
                                  "layer": layer, "p_label_mean": float(mat[layer, k])})
        for i, it in enumerate(group):
            rec = {
                "id": it.id, "attribute": attr, "label": it.label, "context": it.context, "audio": it.audio,
                "prompt": encs[i], "predicted": options[int(pred[i])], "correct": bool(correct[i]),
                "option_probs_final": dict(zip(options, _softmax(F[i]).round(5).tolist())),
                "resolution_layer": res[i], "first_top1_layer": first[i],
                "positions": {
                    names[j]: {"p_label": p_label[i, :, j].round(6).tolist(), "rank_label": r_label[i, :, j].tolist(),
                               "top_option": [options[k] for k in P[i, :, j].argmax(-1)]}
                    for j in named
                },
                "tail_tokens": tails[i],
            }
            if enhanced:
                rec["predicted_enhanced"] = options[int(epred[i])]
            records.append(rec)
    all_correct = np.array([r["correct"] for r in records], float)
    metrics["acc"] = float(all_correct.mean())
    metrics["n_items"] = float(len(records))
    rel = [(metrics[f"{a}/acc"], metrics[f"{a}/resolution_layer_rel"]) for a in by_attr]
    rel = [(a, r) for a, r in rel if not np.isnan(r)]
    metrics["corr_acc_resolution"] = _corr(np.array([a for a, _ in rel]), np.array([r for _, r in rel])) if len(rel) >= 3 else float("nan")
    if src is not None:
        metrics["acc_enhanced"] = float(np.mean([r["predicted_enhanced"] == r["label"] for r in records]))
        metrics["acc_enhanced_delta"] = metrics["acc_enhanced"] - metrics["acc"]
    title = f"{cfg.lalm or cfg.model} | {cfg.prompt_style} prompt | {cfg.method}"
    files = {
        "plots/heatmap.png": heatmap_png(heat_fig, title),
        "plots/curves.png": curves_png(curve_fig, curve_n, resolve, title,
                                       chance={a: 1 / len(prompts.options[a]) for a in curve_fig}),
    }
    return Outcome(metrics, records, curves_rows, heat_rows, files, series, n)


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def run(cfg: LensConfig) -> dict[str, float]:
    """The lens of one model on one item set: ``{"acc": ..., "Animal/resolution_layer": ..., ...}``."""
    return analyze(cfg).metrics


# ----------------------------------------------------------------------------- sweep hooks


def trial(cfg: LensConfig) -> Iterator[dict[str, Any]]:
    """One Tune trial: metrics, per-layer curves as series (step = layer), text artifacts and the
    PNG figures."""
    import yaml

    out = analyze(cfg)
    artifacts = {
        "curves.csv": rows_to_csv(out.curves),
        "heatmap.csv": rows_to_csv(out.heatmap),
        "items.json": json.dumps(out.items, indent=1, ensure_ascii=False),
        "config.yaml": yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True),
        **out.files,  # PNG bytes
    }
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

    for c in configs:
        if c.lalm is None:
            try:
                check_lm_with_head(c.model, "causal")
            except ValueError as e:
                raise ConfigError("", "model", str(e)) from None
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
    """``results.csv`` (one line per trial and attribute) and ``accuracy_vs_resolution.png``; each
    trial's own figures are in its child run."""
    from ausweep.lens.plots import accuracy_vs_resolution

    table = results_table(rows)
    out = []
    csv_path = out_dir / "results.csv"
    table.to_csv(csv_path, index=False)
    out.append(csv_path)
    plot = accuracy_vs_resolution(table, out_dir / "accuracy_vs_resolution.png")
    if plot is not None:
        out.append(plot)
    return out


def results_table(rows: list[dict[str, Any]]):
    """One line per (trial, attribute): the settings that matter, then the attribute's metrics."""
    import pandas as pd

    from ausweep.config import with_defaults

    records = []
    for i, r in enumerate(rows):
        cfg = with_defaults(LensConfig, r.get("config"))
        m = r.get("metrics") or {}
        attrs = sorted({k.split("/")[0] for k in m if k.count("/") == 1 and k.endswith("/acc")})
        for a in attrs:
            rec = {"trial": i, "model": cfg.get("lalm") or cfg.get("model"), "prompt_style": cfg.get("prompt_style"),
                   "method": cfg.get("method"), "data": cfg.get("data"), "attribute": a}
            rec["label"] = f"{rec['model']}|{rec['prompt_style']}"
            for key in ("acc", "n", "resolution_layer", "resolution_layer_rel", "resolved_frac", "first_top1_layer",
                        "p_label_last", "acc_enhanced"):
                v = m.get(f"{a}/{key}")
                rec[key] = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else float("nan")
            rec["n_layers"] = m.get("n_layers")
            records.append(rec)
    return pd.DataFrame.from_records(records, columns=[
        "trial", "model", "prompt_style", "method", "data", "attribute", "label", "acc", "n", "resolution_layer",
        "resolution_layer_rel", "resolved_frac", "first_top1_layer", "p_label_last", "acc_enhanced", "n_layers"])


STUDY = Study(
    name="lens",
    config_cls=LensConfig,
    prepare=prepare,
    trial=trial,
    summarize=summarize,
    description="AudioLens: logit lens over an LM / audio-language model; where auditory attributes resolve, by layer.",
)
