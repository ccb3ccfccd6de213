"""Summaries of sweep results: seed-aggregated groups, learning rates on a grid's edge, result tables.

`summarize_runs` builds ``summary.json`` from the run records; `lr_edge_warnings` flags a
best learning rate that is the smallest or largest value tried (not a tuned result: [Tomihari25, App. C.1] and [SignMomentum25, Fig. 3] tune the learning rate on a grid whose optimum is interior);
`table_rows` / `format_table` print the seed-averaged table, optionally reduced to the best
value of one axis (the papers' "tuned learning rate" protocol).
"""
from __future__ import annotations

import datetime as _dt
import json
import math
from typing import Any, Mapping, Sequence

import numpy as np

from heterogeneity.experiment._config import SweepConfig, _axes, run_id

__all__ = ["DONE_STATUSES", "STATUSES", "LR_AXIS", "summarize_runs", "lr_edge_warnings", "table_rows", "format_table"]

DONE_STATUSES = ("finished", "diverged", "stopped")
STATUSES = DONE_STATUSES + ("failed",)
LR_AXIS = "lr"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _group_key(hp: Mapping[str, Any], seed_keys: Sequence[str]) -> str:
    return json.dumps({k: v for k, v in hp.items() if k not in seed_keys}, sort_keys=True)


def lr_edge_warnings(groups: Sequence[Mapping[str, Any]], metric: str, *, axes: Sequence[str] = (),
                     lower_is_better: bool = True, axis: str = LR_AXIS) -> list[str]:
    """One line per family of seed groups (equal but for ``axis``) whose best ``axis`` value is on the grid's edge.

    The best value minimises (maximises) the mean ``metric`` over the seeds that ran, among the
    values at which no seed diverged; families with a value not run at all yet, fewer than two
    numeric values or no candidate are skipped. ``axes`` name the keys
    shown in the message (default: every hyperparameter but ``axis``).
    """
    fams: dict[str, dict] = {}
    for g in groups:
        value = g["hparams"].get(axis)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        rest = {k: v for k, v in g["hparams"].items() if k != axis}
        fam = fams.setdefault(json.dumps(rest, sort_keys=True), {"hp": rest, "values": set(), "scores": [],
                                                                 "done": True})
        fam["values"].add(value)
        fam["done"] &= any(s in STATUSES for s in g["statuses"])  # every rate has a result (maybe not every seed)
        mean = g["metrics"].get(metric, {}).get("mean")
        if mean is not None and math.isfinite(mean) and "diverged" not in g["statuses"]:
            fam["scores"].append(((1.0 if lower_is_better else -1.0) * mean, value))
    out = []
    for fam in fams.values():
        values = sorted(fam["values"])
        if not fam["done"] or len(values) < 2 or not fam["scores"]:
            continue
        best = min(fam["scores"])[1]
        if best in (values[0], values[-1]):
            shown = [k for k in axes if k in fam["hp"]] or list(fam["hp"])
            where = ", ".join(f"{k}={fam['hp'][k]!r}" for k in shown)
            edge = "smallest" if best == values[0] else "largest"
            out.append(f"best {axis} {best:g} is the {edge} of the grid [{', '.join(f'{v:g}' for v in values)}] "
                       f"for {where or 'the sweep'} (by mean {metric}): not a tuned result, widen the grid")
    return out


