"""`findings` of the [Tomihari25] analysis configs on hand-made run records (no training).

ln_placement (Table 2), grad_correlation (Figs. 1–2), nanogpt_char (Tables S.10–S.11) and
seed000_quadratic (Table S.9): each verdict both ways, and "incomplete" on missing points.
"""
import itertools
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from configs import grad_correlation, ln_placement, nanogpt_char, seed000_quadratic  # noqa: E402
from configs._findings import VERDICTS  # noqa: E402


def _rec(i, hparams, final, status="finished"):
    return f"r{i}", {"run_id": f"r{i}", "status": status, "hparams": hparams, "final": final}


def _runs(rows):
    return dict(_rec(i, hp, fin) for i, (hp, fin) in enumerate(rows))


# ---------------------------------------------------------------- ln_placement (Table 2)

LN_LRS = {"adam": [1e-3, 3e-3, 1e-2], "signsgd": [3e-4, 1e-3, 3e-3], "sgd": [0.03, 0.1, 0.3]}


def _ln_runs(gini, loss, skip=()):
    """``gini[norm]``; ``loss[(norm, opt)]`` at the middle learning rate (2x worse on the edges)."""
    rows = []
    for norm, opt, seed in itertools.product(ln_placement.NORMS, ln_placement.OPTIMIZERS, range(3)):
        if (norm, opt) in skip:
            continue
        for j, lr in enumerate(LN_LRS[opt]):
            base = loss[norm, opt] * (1 if j == 1 else 2) + 1e-4 * seed
            rows.append(({"norm": norm, "optimizer": opt, "lr": lr, "seed": seed},
                         {"eval_train_loss": base, "eval_gini_w": gini[norm] + 0.001 * seed,
                          "eval_gini_all": gini[norm] - 0.01, "gini_w_init": 0.5, "gini_all_init": 0.55}))
    return _runs(rows)


def _ln_loss(gap):
    return {(n, o): {"adam": 0.01, "signsgd": 0.02, "sgd": 0.02 + gap[n]}[o] for n in ln_placement.NORMS
            for o in ln_placement.OPTIMIZERS}


def test_ln_placement_holds_when_post_ln_is_most_heterogeneous_and_sgd_gap_largest():
    f = ln_placement.findings(_ln_runs({"post": 0.9, "pre": 0.8, "none": 0.7},
                                       _ln_loss({"post": 0.5, "pre": 0.1, "none": 0.05})))
    assert f.verdict == "holds", f.reason
    assert f.numbers["gini_order"] == ["post", "pre", "none"] and "0.941" in f.table
    assert f.numbers["best_lr"]["post/adam"] == 3e-3  # the middle rate: tuned, not on an edge
    assert "edge" not in f.reason


def test_ln_placement_qualitative_and_failing():
    # Post-LN largest but No-LN above Pre-LN (the laptop finding of the 400-step version)
    f = ln_placement.findings(_ln_runs({"post": 0.9, "pre": 0.7, "none": 0.8},
                                       _ln_loss({"post": 0.5, "pre": 0.1, "none": 0.05})))
    assert f.verdict == "holds qualitatively", f.reason
    # No-LN most heterogeneous and the SGD gap largest on Pre-LN: the claim fails
    f = ln_placement.findings(_ln_runs({"post": 0.7, "pre": 0.8, "none": 0.9},
                                       _ln_loss({"post": 0.05, "pre": 0.5, "none": 0.1})))
    assert f.verdict == "does not hold at this scale" and "Likely reason for the Gini" in f.reason
    # the Gini order of the paper, but SGD as good as Adam everywhere (the laptop finding): fails on the optimizers
    loss = {(n, o): {"adam": 3e-4, "signsgd": 2e-4, "sgd": 2e-4}[o] for n in ln_placement.NORMS
            for o in ln_placement.OPTIMIZERS}
    f = ln_placement.findings(_ln_runs({"post": 0.84, "pre": 0.8, "none": 0.7}, loss))
    assert f.verdict == "does not hold at this scale" and f.numbers["gini_strict"]
    assert "Likely reason for the optimizers" in f.reason and "Likely reason for the Gini" not in f.reason


