"""What an experiment config reports: its numbers beside the paper's, and a verdict computed from them.

A config module that reproduces a paper experiment defines, next to ``CONFIG``:

* ``PAPER``: one line naming the claim and its source, e.g. ``"[Tomihari25, Table 2]: Post-LN is
  the most heterogeneous (Gini 0.941) ..."``;
* ``findings(runs) -> Findings``: from the run records of a sweep directory (``{run_id: record}``,
  as `heterogeneity.experiment.load_runs` returns them), the table of our numbers beside the
  paper's and a verdict that follows from those numbers by a rule stated in ``reason``.

``scripts/reproduce.py NAME`` runs the sweep (resumably), calls ``findings`` and writes the
result; nothing in a verdict is typed in by hand. The helpers below implement the protocol the
papers share: the learning rate is tuned per configuration on a grid, the best one chosen on the
median over seeds of a final training metric ([Tomihari25, App. C.1]; [Xie24, App. D.1]), and a
run that diverged counts as +inf.
"""
from __future__ import annotations

import json
import math
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np

VERDICTS = ("holds", "holds qualitatively", "does not hold at this scale", "incomplete")


class Findings(NamedTuple):
    """One experiment's result: ``table`` (markdown), ``verdict`` (one of `VERDICTS`), ``reason``, ``numbers``."""

    table: str
    verdict: str
    reason: str
    numbers: Mapping[str, Any]


def findings(table: str, verdict: str, reason: str, numbers: Mapping[str, Any] | None = None) -> Findings:
    """A `Findings`, checking the verdict is one of `VERDICTS` and the numbers are JSON-able."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    numbers = dict(numbers or {})
    json.dumps(numbers, allow_nan=True)  # raises on a non-JSON value
    return Findings(table, verdict, reason, numbers)


def done(runs: Mapping[str, Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The records that finished or diverged (failed and pending points carry no result)."""
    return [r for r in runs.values() if r.get("status") in ("finished", "diverged")]


def value(record: Mapping[str, Any], metric: str, *, worst: float = math.inf) -> float:
    """``record["final"][metric]``; ``worst`` for a diverged run or a non-finite value.

    ``worst`` is +inf where lower is better (a loss) and -inf where higher is better (an accuracy).
    """
    if record.get("status") == "diverged":
        return worst
    x = record.get("final", {}).get(metric)
    x = math.nan if x is None else float(x)
    return x if math.isfinite(x) else worst


def median_iqr(values: Iterable[float]) -> tuple[float, float, float]:
    """``(median, 25th, 75th percentile)``; inf entries count as the largest values."""
    v = np.asarray(list(values), dtype=float)
    if v.size == 0:
        return (math.nan, math.nan, math.nan)
    q = np.percentile(v, [50, 25, 75], method="linear") if np.isfinite(v).all() else \
        np.asarray([np.sort(v)[int(round(p * (v.size - 1)))] for p in (0.5, 0.25, 0.75)])
    return tuple(float(x) for x in q)


def groups(runs: Mapping[str, Mapping[str, Any]], keys: Sequence[str]) -> dict[tuple, list[Mapping[str, Any]]]:
    """Done records grouped by the values of ``keys`` (missing keys read as None), in first-seen order."""
    out: dict[tuple, list] = {}
    for r in done(runs):
        out.setdefault(tuple(_hashable(r["hparams"].get(k)) for k in keys), []).append(r)
    return out


def best_over(runs: Mapping[str, Mapping[str, Any]], by: Sequence[str], metric: str, *, over: str = "lr",
              lower_is_better: bool = True) -> dict[tuple, dict[str, Any]]:
    """For each value of ``by``: the ``over`` value (learning rate) with the best median ``metric`` over seeds.

    Returns ``{by_values: {"lr": best, "median", "q25", "q75", "n": seeds, "grid": sorted values,
    "edge": best is the grid's smallest or largest value, "values": the seeds' values}}``. A
    diverged run is the worst value: +inf, or -inf when higher is better.
    """
    worst = math.inf if lower_is_better else -math.inf
    out = {}
    for key, recs in groups(runs, list(by)).items():
        per: dict[Any, list[float]] = {}
        for r in recs:
            per.setdefault(_hashable(r["hparams"].get(over)), []).append(value(r, metric, worst=worst))
        sign = 1.0 if lower_is_better else -1.0
        scored = sorted(per, key=lambda v: (sign * median_iqr(per[v])[0], str(v)))
        best = scored[0]
        grid = sorted(per, key=lambda v: (isinstance(v, str), v))
        med, q25, q75 = median_iqr(per[best])
        out[key] = {over: best, "median": med, "q25": q25, "q75": q75, "n": len(per[best]), "grid": grid,
                    "edge": len(grid) > 1 and best in (grid[0], grid[-1]), "values": per[best]}
    return out


def fmt(x: Any, digits: int = 3) -> str:
    """A number for a table: ``3 significant digits``, ``inf`` for divergence, ``—`` for missing."""
    if x is None:
        return "—"
    if isinstance(x, str):
        return x
    x = float(x)
    if math.isnan(x):
        return "—"
    if math.isinf(x):
        return "diverged" if x > 0 else "-inf"
    return f"{x:.{digits}g}"


def fmt_iqr(cell: Mapping[str, Any], digits: int = 3) -> str:
    """``median [q25, q75]`` of a `best_over` cell."""
    return f"{fmt(cell['median'], digits)} [{fmt(cell['q25'], digits)}, {fmt(cell['q75'], digits)}]"


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub markdown table; cells that are not strings go through `fmt`."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(c if isinstance(c, str) else fmt(c) for c in row) + " |")
    return "\n".join(lines)


def edge_note(best: Mapping[tuple, Mapping[str, Any]], over: str = "lr") -> str:
    """A sentence naming the configurations whose best ``over`` is on the grid's edge ('' if none)."""
    edges = [f"{'/'.join(map(str, k))} ({over}={v[over]:g})" for k, v in best.items() if v["edge"]]
    return f" Best {over} on the grid's edge for: {', '.join(edges)}." if edges else ""


def _hashable(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v
