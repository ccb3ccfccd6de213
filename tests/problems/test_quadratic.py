"""Block-diagonal quadratics of [Zhang24, §3.1] and [Tomihari25, App. D.9] against dense float64 references."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import heterogeneity.problems as P
from heterogeneity import partition as hp

KEY = jax.random.key(0)


@pytest.mark.parametrize("case", [1, 2, 3, 4])
@pytest.mark.parametrize("rotation", ["orthogonal", "gaussian"])
def test_hessian_equals_jax_hessian_float64(case, rotation):
    prob = P.quadratic_case(case, key=KEY, rotation=rotation)
    with jax.enable_x64(True):
        params = prob.init_params()
        assert params[prob.block_labels[0]].dtype == jnp.float64
        w0 = prob.params_to_vector(params)
        dense = jax.jit(jax.hessian(lambda w: prob.loss_fn(prob.vector_to_params(w))))(w0)
        np.testing.assert_allclose(np.asarray(dense), prob.hessian, rtol=1e-12, atol=1e-9)
        # gradient and HVP helpers agree with autodiff
        g, g_exact = jax.jit(lambda p: (jax.grad(prob.loss_fn)(p), prob.grad_fn(p)))(params)
        for lab in prob.block_labels:
            np.testing.assert_allclose(np.asarray(g[lab]), np.asarray(g_exact[lab]), rtol=1e-12, atol=1e-9)
        v = prob.vector_to_params(jnp.arange(prob.dim, dtype=jnp.float64))
        hv = prob.params_to_vector(jax.jit(prob.hvp)(params, v))
        np.testing.assert_allclose(np.asarray(hv), prob.hessian @ np.arange(prob.dim), rtol=1e-12)
    # blocks are the principal sub-matrices and there is no coupling between them
    assert prob.off_block_norm == 0.0
    for hb, o, n in zip(prob.block_hessians, prob.block_offsets, prob.block_sizes):
        np.testing.assert_array_equal(hb, prob.hessian[o:o + n, o:o + n])


def test_table_s9_lambda_p_and_block_spectra():
    hetero = P.heterogeneous_quadratic(key=KEY)
    homo = P.homogeneous_quadratic(key=KEY)
    # [Tomihari25, Table S.9]: Λ_P = 4999.0000 (Homo), 1701.3333 (Hetero)
    assert homo.lambda_p == pytest.approx(4999.0, rel=1e-12)
    assert hetero.lambda_p == pytest.approx(5104.0 / 3.0, rel=1e-12)
    assert round(hetero.lambda_p, 4) == 1701.3333
    np.testing.assert_allclose(hetero.block_top_eigenvalues, [3.0, 101.0, 5000.0], rtol=1e-12)
    np.testing.assert_allclose(homo.block_top_eigenvalues, [4998.0, 4999.0, 5000.0], rtol=1e-12)
    np.testing.assert_allclose(homo.block_spectral_norms, homo.block_top_eigenvalues)
    for ev, lam in zip(hetero.block_eigenvalues, P.HETEROGENEOUS_SPECTRA):  # orthogonal Q keeps Λ_l
        np.testing.assert_allclose(ev, lam, rtol=1e-11)
    # cases 3 and 4 share *all* eigenvalues and the condition number 5000 [Zhang24, §3.1]
    np.testing.assert_allclose(hetero.eigenvalues, homo.eigenvalues, rtol=1e-11)
    assert hetero.condition_number == pytest.approx(5000.0, rel=1e-10)
    assert hetero.block_sizes == homo.block_sizes == (3, 3, 3)
    # the Hessian blocks are dense (rotated), not diagonal
    hb = homo.block_hessians[0]
    assert np.abs(hb - np.diag(np.diag(hb))).max() > 100.0


def test_global_quantities_match_dense_numpy():
    prob = P.quadratic_case(1, key=KEY)
    h = prob.hessian
    ev = np.linalg.eigvalsh(h)
    assert prob.trace == pytest.approx(np.trace(h), rel=1e-12)
    assert prob.l11_norm == pytest.approx(np.abs(h).sum(), rel=1e-12)
    assert prob.spectral_norm == pytest.approx(np.abs(ev).max(), rel=1e-12)
    assert prob.frobenius_norm == pytest.approx(np.sqrt((h ** 2).sum()), rel=1e-12)
    assert prob.spectral_norm == pytest.approx(5000.0, rel=1e-10) and ev.min() == pytest.approx(1.0, rel=1e-8)
    assert prob.block_traces.sum() == pytest.approx(prob.trace, rel=1e-12)
    np.testing.assert_allclose(prob.block_l11_norms, [np.abs(b).sum() for b in prob.block_hessians])
    sizes = np.array(prob.block_sizes)
    assert prob.lambda_p == pytest.approx(np.sum(sizes / sizes.sum() * prob.block_spectral_norms))


def test_gaussian_rotation_changes_block_spectra_but_stays_positive_definite():
    prob = P.quadratic_case(3, key=KEY, rotation="gaussian")
    for ev, lam in zip(prob.block_eigenvalues, P.HETEROGENEOUS_SPECTRA):
        assert ev.min() > 0
        assert not np.allclose(ev, lam, rtol=1e-3)  # Q Λ Qᵀ with Gaussian Q is not similar to Λ
    # quantities are computed from the actual matrix
    np.testing.assert_allclose(prob.block_top_eigenvalues, [np.linalg.eigvalsh(b)[-1] for b in prob.block_hessians])


def test_partition_matches_blocks():
    prob = P.quadratic_case(2, key=KEY)
    params = prob.init_params()
    part = prob.partition
    assert part.labels(params) == prob.block_labels == ("block_0", "block_1", "block_2", "block_3")
    assert part.sizes(params) == dict(zip(prob.block_labels, prob.block_sizes))
    g = prob.grad_fn(params)
    gvec = np.asarray(prob.params_to_vector(g), dtype=np.float64)
    want = [np.sum(gvec[o:o + n] ** 2) for o, n in zip(prob.block_offsets, prob.block_sizes)]
    np.testing.assert_allclose(np.asarray(part.block_sq_norms(g)), want, rtol=1e-5)
    # by_leaf on the params gives the same blocks
    assert hp.by_leaf(params).labels(params) == prob.block_labels


def test_lambda_g_at_a_point():
    prob = P.heterogeneous_quadratic(key=KEY)
    with jax.enable_x64(True):
        params = prob.init_params()
        lg = float(jax.jit(prob.lambda_g)(params))
    g = prob.hessian @ prob.x0
    sq = np.array([np.sum(g[o:o + n] ** 2) for o, n in zip(prob.block_offsets, prob.block_sizes)])
    assert lg == pytest.approx(np.sum(sq / sq.sum() * prob.block_spectral_norms), rel=1e-12)
    # gradient–Hessian correlation: the stiff block dominates the gradient, Λ_G ≫ Λ_P (Table S.9)
    assert lg > 4900.0 > prob.lambda_p


def test_case1_heterogeneous_case2_homogeneous_spectra():
    c1 = P.quadratic_case(1, key=KEY)
    c2 = P.quadratic_case(2, key=KEY)
    for prob in (c1, c2):
        assert prob.block_sizes == (25, 25, 25, 25)
        assert prob.condition_number == pytest.approx(5000.0, rel=1e-9)
    top1, top2 = c1.block_top_eigenvalues, c2.block_top_eigenvalues
    assert top1.max() / top1.min() > 100.0  # Transformer-like: blocks live on different scales
    assert top2.max() / top2.min() < 1.5    # CNN-like: similar blocks
    assert c1.lambda_p < 0.5 * c2.lambda_p


def test_user_spectra_via_density_and_rescale():
    nodes = np.array([3.0, 1.0, 2.0, 10.0])
    weights = np.array([1.0, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(P.spectra_from_density(nodes, weights, 4), [1.0, 2.0, 3.0, 10.0])
    np.testing.assert_array_equal(P.spectra_from_density(nodes, [0.0, 0.0, 0.0, 1.0], 3), [10.0] * 3)
    out = P.rescale_spectra([[0.0, 1.0], [3.0, 4.0]], lo=1.0, hi=5000.0)
    np.testing.assert_allclose(np.concatenate(out), [1.0, 1.0 + 4999 / 4, 1.0 + 3 * 4999 / 4, 5000.0])
    prob = P.quadratic_case(1, key=KEY, spectra=[nodes, nodes * 2], )
    assert prob.block_sizes == (4, 4) and prob.condition_number == pytest.approx(5000.0, rel=1e-9)


def test_linear_term_and_minimizer():
    h = np.arange(1.0, 7.0)
    prob = P.block_quadratic([[1.0, 2.0], [3.0, 4.0, 5.0, 6.0]], key=KEY, linear=h)
    with jax.enable_x64(True):
        opt = prob.optimum_params()
        assert float(prob.loss_fn(opt)) == pytest.approx(prob.min_value, rel=1e-12)
        g = prob.params_to_vector(prob.grad_fn(opt))
        assert float(jnp.max(jnp.abs(g))) < 1e-12
    np.testing.assert_allclose(prob.hessian @ prob.minimizer, h, rtol=1e-12)
    assert prob.min_value == pytest.approx(-0.5 * h @ np.linalg.solve(prob.hessian, h))


def test_determinism_and_jit():
    a = P.quadratic_case(4, key=KEY)
    b = P.quadratic_case(4, key=KEY)
    c = P.quadratic_case(4, key=jax.random.key(1))
    np.testing.assert_array_equal(a.hessian, b.hessian)
    np.testing.assert_array_equal(a.x0, b.x0)
    assert not np.allclose(a.hessian, c.hessian)
    params = a.init_params()
    assert params["block_0"].dtype == jnp.float32
    np.testing.assert_allclose(float(jax.jit(a.loss_fn)(params)), 0.5 * a.x0 @ a.hessian @ a.x0, rtol=1e-5)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="case"):
        P.quadratic_case(5, key=KEY)
    with pytest.raises(ValueError, match="rotation"):
        P.quadratic_case(3, key=KEY, rotation="haar")
    with pytest.raises(ValueError, match="spectra"):
        P.quadratic_case(3, key=KEY, spectra=[[1.0]])
    with pytest.raises(ValueError, match="spectra"):
        P.block_quadratic([], key=KEY)
    prob = P.quadratic_case(3, key=KEY)
    with pytest.raises(ValueError, match="block_0"):
        prob.loss_fn({"w": jnp.zeros(9)})
    with pytest.raises(ValueError, match=r"params\['block_1'\]"):
        prob.loss_fn({"block_0": jnp.zeros(3), "block_1": jnp.zeros(4), "block_2": jnp.zeros(3)})
