"""Stochastic Lanczos quadrature (seed 001 App. C.2, Algorithm 5).

For a unit probe ``v``, ``m`` Lanczos steps give the Jacobi matrix ``T`` of the spectral
measure ``μ_v = Σ_i (vᵀq_i)² δ_{λ_i}`` (seed 001 Theorem 4); its eigenvalues are the Gauss
nodes and the squared first eigenvector components the weights (Theorem 3), exact for
polynomials of degree < 2m: ``Σ_j c_j x_j^k = vᵀHᵏv``. Averaging the quadratures of
``num_probes`` probes estimates the spectral density ``(1/d) Σ δ_{λ_i}`` (Hutchinson).

Probes are normalised Rademacher vectors (Algorithm 5) or normalised Gaussians (what
seed 001's code samples, App. C.2 Step 1 / D.1); both are unbiased. Probes are drawn on the
flattened vector, so a pytree and its `ravel` give identical numbers. Probes are vmapped
(or run in chunks of ``batch_size`` with `lax.map` to bound memory).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from heterogeneity.curvature._lanczos import gauss_quadrature, lanczos_flat
from heterogeneity.tree import ravel

PyTree = Any

__all__ = ["Spectrum", "slq", "probe_vector"]

PROBES = ("rademacher", "normal")


class Spectrum(NamedTuple):
    """Gauss quadratures of the probes: ``nodes`` and ``weights`` of shape
    (num_probes, num_steps); each probe's weights sum to 1 (unused steps: weight 0)."""

    nodes: jax.Array
    weights: jax.Array


def probe_vector(key: jax.Array, d: int, dtype, probe: str = "rademacher", support=None) -> jax.Array:
    """A unit probe of length ``d`` (zero outside ``support`` when given)."""
    if probe == "rademacher":
        u = jax.random.rademacher(key, (d,), dtype=dtype)
    elif probe == "normal":
        u = jax.random.normal(key, (d,), dtype=dtype)
    else:
        raise ValueError(f"probe must be one of {PROBES}, got {probe!r}")
    if support is not None:
        u = u * support.astype(dtype)
    return u / jnp.linalg.norm(u)


def map_probes(fn: Callable, xs, batch_size: int | None):
    """``vmap(fn)(xs)``, or `lax.map` in chunks of ``batch_size`` (bounded memory)."""
    if batch_size is None:
        return jax.vmap(fn)(xs)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
    return jax.lax.map(fn, xs, batch_size=batch_size)


def slq(
    matvec: Callable[[PyTree], PyTree],
    like: PyTree,
    key: jax.Array,
    *,
    num_steps: int = 100,
    num_probes: int = 10,
    reortho: str = "full",
    probe: str = "rademacher",
    dtype=None,
    batch_size: int | None = None,
) -> Spectrum:
    """Stochastic Lanczos quadrature of the symmetric operator ``matvec`` (seed 001 Alg. 5).

    ``like``: a pytree with the structure/dtypes of the vectors ``matvec`` takes (e.g. the
    params). ``reortho``: "full" (exact Ritz values) or "none" (basis-free, at the HVP
    floor; fine for densities, see `lanczos`). ``dtype``: recurrence scalar dtype.
    Use `density` to turn the result into a blurred spectral density.
    """
    if not isinstance(num_probes, int) or num_probes < 1:
        raise ValueError(f"num_probes must be a positive int, got {num_probes!r}")
    if probe not in PROBES:
        raise ValueError(f"probe must be one of {PROBES}, got {probe!r}")
    flat, unravel = ravel(like)
    d = flat.shape[0]

    def mv(x):
        return ravel(matvec(unravel(x)))[0].astype(flat.dtype)

    def one(k):
        v0 = probe_vector(k, d, flat.dtype, probe)
        res = lanczos_flat(mv, v0, num_steps, reortho=reortho, dtype=dtype)
        return gauss_quadrature(res)

    nodes, weights = map_probes(one, jax.random.split(key, num_probes), batch_size)
    return Spectrum(nodes, weights)
