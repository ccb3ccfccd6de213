"""The report's JS⁰ at ≥ 17 blocks, read back from report.json and recomputed in float64 NumPy.

jax 0.10.2 miscompiled the jitted Gaussian-sum densities of `metrics.spectrum_divergence` from
17 blocks on, and the default report's JS⁰ was silently wrong while the report tests (4 blocks)
passed. Here `experiment.report` runs on a 20-block model into a temporary directory, and every
JS mode report.json stores is recomputed from the per-block spectra report.json stores (nodes
and weights, exactly the float32 values the library used) by `scale_reference.
ref_spectrum_divergence`, an independent float64 NumPy reimplementation of the docstrings of
`heterogeneity/metrics/_divergence.py` (grid, σ, densities, JS-distance / symmetric-KL matrix,
JS⁰ = mean over pairs i < j). The other numbers the report derives from quantities it stores
(gradient shares, Gini, layer ratios, block Hessian norms, Λ_G, Λ_P, the correlations, the
geometry ratios, the number of votes) are recomputed from the JSON too, and
`scripts/js_from_report.py` is run on the same report.json.

Model (`_model`): a tanh network on 20 input features whose first weight matrix ``layers/0/w``
(20, 3) is cut into its 20 rows (one `Split` group: 20 blocks of size 3, each exact after 8
Lanczos steps), then ``layers/1/w`` (3, 4) (12 elements, more than the 8 Lanczos steps) and
``head/w`` (4, 2): 22 blocks in 3 groups, the fewest compiled groups that give ≥ 17 blocks of
distinct spectra (the input features have scales spread over e^2.5, so the row blocks'
curvatures differ and the divergences spread instead of saturating). 80 parameters.

Tolerances (float32 library vs float64 reference on identical inputs; those of
tests/scale/test_divergence_scale.py, which derives them):

* grid start/stop/spacing: 16·eps32·max|t| absolute; σ: 8·eps32 relative; ``num_grid`` exact,
  ``resolved`` exactly (spacing < σ/3) unless within 1e-4 of the boundary.
* JS-distance modes (bounded, scale_normalized): the matrix as JS divergence (its square)
  rtol 1e-4, atol 2e-6; entries > 0.05 and JS⁰ rtol 1e-4.
* paper mode (symmetric KL, values ~1-100): matrix rtol 1e-3, atol 1e-3; JS⁰ rtol 1e-3.
* densities (library on the stored spectra vs reference): (10·δz + 1e-4)·peak with δz =
  eps32·max|t|/σ the Gaussian-argument shift of a float32 grid point.
* derived numbers from float32 JSON values: rtol 1e-5 (sums of ≤ 22 float32 terms), 1e-6 for
  a single float32 product or quotient.

The 0.10.2 miscompile gave 50–100% errors: every tolerance is far below it.

The report costs ~30–60 s on 2 shared cores (compiling three blockwise Lanczos groups, the
two divergence programs and the geometry program), hence ``slow``; it runs once per module.
"""
import json
import math
import re
import runpy
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from scale_reference import LN2, gini_pairwise, layer_of, ref_spectrum_divergence
from heterogeneity import curvature as hc
from heterogeneity import metrics as hm
from heterogeneity import partition as hp
from heterogeneity.experiment import ReportSettings, report
from heterogeneity.experiment._report import JS_MODES, THRESHOLDS

pytestmark = pytest.mark.slow

FEATURES, HIDDEN1, HIDDEN2, OUT, N = 20, 3, 4, 2, 24
SETTINGS = ReportSettings(slq_steps=8, slq_probes=2, top_steps=8, l11_probes=8)
EPS32 = float(np.finfo(np.float32).eps)
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "js_from_report.py"


def _model():
    """``(loss_fn, params, batch, params64, batch64)``: float32 jnp model and its exact float64 copy."""
    rng = np.random.default_rng(7)
    params = {"layers": [{"w": rng.normal(size=(FEATURES, HIDDEN1)) * 1.5 / np.sqrt(FEATURES)},
                         {"w": rng.normal(size=(HIDDEN1, HIDDEN2)) / np.sqrt(HIDDEN1)}],
              "head": {"w": rng.normal(size=(HIDDEN2, OUT)) / np.sqrt(HIDDEN2)}}
    feature_scale = np.exp(np.linspace(-1.5, 1.0, FEATURES))
    batch = {"x": rng.normal(size=(N, FEATURES)) * feature_scale, "y": rng.normal(size=(N, OUT))}
    params64, batch64 = jax.tree.map(lambda a: np.asarray(a, np.float32).astype(np.float64), (params, batch))
    params, batch = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), (params64, batch64))

    def loss_fn(p, b):
        h = jnp.tanh(b["x"] @ p["layers"][0]["w"])
        h = jnp.tanh(h @ p["layers"][1]["w"])
        return 0.5 * jnp.mean(jnp.sum((h @ p["head"]["w"] - b["y"]) ** 2, -1))

    return loss_fn, params, batch, params64, batch64


