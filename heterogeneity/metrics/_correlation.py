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
    r"""Rank and log–log correlation of paired values ([Tomihari25, Figs. 1–2]).

    Attributes:
      spearman: () Spearman's :math:`\rho` of (x, y) over all n pairs (average ranks for
        ties), in [−1, 1]; NaN if x or y is constant.
      pearson_log: () Pearson's r of :math:`(\log_{10} x_i, \log_{10} y_i)` over the pairs
        with :math:`x_i, y_i > 0` (the figures' log–log axes), in [−1, 1]; NaN if fewer than
        two such pairs or one side is constant on them.
      num_log: () int, the number of pairs entering ``pearson_log``.
      x: (n,) the x values used (flattened, floating; for `gradient_hessian_correlation` the
        per-block gradient norms, for `noise_statistics` the :math:`g_i^2`).
      y: (n,) the y values used (the matching Hessian norms or mean squared errors).
    """

    spearman: jax.Array  # () Spearman's ρ (average ranks for ties)
    pearson_log: jax.Array  # () Pearson's r of (log10 x, log10 y) over pairs with x, y > 0
    num_log: jax.Array  # () number of pairs entering pearson_log
    x: jax.Array  # (n,) the x values used
    y: jax.Array  # (n,) the y values used


class CoordinateNoise(NamedTuple):
    r"""Coordinate-wise gradient noise against the full-batch gradient ([Tomihari25, Fig. 2, Assumption 4.8]).

    C sampled coordinates i of the raveled parameter vector, M mini-batches m; gradient
    entries in the units of the loss per parameter unit, squared ones in their square.

    Attributes:
      indices: (C,) int, the sampled coordinates of the raveled parameter vector
        (``arange(C)`` when `noise_statistics` is given no ``indices``).
      full_grad: (C,) the full-batch gradient :math:`g_i = \nabla L(\theta)_i`.
      batch_grads: (M, C) the mini-batch gradients :math:`\hat g_{m,i} = \nabla \hat L_m(\theta)_i`.
      full_sq: (C,) :math:`g_i^2`.
      error_sq: (M, C) :math:`(\hat g_{m,i} - g_i)^2`, the points of Fig. 2.
      mean_error_sq: (C,) :math:`\frac{1}{M} \sum_m (\hat g_{m,i} - g_i)^2`, the estimate of
        :math:`\mathbb{E}|\nabla \hat L(\theta)_i - \nabla L(\theta)_i|^2`.
      sigma2: () :math:`\hat\sigma_2 = \max_{i: g_i \ne 0} \text{mean\_error\_sq}_i / g_i^2`,
        the smallest :math:`\sigma_2` of Assumption 4.8 eq. (4) consistent with the sampled
        coordinates (dimensionless; NaN if every :math:`g_i = 0`).
      ratio_quantiles: (4,) the 0.5, 0.9, 0.99 and 1.0 quantiles (``QUANTILES``) of
        :math:`\text{mean\_error\_sq}_i / g_i^2` over :math:`g_i \ne 0`; the last equals ``sigma2``.
      correlation: `Correlation` of (``full_sq``, ``mean_error_sq``) over the C coordinates.
    """

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
    r"""Ranks 1..n of a 1-D array, ties get their average rank (as `scipy.stats.rankdata`):

    .. math:: \operatorname{rank}(x_i) = \frac{\#\{j : x_j < x_i\} + \#\{j : x_j \le x_i\} + 1}{2},

    computed in O(n log n) from a sorted copy (the input of `spearman`, [Tomihari25, Fig. 1]).

    Args:
      x: (n,) values.

    Returns:
      (n,) floating ranks in [1, n].

    >>> import jax.numpy as jnp
    >>> from heterogeneity import metrics as hm
    >>> [float(r) for r in hm.rankdata(jnp.array([10.0, 20.0, 20.0, 5.0]))]
    [2.0, 3.5, 3.5, 1.0]
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
    r"""Pearson's correlation coefficient of two 1-D arrays ([Tomihari25, Figs. 1–2] on log axes):

    .. math:: r = \frac{\sum_i (x_i - \bar x)(y_i - \bar y)}
                   {\sqrt{\sum_i (x_i - \bar x)^2 \, \sum_i (y_i - \bar y)^2}}.

    Args:
      x: (n,) values.
      y: (n,) values.

    Returns:
      () r in [−1, 1]; NaN if either array is constant.

    >>> import jax.numpy as jnp
    >>> from heterogeneity import metrics as hm
    >>> round(float(hm.pearson(jnp.array([1.0, 2.0, 3.0]), jnp.array([1.0, 3.0, 2.0]))), 4)
    0.5
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    dtype = jnp.result_type(x, y, jnp.float32)
    return _weighted_pearson(x.astype(dtype), y.astype(dtype), jnp.ones_like(x, dtype))


