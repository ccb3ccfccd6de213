"""SignSGD (S): SignSGD with an ℓ1-scaled learning rate [Tomihari25, §4.6].

[Tomihari25, Theorem 4.7] asks SignSGD for a step size proportional to the gradient's ℓ1 norm;
in the small-gradient (fine-tuning) regime it reduces to ``η_t = γ_t ‖∇L̂(θ_t)‖₁``, i.e.

    θ_{t+1} = θ_t − γ_t ‖g_t‖₁ sign(g_t),

the steepest-descent step for the ℓ∞ norm [Tomihari25, App. H.1]. With a partition the norm is
taken per block (``‖[g]_b‖₁ sign([g]_b)`` on block b), the blockwise ℓ∞ steepest descent. With
momentum (heavy ball ``m ← μ m + g``, as [Tomihari25] uses for SignSGD) the norm is that of the
signed vector: ``‖m‖₁ sign(m)``. Note that in steady state ``‖m‖₁ ≈ ‖g‖₁ / (1 − μ)``.

Complex parameters: ``|g|`` is the modulus and ``sign(g) = g/|g|``, so ``‖g‖₁ sign(g)`` is
still the ℓ∞ (per-modulus) steepest-descent step.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from heterogeneity.optim._blocks import block_sum, broadcast_blocks, check_partition
from heterogeneity.optim._validate import check_bool, check_dtype, check_learning_rate, check_unit_interval

__all__ = ["scale_by_signsgd_s", "signsgd_s"]


def _l1_sign(partition: Any) -> optax.GradientTransformation:
    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params
        if not jax.tree.leaves(updates):
            return updates, state
        l1 = block_sum(jax.tree.map(jnp.abs, updates), partition)
        scale = broadcast_blocks(l1, updates, partition)
        out = jax.tree.map(lambda g, s: (s.astype(l1.dtype) * jnp.sign(g)).astype(g.dtype), updates, scale)
        return out, state

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_signsgd_s(
    *, partition: Any = None, momentum: Any = None, nesterov: bool = False, accumulator_dtype: Any = None
) -> optax.GradientTransformation:
    r"""The SignSGD (S) direction ``‖s‖₁ sign(s)``, per block if partitioned [Tomihari25, §4.6].

    .. math::

        u_t = \|[s_t]_b\|_1 \operatorname{sign}([s_t]_b) \text{ on each block } b,\qquad
        s_t = g_t \text{ or } m_t = \mu m_{t-1} + g_t.

    The norm is accumulated in float32 (float64 under x64) and cast back.

    Args:
      partition: a `heterogeneity.partition` partition, or None (one block: all parameters).
      momentum: heavy-ball ``μ ∈ [0, 1]``, or None.
      nesterov: Nesterov momentum (with ``momentum``).
      accumulator_dtype: dtype of the momentum buffer.

    Returns:
      An ``optax.GradientTransformation``.

    >>> import jax.numpy as jnp
    >>> tx = scale_by_signsgd_s()
    >>> u, _ = tx.update(jnp.array([3.0, -1.0]), tx.init(jnp.zeros(2)))
    >>> print(u)
    [ 4. -4.]
    """
    return _checked_sign_l1("scale_by_signsgd_s", partition, momentum, nesterov, accumulator_dtype)


def _checked_sign_l1(opt, partition, momentum, nesterov, accumulator_dtype):
    check_partition(opt, partition)
    check_unit_interval(opt, "momentum", momentum, optional=True)
    check_bool(opt, "nesterov", nesterov)
    check_dtype(opt, "accumulator_dtype", accumulator_dtype)
    if momentum is None:
        return _l1_sign(partition)
    return optax.chain(
        optax.trace(decay=momentum, nesterov=nesterov, accumulator_dtype=accumulator_dtype), _l1_sign(partition)
    )


def signsgd_s(
    learning_rate: optax.ScalarOrSchedule,
    *,
    partition: Any = None,
    momentum: Any = None,
    nesterov: bool = False,
    accumulator_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""SignSGD (S) [Tomihari25, §4.6]: SignSGD with the step scaled by the ℓ1 norm.

    .. math::

        \theta_{t+1} = \theta_t - \gamma_t \|s_t\|_1 \operatorname{sign}(s_t),\qquad
        s_t = g_t \text{ (or heavy-ball momentum)},

    with the norm taken per block of ``partition`` (blockwise ℓ∞ steepest descent).

    Args:
      learning_rate: ``γ_t`` (a float ≥ 0 or a schedule).
      partition: a `heterogeneity.partition` partition, or None for one global norm.
      momentum: heavy-ball ``μ ∈ [0, 1]``, or None.
      nesterov: Nesterov momentum (with ``momentum``).
      accumulator_dtype: dtype of the momentum buffer.

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    >>> import jax.numpy as jnp
    >>> opt = signsgd_s(0.5)
    >>> u, _ = opt.update(jnp.array([3.0, -1.0]), opt.init(jnp.zeros(2)))
    >>> print(u)
    [-2.  2.]
    """
    check_learning_rate("signsgd_s", learning_rate)
    return optax.chain(
        _checked_sign_l1("signsgd_s", partition, momentum, nesterov, accumulator_dtype),
        optax.scale_by_learning_rate(learning_rate),
    )
