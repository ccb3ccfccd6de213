"""Tiny models for the curvature tests, written inline with plain jnp (no heterogeneity.models).

* `mlp`: 8-16-16-4 tanh MLP with softmax cross-entropy, 484 parameters, 32 examples.
* `attention`: one single-head self-attention layer + mean-pool + linear head on length-4
  sequences of width 8, 300 parameters, 16 examples.

Both return ``(loss_fn, params, batch)`` in float64 (call inside ``jax.enable_x64(True)``).
Not a conftest: test modules import it by name (pytest puts this directory on sys.path).
"""
import jax
import jax.numpy as jnp
import numpy as np


def _xent(logits, y):
    return jnp.mean(jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, y[:, None], -1)[:, 0])


def make_mlp(seed=0, n=32, sizes=(8, 16, 16, 4)):
    rng = np.random.default_rng(seed)
    params = {"layers": [], "head": None}
    for din, dout in zip(sizes[:-2], sizes[1:-1]):
        params["layers"].append({"kernel": jnp.asarray(rng.normal(size=(din, dout)) / np.sqrt(din)),
                                 "bias": jnp.asarray(0.1 * rng.normal(size=dout))})
    params["head"] = {"kernel": jnp.asarray(rng.normal(size=sizes[-2:]) / np.sqrt(sizes[-2])),
                      "bias": jnp.asarray(0.1 * rng.normal(size=sizes[-1]))}
    batch = {"x": jnp.asarray(rng.normal(size=(n, sizes[0]))), "y": jnp.asarray(rng.integers(0, sizes[-1], n)),
             "w": jnp.ones((n,))}

    def loss_fn(p, b):
        h = b["x"]
        for layer in p["layers"]:
            h = jnp.tanh(h @ layer["kernel"] + layer["bias"])
        logits = h @ p["head"]["kernel"] + p["head"]["bias"]
        per = jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, b["y"][:, None], -1)[:, 0]
        return jnp.sum(b["w"] * per) / jnp.sum(b["w"])

    return loss_fn, params, batch


def make_attention(seed=0, n=16, t=4, d=8, k=4):
    rng = np.random.default_rng(seed)
    g = lambda *s: jnp.asarray(rng.normal(size=s) / np.sqrt(s[0]))  # noqa: E731
    params = {"attn": {"query": g(d, d), "key": g(d, d), "value": g(d, d), "out": g(d, d)},
              "norm": {"scale": jnp.ones(d) + 0.1 * jnp.asarray(rng.normal(size=d))},
              "head": {"kernel": g(d, k), "bias": jnp.zeros(k)}}
    batch = {"x": jnp.asarray(rng.normal(size=(n, t, d))), "y": jnp.asarray(rng.integers(0, k, n))}

    def loss_fn(p, b):
        x = b["x"]
        q, kk, v = x @ p["attn"]["query"], x @ p["attn"]["key"], x @ p["attn"]["value"]
        a = jax.nn.softmax(q @ jnp.swapaxes(kk, -1, -2) / np.sqrt(d), axis=-1)
        h = x + (a @ v) @ p["attn"]["out"]
        h = h / jnp.sqrt(jnp.mean(h * h, -1, keepdims=True) + 1e-6) * p["norm"]["scale"]
        logits = h.mean(1) @ p["head"]["kernel"] + p["head"]["bias"]
        return _xent(logits, b["y"])

    return loss_fn, params, batch


def prescribed(eigs, seed=0):
    """A symmetric matrix Q diag(eigs) Qᵀ with a Haar-random Q (float64 numpy)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(len(eigs), len(eigs))))
    return (q * np.asarray(eigs, float)) @ q.T


_DENSE = {}


def dense_of(make, seed=0):
    """Cached float64 dense Hessian (and model) of a tiny model; call inside enable_x64."""
    from heterogeneity.curvature import dense_hessian

    key = (make.__name__, seed)
    if key not in _DENSE:
        loss_fn, params, batch = make(seed)
        _DENSE[key] = np.asarray(dense_hessian(loss_fn, params, batch))
    return _DENSE[key]
