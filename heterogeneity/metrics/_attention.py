"""Attention statistics of [Tomihari25, App. F.5] (Fig. S.12).

* Entropy ratio of attention matrices, per layer: the mean over samples i, heads h and
  query rows s of ``H(A_s) / log S = −Σ_j A_sj log A_sj / log S`` (S = key length).
  The paper's printed formula omits the minus sign; the ratio to the maximum entropy
  log S is in [0, 1] (1 = uniform attention, 0 = one-hot), as the figure shows.
* Q/K/V gradient-norm ratios, per layer: ``G_p / (G_Q + G_K + G_V)`` for p ∈ {Q, K, V}
  with G the full-batch gradient norm of the query/key/value weight matrices.
  Proposition F.1: near one-hot attention raises the value-gradient bound and lowers the
  query/key one, so the ratios show attention-induced gradient heterogeneity.
"""
from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from heterogeneity import partition as hp
from heterogeneity.metrics._gradient import _natural_key

PyTree = Any

__all__ = [
    "AttentionEntropy",
    "LayerAttentionEntropy",
    "QKVRatios",
    "attention_entropy_ratio",
    "layerwise_attention_entropy",
    "qkv_grad_ratios",
]


class AttentionEntropy(NamedTuple):
    r"""Attention-entropy ratios of one layer ([Tomihari25, App. F.5, Fig. S.12 (a), (c)]).

    Every entry is a mean (or spread) of the per-row ratio
    :math:`r_s = \mathcal{H}(A_{s,:}) / \log S` of `attention_entropy_ratio`: dimensionless,
    in [0, 1] (1 = uniform attention over the S allowed keys, 0 = one-hot). Rows with fewer
    than two allowed keys (with a ``mask``) are left out of all three.

    Attributes:
      mean: () mean of :math:`r_s` over samples, heads and query rows (the value plotted
        per layer in Fig. S.12).
      std: () population standard deviation (ddof 0) of :math:`r_s` over the same rows (the
        figure's error bars).
      per_head: (H,) mean of :math:`r_s` per head, over samples and query rows.
    """

    mean: jax.Array  # () mean entropy ratio over samples, heads and query rows
    std: jax.Array  # () standard deviation over the same rows (Fig. S.12 error bars)
    per_head: jax.Array  # (H,) mean ratio per head


class LayerAttentionEntropy(NamedTuple):
    """`AttentionEntropy` of every layer, stacked on a leading layer axis ([Tomihari25, App. F.5, Fig. S.12]).

    Attributes:
      mean: (L,) mean entropy ratio per layer (dimensionless, in [0, 1]).
      std: (L,) its standard deviation over samples, heads and query rows, per layer.
      per_head: (L, H) mean entropy ratio per layer and head.
      labels: (L,) layer labels: the dict keys, or ``"0"``, ``"1"``, ... for a list or a
        stacked array, in input order.
    """

    mean: jax.Array  # (L,)
    std: jax.Array  # (L,)
    per_head: jax.Array  # (L, H)
    labels: tuple[str, ...]


class QKVRatios(NamedTuple):
    r"""Per-layer Q/K/V gradient-norm ratios ([Tomihari25, App. F.5, Fig. S.12 (b), (d)]).

    Attributes:
      ratios: (L, R) :math:`G^{(l)}_p / \sum_{p'} G^{(l)}_{p'}` for layer l (row) and role p
        (column): dimensionless, every row sums to 1 (an all-zero row stays 0).
      norms: (L, R) gradient norms :math:`G^{(l)}_p = \|[\nabla L]_{(l, p)}\|_2` of the
        blocks, in the units of the gradient.
      layers: (L,) layer labels (the block label before the last ``/``), numeric-aware order.
      roles: (R,) role names in column order (default ``("query", "key", "value")``).
    """

    ratios: jax.Array  # (L, R) G_p / Σ_p' G_p'  (rows sum to 1)
    norms: jax.Array  # (L, R) gradient norms G_p
    layers: tuple[str, ...]
    roles: tuple[str, ...]


