"""From the lens of every layer to the lens study's numbers: per-item statistics, per-attribute
metrics, curves, heatmaps, item records and the trial's artifacts.

Where it sits: after :mod:`ausweep.lens.lens` (which reads one batch) and before the sweep
(:mod:`ausweep.lens.study`, whose ``analyze`` is a short recipe over the functions here):

* :func:`lens_attribute` runs the lens over every batch of one attribute's items;
* :func:`item_stats` gives each item its prediction, correctness, resolution layer and
  per-layer probability and rank of the right option;
* :func:`attribute_metrics`, :func:`curve_rows`, :func:`heatmap_rows` and :func:`item_records`
  aggregate them per attribute; :func:`overall_metrics` across attributes;
* :func:`trial_artifacts` writes the files a trial logs.

Nothing here loads a model or data; torch is imported only inside the functions that run one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ausweep.lens import lens as L
from ausweep.lens.data import LensItem, Prompts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Enhancement:
    """The enhancement of a trial in hidden-state indices (0 = embeddings, ``l`` = output of block ``l``)."""

    source: int
    target: int
    coef: float
    mode: str
    position: int | str


@dataclass
class AttributeLens:
    """The lens over every item of one attribute (K options, P read positions, L blocks).

    ``logprobs`` / ``ranks`` (N, layers, P, K) per layer read; ``final`` (N, K) the model's own
    logits of the options at the last position; ``enhanced`` (N, K) the same with the enhancement
    active (None without one); ``names`` the P position names; ``tails`` / ``texts`` per item.
    Every order among the options is taken on ``logprobs`` (see :class:`ausweep.lens.lens.BatchLens`).
    """

    options: list[str]
    option_ids: list[int]
    logprobs: np.ndarray
    ranks: np.ndarray
    final: np.ndarray
    names: list[str]
    tails: list[list[str]]
    texts: list[str]
    enhanced: np.ndarray | None = None
    knockout: dict[str, np.ndarray] = field(default_factory=dict)  # target -> (N, len(knockout_layers), K) log-probs
    knockout_keys: dict[str, np.ndarray] = field(default_factory=dict)  # target -> (N,) knocked-out keys per item
    knockout_layers: list[int] = field(default_factory=list)  # first knocked block (0-based); L = none

    @property
    def probs(self) -> np.ndarray:
        """Vocabulary probabilities (float64), for reading only."""
        return np.exp(self.logprobs.astype(np.float64))

    def subset(self, index: Sequence[int]) -> AttributeLens:
        """The lens of the items at ``index`` only."""
        idx = list(index)
        return AttributeLens(
            options=self.options, option_ids=self.option_ids, logprobs=self.logprobs[idx], ranks=self.ranks[idx],
            final=self.final[idx], names=self.names, tails=[self.tails[i] for i in idx], texts=[self.texts[i] for i in idx],
            enhanced=self.enhanced[idx] if self.enhanced is not None else None,
            knockout={t: v[idx] for t, v in self.knockout.items()},
            knockout_keys={t: v[idx] for t, v in self.knockout_keys.items()}, knockout_layers=self.knockout_layers,
        )


def group_by_attribute(items: Sequence[LensItem]) -> dict[str, list[LensItem]]:
    """Items per attribute, in first-seen order."""
    out: dict[str, list[LensItem]] = {}
    for it in items:
        out.setdefault(it.attribute, []).append(it)
    return out


def lens_attribute(model: L.LensModel, items: Sequence[LensItem], prompts: Prompts, ps: L.PromptSettings,
                   positions: Sequence[int | str], tail: int, method: L.Method = "logit", patch_at: str = "output",
                   batch_size: int = 8, enhancement: Enhancement | None = None, first_layer: int = 0,
                   knockout: Sequence[str] = (), knockout_every: int = 1) -> AttributeLens:
    """Run the lens over ``items`` (all of one attribute) in batches of ``batch_size``. The layers
    kept are hidden states ``first_layer..L`` (1: AudioLens's numbering, which starts at the first
    block's output; 0: from the embeddings), renumbered from 0. ``knockout``: targets of the
    attention knockout (:mod:`ausweep.lens.knockout`), from every ``knockout_every``-th block;
    ``audio`` is skipped for a model without audio."""
    from ausweep.lens import knockout as K

    targets = [t for t in knockout if t != "audio" or model.audio]
    if len(targets) < len(knockout):
        log.warning("knockout target 'audio' skipped: %s reads no audio", model.name)
    ko_layers = sorted({*range(0, model.n_layers, knockout_every), model.n_layers}) if targets else []
    ko: dict[str, list[np.ndarray]] = {t: [] for t in targets}
    ko_keys: dict[str, list[np.ndarray]] = {t: [] for t in targets}
    attr = items[0].attribute
    options = prompts.options[attr]
    opt_ids = L.option_token_ids(model.tokenizer, options, ps.option_spelling)
    clash = L.collisions(options, opt_ids)
    if clash:  # a tie at every layer: neither option can be top-1
        log.warning("%s: options share a first sub-token with this tokenizer: %s", attr, clash)
    logps, ranks, finals, enhanced, names, tails, texts = [], [], [], [], [], [], []
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        feats = None
        if model.lalm is not None:
            from ausweep.lalm.data import audio_features

            feats = audio_features(model.lalm.feature_extractor, [it.audio for it in batch])
        max_tok = model.lalm.config.max_text_tokens if model.lalm is not None else None
        enc = L.encode_batch(model, batch, prompts, ps, tail=tail, audio_features=feats, max_text_tokens=max_tok)
        names, offsets = L.resolve_offsets(positions, enc, tail)
        out = L.lens_batch(model.lm, enc.kwargs, offsets, opt_ids, method, patch_at, rank_columns=len(positions))
        logps.append(out.logprobs)
        ranks.append(out.ranks)
        finals.append(out.final)
        tails.extend(enc.tail_tokens)
        texts.extend(enc.texts)
        if enhancement is not None:
            e = enhancement
            _, eoff = L.resolve_offsets([e.position], enc, 0)
            enhanced.append(L.enhanced_final(model.lm, enc.kwargs, opt_ids, e.source, e.target, e.coef, e.mode, eoff))
        for t in targets:
            keys = K.target_keys(enc, t)
            ko[t].append(K.knockout_curve(model.lm, enc.kwargs, keys, opt_ids, ko_layers))
            ko_keys[t].append(keys.sum(-1).cpu().numpy())
    return AttributeLens(
        options=list(options), option_ids=opt_ids, logprobs=np.concatenate(logps)[:, first_layer:],
        ranks=np.concatenate(ranks)[:, first_layer:],
        final=np.concatenate(finals), names=names, tails=tails, texts=texts,
        enhanced=np.concatenate(enhanced) if enhanced else None,
        knockout={t: np.concatenate(v) for t, v in ko.items()},
        knockout_keys={t: np.concatenate(v) for t, v in ko_keys.items()}, knockout_layers=ko_layers,
    )


# ----------------------------------------------------------------------------- per item


@dataclass
class ItemStats:
    """Per item (N items, P positions; layers as numbered by the trial): ``labels`` / ``pred`` option indices, ``correct``;
    ``resolution`` / ``first_top1`` layers (None: never) at the resolution position; ``p_label``
    (N, layers, P) the right option's vocabulary probability, ``p_rel`` its share among the options,
    ``r_label`` its vocabulary rank, ``top`` (N, layers, P) the top option's index (by
    log-probability); ``epred`` the enhanced prediction (None without one)."""

    labels: np.ndarray
    pred: np.ndarray
    correct: np.ndarray
    resolution: list[int | None]
    first_top1: list[int | None]
    p_label: np.ndarray
    p_rel: np.ndarray
    r_label: np.ndarray
    top: np.ndarray
    resolve_index: int
    epred: np.ndarray | None = None


def item_stats(lens: AttributeLens, labels: Sequence[int], resolve: str) -> ItemStats:
    """Prediction, correctness, resolution layers and the right option's curves of every item;
    ``resolve`` names the position the resolution layer is read at."""
    labels = np.asarray(labels)
    n_items = len(labels)
    LP, R, F = lens.logprobs, lens.ranks, lens.final
    pred = L.predict(F)
    ri = lens.names.index(resolve)
    idx = np.arange(n_items)
    # among the options only: the raw vocabulary probability of any option is near 0 until the
    # last layers of small models, which hides which option leads before then
    p_rel = L.among_options(LP)[idx, :, :, labels]
    return ItemStats(
        labels=labels, pred=pred, correct=pred == labels,
        resolution=[L.resolution_layer(LP[i, :, ri], labels[i]) for i in range(n_items)],
        first_top1=[L.first_top1_layer(LP[i, :, ri], labels[i]) for i in range(n_items)],
        p_label=np.exp(LP[idx, :, :, labels].astype(np.float64)),  # (N, layers, positions)
        p_rel=p_rel, r_label=R[idx, :, :, labels], top=L.top_option(LP), resolve_index=ri,
        epred=L.predict(lens.enhanced) if lens.enhanced is not None else None,
    )


# ----------------------------------------------------------------------------- per attribute


def chance_corrected(acc: float | np.ndarray, n_options: int | np.ndarray) -> float | np.ndarray:
    """``(acc - 1/K) / (1 - 1/K)``: 0 at chance, 1 when every answer is right, whatever the number
    of options K, so that attributes with 2 and with 9 options can be compared."""
    chance = 1.0 / np.asarray(n_options, dtype=float)
    return (acc - chance) / (1.0 - chance)


def attribute_metrics(attr: str, lens: AttributeLens, stats: ItemStats, last_layer: int) -> dict[str, float]:
    """``<attr>/acc`` and its chance-corrected ``/acc_cc``, ``/n_options`` (K, which every
    resolution-layer statistic depends on), ``/resolution_layer`` (``_rel``), ``/resolved_frac``,
    ``/first_top1_layer``, ``/p_label_last``, ``/corr_correct_first_top1``,
    ``/first_token_collisions``. ``last_layer``: the last layer's number (``_rel`` divides by it)."""
    n = last_layer
    clash = L.collisions(lens.options, lens.option_ids)
    m: dict[str, float] = {f"{attr}/first_token_collisions": float(sum(len(c) for c in clash))}
    n_items = len(stats.labels)
    resolved = [r for r in stats.resolution if r is not None]
    m[f"{attr}/n"] = float(n_items)
    m[f"{attr}/n_options"] = float(len(lens.options))
    m[f"{attr}/acc"] = float(stats.correct.mean())
    m[f"{attr}/acc_cc"] = float(chance_corrected(m[f"{attr}/acc"], len(lens.options)))
    m[f"{attr}/resolved_frac"] = len(resolved) / n_items
    m[f"{attr}/resolution_layer"] = float(np.mean(resolved)) if resolved else float("nan")
    m[f"{attr}/resolution_layer_rel"] = float(np.mean(resolved)) / n if resolved else float("nan")
    reached = [f for f in stats.first_top1 if f is not None]
    m[f"{attr}/first_top1_layer"] = float(np.mean(reached)) if reached else float("nan")
    m[f"{attr}/p_label_last"] = float(stats.p_label[:, n, stats.resolve_index].mean())
    never = np.array([n + 1 if f is None else f for f in stats.first_top1], float)
    m[f"{attr}/corr_correct_first_top1"] = corr(stats.correct.astype(float), never)
    return m


