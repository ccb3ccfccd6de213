"""Sign methods against NumPy transcriptions of their algorithm boxes (3 steps).

SignSGD with heavy-ball momentum in both orders [Tomihari25, §3.2], Signum [SignMomentum25, Algorithm 1],
SignSGD (S) [Tomihari25, §4.6] (global and per block), EF-signSGD [Karimireddy19].
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import heterogeneity.optim as ho
from heterogeneity import partition as hp

LR = 0.1


def _grads(t):
    """A deterministic gradient sequence on a 2-leaf pytree (includes an exact zero)."""
    rng = np.random.default_rng(t)
    g = {"w": rng.normal(size=(2, 3)).astype(np.float32), "b": rng.normal(size=(4,)).astype(np.float32)}
    g["b"][0] = 0.0
    return g


def _run(opt, steps=3):
    x = {"w": jnp.zeros((2, 3)), "b": jnp.zeros(4)}
    state = opt.init(x)
    out = []
    for t in range(steps):
        u, state = jax.jit(opt.update)(jax.tree.map(jnp.asarray, _grads(t)), state, x)
        x = optax.apply_updates(x, u)
        out.append(jax.tree.map(np.asarray, x))
    return out


def _np_run(step_fn, steps=3):
    x = {"w": np.zeros((2, 3)), "b": np.zeros(4)}
    state = None
    out = []
    for t in range(steps):
        g = {k: v.astype(np.float64) for k, v in _grads(t).items()}
        u, state = step_fn(g, state, t)
        x = {k: x[k] + u[k] for k in x}
        out.append(x)
    return out


def _compare(a, b, rtol=1e-6, atol=1e-7):
    for xa, xb in zip(a, b):
        for k in xa:
            np.testing.assert_allclose(xa[k], xb[k], rtol=rtol, atol=atol)


@pytest.mark.parametrize("order", ["momentum_first", "sign_first"])
def test_signsgd_momentum_orders_match_numpy(order):
    mu = 0.9

    def ref(g, m, t):
        m = m or {k: np.zeros_like(v) for k, v in g.items()}
        if order == "momentum_first":
            m = {k: mu * m[k] + g[k] for k in g}
            return {k: -LR * np.sign(m[k]) for k in g}, m
        m = {k: mu * m[k] + np.sign(g[k]) for k in g}
        return {k: -LR * m[k] for k in g}, m

    _compare(_run(ho.signsgd(LR, momentum=mu, order=order)), _np_run(ref))


def test_signsgd_orders_differ_and_no_momentum_is_optax():
    a = _run(ho.signsgd(LR, momentum=0.9, order="momentum_first"))
    b = _run(ho.signsgd(LR, momentum=0.9, order="sign_first"))
    assert not np.allclose(a[-1]["w"], b[-1]["w"])
    _compare(_run(ho.signsgd(LR)), _run(optax.sign_sgd(LR)), rtol=0, atol=0)


@pytest.mark.parametrize("beta", [0.5, 0.9])
def test_signum_first_gradient_matches_signmomentum25_algorithm1(beta):
    def ref(g, v, t):  # v_1 = g_1, v_t = (1 - β') v + β' g with β' = 1 - beta
        v = g if t == 0 else {k: beta * v[k] + (1 - beta) * g[k] for k in g}
        return {k: -LR * np.sign(v[k]) for k in g}, v

    _compare(_run(ho.signum_first_gradient(LR, beta=beta)), _np_run(ref))


def test_signum_first_gradient_two_betas_give_two_trajectories():
    """Guards against momentum being a silent no-op (a known bug elsewhere)."""
    a = _run(ho.signum_first_gradient(LR, beta=0.1), steps=3)
    b = _run(ho.signum_first_gradient(LR, beta=0.9), steps=3)
    assert not np.allclose(a[-1]["w"], b[-1]["w"]) or not np.allclose(a[-1]["b"], b[-1]["b"])
    a = _run(ho.get("signum_first_gradient", learning_rate=LR, beta=0.1))
    b = _run(ho.get("signum_first_gradient", learning_rate=LR, beta=0.9))
    assert any(not np.allclose(a[-1][k], b[-1][k]) for k in ("w", "b"))


def test_signum_first_gradient_zeros_init_is_optax_signum():
    _compare(_run(ho.signum_first_gradient(LR, beta=0.7, first_step="zeros")), _run(optax.signum(LR, beta=0.7)), rtol=0, atol=0)


@pytest.mark.parametrize("momentum", [None, 0.9])
@pytest.mark.parametrize("blockwise", [False, True])
def test_signsgd_s_matches_numpy(momentum, blockwise):
    partition = hp.by_leaf({"w": jnp.zeros((2, 3)), "b": jnp.zeros(4)}) if blockwise else None

    def ref(g, m, t):
        m = m or {k: np.zeros_like(v) for k, v in g.items()}
        s = {k: (0.9 * m[k] + g[k]) for k in g} if momentum else g
        if blockwise:
            return {k: -LR * np.abs(s[k]).sum() * np.sign(s[k]) for k in g}, s
        l1 = sum(np.abs(v).sum() for v in s.values())
        return {k: -LR * l1 * np.sign(s[k]) for k in g}, s

    _compare(_run(ho.signsgd_s(LR, partition=partition, momentum=momentum)), _np_run(ref), rtol=1e-5)


def test_ef_signsgd_matches_karimireddy_algorithm1():
    d = 10

    def ref(g, e, t):
        e = e or {k: np.zeros_like(v) for k, v in g.items()}
        p = {k: LR * g[k] + e[k] for k in g}
        scale = sum(np.abs(v).sum() for v in p.values()) / d
        delta = {k: scale * np.sign(p[k]) for k in g}
        return {k: -delta[k] for k in g}, {k: p[k] - delta[k] for k in g}

    _compare(_run(ho.ef_signsgd(LR)), _np_run(ref), rtol=1e-5)


def test_ef_signsgd_per_block_matches_numpy():
    part = hp.by_leaf({"w": jnp.zeros((2, 3)), "b": jnp.zeros(4)})

    def ref(g, e, t):
        e = e or {k: np.zeros_like(v) for k, v in g.items()}
        p = {k: LR * g[k] + e[k] for k in g}
        delta = {k: np.abs(p[k]).mean() * np.sign(p[k]) for k in g}
        return {k: -delta[k] for k in g}, {k: p[k] - delta[k] for k in g}

    _compare(_run(ho.ef_signsgd(LR, partition=part)), _np_run(ref), rtol=1e-5)