@jax.jit
def attention_entropy_ratio(probs: jax.Array, *, mask: jax.Array | None = None) -> AttentionEntropy:
    r"""Entropy of attention rows relative to the maximum entropy [Tomihari25, App. F.5] (Fig. S.12 (a), (c)):

    .. math:: \bar r = \frac{1}{HNS} \sum_{h=1}^{H} \sum_{i=1}^{N} \sum_{s=1}^{S}
              \frac{-\sum_{j=1}^{S} A^{(i,h)}_{s,j} \log A^{(i,h)}_{s,j}}{\log S},

    with :math:`A^{(i,h)}` the attention matrix of head h for sample i and
    :math:`0 \log 0 = 0`. The paper prints the inner sum without its minus sign; with it the
    ratio lies in [0, 1] (1 = uniform, 0 = one-hot), as its figure shows.

    Args:
      probs: attention probabilities of shape (..., H, q, k) (any leading sample axes), each
        row summing to 1 over the k keys; at least 2 keys without ``mask``.
      mask: optional boolean array broadcastable to ``probs`` (True = key allowed, e.g.
        causal). Each row is then divided by :math:`\log` (its number of allowed keys) instead
        of :math:`\log k`, and rows with a single allowed key (entropy 0/0) are left out of the
        statistics. Masked-out keys must carry zero probability.

    Returns:
      `AttentionEntropy`: ``mean`` and ``std`` (), ``per_head`` (H,).

    >>> import jax.numpy as jnp
    >>> from heterogeneity import metrics as hm
    >>> a = jnp.array([[[0.5, 0.5], [1.0, 0.0]]])   # one head; a uniform row and a one-hot row
    >>> e = hm.attention_entropy_ratio(a)
    >>> round(float(e.mean), 4), round(float(e.std), 4), e.per_head.shape
    (0.5, 0.5, (1,))
    """
    a = jnp.asarray(probs)
    if a.ndim < 3:
        raise ValueError(f"attention_entropy_ratio: probs must be (..., heads, q, k), got shape {a.shape}")
    if not jnp.issubdtype(a.dtype, jnp.floating):
        a = a.astype(jnp.float32)
    k = a.shape[-1]
    ent = -jnp.sum(jnp.where(a > 0, a * jnp.log(jnp.where(a > 0, a, 1)), 0.0), axis=-1)  # (..., H, q)
    if mask is None:
        if k < 2:
            raise ValueError("attention_entropy_ratio: need at least 2 keys (log 1 = 0)")
        ratio = ent / jnp.log(jnp.asarray(k, ent.dtype))
        valid = jnp.ones_like(ratio, dtype=bool)
    else:
        m = jnp.broadcast_to(jnp.asarray(mask, bool), a.shape)
        n_keys = jnp.sum(m, axis=-1).astype(ent.dtype)
        valid = n_keys >= 2
        ratio = jnp.where(valid, ent / jnp.log(jnp.where(valid, n_keys, 2.0)), 0.0)
    w = valid.astype(ratio.dtype)
    count = jnp.sum(w)
    mean = jnp.sum(ratio * w) / count
    std = jnp.sqrt(jnp.sum(w * (ratio - mean) ** 2) / count)
    axes = tuple(range(ratio.ndim - 2)) + (ratio.ndim - 1,)  # all but the head axis
    per_head = jnp.sum(ratio * w, axis=axes) / jnp.sum(w, axis=axes)
    return AttentionEntropy(mean, std, per_head)


def layerwise_attention_entropy(
    probs_by_layer: Mapping[str, jax.Array] | Sequence[jax.Array] | jax.Array,
    *,
    mask: jax.Array | None = None,
) -> LayerAttentionEntropy:
    r"""`attention_entropy_ratio` of every layer l [Tomihari25, App. F.5] (Fig. S.12 (a), (c)):

    .. math:: \bar r^{(l)} = \frac{1}{HNS} \sum_{h,i,s}
              \frac{-\sum_{j} A^{(i,h,l)}_{s,j} \log A^{(i,h,l)}_{s,j}}{\log S}.

    Args:
      probs_by_layer: dict ``layer label -> (..., H, q, k)`` probabilities, a list of such
        arrays, or one stacked array (L, ..., H, q, k).
      mask: optional key mask shared by all layers (see `attention_entropy_ratio`).

    Returns:
      `LayerAttentionEntropy`: ``mean``, ``std`` (L,), ``per_head`` (L, H) and ``labels``.

    >>> import jax.numpy as jnp
    >>> from heterogeneity import metrics as hm
    >>> uniform, one_hot = jnp.full((1, 2, 2), 0.5), jnp.array([[[1.0, 0.0], [0.0, 1.0]]])
    >>> e = hm.layerwise_attention_entropy({"layers/0": uniform, "layers/1": one_hot})
    >>> e.labels, [round(float(x), 4) for x in e.mean], e.per_head.shape
    (('layers/0', 'layers/1'), [1.0, 0.0], (2, 1))
    """
    if isinstance(probs_by_layer, Mapping):
        labels, arrays = tuple(str(k) for k in probs_by_layer), list(probs_by_layer.values())
    elif isinstance(probs_by_layer, (list, tuple)):
        arrays = list(probs_by_layer)
        labels = tuple(str(i) for i in range(len(arrays)))
    else:
        stacked = jnp.asarray(probs_by_layer)
        arrays = [stacked[i] for i in range(stacked.shape[0])]
        labels = tuple(str(i) for i in range(len(arrays)))
    if not arrays:
        raise ValueError("layerwise_attention_entropy: no layers given")
    per = [attention_entropy_ratio(a, mask=mask) for a in arrays]
    return LayerAttentionEntropy(jnp.stack([p.mean for p in per]), jnp.stack([p.std for p in per]),
                                 jnp.stack([p.per_head for p in per]), labels)


