"""Sweep-level views of probe results: a table and the plots people look at first.

* ``acc_at_k.png``: for each (LM, audio model) pair, its best trial's accuracy@K with standard
  errors, the chance level and the permutation control beside it; plus a heatmap of the best
  accuracy@1 over LM x audio model.
* ``acc_by_layer.png`` (when layers were swept): accuracy@1 against the LM layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ausweep.config import flatten


def results_table(rows: list[dict[str, Any]]):
    """One line per trial: the swept-looking config columns and every metric."""
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
    return pd.DataFrame.from_records(records)


def _ks(table) -> list[int]:
    return sorted(int(c.split("@")[1]) for c in table.columns if c.startswith("acc@") and not c.endswith("_se"))


def plot_summary(table, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    if "acc@1" not in table.columns or table.empty:
        return []
    out: list[Path] = []
    best = table.loc[table.groupby(["lm", "audio"], dropna=False)["acc@1"].idxmax()].reset_index(drop=True)
    ks = _ks(table)
    lms, audios = sorted(best["lm"].astype(str).unique()), sorted(best["audio"].astype(str).unique())

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    ax = axes[0]
    width = 0.8 / max(len(best), 1)
    x = np.arange(len(ks))
    for i, row in best.iterrows():
        acc = [row[f"acc@{k}"] for k in ks]
        se = [row.get(f"acc@{k}_se", 0.0) for k in ks]
        ax.bar(x + i * width, acc, width, yerr=se, capsize=2, label=f"{row['lm']} / {row['audio']}")
    chance = [best[f"chance@{k}"].iloc[0] for k in ks] if f"chance@{ks[0]}" in best else None
    if chance:
        ax.plot(x + 0.4 - width / 2, chance, "k--", marker="_", label="chance")
    if f"perm_acc@{ks[0]}" in best:
        ax.plot(x + 0.4 - width / 2, [best[f"perm_acc@{k}"].mean() for k in ks], "r:", marker="x", label="shuffled pairs")
    ax.set_xticks(x + 0.4 - width / 2, [f"acc@{k}" for k in ks])
    ax.set_ylim(0, 1)
    ax.set_ylabel("held-out accuracy (mean ± s.e. over splits)")
    ax.set_title("Best trial per LM / audio model")
    ax.legend(fontsize=7, loc="upper left")

    ax = axes[1]
    grid = np.full((len(lms), len(audios)), np.nan)
    for _, row in best.iterrows():
        grid[lms.index(str(row["lm"])), audios.index(str(row["audio"]))] = row["acc@1"]
    im = ax.imshow(grid, vmin=0, vmax=max(1e-6, np.nanmax(grid)), cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(audios)), audios, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(lms)), lms, fontsize=8)
    for (i, j), v in np.ndenumerate(grid):
        if v == v:
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="w" if v < 0.6 * np.nanmax(grid) else "k", fontsize=8)
    ax.set_title("best accuracy@1")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path = out_dir / "acc_at_k.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    out.append(path)

    if table["layer"].nunique(dropna=True) > 1:
        fig, ax = plt.subplots(figsize=(7, 4))
        layer_best = table.groupby(["lm", "audio", "layer"], dropna=False)["acc@1"].max().reset_index()
        for (lm, audio), g in layer_best.groupby(["lm", "audio"]):
            g = g.sort_values("layer")
            ax.plot(g["layer"], g["acc@1"], marker="o", label=f"{lm} / {audio}")
        if "chance@1" in table:
            ax.axhline(table["chance@1"].iloc[0], color="k", ls="--", label="chance")
        ax.set_xlabel("LM hidden-state index (0 = embeddings)")
        ax.set_ylabel("held-out accuracy@1")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / "acc_by_layer.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out.append(path)
    return out
