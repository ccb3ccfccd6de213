"""Resumable, batched, shardable sweeps: one result file per run, written atomically.

Layout of ``out_dir``::

    sweep.json                       the resolved grid (config name, scale, run ids and hyperparameters)
    runs/<run_id>.json               one run: status, hyperparameters, history, final metrics, wall time
    runs/<run_id>.json.corrupt-<t>   a damaged run file found on resume, moved aside (its point is rerun)
    locks/<run_id>.lock              a point being run now, and by whom (`heterogeneity.experiment._claims`)
    train/<run_id>/                  with ``checkpoint_every``: train's metrics.jsonl and checkpoints (resumable)
    summary.json                     every run of the grid (status, final metrics), seed groups, warnings
    plots/                           `heterogeneity plot OUT_DIR` (`heterogeneity.experiment._plot`)

A run's id is the hash of its resolved hyperparameters (`heterogeneity.experiment.run_id`),
so the same point always maps to the same file: a restarted sweep skips the runs whose file
is done and runs the others. Files are written with `atomic_write_json` (temp file + fsync +
rename), so a sweep killed at any moment leaves either a complete run file or none. Statuses:
``"finished"``; ``"diverged"`` (a non-finite loss, or a loss above ``divergence_factor · |L_0|``,
recorded with its step — a result, so it counts as done); ``"failed"`` (the
build or the run raised; the traceback is recorded and the sweep goes on; failed runs are
retried on resume unless ``retry_failed=False``). Every record says how it ran
(``execution``: ``{"mode": "sequential"}`` or ``{"mode": "batched", "members": M, ...}``).

Order of work. Every point is validated first (`validate_points`: registry names, optimizer
hyperparameters, the config's own check); a bad one raises before anything is written. The
points this process runs (``only``, then ``shard=(i, N)``: the i-th of N contiguous,
near-equal slices of the grid, so N job-array tasks or hosts cover it exactly once) are taken
in grid order, in chunks of points that differ only in numbers (at most ``max_batch``). A
chunk is claimed point by point (`Claims`: an ``O_EXCL`` lock file per point, stale locks of
dead processes recovered, so two processes on one directory never run a point twice), built
(``config.build``; a build that raises gives a ``failed`` record), traced and grouped
(`heterogeneity.experiment._batched`): groups of two or more run as one compiled program, the
rest — and a batch that raises — through `train`, one by one. Each record is written, then
its lock released and ``summary.json`` rebuilt from the files on disk, so the summaries that
several processes write converge to the union of their results.

Faults. A run file that does not parse, is not a run record, or belongs to another point is
never trusted: it is reported, moved aside to ``runs/<id>.json.corrupt-<UTC time>`` by the
process that claims its point, and rerun. ``KeyboardInterrupt``/``SystemExit`` are not
caught: interrupted runs leave no file, their locks are released, and they rerun on resume.
The summary warns when a best learning rate (mean ``metric`` over seeds) is the smallest or
largest value of its grid: a best value on the edge is not a tuned result.
"""
from __future__ import annotations

import datetime as _dt
import importlib.util
import inspect
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import numpy as np

from heterogeneity.experiment._claims import Claims
from heterogeneity.experiment._config import (RunSpec, SweepConfig, canonical_scale, check_overrides, describe_point,
                                              resolve, run_id, validate_points)
from heterogeneity.experiment._store import atomic_write_json, read_json, to_jsonable
from heterogeneity.experiment._summary import (DONE_STATUSES, STATUSES, format_table, lr_edge_warnings, summarize_runs,
                                               table_rows)
from heterogeneity.experiment._train import train

__all__ = [
    "SweepResult", "run_sweep", "run_one", "load_runs", "summarize_runs", "table_rows", "format_table",
    "load_config", "run_sweep_from_path", "DONE_STATUSES", "STATUSES", "shard_slice", "lr_edge_warnings",
]



class SweepResult(NamedTuple):
    """What `run_sweep` returns: the summary written to ``summary.json`` and what this call did."""

    out_dir: Path
    summary: dict
    ran: tuple[str, ...]  # run ids executed by this call
    skipped: tuple[str, ...]  # run ids found done on disk
    failed: tuple[str, ...] = ()  # run ids of this call's selection whose record says "failed"
    busy: tuple[str, ...] = ()  # run ids held by another process (left to it)
    corrupt: tuple[str, ...] = ()  # run ids whose damaged file was moved aside and rerun
    selected: int = 0  # points this call was asked to run (after `only` and `shard`)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _scalars(d: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        a = np.asarray(v)
        if a.ndim == 0 and a.dtype.kind in "biuf":
            out[k] = a.item()
    return out


