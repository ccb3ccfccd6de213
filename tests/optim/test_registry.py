"""Registry-driven battery: every optimizer name, the same checks.

For each name (and each ``rotated_<name>``): converges on a separable quadratic over a
2-leaf pytree of mixed shapes; keeps float32 and bfloat16 dtypes of params and updates;
traces the jitted step once for two steps (a Python side-effect counter in the step);
works under `optax.inject_hyperparams` (same trajectory as the plain optimizer) and inside
`optax.chain` after gradient clipping. Multi-worker names run under
``jax.vmap(step, axis_name="workers")`` with 4 simulated workers whose gradients differ by
worker-specific noise; their params stay identical across workers.
"""
import difflib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import heterogeneity.optim as ho

N_WORKERS = 4
STEPS = 200

# Per-name hyperparameters for the quadratic (lr tuned to the algorithm's step geometry).
HPARAMS = {
    "sgd": dict(learning_rate=0.2),
    "signsgd": dict(learning_rate=0.01, momentum=0.5),
    "signsgd_s": dict(learning_rate=0.002),
    "signum_first_gradient": dict(learning_rate=0.01, beta=0.5),
    "adam": dict(learning_rate=0.03),
    "adamw": dict(learning_rate=0.03),
    "rmsprop": dict(learning_rate=0.01),
    "lion": dict(learning_rate=0.01),
    "adasgd": dict(learning_rate=0.05),
    "blockwise_adam": dict(learning_rate=0.05),
    "frozen_adam": dict(learning_rate=0.3, eps=0.5),  # eps: rotated g_0 has near-zero entries
    "adam_no_bias_correction": dict(learning_rate=0.03, b2=0.99),
    "ef_signsgd": dict(learning_rate=0.1),
    "mv_signsgd": dict(learning_rate=0.01),
    "sto_signsgd": dict(learning_rate=0.02, R=1.0, key=0),
    "mvsm_v1": dict(learning_rate=0.02, beta=0.5, R=1.0, key=1),
    "mvsm_v2": dict(learning_rate=0.02, beta=0.5, R=1.0, key=2),
}
# Every base name, plus one rotated variant per family (all rotated_<name> are built and
# initialised in test_every_rotated_variant_builds; the wrapper itself is tested in test_rotated.py).
ROTATED = ["rotated_sgd", "rotated_adam", "rotated_adasgd", "rotated_signsgd_s", "rotated_frozen_adam"]
ALL = ho.names() + tuple(ROTATED)


def test_every_registered_name_has_battery_settings():
    assert set(HPARAMS) == set(ho.names())
    assert set(ho.names(rotated_variants=True)) == set(ho.names()) | {"rotated_" + n for n in ho.names()}


def test_every_rotated_variant_builds():
    """Every rotated_<name> constructs (the battery runs five of them; the wrapper is shared)."""
    opts = {name: ho.get("rotated_" + name, **HPARAMS[name], rotation_key=1, depth=3) for name in ho.names()}
    assert all(isinstance(o, optax.GradientTransformation) for o in opts.values())


def _problem():
    k1, k2 = jax.random.split(jax.random.key(0))
    shapes = {"w": (6, 12), "b": (5,)}  # d = 77: rotated variants use the Kronecker segments
    h = {n: jax.random.uniform(k, s, minval=0.5, maxval=2.0) for (n, s), k in zip(shapes.items(), (k1, k2))}
    # start away from 0 in every coordinate (frozen_adam's preconditioner is 1/|g_0|)
    x0 = {
        n: jnp.sign(jax.random.normal(jax.random.fold_in(k, 1), s)) * jax.random.uniform(k, s, minval=0.5, maxval=1.5)
        for (n, s), k in zip(shapes.items(), (k2, k1))
    }
    return h, x0


def _loss(h, x):
    return sum(0.5 * jnp.sum(h[n] * x[n].astype(jnp.float32) ** 2) for n in h)


def _base(name):
    return name[len("rotated_"):] if name.startswith("rotated_") else name


def _make(name, inject=False):
    hp = dict(HPARAMS[_base(name)])
    if inject:  # the PRNG key is structural: bound in the factory, never injected
        static = {"key": hp.pop("key")} if "key" in hp else {}
        return optax.inject_hyperparams(ho.factory(name, **static))(**hp)
    return ho.get(name, **hp)