def qkv_grad_ratios(
    grads: PyTree,
    *,
    partition: hp.Partition | None = None,
    roles: Sequence[str] = ("query", "key", "value"),
) -> QKVRatios:
    r"""Per-layer Q/K/V gradient-norm ratios [Tomihari25, App. F.5] (Fig. S.12 (b), (d)):

    .. math:: \frac{G^{(l)}_p}{G^{(l)}_Q + G^{(l)}_K + G^{(l)}_V}, \qquad p \in \{Q, K, V\},

    with :math:`G^{(l)}_p` the (full-batch) gradient norm of the query, key or value weight
    matrix of layer l. Proposition F.1 of [Tomihari25]: near one-hot attention maximises the
    bound on the value gradient and minimises the one on the query/key gradients, so these
    ratios show attention-induced gradient heterogeneity.

    Args:
      grads: a gradient pytree; pass the full-batch gradient (`full_batch_grad`) to match
        the paper.
      partition: must label blocks ``"{layer}/{role}"`` (default
        ``partition.by_role(per_layer=True)``: ``layers/3/query`` holds the query kernel;
        biases are their own role). Blocks with other roles are ignored.
      roles: the role names to compare, at least two and distinct; every layer that has one
        of them must have all of them.

    Returns:
      `QKVRatios`: ``ratios`` and ``norms`` (L, R), ``layers`` in numeric-aware order and
        ``roles``.

    >>> import jax.numpy as jnp
    >>> from heterogeneity import metrics as hm
    >>> g = {"layers": {"0": {"query": jnp.array([3.0, 4.0]), "key": jnp.array([0.0, 3.0]),
    ...                       "value": jnp.array([2.0, 0.0])}}}   # G_Q, G_K, G_V = 5, 3, 2
    >>> r = hm.qkv_grad_ratios(g)
    >>> r.layers, [round(float(x), 4) for x in r.ratios[0]]
    (('layers/0',), [0.5, 0.3, 0.2])
    """
    partition = hp.by_role(per_layer=True) if partition is None else partition
    roles = tuple(roles)
    if len(roles) < 2 or len(set(roles)) != len(roles):
        raise ValueError(f"qkv_grad_ratios: roles must be >= 2 distinct names, got {roles}")
    labels = partition.labels(grads)
    where: dict[str, dict[str, int]] = {}
    for i, label in enumerate(labels):
        layer, _, role = label.rpartition("/")
        if role in roles:
            where.setdefault(layer, {})[role] = i
    if not where:
        raise ValueError(f"qkv_grad_ratios: no block label ends in one of {roles}; labels are {list(labels)}")
    incomplete = {layer: sorted(set(roles) - set(r)) for layer, r in where.items() if set(r) != set(roles)}
    if incomplete:
        raise ValueError(f"qkv_grad_ratios: layers missing roles: {incomplete}")
    layers = tuple(sorted(where, key=_natural_key))
    index = np.asarray([[where[layer][r] for r in roles] for layer in layers])
    norms = jnp.sqrt(partition.block_sq_norms(grads))[index]
    total = jnp.sum(norms, axis=1, keepdims=True)
    ratios = jnp.where(total > 0, norms / jnp.where(total > 0, total, 1), 0.0)
    return QKVRatios(ratios, norms, layers, roles)
