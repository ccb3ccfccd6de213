"""Findings of the [SignMomentum25] configs on hand-made run records (no training): the verdict both ways, and
"incomplete" on missing points."""
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from configs import majority_vote, sign_methods, sign_sensitivity  # noqa: E402
from heterogeneity.experiment._config import resolve  # noqa: E402


def records(module, loss, workers=None):
    """One finished record per laptop grid point, ``final_train_loss = loss(hparams)``."""
    out = {}
    for i, hp in enumerate(resolve(module.CONFIG)):
        value = loss(hp)
        rec = {"status": "finished", "hparams": hp,
               "final": {"eval_train_loss": value, "eval_val_acc": 1.0 - value / 10, "final_grad_l1": 10 * value,
                         "final_grad_l2": value},
               "extras": {"num_workers": workers if workers is not None else hp.get("workers", 1)}}
        if not math.isfinite(value):
            rec["status"] = "diverged"
        out[f"r{i}"] = rec
    return out


def bowl(hp, best_lr, floor, width=1.0):
    """A loss that is ``floor`` at ``best_lr`` and grows with the squared log-distance from it."""
    return floor * (1 + (math.log10(hp["lr"] / best_lr) / width) ** 2) + 0.001 * hp["seed"]


CENTRAL_BEST = {"signum_first_gradient": 1e-3, "signsgd": 1e-3, "ef_signsgd": 0.3, "adamw": 3e-3, "sgd": 0.1}


def test_sign_methods_holds_and_fails():
    good = {"signum_first_gradient": 0.05, "adamw": 0.055, "signsgd": 0.1, "ef_signsgd": 0.08, "sgd": 0.2}
    f = sign_methods.findings(records(sign_methods, lambda h: bowl(h, CENTRAL_BEST[h["optimizer"]],
                                                                    good[h["optimizer"]])))
    assert f.verdict == "holds", f.reason
    assert f.numbers["order"][0] == "Signum" and "| Signum |" in f.table
    close = {**good, "signum_first_gradient": 0.06, "adamw": 0.055}  # beats sign baselines, within 1.2x of AdamW
    f = sign_methods.findings(records(sign_methods, lambda h: bowl(h, CENTRAL_BEST[h["optimizer"]],
                                                                    close[h["optimizer"]])))
    assert f.verdict == "holds qualitatively", f.reason
    bad = {**good, "signum_first_gradient": 0.3}
    runs = records(sign_methods, lambda h: bowl(h, CENTRAL_BEST[h["optimizer"]], bad[h["optimizer"]]))
    f = sign_methods.findings(runs)
    assert f.verdict == "does not hold at this scale", f.reason
    off = next(r for r in runs.values() if r["hparams"]["optimizer"] == "signum_first_gradient")
    runs["off-grid"] = {**off, "hparams": {**off["hparams"], "lr": 0.123}, "final": {**off["final"],
                                                                                      "eval_train_loss": 1e-9}}
    assert sign_methods.findings(runs).verdict == "does not hold at this scale"  # a point of an old grid is ignored


def test_sign_methods_incomplete():
    runs = records(sign_methods, lambda h: 0.1)
    runs.pop(next(iter(runs)))
    assert sign_methods.findings(runs).verdict == "incomplete"
    runs = records(sign_methods, lambda h: 0.1)
    runs[next(iter(runs))]["status"] = "failed"
    assert sign_methods.findings(runs).verdict == "incomplete"


def _mv_name(hp):
    return majority_vote.METHODS[(hp["optimizer"], hp.get("opt.beta"))]


