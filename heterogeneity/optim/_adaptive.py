"""Adaptive methods between Adam and AdaSGD, and Adam without bias correction.

* `block_adam` — blockwise Adam, seed 003 Algorithm 3: one second-moment *scalar* per block
  of a partition Φ,

      m_t = β1 m_{t−1} + (1 − β1) g_t                      (per coordinate)
      v_{t,b} = β2 v_{t−1,b} + (1 − β2) ‖[g_t]_b‖² / d_b   (per block)
      x_t = x_{t−1} − η_t m̂_t / (sqrt(v̂_{t,Φ(i)} + eps_root) + eps).

  With ``partition=hp.by_coordinate()`` this is exactly ``optax.adam``; with
  ``hp.single_block()`` it is AdaSGD (seed 003 §3.3: Φ_Adam : i ↦ i, Φ_AdaSGD : i ↦ 1).
* `adasgd` — AdaSGD, seed 003 Algorithm 2 (Wang & Wiens 2020): one scalar ``v_t`` fed by
  ``‖g_t‖²/d``. Rotation invariant (seed 003 Thm 2.2).

  Defaults follow ``optax.adam`` (bias correction, ``eps`` outside the root) so that the two
  extremes coincide with Optax. The paper's boxes use no bias correction and ``ε`` inside the
  root: ``bias_correction=False, eps=0.0, eps_root=ε``.
* `adam_no_bias_correction` — seed 001 Algorithm 3: ``m_0 = g_0``, ``v_0 = g_0 ∘ g_0`` (the
  moments start from the first gradient), EMAs afterwards, step ``η m_t / sqrt(v_t + ε)``.
* `frozen_adam` — seed 001 eq. (2): β1 = 0, β2 = 1, so ``x ← x − η (D⁰)⁻¹ g`` with
  ``D⁰ = diag(|g_0|)`` fixed from the first gradient (``optax.scale_by_adam(b2=1)`` divides by
  ``1 − b2^t = 0``; here there is no bias correction). Coordinates whose denominator is 0 (a
  zero first gradient with ``eps = eps_root = 0``) get a zero step: the pseudo-inverse of D⁰.

The blockwise second moment is kept in float32 (one scalar per block); the first moment and
the updates keep the parameter dtype.
"""
from __future__ import annotations

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from heterogeneity.optim._blocks import block_sizes, block_sum, broadcast_blocks, check_partition
from heterogeneity.optim._validate import (
    check_bool,
    check_choice,
    check_dtype,
    check_first_moment,
    check_learning_rate,
    check_nonnegative,
    check_second_moment,
)

__all__ = [
    "ScaleByBlockAdamState",
    "scale_by_block_adam",
    "block_adam",
    "scale_by_adasgd",
    "adasgd",
    "ScaleByAdamNoBiasCorrectionState",
    "scale_by_adam_no_bias_correction",
    "adam_no_bias_correction",
    "scale_by_frozen_adam",
    "frozen_adam",
]


class ScaleByBlockAdamState(NamedTuple):
    """``count``; ``mu`` first moment (params' structure); ``nu`` (num_blocks,) float32 second moments."""

    count: jax.Array
    mu: optax.Updates
    nu: jax.Array


_FROZEN_HINT = "; for a frozen second moment (b2 = 1) use frozen_adam or adam_no_bias_correction"


def _check_moments(opt, b1, b2, eps, eps_root, mu_dtype, *, bias_correction, starts_at_zero, when="",
                   fix=_FROZEN_HINT):
    """Shared rules: b1 ∈ [0, 1) if bias corrected; b2 via `check_second_moment`; eps, eps_root ≥ 0."""
    check_first_moment(opt, "b1", b1, bias_correction=bias_correction)
    check_second_moment(
        opt, "b2", b2, bias_correction=bias_correction, starts_at_zero=starts_at_zero, when=when, fix=fix
    )
    check_nonnegative(opt, "eps", eps)
    check_nonnegative(opt, "eps_root", eps_root)
    check_dtype(opt, "mu_dtype", mu_dtype)


def _checked_block_adam(opt, partition, b1, b2, eps, eps_root, bias_correction, mu_dtype, *, need_partition):
    """Validate, then build blockwise Adam (``partition=None``: one block, AdaSGD)."""
    if need_partition and partition is None:
        raise ValueError(f"{opt}: partition is required (e.g. hp.by_leaf(); use adasgd for one block)")
    check_partition(opt, partition)
    bias_correction = check_bool(opt, "bias_correction", bias_correction)
    # v starts at 0 and, with b2 = 1, stays there: b2 < 1 with or without bias correction
    _check_moments(opt, b1, b2, eps, eps_root, mu_dtype, bias_correction=bias_correction, starts_at_zero=True)
    return _scale_by_block_adam(partition, b1, b2, eps, eps_root, bias_correction, mu_dtype)


