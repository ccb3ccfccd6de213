"""Resumable sweeps: deterministic ids, atomic files, resume without redo or duplicates (sequential path;
batching, claims, sharding and faults: test_sweep_batched.py, test_sweep_claims.py, test_sweep_faults.py)."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from heterogeneity.experiment._config import RunSpec, SweepConfig, resolve, run_id
from heterogeneity.experiment._store import read_json
from heterogeneity.experiment._sweep import format_table, load_runs, run_sweep, table_rows

CALLS: list[dict] = []


def _build(hp):
    """1-D quadratic ½ a w² from w=1; lr=99 raises, lr=50 diverges."""
    CALLS.append(dict(hp))
    if hp["lr"] == 99.0:
        raise RuntimeError("boom: deliberately failing build")
    a = hp["curvature"]
    loss_fn = lambda w, batch: 0.5 * a * jnp.sum(w ** 2)  # noqa: E731
    opt = {"sgd": optax.sgd, "adam": optax.adam}[hp["optimizer"]](hp["lr"])
    return RunSpec(loss_fn=loss_fn, params=jnp.ones(2) * (1.0 + hp["seed"]), optimizer=opt,
                   num_steps=hp["steps"], log_every=5, extras={"curvature": a})


def _config(grid=None):
    return SweepConfig(
        name="toy",
        build=_build,
        grid=grid or [{"optimizer": ["sgd"], "lr": [0.1, 0.5, 50.0], "seed": [0, 1]},
                      {"optimizer": ["adam"], "lr": [0.1], "seed": [0, 1]}],
        base={"curvature": 2.0, "steps": 20},
        scales={"laptop": {}, "gpu": {"steps": 40}},
        smoke={"steps": 3},
    )


def _no_tmp(out):
    return [p for p in Path(out).rglob("*") if p.name.endswith(".tmp")]


def test_resolve_and_run_ids_are_deterministic():
    cfg = _config()
    pts = resolve(cfg)
    assert len(pts) == 8 and all(p["steps"] == 20 for p in pts)
    assert [run_id("toy", p) for p in pts] == [run_id("toy", dict(reversed(list(p.items())))) for p in pts]
    assert len({run_id("toy", p) for p in pts}) == 8
    assert all(p["steps"] == 40 for p in resolve(cfg, scale="accelerator"))
    smoke = resolve(cfg, smoke=True)  # first lr / seed, every optimizer
    assert [(p["optimizer"], p["lr"], p["seed"], p["steps"]) for p in smoke] == [("sgd", 0.1, 0, 3), ("adam", 0.1, 0, 3)]
    with pytest.raises(ValueError, match="axis 'lr'"):
        SweepConfig(name="x", build=_build, grid={"lr": []})
    with pytest.raises(ValueError, match="scale"):
        resolve(cfg, scale="tpu-pod")
    with pytest.raises(ValueError, match="not a plain JSON value"):
        resolve(SweepConfig(name="x", build=_build, grid={"lr": [object()]}))


def test_sweep_records_statuses_and_summary(tmp_path):
    CALLS.clear()
    cfg = _config(grid={"optimizer": ["sgd"], "lr": [0.1, 50.0, 99.0], "seed": [0, 1]})
    res = run_sweep(cfg, tmp_path)
    runs = load_runs(tmp_path)
    assert len(runs) == 6 and len(res.ran) == 6 and not _no_tmp(tmp_path)
    by_lr = {}
    for rec in runs.values():
        by_lr.setdefault(rec["hparams"]["lr"], set()).add(rec["status"])
    assert by_lr == {0.1: {"finished"}, 50.0: {"diverged"}, 99.0: {"failed"}}
    for rec in runs.values():
        if rec["status"] == "failed":
            assert "boom: deliberately failing build" in rec["error"] and "Traceback" in rec["error"]
        if rec["status"] == "diverged":
            assert rec["diverged_step"] == rec["final"]["diverged_step"] > 0
            assert len(rec["history"]["loss"]) >= 1  # history kept up to the divergence
        if rec["status"] == "finished":
            w0 = 1.0 + rec["hparams"]["seed"]
            # GD on ½·2·w²: w_t = (1 − 0.2)^t w0; history logs every 5 steps and the last
            assert rec["history"]["step"] == [0, 5, 10, 15, 19]
            np.testing.assert_allclose(rec["final"]["final_loss"], 2 * w0 ** 2 * 0.8 ** 40, rtol=1e-5)
            assert rec["extras"] == {"curvature": 2.0}
    summary = read_json(tmp_path / "summary.json")
    assert summary["counts"] == {"finished": 2, "diverged": 2, "failed": 2, "stopped": 0, "pending": 0}
    assert not summary["complete"]  # failed runs make it incomplete
    assert [r["run_id"] for r in summary["runs"]] == [run_id("toy", p) for p in resolve(cfg)]
    group = next(g for g in summary["groups"] if g["hparams"]["lr"] == 0.1)
    vals = [2 * w0 ** 2 * 0.8 ** 40 for w0 in (1.0, 2.0)]
    assert group["metrics"]["final_loss"]["n"] == 2
    np.testing.assert_allclose(group["metrics"]["final_loss"]["mean"], np.mean(vals), rtol=1e-5)
    np.testing.assert_allclose(group["metrics"]["final_loss"]["std"], np.std(vals), rtol=1e-4)

    # resume: finished and diverged are done; failed are retried (and fail again), nothing duplicated
    CALLS.clear()
    res2 = run_sweep(cfg, tmp_path)
    assert sorted(c["lr"] for c in CALLS) == [99.0, 99.0] and len(res2.skipped) == 4
    assert len(list((tmp_path / "runs").glob("*.json"))) == 6
    CALLS.clear()
    run_sweep(cfg, tmp_path, retry_failed=False)
    assert CALLS == []


def test_sweep_interrupted_in_process_resumes_without_redo(tmp_path):
    CALLS.clear()
    cfg = _config()
    done = []

    def stop_after_three(record):
        done.append(record["run_id"])
        if len(done) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(cfg, tmp_path, on_run_end=stop_after_three)
    assert len(load_runs(tmp_path)) == 3 and not _no_tmp(tmp_path)
    summary = read_json(tmp_path / "summary.json")
    assert summary["counts"]["pending"] == 5 and sum(summary["counts"].values()) == 8
    CALLS.clear()
    res = run_sweep(cfg, tmp_path)
    assert set(res.skipped) == set(done) and len(res.ran) == 5
    assert {run_id("toy", c) for c in CALLS}.isdisjoint(done) and len(CALLS) == 5
    runs = load_runs(tmp_path)
    assert len(runs) == 8 and set(runs) == {run_id("toy", p) for p in resolve(cfg)}
    summary = read_json(tmp_path / "summary.json")
    assert summary["counts"]["pending"] == 0 and summary["counts"]["finished"] + summary["counts"]["diverged"] == 8
    assert summary["complete"]
    assert {r["run_id"]: r["status"] for r in summary["runs"]} == {k: v["status"] for k, v in runs.items()}
    # table: the best learning rate per optimizer (sgd: lr=0.5 hits w=0 in one step; lr=50 diverged)
    rows = table_rows(summary, best_over="lr")
    assert sorted((r["optimizer"], r["lr"], r["mean"], r["n"]) for r in rows) == [
        ("adam", 0.1, pytest.approx(np.mean([runs[run_id("toy", p)]["final"]["final_loss"] for p in resolve(cfg)
                                             if p["optimizer"] == "adam"])), 2), ("sgd", 0.5, 0.0, 2)]
    text = format_table(rows, metric="final_loss")
    assert "final_loss" in text and len(text.splitlines()) == 4


_CHILD = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {tests!r})
    from experiment import test_sweep as t
    from heterogeneity.experiment._sweep import run_sweep
    log = open({log!r}, "a")
    built = [0]
    def build(hp):
        built[0] += 1
        log.write(sys.argv[2] + " " + t.run_id("toy", hp) + "\\n"); log.flush()
        if built[0] == int(sys.argv[1]):
            os._exit(17)   # killed in the middle of a run: no cleanup, no finally blocks
        return t._build(hp)
    cfg = t._config()
    cfg = type(cfg)(**{{**cfg.__dict__, "build": build}})
    run_sweep(cfg, {out!r}, batch=False)  # one point at a time: a kill loses only the point in flight
""")


