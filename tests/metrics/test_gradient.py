"""Tests for heterogeneity.metrics._gradient against direct NumPy computations."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from heterogeneity import curvature as hc
from heterogeneity import metrics as hm
from heterogeneity import partition as hp
from heterogeneity import tree as ht


def gini_pairwise(x):
    """[Tomihari25, App. D.5]: Σ_i Σ_j |x_i − x_j| / (2 n² x̄)."""
    x = np.asarray(x, np.float64)
    n = len(x)
    return np.abs(x[:, None] - x[None, :]).sum() / (2 * n * n * x.mean())


# ---------------------------------------------------------------------------- Gini
def test_gini_matches_pairwise_formula():
    x = np.random.default_rng(0).gamma(0.5, size=(5, 7))
    x[1] = x[0][::-1]  # order invariant
    x[2] = 12.5 * x[0]  # scale invariant
    got = np.asarray(hm.gini(jnp.asarray(x)))  # rows batched
    np.testing.assert_allclose(got, [gini_pairwise(r) for r in x], rtol=1e-5)
    np.testing.assert_allclose(got[:3], got[0], rtol=1e-6)


def test_gini_edge_cases():
    n = 7
    rows = np.zeros((5, n))
    rows[0] = 2.3  # all equal -> 0
    rows[1, 3] = 3.0  # one nonzero -> (n - 1)/n
    rows[3, [1, 2]] = 1.0  # zeros are fine
    rows[4] = np.arange(n)  # row 2 stays all zero -> 0 (no inequality)
    got = np.asarray(hm.gini(jnp.asarray(rows)))
    np.testing.assert_allclose(got, [0.0, (n - 1) / n, 0.0, gini_pairwise(rows[3]), gini_pairwise(rows[4])], atol=1e-6)
    assert float(hm.gini(jnp.asarray([5.0]))) == 0.0  # n = 1: (n - 1)/n = 0
    assert float(hm.gini(jnp.asarray([0, 0, 3]))) == pytest.approx(2 / 3, rel=1e-6)  # ints are accepted


def test_gini_rejects_negative_and_empty():
    with pytest.raises(ValueError, match="nonnegative"):
        hm.gini(jnp.asarray([1.0, -0.5, 2.0]))
    with pytest.raises(ValueError, match="non-empty"):
        hm.gini(jnp.zeros((0,)))
    # under jit, where raising is impossible, a negative input gives NaN
    assert np.isnan(jax.jit(hm.gini)(jnp.asarray([1.0, -0.5, 2.0])))
    np.testing.assert_allclose(jax.jit(hm.gini)(jnp.asarray([1.0, 2.0])), gini_pairwise([1, 2]), rtol=1e-6)


def test_gini_batched_rows():
    x = np.random.default_rng(1).random((3, 6))
    np.testing.assert_allclose(hm.gini(jnp.asarray(x)), [gini_pairwise(r) for r in x], rtol=1e-5)


# ---------------------------------------------------------------------------- norms, shares
def _grads():
    rng = np.random.default_rng(2)
    return {
        "embed": {"embedding": jnp.asarray(rng.normal(size=(5, 4)), jnp.float32)},
        "layers": {
            "0": {"attn": {"query": {"kernel": jnp.asarray(rng.normal(size=(4, 4)) * 3, jnp.float32),
                                     "bias": jnp.asarray(rng.normal(size=(4,)), jnp.float32)}},
                  "mlp": {"fc_in": {"kernel": jnp.asarray(rng.normal(size=(4, 8)) * 0.1, jnp.float32)}}},
            "1": {"attn": {"query": {"kernel": jnp.asarray(rng.normal(size=(4, 4)), jnp.float32),
                                     "bias": jnp.asarray(rng.normal(size=(4,)), jnp.float32)}},
                  "mlp": {"fc_in": {"kernel": jnp.asarray(rng.normal(size=(4, 8)) * 2, jnp.float32)}}},
        },
        "head": {"kernel": jnp.asarray(rng.normal(size=(4, 3)) * 5, jnp.float32)},
    }


def test_block_norms_and_shares_match_numpy():
    grads = _grads()
    p = hp.by_leaf(grads)
    bn = hm.blockwise_grad_norms(grads, partition=p)
    named = {path: np.asarray(x) for path, x in ht.leaves_with_paths(grads)}
    assert bn.labels == tuple(named)
    np.testing.assert_allclose(bn.norms, [np.linalg.norm(x) for x in named.values()], rtol=1e-6)
    np.testing.assert_allclose(bn.sizes, [x.size for x in named.values()])
    normalized = np.array([np.linalg.norm(x) / np.sqrt(x.size) for x in named.values()])
    het = hm.gradient_heterogeneity(grads, partition=p)
    np.testing.assert_allclose(het.shares, normalized / normalized.sum(), rtol=1e-6)
    np.testing.assert_allclose(het.shares.sum(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(het.gini, gini_pairwise(normalized), rtol=1e-5)
    np.testing.assert_allclose(hm.gini(het.shares), het.gini, rtol=1e-5)


def test_gradient_heterogeneity_exclude_and_jit():
    grads = _grads()
    p = hp.by_leaf(grads)
    het = hm.gradient_heterogeneity(grads, partition=p, exclude=r"bias$")
    assert all(not label.endswith("bias") for label in het.labels) and len(het.labels) == 6
    named = dict(ht.leaves_with_paths(grads))
    normalized = np.array([np.linalg.norm(named[l]) / np.sqrt(named[l].size) for l in het.labels])
    np.testing.assert_allclose(het.gini, gini_pairwise(normalized), rtol=1e-5)
    jitted = jax.jit(lambda g: hm.gradient_heterogeneity(g, partition=p).gini)(grads)
    np.testing.assert_allclose(jitted, hm.gradient_heterogeneity(grads, partition=p).gini, rtol=1e-6)
    with pytest.raises(ValueError, match="removes every block"):
        hm.gradient_heterogeneity(grads, partition=p, exclude=".")


def test_normalized_shares_zero_gradient():
    np.testing.assert_array_equal(hm.normalized_shares(jnp.zeros(3), jnp.ones(3)), np.zeros(3))


def test_layer_ratios_match_numpy():
    grads = _grads()
    lr = hm.layer_ratios(grads)
    named = dict(ht.leaves_with_paths(grads))
    sums = {}
    for path, x in named.items():
        if path.startswith("layers/"):
            layer = "/".join(path.split("/")[:2])
            sums[layer] = sums.get(layer, 0.0) + np.linalg.norm(x) / np.sqrt(x.size)
    assert lr.labels == ("layers/0", "layers/1")
    np.testing.assert_allclose(lr.layer_sums, [sums["layers/0"], sums["layers/1"]], rtol=1e-6)
    np.testing.assert_allclose(lr.ratios, np.array([sums["layers/0"], sums["layers/1"]]) / sum(sums.values()), rtol=1e-6)
    # without biases, and with an explicit mapping
    lr2 = hm.layer_ratios(grads, exclude=r"bias$",
                          layer_of={"layers/0/mlp/fc_in/kernel": "a", "layers/1/mlp/fc_in/kernel": "b"})
    n0 = np.linalg.norm(named["layers/0/mlp/fc_in/kernel"]) / np.sqrt(32)
    n1 = np.linalg.norm(named["layers/1/mlp/fc_in/kernel"]) / np.sqrt(32)
    np.testing.assert_allclose(lr2.ratios, [n0 / (n0 + n1), n1 / (n0 + n1)], rtol=1e-6)
    with pytest.raises(ValueError, match="no block"):
        hm.layer_ratios(grads, layer_of=lambda label: None)


def test_layer_ratios_numeric_order():
    grads = {"layers": {str(i): {"w": jnp.full((2,), float(i + 1))} for i in range(12)}}
    lr = hm.layer_ratios(grads)
    assert lr.labels == tuple(f"layers/{i}" for i in range(12))
    np.testing.assert_allclose(lr.layer_sums, np.arange(1, 13), rtol=1e-6)


# ---------------------------------------------------------------------------- full batch
def _regression(num=24, d=5, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(num, d)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(num,)), jnp.float32)
    params = {"w": jnp.asarray(rng.normal(size=(d,)), jnp.float32), "b": jnp.asarray(0.3, jnp.float32)}

    def loss_fn(p, batch):
        xb, yb = batch
        return jnp.mean((jnp.tanh(xb @ p["w"] + p["b"]) - yb) ** 2)

    return loss_fn, params, (x, y)


def test_full_batch_grad_microbatched_equals_full():
    loss_fn, params, data = _regression()
    full_loss, full_grad = jax.value_and_grad(loss_fn)(params, data)
    out = jax.jit(lambda p: hm.full_batch_grad(loss_fn, p, hc.microbatch(data, 4)))(params)
    np.testing.assert_allclose(out.loss, full_loss, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(out.grad), jax.tree.leaves(full_grad)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    plain = hm.full_batch_grad(loss_fn, params, data)
    np.testing.assert_allclose(plain.grad["w"], full_grad["w"], rtol=1e-6)
    # count-weighted micro-batches: 2 examples + 6 examples, padded to equal shapes
    x, y = data
    mb = hc.MicroBatched((jnp.stack([x[:6], x[6:12]]), jnp.stack([y[:6], y[6:12]])), counts=jnp.asarray([1.0, 3.0]))
    out = hm.full_batch_grad(loss_fn, params, mb)
    g0 = jax.grad(loss_fn)(params, (x[:6], y[:6]))
    g1 = jax.grad(loss_fn)(params, (x[6:12], y[6:12]))
    np.testing.assert_allclose(out.grad["w"], 0.25 * g0["w"] + 0.75 * g1["w"], rtol=1e-5)


def test_full_batch_gradient_heterogeneity():
    loss_fn, params, data = _regression()
    p = hp.by_leaf(params)
    het = hm.full_batch_gradient_heterogeneity(loss_fn, params, hc.microbatch(data, 3), partition=p)
    g = jax.grad(loss_fn)(params, data)
    norms = np.array([abs(float(g["b"])), np.linalg.norm(g["w"])])  # dict keys sorted: b, w
    np.testing.assert_allclose(het.norms, norms, rtol=1e-5)
    normalized = norms / np.sqrt([1, 5])
    np.testing.assert_allclose(het.gini, gini_pairwise(normalized), rtol=1e-5)
    assert het.labels == ("b", "w")
