"""Tests for heterogeneity/data/_digits.py (scikit-learn's real 8x8 digits)."""
import jax
import numpy as np
import pytest

import heterogeneity.data as hd

CLASS_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]  # UCI optdigits test part


def test_shapes_ranges_and_class_counts():
    d = hd.load_digits()
    assert d.num_classes == 10
    assert d.x_train.shape == (1438, 64) and d.x_val.shape == (359, 64)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int32
    assert d.feature_shape == (64,)
    y = np.concatenate([d.y_train, d.y_val])
    np.testing.assert_array_equal(np.bincount(y, minlength=10), CLASS_COUNTS)
    for x in (d.x_train, d.x_val):
        assert x.min() == 0.0 and x.max() == 1.0
        np.testing.assert_allclose(x * 16, np.round(x * 16), atol=1e-5)  # 17 grey levels
    # stratified: every class keeps round(0.2 * N_c) validation images
    np.testing.assert_array_equal(np.bincount(d.y_val, minlength=10), np.round(0.2 * np.array(CLASS_COUNTS)))
    # real images: an average "0" has a hollow centre and ink around it
    zero = d.x_train[d.y_train == 0].mean(0).reshape(8, 8)
    assert zero[3:5, 3:5].mean() < 0.3 < zero[1:7, 1:3].mean()


def test_layouts_and_scalings_agree():
    flat = hd.load_digits(key=5)
    img = hd.load_digits(layout="image", key=5)
    raw = hd.load_digits(scaling="none", key=5)
    assert img.x_train.shape == (1438, 8, 8, 1) and img.feature_shape == (8, 8, 1)
    np.testing.assert_array_equal(img.x_train.reshape(-1, 64), flat.x_train)
    np.testing.assert_array_equal(img.y_val, flat.y_val)
    np.testing.assert_allclose(raw.x_train / 16, flat.x_train, rtol=1e-6)
    assert raw.x_train.max() == 16.0
    std = hd.load_digits(scaling="standardize", key=5)
    mu, sd = raw.x_train.mean(0), raw.x_train.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    np.testing.assert_allclose(std.x_train, (raw.x_train - mu) / sd, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(std.x_val, (raw.x_val - mu) / sd, rtol=1e-5, atol=1e-5)  # train statistics
    np.testing.assert_allclose(std.x_train.mean(0), 0, atol=1e-5)
    varying = raw.x_train.std(0) > 0
    np.testing.assert_allclose(std.x_train.std(0)[varying], 1, rtol=1e-4)
    assert (std.x_train[:, ~varying] == 0).all()
    assert hd.load_digits(dtype=np.float64).x_train.dtype == np.float64


def test_split_is_deterministic_by_key():
    a, b = hd.load_digits(key=1), hd.load_digits(key=jax.random.key(1))
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_val, b.y_val)
    c = hd.load_digits(key=2)
    assert not np.array_equal(a.y_val, c.y_val)
    tr, va = hd.split_indices(np.concatenate([a.y_train, a.y_val]), val_fraction=0.2, key=1, stratify=True)
    assert np.intersect1d(tr, va).size == 0 and tr.size + va.size == 1797
    unstrat = hd.load_digits(stratify=False, val_fraction=0.5)
    assert unstrat.x_val.shape[0] == round(0.5 * 1797)


def test_bad_arguments():
    with pytest.raises(ValueError, match="layout"):
        hd.load_digits(layout="nchw")
    with pytest.raises(ValueError, match="scaling"):
        hd.load_digits(scaling="minmax")
    with pytest.raises(ValueError, match="val_fraction"):
        hd.load_digits(val_fraction=0.0)
    with pytest.raises(ValueError, match="key"):
        hd.load_digits(key=-1)
