"""Bad input and faults in the curvature estimators.

Every case ends one of two ways: a finite result equal to a dense float64 NumPy reference
(Hessian by `jax.hessian` under ``jax.enable_x64(True)``, eigenvalues by `numpy.linalg`), or
a `ValueError` naming the argument. Non-finite input (NaN/inf in the batch, a NaN loss) is
traced, so it cannot raise inside `jax.jit`: the result carries ``finite=False`` instead,
and the Lanczos recurrence freezes so that its output stays well-formed.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from heterogeneity import curvature as hc
from heterogeneity import partition as hp
from heterogeneity.curvature._slq import probe_vector
from heterogeneity.tree import ravel


# ----------------------------------------------------------------------------- a tiny model
def _model(seed=0):
    """d = 6 + 2 + 1 = 9: a (3, 2) kernel, a (2,) bias and a one-parameter scale ``s``."""
    rng = np.random.default_rng(seed)
    params = {"b": jnp.asarray(0.3 * rng.normal(size=2)), "s": jnp.asarray(1.3),
              "w": jnp.asarray(rng.normal(size=(3, 2)))}
    batch = {"x": jnp.asarray(rng.normal(size=(6, 3))), "y": jnp.asarray(rng.normal(size=(6, 2)))}

    def loss_fn(p, b):
        out = p["s"] * jnp.tanh(b["x"] @ p["w"] + p["b"])
        return jnp.mean((out - b["y"]) ** 2) + 0.1 * p["s"] ** 4

    return loss_fn, params, batch


def _dense(loss_fn, params, batch) -> np.ndarray:
    flat, unravel = ravel(params)
    return np.asarray(jax.hessian(lambda y: loss_fn(unravel(y), batch))(flat), np.float64)


def _leaf_slices(params):
    """Coordinates of every leaf in ravel order (the by_leaf blocks)."""
    out, start = {}, 0
    for path, x in jax.tree_util.tree_leaves_with_path(params):
        n = int(np.size(x))
        out[path[0].key] = np.arange(start, start + n)
        start += n
    return out


def _all_estimators(loss_fn, params, batch, key, *, num_steps=12, probes=3):
    """Every estimator once, in one jitted program (the way they are used)."""
    part = hp.by_leaf(params)

    @jax.jit
    def run(p, b, k):
        ks = jax.random.split(k, 8)
        mv = hc.linearized_hvp(loss_fn, p, b)
        return {
            "slq": hc.slq(mv, p, ks[0], num_steps=num_steps, num_probes=probes),
            "slq_none": hc.slq(mv, p, ks[0], num_steps=num_steps, num_probes=probes, reortho="none"),
            "top": hc.top_eigenvalue(mv, p, ks[1], num_steps=num_steps),
            "norm": hc.spectral_norm(mv, p, ks[2], num_steps=num_steps),
            "trace": hc.hutchinson_trace(mv, p, ks[3], num_probes=probes),
            "l11": hc.l11_norm(mv, p, ks[4], num_probes=probes),
            "blocks": hc.blockwise_slq(loss_fn, p, b, ks[5], partition=part, num_steps=num_steps,
                                       num_probes=probes),
            "block_top": hc.blockwise_top_eigenvalue(loss_fn, p, b, ks[6], partition=part, num_steps=num_steps),
            "block_l11": hc.blockwise_l11_norm_matvec(mv, p, ks[7], partition=part, num_probes=probes, diagonal=True),
        }

    return run(params, batch, key), jax.random.split(key, 8)


def _finite_flags(out):
    flags = [out[k].finite for k in ("slq", "slq_none", "top", "norm", "trace", "l11")]
    flags += list(out["blocks"].finite) + list(out["block_top"].finite)
    return [bool(f) for f in flags]


def _assert_exact_quadrature(nodes, weights, h, v, tol=1e-9):
    """Gauss quadrature with ≥ d steps is exact: Σ_j w_j x_j^k = vᵀH^k v/‖v‖² for every k."""
    v = np.asarray(v, np.float64) / np.linalg.norm(v)
    nodes, weights = np.asarray(nodes), np.asarray(weights)
    assert np.all(weights >= -1e-15) and abs(weights.sum() - 1) < 1e-12
    scale = max(np.abs(np.linalg.eigvalsh(h)).max(), 1e-300)
    hv = v.copy()
    for k in range(2 * len(v) + 2):  # moments in units of ‖H‖₂
        want = v @ hv
        got = np.sum(weights * (nodes / scale) ** k)
        assert abs(got - want) <= tol, (k, got, want)
        hv = h @ hv / scale
    eig = np.linalg.eigvalsh(h)
    live = nodes[weights > 1e-10]
    assert np.all(np.min(np.abs(live[:, None] - eig[None]), axis=1) <= tol * scale), (live, eig)


# ----------------------------------------------------------------------------- finite input: dense reference
def test_every_estimator_matches_dense_float64_reference():
    with jax.enable_x64(True):
        loss_fn, params, batch = _model()
        h = _dense(loss_fn, params, batch)
        d = h.shape[0]
        eig = np.linalg.eigvalsh(h)
        key = jax.random.key(3)
        out, ks = _all_estimators(loss_fn, params, batch, key, num_steps=d + 3, probes=3)
        assert all(_finite_flags(out))
        assert out["slq"].finite.dtype == jnp.bool_ and out["slq"].finite.shape == ()
        # slq: num_steps > d, full reortho: exact quadrature of each (reconstructed) probe
        for p, k in enumerate(jax.random.split(ks[0], 3)):
            v = probe_vector(k, d, jnp.float64, "rademacher")
            _assert_exact_quadrature(out["slq"].nodes[p], out["slq"].weights[p], h, v)
        # top eigenvalue / spectral norm: exact once num_steps ≥ d
        np.testing.assert_allclose(out["top"].value, eig.max(), rtol=1e-10)
        np.testing.assert_allclose(out["norm"].value, np.abs(eig).max(), rtol=1e-10)
        assert out["top"].error_bound < 1e-8 and out["norm"].error_bound < 1e-8
        # Hutchinson: the exact mean of zᵀHz over the same Rademacher probes
        z = np.stack([np.asarray(jax.random.rademacher(k, (d,), jnp.float64)) for k in jax.random.split(ks[3], 3)])
        samples = np.einsum("pi,ij,pj->p", z, h, z)
        np.testing.assert_allclose(out["trace"].trace, samples.mean(), rtol=1e-12)
        np.testing.assert_allclose(out["trace"].stderr, samples.std(ddof=1) / np.sqrt(3), rtol=1e-10)
        # Cauchy sketch: the row-wise median of |H c| over the same Cauchy probes
        c = np.stack([np.asarray(jax.random.cauchy(k, (d,), jnp.float64)) for k in jax.random.split(ks[4], 3)])
        rows = np.median(np.abs(c @ h), axis=0)
        np.testing.assert_allclose(out["l11"].value, rows.sum(), rtol=1e-12)
        np.testing.assert_allclose(ravel(out["l11"].row_sums)[0], rows, rtol=1e-12)
        # blockwise: every block has ≤ num_steps elements, so the nodes are eigenvalues of H_bb
        for label, idx in _leaf_slices(params).items():
            hb = h[np.ix_(idx, idx)]
            eb = np.linalg.eigvalsh(hb)
            s = out["blocks"].block(label)
            for p in range(3):
                live = np.asarray(s.nodes[p])[np.asarray(s.weights[p]) > 1e-10]
                assert np.all(np.min(np.abs(live[:, None] - eb[None]), axis=1) < 1e-9), (label, live, eb)
                np.testing.assert_allclose(np.sum(s.weights[p]), 1.0, rtol=1e-12)
            np.testing.assert_allclose(out["block_top"].block(label).value, eb.max(), rtol=1e-10, atol=1e-12)


def test_one_parameter_block_is_exact():
    """The scalar leaf ``s`` is a block of one parameter: its only eigenvalue is H_ss."""
    with jax.enable_x64(True):
        loss_fn, params, batch = _model()
        h = _dense(loss_fn, params, batch)
        i = int(_leaf_slices(params)["s"][0])
        part = hp.by_leaf(params)
        for steps in (1, 5):
            spectra = hc.blockwise_slq(loss_fn, params, batch, jax.random.key(0), partition=part, num_steps=steps,
                                       num_probes=2)
            s = spectra.block("s")
            assert bool(s.finite) and s.nodes.shape == (2, steps)
            np.testing.assert_allclose(s.nodes[:, 0], h[i, i], rtol=1e-12)
            np.testing.assert_allclose(s.weights[:, 0], 1.0, rtol=1e-12)
            np.testing.assert_allclose(s.weights[:, 1:], 0.0, atol=0)
            top = hc.blockwise_top_eigenvalue(loss_fn, params, batch, jax.random.key(1), partition=part,
                                              num_steps=steps).block("s")
            np.testing.assert_allclose(top.value, h[i, i], rtol=1e-12)
            assert float(top.error_bound) < 1e-10
        # a single-parameter model through the full-vector estimators
        p1 = {"s": params["s"]}
        f1 = lambda p, b: loss_fn(dict(params, s=p["s"]), b)  # noqa: E731
        mv = hc.linearized_hvp(f1, p1, batch)
        spec = hc.slq(mv, p1, jax.random.key(2), num_steps=4, num_probes=2)
        np.testing.assert_allclose(spec.nodes[:, 0], h[i, i], rtol=1e-12)
        np.testing.assert_allclose(spec.weights.sum(1), 1.0, rtol=1e-12)
        np.testing.assert_allclose(hc.top_eigenvalue(mv, p1, jax.random.key(3), num_steps=3).value, h[i, i],
                                   rtol=1e-12)
        np.testing.assert_allclose(hc.hutchinson_trace(mv, p1, jax.random.key(4), num_probes=3).trace, h[i, i],
                                   rtol=1e-12)
        c = np.array([float(jax.random.cauchy(k, (1,), jnp.float64)[0]) for k in jax.random.split(jax.random.key(5), 3)])
        np.testing.assert_allclose(hc.l11_norm(mv, p1, jax.random.key(5), num_probes=3).value,
                                   np.median(np.abs(h[i, i] * c)), rtol=1e-12)


def test_num_steps_larger_than_the_block_gives_the_exact_quadrature():
    """num_steps ≫ d: Lanczos restarts inside the block, then freezes; the quadrature is exact."""
    with jax.enable_x64(True):
        loss_fn, params, batch = _model()
        h = _dense(loss_fn, params, batch)
        d = h.shape[0]
        mv = hc.linearized_hvp(loss_fn, params, batch)
        key = jax.random.key(7)
        for reortho in ("full", "none"):
            spec = hc.slq(mv, params, key, num_steps=4 * d, num_probes=2, reortho=reortho)
            assert bool(spec.finite) and spec.nodes.shape == (2, 4 * d)
            if reortho == "full":
                for p, k in enumerate(jax.random.split(key, 2)):
                    _assert_exact_quadrature(spec.nodes[p], spec.weights[p], h, probe_vector(k, d, jnp.float64,
                                                                                             "rademacher"))
            else:  # the plain recurrence keeps the moments (ghost copies may appear), and stays finite
                assert np.all(np.isfinite(spec.nodes)) and np.allclose(spec.weights.sum(1), 1.0)
        res = hc.lanczos(mv, jax.tree.map(jnp.ones_like, params), 3 * d)
        assert int(res.size) == d and bool(res.finite)
        np.testing.assert_allclose(np.sort(hc.ritz(res)[0][:d]), np.linalg.eigvalsh(h), rtol=1e-9, atol=1e-11)
        spectra = hc.blockwise_slq(loss_fn, params, batch, key, partition=hp.by_leaf(params), num_steps=50,
                                   num_probes=1)
        for label, idx in _leaf_slices(params).items():
            eb = np.linalg.eigvalsh(h[np.ix_(idx, idx)])
            s = spectra.block(label)
            live = np.asarray(s.nodes[0])[np.asarray(s.weights[0]) > 1e-10]
            assert bool(s.finite) and np.all(np.min(np.abs(live[:, None] - eb[None]), axis=1) < 1e-9)


def test_zero_hessian_linear_loss():
    """A linear loss: ∇ is constant, H = 0 → nodes 0, weights a valid quadrature, finite."""
    with jax.enable_x64(True):
        _, params, batch = _model()
        c = {k: jnp.full(jnp.shape(v), 0.5) for k, v in params.items()}

        def linear(p, b):
            return sum(jnp.sum(c[k] * p[k]) for k in p) * jnp.mean(b["x"])

        h = _dense(linear, params, batch)
        np.testing.assert_array_equal(h, 0.0)
        out, _ = _all_estimators(linear, params, batch, jax.random.key(0), num_steps=5, probes=2)
        assert all(_finite_flags(out))
        for s in [out["slq"], out["slq_none"], *out["blocks"].as_dict().values()]:
            np.testing.assert_array_equal(s.nodes, 0.0)
            assert np.all(s.weights >= 0)
            np.testing.assert_allclose(s.weights.sum(-1), 1.0, rtol=1e-12)
        for e in [out["top"], out["norm"], *out["block_top"].as_dict().values()]:
            assert float(e.value) == 0.0 and float(e.error_bound) == 0.0
        assert float(out["trace"].trace) == 0.0 and float(out["trace"].stderr) == 0.0
        assert float(out["l11"].value) == 0.0
        assert all(float(v) == 0.0 for v in out["block_l11"].as_dict().values())
        # the (1,1)-norm estimate agrees with the dense reference Σ|H_ij| = 0, and so does the density
        dens = hc.density(out["slq"])
        assert np.all(np.isfinite(dens.values)) and float(dens.grid[np.argmax(dens.values)]) == pytest.approx(0.0,
                                                                                                           abs=0.01)


# ----------------------------------------------------------------------------- non-finite input: the flag
def _nonfinite_batches(batch):
    x = np.asarray(batch["x"]).copy()
    nan, inf = x.copy(), x.copy()
    nan[2, 1] = np.nan
    inf[0, 0] = np.inf
    return {"nan": dict(batch, x=jnp.asarray(nan)), "inf": dict(batch, x=jnp.asarray(inf))}


@pytest.mark.parametrize("case", ["nan", "inf", "nan_loss"])
def test_nonfinite_batch_or_loss_sets_finite_false(case):
    with jax.enable_x64(True):
        loss_fn, params, batch = _model()
        if case == "nan_loss":
            def bad(p, b):  # the loss, its gradient and its Hessian are all NaN
                return loss_fn(p, b) * jnp.sqrt(jnp.asarray(-1.0))
        else:
            bad, batch = loss_fn, _nonfinite_batches(batch)[case]
        out, _ = _all_estimators(bad, params, batch, jax.random.key(0), num_steps=6, probes=2)
        # a block's flag is the finiteness of its own Hessian H_bb, as `jax.hessian` of the loss in
        # that block alone gives it: with x[0, 0] = inf, tanh saturates and H_ss, H_bb stay finite
        # (the blockwise engine drops the zero tangents of the other blocks, as JAX's autodiff
        # does, so no 0·inf enters), while H_ww and the full Hessian do not
        own = {leaf: bool(np.all(np.isfinite(np.asarray(jax.hessian(
            lambda x, leaf=leaf: bad({**params, leaf: x}, batch))(params[leaf]))))) for leaf in params}
        assert own == {"b": case == "inf", "s": case == "inf", "w": False}
        full = [out[k].finite for k in ("slq", "slq_none", "top", "norm", "trace", "l11")]
        assert not any(bool(f) for f in full)
        for name in ("blocks", "block_top"):
            assert {k: bool(v.finite) for k, v in out[name].as_dict().items()} == own, name
        assert {k: bool(np.isfinite(float(v))) for k, v in out["block_l11"].as_dict().items()} == own
        assert dict(zip(out["block_l11"].labels, map(bool, out["block_l11"].finite))) == own
        # the recurrence froze before recording anything: NaN nodes (never a plausible number)
        # on a well-formed quadrature (weights (1, 0, ...)), NaN estimates
        bad_blocks = [s for k, s in out["blocks"].as_dict().items() if not own[k]]
        for s in [out["slq"], out["slq_none"], *bad_blocks]:
            assert s.nodes.shape == s.weights.shape and np.all(np.isnan(s.nodes))
            np.testing.assert_array_equal(s.weights[..., 0], 1.0)
            np.testing.assert_array_equal(s.weights[..., 1:], 0.0)
            assert np.isnan(float(hc.spectral_range(s)[1]))
        for e in [out["top"], out["norm"], *(e for k, e in out["block_top"].as_dict().items() if not own[k])]:
            assert np.isnan(float(e.value))
        assert not np.isfinite(float(out["trace"].trace)) and not np.isfinite(float(out["l11"].value))
        # the finite blocks are the exact block spectra of the dense H_bb
        for k, s in out["blocks"].as_dict().items():
            if own[k]:
                h = np.asarray(jax.hessian(lambda x, k=k: bad({**params, k: x}, batch))(params[k]))
                h = h.reshape(np.size(params[k]), -1)
                lo, hi = np.linalg.eigvalsh(h)[[0, -1]]
                assert lo - 1e-8 <= float(np.min(s.nodes)) and float(np.max(s.nodes)) <= hi + 1e-8
        assert out["slq"].finite.dtype == jnp.bool_


def test_nan_loss_value_with_finite_hessian_is_fine():
    """A NaN *constant* in the loss leaves the gradient and Hessian finite: a correct result."""
    with jax.enable_x64(True):
        loss_fn, params, batch = _model()
        nan_loss = lambda p, b: loss_fn(p, b) + jnp.sqrt(jnp.asarray(-1.0))  # noqa: E731
        assert np.isnan(float(nan_loss(params, batch)))
        h = _dense(loss_fn, params, batch)
        out, _ = _all_estimators(nan_loss, params, batch, jax.random.key(0), num_steps=h.shape[0], probes=2)
        assert all(_finite_flags(out))
        np.testing.assert_allclose(out["top"].value, np.linalg.eigvalsh(h).max(), rtol=1e-10)


def test_each_block_carries_its_own_flag():
    """NaN only in the data that block ``b`` sees: ``a`` stays finite and exact, ``b`` is flagged."""
    with jax.enable_x64(True):
        params = {"a": jnp.asarray([1.0, -2.0, 0.5]), "b": jnp.asarray([0.3, 0.7])}
        batch = {"c": jnp.asarray([1.0, 2.0, 3.0]), "z": jnp.asarray(jnp.nan)}

        def loss_fn(p, b):
            return jnp.sum(b["c"] * p["a"] ** 2) + b["z"] * jnp.sum(p["b"] ** 2)

        part = hp.by_leaf(params)
        spectra = jax.jit(lambda p, x, k: hc.blockwise_slq(loss_fn, p, x, k, partition=part, num_steps=5,
                                                           num_probes=2))(params, batch, jax.random.key(0))
        assert bool(spectra.block("a").finite) and not bool(spectra.block("b").finite)
        live = np.asarray(spectra.block("a").nodes)[np.asarray(spectra.block("a").weights) > 1e-10]
        eig = np.linalg.eigvalsh(np.diag(2 * np.asarray(batch["c"])))  # H_aa = diag(2c)
        assert np.all(np.min(np.abs(live[:, None] - eig[None]), axis=1) < 1e-10)
        tops = hc.blockwise_top_eigenvalue(loss_fn, params, batch, jax.random.key(1), partition=part, num_steps=5)
        assert bool(tops.block("a").finite) and not bool(tops.block("b").finite)
        np.testing.assert_allclose(tops.block("a").value, 6.0, rtol=1e-12)


def test_fault_mid_run_keeps_the_finite_prefix():
    """An operator that turns NaN once the Krylov space reaches coordinate 5: the run freezes
    after 5 steps; the recorded T is exactly that of the 5 finite steps (dense reference:
    from e_0 on a tridiagonal A, T_5 = A[:5, :5] up to signs)."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(4)
        d = 9
        diag, off = rng.normal(size=d), rng.uniform(0.5, 1.5, size=d - 1)
        a = np.diag(diag) + np.diag(off, 1) + np.diag(off, -1)
        aj = jnp.asarray(a)
        mv = lambda x: jnp.where(x[5] != 0, jnp.nan, 1.0) * (aj @ x)  # noqa: E731
        e0 = jnp.zeros(d).at[0].set(1.0)
        for reortho in ("full", "none"):
            res = jax.jit(lambda v: hc.lanczos(mv, v, 8, reortho=reortho))(e0)
            assert int(res.size) == 5 and not bool(res.finite)
            np.testing.assert_allclose(res.diag[:5], diag[:5], rtol=1e-12)
            np.testing.assert_allclose(np.abs(res.offdiag[:4]), off[:4], rtol=1e-12)
            np.testing.assert_array_equal(res.diag[5:], 0.0)
            np.testing.assert_array_equal(res.offdiag[4:], 0.0)
            np.testing.assert_allclose(abs(float(res.residual)), off[4], rtol=1e-12)  # β of the last finite step
            nodes, weights = hc.gauss_quadrature(res)
            np.testing.assert_allclose(nodes[:5], np.linalg.eigvalsh(a[:5, :5]), rtol=1e-10, atol=1e-12)
            np.testing.assert_array_equal(weights[5:], 0.0)
            np.testing.assert_allclose(np.sum(weights), 1.0, rtol=1e-12)
        top = hc.top_eigenvalue(mv, jnp.zeros(d), jax.random.key(0), num_steps=8)
        assert not bool(top.finite)  # a Gaussian start has x[5] != 0: the first HVP is NaN
        assert np.isnan(float(top.value))


