"""Dense Hessians of small models (references for tests and for users' sanity checks)."""
from __future__ import annotations

from typing import Any, Callable

import jax

from heterogeneity.curvature._hvp import mean_loss
from heterogeneity.tree import ravel

PyTree = Any

__all__ = ["dense_hessian"]


def dense_hessian(loss_fn: Callable, params: PyTree, batch: PyTree) -> jax.Array:
    """The ``(d, d)`` Hessian of ``loss_fn(params, batch)`` in `heterogeneity.tree.ravel`
    order (leaf order, each leaf row-major). ``batch`` may be a `MicroBatched` (averaged).
    Memory ``d²``: for models of at most a few thousand parameters.
    """
    flat, unravel = ravel(params)

    @jax.jit
    def hess(x, b):
        return jax.hessian(lambda y: mean_loss(loss_fn, unravel(y), b))(x)

    return hess(flat, batch)