def test_ln_placement_incomplete():
    f = ln_placement.findings(_ln_runs({"post": 0.9, "pre": 0.8, "none": 0.7},
                                       _ln_loss({"post": 0.5, "pre": 0.1, "none": 0.05}), skip={("none", "sgd")}))
    assert f.verdict == "incomplete" and "none/sgd" in f.reason
    assert "0.941" in f.table and f.numbers["gini_order"] == ["post", "pre", "none"]  # the Gini part is reported
    f = ln_placement.findings(_ln_runs({"post": 0.9, "pre": 0.8, "none": 0.7},
                                       _ln_loss({"post": 0.5, "pre": 0.1, "none": 0.05}), skip={("pre", "adam")}))
    assert f.verdict == "incomplete" and f.table == ""
    assert ln_placement.findings({}).verdict == "incomplete"


# ---------------------------------------------------------------- grad_correlation (Figs. 1–2)

def _corr_runs(gh, noise, models=grad_correlation.MODELS):
    rows = []
    for m, seed in itertools.product(models, range(3)):
        rows.append(({"model": m, "optimizer": "adam", "lr": 1e-3, "seed": seed},
                     {"eval_train_loss": 0.1, "gh_spearman": gh[m] + 0.01 * seed, "gh_pearson_log": gh[m],
                      "hp_spearman": 0.0, "noise_spearman": noise[m], "noise_pearson_log": noise[m], "sigma2": 50.0,
                      "ratio_q50": 2.0, "ratio_q90": 10.0}))
    return _runs(rows)


@pytest.mark.parametrize("gh,noise,verdict", [
    (0.8, 0.9, "holds"),
    (0.3, 0.9, "holds qualitatively"),
    (-0.2, 0.9, "does not hold at this scale"),
    (0.8, -0.1, "does not hold at this scale"),
])
def test_grad_correlation_verdicts(gh, noise, verdict):
    models = grad_correlation.MODELS
    f = grad_correlation.findings(_corr_runs({m: gh if m == "transformer" else 0.7 for m in models},
                                             {m: noise if m == "mlp" else 0.8 for m in models}))
    assert f.verdict == verdict, f.reason
    assert set(f.numbers["gh_spearman"]) == set(models)


def test_grad_correlation_incomplete():
    f = grad_correlation.findings(_corr_runs({m: 0.8 for m in grad_correlation.MODELS},
                                             {m: 0.8 for m in grad_correlation.MODELS}, models=["transformer", "cnn"]))
    assert f.verdict == "incomplete" and "mlp" in f.reason


# ---------------------------------------------------------------- nanogpt_char (Tables S.10–S.11)

GPT_LRS = {"adam": [1e-3, 3e-3, 1e-2], "signsgd": [1e-4, 3e-4, 1e-3], "sgd": [0.1, 0.3, 1.0],
           "signsgd_s": [1e-6, 3e-6, 1e-5]}


def _gpt_runs(last, gini=0.6, skip=()):
    rows = []
    for opt, seed in itertools.product(nanogpt_char.OPTIMIZERS, range(3)):
        if opt in skip:
            continue
        for j, lr in enumerate(GPT_LRS[opt]):
            loss = last[opt] + (0 if j == 1 else 0.3) + 0.01 * seed
            rows.append(({"optimizer": opt, "lr": lr, "seed": seed},
                         {"eval_train_loss": loss, "min_train_loss": loss - 0.02, "eval_gini": gini + 0.001 * seed,
                          "gini_init": 0.5}))
    return _runs(rows)


def test_nanogpt_char_holds_and_fails():
    good = {"adam": 1.8, "signsgd": 1.9, "sgd": 2.2, "signsgd_s": 1.95}
    f = nanogpt_char.findings(_gpt_runs(good))
    assert f.verdict == "holds", f.reason
    assert f.numbers["best_lr"]["adam"] == 3e-3 and "0.687" in f.table and not f.numbers["edge"]
    # heterogeneity outside the paper's band: the ordering alone is only qualitative
    assert nanogpt_char.findings(_gpt_runs(good, gini=0.2)).verdict == "holds qualitatively"
    bad = {**good, "sgd": 1.7}
    f = nanogpt_char.findings(_gpt_runs(bad))
    assert f.verdict == "does not hold at this scale" and "Likely reason" in f.reason


