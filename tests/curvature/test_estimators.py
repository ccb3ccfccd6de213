"""Top eigenvalue, spectral norm, Hutchinson trace and the Cauchy (1,1)-norm sketch vs dense."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from curvature_tiny import dense_of, make_mlp, prescribed
from heterogeneity import curvature as hc
from heterogeneity import partition as hp
from heterogeneity.tree import ravel


def test_top_eigenvalue_and_spectral_norm():
    """Spectrum with the largest magnitude negative (-7) and the top eigenvalue 5: the two
    estimators must pick different Ritz values; 40 full-reortho steps on d=60 converge."""
    with jax.enable_x64(True):
        eigs = np.concatenate([[-7.0], np.linspace(-1, 4, 58), [5.0]])
        a = jnp.asarray(prescribed(eigs, seed=3))

        @jax.jit
        def run(a, k):
            return (hc.top_eigenvalue(lambda x: a @ x, jnp.zeros(60), k, num_steps=40),
                    hc.spectral_norm(lambda x: a @ x, jnp.zeros(60), k, num_steps=40))

        top, norm = run(a, jax.random.key(0))
        np.testing.assert_allclose(top.value, 5.0, rtol=1e-10)
        np.testing.assert_allclose(norm.value, 7.0, rtol=1e-10)
        assert top.error_bound < 1e-6 and norm.error_bound < 1e-6


def test_hutchinson_trace():
    """Diagonal matrix: zᵀDz = tr D exactly for Rademacher z (zero variance). Dense MLP
    Hessian: the estimate lies within 4 exact standard errors of the exact trace, where
    Var(zᵀHz) = 2 Σ_{i≠j} H_ij² for Rademacher z, and the reported stderr is within 2x of it."""
    with jax.enable_x64(True):
        diag = jnp.linspace(-1.0, 3.0, 50)
        est = jax.jit(lambda k: hc.hutchinson_trace(lambda x: diag * x, jnp.zeros(50), k, num_probes=8))(
            jax.random.key(0))
        np.testing.assert_allclose(est.trace, float(jnp.sum(diag)), rtol=1e-12)
        np.testing.assert_allclose(est.stderr, 0.0, atol=1e-12)
        h = jnp.asarray(dense_of(make_mlp))
        est = jax.jit(lambda k: hc.hutchinson_trace(lambda x: h @ x, jnp.zeros(h.shape[0]), k, num_probes=200))(
            jax.random.key(1))
        exact = float(jnp.trace(h))
        hn = np.asarray(h)
        se = np.sqrt(2 * (np.sum(hn**2) - np.sum(np.diag(hn) ** 2)) / 200)
        assert se / 2 < float(est.stderr) < 2 * se
        assert abs(float(est.trace) - exact) <= 4 * se


def test_l11_norm_is_algorithm_4():
    """Deterministic check: the HVP-based estimate equals [Xie24, Algorithm 4] evaluated
    with numpy on the dense Hessian and the same Cauchy probes (row-wise median of |Hv|,
    summed over rows)."""
    with jax.enable_x64(True):
        loss_fn, params, batch = make_mlp()
        h = dense_of(make_mlp)
        key = jax.random.key(3)
        est = jax.jit(lambda p, b, k: hc.l11_norm(hc.linearized_hvp(loss_fn, p, b), p, k, num_probes=50))(
            params, batch, key)
        probes = np.stack([np.asarray(jax.random.cauchy(k, (h.shape[0],), jnp.float64))
                           for k in jax.random.split(key, 50)], axis=1)
        rows = np.median(np.abs(h @ probes), axis=1)
        np.testing.assert_allclose(ravel(est.row_sums)[0], rows, rtol=1e-9)
        np.testing.assert_allclose(float(est.value), rows.sum(), rtol=1e-10)


def test_l11_norm_within_10_percent():
    """‖H‖_{1,1} within 10% on 3 seeds ([Xie24, Algorithm 4, Theorem D.2]).

    Tolerance from Theorem D.2's proof: row j's estimate is ``a_j · tan(M_j)``,
    ``a_j = Σ_k |H_jk|``, ``M_j`` the median of n Unif(0, π/2) (Lemma D.1: sub-Gaussian,
    variance proxy π²/(16n)). tan has slope 2 and curvature 4 at π/4, so each row's relative
    error has std ≈ π/(2√n) (0.22 at n = 50) and bias ≈ 2·π²/(16n) (2.5% at n = 50). The
    error of the sum is the a-weighted mean of the row errors: it averages down only as far
    as the rows are independent. Theorem D.2 bounds the perfectly correlated worst case.

    * Block-diagonal matrix (50 independent 10×10 blocks, d = 500), n = 50: rows of
      different blocks see disjoint probe entries, so the 0.22 row std averages over ≥ 50
      independent groups to ≲ 0.03; with the 2.5% bias, 10% is > 2.5σ (measured: std 2.1%,
      0/300 seeds outside 10%).
    * Dense NN Hessian (484-parameter MLP): Cauchy probes are heavy-tailed, so the few largest
      probe entries dominate *every* row of Hv and the rows are nearly perfectly correlated —
      the worst case of Theorem D.2. At n = 50 we measured a 12% std (38% of seeds outside
      10%), so 50 probes cannot certify 10% on a dense Hessian; n = 400 gives
      π/(2√400)·(correlation) ≈ 3.6% std (measured) and bias 0.3%: 10% is ≈ 2.7σ.
    """
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        a = np.zeros((500, 500))
        for b in range(50):
            blk = rng.normal(size=(10, 10))
            a[10 * b: 10 * b + 10, 10 * b: 10 * b + 10] = blk + blk.T
        mat = jnp.asarray(a)
        run = jax.jit(lambda k: hc.l11_norm(lambda x: mat @ x, jnp.zeros(500), k, num_probes=50).value)
        for seed in range(3):
            assert abs(float(run(jax.random.key(seed))) / np.abs(a).sum() - 1) < 0.10, seed

        loss_fn, params, batch = make_mlp()
        exact = np.abs(dense_of(make_mlp)).sum()
        run = jax.jit(lambda p, b, k: hc.l11_norm(hc.linearized_hvp(loss_fn, p, b), p, k, num_probes=400).value)
        for seed in range(3):
            est = float(run(params, batch, jax.random.key(seed)))
            assert abs(est / exact - 1) < 0.10, (seed, est, exact)


def test_blockwise_l11_norm_rows_and_diagonal_blocks():
    """Per-block variants vs exact sums on layer blocks of the MLP Hessian (400 probes and
    10%, as for the dense Hessian in `test_l11_norm_within_10_percent`)."""
    with jax.enable_x64(True):
        loss_fn, params, batch = make_mlp()
        part = hp.by_regex([(r"layers/(\d)", r"layer\1"), (r"head", "head")])
        h = dense_of(make_mlp)
        ids = np.concatenate([np.asarray(x).reshape(-1) for x in jax.tree.leaves(part.block_ids(params))])

        @jax.jit
        def run(p, b, k):
            mv = hc.linearized_hvp(loss_fn, p, b)
            return (hc.blockwise_l11_norm_matvec(mv, p, k, partition=part, num_probes=400),
                    hc.blockwise_l11_norm_matvec(mv, p, k, partition=part, num_probes=400, diagonal=True))

        rows, diag = run(params, batch, jax.random.key(7))
        for i, label in enumerate(part.labels(params)):
            sel = ids == i
            assert abs(float(rows.block(label)) / np.abs(h[sel]).sum() - 1) < 0.10, label
            assert abs(float(diag.block(label)) / np.abs(h[np.ix_(sel, sel)]).sum() - 1) < 0.10, label
        assert rows.labels == diag.labels == tuple(part.labels(params))
        assert bool(np.all(np.asarray(rows.finite))) and bool(np.all(np.asarray(diag.finite)))


def test_bad_probe_count_raises():
    with pytest.raises(ValueError, match="num_probes"):
        hc.l11_norm(lambda x: x, jnp.ones(3), jax.random.key(0), num_probes=0)
