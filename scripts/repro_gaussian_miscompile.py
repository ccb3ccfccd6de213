"""Standalone reproducer of an XLA:CPU miscompile in jax/jaxlib 0.10.2: a jitted Gaussian sum over
more than 16 rows, multiplied by a scalar, comes out wrong.

    python scripts/repro_gaussian_miscompile.py

No heterogeneity code is used. ``f`` is the blurred spectral density of B blocks (the core of
JS0): Σ_j w_bj exp(−½((t − x_bj)/σ)²) · 1/(√(2π) σ) on a grid. Rows B = 1–16 are right; from
B = 17 the jitted result is off by 50–100% (eager, or without ``* inv``, it is right). Measured
2026-12-02 on 2 cores: 0.10.2 wrong (0.60 at B = 17, 0.99 at 37, 1.00 at 150); 0.10.1, 0.10.0
and 0.9.2 right (≈1e-7). `heterogeneity selftest` runs this check.
"""
import jax
import jax.numpy as jnp
import numpy as np


def f(nodes, weights, sig, grid):
    inv = 1.0 / (jnp.sqrt(2 * jnp.pi) * sig)
    return jax.vmap(lambda t: jnp.sum(weights * jnp.exp(-0.5 * ((t - nodes) / sig) ** 2), axis=1) * inv)(grid)


for num_rows in (16, 17, 37, 150):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(num_rows, 32)).astype(np.float32))
    w = jnp.full((num_rows, 32), 1 / 32, jnp.float32)
    grid = jnp.linspace(-2.0, 2.0, 2048)
    got = np.asarray(jax.jit(f)(x, w, jnp.float32(0.05), grid))
    xn, wn, g = np.asarray(x, np.float64), np.asarray(w, np.float64), np.asarray(grid, np.float64)
    ref = (wn[None] * np.exp(-0.5 * ((g[:, None, None] - xn[None]) / 0.05) ** 2)).sum(-1) / (np.sqrt(2 * np.pi) * 0.05)
    print(f"jax {jax.__version__}, {num_rows} rows: relative error {np.abs(got - ref).max() / ref.max():.2e}")
