"""The UCI handwritten digits (scikit-learn's `load_digits`): 1,797 real 8x8 grey-level images.

The image-classification stand-in for the vision models of [Tomihari25] (ViT, ResNet, MLP-mixer;
Sec. 5, App. D) and for the MLP of [Zhang24, App. D.3] at a size that trains on a CPU. The data ship
inside scikit-learn (`sklearn/datasets/data/digits.csv.gz`), so loading never touches the network.
Pixel values are integers 0..16; ten classes, 174-183 images each.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

from heterogeneity.data._arrays import Dataset, split_indices

LAYOUTS = ("flat", "image")
SCALINGS = ("unit", "standardize", "none")


@functools.lru_cache(maxsize=1)
def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    x = np.asarray(bunch.data, dtype=np.float32)  # (1797, 64), values 0..16
    y = np.asarray(bunch.target, dtype=np.int32)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def load_digits(*, layout: str = "flat", scaling: str = "unit", val_fraction: float = 0.2, key: Any = 0,
                stratify: bool = True, dtype: Any = np.float32) -> Dataset:
    """The 8x8 digits as a deterministic train/validation `Dataset` (10 classes).

    layout: "flat" gives x of shape (N, 64) (MLP); "image" gives (N, 8, 8, 1), NHWC, for the
      CNN, ViT and MLP-mixer.
    scaling: "unit" divides by 16 so pixels lie in [0, 1]; "standardize" subtracts the per-pixel
      training mean and divides by the per-pixel training std (pixels that are constant in the
      training split, e.g. always-0 corners, get std 1, so they stay exactly 0); "none" keeps the
      raw 0..16 values. Statistics come from the training split only.
    val_fraction, key, stratify: the split (`split_indices`): same key (int seed or PRNG key),
      same split; stratified by class by default.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
    x, y = _raw_digits()
    train_idx, val_idx = split_indices(y, val_fraction=val_fraction, key=key, stratify=stratify)
    x_train, x_val = x[train_idx], x[val_idx]
    if scaling == "unit":
        x_train, x_val = x_train / 16.0, x_val / 16.0
    elif scaling == "standardize":
        mean = x_train.mean(axis=0)
        std = x_train.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        x_train, x_val = (x_train - mean) / std, (x_val - mean) / std
    if layout == "image":
        x_train, x_val = x_train.reshape(-1, 8, 8, 1), x_val.reshape(-1, 8, 8, 1)
    return Dataset(np.ascontiguousarray(x_train, dtype=dtype), y[train_idx].copy(),
                   np.ascontiguousarray(x_val, dtype=dtype), y[val_idx].copy(), 10)
