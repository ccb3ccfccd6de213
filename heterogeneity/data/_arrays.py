"""Classification datasets held as host (numpy) arrays, and user-supplied arrays.

`Dataset` is the one container every classification loader returns (digits, synthetic sequence
tasks, `from_arrays`). Arrays stay on the host as numpy; `heterogeneity.data.batches` and
`sample_batch` move one batch at a time to the device. Train/validation splits are deterministic
functions of a PRNG key (or an integer seed), optionally stratified by class so that the
validation set keeps the class proportions.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np


class Dataset(NamedTuple):
    """A supervised classification dataset split into train and validation parts.

    `x_*` have shape (N, *feature_shape); `y_*` are int32 labels of shape (N,) in
    [0, num_classes). `train` / `val` give the splits as `{"x": ..., "y": ...}` dicts, the batch
    format of `batches`, `sample_batch` and the models' `loss_fn(params, batch)`.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    num_classes: int

    @property
    def train(self) -> dict[str, np.ndarray]:
        return {"x": self.x_train, "y": self.y_train}

    @property
    def val(self) -> dict[str, np.ndarray]:
        return {"x": self.x_val, "y": self.y_val}

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def as_key(key: Any) -> jax.Array:
    """A JAX PRNG key from a key (typed or raw uint32) or a non-negative integer seed."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        if key < 0:
            raise ValueError(f"key: an integer seed must be >= 0, got {key}")
        return jax.random.key(int(key))
    if isinstance(key, jax.Array):
        if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
            if key.shape != ():
                raise ValueError(f"key: expected a single PRNG key, got a key array of shape {key.shape}")
            return key
        if key.dtype == np.uint32 and key.shape == (2,):
            return key
    raise ValueError(f"key: expected a jax PRNG key or an int seed, got {type(key).__name__} "
                     f"{getattr(key, 'shape', '')}")


def host_rng(key: Any, *salt: int) -> np.random.Generator:
    """A numpy Generator (PCG64) seeded by the key's bits (and optional integer salt, e.g. an epoch).

    Host-side shuffles (splits, epochs) use it: same key, same permutation, with no XLA compile
    per array length (a `jax.random.permutation` compiles once for every new N).
    """
    bits = np.asarray(jax.random.key_data(as_key(key)), dtype=np.uint32).ravel().tolist()
    return np.random.default_rng(bits + [int(s) for s in salt])


def _check_fraction(val_fraction: float) -> float:
    val_fraction = float(val_fraction)
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    return val_fraction


def split_indices(labels: np.ndarray, *, val_fraction: float, key: Any, stratify: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (train_idx, val_idx), both sorted, from a key.

    Unstratified: the first round(val_fraction * N) entries of a random permutation
    (`host_rng(key)`) go to validation. Stratified: the same inside every class, in the order
    that permutation gives it (each class keeps round(val_fraction * N_c) validation examples,
    at least one when N_c >= 2).
    """
    val_fraction = _check_fraction(val_fraction)
    labels = np.asarray(labels)
    n = labels.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 examples to split into train and validation, got {n}")
    perm = host_rng(key).permutation(n)
    if not stratify:
        n_val = min(max(int(round(val_fraction * n)), 1), n - 1)
        return np.sort(perm[n_val:]), np.sort(perm[:n_val])
    train, val = [], []
    for c in np.unique(labels):
        idx = perm[labels[perm] == c]  # class c in uniformly random order
        n_val = int(round(val_fraction * idx.size))
        if idx.size >= 2:
            n_val = min(max(n_val, 1), idx.size - 1)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    train_idx, val_idx = np.sort(np.concatenate(train)), np.sort(np.concatenate(val))
    if train_idx.size == 0 or val_idx.size == 0:
        raise ValueError(f"val_fraction={val_fraction} leaves an empty split for N={n}")
    return train_idx, val_idx


def _int_labels(y: Any, n: int, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D (N,), got shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} labels but its x has {n} examples")
    if y.dtype == bool:
        y = y.astype(np.int32)
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    return y


def _check_range(y: np.ndarray, num_classes: int, name: str) -> np.ndarray:
    bad = (y < 0) | (y >= num_classes)
    if bad.any():
        raise ValueError(f"{name} has labels outside [0, {num_classes}): e.g. {y[bad][:5].tolist()} "
                         f"at indices {np.flatnonzero(bad)[:5].tolist()}")
    return y.astype(np.int32)


def _check_x(x: Any, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"{name} must have a leading example axis with N >= 1, got shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise ValueError(f"{name} must be numeric, got dtype {x.dtype}")
    if np.issubdtype(x.dtype, np.inexact) and not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf (first at flat index "
                         f"{int(np.flatnonzero(~np.isfinite(x.reshape(-1)))[0])})")
    return x


def from_arrays(x: Any, y: Any, num_classes: int | None = None, *, x_val: Any = None, y_val: Any = None,
                val_fraction: float = 0.2, key: Any = 0, stratify: bool = True) -> Dataset:
    """A `Dataset` from user arrays, validated.

    x: (N, *feature_shape) numeric, finite; y: (N,) integer labels in [0, num_classes)
    (`num_classes` defaults to max(y) + 1). If `x_val`, `y_val` are given they are the
    validation split (same feature shape); otherwise the data are split deterministically by
    `key` (int seed or PRNG key), stratified by class unless `stratify=False`.
    Raises ValueError naming the offending argument for wrong shapes, non-integer or
    out-of-range labels, non-finite features, or a bad `val_fraction`.
    """
    x = _check_x(x, "x")
    y = _int_labels(y, x.shape[0], "y")
    if (x_val is None) != (y_val is None):
        raise ValueError("give both x_val and y_val, or neither")
    if x_val is not None:
        x_val = _check_x(x_val, "x_val")
        if x_val.shape[1:] != x.shape[1:]:
            raise ValueError(f"x_val feature shape {x_val.shape[1:]} != x feature shape {x.shape[1:]}")
        y_val = _int_labels(y_val, x_val.shape[0], "y_val")
    if num_classes is None:
        num_classes = int(max(y.max(), -1 if y_val is None else y_val.max())) + 1
    num_classes = int(num_classes)
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    y = _check_range(y, num_classes, "y")
    if x_val is not None:
        return Dataset(x, y, x_val, _check_range(y_val, num_classes, "y_val"), num_classes)
    train_idx, val_idx = split_indices(y, val_fraction=val_fraction, key=key, stratify=stratify)
    return Dataset(x[train_idx], y[train_idx], x[val_idx], y[val_idx], num_classes)
