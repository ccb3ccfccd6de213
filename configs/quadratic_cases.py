"""[Zhang24, §3.1] (Fig. 8 a–d): GD vs Adam on block-diagonal quadratics, cases 1–4.

Paper: ``L(w) = ½ wᵀHw``, ``H = diag(H_1, …, H_L)``, ``H_l = Q_l Λ_l Q_lᵀ``, ``h = 0``,
condition number 5000, standard Gaussian start. Case 1 (heterogeneous): 4 blocks of 25
eigenvalues sampled from GPT-2 block spectra (embedding, 3rd Query, 3rd Value, 3rd MLP);
case 2 (homogeneous): from ResNet18 conv layers 1–4; both shifted and scaled onto [1, 5000].
Case 3 (heterogeneous): 3 blocks ``{1,2,3}, {99,100,101}, {4998,4999,5000}``; case 4
(homogeneous): ``{1,99,4998}, {2,100,4999}, {3,101,5000}`` (the same nine eigenvalues).
GD uses ``η = 2/(μ + L)`` (eq. 1); Adam has β1 = 0, ε = 0, no bias correction and
β2 = 1 (eq. 2, ``frozen_adam``: the preconditioner frozen at ``|∇L(w_0)|``) or β2 = 0.99
(eq. 3, ``adam_no_bias_correction``), its learning rate grid-searched. Claim (Fig. 8): GD
largely lags behind Adam on cases 1 and 3 and is on par with Adam on cases 2 and 4. The paper
gives no step count, no Adam grid and no numbers (only curves).

Ours (`heterogeneity.problems.quadratic_case`, float64): cases 3–4 exactly; cases 1–2 with
parametric stand-ins for the GPT-2 / ResNet18 spectra (`problems.transformer_like_spectra`,
`problems.cnn_like_spectra`: four differently shaped and scaled blocks vs four alike
blocks, rescaled onto [1, 5000]). ``Q_l`` is Haar-orthogonal: the text says "i.i.d. Gaussian"
``Q_l``, but then ``H`` has condition number 10⁴–10⁸, not the stated 5000, and the block
spectra are not ``Λ_l``. Adam's grid: 1e-4 … 1 (half decades). Besides the paper's GD
step we also tune GD on a grid of steps below ``2/L`` (``lr`` ≤ 3.9e-4, ``L`` = 5000), the
same protocol Adam gets (the grid ends at 3.98e-4 < 2/(μ+L)): at a finite horizon ``2/(μ+L)`` is far from the best GD step (it
makes the λ_max directions, a third of the initial loss, decay as slowly as the λ_min
ones). Extra, not in the paper: blockwise Adam over the blocks ([Xie24, Algorithm 3]).
2000 steps, 3 seeds (problem and start drawn per seed); gpu scale: 20 000 steps.

Recorded: ``rel_gap = (L(w_T) − L*)/(L(w_0) − L*)`` (headline; [Zhang24, §3]), its
minimum over the run, ``steps_to_tol``. Findings: per case, GD's and the best Adam's
median final gap (lr tuned on the median over seeds) and their ratio.
"""
from __future__ import annotations

import functools
import math

import jax
import numpy as np

from configs._findings import best_over, edge_note, findings as make_findings, fmt, md_table
from heterogeneity import problems
from heterogeneity.experiment._config import RunSpec, SweepConfig, make_optimizer

CASES = [1, 2, 3, 4]
HETEROGENEOUS = (1, 3)
HOMOGENEOUS = (2, 4)
ADAM_LRS = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0]
GD_LRS = [5e-5, 1e-4, 2e-4, 3e-4, 3.5e-4, 3.8e-4, 3.9e-4, 3.95e-4, 3.98e-4]  # below 2/(μ+L) < 2/L = 4e-4 (L = 5000)
SEEDS = [0, 1, 2]
ADAMS = ("frozen_adam", "adam_no_bias_correction")
LAGS, ON_PAR = 10.0, 10.0  # "largely lags": GD more than 10x behind Adam; "on par": within 10x, or ahead

PAPER = ("[Zhang24, §3.1, Fig. 8]: on block-diagonal quadratics with condition number 5000, GD (η = 2/(μ+L)) "
         "largely lags behind Adam (β1 = 0, β2 = 1 or 0.99, no bias correction, lr grid-searched) when the blocks' "
         "spectra are heterogeneous (cases 1, 3) and is on par with Adam when they are homogeneous (cases 2, 4); "
         "curves only, no numbers.")


@functools.lru_cache(maxsize=64)
def problem(case: int, seed: int, rotation: str):
    return problems.quadratic_case(case, key=jax.random.key(seed), rotation=rotation)


def gd_optimal_lr(p) -> float:
    """``2/(λ_min + λ_max)`` ([Zhang24, eq. 1]; Nesterov 2013)."""
    return float(2.0 / (p.eigenvalues[0] + p.eigenvalues[-1]))


