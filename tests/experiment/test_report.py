"""The heterogeneity report end to end on a toy model, its reading rules, checkpoints and result files."""
import json
import math
import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from heterogeneity import cli
from heterogeneity import curvature as hc
from heterogeneity import partition as hp
from heterogeneity.experiment import (
    ReportSettings,
    atomic_write_json,
    interpret,
    load_params,
    read_json,
    report,
    save_params,
    setup,
)

TINY = ReportSettings(slq_steps=8, slq_probes=2, top_steps=8, l11_probes=8)


def toy_problem():
    """A 2-layer tanh MLP regression, 62 parameters in 4 leaves."""
    k1, k2, k3, k4 = jax.random.split(jax.random.key(3), 4)
    params = {"layers": [{"kernel": jax.random.normal(k1, (5, 6)) * 0.5, "bias": jnp.zeros(6)}],
              "head": {"kernel": jax.random.normal(k2, (6, 4)) * 0.5, "bias": jnp.zeros(4)}}
    batch = {"x": jax.random.normal(k3, (32, 5)), "y": jax.random.normal(k4, (32, 4))}

    def loss_fn(p, b):
        h = jnp.tanh(b["x"] @ p["layers"][0]["kernel"] + p["layers"][0]["bias"])
        return 0.5 * jnp.mean(jnp.sum((h @ p["head"]["kernel"] + p["head"]["bias"] - b["y"]) ** 2, -1))

    return loss_fn, params, batch


EXPECTED_KEYS = {"meta", "loss", "blocks", "gradient", "spectra", "block_hessian_norm", "js", "lambda",
                 "grad_hessian_correlation", "geometry", "attention", "interpretation", "selections"}


