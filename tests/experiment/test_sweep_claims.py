"""Scale-out without a scheduler: deterministic shards, O_EXCL claims, stale-lock recovery, concurrent sweeps."""
import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from heterogeneity.experiment._claims import Claims, _proc_start
from heterogeneity.experiment._config import resolve, run_id
from heterogeneity.experiment._sweep import load_config, load_runs, run_sweep, shard_slice

sys.path.insert(0, str(Path(__file__).parent))
from test_sweep_batched import GRID, write_toy  # noqa: E402


def test_shard_slices_partition_any_grid():
    for points in range(0, 23):
        for n in range(1, 8):
            parts = [list(range(points))[shard_slice(points, (i, n))] for i in range(n)]
            assert sum(parts, []) == list(range(points))  # disjoint, in order, complete
            sizes = [len(p) for p in parts]
            assert max(sizes) - min(sizes) <= 1
    for bad in [(2, 2), (-1, 3), (0, 0), (1.0, 2), (True, 2)]:
        with pytest.raises(ValueError, match="shard must be"):
            shard_slice(10, bad)


def _builds(log: Path) -> Counter:
    return Counter(line.split()[1] for line in log.read_text().splitlines())


def test_shards_run_disjoint_points_into_one_directory(tmp_path, monkeypatch):
    log = tmp_path / "builds.log"
    monkeypatch.setenv("TOY_SWEEP_LOG", str(log))
    cfg = load_config(write_toy(tmp_path, grid=GRID[:2], steps=4))
    out = tmp_path / "out"
    results = [run_sweep(cfg, out, shard=(i, 3)) for i in range(3)]
    assert [r.selected for r in results] == [2, 3, 3]
    ids = {run_id("toy", hp) for hp in resolve(cfg)}
    assert _builds(log) == Counter({rid: 1 for rid in ids})  # every point built (and run) exactly once
    assert set(load_runs(out)) == ids and results[-1].summary["complete"]
    assert not results[0].summary["complete"] and results[0].summary["counts"]["pending"] == 6


def _sweep_process(config: Path, out: Path, env: dict, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "heterogeneity.cli", "sweep", "--config", str(config), "--out",
                             str(out), *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_concurrent_sweeps_run_every_point_exactly_once(tmp_path):
    config = write_toy(tmp_path, steps=6)
    out, log = tmp_path / "out", tmp_path / "builds.log"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TOY_SWEEP_LOG": str(log)}
    procs = [_sweep_process(config, out, env, "--no-batch"), _sweep_process(config, out, env, "--max-batch", "2")]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (stdout, stderr) in zip(procs, outputs):
        assert p.returncode == 0, stderr
    ids = {run_id("toy", hp) for hp in resolve(load_config(config))}
    builds = _builds(log)
    assert builds == Counter({rid: 1 for rid in ids}), builds  # no point ran twice, none was left out
    assert set(load_runs(out)) == ids and not list((out / "locks").iterdir())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["counts"]["pending"] == 0


def _write_lock(path: Path, **info) -> None:
    path.write_text(json.dumps({"pid": 1, "host": socket.gethostname(), "token": "x", **info}))


def test_stale_locks_are_recovered_and_live_ones_respected(tmp_path):
    lines = []
    claims = Claims(tmp_path / "locks", timeout=60, log=lines.append)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = {"pid": sleeper.pid, "proc_start": _proc_start(sleeper.pid)}
        _write_lock(claims.path("a"), **live)
        assert not claims.claim("a")  # a live process on this host holds it
        sleeper.kill()
        sleeper.wait()
        assert claims.claim("a")  # its holder is gone: broken and claimed
        assert "broke the stale lock a.lock" in lines[-1] and "is gone" in lines[-1]
    finally:
        sleeper.kill()
        sleeper.wait()
    held = json.loads(claims.path("a").read_text())
    assert held["pid"] == os.getpid() and held["host"] == socket.gethostname() and held["token"] == claims.token
    assert not Claims(tmp_path / "locks", timeout=60).claim("a")  # now ours, and we are alive

    _write_lock(claims.path("b"), pid=os.getpid(), proc_start="1")  # our pid, another start time: a reused pid
    assert claims.claim("b") and "is gone" in lines[-1]
    _write_lock(claims.path("c"), host="elsewhere", pid=12345)  # another host, fresh heartbeat
    assert not claims.claim("c")
    old = time.time() - 120
    os.utime(claims.path("c"), (old, old))  # no heartbeat for 2 x timeout
    assert claims.claim("c") and "no heartbeat for" in lines[-1]
    claims.path("d").write_text("")  # a claim whose owner has not written its JSON yet: live while fresh
    assert not claims.claim("d")
    os.utime(claims.path("d"), (old, old))
    assert claims.claim("d")
    (claims.dir / "e.lock.break").write_text("")  # someone else is breaking e: leave it to them
    _write_lock(claims.path("e"), host="elsewhere")
    os.utime(claims.path("e"), (old, old))
    assert not claims.claim("e") and claims.path("e").exists()

    claims.release("a")
    assert not claims.path("a").exists() and claims.held() == ["b", "c", "d"]
    claims.close()
    assert not [p for p in (tmp_path / "locks").iterdir() if p.name[0] in "abcd"]


def test_heartbeat_keeps_a_held_lock_fresh(tmp_path):
    with Claims(tmp_path, timeout=0.4) as claims:  # heartbeat every 0.1 s
        assert claims.claim("x")
        old = time.time() - 10
        os.utime(claims.path("x"), (old, old))
        deadline = time.time() + 5
        while os.stat(claims.path("x")).st_mtime < old + 5 and time.time() < deadline:
            time.sleep(0.05)
        assert os.stat(claims.path("x")).st_mtime > time.time() - 2
        assert not Claims(tmp_path, timeout=0.4).claim("x")  # fresh: not stale for another process
    assert not claims.path("x").exists()