def _scale_by_block_adam(partition, b1, b2, eps, eps_root, bias_correction, mu_dtype):
    def init_fn(params):
        mu = optax.tree.zeros_like(params, dtype=mu_dtype)
        num_blocks = len(block_sizes(params, partition))
        return ScaleByBlockAdamState(
            count=jnp.zeros([], jnp.int32), mu=mu, nu=jnp.zeros([num_blocks], jnp.result_type(float))
        )

    def update_fn(updates, state, params=None):
        del params
        sizes = block_sizes(updates, partition).astype(np.float64)
        acc = state.nu.dtype
        sq = block_sum(jax.tree.map(lambda g: g.astype(acc) ** 2, updates), partition)
        mean_sq = sq / jnp.asarray(sizes, acc)
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = (1 - b2) * mean_sq + b2 * state.nu
        count_inc = optax.safe_increment(state.count)
        # v is broadcast back to the leaves *before* the bias correction and the root, so that
        # with one block per coordinate every float op matches optax.scale_by_adam on arrays of
        # the same shapes (XLA CPU rounds a vectorised division differently by array length).
        nu_tree = broadcast_blocks(nu, updates, partition)
        if bias_correction:
            mu_hat = optax.tree.bias_correction(mu, b1, count_inc)
            nu_tree = optax.tree.bias_correction(nu_tree, b2, count_inc)
        else:
            mu_hat = mu
        out = jax.tree.map(
            lambda m, v, g: (m / (jnp.sqrt(v + eps_root) + eps)).astype(g.dtype), mu_hat, nu_tree, updates
        )
        mu = optax.tree.cast(mu, mu_dtype) if mu_dtype is not None else optax.tree.cast_like(mu, state.mu)
        return out, ScaleByBlockAdamState(count=count_inc, mu=mu, nu=nu.astype(acc))

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_block_adam(
    partition: Any,
    *,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    bias_correction: bool = True,
    mu_dtype: Any = None,
) -> optax.GradientTransformation:
    """Blockwise Adam direction ``m̂ / (sqrt(v̂_Φ + eps_root) + eps)`` (seed 003 Algorithm 3).

    ``partition``: a `heterogeneity.partition` partition (required; ``hp.by_coordinate()`` is
    Adam, ``hp.single_block()`` is AdaSGD).
    """
    return _checked_block_adam(
        "scale_by_block_adam", partition, b1, b2, eps, eps_root, bias_correction, mu_dtype, need_partition=True
    )


