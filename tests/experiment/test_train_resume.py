"""Resumable `train(run_dir=...)`: a run killed at any moment resumes and ends bit-identical to an
uninterrupted one (params, optimizer state, history, final metrics and the JSON-lines log); corrupt
or truncated files are reported, moved aside and never trusted; a run_dir of other settings is refused.

The kills are real: this file doubles as the child script (``python test_train_resume.py RUN_DIR MODE N``),
which dies by ``os._exit`` at a chosen moment (while fetching a batch, inside the atomic checkpoint
write, right after it, in the middle of a log line) or by SIGKILL from the test. The moments are drawn
from a seeded generator, so every run of the suite kills at the same places.
"""
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from heterogeneity import partition as hp
from heterogeneity.experiment._checkpoint import CheckpointError, ResumeWarning, RunDirMismatch, load_state, save_state
from heterogeneity.experiment._store import read_jsonl
from heterogeneity.experiment._train import train
from heterogeneity.optim import mvsm

KILLED = 17  # the exit code of a child that killed itself
T = 24
KW = dict(num_steps=T, log_every=3, eval_every=5, checkpoint_every=4)
W_TRUE = np.linspace(-1.0, 1.0, 6).astype(np.float32)


def _loss(p, b):
    return jnp.mean((b["x"] @ p["w"] + p["b"] - b["y"]) ** 2)


def _params():
    return {"w": jnp.zeros(6), "b": jnp.zeros(())}


def _eval(p):
    return {"wnorm": jnp.sum(p["w"] ** 2)}


def run(run_dir, *, hook=None, lr=0.05, params=None, key=1, **over):
    """The test problem: linear regression, Adam, fresh batches per step (drawn with NumPy from the
    step's key: no sampler to compile in every child process), evals, block norms."""
    def batches(step, k):
        if hook is not None:
            hook(step)
        x = np.random.default_rng(np.asarray(jax.random.key_data(k))).normal(size=(8, 6)).astype(np.float32)
        return {"x": x, "y": x @ W_TRUE + 0.1}

    params = _params() if params is None else params
    return train(_loss, params, optax.adam(lr), batches, key=jax.random.key(key), run_dir=run_dir,
                 partition=hp.by_leaf(params), **{"eval_fn": _eval, **KW, **over})


class Stop(Exception):
    """An in-process interruption (for tests that only need a half-finished run_dir)."""


def stop_at(n):
    def hook(step):
        if step == n:
            raise Stop

    return hook


