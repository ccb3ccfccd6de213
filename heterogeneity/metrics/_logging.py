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
    norms: jax.Array  # (B,) latest ‖u_b‖₂
    shares: jax.Array  # (B,) latest (G_b/√P_b) / Σ
    gini: jax.Array  # () Gini of the latest G_b/√P_b
    count: jax.Array  # () int32 number of updates seen


def _dtype(tree: PyTree):
    return jnp.result_type(*jax.tree.leaves(tree), jnp.float32)


def log_block_stats(partition: hp.Partition) -> optax.GradientTransformation:
    """Identity transform recording block norms, normalized shares and Gini of the updates.

    The block order is ``partition.labels(params)``. State holds arrays only, so it
    works under `jit`, `optax.inject_hyperparams` wrappers and checkpointing.
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
    """The (first) `BlockStatsState` inside a possibly nested optimizer state."""
    found = [x for x in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, BlockStatsState))
             if isinstance(x, BlockStatsState)]
    if not found:
        raise ValueError("find_block_stats: no BlockStatsState in this optimizer state (was log_block_stats chained?)")
    return found[0]
