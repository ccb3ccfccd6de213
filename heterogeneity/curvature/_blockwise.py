"""Blockwise Hessian spectra: SLQ of every diagonal block ``H_bb`` in one compiled program.

Seed 001 (App. C.2, D.1, Sec. 2) compares the spectra of the diagonal Hessian blocks
``∇²L(w_l)``; its code runs one Lanczos (and one extra backward) per block, block after
block. Here all blocks and all probes run at once:

* one `jax.linearize` of the gradient is shared by every block-restricted HVP;
* blocks are grouped by the leaves they live in (one group per leaf for a by-leaf
  partition; all heads of a `Split` leaf in one group). Within a group each block is
  *packed*: its elements are gathered (static indices) into a vector of length ``d_max``
  (the group's largest block), zero padded, and ``H_bb x = gather_b(H · scatter_b(x))``;
  Lanczos runs in the block's own coordinates, its basis is ``num_steps × d_max``. The
  tangent is a compile-time zero outside the group's leaves, so XLA prunes each group's HVP
  to the layers it needs (a masked full-size HVP per block costs ~2x more flops on an MLP);
* within a group, blocks × probes are flattened and vmapped (or `lax.map`-ped in chunks of
  ``batch_size``) over the same Lanczos code; all groups sit in one traced, compiled program;
* blocks with at most ``num_steps`` elements form their own groups, always run with full
  re-orthogonalisation: Lanczos breaks down once the block's Krylov space is exhausted,
  restart vectors are confined to the block (``support``) until all ``d_b`` directions are
  spanned, then the run freezes. The quadrature is then exact: its nodes are eigenvalues of
  ``H_bb`` (`eigh`, up to rounding) and its weights the probe's ``(vᵀq_i)²`` (tested).

Memory: ``"full"`` stores ``num_blocks · num_probes · num_steps · d_max`` basis entries
(use ``reortho="none"`` or ``batch_size`` for large models).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from heterogeneity.curvature._lanczos import (
    LanczosResult,
    _check_options,
    check_positive_int,
    gauss_quadrature,
    lanczos_flat,
    ritz,
)
from heterogeneity.curvature._operator import HessianOperator, StaticPartition, operator_jit
from heterogeneity.curvature._slq import Spectrum, check_batch_size, check_like, check_probe, map_probes, probe_vector
from heterogeneity.tree import ravel

PyTree = Any

__all__ = ["blockwise_slq", "blockwise_slq_matvec", "blockwise_top_eigenvalue", "block_packing", "group_matvec",
           "BlockGroup", "EigenEstimate"]


class EigenEstimate(NamedTuple):
    """A Ritz value and the bound ``|β_{m+1} s_m|`` on its residual ``‖Hy − θy‖``
    (an eigenvalue lies within this distance of ``value``). ``finite`` (bool) is False when
    a non-finite HVP froze the Lanczos run: ``value``/``error_bound`` then belong to the
    finite steps before the fault, or are NaN when there were none."""

    value: jax.Array
    error_bound: jax.Array
    finite: jax.Array | bool = True


class BlockGroup(NamedTuple):
    """Blocks that live in the same set of leaves, packed side by side.

    ``leaves``: the leaf numbers (`jax.tree.leaves` order) the blocks touch; their
    concatenation is the group's sub-vector. ``index[i, :sizes[i]]`` are the positions of
    block ``blocks[i]`` in that sub-vector, ``flat`` the same positions in the full `ravel`
    vector; ``valid`` masks the padding; ``whole`` is True when every block *is* the whole
    sub-vector (no scatter/gather needed).
    """

    labels: tuple[str, ...]
    blocks: np.ndarray
    leaves: tuple[int, ...]
    index: np.ndarray
    flat: np.ndarray
    valid: np.ndarray
    whole: bool


def _leaf_block_ids(partition, params) -> list[np.ndarray]:
    zeros = jax.tree.map(lambda x: np.zeros(np.shape(x), np.float32), params)
    with jax.ensure_compile_time_eval():
        ids = partition.block_ids(zeros)
    return [np.asarray(x).reshape(-1) for x in jax.tree.leaves(ids)]


def select_blocks(labels: Sequence[str], blocks) -> list[int]:
    """Numbers of the labels in ``blocks`` (None: all), in partition order; unknown,
    repeated or no labels raise `ValueError`."""
    if blocks is None:
        return list(range(len(labels)))
    if isinstance(blocks, str):
        raise ValueError(f"blocks must be a sequence of block labels, got the string {blocks!r} (wrap it in a list)")
    wanted = list(blocks)
    if not wanted:
        raise ValueError("blocks is empty: give at least one block label (or None for all blocks)")
    pos = {label: i for i, label in enumerate(labels)}
    unknown = [b for b in wanted if b not in pos]
    if unknown:
        shown = ", ".join(map(repr, labels[:8])) + (", ..." if len(labels) > 8 else "")
        raise ValueError(f"unknown block label(s) {unknown}; the partition has {len(labels)} blocks: {shown}")
    if len(set(wanted)) != len(wanted):
        raise ValueError(f"blocks lists a label twice: {sorted(b for b in set(wanted) if wanted.count(b) > 1)}")
    return sorted(pos[b] for b in wanted)


def block_packing(partition, params, *, small: int = 0, blocks=None) -> list[BlockGroup]:
    """Static packing of ``partition``'s blocks (or only the ``blocks`` labels), grouped by the
    leaves they touch and by size (``<= small`` apart from larger ones). Pure numpy on static
    shapes (jit-safe)."""
    labels = partition.labels(params)
    chosen_blocks = select_blocks(labels, blocks)
    leaf_ids = _leaf_block_ids(partition, params)
    offsets = np.cumsum([0] + [len(x) for x in leaf_ids])
    touch: dict[int, list[int]] = {}
    for n, ids in enumerate(leaf_ids):
        for b in np.unique(ids):
            touch.setdefault(int(b), []).append(n)
    keys: dict[tuple, list[int]] = {}
    for b in chosen_blocks:
        size = sum(int(np.sum(leaf_ids[n] == b)) for n in touch[b])
        keys.setdefault((tuple(touch[b]), size <= small), []).append(b)
    groups = []
    for (leaves, _), chosen in keys.items():
        sub_ids = np.concatenate([leaf_ids[n] for n in leaves])
        sub_flat = np.concatenate([np.arange(offsets[n], offsets[n + 1]) for n in leaves])
        members = [np.nonzero(sub_ids == b)[0] for b in chosen]
        dmax = max(len(x) for x in members)
        index = np.zeros((len(chosen), dmax), np.int32)
        valid = np.zeros((len(chosen), dmax), bool)
        for i, mem in enumerate(members):
            index[i, : len(mem)] = mem
            valid[i, : len(mem)] = True
        whole = len(chosen) == 1 and len(members[0]) == len(sub_ids)
        groups.append(BlockGroup(tuple(labels[b] for b in chosen), np.asarray(chosen), leaves, index,
                                 sub_flat[index], valid, whole))
    return groups


def group_matvec(matvec: Callable, like: PyTree, group: BlockGroup, dtype) -> Callable:
    """``(x, index, valid) ↦ H_bb x`` on packed coordinates of a block of ``group``.

    The tangent is zero (a compile-time constant) on every leaf outside the group and only
    the group's leaves of the output are read, so XLA prunes the HVP to the layers between
    the block and the loss, as a per-block program would.
    """
    leaves, treedef = jax.tree.flatten(like)
    sel = group.leaves
    shapes = [np.shape(leaves[n]) for n in sel]
    splits = np.cumsum([int(np.prod(s, dtype=np.int64)) for s in shapes])[:-1]
    d_sub = int(sum(int(np.prod(s, dtype=np.int64)) for s in shapes))

    def mv_sub(sub):
        t = [jnp.zeros(np.shape(x), jnp.result_type(x)) for x in leaves]
        for n, part, shp in zip(sel, jnp.split(sub, splits), shapes):
            t[n] = part.reshape(shp).astype(jnp.result_type(leaves[n]))
        out = jax.tree.leaves(matvec(jax.tree.unflatten(treedef, t)))
        return jnp.concatenate([out[n].reshape(-1).astype(dtype) for n in sel])

    def mv(x, index, valid):
        if group.whole:
            return mv_sub(x.astype(dtype)).astype(x.dtype)
        sub = jnp.zeros((d_sub,), dtype).at[index].add(jnp.where(valid, x, 0).astype(dtype))
        return jnp.where(valid, mv_sub(sub)[index], 0).astype(x.dtype)

    return mv


def _blockwise_lanczos(matvec, like, key, *, partition, blocks, num_steps, num_probes, reortho, probe, dtype,
                       batch_size, post: Callable[[LanczosResult], Any]) -> dict[str, Any]:
    vdt = ravel(like)[0].dtype  # arguments were checked by the public function (`_check_blockwise`)
    out: dict[str, Any] = {}
    for group in block_packing(partition, like, small=num_steps, blocks=blocks):
        mode = "full" if group.index.shape[1] <= num_steps else reortho
        nb = len(group.labels)
        mv = group_matvec(matvec, like, group, vdt)
        block_keys = jax.vmap(lambda b: jax.random.split(jax.random.fold_in(key, b), num_probes))(
            jnp.asarray(group.blocks))
        items = (jnp.repeat(jnp.asarray(group.index), num_probes, axis=0),
                 jnp.repeat(jnp.asarray(group.valid), num_probes, axis=0),
                 block_keys.reshape((nb * num_probes,) + block_keys.shape[2:]))

        def one(item, mode=mode, mv=mv):
            index, valid, k = item
            v0 = probe_vector(k, index.shape[0], vdt, probe, support=valid)
            res = lanczos_flat(lambda x: mv(x, index, valid), v0, num_steps, reortho=mode, dtype=dtype,
                               support=valid)
            return post(res)

        result = map_probes(one, items, batch_size)
        for i, label in enumerate(group.labels):
            out[label] = jax.tree.map(lambda x: x.reshape((nb, num_probes) + x.shape[1:])[i], result)
    return {label: out[label] for label in partition.labels(like) if label in out}


def blockwise_slq(
    loss_fn: Callable,
    params: PyTree,
    batch: PyTree,
    key: jax.Array,
    *,
    partition,
    num_steps: int = 30,
    num_probes: int = 2,
    reortho: str = "full",
    probe: str = "rademacher",
    dtype=None,
    batch_size: int | None = None,
    blocks: Sequence[str] | None = None,
) -> dict[str, Spectrum]:
    """SLQ of every diagonal Hessian block ``H_bb`` (seed 001 App. C.2 Alg. 5, D.1).

    Returns ``{label: Spectrum}`` in partition order, each of shape (num_probes, num_steps)
    with its own ``finite`` flag (False when an HVP of that block was non-finite, e.g. NaN in
    the batch); for a block with ``d_b ≤ num_steps`` elements the quadrature is exact (its
    nodes are eigenvalues of H_bb, its weights the probe's). ``blocks``: only these labels
    (e.g. a chunk of a large model; same numbers as in a full run). ``batch`` may be
    `MicroBatched`. ``batch_size`` chunks the (block, probe) pairs of each group.

    The defaults (30 steps, 2 probes) are for small models; the papers use
    ``num_steps=100, num_probes=10``. One linearization, one compiled program, compiled once
    per (``loss_fn``, blocks, options, shapes): new params or a new batch of the same shapes,
    or an equal partition built afresh, reuse the program.
    """
    return blockwise_slq_matvec(HessianOperator(loss_fn, params, batch), params, key, partition=partition,
                                num_steps=num_steps, num_probes=num_probes, reortho=reortho, probe=probe,
                                dtype=dtype, batch_size=batch_size, blocks=blocks)


def _spectrum(res):
    nodes, weights = gauss_quadrature(res)
    return Spectrum(nodes, weights, res.finite)


def _blockwise_spectra(matvec, like, key, **opts):
    out = _blockwise_lanczos(matvec, like, key, post=_spectrum, **opts)
    return {label: s._replace(finite=jnp.all(s.finite)) for label, s in out.items()}


_STATIC = ("partition", "blocks", "num_steps", "num_probes", "reortho", "probe", "dtype", "batch_size")
_blockwise_spectra_run = operator_jit(_blockwise_spectra, _STATIC)


def _blocks_key(labels, blocks) -> tuple[str, ...] | None:
    """``blocks`` checked and in partition order (a static jit argument: any order or a list
    built afresh shares one program); None for all blocks."""
    return None if blocks is None else tuple(labels[b] for b in select_blocks(labels, blocks))


def _in_order(out: dict, labels) -> dict:
    return {label: out[label] for label in labels if label in out}  # a dict out of jit comes back key-sorted


def blockwise_slq_matvec(matvec, like, key, *, partition, num_steps=30, num_probes=2, reortho="full",
                         probe="rademacher", dtype=None, batch_size=None, blocks=None) -> dict[str, Spectrum]:
    """`blockwise_slq` for any symmetric operator ``matvec`` on pytrees shaped like ``like``
    (an `Operator` is compiled once per function, blocks, options and shapes)."""
    opts = _check_blockwise(like, num_steps, num_probes, reortho, probe, dtype, batch_size)
    labels = partition.labels(like)
    chosen = _blocks_key(labels, blocks)
    out = _blockwise_spectra_run(matvec, like, key, partition=StaticPartition(partition, like), blocks=chosen, **opts)
    return _in_order(out, labels)


def _check_blockwise(like, num_steps, num_probes, reortho, probe, dtype, batch_size) -> dict:
    _check_options(num_steps, reortho, dtype)
    num_probes = check_positive_int(num_probes, "num_probes")
    check_probe(probe)
    check_batch_size(batch_size)
    check_like(like)
    return dict(num_steps=int(num_steps), num_probes=num_probes, reortho=reortho, probe=probe, dtype=dtype,
                batch_size=batch_size)


def _top(res: LanczosResult, absolute: bool) -> EigenEstimate:
    vals, _, last = ritz(res)
    i = jnp.argmax(jnp.abs(vals) if absolute else vals)
    v = jnp.abs(vals[i]) if absolute else vals[i]
    bound = jnp.where(res.size > 0, jnp.abs(res.residual * last[i]), jnp.nan)
    return EigenEstimate(v, bound, res.finite)


def blockwise_top_eigenvalue(
    loss_fn: Callable,
    params: PyTree,
    batch: PyTree,
    key: jax.Array,
    *,
    partition,
    num_steps: int = 30,
    reortho: str = "full",
    dtype=None,
    batch_size: int | None = None,
    blocks: Sequence[str] | None = None,
) -> dict[str, EigenEstimate]:
    """The largest eigenvalue of every diagonal block ``H_bb`` (Lanczos from a Gaussian start,
    top Ritz value with its residual bound; seed 001 App. C.2). Same engine and caching as
    `blockwise_slq`."""
    op = HessianOperator(loss_fn, params, batch)
    opts = _check_blockwise(params, num_steps, 1, reortho, "normal", dtype, batch_size)
    labels = partition.labels(params)
    chosen = _blocks_key(labels, blocks)
    out = _blockwise_top_run(op, params, key,
                             partition=StaticPartition(partition, params), blocks=chosen,
                             num_steps=opts["num_steps"], reortho=reortho, dtype=dtype, batch_size=batch_size)
    return _in_order(out, labels)


def _blockwise_top(matvec, like, key, *, partition, blocks, num_steps, reortho, dtype, batch_size):
    res = _blockwise_lanczos(matvec, like, key, partition=partition, blocks=blocks, num_steps=num_steps,
                             num_probes=1, reortho=reortho, probe="normal", dtype=dtype, batch_size=batch_size,
                             post=lambda r: _top(r, absolute=False))
    return {label: jax.tree.map(lambda x: x[0], est) for label, est in res.items()}


_blockwise_top_run = operator_jit(_blockwise_top, ("partition", "blocks", "num_steps", "reortho", "dtype",
                                                   "batch_size"))
