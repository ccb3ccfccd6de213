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


def test_blockwise_hessian_norms_compiles_once():
    with jax.enable_x64(True):
        loss_fn, params, batch, traces = _counting_model()
        p1 = params()
        part = hp.by_leaf(p1)
        key = jax.random.key(0)
        hm.blockwise_hessian_norms(loss_fn, p1, batch(), key, partition=part, num_steps=6)
        after_first = traces["n"]
        assert after_first > 0
        p2, b2 = params(2.0), batch()
        got = hm.blockwise_hessian_norms(loss_fn, p2, b2, jax.random.key(1), partition=part, num_steps=6)
        assert traces["n"] == after_first
        h = _reference_hessian(loss_fn, p2, b2)  # blocks b = [0, 2), w = [2, 8); num_steps ≥ d_b: exact
        np.testing.assert_allclose(got.block("b"), np.abs(np.linalg.eigvalsh(h[:2, :2])).max(), rtol=1e-10)
        np.testing.assert_allclose(got.block("w"), np.abs(np.linalg.eigvalsh(h[2:, 2:])).max(), rtol=1e-10)
        hm.blockwise_hessian_norms(loss_fn, p2, b2, key, partition=part, num_steps=7)
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


# ---------------------------------------------------------------------------- operator objects
def _estimators(part):
    """Every operator estimator, as (name, call(op, like, key))."""
    return [
        ("top_eigenvalue", lambda op, like, k: hc.top_eigenvalue(op, like, k, num_steps=8).value),
        ("spectral_norm", lambda op, like, k: hc.spectral_norm(op, like, k, num_steps=8).value),
        ("slq", lambda op, like, k: hc.slq(op, like, k, num_steps=8, num_probes=3).nodes),
        ("hutchinson_trace", lambda op, like, k: hc.hutchinson_trace(op, like, k, num_probes=5).trace),
        ("l11_norm", lambda op, like, k: hc.l11_norm(op, like, k, num_probes=5).value),
        ("blockwise_l11_norm_matvec", lambda op, like, k: hc.blockwise_l11_norm_matvec(
            op, like, k, partition=part(), num_probes=5).block("w")),
        ("blockwise_l11_norm_matvec_diag", lambda op, like, k: hc.blockwise_l11_norm_matvec(
            op, like, k, partition=part(), num_probes=5, diagonal=True).block("w")),
        ("blockwise_slq_matvec", lambda op, like, k: hc.blockwise_slq_matvec(op, like, k, partition=part(), num_steps=4,
                                                                             num_probes=2).block("w").nodes),
        ("blockwise_top_eigenvalue_matvec", lambda op, like, k: hc.blockwise_top_eigenvalue_matvec(
            op, like, k, partition=part(), num_steps=4).block("w").value),
    ]


def test_operator_estimators_compile_once_and_match_the_closure():
    """An `HessianOperator` call with new params, a new batch and a freshly built (equal) partition
    is served from the cache (the trace counter in loss_fn does not move), and gives what the closure
    form gives on the same arrays; the closure form traces on every call."""
    with jax.enable_x64(True):
        loss_fn, params, batch, traces = _counting_model()
        p1 = params()
        for name, call in _estimators(lambda: hp.by_leaf(p1)):
            key = jax.random.key(3)
            call(hc.HessianOperator(loss_fn, p1, batch()), p1, key)
            after_first = traces["n"]
            assert after_first > 0, name
            p2, b2 = params(2.0), batch()
            got = call(hc.HessianOperator(loss_fn, p2, b2), p2, jax.random.key(4))
            assert traces["n"] == after_first, name
            want = call(hc.linearized_hvp(loss_fn, p2, b2), p2, jax.random.key(4))
            assert traces["n"] > after_first, name  # the closure form traces again
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-9, atol=1e-12, err_msg=name)


def test_top_eigenvalue_operator_is_exact_and_cached_for_each_shape():
    with jax.enable_x64(True):
        loss_fn, params, batch, traces = _counting_model()
        p1, b1 = params(), batch()
        # d = 8 and num_steps = 8: the top Ritz value is the top eigenvalue
        est = hc.top_eigenvalue(hc.HessianOperator(loss_fn, p1, b1), p1, jax.random.key(0), num_steps=8)
        np.testing.assert_allclose(est.value, np.linalg.eigvalsh(_reference_hessian(loss_fn, p1, b1)).max(),
                                   rtol=1e-10)
        n = traces["n"]
        hc.top_eigenvalue(hc.HessianOperator(loss_fn, params(0.3), batch()), p1, jax.random.key(1), num_steps=8)
        assert traces["n"] == n
        hc.top_eigenvalue(hc.HessianOperator(loss_fn, p1, b1), p1, jax.random.key(1), num_steps=7)
        assert traces["n"] > n  # another option is another program
        n = traces["n"]
        hc.top_eigenvalue(hc.HessianOperator(loss_fn, p1, hc.microbatch(b1, 2)), p1, jax.random.key(1), num_steps=8)
        assert traces["n"] > n  # a micro-batched batch is another structure


