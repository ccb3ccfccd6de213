"""Adaptive methods between Adam and AdaSGD, and Adam without bias correction.

* `blockwise_adam` — blockwise Adam [Xie24, Algorithm 3]: one second-moment *scalar* per block
  of a partition Φ,

      m_t = β1 m_{t−1} + (1 − β1) g_t                      (per coordinate)
      v_{t,b} = β2 v_{t−1,b} + (1 − β2) ‖[g_t]_b‖² / d_b   (per block)
      x_t = x_{t−1} − η_t m̂_t / (sqrt(v̂_{t,Φ(i)} + eps_root) + eps).

  With ``partition=hp.by_coordinate()`` this is exactly ``optax.adam``; with
  ``hp.single_block()`` it is AdaSGD ([Xie24, §3.3]: Φ_Adam : i ↦ i, Φ_AdaSGD : i ↦ 1).
* `adasgd` — AdaSGD [Xie24, Algorithm 2] (Wang & Wiens 2020): one scalar ``v_t`` fed by
  ``‖g_t‖²/d``. Rotation invariant [Xie24, Thm 2.2].

  Defaults follow ``optax.adam`` (bias correction, ``eps`` outside the root) so that the two
  extremes coincide with Optax. The paper's boxes use no bias correction and ``ε`` inside the
  root: ``bias_correction=False, eps=0.0, eps_root=ε``.
* `adam_no_bias_correction` — [Zhang24, Algorithm 3]: ``m_0 = g_0``, ``v_0 = |g_0|²`` (the
  moments start from the first gradient), EMAs afterwards, step ``η m_t / sqrt(v_t + ε)``.
* `frozen_adam` — [Zhang24, eq. (2)]: β1 = 0, β2 = 1, so ``x ← x − η (D⁰)⁻¹ g`` with
  ``D⁰ = diag(|g_0|)`` fixed from the first gradient (``optax.scale_by_adam(b2=1)`` divides by
  ``1 − b2^t = 0``; here there is no bias correction). Coordinates whose denominator is 0 (a
  zero first gradient with ``eps = eps_root = 0``) get a zero step: the pseudo-inverse of D⁰.

Complex parameters follow Optax: the second moment is fed ``|g|² = g·conj(g)`` (real), the
first moment is complex. The blockwise second moment is kept in float32 (float64 under x64;
one scalar per block); the first moment and the updates keep the parameter dtype.
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
    "ScaleByBlockwiseAdamState",
    "scale_by_blockwise_adam",
    "blockwise_adam",
    "scale_by_adasgd",
    "adasgd",
    "ScaleByAdamNoBiasCorrectionState",
    "scale_by_adam_no_bias_correction",
    "adam_no_bias_correction",
    "scale_by_frozen_adam",
    "frozen_adam",
]


def _abs_sq(g: jax.Array, dtype: Any = None) -> jax.Array:
    """``|g|² = g·conj(g)`` as a real array (computed in ``promote(g, dtype)``, returned in ``dtype``)."""
    if dtype is not None:
        g = g.astype(jnp.promote_types(g.dtype, dtype))
    sq = (g * jnp.conj(g)).real if jnp.iscomplexobj(g) else g * g
    return sq if dtype is None else sq.astype(dtype)


class ScaleByBlockwiseAdamState(NamedTuple):
    """State of `scale_by_blockwise_adam`.

    ``count``; ``mu``: first moment (the params' structure); ``nu``: (num_blocks,) float32 second moments.
    """

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


def _checked_blockwise_adam(opt, partition, b1, b2, eps, eps_root, bias_correction, mu_dtype, *, need_partition):
    """Validate, then build blockwise Adam (``partition=None``: one block, AdaSGD)."""
    if need_partition and partition is None:
        raise ValueError(f"{opt}: partition is required (e.g. hp.by_leaf(); use adasgd for one block)")
    check_partition(opt, partition)
    bias_correction = check_bool(opt, "bias_correction", bias_correction)
    # v starts at 0 and, with b2 = 1, stays there: b2 < 1 with or without bias correction
    _check_moments(opt, b1, b2, eps, eps_root, mu_dtype, bias_correction=bias_correction, starts_at_zero=True)
    return _scale_by_blockwise_adam(partition, b1, b2, eps, eps_root, bias_correction, mu_dtype)


def _scale_by_blockwise_adam(partition, b1, b2, eps, eps_root, bias_correction, mu_dtype):
    def init_fn(params):
        mu = optax.tree.zeros_like(params, dtype=mu_dtype)
        # no leaves (an empty tree, or optax.tree_map_params' placeholder): no blocks to partition
        num_blocks = len(block_sizes(params, partition)) if jax.tree.leaves(params) or partition is None else 0
        return ScaleByBlockwiseAdamState(
            count=jnp.zeros([], jnp.int32), mu=mu, nu=jnp.zeros([num_blocks], jnp.result_type(float))
        )

    def update_fn(updates, state, params=None):
        del params
        count_inc = optax.safe_increment(state.count)
        if not jax.tree.leaves(updates):
            return updates, state._replace(count=count_inc)
        sizes = np.maximum(block_sizes(updates, partition), 1).astype(np.float64)  # a 0-size block: v stays 0
        acc = state.nu.dtype
        sq = block_sum(jax.tree.map(lambda g: _abs_sq(g, acc), updates), partition)
        mean_sq = sq / jnp.asarray(sizes, acc)
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = (1 - b2) * mean_sq + b2 * state.nu
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
        return out, ScaleByBlockwiseAdamState(count=count_inc, mu=mu, nu=nu.astype(acc))

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_blockwise_adam(
    partition: Any,
    *,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    bias_correction: bool = True,
    mu_dtype: Any = None,
) -> optax.GradientTransformation:
    r"""The blockwise Adam direction: one second moment per block of Φ [Xie24, Algorithm 3].

    .. math::

        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\qquad
        v_{t,b} = \beta_2 v_{t-1,b} + (1-\beta_2)\,\|[g_t]_b\|_2^2 / d_b,\qquad
        u_{t,i} = \frac{\hat m_{t,i}}{\sqrt{\hat v_{t,\Phi(i)} + \epsilon_{root}} + \epsilon},

    hats: division by ``1 − β^t`` when ``bias_correction``.

    Args:
      partition: a `heterogeneity.partition` partition (required; ``hp.by_coordinate()`` is
        Adam, ``hp.single_block()`` is AdaSGD).
      b1: first-moment decay in [0, 1).
      b2: second-moment decay in [0, 1).
      eps: added outside the root (≥ 0).
      eps_root: added inside the root (≥ 0).
      bias_correction: divide the moments by ``1 − β^t``.
      mu_dtype: dtype of the first moment.

    Returns:
      An ``optax.GradientTransformation``; its state is `ScaleByBlockwiseAdamState`.

    >>> import jax.numpy as jnp, numpy as np
    >>> from heterogeneity import partition as hp
    >>> tx = scale_by_blockwise_adam(hp.single_block(), b1=0.0, b2=0.5, eps=0.0)
    >>> u, s = tx.update(jnp.array([3.0, 4.0]), tx.init(jnp.zeros(2)))
    >>> print(s.nu, np.asarray(u).round(4))  # ν = ½·(9 + 16)/2; u = g / sqrt(ν / (1 − ½))
    [6.25] [0.8485 1.1314]
    """
    return _checked_blockwise_adam(
        "scale_by_blockwise_adam", partition, b1, b2, eps, eps_root, bias_correction, mu_dtype, need_partition=True
    )


def blockwise_adam(
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
    r"""Blockwise Adam [Xie24, Algorithm 3] (Adam-mini / Adalayer): one ``v`` per block of Φ.

    .. math::

        v_{t,b} = \beta_2 v_{t-1,b} + (1-\beta_2)\,\|[g_t]_b\|_2^2 / d_b,\qquad
        x_{t,i} = x_{t-1,i} - \eta_t \frac{\hat m_{t,i}}{\sqrt{\hat v_{t,\Phi(i)} + \epsilon_{root}} + \epsilon}.

    Args:
      learning_rate: ``η_t`` (a float ≥ 0 or a schedule).
      partition: a `heterogeneity.partition` partition (see `scale_by_blockwise_adam`).
      b1: as `scale_by_blockwise_adam`.
      b2: as `scale_by_blockwise_adam`.
      eps: as `scale_by_blockwise_adam`.
      eps_root: as `scale_by_blockwise_adam`.
      bias_correction: as `scale_by_blockwise_adam`.
      mu_dtype: as `scale_by_blockwise_adam`.

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    >>> import jax.numpy as jnp, numpy as np
    >>> from heterogeneity import partition as hp
    >>> opt = blockwise_adam(0.1, hp.by_leaf())
    >>> params = {"a": jnp.zeros(2), "b": jnp.zeros(1)}
    >>> u, _ = opt.update({"a": jnp.array([3.0, 4.0]), "b": jnp.array([-2.0])}, opt.init(params))
    >>> print(np.asarray(u["a"]).round(4), np.asarray(u["b"]).round(4))  # blocks: ‖(3, 4)‖²/2 = 12.5 and 2² = 4
    [-0.0849 -0.1131] [0.1]
    """
    check_learning_rate("blockwise_adam", learning_rate)
    return optax.chain(
        _checked_blockwise_adam(
            "blockwise_adam", partition, b1, b2, eps, eps_root, bias_correction, mu_dtype, need_partition=True
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
    r"""The AdaSGD direction [Xie24, Algorithm 2]: one scalar second moment for all parameters.

    .. math::

        v_t = \beta_2 v_{t-1} + (1-\beta_2)\,\|g_t\|_2^2 / d,\qquad
        u_t = \hat m_t / (\sqrt{\hat v_t + \epsilon_{root}} + \epsilon).

    Args:
      b1: as `scale_by_blockwise_adam`.
      b2: as `scale_by_blockwise_adam`.
      eps: as `scale_by_blockwise_adam`.
      eps_root: as `scale_by_blockwise_adam`.
      bias_correction: as `scale_by_blockwise_adam`.
      mu_dtype: as `scale_by_blockwise_adam`.

    Returns:
      An ``optax.GradientTransformation`` (state `ScaleByBlockwiseAdamState`, one block).

    >>> import jax.numpy as jnp, numpy as np
    >>> tx = scale_by_adasgd(b1=0.0, b2=0.0, eps=0.0)
    >>> u, _ = tx.update(jnp.array([3.0, 4.0]), tx.init(jnp.zeros(2)))
    >>> print(np.asarray(u).round(4))  # g / sqrt((9 + 16) / 2)
    [0.8485 1.1314]
    """
    return _checked_blockwise_adam(
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
    r"""AdaSGD [Xie24, Algorithm 2] (Wang & Wiens 2020); rotation invariant [Xie24, Thm 2.2].

    .. math::

        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2)\,\|g_t\|_2^2 / d,\quad
        x_t = x_{t-1} - \eta_t \hat m_t / (\sqrt{\hat v_t + \epsilon_{root}} + \epsilon).

    Args:
      learning_rate: ``η_t`` (a float ≥ 0 or a schedule).
      b1: as `scale_by_blockwise_adam`.
      b2: as `scale_by_blockwise_adam`.
      eps: as `scale_by_blockwise_adam`.
      eps_root: as `scale_by_blockwise_adam`.
      bias_correction: as `scale_by_blockwise_adam`.
      mu_dtype: as `scale_by_blockwise_adam`.

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    >>> import jax.numpy as jnp, numpy as np
    >>> opt = adasgd(0.1)
    >>> u, _ = opt.update(jnp.array([3.0, 4.0]), opt.init(jnp.zeros(2)))
    >>> print(np.asarray(u).round(4))
    [-0.0849 -0.1131]
    """
    check_learning_rate("adasgd", learning_rate)
    return optax.chain(
        _checked_blockwise_adam("adasgd", None, b1, b2, eps, eps_root, bias_correction, mu_dtype, need_partition=False),
        optax.scale_by_learning_rate(learning_rate),
    )


class ScaleByAdamNoBiasCorrectionState(NamedTuple):
    """State of `scale_by_adam_no_bias_correction`: ``count``; moments ``mu``, ``nu`` (params' structure; real ``nu``)."""

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates


def _acc(x):
    return jnp.promote_types(x.dtype, jnp.float32)


def _acc_real(x):
    return jnp.promote_types(jnp.finfo(x.dtype).dtype, jnp.float32)


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
    r"""The direction of Adam without bias correction [Zhang24, Algorithm 3].

    .. math::

        m_0 = g_0,\ v_0 = |g_0|^2;\quad
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\ v_t = \beta_2 v_{t-1} + (1-\beta_2)|g_t|^2;\quad
        u_t = m_t / (\sqrt{v_t + \epsilon_{root}} + \epsilon).

    ``initial_moments="zeros"`` starts from the textbook ``m = v = 0`` instead (then the first
    step is ``(1−β1) g / sqrt((1−β2) g²)``). A zero denominator gives a zero step.

    Args:
      b1: first-moment decay in [0, 1].
      b2: second-moment decay in [0, 1] (1 only with ``initial_moments="gradient"``).
      eps: added outside the root (≥ 0).
      eps_root: added inside the root (≥ 0); the paper's ε.
      initial_moments: ``"gradient"`` (the paper) or ``"zeros"``.
      mu_dtype: dtype of the first moment.

    Returns:
      An ``optax.GradientTransformation``; its state is `ScaleByAdamNoBiasCorrectionState`.

    >>> import jax.numpy as jnp
    >>> tx = scale_by_adam_no_bias_correction()
    >>> u, _ = tx.update(jnp.array([3.0, -4.0]), tx.init(jnp.zeros(2)))
    >>> print(u)
    [ 1. -1.]
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
            nu=optax.tree.real(optax.tree.zeros_like(params)),
        )

    def update_fn(updates, state, params=None):
        del params
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        if initial_moments == "gradient":
            first = state.count == 0
            mu = optax.tree.where(first, optax.tree.cast_like(updates, mu), mu)
            nu = jax.tree.map(lambda g, v: jnp.where(first, _abs_sq(g).astype(v.dtype), v), updates, nu)
        mu = optax.tree.cast_like(mu, state.mu)
        nu = optax.tree.cast_like(nu, state.nu)
        out = jax.tree.map(
            lambda m, v, g: _safe_ratio(
                m.astype(_acc(g)), jnp.sqrt(v.astype(_acc_real(g)) + eps_root) + eps
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
    r"""Adam with no bias correction [Zhang24, App. C, Algorithm 3].

    .. math::

        m_0 = g_0,\ v_0 = |g_0|^2,\quad
        w_{t+1} = w_t - \eta_t\, m_t / \sqrt{v_t + \epsilon}\quad(\epsilon = \texttt{eps\_root}).

    Args:
      learning_rate: ``η_t`` (a float ≥ 0 or a schedule).
      b1: as `scale_by_adam_no_bias_correction`.
      b2: as `scale_by_adam_no_bias_correction`.
      eps: as `scale_by_adam_no_bias_correction`.
      eps_root: as `scale_by_adam_no_bias_correction`.
      initial_moments: as `scale_by_adam_no_bias_correction`.
      mu_dtype: as `scale_by_adam_no_bias_correction`.

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    >>> import jax.numpy as jnp
    >>> opt = adam_no_bias_correction(0.1)
    >>> u, _ = opt.update(jnp.array([3.0, -4.0]), opt.init(jnp.zeros(2)))
    >>> print(u)
    [-0.1  0.1]
    """
    check_learning_rate("adam_no_bias_correction", learning_rate)
    return optax.chain(
        _checked_adam_nbc("adam_no_bias_correction", b1, b2, eps, eps_root, initial_moments, mu_dtype),
        optax.scale_by_learning_rate(learning_rate),
    )


def scale_by_frozen_adam(*, eps: Any = 0.0, eps_root: Any = 0.0) -> optax.GradientTransformation:
    r"""The frozen-Adam direction [Zhang24, eq. (2)]: Adam with β1 = 0, β2 = 1, no bias correction.

    .. math::

        u_t = g_t / (\sqrt{|g_0|^2 + \epsilon_{root}} + \epsilon)
        \quad(\text{0 where the denominator is 0}).

    Args:
      eps: added outside the root (≥ 0).
      eps_root: added inside the root (≥ 0).

    Returns:
      An ``optax.GradientTransformation`` (state `ScaleByAdamNoBiasCorrectionState`).

    >>> import jax.numpy as jnp
    >>> tx = scale_by_frozen_adam()
    >>> s = tx.init(jnp.zeros(2))
    >>> _, s = tx.update(jnp.array([2.0, -4.0]), s)
    >>> u, s = tx.update(jnp.array([1.0, 1.0]), s)
    >>> print(u)
    [0.5  0.25]
    """
    return _checked_adam_nbc("scale_by_frozen_adam", 0.0, 1.0, eps, eps_root, "gradient", None)


def frozen_adam(
    learning_rate: optax.ScalarOrSchedule, *, eps: Any = 0.0, eps_root: Any = 0.0
) -> optax.GradientTransformationExtraArgs:
    r"""Adam with frozen coordinate-wise learning rates [Zhang24, eq. (2), §3.1].

    .. math::

        w^{t+1} = w^t - \eta\,(D^0_{Adam})^{-1} \nabla L(w^t),\qquad
        D^0_{Adam} = \operatorname{diag}(|\nabla L(w^0)|),

    i.e. Adam with β1 = 0, β2 = 1 and no bias correction. Zero denominators give zero steps.

    Args:
      learning_rate: ``η`` (a float ≥ 0 or a schedule).
      eps: added outside the root (≥ 0).
      eps_root: added inside the root (≥ 0).

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    >>> import jax.numpy as jnp
    >>> opt = frozen_adam(0.1)
    >>> s = opt.init(jnp.zeros(2))
    >>> _, s = opt.update(jnp.array([2.0, -4.0]), s)
    >>> u, s = opt.update(jnp.array([1.0, 1.0]), s)
    >>> print(u)
    [-0.05  -0.025]
    """
    check_learning_rate("frozen_adam", learning_rate)
    return optax.chain(
        _checked_adam_nbc("frozen_adam", 0.0, 1.0, eps, eps_root, "gradient", None),
        optax.scale_by_learning_rate(learning_rate),
    )
