"""Sign descent with momentum: SignSGD (seed 000 §3.2) and Signum (seed 002 Algorithm 1).

Optax already ships ``optax.sign_sgd`` (no momentum) and ``optax.signum`` (sign of a
zero-initialised EMA); they are reused, not rewritten. What is added here:

* `sign_sgd(..., momentum=μ)` with the two possible orders of momentum and sign:

  - ``order="momentum_first"`` (default): heavy ball ``m ← μ m + g``, step ``−η sign(m)``.
    This is the SignSGD of seed 000 §3.2 (``θ ← θ − η sign(m_t)``, momentum 0.9 by default,
    App. C) and, up to the EMA normalisation that the sign ignores, Signum (Bernstein et al.
    2018; seed 002 Algorithm 1, `signum`).
  - ``order="sign_first"``: ``m ← μ m + sign(g)``, step ``−η m`` (momentum on the signs, what
    ``optax.chain(optax.scale_by_sign(), optax.trace(μ))`` gives). None of the four papers uses
    it; it is the ablation of the order.

* `scale_by_signum` / `signum` exactly as seed 002 Algorithm 1, whose first estimator is the
  first gradient itself (``v_1 = g_1``), not ``(1 − β) g_1``. Because the sign is scale-free the
  first step agrees with ``optax.signum``, but later steps weight ``g_1`` differently.
  ``first_step="zeros"`` returns ``optax.signum`` itself.

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

__all__ = ["sign_sgd", "ScaleBySignumState", "scale_by_signum", "signum"]


def sign_sgd(
    learning_rate: optax.ScalarOrSchedule,
    *,
    momentum: Any = None,
    order: Literal["momentum_first", "sign_first"] = "momentum_first",
    nesterov: bool = False,
    accumulator_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
    """SignSGD, optionally with heavy-ball momentum (seed 000 §3.2; Bernstein et al. 2018).

    ``momentum=None``: ``θ ← θ − η_t sign(g_t)`` (this is ``optax.sign_sgd``).
    ``order="momentum_first"``: ``m_t = μ m_{t−1} + g_t``, ``θ ← θ − η_t sign(m_t)`` (seed 000).
    ``order="sign_first"``: ``m_t = μ m_{t−1} + sign(g_t)``, ``θ ← θ − η_t m_t``.
    """
    opt = "sign_sgd"
    check_learning_rate(opt, learning_rate)
    check_choice(opt, "order", order, ("momentum_first", "sign_first"))
    check_unit_interval(opt, "momentum", momentum, optional=True)
    check_bool(opt, "nesterov", nesterov)
    check_dtype(opt, "accumulator_dtype", accumulator_dtype)
    if momentum is None:
        return optax.sign_sgd(learning_rate)
    trace = optax.trace(decay=momentum, nesterov=nesterov, accumulator_dtype=accumulator_dtype)
    if order == "momentum_first":
        parts = (trace, optax.scale_by_sign())
    else:
        parts = (optax.scale_by_sign(), trace)
    return optax.chain(*parts, optax.scale_by_learning_rate(learning_rate))


class ScaleBySignumState(NamedTuple):
    """State of `scale_by_signum`: step count and the momentum estimator ``v``."""

    count: jax.Array
    mu: optax.Updates


def scale_by_signum(
    beta: Any = 0.9,
    *,
    first_step: Literal["gradient", "zeros"] = "gradient",
    accumulator_dtype: Any = None,
) -> optax.GradientTransformation:
    """``sign(v_t)`` with ``v_1 = g_1``, ``v_t = beta v_{t−1} + (1 − beta) g_t`` (seed 002 Alg. 1).

    ``beta`` is Optax's decay; the paper's β is ``1 − beta`` (seed 002 App. E.2 says the same of
    its tuned ``β_1``). ``first_step="zeros"`` starts from ``v_0 = 0`` (``optax.signum``).
    """
    _check_signum("scale_by_signum", beta, first_step, accumulator_dtype)
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
        return ScaleBySignumState(count=jnp.zeros([], jnp.int32), mu=mu)

    def update_fn(updates, state, params=None):
        del params
        ema = optax.tree.update_moment(updates, state.mu, beta, 1)
        first = state.count == 0
        mu = jax.tree.map(lambda g, m: jnp.where(first, g.astype(m.dtype), m), updates, ema)
        mu = optax.tree.cast_like(mu, state.mu)
        new_updates = jax.tree.map(lambda m, g: jnp.sign(m).astype(g.dtype), mu, updates)
        return new_updates, ScaleBySignumState(count=optax.safe_increment(state.count), mu=mu)

    return optax.GradientTransformation(init_fn, update_fn)


def signum(
    learning_rate: optax.ScalarOrSchedule,
    *,
    beta: Any = 0.9,
    first_step: Literal["gradient", "zeros"] = "gradient",
    accumulator_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
    """Signum, seed 002 Algorithm 1: ``x_{t+1} = x_t − η_t sign(v_t)``, ``v_1 = g_1``.

    ``v_t = beta v_{t−1} + (1 − beta) g_t`` for ``t ≥ 2`` (paper's β = ``1 − beta``).
    ``first_step="zeros"`` gives ``optax.signum`` exactly.
    """
    check_learning_rate("signum", learning_rate)
    _check_signum("signum", beta, first_step, accumulator_dtype)
    if first_step == "zeros":
        return optax.signum(learning_rate, beta=beta, accumulator_dtype=accumulator_dtype)
    return optax.chain(
        _scale_by_signum(beta, first_step, accumulator_dtype),
        optax.scale_by_learning_rate(learning_rate),
    )
