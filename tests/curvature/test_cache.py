"""Recompilation hazards: functions that jit internally compile once per (loss_fn, options,
shapes), not once per call.

The compile counter is a Python side effect in ``loss_fn``: it runs only while JAX traces
the function, so a call served from the compilation cache leaves it unchanged (a timer-free,
deterministic check).
"""
import jax
import jax.numpy as jnp
import numpy as np

from heterogeneity import curvature as hc
from heterogeneity import metrics as hm
from heterogeneity import partition as hp
from heterogeneity.tree import ravel


def _counting_model(d_in=3, d_out=2, n=8, seed=0):
    rng = np.random.default_rng(seed)
    traces = {"n": 0}

    def loss_fn(p, b):
        traces["n"] += 1  # only runs while tracing
        out = jnp.tanh(b["x"] @ p["w"] + p["b"])
        return jnp.mean((out - b["y"]) ** 2)

    def params(scale=1.0):
        return {"b": jnp.asarray(scale * 0.1 * rng.normal(size=d_out)),
                "w": jnp.asarray(scale * rng.normal(size=(d_in, d_out)))}

    def batch():
        return {"x": jnp.asarray(rng.normal(size=(n, d_in))), "y": jnp.asarray(rng.normal(size=(n, d_out)))}

    return loss_fn, params, batch, traces


def _reference_hessian(loss_fn, params, batch):
    flat, unravel = ravel(params)
    return np.asarray(jax.hessian(lambda y: loss_fn(unravel(y), batch))(flat))


def test_dense_hessian_compiles_once():
    with jax.enable_x64(True):
        loss_fn, params, batch, traces = _counting_model()
        p1, p2, b1, b2 = params(), params(2.0), batch(), batch()
        h1 = hc.dense_hessian(loss_fn, p1, b1)
        after_first = traces["n"]
        assert after_first > 0
        h2 = hc.dense_hessian(loss_fn, p2, b1)  # new params, same shapes
        h3 = hc.dense_hessian(loss_fn, p1, b2)  # new batch, same shapes
        assert traces["n"] == after_first
        before = traces["n"]
        for got, (p, b) in ((h1, (p1, b1)), (h2, (p2, b1)), (h3, (p1, b2))):
            np.testing.assert_allclose(got, _reference_hessian(loss_fn, p, b), rtol=1e-12, atol=1e-14)
        traces["n"] = before
        hc.dense_hessian(loss_fn, {"b": jnp.zeros(2), "w": jnp.zeros((3, 2))}, batch())
        assert traces["n"] == before  # zeros of the same shapes/dtypes: still cached
        bigger = _counting_model(d_in=4)
        hc.dense_hessian(loss_fn, {"b": jnp.zeros(2), "w": jnp.zeros((4, 2))}, bigger[2]())
        assert traces["n"] > before  # a new shape does compile: the counter works


def test_block_hessian_norms_compiles_once():
    with jax.enable_x64(True):
        loss_fn, params, batch, traces = _counting_model()
        p1 = params()
        part = hp.by_leaf(p1)
        key = jax.random.key(0)
        hm.block_hessian_norms(loss_fn, p1, batch(), key, partition=part, num_steps=6)
        after_first = traces["n"]
        assert after_first > 0
        p2, b2 = params(2.0), batch()
        got = hm.block_hessian_norms(loss_fn, p2, b2, jax.random.key(1), partition=part, num_steps=6)
        assert traces["n"] == after_first
        h = _reference_hessian(loss_fn, p2, b2)  # blocks b = [0, 2), w = [2, 8); num_steps ≥ d_b: exact
        np.testing.assert_allclose(got["b"], np.abs(np.linalg.eigvalsh(h[:2, :2])).max(), rtol=1e-10)
        np.testing.assert_allclose(got["w"], np.abs(np.linalg.eigvalsh(h[2:, 2:])).max(), rtol=1e-10)
        hm.block_hessian_norms(loss_fn, p2, b2, key, partition=part, num_steps=7)
        assert traces["n"] > after_first  # another option is another program


def test_estimate_linf_report_compiles_once():
    with jax.enable_x64(True):
        loss_fn, params, batch, traces = _counting_model()
        p1 = params()
        part = hp.by_leaf(p1)
        hm.estimate_linf_report(loss_fn, p1, batch(), jax.random.key(0), partition=part, num_probes=4, num_steps=8)
        after_first = traces["n"]
        assert after_first > 0
        p2, b2 = params(0.5), batch()
        rep = hm.estimate_linf_report(loss_fn, p2, b2, jax.random.key(1), partition=part, num_probes=4, num_steps=8)
        assert traces["n"] == after_first
        h = _reference_hessian(loss_fn, p2, b2)
        np.testing.assert_allclose(rep.geometry.spectral, np.abs(np.linalg.eigvalsh(h)).max(), rtol=1e-8)


def test_dense_linf_report_compiles_once():
    with jax.enable_x64(True):
        loss_fn, params, batch, traces = _counting_model()
        p1 = params()
        part = hp.by_leaf(p1)
        hm.dense_linf_report(loss_fn, p1, batch(), partition=part)
        after_first = traces["n"]
        p2, b2 = params(3.0), batch()
        rep = hm.dense_linf_report(loss_fn, p2, b2, partition=part)
        assert traces["n"] == after_first
        h = _reference_hessian(loss_fn, p2, b2)
        np.testing.assert_allclose(rep.geometry.l11, np.abs(h).sum(), rtol=1e-12)
