"""Tests for the attention statistics of [Tomihari25, App. F.5] against NumPy."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from heterogeneity import metrics as hm
from heterogeneity import partition as hp


def entropy_ratio_numpy(a, valid_keys=None):
    a = np.asarray(a, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.where(a > 0, a * np.log(a), 0.0).sum(-1)
    denom = np.log(a.shape[-1]) if valid_keys is None else np.log(valid_keys)
    return ent / denom


def test_entropy_ratio_matches_numpy_and_extremes():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 5, 7)) * 2  # (batch, heads, q, k)
    a = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    out = hm.attention_entropy_ratio(jnp.asarray(a))
    ref = entropy_ratio_numpy(a)
    np.testing.assert_allclose(out.mean, ref.mean(), rtol=1e-5)
    np.testing.assert_allclose(out.std, ref.std(), rtol=1e-4)
    np.testing.assert_allclose(out.per_head, ref.mean(axis=(0, 2)), rtol=1e-5)
    uniform = hm.attention_entropy_ratio(jnp.full((3, 4, 6), 1 / 6))
    assert float(uniform.mean) == pytest.approx(1.0, rel=1e-6)
    one_hot = hm.attention_entropy_ratio(jax.nn.one_hot(jnp.asarray([[0, 3, 5]]), 6))
    assert float(one_hot.mean) == 0.0


def test_entropy_ratio_with_causal_mask():
    s = 5
    causal = np.tril(np.ones((s, s), bool))
    a = np.where(causal, 1.0, 0.0)
    a = a / a.sum(-1, keepdims=True)  # uniform over the allowed keys
    out = hm.attention_entropy_ratio(jnp.asarray(a)[None], mask=jnp.asarray(causal))
    assert float(out.mean) == pytest.approx(1.0, rel=1e-6)  # row 0 (one key) is left out
    # without the mask every row is normalised by log S (the paper's convention)
    plain = hm.attention_entropy_ratio(jnp.asarray(a)[None])
    np.testing.assert_allclose(plain.mean, entropy_ratio_numpy(a).mean(), rtol=1e-6)
    assert float(plain.mean) < 1.0


def test_layerwise_entropy_inputs():
    rng = np.random.default_rng(1)
    layers = [jax.nn.softmax(jnp.asarray(rng.normal(size=(2, 2, 4, 4)) * (i + 1))) for i in range(3)]
    as_list = hm.layerwise_attention_entropy(layers)
    as_stack = hm.layerwise_attention_entropy(jnp.stack(layers))
    as_dict = hm.layerwise_attention_entropy({f"layers/{i}": x for i, x in enumerate(layers)})
    np.testing.assert_allclose(as_list.mean, as_stack.mean, rtol=1e-6)
    np.testing.assert_allclose(as_dict.mean, [entropy_ratio_numpy(x).mean() for x in layers], rtol=1e-5)
    assert as_dict.labels == ("layers/0", "layers/1", "layers/2") and as_dict.per_head.shape == (3, 2)
    with pytest.raises(ValueError, match="heads, q, k"):
        hm.attention_entropy_ratio(jnp.ones((4, 4)) / 4)


def _attn_grads(num_layers=2):
    rng = np.random.default_rng(2)
    layer = lambda s: {  # noqa: E731
        "attn": {name: {"kernel": jnp.asarray(rng.normal(size=(4, 4)) * s, jnp.float32),
                        "bias": jnp.asarray(rng.normal(size=(4,)), jnp.float32)}
                 for name in ("query", "key", "value", "out")},
        "mlp": {"fc_in": {"kernel": jnp.asarray(rng.normal(size=(4, 8)), jnp.float32)}},
    }
    return {"layers": {str(i): layer(i + 1.0) for i in range(num_layers)},
            "embed": {"embedding": jnp.ones((3, 4))}}


def test_qkv_grad_ratios_match_numpy():
    grads = _attn_grads()
    out = hm.qkv_grad_ratios(grads)
    assert out.layers == ("layers/0", "layers/1") and out.roles == ("query", "key", "value")
    for li, layer in enumerate(out.layers):
        g = grads["layers"][layer.split("/")[1]]["attn"]
        norms = np.array([np.linalg.norm(g[r]["kernel"]) for r in ("query", "key", "value")])  # kernels only
        np.testing.assert_allclose(out.norms[li], norms, rtol=1e-6)
        np.testing.assert_allclose(out.ratios[li], norms / norms.sum(), rtol=1e-6)
    np.testing.assert_allclose(out.ratios.sum(1), 1.0, rtol=1e-6)


def test_qkv_grad_ratios_errors():
    grads = _attn_grads()
    with pytest.raises(ValueError, match="no block label"):
        hm.qkv_grad_ratios(grads, partition=hp.by_leaf(grads))
    del grads["layers"]["1"]["attn"]["key"]
    with pytest.raises(ValueError, match="missing roles"):
        hm.qkv_grad_ratios(grads)
