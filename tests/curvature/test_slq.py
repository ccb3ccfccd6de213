"""SLQ: Gauss-quadrature moments equal vᵀHᵏv; pytree/flat and key reproducibility."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from curvature_tiny import dense_of, make_mlp
from heterogeneity import curvature as hc
from heterogeneity.curvature._slq import probe_vector
from heterogeneity.tree import ravel

M, P = 8, 3


def test_moments_equal_quadratic_forms():
    """Σ_j w_j x_j^k = vᵀHᵏv for k < 2m ([Zhang24, Theorem 2]/4) on the 484-parameter MLP
    Hessian, float64, for every probe; both re-orthogonalisation modes (m = 8 is far below
    the point where the plain recurrence loses orthogonality)."""
    with jax.enable_x64(True):
        loss_fn, params, batch = make_mlp()
        h = dense_of(make_mlp)
        key = jax.random.key(0)
        both = jax.jit(lambda p, b, k: [hc.slq(hc.linearized_hvp(loss_fn, p, b), p, k, num_steps=M, num_probes=P,
                                               reortho=mode) for mode in ("full", "none")])(params, batch, key)
        lam_max = np.max(np.abs(np.linalg.eigvalsh(h)))
        for spec, (i, k) in ((s, ik) for s in both for ik in enumerate(jax.random.split(key, P))):
            assert spec.nodes.shape == spec.weights.shape == (P, M)
            np.testing.assert_allclose(np.sum(spec.weights, 1), 1.0, atol=1e-12)
            v = np.asarray(probe_vector(k, h.shape[0], jnp.float64, "rademacher"))
            hv = v.copy()
            for power in range(1, 2 * M):
                hv = h @ hv
                exact = v @ hv
                quad = np.sum(np.asarray(spec.weights[i]) * np.asarray(spec.nodes[i]) ** power)
                # relative to the largest possible value |λ|max^k
                assert abs(quad - exact) <= 1e-9 * lam_max**power, (power, quad, exact)


def test_full_krylov_space_gives_probe_measure_exactly():
    """num_steps ≥ d on a prescribed spectrum: nodes are the eigenvalues, weights (vᵀq_i)²."""
    from curvature_tiny import prescribed

    with jax.enable_x64(True):
        eigs = np.linspace(-1.0, 4.0, 20)
        a = prescribed(eigs, seed=11)
        spec = jax.jit(lambda a, k: hc.slq(lambda x: a @ x, jnp.zeros(20), k, num_steps=24, num_probes=2,
                                           probe="normal"))(jnp.asarray(a), jax.random.key(4))
        q = np.linalg.eigh(a)[1]
        for i, k in enumerate(jax.random.split(jax.random.key(4), 2)):
            v = np.asarray(probe_vector(k, 20, jnp.float64, "normal"))
            np.testing.assert_allclose(np.asarray(spec.nodes[i])[:20], eigs, atol=1e-10)
            np.testing.assert_allclose(np.asarray(spec.weights[i])[:20], (q.T @ v) ** 2, atol=1e-10)
            assert np.all(np.asarray(spec.weights[i])[20:] == 0)


def test_pytree_flat_and_key_reproducibility():
    loss_fn, params, batch = make_mlp()
    params = jax.tree.map(lambda x: x.astype(jnp.float32), params)
    batch = dict(batch, x=batch["x"].astype(jnp.float32), w=batch["w"].astype(jnp.float32))
    flat, unravel = ravel(params)

    @jax.jit
    def both(p, b, k):
        mv = hc.linearized_hvp(loss_fn, p, b)
        tree = hc.slq(mv, p, k, num_steps=6, num_probes=2)
        flat_spec = hc.slq(lambda x: ravel(mv(unravel(x)))[0], ravel(p)[0], k, num_steps=6, num_probes=2)
        return tree, flat_spec

    a, b = both(params, batch, jax.random.key(5))
    np.testing.assert_array_equal(a.nodes, b.nodes)
    np.testing.assert_array_equal(a.weights, b.weights)
    again, _ = both(params, batch, jax.random.key(5))
    np.testing.assert_array_equal(a.nodes, again.nodes)
    other, _ = both(params, batch, jax.random.key(6))
    assert not np.allclose(a.nodes, other.nodes)


def test_vmaps_over_keys():
    """Diagnostics vmap over PRNG keys: a batch of keys gives the per-key results."""
    a = jnp.diag(jnp.linspace(0.0, 1.0, 12))
    keys = jax.random.split(jax.random.key(9), 3)

    def run(k):
        return hc.slq(lambda x: a @ x, jnp.zeros(12), k, num_steps=5, num_probes=2)

    batched = jax.jit(jax.vmap(run))(keys)
    single = jax.jit(run)(keys[1])
    np.testing.assert_allclose(batched.nodes[1], single.nodes, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(batched.weights[1], single.weights, rtol=1e-5, atol=1e-7)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="probe"):
        hc.slq(lambda x: x, jnp.ones(4), jax.random.key(0), num_steps=2, probe="cauchy")
    with pytest.raises(ValueError, match="num_probes"):
        hc.slq(lambda x: x, jnp.ones(4), jax.random.key(0), num_steps=2, num_probes=0)


def test_map_probes_single_item_runs_unbatched_with_the_same_result():
    """One item skips vmap (XLA:CPU runs a batch-of-1 Lanczos basis ~3x slower), same numbers and
    shapes as the vmapped and chunked paths, and pytree outputs keep their leading axis."""
    from heterogeneity.curvature._slq import map_probes

    rng = np.random.default_rng(0)
    m = rng.normal(size=(9, 9))
    a = jnp.asarray(m + m.T, jnp.float32)

    def one(k):
        v = jax.random.normal(k, (9,))
        return {"hv": a @ v, "q": jnp.vdot(v, a @ v)}

    keys = jax.random.split(jax.random.key(0), 3)
    full = map_probes(one, keys, None)
    for n, batch_size in ((1, None), (1, 1), (3, 2)):
        got = map_probes(one, keys[:n], batch_size)
        assert got["hv"].shape == (n, 9) and got["q"].shape == (n,)
        np.testing.assert_allclose(got["hv"], full["hv"][:n], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(got["q"], full["q"][:n], rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="batch_size"):
        map_probes(one, keys[:1], 0)
