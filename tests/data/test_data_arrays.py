"""Tests for heterogeneity/data/_arrays.py: Dataset, from_arrays, splits, keys."""
import jax
import numpy as np
import pytest

import heterogeneity.data as hd


def _toy(n=100, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3, 2)).astype(np.float32)
    y = np.arange(n) % classes
    return x, y


def test_from_arrays_split_is_deterministic_partition():
    x, y = _toy()
    d = hd.from_arrays(x, y, key=3)
    assert d.num_classes == 4 and d.feature_shape == (3, 2)
    assert d.x_train.shape == (80, 3, 2) and d.x_val.shape == (20, 3, 2) and d.y_val.dtype == np.int32
    np.testing.assert_array_equal(np.bincount(d.y_val), [5, 5, 5, 5])  # stratified
    # every example lands in exactly one split, with its own label
    rows = {tuple(r.ravel()): int(c) for r, c in zip(x, y)}
    seen = [tuple(r.ravel()) for r in np.concatenate([d.x_train, d.x_val])]
    assert sorted(seen) == sorted(rows)
    assert all(rows[tuple(r.ravel())] == c for r, c in zip(d.x_val, d.y_val))
    same = hd.from_arrays(x, y, key=jax.random.key(3))
    np.testing.assert_array_equal(same.x_val, d.x_val)
    other = hd.from_arrays(x, y, key=4)
    assert not np.array_equal(other.x_val, d.x_val)
    assert d.train["x"] is d.x_train and d.val["y"] is d.y_val


def test_from_arrays_options():
    x, y = _toy()
    assert hd.from_arrays(x, y, num_classes=7).num_classes == 7
    d = hd.from_arrays(x, y, stratify=False, val_fraction=0.3)
    assert d.x_val.shape[0] == 30
    dv = hd.from_arrays(x[:60], y[:60], x_val=x[60:], y_val=y[60:])
    np.testing.assert_array_equal(dv.x_val, x[60:])
    assert dv.num_classes == 4
    assert hd.from_arrays(x[:10], np.array([0, 1] * 5, bool)).y_train.dtype == np.int32
    # num_classes inferred from both splits
    assert hd.from_arrays(x[:4], [0, 1, 0, 1], x_val=x[4:6], y_val=[2, 0]).num_classes == 3


def test_from_arrays_bad_inputs():
    x, y = _toy(20)
    cases = [
        (dict(x=x, y=y.reshape(10, 2)), "y must be 1-D"),
        (dict(x=x, y=y[:19]), "19 labels but its x has 20"),
        (dict(x=x, y=y.astype(float)), "integer class labels"),
        (dict(x=x, y=np.where(y == 0, -1, y)), r"outside \[0, 4\)"),
        (dict(x=x, y=y, num_classes=3), r"outside \[0, 3\).*\[3"),
        (dict(x=x, y=np.zeros(20, int)), "num_classes must be >= 2"),
        (dict(x=np.where(np.arange(20)[:, None, None] == 7, np.nan, x), y=y), "NaN or inf"),
        (dict(x=np.float32(1.0), y=[0]), "leading example axis"),
        (dict(x=np.zeros((0, 3)), y=np.zeros(0, int)), "leading example axis"),
        (dict(x=np.array([["a"], ["b"]]), y=[0, 1]), "numeric"),
        (dict(x=x, y=y, x_val=x[:5]), "both x_val and y_val"),
        (dict(x=x, y=y, x_val=x[:5, :2], y_val=y[:5]), "x_val feature shape"),
        (dict(x=x, y=y, x_val=x[:5], y_val=y[:5] + 4, num_classes=4), r"y_val has labels outside \[0, 4\)"),
        (dict(x=x, y=y, val_fraction=1.0), r"val_fraction must be in \(0, 1\)"),
        (dict(x=x[:1], y=y[:1], num_classes=2), "at least 2 examples"),
        (dict(x=x, y=y, key="0"), "key"),
    ]
    for kwargs, msg in cases:
        with pytest.raises(ValueError, match=msg):
            hd.from_arrays(**kwargs)


def test_as_key_and_host_rng():
    k = hd.as_key(5)
    assert jax.dtypes.issubdtype(k.dtype, jax.dtypes.prng_key)
    assert hd.as_key(k) is k
    raw = jax.random.PRNGKey(5)
    assert hd.as_key(raw) is raw
    np.testing.assert_array_equal(hd.host_rng(5).permutation(10), hd.host_rng(jax.random.key(5)).permutation(10))
    np.testing.assert_array_equal(hd.host_rng(raw).permutation(10), hd.host_rng(5).permutation(10))
    assert not np.array_equal(hd.host_rng(5, 1).permutation(50), hd.host_rng(5, 2).permutation(50))
    for bad in (-1, 1.5, True, "k", jax.random.split(k, 2), np.zeros(3, np.uint32)):
        with pytest.raises(ValueError, match="key"):
            hd.as_key(bad)
