"""Eager validation of optimizer hyperparameters.

Every public constructor in `heterogeneity.optim` calls these checks, so a bad value fails
where it is written (``ValueError`` naming the parameter), not deep inside a jitted step.
Values that cannot be checked eagerly are skipped: JAX tracers (e.g. hyperparameters that
`optax.inject_hyperparams` feeds back from its state under `jit`). Schedules are probed at
step 0 (cheap, and the only value known before training); a schedule that cannot be called
eagerly is skipped.
"""
from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np

__all__ = [
    "concrete_value",
    "check_learning_rate",
    "check_unit_interval",
    "check_nonnegative",
    "check_positive",
    "static_int",
]


def concrete_value(value: Any) -> float | None:
    """``value`` as a Python float if it is a concrete scalar, else ``None`` (tracer, schedule...)."""
    if value is None or isinstance(value, jax.core.Tracer):
        return None
    if callable(value):
        try:
            value = value(0)
        except Exception:  # noqa: BLE001 - a schedule we cannot probe eagerly is not checked
            return None
        if isinstance(value, jax.core.Tracer):
            return None
    try:
        arr = np.asarray(value)
    except Exception:  # noqa: BLE001 - e.g. an abstract value
        return None
    if arr.ndim != 0 or arr.dtype.kind not in "biuf":
        return None
    return float(arr)


def _where(value: Any) -> str:
    return " (value of the schedule at step 0)" if callable(value) else ""


def check_learning_rate(value: Any, name: str = "learning_rate") -> None:
    """``value`` (a float or a schedule) must be finite and ≥ 0."""
    if value is None:
        raise ValueError(f"{name} is required (a float or an optax schedule), got None")
    v = concrete_value(value)
    if v is None:
        return
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {v}{_where(value)}")


def check_unit_interval(name: str, value: Any, *, open_right: bool = False) -> None:
    """``value`` must lie in [0, 1] (or [0, 1) with ``open_right``)."""
    v = concrete_value(value)
    if v is None:
        return
    hi_ok = v < 1 if open_right else v <= 1
    if not (math.isfinite(v) and v >= 0 and hi_ok):
        interval = "[0, 1)" if open_right else "[0, 1]"
        raise ValueError(f"{name} must lie in {interval}, got {v}{_where(value)}")


def check_nonnegative(name: str, value: Any) -> None:
    """``value`` must be finite and ≥ 0."""
    v = concrete_value(value)
    if v is None:
        return
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {v}{_where(value)}")


def check_positive(name: str, value: Any) -> None:
    """``value`` must be finite and > 0."""
    v = concrete_value(value)
    if v is None:
        return
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {v}{_where(value)}")


def static_int(name: str, value: Any, *, minimum: int | None = None, choices=None) -> int:
    """A structural integer option (e.g. ``version``, ``depth``) as a Python int.

    Structural options change the program, so they cannot be traced: under
    `optax.inject_hyperparams` pass them in ``static_args`` (or bind them with
    `functools.partial`, as `heterogeneity.optim.factory` does).
    """
    if isinstance(value, jax.core.Tracer):
        raise ValueError(
            f"{name} is a structural option and cannot be traced; under optax.inject_hyperparams "
            f"pass static_args=({name!r},) or bind it with functools.partial"
        )
    arr = np.asarray(value)
    if arr.ndim != 0 or arr.dtype.kind not in "biu" and not (arr.dtype.kind == "f" and float(arr).is_integer()):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    out = int(arr)
    if minimum is not None and out < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {out}")
    if choices is not None and out not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {out}")
    return out
