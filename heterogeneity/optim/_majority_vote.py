"""Sign methods with majority vote across workers [SignMomentum25, §4, Algorithm 2, App. E baselines].

Workers are a *named axis*. Every transform here is written for one worker and talks to the
others through collectives over ``axis_name``, so the same code runs

* under ``jax.shard_map`` over a device mesh axis (real devices, one worker each), and
* under ``jax.vmap(step, axis_name=...)`` (workers simulated on one device),

with bit-identical results (votes are exchanged as integers; every float op is per worker).
``axis_name=None`` means a single worker (no collectives).

Per step t, worker j holds its own state (momentum ``v^j``, step count, base key); nothing is
replicated by the algorithm: under ``vmap``/``shard_map`` the state has a worker axis.

1. estimator: ``v^j_t = g^j_t`` (no momentum) or, with ``beta`` ([SignMomentum25, eq. (9)], paper's
   convention: β is the weight of the *new* gradient), ``v^j_1 = g^j_1``,
   ``v^j_t = (1 − β) v^j_{t−1} + β g^j_t``.
2. worker compression to one bit per coordinate: ``sign`` or ``S_R`` ([SignMomentum25, Def. 1]).
3. aggregation of the ±1 votes: ``communication="int8"`` psums int8 votes (int32 when more
   than 127 workers); ``"1bit"`` packs the votes into bits (``jnp.packbits``), all-gathers
   the packed bytes and counts them — exactly the same integer vote totals.
4. server: ``sign`` of the total (v1, signSGD-MV, Sto-signSGD) or ``S_1`` of the mean vote (v2).
5. every worker applies ``x ← x − η_t · server output``.

Conventions (documented choices where the papers are silent):

* Worker votes are always ±1, so one bit is exact. ``sign`` votes ``+1`` for positive and
  ``−1`` for negative coordinates; an exactly zero coordinate (e.g. an unused embedding row)
  votes ``(−1)^(j + t)`` for worker j at step t: with an even number of workers the zero
  votes cancel exactly, with an odd number the leftover vote alternates in sign over steps,
  so zeros cause no drift and need no randomness.
* Ties (an even number of workers, total 0) in the server ``sign``: ``tie_break="zero"``
  (default) gives a 0 step on that coordinate (``sign(0) = 0``, as ``torch.sign`` in
  the code of [Bernstein19]); ``tie_break="random"`` draws a fair coin from the shared server
  key, which keeps the downlink 1-bit and unbiased. ``S_1`` (v2) needs no tie rule.
* ``S_R(v)`` requires ``|v| ≤ R`` ([SignMomentum25, Assumption 8], R = G); larger entries are clipped
  to ±R (probability 0 or 1), which biases them towards ±1.
* Randomness: a constructor that draws random numbers (a stochastic worker or server, or
  ``tie_break="random"``) requires ``key`` (an int seed or a PRNG key; there is no default, so
  two runs never share a stream by accident). The state holds that base key, identical on all
  workers. Step t uses
  ``k_t = fold_in(key, t)``; worker j draws from ``fold_in(k_t, j)`` and the server from
  ``fold_in(k_t, n)``, which every worker computes alike, so S_1 / tie coins agree everywhere.
"""
from __future__ import annotations

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from heterogeneity._deprecation import deprecated_alias
from heterogeneity.optim._validate import (
    HyperparameterTypeError,
    check_axis_name,
    check_choice,
    check_learning_rate,
    check_positive,
    check_unit_interval,
    static_int,
    worker_axis,
)

__all__ = [
    "stochastic_sign",
    "MajorityVoteState",
    "scale_by_majority_vote",
    "mv_signsgd",
    "sto_signsgd",
    "scale_by_mvsm",
    "mvsm",
    "mvsm_v1",
    "mvsm_v2",
]


