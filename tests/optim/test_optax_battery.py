"""Optax's alias-test battery, run over every registry name (and every ``rotated_<name>``).

Adapted from optax/_src/alias_test.py (Optax 0.2.8, Apache 2.0): ``test_optimization`` (the
parabola), ``test_optimizers_can_be_wrapped_in_inject_hyperparams``, the ``tree_map_params``
sub-test, ``test_preserve_dtype``, ``test_gradient_accumulation``, the complex-parameter cases
(Optax conjugates complex gradients and feeds second moments ``|g|² = g·conj(g)``), plus
jit/no-jit equality, "the state is a pytree of arrays" and empty / odd pytrees.

Differences from Optax's file, so that the battery stays under a minute on one core:

* optimization runs 600 steps in one ``lax.scan`` (Optax: 10 000 Python steps), with a
  learning rate that decays linearly to 0 (this also checks that schedules work). Optax's
  Rosenbrock target is left out: Optax itself skips it for its sign methods, and most names
  here are sign methods; the adaptive ones are covered by Optax's own test of ``optax.adam``
  and by the NumPy references of test_adaptive.py.
* ``rotated_<name>``: every one gets the structural checks (state, ``tree_map_params``, empty
  and odd pytrees: the wrapper's own failure modes); three representatives (one adaptive, one
  sign, one multi-worker inner) get the numeric ones (optimization, jit, inject, dtype). The
  wrapper is the same code for every inner optimizer, and each rotated draw and compile costs
  seconds.
* multi-worker names run as one worker (``axis_name=None``); their vote over workers is tested
  in test_majority_vote.py. Stochastic names use ``R = 1e-3`` so that ``S_R`` is the sign away
  from the optimum (the bound R is the paper's gradient bound G).
* complex parameters: the names that support them (Optax's wrappers and the Adam variants)
  are checked for convergence and against a NumPy complex reference; sign, vote and
  error-feedback methods are real-only, as ``optax.sign_sgd``/``optax.signum``/``optax.lion``
  (Optax skips them for complex too), and so is ``rotated`` (it rotates a real vector).
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import heterogeneity.optim as ho

NAMES = ho.names() + ("rotated_adam", "rotated_signsgd", "rotated_mvsm_v1")  # the numeric checks
ALL_NAMES = ho.names(rotated_variants=True)  # the structural checks
STEPS = 600

# Initial learning rate per base name (decayed linearly to 0 over STEPS).
LR = {
    "sgd": 0.1, "signsgd": 0.05, "signsgd_s": 0.01, "signum_first_gradient": 0.05, "adam": 0.2, "adamw": 0.2,
    "rmsprop": 0.1, "lion": 0.1, "adasgd": 0.2, "blockwise_adam": 0.2, "frozen_adam": 0.5,
    "adam_no_bias_correction": 0.2, "ef_signsgd": 0.1, "mv_signsgd": 0.05, "sto_signsgd": 0.05,
    "mvsm_v1": 0.05, "mvsm_v2": 0.05,
}
EXTRA = {  # beyond learning_rate; keys are structural (bound in `factory`)
    "adamw": dict(weight_decay=0.0), "lion": dict(weight_decay=0.0),
    "frozen_adam": dict(eps=0.5),  # rotated first gradients have near-zero entries
    "mv_signsgd": dict(axis_name=None), "sto_signsgd": dict(axis_name=None, R=1e-3, key=0),
    "mvsm_v1": dict(axis_name=None, R=1e-3, key=1), "mvsm_v2": dict(axis_name=None, R=1e-3, key=2),
}
PARAM_SHAPED_STATE = ("adam", "adamw", "rmsprop", "lion", "adasgd", "blockwise_adam", "adam_no_bias_correction",
                      "signum_first_gradient", "ef_signsgd", "mvsm_v1", "mvsm_v2")
COMPLEX = ("sgd", "adam", "adamw", "rmsprop", "adasgd", "blockwise_adam", "frozen_adam", "adam_no_bias_correction")


def _base(name):
    return name[len("rotated_"):] if name.startswith("rotated_") else name


def _hparams(name, learning_rate=None):
    base = _base(name)
    return {"learning_rate": LR[base] if learning_rate is None else learning_rate, **EXTRA.get(base, {})}


def _make(name, learning_rate=None, inject=False):
    hp = _hparams(name, learning_rate)
    if not inject:
        return ho.get(name, **hp)
    static = {k: hp.pop(k) for k in ("key", "axis_name") if k in hp}
    return optax.inject_hyperparams(ho.factory(name, **static))(**hp)


def _parabola(dtype):
    """Optax's parabola: sum |x − x*|² from x_0 = (−1, 10, 1) to x* = (1, −1, 1) (·(1 + i) if complex)."""
    x0 = jnp.array([-1.0, 10.0, 1.0], dtype)
    target = jnp.array([1.0, -1.0, 1.0], dtype)
    if jnp.iscomplexobj(x0):
        target = target * (1 + 1j)
    return x0, target, lambda x: jnp.sum(jnp.abs(x - target) ** 2)


