"""[SignMomentum25, App. E.1–E.2, Figs. 3–4] at laptop scale: learning-rate and momentum sensitivity.

The paper fine-tunes GPT-2 / Qwen3-0.6B on Alpaca with each method's other hyperparameters at
their tuned values (Tables 5–6) and varies one at a time: the learning rate of every method
(Fig. 3) and Signum's β1 ∈ {0.99, 0.95, 0.9, 0.75, 0.5, 0} (Fig. 4; β1 = 1 − β of Algorithm 1,
i.e. Optax's decay). Claims (curves, no table): Signum stays valid and stable within a range of
learning rates; AdamW is less sensitive to the learning rate; Signum is quite robust to β1.
App. E.1: AdamW's tuned learning rate is 5× Signum's (5e-4 vs 1e-4 on GPT-2, 5e-5 vs 1e-5 on
Qwen3).

Laptop scale: the MLP / digits / cosine-decay setting of `configs.sign_methods` (300 steps of
batch 32), each method's fixed hyperparameters as there, the learning rate on a half-decade grid
spanning 2.5–3.5 decades around its optimum, 2 seeds, and Signum's β1 × learning-rate grid
(the paper's six β1 × five rates, one batched program). From it: the loss against β1 at the
best learning rate of β1 = 0.75 (the paper's tuned value), and the loss against the learning
rate at β1 = 0.75. Headline metric: the final training loss on the whole training split.
``--scale gpu``: as `configs.sign_methods`.
"""
from __future__ import annotations

import math

from configs import _findings as F
from configs import sign_methods as S
from heterogeneity.experiment._config import SweepConfig

SEEDS = [0, 1]
BETA1 = [0.99, 0.95, 0.9, 0.75, 0.5, 0.0]  # the paper's grid (Optax decay)
BETA1_STAR = 0.75  # Signum's tuned β1 (Tables 5-6)
LRS = {  # 2.5-3.5 decades around each method's best rate in configs.sign_methods
    "signum_first_gradient": S.lrs(1e-4, 3e-1), "signsgd": S.lrs(1e-4, 3e-1), "adamw": S.lrs(1e-3, 1.0),
    "ef_signsgd": S.lrs(3e-2, 10.0), "sgd": S.lrs(1e-2, 3.0),
}
BETA_LRS = S.lrs(1e-3, 1e-1)  # Signum's beta1 x lr grid: one batched program of 60 runs
GRID = [
    {"optimizer": ["signum_first_gradient"], "lr": BETA_LRS, "opt.beta": BETA1, "seed": SEEDS},
    {"optimizer": ["signum_first_gradient"], "lr": [x for x in LRS["signum_first_gradient"] if x not in BETA_LRS],
     "opt.beta": [BETA1_STAR], "seed": SEEDS},
    {"optimizer": ["signsgd"], "lr": LRS["signsgd"], "seed": SEEDS},
    {"optimizer": ["ef_signsgd"], "lr": LRS["ef_signsgd"], "opt.partition": ["leaf"], "seed": SEEDS},
    {"optimizer": ["adamw"], "lr": LRS["adamw"], "opt.b1": [0.9], "opt.b2": [0.95], "opt.weight_decay": [0.1],
     "seed": SEEDS},
    {"optimizer": ["sgd"], "lr": LRS["sgd"], "opt.momentum": [0.9], "seed": SEEDS},
]

CONFIG = SweepConfig(
    name="sign_sensitivity",
    description="[SignMomentum25, Figs. 3-4]: training loss vs learning rate (all methods) and vs Signum's beta1",
    build=S.build,
    base=S.BASE,
    grid=GRID,
    scales={"laptop": {}, "gpu": S.GPU},
    smoke=S.SMOKE,
    smoke_grid={"optimizer": ["signum_first_gradient"], "lr": [1e-3, 1e-2], "opt.beta": [0.9, 0.0], "seed": [0]},
    metric=S.METRIC,
)

PAPER = ("[SignMomentum25, App. E.2 Figs. 3-4, App. E.1 Tables 5-6] (GPT-2 / Qwen3 on Alpaca; curves): Signum is "
         "stable within a range of learning rates, AdamW is less sensitive to the learning rate, Signum is quite "
         "robust to beta1 in {0.99, 0.95, 0.9, 0.75, 0.5, 0}; AdamW's tuned lr is 5x Signum's (5e-4 vs 1e-4, "
         "5e-5 vs 1e-5)")

GOOD = 0.9  # "stable" / "robust": at least this fraction of the best run's loss decrease from chance level
CHANCE = math.log(10)  # the loss of a uniform prediction over the 10 digits (where training starts)
RATIO = (2.0, 12.5)  # AdamW / Signum best-lr ratio consistent with the paper's 5x on a half-decade grid


def curve(runs, optimizer: str, beta=None) -> dict[float, float]:
    """``{lr: median final training loss over seeds}`` of one method (Signum: at ``opt.beta = beta``)."""
    per: dict[float, list] = {}
    for r in F.done(runs):
        h = r["hparams"]
        if h["optimizer"] == optimizer and (beta is None or h.get("opt.beta") == beta):
            per.setdefault(h["lr"], []).append(F.value(r, S.METRIC))
    return {lr: F.median_iqr(v)[0] for lr, v in sorted(per.items())}


