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
    r"""``optax.sgd``, validated: ``learning_rate ≥ 0``, ``momentum`` None or in [0, 1].

    .. math::

        m_t = \mu m_{t-1} + g_t,\qquad x_{t+1} = x_t - \eta_t m_t \quad(\mu = 0: x_{t+1} = x_t - \eta_t g_t).

    Args:
      learning_rate: ``η_t`` (a float ≥ 0 or a schedule).
      momentum: ``μ ∈ [0, 1]`` or None.
      nesterov: Nesterov momentum.
      accumulator_dtype: dtype of the momentum buffer.

    Returns:
      ``optax.sgd(...)`` itself.

    >>> import jax.numpy as jnp
    >>> opt = sgd(0.1)
    >>> u, _ = opt.update(jnp.array([1.0, -2.0]), opt.init(jnp.zeros(2)))
    >>> print(u)
    [-0.1  0.2]
    """
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
    r"""``optax.adam`` [Kingma15], validated: ``b1, b2 ∈ [0, 1)`` (bias correction), ``eps, eps_root ≥ 0``.

    .. math::

        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2)|g_t|^2,\quad
        x_{t+1} = x_t - \eta_t \frac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t) + \epsilon_{root}} + \epsilon}.

    Args:
      learning_rate: ``η_t`` (a float ≥ 0 or a schedule).
      b1: first-moment decay in [0, 1).
      b2: second-moment decay in [0, 1) (β2 = 1 is `frozen_adam` / `adam_no_bias_correction`).
      eps: ≥ 0, added outside the root.
      eps_root: ≥ 0, added inside the root.
      mu_dtype: dtype of the first moment.
      nesterov: Nesterov momentum.

    Returns:
      ``optax.adam(...)`` itself.

    >>> import jax.numpy as jnp, numpy as np
    >>> opt = adam(0.1)
    >>> u, _ = opt.update(jnp.array([1.0, -2.0]), opt.init(jnp.zeros(2)))
    >>> print(np.asarray(u).round(4))  # first step: -η sign(g) (up to eps)
    [-0.1  0.1]
    """
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
    r"""``optax.adamw`` [Loshchilov19], validated as `adam`, plus ``weight_decay ≥ 0`` (a number or a schedule).

    .. math::

        x_{t+1} = x_t - \eta_t \Big(\frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_{root}} + \epsilon} + \lambda x_t\Big).

    Args:
      learning_rate: ``η_t`` (a float ≥ 0 or a schedule).
      b1: as `adam`.
      b2: as `adam`.
      eps: as `adam`.
      eps_root: as `adam`.
      mu_dtype: as `adam`.
      nesterov: as `adam`.
      weight_decay: ``λ ≥ 0`` (or a schedule).
      mask: which parameters decay (as Optax).

    Returns:
      ``optax.adamw(...)`` itself.

    >>> import jax.numpy as jnp, numpy as np
    >>> opt = adamw(0.1, weight_decay=0.5)
    >>> u, _ = opt.update(jnp.array([1.0, -2.0]), opt.init(jnp.ones(2)), jnp.ones(2))
    >>> print(np.asarray(u).round(4))  # -η (sign(g) + λ x)
    [-0.15  0.05]
    """
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
    r"""``optax.rmsprop``, validated: ``decay ∈ [0, 1]`` (1 only with ``initial_scale > 0``), ``eps ≥ 0``.

    .. math::

        v_t = \rho v_{t-1} + (1-\rho)|g_t|^2,\ v_0 = \texttt{initial\_scale},\qquad
        x_{t+1} = x_t - \eta_t\, g_t / \sqrt{v_t + \epsilon}

    (``eps_in_sqrt=False``: ``/(sqrt(v) + ε)``; ``centered``, ``momentum`` as Optax).

    Args:
      learning_rate: ``η_t`` (a float ≥ 0 or a schedule).
      decay: ``ρ ∈ [0, 1]``.
      eps: ≥ 0, added to the root.
      initial_scale: ≥ 0, the initial second moment.
      eps_in_sqrt: as ``optax.rmsprop``.
      centered: as ``optax.rmsprop``.
      nesterov: as ``optax.rmsprop``.
      bias_correction: as ``optax.rmsprop``.
      momentum: ``μ ∈ [0, 1]`` or None.

    Returns:
      ``optax.rmsprop(...)`` itself.

    >>> import jax.numpy as jnp
    >>> opt = rmsprop(0.1, decay=0.75, eps=0.0)
    >>> u, _ = opt.update(jnp.array([1.0, -2.0]), opt.init(jnp.zeros(2)))
    >>> print(u)
    [-0.2  0.2]
    """
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
    r"""``optax.lion`` [Chen23], validated: ``b1, b2 ∈ [0, 1]`` (no bias correction), ``weight_decay ≥ 0``.

    .. math::

        x_{t+1} = x_t - \eta_t\big(\operatorname{sign}(\beta_1 m_{t-1} + (1-\beta_1) g_t) + \lambda x_t\big),\quad
        m_t = \beta_2 m_{t-1} + (1-\beta_2) g_t.

    Args:
      learning_rate: ``η_t`` (a float ≥ 0 or a schedule).
      b1: decay of the interpolation that gives the update's sign, in [0, 1].
      b2: decay of the momentum, in [0, 1].
      mu_dtype: dtype of ``m``.
      weight_decay: ``λ ≥ 0`` (or a schedule).
      mask: which parameters decay (as Optax).

    Returns:
      ``optax.lion(...)`` itself.

    >>> import jax.numpy as jnp
    >>> opt = lion(0.1, weight_decay=0.0)
    >>> u, _ = opt.update(jnp.array([1.0, -2.0]), opt.init(jnp.zeros(2)), jnp.zeros(2))
    >>> print(u)
    [-0.1  0.1]
    """
    check_learning_rate("lion", learning_rate)
    check_unit_interval("lion", "b1", b1)
    check_unit_interval("lion", "b2", b2)
    check_dtype("lion", "mu_dtype", mu_dtype)
    check_nonnegative("lion", "weight_decay", weight_decay, schedule=True)
    return optax.lion(learning_rate, b1=b1, b2=b2, mu_dtype=mu_dtype, weight_decay=weight_decay, mask=mask)