def test_report_end_to_end_on_toy_model(tmp_path):
    loss_fn, params, batch = toy_problem()
    p = hp.by_leaf(params)
    r = report(loss_fn, params, batch, partition=p, out_dir=tmp_path, key=jax.random.key(1), settings=TINY,
               progress=False, meta={"model": "toy"})
    assert set(r) == EXPECTED_KEYS
    on_disk = read_json(tmp_path / "report.json")
    assert on_disk == json.loads(json.dumps(r))  # what is returned is what is written
    for name in ("report.md", "gradient_shares.png", "js_heatmap.png", "spectra.png", "lambda_table.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries

    labels = r["blocks"]["labels"]
    assert labels == list(p.labels(params)) and r["blocks"]["sizes"] == [4, 24, 6, 30]
    assert list(r["spectra"]) == labels  # partition order, not jit's sorted-key order
    assert r["meta"]["num_params"] == 64
    assert r["meta"]["selftest"].startswith("pass 7/7 (jax "), r["meta"]["selftest"]  # the backend verdict
    assert "Backend selftest: pass 7/7" in (tmp_path / "report.md").read_text()
    # gradient statistics agree with a direct computation
    g = jax.grad(loss_fn)(params, batch)
    norms = np.sqrt(np.asarray(p.block_sq_norms(g)))
    np.testing.assert_allclose(r["gradient"]["norms"], norms, rtol=1e-5)
    np.testing.assert_allclose(sum(r["gradient"]["shares"]), 1.0, rtol=1e-5)
    # block Hessian norms from the SLQ spectra match dense eigh of each diagonal block: blocks of
    # size <= slq_steps are exact, larger ones are Ritz values, hence lower bounds
    with jax.enable_x64(False):
        H = np.asarray(hc.dense_hessian(loss_fn, params, batch))
    ids = p.flat_block_ids(params)
    for b, label in enumerate(labels):
        exact = np.abs(np.linalg.eigvalsh(H[np.ix_(ids == b, ids == b)])).max()
        got = r["block_hessian_norm"][b]
        if r["blocks"]["sizes"][b] <= TINY.slq_steps:
            np.testing.assert_allclose(got, exact, rtol=1e-3, err_msg=label)
        else:
            assert got <= exact * (1 + 1e-4), label
    # JS: bounded mode is in [0, sqrt(ln 2)], matrices symmetric
    for mode, js in r["js"].items():
        m = np.asarray(js["matrix"])
        np.testing.assert_allclose(m, m.T, atol=1e-6)
        assert js["js0"] >= 0
    assert r["js"]["bounded"]["js0"] <= math.sqrt(math.log(2)) + 1e-6
    # Lambda: weights sum to one, so both lie between the smallest and largest block norm
    h = np.asarray(r["block_hessian_norm"])
    for key in ("lambda_G", "lambda_P"):
        assert h.min() - 1e-6 <= r["lambda"][key] <= h.max() + 1e-6
    lam_p = float(np.sum(np.asarray(r["blocks"]["sizes"]) / 64 * h))
    np.testing.assert_allclose(r["lambda"]["lambda_P"], lam_p, rtol=1e-5)
    # geometry: spectral norm within Ritz accuracy of the dense one; the (1,1)-norm is exactly the Cauchy
    # sketch of [Xie24, Algorithm 4] with the report's key (its accuracy is tested in tests/curvature; 8 probes
    # give no useful bound, since the median of 8 |Cauchy| draws has ~55% relative spread)
    np.testing.assert_allclose(r["geometry"]["spectral_norm"], np.abs(np.linalg.eigvalsh(H)).max(), rtol=0.05)
    k_l11 = jax.random.split(jax.random.key(1), 3)[2]
    mv = hc.linearized_hvp(loss_fn, params, batch)
    direct = hc.l11_norm(mv, params, k_l11, num_probes=TINY.l11_probes)
    np.testing.assert_allclose(r["geometry"]["l11"], direct.value, rtol=1e-5)
    np.testing.assert_allclose(r["geometry"]["ratio"], direct.value / (64 * r["geometry"]["spectral_norm"]), rtol=1e-5)
    text = (tmp_path / "report.md").read_text()
    assert "Verdict" in text and "[Zhang24, Table 1]" in text and "[Xie24, Table 1]" in text
    assert "seed 00" not in text and "comparable across models" not in text


def _gini_reference(x):
    """Σ_i Σ_j |x_i − x_j| / (2 n² x̄), the definition, in float64."""
    x = np.asarray(x, np.float64)
    return float(np.abs(np.subtract.outer(x, x)).sum() / (2 * len(x) ** 2 * x.mean()))


def test_report_block_selections_and_what_report_md_states(tmp_path):
    """--blocks weights: headline Gini and JS⁰ over kernels only, from the same norms and spectra (NumPy
    float64 reference); both selections and the verdict of each in report.md, with the decision rule,
    the params and what each JS⁰ mode is comparable for; every file 0644."""
    from heterogeneity.experiment._report import DECISION_RULE, JS_MODE_NOTES
    from heterogeneity.selftest import reference_js

    loss_fn, params, batch = toy_problem()
    old = os.umask(0o022)
    try:
        r = report(loss_fn, params, batch, partition=hp.by_leaf(), out_dir=tmp_path, key=jax.random.key(1),
                   settings=TINY, progress=False, blocks="weights", selftest=False,
                   meta={"model": "toy", "params": "initial (init seed 3)"})
    finally:
        os.umask(old)
    labels = r["blocks"]["labels"]
    assert labels == ["head/bias", "head/kernel", "layers/0/bias", "layers/0/kernel"]
    sel = r["selections"]
    assert sel["all"]["labels"] == labels and sel["weights"]["labels"] == ["head/kernel", "layers/0/kernel"]
    assert sel["weights"]["num_params"] == 24 + 30 and r["meta"]["blocks"] == "weights"
    normalized = np.asarray(r["gradient"]["norms"]) / np.sqrt(r["blocks"]["sizes"])
    np.testing.assert_allclose(sel["all"]["gini"], _gini_reference(normalized), rtol=1e-5)
    np.testing.assert_allclose(sel["all"]["gini"], r["gradient"]["gini"], rtol=1e-6)
    np.testing.assert_allclose(sel["weights"]["gini"], _gini_reference(normalized[[1, 3]]), rtol=1e-5)
    for mode in ("bounded", "paper", "scale_normalized"):
        assert sel["all"]["js"][mode]["js0"] == r["js"][mode]["js0"]
        chosen = sel["weights"]["labels"]
        _, js0 = reference_js([np.asarray(r["spectra"][k]["nodes"]) for k in chosen],
                              [np.asarray(r["spectra"][k]["weights"]) for k in chosen], mode)
        np.testing.assert_allclose(sel["weights"]["js"][mode]["js0"], js0, rtol=5e-3, err_msg=mode)
        assert f"weights/{mode}" in r["meta"]["self_check"]["js_vs_numpy_float64"]
    # the verdict reads the weights' numbers; the other selection's reading is kept beside it
    want = interpret(r, blocks="weights")
    assert r["interpretation"]["findings"] == want["findings"] and r["interpretation"]["blocks"] == "weights"
    # each selection's row is the papers' vote rule (the calibrated advice reads one fixed score)
    assert r["interpretation"]["by_selection"]["all"] == interpret(r, blocks="all", calibration=None)
    g = sel["weights"]["gini"]
    expected_reading = "low" if g < 0.45 else "high" if g > 0.8 else "moderate"
    assert want["findings"]["gradient_heterogeneity"] == expected_reading
    text = (tmp_path / "report.md").read_text()
    assert "Params: the initial (init seed 3) parameters, before any training" in text
    assert f"The papers' decision rule: {DECISION_RULE}" in text and "Two or more votes" in DECISION_RULE
    assert "`--blocks weights`: 2 of 4 blocks" in text
    assert f"| weights | 2 of 4 | 54 | {sel['weights']['gini']:.3f} |" in text
    assert f"| all | 4 of 4 | 64 | {sel['all']['gini']:.3f} |" in text
    assert "Without the 2 blocks that hold biases or norm parameters" in text and "[Zhang24, App. D.1]" in text
    for note in JS_MODE_NOTES.values():
        assert note in text
    assert "not across models" in JS_MODE_NOTES["bounded"] and "comparable across models" not in text
    for name in os.listdir(tmp_path):
        assert os.stat(tmp_path / name).st_mode & 0o777 == 0o644, name


@pytest.mark.parametrize("mode", ["bounded", "paper", "scale_normalized"])
def test_selection_divergence_reuses_the_all_blocks_program(mode):
    """A selection's JS matrix, computed by the all-blocks program with the other blocks zero-weighted,
    equals spectrum_divergence on the chosen spectra alone and the NumPy float64 reference."""
    from heterogeneity import metrics as hm
    from heterogeneity.experiment._report import _restricted_divergence
    from heterogeneity.selftest import reference_js

    rng = np.random.default_rng(4)
    spectra = {f"b{i}": types.SimpleNamespace(  # block scales over three decades, as real blocks have
        nodes=np.sort(rng.normal(size=(2, 12)) * 10 ** rng.uniform(-2, 1), 1).astype(np.float32),
        weights=np.full((2, 12), 1 / 12, np.float32)) for i in range(7)}
    idx = np.array([0, 3, 4, 6])
    chosen = [f"b{i}" for i in idx]
    got = _restricted_divergence(spectra, idx, mode)
    alone = hm.spectrum_divergence({k: spectra[k] for k in chosen}, mode=mode)
    assert got.labels == tuple(chosen) == alone.labels
    np.testing.assert_allclose(got.matrix, alone.matrix, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.sigma, alone.sigma, rtol=1e-6)
    mat, js0 = reference_js([spectra[k].nodes for k in chosen], [spectra[k].weights for k in chosen], mode)
    np.testing.assert_allclose(got.matrix, mat, rtol=5e-3, atol=1e-5)
    np.testing.assert_allclose(got.mean, js0, rtol=5e-3)


def test_report_refuses_a_selection_without_two_blocks_before_any_work(tmp_path):
    loss_fn, params, batch = toy_problem()
    # by_layer puts each kernel with its bias: no block is made only of weights
    with pytest.raises(ValueError, match=r"blocks='weights' selects 0 block\(s\) of partition by_layer.*leaf or role"):
        report(loss_fn, params, batch, partition=hp.by_layer(), out_dir=tmp_path / "a", settings=TINY,
               progress=False, blocks="weights")
    with pytest.raises(ValueError, match="blocks must be one of 'all', 'weights', got 'kernels'"):
        report(loss_fn, params, batch, partition=hp.by_leaf(), out_dir=tmp_path / "b", settings=TINY,
               progress=False, blocks="kernels")
    assert not list(tmp_path.rglob("*.json"))


def test_report_same_key_same_numbers(tmp_path):
    loss_fn, params, batch = toy_problem()
    kw = dict(partition=hp.by_layer(), key=jax.random.key(7), settings=TINY, progress=False)
    a = report(loss_fn, params, batch, out_dir=tmp_path / "a", **kw)
    b = report(loss_fn, params, batch, out_dir=tmp_path / "b", **kw)
    a["meta"].pop("timings_s"), b["meta"].pop("timings_s")
    assert a == b


def test_report_keeps_partition_order_through_jit(tmp_path):
    """jit returns dicts in sorted-key order; every block array must follow the partition's order."""
    loss_fn, params, batch = toy_problem()
    p = hp.by_regex([("head", "z_head"), ("layers", "a_body")])
    r = report(loss_fn, params, batch, partition=p, out_dir=tmp_path, settings=TINY, progress=False)
    assert r["blocks"]["labels"] == ["z_head", "a_body"] and r["blocks"]["sizes"] == [28, 36]
    for mode in r["js"]:
        assert r["js"][mode]["labels"] == ["z_head", "a_body"]


def test_report_rejects_nan_loss_and_uncovered_partition(tmp_path):
    loss_fn, params, batch = toy_problem()
    bad = jax.tree.map(lambda x: x * jnp.nan, params)
    with pytest.raises(ValueError, match="loss at these params is nan"):
        report(loss_fn, bad, batch, partition=hp.by_layer(), out_dir=tmp_path, settings=TINY, progress=False)
    with pytest.raises(ValueError, match="covers no block.*head/bias"):
        report(loss_fn, params, batch, partition=hp.by_regex([("layers", "body"), ("head/kernel", "h")]),
               out_dir=tmp_path, settings=TINY, progress=False)
    assert not (tmp_path / "report.json").exists()  # nothing half-written


def test_report_rejects_finite_loss_with_non_finite_curvature(tmp_path):
    """A finite loss and gradient whose Hessian is not finite (|b|^1.5 at b = 0: its second
    derivative is inf/NaN there) must not give a report of NaNs: the error names the block."""
    loss_fn, params, batch = toy_problem()  # head/bias is zero-initialised

    def kinked(p, b):
        return loss_fn(p, b) + 1e-3 * jnp.sum(jnp.abs(p["head"]["bias"]) ** 1.5)

    assert np.isfinite(float(kinked(params, batch)))
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(jax.grad(kinked)(params, batch)))
    with pytest.raises(ValueError, match=r"non-finite blockwise Hessian-vector product.*head/bias"):
        report(kinked, params, batch, partition=hp.by_leaf(params), out_dir=tmp_path, settings=TINY,
               progress=False, selftest=False)
    assert not (tmp_path / "report.json").exists()


