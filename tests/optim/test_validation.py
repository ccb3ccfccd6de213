"""Construction-time validation of every optimizer's hyperparameters (heterogeneity.optim._validate).

Wrong types raise ``TypeError`` (a `HyperparameterTypeError`, also a ``ValueError``), values out
of range ``ValueError``; both name the optimizer, the argument, the value and what is allowed.
β = 1 is rejected where it gives NaN (bias correction) or enormous steps (a second moment that
stays 0), accepted where the paper uses it (frozen β2, [Zhang24, eq. (2)]). Multi-worker optimizers
stepped outside a worker axis say how to run them.
"""
import inspect
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import heterogeneity.optim as ho
from heterogeneity import partition as hp
from heterogeneity.optim._validate import HyperparameterTypeError, UnboundWorkerAxisError

X = {"a": jnp.array([1.0, -2.0, 0.5])}


def _step(opt, g=X, steps=1):
    state = opt.init(X)
    for _ in range(steps):
        u, state = opt.update(g, state, X)
    return u


# --- wrong types ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ho.adam("0.1"),
         "adam: learning_rate must be a real number or an optax schedule, got '0.1' (str)"),
        (lambda: ho.adam([0.1]),
         "adam: learning_rate must be a real number or an optax schedule, got [0.1] (list)"),
        (lambda: ho.adam(0.1, b1=None), "adam: b1 must be a real number, got None (NoneType)"),
        (lambda: ho.adam(0.1, eps="1e-8"), "adam: eps must be a real number, got '1e-8' (str)"),
        (lambda: ho.get("rotated_sto_signsgd", learning_rate=0.1, R="1", key=0),
         "sto_signsgd: R must be a real number, got '1' (str)"),
        (lambda: ho.get("rotated_mvsm_v1", learning_rate=0.1, R="1", key=0),
         "mvsm_v1: R must be a real number, got '1' (str)"),
        (lambda: ho.adam(True),
         "adam: learning_rate must be a real number or an optax schedule, got True (bool)"),
        (lambda: ho.sgd(1 + 1j),
         "sgd: learning_rate must be a real number or an optax schedule, got (1+1j) (complex)"),
        (lambda: ho.adasgd(0.1, bias_correction="no"), "adasgd: bias_correction must be True or False, got 'no' (str)"),
        (lambda: ho.get("blockwise_adam", learning_rate=0.1, bias_correction=0),
         "blockwise_adam: bias_correction must be True or False, got 0 (int)"),
        (lambda: ho.rmsprop(0.1, centered="yes"), "rmsprop: centered must be True or False, got 'yes' (str)"),
        (lambda: ho.signsgd(0.1, momentum=0.9, nesterov=1), "signsgd: nesterov must be True or False, got 1 (int)"),
        (lambda: ho.adam(jnp.array([0.1, 0.2])),
         "adam: learning_rate must be a real number or an optax schedule, got Array([0.1, 0.2], dtype=float32) "
         "(ArrayImpl); arrays must be scalars (shape ()), this one has shape (2,)"),
        (lambda: ho.adam(0.1, b1=lambda t: 0.9), "adam: b1 must be a real number, got <function"),
        (lambda: ho.adam(lambda t: "0.1"),
         "adam: learning_rate is a schedule whose value at step 0 is not a real number: '0.1' (str)"),
        (lambda: ho.adam(0.1, mu_dtype="float33"), "adam: mu_dtype must be None or a dtype, got 'float33' (str)"),
    ],
)
def test_wrong_types_fail_at_construction_naming_the_argument(make, message):
    with pytest.raises(TypeError, match="^" + re.escape(message)) as err:
        make()
    assert isinstance(err.value, HyperparameterTypeError) and isinstance(err.value, ValueError)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ho.mvsm(0.1, version=True, key=0), "mvsm: version must be an integer, got True (bool)"),
        (lambda: ho.mvsm(0.1, version=1.0, key=0), "mvsm: version must be an integer, got 1.0 (float)"),
        (lambda: ho.get("rotated_sgd", learning_rate=0.1, depth=2.0), "rotated: depth must be an integer, got 2.0 (float)"),
        (lambda: ho.rotated(optax.sgd(0.1), 0, depth="2"), "rotated: depth must be an integer, got '2' (str)"),
        (lambda: ho.get("rotated_sgd", learning_rate=0.1, rotation_key="a"),
         "rotated_sgd: rotation_key must be an int seed or a PRNG key, got 'a' (str)"),
        (lambda: ho.mv_signsgd(0.1, key=True), "mv_signsgd: key must be an int seed or a PRNG key, got True (bool)"),
        (lambda: ho.mv_signsgd(0.1, axis_name=["workers"]),
         "mv_signsgd: axis_name must be None (a single worker), a str or a tuple of str, got ['workers'] (list)"),
        (lambda: ho.rotated("adam", 0), "rotated: inner must be an optax.GradientTransformation, got str"),
    ],
)
def test_integers_keys_and_structural_options_must_have_their_type(make, message):
    with pytest.raises(TypeError, match="^" + re.escape(message)):
        make()


