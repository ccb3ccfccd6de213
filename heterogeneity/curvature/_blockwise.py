"""Blockwise Hessian spectra: SLQ of every diagonal block ``H_bb`` in one compiled program.

[Zhang24, App. C.2, D.1, §2] compares the spectra of the diagonal Hessian blocks
``∇²L(w_l)``; its code runs one Lanczos (and one extra backward) per block, block after
block. Here all blocks and all probes run in one program:

* one `jax.linearize` of the gradient is shared by every block-restricted HVP, and its
  linear program is traced once (`heterogeneity.curvature._restrict.Traced`);
* blocks are packed into *groups* that share one restricted HVP. A group's HVP takes
  tangents only on the leaves its blocks live in and forms only those leaves' outputs; the
  rest is dropped at trace time (symbolic zeros forward, dead code backward), so a group
  holds the layers between its leaves and the loss, as a per-block program would. Each
  block is packed into a vector of length ``d_max`` (the group's largest block), zero
  padded, placed by a dynamic slice (or its index table when not contiguous);
* ``group_by`` sets what may share a group, which is the trade between compile time and
  run time: ``"leaf"`` groups only blocks of the same leaves (one group per tensor for
  `by_leaf`: the finest pruning, and a program that grows with the number of blocks);
  ``"module"`` (default) the blocks of leaves with one parent path, a kernel with its bias
  or a norm's scale with its shift (half the program for almost the same run time: the
  two share their whole path to the loss); ``"layer"`` the blocks of one layer (`by_layer`
  units: the program grows with the number of layers, each HVP runs the whole layer);
  ``"all"`` one group per size class (a program flat in the number of blocks and layers;
  every HVP is a full HVP). Within a unit, blocks of very different sizes go apart
  (`SIZE_RATIO`, `PAD_FREE`), so a bias is not padded to an embedding. Measured trade-offs
  are in BENCHMARKS.md;
* within a group the (block, probe) pairs run the same Lanczos code: a plain loop
  (``batch_size=1``, the ``"auto"`` choice on CPU, where it compiles and runs faster),
  vmapped (None, the choice on accelerators) or vmapped in chunks of ``batch_size``;
  ``mesh`` splits them over devices first (`heterogeneity.curvature._sharding`);
* blocks with at most ``num_steps`` elements run with full re-orthogonalisation: Lanczos
  breaks down once the block's Krylov space is exhausted, restart vectors are confined to
  the block (``support``) until all ``d_b`` directions are spanned, then the run freezes.
  The quadrature is then exact: its nodes are eigenvalues of ``H_bb`` (`eigh`, up to
  rounding) and its weights the probe's ``(vᵀq_i)²`` (tested).

Probes come from ``fold_in(key, b)`` for block ``b`` (its partition index) and are
prefix-stable in their length, so a block gets the same probe whatever its group, its
``d_max``, ``group_by``, ``blocks`` or ``batch_size``: the results agree to float rounding.

Results come back as one stacked pytree per estimator (`BlockwiseSpectrum`,
`BlockwiseEigenEstimate`; `heterogeneity.curvature._results`): block axis first, in
partition order, labels static, so `jax.jit` cannot reorder them.

Memory: ``"full"`` stores ``num_steps · d_max`` basis entries per (block, probe) in flight
(use ``reortho="none"`` or a small ``batch_size`` for large models).
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
from heterogeneity.curvature._restrict import Traced
from heterogeneity.curvature._results import BlockwiseEigenEstimate, BlockwiseSpectrum, EigenEstimate
from heterogeneity.curvature._sharding import check_mesh
from heterogeneity.curvature._slq import Spectrum, check_like, check_probe, map_probes, probe_vector, resolve_batch_size
from heterogeneity.tree import leaves_with_paths, ravel

PyTree = Any

__all__ = ["blockwise_slq", "blockwise_slq_matvec", "blockwise_top_eigenvalue", "blockwise_top_eigenvalue_matvec",
           "block_packing", "group_matvec", "BlockGroup", "EigenEstimate"]


class BlockGroup(NamedTuple):
    """Blocks that live in the same set of leaves, packed side by side.

    ``leaves``: the leaf numbers (`jax.tree.leaves` order) the blocks touch; their
    concatenation is the group's sub-vector. ``index[i, :sizes[i]]`` are the positions of
    block ``blocks[i]`` in that sub-vector, ``flat`` the same positions in the full `ravel`
    vector; ``valid`` masks the padding; ``whole`` is True when every block *is* the whole
    sub-vector (no scatter/gather needed); ``contiguous`` when every block is the range
    ``offsets[i] + arange(sizes[i])`` of it (a dynamic slice, no index table in the program).
    """

    labels: tuple[str, ...]
    blocks: np.ndarray
    leaves: tuple[int, ...]
    index: np.ndarray
    flat: np.ndarray
    valid: np.ndarray
    whole: bool
    sizes: np.ndarray
    offsets: np.ndarray
    contiguous: bool


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


GROUPINGS = ("leaf", "module", "layer", "all")
SIZE_RATIO = 16  # blocks of one unit whose sizes differ more than this are packed apart ...
PAD_FREE = 1 << 16  # ... unless the larger has at most this many elements (padding them is free)


def _leaf_units(group_by, params) -> list:
    """The grouping unit of every leaf (`jax.tree.leaves` order)."""
    n = len(jax.tree.leaves(params))
    if group_by == "leaf":
        return list(range(n))
    if group_by == "all":
        return [0] * n
    if group_by == "module":  # the leaf's parent path: a kernel and its bias, a norm's scale and bias
        return [path.rsplit("/", 1)[0] if "/" in path else path for path, _ in leaves_with_paths(params)]
    from heterogeneity import partition as hp  # a partition module import here avoids a cycle

    rule = hp.by_layer() if group_by == "layer" else group_by
    return [tuple(np.unique(ids).tolist()) for ids in _leaf_block_ids(rule, params)]


def check_group_by(group_by) -> None:
    if isinstance(group_by, str):
        if group_by not in GROUPINGS:
            raise ValueError(f"group_by must be one of {GROUPINGS} or a Partition, got {group_by!r}")
    elif not (hasattr(group_by, "layout") and hasattr(group_by, "block_ids")):
        raise ValueError(f"group_by must be one of {GROUPINGS} or a Partition, got {type(group_by).__name__}")


def block_packing(partition, params, *, small: int = 0, blocks=None, group_by="leaf") -> list[BlockGroup]:
    """Static packing of ``partition``'s blocks (or only the ``blocks`` labels) into groups that
    share one restricted HVP. ``group_by`` says which blocks may share: ``"leaf"`` only blocks
    of the same leaves (finest pruning), ``"module"`` blocks of leaves with the same parent
    path (a kernel and its bias), ``"layer"`` blocks of one layer (`by_layer` units), ``"all"``
    any, or a `Partition` whose blocks are the units. Within a unit, blocks are further split
    by size (more than `SIZE_RATIO` apart once the larger exceeds `PAD_FREE` elements, and
    ``<= small`` apart from larger ones). Pure numpy on static shapes (jit-safe)."""
    check_group_by(group_by)
    labels = partition.labels(params)
    chosen_blocks = select_blocks(labels, blocks)
    leaf_ids = _leaf_block_ids(partition, params)
    offsets = np.cumsum([0] + [len(x) for x in leaf_ids])
    units = _leaf_units(group_by, params)
    touch: dict[int, list[int]] = {}
    for n, ids in enumerate(leaf_ids):
        for b in np.unique(ids):
            touch.setdefault(int(b), []).append(n)
    size = {b: sum(int(np.sum(leaf_ids[n] == b)) for n in touch[b]) for b in chosen_blocks}
    by_unit: dict[tuple, list[int]] = {}
    for b in chosen_blocks:
        unit = tuple(sorted({units[n] for n in touch[b]}, key=repr))
        by_unit.setdefault((unit, size[b] <= small), []).append(b)
    keys: dict[tuple, list[int]] = {}
    for key, members in by_unit.items():
        lo = None  # size classes: sorted by size, a new class when the ratio to its smallest exceeds SIZE_RATIO
        for b in sorted(members, key=lambda b: size[b]):
            if lo is None or size[b] > max(SIZE_RATIO * lo, PAD_FREE):
                lo, cls = size[b], len(keys)
            keys.setdefault((key, cls), []).append(b)
    for key in keys:
        keys[key].sort()
    groups = []
    for chosen in keys.values():
        leaves = tuple(sorted({n for b in chosen for n in touch[b]}))
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
        sizes = np.asarray([len(mem) for mem in members], np.int32)
        starts = np.asarray([mem[0] for mem in members], np.int32)
        contiguous = all(np.array_equal(mem, np.arange(mem[0], mem[0] + len(mem))) for mem in members)
        groups.append(BlockGroup(tuple(labels[b] for b in chosen), np.asarray(chosen), leaves, index,
                                 sub_flat[index], valid, whole, sizes, starts, contiguous))
    return groups


def group_matvec(matvec: Callable, like: PyTree, group: BlockGroup, dtype) -> Callable:
    """``(x, i) ↦ H_bb x`` on packed coordinates (length ``d_max``, zero past the block's size)
    of block ``i`` (its position in ``group``, may be traced).

    The HVP is restricted to the group's leaves (`heterogeneity.curvature._restrict`): the
    tangent is a symbolic zero on every other leaf and only the group's outputs are formed,
    so the program holds the layers between the group's leaves and the loss, as a per-block
    program would. Contiguous blocks are placed and read by dynamic slices; others by their
    index table. ``matvec`` may be a `Traced` operator (traced once for many groups).
    """
    leaves = jax.tree.leaves(like)
    sel = group.leaves
    shapes = [np.shape(leaves[n]) for n in sel]
    splits = np.cumsum([int(np.prod(s, dtype=np.int64)) for s in shapes])[:-1]
    d_sub = int(sum(int(np.prod(s, dtype=np.int64)) for s in shapes))
    restricted = (matvec if isinstance(matvec, Traced) else Traced(matvec, like)).restrict(sel)

    def mv_sub(sub):
        parts = [part.reshape(shp).astype(jnp.result_type(leaves[n]))
                 for n, part, shp in zip(sel, jnp.split(sub, splits), shapes)]
        return jnp.concatenate([o.reshape(-1).astype(dtype) for o in restricted(*parts)])

    dmax = group.index.shape[1]

    def mv(x, i):
        if group.whole:
            return mv_sub(x.astype(dtype)).astype(x.dtype)
        valid = block_support(group, i)
        x = jnp.where(valid, x, 0).astype(dtype)
        if group.contiguous:
            off = jnp.asarray(group.offsets)[i]
            sub = jax.lax.dynamic_update_slice(jnp.zeros((d_sub + dmax,), dtype), x, (off,))[:d_sub]
            out = jax.lax.dynamic_slice(jnp.concatenate([mv_sub(sub), jnp.zeros((dmax,), dtype)]), (off,), (dmax,))
        else:
            index = jnp.asarray(group.index)[i]
            out = mv_sub(jnp.zeros((d_sub,), dtype).at[index].add(x))[index]
        return jnp.where(valid, out, 0).astype(x.dtype)

    return mv


def block_support(group: BlockGroup, i) -> jax.Array:
    """The 0/1 mask of block ``i``'s coordinates in its packed vector of length ``d_max``."""
    return jnp.arange(group.index.shape[1]) < jnp.asarray(group.sizes)[i]


def _blockwise_lanczos(matvec, like, key, *, partition, blocks, num_steps, num_probes, reortho, probe, dtype,
                       batch_size, mesh, group_by, post: Callable[[LanczosResult], Any]) -> tuple[Any, tuple[str, ...]]:
    """``post`` of every (block, probe) Lanczos run, stacked (B, num_probes, ...) in partition
    order, and the B labels."""
    vdt = ravel(like)[0].dtype  # arguments were checked by the public function (`_check_blockwise`)
    parts, order = [], []
    # small blocks need full re-orthogonalisation (exact quadrature): apart only when reortho is not full
    small = 0 if reortho == "full" else num_steps
    traced = Traced(matvec, like)  # traced once; each group re-emits only its part (`_restrict`)
    for group in block_packing(partition, like, small=small, blocks=blocks, group_by=group_by):
        mode = "full" if group.index.shape[1] <= num_steps else reortho
        nb = len(group.labels)
        mv = group_matvec(traced, like, group, vdt)
        block_keys = jax.vmap(lambda b: jax.random.split(jax.random.fold_in(key, b), num_probes))(
            jnp.asarray(group.blocks))
        items = (jnp.repeat(jnp.arange(nb, dtype=jnp.int32), num_probes),
                 block_keys.reshape((nb * num_probes,) + block_keys.shape[2:]))

        def one(item, mode=mode, mv=mv, group=group):
            i, k = item
            valid = block_support(group, i)
            # probes are prefix-stable in their length, so a block's probe does not depend on d_max
            v0 = probe_vector(k, group.index.shape[1], vdt, probe, support=valid)
            res = lanczos_flat(lambda x: mv(x, i), v0, num_steps, reortho=mode, dtype=dtype, support=valid)
            return post(res)

        result = map_probes(one, items, batch_size, mesh)
        parts.append(jax.tree.map(lambda x: x.reshape((nb, num_probes) + x.shape[1:]), result))
        order.extend(int(b) for b in group.blocks)
    # groups come in packing order; one static gather puts the blocks back in partition order
    perm = np.argsort(np.asarray(order), kind="stable")
    identity = bool(np.array_equal(perm, np.arange(len(order))))
    stacked = jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0) if identity
                           else jnp.concatenate(xs, axis=0)[jnp.asarray(perm)], *parts)
    labels = partition.labels(like)
    return stacked, tuple(labels[b] for b in sorted(order))


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
    batch_size: int | str | None = "auto",
    blocks: Sequence[str] | None = None,
    mesh=None,
    group_by="module",
) -> BlockwiseSpectrum:
    r"""SLQ of every diagonal Hessian block ``H_bb`` of ``loss_fn`` (loss-first form).

    The thin wrapper ``blockwise_slq_matvec(HessianOperator(loss_fn, params, batch), params,
    key, ...)``; see `blockwise_slq_matvec` for the math, the arguments and the result. One
    linearization, one compiled program, compiled once per (``loss_fn``, blocks, options,
    shapes): new params, a new batch of the same shapes or an equal partition built afresh
    reuse it. The defaults (30 steps, 2 probes) are for small models; the papers use
    ``num_steps=100, num_probes=10``.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar`` (define it once: it is a jit cache key).
      params: the point; its pytree is the one ``partition`` splits into blocks.
      batch: the batch, or a `MicroBatched` (averaged over micro-batches).
      key: PRNG key; block ``b`` draws its probes from ``fold_in(key, b)``.
      partition: a `heterogeneity.partition.Partition` of ``params`` into blocks.
      num_steps: Lanczos steps per probe.
      num_probes: probes per block.
      reortho: ``"full"`` or ``"none"``.
      probe: ``"rademacher"`` or ``"normal"``.
      dtype: recurrence scalar dtype.
      batch_size: (block, probe) pairs run at once.
      blocks: only these labels.
      mesh: a `jax.sharding.Mesh`.
      group_by: which blocks share a restricted HVP.

    Returns:
      `BlockwiseSpectrum`: ``nodes``/``weights`` (B, num_probes, num_steps), ``finite`` (B,),
      ``labels`` in partition order; ``.block(label)`` is one block's `Spectrum`.

    >>> import jax, jax.numpy as jnp
    >>> from heterogeneity import curvature as hc, partition as hp
    >>> loss = lambda p, b: 0.5 * (2.0 * jnp.sum(p["w"] ** 2) + 5.0 * jnp.sum(p["v"] ** 2))
    >>> params = {"w": jnp.zeros(3), "v": jnp.zeros(2)}
    >>> s = hc.blockwise_slq(loss, params, None, jax.random.key(0), partition=hp.by_leaf(params), num_steps=3)
    >>> s.labels, s.nodes.shape
    (('v', 'w'), (2, 2, 3))
    >>> round(float(jnp.sum(s.block("w").nodes * s.block("w").weights) / 2), 4)   # mean eigenvalue of H_ww
    2.0
    """
    return blockwise_slq_matvec(HessianOperator(loss_fn, params, batch), params, key, partition=partition,
                                num_steps=num_steps, num_probes=num_probes, reortho=reortho, probe=probe,
                                dtype=dtype, batch_size=batch_size, blocks=blocks, mesh=mesh, group_by=group_by)


