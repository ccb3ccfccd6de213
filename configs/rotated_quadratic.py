"""[Xie24, §4.1] (Table 1): Adam vs AdaSGD vs rotated Adam on the rotated quadratic.

``L_t(x) = ½ xᵀ R_tᵀ Σ R_t x`` with ``Σ = diag(1,…,1, 1/2², …, 1/990²)`` (d = 1000),
``R_t = exp(tA)``, ``t ∈ {0, 0.002, 0.008, 0.015, 0.1}`` (`heterogeneity.problems.rotated_quadratic`;
one ``M`` per seed, start ``R_tᵀ x_0`` so every t starts at the same loss). 100 steps, β pairs
(0, 0) and (0.9, 0.99) as the table's two columns, learning rate tuned over a grid (the table
reports, per setting, the lowest seed-averaged final loss; `scripts/reproduce_table1_seed003.py`
does that selection). AdaSGD is rotation invariant [Xie24, Thm 2.2], so it runs at t = 0
only; ``rotated_adam`` runs Adam on the loss rotated by a RandPerm rotation (App. D.2) at t = 0,
the optimizer-side rotation of the same experiment.

Paper (Table 1, β = (0.9, 0.99)): AdaSGD 0.00405, Adam 0.00002, Adam(R_1..R_4) 0.00066, 0.00134,
0.00183, 0.00254 — Adam degrades as the (1,1)-norm/d grows (0.0116 → 2.6), AdaSGD does not move.
"""
from __future__ import annotations

import functools

import jax

from heterogeneity import problems
from heterogeneity.experiment._config import RunSpec, SweepConfig, make_optimizer

TIMES = [0.0, 0.002, 0.008, 0.015, 0.1]
LRS = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0]  # 1.0: with β = (0.9, 0.99) the best rate is 0.3 (t <= 0.015)
BETAS = [[0.0, 0.0], [0.9, 0.99]]


@functools.lru_cache(maxsize=16)
def problem(t: float, seed: int, dim: int, last: int):
    return problems.rotated_quadratic(t, key=jax.random.key(seed), dim=dim, last=last)


def build(hp) -> RunSpec:
    p = problem(float(hp["t"]), int(hp["seed"]), int(hp["dim"]), int(hp["last"]))
    params = p.init_params()
    b1, b2 = hp["betas"]
    opt_hp = {**hp, "opt.b1": b1, "opt.b2": b2}
    return RunSpec(
        loss_fn=p.loss_fn, params=params, optimizer=make_optimizer(opt_hp, params),
        num_steps=int(hp["steps"]), log_every=int(hp["log_every"]),
        extras={"l11_norm_over_d": p.l11_norm / p.dim, "spectral_norm": p.spectral_norm, "t": p.t},
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