def test_complex_and_boolean_arrays_are_not_real():
    with pytest.raises(TypeError, match=r"^adam: b1 must be a real number, got .*\(complex64\)$"):
        ho.adam(0.1, b1=np.complex64(0.9))
    with pytest.raises(TypeError, match=r"^sgd: learning_rate must be a real number or an optax schedule, got .*\(bool_?\)$"):
        ho.sgd(np.bool_(True))


def test_choices_name_the_allowed_strings():
    with pytest.raises(ValueError, match=r"^signsgd: order must be 'momentum_first' or 'sign_first', got 'x' \(str\)$"):
        ho.signsgd(0.1, order="x")
    with pytest.raises(ValueError, match=r"^adam_no_bias_correction: initial_moments must be 'gradient' or 'zeros', got 0"):
        ho.adam_no_bias_correction(0.1, initial_moments=0)
    with pytest.raises(ValueError, match=r"^mvsm: communication must be 'int8' or '1bit', got '2bit' \(str\)$"):
        ho.mvsm(0.1, communication="2bit", key=0)


@pytest.mark.parametrize(
    "lr",
    [0.1, 1, np.float32(0.1), np.float64(0.1), np.int32(1), np.array(0.1), jnp.asarray(0.1), jnp.asarray(1, jnp.int32),
     jnp.asarray(0.1, jnp.bfloat16), optax.linear_schedule(0.1, 0.0, 10), lambda t: 0.1 * 0.5**t],
    ids=["float", "int", "np.float32", "np.float64", "np.int32", "np.0d", "jnp", "jnp.int32", "jnp.bf16", "optax_schedule",
         "lambda"],
)
def test_learning_rates_accept_numbers_scalars_and_schedules(lr):
    for make in (ho.sgd, ho.adam, ho.adasgd, ho.signsgd_s, ho.frozen_adam):
        u = _step(make(lr))
        assert bool(jnp.all(jnp.isfinite(u["a"])))


def test_numpy_bools_are_bools():
    _step(ho.adasgd(0.1, bias_correction=np.bool_(False)))


# --- beta = 1 ---------------------------------------------------------------------------------

def test_optax_itself_gives_nan_with_beta_one():
    """Why b1 = 1 and b2 = 1 are rejected for bias-corrected Adam: Optax divides by 1 - β^t = 0."""
    for b1, b2 in ((1.0, 0.999), (0.9, 1.0)):
        assert not bool(jnp.all(jnp.isfinite(_step(optax.adam(0.1, b1=b1, b2=b2))["a"])))


BIAS_B1 = "b1 must be in [0, 1) (bias correction divides by 1 - b1**t), got 1.0"


@pytest.mark.parametrize(
    "make, opt",
    [
        (lambda: ho.adam(0.1, b1=1.0), "adam"),
        (lambda: ho.get("adam", learning_rate=0.1, b1=1), "adam"),
        (lambda: ho.adamw(0.1, b1=1.0), "adamw"),
        (lambda: ho.adasgd(0.1, b1=1.0), "adasgd"),
        (lambda: ho.scale_by_adasgd(b1=1.0), "scale_by_adasgd"),
        (lambda: ho.blockwise_adam(0.1, hp.by_coordinate(), b1=1.0), "blockwise_adam"),
        (lambda: ho.get("blockwise_adam", learning_rate=0.1, b1=1.0), "blockwise_adam"),
    ],
)
def test_b1_one_with_bias_correction_is_rejected(make, opt):
    with pytest.raises(ValueError, match="^" + re.escape(f"{opt}: {BIAS_B1}") + "$"):
        make()