HALVES = ("A", "B")


def split_halves(items: Sequence[LensItem], seed: int) -> np.ndarray:
    """``"A"`` or ``"B"`` per item: two fixed halves, stratified by (attribute, label).

    Within each stratum the items (by id) are shuffled with a generator seeded by ``seed`` and the
    stratum's name, then dealt alternately; the half that gets the odd item alternates from one
    stratum to the next. The split depends only on the item set and ``seed``, so every trial of a
    sweep over the same items gets the same halves: settings are chosen on A and scored on B.
    """
    import zlib

    strata: dict[tuple[str, str], list[int]] = {}
    for i, it in enumerate(items):
        strata.setdefault((it.attribute, it.label), []).append(i)
    out = np.empty(len(items), dtype=object)
    odd = 0
    for key in sorted(strata):
        idx = sorted(strata[key], key=lambda i: items[i].id)
        rng = np.random.default_rng([seed, zlib.crc32("\x00".join(key).encode())])
        for k, i in enumerate(rng.permutation(idx)):
            out[i] = HALVES[(k + odd) % 2]
        odd += len(idx) % 2
    return out


def enhancement_metrics(prefix: str, correct: np.ndarray, enhanced_correct: np.ndarray, halves: np.ndarray,
                        n_options: np.ndarray) -> dict[str, float]:
    """Accuracy without and with the enhancement on each half, ``prefix`` + ``acc_A``, ``acc_B``,
    ``n_A``, ``n_B``, ``enhance/acc_A``, ``enhance/acc_B``, ``enhance/delta_A``, ``enhance/delta_B``
    and the chance-corrected ``acc_cc_*`` / ``enhance/acc_cc_*`` (``n_options``: K per item).
    No number over both halves: a setting is chosen on A and its effect is read on B."""
    m: dict[str, float] = {}
    for h in HALVES:
        mask = halves == h
        m[f"{prefix}n_{h}"] = float(mask.sum())
        if not mask.any():
            continue
        base = float(correct[mask].mean())
        enh = float(enhanced_correct[mask].mean())
        m[f"{prefix}acc_{h}"] = base
        m[f"{prefix}acc_cc_{h}"] = float(np.mean(chance_corrected(correct[mask].astype(float), n_options[mask])))
        m[f"{prefix}enhance/acc_{h}"] = enh
        m[f"{prefix}enhance/acc_cc_{h}"] = float(np.mean(chance_corrected(enhanced_correct[mask].astype(float), n_options[mask])))
        m[f"{prefix}enhance/delta_{h}"] = enh - base
    return m


