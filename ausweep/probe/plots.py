"""Sweep-level views of probe results: tables and the plots people look at first.

Every "best" here is chosen on validation classes and reported on held-out classes: per group
(an LM, layer and audio model, or an LM and audio model over its layers), the trial with the
highest ``val/acc@1`` (ties broken by ``val/acc@K`` for the larger K, then by trial order) is
*the* configuration, and its ``test/acc@K`` is the number shown. The maximum of ``test/acc@K``
over trials is never taken: it would be a maximum over test data.

* ``results.csv``: one line per trial, validation and held-out columns side by side, and
  ``chosen_on_val`` marking the trial chosen for its (LM, layer, audio model);
* ``selected.csv``: one line per (LM, layer, audio model), the chosen trial only;
* ``acc_at_k.png``: per (LM, audio model), the chosen trial's held-out accuracy@K with standard
  errors, the chance level and the permutation control beside it; plus a heatmap of that held-out
  accuracy@1 over LM x audio model;
* ``acc_by_layer.png`` (when layers were swept): held-out accuracy@1 of the chosen trial per layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ausweep.config import flatten

GROUP = ["lm", "layer", "audio"]
SELECT_ON = "val/acc@1"


def results_table(rows: list[dict[str, Any]]):
    """One line per trial: the swept-looking config columns, every metric, and ``chosen_on_val``."""
    import pandas as pd

    records = []
    for r in rows:
        flat = flatten(r["config"])
        rec = {"lm": flat.get("text.model"), "layer": flat.get("text.layer"), "audio": flat.get("audio.model")}
        for k in ("probe.lr", "probe.shared_dim", "probe.temperature", "probe.weight_decay", "probe.epochs"):
            rec[k.split(".", 1)[1]] = flat.get(k)
        if flat.get("embeddings.text"):
            rec["lm"] = Path(flat["embeddings.text"]).stem
        if flat.get("embeddings.audio"):
            rec["audio"] = Path(flat["embeddings.audio"]).stem
        rec.update({k: v for k, v in r["metrics"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        records.append(rec)
    table = pd.DataFrame.from_records(records)
    if not table.empty:
        table["chosen_on_val"] = False
        table.loc[chosen_on_validation(table, GROUP), "chosen_on_val"] = True
    return table


def chosen_on_validation(table, by: Sequence[str]) -> list:
    """Index of the trial chosen in each group of ``by``: highest ``val/acc@1``, ties broken by
    ``val/acc@K`` for each larger K in turn, then by trial order. Held-out columns are never read."""
    if table.empty or SELECT_ON not in table.columns:
        return []
    keys = [SELECT_ON] + [f"val/acc@{k}" for k in _ks(table, "val/acc@") if k != 1]
    ranked = table.sort_values(keys, ascending=False, kind="stable", na_position="last")
    return list(ranked.groupby(list(by), dropna=False, sort=False).head(1).index)


def selected_table(table):
    """One line per (LM, layer, audio model): the trial chosen on validation, by ``results_table``."""
    if table.empty or "chosen_on_val" not in table.columns:
        return table
    return table[table["chosen_on_val"]].sort_values(GROUP).reset_index(drop=True)


def _ks(table, prefix: str = "test/acc@") -> list[int]:
    return sorted(int(c[len(prefix):]) for c in table.columns if c.startswith(prefix) and not c.endswith("_se"))


def plot_summary(table, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    if SELECT_ON not in table.columns or "test/acc@1" not in table.columns or table.empty:
        return []
    out: list[Path] = []
    best = table.loc[chosen_on_validation(table, ["lm", "audio"])].reset_index(drop=True)
    ks = _ks(table)
    lms, audios = sorted(best["lm"].astype(str).unique()), sorted(best["audio"].astype(str).unique())

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    ax = axes[0]
    width = 0.8 / max(len(best), 1)
    x = np.arange(len(ks))
    for i, row in best.iterrows():
        acc = [row[f"test/acc@{k}"] for k in ks]
        se = [row.get(f"test/acc@{k}_se", 0.0) for k in ks]
        ax.bar(x + i * width, acc, width, yerr=se, capsize=2, label=f"{row['lm']} / {row['audio']}")
    if f"test/chance@{ks[0]}" in best:
        ax.plot(x + 0.4 - width / 2, [best[f"test/chance@{k}"].iloc[0] for k in ks], "k--", marker="_", label="chance")
    if f"test/perm_acc@{ks[0]}" in best:
        ax.plot(x + 0.4 - width / 2, [best[f"test/perm_acc@{k}"].mean() for k in ks], "r:", marker="x", label="shuffled pairs")
    ax.set_xticks(x + 0.4 - width / 2, [f"acc@{k}" for k in ks])
    ax.set_ylim(0, 1)
    ax.set_ylabel("held-out accuracy (mean ± s.e. over splits)")
    ax.set_title("Configuration chosen on validation, per LM / audio model")
    ax.legend(fontsize=7, loc="upper left")

    ax = axes[1]
    grid = np.full((len(lms), len(audios)), np.nan)
    for _, row in best.iterrows():
        grid[lms.index(str(row["lm"])), audios.index(str(row["audio"]))] = row["test/acc@1"]
    top = max(1e-6, float(np.nanmax(grid)))
    im = ax.imshow(grid, vmin=0, vmax=top, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(audios)), audios, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(lms)), lms, fontsize=8)
    for (i, j), v in np.ndenumerate(grid):
        if v == v:
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="w" if v < 0.6 * top else "k", fontsize=8)
    ax.set_title("held-out accuracy@1 (chosen on validation)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path = out_dir / "acc_at_k.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    out.append(path)

    if table["layer"].nunique(dropna=True) > 1:
        fig, ax = plt.subplots(figsize=(7, 4))
        per_layer = selected_table(table)
        for (lm, audio), g in per_layer.groupby(["lm", "audio"]):
            g = g.sort_values("layer")
            line = ax.plot(g["layer"], g["test/acc@1"], marker="o", label=f"{lm} / {audio} (held-out)")[0]
            ax.plot(g["layer"], g[SELECT_ON], ls=":", color=line.get_color(), label=f"{lm} / {audio} (validation)")
        if "test/chance@1" in table:
            ax.axhline(table["test/chance@1"].iloc[0], color="k", ls="--", label="chance (held-out)")
        ax.set_xlabel("LM hidden-state index (0 = embeddings)")
        ax.set_ylabel("accuracy@1, configuration chosen on validation")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / "acc_by_layer.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out.append(path)
    return out