def as_raw_key(key: Any, opt: str = "key", name: str = "key") -> jax.Array:
    """A raw ``uint32[2]`` PRNG key from an int seed, a typed key or a raw key (state stays plain arrays)."""
    if hasattr(key, "dtype") and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    if isinstance(key, (bool, np.bool_, str, bytes)) or key is None:
        raise HyperparameterTypeError(
            f"{opt}: {name} must be an int seed or a PRNG key, got {key!r} ({type(key).__name__})"
        )
    arr = key if isinstance(key, jax.Array) else np.asarray(key)
    if jnp.ndim(arr) == 0 and jnp.issubdtype(arr.dtype, jnp.integer):
        return jax.random.PRNGKey(arr)
    if jnp.shape(arr) == (2,) and arr.dtype == jnp.uint32:
        return jnp.asarray(arr)
    raise ValueError(
        f"{opt}: {name} must be an int seed or a PRNG key, got shape {jnp.shape(arr)} dtype {arr.dtype}"
    )


def _s_r_flat(v: jax.Array, R: Any, key: jax.Array) -> jax.Array:
    """±1 (float32) with P(+1) = (R + v)/(2R), clipped to [0, 1]."""
    v = v.astype(jnp.promote_types(v.dtype, jnp.float32))
    p_plus = jnp.clip((R + v) / (2 * R), 0.0, 1.0)
    u = jax.random.uniform(key, v.shape, v.dtype)
    return jnp.where(u < p_plus, 1.0, -1.0).astype(v.dtype)


def stochastic_sign(v: Any, R: Any, key: Any) -> Any:
    r"""The unbiased stochastic sign ``S_R(v)`` [SignMomentum25, Def. 1], [Jin20], elementwise over a pytree.

    .. math::

        [S_R(v)]_k = \begin{cases} +1 & \text{w.p. } \frac{R + v_k}{2R} \\
        -1 & \text{w.p. } \frac{R - v_k}{2R} \end{cases},\qquad
        \mathbb{E}[S_R(v)] = v / R \ \text{ for } \|v\|_\infty \le R

    (entries beyond ±R are clipped). ``P(u < p)`` with ``u`` uniform on a 2⁻²⁴ grid is exact
    to 2⁻²⁴.

    Args:
      v: a pytree of real arrays.
      R: the bound ``R > 0``.
      key: an int seed or a PRNG key (typed or raw).

    Returns:
      A pytree like ``v`` with ±1 entries in the leaves' dtypes.

    >>> import jax.numpy as jnp
    >>> print(stochastic_sign(jnp.array([1.0, -1.0, 5.0]), 1.0, key=0))
    [ 1. -1.  1.]
    """
    check_positive("stochastic_sign", "R", R)
    keys = optax.tree.split_key_like(as_raw_key(key, "stochastic_sign"), v)  # leaf i: split(key, n)[i]
    return jax.tree.map(lambda x, k: _s_r_flat(jnp.asarray(x), R, k).astype(jnp.result_type(x)), v, keys)


class MajorityVoteState(NamedTuple):
    """``count``; ``key`` (uint32[2], same on every worker); ``momentum`` (this worker's v, or ())."""

    count: jax.Array
    key: jax.Array
    momentum: Any


def _coin(key, shape):
    return jnp.where(jax.random.bernoulli(key, 0.5, shape), 1, -1).astype(jnp.int32)


def _vote_total(votes: jax.Array, axis_name, n: int, communication: str) -> jax.Array:
    """Sum over workers of the ±1 int votes, as int32."""
    if axis_name is None:
        return votes.astype(jnp.int32)
    if communication == "int8":
        wire = jnp.int8 if n <= 127 else jnp.int32
        return jax.lax.psum(votes.astype(wire), axis_name).astype(jnp.int32)
    d = votes.shape[0]
    packed = jnp.packbits(votes > 0)  # uint8[ceil(d/8)]: one bit per coordinate
    gathered = jax.lax.all_gather(packed, axis_name)  # (n, ceil(d/8))
    bits = jnp.unpackbits(gathered, axis=-1, count=d)  # (n, d) in {0, 1}
    return 2 * jnp.sum(bits, axis=0, dtype=jnp.int32) - n


