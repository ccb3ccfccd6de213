"""Matrix-free estimators: top eigenvalue, spectral norm, trace, and the (1,1)-norm.

All take the operator first, ``f(matvec, like, key, *, ...)`` (the package convention):

* `top_eigenvalue` / `spectral_norm`: a short Lanczos run [Lanczos50] ([Xie24, App. D.3]: "We
  use Lanczos algorithm to estimate spectral norm"), top Ritz value with the residual bound
  ``|β_{m+1} s_m|`` (an eigenvalue of H lies within it).
* `hutchinson_trace`: ``tr H = E[zᵀHz]`` with Rademacher ``z`` [Hutchinson89] [Zhang24, App. C.2],
  with the standard error of the mean.
* `l11_norm`: [Xie24, Algorithm 4]. For Cauchy probes ``v`` (1-stable),
  ``(Hv)_i ~ Cauchy(0, Σ_k |H_ik|)``, and the median of ``|Cauchy(0, s)|`` is ``s``, so the
  row-wise median of ``|Hv^{(1..n)}|`` estimates each row's ℓ1 norm; their sum estimates
  ``‖H‖_{1,1}`` ([Xie24, Thm D.2]: multiplicative error ε w.p. 1−δ with
  ``n = O(ln d + ε⁻² ln δ⁻¹)``). `blockwise_l11_norm_matvec` restricts the row sums to a
  block's rows (``Σ_{i∈b} Σ_k |H_ik|``) or, with ``diagonal=True``, to the diagonal block
  alone (``Σ_{i,k∈b} |H_ik|``, probes confined to the block); `blockwise_l11_norm` is its
  loss-first wrapper.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from heterogeneity.curvature._blockwise import _top, block_packing, block_support, group_matvec
from heterogeneity.curvature._lanczos import _check_options, check_positive_int, lanczos_flat
from heterogeneity.curvature._operator import HessianOperator, StaticPartition, operator_jit
from heterogeneity.curvature._restrict import Traced
from heterogeneity.curvature._results import BlockwiseNorms, EigenEstimate
from heterogeneity.curvature._sharding import check_mesh
from heterogeneity.curvature._slq import check_like, map_probes, resolve_batch_size
from heterogeneity.tree import ravel

PyTree = Any

__all__ = ["EigenEstimate", "TraceEstimate", "L11Estimate", "top_eigenvalue", "spectral_norm",
           "hutchinson_trace", "l11_norm", "blockwise_l11_norm", "blockwise_l11_norm_matvec"]


class TraceEstimate(NamedTuple):
    r"""Hutchinson estimate of :math:`\operatorname{tr} H` from `hutchinson_trace` ([Hutchinson89], [Zhang24, App. C.2]).

    Attributes:
      trace: () :math:`\frac{1}{n} \sum_j z_j^\top H z_j` over n Rademacher probes, in the
        units of H.
      stderr: () its standard error, :math:`\operatorname{std}_j(z_j^\top H z_j) / \sqrt n`.
      finite: () bool, False when some HVP was non-finite (the estimate is then NaN/inf).
    """

    trace: jax.Array
    stderr: jax.Array
    finite: jax.Array | bool = True


class L11Estimate(NamedTuple):
    r"""Cauchy-sketch estimate of the (1,1)-norm from `l11_norm` ([Xie24, Algorithm 4, Thm D.2]).

    Attributes:
      value: () :math:`\widehat{\|H\|}_{1,1} = \sum_i \hat r_i`, in the units of H.
      row_sums: the row ℓ1 norms :math:`\hat r_i \approx \sum_k |H_{ik}|` (median of
        :math:`|(H v^{(j)})_i|` over the Cauchy probes), a pytree shaped like the params.
      finite: () bool, False when some HVP was non-finite (value and row sums are then not
        trustworthy).
    """

    value: jax.Array
    row_sums: PyTree
    finite: jax.Array | bool = True


def _flat_matvec(matvec, like):
    check_like(like)
    flat, unravel = ravel(like)

    def mv(x):
        return ravel(matvec(unravel(x)))[0].astype(flat.dtype)

    return flat, unravel, mv


def _check_probes(num_probes, name="num_probes") -> int:
    return check_positive_int(num_probes, name)


def _lanczos_top(matvec, like, key, *, num_steps, reortho, dtype, absolute):
    flat, _, mv = _flat_matvec(matvec, like)
    v0 = jax.random.normal(key, flat.shape, flat.dtype)
    res = lanczos_flat(mv, v0, num_steps, reortho=reortho, dtype=dtype)
    return _top(res, absolute)


_lanczos_top_run = operator_jit(_lanczos_top, ("num_steps", "reortho", "dtype", "absolute"))


def _top_dispatch(matvec, like, key, num_steps, reortho, dtype, absolute):
    _check_options(num_steps, reortho, dtype)
    return _lanczos_top_run(matvec, like, key, num_steps=int(num_steps), reortho=reortho, dtype=dtype,
                            absolute=absolute)


def top_eigenvalue(matvec: Callable, like: PyTree, key: jax.Array, *, num_steps: int = 30,
                   reortho: str = "full", dtype=None) -> EigenEstimate:
    r"""The largest (algebraic) eigenvalue of a symmetric operator by Lanczos [Lanczos50].

    ``m = num_steps`` steps from a Gaussian start give the Jacobi matrix ``T_m``; the estimate is
    its largest eigenvalue ``\theta_m`` (a Ritz value, ``\theta_m \le \lambda_{\max}(H)``) and
    ``|\beta_{m+1} s_m|`` (``s`` the last component of the Ritz vector in ``T_m``) bounds
    ``\min_i |\lambda_i(H) - \theta_m|``. Per block: `blockwise_top_eigenvalue_matvec`.

    Args:
      matvec: ``v -> H v`` on pytrees like ``like``: an `Operator` (e.g. `HessianOperator`,
        compiled once per function, options and shapes) or a closure (traced per call).
      like: pytree with the vectors' structure and dtypes; key: PRNG key of the start vector.
      num_steps: Lanczos steps; reortho: ``"full"`` or ``"none"``; dtype: recurrence dtype.

    Returns:
      `EigenEstimate` (``value``, ``error_bound``, ``finite``).

    >>> import jax, jax.numpy as jnp
    >>> from heterogeneity import curvature as hc
    >>> op = hc.LinearOperator(lambda v, d: d * v, jnp.array([3.0, -5.0, 1.0]))   # H = diag(3, -5, 1)
    >>> round(float(hc.top_eigenvalue(op, jnp.zeros(3), jax.random.key(0), num_steps=3).value), 4)
    3.0
    """
    return _top_dispatch(matvec, like, key, num_steps, reortho, dtype, absolute=False)


def spectral_norm(matvec: Callable, like: PyTree, key: jax.Array, *, num_steps: int = 30,
                  reortho: str = "full", dtype=None) -> EigenEstimate:
    r"""``\|H\|_2 = \max_i |\lambda_i(H)|``: the Ritz value of largest magnitude after
    ``num_steps`` Lanczos steps [Lanczos50] [Xie24, App. D.3]; a lower bound that is exact
    once ``num_steps`` reaches the dimension.

    The arguments are those of `top_eigenvalue`.

    Returns:
      `EigenEstimate` whose ``value`` is ``|\theta|`` for the Ritz value ``\theta`` of largest
      magnitude, with its residual bound.

    >>> import jax, jax.numpy as jnp
    >>> from heterogeneity import curvature as hc
    >>> op = hc.LinearOperator(lambda v, d: d * v, jnp.array([3.0, -5.0, 1.0]))
    >>> round(float(hc.spectral_norm(op, jnp.zeros(3), jax.random.key(0), num_steps=3).value), 4)
    5.0
    """
    return _top_dispatch(matvec, like, key, num_steps, reortho, dtype, absolute=True)


def hutchinson_trace(matvec: Callable, like: PyTree, key: jax.Array, *, num_probes: int = 100,
                     batch_size: int | None | str = "auto", mesh=None) -> TraceEstimate:
    r"""Hutchinson's trace estimate [Hutchinson89] [Zhang24, App. C.2]:

    .. math:: \operatorname{tr} H = \mathbb{E}[z^\top H z] \approx \frac{1}{n}\sum_{j=1}^{n} z_j^\top H z_j,
              \qquad z_j \text{ i.i.d. Rademacher},

    with standard error ``\mathrm{std}(z_j^\top H z_j)/\sqrt{n}``.

    Args:
      matvec: ``v -> H v`` (as in `top_eigenvalue`).
      like: pytree with the vectors' structure and dtypes.
      key: PRNG key of the probes.
      num_probes: ``n``.
      batch_size: probes per vmapped chunk (None: all at once; ``"auto"``: 1 on CPU, all
        elsewhere).
      mesh: a `jax.sharding.Mesh` whose devices split the probes.

    Returns:
      `TraceEstimate` (``trace``, ``stderr``, ``finite``).

    >>> import jax, jax.numpy as jnp
    >>> from heterogeneity import curvature as hc
    >>> op = hc.LinearOperator(lambda v, d: d * v, jnp.array([3.0, -5.0, 1.0]))   # diagonal: z_i^2 = 1
    >>> round(float(hc.hutchinson_trace(op, jnp.zeros(3), jax.random.key(0), num_probes=4).trace), 4)
    -1.0
    """
    num_probes = _check_probes(num_probes)
    batch_size = resolve_batch_size(batch_size)
    check_mesh(mesh, matvec)
    return _trace_run(matvec, like, key, num_probes=num_probes, batch_size=batch_size, mesh=mesh)


def _trace(matvec, like, key, *, num_probes, batch_size, mesh):
    flat, _, mv = _flat_matvec(matvec, like)

    def one(k):
        z = jax.random.rademacher(k, flat.shape, flat.dtype)
        return jnp.vdot(z, mv(z))

    samples = map_probes(one, jax.random.split(key, num_probes), batch_size, mesh)
    std = jnp.std(samples, ddof=1) if num_probes > 1 else jnp.zeros((), samples.dtype)
    return TraceEstimate(jnp.mean(samples), std / jnp.sqrt(num_probes), jnp.all(jnp.isfinite(samples)))


_trace_run = operator_jit(_trace, ("num_probes", "batch_size", "mesh"))


def l11_norm(matvec: Callable, like: PyTree, key: jax.Array, *, num_probes: int = 50,
             batch_size: int | None | str = "auto", mesh=None) -> L11Estimate:
    r"""Cauchy-sketch estimate of ``\|H\|_{1,1} = \sum_{ik} |H_{ik}|`` [Xie24, Algorithm 4]:

    .. math:: \widehat{\|H\|}_{1,1} = \sum_i \operatorname{median}_{j \le n} |(H v^{(j)})_i|,
              \qquad v^{(j)} \text{ i.i.d. standard Cauchy},

    since ``(Hv)_i \sim \mathrm{Cauchy}(0, \sum_k |H_{ik}|)`` and the median of ``|\mathrm{Cauchy}(0,
    s)|`` is ``s`` ([Xie24, Thm D.2]: relative error ``\varepsilon`` w.p. ``1-\delta`` for ``n =
    O(\ln d + \varepsilon^{-2}\ln\delta^{-1})``). 50 probes as in [Xie24, App. D.3].

    Args:
      matvec: ``v -> H v`` (as in `top_eigenvalue`).
      like: pytree with the vectors' structure and dtypes.
      key: PRNG key of the probes.
      num_probes: ``n``.
      batch_size: probes per vmapped chunk (as in `hutchinson_trace`).
      mesh: a `jax.sharding.Mesh` whose devices split the probes.

    Returns:
      `L11Estimate`: ``value``, ``row_sums`` (shaped like ``like``), ``finite``.

    >>> import jax, jax.numpy as jnp
    >>> from heterogeneity import curvature as hc
    >>> op = hc.LinearOperator(lambda v: 2.0 * v)   # H = 2 I: every |(Hv)_i| is 2|v_i|
    >>> est = hc.l11_norm(op, jnp.zeros(4), jax.random.key(0), num_probes=9)
    >>> est.row_sums.shape, bool(est.finite)
    ((4,), True)
    """
    num_probes = _check_probes(num_probes)
    batch_size = resolve_batch_size(batch_size)
    check_mesh(mesh, matvec)
    return _l11_run(matvec, like, key, num_probes=num_probes, batch_size=batch_size, mesh=mesh)


def _l11(matvec, like, key, *, num_probes, batch_size, mesh):
    flat, unravel, mv = _flat_matvec(matvec, like)

    def one(k):
        return jnp.abs(mv(jax.random.cauchy(k, flat.shape, flat.dtype)))

    hv = map_probes(one, jax.random.split(key, num_probes), batch_size, mesh)
    rows = jnp.median(hv, axis=0)
    return L11Estimate(jnp.sum(rows), unravel(rows), jnp.all(jnp.isfinite(hv)))


_l11_run = operator_jit(_l11, ("num_probes", "batch_size", "mesh"))


def blockwise_l11_norm(loss_fn: Callable, params: PyTree, batch: PyTree, key: jax.Array, *, partition,
                       num_probes: int = 50, diagonal: bool = False, batch_size: int | str | None = "auto",
                       mesh=None) -> BlockwiseNorms:
    r"""Per-block (1,1)-norms of the Hessian of ``loss_fn`` (loss-first form) [Xie24, Algorithm 4].

    The thin wrapper ``blockwise_l11_norm_matvec(HessianOperator(loss_fn, params, batch), params,
    key, ...)``; see there for the math, the arguments and the result.

    >>> import jax, jax.numpy as jnp
    >>> from heterogeneity import curvature as hc, partition as hp
    >>> loss = lambda p, b: 0.5 * (2.0 * jnp.sum(p["w"] ** 2) + 5.0 * jnp.sum(p["v"] ** 2))
    >>> params = {"w": jnp.zeros(3), "v": jnp.zeros(2)}
    >>> r = hc.blockwise_l11_norm(loss, params, None, jax.random.key(0), partition=hp.by_leaf(params), num_probes=5)
    >>> r.labels, r.value.shape, bool(r.finite.all())
    (('v', 'w'), (2,), True)
    """
    return blockwise_l11_norm_matvec(HessianOperator(loss_fn, params, batch), params, key, partition=partition,
                                     num_probes=num_probes, diagonal=diagonal, batch_size=batch_size, mesh=mesh)


def blockwise_l11_norm_matvec(matvec: Callable, like: PyTree, key: jax.Array, *, partition, num_probes: int = 50,
                              diagonal: bool = False, batch_size: int | str | None = "auto",
                              mesh=None) -> BlockwiseNorms:
    r"""Per-block (1,1)-norms of a symmetric operator by the Cauchy sketch [Xie24, Algorithm 4].

    For i.i.d. standard Cauchy probes ``v^{(1..n)}``, ``(Hv)_i \sim \mathrm{Cauchy}(0,
    \sum_k |H_{ik}|)`` and ``\mathrm{median}|\mathrm{Cauchy}(0, s)| = s``, so

    .. math:: \widehat{r}_i = \operatorname{median}_{j \le n} |(H v^{(j)})_i| \to \sum_k |H_{ik}|.

    ``diagonal=False``: ``\sum_{i \in b} \widehat r_i \approx \sum_{i\in b}\sum_k |H_{ik}|`` (the rows
    of block b against all columns; one set of ``num_probes`` full HVPs serves every block).
    ``diagonal=True``: ``\|H_{bb}\|_{1,1} = \sum_{i,k \in b} |H_{ik}|`` (probes confined to block
    b, ``num_blocks · num_probes`` HVPs on packed blocks, chunked by ``batch_size``).

    Args:
      matvec: ``v -> H v`` (an `Operator` compiles once per function, options and shapes).
      like: pytree shaped like the vectors; key: PRNG key; partition: the blocks.
      num_probes: Cauchy probes (per block when ``diagonal``); 50 as in [Xie24, App. D.3].
      diagonal: the diagonal block alone, or its rows against all columns.
      batch_size: probes (or (block, probe) pairs) per vmapped chunk (``"auto"``: 1 on CPU).
      mesh: a `jax.sharding.Mesh` whose devices split them.

    Returns:
      `BlockwiseNorms`: ``value`` (B,), ``finite`` (B,) (False when an HVP that block needs
      was non-finite; ``value`` is then NaN/inf) and ``labels`` in partition order.

    >>> import jax, jax.numpy as jnp
    >>> from heterogeneity import curvature as hc, partition as hp
    >>> like = {"a": jnp.zeros(2), "b": jnp.zeros(3)}
    >>> op = hc.LinearOperator(lambda v: {"a": 3.0 * v["a"], "b": -1.0 * v["b"]})   # diagonal H
    >>> r = hc.blockwise_l11_norm_matvec(op, like, jax.random.key(0), partition=hp.by_leaf(like),
    ...                                  num_probes=7, diagonal=True)
    >>> r.labels, r.value.shape, bool(r.finite.all())
    (('a', 'b'), (2,), True)
    """
    num_probes = _check_probes(num_probes)
    batch_size = resolve_batch_size(batch_size)
    check_like(like)
    check_mesh(mesh, matvec)
    return _block_l11_run(matvec, like, key, partition=StaticPartition(partition, like), num_probes=num_probes,
                          diagonal=bool(diagonal), batch_size=batch_size, mesh=mesh)


def _block_l11(matvec, like, key, *, partition, num_probes, diagonal, batch_size, mesh):
    labels = partition.labels(like)
    if not diagonal:
        est = _l11(matvec, like, key, num_probes=num_probes, batch_size=batch_size, mesh=mesh)
        sums = partition.block_sum(est.row_sums)
        return BlockwiseNorms(sums, jnp.broadcast_to(est.finite, sums.shape), labels)
    vdt = ravel(like)[0].dtype
    values, finite, order = [], [], []
    traced = Traced(matvec, like)
    for group in block_packing(partition, like):
        nb, dmax = group.index.shape
        mv = group_matvec(traced, like, group, vdt)
        keys = jax.vmap(lambda b: jax.random.split(jax.random.fold_in(key, b), num_probes))(jnp.asarray(group.blocks))
        items = (jnp.repeat(jnp.arange(nb, dtype=jnp.int32), num_probes),
                 keys.reshape((nb * num_probes,) + keys.shape[2:]))

        def one(item, mv=mv, dmax=dmax, group=group):
            i, k = item
            v = jnp.where(block_support(group, i), jax.random.cauchy(k, (dmax,), vdt), 0)
            return jnp.abs(mv(v, i))

        hv = map_probes(one, items, batch_size, mesh).reshape(nb, num_probes, dmax)
        rows = jnp.median(hv, axis=1)
        live = jnp.arange(dmax)[None] < jnp.asarray(group.sizes)[:, None]
        values.append(jnp.sum(jnp.where(live, rows, 0), axis=1))
        finite.append(jnp.all(jnp.isfinite(hv), axis=(1, 2)))
        order.extend(int(b) for b in group.blocks)
    perm = jnp.asarray(np.argsort(np.asarray(order), kind="stable"))  # packing order -> partition order
    return BlockwiseNorms(jnp.concatenate(values)[perm], jnp.concatenate(finite)[perm], labels)


_block_l11_run = operator_jit(_block_l11, ("partition", "num_probes", "diagonal", "batch_size", "mesh"))
