"""Deterministic batching from a PRNG key, and micro-batch reshaping.

A *split* is any pytree of arrays that share a leading example axis of length N; the usual one
is `{"x": x, "y": y}` (`Dataset.train` / `Dataset.val`). Batches are `{"x": jnp, "y": jnp}`
dicts (or the split's own pytree structure).

`microbatch` (re-exported from `heterogeneity.curvature`, the one implementation) reshapes a
batch of B examples into a `MicroBatched` of M micro-batches of B/M, the layout the curvature
code scans over so that Hessian-vector products are *averaged* over micro-batches in
constant memory (the public code of [Zhang24, App. C.2] sums them, which scales the spectrum
by M).
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from heterogeneity.curvature import MicroBatched, microbatch  # noqa: F401  (re-exported by heterogeneity.data)

from heterogeneity.data._arrays import as_key, host_rng


def _as_split(split: Any) -> Any:
    """(x, y) -> {"x": x, "y": y}; a Mapping or other pytree is kept as is."""
    if isinstance(split, tuple) and len(split) == 2 and not hasattr(split, "_fields"):
        return {"x": split[0], "y": split[1]}
    if isinstance(split, Mapping):
        return dict(split)
    return split


def _leading_size(tree: Any, name: str) -> int:
    leaves = jax.tree.leaves(tree)
    if not leaves:
        raise ValueError(f"{name} has no array leaves")
    sizes = set()
    for leaf in leaves:
        shape = np.shape(leaf)
        if len(shape) == 0:
            raise ValueError(f"{name} has a scalar leaf; every leaf needs a leading example axis")
        sizes.add(shape[0])
    if len(sizes) != 1:
        paths = {jax.tree_util.keystr(p): np.shape(l)[0] for p, l in jax.tree_util.tree_leaves_with_path(tree)}
        raise ValueError(f"{name} leaves disagree on the leading (example) axis: {paths}")
    return sizes.pop()


def _on_host(tree: Any) -> bool:
    return all(isinstance(l, np.ndarray) for l in jax.tree.leaves(tree))


def _take(tree: Any, idx: Any) -> Any:
    """Rows `idx` of every leaf: numpy leaves are indexed on the host (only the batch is sent to
    the device), jax leaves with `jnp.take` (so this also runs under jit)."""
    if _on_host(tree) and isinstance(idx, np.ndarray):
        return jax.tree.map(lambda l: jnp.asarray(l[idx]), tree)
    return jax.tree.map(lambda l: jnp.take(jnp.asarray(l), idx, axis=0), tree)


def _check_batch_size(batch_size: int, n: int, what: str = "batch_size") -> int:
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"{what} must be a positive int, got {batch_size!r}")
    if batch_size > n:
        raise ValueError(f"{what}={batch_size} exceeds the number of examples N={n}")
    return int(batch_size)


def sample_split(split: Any, batch_size: int, key: Any) -> Any:
    """`batch_size` distinct examples drawn uniformly (without replacement) from a split pytree.

    Same key, same batch. Numpy splits (the loaders' output) draw the indices on the host with
    `host_rng(key)` (no XLA compile per N); splits of jax arrays use
    `jax.random.choice(key, N, (B,), replace=False)`, which is jit-able for a static batch_size.
    The two paths are each deterministic but draw different examples for the same key.
    """
    split = _as_split(split)
    n = _leading_size(split, "split")
    batch_size = _check_batch_size(batch_size, n)
    if _on_host(split) and not isinstance(key, jax.core.Tracer):
        return _take(split, host_rng(key).choice(n, batch_size, replace=False))
    return _take(split, jax.random.choice(as_key(key), n, (batch_size,), replace=False))


def sample_batch(x: Any, y: Any, batch_size: int, key: Any) -> dict[str, jax.Array]:
    """{"x": (B, ...), "y": (B,)}: B distinct examples drawn uniformly from (x, y) with `key`."""
    return sample_split({"x": x, "y": y}, batch_size, key)


def batches(split: Any, batch_size: int, key: Any, *, num_steps: int | None = None,
            drop_remainder: bool = True) -> Iterator[Any]:
    """Shuffled mini-batches of a split (`{"x", "y"}` dict, (x, y) tuple or any pytree).

    Epoch e visits the examples in the order `host_rng(key, e).permutation(N)`, cut into
    consecutive batches. With `num_steps=None` one epoch is yielded (the last short batch is
    dropped unless `drop_remainder=False`); otherwise exactly `num_steps` batches, running through
    as many epochs as needed (with drop_remainder every batch has `batch_size` examples, so a
    jitted step never recompiles). Same key, same sequence of batches.
    """
    split = _as_split(split)
    n = _leading_size(split, "split")
    batch_size = _check_batch_size(batch_size, n)
    if num_steps is not None and (not isinstance(num_steps, (int, np.integer)) or num_steps < 0):
        raise ValueError(f"num_steps must be a non-negative int or None, got {num_steps!r}")
    per_epoch = n // batch_size if drop_remainder else -(-n // batch_size)
    step, epoch = 0, 0
    while True:
        perm = host_rng(key, epoch).permutation(n)
        for i in range(per_epoch):
            if num_steps is not None and step >= num_steps:
                return
            yield _take(split, perm[i * batch_size:(i + 1) * batch_size])
            step += 1
        epoch += 1
        if num_steps is None:
            return


def unmicrobatch(batch: Any) -> Any:
    """Inverse of `microbatch`: a `MicroBatched` (or leaves of shape (M, B/M, ...)) -> leaves (B, ...)."""
    if isinstance(batch, MicroBatched):
        batch = batch.batch
    leaves = jax.tree.leaves(batch)
    if not leaves or any(np.ndim(l) < 2 for l in leaves):
        raise ValueError("unmicrobatch needs leaves of shape (M, B/M, ...)")
    shapes = {tuple(np.shape(l)[:2]) for l in leaves}
    if len(shapes) != 1:
        raise ValueError(f"leaves disagree on the leading (M, B/M) axes: {sorted(shapes)}")
    return jax.tree.map(lambda l: l.reshape((-1,) + tuple(l.shape[2:])), batch)
