"""Per-block reductions shared by the blockwise transforms (SignSGD (S), EF-signSGD, blockwise Adam).

Private helpers; whole-tree reductions are `optax.tree.sum` / `optax.tree.size`.

``partition=None`` means one block holding every parameter; otherwise a
`heterogeneity.partition` partition decides the blocks (`Partition.block_sum` /
`Partition.broadcast`). Reductions run in float32 (float64 when enabled) whatever the
parameter dtype, so bfloat16 models get accurate norms; results are cast back by callers.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["block_sum", "block_sizes", "broadcast_blocks", "check_partition"]


def _acc_dtype():
    return jnp.result_type(float)  # float32, or float64 under jax.enable_x64


def check_partition(opt: str, partition: Any, name: str = "partition") -> None:
    """``partition`` must be None or expose ``block_sum`` and ``broadcast`` (heterogeneity.partition)."""
    if partition is None:
        return
    missing = [m for m in ("block_sum", "broadcast", "labels") if not hasattr(partition, m)]
    if missing:
        raise ValueError(
            f"{opt}: {name} must be a heterogeneity.partition partition (e.g. hp.by_leaf()) or None; "
            f"got {type(partition).__name__} without {missing}"
        )


def block_sum(tree: Any, partition: Any) -> jax.Array:
    """Sum of the elements of each block: shape ``(num_blocks,)`` (``(1,)`` if no partition)."""
    if partition is None:
        total = optax.tree.sum(jax.tree.map(lambda x: x.astype(_acc_dtype()), tree))
        return jnp.asarray(total, _acc_dtype())[None]
    return partition.block_sum(jax.tree.map(lambda x: x.astype(_acc_dtype()), tree))


def block_sizes(params: Any, partition: Any) -> np.ndarray:
    """Number of scalars in each block, as a static NumPy array ``(num_blocks,)``."""
    if partition is None:
        return np.array([optax.tree.size(params)])
    sizes = partition.sizes(params)
    return np.array([sizes[label] for label in partition.labels(params)])


def broadcast_blocks(values: jax.Array, like: Any, partition: Any) -> Any:
    """Pytree shaped like ``like`` whose every element holds ``values[its block]`` (dtype of ``values``)."""
    if partition is None:
        return jax.tree.map(lambda x: jnp.broadcast_to(values[0], jnp.shape(x)), like)
    return partition.broadcast(values, like, dtype=values.dtype)
