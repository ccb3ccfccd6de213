"""Sign descent: SignSGD [Tomihari25, §3.2] and Signum from the first gradient [SignMomentum25, Algorithm 1].

Optax ships ``optax.sign_sgd`` (no momentum) and ``optax.signum`` (sign of a zero-initialised
EMA); they are reused, not rewritten, and not shadowed:

* `signsgd` with ``momentum=None`` *is* ``optax.sign_sgd``. With ``momentum=μ`` it adds heavy
  ball momentum in either order:

  - ``order="momentum_first"`` (default): ``m ← μ m + g``, step ``−η sign(m)``: the SignSGD of
    [Tomihari25, §3.2] (momentum 0.9, App. C) and, up to the EMA normalisation that the sign
    ignores, Signum [Bernstein18].
  - ``order="sign_first"``: ``m ← μ m + sign(g)``, step ``−η m`` (momentum on the signs). None
    of the four papers uses it; it is the ablation of the order.

* `signum_first_gradient` is Signum as [SignMomentum25, Algorithm 1] writes it: the first
  estimator is the first gradient itself (``v_1 = g_1``), not ``(1 − β) g_1``. The first step
  agrees with ``optax.signum`` (the sign is scale-free), later steps weight ``g_1`` differently.
  ``first_step="zeros"`` returns ``optax.signum`` itself. (Before 0.3 this was called
  ``signum``, a name that shadowed ``optax.signum`` with a different algorithm.)

Sign convention: ``jnp.sign`` (``sign(0) = 0``), as Optax.
"""
from __future__ import annotations

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from heterogeneity.optim._validate import (
    check_bool,
    check_choice,
    check_dtype,
    check_learning_rate,
    check_unit_interval,
)

__all__ = [
    "signsgd",
    "ScaleBySignumFirstGradientState",
    "scale_by_signum_first_gradient",
    "signum_first_gradient",
]