def test_nonfinite_start_vector():
    with jax.enable_x64(True):
        a = jnp.asarray(np.diag(np.arange(1.0, 5.0)))
        for bad in (np.nan, np.inf):
            res = hc.lanczos(lambda x: a @ x, jnp.asarray([1.0, bad, 0.0, 1.0]), 3)
            assert int(res.size) == 0 and not bool(res.finite)
            assert np.all(np.isfinite(res.diag)) and np.all(np.isfinite(res.offdiag))
            assert np.all(np.isnan(hc.gauss_quadrature(res)[0]))


def test_default_finite_field_keeps_positional_construction():
    s = hc.Spectrum(jnp.zeros((1, 3)), jnp.asarray([[1.0, 0, 0]]))
    assert s.finite is True and len(hc.Spectrum._fields) == 3 and hc.Spectrum._fields[-1] == "finite"
    for cls in (hc.EigenEstimate, hc.TraceEstimate, hc.L11Estimate, hc.LanczosResult):
        assert cls._fields[-1] == "finite" and cls._field_defaults["finite"] is True
    assert hc.EigenEstimate(1.0, 0.0).finite is True
    res = hc.LanczosResult(jnp.zeros(2), jnp.zeros(1), jnp.zeros(()), jnp.asarray(2))
    assert res.basis is None and res.finite is True


