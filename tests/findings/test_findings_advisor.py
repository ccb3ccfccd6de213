"""The advisor study's findings on hand-made run records (no training): the gap per pair at each optimizer's
best learning rate, the median score over seeds, and the verdict both ways and on missing points."""
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from configs import advisor_study as S  # noqa: E402
from heterogeneity.experiment import _advisor as A  # noqa: E402
from heterogeneity.experiment._config import resolve  # noqa: E402

PAIRS = list(S.PAIRS)
GAP = {p: -1.0 + 4.0 * i / (len(PAIRS) - 1) for i, p in enumerate(PAIRS)}  # log(L_SGD / L_Adam), one per pair
BEST = {"sgd": 2, "adam": 3}  # index of each optimizer's best lr in its grid


def _records(score_of, *, drop=(), diverge=()):
    """One record per laptop grid point. At the best lr, Adam's loss is 0.1·(1 + seed/10) and SGD's is
    e^gap times that; every other lr is 10x worse. Scores: ``score_of(pair, seed) -> {name: value}``."""
    out = {}
    for i, hp in enumerate(resolve(S.CONFIG)):
        p, o, seed = hp["pair"], hp["optimizer"], hp["seed"]
        if p in drop:
            continue
        if hp["measure"] == "scores":
            out[f"r{i}"] = {"status": "finished", "hparams": hp, "final": score_of(p, seed)}
            continue
        adam = 0.1 * (1 + seed / 10)
        best = S.PAIRS[p]["lrs"][o][BEST[o]]
        loss = (adam * math.exp(GAP[p]) if o == "sgd" else adam) * (1 if hp["lr"] == best else 10)
        # networks: the training-subset loss counts, not the last minibatch's final_loss
        final = {"final_loss": loss} if S.PAIRS[p]["run"] == "quadratic" else {"eval_train_loss": loss, "final_loss": 99.0}
        status = "diverged" if (p, o, seed) in diverge and hp["lr"] == best else "finished"
        out[f"r{i}"] = {"status": status, "hparams": hp, "final": final}
    return out


def _tracking(p, seed):
    sc = {s: float(np.random.default_rng(hash((p, s, seed)) % 2**32).normal()) for s in A.SCORES}
    sc["gini_weights"] = 0.3 + 0.1 * GAP[p] + 0.001 * seed  # ranks the pairs exactly as the gap
    return sc


def test_gap_is_the_log_ratio_at_each_optimizers_best_lr():
    table = S.study_table(_records(_tracking))
    assert set(table) == set(PAIRS)
    for p, t in table.items():
        assert t["gap"] == pytest.approx(GAP[p]) and t["gaps"] == pytest.approx([GAP[p]] * 3)
        assert t["sgd"]["lr"] == S.PAIRS[p]["lrs"]["sgd"][BEST["sgd"]]
        assert t["adam"]["lr"] == S.PAIRS[p]["lrs"]["adam"][BEST["adam"]]
        assert t["scores"]["gini_weights"] == pytest.approx(0.3 + 0.1 * GAP[p] + 0.001)  # median over seeds 0..2
        assert t["n_scores"] == 3


def test_a_diverged_sgd_seed_is_an_infinite_gap_for_that_seed():
    p = PAIRS[0]
    table = S.study_table(_records(_tracking, diverge={(p, "sgd", 2)}))
    # seed 2's SGD diverged at the otherwise best lr: the median over seeds picks the next lr if it is better
    t = table[p]
    assert math.isfinite(t["gap"])
    assert S._log_ratio(math.inf, 1.0) == math.inf and S._log_ratio(1.0, math.inf) == -math.inf
    assert S._log_ratio(0.0, 0.0) == 0.0 and S._log_ratio(2.0, 1.0) == pytest.approx(math.log(2))


def test_holds_when_a_score_ranks_the_gap():
    f = S.findings(_records(_tracking))
    assert f.verdict == "holds", f.reason
    cal = f.numbers["calibration"]
    assert cal["per_score"]["gini_weights"]["spearman"] == pytest.approx(1.0)
    assert cal["predictive"]
    assert "| gini_weights |" in f.table and "LOO accuracy" in f.table


def test_does_not_hold_when_scores_are_noise():
    def noise(p, seed):
        return {s: float(np.random.default_rng(hash((p, s)) % 2**32).normal()) for s in A.SCORES}

    f = S.findings(_records(noise))
    assert f.verdict in ("does not hold at this scale", "holds qualitatively"), f.reason
    assert not any(v["spearman"] >= S.TARGET_RHO and v["ci95"][0] > 0
                   for v in f.numbers["calibration"]["per_score"].values() if v["n"] >= S.MIN_PAIRS)


def test_incomplete_when_a_pair_is_missing():
    f = S.findings(_records(_tracking, drop={"gpt"}))
    assert f.verdict == "incomplete" and "gpt" in f.reason


def test_pairs_cover_the_issue_and_have_gpu_settings():
    assert len(S.PAIRS) >= 10
    for want in ("mlp_c1", "mlp_c10", "mlp_c100", "cnn", "mixer", "vit", "encoder_pre_ln", "encoder_post_ln",
                 "encoder_no_ln", "gpt", "quadratic_case3", "quadratic_case4"):
        assert want in S.PAIRS
    for p, spec in S.PAIRS.items():
        assert spec.get("gpu"), p
        assert len(spec["lrs"]["sgd"]) >= 5 and len(spec["lrs"]["adam"]) >= 5, p
    gpu = S.pair_settings({"pair": "vit", "size": "gpu", "seed": 0, "measure": "train", "optimizer": "adam", "lr": 1e-3})
    assert gpu["d_model"] == 192 and gpu["eval_every"] == gpu["steps"] == 3000
    with pytest.raises(ValueError, match="unknown pair"):
        S.pair_settings({"pair": "resnet152", "seed": 0})