def _numpy_loss(p, b) -> float:
    h = np.tanh(np.tanh(b["x"] @ p["layers"][0]["w"]) @ p["layers"][1]["w"])
    return float(0.5 * np.mean(np.sum((h @ p["head"]["w"] - b["y"]) ** 2, -1)))


PARTITION = hp.from_fn(lambda path: hp.Split("layers/0/w", axis=0, parts=FEATURES) if path == "layers/0/w" else path,
                       name="roundtrip_rows")
# the layout rebuilt from the shapes (flatten order: head before layers)
LABELS = ["head/w"] + [f"layers/0/w/{i}" for i in range(FEATURES)] + ["layers/1/w"]
SIZES = [HIDDEN2 * OUT] + [HIDDEN1] * FEATURES + [HIDDEN1 * HIDDEN2]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Run the report once: ``(returned dict, report.json as read back, its path, float64 model)``."""
    loss_fn, params, batch, params64, batch64 = _model()
    out = tmp_path_factory.mktemp("report")
    returned = report(loss_fn, params, batch, partition=PARTITION, out_dir=out, key=jax.random.key(3),
                      settings=SETTINGS, progress=False, selftest=False, meta={"model": "roundtrip"})
    path = out / "report.json"
    with open(path) as f:
        on_disk = json.load(f)
    return returned, on_disk, path, (params64, batch64)


def _stored_spectra(r, labels):
    """``[(nodes, weights)]`` in ``labels`` order, float64 copies of the stored float32 values."""
    return [(np.asarray(r["spectra"][label]["nodes"], np.float64), np.asarray(r["spectra"][label]["weights"],
                                                                              np.float64)) for label in labels]


def test_report_json_is_the_returned_dict_with_enough_blocks(run):
    returned, r, _, (params64, batch64) = run
    assert r == json.loads(json.dumps(returned))
    assert r["blocks"]["labels"] == LABELS and r["blocks"]["sizes"] == SIZES
    assert r["meta"]["num_blocks"] == len(LABELS) >= 17  # past the 16-row boundary of the 0.10.2 miscompile
    assert r["meta"]["num_params"] == sum(SIZES) == 80
    assert r["meta"]["settings"] == SETTINGS._asdict()
    # report.json is written with sorted keys, so the "spectra" object is in sorted-label order on disk;
    # the block order lives in blocks.labels and js[mode].labels, which is what every check below indexes by
    assert sorted(r["spectra"]) == sorted(LABELS)
    assert list(returned["spectra"]) == LABELS
    for label in LABELS:
        nodes, weights = (np.asarray(r["spectra"][label][k], np.float64) for k in ("nodes", "weights"))
        assert nodes.shape == weights.shape == (SETTINGS.slq_probes, SETTINGS.slq_steps)
        assert np.all(np.isfinite(nodes)) and np.all(weights >= 0)
        np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-5, err_msg=label)  # each probe's Gauss measure
        # stored values are float32 numbers: the reference sees exactly what the library saw
        np.testing.assert_array_equal(nodes.astype(np.float32).astype(np.float64), nodes)
    np.testing.assert_allclose(r["loss"], _numpy_loss(params64, batch64), rtol=1e-5)


def test_every_stored_mode_is_one_the_reference_knows(run):
    _, r, _, _ = run
    assert set(r["js"]) == set(JS_MODES) == {"bounded", "paper", "scale_normalized"}


@pytest.mark.parametrize("mode", JS_MODES)
def test_stored_js_matches_float64_numpy_from_stored_spectra(run, mode):
    _, r, _, _ = run
    js = r["js"][mode]
    labels = js["labels"]
    assert labels == r["blocks"]["labels"]
    ref = ref_spectrum_divergence(_stored_spectra(r, labels), mode=mode)  # the report's defaults: scale="max"
    b = len(labels)

    # grid and blur
    assert isinstance(js["num_grid"], int) and js["num_grid"] == ref["grid"].size
    tmax = np.abs(ref["grid"]).max()
    atol_grid = 16 * EPS32 * tmax
    np.testing.assert_allclose(js["grid_start"], ref["grid"][0], rtol=0, atol=atol_grid)
    np.testing.assert_allclose(js["grid_stop"], ref["grid"][-1], rtol=0, atol=atol_grid)
    dx = ref["grid"][1] - ref["grid"][0]
    np.testing.assert_allclose(js["grid_spacing"], dx, rtol=0, atol=atol_grid)
    np.testing.assert_allclose(js["grid_spacing"], (js["grid_stop"] - js["grid_start"]) / (js["num_grid"] - 1),
                               rtol=0, atol=atol_grid)
    np.testing.assert_allclose(js["sigma"], ref["sigma"], rtol=8 * EPS32)
    if abs(dx / (ref["sigma"] / 3) - 1) > 1e-4:
        assert js["resolved"] == bool(dx < ref["sigma"] / 3)
    if mode == "paper":
        np.testing.assert_allclose(js["sigma"], math.sqrt(1e-5), rtol=8 * EPS32)
    # unit integral on the grid of every reference density (the convention the modes share)
    np.testing.assert_allclose(ref["densities"].sum(1) * dx, 1.0, rtol=1e-9)

    # the pairwise matrix and its pair mean JS⁰
    mat = np.asarray(js["matrix"], np.float64)
    assert mat.shape == (b, b)
    np.testing.assert_array_equal(np.diag(mat), np.zeros(b))
    np.testing.assert_array_equal(mat, mat.T)
    iu = np.triu_indices(b, 1)
    np.testing.assert_allclose(js["js0"], mat[iu].mean(), rtol=100 * EPS32)
    if mode == "paper":
        np.testing.assert_allclose(mat, ref["matrix"], rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(js["js0"], ref["mean"], rtol=1e-3)
    else:
        np.testing.assert_allclose(mat**2, ref["matrix"] ** 2, rtol=1e-4, atol=2e-6)
        far = ref["matrix"] > 0.05
        assert far.sum() >= b  # the spectra differ: the comparison is not of saturated or vanishing values
        np.testing.assert_allclose(mat[far], ref["matrix"][far], rtol=1e-4)
        np.testing.assert_allclose(js["js0"], ref["mean"], rtol=1e-4)
        assert 0 <= mat.min() and mat.max() <= math.sqrt(LN2) * (1 + 4 * EPS32)
        assert ref["mean"] < 0.95 * math.sqrt(LN2)  # not saturated: a wrong density would move it


def test_library_on_stored_spectra_reproduces_the_report_and_the_reference_densities(run):
    """`spectrum_divergence` on the spectra read back from report.json gives the stored numbers
    (the JSON round trip loses nothing), and its densities match the float64 reference's."""
    _, r, _, _ = run
    labels = r["blocks"]["labels"]
    spectra = {label: hc.Spectrum(jnp.asarray(n, jnp.float32), jnp.asarray(w, jnp.float32))
               for label, (n, w) in zip(labels, _stored_spectra(r, labels))}
    for mode in JS_MODES:
        out = hm.spectrum_divergence(spectra, mode=mode)
        js = r["js"][mode]
        assert list(out.labels) == labels
        np.testing.assert_allclose(np.asarray(out.matrix, np.float64), np.asarray(js["matrix"]), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(float(out.mean), js["js0"], rtol=1e-6)
        np.testing.assert_allclose(float(out.sigma), js["sigma"], rtol=1e-7)
        np.testing.assert_allclose(float(out.grid[0]), js["grid_start"], rtol=1e-7)
        np.testing.assert_allclose(float(out.grid[-1]), js["grid_stop"], rtol=1e-7)
        ref = ref_spectrum_divergence(_stored_spectra(r, labels), mode=mode)
        dens = np.asarray(out.densities, np.float64)
        assert dens.shape == ref["densities"].shape
        dz = EPS32 * np.abs(ref["grid"]).max() / ref["sigma"]
        np.testing.assert_allclose(dens, ref["densities"], rtol=0, atol=(10 * dz + 1e-4) * ref["densities"].max(),
                                   err_msg=mode)


def test_js_from_report_script_agrees(run, monkeypatch, capsys):
    """scripts/js_from_report.py recomputes JS⁰ of every stored mode from the same report.json."""
    _, r, path, _ = run
    labels = r["blocks"]["labels"]
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), str(path)])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    rows = re.findall(r"JS0 (\S+)\s+recomputed (\S+)\s+stored (\S+)", capsys.readouterr().out)
    assert sorted(m for m, _, _ in rows) == sorted(r["js"])
    for mode, recomputed, stored in rows:
        recomputed, stored = float(recomputed), float(stored)  # printed to 6 significant digits
        np.testing.assert_allclose(stored, r["js"][mode]["js0"], rtol=1e-5)
        ref = ref_spectrum_divergence(_stored_spectra(r, labels), mode=mode)["mean"]
        np.testing.assert_allclose(recomputed, ref, rtol=(1e-3 if mode == "paper" else 1e-4) + 1e-5, err_msg=mode)
        np.testing.assert_allclose(recomputed, r["js"][mode]["js0"], rtol=1e-5, err_msg=mode)


