"""Figures of the heterogeneity report, from plain arrays (matplotlib, Agg backend).

- `plot_gradient_shares`: normalized block gradient norms as bars (seed 000 Fig. 3).
- `plot_js_heatmap`: pairwise JS distances between blockwise spectra (seed 001 Fig. 4).
- `plot_spectra`: blockwise Hessian spectral densities overlaid (seed 001 Figs. 2-3).
- `plot_lambda_table`: the Λ_G / Λ_P table with block top eigenvalues (seed 000 Def. 4.5).

Every function writes a PNG atomically and returns its path.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from heterogeneity.experiment._store import atomic_write_bytes

__all__ = ["plot_gradient_shares", "plot_js_heatmap", "plot_spectra", "plot_lambda_table"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _short(labels: Sequence[str], width: int = 28) -> list[str]:
    return [label if len(label) <= width else "…" + label[-(width - 1):] for label in labels]


def plot_gradient_shares(path, labels: Sequence[str], shares, *, gini: float | None = None, title: str = "") -> Path:
    """Bars of normalized gradient shares (G_b/√P_b)/Σ, in block order (seed 000 Fig. 3)."""
    plt = _pyplot()
    shares = np.asarray(shares, dtype=float)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.28 * len(labels) + 2), 4))
    ax.bar(np.arange(len(labels)), shares, color="#3b6ea8")
    ax.set_xticks(np.arange(len(labels)))
    ax.set_xticklabels(_short(labels), rotation=90, fontsize=7)
    ax.set_ylabel(r"normalized gradient share  $(G_b/\sqrt{P_b})/\sum$")
    heading = title or "Gradient heterogeneity"
    if gini is not None:
        heading += f"   (Gini = {gini:.3f})"
    ax.set_title(heading)
    return _save(fig, path)


def plot_js_heatmap(path, labels: Sequence[str], matrix, *, title: str = "JS distance between blockwise spectra") -> Path:
    """Heatmap of a symmetric block × block distance matrix (seed 001 Fig. 4)."""
    plt = _pyplot()
    matrix = np.asarray(matrix, dtype=float)
    n = len(labels)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.3 * n + 3), max(4.0, 0.3 * n + 2)))
    im = ax.imshow(matrix, cmap="magma", interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ticks = np.arange(n)
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.set_xticklabels(_short(labels, 20), rotation=90, fontsize=6)
    ax.set_yticklabels(_short(labels, 20), fontsize=6)
    ax.set_title(title)
    return _save(fig, path)


def plot_spectra(path, grid, densities: Mapping[str, np.ndarray], *, max_blocks: int = 12,
                 title: str = "Blockwise Hessian spectral densities") -> Path:
    """Overlaid densities on a shared grid, log-scaled y as in seed 001 Figs. 2-3."""
    plt = _pyplot()
    grid = np.asarray(grid, dtype=float)
    fig, ax = plt.subplots(figsize=(7, 4))
    items = list(densities.items())
    if len(items) > max_blocks:  # keep the plot legible: evenly spaced subset of blocks
        keep = np.unique(np.linspace(0, len(items) - 1, max_blocks).round().astype(int))
        items = [items[i] for i in keep]
    floor = 1e-12
    for label, dens in items:
        ax.semilogy(grid, np.maximum(np.asarray(dens, dtype=float), floor), lw=1, label=_short([label], 30)[0])
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density (log)")
    ax.set_ylim(bottom=max(floor, min(float(np.max(d)) for _, d in items) * 1e-8))
    ax.legend(fontsize=6, ncol=2)
    ax.set_title(title)
    return _save(fig, path)


def plot_lambda_table(path, rows: Sequence[Sequence[str]], header: Sequence[str], *, title: str = "") -> Path:
    """A table figure (e.g. blocks with G_b, λ_b and the Λ_G / Λ_P summary)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(header)), 0.3 * len(rows) + 1.2))
    ax.axis("off")
    table = ax.table(cellText=[list(r) for r in rows], colLabels=list(header), loc="center", cellLoc="right")
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    table.scale(1, 1.2)
    if title:
        ax.set_title(title)
    return _save(fig, path)