def _spectrum(res):
    nodes, weights = gauss_quadrature(res)
    return Spectrum(nodes, weights, res.finite)


def _blockwise_spectra(matvec, like, key, **opts):
    s, labels = _blockwise_lanczos(matvec, like, key, post=_spectrum, **opts)
    return BlockwiseSpectrum(s.nodes, s.weights, jnp.all(s.finite, axis=1), labels)


_STATIC = ("partition", "blocks", "num_steps", "num_probes", "reortho", "probe", "dtype", "batch_size", "mesh",
           "group_by")
_blockwise_spectra_run = operator_jit(_blockwise_spectra, _STATIC)


def _group_key(group_by, like):
    """``group_by`` checked, as a static jit argument (a partition by its resolved layout)."""
    check_group_by(group_by)
    return group_by if isinstance(group_by, str) else StaticPartition(group_by, like)


def _blocks_key(labels, blocks) -> tuple[str, ...] | None:
    """``blocks`` checked and in partition order (a static jit argument: any order or a list
    built afresh shares one program); None for all blocks."""
    return None if blocks is None else tuple(labels[b] for b in select_blocks(labels, blocks))


def blockwise_slq_matvec(matvec, like, key, *, partition, num_steps=30, num_probes=2, reortho="full",
                         probe="rademacher", dtype=None, batch_size="auto", blocks=None, mesh=None,
                         group_by="module") -> BlockwiseSpectrum:
    r"""Stochastic Lanczos quadrature of every diagonal block ``H_bb`` of a symmetric operator
    [Zhang24, App. C.2, Algorithm 5] [Ubaru17], all blocks in one compiled program.

    For block ``b`` (the coordinates the partition gives label ``b``) and a unit probe ``v``
    supported on it, ``m = num_steps`` Lanczos steps [Lanczos50] on ``H_{bb}`` give the Jacobi
    matrix ``T_m = Q \Lambda Q^\top``; the Gauss quadrature [GolubMeurant10]

    .. math:: v^\top f(H_{bb})\, v \approx \sum_{j=1}^{m} \tau_j\, f(\theta_j),\qquad
              \theta_j = \Lambda_{jj},\ \tau_j = Q_{1j}^2,

    is exact for polynomials of degree ``< 2m``; averaging over probes estimates the block's
    spectral density ``\frac{1}{d_b}\sum_i \delta_{\lambda_i(H_{bb})}``. A block with
    ``d_b \le m`` elements is exact (its nodes are eigenvalues of ``H_{bb}``).

    Args:
      matvec: the operator, ``v -> H v`` on pytrees shaped like ``like``: an `Operator`
        (`HessianOperator`, `LinearOperator`; compiled once per function, blocks, options and
        shapes) or a closure (traced where it is called).
      like: a pytree with the structure and dtypes of the vectors (e.g. the params).
      key: PRNG key; block ``b`` draws its probes from ``fold_in(key, b)``.
      partition: a `heterogeneity.partition.Partition` of ``like`` into blocks.
      num_steps: Lanczos steps per probe (the default is for small models; the papers use 100).
      num_probes: probes per block (the papers use 10).
      reortho: ``"full"`` or ``"none"`` (see `lanczos`).
      probe: ``"rademacher"`` or ``"normal"``.
      dtype: recurrence scalar dtype (None: the vectors').
      batch_size: (block, probe) pairs of a group run at once (``"auto"``: one at a time on
        CPU, all at once elsewhere; the module doc).
      mesh: a `jax.sharding.Mesh` that splits the (block, probe) pairs over its devices.
      blocks: only these labels (e.g. a chunk of a large model; same numbers as a full run).
      group_by: ``"module"``, ``"leaf"``, ``"layer"``, ``"all"`` or a `Partition`: which blocks
        share a restricted HVP (compile time against run time; the module doc).

    Returns:
      `BlockwiseSpectrum` with ``nodes``, ``weights`` (B, num_probes, num_steps), ``finite`` (B,)
      (False when an HVP of that block was non-finite, e.g. NaN in the batch) and ``labels``
      (partition order). ``.block(label)`` gives a `Spectrum`, ``.as_dict()`` a dict.

    >>> import jax, jax.numpy as jnp
    >>> from heterogeneity import curvature as hc, partition as hp
    >>> like = {"a": jnp.zeros(2), "b": jnp.zeros(3)}
    >>> op = hc.LinearOperator(lambda v, s: jax.tree.map(lambda x: s * x, v), 4.0)   # H = 4 I
    >>> s = hc.blockwise_slq_matvec(op, like, jax.random.key(0), partition=hp.by_leaf(like), num_steps=3)
    >>> s.labels, [round(float(jnp.sum(s.block(b).nodes * s.block(b).weights) / 2), 4) for b in s.labels]
    (('a', 'b'), [4.0, 4.0])
    """
    opts = _check_blockwise(like, num_steps, num_probes, reortho, probe, dtype, batch_size)
    check_mesh(mesh, matvec)
    chosen = _blocks_key(partition.labels(like), blocks)
    return _blockwise_spectra_run(matvec, like, key, partition=StaticPartition(partition, like), blocks=chosen,
                                  mesh=mesh, group_by=_group_key(group_by, like), **opts)