def _optimize(opt, x0, objective, steps=STEPS):
    def step(carry, _):
        x, state = carry
        g = jax.tree.map(jnp.conj, jax.grad(objective)(x))  # Optax's convention for complex parameters
        u, state = opt.update(g, state, x)
        return (optax.apply_updates(x, u), state), None

    (x, _), _ = jax.jit(lambda x: jax.lax.scan(step, (x, opt.init(x)), None, length=steps))(x0)
    return x


def test_battery_covers_every_registry_name():
    assert set(LR) == set(ho.names()) and len(ALL_NAMES) == 2 * len(LR)


@pytest.mark.parametrize("name", NAMES)
def test_optimization_parabola(name):
    lr = optax.linear_schedule(LR[_base(name)], 0.0, STEPS)
    x0, target, objective = _parabola(jnp.float32)
    x = _optimize(_make(name, learning_rate=lr), x0, objective)
    np.testing.assert_allclose(x, target, rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize("name", COMPLEX)
def test_optimization_parabola_complex(name):
    lr = optax.linear_schedule(LR[name], 0.0, STEPS)
    x0, target, objective = _parabola(jnp.complex64)
    x = _optimize(_make(name, learning_rate=lr), x0, objective)
    assert x.dtype == jnp.complex64
    np.testing.assert_allclose(x, target, rtol=3e-2, atol=3e-2)


PARAMS = {"w": jnp.array([[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]]), "b": jnp.array([0.3, -0.2])}


def _grads(i):
    return jax.tree.map(lambda p: jnp.cos(p * (i + 1.0)) + 0.1 * i, PARAMS)


def _run(opt, steps=3, jit=True, params=PARAMS):
    update = jax.jit(opt.update) if jit else opt.update
    state = opt.init(params)
    out = []
    for i in range(steps):
        u, state = update(_grads(i), state, params)
        out.append(u)
    return out, state


@pytest.mark.parametrize("name", NAMES)
def test_jit_and_eager_agree(name):
    opt = _make(name)
    (a, _), (b, _) = _run(opt, steps=2, jit=True), _run(opt, steps=2, jit=False)
    for ua, ub in zip(a, b):
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7), ua, ub)


@pytest.mark.parametrize("name", NAMES)
def test_inject_hyperparams_gives_the_same_updates(name):
    (plain, state), (injected, istate) = _run(_make(name)), _run(_make(name, inject=True))
    for ua, ub in zip(plain, injected):
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7), ua, ub)
    assert "learning_rate" in istate.hyperparams
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7),
                 optax.tree.unwrap_random_key_data(istate.inner_state), optax.tree.unwrap_random_key_data(state))


@pytest.mark.parametrize("name", ALL_NAMES)
def test_state_is_a_pytree_of_arrays_and_tree_map_params_works(name):
    opt = _make(name)
    _, state = _run(opt, steps=2)
    leaves = jax.tree.leaves(state)
    assert all(isinstance(x, jax.Array) for x in leaves), [type(x) for x in leaves]  # sgd: no state at all
    same = optax.tree_map_params(opt, lambda v: v, state)  # Optax's no-op sub-test
    assert jax.tree.structure(same) == jax.tree.structure(state)
    jax.tree.map(np.testing.assert_array_equal, same, state)
    # a real map: parameter-shaped subtrees get the function, everything else transform_non_params
    marked = optax.tree_map_params(opt, lambda v: jnp.full_like(v, 7), state, transform_non_params=lambda v: v)
    param_like = [x for x, y in zip(jax.tree.leaves(marked), leaves) if not np.array_equal(x, y)]
    assert all(np.all(np.asarray(x) == 7) for x in param_like)
    if name in PARAM_SHAPED_STATE:  # moments / error memory have the params' structure
        assert param_like


@pytest.mark.parametrize("name", NAMES)
def test_preserve_dtype(name):
    """Optax's test_preserve_dtype (bfloat16; float32 is every other test): updates keep the gradients' dtype."""
    opt = _make(name)
    params = jnp.array([1.0, 2.0], jnp.bfloat16)
    grads = jax.grad(lambda x: jnp.sum(x**2))(params)
    updates, _ = jax.jit(opt.update)(grads, opt.init(params), params)
    assert updates.dtype == grads.dtype


@pytest.mark.parametrize("name", ho.names())
def test_gradient_accumulation(name):
    """Optax's test_gradient_accumulation: inside optax.MultiSteps the first k−1 updates are 0."""
    opt = optax.MultiSteps(_make(name), every_k_schedule=4)
    params = jnp.array([1.0, 2.0])
    grads = 2 * params
    updates, _ = jax.jit(opt.update)(grads, opt.init(params), params)
    np.testing.assert_array_equal(updates, jnp.zeros_like(grads))