def threshold(best: float) -> float:
    """The largest loss that counts as good: `GOOD` of the best loss decrease from `CHANCE` (a ratio to the best
    would be degenerate here, where the best losses approach 0)."""
    return best + (1 - GOOD) * (CHANCE - best)


def stable_decades(c: dict[float, float]) -> float:
    """Width in decades (half a decade per grid step) of the longest run of consecutive grid rates whose loss is good
    (`threshold`)."""
    lrs = sorted(c)
    cut = threshold(min(c.values()))
    good = [c[lr] <= cut for lr in lrs]
    width, start = 0.0, None
    for i, g in enumerate(good + [False]):
        if g and start is None:
            start = i
        if not g and start is not None:
            width = max(width, 0.5 * (i - 1 - start))
            start = None
    return width


def findings(runs) -> F.Findings:
    runs = S.on_grid(runs, GRID)
    gone = S.missing(runs, GRID)
    if gone:
        return F.findings("", "incomplete", f"{len(gone)} points missing, e.g. {', '.join(gone[:3])}",
                          {"missing": gone})
    curves = {S.METHODS[o]: curve(runs, o, BETA1_STAR if o == "signum_first_gradient" else None) for o in LRS}
    grid = sorted({lr for c in curves.values() for lr in c})
    best_lr = {n: min(c, key=c.get) for n, c in curves.items()}
    width = {n: stable_decades(c) for n, c in curves.items()}
    rows = [[n] + [F.fmt(c.get(lr)) if lr in c else "" for lr in grid]
            + [f"{best_lr[n]:g}", f"{width[n]:.1f}"] for n, c in curves.items()]
    lr_table = F.md_table(["method \\ lr"] + [f"{lr:g}" for lr in grid] + ["best lr", "good range (decades)"], rows)
    lr_star = best_lr["Signum"]
    by_beta = {b: curve(runs, "signum_first_gradient", b) for b in BETA1}
    at_star = {b: by_beta[b].get(lr_star, math.inf) for b in BETA1}
    tuned = {b: min(by_beta[b].values()) for b in BETA1}
    beta_table = F.md_table(["Signum β1 (Optax decay)"] + [f"{b:g}" for b in BETA1],
                            [[f"train loss at lr={lr_star:g}"] + [at_star[b] for b in BETA1],
                             ["train loss, lr tuned per β1"] + [tuned[b] for b in BETA1],
                             ["best lr per β1"] + [f"{min(by_beta[b], key=by_beta[b].get):g}" for b in BETA1]])
    ratio = best_lr["AdamW"] / best_lr["Signum"]
    checks = {
        "signum_stable_range": width["Signum"] >= 1.0,
        "adamw_less_sensitive": width["AdamW"] > width["Signum"],
        "signum_beta_robust": max(at_star.values()) <= threshold(min(at_star.values())),
        "adamw_lr_ratio": RATIO[0] <= ratio <= RATIO[1],
    }
    if all(checks.values()):
        verdict = "holds"
    elif checks["signum_stable_range"] and checks["signum_beta_robust"]:
        verdict = "holds qualitatively"
    else:
        verdict = "does not hold at this scale"
    fragile = [b for b in BETA1 if at_star[b] > threshold(min(at_star.values()))]
    steps = sorted({int(r["hparams"]["steps"]) for r in F.done(runs)})
    reason = (f"Rule (a setting is 'good' when its median final training loss over {len(SEEDS)} seeds achieves "
              f">= {GOOD:g} of the best setting's loss decrease from chance level ln 10): (a) Signum (β1 = "
              f"{BETA1_STAR}) is good over >= 1 decade of learning rates; (b) AdamW's good range is wider than "
              f"Signum's; (c) at Signum's best lr every β1 of the paper's grid is good; (d) AdamW's best lr / "
              f"Signum's is in [{RATIO[0]:g}, {RATIO[1]:g}] (paper: 5). Holds if all four hold, holds qualitatively "
              f"if (a) and (c) hold, otherwise does not hold. Here: "
              + ", ".join(f"{k} {v}" for k, v in checks.items())
              + f"; good range in decades {', '.join(f'{n} {w:.1f}' for n, w in width.items())}; lr ratio {ratio:.3g}"
              + (f"; β1 not good: {', '.join(f'{b:g}' for b in fragile)}" if fragile else "")
              + "".join(f" (likely reason: β1 = {b:g} averages the gradient over ~{1 / (1 - b):.0f} steps, "
                        f"{1 / (1 - b) / steps[0]:.0%} of this {steps[0]}-step run)"
                        for b in fragile if steps and b >= 0.95)
              + "".join(f"; best lr of {n} on the grid's edge" for n, lr in best_lr.items()
                        if lr in (min(curves[n]), max(curves[n]))) + ".")
    numbers = {"curves": {n: {f"{lr:g}": v for lr, v in c.items()} for n, c in curves.items()},
               "best_lr": best_lr, "stable_decades": width, "lr_ratio_adamw_signum": ratio,
               "signum_beta_at_best_lr": {f"{b:g}": v for b, v in at_star.items()},
               "signum_beta_tuned_lr": {f"{b:g}": v for b, v in tuned.items()}, "checks": checks}
    table = "Loss vs learning rate (Fig. 3):\n\n" + lr_table + "\n\nLoss vs Signum's β1 (Fig. 4):\n\n" + beta_table
    return F.findings(table, verdict, reason, numbers)
