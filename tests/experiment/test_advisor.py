"""The advisor study's statistics and the report's calibrated advice (heterogeneity.experiment._advisor).

References are independent: scipy.stats.spearmanr for the rank correlation, brute-force
enumeration for the fitted threshold, a hand loop for leave-one-out.
"""
import itertools
import math

import numpy as np
import pytest
from scipy import stats

from heterogeneity.experiment import _advisor as A
from heterogeneity.experiment._interpret import calibrated_advice, interpret


def test_spearman_matches_scipy_with_ties_and_nans():
    rng = np.random.default_rng(0)
    for n in (5, 14, 40):
        x = rng.integers(0, 6, n).astype(float)  # many ties
        y = x + rng.normal(0, 2, n)
        x[1] = np.nan
        ok = np.isfinite(x)
        assert A.spearman(x, y) == pytest.approx(stats.spearmanr(x[ok], y[ok]).statistic, abs=1e-12)
    assert math.isnan(A.spearman([1, 2], [3, 4]))  # fewer than 3 pairs
    assert math.isnan(A.spearman([1, 1, 1], [1, 2, 3]))  # a constant side


def test_bootstrap_interval_brackets_the_estimate_and_shrinks_with_n():
    rng = np.random.default_rng(1)
    x = rng.normal(size=60)
    y = x + rng.normal(0, 0.5, 60)
    rho = A.spearman(x, y)
    lo, hi = A.bootstrap_spearman(x, y, n_boot=2000)
    assert lo < rho < hi and 0 < lo
    lo12, hi12 = A.bootstrap_spearman(x[:12], y[:12], n_boot=2000)
    assert hi12 - lo12 > hi - lo
    assert A.bootstrap_spearman(x, y, n_boot=2000) == (lo, hi)  # seeded
    assert A.bootstrap_spearman(np.arange(8.0), np.arange(8.0)) == (1.0, 1.0)  # a perfect ranking stays perfect
    assert all(math.isnan(v) for v in A.bootstrap_spearman([1, 2, 3], [1, 2, 3]))


def _brute_best(x, lags):
    """Best accuracy over every threshold and both directions, by enumeration."""
    cands = sorted(set(x)) + [min(x) - 1, max(x) + 1]
    return max(np.mean([(s * xi > s * t) == li for xi, li in zip(x, lags)]) for s in (1, -1) for t in
               [c - 1e-9 for c in cands] + [c + 1e-9 for c in cands])


def test_fit_threshold_finds_the_best_rule():
    rng = np.random.default_rng(2)
    for _ in range(50):
        n = int(rng.integers(3, 15))
        x = rng.normal(size=n).round(1)
        lags = rng.random(n) < 0.5
        rule = A.fit_threshold(x, lags)
        assert rule.accuracy == pytest.approx(_brute_best(x, lags))
        assert rule.accuracy == pytest.approx(np.mean((rule.sign * x > rule.sign * rule.threshold) == lags))
    # separable: the midpoint between the classes, in the preferred direction
    rule = A.fit_threshold([0.1, 0.2, 0.8, 0.9], [False, False, True, True])
    assert rule == A.Threshold(0.5, 1, 1.0)
    rule = A.fit_threshold([0.1, 0.2, 0.8, 0.9], [True, True, False, False], prefer_sign=-1)
    assert rule == A.Threshold(0.5, -1, 1.0)
    with pytest.raises(ValueError, match="finite"):
        A.fit_threshold([0.1, np.nan], [True, False])


def test_leave_one_out_refits_without_the_held_out_pair():
    x = np.asarray([0.1, 0.2, 0.3, 0.7, 0.8, 0.9, np.nan])
    lags = np.asarray([0, 0, 1, 1, 1, 0, 1], bool)
    pred = A.leave_one_out(x, lags)
    for i in range(6):
        keep = np.isfinite(x) & (np.arange(7) != i)
        rule = A.fit_threshold(x[keep], lags[keep])
        assert pred[i] == int(rule.sign * x[i] > rule.sign * rule.threshold)
    assert pred[6] == -1  # no score, no prediction