def block_adam(
    learning_rate: optax.ScalarOrSchedule,
    partition: Any,
    *,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    bias_correction: bool = True,
    mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
    """Blockwise Adam (seed 003 Algorithm 3; Adam-mini / Adalayer): one ``v`` per block of Φ.

    ``v_{t,b} = β2 v_{t−1,b} + (1−β2) ‖[g_t]_b‖²/d_b``, ``x ← x − η_t m̂_t/(sqrt(v̂_{t,Φ(i)} + eps_root) + eps)``.
    """
    check_learning_rate("block_adam", learning_rate)
    return optax.chain(
        _checked_block_adam(
            "block_adam", partition, b1, b2, eps, eps_root, bias_correction, mu_dtype, need_partition=True
        ),
        optax.scale_by_learning_rate(learning_rate),
    )


def scale_by_adasgd(
    *,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    bias_correction: bool = True,
    mu_dtype: Any = None,
) -> optax.GradientTransformation:
    """AdaSGD direction (seed 003 Algorithm 2): one scalar ``v_t = β2 v_{t−1} + (1−β2)‖g_t‖²/d``."""
    return _checked_block_adam(
        "scale_by_adasgd", None, b1, b2, eps, eps_root, bias_correction, mu_dtype, need_partition=False
    )


def adasgd(
    learning_rate: optax.ScalarOrSchedule,
    *,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    bias_correction: bool = True,
    mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
    """AdaSGD, seed 003 Algorithm 2 (Wang & Wiens 2020); rotation invariant (seed 003 Thm 2.2).

    ``m_t = β1 m + (1−β1) g``, ``v_t = β2 v + (1−β2) ‖g‖²/d`` (a scalar), ``x ← x − η_t m̂_t/(sqrt(v̂_t + eps_root) + eps)``.
    """
    check_learning_rate("adasgd", learning_rate)
    return optax.chain(
        _checked_block_adam("adasgd", None, b1, b2, eps, eps_root, bias_correction, mu_dtype, need_partition=False),
        optax.scale_by_learning_rate(learning_rate),
    )


class ScaleByAdamNoBiasCorrectionState(NamedTuple):
    """``count``; first and second moments ``mu``, ``nu`` (params' structure)."""

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates


def _acc(x):
    return jnp.promote_types(x.dtype, jnp.float32)


def _safe_ratio(m, d):
    ok = d > 0
    return jnp.where(ok, m / jnp.where(ok, d, 1), 0)


def scale_by_adam_no_bias_correction(
    *,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 0.0,
    eps_root: Any = 0.0,
    initial_moments: Literal["gradient", "zeros"] = "gradient",
    mu_dtype: Any = None,
) -> optax.GradientTransformation:
    """Adam without bias correction, seed 001 Algorithm 3: ``m / (sqrt(v + eps_root) + eps)``.

    ``initial_moments="gradient"`` (the paper): ``m_0 = g_0``, ``v_0 = g_0²`` are used for the
    first step; afterwards ``m ← β1 m + (1−β1) g``, ``v ← β2 v + (1−β2) g²``.
    ``"zeros"``: the textbook ``m_0 = v_0 = 0``. A zero denominator gives a zero step.
    """
    return _checked_adam_nbc("scale_by_adam_no_bias_correction", b1, b2, eps, eps_root, initial_moments, mu_dtype)


def _checked_adam_nbc(opt, b1, b2, eps, eps_root, initial_moments, mu_dtype):
    """Validate, then build Adam without bias correction (b2 = 1 only with moments from g_0)."""
    check_choice(opt, "initial_moments", initial_moments, ("gradient", "zeros"))
    _check_moments(
        opt, b1, b2, eps, eps_root, mu_dtype, bias_correction=False, starts_at_zero=initial_moments == "zeros",
        when=" with initial_moments='zeros'", fix="; b2 = 1 needs initial_moments='gradient'",
    )

    def init_fn(params):
        return ScaleByAdamNoBiasCorrectionState(
            count=jnp.zeros([], jnp.int32),
            mu=optax.tree.zeros_like(params, dtype=mu_dtype),
            nu=optax.tree.zeros_like(params),
        )

    def update_fn(updates, state, params=None):
        del params
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        if initial_moments == "gradient":
            first = state.count == 0
            mu = jax.tree.map(lambda g, m: jnp.where(first, g.astype(m.dtype), m), updates, mu)
            nu = jax.tree.map(lambda g, v: jnp.where(first, (g * g).astype(v.dtype), v), updates, nu)
        mu = optax.tree.cast_like(mu, state.mu)
        nu = optax.tree.cast_like(nu, state.nu)
        out = jax.tree.map(
            lambda m, v, g: _safe_ratio(
                m.astype(_acc(g)), jnp.sqrt(v.astype(_acc(g)) + eps_root) + eps
            ).astype(g.dtype),
            mu,
            nu,
            updates,
        )
        return out, ScaleByAdamNoBiasCorrectionState(count=optax.safe_increment(state.count), mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def adam_no_bias_correction(
    learning_rate: optax.ScalarOrSchedule,
    *,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 0.0,
    eps_root: Any = 0.0,
    initial_moments: Literal["gradient", "zeros"] = "gradient",
    mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
    """Adam with no bias correction, seed 001 App. C Algorithm 3: ``w ← w − η_t m_t/sqrt(v_t + ε)``.

    Moments start from the first gradient (``m_0 = g_0``, ``v_0 = g_0²``); ``ε`` is ``eps_root``.
    """
    check_learning_rate("adam_no_bias_correction", learning_rate)
    return optax.chain(
        _checked_adam_nbc("adam_no_bias_correction", b1, b2, eps, eps_root, initial_moments, mu_dtype),
        optax.scale_by_learning_rate(learning_rate),
    )


def scale_by_frozen_adam(*, eps: Any = 0.0, eps_root: Any = 0.0) -> optax.GradientTransformation:
    """``g / (sqrt(g_0² + eps_root) + eps)``: Adam with β1 = 0, β2 = 1 (seed 001 eq. (2))."""
    return _checked_adam_nbc("scale_by_frozen_adam", 0.0, 1.0, eps, eps_root, "gradient", None)


def frozen_adam(
    learning_rate: optax.ScalarOrSchedule, *, eps: Any = 0.0, eps_root: Any = 0.0
) -> optax.GradientTransformationExtraArgs:
    """Seed 001 eq. (2): ``w^{t+1} = w^t − η (D⁰_Adam)⁻¹ ∇L(w^t)``, ``D⁰_Adam = diag(|∇L(w⁰)|)``.

    Adam with β1 = 0, β2 = 1 and no bias correction: the coordinate-wise learning rates are
    frozen at the first gradient (seed 001 §3.1). Zero denominators give zero steps.
    """
    check_learning_rate("frozen_adam", learning_rate)
    return optax.chain(
        _checked_adam_nbc("frozen_adam", 0.0, 1.0, eps, eps_root, "gradient", None),
        optax.scale_by_learning_rate(learning_rate),
    )