def test_nanogpt_char_incomplete():
    assert nanogpt_char.findings(_gpt_runs({"adam": 1.8, "signsgd": 1.9, "sgd": 2.2, "signsgd_s": 1.9},
                                           skip={"sgd"})).verdict == "incomplete"


def test_nanogpt_char_diverged_runs_lose():
    runs = _gpt_runs({"adam": 1.8, "signsgd": 1.9, "sgd": 2.2, "signsgd_s": 1.95})
    for r in runs.values():  # SGD at its middle rate diverges: the best SGD rate moves to an edge
        if r["hparams"]["optimizer"] == "sgd" and r["hparams"]["lr"] == 0.3:
            r["status"], r["final"] = "diverged", {"diverged_step": 10}
    f = nanogpt_char.findings(runs)
    assert f.verdict in VERDICTS and f.numbers["best_lr"]["sgd"] != 0.3 and "sgd" in f.numbers["edge"]


# ---------------------------------------------------------------- seed000_quadratic (Table S.9)

def _quad_runs(gaps, lambda_g=4999.9997, lambda_p=None, skip=()):
    lambda_p = lambda_p or seed000_quadratic.EXACT_LAMBDA_P
    rows = []
    for s, opt, seed in itertools.product(("homo", "hetero"), ("sgd", "signsgd_s"), range(3)):
        if (s, opt) in skip:
            continue
        fin = {"lambda_p": lambda_p[s], "rel_gap": gaps[opt, s], "steps_to_tol": 100.0}
        if opt == "sgd":
            fin["lambda_g"] = lambda_g
        rows.append(({"setting": s, "optimizer": opt, "lr": "optimal", "seed": seed}, fin))
    for s, lr, seed in itertools.product(("homo", "hetero"), (1e-3, 1e-2, 1e-1), range(3)):
        rows.append(({"setting": s, "optimizer": "adam", "lr": lr, "seed": seed},
                     {"lambda_p": lambda_p[s], "rel_gap": 1e-3 if lr == 1e-2 else 1e-2}))
    return _runs(rows)


PAPER_GAPS = {("sgd", "homo"): 1e-3, ("sgd", "hetero"): 2e-3, ("signsgd_s", "homo"): 1e-2,
              ("signsgd_s", "hetero"): 1e-8}


def test_seed000_quadratic_holds():
    f = seed000_quadratic.findings(_quad_runs(PAPER_GAPS))
    assert f.verdict == "holds", f.reason
    assert "1701.3333" in f.table and "4999.9997" in f.table and f.numbers["check_failures"] == []
    assert f.numbers["adam_lr"] == {"homo": 1e-2, "hetero": 1e-2}


def test_seed000_quadratic_fails_on_wrong_numbers_or_dynamics():
    # SignSGD no faster on Hetero than on Homo: the Λ_P story fails
    f = seed000_quadratic.findings(_quad_runs({**PAPER_GAPS, ("signsgd_s", "hetero"): 1e-1}))
    assert f.verdict == "does not hold at this scale", f.reason
    # Λ_G below the check's range: a failed check, never "holds"
    f = seed000_quadratic.findings(_quad_runs(PAPER_GAPS, lambda_g=4000.0))
    assert f.verdict == "does not hold at this scale" and f.numbers["check_failures"]
    # Λ_G inside the check's range but 1% off the paper: only qualitative
    f = seed000_quadratic.findings(_quad_runs(PAPER_GAPS, lambda_g=4950.0))
    assert f.verdict == "holds qualitatively", f.reason


def test_seed000_quadratic_incomplete():
    assert seed000_quadratic.findings(_quad_runs(PAPER_GAPS, skip={("hetero", "signsgd_s")})).verdict == "incomplete"
    assert seed000_quadratic.findings({}).verdict == "incomplete"
