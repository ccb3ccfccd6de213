"""Eager validation of optimizer hyperparameters, shared by every constructor and the registry.

A bad value fails where it is written, with an error naming the optimizer, the argument, the
value and what is allowed: ``TypeError`` for a wrong type (`HyperparameterTypeError`, also a
``ValueError`` so that callers catching config errors keep working), ``ValueError`` for a
value out of range. Values that cannot be known eagerly are type-checked by dtype only and
otherwise skipped: JAX tracers (e.g. hyperparameters that `optax.inject_hyperparams` feeds
back from its state under `jit`). Schedules are probed at step 0 (cheap, and the only value
known before training); a schedule that cannot be called eagerly is skipped.

Numbers: Python ``int``/``float``, NumPy/JAX scalars (0-d arrays) of integer or floating
dtype. Not numbers: ``bool``, complex, strings, sequences, ``None`` (unless optional).
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "HyperparameterTypeError",
    "UnboundWorkerAxisError",
    "concrete_value",
    "real_value",
    "check_learning_rate",
    "check_unit_interval",
    "check_first_moment",
    "check_second_moment",
    "check_nonnegative",
    "check_positive",
    "check_bool",
    "check_choice",
    "check_dtype",
    "check_axis_name",
    "worker_axis",
    "static_int",
]


class HyperparameterTypeError(TypeError, ValueError):
    """A hyperparameter of the wrong type (a ``TypeError``; also a ``ValueError`` for config code)."""


class UnboundWorkerAxisError(ValueError, NameError):
    """A multi-worker optimizer stepped outside a vmap/shard_map binding its worker axis."""


def _show(value: Any) -> str:
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} ({type(value).__name__})"


def _is_real_dtype(dtype: Any) -> bool:
    return bool(jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer))


def _scalar(value: Any) -> float | None | bool:
    """float for a concrete real scalar, None for a tracer of real dtype, False if not a number."""
    if isinstance(value, (bool, np.bool_, str, bytes)) or value is None:
        return False
    if isinstance(value, jax.core.Tracer):
        return None if _is_real_dtype(value.dtype) else False
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (np.generic, np.ndarray, jax.Array)):
        if np.ndim(value) != 0 or not _is_real_dtype(value.dtype):
            return False
        return float(value)
    return False


def concrete_value(value: Any) -> float | None:
    """``value`` as a Python float if it is a concrete real scalar (a schedule: its value at 0), else None."""
    if callable(value) and not isinstance(value, (jax.Array, np.ndarray, np.generic)):
        try:
            value = value(0)
        except Exception:  # noqa: BLE001 - a schedule we cannot probe eagerly is not checked
            return None
    v = _scalar(value)
    return None if v is False else v


def real_value(opt: str, name: str, value: Any, *, schedule: bool = False, optional: bool = False) -> float | None:
    """Type check: ``value`` is a real scalar (or a schedule, or None if allowed); its concrete value or None."""
    allowed = "a real number or an optax schedule" if schedule else "a real number"
    if optional:
        allowed += " or None"
    if value is None and optional:
        return None
    if callable(value) and not isinstance(value, (jax.Array, np.ndarray, np.generic)):
        if not schedule:
            raise HyperparameterTypeError(f"{opt}: {name} must be {allowed}, got {_show(value)}")
        try:
            at0 = value(0)
        except Exception:  # noqa: BLE001 - a schedule we cannot probe eagerly is not checked
            return None
        v = _scalar(at0)
        if v is False:
            raise HyperparameterTypeError(
                f"{opt}: {name} is a schedule whose value at step 0 is not a real number: {_show(at0)}"
            )
        return v
    v = _scalar(value)
    if v is False:
        hint = ""
        if isinstance(value, (np.ndarray, jax.Array)) and np.ndim(value) != 0:
            hint = f"; arrays must be scalars (shape ()), this one has shape {np.shape(value)}"
        raise HyperparameterTypeError(f"{opt}: {name} must be {allowed}, got {_show(value)}{hint}")
    return v


def _where(value: Any) -> str:
    if callable(value) and not isinstance(value, (jax.Array, np.ndarray, np.generic)):
        return " (value of the schedule at step 0)"
    dtype = getattr(value, "dtype", None)
    if dtype is not None and jnp.issubdtype(dtype, jnp.floating) and jnp.dtype(dtype).itemsize < 4:
        return (f" (stored as {jnp.dtype(dtype).name}; under optax.inject_hyperparams pass "
                f"hyperparam_dtype=jnp.float32)")
    return ""


def _check_range(opt, name, value, *, low_open=False, high=None, high_open=False, why="",
                 schedule=False, optional=False) -> float | None:
    v = real_value(opt, name, value, schedule=schedule, optional=optional)
    if v is None:
        return None
    ok = math.isfinite(v) and (v > 0 if low_open else v >= 0)
    if high is not None:
        ok = ok and (v < high if high_open else v <= high)
    if not ok:
        if high is None:
            allowed = f"a finite number {'>' if low_open else '>='} 0"
        else:
            allowed = f"in {'(' if low_open else '['}0, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{opt}: {name} must be {allowed}{why}, got {v}{_where(value)}")
    return v


def check_learning_rate(opt: str, value: Any, name: str = "learning_rate") -> float | None:
    """``value``: a real number or a schedule (probed at step 0), finite and ≥ 0."""
    return _check_range(opt, name, value, schedule=True)


def check_nonnegative(opt: str, name: str, value: Any, *, schedule: bool = False) -> float | None:
    """``value`` must be a finite real number ≥ 0."""
    return _check_range(opt, name, value, schedule=schedule)


def check_positive(opt: str, name: str, value: Any) -> float | None:
    """``value`` must be a finite real number > 0."""
    return _check_range(opt, name, value, low_open=True)


def check_unit_interval(opt: str, name: str, value: Any, *, open_right: bool = False, why: str = "",
                        optional: bool = False) -> float | None:
    """``value`` must lie in [0, 1] (or [0, 1) with ``open_right``; None passes with ``optional``)."""
    return _check_range(opt, name, value, high=1, high_open=open_right, why=why, optional=optional)


def check_first_moment(opt: str, name: str, value: Any, *, bias_correction: bool) -> float | None:
    """First-moment decay β1: [0, 1), or [0, 1] when nothing divides by ``1 − β1^t``."""
    why = f" (bias correction divides by 1 - {name}**t)" if bias_correction else ""
    return check_unit_interval(opt, name, value, open_right=bias_correction, why=why)


def check_second_moment(opt: str, name: str, value: Any, *, bias_correction: bool, starts_at_zero: bool,
                        when: str = "", fix: str = "") -> float | None:
    """Second-moment decay β2 ∈ [0, 1]; β2 = 1 is rejected where it gives NaN or enormous steps.

    β2 = 1 freezes ``v`` at its initial value: legal only without bias correction (which divides
    by ``1 − β2^t = 0``) and when ``v`` does not start at 0 (else every step is divided by eps
    alone), e.g. moments started from the first gradient ([Zhang24, eq. (2)], `frozen_adam`).
    ``when`` qualifies the rule (e.g. " with initial_moments='zeros'"), ``fix`` names a legal
    alternative; both go into the message.
    """
    v = check_unit_interval(opt, name, value)
    if v == 1.0 and (bias_correction or starts_at_zero):
        if bias_correction:
            why = f"with bias correction, {name} = 1 divides by 1 - {name}**t = 0 (NaN steps)"
        else:
            why = (f"{name} = 1 keeps the zero-initialised second moment at 0, so every step is "
                   f"divided by eps alone (enormous)")
        raise ValueError(f"{opt}: {name} must be < 1{when}, got {v}{_where(value)}: {why}{fix}")
    return v


def check_bool(opt: str, name: str, value: Any) -> bool:
    """``value`` must be a real ``bool`` (not ``0``/``1``, not ``'no'``)."""
    if not isinstance(value, (bool, np.bool_)):
        raise HyperparameterTypeError(f"{opt}: {name} must be True or False, got {_show(value)}")
    return bool(value)


def check_choice(opt: str, name: str, value: Any, choices: Iterable[str]) -> str:
    """``value`` must be one of the strings ``choices``."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        listed = " or ".join(repr(c) for c in choices)
        raise ValueError(f"{opt}: {name} must be {listed}, got {_show(value)}")
    return value


