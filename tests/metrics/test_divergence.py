"""Tests for spectrum divergences and JS⁰ [Zhang24, §2.3, §2.6] against SciPy and closed forms."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.spatial.distance
import scipy.stats

from heterogeneity import curvature as hc
from heterogeneity import metrics as hm

LN2 = np.log(2.0)


def gauss(t, mu, s):
    return scipy.stats.norm.pdf(t, mu, s)


def test_js_distance_matches_scipy():
    rng = np.random.default_rng(0)
    p, q = rng.random((4, 300)), rng.random((4, 300)) ** 3
    p[0, :5] = 0.0  # zeros are handled (0 log 0 = 0)
    ref = [scipy.spatial.distance.jensenshannon(a, b) for a, b in zip(p, q)]
    np.testing.assert_allclose(hm.js_distance(jnp.asarray(p), jnp.asarray(q)), ref, rtol=1e-5)
    np.testing.assert_allclose(hm.js_divergence(jnp.asarray(p), jnp.asarray(q)), np.square(ref), rtol=1e-5)
    # along another axis
    np.testing.assert_allclose(hm.js_distance(jnp.asarray(p.T), jnp.asarray(q.T), axis=0), ref, rtol=1e-5)


def test_js_properties():
    rng = np.random.default_rng(1)
    p, q = jnp.asarray(rng.random(50)), jnp.asarray(rng.random(50) ** 4)
    assert float(hm.js_distance(p, q)) == pytest.approx(float(hm.js_distance(q, p)), rel=1e-6)
    assert float(hm.js_divergence(p, 3.0 * p)) == pytest.approx(0.0, abs=1e-7)  # identical after normalisation
    assert 0.0 < float(hm.js_divergence(p, q)) <= LN2
    disjoint = hm.js_divergence(jnp.asarray([1.0, 0, 0]), jnp.asarray([0, 0, 1.0]))
    assert float(disjoint) == pytest.approx(LN2, rel=1e-6)
    assert float(hm.js_distance(jnp.asarray([1.0, 0]), jnp.asarray([0, 1.0]))) <= np.sqrt(LN2) + 1e-7
    batched = hm.js_distance(jnp.stack([p, q]), jnp.stack([q, q]))
    np.testing.assert_allclose(batched, [hm.js_distance(p, q), 0.0], atol=1e-6)


def test_js_of_gaussians_against_quadrature():
    with jax.enable_x64(True):
        t = np.linspace(-12, 14, 20001)
        # far apart narrow Gaussians: JS -> ln 2
        far = hm.js_divergence(jnp.asarray(gauss(t, 0, 0.1)), jnp.asarray(gauss(t, 10, 0.1)))
        assert float(far) == pytest.approx(LN2, rel=1e-9)
        # overlapping Gaussians: compare with the integral by adaptive quadrature
        p, q = (lambda x: gauss(x, 0, 1)), (lambda x: gauss(x, 1.3, 0.7))

        def integrand(x):
            m = 0.5 * (p(x) + q(x))
            return 0.5 * p(x) * np.log(p(x) / m) + 0.5 * q(x) * np.log(q(x) / m)

        ref = scipy.integrate.quad(integrand, -12, 14, limit=200)[0]
        got = hm.js_divergence(jnp.asarray(p(t)), jnp.asarray(q(t)))
        assert float(got) == pytest.approx(ref, rel=1e-6)


def test_symmetric_kl_gaussian_closed_form():
    with jax.enable_x64(True):
        t = np.linspace(-15, 15, 20001)
        dx = t[1] - t[0]
        for (m1, s1, m2, s2) in [(0.0, 1.0, 0.5, 1.5), (0.0, 0.5, 2.0, 0.5), (1.0, 2.0, 1.0, 1.0)]:
            closed = (s1**2 - s2**2) ** 2 / (2 * s1**2 * s2**2) + (m1 - m2) ** 2 * (1 / s1**2 + 1 / s2**2) / 2
            got = hm.symmetric_kl(jnp.asarray(gauss(t, m1, s1)), jnp.asarray(gauss(t, m2, s2)), dx=dx, floor=1e-300)
            assert float(got) == pytest.approx(closed, rel=1e-6)
            # ... equals KL(p‖q) + KL(q‖p)
            kl = hm.kl_divergence(jnp.asarray(gauss(t, m1, s1)), jnp.asarray(gauss(t, m2, s2))) + \
                hm.kl_divergence(jnp.asarray(gauss(t, m2, s2)), jnp.asarray(gauss(t, m1, s1)))
            assert float(kl) == pytest.approx(closed, rel=1e-6)
        # disjoint supports: finite thanks to the floor, and larger for a smaller floor
        a, b = jnp.asarray(gauss(t, -8, 0.05)), jnp.asarray(gauss(t, 8, 0.05))
        big = hm.symmetric_kl(a, b, dx=dx, floor=1e-30)
        small = hm.symmetric_kl(a, b, dx=dx, floor=1e-6)
        assert np.isfinite(big) and float(big) > float(small) > LN2


def test_densities_match_numpy_and_curvature_density():
    from heterogeneity import curvature as hc

    rng = np.random.default_rng(2)
    nodes = rng.normal(size=(2, 3, 7))  # 2 blocks x (3 probes, 7 steps)
    weights = rng.random((2, 3, 7))
    weights /= weights.sum(-1, keepdims=True)
    with jax.enable_x64(True):
        spectra = {f"b{i}": hc.Spectrum(jnp.asarray(nodes[i]), jnp.asarray(weights[i])) for i in range(2)}
        out = hm.spectrum_divergence(spectra, mode="bounded", sigma=0.2)
        grid = np.asarray(out.grid)
        for i, s in enumerate(spectra.values()):
            ref = (weights[i][:, :, None] * gauss(grid[None, None, :], nodes[i][:, :, None], 0.2)).sum(1).mean(0)
            ref /= ref.sum() * (grid[1] - grid[0])
            np.testing.assert_allclose(out.densities[i], ref, rtol=1e-9, atol=1e-14)
            cd = hc.density(s, out.grid, sigma=0.2).values
            np.testing.assert_allclose(out.densities[i], cd / (jnp.sum(cd) * (grid[1] - grid[0])), rtol=1e-9, atol=1e-14)
        assert float(out.sigma) == 0.2 and out.labels == ("b0", "b1")
        lo, hi = nodes.min(), nodes.max()
        assert grid[0] == pytest.approx(lo - 1.0) and grid[-1] == pytest.approx(hi + 1.0)  # ± 5σ


def _spec(nodes, weights=None):
    nodes = jnp.asarray(np.asarray(nodes, np.float64))[None]  # float64 under enable_x64, else float32
    w = jnp.full_like(nodes, 1.0 / nodes.shape[1]) if weights is None else jnp.asarray(np.asarray(weights))[None]
    return nodes, w


def test_paper_mode_closed_form():
    """Paper mode = symmetric KL of σ² = 1e-5 blurs: two single eigenvalues Δ apart give Δ²/σ²."""
    with jax.enable_x64(True):
        out = hm.spectrum_divergence({"a": _spec([0.0]), "b": _spec([0.005]), "c": _spec([0.002])}, mode="paper")
        expected = np.array([[0, 0.005**2, 0.002**2], [0.005**2, 0, 0.003**2], [0.002**2, 0.003**2, 0]]) / 1e-5
        np.testing.assert_allclose(out.matrix, expected, rtol=1e-6, atol=1e-12)
        assert float(out.mean) == pytest.approx(expected[np.triu_indices(3, 1)].mean(), rel=1e-6)
        assert out.labels == ("a", "b", "c") and out.grid.shape == (50_000,)
        dx = float(out.grid[1] - out.grid[0])
        np.testing.assert_allclose(out.densities.sum(1) * dx, 1.0, rtol=1e-9)
        # unbounded: far-apart blocks exceed ln 2 by orders of magnitude (as Table 1's 286)
        far = hm.spectrum_divergence([_spec([0.0]), _spec([5.0]), _spec([10.0])], mode="paper")
        assert float(far.mean) > 20.0


def test_bounded_and_scale_normalized_modes():
    with jax.enable_x64(True):
        base = [0.1, 0.35, 1.0]  # 3 blocks x 3 nodes: the shapes of the next test (compiled once)
        spectra = {"x": _spec(base), "x_scaled": _spec(100 * np.asarray(base)), "y": _spec([-0.4, 0.2, 1.0])}
        bounded = hm.spectrum_divergence(spectra, mode="bounded")
        assert bool(jnp.all(bounded.matrix <= np.sqrt(LN2) + 1e-9)) and bool(jnp.all(bounded.matrix >= 0))
        assert float(bounded.matrix[0, 1]) > 0.8  # scales differ by 100x: nearly disjoint densities
        shape = hm.spectrum_divergence(spectra, mode="scale_normalized")
        assert float(shape.matrix[0, 1]) == pytest.approx(0.0, abs=1e-6)  # same shape
        assert float(shape.matrix[0, 2]) > 0.3
        np.testing.assert_allclose(shape.scales, [1.0, 100.0, 1.0], rtol=1e-12)
        rms = hm.spectrum_divergence(spectra, mode="scale_normalized", scale="rms")
        assert float(rms.matrix[0, 1]) == pytest.approx(0.0, abs=1e-6)
        np.testing.assert_allclose(rms.scales[0], np.sqrt(np.mean(np.square(base))), rtol=1e-12)
        np.testing.assert_allclose(hm.spectral_scale(spectra["y"], scale="rms"), np.sqrt(np.mean([0.16, 0.04, 1.0])))
        assert float(hm.spectral_scale(spectra["y"])) == 1.0
        # the matrix is the pairwise JS distance (SciPy) of the returned densities; JS⁰ its pair mean
        d = np.asarray(bounded.densities)
        direct = np.array([[scipy.spatial.distance.jensenshannon(d[i], d[j]) for j in range(3)] for i in range(3)])
        np.testing.assert_allclose(bounded.matrix, direct, atol=1e-9)
        assert float(bounded.mean) == pytest.approx(direct[np.triu_indices(3, 1)].mean(), rel=1e-12)


def test_block_heterogeneity_ordering_seed001_cases():
    """[Zhang24, §3.1]: heterogeneous block spectra have a larger JS⁰ than homogeneous ones."""
    homo = [[1, 99, 4998], [2, 100, 4999], [3, 101, 5000]]
    hetero = [[1, 2, 3], [99, 100, 101], [4998, 4999, 5000]]
    with jax.enable_x64(True):
        for mode in ("bounded", "scale_normalized"):
            a = hm.spectrum_divergence([_spec(b) for b in homo], mode=mode).mean
            b = hm.spectrum_divergence([_spec(b) for b in hetero], mode=mode).mean
            assert float(b) > 10 * float(a), mode


def test_pairwise_helpers_and_validation():
    d = np.random.default_rng(3).random((4, 30))
    mat = np.asarray(hm.pairwise_divergence(jnp.asarray(d), kind="js"))
    np.testing.assert_allclose(np.diag(mat), 0.0)
    np.testing.assert_allclose(mat, mat.T)
    np.testing.assert_allclose(mat[1, 3], scipy.spatial.distance.jensenshannon(d[1], d[3]) ** 2, rtol=1e-5)
    assert float(hm.mean_offdiagonal(mat)) == pytest.approx(float(np.asarray(mat)[np.triu_indices(4, 1)].mean()))
    with pytest.raises(ValueError, match="kind"):
        hm.pairwise_divergence(d, kind="hellinger")
    with pytest.raises(ValueError, match="mode"):
        hm.spectrum_divergence([_spec([1.0]), _spec([2.0])], mode="nope")
    with pytest.raises(ValueError, match="at least two"):
        hm.spectrum_divergence({"a": _spec([1.0])})
    with pytest.raises(ValueError, match="nodes and .weights"):
        hm.spectrum_divergence({"a": 1.0, "b": 2.0})


def _numpy_js0(spectra, mode):
    """JS⁰ from its docstring formula, in float64 NumPy: probe-averaged weights, zero weights
    ignored, one shared grid, unit-integral Gaussian blurs, mean over pairs b < b'."""
    xs, ws = [], []
    for nodes, weights in spectra:
        nodes, weights = np.asarray(nodes, np.float64), np.asarray(weights, np.float64)
        xs.append(nodes.ravel())
        ws.append(weights.ravel() / nodes.shape[0])
    live = [w > 0 for w in ws]
    if mode == "scale_normalized":
        xs = [x / np.abs(x[lv]).max() for x, lv in zip(xs, live)]
    pooled = np.concatenate([x[lv] for x, lv in zip(xs, live)])
    lo, hi = pooled.min(), pooled.max()
    sigma = {"bounded": 0.01 * (hi - lo), "paper": np.sqrt(1e-5), "scale_normalized": 0.02}[mode]
    pad = 1.0 if mode == "paper" else 5 * sigma
    grid = np.linspace(lo - pad, hi + pad, 50_000 if mode == "paper" else 2048)
    dx = grid[1] - grid[0]
    dens = []
    for x, w, lv in zip(xs, ws, live):
        d = np.exp(-0.5 * ((grid[:, None] - x[lv][None]) / sigma) ** 2) @ w[lv] / (np.sqrt(2 * np.pi) * sigma)
        dens.append(d / (d.sum() * dx))

    def kl(a, b):
        pos = a >= 4 * np.finfo(np.float64).tiny  # masses below ~1e-307 count as 0 (no 0/0 from underflow)
        return np.sum(a[pos] * np.log(a[pos] / b[pos]))

    def dist(p, q):
        if mode == "paper":  # Jeffreys with the 1e-12 density floor
            p, q = p + 1e-12, q + 1e-12
            p, q = p / p.sum(), q / q.sum()
            return kl(p, q) + kl(q, p)
        p, q = p / p.sum(), q / q.sum()
        m = 0.5 * (p + q)
        return np.sqrt(0.5 * kl(p, m) + 0.5 * kl(q, m))

    b = len(dens)
    return np.mean([dist(dens[i], dens[j]) for i in range(b) for j in range(i + 1, b)])


