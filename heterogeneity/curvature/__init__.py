"""heterogeneity.curvature: Hessian-vector products, Lanczos, SLQ spectra and estimators.

Everything is a pure, jit-able function over pytrees with an explicit PRNG key.

**One operator convention.** Every estimator takes the operator first,

    f(matvec, like, key, *, options)      # canonical: any symmetric v -> H v on pytrees like ``like``

where ``matvec`` is an `Operator` (``HessianOperator(loss_fn, params, batch)``,
``LinearOperator(fn, *args)``) or a closure. The blockwise estimators, which are about the
diagonal blocks of a *loss's* Hessian, also come in a loss-first form, a thin wrapper that
builds the `HessianOperator` and calls the canonical one:

    ============================================ ========================== =================================
    loss-first ``(loss_fn, params, batch, key)`` computes                   canonical ``(matvec, like, key)``
    ============================================ ========================== =================================
    `blockwise_slq`                              SLQ of every H_bb          `blockwise_slq_matvec`
    `blockwise_top_eigenvalue`                   λ_max of every H_bb        `blockwise_top_eigenvalue_matvec`
    `blockwise_l11_norm`                         (1,1)-norm of every block  `blockwise_l11_norm_matvec`
    ============================================ ========================== =================================

The whole-operator estimators (`slq`, `top_eigenvalue`, `spectral_norm`, `hutchinson_trace`,
`l11_norm`, `lanczos`) exist only in the canonical form: pass ``HessianOperator(loss_fn,
params, batch)``. Everything computed per block is named ``blockwise_*``.

    from heterogeneity import curvature as hc, partition as hp
    op = hc.HessianOperator(loss_fn, params, batch)             # params and batch are pytree leaves
    spec = hc.slq(op, params, key, num_steps=100, num_probes=10)  # [Zhang24, App. C.2, Algorithm 5]
    dens = hc.density(spec)                                      # Gaussian-blurred density
    blocks = hc.blockwise_slq(loss_fn, params, batch, key, partition=hp.by_leaf(params))
    blocks.labels, blocks.nodes.shape                            # (B,) labels, (B, probes, steps)
    blocks.block("layers/0/attn/query/kernel")                   # one block's Spectrum
    hc.l11_norm(op, params, key, num_probes=50).value            # [Xie24, Algorithm 4]

**Blockwise results** (`BlockwiseSpectrum`, `BlockwiseEigenEstimate`, `BlockwiseNorms`) are one
stacked pytree with a leading block axis in partition order and ``labels`` as static metadata,
so they pass through `jax.jit` and `jax.vmap` without reordering (a dict did: jit sorts its
keys). ``result.block(label)`` looks one block up; ``result.as_dict()`` gives ``{label: entry}``.

Every result (`Spectrum`, `EigenEstimate`, `TraceEstimate`, `L11Estimate`, `LanczosResult` and
the blockwise ones) carries ``finite``, a bool array that is False when an HVP was non-finite
(NaN/inf in the batch or the loss): values are traced, so a jitted call cannot raise on them;
check it. Bad arguments (num_steps, num_probes, batch_size, probe, reortho, integer params, a
tangent of the wrong shape) raise `ValueError` naming them.

Compile once: a closure such as ``linearized_hvp(...)`` is a new program for every call made
outside your own `jax.jit`. Pass an operator object instead: its arrays are pytree leaves, so
every estimator compiles once per (function, options, shapes) and reuses the program for new
params or batches.

A batch wrapped in `MicroBatched` (or built by `microbatch`) is averaged over its leading
micro-batch axis inside one `lax.scan` (constant memory).

Several devices: the probe-parallel estimators take ``mesh=`` (a `jax.sharding.Mesh`) and split
their (block, probe) pairs over its devices; ``HessianOperator(..., mesh=)`` and ``hvp(...,
mesh=)`` split the micro-batches of a `MicroBatched` batch and `psum` the partial HVPs.

Deprecated (removed in 0.3): ``block_l11_norms`` → `blockwise_l11_norm_matvec`.
"""
from heterogeneity._deprecation import deprecated_alias
from heterogeneity.curvature._blockwise import (
    block_packing,
    blockwise_slq,
    blockwise_slq_matvec,
    blockwise_top_eigenvalue,
    blockwise_top_eigenvalue_matvec,
    group_matvec,
)
from heterogeneity.curvature._dense import dense_hessian
from heterogeneity.curvature._density import Density, density, spectral_range
from heterogeneity.curvature._estimators import (
    L11Estimate,
    TraceEstimate,
    blockwise_l11_norm,
    blockwise_l11_norm_matvec,
    hutchinson_trace,
    l11_norm,
    spectral_norm,
    top_eigenvalue,
)
from heterogeneity.curvature._hvp import MicroBatched, hvp, linearized_hvp, mean_loss, microbatch
from heterogeneity.curvature._operator import HessianOperator, LinearOperator, Operator
from heterogeneity.curvature._lanczos import REORTHO_MODES, LanczosResult, gauss_quadrature, lanczos, ritz, tridiagonal
from heterogeneity.curvature._results import (
    Blockwise,
    BlockwiseEigenEstimate,
    BlockwiseNorms,
    BlockwiseSpectrum,
    EigenEstimate,
)
from heterogeneity.curvature._slq import Spectrum, slq

block_l11_norms = deprecated_alias(blockwise_l11_norm_matvec, "heterogeneity.curvature.block_l11_norms",
                                   "heterogeneity.curvature.blockwise_l11_norm_matvec")

__all__ = [
    "MicroBatched", "microbatch", "hvp", "linearized_hvp", "mean_loss", "dense_hessian",
    "Operator", "HessianOperator", "LinearOperator",
    "LanczosResult", "lanczos", "tridiagonal", "gauss_quadrature", "ritz", "REORTHO_MODES",
    "Spectrum", "slq", "Density", "density", "spectral_range",
    "blockwise_slq", "blockwise_slq_matvec", "blockwise_top_eigenvalue", "blockwise_top_eigenvalue_matvec",
    "blockwise_l11_norm", "blockwise_l11_norm_matvec", "block_packing", "group_matvec",
    "Blockwise", "BlockwiseSpectrum", "BlockwiseEigenEstimate", "BlockwiseNorms",
    "EigenEstimate", "TraceEstimate", "L11Estimate",
    "top_eigenvalue", "spectral_norm", "hutchinson_trace", "l11_norm",
]