@dataclass
class Curves:
    """Per-layer curves of one attribute: CSV ``rows``; ``figure[group]`` (layers,) and ``counts``
    for the curves figure at the resolution position; ``series`` for the trial's metric steps."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    figure: dict[str, np.ndarray] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    series: dict[str, list[float]] = field(default_factory=dict)


def curve_rows(attr: str, lens: AttributeLens, stats: ItemStats, last_layer: int, resolve: str) -> Curves:
    """Every named position x {all, correct, incorrect} x layer: mean probability of the right option
    (of the vocabulary and among the options), its median rank, and the share of items where it is
    the top option."""
    out = Curves()
    correct, labels = stats.correct, stats.labels
    named = [j for j, nm in enumerate(lens.names) if not nm.startswith("tail")]
    for j in named:
        for gname, mask in (("all", np.ones_like(correct)), ("correct", correct), ("incorrect", ~correct)):
            if not mask.any():
                continue
            for layer in range(last_layer + 1):
                top = stats.top[mask, layer, j] == labels[mask]
                out.rows.append({
                    "attribute": attr, "position": lens.names[j], "group": gname, "layer": layer, "n": int(mask.sum()),
                    "n_options": len(lens.options),
                    "p_label_mean": float(stats.p_label[mask, layer, j].mean()),
                    "p_label_among_options_mean": float(stats.p_rel[mask, layer, j].mean()),
                    "rank_label_median": float(np.median(stats.r_label[mask, layer, j])),
                    "top1_among_options": float(top.mean()),
                })
            if lens.names[j] == resolve:
                out.figure[gname] = stats.p_rel[mask, :, j].mean(0)
                out.counts[gname] = int(mask.sum())
                out.series[f"p_label/{attr}/{gname}"] = [float(v) for v in stats.p_label[mask, :, j].mean(0)]
    return out


def heatmap_rows(attr: str, lens: AttributeLens, stats: ItemStats, last_layer: int) -> tuple[list[dict[str, Any]], tuple[list[str], np.ndarray]]:
    """``(rows, (tokens, matrix (layers, tail)))``: mean probability of the right option per layer
    and tail position, labelled with the first item's tokens."""
    tail_idx = [j for j, nm in enumerate(lens.names) if nm.startswith("tail")]
    mat = stats.p_label[:, :, tail_idx].mean(0)  # (n+1, tail)
    tokens = lens.tails[0]
    rows = []
    for k, j in enumerate(tail_idx):
        for layer in range(last_layer + 1):
            rows.append({"attribute": attr, "offset": int(lens.names[j][4:]), "token": tokens[k] if k < len(tokens) else "",
                         "layer": layer, "p_label_mean": float(mat[layer, k])})
    return rows, (tokens, mat)