@pytest.mark.parametrize(
    "make, opt",
    [
        (lambda: ho.adam(0.1, b2=1.0), "adam"),
        (lambda: ho.get("adamw", learning_rate=0.1, b2=1.0), "adamw"),
        (lambda: ho.adasgd(0.1, b2=1.0), "adasgd"),
        (lambda: ho.blockwise_adam(0.1, hp.by_coordinate(), b2=1.0), "blockwise_adam"),
    ],
)
def test_b2_one_with_bias_correction_is_rejected(make, opt):
    msg = (f"{opt}: b2 must be < 1, got 1.0: with bias correction, b2 = 1 divides by 1 - b2**t = 0 (NaN steps); "
           f"for a frozen second moment (b2 = 1) use frozen_adam or adam_no_bias_correction")
    with pytest.raises(ValueError, match="^" + re.escape(msg) + "$"):
        make()


STAYS_ZERO = "keeps the zero-initialised second moment at 0, so every step is divided by eps alone (enormous)"


@pytest.mark.parametrize(
    "make, prefix",
    [
        (lambda: ho.adasgd(0.1, b2=1.0, bias_correction=False), "adasgd: b2 must be < 1, got 1.0: b2 = 1 "),
        (lambda: ho.get("blockwise_adam", learning_rate=0.1, b2=1.0, bias_correction=False),
         "blockwise_adam: b2 must be < 1, got 1.0: b2 = 1 "),
        (lambda: ho.rmsprop(0.1, decay=1.0),
         "rmsprop: decay must be < 1 with initial_scale=0 or bias_correction=True, got 1.0: decay = 1 "),
        (lambda: ho.get("rmsprop", learning_rate=0.1, decay=1),
         "rmsprop: decay must be < 1 with initial_scale=0 or bias_correction=True, got 1.0: decay = 1 "),
        (lambda: ho.adam_no_bias_correction(0.1, b2=1.0, initial_moments="zeros"),
         "adam_no_bias_correction: b2 must be < 1 with initial_moments='zeros', got 1.0: b2 = 1 "),
    ],
)
def test_second_moment_that_stays_zero_is_rejected_by_one_rule(make, prefix):
    with pytest.raises(ValueError, match="^" + re.escape(prefix + STAYS_ZERO)):
        make()


def test_the_rejected_second_moments_really_give_enormous_steps():
    """What the rule prevents: with v stuck at 0 every step is ~ lr * m / eps (unvalidated builders)."""
    raw = ho._adaptive._scale_by_blockwise_adam(None, 0.9, 1.0, 1e-8, 0.0, False, None)  # adasgd, b2 = 1, no bias corr.
    assert float(jnp.max(jnp.abs(_step(optax.chain(raw, optax.scale(-0.1)))["a"]))) > 1e5
    assert float(jnp.max(jnp.abs(_step(optax.rmsprop(0.1, decay=1.0))["a"]))) > 1e2  # optax itself
    assert float(jnp.max(jnp.abs(_step(ho.adasgd(0.1, b2=0.999, bias_correction=False))["a"]))) < 10


# --- negative, NaN, infinite ------------------------------------------------------------------

@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ho.adam(-0.1), "adam: learning_rate must be a finite number >= 0, got -0.1"),
        (lambda: ho.sgd(float("nan")), "sgd: learning_rate must be a finite number >= 0, got nan"),
        (lambda: ho.signum_first_gradient(math.inf), "signum_first_gradient: learning_rate must be a finite number >= 0, got inf"),
        (lambda: ho.sgd(lambda t: -0.1 + 0 * t),
         "sgd: learning_rate must be a finite number >= 0, got -0.1 (value of the schedule at step 0)"),
        (lambda: ho.adam(0.1, eps=-1e-8), "adam: eps must be a finite number >= 0, got -1e-08"),
        (lambda: ho.blockwise_adam(0.1, hp.by_coordinate(), eps_root=float("nan")),
         "blockwise_adam: eps_root must be a finite number >= 0, got nan"),
        (lambda: ho.rmsprop(0.1, decay=-0.5), "rmsprop: decay must be in [0, 1], got -0.5"),
        (lambda: ho.rmsprop(0.1, initial_scale=-1.0), "rmsprop: initial_scale must be a finite number >= 0, got -1.0"),
        (lambda: ho.adam(0.1, b2=float("nan")), "adam: b2 must be in [0, 1], got nan"),
        (lambda: ho.adamw(0.1, weight_decay=-1e-4), "adamw: weight_decay must be a finite number >= 0, got -0.0001"),
        (lambda: ho.lion(0.1, b1=1.5), "lion: b1 must be in [0, 1], got 1.5"),
        (lambda: ho.sgd(0.1, momentum=float("nan")), "sgd: momentum must be in [0, 1], got nan"),
        (lambda: ho.sto_signsgd(0.1, R=float("nan"), key=0), "sto_signsgd: R must be a finite number > 0, got nan"),
        (lambda: ho.mvsm(0.1, R=0.0, key=0), "mvsm: R must be a finite number > 0, got 0.0"),
        (lambda: ho.ef_signsgd(-1.0), "ef_signsgd: learning_rate must be a finite number >= 0, got -1.0"),
        (lambda: ho.frozen_adam(0.1, eps=-1.0), "frozen_adam: eps must be a finite number >= 0, got -1.0"),
    ],
)
def test_out_of_range_values_name_the_argument(make, message):
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        make()


