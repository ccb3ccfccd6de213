"""Batched sweeps: points that differ only in numbers run as one program and give the sequential records.

Tolerance. Each member computes the same arithmetic as its sequential run, but XLA:CPU orders
the additions of a reduction or a contraction differently once they are batched (``w·Hw`` for
M members is one batched dot, not M dots) — also under ``lax.map``, so bitwise equality is
not on offer. Measured on these contracting problems: ≤ 5e-6 relative on losses and norms
after 30 steps, ≤ 4e-5 on the Gini of two blocks (a ratio of a difference, which amplifies
rounding). Hence RTOL = 1e-4 (ATOL for values near 0) on every float, and exact equality on
everything else: run ids, record keys, statuses, step counts, divergence steps, logged steps.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np

from heterogeneity.experiment._batched import group_programs, run_batched, trace_program
from heterogeneity.experiment._config import resolve, run_id
from heterogeneity.experiment._sweep import load_config, load_runs, run_sweep

RTOL, ATOL = 1e-4, 1e-6

TOY = '''
"""Toy sweep for the tests: ½ aᵀH_s a + ½|b|² with H_s a random rotation of a spectrum in [1, 4] (one per seed)."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from heterogeneity import partition as hpart
from heterogeneity.experiment import RunSpec, SweepConfig, make_optimizer, run_id


def build(hp):
    if os.environ.get("TOY_SWEEP_LOG"):
        with open(os.environ["TOY_SWEEP_LOG"], "a") as f:
            f.write(f"{{os.getpid()}} {{run_id('toy', hp)}}\\n")
    if hp.get("fail"):
        raise RuntimeError("boom: deliberately failing build")
    rng = np.random.default_rng(hp["seed"])
    n = hp["dim"]
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    h = jnp.asarray((q * np.linspace(1.0, 4.0, n)) @ q.T, jnp.float32)
    params = {{"a": jnp.asarray(rng.normal(size=n), jnp.float32), "b": jnp.ones(3, jnp.float32)}}
    noisy = hp.get("noisy", False)

    def loss_fn(p, batch):
        loss = 0.5 * p["a"] @ (h @ p["a"]) + 0.5 * jnp.sum(p["b"] ** 2)
        return loss + jnp.mean(batch @ p["a"]) if noisy else loss

    workers = hp.get("workers")
    batches = (lambda step, key: 0.1 * jax.random.normal(key, (4, n))) if noisy else None
    if noisy and os.environ.get("TOY_INTERRUPT_AT"):  # a Ctrl-C at that step, once (the marker file remembers)
        draw, stop, mark = batches, int(os.environ["TOY_INTERRUPT_AT"]), os.environ["TOY_INTERRUPT_MARK"]

        def batches(step, key):
            if step == stop and not os.path.exists(mark):
                open(mark, "w").close()
                raise KeyboardInterrupt
            return draw(step, key)
    optimizer = {literal}
    return RunSpec(loss_fn=loss_fn, params=params, optimizer=optimizer, num_steps=hp["steps"],
                   batches=batches, key=jax.random.key(100 + hp["seed"]) if noisy else None,
                   log_every=hp["log_every"], partition=hpart.by_leaf(params),
                   eval_fn=lambda p: {{"norm": jnp.sum(p["a"] ** 2)}}, eval_every=hp["eval_every"],
                   num_workers=workers, summarize=lambda r: {{"last_norm": float(r.history["eval_norm"][-1])}},
                   extras={{"dim": n}})