def test_majority_vote_holds_and_fails():
    good = {"MVSM-v2": 0.05, "MVSM-v1 (= MV-sto-signSGD-SIM)": 0.06, "Signum-MV": 0.07, "signSGD-MV": 0.2,
            "Sto-signSGD": 0.3}
    f = majority_vote.findings(records(majority_vote, lambda h: bowl(h, 1e-3, good[_mv_name(h)])))
    assert f.verdict == "holds", f.reason
    assert f.numbers["v1_vs_v2"] == "v2 < v1" and f.numbers["workers"] == 8
    v1 = {**good, "MVSM-v2": 0.065}
    f = majority_vote.findings(records(majority_vote, lambda h: bowl(h, 1e-3, v1[_mv_name(h)])))
    assert f.verdict == "holds qualitatively" and f.numbers["v1_vs_v2"] == "v1 <= v2", f.reason
    bad = {**good, "signSGD-MV": 0.04}
    f = majority_vote.findings(records(majority_vote, lambda h: bowl(h, 1e-3, bad[_mv_name(h)])))
    assert f.verdict == "does not hold at this scale", f.reason


def test_majority_vote_incomplete_and_workers():
    runs = records(majority_vote, lambda h: 0.1)
    runs.pop(next(iter(runs)))
    assert majority_vote.findings(runs).verdict == "incomplete"
    f = majority_vote.findings(records(majority_vote, lambda h: 0.1, workers=1))  # not the 8 workers asked for
    assert f.verdict == "incomplete" and "8 workers" in f.reason


def test_majority_vote_runs_eight_workers():
    points = resolve(majority_vote.CONFIG)
    assert {p["workers"] for p in points} == {8} and all(p["batch_size"] % 8 == 0 for p in points)


def _sens(h, signum_width, adamw_width, beta_penalty, adamw_best=1e-2):
    name = h["optimizer"]
    if name == "signum_first_gradient":
        base = bowl(h, 1e-3, 0.05, signum_width)
        return base * (1 + beta_penalty * abs(h["opt.beta"] - 0.75))
    if name == "adamw":
        return bowl(h, adamw_best, 0.05, adamw_width)
    return bowl(h, CENTRAL_BEST[name], 0.1)


def test_sign_sensitivity_holds_and_fails():
    f = sign_sensitivity.findings(records(sign_sensitivity, lambda h: _sens(h, 0.3, 1.0, 0.5)))
    assert f.verdict == "holds", f.reason
    assert all(f.numbers["checks"].values()) and f.numbers["lr_ratio_adamw_signum"] == pytest.approx(10.0)
    f = sign_sensitivity.findings(records(sign_sensitivity, lambda h: _sens(h, 0.3, 0.1, 0.5)))  # AdamW sharper
    assert f.verdict == "holds qualitatively" and not f.numbers["checks"]["adamw_less_sensitive"], f.reason
    f = sign_sensitivity.findings(records(sign_sensitivity, lambda h: _sens(h, 0.3, 1.0, 10.0)))  # beta-fragile
    assert f.verdict == "does not hold at this scale" and not f.numbers["checks"]["signum_beta_robust"], f.reason
    f = sign_sensitivity.findings(records(sign_sensitivity, lambda h: _sens(h, 0.1, 1.0, 0.5)))  # narrow lr range
    assert f.verdict == "does not hold at this scale" and not f.numbers["checks"]["signum_stable_range"], f.reason


def test_sign_sensitivity_incomplete():
    runs = records(sign_sensitivity, lambda h: 0.1)
    runs.pop(next(iter(runs)))
    assert sign_sensitivity.findings(runs).verdict == "incomplete"


def test_stable_decades():
    c = {1e-4: 1.0, 3e-4: 0.3, 1e-3: 0.1, 3e-3: 0.15, 1e-2: math.inf, 3e-2: 0.2}  # good: loss <= 0.1 + 0.1 (ln 10 - 0.1)
    assert sign_sensitivity.threshold(0.1) == pytest.approx(0.1 + 0.1 * (math.log(10) - 0.1))
    assert sign_sensitivity.stable_decades(c) == pytest.approx(1.0)  # 3e-4 .. 3e-3; 3e-2 alone is a shorter run
