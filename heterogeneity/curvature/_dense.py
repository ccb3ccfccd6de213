"""Dense Hessians of small models (references for tests and for users' sanity checks)."""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax

from heterogeneity.curvature._hvp import check_params, mean_loss
from heterogeneity.tree import ravel

PyTree = Any

__all__ = ["dense_hessian"]


@functools.partial(jax.jit, static_argnames="loss_fn")
def _dense_hessian(params: PyTree, batch: PyTree, *, loss_fn: Callable) -> jax.Array:
    flat, unravel = ravel(params)
    return jax.hessian(lambda y: mean_loss(loss_fn, unravel(y), batch))(flat)


def dense_hessian(loss_fn: Callable, params: PyTree, batch: PyTree) -> jax.Array:
    """The ``(d, d)`` Hessian of ``loss_fn(params, batch)`` in `heterogeneity.tree.ravel`
    order (leaf order, each leaf row-major). ``batch`` may be a `MicroBatched` (averaged).
    Memory ``d²``: for models of at most a few thousand parameters.

    Compiled once per ``loss_fn`` (hashed by identity: pass the same function object) and
    params/batch shapes; later calls with new values reuse the program. Integer params
    raise `ValueError` naming the leaf.
    """
    check_params(params)
    return _dense_hessian(params, batch, loss_fn=loss_fn)
