"""Rotations ([Xie24, App. D.2], RandPerm) and the invariances of [Xie24, Theorem 2.2].

`rotated(inner)` runs ``inner`` on L∘R; with x̃ = Rᵀx its parameters follow x_t = R x̃_t. So
a rotation-invariant method (AdaSGD) gives the *same* x_t with or without rotation, a
permutation-invariant one (Adam, SignSGD) the same x_t under a permutation, and a different
one under RandPerm.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import heterogeneity.optim as ho
from heterogeneity.optim._rotated import _segments


@pytest.mark.parametrize("d", [1, 7, 64, 65, 100, 1000, 1001, 4099])
def test_segments_cover_any_d_exactly(d):
    segs = _segments(d)
    assert sum(a * b * c for a, b, c in segs) == d
    assert all(min(s) >= 1 for s in segs)


@pytest.mark.parametrize("d, rotation", [(77, "randperm"), (77, "haar"), (77, "permutation")])
def test_rotation_is_orthogonal(d, rotation):
    """RᵀRv = v and RRᵀv = v to float32 tolerance; the dense R (columns R e_i) has RᵀR = I.

    d = 77 exercises both RandPerm pieces: a (4, 4, 4) Kronecker segment and a dense 13×13 one.
    """
    if rotation == "randperm":
        assert _segments(d) == [(4, 4, 4), (13, 1, 1)]
    rot = ho.make_rotation(jax.random.key(0), d, rotation=rotation, depth=2)
    v = jax.random.normal(jax.random.key(1), (d,))
    fwd, bwd = jax.jit(ho.rotate), jax.jit(ho.rotate_transpose)
    np.testing.assert_allclose(bwd(rot, fwd(rot, v)), v, atol=2e-5)
    np.testing.assert_allclose(fwd(rot, bwd(rot, v)), v, atol=2e-5)
    np.testing.assert_allclose(jnp.linalg.norm(fwd(rot, v)), jnp.linalg.norm(v), rtol=1e-5)
    if d <= 100:  # dense check
        eye = jnp.eye(d)
        dense = np.asarray(jax.jit(jax.vmap(ho.rotate, in_axes=(None, 0), out_axes=1))(rot, eye), np.float64)
        np.testing.assert_allclose(dense.T @ dense, np.eye(d), atol=2e-5)
        # transpose really is the transpose
        dense_t = np.asarray(jax.jit(jax.vmap(ho.rotate_transpose, in_axes=(None, 0), out_axes=1))(rot, eye))
        np.testing.assert_allclose(dense_t, dense.T, atol=1e-5)
        if rotation == "permutation":
            assert set(np.unique(np.round(dense, 5))) == {0.0, 1.0}
        else:  # a genuine rotation mixes coordinates (no permutation matrix)
            assert np.mean(np.abs(dense) > 1e-3) > 0.2


def test_rotation_is_fixed_by_key():
    a = ho.make_rotation(jax.random.key(3), 77)
    b = ho.make_rotation(3, 77)
    c = ho.make_rotation(4, 77)
    v = jnp.arange(77.0)
    fwd = jax.jit(ho.rotate)
    np.testing.assert_array_equal(fwd(a, v), fwd(b, v))
    assert not np.allclose(fwd(a, v), fwd(c, v))


# A non-separable, non-quadratic loss on a 2-leaf pytree (d = 77: Kronecker + dense segments).
def _loss(x):
    z = jnp.concatenate([x["w"].ravel(), x["b"]])
    scales = jnp.linspace(0.5, 4.0, z.size)
    return jnp.sum(scales * z**2) + 0.3 * jnp.sum(jnp.sin(z[:-1] * z[1:])) + jnp.sum(z) * 0.5


X0 = {"w": jnp.linspace(-1.0, 1.0, 72).reshape(6, 12), "b": jnp.linspace(0.5, -0.3, 5)}


def _trajectory(opt, steps=5):
    x, state = X0, opt.init(X0)
    grad = jax.jit(jax.grad(_loss))
    update = jax.jit(opt.update)
    out = []
    for _ in range(steps):
        u, state = update(grad(x), state, x)
        x = optax.apply_updates(x, u)
        out.append(np.concatenate([np.asarray(x["b"]), np.asarray(x["w"]).ravel()]))
    return np.stack(out)


def _gap(a, b):
    return float(np.max(np.abs(a - b)))


def test_adasgd_is_rotation_invariant():
    base = _trajectory(ho.adasgd(0.05))
    rot = _trajectory(ho.rotated(ho.adasgd(0.05), jax.random.key(0), rotation="randperm", depth=2))
    assert _gap(base, base[0]) > 0.05  # it moves
    np.testing.assert_allclose(rot, base, atol=2e-5)


def test_explicit_rotated_loss_matches_wrapper():
    """Run AdaSGD directly on L̃(x̃) = L(R x̃) from x̃0 = Rᵀx0: R x̃_t equals the wrapper's x_t."""
    from jax.flatten_util import ravel_pytree

    flat0, unravel = ravel_pytree(X0)
    rot = ho.make_rotation(jax.random.key(0), flat0.size, rotation="randperm", depth=2)
    loss_rot = jax.jit(jax.grad(lambda xt: _loss(unravel(ho.rotate(rot, xt)))))
    opt = ho.adam(0.05)
    xt = jax.jit(ho.rotate_transpose)(rot, flat0)
    state = opt.init(xt)
    update, fwd = jax.jit(opt.update), jax.jit(ho.rotate)
    ref = []
    for _ in range(5):
        u, state = update(loss_rot(xt), state, xt)
        xt = xt + u
        ref.append(np.asarray(fwd(rot, xt)))
    got = _trajectory(ho.rotated(ho.adam(0.05), jax.random.key(0)))
    np.testing.assert_allclose(got, np.stack(ref), atol=2e-5)