def _x64(hparams: Mapping[str, Any]) -> bool:
    return bool(hparams.get("x64", False))


def _divergence_factor(config: SweepConfig) -> tuple[bool, float | None]:
    """(does `train` take ``divergence_factor``, the factor both execution paths use)."""
    supported = "divergence_factor" in inspect.signature(train).parameters
    return supported, (config.divergence_factor if supported else None)


def _build(config: SweepConfig, hparams: dict) -> RunSpec:
    spec = config.build(dict(hparams))
    if not isinstance(spec, RunSpec):
        raise ValueError(f"{config.name}: build(hparams) must return a RunSpec, got {type(spec).__name__}")
    return spec


def _resumable() -> bool:
    return "run_dir" in inspect.signature(train).parameters


def _train_spec(config: SweepConfig, spec: RunSpec, *, run_dir: Path | None = None,
                settings: Mapping[str, Any] | None = None, log: Callable[[str], Any] | None = None):
    """`train` on one `RunSpec`; with ``run_dir`` resumable (a directory left by a run of another program,
    e.g. after the config's code changed, is moved aside to ``<dir>.mismatch-<UTC time>`` and the run restarts)."""
    supported, factor = _divergence_factor(config)
    extra: dict[str, Any] = {"divergence_factor": factor} if supported else {}
    if run_dir is not None:
        extra.update(run_dir=run_dir, checkpoint_every=spec.checkpoint_every,
                     settings=to_jsonable(dict(settings or {})))

    def go():
        return train(
            spec.loss_fn, spec.params, spec.optimizer, spec.batches, num_steps=spec.num_steps, key=spec.key,
            eval_fn=spec.eval_fn, eval_every=spec.eval_every, log_every=spec.log_every,
            partition=spec.partition, num_workers=spec.num_workers, **extra,
        )

    if run_dir is None:
        return go()
    from heterogeneity.experiment._checkpoint import RunDirMismatch

    try:
        return go()
    except RunDirMismatch as e:
        moved = _move_aside(Path(run_dir), "mismatch")
        if log is not None:
            log(f"{Path(run_dir).name}: its checkpoints are of another run ({' '.join(str(e).split())[:200]}); "
                f"moved to {moved.name}, restarting it")
        return go()


def _result_fields(spec: RunSpec, result) -> dict:
    """The record fields of one `TrainResult` (the same for a sequential and a batched run)."""
    final = dict(result.final)
    if spec.summarize is not None:
        final.update(_scalars(spec.summarize(result)))
    return dict(
        status=result.status, diverged_step=result.diverged_step, history=result.history, final=final,
        block_labels=result.block_labels, num_compiles=result.num_compiles, extras=dict(spec.extras),
        train_time=result.wall_time,
    )


def _new_record(config: SweepConfig, hparams: Mapping[str, Any], scale: str) -> dict[str, Any]:
    return {"run_id": run_id(config.name, hparams), "config": config.name, "scale": scale, "hparams": dict(hparams),
            "started_at": _now(), "backend": jax.default_backend()}


def _failed(record: dict) -> dict:
    record.update(status="failed", error=traceback.format_exc(), history={}, final={})
    return record


def run_one(config: SweepConfig, hparams: Mapping[str, Any], *, scale: str = "laptop") -> dict:
    """Build and train one point of ``config`` through `train`; return its record (never raises on a run error).

    ``KeyboardInterrupt`` / ``SystemExit`` propagate (an interrupted run is not a result).
    A truthy hyperparameter ``x64`` runs build and train under ``jax.enable_x64(True)``.
    """
    hparams = dict(hparams)
    record = _new_record(config, hparams, scale)
    t0 = time.perf_counter()
    try:
        with jax.enable_x64(_x64(hparams)):
            spec = _build(config, hparams)
            record.update(_result_fields(spec, _train_spec(config, spec)))
    except Exception:  # noqa: BLE001 - a failing run is recorded, the sweep goes on
        _failed(record)
    record["execution"] = {"mode": "sequential"}
    record["wall_time"] = time.perf_counter() - t0
    record["finished_at"] = _now()
    return record


