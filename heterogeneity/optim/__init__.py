"""heterogeneity.optim: the optimizers of the four papers as Optax transforms.

Optax conventions throughout: ``scale_by_<x>`` is the transform, ``<x>(learning_rate, ...)``
the optimizer (``optax.chain(scale_by_<x>(...), optax.scale_by_learning_rate(lr))``), states
are NamedTuples of arrays, numeric hyperparameters are keywords (``optax.inject_hyperparams``
works), learning rates accept schedules. Where Optax has the algorithm it is used, not
rewritten, and no name here means something different from the same name in Optax.

One naming scheme: the registry name *is* the constructor's name (``get("signsgd_s", ...)`` ≡
``signsgd_s(...)``); the sign family is spelled ``signsgd``; everything per block is
``blockwise_``. Constructors that draw random numbers require ``key`` (no default).

=======================  ======================================================  ===========================
name (registry = fn)     what                                                    reference
=======================  ======================================================  ===========================
sgd, adam, adamw,        Optax's own, validated at construction (same            [Kingma15], [Loshchilov19],
rmsprop, lion            signatures, identical updates)                          [Chen23]
signsgd                  sign(g) (= ``optax.sign_sgd``), or heavy-ball           [Tomihari25, §3.2],
                         momentum in either order                                [Bernstein18]
signsgd_s                SignSGD (S): γ‖g‖₁ sign(g), global or per block         [Tomihari25, §4.6]
signum_first_gradient    sign of momentum with v_1 = g_1 (``first_step="zeros"``  [SignMomentum25, Alg. 1]
                         is ``optax.signum``)
adasgd                   one scalar second moment ‖g‖²/d                         [Xie24, Algorithm 2]
blockwise_adam           one second moment per partition block                   [Xie24, Algorithm 3]
frozen_adam              β1 = 0, β2 = 1, no bias correction                      [Zhang24, eq. (2)]
adam_no_bias_correction  moments from g_0, no bias correction                    [Zhang24, Algorithm 3]
ef_signsgd               error feedback, scaled sign                             [Karimireddy19]
mv_signsgd               majority vote of signs                                  [Bernstein19]
sto_signsgd              majority vote of S_R (``key`` required)                 [Jin20]
mvsm_v1, mvsm_v2         majority vote with per-worker momentum (``key``)        [SignMomentum25, Alg. 2]
rotated_<name>           `rotated`: any of the above on L∘R (RandPerm)           [Xie24, App. D.2]
=======================  ======================================================  ===========================

Also public: the transforms ``scale_by_<name>`` and their states, `mvsm` (``version=1|2``),
`scale_by_majority_vote`, `stochastic_sign`, `rotated` / `make_rotation` / `rotate` /
`rotate_transpose`, and the registry functions `get`, `factory`, `names`, `is_multi_worker`.

Renamed in 0.3 (the old names warn with ``DeprecationWarning`` for one release; `DEPRECATED`
maps the registry names): ``sign_sgd`` → `signsgd`, ``sign_sgd_l1`` / ``signsgd_l1`` →
`signsgd_s`, ``scale_by_sign_l1`` → `scale_by_signsgd_s`, ``signum`` → `signum_first_gradient`
(``heterogeneity.optim.signum`` had shadowed ``optax.signum`` with a different first step),
``scale_by_signum`` → `scale_by_signum_first_gradient`, ``block_adam`` → `blockwise_adam`,
``scale_by_block_adam`` → `scale_by_blockwise_adam`, ``adam_nbc`` (registry) →
`adam_no_bias_correction`, ``ef_sign_sgd`` → `ef_signsgd`, ``scale_by_ef_sign`` →
`scale_by_ef_signsgd`, ``mv_sign_sgd`` → `mv_signsgd`, ``sto_sign_sgd`` → `sto_signsgd`.
"""
from optax import scale_by_sign  # noqa: F401  (re-exported)

from heterogeneity._deprecation import deprecated_alias
from heterogeneity.optim._adaptive import (
    ScaleByAdamNoBiasCorrectionState,
    ScaleByBlockwiseAdamState,
    adam_no_bias_correction,
    adasgd,
    blockwise_adam,
    frozen_adam,
    scale_by_adam_no_bias_correction,
    scale_by_adasgd,
    scale_by_blockwise_adam,
    scale_by_frozen_adam,
)
from heterogeneity.optim._error_feedback import ScaleByEFSignSGDState, ef_signsgd, scale_by_ef_signsgd
from heterogeneity.optim._majority_vote import (
    MajorityVoteState,
    mv_signsgd,
    mvsm,
    mvsm_v1,
    mvsm_v2,
    scale_by_majority_vote,
    scale_by_mvsm,
    sto_signsgd,
    stochastic_sign,
)
from heterogeneity.optim._optax import adam, adamw, lion, rmsprop, sgd
from heterogeneity.optim._registry import DEPRECATED, factory, get, is_multi_worker, names
from heterogeneity.optim._rotated import (
    RotatedState,
    Rotation,
    make_rotation,
    rotate,
    rotate_transpose,
    rotated,
)
from heterogeneity.optim._sign import (
    ScaleBySignumFirstGradientState,
    scale_by_signum_first_gradient,
    signsgd,
    signum_first_gradient,
)
from heterogeneity.optim._sign_l1 import scale_by_signsgd_s, signsgd_s