def item_records(attr: str, items: Sequence[LensItem], lens: AttributeLens, stats: ItemStats,
                 halves: np.ndarray | None = None) -> list[dict[str, Any]]:
    """One JSON-able record per item: prompt, prediction, resolution layers, per-layer curves and,
    with an enhancement, the enhanced prediction and the item's half (A or B)."""
    options = lens.options
    named = [j for j, nm in enumerate(lens.names) if not nm.startswith("tail")]
    records = []
    for i, it in enumerate(items):
        rec = {
            "id": it.id, "attribute": attr, "label": it.label, "control": it.control, "context": it.context, "audio": it.audio,
            "prompt": lens.texts[i], "predicted": options[int(stats.pred[i])], "correct": bool(stats.correct[i]),
            "option_probs_final": dict(zip(options, softmax(lens.final[i]).round(5).tolist())),
            "resolution_layer": stats.resolution[i], "first_top1_layer": stats.first_top1[i],
            "positions": {
                lens.names[j]: {"p_label": stats.p_label[i, :, j].round(6).tolist(),
                                "rank_label": stats.r_label[i, :, j].tolist(),
                                "top_option": [options[k] for k in stats.top[i, :, j]]}
                for j in named
            },
            "tail_tokens": lens.tails[i],
        }
        if stats.epred is not None:
            rec["predicted_enhanced"] = options[int(stats.epred[i])]
        if halves is not None:
            rec["half"] = str(halves[i])
        records.append(rec)
    return records