def _fake(gini, js0, ratio, l11r, rho=0.0):
    return {"gradient": {"gini": gini}, "js": {"paper": {"js0": js0}}, "lambda": {"ratio": ratio},
            "geometry": {"ratio": l11r}, "grad_hessian_correlation": {"spearman": rho}}


def test_interpretation_rules_follow_the_papers_thresholds():
    # RoBERTa-like gradients [Tomihari25, Table S.5], ViT-like JS0 [Zhang24, Table 1], Lambda_G > Lambda_P
    hetero = interpret(_fake(gini=0.94, js0=286.0, ratio=3.0, l11r=0.0116, rho=0.8), calibration=None)
    assert hetero["findings"] == {"gradient_heterogeneity": "high", "block_heterogeneity": "high",
                                  "lambda_ratio": "high", "linf_geometry": "strongly favourable",
                                  "grad_hessian_correlation": "strong"}
    assert hetero["votes_for_adaptive"] == 4 and "SGD is likely to lag Adam" in hetero["advice"]
    # ResNet-like (Gini 0.41, JS0 0.1), rotated-quadratic-like geometry (ratio 2.6 in [Xie24, Table 1])
    homo = interpret(_fake(gini=0.41, js0=0.10, ratio=0.7, l11r=2.6), calibration=None)
    assert homo["findings"]["gradient_heterogeneity"] == "low"
    assert homo["findings"]["linf_geometry"] == "neutral"
    assert homo["votes_for_adaptive"] == 0 and "SGD with momentum is likely competitive" in homo["advice"]
    assert interpret(_fake(0.6, 0.5, 0.9, 0.5))["findings"]["linf_geometry"] == "favourable"
    assert interpret(_fake("nan", "nan", "nan", "nan"))["findings"]["gradient_heterogeneity"] == "n/a"
    # a paper-mode JS0 whose grid cannot resolve the sigma^2 = 1e-5 blur is not read against the paper's numbers
    unresolved = _fake(0.94, 58.5, 3.0, 0.01)
    unresolved["js"]["paper"]["resolved"] = False
    assert interpret(unresolved)["findings"]["block_heterogeneity"].startswith("n/a")


