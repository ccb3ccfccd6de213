"""`train` over a device mesh, on the 8 simulated CPU devices of tests/conftest.py.

* Data parallel (``mesh=``): the batch's leading axis is sharded over the devices, params and
  optimizer state replicated; the result equals single-device training up to the summation
  order of the cross-device reductions.
* Majority vote over the real device axis (``mesh=`` with ``num_workers=8``, `jax.shard_map`):
  equals the ``jax.vmap`` simulation. The votes are integers, so the parameters agree bit for
  bit; the per-worker gradients are computed by one batched program under vmap and by eight
  unbatched ones on devices, and XLA:CPU orders their sums differently, so momentum and the
  logged loss / gradient metrics agree to float32 rounding.

Tolerance: "float32 rounding" is checked as ``max|got − want| ≤ 1e-5 · max|want|`` per leaf (an
entrywise rtol would fail on entries near zero). Observed after 20 steps: at most 5e-7 of the
leaf's scale (a few ulps) for Adam and SGD-momentum data parallel and for the MVSM momentum.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from heterogeneity import optim as ho
from heterogeneity import partition as hp
from heterogeneity.experiment._train import train

W_TRUE = jnp.linspace(-1.0, 1.0, 6)
SEEN = []  # batch shardings seen while tracing the loss


def loss_fn(p, b):
    jax.debug.inspect_array_sharding(b["x"], callback=SEEN.append)
    h = jnp.tanh(b["x"] @ p["w1"])
    return jnp.mean((h @ p["w2"] - b["y"]) ** 2)


@jax.jit
def batches(step, key):
    x = jax.random.normal(key, (32, 6))
    return {"x": x, "y": jnp.tanh(x @ W_TRUE)}


PARAMS = {"w1": jax.random.normal(jax.random.key(0), (6, 16)) * 0.3, "w2": jnp.zeros(16)}
KW = dict(num_steps=20, key=jax.random.key(1), log_every=5, partition=hp.by_leaf(PARAMS))


def _leaves(res):
    return [np.asarray(x) for x in jax.tree.leaves((res.params, res.opt_state))]


def assert_close(got, want, tol=1e-5, what=""):
    """Equal up to float32 rounding, measured against the scale of ``want`` (module docstring)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, what
    err, scale = np.max(np.abs(got - want), initial=0.0), np.max(np.abs(want), initial=0.0)
    assert err <= tol * scale, f"{what}: max |difference| {err:.3g} exceeds {tol:g} x scale {scale:.3g}"


def test_data_parallel_equals_single_device():
    assert len(jax.devices()) == 8, "tests/conftest.py sets 8 simulated CPU devices"
    single = train(loss_fn, PARAMS, optax.adam(0.02), batches, **KW)
    SEEN.clear()
    mesh = jax.make_mesh((8,), ("data",))
    dp = train(loss_fn, PARAMS, optax.adam(0.02), batches, mesh=mesh, **KW)
    assert dp.status == "finished" and dp.num_compiles == 1
    # the batch was split 8 ways inside the step; parameters and Adam's moments are replicated
    assert SEEN and all(s.num_devices == 8 and not s.is_fully_replicated for s in SEEN)
    assert all(x.sharding.is_fully_replicated for x in jax.tree.leaves((dp.params, dp.opt_state)))
    for got, want in zip(_leaves(dp), _leaves(single), strict=True):
        assert_close(got, want, what="Adam state")
    for k in ("loss", "grad_norm", "grad_l1", "block_norms"):
        assert_close(dp.history[k], single.history[k], what=k)
    # a 2-D mesh: the batch is split over both axes; SGD with momentum
    mesh2 = jax.make_mesh((4, 2), ("data", "model"))
    a = train(loss_fn, PARAMS, optax.sgd(0.1, momentum=0.9), batches, **KW)
    b = train(loss_fn, PARAMS, optax.sgd(0.1, momentum=0.9), batches, mesh=mesh2, **KW)
    for got, want in zip(_leaves(b), _leaves(a), strict=True):
        assert_close(got, want, what="SGD state")


OPTS = {
    "mv_signsgd": lambda: ho.mv_signsgd(0.01, axis_name="workers"),
    "sto_signsgd": lambda: ho.sto_signsgd(0.01, R=1.0, axis_name="workers", key=3),
    "mvsm_v1": lambda: ho.mvsm(0.01, beta=0.5, version=1, axis_name="workers", key=7),
    "mvsm_v2": lambda: ho.mvsm(0.01, beta=0.5, version=2, axis_name="workers", key=7),
}


