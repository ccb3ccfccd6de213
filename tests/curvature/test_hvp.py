"""HVP against dense float64 Hessians; micro-batch averaging; linearization reuse."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from curvature_tiny import dense_of, make_attention, make_mlp
from heterogeneity import curvature as hc
from heterogeneity.tree import ravel


@pytest.mark.parametrize("make", [make_mlp, make_attention])
def test_hvp_equals_dense_hessian_times_v(make):
    with jax.enable_x64(True):
        loss_fn, params, batch = make()
        flat, unravel = ravel(params)
        v = jax.random.normal(jax.random.key(1), flat.shape, flat.dtype)
        dense = dense_of(make)
        np.testing.assert_allclose(dense, dense.T, atol=1e-12)
        want = dense @ v

        @jax.jit
        def both(p, b, t):
            return hc.hvp(loss_fn, p, b, t), hc.linearized_hvp(loss_fn, p, b)(t)

        got, lin = both(params, batch, unravel(v))
        np.testing.assert_allclose(ravel(got)[0], want, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(ravel(lin)[0], want, rtol=1e-10, atol=1e-12)


def test_microbatched_hvp_equals_full_batch():
    with jax.enable_x64(True):
        loss_fn, params, batch = make_mlp()
        flat, unravel = ravel(params)
        v = unravel(jax.random.normal(jax.random.key(2), flat.shape, flat.dtype))
        mb = hc.microbatch(batch, 4)
        assert mb.num_microbatches == 4

        @jax.jit
        def three(p, b, m, t):
            return hc.hvp(loss_fn, p, b, t), hc.hvp(loss_fn, p, m, t), hc.linearized_hvp(loss_fn, p, m)(t)

        full, got, lin = (ravel(x)[0] for x in three(params, batch, mb, v))
        # averaged, not summed (a sum would be 4x the full-batch HVP)
        np.testing.assert_allclose(got, full, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(lin, full, rtol=1e-10, atol=1e-13)


def test_microbatch_counts_weight_unequal_microbatches():
    """Micro-batches padded to 8 rows with 8, 5, 3, 8 real examples: weighting by counts
    reproduces the HVP of the 24 real examples as one batch."""
    with jax.enable_x64(True):
        loss_fn, params, batch = make_mlp()
        counts = np.array([8, 5, 3, 8])
        w = np.zeros(32)
        for m, c in enumerate(counts):
            w[8 * m: 8 * m + c] = 1.0
        padded = dict(batch, w=jnp.asarray(w))
        real = {k: v[w > 0] for k, v in padded.items()}
        flat, unravel = ravel(params)
        v = unravel(jax.random.normal(jax.random.key(3), flat.shape, flat.dtype))
        mb, mb_equal = hc.microbatch(padded, 4, counts=counts), hc.microbatch(padded, 4)

        @jax.jit
        def run(p, r, m, m_eq, t):
            return (hc.hvp(loss_fn, p, r, t), hc.hvp(loss_fn, p, m, t), hc.hvp(loss_fn, p, m_eq, t),
                    hc.mean_loss(loss_fn, p, m), loss_fn(p, r))

        want, got, unweighted, loss_mb, loss_real = run(params, real, mb, mb_equal, v)
        want, got, unweighted = (ravel(x)[0] for x in (want, got, unweighted))
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(loss_mb, loss_real, rtol=1e-12)
        assert not np.allclose(unweighted, want, rtol=1e-3)


def test_microbatched_hvp_memory_is_flat():
    """The scan keeps one micro-batch alive: compiled temp memory does not grow with M."""
    loss_fn, params, batch = make_mlp(n=64)
    params = jax.tree.map(lambda x: x.astype(jnp.float32), params)
    batch = dict(batch, x=batch["x"].astype(jnp.float32), w=batch["w"].astype(jnp.float32))
    big = jax.tree.map(lambda x: jnp.concatenate([x] * 32), batch)   # 2048 examples
    temps = {}
    for m in (1, 16):
        mb = hc.microbatch(jax.tree.map(lambda x: x[: 2048 // 16 * m], big), m) if m > 1 else \
            hc.microbatch(jax.tree.map(lambda x: x[:128], big), 1)
        mem = jax.jit(hc.hvp, static_argnums=0).lower(loss_fn, params, mb, params).compile().memory_analysis()
        if mem is None:
            pytest.skip("backend gives no memory analysis")
        temps[m] = mem.temp_size_in_bytes
    assert temps[16] <= 1.1 * temps[1] + 4096, temps


def test_bad_inputs_raise():
    loss_fn, params, batch = make_mlp()
    with pytest.raises(ValueError, match="structure of params"):
        hc.hvp(loss_fn, params, batch, {"head": params["head"]})
    with pytest.raises(ValueError, match="not divisible"):
        hc.microbatch(batch, 5)
    with pytest.raises(ValueError, match="counts must have shape"):
        hc.hvp(loss_fn, params, hc.MicroBatched(hc.microbatch(batch, 4).batch, np.ones(3)), params)
    with pytest.raises(ValueError, match="same leading micro-batch axis"):
        hc.hvp(loss_fn, params, hc.MicroBatched({"x": np.zeros((4, 2)), "y": np.zeros((3, 2))}), params)