def _four_spectra(rng):
    out = []
    for scale in (1.0, 1.3, 0.4, 2.0):
        nodes = np.sort(scale * rng.normal(1.0, 0.5, size=(2, 5)), axis=1)
        weights = rng.dirichlet(np.ones(5), size=2)
        weights[1, 4] = 0.0  # a zero-weight padding step (its node must be ignored)
        nodes[1, 4] = 1e4
        weights[1] /= weights[1].sum()
        out.append((nodes, weights))
    return out


@pytest.mark.parametrize("mode", ["bounded", "paper", "scale_normalized"])
def test_js0_matches_numpy_float64(mode):
    spectra = _four_spectra(np.random.default_rng(0))
    want = _numpy_js0(spectra, mode)
    with jax.enable_x64(True):
        as_dict = {f"b{i}": hc.Spectrum(jnp.asarray(n), jnp.asarray(w)) for i, (n, w) in enumerate(spectra)}
        got = hm.js0(as_dict, mode=mode)
        assert got.dtype == jnp.float64 and got.shape == ()
        np.testing.assert_allclose(float(got), want, rtol=1e-8)
        assert float(got) == float(hm.spectrum_divergence(as_dict, mode=mode).mean)
        # a stacked BlockwiseSpectrum (what blockwise_slq returns) gives the same number
        stacked = hc.BlockwiseSpectrum(jnp.stack([jnp.asarray(n) for n, _ in spectra]),
                                       jnp.stack([jnp.asarray(w) for _, w in spectra]),
                                       jnp.ones(4, bool), tuple(as_dict))
        np.testing.assert_allclose(float(hm.js0(stacked, mode=mode)), float(got), rtol=1e-12)
        assert hm.spectrum_divergence(stacked, mode=mode).labels == tuple(as_dict)
    got32 = hm.js0([hc.Spectrum(jnp.asarray(n, jnp.float32), jnp.asarray(w, jnp.float32)) for n, w in spectra],
                   mode=mode)
    np.testing.assert_allclose(float(got32), want, rtol=1e-3)  # float32 blur and logs of a 2048-50 000 point grid
    if mode != "paper":
        assert 0.0 < want <= np.sqrt(np.log(2))


def test_js0_rejects_bad_input():
    one = hc.Spectrum(jnp.ones((1, 2)), jnp.full((1, 2), 0.5))
    with pytest.raises(ValueError, match="at least two block spectra"):
        hm.js0({"a": one})
    with pytest.raises(ValueError, match="mode must be"):
        hm.js0({"a": one, "b": one}, mode="js")
    with pytest.raises(ValueError, match="BlockwiseSpectrum"):
        hm.js0(hc.BlockwiseNorms(jnp.ones(2), jnp.ones(2, bool), ("a", "b")))