# --- valid edge values ------------------------------------------------------------------------

@pytest.mark.parametrize(
    "make",
    [
        lambda: ho.adam(0.1, b1=0.0, eps=0.0, eps_root=1e-8),
        lambda: ho.adasgd(0.1, b1=0),
        lambda: ho.blockwise_adam(0.1, hp.by_coordinate(), b1=0.0, b2=0.0),
        lambda: ho.adasgd(0.1, b1=1.0, b2=0.99, bias_correction=False),  # m stays 0: zero steps, no NaN
        lambda: ho.adam_no_bias_correction(0.1, b2=1.0),  # frozen β2 with v_0 = g_0² ([Zhang24, eq. (2)])
        lambda: ho.get("adam_no_bias_correction", learning_rate=0.1, b1=0.0, b2=1.0),
        lambda: ho.frozen_adam(0.1),
        lambda: ho.rmsprop(0.1, decay=1.0, initial_scale=1.0),  # a fixed preconditioner
        lambda: ho.sgd(0.1, momentum=0.0),
        lambda: ho.signum_first_gradient(0.1, beta=1.0),
        lambda: ho.mvsm(0.1, beta=1.0, R=1e-3, key=0),
        lambda: ho.lion(0.1, b1=1.0, b2=1.0),
    ],
)
def test_valid_edge_values_give_finite_steps(make):
    u = _step(make(), steps=3)
    assert bool(jnp.all(jnp.isfinite(u["a"])))


def test_zero_learning_rate_and_zero_schedule_give_zero_steps():
    zero = optax.constant_schedule(0.0)
    for name in ("sgd", "adam", "adasgd", "frozen_adam", "ef_signsgd", "signsgd_s", "mvsm_v2"):
        hparams = {"axis_name": None, "key": 0} if ho.is_multi_worker(name) else {}
        for lr in (0.0, zero):
            np.testing.assert_array_equal(_step(ho.get(name, learning_rate=lr, **hparams), steps=2)["a"], 0.0)


# --- multi-worker optimizers outside a worker axis ---------------------------------------------

MULTI = {
    "mv_signsgd": lambda: ho.mv_signsgd(0.1, axis_name="workers"),
    "sto_signsgd": lambda: ho.sto_signsgd(0.1, axis_name="workers", key=0),
    "mvsm_v1": lambda: ho.mvsm_v1(0.1, axis_name="workers", key=0),
    "mvsm_v2": lambda: ho.get("mvsm_v2", learning_rate=0.1, key=0),  # registry default axis_name="workers"
}


@pytest.mark.parametrize("name", list(MULTI))
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_multi_worker_outside_vmap_says_how_to_run(name, jit):
    opt = MULTI[name]()
    update = jax.jit(opt.update) if jit else opt.update
    with pytest.raises(UnboundWorkerAxisError) as err:
        update(X, opt.init(X), X)
    assert isinstance(err.value, ValueError) and isinstance(err.value, NameError)  # JAX raised NameError
    msg = str(err.value)
    assert msg.startswith(f"{name}: the worker axis axis_name='workers' is not bound")
    for hint in ("jax.vmap(step, axis_name='workers')", "jax.shard_map", "num_workers=W", "pass axis_name=None"):
        assert hint in msg


