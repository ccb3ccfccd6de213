"""The train loop: exact GD trajectory, divergence recorded, one compile, batches, metrics, workers."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from heterogeneity import partition as hp
from heterogeneity.experiment._train import train
from heterogeneity.optim._majority_vote import mv_signsgd
from heterogeneity.problems import quadratic_case


@pytest.fixture(scope="module")
def hetero():
    return quadratic_case(3, key=jax.random.key(0))


def test_full_batch_gd_matches_closed_form_and_logs(hetero):
    p = hetero
    lr, T = 2.0 / 5001.0, 60
    res = train(p.loss_fn, p.init_params(), optax.sgd(lr), None, num_steps=T, log_every=7, partition=p.partition,
                eval_fn=lambda w: {"gap": p.loss_fn(w) - p.min_value}, eval_every=20)
    # exact GD iterate w_T = (I − ηH)^T w_0 in float64
    w = p.x0.copy()
    losses = []
    for _ in range(T):
        losses.append(0.5 * w @ p.hessian @ w)
        w = w - lr * (p.hessian @ w)
    assert res.status == "finished" and res.diverged_step is None and res.num_compiles == 1
    np.testing.assert_allclose(np.asarray(p.params_to_vector(res.params)), w, rtol=2e-4, atol=1e-5)
    steps = list(range(0, T, 7)) + [T - 1]
    assert res.history["step"].tolist() == steps
    np.testing.assert_allclose(res.history["loss"], np.asarray(losses)[steps], rtol=1e-4)
    np.testing.assert_allclose(res.final["final_loss"], 0.5 * w @ p.hessian @ w, rtol=1e-4)
    assert res.history["eval_step"].tolist() == [0, 20, 40, 60]
    np.testing.assert_allclose(res.final["eval_gap"], 0.5 * w @ p.hessian @ w - p.min_value, rtol=1e-4)
    # block gradient norms and Gini at step 0 against the dense gradient
    g0 = p.hessian @ p.x0
    blocks = [np.linalg.norm(g0[o:o + n]) for o, n in zip(p.block_offsets, p.block_sizes)]
    np.testing.assert_allclose(res.history["block_norms"][0], blocks, rtol=1e-4)
    assert res.block_labels == p.block_labels
    normalized = np.sort(np.asarray(blocks) / np.sqrt(p.block_sizes))
    n = len(normalized)
    gini = np.sum(np.abs(normalized[:, None] - normalized[None, :])) / (2 * n * normalized.sum())
    np.testing.assert_allclose(res.history["gini"][0], gini, rtol=1e-4)
    np.testing.assert_allclose(res.history["grad_norm"][0], np.linalg.norm(g0), rtol=1e-4)
    np.testing.assert_allclose(res.history["grad_l1"][0], np.abs(g0).sum(), rtol=1e-4)


@pytest.mark.parametrize("make_opt", [lambda: optax.adam(5e-2), lambda: optax.sgd(0.05, momentum=0.9)])
def test_minibatch_regression_loss_decreases_without_recompiles(make_opt):
    kx, kw = jax.random.split(jax.random.key(1))
    w_true = jax.random.normal(kw, (5,))

    @jax.jit
    def batches(step, key):
        x = jax.random.normal(key, (16, 5))
        return {"x": x, "y": x @ w_true}

    def loss_fn(params, batch):
        pred = batch["x"] @ params["w"] + params["b"]
        return jnp.mean((pred - batch["y"]) ** 2)

    params = {"w": jnp.zeros(5), "b": jnp.zeros(())}
    res = train(loss_fn, params, make_opt(), batches, num_steps=150, key=kx, log_every=10,
                partition=hp.by_leaf(params))
    assert res.status == "finished" and res.num_compiles == 1
    assert res.history["loss"][-1] < 1e-2 * res.history["loss"][0]
    assert res.history["block_norms"].shape == (16, 2)
    # same key, same batches, same result; the input params are not modified (nor donated)
    again = train(loss_fn, params, make_opt(), batches, num_steps=150, key=kx, log_every=10)
    np.testing.assert_array_equal(res.history["loss"], again.history["loss"])
    assert float(jnp.abs(params["w"]).sum()) == 0.0


def test_iterator_batches_and_errors():
    loss_fn = lambda w, b: jnp.mean((w - b) ** 2)  # noqa: E731
    data = iter([jnp.full((3,), float(i)) for i in range(5)])
    res = train(loss_fn, jnp.zeros(3), optax.sgd(0.5), data, num_steps=5)
    assert res.num_compiles == 1 and res.history["step"].tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="ran out at step 2"):
        train(loss_fn, jnp.zeros(3), optax.sgd(0.5), iter([jnp.ones(3)] * 2), num_steps=4)
    with pytest.raises(ValueError, match="PRNG `key` is required"):
        train(loss_fn, jnp.zeros(3), optax.sgd(0.5), lambda s, k: jnp.ones(3), num_steps=2)
    with pytest.raises(ValueError, match="num_steps"):
        train(loss_fn, jnp.zeros(3), optax.sgd(0.5), jnp.ones(3), num_steps=-1)
    with pytest.raises(ValueError, match="log_every"):
        train(loss_fn, jnp.zeros(3), optax.sgd(0.5), jnp.ones(3), num_steps=2, log_every=0)
    with pytest.raises(ValueError, match="divisible by 2"):
        train(loss_fn, jnp.zeros(3), optax.sgd(0.5), jnp.ones((3, 3)), num_steps=2, num_workers=2)


def test_divergence_is_recorded_not_raised(hetero):
    p = hetero
    res = train(p.loss_fn, p.init_params(), optax.sgd(1.0), None, num_steps=500, log_every=50,
                eval_fn=lambda w: p.loss_fn(w), divergence_factor=None)
    assert res.status == "diverged"
    # GD with η=1 multiplies the λ=5000 mode by 4999 per step: float32 overflows within a few steps
    assert 3 <= res.diverged_step <= 15 and res.final["diverged_step"] == res.diverged_step
    assert not np.isfinite(res.final["diverged_loss"])
    assert res.final["steps"] == res.diverged_step and np.isnan(res.final["final_loss"])
    assert res.history["step"].tolist() == [0] and np.isfinite(res.history["loss"]).all()
    # the returned params are the last finite iterate, not NaN
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(res.params))
    # an explicit NaN in the loss at step 3 stops at step 3
    loss_fn = lambda w, b: jnp.where(b > 2, jnp.nan, jnp.sum(w ** 2))  # noqa: E731
    res = train(loss_fn, jnp.ones(2), optax.sgd(0.1), iter(jnp.arange(10.0)), num_steps=10)
    assert res.status == "diverged" and res.diverged_step == 3
    assert res.history["step"].tolist() == [0, 1, 2]
    np.testing.assert_allclose(res.params, 0.8 ** 3 * np.ones(2), rtol=1e-6)


def test_callback_can_stop():
    seen = []

    def cb(step, params, metrics):
        seen.append((step, float(metrics["loss"])))
        return step >= 4

    res = train(lambda w, b: jnp.sum(w ** 2), jnp.ones(2), optax.sgd(0.1), None, num_steps=20, log_every=2, callback=cb)
    assert res.status == "stopped" and [s for s, _ in seen] == [0, 2, 4] and res.final["steps"] == 5


def test_simulated_workers_majority_vote():
    """W workers under vmap(axis_name): the vote of per-worker gradient signs, checked by hand."""
    targets = jnp.array([[1.0, -2.0, 3.0, 0.5], [2.0, -1.0, -3.0, 0.5], [0.5, 1.0, -1.0, 0.5]])

    def loss_fn(w, batch):  # each worker's shard holds its own target row
        return 0.5 * jnp.mean(jnp.sum((w - batch) ** 2, axis=-1))

    lr, w0 = 0.01, jnp.zeros(4)
    first = []
    res = train(loss_fn, w0, mv_signsgd(lr, axis_name="workers"), targets, num_steps=100, num_workers=3,
                log_every=25, callback=lambda step, params, m: first.append(np.asarray(params)) if step == 0 else None)
    # after step 0: worker j's gradient is w0 − t_j; the update is the majority of the signs per coordinate
    votes = np.sign(np.asarray(w0 - targets))
    np.testing.assert_allclose(first[0], w0 - lr * np.sign(votes.sum(0)))
    np.testing.assert_allclose(res.history["loss"][0], loss_fn(w0, targets), rtol=1e-6)
    assert res.num_compiles == 1 and res.history["loss"][-1] < res.history["loss"][0]


def test_weak_typed_params_and_key_state_compile_once():
    """Python floats / weak-typed arrays and a typed PRNG key in the optimizer state: still one compile."""

    def keyed_noise():  # an optimizer whose state holds a typed key
        def init(params):
            return jax.random.key(0)

        def update(updates, state, params=None):
            state, sub = jax.random.split(state)
            return jax.tree.map(lambda u: u + 0.0 * jax.random.normal(sub, jnp.shape(u)), updates), state

        return optax.chain(optax.GradientTransformation(init, update), optax.sgd(0.1))

    loss_fn = lambda w, b: jnp.sum(w["a"] ** 2) + w["b"] ** 2  # noqa: E731
    for opt in (optax.adam(0.1), keyed_noise()):
        res = train(loss_fn, {"a": jnp.ones(2), "b": 1.0}, opt, None, num_steps=4)
        assert res.num_compiles == 1 and res.params["b"].dtype == jnp.float32
    np.testing.assert_allclose(res.params["b"], 0.8 ** 4, rtol=1e-6)  # GD on b²: b ← 0.8 b


@pytest.mark.parametrize("donate", [False, True])
@pytest.mark.parametrize("log_every", [1, 3, 10])
def test_divergence_returns_state_after_last_finite_step(log_every, donate):
    """A NaN batch at step d: the returned params/opt state are those after steps 0..d-1, bit for bit
    (a clean run of num_steps=d), however many finite steps follow before the next host check;
    with donated buffers too (CPU implements donation)."""
    d, T = 5, 20

    def loss_fn(w, b):
        return jnp.sum((w - b["t"]) ** 2) * b["s"]

    def batches(n, bad=None):
        return iter([{"t": jnp.full((3,), float(i)), "s": jnp.asarray(jnp.nan if i == bad else 1.0)}
                     for i in range(n)])

    w0 = jnp.zeros(3)
    res = train(loss_fn, w0, optax.adam(0.1), batches(T, bad=d), num_steps=T, log_every=log_every, donate=donate)
    clean = train(loss_fn, w0, optax.adam(0.1), batches(d), num_steps=d, log_every=1, donate=donate)
    assert not w0.is_deleted() and float(jnp.abs(w0).sum()) == 0.0  # the caller's params survive donation
    assert res.status == "diverged" and res.diverged_step == d and res.final["steps"] == d
    assert res.num_compiles == 1
    assert res.history["step"].tolist() == [s for s in range(d) if s % log_every == 0]
    got_leaves = jax.tree.leaves((res.params, res.opt_state))
    for got, want in zip(got_leaves, jax.tree.leaves((clean.params, clean.opt_state)), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert int(res.opt_state[0].count) == d  # Adam's step counter: no step after d-1 was applied


@pytest.mark.parametrize("log_every", [1, 4])
def test_finite_blow_up_beyond_divergence_factor_is_diverged(log_every):
    """A loss growing 10× per step stays finite (10³² at step 32) but is a blow-up: with the default
    factor 10³ the run diverges at the first step whose loss exceeds 10³·L_0 (step 4), and returns the
    state after step 3 bit for bit; factor=None records the same run as finished."""
    def loss_fn(w, scale):
        return jnp.sum(w ** 2) * scale

    def ramp(n):
        return iter(jnp.asarray([10.0 ** i for i in range(n)], jnp.float32))

    w0, T = jnp.full((3,), 2.0), 33
    res = train(loss_fn, w0, optax.adam(1e-3), ramp(T), num_steps=T, log_every=log_every)
    assert res.status == "diverged" and res.diverged_step == 4 and res.final["diverged_step"] == 4
    l0 = float(res.history["loss"][0])
    assert res.final["diverged_loss"] > 1e3 * l0 and np.isfinite(res.final["diverged_loss"])
    clean = train(loss_fn, w0, optax.adam(1e-3), ramp(4), num_steps=4)
    for got, want in zip(jax.tree.leaves((res.params, res.opt_state)), jax.tree.leaves((clean.params, clean.opt_state)),
                         strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    late = train(loss_fn, w0, optax.adam(1e-3), ramp(T), num_steps=T, log_every=log_every, divergence_factor=1e6)
    assert late.status == "diverged" and late.diverged_step == 7
    off = train(loss_fn, w0, optax.adam(1e-3), ramp(T), num_steps=T, log_every=log_every, divergence_factor=None)
    assert off.status == "finished" and off.history["loss"][-1] > 1e30


def test_divergence_threshold_edge_cases(hetero):
    p = hetero
    # GD with η=1 on the λ=5000 mode: loss ×2.5e7 at step 1, far beyond 10³·L_0 while still finite
    res = train(p.loss_fn, p.init_params(), optax.sgd(1.0), None, num_steps=50, log_every=10)
    assert res.status == "diverged" and res.diverged_step == 1 and np.isfinite(res.final["diverged_loss"])
    # L_0 = 0 gives no scale: the test is skipped; a negative L_0 is compared by magnitude
    grow = iter(jnp.arange(6.0))
    res = train(lambda w, b: b * jnp.sum(w ** 2), jnp.ones(2), optax.sgd(0.0), grow, num_steps=6)
    assert res.status == "finished" and res.history["loss"].tolist() == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    res = train(lambda w, b: -1.0 + b * jnp.sum(w ** 2), jnp.ones(2), optax.sgd(0.0),
                iter(jnp.asarray([0.0, 1.0, 5e3])), num_steps=3)
    assert res.status == "diverged" and res.diverged_step == 2
    for bad in (0.5, float("nan"), float("inf"), True, "1e3"):
        with pytest.raises(ValueError, match=r"divergence_factor must be None or a finite number >= 1.*got"):
            train(p.loss_fn, p.init_params(), optax.sgd(0.1), None, num_steps=1, divergence_factor=bad)
