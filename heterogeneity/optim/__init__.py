"""heterogeneity.optim: the optimizers of the four papers as Optax transforms.

Optax conventions throughout: ``scale_by_<x>`` is the transform, ``<x>(learning_rate, ...)``
the optimizer (``optax.chain(scale_by_<x>(...), optax.scale_by_learning_rate(lr))``), states
are NamedTuples of arrays, numeric hyperparameters are keywords (``optax.inject_hyperparams``
works), learning rates accept schedules. Where Optax has the algorithm it is re-exported.

=====================  ==========================================================  ===========================
name (registry)        what                                                        source
=====================  ==========================================================  ===========================
sgd, adam, adamw,      Optax's own, validated at construction (same signatures)    —
rmsprop, lion
signsgd                `sign_sgd`, optional heavy-ball momentum, either order      seed 000 §3.2
signum                 `signum`: sign of momentum with v_1 = g_1                   seed 002 Algorithm 1
signsgd_l1             `sign_sgd_l1`: γ‖g‖₁ sign(g), global or per block           seed 000 §4.6 (SignSGD (S))
adasgd                 `adasgd`: one scalar second moment ‖g‖²/d                   seed 003 Algorithm 2
block_adam             `block_adam`: one second moment per partition block         seed 003 Algorithm 3
frozen_adam            `frozen_adam`: β1 = 0, β2 = 1, no bias correction           seed 001 eq. (2)
adam_nbc               `adam_no_bias_correction`                                   seed 001 Algorithm 3
ef_signsgd             `ef_sign_sgd`: error feedback, scaled sign                  Karimireddy+ 2019 (seed 002)
mv_signsgd             `mv_sign_sgd`: majority vote of signs                       Bernstein+ 2018 (seed 002)
sto_signsgd            `sto_sign_sgd`: majority vote of S_R                        Jin+ 2021 (seed 002)
mvsm_v1, mvsm_v2       `mvsm`: majority vote with per-worker momentum              seed 002 Algorithm 2
rotated_<name>         `rotated`: any of the above on L∘R (RandPerm)               seed 003 App. D.2
=====================  ==========================================================  ===========================
"""
from optax import scale_by_sign  # noqa: F401  (re-exported)

from heterogeneity.optim._adaptive import (
    ScaleByAdamNoBiasCorrectionState,
    ScaleByBlockAdamState,
    adam_no_bias_correction,
    adasgd,
    block_adam,
    frozen_adam,
    scale_by_adam_no_bias_correction,
    scale_by_adasgd,
    scale_by_block_adam,
    scale_by_frozen_adam,
)
from heterogeneity.optim._error_feedback import ScaleByEFSignState, ef_sign_sgd, scale_by_ef_sign
from heterogeneity.optim._majority_vote import (
    MajorityVoteState,
    mv_sign_sgd,
    mvsm,
    scale_by_majority_vote,
    scale_by_mvsm,
    sto_sign_sgd,
    stochastic_sign,
)
from heterogeneity.optim._optax import adam, adamw, lion, rmsprop, sgd
from heterogeneity.optim._registry import factory, get, is_multi_worker, names
from heterogeneity.optim._rotated import (
    RotatedState,
    Rotation,
    make_rotation,
    rotate,
    rotate_transpose,
    rotated,
)
from heterogeneity.optim._sign import ScaleBySignumState, scale_by_signum, sign_sgd, signum
from heterogeneity.optim._sign_l1 import scale_by_sign_l1, sign_sgd_l1

__all__ = [
    # Optax's own (validated wrappers) and re-exported
    "sgd", "adam", "adamw", "rmsprop", "lion", "scale_by_sign",
    # sign methods
    "sign_sgd", "signum", "scale_by_signum", "ScaleBySignumState",
    "sign_sgd_l1", "scale_by_sign_l1",
    # adaptive
    "adasgd", "scale_by_adasgd", "block_adam", "scale_by_block_adam", "ScaleByBlockAdamState",
    "frozen_adam", "scale_by_frozen_adam",
    "adam_no_bias_correction", "scale_by_adam_no_bias_correction", "ScaleByAdamNoBiasCorrectionState",
    # error feedback
    "ef_sign_sgd", "scale_by_ef_sign", "ScaleByEFSignState",
    # majority vote
    "stochastic_sign", "scale_by_majority_vote", "MajorityVoteState", "mv_sign_sgd", "sto_sign_sgd",
    "scale_by_mvsm", "mvsm",
    # rotation
    "rotated", "RotatedState", "Rotation", "make_rotation", "rotate", "rotate_transpose",
    # registry
    "get", "factory", "names", "is_multi_worker",
]
