"""One naming scheme: registry names are constructor names; old names warn and still work; nothing
shadows Optax; randomness needs an explicit key."""
import inspect
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import heterogeneity.optim as ho
from heterogeneity import partition as hp

X = {"a": jnp.array([0.5, -1.0, 2.0]), "b": jnp.array([[1.5, -0.5]])}


def _traj(opt, steps=3):
    state = opt.init(X)
    out = []
    for i in range(steps):
        g = jax.tree.map(lambda p: jnp.sin(p * (i + 1)) + 0.2, X)
        u, state = opt.update(g, state, X)
        out.append(u)
    return out


def _same(a, b):
    for ua, ub in zip(a, b):
        jax.tree.map(np.testing.assert_array_equal, ua, ub)


def test_registry_names_are_public_constructor_names():
    for name in ho.names():
        fn = getattr(ho, name)
        assert fn.__name__ == name and name in ho.__all__
        assert not hasattr(fn, "__deprecated_alias_of__")


def test_blockwise_names_and_no_block_prefix_left():
    public = [n for n in ho.__all__ if "block" in n.lower()]
    assert public and all("blockwise" in n.lower() for n in public), public


# old function name, new function, arguments
ALIASES = [
    ("sign_sgd", ho.signsgd, dict(learning_rate=0.1, momentum=0.9)),
    ("sign_sgd_l1", ho.signsgd_s, dict(learning_rate=0.1)),
    ("scale_by_sign_l1", ho.scale_by_signsgd_s, dict()),
    ("signum", ho.signum_first_gradient, dict(learning_rate=0.1, beta=0.5)),
    ("scale_by_signum", ho.scale_by_signum_first_gradient, dict(beta=0.5)),
    ("block_adam", ho.blockwise_adam, dict(learning_rate=0.1, partition=hp.by_leaf())),
    ("scale_by_block_adam", ho.scale_by_blockwise_adam, dict(partition=hp.by_leaf())),
    ("ef_sign_sgd", ho.ef_signsgd, dict(learning_rate=0.1)),
    ("scale_by_ef_sign", ho.scale_by_ef_signsgd, dict(learning_rate=0.1)),
    ("mv_sign_sgd", ho.mv_signsgd, dict(learning_rate=0.1)),
    ("sto_sign_sgd", ho.sto_signsgd, dict(learning_rate=0.1, key=3)),
]


@pytest.mark.parametrize("old, new, kwargs", ALIASES, ids=[a[0] for a in ALIASES])
def test_old_function_names_warn_and_behave_like_the_new(old, new, kwargs):
    alias = getattr(ho, old)
    with pytest.warns(DeprecationWarning, match=rf"heterogeneity\.optim\.{old} is deprecated.*{new.__name__}"):
        opt = alias(**kwargs)
    _same(_traj(opt), _traj(new(**kwargs)))
    assert ho.DEPRECATED_FUNCTIONS[old] == new.__name__


def test_old_state_classes_are_the_new_ones():
    assert ho.ScaleBySignumState is ho.ScaleBySignumFirstGradientState
    assert ho.ScaleByBlockAdamState is ho.ScaleByBlockwiseAdamState
    assert ho.ScaleByEFSignState is ho.ScaleByEFSignSGDState


OLD_KEYS = [("signsgd_l1", dict(learning_rate=0.1)), ("signum", dict(learning_rate=0.1, beta=0.5)),
            ("block_adam", dict(learning_rate=0.1)), ("adam_nbc", dict(learning_rate=0.1, b2=0.99))]


@pytest.mark.parametrize("old, hparams", OLD_KEYS, ids=[k for k, _ in OLD_KEYS])
@pytest.mark.parametrize("prefix", ["", "rotated_"])
def test_old_registry_names_warn_and_return_the_new_entry(old, hparams, prefix):
    new = ho.DEPRECATED[old]
    with pytest.warns(DeprecationWarning, match=f"'{prefix}{old}' is deprecated.*'{prefix}{new}'"):
        opt = ho.get(prefix + old, **hparams)
    _same(_traj(opt, steps=2), _traj(ho.get(prefix + new, **hparams), steps=2))
    with pytest.warns(DeprecationWarning):
        assert not ho.is_multi_worker(prefix + old)
    with pytest.warns(DeprecationWarning):
        made = optax.inject_hyperparams(ho.factory(prefix + old))(**hparams)
    _same(_traj(made, steps=2), _traj(optax.inject_hyperparams(ho.factory(prefix + new))(**hparams), steps=2))
    assert old not in ho.names() and new in ho.names()


def test_current_names_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("signsgd_s", "blockwise_adam", "rotated_adam_no_bias_correction"):
            ho.get(name, learning_rate=0.1)


# --- no shadowing of Optax: same name ⇒ same updates -------------------------------------------