def scale_by_majority_vote(
    *,
    axis_name: Any = None,
    worker: Literal["sign", "stochastic"] = "sign",
    server: Literal["sign", "stochastic"] = "sign",
    beta: Any = None,
    R: Any = 1.0,
    key: Any = None,
    communication: Literal["int8", "1bit"] = "int8",
    tie_break: Literal["zero", "random"] = "zero",
) -> optax.GradientTransformation:
    r"""Majority vote of one-bit worker messages [SignMomentum25, Algorithm 2 and its baselines].

    .. math::

        v^j_1 = g^j_1,\ v^j_t = (1-\beta) v^j_{t-1} + \beta g^j_t \ (\text{or } v^j_t = g^j_t),\qquad
        u_t = C_{server}\Big(\tfrac1n \textstyle\sum_j C_{worker}(v^j_t)\Big),

    with ``C = sign`` or ``S_R`` (worker) / ``S_1`` (server). Returns the server's broadcast
    direction (±1/0 entries); chain with a learning rate.

    Args:
      axis_name: the named worker axis (vmap/shard_map), or None for one worker.
      worker: ``"sign"`` (signSGD-MV) or ``"stochastic"`` (``S_R``).
      server: ``"sign"`` (v1) or ``"stochastic"`` (``S_1`` of the mean vote, v2).
      beta: per-worker momentum weight of the new gradient in [0, 1], or None.
      R: the bound of ``S_R`` (> 0).
      key: an int seed or a PRNG key; required when randomness is drawn (a stochastic worker
        or server, or ``tie_break="random"``), otherwise unused.
      communication: ``"int8"`` (psum of votes) or ``"1bit"`` (packed bits, all-gathered).
      tie_break: ``"zero"`` or ``"random"`` (server ``sign`` on a tied vote).

    Returns:
      An ``optax.GradientTransformation`` (state `MajorityVoteState`).

    >>> import jax.numpy as jnp
    >>> tx = scale_by_majority_vote()
    >>> u, _ = tx.update(jnp.array([0.3, -2.0]), tx.init(jnp.zeros(2)))
    >>> print(u)
    [ 1. -1.]
    """
    return _majority_vote(
        "scale_by_majority_vote", axis_name=axis_name, worker=worker, server=server, beta=beta, R=R, key=key,
        communication=communication, tie_break=tie_break,
    )


def _majority_vote(opt, *, axis_name, worker, server, beta, R, key, communication, tie_break):
    """Validate (errors name ``opt``), then build `scale_by_majority_vote`."""
    check_axis_name(opt, axis_name)
    check_choice(opt, "worker", worker, ("sign", "stochastic"))
    check_choice(opt, "server", server, ("sign", "stochastic"))
    check_choice(opt, "communication", communication, ("int8", "1bit"))
    check_choice(opt, "tie_break", tie_break, ("zero", "random"))
    check_unit_interval(opt, "beta", beta, optional=True)
    check_positive(opt, "R", R)
    random = worker == "stochastic" or server == "stochastic" or (server == "sign" and tie_break == "random")
    if key is None:
        if random:
            why = "a stochastic worker/server" if tie_break != "random" else "tie_break='random'"
            raise ValueError(
                f"{opt}: key is required ({why} draws random numbers); pass an int seed or a PRNG key, "
                f"e.g. key=0 or key=jax.random.key(0)"
            )
        raw_key = jnp.zeros([2], jnp.uint32)  # never used: this configuration draws nothing
    else:
        raw_key = as_raw_key(key, opt)

    def init_fn(params):
        momentum = optax.tree.zeros_like(params) if beta is not None else ()
        return MajorityVoteState(count=jnp.zeros([], jnp.int32), key=raw_key, momentum=momentum)

    def update_fn(updates, state, params=None):
        del params
        n, index = worker_axis(opt, axis_name)
        if beta is not None:
            first = state.count == 0
            momentum = jax.tree.map(
                lambda g, v: jnp.where(first, g.astype(v.dtype), ((1 - beta) * v + beta * g).astype(v.dtype)),
                updates,
                state.momentum,
            )
            estimate = momentum
        else:
            momentum, estimate = (), updates
        flat, unravel = ravel_pytree(estimate)
        flat = flat.astype(jnp.promote_types(flat.dtype, jnp.float32))
        step_key = jax.random.fold_in(state.key, state.count)
        if worker == "sign":
            # exact zeros vote by parity of (worker + step): they cancel for an even number of
            # workers and alternate over steps for an odd one (no RNG, no drift)
            dither = jnp.where((index + state.count) % 2 == 0, 1, -1).astype(jnp.int32)
            votes = jnp.where(flat > 0, 1, jnp.where(flat < 0, -1, dither)).astype(jnp.int32)
        else:
            votes = _s_r_flat(flat, R, jax.random.fold_in(step_key, index)).astype(jnp.int32)
        total = _vote_total(votes, axis_name, n, communication)
        server_key = jax.random.fold_in(step_key, n)  # workers use 0..n-1; shared by all workers
        if server == "sign":
            out = jnp.sign(total)
            if tie_break == "random":
                out = jnp.where(total == 0, _coin(server_key, total.shape), out)
            out = out.astype(flat.dtype)
        else:
            mean = total.astype(flat.dtype) / n
            out = _s_r_flat(mean, 1.0, server_key)
        direction = unravel(out)
        direction = jax.tree.map(lambda u, g: u.astype(g.dtype), direction, updates)
        new_state = MajorityVoteState(count=optax.safe_increment(state.count), key=state.key, momentum=momentum)
        return direction, new_state

    return optax.GradientTransformation(init_fn, update_fn)


