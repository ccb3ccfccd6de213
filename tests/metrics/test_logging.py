"""Tests for the Optax logging hook `log_block_stats`."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from heterogeneity import metrics as hm
from heterogeneity import partition as hp


def _setup():
    params = {"a": jnp.ones((3, 2)), "b": jnp.full((4,), 2.0), "c": jnp.zeros((1,))}
    target = {"a": jnp.arange(6.0).reshape(3, 2), "b": jnp.asarray([0.0, 10.0, -3.0, 1.0]), "c": jnp.asarray([0.5])}

    def loss_fn(p):
        return sum(jnp.sum((p[k] - target[k]) ** 2) for k in p)

    return params, loss_fn


def test_log_block_stats_passes_updates_and_records():
    params, loss_fn = _setup()
    part = hp.by_leaf(params)
    tx = optax.chain(hm.log_block_stats(part), optax.sgd(0.1))
    ref = optax.sgd(0.1)
    state, ref_state = tx.init(params), ref.init(params)

    @jax.jit
    def step(p, s, rs):
        g = jax.grad(loss_fn)(p)
        u, s = tx.update(g, s, p)
        ru, rs = ref.update(g, rs, p)
        return optax.apply_updates(p, u), s, ru, u, g, rs

    p = params
    for i in range(3):
        p_new, state, ru, u, g, ref_state = step(p, state, ref_state)
        for x, y in zip(jax.tree.leaves(u), jax.tree.leaves(ru)):
            np.testing.assert_array_equal(x, y)  # passes the updates through unchanged
        stats = hm.find_block_stats(state)
        norms = np.array([np.linalg.norm(g[k]) for k in ("a", "b", "c")])
        normalized = norms / np.sqrt([6, 4, 1])
        np.testing.assert_allclose(stats.norms, norms, rtol=1e-6)
        np.testing.assert_allclose(stats.shares, normalized / normalized.sum(), rtol=1e-6)
        np.testing.assert_allclose(stats.gini, hm.gini(jnp.asarray(normalized)), rtol=1e-6)
        assert int(stats.count) == i + 1
        p = p_new


def test_log_block_stats_state_dtypes_and_errors():
    with jax.enable_x64(True):
        params = {"w": jnp.ones(3, jnp.float64)}
        tx = hm.log_block_stats(hp.by_leaf(params))
        s0 = tx.init(params)
        _, s1 = tx.update({"w": jnp.ones(3, jnp.float64)}, s0)
        assert jax.tree.map(lambda x: x.dtype, s0) == jax.tree.map(lambda x: x.dtype, s1)
        assert s0.norms.dtype == jnp.float64
    with pytest.raises(ValueError, match="Partition"):
        hm.log_block_stats("by_leaf")
    with pytest.raises(ValueError, match="no BlockStatsState"):
        hm.find_block_stats(optax.sgd(0.1).init({"w": jnp.ones(2)}))