def _study(gap_of, n=12, seed=0):
    """A synthetic study: scores that track the gap (gini_weights), anti-track it (l11_ratio), or are noise."""
    rng = np.random.default_rng(seed)
    gaps = np.linspace(-1.0, 3.0, n)
    pairs = {}
    for i, g in enumerate(gaps):
        sc = {s: float(rng.normal()) for s in A.SCORES}
        sc["gini_weights"] = gap_of(g, rng)
        sc["l11_ratio"] = float(np.exp(-g))
        sc["js0_paper_all"] = math.nan if i % 3 == 0 else sc["js0_paper_all"]
        pairs[f"p{i:02d}"] = {"gap": float(g), "scores": sc}
    return pairs


def test_calibrate_finds_a_predictive_score_and_reports_its_uncertainty():
    cal = A.calibrate(_study(lambda g, rng: 0.3 + 0.1 * g + 0.01 * rng.normal()))
    assert cal["predictive"] and cal["best"] in ("gini_weights", "l11_ratio")
    e = cal["per_score"]["gini_weights"]
    assert e["spearman"] > 0.95 and e["ci95"][0] > 0.5 and e["loo_accuracy"] == 1.0 and e["sign"] == 1
    # the threshold separates gaps above log 2 from those below: between the scores of the two classes
    lags = np.asarray([cal["lags"][p] for p in cal["pairs"]])
    vals = np.asarray([cal["scores"][p]["gini_weights"] for p in cal["pairs"]])
    assert vals[~lags].max() < e["threshold"] < vals[lags].min()
    assert cal["per_score"]["l11_ratio"]["spearman"] == pytest.approx(-1.0)
    assert cal["per_score"]["l11_ratio"]["sign"] == -1  # smaller ratio: SGD lags, the papers' direction
    assert cal["per_score"]["js0_paper_all"]["n"] == 8  # NaN scores leave their pairs out
    assert 0.0 <= cal["baseline_loo_accuracy"] <= 1.0 and 0.0 <= cal["paper_rule"]["accuracy"] <= 1.0
    assert cal["combined"] is not None and not cal["combined"]["kept"]  # cannot beat a perfect single score


def test_calibrate_says_when_nothing_predicts():
    rng = np.random.default_rng(3)
    gaps = np.linspace(-1.0, 3.0, 12)
    noise = A.calibrate({f"p{i:02d}": {"gap": float(g), "scores": {s: float(rng.normal()) for s in A.SCORES}}
                         for i, g in enumerate(gaps)})
    assert not noise["predictive"]
    assert noise["why"].startswith(f"best score {noise['best']}") and "not predictive" in noise["why"]


def test_paper_rule_counts_the_reports_votes():
    votes = A.paper_rule({"gini_all": 0.9, "js0_paper_all": 50.0, "lambda_ratio": 0.5, "l11_ratio": 2.0})
    assert votes == {"votes": {"gini": True, "js0_paper": True, "lambda_ratio": False, "l11_ratio": False},
                     "lags": True}
    assert not A.paper_rule({"gini_all": math.nan, "js0_paper_all": math.nan, "lambda_ratio": 2.0,
                             "l11_ratio": 2.0})["lags"]


def _fake_report(gini_weights):
    def sel(gini):
        return {"gini": gini, "js": {m: {"js0": 1.0, "resolved": True} for m in ("paper", "bounded", "scale_normalized")}}

    return {"gradient": {"gini": 0.5}, "js": {"paper": {"js0": 1.0}}, "lambda": {"ratio": 1.0},
            "geometry": {"ratio": 0.5}, "grad_hessian_correlation": {"spearman": 0.5},
            "selections": {"all": sel(0.5), "weights": sel(gini_weights)}}


def test_scores_of_reads_every_score_and_nan_for_unresolved():
    r = _fake_report(0.7)
    r["selections"]["all"]["js"]["paper"]["resolved"] = False
    got = A.scores_of(r)
    assert list(got) == list(A.SCORES)
    assert got["gini_weights"] == 0.7 and got["gini_all"] == 0.5 and math.isnan(got["js0_paper_all"])
    assert got["js0_paper_weights"] == 1.0 and got["l11_ratio"] == 0.5
    assert math.isnan(A.scores_of({"selections": {}})["gini_all"])