CONFIG = SweepConfig(
    name="toy", build=build,
    base={{"dim": 6, "steps": {steps}, "log_every": 4, "eval_every": 5}},
    grid={grid},
)
'''

GRID = [
    {"optimizer": ["sgd"], "lr": [0.3, 3.0], "seed": [0, 1]},  # lr=3: |1 - 3·4| > 1, diverges
    {"optimizer": ["adam"], "lr": [0.1], "opt.b1": [0.0, 0.9], "seed": [0, 1]},
    {"optimizer": ["sgd"], "lr": [0.1], "seed": [0, 1], "noisy": [True]},  # batches drawn in the program
    {"optimizer": ["mv_signsgd"], "lr": [0.01, 0.03], "seed": [0], "noisy": [True], "workers": [2]},
]


def write_toy(root: Path, *, grid=GRID, steps=30, literal="make_optimizer(hp, params)") -> Path:
    """A config module ``root/configs/toy.py`` (a file, so that CLI subprocesses can load it too)."""
    (root / "configs").mkdir(parents=True, exist_ok=True)
    path = root / "configs" / "toy.py"
    path.write_text(TOY.format(grid=repr(grid), steps=steps, literal=literal))
    return path


def assert_same_records(batched: dict, sequential: dict) -> None:
    """Member by member: identical ids, keys, statuses and steps; floats within RTOL (module docstring)."""
    assert sorted(batched) == sorted(sequential)
    for rid, a in batched.items():
        b = sequential[rid]
        assert set(a) == set(b) and a["hparams"] == b["hparams"] and a["run_id"] == b["run_id"] == rid
        for key in ("status", "diverged_step", "block_labels", "num_compiles", "extras", "config", "scale"):
            assert a[key] == b[key], (rid, key, a[key], b[key])
        for part in ("history", "final"):
            assert set(a[part]) == set(b[part]), (rid, part, set(a[part]) ^ set(b[part]))
            for name in a[part]:
                x, y = a[part][name], b[part][name]
                if name in ("step", "eval_step", "steps", "diverged_step"):
                    assert x == y, (rid, name)
                    continue
                x = np.asarray(x, np.float64)  # "nan"/"inf" strings parse too
                np.testing.assert_allclose(x, np.asarray(y, np.float64), rtol=RTOL, atol=ATOL,
                                           err_msg=f"{rid} {part}[{name}] {a['hparams']}")


def test_batched_sweep_equals_sequential_member_by_member(tmp_path):
    cfg = load_config(write_toy(tmp_path))
    batched = run_sweep(cfg, tmp_path / "batched")
    sequential = run_sweep(cfg, tmp_path / "sequential", batch=False)
    assert len(batched.ran) == len(sequential.ran) == 12 and not batched.failed
    a, b = load_runs(tmp_path / "batched"), load_runs(tmp_path / "sequential")
    assert_same_records(a, b)
    # one program per family: sgd (4), adam (4), noisy sgd (2), the 2-worker majority vote (2)
    members = sorted(r["execution"]["members"] for r in a.values())
    assert members == [2] * 4 + [4] * 8
    assert all(r["execution"]["mode"] == "batched" and r["num_compiles"] == 1 for r in a.values())
    assert all(r["execution"] == {"mode": "sequential"} for r in b.values())
    # the diverging member is recorded as such (loss > 1e3 |L_0| within a few steps) and poisons nobody
    diverged = sorted((r["hparams"]["optimizer"], r["hparams"]["lr"]) for r in a.values() if r["status"] == "diverged")
    assert diverged == [("sgd", 3.0), ("sgd", 3.0)]
    for r in a.values():
        if r["status"] == "diverged":
            assert 0 < r["diverged_step"] <= 5 and r["final"]["diverged_loss"] > 1e3 * r["history"]["loss"][0]
            assert r["history"]["step"][-1] < r["diverged_step"] and r["history"]["eval_step"][-1] <= r["diverged_step"]
        else:
            assert r["history"]["step"] == [0, 4, 8, 12, 16, 20, 24, 28, 29]
            assert r["final"]["final_loss"] < r["history"]["loss"][0]


def test_sharded_member_axis_matches_one_device(tmp_path):
    """Over 8 (simulated) devices the member axis is sharded and padded (4 members + 4 copies); the results
    match the same batch on one device, the diverging members included."""
    assert len(jax.devices()) == 8  # tests/conftest.py
    cfg = load_config(write_toy(tmp_path, steps=12))
    points = resolve(cfg)[:8]  # 4 sgd (2 diverge), 4 adam
    programs = [trace_program(cfg.build(hp), divergence_factor=1e3) for hp in points]
    assert group_programs(programs) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    programs = programs[:4]
    sharded = run_batched(programs, devices=jax.devices())
    single = run_batched(programs, devices=jax.devices()[:1])
    assert [s.status for s in sharded] == [o.status for o in single] == ["finished", "finished", "diverged", "diverged"]
    for s, o in zip(sharded, single):
        assert s.diverged_step == o.diverged_step and set(s.history) == set(o.history)
        for name in s.history:
            np.testing.assert_allclose(np.asarray(s.history[name], np.float64), np.asarray(o.history[name], np.float64),
                                       rtol=RTOL, atol=ATOL, err_msg=name)
        assert s.final.keys() == o.final.keys()
        np.testing.assert_allclose([s.final[k] for k in s.final], [o.final[k] for k in o.final], rtol=RTOL, atol=ATOL)


def test_points_with_other_shapes_or_literals_do_not_share_a_program(tmp_path):
    grid = [{"optimizer": ["adam"], "lr": [0.01, 0.1], "dim": [3, 5], "seed": [0]}]
    cfg = load_config(write_toy(tmp_path / "shapes", grid=grid, steps=6))
    run_sweep(cfg, tmp_path / "shapes_out")
    runs = load_runs(tmp_path / "shapes_out")
    by_dim = {}
    for r in runs.values():
        assert r["execution"]["mode"] == "batched" and r["execution"]["members"] == 2
        by_dim.setdefault(r["hparams"]["dim"], []).append(r["hparams"]["lr"])
    assert {k: sorted(v) for k, v in by_dim.items()} == {3: [0.01, 0.1], 5: [0.01, 0.1]}
    # a plain Optax constructor bakes the learning rate into the program: different rates run apart,
    # seeds of one rate (different data, same program) still share one
    grid = [{"optimizer": ["sgd"], "lr": [0.1, 0.2], "seed": [0, 1]}]
    cfg = load_config(write_toy(tmp_path / "literal", grid=grid, steps=6, literal="optax.sgd(hp['lr'])"))
    run_sweep(cfg, tmp_path / "literal_out")
    runs = load_runs(tmp_path / "literal_out")
    groups = {}
    for r in runs.values():
        assert r["execution"]["mode"] == "batched" and r["status"] == "finished"
        groups.setdefault(r["hparams"]["lr"], []).append((r["hparams"]["seed"], r["execution"]["members"]))
    assert {lr: sorted(v) for lr, v in groups.items()} == {0.1: [(0, 2), (1, 2)], 0.2: [(0, 2), (1, 2)]}


_CHILD = textwrap.dedent("""
    import os, sys
    from heterogeneity.experiment._sweep import load_config, run_sweep
    done = []
    def stop(record):
        done.append(record["run_id"])
        if len(done) == int(sys.argv[1]):
            os._exit(17)   # killed between two records of one batch: no cleanup, locks left behind
    run_sweep(load_config({config!r}), {out!r}, on_run_end=stop, log=lambda line: print(line, flush=True))
""")


def test_killed_batched_sweep_resumes_and_recovers_its_locks(tmp_path):
    config = write_toy(tmp_path, grid=GRID[:2], steps=10)
    out, log = tmp_path / "out", tmp_path / "builds.log"
    script = tmp_path / "child.py"
    script.write_text(_CHILD.format(config=str(config), out=str(out)))
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TOY_SWEEP_LOG": str(log)}
    first = subprocess.run([sys.executable, str(script), "2"], env=env, capture_output=True, text=True, timeout=180)
    assert first.returncode == 17, first.stderr
    assert len(load_runs(out)) == 2
    left = sorted(p.name for p in (out / "locks").iterdir())
    assert len(left) == 2  # the rest of the first batch (4 members) was claimed by the killed process
    second = subprocess.run([sys.executable, str(script), "0"], env=env, capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("broke the stale lock") == 2 and "is gone" in second.stdout
    runs = load_runs(out)
    cfg = load_config(config)
    assert sorted(runs) == sorted(run_id("toy", hp) for hp in resolve(cfg)) and not list((out / "locks").iterdir())
    builds = [line.split() for line in log.read_text().splitlines()]
    first_pid = builds[0][0]
    rebuilt = [rid for pid, rid in builds if pid != first_pid]
    written_first = {line.split()[1] for line in first.stdout.splitlines() if line.startswith("[")}
    # finished records are never redone; the killed batch's 2 unwritten members and the rest run once more
    assert len(written_first) == 2 and len(rebuilt) == 8 - 2 and set(rebuilt).isdisjoint(written_first)
    assert not list(out.rglob("*.tmp")) and all(r["status"] in ("finished", "diverged") for r in runs.values())