def test_checkpoint_roundtrip_and_mismatch(tmp_path):
    _, params, _ = toy_problem()
    params = dict(params, emb=jnp.ones((3, 2), jnp.bfloat16))
    path = save_params(tmp_path / "ckpt.npz", params)
    back = load_params(path, params)
    assert jax.tree.structure(back) == jax.tree.structure(params)
    for x, y in zip(jax.tree.leaves(back), jax.tree.leaves(params)):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(np.asarray(x, np.float32), np.asarray(y, np.float32))
    other = dict(params, head={"kernel": jnp.ones((6, 5)), "bias": jnp.ones(4)})
    with pytest.raises(ValueError, match=r"shape mismatch \['head/kernel \(6, 4\)->\(6, 5\)'\]"):
        load_params(path, other)
    with pytest.raises(ValueError, match=r"missing \['extra'\]"):
        load_params(path, dict(params, extra=jnp.ones(2)))
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_params(tmp_path / "nope.npz", params)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a parameter checkpoint"):
        load_params(tmp_path / "junk.npz", params)


def test_atomic_json_records_non_finite_values(tmp_path):
    path = atomic_write_json(tmp_path / "r.json", {"loss": float("nan"), "a": np.arange(3), "inf": np.float32(np.inf)})
    assert read_json(path) == {"a": [0, 1, 2], "inf": "inf", "loss": "nan"}
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="corrupt JSON"):
        read_json(tmp_path / "bad.json")
    assert sorted(os.listdir(tmp_path)) == ["bad.json", "r.json"]


