"""The per-block metrics were renamed ``blockwise_*``; the old names warn and behave like the new ones."""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from heterogeneity import metrics as hm
from heterogeneity import partition as hp


def _same(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _new(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new names do not warn
        return fn(*args, **kwargs)


def test_old_function_names_warn_and_match():
    grads = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([1.0])}
    part = hp.by_leaf(grads)
    with pytest.warns(DeprecationWarning, match="block_grad_norms is deprecated.*blockwise_grad_norms"):
        old = hm.block_grad_norms(grads, partition=part)
    new = _new(hm.blockwise_grad_norms, grads, partition=part)
    assert old.labels == new.labels == ("a", "b") and isinstance(old, hm.BlockwiseGradNorms)
    _same(old[:3], new[:3])

    h = jnp.array([[2.0, 1.0, 0.0], [1.0, 2.0, 3.0], [0.0, 3.0, -4.0]])
    with pytest.warns(DeprecationWarning, match="blockwise_norm_matrix"):
        old = hm.block_norm_matrix(h, [0, 0, 1])
    _same(old, _new(hm.blockwise_norm_matrix, h, [0, 0, 1]))

    params = {"v": jnp.zeros(2), "w": jnp.zeros(3)}

    def loss_fn(p, b):  # H = diag(5, 5, 2, 2, 2)
        return 0.5 * (5.0 * jnp.sum(p["v"] ** 2) + 2.0 * jnp.sum(p["w"] ** 2))

    key = jax.random.key(0)
    with pytest.warns(DeprecationWarning, match="blockwise_hessian_norms"):
        old = hm.block_hessian_norms(loss_fn, params, None, key, partition=hp.by_leaf(params), num_steps=3)
    new = _new(hm.blockwise_hessian_norms, loss_fn, params, None, key, partition=hp.by_leaf(params), num_steps=3)
    assert old.labels == new.labels == ("v", "w")
    _same(old, new)
    np.testing.assert_allclose(np.asarray(new.value), [5.0, 2.0], rtol=1e-6)


def test_old_class_names_are_the_new_classes():
    assert hm.BlockGradNorms is hm.BlockwiseGradNorms
    assert hm.BlockLinfGeometry is hm.BlockwiseLinfGeometry