def _record_problem(rec: Any, rid: str, hparams: Mapping[str, Any] | None) -> str | None:
    """Why a parsed run file cannot be trusted as the record of ``rid``, or None."""
    if not isinstance(rec, dict):
        return f"not a run record (a JSON {type(rec).__name__})"
    if rec.get("run_id") != rid:
        return f"its run_id {rec.get('run_id')!r} is not the file's"
    if rec.get("status") not in STATUSES:
        return f"unknown status {rec.get('status')!r}"
    if not isinstance(rec.get("final", {}), dict) or not isinstance(rec.get("history", {}), dict):
        return "its final metrics or history are not JSON objects"
    if hparams is not None and rec.get("hparams") != to_jsonable(dict(hparams)):
        return "its hyperparameters are not those of its grid point"
    return None


def read_record(path: str | Path, hparams: Mapping[str, Any] | None = None) -> tuple[dict | None, str | None]:
    """``(record, None)`` for a trustworthy run file, ``(None, reason)`` for a corrupt one, ``(None, None)`` if none."""
    path = Path(path)
    try:
        rec = read_json(path)
    except FileNotFoundError:
        return None, None
    except (ValueError, UnicodeDecodeError, OSError) as e:
        return None, " ".join(str(e).split())
    problem = _record_problem(rec, path.name[:-len(".json")], hparams)
    return (None, f"{path}: {problem}") if problem else (rec, None)


def _light(rec: Mapping[str, Any]) -> dict:
    """What the summary needs of a record (histories stay on disk)."""
    return to_jsonable({k: rec.get(k) for k in ("status", "final", "wall_time")})


class _RunFiles:
    """The run files of one grid, re-read only when their size or mtime changes (other processes write too)."""

    def __init__(self, runs_dir: Path, points: Mapping[str, Mapping[str, Any]]):
        self.dir, self.points = runs_dir, points
        self._cache: dict[str, tuple[tuple, dict | None, str | None]] = {}

    def get(self, rid: str, *, fresh: bool = False) -> tuple[dict | None, str | None]:
        path = self.dir / f"{rid}.json"
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self._cache.pop(rid, None)
            return None, None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        hit = self._cache.get(rid)
        if fresh or hit is None or hit[0] != stamp:
            rec, problem = read_record(path, self.points.get(rid))
            hit = (stamp, _light(rec) if rec is not None else None, problem)
            self._cache[rid] = hit
        return hit[1], hit[2]

    def note(self, rid: str, record: Mapping[str, Any]) -> None:
        path = self.dir / f"{rid}.json"
        st = os.stat(path)
        self._cache[rid] = ((st.st_mtime_ns, st.st_size, st.st_ino), _light(record), None)

    def all(self) -> tuple[dict[str, dict], dict[str, str]]:
        records, corrupt = {}, {}
        for rid in self.points:
            rec, problem = self.get(rid)
            if rec is not None:
                records[rid] = rec
            elif problem is not None:
                corrupt[rid] = problem
        return records, corrupt


