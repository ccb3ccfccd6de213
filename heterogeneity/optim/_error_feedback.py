"""EF-signSGD: signSGD with error feedback (Karimireddy et al. 2019, Algorithm 1).

A baseline of seed 002 (§5.1, Tables 5–6). With learning rate γ_t and error memory e:

    p_t = γ_t g_t + e_t,
    Δ_t = (‖p_t‖₁ / d) sign(p_t)        (scaled sign compressor),
    x_{t+1} = x_t − Δ_t,
    e_{t+1} = p_t − Δ_t.

The learning rate is applied *before* compression (it enters the error memory), so
`scale_by_ef_sign` takes it and `ef_sign_sgd` only flips the sign. ``d`` and ``‖·‖₁`` are over
all parameters, or per block with a `heterogeneity.partition` partition (the reference
implementation compresses each parameter tensor separately: ``partition=hp.by_leaf()``).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from heterogeneity.optim._blocks import block_sizes, block_sum, broadcast_blocks, check_partition
from heterogeneity.optim._validate import check_dtype, check_learning_rate

__all__ = ["ScaleByEFSignState", "scale_by_ef_sign", "ef_sign_sgd"]


class ScaleByEFSignState(NamedTuple):
    """``count`` (for schedules) and the error memory ``error`` (params' structure)."""

    count: jax.Array
    error: optax.Updates


def scale_by_ef_sign(
    learning_rate: optax.ScalarOrSchedule, *, partition: Any = None, accumulator_dtype: Any = None
) -> optax.GradientTransformation:
    """Error-feedback scaled sign: returns ``Δ_t = (‖p_t‖₁/d) sign(p_t)``, ``p_t = γ_t g_t + e_t``.

    Karimireddy et al. 2019, Algorithm 1 (EF-signSGD; baseline in seed 002 §5.1).
    """
    return _checked_ef_sign("scale_by_ef_sign", learning_rate, partition, accumulator_dtype)


def _checked_ef_sign(opt, learning_rate, partition, accumulator_dtype):
    check_learning_rate(opt, learning_rate)
    check_partition(opt, partition)
    check_dtype(opt, "accumulator_dtype", accumulator_dtype)

    def init_fn(params):
        return ScaleByEFSignState(
            count=jnp.zeros([], jnp.int32), error=optax.tree.zeros_like(params, dtype=accumulator_dtype)
        )

    def update_fn(updates, state, params=None):
        del params
        lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
        acc = jnp.result_type(float)
        p = jax.tree.map(lambda g, e: lr * g.astype(acc) + e.astype(acc), updates, state.error)
        sizes = jnp.asarray(block_sizes(updates, partition), acc)
        scale = block_sum(jax.tree.map(jnp.abs, p), partition) / sizes
        scale_tree = broadcast_blocks(scale, p, partition)
        delta = jax.tree.map(lambda x, s: s.astype(acc) * jnp.sign(x), p, scale_tree)
        error = jax.tree.map(lambda x, dl, e: (x - dl).astype(e.dtype), p, delta, state.error)
        out = jax.tree.map(lambda dl, g: dl.astype(g.dtype), delta, updates)
        return out, ScaleByEFSignState(count=optax.safe_increment(state.count), error=error)

    return optax.GradientTransformation(init_fn, update_fn)


def ef_sign_sgd(
    learning_rate: optax.ScalarOrSchedule, *, partition: Any = None, accumulator_dtype: Any = None
) -> optax.GradientTransformationExtraArgs:
    """EF-signSGD (Karimireddy et al. 2019): ``x ← x − (‖p‖₁/d) sign(p)``, ``p = γ g + e``, ``e ← p − Δ``."""
    return optax.chain(
        _checked_ef_sign("ef_sign_sgd", learning_rate, partition, accumulator_dtype),
        optax.scale(-1.0),
    )