def _check_blockwise(like, num_steps, num_probes, reortho, probe, dtype, batch_size) -> dict:
    _check_options(num_steps, reortho, dtype)
    num_probes = check_positive_int(num_probes, "num_probes")
    check_probe(probe)
    batch_size = resolve_batch_size(batch_size)
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
    batch_size: int | str | None = "auto",
    blocks: Sequence[str] | None = None,
    mesh=None,
    group_by="module",
) -> BlockwiseEigenEstimate:
    r"""The largest eigenvalue of every diagonal Hessian block ``H_bb`` of ``loss_fn`` (loss-first form).

    The thin wrapper ``blockwise_top_eigenvalue_matvec(HessianOperator(loss_fn, params, batch),
    params, key, ...)``; see there for the math, arguments and result [Zhang24, App. C.2].

    >>> import jax, jax.numpy as jnp
    >>> from heterogeneity import curvature as hc, partition as hp
    >>> loss = lambda p, b: 0.5 * (2.0 * jnp.sum(p["w"] ** 2) + 5.0 * jnp.sum(p["v"] ** 2))
    >>> params = {"w": jnp.zeros(3), "v": jnp.zeros(2)}
    >>> part = hp.by_leaf(params)
    >>> top = hc.blockwise_top_eigenvalue(loss, params, None, jax.random.key(0), partition=part, num_steps=3)
    >>> top.labels, [round(float(x), 4) for x in top.value]
    (('v', 'w'), [5.0, 2.0])
    """
    return blockwise_top_eigenvalue_matvec(HessianOperator(loss_fn, params, batch), params, key, partition=partition,
                                           num_steps=num_steps, reortho=reortho, dtype=dtype, batch_size=batch_size,
                                           blocks=blocks, mesh=mesh, group_by=group_by)


