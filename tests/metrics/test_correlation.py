"""Tests for the correlation metrics ([Tomihari25, Figs. 1–2, Assumption 4.8]) against SciPy / NumPy."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from heterogeneity import curvature as hc
from heterogeneity import metrics as hm


def test_rank_spearman_pearson_match_scipy():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, 40).astype(float)  # many ties
    y = x + rng.normal(size=40)
    np.testing.assert_allclose(hm.rankdata(jnp.asarray(x)), scipy.stats.rankdata(x))
    np.testing.assert_allclose(hm.spearman(jnp.asarray(x), jnp.asarray(y)), scipy.stats.spearmanr(x, y)[0], rtol=1e-5)
    np.testing.assert_allclose(hm.pearson(jnp.asarray(x), jnp.asarray(y)), scipy.stats.pearsonr(x, y)[0], rtol=1e-5)


def test_log_correlation_drops_nonpositive_pairs():
    rng = np.random.default_rng(1)
    x = np.exp(rng.normal(size=30))
    y = x ** 1.5 * np.exp(0.3 * rng.normal(size=30))
    y[3] = 0.0  # dropped from the log-scale Pearson only
    c = hm.log_correlation(jnp.asarray(x), jnp.asarray(y))
    keep = y > 0
    np.testing.assert_allclose(c.pearson_log, scipy.stats.pearsonr(np.log10(x[keep]), np.log10(y[keep]))[0], rtol=1e-5)
    np.testing.assert_allclose(c.spearman, scipy.stats.spearmanr(x, y)[0], rtol=1e-5)
    assert int(c.num_log) == 29
    with pytest.raises(ValueError, match="same length"):
        hm.log_correlation(jnp.ones(3), jnp.ones(4))


def test_gradient_hessian_correlation_averages_batches():
    rng = np.random.default_rng(2)
    g = np.exp(rng.normal(size=(4, 12)))
    h = -np.exp(rng.normal(size=(4, 12)))  # signed dominant eigenvalues: magnitudes are used
    c = hm.gradient_hessian_correlation(jnp.asarray(g), jnp.asarray(h))
    gm, hm_ = g.mean(0), np.abs(h).mean(0)
    np.testing.assert_allclose(c.spearman, scipy.stats.spearmanr(gm, hm_)[0], rtol=1e-5)
    np.testing.assert_allclose(c.pearson_log, scipy.stats.pearsonr(np.log10(gm), np.log10(hm_))[0], rtol=1e-5)
    perfect = hm.gradient_hessian_correlation(jnp.asarray(gm), jnp.asarray(3 * gm ** 2))
    assert float(perfect.spearman) == pytest.approx(1.0) and float(perfect.pearson_log) == pytest.approx(1.0, abs=1e-5)


def test_coordinate_noise_against_direct_gradients():
    rng = np.random.default_rng(3)
    n, d, m = 32, 6, 4

    def loss_fn(p, batch):
        xb, yb = batch
        return jnp.mean((xb @ p["w"] + p["b"][0] - yb) ** 2 + 0.1 * p["b"][1] ** 2 * yb ** 2)

    with jax.enable_x64(True):
        x = jnp.asarray(rng.normal(size=(n, d)))
        y = jnp.asarray(rng.normal(size=(n,)))
        params = {"w": jnp.asarray(rng.normal(size=(d,))), "b": jnp.asarray([0.1, -0.2])}
        out = jax.jit(lambda p, k: hm.coordinate_noise(loss_fn, p, hc.microbatch((x, y), m), k, num_coords=5))(
            params, jax.random.key(0))
    xn, yn, w, b = np.asarray(x), np.asarray(y), np.asarray(params["w"]), np.asarray(params["b"])

    def grad_numpy(xb, yb):  # analytic gradient in ravel order (sorted keys: b then w)
        r = xb @ w + b[0] - yb
        return np.r_[2 * r.mean(), 0.2 * b[1] * np.mean(yb ** 2), 2 * (r[:, None] * xb).mean(0)]

    per_batch = np.stack([grad_numpy(xn[i * 8:(i + 1) * 8], yn[i * 8:(i + 1) * 8]) for i in range(m)])
    full = grad_numpy(xn, yn)
    idx = np.asarray(out.indices)
    assert len(set(idx.tolist())) == 5 and idx.max() < d + 2
    np.testing.assert_allclose(out.full_grad, full[idx], rtol=1e-10)
    np.testing.assert_allclose(out.batch_grads, per_batch[:, idx], rtol=1e-10)
    err = (per_batch[:, idx] - full[idx]) ** 2
    np.testing.assert_allclose(out.error_sq, err, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(out.mean_error_sq, err.mean(0), rtol=1e-10, atol=1e-14)
    ratio = err.mean(0) / full[idx] ** 2
    assert float(out.sigma2) == pytest.approx(ratio.max(), rel=1e-10)
    np.testing.assert_allclose(out.ratio_quantiles, np.quantile(ratio, [0.5, 0.9, 0.99, 1.0]), rtol=1e-10)
    assert out.full_grad.dtype == jnp.float64
    with jax.enable_x64(True):
        with pytest.raises(ValueError, match="MicroBatched"):
            hm.coordinate_noise(loss_fn, params, (x, y), jax.random.key(0))
        with pytest.raises(ValueError, match="num_coords"):
            hm.coordinate_noise(loss_fn, params, hc.microbatch((x, y), m), jax.random.key(0), num_coords=100)


def test_noise_statistics_zero_gradient_coordinates():
    full = jnp.asarray([0.0, 1.0, 2.0])
    batch = jnp.asarray([[0.5, 2.0, 2.0], [-0.5, 0.0, 2.0]])
    out = hm.noise_statistics(full, batch)
    # coordinate 0 has g = 0 and is left out of σ₂; coordinate 1: E err² = 1 = σ₂ g²
    assert float(out.sigma2) == pytest.approx(1.0)
    np.testing.assert_allclose(out.mean_error_sq, [0.25, 1.0, 0.0])