def signsgd(
    learning_rate: optax.ScalarOrSchedule,
    *,
    momentum: Any = None,
    order: Literal["momentum_first", "sign_first"] | None = None,
    nesterov: bool | None = None,
    accumulator_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""SignSGD, optionally with heavy-ball momentum [Tomihari25, §3.2], [Bernstein18].

    .. math::

        \text{no momentum: } \theta_{t+1} = \theta_t - \eta_t \operatorname{sign}(g_t)
        \quad(\text{exactly } \texttt{optax.sign\_sgd}),

        \texttt{momentum\_first: } m_t = \mu m_{t-1} + g_t,\ \theta_{t+1} = \theta_t - \eta_t \operatorname{sign}(m_t),

        \texttt{sign\_first: } m_t = \mu m_{t-1} + \operatorname{sign}(g_t),\ \theta_{t+1} = \theta_t - \eta_t m_t.

    Args:
      learning_rate: ``η_t`` (a float ≥ 0 or a schedule).
      momentum: ``μ ∈ [0, 1]``, or None for plain SignSGD.
      order: ``"momentum_first"`` (default with momentum) or ``"sign_first"``; momentum only.
      nesterov: Nesterov momentum (default False); momentum only.
      accumulator_dtype: dtype of ``m``; momentum only.

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    Raises:
      ValueError: ``order``, ``nesterov`` or ``accumulator_dtype`` given without ``momentum``.

    >>> import jax.numpy as jnp
    >>> opt = signsgd(0.1)
    >>> g = jnp.array([3.0, -0.5])
    >>> u, _ = opt.update(g, opt.init(jnp.zeros(2)))
    >>> print(u)
    [-0.1  0.1]
    """
    opt = "signsgd"
    check_learning_rate(opt, learning_rate)
    check_unit_interval(opt, "momentum", momentum, optional=True)
    if order is not None:
        check_choice(opt, "order", order, ("momentum_first", "sign_first"))
    if nesterov is not None:
        check_bool(opt, "nesterov", nesterov)
    check_dtype(opt, "accumulator_dtype", accumulator_dtype)
    if momentum is None:
        given = [f"{k}={v!r}" for k, v in (("order", order), ("nesterov", nesterov),
                                          ("accumulator_dtype", accumulator_dtype)) if v is not None]
        if given:
            raise ValueError(
                f"{opt}: {', '.join(given)} only applies with momentum (momentum=None is plain sign descent); "
                f"pass momentum in [0, 1] or drop {', '.join(g.split('=')[0] for g in given)}"
            )
        return optax.sign_sgd(learning_rate)
    order = "momentum_first" if order is None else order
    nesterov = bool(nesterov)
    trace = optax.trace(decay=momentum, nesterov=nesterov, accumulator_dtype=accumulator_dtype)
    if order == "momentum_first":
        parts = (trace, optax.scale_by_sign())
    else:
        parts = (optax.scale_by_sign(), trace)
    return optax.chain(*parts, optax.scale_by_learning_rate(learning_rate))


class ScaleBySignumFirstGradientState(NamedTuple):
    """State of `scale_by_signum_first_gradient`: step ``count`` and the momentum estimator ``mu`` (v)."""

    count: jax.Array
    mu: optax.Updates


def scale_by_signum_first_gradient(
    beta: Any = 0.9,
    *,
    first_step: Literal["gradient", "zeros"] = "gradient",
    accumulator_dtype: Any = None,
) -> optax.GradientTransformation:
    r"""The Signum direction with ``v_1 = g_1`` [SignMomentum25, Algorithm 1].

    .. math::

        v_1 = g_1,\quad v_t = \beta v_{t-1} + (1 - \beta) g_t\ (t \ge 2),\quad u_t = \operatorname{sign}(v_t).

    ``beta`` is Optax's decay; the paper's β is ``1 − beta`` ([SignMomentum25, App. E.2] says
    the same of its tuned ``β_1``).

    Args:
      beta: EMA decay in [0, 1].
      first_step: ``"gradient"`` (``v_1 = g_1``, the paper) or ``"zeros"`` (``v_0 = 0``:
        ``optax.scale_by_sign`` after ``optax.ema``, i.e. ``optax.signum``'s direction).
      accumulator_dtype: dtype of ``v`` (default: the parameters').

    Returns:
      An ``optax.GradientTransformation`` whose updates are ``sign(v_t)``.

    >>> import jax.numpy as jnp
    >>> tx = scale_by_signum_first_gradient(beta=0.5)
    >>> s = tx.init(jnp.zeros(2))
    >>> u, s = tx.update(jnp.array([1.0, -1.0]), s)
    >>> u, s = tx.update(jnp.array([-3.0, -1.0]), s)
    >>> print(s.mu, u)
    [-1. -1.] [-1. -1.]
    """
    _check_signum("scale_by_signum_first_gradient", beta, first_step, accumulator_dtype)
    return _scale_by_signum(beta, first_step, accumulator_dtype)


def _check_signum(opt, beta, first_step, accumulator_dtype):
    check_unit_interval(opt, "beta", beta)
    check_choice(opt, "first_step", first_step, ("gradient", "zeros"))
    check_dtype(opt, "accumulator_dtype", accumulator_dtype)


def _scale_by_signum(beta, first_step, accumulator_dtype):
    if first_step == "zeros":
        return optax.chain(
            optax.ema(beta, debias=False, accumulator_dtype=accumulator_dtype), optax.scale_by_sign()
        )

    def init_fn(params):
        mu = optax.tree.zeros_like(params, dtype=accumulator_dtype)
        return ScaleBySignumFirstGradientState(count=jnp.zeros([], jnp.int32), mu=mu)

    def update_fn(updates, state, params=None):
        del params
        ema = optax.tree.update_moment(updates, state.mu, beta, 1)
        first = state.count == 0
        mu = optax.tree.where(first, optax.tree.cast_like(updates, state.mu), ema)
        mu = optax.tree.cast_like(mu, state.mu)
        new_updates = jax.tree.map(lambda m, g: jnp.sign(m).astype(g.dtype), mu, updates)
        return new_updates, ScaleBySignumFirstGradientState(count=optax.safe_increment(state.count), mu=mu)

    return optax.GradientTransformation(init_fn, update_fn)


def signum_first_gradient(
    learning_rate: optax.ScalarOrSchedule,
    *,
    beta: Any = 0.9,
    first_step: Literal["gradient", "zeros"] = "gradient",
    accumulator_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Signum as [SignMomentum25, Algorithm 1]: momentum started at the first gradient.

    .. math::

        v_1 = g_1,\quad v_t = \beta v_{t-1} + (1 - \beta) g_t,\quad
        x_{t+1} = x_t - \eta_t \operatorname{sign}(v_t).

    ``first_step="zeros"`` (``v_0 = 0``) returns ``optax.signum`` itself; the default differs
    from it from step 2 on. Paper's β = ``1 − beta``.

    Args:
      learning_rate: ``η_t`` (a float ≥ 0 or a schedule).
      beta: EMA decay in [0, 1].
      first_step: ``"gradient"`` (the paper) or ``"zeros"`` (``optax.signum``).
      accumulator_dtype: dtype of ``v``.

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    >>> import jax.numpy as jnp
    >>> opt = signum_first_gradient(0.1, beta=0.5)
    >>> s = opt.init(jnp.zeros(2))
    >>> u, s = opt.update(jnp.array([2.0, -1.0]), s)
    >>> print(u)
    [-0.1  0.1]
    """
    check_learning_rate("signum_first_gradient", learning_rate)
    _check_signum("signum_first_gradient", beta, first_step, accumulator_dtype)
    if first_step == "zeros":
        return optax.signum(learning_rate, beta=beta, accumulator_dtype=accumulator_dtype)
    return optax.chain(
        _scale_by_signum(beta, first_step, accumulator_dtype),
        optax.scale_by_learning_rate(learning_rate),
    )