def assert_same_run(got, want, got_dir, want_dir):
    for a, b in zip(jax.tree.leaves((got.params, got.opt_state)), jax.tree.leaves((want.params, want.opt_state)),
                    strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert got.history.keys() == want.history.keys()
    for k in want.history:
        assert got.history[k].dtype == want.history[k].dtype, k
        np.testing.assert_array_equal(got.history[k], want.history[k], err_msg=k)
    assert (got.status, got.diverged_step) == (want.status, want.diverged_step)
    np.testing.assert_equal(got.final, want.final)  # NaN == NaN here
    assert (Path(got_dir) / "metrics.jsonl").read_bytes() == (Path(want_dir) / "metrics.jsonl").read_bytes()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("reference")
    res = run(d)
    assert res.status == "finished" and res.final["steps"] == T
    return res, d


def test_log_and_files_of_an_uninterrupted_run(reference):
    res, d = reference
    lines = read_jsonl(d / "metrics.jsonl")
    train_lines = [r for r in lines if r["kind"] == "train"]
    assert [r["step"] for r in train_lines] == res.history["step"].tolist() == [0, 3, 6, 9, 12, 15, 18, 21, 23]
    assert [r["eval_step"] for r in lines if r["kind"] == "eval"] == [0, 5, 10, 15, 20, 24]
    assert np.array_equal(np.float32([r["loss"] for r in train_lines]), res.history["loss"])  # exact round trip
    assert lines[-1] == {"kind": "end", "status": "finished", "diverged_step": None,
                         "final": {k: res.final[k] for k in sorted(res.final)}}
    # the last `keep=2` periodic checkpoints and the final state; no temporaries left behind
    assert sorted(p.name for p in d.iterdir()) == [
        "ckpt-00000016.npz", "ckpt-00000020.npz", "final.npz", "metrics.jsonl", "program.txt.gz", "run.json"]
    # a rerun returns the recorded result without running a step, and leaves the files as they were
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    again = run(d)
    assert again.num_compiles == 0
    assert_same_run(again, res, d, d)
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before


class _no_resume_warning:
    """A kill leaves nothing corrupt: resuming must not report anything."""

    def __enter__(self):
        self._cm = warnings.catch_warnings(record=True)
        self._seen = self._cm.__enter__()
        warnings.simplefilter("always")

    def __exit__(self, *exc):
        self._cm.__exit__(*exc)
        bad = [str(w.message) for w in self._seen if issubclass(w.category, ResumeWarning)]
        assert not bad, bad


def _child(run_dir, mode, n):
    return subprocess.Popen([sys.executable, __file__, str(run_dir), mode, str(n)], cwd=Path(__file__).parents[2],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _lines(path):
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_killed_runs_resume_bit_identical(reference, tmp_path):
    """Kills at seeded random moments; each resumed run (one of them killed twice) equals the reference."""
    ref, ref_dir = reference
    rng = random.Random(11)
    # os.replace calls of a fresh run: 1 program.txt.gz, 2 run.json, 3-7 the checkpoints of steps 4..20, 8 final.npz
    plans = {
        "during-a-step": [("batch", rng.randrange(1, T))],
        "mid-checkpoint-write": [("replace-before", rng.randrange(3, 9))],
        # killed right after a checkpoint landed, then the resumed process dies inside a log line
        "after-checkpoint-write-then-torn-line": [("replace-after", rng.randrange(3, 7)),
                                                  ("torn-line", rng.randrange(2, 6))],
    }
    procs = {name: _child(tmp_path / name, *steps[0]) for name, steps in plans.items()}
    slow = _child(tmp_path / "sigkill", "slow", 0)
    target, deadline = rng.randrange(3, 12), time.monotonic() + 120
    log = tmp_path / "sigkill" / "metrics.jsonl"
    while slow.poll() is None and _lines(log) < target and time.monotonic() < deadline:
        time.sleep(0.01)
    slow.send_signal(signal.SIGKILL)  # a no-op if the child already finished
    assert slow.wait() in (-signal.SIGKILL, 0)
    for name, proc in procs.items():
        out = proc.communicate()[0].decode()
        assert proc.returncode == KILLED, f"{name}: the child was to kill itself, got {proc.returncode}: {out}"
        for mode, n in plans[name][1:]:  # resume in a new process and kill it again
            again = _child(tmp_path / name, mode, n)
            out = again.communicate()[0].decode()
            assert again.returncode == KILLED, f"{name}: the resumed child was to kill itself: {out}"
    for name in [*plans, "sigkill"]:
        d = tmp_path / name
        with _no_resume_warning():
            res = run(d)
        assert_same_run(res, ref, d, ref_dir)
        assert res.num_compiles == 1 and not list(d.glob(".*.tmp"))  # a cut-short write's temporary is removed


def test_corrupt_checkpoint_is_moved_aside_and_the_previous_one_used(reference, tmp_path):
    """One flipped bit in an array of the newest checkpoint (the zip's CRC catches it; an archive rewritten
    with valid CRCs is caught by the SHA-256, test_state_checkpoint_is_exact_and_checked). A cut-short run.json
    is moved aside too; the checkpoints carry the fingerprint, so nothing is trusted blindly."""
    ref, ref_dir = reference
    with pytest.raises(Stop):
        run(tmp_path, hook=stop_at(19))
    newest = tmp_path / "ckpt-00000016.npz"
    data = newest.read_bytes()
    at = data.index(b"\x93NUMPY") + 200  # inside the first stored array's payload
    newest.write_bytes(data[:at] + bytes([data[at] ^ 1]) + data[at + 1:])
    (tmp_path / "run.json").write_text('{"train": {"num_st')  # and the settings record cut short
    with pytest.warns(ResumeWarning) as seen:
        res = run(tmp_path)
    messages = sorted(str(w.message) for w in seen if w.category is ResumeWarning)
    assert len(messages) == 2
    assert re.search(r"ckpt-00000016\.npz is corrupt \(.*Bad CRC-32.*\); moved it aside to "
                     r"ckpt-00000016\.npz\.corrupt-1", messages[0])
    assert re.search(r"run\.json is corrupt \(unreadable JSON: .*\); moved it aside to run\.json\.corrupt-1",
                     messages[1])
    assert json.loads((tmp_path / "run.json").read_text())["train"]["num_steps"] == T  # recorded again
    assert (tmp_path / "ckpt-00000016.npz.corrupt-1").read_bytes() != (tmp_path / "ckpt-00000016.npz").read_bytes()
    assert_same_run(res, ref, tmp_path, ref_dir)


def test_no_good_checkpoint_left_restarts_and_a_corrupt_final_state_falls_back(reference, tmp_path):
    ref, ref_dir = reference
    with pytest.raises(Stop):
        run(tmp_path, hook=stop_at(10))
    for ckpt in tmp_path.glob("ckpt-*.npz"):
        ckpt.write_bytes(ckpt.read_bytes()[:-10])
    with pytest.warns(ResumeWarning) as seen:
        res = run(tmp_path)
    assert sorted(str(w.message).split(" is corrupt")[0].rsplit("/", 1)[-1] for w in seen
                  if w.category is ResumeWarning) == [
        "ckpt-00000004.npz", "ckpt-00000008.npz"]
    assert_same_run(res, ref, tmp_path, ref_dir)
    # the finished run's final state damaged: reported, and the rest is recomputed from ckpt 20
    final = tmp_path / "final.npz"
    final.write_bytes(final.read_bytes()[:-1])
    with pytest.warns(ResumeWarning, match="final.npz is corrupt"):
        res = run(tmp_path)
    assert res.num_compiles == 1
    assert_same_run(res, ref, tmp_path, ref_dir)


@pytest.mark.parametrize("damage", ["truncate-mid-line", "edit-a-value"])
def test_corrupt_log_is_moved_aside_and_rewritten(reference, tmp_path, damage):
    ref, ref_dir = reference
    with pytest.raises(Stop):
        run(tmp_path, hook=stop_at(14))
    log = tmp_path / "metrics.jsonl"
    text = log.read_bytes()
    log.write_bytes(text[: text.index(b"\n", 100) - 5] if damage == "truncate-mid-line"
                    else text.replace(b'"step":3,', b'"step":4,'))
    with pytest.warns(ResumeWarning, match=r"metrics\.jsonl is corrupt .*differ from line \d+ on"):
        res = run(tmp_path)
    assert (tmp_path / "metrics.jsonl.corrupt-1").exists()
    assert_same_run(res, ref, tmp_path, ref_dir)


def test_a_run_dir_of_other_settings_is_refused(reference, tmp_path):
    with pytest.raises(Stop):
        run(tmp_path, hook=stop_at(6), settings={"lr": 0.05, "seed": 0})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    cases = [
        (dict(lr=0.01), r"program: the compiled train step or eval differs .*first difference at line \d+: "
                        r"'.*-0\.05.*' in the run directory, '.*-0\.009.*' now"),
        (dict(eval_fn=lambda p: {"wnorm": jnp.sum(p["w"] ** 4)}), r"program: .*first difference at line \d+: "
                                                                  r"'.*integer_pow\[y=2\].*' in the run directory"),
        (dict(num_steps=30), r"train\.num_steps: 24 in the run directory, 30 now"),
        (dict(log_every=2), r"train\.log_every: 3 in the run directory, 2 now"),
        (dict(settings={"lr": 0.05, "seed": 1}), r"settings\.seed: 0 in the run directory, 1 now"),
        (dict(key=2), r"digests\.key: the PRNG key differs"),
        (dict(params={"w": jnp.ones(6), "b": jnp.zeros(())}), r"digests\.params: the initial parameter values differ"),
        (dict(params={"w": jnp.zeros(6), "b": jnp.zeros((1,))}),
         r"params: \[\['b', 'float32', \[\]\], \['w', 'float32', \[6\]\]\] in the run directory, "
         r"\[\['b', 'float32', \[1\]\], \['w', 'float32', \[6\]\]\] now"),
        (dict(divergence_factor=None), r"train\.divergence_factor: 1000\.0 in the run directory, None now"),
    ]
    for over, message in cases:
        over.setdefault("settings", {"lr": 0.05, "seed": 0})
        with pytest.raises(RunDirMismatch, match=rf"run_dir {tmp_path} was written by a run with other "
                                                 rf"settings .*{message}"):
            run(tmp_path, **over)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing touched
    # checkpoint_every is not a setting of the result: it may change between restarts
    res = run(tmp_path, settings={"lr": 0.05, "seed": 0}, checkpoint_every=5)
    assert res.status == "finished" and res.num_compiles == 1


def test_iterator_batches_and_majority_vote_state_resume(tmp_path):
    """An iterator is fast-forwarded to the checkpoint's data position; a simulated-worker optimizer's
    state (per-worker momentum, its PRNG key, step counts) comes back exactly."""
    data = [np.random.default_rng(i).normal(size=(4, 3)).astype(np.float32) for i in range(12)]
    hook = {"n": None}

    def items():
        for i, x in enumerate(data):
            if i == hook["n"]:
                raise Stop
            yield x

    def go(d):
        loss_fn = lambda w, b: jnp.mean((b - w) ** 2)  # noqa: E731
        return train(loss_fn, jnp.zeros(3), mvsm(0.05, beta=0.5, axis_name="workers", key=3), items(),
                     num_steps=12, num_workers=2, log_every=2, checkpoint_every=3, run_dir=d, donate=True)

    want = go(tmp_path / "a")
    hook["n"] = 8
    with pytest.raises(Stop):
        go(tmp_path / "b")
    hook["n"] = None
    assert_same_run(go(tmp_path / "b"), want, tmp_path / "b", tmp_path / "a")


def test_a_diverged_run_is_a_recorded_result(tmp_path):
    def go(hook=None):
        def loss_fn(w, s):
            return jnp.sum(w ** 2) * s

        def scales():
            for i in range(10):
                if hook is not None:
                    hook(i)
                yield jnp.float32(10.0 ** i)

        return train(loss_fn, jnp.ones(2), optax.sgd(1e-3), scales(), num_steps=10, checkpoint_every=2,
                     run_dir=tmp_path)

    with pytest.raises(Stop):
        go(stop_at(3))
    res = go()
    assert res.status == "diverged" and res.diverged_step == 4 and res.num_compiles == 1
    again = go()
    assert again.num_compiles == 0 and (again.status, again.diverged_step) == ("diverged", 4)
    np.testing.assert_equal(again.final, res.final)
    last = (tmp_path / "metrics.jsonl").read_bytes().splitlines()[-1].decode()
    assert last == ('{"kind":"end","status":"diverged","diverged_step":4,"final":{"diverged_loss":'
                    f'{res.final["diverged_loss"]!r},"diverged_step":4,"final_loss":"nan","min_loss":'
                    f'{res.final["min_loss"]!r},"steps":4}}}}')


def test_state_checkpoint_is_exact_and_checked(tmp_path):
    trees = {"params": {"w": jnp.arange(3, dtype=jnp.bfloat16) / 3, "n": jnp.arange(2, dtype=jnp.int32)},
             "state": (jax.random.key(5), jnp.float32(0.1))}
    arrays = {"f64": np.float64([1 / 3]), "steps": np.arange(3)}
    path = save_state(tmp_path / "s.npz", trees, arrays=arrays, meta={"step": 3})
    got, got_arrays, meta = load_state(path, trees)
    assert meta == {"step": 3}
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(trees), strict=True):
        assert a.dtype == b.dtype
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for k in arrays:
        assert got_arrays[k].dtype == arrays[k].dtype and np.array_equal(got_arrays[k], arrays[k])
    # rewritten with one value changed: every zip CRC is valid, the recorded SHA-256 is not
    with np.load(path) as z:
        members = {k: z[k] for k in z.files}
    members["tree/params/0"] = members["tree/params/0"] + 1
    np.savez(tmp_path / "t.npz", **members)
    with pytest.raises(CheckpointError, match=r"SHA-256 of the stored arrays does not match"):
        load_state(tmp_path / "t.npz")
    with pytest.raises(CheckpointError, match=r"does not match the run: params: missing \['x'\], unexpected \['w'\]"):
        load_state(path, {"params": {"x": jnp.zeros(3, jnp.bfloat16), "n": jnp.zeros(2, jnp.int32)},
                          "state": trees["state"]})


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"checkpoint_every=5 needs a run_dir"):
        train(lambda w, b: jnp.sum(w ** 2), jnp.ones(2), optax.sgd(0.1), None, num_steps=2, checkpoint_every=5)
    with pytest.raises(ValueError, match=r"checkpoint_every must be None or an int >= 1, got 0"):
        train(lambda w, b: jnp.sum(w ** 2), jnp.ones(2), optax.sgd(0.1), None, num_steps=2, checkpoint_every=0,
              run_dir="unused")


if __name__ == "__main__":  # the child of test_killed_runs_resume_bit_identical
    run_dir, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    hook = None
    if mode == "batch":
        def hook(step):
            if step == n:
                os._exit(KILLED)
    elif mode == "slow":
        def hook(step):
            time.sleep(0.05)
    elif mode in ("replace-before", "replace-after"):
        real_replace, calls = os.replace, [0]

        def replace(src, dst):  # the atomic write's rename: die just before or just after it
            calls[0] += 1
            if calls[0] == n and mode == "replace-before":
                os._exit(KILLED)
            real_replace(src, dst)
            if calls[0] == n:
                os._exit(KILLED)

        os.replace = replace
    elif mode == "torn-line":
        from heterogeneity.experiment import _store

        real_write, calls = _store.JsonlWriter.write_line, [0]

        def write_line(self, line):  # die in the middle of writing a log line
            calls[0] += 1
            if calls[0] == n:
                self._f.write(line[: len(line) // 2])
                self._f.flush()
                os._exit(KILLED)
            real_write(self, line)

        _store.JsonlWriter.write_line = write_line
    run(run_dir, hook=hook)
    sys.exit(0)