@jax.jit
def spearman(x: jax.Array, y: jax.Array) -> jax.Array:
    r"""Spearman's rank correlation, the scale-free summary of [Tomihari25, Fig. 1]:

    .. math:: \rho = r\big(\operatorname{rank}(x), \operatorname{rank}(y)\big),

    Pearson's r (`pearson`) of the average ranks (`rankdata`); matches `scipy.stats.spearmanr`.

    Args:
      x: (n,) values.
      y: (n,) values.

    Returns:
      () :math:`\rho` in [−1, 1] (1 for any increasing relation); NaN if either is constant.

    >>> import jax.numpy as jnp
    >>> from heterogeneity import metrics as hm
    >>> x, y = jnp.array([1.0, 2.0, 3.0, 4.0]), jnp.array([1.0, 4.0, 9.0, 100.0])
    >>> round(float(hm.spearman(x, y)), 4), round(float(hm.pearson(x, y)), 4)
    (1.0, 0.816)
    """
    return pearson(rankdata(x), rankdata(y))


@jax.jit
def log_correlation(x: jax.Array, y: jax.Array) -> Correlation:
    r"""Spearman's ρ of (x, y) and Pearson's r on log–log axes ([Tomihari25, Figs. 1–2]):

    .. math:: \rho = r\big(\operatorname{rank}(x), \operatorname{rank}(y)\big), \qquad
              r_{\log} = r\big(\log_{10} x_i, \log_{10} y_i\big)_{i:\, x_i > 0,\, y_i > 0}.

    Args:
      x: (n,) values (flattened), n ≥ 2.
      y: (n,) values, the same length.

    Returns:
      `Correlation`: ``spearman`` over all pairs, ``pearson_log`` and ``num_log`` over the
        positive pairs, and the ``x``, ``y`` used.

    >>> import jax.numpy as jnp
    >>> from heterogeneity import metrics as hm
    >>> c = hm.log_correlation(jnp.array([1.0, 10.0, 100.0, 0.0]), jnp.array([2.0, 20.0, 200.0, 5.0]))
    >>> round(float(c.spearman), 4), round(float(c.pearson_log), 4), int(c.num_log)   # 0.0 is left out of the log
    (0.8, 1.0, 3)
    """
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
    r"""Per-block gradient norm against top Hessian eigenvalue [Tomihari25, Fig. 1, App. C.2]:

    .. math:: \bar G_b = \frac{1}{M} \sum_{m=1}^{M} \|[\nabla L_m(\theta)]_b\|_2, \qquad
              \bar\lambda_b = \frac{1}{M} \sum_{m=1}^{M} |\lambda_{\max}([\nabla^2 L_m(\theta)]_{bb})|,

    over the M batches m of the data ("the mean value computed over a parameter block"), and
    `log_correlation` of :math:`(\bar G_b, \bar\lambda_b)_{b=1}^{B}`. Eigenvalues enter as
    absolute values (power iteration returns the signed dominant one).

    Args:
      grad_norms: (B,) or (M, B) block gradient norms; per batch m e.g.
        ``blockwise_grad_norms(jax.grad(loss_fn)(params, batch_m), partition=p).norms``.
      hessian_norms: the same shape, top block Hessian eigenvalues; per batch m e.g.
        ``metrics.blockwise_hessian_norms(loss_fn, params, batch_m, key, partition=p).value``.

    Returns:
      `Correlation` over the B blocks (``x`` the mean gradient norms, ``y`` the mean
        absolute eigenvalues).

    >>> import jax.numpy as jnp
    >>> from heterogeneity import metrics as hm
    >>> g = jnp.array([[1.0, 10.0, 100.0], [3.0, 30.0, 300.0]])        # 2 batches, 3 blocks
    >>> h = jnp.array([[-4.0, 40.0, 400.0], [-4.0, 40.0, 400.0]])      # signed top eigenvalues
    >>> c = hm.gradient_hessian_correlation(g, h)
    >>> [float(x) for x in c.x], round(float(c.spearman), 4), round(float(c.pearson_log), 4)
    ([2.0, 20.0, 200.0], 1.0, 1.0)
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
    r"""Gradient-noise statistics of [Tomihari25, Fig. 2, Assumption 4.8] on C coordinates:

    .. math:: e_{m,i} = (\hat g_{m,i} - g_i)^2, \qquad
              \bar e_i = \frac{1}{M} \sum_{m=1}^{M} e_{m,i}, \qquad
              \hat\sigma_2 = \max_{i:\, g_i \ne 0} \frac{\bar e_i}{g_i^2},

    :math:`\hat\sigma_2` being the smallest :math:`\sigma_2` with
    :math:`\mathbb{E}|\nabla \hat L(\theta)_i - \nabla L(\theta)_i|^2 \le \sigma_2 |\nabla L(\theta)_i|^2`
    (eq. (4)) on the sampled coordinates, plus quantiles of the ratio and `log_correlation`
    of :math:`(g_i^2, \bar e_i)`.

    Args:
      full_grad: (C,) full-batch gradient :math:`g_i` on C coordinates.
      batch_grads: (M, C) mini-batch gradients :math:`\hat g_{m,i}` on the same coordinates.
      indices: optional (C,) coordinate numbers to record in the result (default
        ``arange(C)``).

    Returns:
      `CoordinateNoise`.

    >>> import jax.numpy as jnp
    >>> from heterogeneity import metrics as hm
    >>> g = jnp.array([1.0, 2.0, -1.0])
    >>> gb = jnp.array([[0.0, 3.0, -2.0], [2.0, 1.0, 0.0]])   # every error is ±1
    >>> n = hm.noise_statistics(g, gb)
    >>> [float(x) for x in n.mean_error_sq], float(n.sigma2)   # σ₂ = max(1/1, 1/4, 1/1)
    ([1.0, 1.0, 1.0], 1.0)
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
    r"""Coordinate-wise full-batch gradient against mini-batch gradient error [Tomihari25, Fig. 2, App. C.2]:

    .. math:: g_i = \sum_{m=1}^{M} w_m \nabla L_m(\theta)_i, \qquad
              e_{m,i} = (\nabla L_m(\theta)_i - g_i)^2, \qquad
              w_m = n_m / \textstyle\sum_{m'} n_{m'}\ (\text{or } 1/M),

    on C coordinates i sampled without replacement (1,000 in the paper), then
    `noise_statistics` (incl. the :math:`\sigma_2` estimate of Assumption 4.8). One
    `lax.scan` over the mini-batches keeps only the sampled coordinates of each gradient
    (memory O(P + M·C)); the full-batch gradient is their (count-weighted) mean, so the
    errors are exact for this data split. Error statistics average the M mini-batches
    uniformly.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar`` mean loss of a mini-batch.
      params: the point θ.
      batch: a `curvature.MicroBatched` whose M micro-batches are the mini-batches that
        together form the training set (`curvature.microbatch(data, M)`).
      key: PRNG key for the choice of coordinates.
      num_coords: C, in [1, P] (P the number of parameters).

    Returns:
      `CoordinateNoise` (``indices`` the sampled coordinates, in sampling order).

    >>> import jax, jax.numpy as jnp
    >>> from heterogeneity import curvature as hc, metrics as hm
    >>> loss = lambda p, b: 0.5 * jnp.sum((p - b) ** 2)            # gradient p - b
    >>> data = hc.MicroBatched(jnp.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]]))   # M = 2 mini-batches
    >>> n = hm.coordinate_noise(loss, jnp.zeros(3), data, jax.random.key(0), num_coords=3)
    >>> [float(x) for x in n.full_grad], round(float(n.sigma2), 4)   # g = -2; errors ±1, 0, ±1
    ([-2.0, -2.0, -2.0], 0.25)
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
