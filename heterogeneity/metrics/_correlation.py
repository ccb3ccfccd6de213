"""Gradient–Hessian and gradient–noise correlations ([Tomihari25, Figs. 1–2, Assumption 4.8]).

* Fig. 1 / App. C.2: per parameter block, the top Hessian eigenvalue against the gradient
  norm, both averaged over batches; reported here as Spearman's ρ (scale-free) and
  Pearson's r of the log10 values (the figure's log–log axes).
* Fig. 2 / App. C.2: on randomly sampled coordinates i, the squared full-batch gradient
  ``g_i²`` against the squared mini-batch error ``(ĝ_i − g_i)²`` for every batch of the
  training data.
* Assumption 4.8 eq. (4): ``E|ĝ_i − g_i|² ≤ σ₂ |g_i|²`` for every coordinate i. The
  smallest σ₂ consistent with the sampled coordinates is ``max_i E(ĝ_i − g_i)² / g_i²``;
  the ratio's quantiles show how much that maximum is driven by near-zero ``g_i``.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from heterogeneity.curvature import MicroBatched

PyTree = Any

__all__ = [
    "Correlation",
    "CoordinateNoise",
    "rankdata",
    "spearman",
    "pearson",
    "log_correlation",
    "gradient_hessian_correlation",
    "noise_statistics",
    "coordinate_noise",
]


class Correlation(NamedTuple):
    spearman: jax.Array  # () Spearman's ρ (average ranks for ties)
    pearson_log: jax.Array  # () Pearson's r of (log10 x, log10 y) over pairs with x, y > 0
    num_log: jax.Array  # () number of pairs entering pearson_log
    x: jax.Array  # (n,) the x values used
    y: jax.Array  # (n,) the y values used


class CoordinateNoise(NamedTuple):
    indices: jax.Array  # (C,) sampled coordinates of the raveled parameter vector
    full_grad: jax.Array  # (C,) full-batch gradient g_i
    batch_grads: jax.Array  # (M, C) mini-batch gradients ĝ_i
    full_sq: jax.Array  # (C,) g_i²
    error_sq: jax.Array  # (M, C) (ĝ_i − g_i)²  (the points of Fig. 2)
    mean_error_sq: jax.Array  # (C,) E_m (ĝ_i − g_i)²
    sigma2: jax.Array  # () max_i mean_error_sq_i / g_i² over g_i ≠ 0 (Assumption 4.8 eq. 4)
    ratio_quantiles: jax.Array  # (4,) quantiles 0.5, 0.9, 0.99, 1.0 of mean_error_sq / g² (`QUANTILES`)
    correlation: Correlation  # between full_sq and mean_error_sq


@jax.jit
def rankdata(x: jax.Array) -> jax.Array:
    """Ranks 1..n of a 1-D array, ties get their average rank (as `scipy.stats.rankdata`).

    O(n log n): with ``#{< x}`` and ``#{≤ x}`` from a sorted copy, the average rank of
    the tie group of x is ``(#{< x} + #{≤ x} + 1) / 2``.
    """
    x = jnp.asarray(x)
    xs = jnp.sort(x)
    below = jnp.searchsorted(xs, x, side="left")
    upto = jnp.searchsorted(xs, x, side="right")
    return ((below + upto + 1) / 2.0).astype(jnp.result_type(x, jnp.float32))


def _weighted_pearson(x, y, w):
    w = w / jnp.sum(w)
    mx, my = jnp.sum(w * x), jnp.sum(w * y)
    dx, dy = x - mx, y - my
    cov = jnp.sum(w * dx * dy)
    return cov / jnp.sqrt(jnp.sum(w * dx * dx) * jnp.sum(w * dy * dy))


@jax.jit
def pearson(x: jax.Array, y: jax.Array) -> jax.Array:
    """Pearson's correlation coefficient of two 1-D arrays (NaN if either is constant)."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    dtype = jnp.result_type(x, y, jnp.float32)
    return _weighted_pearson(x.astype(dtype), y.astype(dtype), jnp.ones_like(x, dtype))


@jax.jit
def spearman(x: jax.Array, y: jax.Array) -> jax.Array:
    """Spearman's rank correlation (Pearson of average ranks; matches `scipy.stats.spearmanr`)."""
    return pearson(rankdata(x), rankdata(y))


@jax.jit
def log_correlation(x: jax.Array, y: jax.Array) -> Correlation:
    """Spearman's ρ of (x, y) and Pearson's r of (log10 x, log10 y) over the pairs with x, y > 0."""
    x, y = jnp.ravel(jnp.asarray(x)), jnp.ravel(jnp.asarray(y))
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"log_correlation: x and y need the same length >= 2, got {x.shape} and {y.shape}")
    dtype = jnp.result_type(x, y, jnp.float32)
    x, y = x.astype(dtype), y.astype(dtype)
    ok = (x > 0) & (y > 0)
    lx = jnp.log10(jnp.where(ok, x, 1))
    ly = jnp.log10(jnp.where(ok, y, 1))
    r_log = _weighted_pearson(lx, ly, ok.astype(dtype))
    return Correlation(spearman(x, y), r_log, jnp.sum(ok), x, y)