def _runner(opt, h, multi, counter=None):
    """A jitted step (params, state, key) -> (params, state, updates, loss)."""

    def grad_fn(x, t, index):
        g = jax.tree.map(lambda hh, xx: (hh * xx.astype(jnp.float32)), h, x)
        if multi:  # worker-specific deterministic "noise" (no RNG to compile): workers disagree
            g = jax.tree.map(
                lambda gg: gg + 0.1 * jnp.sin(1.3 * index + 0.7 * t + jnp.arange(gg.size).reshape(gg.shape)), g
            )
        return jax.tree.map(lambda gg, xx: gg.astype(xx.dtype), g, x)

    def one(x, state, t, index):
        if counter is not None:
            counter.append(1)
        g = grad_fn(x, t, index)
        u, state = opt.update(g, state, x)
        return optax.apply_updates(x, u), state, u

    if multi:
        step = jax.vmap(one, in_axes=(0, 0, None, 0), axis_name="workers")

        @jax.jit
        def run(x, state, t):
            return step(x, state, t, jnp.arange(N_WORKERS))

        def init(x):
            xs = jax.tree.map(lambda a: jnp.broadcast_to(a, (N_WORKERS,) + a.shape), x)
            return xs, jax.vmap(opt.init)(xs)
    else:

        @jax.jit
        def run(x, state, t):
            return one(x, state, t, 0)

        def init(x):
            return x, opt.init(x)

    return init, run


CLIP = 2.0  # below the initial gradient norm (~4): clipping is active in the first steps


def _steps(run, x, state, steps, start=0):
    for t in range(start, start + steps):
        x, state, u = run(x, state, jnp.asarray(t, jnp.float32))
    return x, state, u


def _check_dtypes_and_single_trace(name, make_opt, h, x0, multi, dtype):
    counter = []
    init, run = _runner(make_opt(), h, multi, counter)
    x, state = init(jax.tree.map(lambda a: a.astype(dtype), x0))
    x, state, u = _steps(run, x, state, 2)
    assert len(counter) == 1, f"{name}: step traced {len(counter)} times"
    for leaf_x, leaf_u in zip(jax.tree.leaves(x), jax.tree.leaves(u)):
        assert leaf_x.dtype == dtype and leaf_u.dtype == dtype, (name, dtype, leaf_x.dtype, leaf_u.dtype)
        assert bool(jnp.all(jnp.isfinite(leaf_x.astype(jnp.float32))))
    return init, run, x, state