def test_multi_worker_under_another_axis_name_and_under_the_right_one():
    opt = ho.mv_signsgd(0.1, axis_name="workers")
    xs = jax.tree.map(lambda a: jnp.stack([a, -a]), X)
    with pytest.raises(UnboundWorkerAxisError, match="axis_name='workers' is not bound"):
        jax.vmap(opt.update, axis_name="devices")(xs, jax.vmap(opt.init)(xs), xs)
    u, _ = jax.vmap(opt.update, axis_name="workers")(xs, jax.vmap(opt.init)(xs), xs)
    assert u["a"].shape == (2, 3)
    u1 = _step(ho.mv_signsgd(0.1, axis_name=None))  # single worker: no collectives
    np.testing.assert_array_equal(u1["a"], -0.1 * jnp.sign(X["a"]))


# --- inject_hyperparams, tracers, one set of rules ----------------------------------------------

@pytest.mark.parametrize("make", [ho.sgd, ho.adam, ho.adamw, ho.rmsprop, ho.lion, ho.adasgd, ho.signum_first_gradient])
def test_inject_hyperparams_and_traced_values_pass(make):
    opt = optax.inject_hyperparams(make)(learning_rate=optax.linear_schedule(0.1, 0.0, 10))
    state = opt.init(X)
    u, _ = jax.jit(opt.update)(X, state, X)
    assert bool(jnp.all(jnp.isfinite(u["a"])))
    # traced hyperparameters cannot be checked eagerly and are skipped (even bad ones)
    jax.jit(lambda lr, b: ho.adasgd(lr, b1=b).init(X))(jnp.asarray(-1.0), jnp.asarray(1.0))


def test_traced_values_of_a_non_real_dtype_are_rejected():
    with pytest.raises(TypeError, match=r"^adam: b1 must be a real number, got .*Tracer"):
        jax.jit(lambda b: ho.adam(0.1, b1=b).init(X))(jnp.asarray(True))


def test_inject_hyperparams_in_bfloat16_rounds_b2_to_one():
    """0.999 rounds to 1.0 in bfloat16: Optax's own adam then gives NaN; ours says what to do."""
    x = jax.tree.map(lambda a: a.astype(jnp.bfloat16), X)
    o = optax.inject_hyperparams(optax.adam)(learning_rate=0.1)
    assert not bool(jnp.all(jnp.isfinite(o.update(x, o.init(x), x)[0]["a"])))
    with pytest.raises(ValueError, match=r"^adam: b2 must be < 1, got 1\.0 \(stored as bfloat16; under "
                                         r"optax\.inject_hyperparams pass hyperparam_dtype=jnp\.float32\)"):
        optax.inject_hyperparams(ho.adam)(learning_rate=0.1).init(x)
    o = optax.inject_hyperparams(ho.adam, hyperparam_dtype=jnp.float32)(learning_rate=0.1)
    assert bool(jnp.all(jnp.isfinite(o.update(x, o.init(x), x)[0]["a"].astype(jnp.float32))))


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop", "lion"])
def test_optax_wrappers_keep_optax_signature_and_numerics(name):
    ours, theirs = getattr(ho, name), getattr(optax, name)
    sig = lambda f: [(p.name, p.kind, p.default) for p in inspect.signature(f).parameters.values()]  # noqa: E731
    assert sig(ours) == sig(theirs)
    a, b = _step(ours(0.05), steps=3), _step(theirs(0.05), steps=3)
    np.testing.assert_array_equal(a["a"], b["a"])


@pytest.mark.parametrize(
    "name, direct, hparams",
    [
        ("adam", lambda: ho.adam("0.1"), dict(learning_rate="0.1")),
        ("adam_no_bias_correction", lambda: ho.adam_no_bias_correction(0.1, b2=1.0, initial_moments="zeros"),
         dict(learning_rate=0.1, b2=1.0, initial_moments="zeros")),
        ("rmsprop", lambda: ho.rmsprop(0.1, decay=1.0), dict(learning_rate=0.1, decay=1.0)),
        ("rotated_adasgd", lambda: ho.adasgd(0.1, b2=1.0, bias_correction=False),
         dict(learning_rate=0.1, b2=1.0, bias_correction=False)),
        ("mvsm_v1", lambda: ho.mvsm_v1(0.1, beta=1.5, key=0), dict(learning_rate=0.1, beta=1.5, key=0)),
    ],
)
def test_registry_routes_through_the_constructors_rules(name, direct, hparams):
    with pytest.raises(ValueError) as a:
        direct()
    with pytest.raises(ValueError) as b:
        ho.get(name, **hparams)
    assert str(a.value) == str(b.value) and type(a.value) is type(b.value)
    assert not hasattr(ho._registry, "_CHECKS")
