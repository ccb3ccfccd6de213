"""[Zhang24] findings rules on hand-made run records (no training): quadratic cases 1–4, JS⁰ at init,
MLP layer scale c, pre-trained vs scratch. Each rule is checked both ways and on missing points."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from configs import js0_init, mlp_scale, pretrained_vs_scratch, quadratic_cases  # noqa: E402
from heterogeneity.experiment._config import resolve  # noqa: E402


def _records(config, final_of):
    """One finished record per laptop grid point, ``final = final_of(hparams)``."""
    return {f"r{i}": {"status": "finished", "hparams": hp, "final": final_of(hp)}
            for i, hp in enumerate(resolve(config))}


# ---------------------------------------------------------------- quadratic cases
def _quadratic(gd_paper, gd_tuned, adam):
    """rel_gap by row; each argument maps case -> gap (the lr grid's other points are worse by 10x)."""
    def final(hp):
        c, opt, lr = int(hp["case"]), hp["optimizer"], hp["lr"]
        if opt == "sgd":
            return {"rel_gap": gd_paper[c] if lr == "optimal" else (gd_tuned[c] if lr == 3.9e-4 else 10 * gd_paper[c])}
        best = {"frozen_adam": 1e-2, "adam_no_bias_correction": 1e-3, "blockwise_adam": 1e-3}[opt]
        return {"rel_gap": adam[c] if lr == best else 10 * adam[c]}
    return _records(quadratic_cases.CONFIG, final)


def test_quadratic_holds_with_the_paper_step():
    f = quadratic_cases.findings(_quadratic({1: 1e-2, 2: 1e-4, 3: 1e-2, 4: 1e-4}, {c: 1e-3 for c in range(1, 5)},
                                            {1: 1e-6, 2: 1e-4, 3: 1e-8, 4: 2e-4}))
    assert f.verdict == "holds", f.reason
    assert f.numbers["case3"]["ratio_gd_paper_over_adam"] == pytest.approx(1e6)


def test_quadratic_holds_qualitatively_when_only_tuned_gd_is_on_par():
    f = quadratic_cases.findings(_quadratic({c: 1e-2 for c in range(1, 5)}, {1: 1e-3, 2: 1e-6, 3: 1e-3, 4: 1e-6},
                                            {1: 1e-6, 2: 1e-5, 3: 1e-8, 4: 1e-5}))
    assert f.verdict == "holds qualitatively", f.reason
    assert "[2, 4]" in f.reason


def test_quadratic_does_not_hold_when_adam_equals_gd():
    gaps = {c: 1e-3 for c in range(1, 5)}
    f = quadratic_cases.findings(_quadratic(gaps, gaps, gaps))
    assert f.verdict == "does not hold at this scale", f.reason


def test_quadratic_incomplete():
    runs = _quadratic({c: 1e-2 for c in range(1, 5)}, {c: 1e-3 for c in range(1, 5)}, {c: 1e-6 for c in range(1, 5)})
    runs.pop(next(k for k, r in runs.items() if r["hparams"]["case"] == 2 and r["hparams"]["optimizer"] == "sgd"))
    assert quadratic_cases.findings(runs).verdict == "incomplete"
    runs = {k: r for k, r in runs.items() if r["hparams"]["case"] != 4}
    assert quadratic_cases.findings(runs).verdict == "incomplete"


# ---------------------------------------------------------------- JS0 at init
def _js0(values):
    def final(hp):
        v = values[hp["model"]]
        return {**{k: v for k in js0_init.KEYS}, "blocks_weights": 4.0, "blocks_all": 8.0}
    return _records(js0_init.CONFIG, final)


def test_js0_init_holds_and_not():
    f = js0_init.findings(_js0({"cnn": 0.1, "mixer": 2.0, "vit": 30.0, "transformer": 5.0, "gpt": 8.0}))
    assert f.verdict == "holds", f.reason
    f = js0_init.findings(_js0({"cnn": 0.1, "mixer": 6.0, "vit": 30.0, "transformer": 5.0, "gpt": 8.0}))
    assert f.verdict == "holds qualitatively", f.reason
    f = js0_init.findings(_js0({"cnn": 3.0, "mixer": 2.0, "vit": 30.0, "transformer": 5.0, "gpt": 8.0}))
    assert f.verdict == "does not hold at this scale", f.reason


def test_js0_init_incomplete():
    runs = _js0({"cnn": 0.1, "mixer": 2.0, "vit": 30.0, "transformer": 5.0, "gpt": 8.0})
    runs.pop(next(k for k, r in runs.items() if r["hparams"]["model"] == "gpt"))
    assert js0_init.findings(runs).verdict == "incomplete"


# ---------------------------------------------------------------- MLP layer scale c
def _mlp(sgd_acc, adam_acc, js):
    """Accuracies by c at lr 1e-2 (other lrs 0.1 worse); JS0 by c for every key."""
    def final(hp):
        c = hp["scale_c"]
        if hp["measure"] == "js0":
            return {k: js(c) for k in mlp_scale.JS_KEYS}
        acc = (sgd_acc if hp["optimizer"] == "sgd" else adam_acc)(c)
        return {"eval_val_acc": acc if hp["lr"] == 1e-2 else acc - 0.1, "final_loss": 1.0}
    return _records(mlp_scale.CONFIG, final)


def test_mlp_scale_holds_and_not():
    f = mlp_scale.findings(_mlp(lambda c: 0.95 - 0.04 * c, lambda c: 0.95, lambda c: float(c)))
    assert f.verdict == "holds", f.reason
    assert f.numbers["sgd_drop"] == pytest.approx(0.56)
    f = mlp_scale.findings(_mlp(lambda c: 0.95 - 0.04 * c, lambda c: 0.95, lambda c: 1.0 / c))
    assert f.verdict == "holds qualitatively", f.reason
    f = mlp_scale.findings(_mlp(lambda c: 0.95 - 0.04 * c, lambda c: 0.95, lambda c: float("nan") if c == 8 else c))
    assert f.verdict == "holds qualitatively" and "not finite at c = [8]" in f.reason, f.reason
    f = mlp_scale.findings(_mlp(lambda c: 0.95, lambda c: 0.95, lambda c: float(c)))
    assert f.verdict == "does not hold at this scale", f.reason


def test_mlp_scale_diverged_sgd_counts_as_worst():
    runs = _mlp(lambda c: 0.95, lambda c: 0.95, lambda c: float(c))
    for r in runs.values():
        if r["hparams"]["optimizer"] == "sgd" and r["hparams"]["scale_c"] == 15 and r["hparams"]["measure"] == "train":
            r["status"], r["final"] = "diverged", {}
    f = mlp_scale.findings(runs)
    assert f.verdict == "holds", f.reason
    assert "diverged" in f.table


def test_mlp_scale_incomplete():
    runs = _mlp(lambda c: 0.9, lambda c: 0.9, lambda c: 1.0)
    runs.pop(next(k for k, r in runs.items() if r["hparams"]["measure"] == "js0" and r["hparams"]["scale_c"] == 15))
    assert mlp_scale.findings(runs).verdict == "incomplete"


# ---------------------------------------------------------------- pre-trained vs scratch
def _pre(init, trained):
    def final(hp):
        s = hp["seed"]
        out = {f"init_{k}": init[s] for k in pretrained_vs_scratch.KEYS}
        out.update({f"trained_{k}": trained[s] for k in pretrained_vs_scratch.KEYS})
        return {**out, "init_slq_batch_loss": 4.2, "trained_slq_batch_loss": 2.0}
    return _records(pretrained_vs_scratch.CONFIG, final)


def test_pretrained_holds_and_not():
    assert pretrained_vs_scratch.findings(_pre([5.0, 6.0, 7.0], [1.0, 2.0, 3.0])).verdict == "holds"
    assert pretrained_vs_scratch.findings(_pre([5.0, 6.0, 7.0], [1.0, 2.0, 9.0])).verdict == "holds qualitatively"
    f = pretrained_vs_scratch.findings(_pre([5.0, 6.0, 7.0], [8.0, 9.0, 10.0]))
    assert f.verdict == "does not hold at this scale", f.reason
    # the headline (paper mode) rises while the shape-only modes fall: the other modes do not vote
    runs = _pre([5.0, 6.0, 7.0], [8.0, 9.0, 10.0])
    for r in runs.values():
        for k in pretrained_vs_scratch.KEYS:
            if "paper" not in k:
                r["final"][f"trained_{k}"] = r["final"][f"init_{k}"] / 2
    f = pretrained_vs_scratch.findings(runs)
    assert f.verdict == "does not hold at this scale" and "both fall" in f.reason, f.reason


def test_pretrained_incomplete():
    runs = _pre([5.0, 6.0, 7.0], [1.0, 2.0, 3.0])
    runs.pop(next(iter(runs)))
    assert pretrained_vs_scratch.findings(runs).verdict == "incomplete"