def mv_signsgd(
    learning_rate: optax.ScalarOrSchedule,
    *,
    axis_name: Any = None,
    beta: Any = None,
    key: Any = None,
    communication: Literal["int8", "1bit"] = "int8",
    tie_break: Literal["zero", "random"] = "zero",
) -> optax.GradientTransformationExtraArgs:
    r"""signSGD with majority vote [Bernstein19], a baseline of [SignMomentum25, §5.2].

    .. math::

        x_{t+1} = x_t - \eta_t \operatorname{sign}\Big(\textstyle\sum_j \operatorname{sign}(v^j_t)\Big),\qquad
        v^j_t = g^j_t \text{ or the worker momentum (Signum-MV)}.

    Run under a named worker axis (or ``axis_name=None``: one worker, plain signSGD).

    Args:
      learning_rate: ``η_t`` (a float ≥ 0 or a schedule).
      axis_name: the named worker axis, or None.
      beta: per-worker momentum weight of the new gradient, or None.
      key: an int seed or PRNG key; required only with ``tie_break="random"``.
      communication: ``"int8"`` or ``"1bit"``.
      tie_break: ``"zero"`` or ``"random"``.

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    >>> import jax, jax.numpy as jnp
    >>> opt = mv_signsgd(0.1, axis_name="workers")
    >>> grads = jnp.array([[1.0, -1.0], [2.0, 1.0], [3.0, -5.0]])  # 3 workers
    >>> state = jax.vmap(opt.init, axis_size=3)(jnp.zeros((3, 2)))
    >>> u, _ = jax.vmap(opt.update, axis_name="workers")(grads, state)
    >>> print(u[0])
    [-0.1  0.1]
    """
    check_learning_rate("mv_signsgd", learning_rate)
    return optax.chain(
        _majority_vote(
            "mv_signsgd",
            axis_name=axis_name,
            worker="sign",
            server="sign",
            beta=beta,
            R=1.0,
            key=key,
            communication=communication,
            tie_break=tie_break,
        ),
        optax.scale_by_learning_rate(learning_rate),
    )


def sto_signsgd(
    learning_rate: optax.ScalarOrSchedule,
    *,
    key: Any,
    R: Any = 1.0,
    axis_name: Any = None,
    communication: Literal["int8", "1bit"] = "int8",
    tie_break: Literal["zero", "random"] = "zero",
) -> optax.GradientTransformationExtraArgs:
    r"""Sto-signSGD [Jin20], a baseline of [SignMomentum25, §5.2]: majority vote of ``S_R(g^j)``.

    .. math::

        x_{t+1} = x_t - \eta_t \operatorname{sign}\Big(\textstyle\sum_j S_R(g^j_t)\Big).

    Args:
      learning_rate: ``η_t`` (a float ≥ 0 or a schedule).
      key: an int seed or a PRNG key (required: ``S_R`` draws random numbers).
      R: the bound of ``S_R`` (> 0).
      axis_name: the named worker axis, or None.
      communication: ``"int8"`` or ``"1bit"``.
      tie_break: ``"zero"`` or ``"random"``.

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    >>> import jax.numpy as jnp
    >>> opt = sto_signsgd(0.1, key=0, R=1.0)
    >>> u, _ = opt.update(jnp.array([1.0, -1.0]), opt.init(jnp.zeros(2)))  # |g| = R: deterministic
    >>> print(u)
    [-0.1  0.1]
    """
    check_learning_rate("sto_signsgd", learning_rate)
    return optax.chain(
        _majority_vote(
            "sto_signsgd",
            axis_name=axis_name,
            worker="stochastic",
            server="sign",
            beta=None,
            R=R,
            key=key,
            communication=communication,
            tie_break=tie_break,
        ),
        optax.scale_by_learning_rate(learning_rate),
    )


