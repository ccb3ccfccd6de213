"""Blurred spectral density: exact formula, normalisation, defaults."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from heterogeneity import curvature as hc


def test_density_is_the_weighted_gaussian_mixture_and_integrates_to_one():
    with jax.enable_x64(True):
        nodes = jnp.array([[0.0, 1.0, 2.0, 2.0], [0.5, 1.5, 3.0, 3.0]])
        weights = jnp.array([[0.2, 0.3, 0.5, 0.0], [0.25, 0.25, 0.5, 0.0]])
        grid = jnp.linspace(-1.0, 4.0, 7)
        dens = hc.density(hc.Spectrum(nodes, weights), grid, sigma=0.3)
        g = np.asarray(grid)[:, None, None]
        ref = (np.asarray(weights) * np.exp(-0.5 * ((g - np.asarray(nodes)) / 0.3) ** 2) / (0.3 * np.sqrt(2 * np.pi)))
        np.testing.assert_allclose(dens.values, ref.sum(-1).mean(-1), rtol=1e-12)
        d = hc.density(hc.Spectrum(nodes, weights))  # defaults
        assert d.grid.shape == (1000,)
        np.testing.assert_allclose(float(d.sigma), 0.01 * 3.0, rtol=1e-12)   # 1% of [0, 3]
        np.testing.assert_allclose(float(d.grid[0]), -3 * 0.03, rtol=1e-12)
        np.testing.assert_allclose(float(d.grid[-1]), 3.0 + 3 * 0.03, rtol=1e-12)
        # the default grid stops 3σ past the extreme nodes: at most the one-sided Gaussian tail
        # 0.00135 of their mass (here 0.1 + 0.25) is cut off
        integral = np.trapezoid(d.values, d.grid)
        assert 1.0 - 0.00135 * 0.35 - 1e-5 <= integral <= 1.0 + 1e-5


def test_degenerate_spectrum_gets_a_finite_default_sigma():
    dens = hc.density(hc.Spectrum(jnp.zeros((1, 5)), jnp.array([[1.0, 0, 0, 0, 0]])))
    assert np.all(np.isfinite(dens.values)) and float(dens.sigma) > 0


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="share"):
        hc.density(hc.Spectrum(jnp.zeros((2, 3)), jnp.zeros((2, 4))))
