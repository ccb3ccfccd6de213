"""Registry: config names → optimizers (``get("adam", learning_rate=1e-3)``).

Every name maps to a public constructor (Optax's own where Optax has the algorithm). ``get``
validates the name (a typo raises ``ValueError`` with the closest names, via difflib, and the
full list) and the hyperparameters: unknown or missing ones are listed here; values are checked
by the constructors themselves (`heterogeneity.optim._validate`, one set of rules, so ``get``
and a direct call agree). ``learning_rate`` is required and may be a schedule.

``rotated_<name>`` wraps any other name in `rotated` (seed 003 App. D.2); it takes the inner
optimizer's hyperparameters plus ``rotation_key`` (int seed, default 0), ``rotation``
(``"randperm"``) and ``depth`` (2).

Multi-worker names (``mv_signsgd``, ``sto_signsgd``, ``mvsm_v1``, ``mvsm_v2``) communicate over
the named axis ``axis_name`` (default ``"workers"``): run the step under
``jax.vmap(step, axis_name="workers")`` (simulated workers) or ``jax.shard_map`` over a mesh
axis called ``"workers"``; pass ``axis_name=None`` for a single worker.

`factory(name)` returns the constructor with the structural (non-numeric, program-changing)
options bound, so it can be wrapped directly:
``optax.inject_hyperparams(factory("mvsm_v2"))(learning_rate=sched, beta=0.5)``.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
from typing import Any, Callable

import optax

from heterogeneity import partition as hp
from heterogeneity.optim import _optax
from heterogeneity.optim._adaptive import adam_no_bias_correction, adasgd, block_adam, frozen_adam
from heterogeneity.optim._error_feedback import ef_sign_sgd
from heterogeneity.optim._majority_vote import as_raw_key, mv_sign_sgd, mvsm, sto_sign_sgd
from heterogeneity.optim._rotated import rotated
from heterogeneity.optim._sign import sign_sgd, signum
from heterogeneity.optim._sign_l1 import sign_sgd_l1

__all__ = ["get", "factory", "names", "is_multi_worker", "ROTATED_PREFIX"]

ROTATED_PREFIX = "rotated_"
_ROTATION_OPTIONS = ("rotation_key", "rotation", "depth")
# Options that change the program (not numbers): always bound statically, never injected.
_STRUCTURAL = frozenset(
    {
        "partition", "order", "first_step", "initial_moments", "communication", "tie_break",
        "axis_name", "version", "nesterov", "mu_dtype", "accumulator_dtype", "bias_correction",
        "mask", "eps_in_sqrt", "centered",
    }
)


def _per_leaf() -> Any:
    return hp.from_fn(lambda path: path, name="per_leaf")


@dataclasses.dataclass(frozen=True)
class _Entry:
    fn: Callable[..., optax.GradientTransformation]
    bound: dict  # fixed by the name (e.g. version=1)
    defaults: Callable[[], dict]  # registry defaults, overridable
    multi_worker: bool = False


_ENTRIES: dict[str, _Entry] = {
    "sgd": _Entry(_optax.sgd, {}, dict),
    "signsgd": _Entry(sign_sgd, {}, dict),
    "signsgd_l1": _Entry(sign_sgd_l1, {}, dict),
    "signum": _Entry(signum, {}, dict),
    "adam": _Entry(_optax.adam, {}, dict),
    "adamw": _Entry(_optax.adamw, {}, dict),
    "rmsprop": _Entry(_optax.rmsprop, {}, dict),
    "lion": _Entry(_optax.lion, {}, dict),
    "adasgd": _Entry(adasgd, {}, dict),
    "block_adam": _Entry(block_adam, {}, lambda: {"partition": _per_leaf()}),
    "frozen_adam": _Entry(frozen_adam, {}, dict),
    "adam_nbc": _Entry(adam_no_bias_correction, {}, dict),
    "ef_signsgd": _Entry(ef_sign_sgd, {}, dict),
    "mv_signsgd": _Entry(mv_sign_sgd, {}, lambda: {"axis_name": "workers"}, True),
    "sto_signsgd": _Entry(sto_sign_sgd, {}, lambda: {"axis_name": "workers"}, True),
    "mvsm_v1": _Entry(mvsm, {"version": 1}, lambda: {"axis_name": "workers"}, True),
    "mvsm_v2": _Entry(mvsm, {"version": 2}, lambda: {"axis_name": "workers"}, True),
}


def names(*, rotated_variants: bool = False) -> tuple[str, ...]:
    """All registered base names (plus every ``rotated_<name>`` with ``rotated_variants``)."""
    base = tuple(_ENTRIES)
    return base + tuple(ROTATED_PREFIX + n for n in base) if rotated_variants else base


def _unknown_name(name: str) -> ValueError:
    valid = names()
    close = difflib.get_close_matches(name, valid + tuple(ROTATED_PREFIX + n for n in valid), n=3)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(
        f"unknown optimizer {name!r}.{hint} Valid names: {', '.join(valid)}, and {ROTATED_PREFIX}<name> for any of them."
    )


def is_multi_worker(name: str) -> bool:
    """Whether ``name`` communicates over a worker axis (run it under vmap/shard_map)."""
    base = name[len(ROTATED_PREFIX):] if name.startswith(ROTATED_PREFIX) else name
    if base not in _ENTRIES:
        raise _unknown_name(name)
    return _ENTRIES[base].multi_worker


def _accepted(fn) -> list[str]:
    return [p for p in inspect.signature(fn).parameters]


def _with_signature(fn, params: list[inspect.Parameter]):
    @functools.wraps(fn)
    def wrapper(**kwargs):
        return fn(**kwargs)

    wrapper.__signature__ = inspect.Signature(params)
    del wrapper.__wrapped__
    return wrapper


def factory(name: str, **static: Any) -> Callable[..., optax.GradientTransformation]:
    """The constructor behind ``name`` with structural options bound (``static`` overrides them).

    The returned callable takes the numeric hyperparameters (``learning_rate``, ``b1``, ...)
    as keywords and works under ``optax.inject_hyperparams``.
    """
    if name.startswith(ROTATED_PREFIX):
        inner_name = name[len(ROTATED_PREFIX):]
        if inner_name not in _ENTRIES:
            raise _unknown_name(name)
        rotation = static.pop("rotation", "randperm")
        depth = static.pop("depth", 2)
        inner_factory = factory(inner_name, **static)
        inner_params = list(inspect.signature(inner_factory).parameters.values())

        def build(rotation_key: Any = 0, **hparams):
            key = as_raw_key(rotation_key, name, "rotation_key")
            return rotated(inner_factory(**hparams), key, rotation=rotation, depth=depth)

        key_param = inspect.Parameter("rotation_key", inspect.Parameter.KEYWORD_ONLY, default=0)
        return _with_signature(build, inner_params + [key_param])

    if name not in _ENTRIES:
        raise _unknown_name(name)
    entry = _ENTRIES[name]
    accepted = _accepted(entry.fn)
    bad = sorted(set(static) - set(accepted))
    if bad:
        raise ValueError(f"{name}: unknown hyperparameter(s) {bad}; accepted: {accepted}")
    fixed = {**{k: v for k, v in entry.defaults().items() if k in _STRUCTURAL}, **entry.bound}
    clash = sorted(set(static) & set(entry.bound))
    if clash:
        raise ValueError(f"{name}: {clash} is fixed by the name {name!r}")
    fixed.update(static)
    numeric_defaults = {k: v for k, v in entry.defaults().items() if k not in _STRUCTURAL}
    params = []
    for p in inspect.signature(entry.fn).parameters.values():
        if p.name in fixed:
            continue
        default = numeric_defaults.get(p.name, p.default)
        params.append(inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=default))

    def build(**hparams):
        missing = [p.name for p in params if p.default is inspect.Parameter.empty and p.name not in hparams]
        if missing:
            raise ValueError(f"{name}: missing required hyperparameter(s) {missing}")
        return entry.fn(**{**numeric_defaults, **hparams, **fixed})

    return _with_signature(build, params)


def get(name: str, **hparams: Any) -> optax.GradientTransformation:
    """The optimizer registered as ``name`` (see `names()`), e.g. ``get("adam", learning_rate=1e-3)``.

    Raises ``ValueError`` for an unknown name (with difflib suggestions), an unknown or missing
    hyperparameter, or a value out of range, and ``TypeError`` (also a ``ValueError``) for a
    value of the wrong type: the constructor's own checks (see `heterogeneity.optim._validate`).
    """
    if not isinstance(name, str):
        raise ValueError(f"optimizer name must be a string, got {type(name).__name__}")
    base = name[len(ROTATED_PREFIX):] if name.startswith(ROTATED_PREFIX) else name
    if base not in _ENTRIES:
        raise _unknown_name(name)
    structural = {k: hparams.pop(k) for k in list(hparams) if k in _STRUCTURAL}
    if name.startswith(ROTATED_PREFIX):
        structural.update({k: hparams.pop(k) for k in ("rotation", "depth") if k in hparams})
    make = factory(name, **structural)
    accepted = list(inspect.signature(make).parameters)
    bad = sorted(set(hparams) - set(accepted))
    if bad:
        raise ValueError(f"{name}: unknown hyperparameter(s) {bad}; accepted: {accepted + sorted(structural)}")
    return make(**hparams)