def scale_by_mvsm(
    *,
    key: Any,
    beta: Any = 0.1,
    version: int = 1,
    R: Any = 1.0,
    axis_name: Any = None,
    communication: Literal["int8", "1bit"] = "int8",
    tie_break: Literal["zero", "random"] = "zero",
) -> optax.GradientTransformation:
    r"""The MVSM direction [SignMomentum25, Algorithm 2].

    .. math::

        \text{v1: } u_t = \operatorname{sign}\Big(\tfrac1n \textstyle\sum_j S_R(v^j_t)\Big),\qquad
        \text{v2: } u_t = S_1\Big(\tfrac1n \textstyle\sum_j S_R(v^j_t)\Big),

    with ``v^j_1 = g^j_1``, ``v^j_t = (1 − β) v^j_{t−1} + β g^j_t``.

    Args:
      key: an int seed or a PRNG key (required).
      beta: as `mvsm`.
      version: as `mvsm`.
      R: as `mvsm`.
      axis_name: as `mvsm`.
      communication: as `mvsm`.
      tie_break: as `mvsm`.

    Returns:
      An ``optax.GradientTransformation`` (state `MajorityVoteState`).

    >>> import jax.numpy as jnp
    >>> tx = scale_by_mvsm(key=0, version=1)
    >>> u, _ = tx.update(jnp.array([1.0, -1.0]), tx.init(jnp.zeros(2)))
    >>> print(u)
    [ 1. -1.]
    """
    return _mvsm("scale_by_mvsm", beta, version, R, axis_name, key, communication, tie_break)


def _mvsm(opt, beta, version, R, axis_name, key, communication, tie_break):
    version = static_int(opt, "version", version, choices=(1, 2))
    return _majority_vote(
        opt,
        axis_name=axis_name,
        worker="stochastic",
        server="sign" if version == 1 else "stochastic",
        beta=beta,
        R=R,
        key=key,
        communication=communication,
        tie_break=tie_break,
    )


def mvsm(
    learning_rate: optax.ScalarOrSchedule,
    *,
    key: Any,
    beta: Any = 0.1,
    version: int = 1,
    R: Any = 1.0,
    axis_name: Any = None,
    communication: Literal["int8", "1bit"] = "int8",
    tie_break: Literal["zero", "random"] = "zero",
) -> optax.GradientTransformationExtraArgs:
    r"""Majority-vote signSGD with momentum, MVSM [SignMomentum25, Algorithm 2, §4].

    .. math::

        v^j_1 = g^j_1,\quad v^j_t = (1-\beta) v^j_{t-1} + \beta g^j_t,\quad
        x_{t+1} = x_t - \eta_t\, C\Big(\tfrac1n \textstyle\sum_j S_R(v^j_t)\Big),

    ``C = sign`` (v1) or ``S_1`` (v2); ``R`` is the paper's gradient bound G. [SignMomentum25]
    sets β = 1/2 in Theorems 3–4; β here weighs the new gradient (β = 1: no momentum).
    ``version`` changes the program: under ``optax.inject_hyperparams`` pass
    ``static_args=("version",)``, or use `mvsm_v1` / `mvsm_v2`.

    Args:
      learning_rate: ``η_t`` (a float ≥ 0 or a schedule).
      key: an int seed or a PRNG key (required: ``S_R`` draws random numbers).
      beta: momentum weight of the new gradient, in [0, 1].
      version: 1 or 2.
      R: the bound of ``S_R`` (> 0).
      axis_name: the named worker axis, or None.
      communication: ``"int8"`` or ``"1bit"``.
      tie_break: ``"zero"`` or ``"random"`` (v1 only).

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    >>> import jax.numpy as jnp
    >>> opt = mvsm(0.1, key=0)
    >>> u, _ = opt.update(jnp.array([1.0, -1.0]), opt.init(jnp.zeros(2)))
    >>> print(u)
    [-0.1  0.1]
    """
    check_learning_rate("mvsm", learning_rate)
    return optax.chain(
        _mvsm("mvsm", beta, version, R, axis_name, key, communication, tie_break),
        optax.scale_by_learning_rate(learning_rate),
    )


