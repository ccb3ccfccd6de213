"""[Xie24, §4.1] (Table 1): Adam vs AdaSGD vs rotated Adam on the rotated quadratic.

``L_t(x) = ½ xᵀ R_tᵀ Σ R_t x`` with ``Σ = diag(1,…,1, 1/2², …, 1/990²)`` (d = 1000),
``R_t = exp(tA)``, ``t ∈ {0, 0.002, 0.008, 0.015, 0.1}`` (`heterogeneity.problems.rotated_quadratic`;
one ``M`` per seed, start ``R_tᵀ x_0`` so every t starts at the same loss). 100 steps, β pairs
(0, 0) and (0.9, 0.99) as the table's two columns, learning rate tuned over a grid (the table
reports, per setting, the lowest seed-averaged final loss; `scripts/reproduce_table1_seed003.py`
does that selection). AdaSGD is rotation invariant [Xie24, Thm 2.2], so it runs at t = 0
only; ``rotated_adam`` runs Adam on the loss rotated by a RandPerm rotation (App. D.2) at t = 0,
the optimizer-side rotation of the same experiment (its row's (1,1)-norm/d is that of RᵀΣR, exact).

Paper (Table 1, β = (0.9, 0.99)): AdaSGD 0.00405, Adam 0.00002, Adam(R_1..R_4) 0.00066, 0.00134,
0.00183, 0.00254 — Adam degrades as the (1,1)-norm/d grows (0.0116 → 2.6), AdaSGD does not move.

`findings` reads the table back from the run records (learning rate tuned per cell on the median
final loss over seeds, the contract of `configs/_findings.py`); `scripts/reproduce_table1_seed003.py`
prints the same table with the paper's mean ± std selection and exits 1 when `checks` fail.
Headline metric: ``final_loss`` (the exact loss at the final iterate). Both scales are the paper's size.
"""
from __future__ import annotations

import functools

import jax

from configs import _findings as F
from heterogeneity import problems
from heterogeneity.experiment._config import RunSpec, SweepConfig, make_optimizer

TIMES = [0.0, 0.002, 0.008, 0.015, 0.1]
# With β = (0.9, 0.99) the best rate is 0.3 for Adam at t <= 0.015; the grid ended at 1.0, where the best
# rate of other (β, optimizer) cells sat (issue 11): widened to 3.0 and 10.0 so every best rate is interior.
LRS = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0, 10.0]
BETAS = [[0.0, 0.0], [0.9, 0.99]]


@functools.lru_cache(maxsize=16)
def problem(t: float, seed: int, dim: int, last: int):
    return problems.rotated_quadratic(t, key=jax.random.key(seed), dim=dim, last=last)


@functools.lru_cache(maxsize=4)
def randperm_l11_over_d(dim: int, last: int) -> float:
    """``‖RᵀΣR‖₁,₁/d`` for the RandPerm² rotation R that ``rotated_adam`` runs under (registry rotation key 0):
    the (1,1)-norm/d rotated Adam faces at t = 0 (exact, from the dense R)."""
    import jax.numpy as jnp
    import numpy as np

    from heterogeneity.optim._rotated import make_rotation, rotate

    rot = make_rotation(0, dim, rotation="randperm", depth=2)
    r = np.asarray(jax.vmap(lambda e: rotate(rot, e), in_axes=1, out_axes=1)(jnp.eye(dim)), dtype=np.float64)
    sigma = problems.sigma_diagonal(dim, last=last)
    return float(np.abs((r.T * sigma) @ r).sum() / dim)


def build(hp) -> RunSpec:
    p = problem(float(hp["t"]), int(hp["seed"]), int(hp["dim"]), int(hp["last"]))
    l11 = p.l11_norm / p.dim
    if str(hp["optimizer"]).startswith("rotated_") and float(hp["t"]) == 0.0:
        l11 = randperm_l11_over_d(int(hp["dim"]), int(hp["last"]))
    params = p.init_params()
    b1, b2 = hp["betas"]
    opt_hp = {**hp, "opt.b1": b1, "opt.b2": b2}
    return RunSpec(
        loss_fn=p.loss_fn, params=params, optimizer=make_optimizer(opt_hp, params),
        num_steps=int(hp["steps"]), log_every=int(hp["log_every"]),
        extras={"l11_norm_over_d": l11, "spectral_norm": p.spectral_norm, "t": p.t},
    )