def blockwise_top_eigenvalue_matvec(matvec, like, key, *, partition, num_steps=30, reortho="full", dtype=None,
                                    batch_size="auto", blocks=None, mesh=None,
                                    group_by="module") -> BlockwiseEigenEstimate:
    r"""The largest (algebraic) eigenvalue of every diagonal block ``H_bb`` of a symmetric operator
    [Lanczos50] [Zhang24, App. C.2].

    ``num_steps`` Lanczos steps on ``H_{bb}`` from a Gaussian start give Ritz values
    ``\theta_1 \le \dots \le \theta_m`` (eigenvalues of ``T_m``); the estimate is ``\theta_m``
    and ``|\beta_{m+1} s_{m}|`` (``s`` the last component of its Ritz vector in ``T_m``) bounds
    ``\min_i |\lambda_i(H_{bb}) - \theta_m|``. Exact for ``d_b \le`` ``num_steps``.

    The arguments are those of `blockwise_slq_matvec` (one Gaussian probe per block).

    Returns:
      `BlockwiseEigenEstimate`: ``value``, ``error_bound``, ``finite``, each (B,), and
      ``labels`` in partition order; ``.block(label)`` is an `EigenEstimate`.

    >>> import jax, jax.numpy as jnp
    >>> from heterogeneity import curvature as hc, partition as hp
    >>> like = {"a": jnp.zeros(2), "b": jnp.zeros(3)}
    >>> op = hc.LinearOperator(lambda v: {"a": 3.0 * v["a"], "b": -1.0 * v["b"]})
    >>> top = hc.blockwise_top_eigenvalue_matvec(op, like, jax.random.key(0), partition=hp.by_leaf(like), num_steps=3)
    >>> round(float(top.block("a").value), 4), round(float(top.block("b").value), 4)
    (3.0, -1.0)
    """
    opts = _check_blockwise(like, num_steps, 1, reortho, "normal", dtype, batch_size)
    check_mesh(mesh, matvec)
    chosen = _blocks_key(partition.labels(like), blocks)
    return _blockwise_top_run(matvec, like, key, partition=StaticPartition(partition, like), blocks=chosen,
                              num_steps=opts["num_steps"], reortho=reortho, dtype=dtype,
                              batch_size=opts["batch_size"], mesh=mesh, group_by=_group_key(group_by, like))


def _blockwise_top(matvec, like, key, *, partition, blocks, num_steps, reortho, dtype, batch_size, mesh, group_by):
    est, labels = _blockwise_lanczos(matvec, like, key, partition=partition, blocks=blocks, num_steps=num_steps,
                                     num_probes=1, reortho=reortho, probe="normal", dtype=dtype,
                                     batch_size=batch_size, mesh=mesh, group_by=group_by,
                                     post=lambda r: _top(r, absolute=False))
    return BlockwiseEigenEstimate(est.value[:, 0], est.error_bound[:, 0], est.finite[:, 0], labels)


_blockwise_top_run = operator_jit(_blockwise_top, ("partition", "blocks", "num_steps", "reortho", "dtype",
                                                   "batch_size", "mesh", "group_by"))