def _move_aside(path: Path, why: str = "corrupt") -> Path:
    """Rename a file or folder to ``<name>.<why>-<UTC time>`` (never overwriting an earlier one)."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target, n = path.with_name(f"{path.name}.{why}-{stamp}"), 1
    while target.exists():
        target, n = path.with_name(f"{path.name}.{why}-{stamp}-{n}"), n + 1
    os.replace(path, target)
    return target


def load_runs(out_dir: str | Path, *, strict: bool = True) -> dict[str, dict]:
    """Every run record under ``out_dir/runs`` (id -> record).

    A corrupt file raises ``ValueError`` naming it (``strict``), or is left out (``strict=False``).
    """
    runs_dir = Path(out_dir) / "runs"
    if not runs_dir.is_dir():
        return {}
    out = {}
    for p in sorted(runs_dir.glob("*.json")):
        rec, problem = read_record(p)
        if problem is not None and strict:
            raise ValueError(problem if problem.startswith(str(p)) else f"{p}: {problem}")
        if rec is not None:
            out[p.stem] = rec
    return out


def shard_slice(num_points: int, shard: tuple[int, int]) -> slice:
    """The ``i``-th of ``n`` contiguous, near-equal slices of ``range(num_points)`` (``shard = (i, n)``, 0 <= i < n).

    Contiguous slices keep a grid's neighbouring points — which usually differ only in a
    learning rate or a seed — together, so each shard still batches them.
    """
    i, n = shard
    if isinstance(i, bool) or isinstance(n, bool) or not isinstance(i, int) or not isinstance(n, int) \
            or n < 1 or not 0 <= i < n:
        raise ValueError(f"shard must be (i, n) with integers 0 <= i < n, got {shard!r}")
    return slice(i * num_points // n, (i + 1) * num_points // n)


def _numeric(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(_numeric(v) for v in value)


def _chunks(indices: Sequence[int], points: Sequence[Mapping[str, Any]], batch: bool, max_batch: int):
    """Runs of grid indices that may share a program: equal in every non-numeric hyperparameter."""
    if not batch or max_batch < 2:
        return [[i] for i in indices]
    families: dict[str, list[int]] = {}
    for i in indices:
        key = json.dumps({k: v for k, v in points[i].items() if not _numeric(v)}, sort_keys=True)
        families.setdefault(key, []).append(i)
    return [members[k:k + max_batch] for members in families.values() for k in range(0, len(members), max_batch)]


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
    overrides: Mapping[str, Any] | None = None,
    shard: tuple[int, int] | None = None,
    batch: bool = True,
    max_batch: int = 64,
    lock_timeout: float = 900.0,
    checkpoint_every: int | None = None,
) -> SweepResult:
    """Run every point of ``config``'s grid that has no done record in ``out_dir`` (see the module docstring).

    Args:
      config: a `SweepConfig` (e.g. ``configs.quadratic_cases.CONFIG``).
      out_dir: result directory (created after validation); several processes may share it.
      scale: ``"laptop"`` or ``"gpu"`` (alias ``"accelerator"``), selects ``config.scales``.
      smoke: tiny sizes and a reduced grid (``config.smoke`` / ``smoke_grid``).
      resume: skip runs whose record is done (``finished``/``diverged``); ``False`` reruns all.
      retry_failed: on resume, rerun runs recorded as ``failed``.
      only: optional predicate on the hyperparameters; other points are neither run nor skipped
        (they stay in the summary, as pending if never run).
      on_run_end: called with each new record after its file and the summary are written.
      log: called with one progress line per run (e.g. ``print``).
      overrides: ``{key: value}`` replacing a hyperparameter in every point that has it
        (``--set``); an unknown key raises ``ValueError``.
      shard: ``(i, n)``: run only the i-th of n contiguous slices of the selected points.
      batch: run points that share a program as one batched program (`heterogeneity.experiment._batched`).
      max_batch: at most this many points per batch (memory grows linearly with it).
      lock_timeout: seconds without a heartbeat after which another process's lock is stale.
      checkpoint_every: make every point resumable: it runs on its own through `train` with
        ``run_dir=OUT/train/<run_id>`` and a checkpoint every that many steps, so a point killed
        midway continues from its last checkpoint on resume (default: only the points whose
        `RunSpec` sets ``checkpoint_every``). Batched points keep no checkpoints.
    """
    scale = canonical_scale(scale)
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise ValueError(f"max_batch must be an int >= 1, got {max_batch!r}")
    if checkpoint_every is not None and (isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int)
                                         or checkpoint_every < 1):
        raise ValueError(f"checkpoint_every must be None or an int >= 1, got {checkpoint_every!r}")
    if checkpoint_every is not None and not _resumable():
        raise ValueError("checkpoint_every: this version of train cannot checkpoint (no run_dir)")
    check_overrides(config, overrides or {}, scale=scale, smoke=smoke)
    points = resolve(config, scale=scale, smoke=smoke, overrides=overrides)
    validate_points(config, points)  # raises before anything is written
    ids = [run_id(config.name, hp) for hp in points]
    selected = [i for i, hp in enumerate(points) if only is None or only(hp)]
    if shard is not None:
        selected = selected[shard_slice(len(selected), shard)]
    out_dir = Path(out_dir)
    runs_dir = out_dir / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "sweep.json", {
        "config": config.name, "description": config.description, "scale": scale, "smoke": smoke,
        "overrides": dict(overrides or {}), "runs": [{"run_id": rid, "hparams": hp} for rid, hp in zip(ids, points)],
    })
    files = _RunFiles(runs_dir, dict(zip(ids, points)))

    def write_summary():
        records, corrupt = files.all()
        summary = summarize_runs(config, points, records, scale=scale, smoke=smoke, corrupt=corrupt)
        atomic_write_json(out_dir / "summary.json", summary)
        return summary

    def done(light) -> bool:
        return light is not None and resume and (light["status"] in DONE_STATUSES
                                                 or (light["status"] == "failed" and not retry_failed))

    summary = write_summary()
    ran, skipped, busy, corrupt = [], [], [], []
    runner = _Runner(config, points, ids, scale, log, batch, out_dir / "train", checkpoint_every)
    with Claims(out_dir / "locks", timeout=lock_timeout, log=log) as claims:

        def finish(i: int, record: dict) -> None:
            nonlocal summary
            atomic_write_json(runs_dir / f"{ids[i]}.json", record)
            files.note(ids[i], record)
            claims.release(ids[i])
            ran.append(ids[i])
            summary = write_summary()
            if log is not None:
                log(_progress(config, points, i, record))
            if on_run_end is not None:
                on_run_end(record)

        runner.finish = finish
        for chunk in _chunks(selected, points, batch and checkpoint_every is None, max_batch):
            todo = []
            for i in chunk:
                rid = ids[i]
                if done(files.get(rid)[0]):
                    skipped.append(rid)
                    continue
                if not claims.claim(rid):
                    busy.append(rid)
                    continue
                light, problem = files.get(rid, fresh=True)  # under the claim: finished meanwhile?
                if done(light):
                    claims.release(rid)
                    skipped.append(rid)
                    continue
                if problem is not None:
                    moved = _move_aside(runs_dir / f"{rid}.json")
                    corrupt.append(rid)
                    if log is not None:
                        log(f"corrupt run file {rid}.json ({problem}); moved to {moved.name}, rerunning the point")
                todo.append(i)
            if todo:
                runner.run(todo)
    summary = write_summary()
    statuses = {r["run_id"]: r["status"] for r in summary["runs"]}
    failed = tuple(ids[i] for i in selected if statuses.get(ids[i]) == "failed")
    if log is not None:
        if busy:
            log(f"{len(busy)} point(s) held by other processes (locks in {out_dir / 'locks'}); rerun to pick up any "
                "they leave unfinished")
        for line in summary["warnings"]:
            log(f"warning: {line}")
    return SweepResult(out_dir, summary, tuple(ran), tuple(skipped), failed, tuple(busy), tuple(corrupt),
                       len(selected))


def _progress(config: SweepConfig, points, i: int, record: Mapping[str, Any]) -> str:
    loss = record.get("final", {}).get(config.metric, float("nan"))
    loss_s = f"{loss:.6g}" if isinstance(loss, float) and math.isfinite(loss) else str(loss)
    how = record.get("execution", {})
    batched = f" [batch of {how['members']}]" if how.get("mode") == "batched" else ""
    return (f"[{i + 1}/{len(points)}] {record['run_id']} {record['status']:<8} {config.metric}={loss_s} "
            f"({record['wall_time']:.1f}s){batched} {describe_point(config, points[i]).replace(', ', ' ')}")


class _Runner:
    """Builds, batches and trains the claimed points of one chunk; hands each record to ``finish``."""

    def __init__(self, config, points, ids, scale, log, batch, train_dir, checkpoint_every):
        self.config, self.points, self.ids, self.scale = config, points, ids, scale
        self.log, self.batch, self.train_dir, self.checkpoint_every = log, batch, train_dir, checkpoint_every
        self.finish: Callable[[int, dict], None] | None = None
        self._programs: dict = {}

    def _close(self, i: int, record: dict, t0: float, extra_time: float = 0.0) -> None:
        record["wall_time"] = time.perf_counter() - t0 + extra_time
        record["finished_at"] = _now()
        self.finish(i, record)

    def run(self, todo: Sequence[int]) -> None:
        built = []  # (grid index, spec, record, build seconds)
        for i in todo:
            hp = self.points[i]
            record, t0 = _new_record(self.config, hp, self.scale), time.perf_counter()
            try:
                with jax.enable_x64(_x64(hp)):
                    spec = _build(self.config, hp)
            except Exception:  # noqa: BLE001 - recorded, the sweep goes on
                _failed(record)["execution"] = {"mode": "sequential"}
                self._close(i, record, t0)
                continue
            if self.checkpoint_every is not None:
                spec = spec._replace(checkpoint_every=self.checkpoint_every)
            built.append((i, spec, record, time.perf_counter() - t0))
        alone = [k for k, b in enumerate(built) if b[1].checkpoint_every is not None]  # resumable: train's run_dir
        rest = [k for k in range(len(built)) if k not in alone]
        groups = self._groups(built, rest) if self.batch and len(rest) > 1 else [[k] for k in rest]
        for group in groups + [[k] for k in alone]:
            if len(group) > 1 and self._run_batched([built[k] for k in group], group):
                continue
            for k in group:
                self._run_sequential(*built[k])

    def _groups(self, built, indices) -> list[list[int]]:
        """``indices`` of ``built`` grouped by program (`group_programs`); untraceable ones alone."""
        from heterogeneity.experiment._batched import Unbatchable, group_programs, trace_program

        _, factor = _divergence_factor(self.config)
        traced, alone = [], []
        self._programs = {}
        for k in indices:
            i, spec = built[k][0], built[k][1]
            try:
                with jax.enable_x64(_x64(self.points[i])):
                    self._programs[k] = trace_program(spec, divergence_factor=factor, x64=_x64(self.points[i]))
                traced.append(k)
            except Unbatchable:
                alone.append([k])
        return [[traced[j] for j in g] for g in group_programs([self._programs[k] for k in traced])] + alone

    def _run_batched(self, members, group) -> bool:
        from heterogeneity.experiment._batched import default_devices, run_batched

        t0 = time.perf_counter()
        x64 = _x64(self.points[members[0][0]])
        try:
            with jax.enable_x64(x64):
                results = run_batched([self._programs.pop(k) for k in group])
        except Exception as e:  # noqa: BLE001 - e.g. out of memory: the sequential path still works
            if self.log is not None:
                self.log(f"batched run of {len(members)} points failed ({type(e).__name__}: "
                         f"{' '.join(str(e).split())[:300]}); running them one by one")
            return False
        n_dev = min(len(default_devices()), len(members))
        elapsed = time.perf_counter() - t0
        for (i, spec, record, build_time), result in zip(members, results):
            t1 = time.perf_counter()
            try:
                record.update(_result_fields(spec, result))
            except Exception:  # noqa: BLE001 - summarize raised: recorded like a sequential failure
                _failed(record)
            record["execution"] = {"mode": "batched", "members": len(members), "devices": n_dev,
                                   "batch_wall_time": elapsed}
            self._close(i, record, t1, build_time + elapsed / len(members))
        return True

    def _run_sequential(self, i, spec, record, build_time) -> None:
        t0 = time.perf_counter()
        run_dir = self.train_dir / self.ids[i] if spec.checkpoint_every is not None and _resumable() else None
        try:
            with jax.enable_x64(_x64(self.points[i])):
                result = _train_spec(self.config, spec, run_dir=run_dir, settings=self.points[i], log=self.log)
                record.update(_result_fields(spec, result))
        except Exception:  # noqa: BLE001 - a failing run is recorded, the sweep goes on
            _failed(record)
        record["execution"] = {"mode": "sequential"}
        if run_dir is not None:
            record["execution"].update(run_dir=str(Path("train") / self.ids[i]), checkpoint_every=spec.checkpoint_every)
        self._close(i, record, t0, build_time)


def load_config(path: str | Path) -> SweepConfig:
    """The ``CONFIG`` of a config module given by its file path (e.g. ``configs/quadratic_cases.py``).

    The module is imported as ``configs.<stem>`` with the repository root (the parent of its
    folder) on ``sys.path``, so configs may import shared pieces from each other. Any error
    while importing it (a syntax error, a failing import, a bad ``SweepConfig``) is raised as
    one ``ValueError`` line naming the file.
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
    previous = sys.modules.get(name)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - any failure of the user's module is bad input, said in one line
        if previous is not None:
            sys.modules[name] = previous
        else:
            sys.modules.pop(name, None)
        where = ""
        if isinstance(e, SyntaxError):
            where = f" (line {e.lineno})"
        else:
            frames = [f for f in traceback.extract_tb(e.__traceback__) if Path(f.filename).resolve() == path]
            if frames:
                where = f" (line {frames[-1].lineno})"
        raise ValueError(f"config {path} failed to import{where}: {type(e).__name__}: "
                         f"{' '.join(str(e).split())}") from None
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
    **kwargs: Any,
) -> SweepResult:
    """`load_config` + `run_sweep` (``kwargs``: its other options), then print (via ``log``) the result table."""
    config = load_config(config_path)
    result = run_sweep(config, out_dir, scale=scale, smoke=smoke, resume=resume, retry_failed=retry_failed,
                       only=only, log=log, **kwargs)
    if log is not None:
        summary = result.summary
        metric = metric or summary["metric"]
        extra = f", {len(result.busy)} held by other processes" if result.busy else ""
        log(f"\n{config.name} ({summary['scale']}{', smoke' if smoke else ''}): {summary['num_runs']} runs, "
            f"{summary['counts']}; ran {len(result.ran)}, skipped {len(result.skipped)}{extra}; results in {out_dir}")
        log(format_table(table_rows(summary, metric=metric, best_over=best_over, lower_is_better=lower_is_better),
                         metric=metric))
    return result