def test_linear_operator_compiles_once_and_matches_dense():
    """`LinearOperator(matvec, *args)`: the args are leaves (matfree's form)."""
    traces = {"n": 0}

    def matvec(v, a):
        traces["n"] += 1
        return {"x": a @ v["x"]}

    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        def sym(scale):
            m = rng.normal(size=(6, 6))
            return jnp.asarray(scale * (m + m.T))

        like = {"x": jnp.zeros(6)}
        a1, a2 = sym(1.0), sym(2.0)
        s1 = hc.slq(hc.LinearOperator(matvec, a1), like, jax.random.key(0), num_steps=6, num_probes=2)
        n = traces["n"]
        s2 = hc.slq(hc.LinearOperator(matvec, a2), like, jax.random.key(0), num_steps=6, num_probes=2)
        assert traces["n"] == n
        for s, a in ((s1, a1), (s2, a2)):  # 6 steps on a 6x6 matrix: the nodes are its eigenvalues
            np.testing.assert_allclose(np.sort(np.asarray(s.nodes), axis=1),
                                       np.tile(np.linalg.eigvalsh(np.asarray(a)), (2, 1)), rtol=1e-9, atol=1e-9)


def test_blockwise_compile_once_with_fresh_partitions():
    """`blockwise_slq` and `blockwise_top_eigenvalue`: new params, a new batch and `by_leaf` built afresh
    reuse the program; results in partition order and exact (num_steps >= block size)."""
    with jax.enable_x64(True):
        loss_fn, params, batch, traces = _counting_model()
        p1 = params()
        hc.blockwise_slq(loss_fn, p1, batch(), jax.random.key(0), partition=hp.by_leaf(p1), num_steps=6, num_probes=2)
        hc.blockwise_top_eigenvalue(loss_fn, p1, batch(), jax.random.key(0), partition=hp.by_leaf(p1), num_steps=6)
        n = traces["n"]
        p2, b2 = params(1.5), batch()
        spec = hc.blockwise_slq(loss_fn, p2, b2, jax.random.key(1), partition=hp.by_leaf(p2), num_steps=6,
                                num_probes=2)
        top = hc.blockwise_top_eigenvalue(loss_fn, p2, b2, jax.random.key(1), partition=hp.by_leaf(p2), num_steps=6)
        assert traces["n"] == n
        assert spec.labels == top.labels == tuple(hp.by_leaf(p2).labels(p2))
        h = _reference_hessian(loss_fn, p2, b2)  # blocks b = [0, 2), w = [2, 8)
        for label, ix in (("b", slice(0, 2)), ("w", slice(2, 8))):
            lam = np.linalg.eigvalsh(h[ix, ix])
            np.testing.assert_allclose(top.block(label).value, lam.max(), rtol=1e-10)
            nodes, weights = np.asarray(spec.block(label).nodes), np.asarray(spec.block(label).weights)
            live = weights > 1e-12
            assert np.all(np.min(np.abs(nodes[live][:, None] - lam[None]), axis=1) <= 1e-9 * np.abs(lam).max())
        other = hp.by_regex([(r".*", "all")])  # different blocks: another program
        hc.blockwise_slq(loss_fn, p2, b2, jax.random.key(1), partition=other, num_steps=6, num_probes=2)
        assert traces["n"] > n


def test_operators_check_their_arguments_and_work_inside_jit():
    import pytest

    loss_fn, params, batch, _ = _counting_model()
    p, b = params(), batch()
    with pytest.raises(ValueError, match="loss_fn must be callable"):
        hc.HessianOperator("loss", p, b)
    with pytest.raises(ValueError, match="matvec must be callable"):
        hc.LinearOperator(None)
    with pytest.raises(ValueError, match=r"params leaf \['n'\] has dtype int32"):
        hc.HessianOperator(loss_fn, {"n": jnp.zeros(2, jnp.int32)}, b)
    with pytest.raises(ValueError, match="num_steps"):
        hc.top_eigenvalue(hc.HessianOperator(loss_fn, p, b), p, jax.random.key(0), num_steps=0)
    # an operator built inside the user's own jit (its leaves are tracers) gives the eager result
    inside = jax.jit(lambda q, bb: hc.top_eigenvalue(hc.HessianOperator(loss_fn, q, bb), q, jax.random.key(0),
                                                     num_steps=6).value)(p, b)
    eager = hc.top_eigenvalue(hc.HessianOperator(loss_fn, p, b), p, jax.random.key(0), num_steps=6).value
    np.testing.assert_allclose(inside, eager, rtol=1e-5)
    # the operator applies the Hessian itself, and vmaps/jits as a pytree
    h = _reference_hessian(loss_fn, p, b)
    v = {"b": jnp.ones(2), "w": jnp.ones((3, 2))}
    hv = ravel(jax.jit(lambda op, t: op(t))(hc.HessianOperator(loss_fn, p, b), v))[0]
    np.testing.assert_allclose(hv, h @ np.ones(8), rtol=1e-4, atol=1e-5)
