"""Parameter checkpoints as ``.npz`` files keyed by parameter path.

A checkpoint is a NumPy archive whose keys are the toolkit's leaf paths
(`heterogeneity.tree.path_str`, e.g. ``layers/0/attn/query/kernel``). Loading needs a
template pytree (the model's freshly initialised params) and checks that every path and
shape matches, naming the offending paths otherwise; a checkpoint is never silently
reshaped or partially loaded.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from heterogeneity.experiment._store import atomic_write_bytes
from heterogeneity.tree import leaves_with_paths

__all__ = ["save_params", "load_params"]


def save_params(path: str | os.PathLike, params: Any) -> Path:
    """Write ``params`` to ``path`` (``.npz``) atomically. bfloat16 is stored as float32."""
    arrays = {}
    for p, x in leaves_with_paths(params):
        x = np.asarray(jnp.asarray(x, jnp.float32) if jnp.result_type(x) == jnp.bfloat16 else x)
        arrays[p] = x
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


def load_params(path: str | os.PathLike, like: Any) -> Any:
    """Read a checkpoint into the structure, shapes and dtypes of ``like``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as e:  # zipfile / value errors from a corrupt or foreign file
        raise ValueError(f"{path} is not a parameter checkpoint (.npz): {e}") from None
    with archive:
        stored = {k: archive[k] for k in archive.files}
    named = leaves_with_paths(like)
    expected = {p for p, _ in named}
    missing = sorted(expected - set(stored))
    extra = sorted(set(stored) - expected)
    reshaped = [f"{p} {stored[p].shape}->{tuple(jnp.shape(x))}" for p, x in named
                if p in stored and stored[p].shape != tuple(jnp.shape(x))]
    if missing or extra or reshaped:
        raise ValueError(f"checkpoint {path} does not match the model: missing {missing}, unexpected {extra}, "
                         f"shape mismatch {reshaped}")
    leaves = [jnp.asarray(stored[p], dtype=jnp.result_type(x)) for p, x in named]
    return jax.tree.unflatten(jax.tree.structure(like), leaves)
