"""`heterogeneity plot`: best-learning-rate table, training curves with seed bands, lr sensitivity, on a tiny sweep."""
import json
import math
import sys
from pathlib import Path

import numpy as np

from heterogeneity import cli
from heterogeneity.experiment._plot import _band, plot_sweep
from heterogeneity.experiment._sweep import load_config, load_runs, run_sweep

sys.path.insert(0, str(Path(__file__).parent))
from test_sweep_batched import write_toy  # noqa: E402

GRID = [{"optimizer": ["sgd"], "lr": [0.1, 0.3, 3.0], "seed": [0, 1, 2]},  # 3.0 diverges on every seed
        {"optimizer": ["adam"], "lr": [0.01, 0.1], "seed": [0, 1, 2]}]


def test_plot_a_tiny_sweep(tmp_path, capsys):
    out = tmp_path / "out"
    run_sweep(load_config(write_toy(tmp_path, grid=GRID, steps=8)), out)
    runs = load_runs(out)
    assert cli.main(["plot", str(out)]) == 0
    assert "curves.png" in capsys.readouterr().out
    plots = out / "plots"
    assert sorted(p.name for p in plots.iterdir()) == ["best_lr.json", "best_lr.md", "curves.png", "lr_sensitivity.png"]
    for name in ("curves.png", "lr_sensitivity.png"):
        assert (plots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = {r["setting"]["optimizer"]: r for r in json.loads((plots / "best_lr.json").read_text())["rows"]}
    # GD on a spectrum in [1, 4]: rate 0.3 contracts by max|1 - 0.3λ| = 0.7, rate 0.1 by 0.9, rate 3 diverges
    sgd, adam = rows["sgd"], rows["adam"]
    assert sgd["best_lr"] == 0.3 and sgd["lrs"] == [0.1, 0.3, 3.0] and not sgd["on_edge"] and sgd["n"] == 3
    finals = [r["final"]["final_loss"] for r in runs.values() if r["hparams"]["optimizer"] == "sgd"
              and r["hparams"]["lr"] == 0.3]
    assert math.isclose(sgd["mean"], float(np.mean(finals)), rel_tol=1e-12)
    assert math.isclose(sgd["std"], float(np.std(finals)), rel_tol=1e-9)
    assert adam["best_lr"] == 0.1 and adam["on_edge"] and adam["diverged"] == 0
    assert sorted(adam["run_ids"]) == sorted(rid for rid, r in runs.items() if r["hparams"]["optimizer"] == "adam"
                                             and r["hparams"]["lr"] == 0.1)
    md = (plots / "best_lr.md").read_text()
    assert "| optimizer | best lr | lrs tried | final_loss (mean ± std) | n | edge |" in md
    assert "| sgd | 0.3 | 0.1, 0.3, 3 |" in md and "| adam | 0.1 | 0.01, 0.1 |" in md and "**yes**" in md
    # another curve and selection metric; a rerun replaces the files atomically (no temp files left)
    written = plot_sweep(out, curve="eval_norm", select="last_norm")
    assert len(written) == 4 and not list(plots.glob("*.tmp")) and not list(plots.glob(".*"))


def test_band_is_median_and_iqr_over_seeds_ignoring_missing():
    # three seeds; the third diverged after two logged steps (NaN afterwards)
    mat = np.array([[1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0], [2.0, 9.0, np.nan, np.nan]])
    med, lo, hi = _band(mat)
    np.testing.assert_allclose(med, [2.0, 4.0, 4.0, 5.0])
    np.testing.assert_allclose(lo, [1.5, 3.0, 3.5, 4.5])
    np.testing.assert_allclose(hi, [2.5, 6.5, 4.5, 5.5])


def test_plot_refuses_what_is_not_a_sweep(tmp_path, capsys):
    assert cli.main(["plot", str(tmp_path / "missing")]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert cli.main(["plot", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a sweep directory (no summary.json)" in err
