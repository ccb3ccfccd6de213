"""[Xie24, §4.3] (Fig. 2, Tables 3–4) at laptop scale: Adam vs AdaSGD vs rotated Adam vs SGD on a CNN.

Paper: ResNet18 on CIFAR-10, 20 epochs, (β1, β2) = (0.9, 0.99), SGD momentum 0.9, the learning rate
tuned per optimizer on the final training loss. Table 4 (batch 256): Adam 0.0359 < rotated Adam
0.0485 < SGD 0.0723 < AdaSGD 0.0787: Adam is best at every batch size and the rotation costs Adam
less than on GPT-2. Table 3 (last checkpoints, batch 256): ‖H‖₁,₁ (Adam) 0.0036 < ‖RᵀHR‖₁,₁
(rotated Adam) 0.9868 < d‖H‖₂ (AdaSGD) 1.5355, the same order as the losses.

Here: the 2-conv CNN of `heterogeneity.models` (channels 16, 32; no BatchNorm) on the offline 8×8
digits (`configs._runs.classifier_run`, model "cnn"), batch 64, 300 steps (≈ 13 epochs), cosine
decay (with a constant rate the final loss was dominated by end-of-run noise), the learning rate tuned per optimizer on the final training loss (fixed training subset, median over
3 seeds). ``rotated_adam``: Adam on the loss rotated by RandPerm² (rotation key 0). At the end of
every run `summarize` estimates at the final parameters, on 256 fixed training images,
``‖H‖₁,₁/d``, ``‖RᵀHR‖₁,₁/d`` (Cauchy sketch, [Xie24, Algorithm 4]) and ``‖H‖₂`` (Lanczos); see
`configs/rotation_gpt.py`, which holds the shared pieces. The ``gpu`` scale widens the CNN to
(64, 128, 256), batch 256, 2000 steps, 50 Cauchy probes.

Headline metric: ``eval_train_loss``.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from configs import _runs
from configs import rotation_gpt as shared
from heterogeneity.experiment._config import SweepConfig

PAPER = ("[Xie24, §4.3, Fig. 2, Tables 3–4]: on ResNet18/CIFAR-10 (batch 256) Adam 0.0359 < rotated Adam 0.0485 "
         "< SGD 0.0723 < AdaSGD 0.0787 final training loss; at the last checkpoints ‖H‖₁,₁ (Adam) 0.0036 < "
         "‖RᵀHR‖₁,₁ (rotated Adam) 0.9868 < d‖H‖₂ (AdaSGD) 1.5355, the order of the losses.")
PAPER_LOSS = {"sgd": 0.0723, "adasgd": 0.0787, "adam": 0.0359, "rotated_adam": 0.0485}  # [Xie24, Table 4], batch 256
PAPER_NORM = {"adam": 0.0036, "adasgd": 1.5355, "rotated_adam": 0.9868}  # [Xie24, Table 3]


@functools.lru_cache(maxsize=4)
def _cnn(shape: tuple):
    """``(loss_fn, fixed Hessian batch)`` for the CNN sized by ``shape``: one function object, one compiled norm program."""
    hp = dict(shape)
    _, _, loss_fn, ds = _runs.classifier({**hp, "model": "cnn", "seed": 0})
    n = int(hp["hess_examples"])
    batch = jax.tree.map(lambda a: jnp.asarray(a)[:n], ds.train)
    return loss_fn, batch


def build(hp):
    loss_fn, batch = _cnn(tuple((k, (tuple(v) if isinstance(v, list) else v)) for k, v in
                                ((k, hp.get(k)) for k in ("channels", "data_seed", "hess_examples"))))
    return _runs.classifier_run(hp, summarize=shared.norms_summarizer(loss_fn, batch, hp))


# A first pass with a constant rate and [1e-3 … 3e-2] had every adaptive optimizer best at 3e-2 (the edge) and
# final losses dominated by end-of-run noise (Adam's IQR 0.046–0.265): hence the cosine decay and 0.1. With
# cosine decay AdaSGD and rotated Adam were best at 0.1 and SGD at 1.0 (the edges): hence 0.3 and 3.0.
LRS = [3e-3, 1e-2, 3e-2, 1e-1, 3e-1]
SGD_LRS = [0.03, 0.1, 0.3, 1.0, 3.0]
BETAS = {"opt.b1": [0.9], "opt.b2": [0.99]}  # [Xie24, App. D.1] for ResNet18
SEEDS = [0, 1, 2]

CONFIG = SweepConfig(
    name="rotation_cnn",
    description="[Xie24, §4.3] Fig. 2 / Tables 3-4: Adam vs AdaSGD vs RandPerm²-rotated Adam vs SGD on a digits CNN, "
                "with Hessian (1,1)-norms / spectral norm at the final checkpoints",
    build=build,
    base={"model": "cnn", "channels": [16, 32], "data_seed": 0, "batch_size": 64, "steps": 300, "log_every": 25,
          "eval_every": 300, "schedule": "cosine", "clip": None, "hess_examples": 256, "hess_probes": 16,
          "hess_lanczos": 16},
    grid=[
        {"optimizer": ["adam", "adasgd", "rotated_adam"], "lr": LRS, **BETAS, "seed": SEEDS},
        {"optimizer": ["sgd"], "lr": SGD_LRS, "opt.momentum": [0.9], "seed": SEEDS},
    ],
    scales={"laptop": {}, "gpu": {"channels": [64, 128, 256], "batch_size": 256, "steps": 2000, "log_every": 50,
                                  "eval_every": 500, "hess_examples": 1024, "hess_probes": 50, "hess_lanczos": 40}},
    smoke={"channels": [4], "batch_size": 8, "steps": 3, "log_every": 1, "eval_every": 3, "hess_examples": 8,
           "hess_probes": 0, "hess_lanczos": 0},  # no curvature at smoke sizes
    smoke_grid={"optimizer": ["adam"], "lr": [1e-2], **BETAS, "seed": [0]},  # one program: compiling is the cost
    metric="eval_train_loss",
)


def findings(runs):
    """[Xie24, Fig. 2 / Tables 3–4] on the digits CNN: see `configs.rotation_gpt.findings_for`."""
    return shared.findings_for(runs, metric=CONFIG.metric, expected=shared.grid_keys(CONFIG), paper_loss=PAPER_LOSS,
                               paper_norm=PAPER_NORM, paper_order=("adam", "rotated_adam", "adasgd"),
                               what=f"{len(SEEDS)} seeds")
