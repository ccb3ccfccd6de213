"""Resumable sweeps: one result file per run, written atomically; a restart skips what is done.

Layout of ``out_dir``::

    sweep.json            the resolved grid (config name, scale, run ids and hyperparameters)
    runs/<run_id>.json    one finished run: status, hyperparameters, history, final metrics, wall time
    summary.json          every run of the grid (status, final metrics) and seed-aggregated groups

A run's id is the hash of its resolved hyperparameters (`heterogeneity.experiment.run_id`),
so the same point always maps to the same file: a restarted sweep skips the runs whose file
exists (no redo, no duplicates) and runs the others. Files are written with
`atomic_write_json` (temp file + fsync + rename), so a sweep killed at any moment leaves
either a complete run file or none. Statuses: ``"finished"``; ``"diverged"`` (a non-finite
loss, recorded with its step — a result, so it counts as done); ``"failed"`` (the build or
the run raised; the traceback is recorded and the sweep goes on; failed runs are retried on
resume unless ``retry_failed=False``). ``KeyboardInterrupt`` and ``SystemExit`` are not
caught: the interrupted run leaves no file and reruns on resume. ``summary.json`` is
rebuilt from the run records after every run, so it is consistent with ``runs/`` whenever
it is read.

One process per ``out_dir``: two sweeps writing the same directory concurrently may run a
point twice (the files stay consistent, as the last atomic write wins).
"""
from __future__ import annotations

import datetime as _dt
import importlib.util
import json
import math
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import numpy as np

from heterogeneity.experiment._config import RunSpec, SweepConfig, canonical_scale, resolve, run_id
from heterogeneity.experiment._store import atomic_write_json, read_json, to_jsonable
from heterogeneity.experiment._train import train

__all__ = [
    "SweepResult", "run_sweep", "run_one", "load_runs", "summarize_runs", "table_rows", "format_table",
    "load_config", "run_sweep_from_path", "DONE_STATUSES",
]

DONE_STATUSES = ("finished", "diverged", "stopped")