@pytest.mark.parametrize("model", ["gpt", "transformer", "vit", "mixer", "cnn", "mlp"])
def test_every_report_setup_builds_a_finite_loss(model):
    s = setup(model, quick=True, batch_size=8)
    loss = s.loss_fn(s.params, s.batch)
    assert np.isfinite(float(loss))
    if s.attention_fn is not None:
        probs = s.attention_fn(s.params, s.batch)
        np.testing.assert_allclose(np.asarray(probs).sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("model", ["vit", "mixer"])
def test_patch_model_setups_have_no_blank_patch(model):
    """Standardised pixels: no 2x2 patch is all zero (a blank patch's token would be the zero bias, which
    LayerNorm amplifies by 1/sqrt(eps); with [0, 1] pixels 27% of the digits' patches are blank)."""
    s = setup(model, quick=True, batch_size=64)
    x = np.asarray(s.batch["x"])
    patches = x.reshape(x.shape[0], 4, 2, 4, 2, -1).transpose(0, 1, 3, 2, 4, 5).reshape(x.shape[0], 16, -1)
    assert s.meta["pixels"] == "standardize" and not np.any(np.all(patches == 0, axis=-1))


def test_setup_microbatches_average_to_the_full_batch():
    full = setup("mlp", quick=True, batch_size=16)
    micro = setup("mlp", quick=True, batch_size=16, microbatches=4)
    assert isinstance(micro.batch, hc.MicroBatched)
    np.testing.assert_allclose(hc.mean_loss(micro.loss_fn, micro.params, micro.batch),
                               full.loss_fn(full.params, full.batch), rtol=1e-5)


def test_cli_reports_bad_input_as_errors(tmp_path, capsys):
    assert cli.main(["report", "--model", "resnet50", "--out", str(tmp_path)]) == 2
    assert "unknown model 'resnet50'" in capsys.readouterr().err
    assert cli.main(["report", "--model", "mlp", "--data", "shakespeare", "--out", str(tmp_path)]) == 2
    assert "text data needs the gpt model" in capsys.readouterr().err
    assert cli.main(["report", "--quick", "--checkpoint", str(tmp_path / "none.npz"), "--out", str(tmp_path)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_quick_report_runs(tmp_path):
    assert cli.main(["report", "--quick", "--model", "transformer", "--norm", "post", "--no-progress",
                     "--out", str(tmp_path)]) == 0
    r = read_json(tmp_path / "report.json")
    assert r["meta"]["model"] == "transformer" and r["meta"]["norm"] == "post"
    assert len(r["attention"]["entropy_ratio_mean"]) == 1
