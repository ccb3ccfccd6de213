"""Splitting curvature work over the devices of a `jax.sharding.Mesh`.

Two kinds of work are independent and split cleanly (data and probe parallelism):

- the (block, probe) items of `slq`, `blockwise_slq`, `hutchinson_trace`, `l11_norm` and
  `blockwise_l11_norm_matvec` (``mesh=``): the items are padded to a multiple of ``mesh.size`` (by
  repeating item 0, dropped afterwards), split over every device of the mesh (all its axes,
  flattened) by `jax.shard_map`, and each device runs its share as without a mesh (vmapped,
  or in chunks of ``batch_size``); params and batch are replicated;
- the micro-batches of a `MicroBatched` HVP (``HessianOperator(..., mesh=)``, ``hvp(...,
  mesh=)``): each device scans its share of the micro-batches and the partial HVPs are
  summed with `jax.lax.psum`; padded micro-batches get weight 0.

The results equal the single-device ones up to float summation order. Under
``jax.distributed.initialize`` (multi-host) a mesh over ``jax.devices()`` spans every host's
devices and the same code runs unchanged in every process (SPMD). Use one of the two
``mesh`` arguments per call: a sharded HVP cannot run inside a sharded probe loop.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

PyTree = Any

__all__ = ["check_mesh", "shard_items", "shard_sum", "pad_items"]


def check_mesh(mesh, matvec=None) -> None:
    """``mesh`` must be None or a `jax.sharding.Mesh` (hashable, so it can be a static jit
    argument), and not given both to an estimator and to its operator ``matvec``."""
    if mesh is not None and not isinstance(mesh, Mesh):
        raise ValueError(f"mesh must be a jax.sharding.Mesh or None, got {type(mesh).__name__} "
                         "(build one with jax.make_mesh((jax.device_count(),), ('x',)))")
    if mesh is not None and getattr(matvec, "mesh", None) is not None:
        raise ValueError("mesh given twice: the operator already splits its micro-batches over a mesh, so the "
                         "probes cannot be split too; pass mesh= to the estimator or to the operator, not both")


def _spec(mesh: Mesh) -> PartitionSpec:
    return PartitionSpec(tuple(mesh.axis_names))  # the leading axis over every mesh axis


def place(x: PyTree, mesh: Mesh, spec: PartitionSpec | None = None) -> PyTree:
    """Lay the leading axis of every leaf of ``x`` out over the mesh (inside `jax.jit`), or
    as ``spec`` says (``PartitionSpec()``: replicated)."""
    sharding = NamedSharding(mesh, _spec(mesh) if spec is None else spec)
    if any(t == AxisType.Explicit for t in mesh.axis_types):
        return jax.sharding.reshard(x, sharding)
    return jax.lax.with_sharding_constraint(x, sharding)


def pad_items(xs: PyTree, multiple: int) -> tuple[PyTree, int]:
    """Pad the leading axis of ``xs`` to a multiple of ``multiple`` by repeating item 0."""
    n = jax.tree.leaves(xs)[0].shape[0]
    pad = -n % multiple
    if pad:
        xs = jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[:1], pad, axis=0)]), xs)
    return xs, n


def shard_items(run: Callable[[PyTree], PyTree], xs: PyTree, mesh: Mesh) -> PyTree:
    """``run(xs)`` with the leading item axis of ``xs`` (and of the result) split over the mesh.

    ``run`` maps a stack of items to a stack of results (e.g. ``vmap(fn)``); it may close over
    replicated values such as a linearized HVP. ``check_vma=False``: a linearization built
    outside the map has device-invariant primals, and JAX's varying-axes check would refuse
    the per-device tangents it is applied to.
    """
    xs, n = pad_items(xs, mesh.size)
    spec = _spec(mesh)
    out = jax.shard_map(run, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False)(place(xs, mesh))
    # replicated before the padding is cut: an Explicit mesh cannot slice a sharded axis unevenly
    return jax.tree.map(lambda y: y[:n], place(out, mesh, PartitionSpec()))


def shard_sum(term: Callable[[PyTree], PyTree], xs: PyTree, mesh: Mesh) -> PyTree:
    """``Σ_i term(xs_i)`` accumulated per device over its share of the leading axis, then `psum`.

    ``term(stack)`` returns the sum over its stack; ``xs`` must already be padded with items
    whose term is zero (e.g. weight 0).
    """
    spec = _spec(mesh)

    def local(part):
        return jax.lax.psum(term(part), tuple(mesh.axis_names))

    return jax.shard_map(local, mesh=mesh, in_specs=spec, out_specs=PartitionSpec(), check_vma=False)(
        place(xs, mesh))