# ----------------------------------------------------------------------------- errors naming the argument
def test_num_steps_must_be_a_positive_int():
    loss_fn, params, batch = _model()
    mv = hc.linearized_hvp(loss_fn, params, batch)
    part, k = hp.by_leaf(params), jax.random.key(0)
    calls = [
        lambda n: hc.slq(mv, params, k, num_steps=n),
        lambda n: hc.lanczos(mv, params, n),
        lambda n: hc.top_eigenvalue(mv, params, k, num_steps=n),
        lambda n: hc.spectral_norm(mv, params, k, num_steps=n),
        lambda n: hc.blockwise_slq(loss_fn, params, batch, k, partition=part, num_steps=n),
        lambda n: hc.blockwise_top_eigenvalue(loss_fn, params, batch, k, partition=part, num_steps=n),
    ]
    for call in calls:
        for n in (0, -3, 2.5, True, None):
            with pytest.raises(ValueError, match="num_steps"):
                call(n)


def test_num_probes_batch_size_probe_and_reortho_are_checked():
    loss_fn, params, batch = _model()
    mv = hc.linearized_hvp(loss_fn, params, batch)
    part, k = hp.by_leaf(params), jax.random.key(0)
    probe_calls = [
        lambda **kw: hc.slq(mv, params, k, num_steps=3, **kw),
        lambda **kw: hc.blockwise_slq(loss_fn, params, batch, k, partition=part, num_steps=3, **kw),
        lambda **kw: hc.hutchinson_trace(mv, params, k, **kw),
        lambda **kw: hc.l11_norm(mv, params, k, **kw),
        lambda **kw: hc.blockwise_l11_norm_matvec(mv, params, k, partition=part, **kw),
        lambda **kw: hc.blockwise_l11_norm_matvec(mv, params, k, partition=part, diagonal=True, **kw),
    ]
    for call in probe_calls:
        for n in (0, -1, 2.0, True, "3"):
            with pytest.raises(ValueError, match="num_probes"):
                call(num_probes=n)
        for b in (0, -2, 1.5, True):
            with pytest.raises(ValueError, match="batch_size"):
                call(num_probes=2, batch_size=b)
    assert hc.slq(mv, params, k, num_steps=2, num_probes=np.int64(2)).nodes.shape == (2, 2)  # numpy ints are fine
    for call in probe_calls[:2]:
        with pytest.raises(ValueError, match="probe must be one of"):
            call(num_probes=2, probe="gauss")
        with pytest.raises(ValueError, match="reortho must be one of"):
            call(num_probes=2, reortho="partial")
    for call in (lambda r: hc.top_eigenvalue(mv, params, k, num_steps=3, reortho=r),
                 lambda r: hc.lanczos(mv, params, 3, reortho=r),
                 lambda r: hc.blockwise_top_eigenvalue(loss_fn, params, batch, k, partition=part, reortho=r)):
        for r in ("partial", None, ["full"]):
            with pytest.raises(ValueError, match="reortho must be one of"):
                call(r)