def test_sweep_killed_subprocess_resumes(tmp_path):
    out, log = tmp_path / "out", tmp_path / "calls.log"
    script = tmp_path / "child.py"
    script.write_text(_CHILD.format(tests=str(Path(__file__).parents[1]), log=str(log), out=str(out)))
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    first = subprocess.run([sys.executable, str(script), "5", "first"], env=env, capture_output=True, text=True,
                           timeout=120)
    assert first.returncode == 17, first.stderr
    assert len(load_runs(out)) == 4 and not _no_tmp(out)  # runs 1-4 recorded, run 5 died mid-build
    assert read_json(out / "summary.json")["counts"]["pending"] == 4
    second = subprocess.run([sys.executable, str(script), "0", "second"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert second.returncode == 0, second.stderr
    calls = [line.split() for line in log.read_text().splitlines()]
    first_ids = [rid for tag, rid in calls if tag == "first"]
    second_ids = [rid for tag, rid in calls if tag == "second"]
    assert len(first_ids) == 5 and len(second_ids) == 4
    assert set(first_ids[:4]).isdisjoint(second_ids)  # finished runs are not redone
    assert second_ids[0] == first_ids[4]  # the killed run is rerun first
    runs = load_runs(out)
    assert len(runs) == 8 and set(runs) == set(first_ids[:4]) | set(second_ids) and not _no_tmp(out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["num_runs"] == 8
    assert sorted(r["run_id"] for r in summary["runs"]) == sorted(runs)
