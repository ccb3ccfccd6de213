"""Blockwise Adam / AdaSGD [Xie24, Algorithms 2–3] and Adam without bias correction [Zhang24, Algorithm 3].

NumPy transcriptions of the algorithm boxes for 3 steps, the two extremes of blockwise Adam
(one block per coordinate = optax.adam, one block = AdaSGD), and the frozen preconditioner.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import heterogeneity.optim as ho
from heterogeneity import partition as hp

LR = 0.05
B1, B2, EPS = 0.9, 0.99, 1e-6
SHAPES = {"w": (2, 6), "b": (4,)}


def _grads(t):
    rng = np.random.default_rng(10 + t)
    return {k: (rng.normal(size=s) * (1 + 5 * (k == "b"))).astype(np.float32) for k, s in SHAPES.items()}


def _run(opt, steps=3, grads=_grads):
    x = {k: jnp.zeros(s) for k, s in SHAPES.items()}
    state = opt.init(x)
    update = jax.jit(opt.update)
    out = []
    for t in range(steps):
        u, state = update(jax.tree.map(jnp.asarray, grads(t)), state, x)
        x = optax.apply_updates(x, u)
        out.append(jax.tree.map(np.asarray, x))
    return out


def _blockwise_adam_np(blocks, steps=3):
    """[Xie24, Algorithm 3] (no bias correction, ε inside the root, m_0 = v_0 = 0).

    ``blocks``: function leaf name -> array of block ids with the leaf's shape.
    """
    x = {k: np.zeros(s) for k, s in SHAPES.items()}
    m = {k: np.zeros(s) for k, s in SHAPES.items()}
    v = None
    out = []
    for t in range(steps):
        g = {k: a.astype(np.float64) for k, a in _grads(t).items()}
        ids = {k: blocks(k) for k in g}
        nb = 1 + max(int(i.max()) for i in ids.values())
        sq, cnt = np.zeros(nb), np.zeros(nb)
        for k in g:
            np.add.at(sq, ids[k].ravel(), g[k].ravel() ** 2)
            np.add.at(cnt, ids[k].ravel(), 1)
        v = (1 - B2) * sq / cnt if v is None else B2 * v + (1 - B2) * sq / cnt
        for k in g:
            m[k] = B1 * m[k] + (1 - B1) * g[k]
            x[k] = x[k] - LR * m[k] / np.sqrt(v[ids[k]] + EPS)
        out.append({k: a.copy() for k, a in x.items()})
    return out


def _compare(a, b, rtol=2e-5, atol=1e-7):
    for xa, xb in zip(a, b):
        for k in xa:
            np.testing.assert_allclose(xa[k], xb[k], rtol=rtol, atol=atol)


PAPER = dict(b1=B1, b2=B2, eps=0.0, eps_root=EPS, bias_correction=False)


def test_adasgd_matches_xie24_algorithm2():
    ref = _blockwise_adam_np(lambda k: np.zeros(SHAPES[k], int))
    _compare(_run(ho.adasgd(LR, **PAPER)), ref)


def test_blockwise_adam_by_leaf_matches_xie24_algorithm3():
    params = {k: jnp.zeros(s) for k, s in SHAPES.items()}
    ref = _blockwise_adam_np(lambda k: np.full(SHAPES[k], {"w": 0, "b": 1}[k]))
    _compare(_run(ho.blockwise_adam(LR, hp.by_leaf(params), **PAPER)), ref)


def test_blockwise_adam_split_heads_matches_numpy():
    """Blocks that cut a leaf (one block per 'head' of w along the last axis, as Adam-mini)."""
    part = hp.from_fn(lambda path: hp.Split("w", axis=-1, parts=3) if path == "w" else "b")

    def ids(k):
        if k == "b":
            return np.full(SHAPES[k], 3)
        return np.broadcast_to(np.repeat(np.arange(3), 2)[None, :], SHAPES[k])

    _compare(_run(ho.blockwise_adam(LR, part, **PAPER)), _blockwise_adam_np(ids))


def test_blockwise_adam_by_coordinate_is_optax_adam():
    """Extreme Φ: i ↦ i. Bitwise the same trajectory as optax.adam over 10 steps."""
    a = _run(ho.blockwise_adam(LR, hp.by_coordinate(), b1=B1, b2=B2, eps=1e-8), steps=10)
    b = _run(optax.adam(LR, b1=B1, b2=B2, eps=1e-8), steps=10)
    _compare(a, b, rtol=0, atol=0)


def test_blockwise_adam_single_block_is_adasgd():
    """Extreme Φ: i ↦ 1. Same trajectory as `adasgd` (whose sum bypasses the partition code)."""
    a = _run(ho.blockwise_adam(LR, hp.single_block(), b1=B1, b2=B2), steps=10)
    b = _run(ho.adasgd(LR, b1=B1, b2=B2), steps=10)
    _compare(a, b, rtol=0, atol=0)


def test_blockwise_adam_requires_partition_and_blocks_are_different():
    with pytest.raises(ValueError, match="partition"):
        ho.blockwise_adam(LR, None)
    with pytest.raises(ValueError, match="partition"):
        ho.blockwise_adam(LR, "by_leaf")
    a = _run(ho.blockwise_adam(LR, hp.by_coordinate()))
    b = _run(ho.blockwise_adam(LR, hp.single_block()))
    assert not np.allclose(a[-1]["w"], b[-1]["w"])


def test_adam_no_bias_correction_matches_zhang24_algorithm3():
    x = {k: np.zeros(s) for k, s in SHAPES.items()}
    m = v = None
    ref = []
    for t in range(3):
        g = {k: a.astype(np.float64) for k, a in _grads(t).items()}
        if m is None:  # m^0 = g_0, v^0 = g_0 ∘ g_0
            m = dict(g)
            v = {k: a**2 for k, a in g.items()}
        else:
            m = {k: B1 * m[k] + (1 - B1) * g[k] for k in g}
            v = {k: B2 * v[k] + (1 - B2) * g[k] ** 2 for k in g}
        x = {k: x[k] - LR * m[k] / np.sqrt(v[k] + EPS) for k in g}
        ref.append(x)
    _compare(_run(ho.adam_no_bias_correction(LR, b1=B1, b2=B2, eps_root=EPS)), ref)


def test_frozen_adam_matches_zhang24_eq2_on_a_quadratic():
    """w ← w − η D0⁻¹ (H w − h), D0 = diag(|H w0 − h|), with a zero first-gradient coordinate.

    The first gradient is given exactly (``c``, with c_2 = 0); later gradients are evaluated
    in float64 at the current float32 iterate, for the reference and the optimizer alike.
    """
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 5))
    H = a @ a.T + np.eye(5)
    w0 = rng.normal(size=5)
    c = np.array([0.3, -0.2, 0.0, 0.5, -0.4])
    h = H @ w0 - c

    def grad(w, t):
        return c if t == 0 else H @ np.asarray(w, np.float64) - h

    d0 = np.abs(c)
    opt = ho.frozen_adam(0.01)
    wj = jnp.asarray(w0, jnp.float32)
    state = opt.init(wj)
    for t in range(3):
        g = grad(wj, t)
        step = np.where(d0 > 0, g / np.where(d0 > 0, d0, 1), 0.0)  # pseudo-inverse of D0
        ref = np.asarray(wj, np.float64) - 0.01 * step
        u, state = opt.update(jnp.asarray(g, jnp.float32), state, wj)
        wj = wj + u
        assert bool(jnp.all(jnp.isfinite(wj)))
        np.testing.assert_allclose(wj, ref, rtol=1e-6, atol=1e-7)
    # the preconditioner is frozen at the first gradient: nu still holds g_0²
    np.testing.assert_array_equal(state[0].nu, jnp.asarray(c, jnp.float32) ** 2)


def test_optax_adam_b2_equal_one_divides_by_zero_but_frozen_adam_does_not():
    g = jnp.array([1.0, -2.0, 0.0])
    opt = optax.scale_by_adam(b1=0.0, b2=1.0, eps=0.0)
    u, _ = opt.update(g, opt.init(g))
    assert not bool(jnp.all(jnp.isfinite(u)))  # 1 - b2**t = 0
    u, _ = ho.frozen_adam(1.0).update(g, ho.frozen_adam(1.0).init(g), g)
    np.testing.assert_array_equal(u, [-1.0, 1.0, 0.0])


def test_bias_correction_with_b2_one_is_rejected():
    with pytest.raises(ValueError, match="b2"):
        ho.adasgd(0.1, b2=1.0)
    with pytest.raises(ValueError, match="b2"):
        ho.adam_no_bias_correction(0.1, b2=1.0, initial_moments="zeros")
