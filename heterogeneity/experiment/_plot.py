"""Figures of a sweep directory: training curves, learning-rate sensitivity, the best-learning-rate table.

`plot_sweep(out_dir)` (``heterogeneity plot OUT_DIR``) reads ``summary.json`` and the run
files and writes, each atomically, into ``OUT_DIR/plots/``:

* ``best_lr.md`` / ``best_lr.json``: for every *setting* (a point's hyperparameters except
  ``lr`` and ``seed``) the learning rate with the lowest mean final training loss over seeds
  ([Tomihari25, App. C.1] tunes the learning rate on the final training loss), with its mean ± std,
  the grid tried, the config's headline metric at that rate, and whether the rate is on the
  grid's edge (then it is not a tuned result). A run that diverged counts as +inf, so a rate
  at which any seed diverges is never chosen over one at which none does.
* ``curves.png``: the training curve (a history entry, default the training loss) of every
  setting at its best rate: the median over seeds and the interquartile band [Tomihari25, Fig. 4].
* ``lr_sensitivity.png``: the final training loss against the learning rate, one line per
  setting, median over seeds with the interquartile band; a rate at which every seed diverged
  is marked × at the top [SignMomentum25, Fig. 3].

Panels: one per value of the hyperparameters that vary across settings and do not describe
the optimizer (e.g. the quadratic ``case``, the rotation time ``t``); lines within a panel:
the optimizer and its hyperparameters (``optimizer``, ``opt.*``, ``betas``, ``momentum``).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from heterogeneity.experiment._figures import _pyplot, _save
from heterogeneity.experiment._store import atomic_write_json, atomic_write_text, read_json
from heterogeneity.experiment._summary import DONE_STATUSES, LR_AXIS

__all__ = ["plot_sweep", "best_lr_rows", "best_lr_markdown"]

SEED_KEYS = ("seed",)
_OPTIMIZER_KEYS = ("optimizer", "betas", "momentum")


def _is_optimizer_key(key: str) -> bool:
    return key in _OPTIMIZER_KEYS or key.startswith("opt.") or key.startswith("opt_")


def _setting(hp: Mapping[str, Any]) -> dict:
    return {k: v for k, v in hp.items() if k != LR_AXIS and k not in SEED_KEYS}


def _key(d: Mapping[str, Any]) -> str:
    return json.dumps(d, sort_keys=True)


def _numeric(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _value(run: Mapping[str, Any], metric: str) -> float:
    """A run's final ``metric`` as a float; +inf for a diverged run (it never wins), NaN when missing."""
    if run["status"] == "diverged":
        return math.inf
    v = run.get("final", {}).get(metric)
    if isinstance(v, str):
        return float(v)  # "nan" / "inf" as `to_jsonable` writes them
    return float(v) if _numeric(v) else math.nan


def _varying(settings: Sequence[Mapping[str, Any]]) -> list[str]:
    keys: list[str] = []
    for s in settings:
        keys.extend(k for k in s if k not in keys)
    return [k for k in keys if len({json.dumps(s.get(k), sort_keys=True) for s in settings}) > 1]


def best_lr_rows(summary: Mapping[str, Any], *, select: str = "final_loss") -> list[dict]:
    """One row per setting: the learning rate minimising the mean over seeds of ``select`` (see module docstring)."""
    runs = [r for r in summary["runs"] if r["status"] in DONE_STATUSES]
    by_setting: dict[str, dict] = {}
    for r in runs:
        s = _setting(r["hparams"])
        entry = by_setting.setdefault(_key(s), {"setting": s, "lrs": {}})
        lr = r["hparams"].get(LR_AXIS)
        entry["lrs"].setdefault(json.dumps(lr), {"lr": lr, "runs": []})["runs"].append(r)
    varying = _varying([e["setting"] for e in by_setting.values()])
    metric = summary.get("metric", select)
    rows = []
    for entry in by_setting.values():
        scored = []
        for cell in entry["lrs"].values():
            vals = np.asarray([_value(r, select) for r in cell["runs"]], np.float64)
            vals = vals[~np.isnan(vals)]
            if vals.size:
                mean = float(np.mean(vals)) if np.all(np.isfinite(vals)) else math.inf
                scored.append((mean, cell, vals))
        if not scored:
            continue
        mean, cell, vals = min(scored, key=lambda t: (t[0], json.dumps(t[1]["lr"])))
        grid = sorted(c["lr"] for c in entry["lrs"].values() if _numeric(c["lr"]))
        lr = cell["lr"]
        edge = bool(len(grid) >= 2 and _numeric(lr) and lr in (grid[0], grid[-1]))
        headline = np.asarray([_value(r, metric) for r in cell["runs"]], np.float64)
        headline = headline[np.isfinite(headline)]
        rows.append({
            "setting": {k: entry["setting"][k] for k in varying if k in entry["setting"]},
            "hparams": entry["setting"], "best_lr": lr, "lrs": grid,
            "select": select, "mean": mean, "std": float(np.std(vals)) if math.isfinite(mean) else math.nan,
            "n": int(vals.size), "diverged": sum(r["status"] == "diverged" for r in cell["runs"]),
            "metric": metric, "metric_mean": float(np.mean(headline)) if headline.size else math.nan,
            "on_edge": edge, "run_ids": [r["run_id"] for r in cell["runs"]],
        })
    return rows