def quadratic_run(hp, p, *, lr) -> RunSpec:
    """A full-batch run on a `QuadraticProblem` (shared by the quadratic configs).

    Adds ``rel_gap = (L(w_T) − L*)/(L(w_0) − L*)``, its minimum over the logged steps and
    ``steps_to_tol`` (first logged step with ``rel_gap ≤ tol``; NaN if never) to the record.
    """
    params = p.init_params()
    gap0 = float(0.5 * p.x0 @ p.hessian @ p.x0 - p.linear @ p.x0) - p.min_value
    tol = float(hp.get("tol", 1e-6))

    def summarize(result):
        gaps = (np.asarray(result.history["loss"], np.float64) - p.min_value) / gap0
        hit = np.nonzero(gaps <= tol)[0]
        return {"rel_gap": (result.final["final_loss"] - p.min_value) / gap0,
                "steps_to_tol": float(result.history["step"][hit[0]]) if hit.size else float("nan"),
                "min_rel_gap": float(np.min(gaps)) if gaps.size else float("nan")}

    return RunSpec(
        loss_fn=p.loss_fn, params=params, optimizer=make_optimizer(hp, params, learning_rate=lr),
        num_steps=int(hp["steps"]), log_every=int(hp["log_every"]), partition=p.partition, summarize=summarize,
        extras={"lambda_p": p.lambda_p, "condition_number": p.condition_number, "learning_rate": lr,
                "block_condition_numbers": p.block_condition_numbers.tolist(), "min_value": p.min_value},
    )


def build(hp) -> RunSpec:
    p = problem(int(hp["case"]), int(hp["seed"]), hp["rotation"])
    lr = gd_optimal_lr(p) if hp["lr"] == "optimal" else float(hp["lr"])
    return quadratic_run(hp, p, lr=lr)


CONFIG = SweepConfig(
    name="quadratic_cases",
    description="[Zhang24, §3.1] cases 1-4: GD (2/(mu+L) and tuned) vs Adam(b1=0, b2=1 | 0.99, no bias corr.) "
                "vs blockwise Adam",
    build=build,
    base={"steps": 2000, "log_every": 10, "rotation": "orthogonal", "tol": 1e-6, "x64": True},
    grid=[
        {"case": CASES, "optimizer": ["sgd"], "lr": ["optimal"] + GD_LRS, "seed": SEEDS},
        {"case": CASES, "optimizer": ["frozen_adam"], "lr": ADAM_LRS, "seed": SEEDS},
        {"case": CASES, "optimizer": ["adam_no_bias_correction"], "lr": ADAM_LRS, "opt.b1": [0.0], "opt.b2": [0.99],
         "opt.eps": [0.0], "seed": SEEDS},
        {"case": CASES, "optimizer": ["blockwise_adam"], "lr": ADAM_LRS, "opt.b1": [0.0], "opt.b2": [0.99],
         "opt.partition": ["leaf"], "seed": SEEDS},
    ],
    scales={"laptop": {}, "gpu": {"steps": 20000, "log_every": 20}},
    smoke={"steps": 5, "log_every": 1},
    smoke_grid=[
        {"case": [1], "optimizer": ["sgd"], "lr": ["optimal"], "seed": [0]},
        {"case": [4], "optimizer": ["frozen_adam"], "lr": [1e-2], "seed": [0]},
        {"case": [3], "optimizer": ["adam_no_bias_correction"], "lr": [1e-2], "opt.b1": [0.0], "opt.b2": [0.99],
         "opt.eps": [0.0], "seed": [0]},
        {"case": [2], "optimizer": ["blockwise_adam"], "lr": [1e-2], "opt.b1": [0.0], "opt.b2": [0.99],
         "opt.partition": ["leaf"], "seed": [0]},
    ],
    metric="rel_gap",
)


def _cells(runs):
    """``{(case, row): best_over cell}`` for the rows ``gd_paper``, ``gd_tuned`` and each optimizer.

    ``gd_tuned`` chooses among GD_LRS and the paper's step 2/(μ+L) (the grid's upper end).
    """
    gd_paper = {k: r for k, r in runs.items() if r["hparams"].get("optimizer") == "sgd" and r["hparams"]["lr"] == "optimal"}
    gd_tuned = {k: r for k, r in runs.items() if r["hparams"].get("optimizer") == "sgd"}  # the paper's step included
    others = {k: r for k, r in runs.items() if r["hparams"].get("optimizer") != "sgd"}
    cells = {}
    for row, subset in (("gd_paper", gd_paper), ("gd_tuned", gd_tuned)):
        for (case,), cell in best_over(subset, ["case"], "rel_gap").items():
            cells[case, row] = cell
    for (case, opt), cell in best_over(others, ["case", "optimizer"], "rel_gap").items():
        cells[case, opt] = cell
    return cells


def _ratio(gd: float, adam: float) -> float:
    if adam == 0.0:
        return math.inf if gd > 0 else 1.0
    return gd / adam


