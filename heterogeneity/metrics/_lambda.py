"""Weighted Hessian norms Λ_G and Λ_P ([Tomihari25, Definition 4.5]) and their trajectory version.

    Λ_G(θ) = Σ_b (‖[∇L(θ)]_b‖₂² / ‖∇L(θ)‖₂²) ‖[∇²L(θ)]_b‖₂,
    Λ_P(θ) = Σ_b (P_b / P) ‖[∇²L(θ)]_b‖₂.

Definition 4.5 takes the supremum over the fine-tuning region (Λ_G over points with a
nonzero gradient). At one point these are the weighted averages above; [Tomihari25, App. D.9]
(Table S.9) approximates the supremum by the maximum over the iterates of a run
(`weighted_hessian_norms_trajectory`). Gradient-weighted Λ_G is large when large-gradient
blocks also have large curvature (gradient–Hessian correlation, Fig. 1), which is what
slows SGD (Theorem 4.7); sign-based methods see Λ_P instead.

Block Hessian norms are passed in: e.g. ``|λ_max|`` from power iteration per block
[Tomihari25, App. C.2], `heterogeneity.curvature` estimates, or `jnp.linalg.eigvalsh` on a small
problem. `blockwise_hessian_norms` is the thin wrapper that gets them from
`heterogeneity.curvature.blockwise_slq` (blockwise Lanczos):

    fb = full_batch_grad(loss_fn, params, batch)
    lam = lambda_norms(fb.grad, blockwise_hessian_norms(loss_fn, params, batch, key, partition=p), partition=p)
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from heterogeneity import curvature as hc
from heterogeneity import partition as hp

PyTree = Any

__all__ = [
    "WeightedHessianNorms",
    "WeightedHessianNormsTrajectory",
    "weighted_hessian_norms",
    "weighted_hessian_norms_trajectory",
    "lambda_norms",
    "align_blocks",
    "blockwise_hessian_norms",
]


class WeightedHessianNorms(NamedTuple):
    r"""Weighted Hessian norms Λ_G and Λ_P at one point ([Tomihari25, Def. 4.5] without the supremum).

    .. math:: \Lambda_G = \sum_b \frac{\|g_b\|_2^2}{\|g\|_2^2}\, \|H_{bb}\|_2, \qquad
              \Lambda_P = \sum_b \frac{P_b}{P}\, \|H_{bb}\|_2.

    B blocks; Λ_G, Λ_P and ``hessian_norms`` in the units of the Hessian. With leading
    batch axes (e.g. (T, B) inputs) every field gains them.

    Attributes:
      lambda_g: () gradient-weighted Hessian norm :math:`\Lambda_G` (NaN when the gradient
        is exactly zero).
      lambda_p: () parameter-weighted Hessian norm :math:`\Lambda_P`.
      grad_weights: (B,) :math:`\|g_b\|_2^2 / \|g\|_2^2`, summing to 1 (NaN for a zero gradient).
      size_weights: (B,) :math:`P_b / P`, summing to 1.
      hessian_norms: (B,) the :math:`\|H_{bb}\|_2` used (absolute values of the input).
    """

    lambda_g: jax.Array  # () gradient-weighted Hessian norm (NaN if the gradient is zero)
    lambda_p: jax.Array  # () parameter-weighted Hessian norm
    grad_weights: jax.Array  # (B,) ‖g_b‖² / ‖g‖²   (sum to 1)
    size_weights: jax.Array  # (B,) P_b / P          (sum to 1)
    hessian_norms: jax.Array  # (B,) ‖H_b‖₂ used


class WeightedHessianNormsTrajectory(NamedTuple):
    r"""Λ_G and Λ_P as maxima over the iterates of a run ([Tomihari25, Def. 4.5, App. D.9, Table S.9]).

    .. math:: \Lambda_G = \max_{t:\, \nabla L(\theta_t) \ne 0} \Lambda_G(\theta_t), \qquad
              \Lambda_P = \max_t \Lambda_P(\theta_t),

    over T iterates :math:`\theta_0, \dots, \theta_{T-1}`; values in the units of the Hessian.

    Attributes:
      lambda_g: () :math:`\max_t \Lambda_G(\theta_t)` over iterates with a nonzero gradient
        (NaN if there is none).
      lambda_p: () :math:`\max_t \Lambda_P(\theta_t)`.
      lambda_g_t: (T,) :math:`\Lambda_G(\theta_t)`, NaN where the gradient vanishes.
      lambda_p_t: (T,) :math:`\Lambda_P(\theta_t)`.
      argmax_g: () int, the iterate t attaining ``lambda_g`` (0 when every gradient vanishes).
    """

    lambda_g: jax.Array  # () sup_t Λ_G(θ_t) over iterates with nonzero gradient (Table S.9)
    lambda_p: jax.Array  # () sup_t Λ_P(θ_t)
    lambda_g_t: jax.Array  # (T,) Λ_G(θ_t), NaN where the gradient vanishes
    lambda_p_t: jax.Array  # (T,) Λ_P(θ_t)
    argmax_g: jax.Array  # () iterate attaining sup Λ_G


def _as_array(x, name: str) -> jax.Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    return x


@jax.jit
def weighted_hessian_norms(grad_sq_norms: jax.Array, hessian_norms: jax.Array, sizes: jax.Array) -> WeightedHessianNorms:
    r"""Λ_G and Λ_P at one point ([Tomihari25, Def. 4.5] without the supremum):

    .. math:: \Lambda_G = \sum_b \frac{\|g_b\|_2^2}{\sum_{b'} \|g_{b'}\|_2^2}\, \|H_{bb}\|_2, \qquad
              \Lambda_P = \sum_b \frac{P_b}{\sum_{b'} P_{b'}}\, \|H_{bb}\|_2.

    >>> import jax.numpy as jnp
    >>> from heterogeneity import metrics as hm
    >>> w = hm.weighted_hessian_norms(jnp.array([9.0, 16.0]), jnp.array([2.0, -1.0]), jnp.array([1.0, 3.0]))
    >>> round(float(w.lambda_g), 4), round(float(w.lambda_p), 4)
    (1.36, 1.25)

    Args and Returns:

    ``grad_sq_norms``: (B,) ‖[∇L]_b‖₂² (e.g. ``partition.block_sq_norms(grad)``);
    ``hessian_norms``: (B,) block Hessian operator norms ‖[∇²L]_b‖₂; absolute values are
    taken, so signed dominant eigenvalues from power iteration can be passed directly
    (a *largest algebraic* eigenvalue is only the norm if it dominates in magnitude);
    ``sizes``: (B,) block sizes P_b. Λ_G is NaN when the gradient is exactly zero
    (Definition 4.5 excludes stationary points).
    """
    g2 = _as_array(grad_sq_norms, "grad_sq_norms")
    h = jnp.abs(_as_array(hessian_norms, "hessian_norms"))
    p = _as_array(sizes, "sizes")
    if not (g2.shape[-1:] == h.shape[-1:] == p.shape[-1:]):
        raise ValueError(f"weighted_hessian_norms: block axes differ: grad_sq_norms {g2.shape}, "
                         f"hessian_norms {h.shape}, sizes {p.shape}")
    dtype = jnp.result_type(g2, h, p)
    g2, h, p = g2.astype(dtype), h.astype(dtype), p.astype(dtype)
    total = jnp.sum(g2, axis=-1, keepdims=True)
    wg = jnp.where(total > 0, g2 / jnp.where(total > 0, total, 1), jnp.nan)
    wp = p / jnp.sum(p, axis=-1, keepdims=True)
    return WeightedHessianNorms(jnp.sum(wg * h, axis=-1), jnp.sum(wp * h, axis=-1), wg, wp, h)


@jax.jit
def weighted_hessian_norms_trajectory(
    grad_sq_norms: jax.Array, hessian_norms: jax.Array, sizes: jax.Array
) -> WeightedHessianNormsTrajectory:
    """Λ_G, Λ_P as the maximum over iterates θ_0..θ_T ([Tomihari25, App. D.9, Table S.9]).

    ``grad_sq_norms``: (T, B) block gradient norms² per iterate; ``hessian_norms``: (T, B)
    per iterate, or (B,) when the Hessian is constant (quadratics); ``sizes``: (B,).
    Iterates with a zero gradient are skipped for Λ_G (R_FT^+ of Definition 4.5).
    """
    g2 = _as_array(grad_sq_norms, "grad_sq_norms")
    if g2.ndim != 2:
        raise ValueError(f"weighted_hessian_norms_trajectory: grad_sq_norms must be (T, B), got {g2.shape}")
    h = _as_array(hessian_norms, "hessian_norms")
    if h.ndim == 1:
        h = jnp.broadcast_to(h, g2.shape)
    if h.shape != g2.shape:
        raise ValueError(f"weighted_hessian_norms_trajectory: hessian_norms must be (B,) or {g2.shape}, got {h.shape}")
    per = weighted_hessian_norms(g2, h, jnp.broadcast_to(_as_array(sizes, "sizes"), g2.shape))
    lg = per.lambda_g
    masked = jnp.where(jnp.isnan(lg), -jnp.inf, lg)
    arg = jnp.argmax(masked)
    sup_g = jnp.where(jnp.all(jnp.isnan(lg)), jnp.nan, masked[arg])
    return WeightedHessianNormsTrajectory(sup_g, jnp.max(per.lambda_p), lg, per.lambda_p, arg)


def align_blocks(values: Mapping[str, Any] | Sequence | jax.Array, labels: Sequence[str], name: str) -> jax.Array:
    """``values`` (a `curvature.BlockwiseNorms` or `curvature.BlockwiseEigenEstimate`, a dict keyed by
    block label, or a (B,) sequence in label order) as a (B,) array in ``labels`` order."""
    if isinstance(values, hc.Blockwise):
        if tuple(values.labels) == tuple(labels):
            return jnp.asarray(values.value)
        values = values.as_dict()  # other order or other blocks: matched (or refused) by label below
        values = {k: getattr(v, "value", v) for k, v in values.items()}
    if isinstance(values, Mapping):
        missing = [l for l in labels if l not in values]
        extra = [k for k in values if k not in set(labels)]
        if missing or extra:
            raise ValueError(f"{name}: keys must be the partition's block labels; missing {missing}, unexpected {extra}")
        return jnp.stack([jnp.asarray(values[l]) for l in labels])
    arr = jnp.asarray(values)
    if arr.shape[-1:] != (len(labels),):
        raise ValueError(f"{name}: expected {len(labels)} values (one per block {list(labels)}), got shape {arr.shape}")
    return arr


def lambda_norms(
    grads: PyTree,
    block_hessian_norms: Mapping[str, Any] | jax.Array,
    *,
    partition: hp.Partition,
) -> WeightedHessianNorms:
    r"""Λ_G, Λ_P [Tomihari25, Def. 4.5] at one point from a gradient pytree and per-block Hessian norms.

    .. math:: \Lambda_G = \sum_b \frac{\|g_b\|_2^2}{\|g\|_2^2}\, \|H_{bb}\|_2, \qquad
              \Lambda_P = \sum_b \frac{P_b}{P}\, \|H_{bb}\|_2.

    Args:
      grads: the gradient pytree ``g``; block sizes ``P_b`` and ``\|g_b\|_2^2`` come from
        ``partition`` (one `block_sq_norms` reduction).
      block_hessian_norms: ``\|H_{bb}\|_2`` per block: a `curvature.BlockwiseNorms` (e.g.
        `blockwise_hessian_norms`), a dict keyed by label, or a (B,) array in partition order.
      partition: the blocks.

    Returns:
      `WeightedHessianNorms`.

    >>> import jax.numpy as jnp
    >>> from heterogeneity import metrics as hm, partition as hp
    >>> g = {"a": jnp.array([3.0]), "b": jnp.array([0.0, 4.0, 0.0])}
    >>> lam = hm.lambda_norms(g, {"a": 2.0, "b": 1.0}, partition=hp.by_leaf(g))
    >>> round(float(lam.lambda_g), 4), round(float(lam.lambda_p), 4)   # (9*2 + 16*1)/25, (1*2 + 3*1)/4
    (1.36, 1.25)
    """
    labels = partition.labels(grads)
    h = align_blocks(block_hessian_norms, labels, "block_hessian_norms")
    sizes = np.asarray(partition.layout(grads).sizes, np.float64)
    g2 = partition.block_sq_norms(grads)
    return weighted_hessian_norms(g2, h, jnp.asarray(sizes, g2.dtype))


def blockwise_hessian_norms(
    loss_fn: Callable,
    params: PyTree,
    batch: PyTree,
    key: jax.Array,
    *,
    partition: hp.Partition,
    num_steps: int = 30,
    reortho: str = "full",
) -> hc.BlockwiseNorms:
    r"""``\|[\nabla^2 L]_{bb}\|_2`` of every diagonal Hessian block by blockwise Lanczos
    (`curvature.blockwise_slq`, one probe per block) [Tomihari25, App. C.2].

    .. math:: \widehat{\|H_{bb}\|}_2 = \max_j |\theta_j^{(b)}|,

    the largest |Ritz value| of ``num_steps`` Lanczos steps on ``H_{bb}`` [Lanczos50]: Ritz
    values lie in ``[\lambda_{\min}, \lambda_{\max}]``, so this is a lower bound that converges
    to ``\max(\lambda_{\max}, -\lambda_{\min})`` from both ends at once (exact once
    ``num_steps`` ``\ge d_b``). [Tomihari25, App. C.2] uses power iteration per block for
    the same quantity.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar`` (define it once: a jit cache key).
      params: the point.
      batch: the batch (may be a `curvature.MicroBatched`).
      key: PRNG key of the probes.
      partition: the blocks.
      num_steps: Lanczos steps per block.
      reortho: ``"full"`` or ``"none"``.

    Returns:
      `curvature.BlockwiseNorms`: ``value`` (B,) in partition order (NaN for a block whose
      HVPs are non-finite, e.g. NaN in the batch: never a plausible-looking norm), ``finite``
      (B,) and ``labels``. Compiled once per (``loss_fn``, blocks, options, shapes).

    >>> import jax, jax.numpy as jnp
    >>> from heterogeneity import metrics as hm, partition as hp
    >>> loss = lambda p, b: 0.5 * (2.0 * jnp.sum(p["w"] ** 2) - 5.0 * jnp.sum(p["v"] ** 2))
    >>> params = {"w": jnp.zeros(3), "v": jnp.zeros(2)}
    >>> n = hm.blockwise_hessian_norms(loss, params, None, jax.random.key(0), partition=hp.by_leaf(params), num_steps=3)
    >>> n.labels, [round(float(x), 4) for x in n.value]
    (('v', 'w'), [5.0, 2.0])
    """
    s = hc.blockwise_slq(loss_fn, params, batch, key, partition=partition, num_steps=num_steps, num_probes=1,
                         reortho=reortho)
    top = jnp.max(jnp.where(s.weights > 0, jnp.abs(s.nodes), 0.0), axis=(1, 2))
    return hc.BlockwiseNorms(jnp.where(s.finite, top, jnp.nan), s.finite, s.labels)