def summarize_runs(
    config: SweepConfig,
    points: Sequence[Mapping[str, Any]],
    records: Mapping[str, Mapping[str, Any]],
    *,
    scale: str,
    smoke: bool,
    seed_keys: Sequence[str] = ("seed",),
    corrupt: Mapping[str, str] | None = None,
) -> dict:
    """The ``summary.json`` dict: one row per grid point (in grid order), seed-aggregated groups, warnings.

    A group is the set of runs whose hyperparameters agree except for ``seed_keys``; for every
    scalar final metric it gives ``mean``, ``std`` (population), ``min``, ``max`` and ``n`` over
    the group's finished runs (non-finite values excluded; ``n_nonfinite`` counts them).
    ``warnings``: best learning rates on the edge of their grid (`lr_edge_warnings`) and run
    files found corrupt (``corrupt``: run id -> reason; those points count as pending).
    """
    rows, counts = [], {"finished": 0, "diverged": 0, "failed": 0, "stopped": 0, "pending": 0}
    groups: dict[str, dict] = {}
    for hp in points:
        rid = run_id(config.name, hp)
        rec = records.get(rid)
        status = rec["status"] if rec is not None else "pending"
        counts[status] = counts.get(status, 0) + 1
        final = dict(rec.get("final", {})) if rec is not None else {}
        rows.append({"run_id": rid, "status": status, "hparams": dict(hp), "final": final,
                     "wall_time": rec.get("wall_time") if rec is not None else None})
        key = _group_key(hp, seed_keys)
        g = groups.setdefault(key, {"hparams": {k: v for k, v in hp.items() if k not in seed_keys},
                                    "run_ids": [], "statuses": [], "_values": {}})
        g["run_ids"].append(rid)
        g["statuses"].append(status)
        if status in DONE_STATUSES:
            for name, v in final.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) or v in ("nan", "inf", "-inf"):
                    g["_values"].setdefault(name, []).append(float(v))
    out_groups = []
    for g in groups.values():
        metrics = {}
        for name, vals in g.pop("_values").items():
            arr = np.asarray(vals, dtype=np.float64)
            fin = arr[np.isfinite(arr)]
            stats = {"n": int(fin.size), "n_nonfinite": int(arr.size - fin.size)}
            if fin.size:
                stats.update(mean=float(fin.mean()), std=float(fin.std()), min=float(fin.min()), max=float(fin.max()))
            metrics[name] = stats
        g["metrics"] = metrics
        out_groups.append(g)
    axes = [a for a in _axes(config) if a not in seed_keys and a != LR_AXIS]
    warnings = lr_edge_warnings(out_groups, config.metric, axes=axes)
    warnings += [f"corrupt run file for {rid}: {why} (moved aside and rerun by the next sweep that claims it)"
                 for rid, why in (corrupt or {}).items()]
    return {
        "config": config.name, "description": config.description, "scale": scale, "smoke": smoke,
        "metric": config.metric, "num_runs": len(points), "counts": counts,
        "complete": counts["pending"] == 0 and counts["failed"] == 0,
        "runs": rows, "groups": out_groups, "warnings": warnings, "updated_at": _now(),
    }


def table_rows(summary: Mapping[str, Any], *, metric: str | None = None, best_over: str | None = None,
               lower_is_better: bool = True) -> list[dict]:
    """Rows of a result table from a ``summary.json`` dict: one per seed group.

    Each row: the group's varying hyperparameters, ``mean``/``std``/``n`` of ``metric``
    (default: the config's headline metric) and the statuses. With ``best_over`` (e.g.
    ``"lr"``), groups that differ only in that axis are reduced to the one with the best mean
    (the paper's "tuned learning rate" protocol), and the chosen value is kept in the row.
    """
    metric = metric or summary["metric"]
    groups = summary["groups"]
    keys: list[str] = []
    for g in groups:
        keys += [k for k in g["hparams"] if k not in keys]
    varying = [k for k in keys if len({json.dumps(g["hparams"].get(k), sort_keys=True) for g in groups}) > 1]
    rows = []
    for g in groups:
        stats = g["metrics"].get(metric, {})
        row = {k: g["hparams"].get(k) for k in varying}
        if best_over is not None:
            row.setdefault(best_over, g["hparams"].get(best_over))
        row.update(mean=stats.get("mean", float("nan")), std=stats.get("std", float("nan")), n=stats.get("n", 0),
                   statuses="/".join(sorted(set(g["statuses"]))))
        rows.append(row)
    if best_over is None:
        return rows
    best: dict[str, dict] = {}
    sign = 1.0 if lower_is_better else -1.0
    for row in rows:
        key = json.dumps({k: v for k, v in row.items() if k not in (best_over, "mean", "std", "n", "statuses")},
                         sort_keys=True)
        score = sign * row["mean"] if math.isfinite(row["mean"]) else math.inf
        if key not in best or score < best[key][0]:
            best[key] = (score, row)
    return [row for _, row in best.values()]


def format_table(rows: Sequence[Mapping[str, Any]], *, metric: str) -> str:
    """Plain-text table of `table_rows` output (mean ± std over seeds)."""
    if not rows:
        return "(no runs)"
    cols = [k for k in rows[0] if k not in ("mean", "std", "n", "statuses")]

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return json.dumps(v) if isinstance(v, (list, dict)) else str(v)

    def value(r):
        return "nan" if not math.isfinite(r["mean"]) else f"{r['mean']:.6g} ± {r['std']:.2g}"

    body = [[fmt(r[c]) for c in cols] + [value(r), str(r["n"]), r["statuses"]] for r in rows]
    header = cols + [metric, "n", "status"]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(b) for b in body])