def test_hvp_tangent_of_the_wrong_shape_or_structure():
    loss_fn, params, batch = _model()
    good = jax.tree.map(jnp.ones_like, params)
    wrong_shape = dict(good, w=jnp.ones((2, 3)))
    mv = hc.linearized_hvp(loss_fn, params, batch)
    for call in (lambda t: hc.hvp(loss_fn, params, batch, t), mv,
                 lambda t: hc.hvp(loss_fn, params, hc.microbatch(batch, 2), t)):
        with pytest.raises(ValueError, match=r"tangent leaf \['w'\] has shape \(2, 3\).*params leaf has shape \(3, 2\)"):
            call(wrong_shape)
        with pytest.raises(ValueError, match="tangent must have the structure of params"):
            call({"b": good["b"], "w": good["w"]})
        with pytest.raises(ValueError, match="tangent must have the structure of params"):
            call([good["b"], good["s"], good["w"]])
    with jax.enable_x64(True):  # and the right tangent gives H·t (dense reference)
        loss_fn, params, batch = _model()
        h = _dense(loss_fn, params, batch)
        t = jax.tree.map(jnp.ones_like, params)
        np.testing.assert_allclose(ravel(hc.hvp(loss_fn, params, batch, t))[0], h @ np.ones(h.shape[0]),
                                   rtol=1e-12)