class SweepResult(NamedTuple):
    """What `run_sweep` returns: the summary written to ``summary.json`` and what this call ran."""

    out_dir: Path
    summary: dict
    ran: tuple[str, ...]  # run ids executed by this call
    skipped: tuple[str, ...]  # run ids found done on disk


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _scalars(d: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        a = np.asarray(v)
        if a.ndim == 0 and a.dtype.kind in "biuf":
            out[k] = a.item()
    return out


def run_one(config: SweepConfig, hparams: Mapping[str, Any], *, scale: str = "laptop") -> dict:
    """Build and train one point of ``config``; return its record (never raises on a run error).

    ``KeyboardInterrupt`` / ``SystemExit`` propagate (an interrupted run is not a result).
    A truthy hyperparameter ``x64`` runs build and train under ``jax.enable_x64(True)``.
    """
    hparams = dict(hparams)
    rid = run_id(config.name, hparams)
    record: dict[str, Any] = {
        "run_id": rid, "config": config.name, "scale": scale, "hparams": hparams,
        "started_at": _now(), "backend": jax.default_backend(),
    }
    t0 = time.perf_counter()
    try:
        with jax.enable_x64(bool(hparams.get("x64", False))):
            record.update(_build_and_train(config, hparams))
    except Exception:  # noqa: BLE001 - a failing run is recorded, the sweep goes on
        record.update(status="failed", error=traceback.format_exc(), history={}, final={})
    record["wall_time"] = time.perf_counter() - t0
    record["finished_at"] = _now()
    return record


def _build_and_train(config: SweepConfig, hparams: dict) -> dict:
    spec = config.build(hparams)
    if not isinstance(spec, RunSpec):
        raise ValueError(f"{config.name}: build(hparams) must return a RunSpec, got {type(spec).__name__}")
    result = train(
        spec.loss_fn, spec.params, spec.optimizer, spec.batches, num_steps=spec.num_steps, key=spec.key,
        eval_fn=spec.eval_fn, eval_every=spec.eval_every, log_every=spec.log_every,
        partition=spec.partition, num_workers=spec.num_workers,
    )
    final = dict(result.final)
    if spec.summarize is not None:
        final.update(_scalars(spec.summarize(result)))
    return dict(
        status=result.status, diverged_step=result.diverged_step, history=result.history, final=final,
        block_labels=result.block_labels, num_compiles=result.num_compiles, extras=dict(spec.extras),
        train_time=result.wall_time,
    )


def load_runs(out_dir: str | Path) -> dict[str, dict]:
    """Every run record under ``out_dir/runs`` (id -> record). Corrupt files raise ValueError."""
    runs_dir = Path(out_dir) / "runs"
    if not runs_dir.is_dir():
        return {}
    return {p.stem: read_json(p) for p in sorted(runs_dir.glob("*.json"))}


def _group_key(hp: Mapping[str, Any], seed_keys: Sequence[str]) -> str:
    return json.dumps({k: v for k, v in hp.items() if k not in seed_keys}, sort_keys=True)


def summarize_runs(
    config: SweepConfig,
    points: Sequence[Mapping[str, Any]],
    records: Mapping[str, Mapping[str, Any]],
    *,
    scale: str,
    smoke: bool,
    seed_keys: Sequence[str] = ("seed",),
) -> dict:
    """The ``summary.json`` dict: one row per grid point (in grid order) and seed-aggregated groups.

    A group is the set of runs whose hyperparameters agree except for ``seed_keys``; for every
    scalar final metric it gives ``mean``, ``std`` (population), ``min``, ``max`` and ``n`` over
    the group's finished runs (non-finite values excluded; ``n_nonfinite`` counts them).
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
    return {
        "config": config.name, "description": config.description, "scale": scale, "smoke": smoke,
        "metric": config.metric, "num_runs": len(points), "counts": counts,
        "complete": counts["pending"] == 0 and counts["failed"] == 0,
        "runs": rows, "groups": out_groups, "updated_at": _now(),
    }


def run_sweep(
    config: SweepConfig,
    out_dir: str | Path,
    *,
    scale: str = "laptop",
    smoke: bool = False,
    resume: bool = True,
    retry_failed: bool = True,
    only: Callable[[Mapping[str, Any]], bool] | None = None,
    on_run_end: Callable[[dict], Any] | None = None,
    log: Callable[[str], Any] | None = None,
) -> SweepResult:
    """Run every point of ``config``'s grid that has no finished record in ``out_dir``.

    Args:
      config: a `SweepConfig` (e.g. ``configs.quadratic_cases.CONFIG``).
      out_dir: result directory (created); see the module docstring for its layout.
      scale: ``"laptop"`` or ``"gpu"`` (alias ``"accelerator"``), selects ``config.scales``.
      smoke: tiny sizes and a reduced grid (``config.smoke`` / ``smoke_grid``).
      resume: skip runs whose record is done (``finished``/``diverged``); ``False`` reruns all.
      retry_failed: on resume, rerun runs recorded as ``failed``.
      only: optional predicate on the hyperparameters; other points are neither run nor skipped
        (they stay in the summary, as pending if never run).
      on_run_end: called with each new record after its file and the summary are written.
      log: called with one progress line per run (e.g. ``print``).
    """
    scale = canonical_scale(scale)
    out_dir = Path(out_dir)
    runs_dir = out_dir / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    points = resolve(config, scale=scale, smoke=smoke)
    ids = [run_id(config.name, hp) for hp in points]
    atomic_write_json(out_dir / "sweep.json", {
        "config": config.name, "description": config.description, "scale": scale, "smoke": smoke,
        "runs": [{"run_id": rid, "hparams": hp} for rid, hp in zip(ids, points)],
    })

    def light(rec):  # what the summary needs; histories stay on disk
        return to_jsonable({k: rec.get(k) for k in ("status", "final", "wall_time")})

    records: dict[str, dict] = {}
    for rid in ids:
        path = runs_dir / f"{rid}.json"
        if path.exists():
            records[rid] = light(read_json(path))

    def write_summary():
        summary = summarize_runs(config, points, records, scale=scale, smoke=smoke)
        atomic_write_json(out_dir / "summary.json", summary)
        return summary

    summary = write_summary()
    ran, skipped = [], []
    for i, (rid, hp) in enumerate(zip(ids, points)):
        if only is not None and not only(hp):
            continue
        prev = records.get(rid)
        if resume and prev is not None and (prev["status"] in DONE_STATUSES
                                            or (prev["status"] == "failed" and not retry_failed)):
            skipped.append(rid)
            continue
        record = run_one(config, hp, scale=scale)
        atomic_write_json(runs_dir / f"{rid}.json", record)
        records[rid] = light(record)
        ran.append(rid)
        summary = write_summary()
        if log is not None:
            loss = record.get("final", {}).get(config.metric, float("nan"))
            loss_s = f"{loss:.6g}" if isinstance(loss, float) and math.isfinite(loss) else str(loss)
            log(f"[{i + 1}/{len(points)}] {rid} {record['status']:<8} {config.metric}={loss_s} "
                f"({record['wall_time']:.1f}s) {_short(hp, config)}")
        if on_run_end is not None:
            on_run_end(record)
    return SweepResult(out_dir, summary, tuple(ran), tuple(skipped))


def _short(hp: Mapping[str, Any], config: SweepConfig) -> str:
    """The swept axes of a point, for progress lines."""
    from heterogeneity.experiment._config import _subgrids

    axes: list[str] = []
    for sub in _subgrids(config.grid, config.name):
        axes.extend(a for a in sub if a not in axes)
    return " ".join(f"{a}={hp[a]}" for a in axes if a in hp)


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


def load_config(path: str | Path) -> SweepConfig:
    """The ``CONFIG`` of a config module given by its file path (e.g. ``configs/quadratic_cases.py``).

    The module is imported as ``configs.<stem>`` with the repository root (the parent of its
    folder) on ``sys.path``, so configs may import shared pieces from each other.
    """
    path = Path(path).resolve()
    if not path.is_file() or path.suffix != ".py":
        raise ValueError(f"config must be a path to a .py module, got {path}")
    root = str(path.parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    name = f"{path.parent.name}.{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    config = getattr(module, "CONFIG", None)
    if not isinstance(config, SweepConfig):
        raise ValueError(f"{path} must define CONFIG = SweepConfig(...), got {type(config).__name__}")
    return config


def run_sweep_from_path(
    config_path: str | Path,
    out_dir: str | Path,
    *,
    scale: str = "laptop",
    smoke: bool = False,
    resume: bool = True,
    retry_failed: bool = True,
    only: Callable[[Mapping[str, Any]], bool] | None = None,
    best_over: str | None = None,
    metric: str | None = None,
    lower_is_better: bool = True,
    log: Callable[[str], Any] | None = print,
) -> SweepResult:
    """`load_config` + `run_sweep`, then print (via ``log``) the seed-averaged result table."""
    config = load_config(config_path)
    result = run_sweep(config, out_dir, scale=scale, smoke=smoke, resume=resume, retry_failed=retry_failed,
                       only=only, log=log)
    if log is not None:
        summary = result.summary
        metric = metric or summary["metric"]
        log(f"\n{config.name} ({summary['scale']}{', smoke' if smoke else ''}): {summary['num_runs']} runs, "
            f"{summary['counts']}; ran {len(result.ran)}, skipped {len(result.skipped)}; results in {out_dir}")
        log(format_table(table_rows(summary, metric=metric, best_over=best_over, lower_is_better=lower_is_better),
                         metric=metric))
    return result
