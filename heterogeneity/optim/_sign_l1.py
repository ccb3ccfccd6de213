"""SignSGD with an ℓ1-scaled learning rate, "SignSGD (S)" of seed 000 §4.6.

Seed 000 Theorem 4.7 asks SignSGD for a step size proportional to the gradient's ℓ1 norm;
in the small-gradient (fine-tuning) regime it reduces to ``η_t = γ_t ‖∇L̂(θ_t)‖₁``, i.e.

    θ_{t+1} = θ_t − γ_t ‖g_t‖₁ sign(g_t),

the steepest-descent step for the ℓ∞ norm (seed 000 App. H.1). With a partition the norm is
taken per block (``‖[g]_b‖₁ sign([g]_b)`` on block b), the blockwise ℓ∞ steepest descent. With
momentum (heavy ball ``m ← μ m + g``, as seed 000 uses for SignSGD) the norm is that of the
signed vector: ``‖m‖₁ sign(m)``. Note that in steady state ``‖m‖₁ ≈ ‖g‖₁ / (1 − μ)``.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from heterogeneity.optim._blocks import block_sum, broadcast_blocks, check_partition
from heterogeneity.optim._validate import check_bool, check_dtype, check_learning_rate, check_unit_interval

__all__ = ["scale_by_sign_l1", "sign_sgd_l1"]


def _l1_sign(partition: Any) -> optax.GradientTransformation:
    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params
        l1 = block_sum(jax.tree.map(jnp.abs, updates), partition)
        scale = broadcast_blocks(l1, updates, partition)
        out = jax.tree.map(
            lambda g, s: (s.astype(l1.dtype) * jnp.sign(g).astype(l1.dtype)).astype(g.dtype), updates, scale
        )
        return out, state

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_sign_l1(
    *, partition: Any = None, momentum: Any = None, nesterov: bool = False, accumulator_dtype: Any = None
) -> optax.GradientTransformation:
    """``u = ‖s‖₁ sign(s)`` with ``s = g`` (or the heavy-ball momentum), per block if partitioned.

    Seed 000 §4.6 (SignSGD (S)). The norm is accumulated in float32 and cast back.
    """
    return _checked_sign_l1("scale_by_sign_l1", partition, momentum, nesterov, accumulator_dtype)


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


def sign_sgd_l1(
    learning_rate: optax.ScalarOrSchedule,
    *,
    partition: Any = None,
    momentum: Any = None,
    nesterov: bool = False,
    accumulator_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
    """SignSGD (S), seed 000 §4.6: ``θ ← θ − γ_t ‖s_t‖₁ sign(s_t)``, ``s_t = g_t`` or momentum.

    ``learning_rate`` is γ_t (a float or schedule); ``partition`` takes the ℓ1 norm per block.
    """
    check_learning_rate("sign_sgd_l1", learning_rate)
    return optax.chain(
        _checked_sign_l1("sign_sgd_l1", partition, momentum, nesterov, accumulator_dtype),
        optax.scale_by_learning_rate(learning_rate),
    )
