"""Scale validation of `metrics.spectrum_divergence` (JS⁰) against NumPy float64, 2–150 blocks.

jax 0.10.2 miscompiled jitted Gaussian sums over more than 16 rows, so JS⁰ was wrong from
17 blocks on while the unit tests (2–6 blocks) passed. Here every mode is compared with an
independent float64 reimplementation of its docstring (`scale_reference.ref_spectrum_divergence`)
at the block counts users run: 2, 16, 17 (the first broken size), 37, 64, 150, with unequal
(num_probes, num_steps) per block and zero-weight padding nodes (some far-away junk that
must not widen the grid). The matrix, its pair mean JS⁰, the grid, σ, the scales and the
densities are all compared, in float32 (what users run) and under ``jax.enable_x64(True)``
with float64 inputs (tighter tolerances).

Tolerances (float32 library vs float64 reference; inputs are exactly float32-representable,
so all differences are rounding inside the library):

* grid: `linspace` in float32 is exact to a few ulp of the largest |grid point|: 16·eps·max|t|.
* densities: a float32 grid point is off by up to ~ulp(max|t|), which shifts the Gaussian
  argument z = (t − λ)/σ by δz = eps·max|t|/σ (6e-4 in paper mode: σ = 3.2e-3, |t| ≲ 16;
  ≲ 1e-5 in the other modes), and a Gaussian moves by at most ~δz of its peak; the unit
  integral normalisation adds a few eps. Tolerance (10·δz + 1e-4)·max density.
* JS distance modes: the matrix is compared as JS divergence (its square), since √ turns
  float32 noise of ~1e-8 in a vanishing divergence (identical shapes) into 1e-4; the
  divergence is a sum of 2048 terms p log(p/m) with p ~ 1/2048, accurate to ~1e-7 absolute
  plus the density error above (relative ≲ 2e-5 in practice): rtol 1e-4, atol 2e-6.
* paper mode (symmetric KL of values 8–64): the grid-shift errors are smooth and nearly
  cancel in the integral (observed ≲ 2e-5 relative): rtol 1e-3.
* float64: the same formulas with eps64 (rtol 1e-9 on the matrices).

The miscompile this tier guards against gave 50–100% errors: every tolerance is far below it.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.spatial.distance

from scale_reference import LN2, js_distance_matrix, random_spectra, ref_spectrum_divergence
from heterogeneity import curvature as hc
from heterogeneity import metrics as hm

BLOCKS = [2, 16, 17, 37, 64, 150]
DISTANCE_CASES = [("bounded", "max"), ("bounded", "rms"), ("scale_normalized", "max"), ("scale_normalized", "rms")]
EPS = {np.float32: float(np.finfo(np.float32).eps), np.float64: float(np.finfo(np.float64).eps)}


def _inputs(num_blocks, dtype, *, as_pairs=False):
    """(reference spectra, library input): a dict label -> Spectrum in a non-sorted label order
    (or a list of (nodes, weights) pairs), in ``dtype``."""
    ref = random_spectra(num_blocks, seed=1000 + num_blocks)
    labels = [f"z{num_blocks - i:03d}/w" for i in range(num_blocks)]  # reverse-sorted: order must be kept
    if as_pairs:
        lib = [(jnp.asarray(n, dtype), jnp.asarray(w, dtype)) for n, w in ref]
        labels = [str(i) for i in range(num_blocks)]
    else:
        lib = {label: hc.Spectrum(nodes=jnp.asarray(n, dtype), weights=jnp.asarray(w, dtype))
               for label, (n, w) in zip(labels, ref)}
    return ref, lib, tuple(labels)


def _compare(out, ref, labels, mode, dtype):
    eps = EPS[dtype]
    b = len(labels)
    assert out.labels == labels
    assert out.matrix.dtype == dtype and out.densities.dtype == dtype
    grid, dens, mat = (np.asarray(x, np.float64) for x in (out.grid, out.densities, out.matrix))
    tmax = np.abs(ref["grid"]).max()
    np.testing.assert_allclose(float(out.sigma), ref["sigma"], rtol=8 * eps)
    np.testing.assert_allclose(np.asarray(out.scales, np.float64), ref["scales"], rtol=8 * eps)
    assert grid.shape == ref["grid"].shape
    np.testing.assert_allclose(grid, ref["grid"], rtol=0, atol=16 * eps * tmax)
    dz = eps * tmax / ref["sigma"]
    peak = ref["densities"].max()
    np.testing.assert_allclose(dens, ref["densities"], rtol=0, atol=(10 * dz + (1e-4 if dtype == np.float32 else 1e-11))
                               * peak)
    # structure: symmetric, exact zero diagonal
    np.testing.assert_array_equal(np.diag(mat), np.zeros(b))
    np.testing.assert_allclose(mat, mat.T, rtol=0, atol=0)
    if mode == "paper":
        rtol = 1e-3 if dtype == np.float32 else 1e-9
        np.testing.assert_allclose(mat, ref["matrix"], rtol=rtol, atol=rtol)
        np.testing.assert_allclose(float(out.mean), ref["mean"], rtol=rtol)
        # unit integral on the grid (the paper convention), to the rounding of a 50 000-term sum
        np.testing.assert_allclose(dens.sum(1) * (grid[1] - grid[0]), 1.0, rtol=len(grid) * eps)
    else:
        rtol, atol = (1e-4, 2e-6) if dtype == np.float32 else (1e-9, 1e-13)
        np.testing.assert_allclose(mat**2, ref["matrix"] ** 2, rtol=rtol, atol=atol)
        far = ref["matrix"] > 0.05
        np.testing.assert_allclose(mat[far], ref["matrix"][far], rtol=rtol)
        np.testing.assert_allclose(float(out.mean), ref["mean"], rtol=rtol)
        assert mat.max() <= np.sqrt(LN2) * (1 + 4 * eps) and mat.min() >= 0
    iu = np.triu_indices(b, 1)
    np.testing.assert_allclose(float(out.mean), mat[iu].mean(), rtol=1e2 * eps)  # JS⁰ = pair mean of the matrix


def _scipy_js_distance(dens):
    """SciPy's `jensenshannon` between all rows. Subnormal masses are flushed to 0 first: SciPy
    gives inf for p = 5e-324, q = 0 (m = p/2 rounds to 0); dropping masses < 1e-300 moves the
    divergence by < 1e-297."""
    d = np.where(dens >= 1e-300, dens, 0.0)
    out = np.stack([scipy.spatial.distance.jensenshannon(d[i][None], d, axis=1) for i in range(len(d))])
    np.fill_diagonal(out, 0.0)
    return out


def test_reference_js_distance_is_scipy():
    """The NumPy reference JS distance is scipy's `jensenshannon` (natural log)."""
    d = ref_spectrum_divergence(random_spectra(9, seed=5), mode="bounded")["densities"]
    np.testing.assert_allclose(js_distance_matrix(d), _scipy_js_distance(d), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("num_blocks", BLOCKS)
def test_distance_modes_float32_match_numpy(num_blocks):
    ref_spectra, lib, labels = _inputs(num_blocks, jnp.float32)
    for mode, scale in DISTANCE_CASES:
        ref = ref_spectrum_divergence(ref_spectra, mode=mode, scale=scale)
        out = hm.spectrum_divergence(lib, mode=mode, scale=scale)
        _compare(out, ref, labels, mode, np.float32)
        if mode == "bounded":  # second reference: SciPy on the reference densities
            sp = _scipy_js_distance(ref["densities"])
            np.testing.assert_allclose(np.asarray(out.matrix, np.float64) ** 2, sp**2, rtol=1e-4, atol=2e-6)


@pytest.mark.parametrize("num_blocks", [2, 16, 17, 37, 64, pytest.param(150, marks=pytest.mark.slow)])
def test_paper_mode_float32_matches_numpy(num_blocks):
    ref_spectra, lib, labels = _inputs(num_blocks, jnp.float32)
    out = hm.spectrum_divergence(lib, mode="paper")
    assert out.grid.shape == (50_000,)
    _compare(out, ref_spectrum_divergence(ref_spectra, mode="paper"), labels, "paper", np.float32)


@pytest.mark.parametrize("num_blocks", [2, 17, 64, pytest.param(150, marks=pytest.mark.slow)])
def test_every_mode_float64_matches_numpy(num_blocks):
    with jax.enable_x64(True):
        ref_spectra, lib, labels = _inputs(num_blocks, jnp.float64)
        for mode, scale in DISTANCE_CASES + [("paper", "max")]:
            out = hm.spectrum_divergence(lib, mode=mode, scale=scale)
            _compare(out, ref_spectrum_divergence(ref_spectra, mode=mode, scale=scale), labels, mode, np.float64)


def test_list_input_and_overrides_at_37_blocks():
    """A list of (nodes, weights) pairs, a user σ and grid size: same numbers as the reference."""
    ref_spectra, lib, labels = _inputs(37, jnp.float32, as_pairs=True)
    for mode, sigma, g in [("bounded", 0.05, 1000), ("scale_normalized", 0.1, 1000), ("paper", 0.01, 20_000)]:
        out = hm.spectrum_divergence(lib, mode=mode, sigma=sigma, num_grid=g)
        _compare(out, ref_spectrum_divergence(ref_spectra, mode=mode, sigma=sigma, num_grid=g), labels, mode,
                 np.float32)


def test_one_block_is_a_clear_error():
    (nodes, weights), = random_spectra(1, seed=0)
    spec = hc.Spectrum(nodes=jnp.asarray(nodes, jnp.float32), weights=jnp.asarray(weights, jnp.float32))
    for mode in ("bounded", "paper", "scale_normalized"):
        with pytest.raises(ValueError, match="at least two block spectra"):
            hm.spectrum_divergence({"only": spec}, mode=mode)
        with pytest.raises(ValueError, match="at least two block spectra"):
            hm.spectrum_divergence([spec], mode=mode)
    with pytest.raises(ValueError, match=">= 2 rows"):
        hm.mean_offdiagonal(jnp.zeros((1, 1)))
