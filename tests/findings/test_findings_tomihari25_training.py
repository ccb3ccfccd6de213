"""[Tomihari25] findings: Fig. 4 (optimizer comparison across models) and Fig. 5 (schedules).

Hand-made run records (no training): each verdict rule is checked both ways, and "incomplete" on
missing points.
"""
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from configs import optimizer_comparison as oc  # noqa: E402
from configs import schedules as sc  # noqa: E402
from configs._findings import VERDICTS  # noqa: E402
from heterogeneity.experiment._config import resolve  # noqa: E402


def _records(config, lrs_of, loss_of, drop=lambda hp: False):
    """One finished record per grid point, best at the middle learning rate of each grid (interior)."""
    out = {}
    for i, hp in enumerate(resolve(config, scale="laptop")):
        if drop(hp):
            continue
        grid = lrs_of(hp)
        off = abs(np.log10(hp["lr"]) - np.log10(grid[len(grid) // 2]))
        loss = loss_of(hp) * (1 + off) * (1 + 0.01 * hp["seed"])
        out[f"r{i}"] = {"status": "finished", "hparams": hp, "final": {"eval_train_loss": loss}, "extras": {}}
    return out


# ------------------------------------------------------------------------------- Fig. 4

def _oc_records(losses, drop=lambda hp: False):
    """``losses[model][optimizer]``: the best-LR loss of that cell."""
    return _records(oc.CONFIG, lambda hp: oc.LRS[hp["model"]][hp["optimizer"]],
                    lambda hp: losses[hp["model"]][hp["optimizer"]], drop)


def _oc_losses(enc_sgd=0.69, enc_sign=0.06, cnn_sgd=0.11):
    return {"transformer": {"adam": 0.05, "signsgd": enc_sign, "signsgd_s": enc_sign + 0.01, "sgd": enc_sgd},
            "cnn": {"adam": 0.1, "signsgd": 0.12, "signsgd_s": 0.13, "sgd": cnn_sgd},
            "vit": {"adam": 0.1, "signsgd": 0.12, "signsgd_s": 0.13, "sgd": 0.15}}


def test_optimizer_comparison_holds():
    f = oc.findings(_oc_records(_oc_losses()))
    assert f.verdict == "holds", f.reason
    assert f.numbers["sgd_fails_on_encoder"] and f.numbers["sign_close_on_encoder"] and f.numbers["sgd_ok_on_cnn"]
    assert math.isclose(f.numbers["gap_to_adam"]["transformer/sgd"], 1.01 * (0.69 - 0.05) / math.log(2))  # median seed: x1.01
    grid = oc.LRS["transformer"]["sgd"]
    assert f.numbers["best_lr"]["transformer/sgd"] == grid[len(grid) // 2]
    assert f.numbers["lr_on_edge"] == [] and "edge" not in f.reason
    assert "SignSGD (S)" in f.table and "Post-LN encoder" in f.table


def test_optimizer_comparison_qualitative_and_not():
    # the sign methods lag Adam on the encoder (gap 0.2 > 0.1) but SGD is still far worse: qualitative
    f = oc.findings(_oc_records(_oc_losses(enc_sign=0.19)))
    assert f.verdict == "holds qualitatively", f.reason
    assert not f.numbers["sign_close_on_encoder"]
    # SGD trains the encoder as well as Adam: the claim fails
    f = oc.findings(_oc_records(_oc_losses(enc_sgd=0.07)))
    assert f.verdict == "does not hold at this scale", f.reason
    assert "Likely reason" in f.reason and not f.numbers["sgd_fails_on_encoder"]
    # SGD stays at chance on the CNN too (gap 0.96 > the encoder gap 0.93): the contrast fails
    f = oc.findings(_oc_records(_oc_losses(cnn_sgd=2.3)))
    assert f.verdict == "does not hold at this scale", f.reason


def test_optimizer_comparison_edge_and_divergence():
    runs = _oc_records(_oc_losses())
    for r in runs.values():  # the largest SGD rate on the CNN diverges, the smallest becomes best: on the edge
        hp = r["hparams"]
        if hp["model"] == "cnn" and hp["optimizer"] == "sgd":
            if hp["lr"] == max(oc.LRS["cnn"]["sgd"]):
                r["status"], r["final"] = "diverged", {}
            elif hp["lr"] == min(oc.LRS["cnn"]["sgd"]):
                r["final"]["eval_train_loss"] = 0.01
    f = oc.findings(runs)
    assert "cnn/sgd" in f.numbers["lr_on_edge"] and "grid's edge" in f.reason


def test_optimizer_comparison_incomplete():
    f = oc.findings(_oc_records(_oc_losses(), drop=lambda hp: hp["model"] == "vit" and hp["optimizer"] == "adam"))
    assert f.verdict == "incomplete" and "vit/adam" in f.numbers["missing"]
    f = oc.findings(_oc_records(_oc_losses(), drop=lambda hp: hp["model"] == "cnn" and hp["seed"] == 2))
    assert f.verdict == "incomplete" and f.numbers["too_few_seeds"]
    assert oc.findings({}).verdict == "incomplete"


def test_optimizer_comparison_build_strips_prefixes():
    hp = resolve(oc.CONFIG, scale="laptop")[0]
    plain = oc.model_hparams(hp)
    assert plain["model"] == "transformer" and plain["num_layers"] == 6 and plain["norm"] == "post"
    assert not any(k.startswith(("tf.", "vit.", "cnn.")) for k in plain) and "channels" not in plain
    cnn = oc.model_hparams({**hp, "model": "cnn"})
    assert cnn["channels"] == [16, 32] and "num_layers" not in cnn
    assert all(v in VERDICTS for v in ("holds", "incomplete"))


# ------------------------------------------------------------------------------- Fig. 5

def _sc_records(losses, drop=lambda hp: False):
    """``losses[(optimizer, schedule)]``: the best-LR loss of that cell."""
    return _records(sc.CONFIG, lambda hp: sc.LRS[hp["optimizer"]],
                    lambda hp: losses[hp["optimizer"], hp["schedule"]], drop)


def _sc_losses(sign_const=0.3, sign_cos=0.06, sgd_best=0.6):
    return {("adam", "linear"): 0.05, ("signsgd", "constant"): sign_const, ("signsgd", "cosine"): sign_cos,
            ("signsgd", "linear_warmup"): sign_cos + 0.02, ("sgd", "constant"): 0.69, ("sgd", "cosine"): sgd_best,
            ("sgd", "linear_warmup"): 0.68}


def test_schedules_holds():
    f = sc.findings(_sc_records(_sc_losses()))
    assert f.verdict == "holds", f.reason
    assert f.numbers["sgd_fails"] and f.numbers["signsgd_close"] and f.numbers["signsgd_helped"]
    assert math.isclose(f.numbers["signsgd_gain_over_constant"], 1.01 * (0.3 - 0.06) / math.log(2))
    middle = sc.LRS["signsgd"][len(sc.LRS["signsgd"]) // 2]  # where _records puts the best rate
    assert f.numbers["best_lr"]["signsgd/cosine"] == middle and f.numbers["lr_on_edge"] == []
    assert "Lin-W" in f.table and "Cos" in f.table


def test_schedules_qualitative_and_not():
    # SignSGD is already close at a constant rate: no gain from the schedule, SGD still fails -> qualitative
    f = sc.findings(_sc_records(_sc_losses(sign_const=0.07)))
    assert f.verdict == "holds qualitatively", f.reason
    assert not f.numbers["signsgd_helped"]
    # a schedule lets SGD train: the claim fails
    f = sc.findings(_sc_records(_sc_losses(sgd_best=0.08)))
    assert f.verdict == "does not hold at this scale", f.reason
    assert not f.numbers["sgd_fails"] and "Likely reason" in f.reason
    # SignSGD stays as bad as SGD under every schedule
    f = sc.findings(_sc_records(_sc_losses(sign_const=0.69, sign_cos=0.6)))
    assert f.verdict == "does not hold at this scale", f.reason


def test_schedules_incomplete():
    f = sc.findings(_sc_records(_sc_losses(), drop=lambda hp: hp["optimizer"] == "adam"))
    assert f.verdict == "incomplete" and f.numbers["missing"] == ["adam/linear"]
    f = sc.findings(_sc_records(_sc_losses(), drop=lambda hp: hp["schedule"] == "cosine" and hp["seed"] == 0))
    assert f.verdict == "incomplete" and "sgd/cosine" in f.numbers["too_few_seeds"]
