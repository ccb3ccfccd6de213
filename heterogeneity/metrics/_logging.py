"""An Optax hook that records gradient heterogeneity during training ([Tomihari25, App. C.2, D.5]).

`log_block_stats(partition)` is a `GradientTransformation` that passes updates through
unchanged and keeps the latest block norms ‖g_b‖₂, normalized shares
(G_b/√P_b)/Σ and their Gini coefficient in its state (arrays only), at the cost of one
`block_sq_norms` reduction per step. Put it first in a chain to log raw (mini-batch)
gradients, or after another transform to log that transform's updates:

    tx = optax.chain(log_block_stats(p), optax.adam(1e-3))
    ...; stats = find_block_stats(opt_state); stats.gini, stats.shares
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from heterogeneity import partition as hp
from heterogeneity.metrics._gradient import gini, normalized_shares

PyTree = Any

__all__ = ["BlockStatsState", "log_block_stats", "find_block_stats"]


class BlockStatsState(NamedTuple):
    r"""State of `log_block_stats`: the statistics of the latest update u it saw ([Tomihari25, App. C.2, D.5]).

    B blocks in ``partition.labels(params)`` order; before the first update every array is 0.

    Attributes:
      norms: (B,) block norms :math:`G_b = \|u_b\|_2` of the latest update (the raw
        mini-batch gradient when the transform is first in the chain), in its units.
      shares: (B,) normalized shares :math:`(G_b/\sqrt{P_b}) / \sum_{b'} G_{b'}/\sqrt{P_{b'}}`
        (`normalized_shares`): dimensionless, summing to 1 (all 0 for a zero update).
      gini: () `gini` coefficient of :math:`G_b/\sqrt{P_b}`, in [0, (B − 1)/B].
      count: () int32, the number of updates seen.
    """

    norms: jax.Array  # (B,) latest ‖u_b‖₂
    shares: jax.Array  # (B,) latest (G_b/√P_b) / Σ
    gini: jax.Array  # () Gini of the latest G_b/√P_b
    count: jax.Array  # () int32 number of updates seen


def _dtype(tree: PyTree):
    return jnp.result_type(*jax.tree.leaves(tree), jnp.float32)


def log_block_stats(partition: hp.Partition) -> optax.GradientTransformation:
    r"""Identity `optax.GradientTransformation` recording gradient heterogeneity [Tomihari25, App. C.2, D.5]:

    .. math:: G_b = \|u_b\|_2, \qquad s_b = \frac{G_b/\sqrt{P_b}}{\sum_{b'} G_{b'}/\sqrt{P_{b'}}}, \qquad
              \mathrm{Gini}\big((G_b/\sqrt{P_b})_{b=1}^{B}\big)

    of every update u it is passed (returned unchanged), at the cost of one
    `block_sq_norms` reduction per step. Put it first in a chain to log raw (mini-batch)
    gradients, or after another transform to log that transform's updates. The state
    holds arrays only, so it works under `jit`, `optax.inject_hyperparams` wrappers and
    checkpointing.

    Args:
      partition: the blocks; their order is ``partition.labels(params)``.

    Returns:
      An `optax.GradientTransformation` whose state is a `BlockStatsState` (read it with
        `find_block_stats`).

    >>> import jax.numpy as jnp, optax
    >>> from heterogeneity import metrics as hm, partition as hp
    >>> params = {"a": jnp.zeros(4), "b": jnp.zeros(1)}
    >>> tx = optax.chain(hm.log_block_stats(hp.by_leaf(params)), optax.sgd(0.1))
    >>> g = {"a": jnp.array([3.0, 4.0, 0.0, 0.0]), "b": jnp.array([1.0])}   # G/√P = 2.5 and 1
    >>> _, state = tx.update(g, tx.init(params), params)
    >>> s = hm.find_block_stats(state)
    >>> [float(x) for x in s.norms], [round(float(x), 4) for x in s.shares], round(float(s.gini), 4), int(s.count)
    ([5.0, 1.0], [0.7143, 0.2857], 0.2143, 1)
    """
    if not isinstance(partition, hp.Partition):
        raise ValueError(f"log_block_stats: partition must be a heterogeneity.partition.Partition, got {partition!r}")

    def init_fn(params):
        b = partition.num_blocks(params)
        dt = _dtype(params)
        return BlockStatsState(jnp.zeros(b, dt), jnp.zeros(b, dt), jnp.zeros((), dt), jnp.zeros((), jnp.int32))

    def update_fn(updates, state, params=None):
        del params
        sq = partition.block_sq_norms(updates)
        sizes = np.asarray(partition.layout(updates).sizes, np.float64)
        norms = jnp.sqrt(sq).astype(state.norms.dtype)
        sz = jnp.asarray(sizes, norms.dtype)
        new = BlockStatsState(norms, normalized_shares(norms, sz), gini(norms / jnp.sqrt(sz)), state.count + 1)
        return updates, new

    return optax.GradientTransformation(init_fn, update_fn)


def find_block_stats(opt_state: PyTree) -> BlockStatsState:
    """The (first) `BlockStatsState` inside a possibly nested optimizer state ([Tomihari25, App. C.2, D.5] statistics).

    Args:
      opt_state: an optimizer state, e.g. of ``optax.chain(log_block_stats(p), ...)``.

    Returns:
      The first `BlockStatsState` in `jax.tree.leaves` order; `ValueError` if there is none.

    >>> import jax.numpy as jnp, optax
    >>> from heterogeneity import metrics as hm, partition as hp
    >>> params = {"w": jnp.zeros(3)}
    >>> state = optax.chain(optax.clip(1.0), hm.log_block_stats(hp.by_leaf(params))).init(params)
    >>> hm.find_block_stats(state).norms.shape, int(hm.find_block_stats(state).count)
    ((1,), 0)
    """
    found = [x for x in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, BlockStatsState))
             if isinstance(x, BlockStatsState)]
    if not found:
        raise ValueError("find_block_stats: no BlockStatsState in this optimizer state (was log_block_stats chained?)")
    return found[0]