def mvsm_v1(
    learning_rate: optax.ScalarOrSchedule,
    *,
    key: Any,
    beta: Any = 0.1,
    R: Any = 1.0,
    axis_name: Any = None,
    communication: Literal["int8", "1bit"] = "int8",
    tie_break: Literal["zero", "random"] = "zero",
) -> optax.GradientTransformationExtraArgs:
    r"""MVSM v1 [SignMomentum25, Algorithm 2]: `mvsm` with ``version=1`` (server ``sign``).

    .. math::

        x_{t+1} = x_t - \eta_t \operatorname{sign}\Big(\tfrac1n \textstyle\sum_j S_R(v^j_t)\Big).

    Args:
      learning_rate: as `mvsm`.
      key: as `mvsm`.
      beta: as `mvsm`.
      R: as `mvsm`.
      axis_name: as `mvsm`.
      communication: as `mvsm`.
      tie_break: as `mvsm`.

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    >>> import jax.numpy as jnp
    >>> opt = mvsm_v1(0.1, key=0)
    >>> u, _ = opt.update(jnp.array([1.0, -1.0]), opt.init(jnp.zeros(2)))
    >>> print(u)
    [-0.1  0.1]
    """
    check_learning_rate("mvsm_v1", learning_rate)
    return optax.chain(
        _mvsm("mvsm_v1", beta, 1, R, axis_name, key, communication, tie_break),
        optax.scale_by_learning_rate(learning_rate),
    )


def mvsm_v2(
    learning_rate: optax.ScalarOrSchedule,
    *,
    key: Any,
    beta: Any = 0.1,
    R: Any = 1.0,
    axis_name: Any = None,
    communication: Literal["int8", "1bit"] = "int8",
    tie_break: Literal["zero", "random"] = "zero",
) -> optax.GradientTransformationExtraArgs:
    r"""MVSM v2 [SignMomentum25, Algorithm 2]: `mvsm` with ``version=2`` (server ``S_1``).

    .. math::

        x_{t+1} = x_t - \eta_t\, S_1\Big(\tfrac1n \textstyle\sum_j S_R(v^j_t)\Big).

    Args:
      learning_rate: as `mvsm`.
      key: as `mvsm`.
      beta: as `mvsm`.
      R: as `mvsm`.
      axis_name: as `mvsm`.
      communication: as `mvsm`.
      tie_break: as `mvsm` (unused: ``S_1`` needs no tie rule).

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    >>> import jax.numpy as jnp
    >>> opt = mvsm_v2(0.1, key=0)
    >>> u, _ = opt.update(jnp.array([1.0, -1.0]), opt.init(jnp.zeros(2)))
    >>> print(u)
    [-0.1  0.1]
    """
    check_learning_rate("mvsm_v2", learning_rate)
    return optax.chain(
        _mvsm("mvsm_v2", beta, 2, R, axis_name, key, communication, tie_break),
        optax.scale_by_learning_rate(learning_rate),
    )


# Deprecated names (removed in 0.3), also here because callers imported them from this module.
mv_sign_sgd = deprecated_alias(mv_signsgd, "heterogeneity.optim.mv_sign_sgd", "heterogeneity.optim.mv_signsgd")
sto_sign_sgd = deprecated_alias(sto_signsgd, "heterogeneity.optim.sto_sign_sgd", "heterogeneity.optim.sto_signsgd")