@pytest.mark.parametrize("make", [lambda: ho.adam(0.05), lambda: ho.signsgd(0.05)], ids=["adam", "signsgd"])
def test_adam_and_signsgd_are_permutation_but_not_rotation_invariant(make):
    base = _trajectory(make())
    perm = _trajectory(ho.rotated(make(), jax.random.key(1), rotation="permutation"))
    np.testing.assert_allclose(perm, base, rtol=1e-6, atol=1e-7)
    rot = _trajectory(ho.rotated(make(), jax.random.key(1), rotation="randperm"))
    assert _gap(rot, base) > 1e-2, _gap(rot, base)  # O(step size), far above float error
    haar = _trajectory(ho.rotated(make(), jax.random.key(1), rotation="haar"))
    assert _gap(haar, base) > 1e-2


def test_rotated_keeps_bfloat16_and_passes_params():
    x = {"w": jnp.ones((6, 12), jnp.bfloat16), "b": jnp.ones(5, jnp.float32)}
    opt = ho.rotated(optax.adamw(0.1, weight_decay=0.5), 0)
    u, state = jax.jit(opt.update)(jax.tree.map(jnp.zeros_like, x), opt.init(x), x)
    assert u["w"].dtype == jnp.bfloat16 and u["b"].dtype == jnp.float32
    # zero gradient: the update is pure weight decay −lr·wd·x, mapped through Rᵀ and back
    np.testing.assert_allclose(np.asarray(u["b"]), -0.05 * np.ones(5), atol=1e-5)
    assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(state))


def test_rotated_under_inject_hyperparams():
    """inject_hyperparams keeps b1, b2, eps as float32 arrays (Python floats otherwise), so
    1 − b1 etc. round differently (~1e-7 relative); through Adam's normalisation and the
    rotation this gives ~2e-6 absolute differences on O(1) parameters after 3 steps."""
    plain = ho.get("rotated_adam", learning_rate=0.05)
    inj = optax.inject_hyperparams(ho.factory("rotated_adam"))(learning_rate=0.05)
    np.testing.assert_allclose(_trajectory(inj, steps=3), _trajectory(plain, steps=3), rtol=0, atol=1e-5)


def test_rotated_validation():
    with pytest.raises(ValueError, match="rotation"):
        ho.rotated(optax.sgd(0.1), 0, rotation="givens")
    with pytest.raises(ValueError, match="haar"):
        ho.make_rotation(0, 5000, rotation="haar")
