"""Operators as pytrees: the jit cache key is the function, the arrays are arguments.

A matvec closure (``linearized_hvp(loss_fn, params, batch)``) bakes its params and batch
into the function, so every new closure is a new program for `jax.jit`. An operator object
keeps them as pytree leaves and only the function as static data (as matfree's
``matvec(v, *params)`` does), so `top_eigenvalue`, `slq`, `hutchinson_trace`, `l11_norm`
and `blockwise_l11_norm_matvec` compile once per (function, options, shapes) and are served from the
cache for new params or a new batch of the same shapes:

    op = hc.HessianOperator(loss_fn, params, batch)
    hc.top_eigenvalue(op, params, key).value   # compiles
    hc.top_eigenvalue(hc.HessianOperator(loss_fn, new_params, new_batch), params, key)  # cached

The function is compared by identity: define ``loss_fn`` once, not as a fresh lambda per call.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax

from heterogeneity.curvature._hvp import _check_hvp_mesh, check_params, hvp, linearized_hvp

PyTree = Any

__all__ = ["Operator", "HessianOperator", "LinearOperator", "StaticPartition", "operator_jit"]


class Operator:
    """Base of the pytree operators: ``op(v)`` applies it; ``op.bind()`` returns a matvec
    ``v -> op(v)`` that may precompute (e.g. one linearization) for many applications."""

    def __call__(self, v: PyTree) -> PyTree:
        raise NotImplementedError

    def bind(self) -> Callable[[PyTree], PyTree]:
        return self.__call__


@jax.tree_util.register_pytree_node_class
class HessianOperator(Operator):
    """``v -> ∇²L(params) v`` for ``L = loss_fn(params, batch)`` (forward-over-reverse, [Zhang24]
    App. D.1). ``params`` and ``batch`` (or a `MicroBatched`) are leaves, ``loss_fn`` and
    ``mesh`` are static. ``bind()`` linearizes the gradient once (`linearized_hvp`).
    ``mesh`` (a `jax.sharding.Mesh`; `MicroBatched` batches only) splits the micro-batches
    over its devices."""

    def __init__(self, loss_fn: Callable, params: PyTree, batch: PyTree, *, mesh=None):
        if not callable(loss_fn):
            raise ValueError(f"HessianOperator: loss_fn must be callable, got {type(loss_fn).__name__}")
        check_params(params)
        _check_hvp_mesh(batch, mesh)
        self.loss_fn, self.params, self.batch, self.mesh = loss_fn, params, batch, mesh

    def __call__(self, v):
        return hvp(self.loss_fn, self.params, self.batch, v, mesh=self.mesh)

    def bind(self):
        return linearized_hvp(self.loss_fn, self.params, self.batch, mesh=self.mesh)

    def tree_flatten(self):
        return (self.params, self.batch), (self.loss_fn, self.mesh)

    @classmethod
    def tree_unflatten(cls, aux, children):
        op = object.__new__(cls)  # no checks: JAX rebuilds it with tracers or placeholders
        (op.loss_fn, op.mesh), (op.params, op.batch) = aux, children
        return op

    def __repr__(self):
        return f"HessianOperator({getattr(self.loss_fn, '__name__', self.loss_fn)!r})"


@jax.tree_util.register_pytree_node_class
class LinearOperator(Operator):
    """``v -> matvec(v, *args)`` for any symmetric ``matvec``; ``args`` are leaves, ``matvec`` is
    static (matfree's operator form)."""

    def __init__(self, matvec: Callable, *args):
        if not callable(matvec):
            raise ValueError(f"LinearOperator: matvec must be callable, got {type(matvec).__name__}")
        self.matvec, self.args = matvec, args

    def __call__(self, v):
        return self.matvec(v, *self.args)

    def tree_flatten(self):
        return self.args, self.matvec

    @classmethod
    def tree_unflatten(cls, matvec, args):
        op = object.__new__(cls)
        op.matvec, op.args = matvec, tuple(args)
        return op

    def __repr__(self):
        return f"LinearOperator({getattr(self.matvec, '__name__', self.matvec)!r})"


class StaticPartition:
    """A partition as a jit static argument, hashed and compared by its resolved `Layout` on
    one pytree structure: two partitions that give the same blocks (e.g. ``by_leaf(params)``
    built afresh per call) share one compiled program."""

    def __init__(self, partition, like: PyTree):
        self.partition = partition
        self.layout = partition.layout(like)

    def __hash__(self):
        return hash(self.layout)

    def __eq__(self, other):
        return isinstance(other, StaticPartition) and self.layout == other.layout

    def __getattr__(self, name):  # labels, block_ids, block_sum, ...: the partition's own
        return getattr(self.__dict__["partition"], name)


def operator_jit(impl: Callable, static_argnames: tuple[str, ...]) -> Callable:
    """``impl(matvec, *arrays, **options)`` dispatched on its operator.

    An `Operator` goes through one module-level `jax.jit` (the operator is a pytree argument,
    bound inside; ``options`` named in ``static_argnames`` are static), so the program is
    cached per (function, options, shapes). Any other matvec (a closure) calls ``impl``
    directly: it is traced wherever it is called (inside the caller's own `jax.jit`).
    """

    @functools.partial(jax.jit, static_argnames=static_argnames)
    def compiled(op, *args, **options):
        return impl(op.bind(), *args, **options)

    @functools.wraps(impl)
    def dispatch(matvec, *args, **options):
        if isinstance(matvec, Operator):
            return compiled(matvec, *args, **options)
        return impl(matvec, *args, **options)

    dispatch.compiled = compiled  # for compile counters in tests
    return dispatch
