"""Gradient heterogeneity: block gradient norms, normalized shares, Gini, layer ratios.

[Tomihari25] (Tomihari & Sato) measures *gradient heterogeneity* (Definition 4.4), the
disparity of the full-batch block gradient norms ``G_b = ‖[∇L(θ)]_b‖₂``, three ways:

* normalized shares (App. C.2, Fig. 3): ``(G_b / √P_b) / Σ_b' (G_b' / √P_b')``;
* the Gini coefficient of the normalized norms (App. D.5, Tables 2, S.5, S.8, S.11);
* layer-wise ratios (App. D.5, Table S.6): ``G_l / Σ_l' G_l'`` where ``G_l`` is the sum of
  the normalized norms ``G_θ / √P_θ`` of the parameters θ of layer ``l``.

The full-batch gradient of a `heterogeneity.curvature.MicroBatched` batch is the
(count-weighted) mean of the micro-batch gradients, accumulated in a `jax.lax.scan`
(constant memory: one gradient-sized carry), the convention of `curvature.hvp`.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from heterogeneity import partition as hp
from heterogeneity.curvature import MicroBatched

PyTree = Any
LossFn = Callable[[PyTree, PyTree], jax.Array]

__all__ = [
    "FullBatchGradient",
    "BlockwiseGradNorms",
    "GradientHeterogeneity",
    "LayerRatios",
    "full_batch_grad",
    "blockwise_grad_norms",
    "normalized_shares",
    "gini",
    "gradient_heterogeneity",
    "full_batch_gradient_heterogeneity",
    "layer_ratios",
]


class FullBatchGradient(NamedTuple):
    r"""Full-batch loss and gradient from `full_batch_grad` ([Tomihari25, App. C.2]).

    For a `curvature.MicroBatched` batch both are the weighted means over the M
    micro-batches, :math:`\sum_m w_m (L_m, \nabla L_m)` with :math:`w_m = n_m / \sum n`
    (or 1/M); otherwise the value and gradient on the one batch.

    Attributes:
      loss: () the mean loss :math:`L(\theta)`, in the loss's units.
      grad: the gradient :math:`\nabla L(\theta)`, a pytree shaped like ``params``.
    """

    loss: jax.Array  # () mean loss over micro-batches
    grad: PyTree  # mean gradient over micro-batches


class BlockwiseGradNorms(NamedTuple):
    r"""Block gradient norms from `blockwise_grad_norms` ([Tomihari25, Def. 4.4, App. C.2]).

    B blocks in partition order; norms in the units of the gradient.

    Attributes:
      norms: (B,) :math:`G_b = \|g_b\|_2`.
      sq_norms: (B,) :math:`G_b^2 = \|g_b\|_2^2` (the input of `weighted_hessian_norms`).
      sizes: (B,) block sizes :math:`P_b` (number of parameters, as floats).
      labels: (B,) block labels.
    """

    norms: jax.Array  # (B,) ‖g_b‖₂
    sq_norms: jax.Array  # (B,) ‖g_b‖₂²
    sizes: jax.Array  # (B,) P_b (float)
    labels: tuple[str, ...]


class GradientHeterogeneity(NamedTuple):
    r"""Gradient heterogeneity of one gradient ([Tomihari25, Def. 4.4, App. C.2, D.5]).

    B blocks in partition order after ``exclude``; norms in the units of the gradient.

    Attributes:
      norms: (B,) block gradient norms :math:`G_b = \|g_b\|_2`.
      sizes: (B,) block sizes :math:`P_b` (floats).
      normalized: (B,) :math:`G_b / \sqrt{P_b}` (the RMS gradient entry of the block).
      shares: (B,) :math:`(G_b/\sqrt{P_b}) / \sum_{b'} G_{b'}/\sqrt{P_{b'}}`, the quantity of
        [Tomihari25, Fig. 3]: dimensionless, summing to 1 (all 0 for a zero gradient).
      gini: () `gini` coefficient of ``normalized`` ([Tomihari25, App. D.5, Table S.5]), in
        [0, (B − 1)/B]; 0 = homogeneous.
      labels: (B,) block labels.
    """

    norms: jax.Array  # (B,) G_b
    sizes: jax.Array  # (B,) P_b
    normalized: jax.Array  # (B,) G_b / √P_b
    shares: jax.Array  # (B,) normalized / Σ normalized   ([Tomihari25, App. C.2])
    gini: jax.Array  # () Gini of the normalized norms   ([Tomihari25, App. D.5])
    labels: tuple[str, ...]


class LayerRatios(NamedTuple):
    r"""Layer-wise gradient-norm ratios from `layer_ratios` ([Tomihari25, App. D.5, Table S.6]).

    L layers in numeric-aware order (``layers/2`` before ``layers/10``).

    Attributes:
      ratios: (L,) :math:`G_l / \sum_{l'} G_{l'}`: dimensionless, summing to 1 (all 0 for a
        zero gradient).
      layer_sums: (L,) :math:`G_l = \sum_{\theta \in l} G_\theta / \sqrt{P_\theta}`, the summed
        normalized norms of the layer's parameter blocks (units of the gradient).
      labels: (L,) layer labels.
    """

    ratios: jax.Array  # (L,) G_l / Σ G_l'            ([Tomihari25, Table S.6])
    layer_sums: jax.Array  # (L,) G_l = Σ_{θ ∈ l} G_θ / √P_θ
    labels: tuple[str, ...]  # layer labels, numeric-aware order


# ---------------------------------------------------------------------------- helpers
def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def full_batch_grad(loss_fn: LossFn, params: PyTree, batch: PyTree) -> FullBatchGradient:
    """Full-batch loss and gradient; a `curvature.MicroBatched` batch is averaged in a `lax.scan`.

    For ``MicroBatched(batch, counts)`` (every leaf with a leading micro-batch axis of size
    M) the result is ``Σ_m w_m (L_m, ∇L_m)`` with ``w_m = n_m / Σ n`` (or 1/M), accumulated
    with one gradient-sized carry, so memory does not grow with M ([Tomihari25, App. C.2] uses
    the full-batch gradient). Any other batch is one `jax.value_and_grad` call.
    """
    vg = jax.value_and_grad(loss_fn)
    if not isinstance(batch, MicroBatched):
        loss, grad = vg(params, batch)
        return FullBatchGradient(loss, grad)
    dtype = jnp.result_type(*jax.tree.leaves(params), jnp.float32)
    w = batch.weights(dtype)

    def body(carry, xs):
        mb, wm = xs
        loss_sum, grad_sum = carry
        loss, grad = vg(params, mb)
        grad_sum = jax.tree.map(lambda a, g: a + wm.astype(a.dtype) * g, grad_sum, grad)
        return (loss_sum + wm * loss, grad_sum), None

    init = (jnp.zeros((), dtype), optax.tree.zeros_like(params))
    (loss, grad), _ = jax.lax.scan(body, init, (batch.batch, w))
    return FullBatchGradient(loss, grad)


def blockwise_grad_norms(grads: PyTree, *, partition: hp.Partition) -> BlockwiseGradNorms:
    r"""Block gradient norms [Tomihari25, Def. 4.4, App. C.2]: ``G_b = \|g_b\|_2 = (\sum_{i \in b} g_i^2)^{1/2}``.

    Args:
      grads: a gradient pytree (e.g. `full_batch_grad` ``.grad``).
      partition: the blocks (one `block_sq_norms` reduction).

    Returns:
      `BlockwiseGradNorms`: ``norms``, ``sq_norms``, ``sizes`` (P_b, float), each (B,), and
      ``labels`` in partition order.

    >>> import jax.numpy as jnp
    >>> from heterogeneity import metrics as hm, partition as hp
    >>> g = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([1.0])}
    >>> bn = hm.blockwise_grad_norms(g, partition=hp.by_leaf(g))
    >>> bn.labels, [float(x) for x in bn.norms], [float(x) for x in bn.sizes]
    (('a', 'b'), [5.0, 1.0], [2.0, 1.0])
    """
    sq = partition.block_sq_norms(grads)
    sizes = jnp.asarray(partition.layout(grads).sizes, sq.dtype)
    return BlockwiseGradNorms(jnp.sqrt(sq), sq, sizes, partition.labels(grads))


@jax.jit
def normalized_shares(norms: jax.Array, sizes: jax.Array) -> jax.Array:
    r"""Normalized gradient shares [Tomihari25, App. C.2] (the quantity of its Fig. 3):

    .. math:: s_b = \frac{G_b/\sqrt{P_b}}{\sum_{b'} G_{b'}/\sqrt{P_{b'}}}.

    Args: ``norms`` (…, B) block gradient norms ``G_b``; ``sizes`` (B,) block sizes ``P_b``.
    Returns: (…, B) shares summing to 1 (all-zero norms give all-zero shares, not 0/0).

    >>> import jax.numpy as jnp
    >>> from heterogeneity import metrics as hm
    >>> [round(float(x), 4) for x in hm.normalized_shares(jnp.array([2.0, 3.0]), jnp.array([1.0, 9.0]))]
    [0.6667, 0.3333]
    """
    norms = jnp.asarray(norms)
    normalized = norms / jnp.sqrt(jnp.asarray(sizes, norms.dtype))
    total = jnp.sum(normalized, axis=-1, keepdims=True)
    return jnp.where(total > 0, normalized / jnp.where(total > 0, total, 1), 0.0)


def gini(values: jax.Array) -> jax.Array:
    r"""Gini coefficient of the last axis [Tomihari25, App. D.5]:

    .. math:: G = \frac{\sum_i \sum_j |x_i - x_j|}{2 n \sum_i x_i}
              = \frac{\sum_{i=1}^{n} (2i - n - 1)\, x_{(i)}}{n \sum_i x_i}.

    >>> import jax.numpy as jnp
    >>> from heterogeneity import metrics as hm
    >>> float(hm.gini(jnp.array([1.0, 1.0, 1.0]))), round(float(hm.gini(jnp.array([0.0, 0.0, 3.0]))), 4)
    (0.0, 0.6667)

    Details:

    ``G = Σ_i Σ_j |x_i − x_j| / (2 n² x̄) = Σ_i Σ_j |x_i − x_j| / (2 n Σ x)``, evaluated in
    O(n log n) as ``Σ_i (2i − n − 1) x_(i) / (n Σ x)`` over the values sorted ascending.
    All equal gives 0; one nonzero among n gives (n − 1)/n (the maximum for n values).
    All zeros give 0 (no inequality). The coefficient is only defined for nonnegative
    values: negative values raise `ValueError` when the input is concrete and give NaN
    under `jit` (where raising is impossible). Batches over leading axes.
    """
    x = jnp.asarray(values)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"gini: values must have a non-empty last axis, got shape {x.shape}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    if _is_concrete(x) and bool(jnp.any(x < 0)):
        raise ValueError(f"gini: values must be nonnegative; got minimum {float(jnp.min(x))}")
    return _gini(x)


@jax.jit
def _gini(x: jax.Array) -> jax.Array:
    n = x.shape[-1]
    xs = jnp.sort(x, axis=-1)
    coef = (2.0 * jnp.arange(1, n + 1, dtype=x.dtype) - n - 1)
    total = jnp.sum(xs, axis=-1)
    g = jnp.sum(coef * xs, axis=-1) / (n * jnp.where(total > 0, total, 1))
    g = jnp.where(total > 0, g, 0.0)
    return jnp.where(jnp.any(x < 0, axis=-1), jnp.nan, g)


def _keep_indices(labels: Sequence[str], exclude: str | None) -> np.ndarray:
    if exclude is None:
        return np.arange(len(labels))
    pat = re.compile(exclude)
    keep = np.array([i for i, label in enumerate(labels) if not pat.search(label)], dtype=np.int64)
    if keep.size == 0:
        raise ValueError(f"exclude={exclude!r} removes every block: {list(labels)}")
    return keep


def gradient_heterogeneity(grads: PyTree, *, partition: hp.Partition, exclude: str | None = None) -> GradientHeterogeneity:
    r"""Block norms, normalized shares and Gini of a (full-batch) gradient [Tomihari25, App. C.2, D.5]:
    ``G_b = \|g_b\|_2``, shares ``(G_b/\sqrt{P_b}) / \sum_{b'} G_{b'}/\sqrt{P_{b'}}`` (`normalized_shares`)
    and the `gini` of ``G_b/\sqrt{P_b}``.

    >>> import jax.numpy as jnp
    >>> from heterogeneity import metrics as hm, partition as hp
    >>> g = {"a": jnp.array([3.0, 4.0, 0.0, 0.0]), "b": jnp.array([1.0])}   # G/√P = 2.5 and 1
    >>> h = hm.gradient_heterogeneity(g, partition=hp.by_leaf(g))
    >>> h.labels, [round(float(x), 4) for x in h.shares], round(float(h.gini), 4)
    (('a', 'b'), [0.7143, 0.2857], 0.2143)

    ``exclude``: optional regex; blocks whose label matches are dropped before the shares
    and the Gini are formed ([Tomihari25] omits biases in Fig. 3: ``exclude=r"bias$"``).
    The Gini is computed on the normalized norms ``G_b / √P_b`` (Table S.5); it is
    scale-free, so it equals the Gini of the shares.
    """
    bn = blockwise_grad_norms(grads, partition=partition)
    keep = _keep_indices(bn.labels, exclude)
    norms, sizes = bn.norms[keep], bn.sizes[keep]
    normalized = norms / jnp.sqrt(sizes)
    return GradientHeterogeneity(norms, sizes, normalized, normalized_shares(norms, sizes), gini(normalized),
                                 tuple(bn.labels[i] for i in keep))


def full_batch_gradient_heterogeneity(
    loss_fn: LossFn,
    params: PyTree,
    batch: PyTree,
    *,
    partition: hp.Partition,
    exclude: str | None = None,
) -> GradientHeterogeneity:
    """`gradient_heterogeneity` of the full-batch gradient (`full_batch_grad`; ``batch`` may be `MicroBatched`)."""
    grad = full_batch_grad(loss_fn, params, batch).grad
    return gradient_heterogeneity(grad, partition=partition, exclude=exclude)


def _natural_key(label: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", label)]


def _default_layer_of(label: str) -> str | None:
    m = re.search(hp.LAYER_PATTERN, label)
    return m.group(1) if m else None


def layer_ratios(
    grads: PyTree,
    *,
    partition: hp.Partition | None = None,
    layer_of: Callable[[str], str | None] | Mapping[str, str | None] | None = None,
    exclude: str | None = None,
) -> LayerRatios:
    """Layer-wise gradient-norm ratios ``G_l / Σ_l' G_l'`` ([Tomihari25, App. D.5, Table S.6]).

    ``G_l = Σ_{θ ∈ layer l} G_θ / √P_θ``: the sum of the normalized norms of the
    *parameters* (blocks of ``partition``, default one block per leaf) of layer ``l``.
    ``layer_of`` maps a block label to its layer label, or None to leave the block out
    (default: the repeated-layer prefix ``layers/{i}`` of `partition.LAYER_PATTERN`, so
    embeddings and the head are left out as in Table S.6). ``exclude``: regex of block
    labels to drop. Layers are ordered numerically (``layers/2`` before ``layers/10``).
    The comparison is meaningful when layers have equal parameter counts ([Tomihari25]).
    """
    partition = hp.by_leaf(grads) if partition is None else partition
    labels = partition.labels(grads)
    if layer_of is None:
        layer_of = _default_layer_of
    elif isinstance(layer_of, Mapping):
        mapping = dict(layer_of)
        layer_of = lambda label: mapping.get(label)  # noqa: E731
    keep = set(_keep_indices(labels, exclude).tolist())
    groups: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        if i not in keep:
            continue
        layer = layer_of(label)
        if layer is not None:
            groups.setdefault(str(layer), []).append(i)
    if not groups:
        raise ValueError(f"layer_ratios: layer_of assigns no block to a layer; block labels are {list(labels)}")
    layer_labels = tuple(sorted(groups, key=_natural_key))
    sq = partition.block_sq_norms(grads)
    sizes = jnp.asarray(partition.layout(grads).sizes, sq.dtype)
    normalized = jnp.sqrt(sq) / jnp.sqrt(sizes)
    sums = jnp.stack([jnp.sum(normalized[np.asarray(groups[l])]) for l in layer_labels])
    total = jnp.sum(sums)
    ratios = jnp.where(total > 0, sums / jnp.where(total > 0, total, 1), 0.0)
    return LayerRatios(ratios, sums, layer_labels)
