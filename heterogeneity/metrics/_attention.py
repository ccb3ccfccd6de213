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
    mean: jax.Array  # () mean entropy ratio over samples, heads and query rows
    std: jax.Array  # () standard deviation over the same rows (Fig. S.12 error bars)
    per_head: jax.Array  # (H,) mean ratio per head


class LayerAttentionEntropy(NamedTuple):
    mean: jax.Array  # (L,)
    std: jax.Array  # (L,)
    per_head: jax.Array  # (L, H)
    labels: tuple[str, ...]


class QKVRatios(NamedTuple):
    ratios: jax.Array  # (L, R) G_p / Σ_p' G_p'  (rows sum to 1)
    norms: jax.Array  # (L, R) gradient norms G_p
    layers: tuple[str, ...]
    roles: tuple[str, ...]


@jax.jit
def attention_entropy_ratio(probs: jax.Array, *, mask: jax.Array | None = None) -> AttentionEntropy:
    """Entropy of attention rows relative to the maximum entropy ([Tomihari25, App. F.5]).

    ``probs``: attention probabilities of shape (..., heads, q, k), rows summing to 1 over
    k. Without ``mask`` the maximum is log k (the paper's log S). With a boolean ``mask``
    broadcastable to ``probs`` (True = key allowed, e.g. causal), each row is divided by
    log(number of allowed keys) and rows with a single allowed key (entropy 0/0) are left
    out of the statistics.
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
    """`attention_entropy_ratio` for every layer (Fig. S.12 (a), (c)).

    ``probs_by_layer``: dict ``layer -> (..., H, q, k)``, a list of such arrays, or one
    stacked array (L, ..., H, q, k). ``mask`` (optional) is shared by all layers.
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
    """Per-layer Q/K/V gradient-norm ratios ``G_p / Σ_{p'} G_p'`` ([Tomihari25, App. F.5, Fig. S.12] (b), (d)).

    ``partition`` must label blocks ``"{layer}/{role}"`` (default
    ``partition.by_role(per_layer=True)``: ``layers/3/query`` holds the query kernel;
    biases are their own role). Blocks with other roles are ignored; every layer that has
    one of ``roles`` must have all of them. Pass the full-batch gradient
    (`full_batch_grad`) to match the paper.
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
