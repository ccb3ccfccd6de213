"""heterogeneity.curvature: Hessian-vector products, Lanczos, SLQ spectra and estimators.

Everything is a pure, jit-able function over pytrees with an explicit PRNG key:

    >>> from heterogeneity import curvature as hc, partition as hp
    >>> mv = hc.linearized_hvp(loss_fn, params, batch)        # one linearization, many HVPs
    >>> spec = hc.slq(mv, params, key, num_steps=100, num_probes=10)      # seed 001 Alg. 5
    >>> dens = hc.density(spec)                                 # Gaussian-blurred density
    >>> blocks = hc.blockwise_slq(loss_fn, params, batch, key, partition=hp.by_leaf(params))
    >>> hc.l11_norm(mv, params, key, num_probes=50).value       # seed 003 Alg. 4

Every result (`Spectrum`, `EigenEstimate`, `TraceEstimate`, `L11Estimate`, `LanczosResult`)
carries ``finite``, a bool array that is False when an HVP was non-finite (NaN/inf in the
batch or the loss): values are traced, so a jitted call cannot raise on them; check it.
Bad arguments (num_steps, num_probes, batch_size, probe, reortho, integer params, a tangent
of the wrong shape) raise `ValueError` naming them.

Compile once: a closure such as ``linearized_hvp(...)`` is a new program for every call made
outside your own `jax.jit`. Pass an operator object instead, ``HessianOperator(loss_fn,
params, batch)`` or ``LinearOperator(matvec, *args)``: its arrays are pytree leaves, so
`top_eigenvalue`, `spectral_norm`, `slq`, `hutchinson_trace`, `l11_norm` and `block_l11_norms`
(like `blockwise_slq` and `blockwise_top_eigenvalue`) compile once per (function, options,
shapes) and reuse the program for new params or batches.

A batch wrapped in `MicroBatched` (or built by `microbatch`) is averaged over its leading
micro-batch axis inside one `lax.scan` (constant memory).

Several devices: the probe-parallel estimators take ``mesh=`` (a `jax.sharding.Mesh`) and split
their (block, probe) pairs over its devices; ``HessianOperator(..., mesh=)`` and ``hvp(...,
mesh=)`` split the micro-batches of a `MicroBatched` batch and `psum` the partial HVPs.
"""
from heterogeneity.curvature._blockwise import (
    EigenEstimate,
    block_packing,
    blockwise_slq,
    blockwise_slq_matvec,
    blockwise_top_eigenvalue,
    group_matvec,
)
from heterogeneity.curvature._dense import dense_hessian
from heterogeneity.curvature._density import Density, density, spectral_range
from heterogeneity.curvature._estimators import (
    L11Estimate,
    TraceEstimate,
    block_l11_norms,
    hutchinson_trace,
    l11_norm,
    spectral_norm,
    top_eigenvalue,
)
from heterogeneity.curvature._hvp import MicroBatched, hvp, linearized_hvp, mean_loss, microbatch
from heterogeneity.curvature._operator import HessianOperator, LinearOperator, Operator
from heterogeneity.curvature._lanczos import REORTHO_MODES, LanczosResult, gauss_quadrature, lanczos, ritz, tridiagonal
from heterogeneity.curvature._slq import Spectrum, slq

__all__ = [
    "MicroBatched", "microbatch", "hvp", "linearized_hvp", "mean_loss", "dense_hessian",
    "Operator", "HessianOperator", "LinearOperator",
    "LanczosResult", "lanczos", "tridiagonal", "gauss_quadrature", "ritz", "REORTHO_MODES",
    "Spectrum", "slq", "Density", "density", "spectral_range",
    "blockwise_slq", "blockwise_slq_matvec", "blockwise_top_eigenvalue", "block_packing", "group_matvec",
    "EigenEstimate", "TraceEstimate", "L11Estimate",
    "top_eigenvalue", "spectral_norm", "hutchinson_trace", "l11_norm", "block_l11_norms",
]
