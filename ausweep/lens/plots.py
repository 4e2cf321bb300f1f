"""Figures of the lens study (matplotlib, Agg): PNG bytes for a trial, PNG files for a sweep.

Where it sits: :mod:`ausweep.lens.study` computes per-layer curves and heatmaps and hands them here.
Figure sizes are fixed per panel (:data:`PANEL`, :data:`DPI`, no tight bounding box), so a figure of
``n`` attribute panels is exactly ``n * PANEL[0] * DPI`` by ``PANEL[1] * DPI`` pixels.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PANEL = (4.0, 4.5)  # inches per attribute panel
DPI = 100


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def expected_size(n_panels: int) -> tuple[int, int]:
    """``(width, height)`` in pixels of a figure with ``n_panels`` attribute panels."""
    return round(PANEL[0] * DPI * n_panels), round(PANEL[1] * DPI)


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    _plt().close(fig)
    return buf.getvalue()


def heatmap_png(heat: Mapping[str, tuple[Sequence[str], np.ndarray]], title: str = "",
                layer_label: str = "layer (0 = embeddings)") -> bytes:
    """One panel per attribute: mean probability of the right option (first sub-token), layers
    (rows, layer 0 at the bottom) x the last prompt positions (columns, labelled with the
    first item's tokens). ``heat[attribute] = (tokens, matrix (layers, positions))``."""
    plt = _plt()
    n = max(1, len(heat))
    fig, axes = plt.subplots(1, n, figsize=(PANEL[0] * n, PANEL[1]), squeeze=False)
    for ax, (attr, (tokens, mat)) in zip(axes[0], heat.items()):
        im = ax.imshow(mat, origin="lower", aspect="auto", cmap="viridis", vmin=0.0, vmax=max(1e-6, float(np.nanmax(mat))))
        ax.set_xticks(range(len(tokens)), [repr(t)[1:-1] for t in tokens], rotation=60, ha="right", fontsize=7)
        ax.set_ylabel(layer_label)
        ax.set_title(f"{attr}: p(right option)", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.12 / n ** 0.5, right=0.95, bottom=0.3, top=0.85, wspace=0.45)
    return _png(fig)


def curves_png(curves: Mapping[str, Mapping[str, np.ndarray]], n_items: Mapping[str, Mapping[str, int]],
               position: str, title: str = "", chance: Mapping[str, float] | None = None,
               layer_label: str = "layer") -> bytes:
    """One panel per attribute: mean probability of the right option among the options per layer
    at ``position``, for correctly and incorrectly answered items (dotted: chance).
    ``curves[attribute][group] = (layers,)``."""
    plt = _plt()
    n = max(1, len(curves))
    fig, axes = plt.subplots(1, n, figsize=(PANEL[0] * n, PANEL[1]), squeeze=False)
    styles = {"correct": ("tab:green", "-"), "incorrect": ("tab:red", "--"), "all": ("black", ":")}
    for ax, (attr, groups) in zip(axes[0], curves.items()):
        for group, values in groups.items():
            color, ls = styles.get(group, ("gray", "-"))
            ax.plot(np.arange(len(values)), values, color=color, ls=ls, label=f"{group} (n={n_items[attr].get(group, 0)})")
        if chance and attr in chance:
            ax.axhline(chance[attr], color="gray", lw=0.8, ls=":")
        ax.set_xlabel(layer_label)
        ax.set_ylabel(f"p(right option | options) at {position}")
        ax.set_ylim(0, 1)
        ax.set_title(attr, fontsize=9)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.12 / n ** 0.5, right=0.97, bottom=0.12, top=0.85, wspace=0.35)
    return _png(fig)


def accuracy_vs_resolution(table: Any, path: Path, corr: Mapping[str, float] | None = None) -> Path | None:
    """Sweep summary: chance-corrected accuracy ((acc - 1/K) / (1 - 1/K), comparable across
    attributes with different option counts K) against the mean relative resolution layer, one
    point per (trial, attribute); the summary's Pearson correlations (``corr``) in the title."""
    plt = _plt()
    t = table.dropna(subset=["acc_cc", "resolution_layer_rel"]) if not table.empty else table
    if t.empty:
        return None
    fig, ax = plt.subplots(figsize=(6, 5))
    for attr, g in t.groupby("attribute"):
        k = g["n_options"].iloc[0]
        ax.scatter(g["resolution_layer_rel"], g["acc_cc"], label=f"{attr} (K={k:g})")
        for _, r in g.iterrows():
            ax.annotate(str(r.get("label", "")), (r["resolution_layer_rel"], r["acc_cc"]), fontsize=6, alpha=0.7)
    corr = corr or {}
    ax.axhline(0.0, color="gray", lw=0.8, ls=":")
    ax.set_xlabel("mean resolution layer / last layer")
    ax.set_ylabel("chance-corrected accuracy (acc - 1/K) / (1 - 1/K)")
    ax.set_xlim(0, 1.05)
    ax.set_ylim(min(-0.05, float(t["acc_cc"].min()) - 0.05), 1.05)
    ax.set_title(f"Pearson r with resolution layer: chance-corrected {corr.get('corr_acc_cc_resolution', float('nan')):.2f}, "
                 f"raw {corr.get('corr_acc_resolution', float('nan')):.2f} (n = {len(t)})", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def png_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` from a PNG's IHDR header; ValueError if ``data`` is not a PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