def test_integer_params_raise_naming_the_leaf():
    loss_fn, params, batch = _model()
    bad = dict(params, n=jnp.asarray([1, 2], jnp.int32))
    f = lambda p, b: loss_fn({k: p[k] for k in ("b", "s", "w")}, b) + jnp.sum(p["n"])  # noqa: E731
    part = hp.by_leaf(bad)
    t = jax.tree.map(jnp.zeros_like, bad)
    calls = [
        lambda: hc.hvp(f, bad, batch, t),
        lambda: hc.linearized_hvp(f, bad, batch),
        lambda: hc.linearized_hvp(f, bad, hc.microbatch(batch, 2)),
        lambda: hc.dense_hessian(f, bad, batch),
        lambda: hc.blockwise_slq(f, bad, batch, jax.random.key(0), partition=part, num_steps=3),
        lambda: hc.blockwise_top_eigenvalue(f, bad, batch, jax.random.key(0), partition=part, num_steps=3),
        lambda: jax.jit(lambda p: hc.linearized_hvp(f, p, batch)(p))(bad),  # at trace time under jit too
    ]
    for call in calls:
        with pytest.raises(ValueError, match=r"params leaf \['n'\] has dtype int32"):
            call()
    # matvec-based estimators: the vectors (`like`) must be floating
    for call in (lambda: hc.slq(lambda x: x, bad, jax.random.key(0), num_steps=2),
                 lambda: hc.top_eigenvalue(lambda x: x, bad, jax.random.key(0)),
                 lambda: hc.hutchinson_trace(lambda x: x, bad, jax.random.key(0)),
                 lambda: hc.l11_norm(lambda x: x, bad, jax.random.key(0))):
        with pytest.raises(ValueError, match=r"like leaf 'n' has dtype int32"):
            call()