CONFIG = SweepConfig(
    name="rotated_quadratic",
    description="[Xie24, §4.1] Table 1: Adam on L_t for t in {0,.002,.008,.015,.1}, AdaSGD and RandPerm-rotated Adam",
    build=build,
    base={"steps": 100, "log_every": 1, "dim": 1000, "last": 990},
    grid=[
        {"optimizer": ["adam"], "t": TIMES, "betas": BETAS, "lr": LRS, "seed": [0, 1, 2]},
        {"optimizer": ["adasgd"], "t": [0.0], "betas": BETAS, "lr": LRS, "seed": [0, 1, 2]},
        {"optimizer": ["rotated_adam"], "t": [0.0], "betas": BETAS, "lr": LRS, "seed": [0, 1, 2]},
    ],
    scales={"laptop": {}, "gpu": {}},
    smoke={"steps": 3, "dim": 24, "last": 20},
    smoke_grid={"optimizer": ["adam", "adasgd"], "t": [0.1], "betas": [[0.9, 0.99]], "lr": [1e-2],
                "seed": [0]},
    metric="final_loss",
)


# ----------------------------------------------------------------------------------------- findings

PAPER = ("[Xie24, §4.1, Table 1]: on L_t(x) = ½xᵀR_tᵀΣR_tx (d = 1000, 100 steps, lr tuned) Adam's final loss grows "
         "with the Hessian's (1,1)-norm/d (0.0116 → 2.60): β = (0.9, 0.99) Adam 0.00002, 0.00066, 0.00134, 0.00183, "
         "0.00254 for t = 0 … 0.1, while rotation-invariant AdaSGD stays at 0.00405 (β = (0, 0): Adam 0.00022 → "
         "0.00978, AdaSGD 0.00887).")
PAPER_TABLE = {  # (optimizer, t): ((1,1)-norm/d, loss β=(0,0), loss β=(0.9,0.99)) [Xie24, Table 1]
    ("adasgd", 0.0): (0.01164, 0.00887, 0.00405), ("adam", 0.0): (0.01164, 0.00022, 0.00002),
    ("adam", 0.002): (0.08324, 0.00314, 0.00066), ("adam", 0.008): (0.50729, 0.00567, 0.00134),
    ("adam", 0.015): (1.23731, 0.00751, 0.00183), ("adam", 0.1): (2.59919, 0.00978, 0.00254),
}
PAPER_SIZE = {"dim": 1000, "last": 990, "steps": 100}
TABLE_BETAS = ((0.0, 0.0), (0.9, 0.99))  # the table's two columns (PAPER_TABLE[1], PAPER_TABLE[2])
L11_RTOL = 0.03
LOSS_RTOL, LOSS_ATOL = 0.5, 1e-5


def checks(out, hp0, stat: str = "mean") -> list[str] | None:
    """Failure messages of the Table 1 checks ([] = all pass; None = not the paper's size).

    ``out``: one row per (optimizer, t): ``{"optimizer", "t", "l11_over_d", "paper": PAPER_TABLE row or
    None, "cells": {str(list(betas)): {stat: final loss}}}``. Checks, at the paper's size only:

    * (1,1)-norm/d within 3% of the paper's (a property of the random rotation: seeds 0-2 differ
      from the paper by at most 0.9%; exact at t = 0);
    * every best-lr final loss within 50% (+1e-5 for the paper's 5-decimal rounding) of the paper's
      (the paper's own random draw, 10 seeds and a coarse lr grid: measured deviations up to 15%,
      while a broken optimizer is off by orders of magnitude);
    * the table's claims, in both β columns: Adam's loss increases strictly with t, and at t = 0
      Adam beats both AdaSGD and the RandPerm-rotated Adam.
    """
    if any(int(hp0[k]) != v for k, v in PAPER_SIZE.items()):
        return None
    return _number_failures(out, stat) + _claim_failures(out, stat)


def _cell(rows, opt, t, b, stat):
    cell = rows.get((opt, t), {}).get("cells", {}).get(str(list(b)))
    return None if cell is None else float(cell[stat])


def _number_failures(out, stat) -> list[str]:
    failures = []
    rows = {(r["optimizer"], r["t"]): r for r in out}
    for r in out:
        paper = r["paper"]
        if paper is None:
            continue
        if not abs(r["l11_over_d"] - paper[0]) <= L11_RTOL * paper[0]:
            failures.append(f"{r['optimizer']} t={r['t']:g}: (1,1)-norm/d {r['l11_over_d']:.5f} vs paper "
                            f"{paper[0]:.5f} (rtol {L11_RTOL:g})")
        for b, ref in zip(TABLE_BETAS, paper[1:]):
            got = _cell(rows, r["optimizer"], r["t"], b, stat)
            if got is not None and not abs(got - ref) <= LOSS_RTOL * ref + LOSS_ATOL:
                failures.append(f"{r['optimizer']} t={r['t']:g} β={b}: final loss {got:.5f} vs paper {ref:.5f} "
                                f"(rtol {LOSS_RTOL:g}, atol {LOSS_ATOL:g})")
    return failures