@pytest.mark.parametrize("name", list(OPTS))
def test_majority_vote_over_devices_equals_vmap_simulation(name):
    mesh = jax.make_mesh((8,), ("workers",))
    sim = train(loss_fn, PARAMS, OPTS[name](), batches, num_workers=8, **KW)
    dev = train(loss_fn, PARAMS, OPTS[name](), batches, num_workers=8, mesh=mesh, **KW)
    assert dev.status == sim.status == "finished" and dev.num_compiles == 1
    assert sim.history["loss"][-1] < sim.history["loss"][0]  # it trains
    # the optimizer state lives on its worker's device; the parameters everywhere
    assert all(x.sharding.spec == P("workers") for x in jax.tree.leaves(dev.opt_state))
    assert all(x.sharding.is_fully_replicated for x in jax.tree.leaves(dev.params))
    for got, want in zip(jax.tree.leaves(dev.params), jax.tree.leaves(sim.params), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))  # integer votes: exact
    for got, want in zip(jax.tree.leaves(dev.opt_state), jax.tree.leaves(sim.opt_state), strict=True):
        got, want = np.asarray(jax.random.key_data(got) if jnp.issubdtype(got.dtype, jax.dtypes.prng_key) else got), \
            np.asarray(jax.random.key_data(want) if jnp.issubdtype(want.dtype, jax.dtypes.prng_key) else want)
        assert got.dtype == want.dtype and got.shape == want.shape
        if np.issubdtype(got.dtype, np.inexact):  # per-worker momentum: float rounding (module docstring)
            assert_close(got, want, what="momentum")
        else:  # step counts and PRNG keys
            np.testing.assert_array_equal(got, want)
    for k in ("loss", "grad_norm", "grad_l1", "block_norms"):
        assert_close(dev.history[k], sim.history[k], what=k)


def test_mesh_runs_resume_bit_identical(tmp_path):
    """Per-device worker states are gathered into the checkpoint and put back on their devices."""
    mesh = jax.make_mesh((8,), ("workers",))

    class Stop(Exception):
        pass

    def go(d, stop=None):
        def fetch(step, key):
            if step == stop:
                raise Stop
            return batches(step, key)

        return train(loss_fn, PARAMS, OPTS["mvsm_v1"](), fetch, num_workers=8, mesh=mesh, run_dir=d,
                     checkpoint_every=3, **KW)

    want = go(tmp_path / "a")
    with pytest.raises(Stop):
        go(tmp_path / "b", stop=11)
    got = go(tmp_path / "b")
    assert got.num_compiles == 1 and all(x.sharding.spec == P("workers") for x in jax.tree.leaves(got.opt_state))
    for a, b in zip(_leaves(got), _leaves(want), strict=True):
        np.testing.assert_array_equal(a, b)
    for k in want.history:
        np.testing.assert_array_equal(got.history[k], want.history[k])
    assert (tmp_path / "a" / "metrics.jsonl").read_bytes() == (tmp_path / "b" / "metrics.jsonl").read_bytes()
    # a run_dir of the simulated workers is not one of the device workers
    train(loss_fn, PARAMS, OPTS["mvsm_v1"](), batches, num_workers=8, run_dir=tmp_path / "c", **KW)
    with pytest.raises(ValueError, match=r"train\.mesh: None in the run directory, "
                                         r"\{'axes': \['workers'\], 'shape': \[8\]\} now"):
        train(loss_fn, PARAMS, OPTS["mvsm_v1"](), batches, num_workers=8, mesh=mesh, run_dir=tmp_path / "c", **KW)


def test_mesh_errors():
    mesh = jax.make_mesh((8,), ("workers",))
    odd = lambda step, key: {"x": jnp.ones((12, 6)), "y": jnp.ones(12)}  # noqa: E731
    with pytest.raises(ValueError, match=r"split over mesh axes \('workers',\) \(8 devices\), so every batch "
                                         r"leaf needs a leading axis divisible by 8; got a leaf of shape \(12, 6\)"):
        train(loss_fn, PARAMS, optax.sgd(0.1), odd, mesh=mesh, **KW)
    with pytest.raises(ValueError, match=r"num_workers=4 must equal the size of mesh axis 'workers' \(8\)"):
        train(loss_fn, PARAMS, OPTS["mv_signsgd"](), batches, num_workers=4, mesh=mesh, **KW)
    with pytest.raises(ValueError, match=r"axis_name='workers', but the mesh has axes \('data',\)"):
        train(loss_fn, PARAMS, OPTS["mv_signsgd"](), batches, num_workers=8, mesh=jax.make_mesh((8,), ("data",)), **KW)
    with pytest.raises(ValueError, match=r"mesh must be a jax.sharding.Mesh .*got list"):
        train(loss_fn, PARAMS, optax.sgd(0.1), batches, mesh=list(jax.devices()), **KW)
