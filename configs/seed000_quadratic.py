"""[Tomihari25, App. D.9] (Table S.9, Fig. S.9): SGD, SignSGD and Adam on the Homo / Hetero quadratics.

``L(θ) = ½ θᵀHθ``, ``H = blockdiag(Q_i Λ_i Q_iᵀ)`` with orthogonal ``Q_i`` and the spectra of
[Zhang24, §3.1] cases 4 (Homo) and 3 (Hetero). Learning rates as in the paper:

* SGD: ``η = 2/(λ_min + λ_max) = 2/5001`` (eq. 19, used in the paper's runs);
* SignSGD: the optimal ``η_t = ‖∇L(θ_t)‖₁ / (P Λ_P)`` of App. D.9.1, i.e. SignSGD (S)
  (``signsgd_s``) with ``γ = 1/(P Λ_P)``;
* Adam (Figure S.9 companion, not in Table S.9): Optax Adam with a small learning-rate grid.

Recorded per run (float64): the trajectory of ``‖∇L‖₂`` (Fig. S.9), block gradient norms, and
``lambda_g`` = ``sup_t Σ_b ‖g_b‖²/‖g‖² ‖[H]_b‖₂`` over the iterates (Table S.9's Λ_G
approximation, `heterogeneity.metrics.weighted_hessian_norms_trajectory`); ``lambda_p`` is
exact. Paper: Λ_G = 4999.9997 on both, Λ_P = 4999 (Homo) and 1701.33 (Hetero).
"""
from __future__ import annotations

import functools

import jax
import numpy as np

from configs.quadratic_cases import gd_optimal_lr, quadratic_run
from heterogeneity import problems
from heterogeneity.experiment._config import RunSpec, SweepConfig

SETTINGS = {"homo": 4, "hetero": 3}


@functools.lru_cache(maxsize=64)
def problem(setting: str, seed: int):
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {sorted(SETTINGS)}, got {setting!r}")
    return problems.quadratic_case(SETTINGS[setting], key=jax.random.key(seed), rotation="orthogonal")


def learning_rate(hp, p) -> float:
    if hp["lr"] != "optimal":
        return float(hp["lr"])
    if hp["optimizer"] == "sgd":
        return gd_optimal_lr(p)
    if hp["optimizer"] == "signsgd_s":
        return float(1.0 / (p.dim * p.lambda_p))  # η_t = ‖g‖₁/(P Λ_P), App. D.9.1
    raise ValueError(f"lr='optimal' is defined for sgd and signsgd_s, not {hp['optimizer']!r}")


def build(hp) -> RunSpec:
    from heterogeneity.metrics import weighted_hessian_norms_trajectory

    p = problem(hp["setting"], int(hp["seed"]))
    spec = quadratic_run(hp, p, lr=learning_rate(hp, p))
    base_summarize = spec.summarize

    def summarize(result):
        out = base_summarize(result)
        norms = np.asarray(result.history["block_norms"], np.float64)
        if norms.shape[0]:
            traj = weighted_hessian_norms_trajectory(norms ** 2, p.block_spectral_norms, np.asarray(p.block_sizes))
            out["lambda_g"] = float(traj.lambda_g)
        out["lambda_p"] = p.lambda_p
        out["final_grad_l2"] = result.final.get("final_grad_norm", float("nan"))
        return out

    return spec._replace(summarize=summarize)


CONFIG = SweepConfig(
    name="seed000_quadratic",
    description="[Tomihari25, App. D.9 / Table S.9]: SGD (2/(mu+L)), SignSGD (eta_t=|g|_1/(P Lambda_P)), Adam on Homo/Hetero",
    build=build,
    base={"steps": 3000, "log_every": 1, "tol": 1e-10, "x64": True},
    grid=[
        {"setting": ["homo", "hetero"], "optimizer": ["sgd", "signsgd_s"], "lr": ["optimal"], "seed": [0, 1, 2]},
        {"setting": ["homo", "hetero"], "optimizer": ["adam"], "lr": [1e-3, 1e-2, 1e-1], "seed": [0, 1, 2]},
    ],
    scales={"laptop": {}, "gpu": {"steps": 20000}},
    smoke={"steps": 5},
    smoke_grid={"setting": ["hetero"], "optimizer": ["sgd", "signsgd_s"], "lr": ["optimal"], "seed": [0]},
    metric="rel_gap",
)