def test_report_advice_follows_the_calibration():
    cal = A.calibrate(_study(lambda g, rng: 0.3 + 0.1 * g + 0.01 * rng.normal()))
    cal["best"] = "gini_weights"
    t = cal["per_score"]["gini_weights"]["threshold"]
    high = interpret(_fake_report(t + 0.05), calibration=cal)
    low = interpret(_fake_report(t - 0.05), calibration=cal)
    assert high["advice"].startswith("heterogeneous landscape: SGD is likely to lag Adam (gini_weights = ")
    assert low["advice"].startswith("homogeneous landscape: SGD with momentum is likely competitive")
    assert f"over {len(cal['pairs'])} architecture/task pairs" in high["advice"] and "95% CI" in high["advice"]
    assert high["calibrated"]["lags"] and not low["calibrated"]["lags"]
    assert high["paper_advice"] == interpret(_fake_report(t + 0.05), calibration=None)["advice"]
    # no predictive score: no advice, and the evidence says so
    cal_none = dict(cal, predictive=False)
    none = interpret(_fake_report(0.9), calibration=cal_none)
    assert none["advice"].startswith("no advice: no heterogeneity score predicted the SGD–Adam gap")
    assert calibrated_advice(_fake_report(math.nan), cal)["lags"] is None
    with pytest.raises(ValueError, match="calibration"):
        interpret(_fake_report(0.5), calibration="mine")


def test_shipped_calibration_is_consistent_with_its_own_pairs():
    """The calibration in the package is `calibrate` of the pairs it records (no hand edits)."""
    cal = A.load_calibration()
    if cal is None:
        pytest.skip("no advisor study calibration shipped")
    pairs = {p: {"gap": cal["gaps"][p], "scores": cal["scores"][p]} for p in cal["pairs"]}
    again = A.calibrate(pairs)
    for key in ("best", "predictive", "baseline_loo_accuracy", "lags"):
        assert again[key] == cal[key], key
    for s, e in again["per_score"].items():
        for key in ("n", "spearman", "threshold", "sign", "loo_accuracy"):
            a, b = e.get(key), cal["per_score"][s].get(key)
            assert (a == b) or (isinstance(a, float) and math.isnan(a) and b is None) or a == pytest.approx(b), (s, key)
    assert len(cal["pairs"]) >= 10 and cal["study"]["scale"] in ("laptop", "gpu")
    nets = cal["networks_only"]
    sub = A.calibrate({p: pairs[p] for p in nets["pairs"]})
    assert set(nets["pairs"]) < set(cal["pairs"]) and not any(p.startswith("quadratic") for p in nets["pairs"])
    for s, e in sub["per_score"].items():
        assert nets["per_score"][s]["n"] == e["n"]
        assert nets["per_score"][s]["spearman"] == pytest.approx(e["spearman"], nan_ok=True), s


def test_report_md_states_the_calibration_and_writes_nothing_without_out_dir(tmp_path, monkeypatch):
    import jax
    import jax.numpy as jnp

    from heterogeneity import partition as hp
    from heterogeneity.experiment import ReportSettings, render_markdown, report

    monkeypatch.chdir(tmp_path)
    params = {"l1": {"kernel": jnp.linspace(0.5, 1.5, 6).reshape(2, 3)}, "l2": {"kernel": jnp.linspace(-1, 1, 4)}}

    def loss_fn(p, b):
        return 0.5 * (10.0 * jnp.sum(p["l1"]["kernel"] ** 2) + jnp.sum(p["l2"]["kernel"] ** 2)) + jnp.sum(
            p["l1"]["kernel"]) ** 4 * 1e-3

    r = report(loss_fn, params, None, partition=hp.by_leaf(params), out_dir=None, key=jax.random.key(0),
               settings=ReportSettings(slq_steps=4, slq_probes=1, top_steps=4, l11_probes=4), progress=False,
               selftest=False)
    assert not list(tmp_path.iterdir())  # out_dir=None: computed, nothing written
    cal = A.calibrate(_study(lambda g, rng: 0.3 + 0.1 * g + 0.01 * rng.normal()))
    cal["best"] = "gini_weights"
    r["interpretation"].update(interpret(r, calibration=cal))
    text = render_markdown(r)
    assert "calibrated by the advisor study [AdvisorStudy] (12 architecture/task pairs" in text
    assert "| gini_weights (used) | 12 |" in text and "| l11_ratio | 12 | -1.00 |" in text
    assert f"The papers' vote rule alone would say: {r['interpretation']['paper_advice']}" in text
    assert text.count("**Verdict: ") == 1
