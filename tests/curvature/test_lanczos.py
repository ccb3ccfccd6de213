"""Lanczos on matrices with prescribed spectra: exact eigenvalues, breakdown, float64, oracle."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from matfree import decomp

from curvature_tiny import prescribed
from heterogeneity import curvature as hc

EIGS = np.concatenate([np.linspace(-2.0, -0.5, 10), np.linspace(0.1, 5.0, 25), [9.0]])   # d = 36, distinct


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5))
def _jit_run(a, v0, m, reortho, dtype, return_basis):
    return hc.lanczos(lambda x: a @ x, v0, m, reortho=reortho, dtype=dtype, return_basis=return_basis)


def _run(a, v0, m, reortho, dtype=None, return_basis=False):
    """One compilation per (shape, m, mode): tests share them."""
    return _jit_run(a, v0, m, reortho, dtype, return_basis)


_ritz = jax.jit(hc.ritz)
_quadrature = jax.jit(hc.gauss_quadrature)


def _valid_ritz(res):
    nodes, first, _ = _ritz(res)
    return np.sort(np.asarray(nodes)[: int(res.size)])


def test_full_reortho_reproduces_spectrum_and_stops_cleanly():
    """num_steps > d: the d Ritz values are the eigenvalues; the extra steps freeze (α = β = 0)."""
    with jax.enable_x64(True):
        a = jnp.asarray(prescribed(EIGS))
        v0 = jnp.asarray(np.random.default_rng(1).normal(size=len(EIGS)))
        for m in (len(EIGS) + 14,):
            res = _run(a, v0, m, "full")
            assert int(res.size) == len(EIGS)
            np.testing.assert_allclose(_valid_ritz(res), np.sort(EIGS), atol=1e-10)
            assert np.all(np.isfinite(res.diag)) and np.all(np.isfinite(res.offdiag))
            assert np.all(np.asarray(res.diag)[len(EIGS):] == 0)


def test_rank_deficient_and_zero_matrix_no_nan():
    """Rank-5 matrix in d=30 (β hits 0 after 5 steps) and the zero matrix, both modes."""
    with jax.enable_x64(True):
        eigs = np.zeros(30)
        eigs[:5] = [1.0, 2.0, 3.0, 4.0, 5.0]
        v0 = jnp.asarray(np.random.default_rng(2).normal(size=30))
        for mat in (prescribed(eigs, seed=3), np.zeros((30, 30))):
            for mode in ("full", "none"):
                res = _run(jnp.asarray(mat), v0, 20, mode)
                nodes, weights = _quadrature(res)
                assert np.all(np.isfinite(nodes)) and np.all(np.isfinite(weights))
                np.testing.assert_allclose(np.sum(weights), 1.0, atol=1e-12)
                # the probe's measure: mass (v.q_i)^2 on each nonzero eigenvalue, rest at 0
                q = np.linalg.eigh(mat)[1]
                vn = np.asarray(v0) / np.linalg.norm(v0)
                for k in range(4):
                    exact = vn @ np.linalg.matrix_power(mat, k) @ vn
                    np.testing.assert_allclose(np.sum(weights * nodes**k), exact, rtol=1e-9, atol=1e-9)
            if mat.any():
                # full mode restarts after the 6 seen eigenvalues (5 + 0) and finds zeros with weight 0
                assert int(_run(jnp.asarray(mat), v0, 20, "full").size) == 20
                assert int(_run(jnp.asarray(mat), v0, 20, "none").size) == 6
        # v0 = 0 is replaced by a restart vector instead of dividing by zero
        res = _run(jnp.asarray(prescribed(eigs, seed=3)), jnp.zeros(30), 20, "full")
        assert np.all(np.isfinite(res.diag))


def test_basis_is_orthonormal_and_tridiagonalises():
    with jax.enable_x64(True):
        a = prescribed(EIGS, seed=4)
        v0 = np.random.default_rng(5).normal(size=len(EIGS))
        res = _run(jnp.asarray(a), jnp.asarray(v0), 20, "full", return_basis=True)
        q = np.asarray(res.basis)
        np.testing.assert_allclose(q @ q.T, np.eye(20), atol=1e-12)
        np.testing.assert_allclose(q @ a @ q.T, np.asarray(hc.tridiagonal(res)), atol=1e-11)
        np.testing.assert_allclose(q[0], v0 / np.linalg.norm(v0), atol=1e-14)


def test_matches_matfree_tridiag_sym():
    """matfree's full-reortho tridiagonalisation as an oracle (same recurrence)."""
    with jax.enable_x64(True):
        a = jnp.asarray(prescribed(EIGS, seed=6))
        v0 = jnp.asarray(np.random.default_rng(7).normal(size=len(EIGS)))
        ours = _run(a, v0, 15, "full")
        ref = decomp.tridiag_sym(15, materialize=False)(lambda x: a @ x, v0)
        diag, off = ref.J_small
        np.testing.assert_allclose(ours.diag, diag, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(np.abs(ours.offdiag), np.abs(off), rtol=1e-10, atol=1e-12)


def test_pytree_and_flat_agree_and_float64_scalars():
    a = prescribed(EIGS, seed=8).astype(np.float32)
    v0 = np.random.default_rng(9).normal(size=len(EIGS)).astype(np.float32)
    tree = {"a": jnp.asarray(v0[:10]), "b": jnp.asarray(v0[10:]).reshape(2, 13)}

    def mv_tree(t):
        y = jnp.asarray(a) @ jnp.concatenate([t["a"], t["b"].reshape(-1)])
        return {"a": y[:10], "b": y[10:].reshape(2, 13)}

    flat = _run(jnp.asarray(a), jnp.asarray(v0), 12, "full")
    pyt = jax.jit(lambda t: hc.lanczos(mv_tree, t, 12, return_basis=True))(tree)
    np.testing.assert_array_equal(flat.diag, pyt.diag)
    np.testing.assert_array_equal(flat.offdiag, pyt.offdiag)
    assert pyt.basis["b"].shape == (12, 2, 13)
    with pytest.raises(ValueError, match="enable_x64"):
        hc.lanczos(lambda x: x, jnp.ones(3), 2, dtype=jnp.float64)
    with jax.enable_x64(True):
        res = _run(jnp.asarray(a), jnp.asarray(v0), 12, "none", dtype=jnp.float64)
        assert res.diag.dtype == jnp.float64
        ref = _run(jnp.asarray(a, jnp.float64), jnp.asarray(v0, jnp.float64), 12, "full")
        # before orthogonality is lost, the f32-vector / f64-scalar recurrence tracks float64
        np.testing.assert_allclose(res.diag[:6], ref.diag[:6], rtol=1e-5)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="reortho"):
        hc.lanczos(lambda x: x, jnp.ones(3), 2, reortho="partial-ish")
    with pytest.raises(ValueError, match="num_steps"):
        hc.lanczos(lambda x: x, jnp.ones(3), 0)
    with pytest.raises(ValueError, match="return_basis"):
        hc.lanczos(lambda x: x, jnp.ones(3), 2, reortho="none", return_basis=True)