CONTROL_METRICS = ("n", "acc", "acc_cc", "resolved_frac", "resolution_layer", "resolution_layer_rel")


@dataclass
class AttributeResult:
    """What one attribute contributes to a trial: metrics, curves (None: no measured item),
    heatmap rows and figure, item records."""

    metrics: dict[str, float]
    curves: Curves | None
    heat_rows: list[dict[str, Any]]
    heat: tuple[list[str], np.ndarray] | None
    records: list[dict[str, Any]]
    knockout: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # target -> knockout curve rows


def knockout_result(attr: str, lens: AttributeLens, labels: np.ndarray, acc: float
                    ) -> tuple[dict[str, float], dict[str, list[dict[str, Any]]], dict[str, list[float]]]:
    """The knockout curves of one attribute's measured items: ``(metrics, rows per target, series)``.
    Metrics: ``<A>/knockout/<target>/acc_all`` and ``p_label_all`` (every block knocked out) and
    ``delta_all`` (its accuracy minus the unchanged model's); series: ``knockout/<A>/<target>/acc``
    and ``.../p_label`` per first knocked block."""
    from ausweep.lens import knockout as K

    metrics: dict[str, float] = {}
    rows: dict[str, list[dict[str, Any]]] = {}
    series: dict[str, list[float]] = {}
    n_blocks = lens.knockout_layers[-1] if lens.knockout_layers else 0
    for t, lp in lens.knockout.items():
        r = K.curve_rows(attr, t, lp, labels, lens.knockout_layers, n_blocks, lens.knockout_keys[t])
        rows[t] = r
        metrics[f"{attr}/knockout/{t}/acc_all"] = r[0]["acc"]
        metrics[f"{attr}/knockout/{t}/p_label_all"] = r[0]["p_label_among_options_mean"]
        metrics[f"{attr}/knockout/{t}/delta_all"] = r[0]["acc"] - acc
        series[f"knockout/{attr}/{t}/acc"] = [x["acc"] for x in r]
        series[f"knockout/{attr}/{t}/p_label"] = [x["p_label_among_options_mean"] for x in r]
    return metrics, rows, series


def attribute_result(attr: str, items: Sequence[LensItem], lens: AttributeLens, resolve: str, last_layer: int,
                     split_seed: int | None = None) -> AttributeResult:
    """Every number of one attribute. Measured items give the metrics, curves and heatmap; control
    items (``LensItem.control``: the context names the answer) only ``<attr>/control/*``
    (:data:`CONTROL_METRICS`), so copying never counts as hearing. ``split_seed`` (enhancement
    trials): the measured items' halves and their :func:`enhancement_metrics`."""
    out = AttributeResult({}, None, [], None, [])
    for control in (False, True):
        idx = [i for i, it in enumerate(items) if it.control == control]
        if not idx:
            continue
        part, sub = [items[i] for i in idx], lens.subset(idx)
        stats = item_stats(sub, [sub.options.index(it.label) for it in part], resolve)
        m = attribute_metrics(attr, sub, stats, last_layer)
        if control:
            out.metrics.update({f"{attr}/control/{k}": m[f"{attr}/{k}"] for k in CONTROL_METRICS})
            out.records += item_records(attr, part, sub, stats)
            continue
        out.metrics.update(m)
        halves = None
        if split_seed is not None and stats.epred is not None:
            halves = split_halves(part, split_seed)
            k = np.full(len(part), len(sub.options))
            out.metrics.update(enhancement_metrics(f"{attr}/", stats.correct, stats.epred == stats.labels, halves, k))
        out.curves = curve_rows(attr, sub, stats, last_layer, resolve)
        if sub.knockout:
            km, out.knockout, ks = knockout_result(attr, sub, stats.labels, m[f"{attr}/acc"])
            out.metrics.update(km)
            out.curves.series.update(ks)
        out.heat_rows, out.heat = heatmap_rows(attr, sub, stats, last_layer)
        out.records += item_records(attr, part, sub, stats, halves)
    return out


