"""EF-signSGD: signSGD with error feedback [Karimireddy19, Algorithm 1].

A baseline of [SignMomentum25, §5.1, Tables 5–6]. With learning rate γ_t and error memory e:

    p_t = γ_t g_t + e_t,
    Δ_t = (‖p_t‖₁ / d) sign(p_t)        (scaled sign compressor),
    x_{t+1} = x_t − Δ_t,
    e_{t+1} = p_t − Δ_t.

The learning rate is applied *before* compression (it enters the error memory), so
`scale_by_ef_signsgd` takes it and `ef_signsgd` only flips the sign. ``d`` and ``‖·‖₁`` are over
all parameters, or per block with a `heterogeneity.partition` partition (the reference
implementation compresses each parameter tensor separately: ``partition=hp.by_leaf()``).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from heterogeneity.optim._blocks import block_sizes, block_sum, broadcast_blocks, check_partition
from heterogeneity.optim._validate import check_dtype, check_learning_rate

__all__ = ["ScaleByEFSignSGDState", "scale_by_ef_signsgd", "ef_signsgd"]


class ScaleByEFSignSGDState(NamedTuple):
    """State of `scale_by_ef_signsgd`: ``count`` (for schedules) and the error memory ``error`` (params' structure)."""

    count: jax.Array
    error: optax.Updates


def scale_by_ef_signsgd(
    learning_rate: optax.ScalarOrSchedule, *, partition: Any = None, accumulator_dtype: Any = None
) -> optax.GradientTransformation:
    r"""The EF-signSGD step [Karimireddy19, Algorithm 1]: scaled sign of the error-corrected step.

    .. math::

        p_t = \gamma_t g_t + e_t,\quad
        \Delta_t = \frac{\|p_t\|_1}{d}\operatorname{sign}(p_t),\quad
        e_{t+1} = p_t - \Delta_t,

    returning ``Δ_t`` (per block of ``partition``: ``‖[p]_b‖₁/d_b``). The learning rate enters
    before compression, so it is an argument here.

    Args:
      learning_rate: ``γ_t`` (a float ≥ 0 or a schedule).
      partition: a `heterogeneity.partition` partition, or None (one block).
      accumulator_dtype: dtype of the error memory ``e``.

    Returns:
      An ``optax.GradientTransformation`` (state `ScaleByEFSignSGDState`); apply ``−Δ_t``.

    >>> import jax.numpy as jnp
    >>> tx = scale_by_ef_signsgd(1.0)
    >>> d, s = tx.update(jnp.array([3.0, -1.0]), tx.init(jnp.zeros(2)))
    >>> print(d, s.error)
    [ 2. -2.] [1. 1.]
    """
    return _checked_ef_sign("scale_by_ef_signsgd", learning_rate, partition, accumulator_dtype)


def _checked_ef_sign(opt, learning_rate, partition, accumulator_dtype):
    check_learning_rate(opt, learning_rate)
    check_partition(opt, partition)
    check_dtype(opt, "accumulator_dtype", accumulator_dtype)

    def init_fn(params):
        return ScaleByEFSignSGDState(
            count=jnp.zeros([], jnp.int32), error=optax.tree.zeros_like(params, dtype=accumulator_dtype)
        )

    def update_fn(updates, state, params=None):
        del params
        if not jax.tree.leaves(updates):
            return updates, state._replace(count=optax.safe_increment(state.count))
        lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
        acc = jnp.result_type(float)
        p = jax.tree.map(lambda g, e: lr * g.astype(acc) + e.astype(acc), updates, state.error)
        sizes = jnp.asarray(np.maximum(block_sizes(updates, partition), 1), acc)  # a 0-size block: no NaN
        scale = block_sum(jax.tree.map(jnp.abs, p), partition) / sizes
        scale_tree = broadcast_blocks(scale, p, partition)
        delta = jax.tree.map(lambda x, s: s.astype(acc) * jnp.sign(x), p, scale_tree)
        error = jax.tree.map(lambda x, dl, e: (x - dl).astype(e.dtype), p, delta, state.error)
        out = jax.tree.map(lambda dl, g: dl.astype(g.dtype), delta, updates)
        return out, ScaleByEFSignSGDState(count=optax.safe_increment(state.count), error=error)

    return optax.GradientTransformation(init_fn, update_fn)


def ef_signsgd(
    learning_rate: optax.ScalarOrSchedule, *, partition: Any = None, accumulator_dtype: Any = None
) -> optax.GradientTransformationExtraArgs:
    r"""EF-signSGD [Karimireddy19, Algorithm 1], a baseline of [SignMomentum25, §5.1].

    .. math::

        p_t = \gamma_t g_t + e_t,\quad
        x_{t+1} = x_t - \frac{\|p_t\|_1}{d}\operatorname{sign}(p_t),\quad
        e_{t+1} = p_t - \frac{\|p_t\|_1}{d}\operatorname{sign}(p_t).

    Args:
      learning_rate: ``γ_t`` (a float ≥ 0 or a schedule).
      partition: a `heterogeneity.partition` partition (``hp.by_leaf()``: per tensor, as the
        reference code), or None (one block).
      accumulator_dtype: dtype of the error memory.

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    >>> import jax.numpy as jnp
    >>> opt = ef_signsgd(1.0)
    >>> u, _ = opt.update(jnp.array([3.0, -1.0]), opt.init(jnp.zeros(2)))
    >>> print(u)
    [-2.  2.]
    """
    return optax.chain(
        _checked_ef_sign("ef_signsgd", learning_rate, partition, accumulator_dtype),
        optax.scale(-1.0),
    )
