"""The lens sweep's summary: one table across trials and attributes, the correlation of accuracy
with the resolution layer, and the enhancement chosen on one half of the items and scored on the other.

Where it sits: after every trial of a ``lens`` sweep; :func:`ausweep.lens.study.summarize` writes
what these functions return. Every function takes the runner's rows (``{"config": the trial's
nested config, "metrics": its reported metrics}``) or the table built from them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ausweep.lens.config import LensConfig

# One line per (trial, attribute): the settings that matter, then the attribute's metrics. The
# option count K stands beside every accuracy and resolution-layer statistic: both depend on it.
SETTINGS = ["trial", "model", "prompt_style", "method", "data", "attribute", "label"]
ATTRIBUTE_METRICS = ["n_options", "acc", "acc_cc", "n", "resolution_layer", "resolution_layer_rel", "resolved_frac",
                     "first_top1_layer", "p_label_last", "control/acc", "control/acc_cc", "control/n",
                     # the attention knockout with every block knocked out (NaN in trials without it)
                     "knockout/audio/acc_all", "knockout/audio/delta_all",
                     "knockout/attribute/acc_all", "knockout/attribute/delta_all"]

# Config keys that do not change what a trial measures, and the enhancement's own (chosen) keys.
_NOT_SETTINGS = {"device", "batch_size", "demo_root"}
_ENHANCE_CHOICE = ("enhance.source", "enhance.target", "enhance.coef", "enhance.mode", "enhance.position")


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else float("nan")


def _attributes(metrics: Mapping[str, Any]) -> list[str]:
    """The attributes a trial measured: those with ``<A>/acc`` and ``<A>/n_options`` (``control/acc``
    is the trial's control items, not an attribute)."""
    return sorted({k.split("/")[0] for k in metrics if k.count("/") == 1 and k.endswith("/acc")
                   and f"{k.split('/')[0]}/n_options" in metrics})


def results_table(rows: Sequence[Mapping[str, Any]]):
    """One line per (trial, attribute): :data:`SETTINGS`, :data:`ATTRIBUTE_METRICS` (``control/*``:
    the labelled control items, whose context names the answer) and ``n_layers``."""
    import pandas as pd

    from ausweep.config import with_defaults

    records = []
    for i, r in enumerate(rows):
        cfg = with_defaults(LensConfig, r.get("config"))
        m = r.get("metrics") or {}
        for a in _attributes(m):
            rec = {"trial": i, "model": cfg.get("lalm") or cfg.get("model"), "prompt_style": cfg.get("prompt_style"),
                   "method": cfg.get("method"), "data": cfg.get("data"), "attribute": a}
            rec["label"] = f"{rec['model']}|{rec['prompt_style']}"
            for key in ATTRIBUTE_METRICS:
                rec[key] = _num(m.get(f"{a}/{key}"))
            rec["n_layers"] = m.get("n_layers")
            records.append(rec)
    return pd.DataFrame.from_records(records, columns=[*SETTINGS, *ATTRIBUTE_METRICS, "n_layers"])


def correlations(table: Any) -> dict[str, float]:
    """Pearson r of accuracy (raw ``acc`` and chance-corrected ``acc_cc``) with the relative
    resolution layer across every (trial, attribute) of the table that has both (3 or more),
    and their number ``corr_n``. NaN where it cannot be computed."""
    out = {"corr_acc_resolution": float("nan"), "corr_acc_cc_resolution": float("nan"), "corr_n": 0.0}
    if table.empty:
        return out
    for acc, key in (("acc", "corr_acc_resolution"), ("acc_cc", "corr_acc_cc_resolution")):
        t = table.dropna(subset=[acc, "resolution_layer_rel"])
        if acc == "acc":
            out["corr_n"] = float(len(t))
        if len(t) >= 3 and t[acc].std() > 0 and t["resolution_layer_rel"].std() > 0:
            out[key] = float(np.corrcoef(t[acc], t["resolution_layer_rel"])[0, 1])
    return out


def _setting_key(config: Mapping[str, Any]) -> tuple:
    from ausweep.config import flatten, with_defaults

    flat = flatten(with_defaults(LensConfig, config))
    return tuple(sorted((k, repr(v)) for k, v in flat.items() if k not in _NOT_SETTINGS and k not in _ENHANCE_CHOICE))


def choose_enhancement(rows: Sequence[Mapping[str, Any]]):
    """Per setting and attribute, the enhancement (source, target, coef, mode, position) with the
    best enhanced accuracy on half A, and its accuracy on half B.

    A *setting* is everything in a trial's config but the enhancement's own keys and the ones that
    do not change what is measured (device, batch size); trials of one setting differ only in
    their enhancement and share the same halves (``enhance.split_seed``). Ties on A go to the
    smaller coefficient, then the earlier source. Columns ``chosen_on_A.*`` are what was selected
    and its score on A; ``scored_on_B.*`` are the held-out numbers to report.
    """
    import pandas as pd

    from ausweep.config import with_defaults

    groups: dict[tuple, list[tuple[dict[str, Any], Mapping[str, Any]]]] = {}
    for r in rows:
        cfg = with_defaults(LensConfig, r.get("config"))
        m = r.get("metrics") or {}
        if (cfg.get("enhance") or {}).get("source") is None:
            continue
        for a in _attributes(m):
            if f"{a}/enhance/acc_A" not in m:
                continue
            groups.setdefault((_setting_key(r.get("config")), a), []).append((cfg, m))
    records = []
    for (_, a), cands in groups.items():
        def order(c: tuple[dict[str, Any], Mapping[str, Any]]) -> tuple:
            e = c[0]["enhance"]
            return (-_num(c[1][f"{a}/enhance/acc_A"]), abs(float(e["coef"])), int(e["source"]))  # noqa: B023 -- min() calls it now

        cfg, m = min(cands, key=order)
        e = cfg["enhance"]
        rec = {
            "model": cfg.get("lalm") or cfg.get("model"), "prompt_style": cfg.get("prompt_style"),
            "method": cfg.get("method"), "data": cfg.get("data"), "attribute": a,
            "n_options": _num(m.get(f"{a}/n_options")), "candidates": len(cands),
            "chosen_on_A.source": e["source"], "chosen_on_A.target": e["target"], "chosen_on_A.coef": e["coef"],
            "chosen_on_A.mode": e["mode"], "chosen_on_A.source_layer": _num(m.get("enhance/source_layer")),
            "chosen_on_A.n": _num(m.get(f"{a}/n_A")),
            "chosen_on_A.enhanced_acc": _num(m.get(f"{a}/enhance/acc_A")), "chosen_on_A.base_acc": _num(m.get(f"{a}/acc_A")),
            "scored_on_B.n": _num(m.get(f"{a}/n_B")),
            "scored_on_B.enhanced_acc": _num(m.get(f"{a}/enhance/acc_B")), "scored_on_B.base_acc": _num(m.get(f"{a}/acc_B")),
            "scored_on_B.delta": _num(m.get(f"{a}/enhance/delta_B")),
            "scored_on_B.enhanced_acc_cc": _num(m.get(f"{a}/enhance/acc_cc_B")),
            "scored_on_B.base_acc_cc": _num(m.get(f"{a}/acc_cc_B")),
        }
        records.append(rec)
    return pd.DataFrame.from_records(records).sort_values(["model", "attribute"], ignore_index=True) if records else pd.DataFrame()


def finite(metrics: Mapping[str, float]) -> dict[str, float]:
    """The entries that are numbers (MLflow takes no NaN)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