# Deprecated names (removed in 0.3): same behaviour, plus a DeprecationWarning.
sign_sgd = deprecated_alias(signsgd, "heterogeneity.optim.sign_sgd", "heterogeneity.optim.signsgd")
sign_sgd_l1 = deprecated_alias(signsgd_s, "heterogeneity.optim.sign_sgd_l1", "heterogeneity.optim.signsgd_s")
scale_by_sign_l1 = deprecated_alias(
    scale_by_signsgd_s, "heterogeneity.optim.scale_by_sign_l1", "heterogeneity.optim.scale_by_signsgd_s"
)
signum = deprecated_alias(
    signum_first_gradient, "heterogeneity.optim.signum",
    "heterogeneity.optim.signum_first_gradient (or optax.signum for a zero-initialised momentum)",
)
scale_by_signum = deprecated_alias(
    scale_by_signum_first_gradient, "heterogeneity.optim.scale_by_signum",
    "heterogeneity.optim.scale_by_signum_first_gradient",
)
ScaleBySignumState = ScaleBySignumFirstGradientState
block_adam = deprecated_alias(blockwise_adam, "heterogeneity.optim.block_adam", "heterogeneity.optim.blockwise_adam")
scale_by_block_adam = deprecated_alias(
    scale_by_blockwise_adam, "heterogeneity.optim.scale_by_block_adam", "heterogeneity.optim.scale_by_blockwise_adam"
)
ScaleByBlockAdamState = ScaleByBlockwiseAdamState
ef_sign_sgd = deprecated_alias(ef_signsgd, "heterogeneity.optim.ef_sign_sgd", "heterogeneity.optim.ef_signsgd")
scale_by_ef_sign = deprecated_alias(
    scale_by_ef_signsgd, "heterogeneity.optim.scale_by_ef_sign", "heterogeneity.optim.scale_by_ef_signsgd"
)
ScaleByEFSignState = ScaleByEFSignSGDState
from heterogeneity.optim._majority_vote import mv_sign_sgd, sto_sign_sgd  # noqa: E402  (deprecated aliases)

#: old public name → new public name (functions and state classes).
DEPRECATED_FUNCTIONS = {
    "sign_sgd": "signsgd", "sign_sgd_l1": "signsgd_s", "scale_by_sign_l1": "scale_by_signsgd_s",
    "signum": "signum_first_gradient", "scale_by_signum": "scale_by_signum_first_gradient",
    "ScaleBySignumState": "ScaleBySignumFirstGradientState",
    "block_adam": "blockwise_adam", "scale_by_block_adam": "scale_by_blockwise_adam",
    "ScaleByBlockAdamState": "ScaleByBlockwiseAdamState",
    "ef_sign_sgd": "ef_signsgd", "scale_by_ef_sign": "scale_by_ef_signsgd",
    "ScaleByEFSignState": "ScaleByEFSignSGDState",
    "mv_sign_sgd": "mv_signsgd", "sto_sign_sgd": "sto_signsgd",
}

__all__ = [
    # Optax's own (validated wrappers) and re-exported
    "sgd", "adam", "adamw", "rmsprop", "lion", "scale_by_sign",
    # sign methods
    "signsgd", "signum_first_gradient", "scale_by_signum_first_gradient", "ScaleBySignumFirstGradientState",
    "signsgd_s", "scale_by_signsgd_s",
    # adaptive
    "adasgd", "scale_by_adasgd", "blockwise_adam", "scale_by_blockwise_adam", "ScaleByBlockwiseAdamState",
    "frozen_adam", "scale_by_frozen_adam",
    "adam_no_bias_correction", "scale_by_adam_no_bias_correction", "ScaleByAdamNoBiasCorrectionState",
    # error feedback
    "ef_signsgd", "scale_by_ef_signsgd", "ScaleByEFSignSGDState",
    # majority vote
    "stochastic_sign", "scale_by_majority_vote", "MajorityVoteState", "mv_signsgd", "sto_signsgd",
    "scale_by_mvsm", "mvsm", "mvsm_v1", "mvsm_v2",
    # rotation
    "rotated", "RotatedState", "Rotation", "make_rotation", "rotate", "rotate_transpose",
    # registry
    "get", "factory", "names", "is_multi_worker", "DEPRECATED",
]