def gradient_hessian_correlation(grad_norms: jax.Array, hessian_norms: jax.Array) -> Correlation:
    """Per-block gradient norm vs top Hessian eigenvalue ([Tomihari25, Fig. 1, App. C.2]).

    ``grad_norms``, ``hessian_norms``: (B,) or (num_batches, B); a leading batch axis is
    averaged ("mean value computed over a parameter block" for every batch of the data).
    Eigenvalues enter as absolute values (power iteration returns the signed dominant one).
    Per batch ``m`` of the data, the inputs are e.g.
    ``blockwise_grad_norms(jax.grad(loss_fn)(params, batch_m), partition=p).norms`` and
    ``metrics.blockwise_hessian_norms(loss_fn, params, batch_m, key, partition=p).value``.
    """
    g, h = jnp.asarray(grad_norms), jnp.abs(jnp.asarray(hessian_norms))
    if g.shape != h.shape or g.ndim not in (1, 2):
        raise ValueError(f"gradient_hessian_correlation: need equal shapes (B,) or (num_batches, B), "
                         f"got {g.shape} and {h.shape}")
    if g.ndim == 2:
        g, h = jnp.mean(g, axis=0), jnp.mean(h, axis=0)
    return log_correlation(g, h)


QUANTILES = (0.5, 0.9, 0.99, 1.0)


@jax.jit
def noise_statistics(full_grad: jax.Array, batch_grads: jax.Array, *, indices: jax.Array | None = None) -> CoordinateNoise:
    """Fig. 2 / Assumption 4.8 statistics from a full-batch gradient and per-batch gradients.

    ``full_grad``: (C,) full-batch gradient on C coordinates; ``batch_grads``: (M, C)
    mini-batch gradients on the same coordinates.
    """
    g = jnp.asarray(full_grad)
    gb = jnp.asarray(batch_grads)
    if g.ndim != 1 or gb.ndim != 2 or gb.shape[1] != g.shape[0]:
        raise ValueError(f"noise_statistics: need full_grad (C,) and batch_grads (M, C), got {g.shape} and {gb.shape}")
    full_sq = g * g
    err_sq = (gb - g[None, :]) ** 2
    mean_err = jnp.mean(err_sq, axis=0)
    ok = full_sq > 0
    ratio = jnp.where(ok, mean_err / jnp.where(ok, full_sq, 1), jnp.nan)
    sigma2 = jnp.nanmax(ratio)
    qs = jnp.nanquantile(ratio, jnp.asarray(QUANTILES, ratio.dtype))
    idx = jnp.arange(g.shape[0]) if indices is None else jnp.asarray(indices)
    return CoordinateNoise(idx, g, gb, full_sq, err_sq, mean_err, sigma2, qs, log_correlation(full_sq, mean_err))


def coordinate_noise(
    loss_fn: Callable[[PyTree, PyTree], jax.Array],
    params: PyTree,
    batch: MicroBatched,
    key: jax.Array,
    *,
    num_coords: int = 1000,
) -> CoordinateNoise:
    """Coordinate-wise full-batch gradient vs mini-batch gradient error ([Tomihari25, Fig. 2, App. C.2]).

    ``batch``: a `curvature.MicroBatched` whose M micro-batches are the mini-batches that
    together form the training set (`curvature.microbatch(data, M)`). ``num_coords``
    coordinates of the raveled parameter vector are sampled without replacement with
    ``key`` (1,000 in the paper). One `lax.scan` over the mini-batches keeps only the
    sampled coordinates of each gradient (memory O(P + M·C)); the full-batch gradient is
    their (count-weighted) mean, so the errors are exact for this data split. Error
    statistics average the M mini-batches uniformly. Returns `noise_statistics`, incl.
    the σ₂ estimate of Assumption 4.8.
    """
    if not isinstance(batch, MicroBatched):
        raise ValueError("coordinate_noise: batch must be a curvature.MicroBatched of the mini-batches "
                         "(e.g. heterogeneity.curvature.microbatch(data, num_batches))")
    num_params = ravel_pytree(params)[0].shape[0]
    if not 1 <= num_coords <= num_params:
        raise ValueError(f"coordinate_noise: num_coords must be in [1, {num_params}] (number of parameters), got {num_coords}")
    idx = jax.random.choice(key, num_params, (num_coords,), replace=False)
    grad_fn = jax.grad(loss_fn)

    def body(_, mb):
        flat = ravel_pytree(grad_fn(params, mb))[0]
        return None, flat[idx]

    _, coords = jax.lax.scan(body, None, batch.batch)
    w = batch.weights(coords.dtype)
    return noise_statistics(jnp.sum(w[:, None] * coords, axis=0), coords, indices=idx)