# ----------------------------------------------------------------------------- across attributes


def overall_metrics(records: Sequence[Mapping[str, Any]], n_options: Mapping[str, int]) -> dict[str, float]:
    """Over every measured item: ``acc``, ``n_items``, ``acc_cc`` (the mean of the items'
    chance-corrected scores, each against its own attribute's K) and with an enhancement the
    :func:`enhancement_metrics`; over the control items ``control/acc``, ``control/acc_cc`` and
    ``control/n``. The correlation of accuracy and resolution layer across attributes is the sweep
    summary's (a trial usually probes one attribute)."""
    out: dict[str, float] = {}
    for prefix, recs in (("", [r for r in records if not r["control"]]), ("control/", [r for r in records if r["control"]])):
        if not recs:
            continue
        k = np.array([n_options[r["attribute"]] for r in recs])
        correct = np.array([r["correct"] for r in recs])
        out[f"{prefix}acc"] = float(correct.mean())
        out[f"{prefix}acc_cc"] = float(np.mean(chance_corrected(correct.astype(float), k)))
        out[f"{prefix}n_items" if not prefix else f"{prefix}n"] = float(len(recs))
        if not prefix and "half" in recs[0]:
            enhanced = np.array([r["predicted_enhanced"] == r["label"] for r in recs])
            out.update(enhancement_metrics("", correct, enhanced, np.array([r["half"] for r in recs]), k))
    return out


def corr(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r; NaN for fewer than 2 points or a constant side."""
    if len(x) < 2 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max())
    return e / e.sum()


# ----------------------------------------------------------------------------- artifacts


@dataclass
class Outcome:
    """Everything one trial reports: metrics, item records, curve and heatmap rows, the figures
    (PNG bytes), the per-layer series and the number of decoder blocks."""

    metrics: dict[str, float]
    items: list[dict[str, Any]]
    curves: list[dict[str, Any]]
    heatmap: list[dict[str, Any]]
    files: dict[str, bytes]
    series: dict[str, list[float]]
    n_layers: int
    knockout: list[dict[str, Any]] = field(default_factory=list)


def figures(heat: Mapping[str, tuple[Sequence[str], np.ndarray]], curves: Mapping[str, Curves], resolve: str,
            title: str, n_options: Mapping[str, int], layer_label: str = "layer") -> dict[str, bytes]:
    """``plots/heatmap.png`` and ``plots/curves.png`` as PNG bytes."""
    from ausweep.lens.plots import curves_png, heatmap_png

    return {
        "plots/heatmap.png": heatmap_png(heat, title, layer_label),
        "plots/curves.png": curves_png({a: c.figure for a, c in curves.items()}, {a: c.counts for a, c in curves.items()},
                                       resolve, title, chance={a: 1 / n_options[a] for a in curves}, layer_label=layer_label),
    }


def trial_artifacts(out: Outcome, config: Mapping[str, Any]) -> dict[str, str | bytes]:
    """The files a trial logs: ``curves.csv``, ``heatmap.csv``, ``items.json``, ``config.yaml`` and the figures."""
    import yaml

    from ausweep.track.artifacts import rows_to_csv

    return {
        "curves.csv": rows_to_csv(out.curves),
        "heatmap.csv": rows_to_csv(out.heatmap),
        "items.json": json.dumps(out.items, indent=1, ensure_ascii=False),
        "config.yaml": yaml.safe_dump(dict(config), sort_keys=False, allow_unicode=True),
        **({"knockout.csv": rows_to_csv(out.knockout)} if out.knockout else {}),
        **out.files,  # PNG bytes
    }
