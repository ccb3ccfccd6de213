"""Registry: config names → optimizers (``get("adam", learning_rate=1e-3)``).

Every name is the name of a public constructor (Optax's own where Optax has the algorithm):
``get("signsgd_s", ...)`` is ``heterogeneity.optim.signsgd_s(...)``. ``get`` validates the name
(a typo raises ``ValueError`` with the closest names, via difflib, and the full list) and the
hyperparameters: unknown or missing ones are listed here; values are checked by the
constructors themselves (`heterogeneity.optim._validate`, one set of rules, so ``get`` and a
direct call agree). ``learning_rate`` is required and may be a schedule.

Names that draw random numbers (``sto_signsgd``, ``mvsm_v1``, ``mvsm_v2``) require ``key`` (an
int seed or a PRNG key); it is structural (bound statically, never injected).

``rotated_<name>`` wraps any other name in `rotated` [Xie24, App. D.2]; it takes the inner
optimizer's hyperparameters plus ``rotation_key`` (int seed or PRNG key, default 0: the
rotation is part of the problem, the same for every run), ``rotation`` (``"randperm"``) and
``depth`` (2), all three structural.

Multi-worker names (``mv_signsgd``, ``sto_signsgd``, ``mvsm_v1``, ``mvsm_v2``) communicate over
the named axis ``axis_name`` (default ``"workers"``): run the step under
``jax.vmap(step, axis_name="workers")`` (simulated workers) or ``jax.shard_map`` over a mesh
axis called ``"workers"``; pass ``axis_name=None`` for a single worker.

`factory(name)` returns the constructor with the structural (non-numeric, program-changing)
options bound, so it can be wrapped directly:
``optax.inject_hyperparams(factory("mvsm_v2", key=0))(learning_rate=sched, beta=0.5)``.

Names before 0.3 (``signsgd_l1``, ``signum``, ``block_adam``, ``adam_nbc`` and their
``rotated_`` forms) still work for one release, with a ``DeprecationWarning``; see `DEPRECATED`.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import warnings
from typing import Any, Callable

import optax

from heterogeneity import partition as hp
from heterogeneity._deprecation import REMOVED_IN
from heterogeneity.optim import _optax
from heterogeneity.optim._adaptive import adam_no_bias_correction, adasgd, blockwise_adam, frozen_adam
from heterogeneity.optim._error_feedback import ef_signsgd
from heterogeneity.optim._majority_vote import as_raw_key, mv_signsgd, mvsm_v1, mvsm_v2, sto_signsgd
from heterogeneity.optim._rotated import rotated
from heterogeneity.optim._sign import signsgd, signum_first_gradient
from heterogeneity.optim._sign_l1 import signsgd_s

__all__ = ["get", "factory", "names", "is_multi_worker", "ROTATED_PREFIX", "DEPRECATED"]

ROTATED_PREFIX = "rotated_"
_ROTATION_OPTIONS = ("rotation_key", "rotation", "depth")
# Options that change the program (not numbers): always bound statically, never injected.
_STRUCTURAL = frozenset(
    {
        "partition", "order", "first_step", "initial_moments", "communication", "tie_break",
        "axis_name", "version", "nesterov", "mu_dtype", "accumulator_dtype", "bias_correction",
        "mask", "eps_in_sqrt", "centered", "key", "rotation_key",
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
    "signsgd": _Entry(signsgd, {}, dict),
    "signsgd_s": _Entry(signsgd_s, {}, dict),
    "signum_first_gradient": _Entry(signum_first_gradient, {}, dict),
    "adam": _Entry(_optax.adam, {}, dict),
    "adamw": _Entry(_optax.adamw, {}, dict),
    "rmsprop": _Entry(_optax.rmsprop, {}, dict),
    "lion": _Entry(_optax.lion, {}, dict),
    "adasgd": _Entry(adasgd, {}, dict),
    "blockwise_adam": _Entry(blockwise_adam, {}, lambda: {"partition": _per_leaf()}),
    "frozen_adam": _Entry(frozen_adam, {}, dict),
    "adam_no_bias_correction": _Entry(adam_no_bias_correction, {}, dict),
    "ef_signsgd": _Entry(ef_signsgd, {}, dict),
    "mv_signsgd": _Entry(mv_signsgd, {}, lambda: {"axis_name": "workers"}, True),
    "sto_signsgd": _Entry(sto_signsgd, {}, lambda: {"axis_name": "workers"}, True),
    "mvsm_v1": _Entry(mvsm_v1, {}, lambda: {"axis_name": "workers"}, True),
    "mvsm_v2": _Entry(mvsm_v2, {}, lambda: {"axis_name": "workers"}, True),
}
assert all(e.fn.__name__ == n for n, e in _ENTRIES.items()), "registry keys must equal the constructors' names"

#: Names before 0.3 → their current names (each also with the ``rotated_`` prefix).
DEPRECATED: dict[str, str] = {
    "signsgd_l1": "signsgd_s",
    "signum": "signum_first_gradient",
    "block_adam": "blockwise_adam",
    "adam_nbc": "adam_no_bias_correction",
}


def _current(name: Any) -> Any:
    """``name`` with a deprecated base name replaced by its current one (warning once per call)."""
    if not isinstance(name, str):
        return name
    rot = name.startswith(ROTATED_PREFIX)
    base = name[len(ROTATED_PREFIX):] if rot else name
    if base not in DEPRECATED:
        return name
    new = (ROTATED_PREFIX if rot else "") + DEPRECATED[base]
    warnings.warn(f"optimizer name {name!r} is deprecated and will be removed in heterogeneity {REMOVED_IN}; "
                  f"use {new!r}", DeprecationWarning, stacklevel=3)
    return new


def names(*, rotated_variants: bool = False) -> tuple[str, ...]:
    """All registered base names (plus every ``rotated_<name>`` with ``rotated_variants``); deprecated names excluded.

    >>> "blockwise_adam" in names(), "block_adam" in names()
    (True, False)
    """
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
    """Whether ``name`` communicates over a worker axis (run it under vmap/shard_map).

    >>> is_multi_worker("mvsm_v1"), is_multi_worker("rotated_adam")
    (True, False)
    """
    name = _current(name)
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

    Args:
      name: a registry name (see `names`), or ``rotated_<name>``.
      **static: structural options to bind (``partition``, ``key``, ``axis_name``, ...).

    Returns:
      A keyword-only constructor of an ``optax.GradientTransformation``.

    >>> import optax
    >>> opt = optax.inject_hyperparams(factory("signsgd_s"))(learning_rate=0.1)
    >>> sorted(opt.init({"w": 0.0}).hyperparams)
    ['learning_rate']
    """
    name = _current(name)
    if name.startswith(ROTATED_PREFIX):
        inner_name = name[len(ROTATED_PREFIX):]
        if inner_name not in _ENTRIES:
            raise _unknown_name(name)
        rotation = static.pop("rotation", "randperm")
        depth = static.pop("depth", 2)
        key = as_raw_key(static.pop("rotation_key", 0), name, "rotation_key")
        inner_factory = factory(inner_name, **static)
        inner_params = list(inspect.signature(inner_factory).parameters.values())

        def build(**hparams):
            return rotated(inner_factory(**hparams), key, rotation=rotation, depth=depth)

        return _with_signature(build, inner_params)

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

    Args:
      name: a registry name (see `names`), or ``rotated_<name>``; a deprecated name warns.
      **hparams: ``learning_rate`` (required) and the constructor's other arguments.

    Returns:
      The ``optax.GradientTransformation`` that ``name``'s constructor returns.

    >>> import jax.numpy as jnp
    >>> opt = get("signsgd", learning_rate=0.1)
    >>> u, _ = opt.update(jnp.array([2.0, -3.0]), opt.init(jnp.zeros(2)))
    >>> print(u)
    [-0.1  0.1]
    """
    name = _current(name)
    if not isinstance(name, str):
        raise ValueError(f"optimizer name must be a string, got {type(name).__name__}")
    base = name[len(ROTATED_PREFIX):] if name.startswith(ROTATED_PREFIX) else name
    if base not in _ENTRIES:
        raise _unknown_name(name)
    structural = {k: hparams.pop(k) for k in list(hparams) if k in _STRUCTURAL}
    if not name.startswith(ROTATED_PREFIX) and "rotation_key" in structural:
        hparams["rotation_key"] = structural.pop("rotation_key")  # reported as unknown below
    if name.startswith(ROTATED_PREFIX):
        structural.update({k: hparams.pop(k) for k in ("rotation", "depth") if k in hparams})
    make = factory(name, **structural)
    accepted = list(inspect.signature(make).parameters)
    bad = sorted(set(hparams) - set(accepted))
    if bad:
        raise ValueError(f"{name}: unknown hyperparameter(s) {bad}; accepted: {accepted + sorted(structural)}")
    return make(**hparams)
