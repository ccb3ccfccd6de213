"""Figures of the heterogeneity report, from plain arrays (matplotlib, Agg backend).

- `plot_gradient_shares`: normalized block gradient norms as bars, in partition order, optionally
  on a log axis [Tomihari25, Fig. 3].
- `plot_js_heatmap`: pairwise JS distances between blockwise spectra, labelled colour bar
  [Zhang24, Fig. 4].
- `plot_spectra`: blockwise Hessian spectral densities as small multiples, one panel per block
  [Zhang24, Figs. 2-3].
- `plot_lambda_table`: the per-block table behind Λ_G and Λ_P [Tomihari25, Def. 4.5].

Every ``plot_*`` function writes a PNG atomically and returns its path; its ``*_figure`` twin
returns the matplotlib figure instead (what the tests inspect).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from heterogeneity.experiment._store import atomic_write_bytes

__all__ = ["plot_gradient_shares", "plot_js_heatmap", "plot_spectra", "plot_lambda_table", "gradient_shares_figure",
           "js_heatmap_figure", "spectra_figure", "lambda_table_figure"]


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
    """Labels cut to ``width`` characters with a middle ellipsis (the head names the layer, the tail the
    tensor: ``layers/1…query/kernel``); widened until no two shortened labels coincide."""
    labels = [str(label) for label in labels]
    longest = max((len(label) for label in labels), default=0)
    for w in range(max(width, 5), longest + 1):
        head = (w - 1) // 3
        out = [label if len(label) <= w else label[:head] + "…" + label[len(label) - (w - 1 - head):]
               for label in labels]
        if len(set(out)) == len(set(labels)):
            return out
    return labels


def _fontsize(n: int) -> float:
    """Tick-label size for ``n`` labels on one axis: 9 pt for a few, down to 4 pt for hundreds."""
    return float(np.clip(9.0 - 2.0 * np.log2(max(n, 1) / 12.0), 4.0, 9.0)) if n > 12 else 9.0


def gradient_shares_figure(labels: Sequence[str], shares, *, gini: float | None = None, log: bool | None = None,
                           title: str = ""):
    """The figure of `plot_gradient_shares` (returned, not saved, so that it can be inspected)."""
    plt = _pyplot()
    shares = np.asarray(shares, dtype=float)
    n = len(labels)
    if shares.shape != (n,):
        raise ValueError(f"plot_gradient_shares: {n} labels but shares of shape {shares.shape}")
    positive = shares[shares > 0]
    if log is None:  # automatic: log when the positive shares span more than two decades
        log = positive.size > 1 and positive.max() / positive.min() > 100
    fig, ax = plt.subplots(figsize=(7.5, max(2.5, 0.2 * n + 1.2)))
    ax.barh(np.arange(n), shares, color="#3b6ea8", height=0.8)
    ax.set_yticks(np.arange(n))
    ax.set_yticklabels(_short(labels, 40), fontsize=_fontsize(n))
    ax.set_ylim(n - 0.5, -0.5)  # first block of the partition at the top
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(r"normalized gradient share  $(G_b/\sqrt{P_b})\,/\,\sum_{b'} G_{b'}/\sqrt{P_{b'}}$"
                  + ("  (log scale)" if log else ""))
    ax.set_ylabel("block (partition order)")
    heading = title or "Gradient heterogeneity"
    if gini is not None:
        heading += f"   (Gini = {gini:.3f})"
    ax.set_title(heading)
    return fig


def plot_gradient_shares(path, labels: Sequence[str], shares, *, gini: float | None = None, log: bool | None = None,
                         title: str = "") -> Path:
    """Horizontal bars of the normalized gradient shares (G_b/√P_b)/Σ_b' G_b'/√P_b' [Tomihari25, Fig. 3].

    Blocks in the given (partition) order, the first at the top. ``log``: a log-scaled axis
    (None: when the positive shares span more than two decades).
    """
    return _save(gradient_shares_figure(labels, shares, gini=gini, log=log, title=title), path)


def js_heatmap_figure(labels: Sequence[str], matrix, *, title: str = "JS distance between blockwise spectra",
                      colorbar_label: str = "JS distance"):
    """The figure of `plot_js_heatmap` (returned, not saved)."""
    plt = _pyplot()
    matrix = np.asarray(matrix, dtype=float)
    n = len(labels)
    if matrix.shape != (n, n):
        raise ValueError(f"plot_js_heatmap: {n} labels but a matrix of shape {matrix.shape}")
    size = _fontsize(n)
    side = max(5.0, 0.16 * n * size / 6 + 3)
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    im = ax.imshow(matrix, cmap="magma", interpolation="nearest", vmin=0.0)
    bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    bar.set_label(colorbar_label, fontsize=9)
    ticks = np.arange(n)
    short = _short(labels, 30)
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.set_xticklabels(short, rotation=60, ha="right", rotation_mode="anchor", fontsize=size)
    ax.set_yticklabels(short, fontsize=size)
    ax.set_title(title)
    return fig


def plot_js_heatmap(path, labels: Sequence[str], matrix, *, title: str = "JS distance between blockwise spectra",
                    colorbar_label: str = "JS distance") -> Path:
    """Heatmap of a symmetric block × block distance matrix [Zhang24, Fig. 4], labelled colour bar.

    Labels are shortened with a middle ellipsis (kept distinct) and sized by the block count.
    """
    return _save(js_heatmap_figure(labels, matrix, title=title, colorbar_label=colorbar_label), path)


def spectra_figure(grid, densities: Mapping[str, np.ndarray], *, max_panels: int = 64, ncols: int = 6,
                   title: str = "Blockwise Hessian spectral densities"):
    """The figure of `plot_spectra` (returned, not saved)."""
    plt = _pyplot()
    grid = np.asarray(grid, dtype=float)
    items = list(densities.items())
    total = len(items)
    if total == 0:
        raise ValueError("plot_spectra: no densities to plot")
    if total > max_panels:  # an evenly spaced subset, in partition order; the title says so
        keep = np.unique(np.linspace(0, total - 1, max_panels).round().astype(int))
        items = [items[i] for i in keep]
        shown = f"{len(items)} of {total} blocks, evenly spaced in partition order"
    else:
        shown = f"all {total} blocks, in partition order"
    n = len(items)
    cols = min(ncols, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 1.7 * rows + 0.6), sharex=True, squeeze=False)
    from matplotlib.ticker import LogLocator, NullLocator

    floor = 1e-12
    for ax, (label, dens) in zip(axes.flat, items):
        dens = np.maximum(np.asarray(dens, dtype=float), floor)
        ax.semilogy(grid, dens, lw=0.9, color="#3b6ea8")
        ax.set_ylim(bottom=max(floor, float(dens.max()) * 1e-8))
        ax.yaxis.set_major_locator(LogLocator(numticks=4))  # few ticks: dozens of log axes draw slowly
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_title(_short([label], 30)[0], fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    for col in range(cols):  # x ticks and label under the lowest panel of each column
        lowest = axes[(n - 1 - col) // cols, col]
        lowest.xaxis.set_tick_params(labelbottom=True)
        lowest.set_xlabel("eigenvalue", fontsize=7)
    fig.suptitle(f"{title}: {shown} (density, log scale)", fontsize=9)
    height = fig.get_figheight()  # fixed margins: tight_layout would draw the whole grid once more
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.45 / height, top=1 - 0.75 / height, wspace=0.35,
                        hspace=0.6)
    return fig


def plot_spectra(path, grid, densities: Mapping[str, np.ndarray], *, max_panels: int = 64, ncols: int = 6,
                 title: str = "Blockwise Hessian spectral densities") -> Path:
    """Small multiples: one log-scaled density panel per block on the shared grid [Zhang24, Figs. 2-3].

    Every block up to ``max_panels``; beyond that an evenly spaced subset, and the title says
    which (``k of n blocks``).
    """
    return _save(spectra_figure(grid, densities, max_panels=max_panels, ncols=ncols, title=title), path)


def lambda_table_figure(rows: Sequence[Sequence[str]], header: Sequence[str], *, title: str = "",
                        footer: Sequence[Sequence[str]] = ()):
    """The figure of `plot_lambda_table` (returned, not saved)."""
    plt = _pyplot()
    body = [list(map(str, r)) for r in rows] + [list(map(str, r)) for r in footer]
    ncols = len(header)
    bad = [r for r in body if len(r) != ncols]
    if bad:
        raise ValueError(f"plot_lambda_table: every row needs {ncols} cells ({list(header)}), got {bad[0]}")
    chars = [max(len(str(header[j])), *(len(r[j]) for r in body)) + 3 for j in range(ncols)]  # + padding
    widths = [c / sum(chars) for c in chars]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.075 * sum(chars) + 1.0), 0.2 * (len(body) + 1) + 0.5))
    ax.axis("off")
    table = ax.table(cellText=body, colLabels=list(header), colWidths=widths, loc="upper center",
                     cellLoc="right", colLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    table.scale(1, 1.15)
    for (i, j), cell in table.get_celld().items():
        if j == 0 and i > 0:
            cell.set_text_props(ha="left")
            cell.PAD = 0.02
        if i > len(rows):  # summary rows
            cell.set_facecolor("#eef2f8")
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def plot_lambda_table(path, rows: Sequence[Sequence[str]], header: Sequence[str], *, title: str = "",
                      footer: Sequence[Sequence[str]] = ()) -> Path:
    """A table figure: one row per block (``rows``), then the summary ``footer`` rows (shaded).

    Column widths follow the longest text of each column, so no label is clipped; block labels
    are left-aligned, numbers right-aligned. Every row must have ``len(header)`` cells.
    """
    return _save(lambda_table_figure(rows, header, title=title, footer=footer), path)
