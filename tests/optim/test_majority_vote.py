"""Majority vote sign methods ([SignMomentum25, Def. 1, Algorithm 2, App. E baselines]).

Workers are a named axis: the same transform runs under ``jax.vmap(axis_name=...)`` and under
``jax.shard_map`` over the 8 simulated CPU devices of tests/conftest.py, bit for bit; the
1-bit (packbits + all_gather) path equals the int8 psum path.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import heterogeneity.optim as ho

AXIS = "workers"
SHAPES = {"b": (3,), "w": (2, 5)}  # ravel order: b then w
D = 13


def test_stochastic_sign_is_unbiased():
    """E[S_R(v)] = v/R ([SignMomentum25, Def. 1]).

    Each coordinate of S_R(v) is ±1 with mean v/R and variance 1 − (v/R)². The mean of K
    independent draws has standard error σ_k = sqrt((1 − (v_k/R)²)/K); by the CLT (K = 20000)
    |mean − v/R| ≤ 5 σ_k fails with probability ≈ 5.7e-7 per coordinate, so the 7-coordinate
    check has a false-alarm probability < 5e-6 (and is deterministic for the fixed keys).
    Coordinates with |v| = R are deterministic and must be exact.
    """
    R, K = 2.0, 20000
    v = jnp.array([-2.0, -1.5, -0.3, 0.0, 0.7, 1.9, 2.0])
    # K independent draws: every element of S_R is drawn independently, so one call on K copies
    draws = ho.stochastic_sign(jnp.broadcast_to(v, (K, v.size)), R, jax.random.key(0))
    assert set(np.unique(np.asarray(draws))) <= {-1.0, 1.0}
    mean = np.asarray(draws.mean(0), np.float64)
    target = np.asarray(v, np.float64) / R
    sigma = np.sqrt((1 - target**2) / K)
    assert np.all(np.abs(mean - target) <= 5 * sigma + 1e-12), (mean, target, sigma)
    np.testing.assert_array_equal(mean[[0, -1]], [-1.0, 1.0])


def test_stochastic_sign_matches_definition_given_the_uniforms():
    R = 1.5
    v = {"a": jnp.linspace(-2, 2, 9), "b": jnp.array([[0.1, -0.2]], jnp.bfloat16)}
    key = jax.random.key(3)
    out = ho.stochastic_sign(v, R, key)
    keys = jax.random.split(jax.random.key_data(key), 2)
    for (name, leaf), k in zip(sorted(v.items()), keys):
        u = np.asarray(jax.random.uniform(k, leaf.shape, jnp.float32))
        p_plus = np.clip((R + np.asarray(leaf, np.float32)) / (2 * R), 0, 1)
        np.testing.assert_array_equal(np.asarray(out[name], np.float32), np.where(u < p_plus, 1.0, -1.0))
        assert out[name].dtype == leaf.dtype


def _worker_grads(n, t):
    rng = np.random.default_rng(100 + t)
    g = {k: rng.normal(size=(n,) + s).astype(np.float32) * 0.8 for k, s in SHAPES.items()}
    g["b"][:, 0] = 0.0  # a coordinate with zero gradient on every worker
    return g


def _params(n):
    return {k: jnp.zeros((n,) + s) for k, s in SHAPES.items()}


def _vmap_run(opt, n, steps=3):
    x = _params(n)
    state = jax.vmap(opt.init)(x)
    step = jax.jit(jax.vmap(lambda g, s, x: opt.update(g, s, x), axis_name=AXIS))
    traj = []
    for t in range(steps):
        u, state = step(jax.tree.map(jnp.asarray, _worker_grads(n, t)), state, x)
        x = optax.apply_updates(x, u)
        traj.append(x)
    return traj, state


def _shard_run(opt, steps=3):
    n = len(jax.devices())
    mesh = jax.make_mesh((n,), (AXIS,))
    shard = NamedSharding(mesh, P(AXIS))

    def local(g, s, x):  # one worker: drop the (1, ...) block axis, run, put it back
        sq = lambda t: jax.tree.map(lambda a: a[0], t)  # noqa: E731
        u, s = opt.update(sq(g), sq(s), sq(x))
        return jax.tree.map(lambda a: a[None], (u, s))

    step = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=P(AXIS), out_specs=P(AXIS)))
    x = jax.device_put(_params(n), shard)
    state = jax.device_put(jax.vmap(opt.init)(_params(n)), shard)
    traj = []
    for t in range(steps):
        g = jax.device_put(jax.tree.map(jnp.asarray, _worker_grads(n, t)), shard)
        u, state = step(g, state, x)
        x = optax.apply_updates(x, u)
        traj.append(x)
    return traj, state


def _assert_same(a, b):
    for ta, tb in zip(a, b):
        for la, lb in zip(jax.tree.leaves(ta), jax.tree.leaves(tb)):
            np.testing.assert_array_equal(np.asarray(la), np.asarray(lb))


OPTS = {
    "mvsm_v1": lambda comm: ho.mvsm(0.1, beta=0.5, version=1, axis_name=AXIS, key=7, communication=comm),
    "mvsm_v2": lambda comm: ho.mvsm(0.1, beta=0.5, version=2, axis_name=AXIS, key=7, communication=comm),
    "mv_signsgd": lambda comm: ho.mv_signsgd(0.1, axis_name=AXIS, communication=comm),
    "sto_signsgd": lambda comm: ho.sto_signsgd(0.1, R=1.0, axis_name=AXIS, key=3, communication=comm),
}


@pytest.mark.parametrize("name", list(OPTS))
def test_shard_map_equals_vmap_and_one_bit_equals_int8(name):
    n = len(jax.devices())
    assert n == 8, "tests/conftest.py sets 8 simulated CPU devices"
    ref, ref_state = _vmap_run(OPTS[name]("int8"), n)
    # shard_map 1-bit == vmap int8 == shard_map int8 (1-bit == int8 shown for MVSM; fast suite)
    comms = ("int8", "1bit") if name.startswith("mvsm") else ("int8",)
    for comm in comms:
        got, got_state = _shard_run(OPTS[name](comm))
        _assert_same(got, ref)
        _assert_same([got_state], [ref_state])
    # every worker holds the same parameters
    for leaf in jax.tree.leaves(ref[-1]):
        np.testing.assert_array_equal(leaf, jnp.broadcast_to(leaf[0], leaf.shape))


def _np_mvsm(n, version, beta, R, key, steps=3, lr=0.1):
    """[SignMomentum25, Algorithm 2], NumPy transcription; uniforms from the documented key streams."""
    x = np.zeros(D)
    v = None
    out = []
    for t in range(steps):
        g = _worker_grads(n, t)
        G = np.concatenate([g["b"].reshape(n, -1), g["w"].reshape(n, -1)], axis=1).astype(np.float64)
        v = G if v is None else (1 - beta) * v + beta * G  # line 4, v_1 = g_1
        k_t = jax.random.fold_in(jax.random.PRNGKey(key), t)
        u = np.stack([np.asarray(jax.random.uniform(jax.random.fold_in(k_t, j), (D,))) for j in range(n)])
        votes = np.where(u < np.clip((R + v.astype(np.float32)) / (2 * R), 0, 1), 1, -1)  # S_R(v^j), line 5
        mean = votes.sum(0) / n
        if version == 1:
            server = np.sign(mean)  # line 7
        else:
            us = np.asarray(jax.random.uniform(jax.random.fold_in(k_t, n), (D,)))
            server = np.where(us < (1 + mean.astype(np.float32)) / 2, 1.0, -1.0)  # line 8, S_1
        x = x - lr * server
        out.append(x.copy())
    return out


@pytest.mark.parametrize("version", [1, 2])
def test_mvsm_matches_numpy_algorithm2(version):
    n, beta, R = 4, 0.5, 1.0
    traj, state = _vmap_run(ho.mvsm(0.1, beta=beta, version=version, R=R, axis_name=AXIS, key=5), n)
    ref = _np_mvsm(n, version, beta, R, key=5)
    for xt, rt in zip(traj, ref):
        flat = np.concatenate([np.asarray(xt["b"][0]).ravel(), np.asarray(xt["w"][0]).ravel()])
        np.testing.assert_allclose(flat, rt, rtol=1e-6, atol=1e-6)
    # per-worker momentum belongs to each worker (not replicated)
    m = np.asarray(state[0].momentum["w"])
    assert not np.allclose(m[0], m[1])


def test_mv_signsgd_matches_numpy_and_zero_gradients_do_not_move():
    n = 4

    def ref(steps=3):
        x, out = np.zeros(D), []
        for t in range(steps):
            g = _worker_grads(n, t)
            G = np.concatenate([g["b"].reshape(n, -1), g["w"].reshape(n, -1)], axis=1)
            dither = np.where((np.arange(n)[:, None] + t) % 2 == 0, 1, -1)
            votes = np.where(G > 0, 1, np.where(G < 0, -1, dither))
            x = x - 0.1 * np.sign(votes.sum(0))
            out.append(x.copy())
        return out

    traj, _ = _vmap_run(ho.mv_signsgd(0.1, axis_name=AXIS), n)
    for xt, rt in zip(traj, ref()):
        flat = np.concatenate([np.asarray(xt["b"][0]).ravel(), np.asarray(xt["w"][0]).ravel()])
        np.testing.assert_allclose(flat, rt, rtol=1e-6, atol=1e-7)
        assert flat[0] == 0.0  # zero gradient on all (even number of) workers: no step


@pytest.mark.parametrize("tie_break", ["zero", "random"])
def test_tie_breaking_for_even_worker_counts(tie_break):
    """Two workers with opposite gradients tie on every coordinate."""
    opt = ho.mv_signsgd(1.0, axis_name=AXIS, tie_break=tie_break, key=1)
    g = {"a": jnp.stack([jnp.arange(1.0, 9.0), -jnp.arange(1.0, 9.0)])}
    x = {"a": jnp.zeros((2, 8))}
    u, _ = jax.vmap(opt.update, axis_name=AXIS)(g, jax.vmap(opt.init)(x), x)
    np.testing.assert_array_equal(u["a"][0], u["a"][1])  # the server's choice is shared
    if tie_break == "zero":
        np.testing.assert_array_equal(u["a"], 0.0)
    else:
        assert set(np.unique(np.asarray(u["a"]))) == {-1.0, 1.0}


def test_single_worker_without_axis():
    opt = ho.mvsm(0.1, beta=0.5, version=1, R=10.0, key=0)
    x = {"a": jnp.zeros(4)}
    u, _ = opt.update({"a": jnp.array([5.0, -5.0, 9.9, -9.9])}, opt.init(x), x)
    step = np.float32(0.1)
    assert set(np.unique(np.asarray(u["a"]))) <= {-step, step}
    assert u["a"][2] == -step and u["a"][3] == step  # S_10(±9.9) = ±1 with probability 0.995


def test_validation():
    with pytest.raises(ValueError, match="communication"):
        ho.mvsm(0.1, communication="2bit", key=0)
    with pytest.raises(ValueError, match="tie_break"):
        ho.mv_signsgd(0.1, tie_break="coin")
    with pytest.raises(ValueError, match="beta"):
        ho.mvsm(0.1, beta=1.5, key=0)
    with pytest.raises(ValueError, match="key"):
        ho.mvsm(0.1, key=jnp.zeros(3))