def check_dtype(opt: str, name: str, value: Any) -> None:
    """``value`` must be None or something `jnp.dtype` understands (e.g. ``jnp.float32``, ``"bfloat16"``)."""
    if value is None:
        return
    try:
        jnp.dtype(value)
    except Exception:  # noqa: BLE001 - jnp.dtype raises TypeError or ValueError
        raise HyperparameterTypeError(f"{opt}: {name} must be None or a dtype, got {_show(value)}") from None


def check_axis_name(opt: str, value: Any, name: str = "axis_name") -> None:
    """``value``: None (one worker), an axis name (str) or a tuple of them."""
    if value is None or isinstance(value, str):
        return
    if isinstance(value, tuple) and value and all(isinstance(v, str) for v in value):
        return
    raise HyperparameterTypeError(
        f"{opt}: {name} must be None (a single worker), a str or a tuple of str, got {_show(value)}"
    )


def worker_axis(opt: str, axis_name: Any) -> tuple[int, jax.Array]:
    """``(number of workers, this worker's index)`` over ``axis_name``; a clear error if it is unbound.

    JAX raises a bare ``NameError: unbound axis name`` when a collective runs outside a
    ``vmap``/``shard_map`` that binds the axis; this says how to run the optimizer instead.
    """
    if axis_name is None:
        return 1, jnp.zeros([], jnp.int32)
    try:
        return jax.lax.axis_size(axis_name), jax.lax.axis_index(axis_name)
    except NameError as err:
        raise UnboundWorkerAxisError(
            f"{opt}: the worker axis axis_name={axis_name!r} is not bound: this multi-worker optimizer's "
            f"update must run inside jax.vmap(step, axis_name={axis_name!r}) (simulated workers) or "
            f"jax.shard_map over a mesh axis named {axis_name!r}, or through "
            f"heterogeneity.experiment.train(..., num_workers=W); for a single worker pass axis_name=None"
        ) from err