SHARED = [
    ("sgd", dict(learning_rate=0.1, momentum=0.9, nesterov=True)),
    ("adam", dict(learning_rate=0.1, b1=0.8, b2=0.95, eps=1e-6)),
    ("adamw", dict(learning_rate=0.1, weight_decay=0.3)),
    ("rmsprop", dict(learning_rate=0.1, decay=0.8, momentum=0.5)),
    ("lion", dict(learning_rate=0.1, b1=0.8, b2=0.9, weight_decay=0.1)),
]


@pytest.mark.parametrize("name, kwargs", SHARED, ids=[s[0] for s in SHARED])
def test_names_shared_with_optax_give_optax_updates(name, kwargs):
    _same(_traj(getattr(ho, name)(**kwargs), steps=5), _traj(getattr(optax, name)(**kwargs), steps=5))
    assert list(inspect.signature(getattr(ho, name)).parameters) == list(
        inspect.signature(getattr(optax, name)).parameters)


def test_no_public_name_shadows_optax_with_a_different_algorithm():
    shared = {n for n in ho.__all__ if hasattr(optax, n)} - set(ho.DEPRECATED_FUNCTIONS)
    assert shared == {"sgd", "adam", "adamw", "rmsprop", "lion", "scale_by_sign"}
    assert ho.scale_by_sign is optax.scale_by_sign


def test_signsgd_without_momentum_is_optax_sign_sgd():
    _same(_traj(ho.signsgd(0.1), steps=4), _traj(optax.sign_sgd(0.1), steps=4))


def test_signum_first_gradient_zeros_is_optax_signum_and_default_is_not():
    _same(_traj(ho.signum_first_gradient(0.1, beta=0.7, first_step="zeros"), steps=4),
          _traj(optax.signum(0.1, beta=0.7), steps=4))
    ours, theirs = _traj(ho.signum_first_gradient(0.1, beta=0.7), 4), _traj(optax.signum(0.1, beta=0.7), 4)
    jax.tree.map(np.testing.assert_array_equal, ours[0], theirs[0])  # step 1: sign(g_1) either way
    assert any(not np.array_equal(a, b) for u, v in zip(ours, theirs)
               for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(v)))


@pytest.mark.parametrize("kwargs, bad", [
    (dict(order="sign_first"), "order='sign_first'"),
    (dict(nesterov=True), "nesterov=True"),
    (dict(nesterov=False), "nesterov=False"),
    (dict(accumulator_dtype=jnp.bfloat16), "accumulator_dtype="),
    (dict(order="momentum_first", nesterov=True), "order='momentum_first', nesterov=True"),
])
def test_signsgd_momentum_options_without_momentum_are_errors(kwargs, bad):
    with pytest.raises(ValueError, match=rf"^signsgd: {bad}.* only applies with momentum"):
        ho.signsgd(0.1, **kwargs)
    ho.signsgd(0.1, momentum=0.9, **kwargs)  # fine with momentum


# --- randomness needs a key -------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda: ho.sto_signsgd(0.1),
    lambda: ho.mvsm(0.1),
    lambda: ho.mvsm_v1(0.1),
    lambda: ho.mvsm_v2(0.1),
    lambda: ho.scale_by_mvsm(),
], ids=["sto_signsgd", "mvsm", "mvsm_v1", "mvsm_v2", "scale_by_mvsm"])
def test_stochastic_constructors_require_a_key(make):
    with pytest.raises(TypeError, match="key"):
        make()


@pytest.mark.parametrize("make", [
    lambda: ho.mv_signsgd(0.1, tie_break="random"),
    lambda: ho.scale_by_majority_vote(worker="stochastic"),
    lambda: ho.scale_by_majority_vote(server="stochastic"),
])
def test_majority_vote_needs_a_key_exactly_when_it_draws(make):
    with pytest.raises(ValueError, match="key is required"):
        make()


def test_deterministic_majority_vote_needs_no_key_and_keys_matter():
    ho.mv_signsgd(0.1)  # sign workers, sign server, ties to zero: nothing random
    g = jnp.linspace(-0.9, 0.9, 64)
    a, b, c = (ho.sto_signsgd(1.0, key=k) for k in (0, 0, jax.random.key(1)))
    ua, ub, uc = (o.update(g, o.init(g))[0] for o in (a, b, c))
    np.testing.assert_array_equal(ua, ub)
    assert not np.array_equal(ua, uc)


@pytest.mark.parametrize("name", ["sto_signsgd", "mvsm_v1", "mvsm_v2", "rotated_mvsm_v2"])
def test_registry_requires_key_for_random_names_and_binds_it_statically(name):
    with pytest.raises(ValueError, match=r"missing required hyperparameter\(s\) \['key'\]"):
        ho.get(name, learning_rate=0.1)
    made = ho.factory(name, key=5)
    assert "key" not in inspect.signature(made).parameters  # structural: never injected
    opt = optax.inject_hyperparams(made)(learning_rate=0.1)
    assert set(opt.init(jnp.zeros(3)).hyperparams) <= {"learning_rate", "beta", "R"}