@pytest.mark.parametrize("name", ALL)
def test_battery(name):
    """Rotated variants check convergence, float32 and the single trace (bfloat16 and
    inject_hyperparams go through the same `rotated` wrapper: tests/optim/test_rotated.py)."""
    h, x0 = _problem()
    multi = ho.is_multi_worker(name)

    def make(inject=False):
        # composed with clipping in optax.chain (active in the first steps)
        return optax.chain(optax.clip_by_global_norm(CLIP), _make(name, inject))

    # float32: one trace for all steps; then the convergence run reuses the compiled step
    init, run, x, state = _check_dtypes_and_single_trace(name, make, h, x0, multi, jnp.float32)
    x3, _, _ = _steps(run, *init(x0), 3)
    x, _, _ = _steps(run, x, state, STEPS - 2, start=2)
    if multi:  # all workers hold the same parameters
        for leaf in jax.tree.leaves(x):
            np.testing.assert_array_equal(leaf, jnp.broadcast_to(leaf[0], leaf.shape))
        x = jax.tree.map(lambda a: a[0], x)
    l0, l1 = float(_loss(h, x0)), float(_loss(h, x))
    assert np.isfinite(l1) and l1 < 0.05 * l0, (name, l0, l1)

    if name.startswith("rotated_"):
        return
    _check_dtypes_and_single_trace(name, make, h, x0, multi, jnp.bfloat16)

    if True:  # inject_hyperparams: the same first 3 steps
        init_i, run_i = _runner(make(inject=True), h, multi)
        x3_inj, _, _ = _steps(run_i, *init_i(x0), 3)
        for a, b in zip(jax.tree.leaves(x3_inj), jax.tree.leaves(x3)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_inject_hyperparams_changes_learning_rate_mid_run():
    opt = optax.inject_hyperparams(ho.factory("adasgd"))(learning_rate=0.1)
    x = {"a": jnp.ones(3)}
    state = opt.init(x)
    state.hyperparams["learning_rate"] = jnp.asarray(0.0)
    u, _ = opt.update({"a": jnp.ones(3)}, state, x)
    np.testing.assert_array_equal(u["a"], 0.0)


def test_schedules_accepted():
    sched = optax.linear_schedule(0.1, 0.0, 10)
    for name in ("signsgd_s", "ef_signsgd", "frozen_adam"):  # ef: the schedule is used inside
        opt = ho.get(name, learning_rate=sched)
        x = {"a": jnp.ones(3)}
        state = opt.init(x)
        u, state = jax.jit(opt.update)({"a": jnp.ones(3)}, state, x)
        assert bool(jnp.all(u["a"] != 0)), name


def test_typo_suggests_closest_and_lists_valid_names():
    with pytest.raises(ValueError) as err:
        ho.get("adma", learning_rate=0.1)
    msg = str(err.value)
    assert "'adam'" in msg and "Valid names" in msg and "mvsm_v2" in msg
    assert difflib.get_close_matches("adma", ho.names())[0] == "adam"
    with pytest.raises(ValueError, match="rotated_adam"):
        ho.get("rotated_adma", learning_rate=0.1)


@pytest.mark.parametrize(
    "name, hp, param",
    [
        ("adam", dict(learning_rate=-1.0), "learning_rate"),
        ("sgd", dict(learning_rate=lambda t: -0.1 + 0 * t), "learning_rate"),
        ("adam", dict(learning_rate=0.1, b1=1.5), "b1"),
        ("adamw", dict(learning_rate=0.1, b2=-0.1), "b2"),
        ("adam", dict(learning_rate=0.1, eps=-1e-8), "eps"),
        ("signum_first_gradient", dict(learning_rate=0.1, beta=2.0), "beta"),
        ("signsgd", dict(learning_rate=0.1, momentum=1.1), "momentum"),
        ("mvsm_v1", dict(learning_rate=0.1, R=0.0, key=0), "R"),
        ("sto_signsgd", dict(learning_rate=0.1, R=-1.0, key=0), "R"),
        ("blockwise_adam", dict(learning_rate=0.1, eps_root=-1.0), "eps_root"),
        ("rotated_adasgd", dict(learning_rate=0.1, b2=3.0), "b2"),
    ],
)
def test_invalid_hyperparameters_name_the_parameter(name, hp, param):
    with pytest.raises(ValueError, match=param):
        ho.get(name, **hp)


def test_unknown_and_missing_hyperparameters():
    with pytest.raises(ValueError, match="unknown hyperparameter.*foo"):
        ho.get("adam", learning_rate=0.1, foo=1)
    with pytest.raises(ValueError, match="learning_rate"):
        ho.get("adam")
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['version'\]"):
        ho.get("mvsm_v1", learning_rate=0.1, version=2, key=0)
    with pytest.raises(ValueError, match=r"mvsm_v1: missing required hyperparameter\(s\) \['key'\]"):
        ho.get("mvsm_v1", learning_rate=0.1)


def test_public_constructors_validate_too():
    with pytest.raises(ValueError, match="learning_rate"):
        ho.adasgd(-0.1)
    with pytest.raises(ValueError, match="b2"):
        ho.blockwise_adam(0.1, ho._registry._per_leaf(), b2=1.5)
    with pytest.raises(ValueError, match="R"):
        ho.stochastic_sign(jnp.ones(3), 0.0, jax.random.key(0))
    with pytest.raises(ValueError, match="version"):
        ho.mvsm(0.1, version=3, key=0)
    with pytest.raises(ValueError, match="eps"):
        ho.frozen_adam(0.1, eps=-1.0)
    with pytest.raises(ValueError, match="depth"):
        ho.rotated(optax.sgd(0.1), 0, depth=0)
    # traced values cannot be checked eagerly and are skipped
    jax.jit(lambda lr: ho.adasgd(lr).init({"a": jnp.ones(2)}))(jnp.asarray(-1.0))
