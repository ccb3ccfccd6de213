"""The report's figures: bars in partition order, every label present and readable, labelled colour
bar, one spectrum panel per block, a Λ table with no clipped or misplaced cells."""
import numpy as np
import pytest

from heterogeneity.experiment import _figures as figs

LABELS = ["embed/embedding", "final_norm/scale", "head/kernel", *[f"layers/{i}/attn/query/kernel" for i in range(11)]]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    figs._pyplot().close("all")


def test_short_labels_stay_distinct_and_within_width():
    short = figs._short(LABELS, 20)
    assert len(set(short)) == len(LABELS)  # layers/1 and layers/10 stay apart
    assert short[0] == "embed/embedding"  # short enough: untouched
    assert all(s.endswith("query/kernel") for s in short[3:])
    assert max(len(s) for s in figs._short(["a" * 50, "b" * 50], 20)) == 20


def test_gradient_shares_bars_follow_the_partition_order():
    shares = np.linspace(1.0, 14.0, len(LABELS))[::-1] ** 3
    shares /= shares.sum()
    fig = figs.gradient_shares_figure(LABELS, shares, gini=0.5)
    ax = fig.axes[0]
    bars = sorted(ax.patches, key=lambda p: p.get_y())  # top of the plot first (the y axis is inverted)
    np.testing.assert_allclose([b.get_width() for b in bars], shares)  # bar i is block i of the partition
    assert ax.get_ylim()[0] > ax.get_ylim()[1]  # first block at the top
    assert [t.get_text() for t in ax.get_yticklabels()] == figs._short(LABELS, 40) == LABELS  # every label, whole
    assert ax.get_xscale() == "log"  # automatic: shares span more than two decades
    assert "Gini = 0.500" in ax.get_title()
    assert figs.gradient_shares_figure(LABELS, shares, log=False).axes[0].get_xscale() == "linear"
    flat = np.full(4, 0.25)
    assert figs.gradient_shares_figure(LABELS[:4], flat).axes[0].get_xscale() == "linear"
    assert figs.gradient_shares_figure(LABELS[:4], flat, log=True).axes[0].get_xscale() == "log"
    with pytest.raises(ValueError, match="14 labels but shares of shape"):
        figs.gradient_shares_figure(LABELS, shares[:3])


def test_js_heatmap_has_every_label_and_a_labelled_colour_bar():
    n = len(LABELS)
    m = np.abs(np.subtract.outer(np.arange(n), np.arange(n))) / n
    fig = figs.js_heatmap_figure(LABELS, m, colorbar_label="JS distance, bounded mode")
    ax, bar = fig.axes
    assert bar.get_ylabel() == "JS distance, bounded mode"
    short = figs._short(LABELS, 30)
    assert [t.get_text() for t in ax.get_xticklabels()] == short
    assert [t.get_text() for t in ax.get_yticklabels()] == short
    assert len(set(short)) == n
    assert all(t.get_rotation() == 60 for t in ax.get_xticklabels())
    small = figs.js_heatmap_figure(LABELS[:4], m[:4, :4]).axes[0]
    assert small.get_xticklabels()[0].get_fontsize() > ax.get_xticklabels()[0].get_fontsize()  # size by count
    np.testing.assert_array_equal(ax.images[0].get_array(), m)
    with pytest.raises(ValueError, match="3 labels but a matrix of shape"):
        figs.js_heatmap_figure(LABELS[:3], m)


def test_spectra_shows_every_block_or_says_which():
    grid = np.linspace(-1, 1, 50)
    dens = {label: np.exp(-((grid - i / 20) ** 2) * 50) for i, label in enumerate(LABELS)}
    fig = figs.spectra_figure(grid, dens)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == figs._short(LABELS, 30)  # one panel per block, partition order
    for ax, d in zip(shown, dens.values()):
        np.testing.assert_allclose(ax.lines[0].get_ydata(), np.maximum(d, 1e-12))
    assert "all 14 blocks" in fig._suptitle.get_text()
    fig = figs.spectra_figure(grid, dens, max_panels=5)
    shown = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert len(shown) == 5 and shown[0] == LABELS[0] and shown[-1].endswith("query/kernel")
    assert "5 of 14 blocks, evenly spaced in partition order" in fig._suptitle.get_text()


def test_lambda_table_cells_are_in_place_and_not_clipped(tmp_path):
    header = ["block", "P_b", "‖g_b‖₂", "‖H_bb‖₂", "Λ_G weight", "Λ_P weight"]
    rows = [[label, f"{10 ** (i % 6):,d}", f"{i:.3g}", f"{2 * i:.3g}", "0.100", "0.050"]
            for i, label in enumerate(LABELS)]
    footer = [["Λ_G = Σ_b (‖g_b‖²/‖g‖²) ‖H_bb‖₂", "", "", "7.5", "1", ""], ["Λ_P", "", "", "3.25", "", "1"]]
    fig = figs.lambda_table_figure(rows, header, footer=footer, title="t")
    table = fig.axes[0].tables[0]
    cells = table.get_celld()
    for j, name in enumerate(header):
        assert cells[0, j].get_text().get_text() == name
    for i, row in enumerate(rows + footer, start=1):
        assert [cells[i, j].get_text().get_text() for j in range(len(header))] == row  # nothing shifted
    assert cells[len(rows) + 1, 3].get_text().get_text() == "7.5"  # Λ_G under ‖H_bb‖₂, the column it averages
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for (i, j), cell in cells.items():
        text = cell.get_text().get_window_extent(renderer)
        box = cell.get_window_extent(renderer)
        assert box.x0 - 0.5 <= text.x0 and text.x1 <= box.x1 + 0.5, (i, j, cell.get_text().get_text())
    with pytest.raises(ValueError, match="every row needs 6 cells"):
        figs.lambda_table_figure([["a", "1"]], header)
    path = figs.plot_lambda_table(tmp_path / "t.png", rows, header, footer=footer)
    assert path.stat().st_size > 0
