"""Matrix-free estimators: top eigenvalue, spectral norm, trace, and the (1,1)-norm.

* `top_eigenvalue` / `spectral_norm`: a short Lanczos run (seed 003 App. D.3 "We use
  Lanczos algorithm to estimate spectral norm"), top Ritz value with the residual bound
  ``|β_{m+1} s_m|`` (an eigenvalue of H lies within it).
* `hutchinson_trace`: ``tr H = E[zᵀHz]`` with Rademacher ``z`` (seed 001 App. C.2 Step 1),
  with the standard error of the mean.
* `l11_norm`: seed 003 App. D.3 Algorithm 4. For Cauchy probes ``v`` (1-stable),
  ``(Hv)_i ~ Cauchy(0, Σ_k |H_ik|)``, and the median of ``|Cauchy(0, s)|`` is ``s``, so the
  row-wise median of ``|Hv^{(1..n)}|`` estimates each row's ℓ1 norm; their sum estimates
  ``‖H‖_{1,1}`` (Theorem D.2: multiplicative error ε w.p. 1−δ with
  ``n = O(ln d + ε⁻² ln δ⁻¹)``). `block_l11_norms` restricts the row sums to a block's rows
  (``Σ_{i∈b} Σ_k |H_ik|``) or, with ``diagonal=True``, to the diagonal block alone
  (``Σ_{i,k∈b} |H_ik|``, probes confined to the block).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from heterogeneity.curvature._blockwise import EigenEstimate, _top, block_packing, block_support, group_matvec
from heterogeneity.curvature._lanczos import _check_options, check_positive_int, lanczos_flat
from heterogeneity.curvature._operator import StaticPartition, operator_jit
from heterogeneity.curvature._restrict import Traced
from heterogeneity.curvature._sharding import check_mesh
from heterogeneity.curvature._slq import check_like, map_probes, resolve_batch_size
from heterogeneity.tree import ravel

PyTree = Any

__all__ = ["EigenEstimate", "TraceEstimate", "L11Estimate", "top_eigenvalue", "spectral_norm",
           "hutchinson_trace", "l11_norm", "block_l11_norms"]


class TraceEstimate(NamedTuple):
    """Hutchinson estimate of ``tr H`` and its standard error (std of samples / √n).
    ``finite`` (bool) is False when some HVP was non-finite (the estimate is then NaN/inf)."""

    trace: jax.Array
    stderr: jax.Array
    finite: jax.Array | bool = True


class L11Estimate(NamedTuple):
    """``value`` ≈ ‖H‖_{1,1}; ``row_sums`` (shaped like the params) ≈ ``Σ_k |H_ik|`` per row.
    ``finite`` (bool) is False when some HVP was non-finite (value/row sums not trustworthy)."""

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
    """The largest (algebraic) eigenvalue of ``matvec`` by ``num_steps`` Lanczos steps from a
    Gaussian start (per block: `blockwise_top_eigenvalue`). An `Operator` (e.g. `HessianOperator`)
    is compiled once per (function, options, shapes); a closure is traced per call."""
    return _top_dispatch(matvec, like, key, num_steps, reortho, dtype, absolute=False)


def spectral_norm(matvec: Callable, like: PyTree, key: jax.Array, *, num_steps: int = 30,
                  reortho: str = "full", dtype=None) -> EigenEstimate:
    """``‖H‖_2 = max |λ|``: the Ritz value of largest magnitude (seed 003 App. D.3)."""
    return _top_dispatch(matvec, like, key, num_steps, reortho, dtype, absolute=True)


def hutchinson_trace(matvec: Callable, like: PyTree, key: jax.Array, *, num_probes: int = 100,
                     batch_size: int | None | str = "auto", mesh=None) -> TraceEstimate:
    """``tr H ≈ (1/n) Σ zᵀHz`` with Rademacher ``z`` (seed 001 App. C.2 Step 1). ``batch_size``:
    probes per vmapped chunk (None: all at once; "auto": 1 on CPU, all elsewhere). ``mesh``:
    a `jax.sharding.Mesh` whose devices split the probes."""
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
    """Cauchy-sketch estimate of ``‖H‖_{1,1} = Σ_ik |H_ik|`` (seed 003 App. D.3, Algorithm 4).

    ``num_probes`` HVPs against i.i.d. standard Cauchy vectors; row-wise median of their
    absolute values, summed over rows (50 probes as in seed 003). ``batch_size`` and ``mesh``
    as in `hutchinson_trace`.
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


def block_l11_norms(matvec: Callable, like: PyTree, key: jax.Array, *, partition, num_probes: int = 50,
                    diagonal: bool = False, batch_size: int | str | None = "auto", mesh=None) -> dict[str, jax.Array]:
    """Per-block (1,1)-norms by the Cauchy sketch of seed 003 App. D.3, Algorithm 4.

    ``diagonal=False``: ``Σ_{i∈b} Σ_k |H_ik|`` (rows of block b against all columns; one set
    of ``num_probes`` full HVPs serves every block). ``diagonal=True``: ``‖H_bb‖_{1,1}``
    (probes confined to block b, ``num_blocks · num_probes`` HVPs vmapped over packed
    blocks, chunked by ``batch_size``). A non-finite HVP gives NaN for the blocks it touches
    (no flag here: the result is a plain dict of arrays; check with ``jnp.isfinite``).
    An `Operator` is compiled once per (function, blocks, options, shapes). ``mesh``: a
    `jax.sharding.Mesh` whose devices split the probes (or (block, probe) pairs).
    """
    num_probes = _check_probes(num_probes)
    batch_size = resolve_batch_size(batch_size)
    check_like(like)
    check_mesh(mesh, matvec)
    labels = partition.labels(like)
    out = _block_l11_run(matvec, like, key, partition=StaticPartition(partition, like), num_probes=num_probes,
                         diagonal=bool(diagonal), batch_size=batch_size, mesh=mesh)
    return {label: out[label] for label in labels}  # a dict out of jit comes back key-sorted


def _block_l11(matvec, like, key, *, partition, num_probes, diagonal, batch_size, mesh):
    labels = partition.labels(like)
    if not diagonal:
        est = _l11(matvec, like, key, num_probes=num_probes, batch_size=batch_size, mesh=mesh)
        sums = partition.block_sum(est.row_sums)
        return {label: sums[i] for i, label in enumerate(labels)}
    vdt = ravel(like)[0].dtype
    out = {}
    traced = Traced(matvec, like)
    for group in block_packing(partition, like):
        nb, dmax = group.index.shape
        mv = group_matvec(traced, like, group, vdt)
        keys = jax.vmap(lambda b: jax.random.split(jax.random.fold_in(key, b), num_probes))(jnp.asarray(group.blocks))
        items = (jnp.repeat(jnp.arange(nb, dtype=jnp.int32), num_probes), keys.reshape((nb * num_probes,) + keys.shape[2:]))

        def one(item, mv=mv, dmax=dmax, group=group):
            i, k = item
            v = jnp.where(block_support(group, i), jax.random.cauchy(k, (dmax,), vdt), 0)
            return jnp.abs(mv(v, i))

        hv = map_probes(one, items, batch_size, mesh).reshape(nb, num_probes, dmax)
        rows = jnp.median(hv, axis=1)
        sums = jnp.sum(jnp.where(jnp.arange(dmax)[None] < jnp.asarray(group.sizes)[:, None], rows, 0), axis=1)
        for i, label in enumerate(group.labels):
            out[label] = sums[i]
    return {label: out[label] for label in labels}


_block_l11_run = operator_jit(_block_l11, ("partition", "num_probes", "diagonal", "batch_size", "mesh"))