def best_lr_markdown(rows: Sequence[Mapping[str, Any]], *, title: str = "") -> str:
    """The `best_lr_rows` as a markdown table."""
    if not rows:
        return f"# {title}\n\n(no finished runs)\n"
    keys: list[str] = []
    for r in rows:
        keys.extend(k for k in r["setting"] if k not in keys)
    select, metric = rows[0]["select"], rows[0]["metric"]

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return json.dumps(v) if isinstance(v, (list, dict)) else str(v)

    header = keys + ["best lr", "lrs tried", f"{select} (mean ± std)", "n"] + ([metric] if metric != select else [])
    header += ["edge"]
    lines = [f"# {title}".rstrip(), "", f"Best learning rate per setting: lowest mean {select} over seeds "
             "(a diverged run counts as +inf). `edge`: the best rate is the smallest or largest tried.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        value = "diverged" if not math.isfinite(r["mean"]) else f"{r['mean']:.6g} ± {r['std']:.2g}"
        cells = [fmt(r["setting"].get(k, "")) for k in keys]
        cells += [fmt(r["best_lr"]), ", ".join(f"{v:g}" for v in r["lrs"]) or "—", value, str(r["n"])]
        if metric != select:
            cells.append(fmt(r["metric_mean"]))
        cells.append("**yes**" if r["on_edge"] else "no")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _split(settings: Sequence[Mapping[str, Any]]):
    varying = _varying(settings)
    panel_keys = [k for k in varying if not _is_optimizer_key(k)]
    line_keys = [k for k in varying if _is_optimizer_key(k)]
    return panel_keys, line_keys


def _label(d: Mapping[str, Any], keys: Sequence[str], empty: str = "all") -> str:
    return ", ".join(f"{k}={d[k]}" if k != "optimizer" else str(d[k]) for k in keys if k in d) or empty


_STYLES = ("-", "--", ":", "-.")


def _style(i: int) -> str:
    """Line style of the i-th line of a panel: matplotlib cycles 10 colours, so styles tell lines 11+ apart."""
    return _STYLES[(i // 10) % len(_STYLES)]


def _axes_grid(plt, n: int, title: str):
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    fig.suptitle(title)
    return fig, list(axes.flat[:n])


def _band(matrix: np.ndarray):
    """Median and interquartile range over rows (seeds), ignoring missing (NaN) entries."""
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return (np.nanmedian(matrix, axis=0), np.nanpercentile(matrix, 25, axis=0),
                    np.nanpercentile(matrix, 75, axis=0))


def _curve(run: Mapping[str, Any], name: str) -> tuple[np.ndarray, np.ndarray] | None:
    h = run.get("history", {})
    x = h.get("eval_step" if name.startswith("eval_") else "step")
    y = h.get(name)
    if x is None or y is None:
        return None
    y = np.asarray([float(v) for v in y], np.float64)
    if y.ndim != 1 or len(x) != len(y):
        return None
    return np.asarray(x, np.float64), y


def _plot_curves(path, rows, runs, panel_keys, line_keys, curve: str, title: str) -> Path:
    plt = _pyplot()
    panels: dict[str, list] = {}
    for row in rows:
        panels.setdefault(_key({k: row["hparams"].get(k) for k in panel_keys}), []).append(row)
    fig, axes = _axes_grid(plt, len(panels), title)
    for ax, (pkey, prow) in zip(axes, panels.items()):
        positive = True
        for i, row in enumerate(prow):
            curves = [c for c in (_curve(runs[rid], curve) for rid in row["run_ids"] if rid in runs) if c is not None]
            if not curves:
                continue
            steps = np.unique(np.concatenate([c[0] for c in curves]))
            mat = np.full((len(curves), steps.size), np.nan)
            for i, (x, y) in enumerate(curves):
                mat[i, np.searchsorted(steps, x)] = y
            mat[~np.isfinite(mat)] = np.nan
            med, lo, hi = _band(mat)
            positive &= bool(np.all(mat[np.isfinite(mat)] >= 0))  # log scale; exact zeros are masked
            lr = row["best_lr"]
            label = f"{_label(row['hparams'], line_keys)} (lr={lr:g})" if _numeric(lr) else \
                f"{_label(row['hparams'], line_keys)} (lr={lr})"
            (line,) = ax.plot(steps, med, _style(i), lw=1.4, label=f"{label}, n={len(curves)}")
            ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.25, lw=0)
        if positive:
            ax.set_yscale("log", nonpositive="mask")
        ax.set_xlabel("step")
        ax.set_ylabel(f"{curve} (median, IQR over seeds)")
        ax.set_title(_label(json.loads(pkey), panel_keys, ""), fontsize=9)
        ax.legend(fontsize=7)
    return _save(fig, path)


def _plot_sensitivity(path, summary, settings, panel_keys, line_keys, select: str, title: str) -> Path | None:
    runs = [r for r in summary["runs"] if r["status"] in DONE_STATUSES and _numeric(r["hparams"].get(LR_AXIS))]
    if not runs:
        return None
    plt = _pyplot()
    lines: dict[str, dict[str, list]] = {}
    for r in runs:
        s = _setting(r["hparams"])
        pkey = _key({k: s.get(k) for k in panel_keys})
        lines.setdefault(pkey, {}).setdefault(_key(s), []).append(r)
    fig, axes = _axes_grid(plt, len(lines), title)
    for ax, (pkey, by_setting) in zip(axes, lines.items()):
        for i, (skey, rs) in enumerate(by_setting.items()):
            lrs = sorted({r["hparams"][LR_AXIS] for r in rs})
            vals = [[_value(r, select) for r in rs if r["hparams"][LR_AXIS] == lr] for lr in lrs]
            mat = np.full((max(len(v) for v in vals), len(lrs)), np.nan)
            for j, v in enumerate(vals):
                mat[:len(v), j] = v
            all_bad = [bool(np.all(~np.isfinite(mat[:len(v), j]))) for j, v in enumerate(vals)]
            mat[~np.isfinite(mat)] = np.nan
            med, lo, hi = _band(mat)
            (line,) = ax.plot(lrs, med, _style(i), marker="o", ms=3, lw=1.3, label=_label(json.loads(skey), line_keys))
            ax.fill_between(lrs, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
            bad = [lr for lr, b in zip(lrs, all_bad) if b]
            if bad:
                ax.plot(bad, [0.97] * len(bad), "x", color=line.get_color(), ms=7, transform=ax.get_xaxis_transform(),
                        clip_on=False)
        ax.set_xscale("log")
        values = [_value(r, select) for r in runs]
        if all(v >= 0 for v in values if math.isfinite(v)) and any(v > 0 for v in values if math.isfinite(v)):
            ax.set_yscale("log", nonpositive="mask")
        ax.set_xlabel("learning rate")
        ax.set_ylabel(f"{select} (median, IQR over seeds; × all diverged)")
        ax.set_title(_label(json.loads(pkey), panel_keys, ""), fontsize=9)
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_sweep(out_dir: str | Path, *, curve: str = "loss", select: str = "final_loss") -> list[Path]:
    """Write ``best_lr.md``, ``best_lr.json``, ``curves.png`` and ``lr_sensitivity.png`` into ``out_dir/plots``.

    ``curve``: the history entry drawn over steps (``loss``, ``grad_norm``, ``gini``, an
    ``eval_*`` entry, ...); ``select``: the final metric that picks the best learning rate.
    Corrupt run files are skipped (the sweep reports and reruns them). Returns the paths.
    """
    from heterogeneity.experiment._sweep import load_runs

    out_dir = Path(out_dir)
    summary = read_json(out_dir / "summary.json")
    if not isinstance(summary, dict) or "runs" not in summary:
        raise ValueError(f"{out_dir / 'summary.json'}: not a sweep summary")
    rows = best_lr_rows(summary, select=select)
    if not rows:
        raise ValueError(f"{out_dir}: no finished or diverged runs to plot ({summary.get('counts')})")
    runs = load_runs(out_dir, strict=False)
    plots = out_dir / "plots"
    title = f"{summary.get('config', '')} ({summary.get('scale', '')}{', smoke' if summary.get('smoke') else ''})"
    written = [atomic_write_text(plots / "best_lr.md", best_lr_markdown(rows, title=title)),
               atomic_write_json(plots / "best_lr.json", {"config": summary.get("config"), "select": select,
                                                          "rows": rows})]
    settings = [r["hparams"] for r in rows]
    panel_keys, line_keys = _split(settings)
    written.append(_plot_curves(plots / "curves.png", rows, runs, panel_keys, line_keys, curve,
                                f"{title}: {curve} at the best learning rate"))
    sens = _plot_sensitivity(plots / "lr_sensitivity.png", summary, settings, panel_keys, line_keys, select,
                             f"{title}: learning-rate sensitivity")
    if sens is not None:
        written.append(sens)
    return written