def test_derived_numbers_match_their_stored_inputs(run):
    """Everything the report derives from numbers it also stores, recomputed in float64."""
    _, r, _, _ = run
    labels = r["blocks"]["labels"]
    sizes = np.asarray(r["blocks"]["sizes"], np.float64)
    d = sizes.sum()

    # gradient heterogeneity ([Tomihari25, App. C.2, D.5, Table S.6])
    g = r["gradient"]
    norms = np.asarray(g["norms"], np.float64)
    assert norms.shape == (len(labels),) and np.all(norms > 0)
    normalized = norms / np.sqrt(sizes)
    np.testing.assert_allclose(g["normalized"], normalized, rtol=1e-6)
    np.testing.assert_allclose(g["shares"], normalized / normalized.sum(), rtol=1e-5)
    np.testing.assert_allclose(g["gini"], gini_pairwise(normalized), rtol=1e-5, atol=1e-6)
    layers = sorted({layer_of(label) for label in labels} - {None}, key=lambda s: int(s.split("/")[1]))
    assert g["layer_ratios"]["labels"] == layers == ["layers/0", "layers/1"]
    sums = np.array([normalized[[layer_of(label) == layer for label in labels]].sum() for layer in layers])
    np.testing.assert_allclose(g["layer_ratios"]["ratios"], sums / sums.sum(), rtol=1e-5)

    # block Hessian norms: the largest |Ritz value| carrying weight, exactly the stored float32 maximum
    h = np.array([np.abs(n[w > 0]).max() for n, w in _stored_spectra(r, labels)])
    np.testing.assert_array_equal(r["block_hessian_norm"], h)

    # Λ_G, Λ_P ([Tomihari25, Def. 4.5])
    lam_g = np.sum(norms**2 / np.sum(norms**2) * h)
    lam_p = np.sum(sizes / d * h)
    np.testing.assert_allclose(r["lambda"]["lambda_G"], lam_g, rtol=1e-5)
    np.testing.assert_allclose(r["lambda"]["lambda_P"], lam_p, rtol=1e-5)
    np.testing.assert_allclose(r["lambda"]["ratio"], lam_g / lam_p, rtol=1e-5)
    np.testing.assert_allclose(r["lambda"]["ratio"], r["lambda"]["lambda_G"] / r["lambda"]["lambda_P"], rtol=1e-6)

    # gradient–Hessian correlation ([Tomihari25, Fig. 1])
    corr = r["grad_hessian_correlation"]
    np.testing.assert_allclose(corr["spearman"], scipy.stats.spearmanr(norms, h).statistic, rtol=0, atol=1e-5)
    ok = (norms > 0) & (h > 0)
    pearson_log = np.corrcoef(np.log10(norms[ok]), np.log10(h[ok]))[0, 1]
    np.testing.assert_allclose(corr["pearson_log"], pearson_log, rtol=0, atol=1e-5)

    # geometry ([Xie24, Alg. 4, Table 1]): the (1,1)-norm is the sum of the per-row medians
    geo = r["geometry"]
    rows = np.asarray(geo["block_rows_l11"], np.float64)
    assert rows.shape == (len(labels),) and np.all(rows > 0)
    np.testing.assert_allclose(geo["l11"], rows.sum(), rtol=1e-5)
    np.testing.assert_allclose(geo["block_rows_l11_over_size"], rows / sizes, rtol=1e-6)
    np.testing.assert_allclose(geo["l11_over_d"], geo["l11"] / d, rtol=1e-6)
    np.testing.assert_allclose(geo["d_times_spectral"], d * geo["spectral_norm"], rtol=1e-6)
    np.testing.assert_allclose(geo["ratio"], geo["l11"] / (d * geo["spectral_norm"]), rtol=1e-6)
    # the full Hessian's norm bounds every diagonal block's (Ritz values of H_bb lie in its spectrum);
    # the full-Hessian Lanczos run is itself a lower bound after 8 steps, hence the slack
    assert geo["spectral_norm"] >= 0.9 * h.max()

    # the verdict's vote count from the numbers and the documented thresholds
    T = THRESHOLDS
    paper = r["js"]["paper"]
    votes = sum([g["gini"] > T["gini"]["high"],
                 paper["resolved"] and paper["js0"] > T["js0_paper"]["high"],
                 r["lambda"]["ratio"] > T["lambda_ratio"]["high"],
                 geo["ratio"] < T["l11_ratio"]["favourable"]])
    assert r["interpretation"]["votes_for_adaptive"] == votes