def _claim_failures(out, stat) -> list[str]:
    failures = []
    rows = {(r["optimizer"], r["t"]): r for r in out}
    times = sorted(t for opt, t in rows if opt == "adam")
    for b in TABLE_BETAS:
        adam = [_cell(rows, "adam", t, b, stat) for t in times]
        if None not in adam and not all(x < y for x, y in zip(adam, adam[1:])):
            failures.append(f"β={b}: Adam's loss does not increase strictly with t: "
                            + ", ".join(f"t={t:g}: {x:.5f}" for t, x in zip(times, adam)))
        a0 = _cell(rows, "adam", 0.0, b, stat)
        for other in ("adasgd", "rotated_adam"):
            o = _cell(rows, other, 0.0, b, stat)
            if a0 is not None and o is not None and not a0 < o:
                failures.append(f"β={b}: at t=0 Adam ({a0:.5f}) does not beat {other} ({o:.5f})")
    return failures


ROWS = [("adasgd", 0.0), *(("adam", t) for t in TIMES), ("rotated_adam", 0.0)]


def findings(runs) -> F.Findings:
    """Table 1 from the run records: per (optimizer, t, β) the lr with the lowest median final loss over seeds.

    Verdict: 'holds' when every check of `checks` passes at the paper's size (numbers within
    tolerance and the claims); 'holds qualitatively' when only the claims hold (Adam's loss
    increasing in t in both β columns, Adam best at t = 0) or the run is not at the paper's size;
    otherwise 'does not hold at this scale'; 'incomplete' while grid points are missing.
    """
    from heterogeneity.experiment._config import resolve

    def key(hp):
        return (hp["optimizer"], float(hp["t"]), tuple(float(b) for b in hp["betas"]), float(hp["lr"]), int(hp["seed"]))

    expected = {key(p) for p in resolve(CONFIG, scale="laptop")}
    have = {key(r["hparams"]) for r in F.done(runs)}
    missing = expected - have
    best = F.best_over(runs, ["optimizer", "t", "betas"], "final_loss")
    l11 = {}
    for r in F.done(runs):
        l11.setdefault((r["hparams"]["optimizer"], float(r["hparams"]["t"])), []).append(
            float(r.get("extras", {}).get("l11_norm_over_d", float("nan"))))
    out, table_rows = [], []
    for opt, t in ROWS:
        cells = {}
        for b in TABLE_BETAS:
            c = best.get((opt, t, b))
            if c is not None:
                cells[str(list(b))] = {"median": c["median"], "q25": c["q25"], "q75": c["q75"], "lr": c["lr"],
                                       "edge": c["edge"]}
        ours = float(sum(l11[opt, t]) / len(l11[opt, t])) if l11.get((opt, t)) else None
        paper = PAPER_TABLE.get((opt, t))
        out.append({"optimizer": opt, "t": t, "l11_over_d": ours, "paper": paper, "cells": cells})
        row = [f"{opt}" + (f" (t={t:g})" if opt == "adam" else ""), F.fmt(ours, 4), F.fmt(paper and paper[0], 4)]
        for i, b in enumerate(TABLE_BETAS):
            c = cells.get(str(list(b)))
            row += ["—" if c is None else f"{F.fmt(c['median'])} [{F.fmt(c['q25'])}, {F.fmt(c['q75'])}] @{F.fmt(c['lr'])}",
                    F.fmt(paper and paper[1 + i])]
        table_rows.append(row)
    table = F.md_table(["optimizer", "(1,1)-norm/d", "paper", "loss β=(0,0) median [IQR] @lr", "paper",
                        "loss β=(0.9,0.99) median [IQR] @lr", "paper"], table_rows)
    numbers = {"rows": [{**r, "paper": list(r["paper"]) if r["paper"] else None} for r in out]}
    if missing:
        return F.findings(table, "incomplete", f"{len(missing)} of {len(expected)} grid points missing.", numbers)
    hp0 = next(iter(F.done(runs)))["hparams"]
    claims = _claim_failures(out, "median")
    at_size = all(int(hp0[k]) == v for k, v in PAPER_SIZE.items())
    nums = _number_failures(out, "median") if at_size else []
    rule = ("Rule (medians over seeds, lr tuned per cell): 'holds' when, in both β columns, Adam's final loss "
            "increases strictly with t and at t = 0 Adam beats AdaSGD and rotated Adam, and (at the paper's size) "
            f"every (1,1)-norm/d is within {L11_RTOL:.0%} and every loss within {LOSS_RTOL:.0%} + {LOSS_ATOL:g} of "
            "the paper's; 'holds qualitatively' when only the ordering claims hold.")
    if claims:
        verdict, why = "does not hold at this scale", " Failed: " + "; ".join(claims) + "."
    elif nums or not at_size:
        verdict = "holds qualitatively"
        why = (" The ordering claims hold; " + ("; ".join(nums[:4]) + (" …" if len(nums) > 4 else "")
                                                 if nums else "not run at the paper's size") + ".")
    else:
        verdict, why = "holds", " All checks pass."
    numbers.update(claim_failures=claims, number_failures=nums)
    return F.findings(table, verdict, rule + why + F.edge_note(best), numbers)
