"""Pytree math shared by every subpackage.

Paths are the toolkit's names for parameters: `path_str` turns a JAX key path into a
`/`-joined string (``layers/0/attn/query/kernel``), dropping the trailing ``.value``
attribute that Flax NNX `Variable`s add, so NNX `State`, plain dicts and lists all get
the same readable names. Arithmetic on pytrees reuses `optax.tree` where it exists: `vdot`,
`sq_norm`, `norm`, `size` and `random_like` are thin wrappers over `optax.tree` (kept because
other modules import them).
"""
from __future__ import annotations

from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

PyTree = Any

__all__ = [
    "path_str",
    "leaves_with_paths",
    "paths",
    "vdot",
    "sq_norm",
    "norm",
    "size",
    "random_like",
    "ravel",
]


def _key_name(key) -> str | None:
    if isinstance(key, jax.tree_util.DictKey):
        return str(key.key)
    if isinstance(key, jax.tree_util.SequenceKey):
        return str(key.idx)
    if isinstance(key, jax.tree_util.GetAttrKey):
        return key.name
    if isinstance(key, jax.tree_util.FlattenedIndexKey):
        return str(key.key)
    return str(key)


def path_str(keypath) -> str:
    """`/`-joined name of a key path; a trailing NNX ``.value`` attribute is dropped."""
    keys = list(keypath)
    if keys and isinstance(keys[-1], jax.tree_util.GetAttrKey) and keys[-1].name == "value":
        keys = keys[:-1]
    return "/".join(_key_name(k) for k in keys)


def leaves_with_paths(tree: PyTree) -> list[tuple[str, Any]]:
    """``[(path, leaf), ...]`` in `jax.tree.leaves` order."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [(path_str(p), leaf) for p, leaf in flat]


def paths(tree: PyTree) -> tuple[str, ...]:
    """The leaf paths of ``tree`` in leaf order."""
    return tuple(p for p, _ in leaves_with_paths(tree))


def vdot(a: PyTree, b: PyTree) -> jax.Array:
    """Real inner product ⟨a, b⟩ summed over all leaves."""
    return optax.tree.vdot(a, b)


def sq_norm(t: PyTree) -> jax.Array:
    """‖t‖² over all leaves."""
    return optax.tree.norm(t, squared=True)


def norm(t: PyTree, ord: int | float | str | None = None) -> jax.Array:
    """‖t‖ over all leaves (``ord`` as in `optax.tree.norm`: None/2, 1, or inf)."""
    return optax.tree.norm(t, ord=ord)


def size(t: PyTree) -> int:
    """Total number of scalars in ``t`` (`optax.tree.size`).

    >>> size({"w": jnp.zeros((2, 3)), "b": jnp.zeros(3)})
    9
    """
    return int(optax.tree.size(t))


_SAMPLERS = {"rademacher": jax.random.rademacher, "normal": jax.random.normal, "cauchy": jax.random.cauchy}


def random_like(
    key: jax.Array,
    tree: PyTree,
    kind: Literal["rademacher", "normal", "cauchy"] = "normal",
) -> PyTree:
    """A random pytree with the structure, shapes and dtypes of ``tree`` (`optax.tree.random_like`).

    ``rademacher``: ±1 entries (Hutchinson probes); ``normal``: N(0, 1) (SLQ probes);
    ``cauchy``: standard Cauchy (the (1,1)-norm sketch of [Xie24, Algorithm 4]). Leaf ``i``
    draws from ``jax.random.split(key, num_leaves)[i]``.

    >>> x = random_like(jax.random.key(0), {"w": jnp.zeros((2, 2))}, "rademacher")
    >>> sorted(set(abs(x["w"]).ravel().tolist()))
    [1.0]
    """
    if kind not in _SAMPLERS:
        raise ValueError(f"random_like: unknown kind {kind!r}; expected 'rademacher', 'normal' or 'cauchy'")
    return optax.tree.random_like(key, jax.tree.map(jnp.asarray, tree), sampler=_SAMPLERS[kind])


def ravel(tree: PyTree):
    """``(flat, unravel)``: one 1-D vector of all leaves and its inverse (`ravel_pytree`)."""
    return ravel_pytree(tree)