def findings(runs):
    cells = _cells(runs)
    rows_needed = ["gd_paper", "gd_tuned", *ADAMS, "blockwise_adam"]
    missing = [f"case {c} {r}" for c in CASES for r in rows_needed if (c, r) not in cells]
    expected = {(int(p["case"]), p["optimizer"], str(p["lr"]), int(p["seed"])) for p in _points()}
    have = {(int(r["hparams"]["case"]), r["hparams"]["optimizer"], str(r["hparams"]["lr"]), int(r["hparams"]["seed"]))
            for r in runs.values() if r.get("status") in ("finished", "diverged")}
    n_missing = len(expected - have)
    numbers, table_rows, ok_paper, ok_tuned = {}, [], {}, {}
    for case in CASES:
        if any((case, r) not in cells for r in rows_needed):
            continue
        adam_row = min(ADAMS, key=lambda o: cells[case, o]["median"])
        adam = cells[case, adam_row]["median"]
        r_paper = _ratio(cells[case, "gd_paper"]["median"], adam)
        r_tuned = _ratio(cells[case, "gd_tuned"]["median"], adam)
        het = case in HETEROGENEOUS
        ok_paper[case] = r_paper >= LAGS if het else r_paper <= ON_PAR
        ok_tuned[case] = r_tuned >= LAGS if het else r_tuned <= ON_PAR
        numbers[f"case{case}"] = {
            **{row: {"median": cells[case, row]["median"], "q25": cells[case, row]["q25"],
                     "q75": cells[case, row]["q75"], "lr": cells[case, row]["lr"]} for row in rows_needed},
            "best_adam": adam_row, "ratio_gd_paper_over_adam": r_paper, "ratio_gd_tuned_over_adam": r_tuned}
        table_rows.append([
            f"{case} ({'hetero' if het else 'homo'})",
            *[f"{fmt(cells[case, row]['median'])} (lr {fmt(cells[case, row]['lr'])})" for row in rows_needed],
            fmt(r_paper), fmt(r_tuned),
            "GD largely lags behind Adam" if het else "GD on par with Adam"])
    table = md_table(["case", "GD η=2/(μ+L)", "GD tuned", "Adam β2=1", "Adam β2=0.99", "blockwise Adam",
                      "GD(2/(μ+L))/Adam", "GD(tuned)/Adam", "paper (Fig. 8)"], table_rows)
    rule = (f"Rule: per case, median final rel_gap over {len(SEEDS)} seeds, Adam = the better of β2=1 / β2=0.99 "
            f"(lr tuned on the median); 'GD largely lags' = GD/Adam ≥ {LAGS:g} on cases 1, 3; 'on par' = GD/Adam "
            f"≤ {ON_PAR:g} on cases 2, 4. holds: all four with the paper's GD step 2/(μ+L); holds qualitatively: all "
            f"four with GD's step tuned like Adam's, or the smallest heterogeneous ratio ≥ 100× the largest "
            "homogeneous one (the heterogeneity effect without parity).")
    if missing or n_missing:
        return make_findings(table, "incomplete", f"{n_missing} grid points missing ({', '.join(missing[:6])}). "
                             + rule, numbers)
    het_min = min(numbers[f"case{c}"]["ratio_gd_paper_over_adam"] for c in HETEROGENEOUS)
    homo_max = max(numbers[f"case{c}"]["ratio_gd_paper_over_adam"] for c in HOMOGENEOUS)
    contrast = het_min >= 100.0 * homo_max
    numbers.update(ok_paper_step=all(ok_paper.values()), ok_tuned_gd=all(ok_tuned.values()), contrast=contrast)
    best = {}
    for (case, row), cell in cells.items():
        best[(f"case{case}", row)] = cell
    note = edge_note({k: v for k, v in best.items() if not isinstance(v["lr"], str)})
    if all(ok_paper.values()):
        verdict, why = "holds", "All four cases meet the rule with the paper's GD step."
    elif all(ok_tuned.values()) or contrast:
        failed = [c for c in CASES if not ok_paper[c]]
        verdict = "holds qualitatively"
        why = (f"With GD at 2/(μ+L) case(s) {failed} miss the rule (GD/Adam = "
               + ", ".join(fmt(numbers[f'case{c}']['ratio_gd_paper_over_adam']) for c in failed)
               + "): that step leaves the λ_max directions (a third of the initial loss) decaying at the worst rate "
               "(κ−1)/(κ+1), so at a finite horizon GD is far from its best while Adam's lr is tuned. "
               + ("With GD's step tuned the same way all four cases meet the rule." if all(ok_tuned.values()) else
                  f"Even tuned, case(s) {[c for c in CASES if not ok_tuned[c]]} miss it; the heterogeneous ratios "
                  "still exceed the homogeneous ones by ≥ 100×."))
    else:
        verdict = "does not hold at this scale"
        why = ("Neither the paper's GD step nor a tuned one separates heterogeneous from homogeneous cases: "
               f"failing with 2/(μ+L): {[c for c in CASES if not ok_paper[c]]}, tuned: "
               f"{[c for c in CASES if not ok_tuned[c]]}.")
    return make_findings(table, verdict, rule + " " + why + note, numbers)


@functools.lru_cache(maxsize=1)
def _points_cached():
    from heterogeneity.experiment._config import resolve
    return tuple(tuple(sorted(p.items(), key=lambda kv: kv[0])) for p in resolve(CONFIG))


def _points():
    return [dict(p) for p in _points_cached()]
