"""Optax's own optimizers (sgd, adam, adamw, rmsprop, lion), validated at construction.

Each is ``optax.<name>`` itself, with the same signature, behind the shared checks of
`heterogeneity.optim._validate` (Optax's constructors do not validate). Rules:

* ``adam``/``adamw``: ``b1 ∈ [0, 1)`` and ``b2 ∈ [0, 1)`` (both moments are bias corrected,
  dividing by ``1 − β^t``); β2 = 1 without bias correction is `frozen_adam` /
  `adam_no_bias_correction`.
* ``rmsprop``: ``decay ∈ [0, 1]``; ``decay = 1`` only with ``initial_scale > 0`` and no bias
  correction (otherwise ``v`` stays 0 and steps are ``g / eps``, or divide by 0).
* ``sgd``/``lion``: momenta in [0, 1]; learning rates, ``eps``, ``weight_decay`` ≥ 0.
"""
from __future__ import annotations

from typing import Any

import optax

from heterogeneity.optim._validate import (
    check_bool,
    check_dtype,
    check_first_moment,
    check_learning_rate,
    check_nonnegative,
    check_second_moment,
    check_unit_interval,
    concrete_value,
)

__all__ = ["sgd", "adam", "adamw", "rmsprop", "lion"]

_FROZEN_HINT = "; for a frozen second moment (b2 = 1) use frozen_adam or adam_no_bias_correction"


def sgd(
    learning_rate: optax.ScalarOrSchedule,
    momentum: Any = None,
    nesterov: bool = False,
    accumulator_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
    """``optax.sgd``, validated: ``learning_rate ≥ 0``, ``momentum`` None or in [0, 1]."""
    check_learning_rate("sgd", learning_rate)
    check_unit_interval("sgd", "momentum", momentum, optional=True)
    check_bool("sgd", "nesterov", nesterov)
    check_dtype("sgd", "accumulator_dtype", accumulator_dtype)
    return optax.sgd(learning_rate, momentum=momentum, nesterov=nesterov, accumulator_dtype=accumulator_dtype)


def _check_adam(opt, learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov):
    check_learning_rate(opt, learning_rate)
    check_first_moment(opt, "b1", b1, bias_correction=True)
    check_second_moment(opt, "b2", b2, bias_correction=True, starts_at_zero=True, fix=_FROZEN_HINT)
    check_nonnegative(opt, "eps", eps)
    check_nonnegative(opt, "eps_root", eps_root)
    check_dtype(opt, "mu_dtype", mu_dtype)
    check_bool(opt, "nesterov", nesterov)


def adam(
    learning_rate: optax.ScalarOrSchedule,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
) -> optax.GradientTransformationExtraArgs:
    """``optax.adam``, validated: ``b1, b2 ∈ [0, 1)`` (bias correction), ``eps, eps_root ≥ 0``."""
    _check_adam("adam", learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov)
    return optax.adam(learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nesterov=nesterov)


def adamw(
    learning_rate: optax.ScalarOrSchedule,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Any = None,
    weight_decay: optax.ScalarOrSchedule = 1e-4,
    mask: Any = None,
    *,
    nesterov: bool = False,
) -> optax.GradientTransformationExtraArgs:
    """``optax.adamw``, validated as `adam`, plus ``weight_decay ≥ 0`` (a number or a schedule)."""
    _check_adam("adamw", learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov)
    check_nonnegative("adamw", "weight_decay", weight_decay, schedule=True)
    return optax.adamw(
        learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype,
        weight_decay=weight_decay, mask=mask, nesterov=nesterov,
    )


def rmsprop(
    learning_rate: optax.ScalarOrSchedule,
    decay: Any = 0.9,
    eps: Any = 1e-8,
    initial_scale: Any = 0.0,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    momentum: Any = None,
    nesterov: bool = False,
    bias_correction: bool = False,
) -> optax.GradientTransformationExtraArgs:
    """``optax.rmsprop``, validated: ``decay ∈ [0, 1]`` (1 only with ``initial_scale > 0``), ``eps ≥ 0``."""
    opt = "rmsprop"
    check_learning_rate(opt, learning_rate)
    for name, flag in (("eps_in_sqrt", eps_in_sqrt), ("centered", centered), ("nesterov", nesterov),
                       ("bias_correction", bias_correction)):
        check_bool(opt, name, flag)
    check_nonnegative(opt, "eps", eps)
    check_nonnegative(opt, "initial_scale", initial_scale)
    check_second_moment(
        opt, "decay", decay, bias_correction=bias_correction, starts_at_zero=concrete_value(initial_scale) == 0,
        when=" with initial_scale=0 or bias_correction=True",
        fix="; decay = 1 (a fixed preconditioner) needs initial_scale > 0 and bias_correction=False",
    )
    check_unit_interval(opt, "momentum", momentum, optional=True)
    return optax.rmsprop(
        learning_rate, decay=decay, eps=eps, initial_scale=initial_scale, eps_in_sqrt=eps_in_sqrt,
        centered=centered, momentum=momentum, nesterov=nesterov, bias_correction=bias_correction,
    )


def lion(
    learning_rate: optax.ScalarOrSchedule,
    b1: Any = 0.9,
    b2: Any = 0.99,
    mu_dtype: Any = None,
    weight_decay: optax.ScalarOrSchedule = 1e-3,
    mask: Any = None,
) -> optax.GradientTransformationExtraArgs:
    """``optax.lion``, validated: ``b1, b2 ∈ [0, 1]`` (no bias correction), ``weight_decay ≥ 0``."""
    check_learning_rate("lion", learning_rate)
    check_unit_interval("lion", "b1", b1)
    check_unit_interval("lion", "b2", b2)
    check_dtype("lion", "mu_dtype", mu_dtype)
    check_nonnegative("lion", "weight_decay", weight_decay, schedule=True)
    return optax.lion(learning_rate, b1=b1, b2=b2, mu_dtype=mu_dtype, weight_decay=weight_decay, mask=mask)