def static_int(opt: str, name: str, value: Any, *, minimum: int | None = None, choices=None) -> int:
    """A structural integer option (e.g. ``version``, ``depth``) as a Python int.

    Structural options change the program, so they cannot be traced: under
    `optax.inject_hyperparams` pass them in ``static_args`` (or bind them with
    `functools.partial`, as `heterogeneity.optim.factory` does).
    """
    if isinstance(value, jax.core.Tracer):
        raise ValueError(
            f"{opt}: {name} is a structural option and cannot be traced; under optax.inject_hyperparams "
            f"pass static_args=({name!r},) or bind it with functools.partial"
        )
    is_int = isinstance(value, (int, np.integer)) or (
        isinstance(value, (np.ndarray, jax.Array)) and np.ndim(value) == 0 and jnp.issubdtype(value.dtype, jnp.integer)
    )
    if isinstance(value, (bool, np.bool_)) or not is_int:
        raise HyperparameterTypeError(f"{opt}: {name} must be an integer, got {_show(value)}")
    out = int(value)
    if minimum is not None and out < minimum:
        raise ValueError(f"{opt}: {name} must be >= {minimum}, got {out}")
    if choices is not None and out not in choices:
        raise ValueError(f"{opt}: {name} must be one of {sorted(choices)}, got {out}")
    return out