ODD = {"scalar": jnp.asarray(0.5), "empty": jnp.zeros((0, 3)), "nested": [(jnp.ones((1, 1)), {"x": jnp.arange(3.0)})]}


@pytest.mark.parametrize("name", ALL_NAMES)
def test_empty_and_odd_pytrees(name):
    opt = _make(name)
    odd = ODD
    if name == "blockwise_adam":  # a block of 0 parameters has no second moment: refused, by name
        with pytest.raises(ValueError, match="empty blocks.*'empty'"):
            opt.init(ODD)
        odd = {k: v for k, v in ODD.items() if k != "empty"}
    for params in ({}, odd):
        state = opt.init(params)
        updates, state = jax.jit(opt.update)(jax.tree.map(lambda p: p + 1.0, params), state, params)
        assert jax.tree.structure(updates) == jax.tree.structure(params)
        for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params)):
            assert u.shape == p.shape and u.dtype == p.dtype and bool(jnp.all(jnp.isfinite(u)))
        assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.inexact))


# --- complex parameters against a NumPy complex128 reference -----------------------------------

def _complex_grads(steps, d=4):
    rng = np.random.default_rng(0)
    return [rng.normal(size=d) + 1j * rng.normal(size=d) for _ in range(steps)]


def _np_adam_like(gs, lr, b1, b2, eps, eps_root, *, blocks, bias_correction, from_first):
    """NumPy Adam family on complex gradients: v fed |g|², one v per block of ``blocks`` (ids)."""
    ids = np.asarray(blocks)
    m, v, out = 0, 0, []
    for t, g in enumerate(gs, start=1):
        sq = (g * g.conj()).real
        per_block = np.array([sq[ids == b].mean() for b in range(ids.max() + 1)])[ids]
        if from_first and t == 1:
            m, v = g, per_block
        else:
            m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * per_block
        mh, vh = (m / (1 - b1**t), v / (1 - b2**t)) if bias_correction else (m, v)
        out.append(-lr * mh / (np.sqrt(vh + eps_root) + eps))
    return out


@pytest.mark.parametrize(
    "make, ref",
    [
        (lambda: ho.adasgd(0.1, b1=0.9, b2=0.99),
         dict(b1=0.9, b2=0.99, eps=1e-8, eps_root=0.0, blocks=[0, 0, 0, 0], bias_correction=True, from_first=False)),
        (lambda: ho.blockwise_adam(0.1, _two_blocks(), b1=0.8, b2=0.9, eps=0.0, eps_root=1e-6, bias_correction=False),
         dict(b1=0.8, b2=0.9, eps=0.0, eps_root=1e-6, blocks=[0, 0, 1, 1], bias_correction=False, from_first=False)),
        (lambda: ho.frozen_adam(0.1, eps_root=1e-6),
         dict(b1=0.0, b2=1.0, eps=0.0, eps_root=1e-6, blocks=[0, 1, 2, 3], bias_correction=False, from_first=True)),
        (lambda: ho.adam_no_bias_correction(0.1, b1=0.9, b2=0.99, eps=1e-3),
         dict(b1=0.9, b2=0.99, eps=1e-3, eps_root=0.0, blocks=[0, 1, 2, 3], bias_correction=False, from_first=True)),
    ],
    ids=["adasgd", "blockwise_adam", "frozen_adam", "adam_no_bias_correction"],
)
def test_complex_second_moments_use_abs_squared(make, ref):
    gs = _complex_grads(4)
    opt = make()
    params = {"a": jnp.zeros(2, jnp.complex64), "b": jnp.zeros(2, jnp.complex64)}
    state = opt.init(params)
    expected = _np_adam_like(gs, 0.1, **ref)
    for g, want in zip(gs, expected):
        u, state = opt.update({"a": jnp.asarray(g[:2], jnp.complex64), "b": jnp.asarray(g[2:], jnp.complex64)},
                              state, params)
        got = np.concatenate([np.asarray(u["a"]), np.asarray(u["b"])])
        assert got.dtype == np.complex64
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-7)


def _two_blocks():
    from heterogeneity import partition as hp

    return hp.by_leaf()


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop"])
def test_complex_wrappers_equal_optax(name):
    gs = _complex_grads(3)
    ours, theirs = ho.get(name, learning_rate=0.1), getattr(optax, name)(0.1)
    x = jnp.zeros(4, jnp.complex64)
    s1, s2 = ours.init(x), theirs.init(x)
    for g in gs:
        g = jnp.asarray(g, jnp.complex64)
        u1, s1 = ours.update(g, s1, x)
        u2, s2 = theirs.update(g, s2, x)
        np.testing.assert_array_equal(u1, u2)
