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
import zipfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from heterogeneity.experiment._store import atomic_write_bytes
from heterogeneity.tree import leaves_with_paths

__all__ = ["save_params", "load_params", "check_checkpoint", "CheckpointError"]


class CheckpointError(ValueError):
    """A file that is not a checkpoint of these params; ``reason`` omits the path (for CLI messages)."""

    def __init__(self, message: str, *, path: Path, reason: str):
        super().__init__(message)
        self.path, self.reason = path, reason


def _not_npz(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"{path} is not a parameter checkpoint (.npz): {why}", path=path,
                           reason=f"not a .npz parameter checkpoint ({why})")


def check_checkpoint(path: str | os.PathLike) -> list[str]:
    """The parameter paths stored in the ``.npz`` at ``path``, from its index only (no array is read).

    Raises `FileNotFoundError` for a missing file and `CheckpointError` for anything that is not
    a ``.npz`` archive of arrays (a ``.npy`` array, a text or pickle file, a foreign zip)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path} (no such file)")
    if path.is_dir():
        raise _not_npz(path, "a directory")
    with open(path, "rb") as f:
        head = f.read(6)
    if head == b"\x93NUMPY":
        raise _not_npz(path, "a single .npy array; a checkpoint is a .npz of arrays keyed by parameter path, "
                             "as written by save_params")
    if not zipfile.is_zipfile(path):
        raise _not_npz(path, "not a zip archive")
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise _not_npz(path, f"unreadable zip archive: {e}") from None
    foreign = [n for n in names if not n.endswith(".npy")]
    if foreign:
        raise _not_npz(path, f"a zip archive with non-array members {foreign[:3]}")
    if not names:
        raise _not_npz(path, "an archive without arrays")
    return [n[: -len(".npy")] for n in names]


def save_params(path: str | os.PathLike, params: Any) -> Path:
    """Write ``params`` to ``path`` (``.npz``) atomically. bfloat16 is stored as float32."""
    arrays = {}
    for p, x in leaves_with_paths(params):
        x = np.asarray(jnp.asarray(x, jnp.float32) if jnp.result_type(x) == jnp.bfloat16 else x)
        arrays[p] = x
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


def _short(keys: list[str], limit: int = 8) -> str:
    return repr(keys) if len(keys) <= limit else f"{keys[:limit]!r} (+{len(keys) - limit} more)"


def load_params(path: str | os.PathLike, like: Any) -> Any:
    """Read a checkpoint into the structure, shapes and dtypes of ``like``.

    Raises `FileNotFoundError` (no file), `CheckpointError` (not a ``.npz`` of arrays, or paths /
    shapes that do not match ``like``, naming them)."""
    path = Path(path)
    check_checkpoint(path)
    stored = {}
    try:
        with np.load(path, allow_pickle=False) as archive:
            for k in archive.files:
                try:
                    stored[k] = archive[k]
                except ValueError as e:
                    if "allow_pickle" not in str(e):
                        raise
                    raise _not_npz(path, f"entry {k!r} holds pickled Python objects, not an array") from None
    except CheckpointError:
        raise
    except Exception as e:  # zipfile / format errors from a corrupt file
        raise _not_npz(path, f"unreadable archive: {type(e).__name__}: {e}") from None
    named = leaves_with_paths(like)
    expected = {p for p, _ in named}
    missing = sorted(expected - set(stored))
    extra = sorted(set(stored) - expected)
    reshaped = [f"{p} {stored[p].shape}->{tuple(jnp.shape(x))}" for p, x in named
                if p in stored and stored[p].shape != tuple(jnp.shape(x))]
    if missing or extra or reshaped:
        why = (f"does not match the model: missing {_short(missing)}, unexpected {_short(extra)}, "
               f"shape mismatch {_short(reshaped)}")
        raise CheckpointError(f"checkpoint {path} {why}", path=path, reason=why)
    leaves = [jnp.asarray(stored[p], dtype=jnp.result_type(x)) for p, x in named]
    return jax.tree.unflatten(jax.tree.structure(like), leaves)
