"""Experiment configs: a grid of hyperparameters and a function that builds one run from a point.

A config (one module per experiment under ``configs/``, exposing ``CONFIG``) is a
`SweepConfig`:

* ``base``: hyperparameters shared by every run (model sizes, steps, batch size ...);
* ``scales``: named overrides of ``base``; ``"laptop"`` (default, CPU minutes) and ``"gpu"``
  (the accelerator size; ``"accelerator"`` is accepted as an alias);
* ``grid``: ``{axis: [values]}`` (Cartesian product) or a list of such dicts (their union,
  e.g. one learning-rate grid per optimizer);
* ``smoke``: overrides of ``base`` for a few-step smoke run, and ``smoke_grid`` (default:
  every axis cut to its first value except ``optimizer``, which is kept whole, so every
  optimizer is exercised);
* ``build(hparams) -> RunSpec``: everything `train` needs for one run;
* ``validate(hparams)`` (optional): raise ``ValueError`` on a point the config cannot run
  (called for every point before the first run, after the registry checks of `validate_points`);
* ``divergence_factor``: a run whose loss exceeds this multiple of ``|L_0|`` (its step-0 loss)
  is recorded as ``diverged`` (default 1e3, `train`'s; ``None``: only non-finite values count).

`resolve` turns a config into the ordered list of resolved hyperparameter dicts (``overrides``
replace a hyperparameter's value wherever a point has it: ``heterogeneity sweep --set``);
`run_id` hashes one of them (with the config name) into the deterministic id of its result
file. `validate_points` checks every point's names and hyperparameters before anything runs.

`make_optimizer` wraps the registry's optimizer in ``optax.inject_hyperparams``: the learning
rate and the other numeric hyperparameters live in the optimizer *state* instead of being
baked into the program as literals, so grid points that differ only in those numbers trace to
the same program and a sweep can run them as one batched, compiled program
(`heterogeneity.experiment._batched`).
Hyperparameters are plain JSON values (numbers, strings, bools, None, lists, dicts), so
that the id is stable across processes and the result files are self-describing.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import json
import math
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax

__all__ = [
    "RunSpec", "SweepConfig", "resolve", "run_id", "optimizer_kwargs", "make_optimizer", "partition_from_spec",
    "canonical_scale", "SCALES", "validate_points", "describe_point", "check_overrides", "DEFAULT_DIVERGENCE_FACTOR",
]

DEFAULT_DIVERGENCE_FACTOR = 1e3
"""A run whose loss exceeds this multiple of its initial loss is recorded as ``diverged``."""

SCALES = ("laptop", "gpu")
_ALIASES = {"accelerator": "gpu", "cpu": "laptop"}


class RunSpec(NamedTuple):
    """What a config's ``build(hparams)`` returns: the arguments of one `train` call.

    ``summarize(result) -> dict`` (optional) adds scalar metrics to the run record's
    ``final`` (e.g. ``sup_t Λ_G`` from an eval history); ``extras`` are static facts recorded
    with the run (e.g. the exact ``Λ_P`` of the problem). ``checkpoint_every`` (optional)
    makes a sweep run this point on its own and resumable: `train` checkpoints into
    ``OUT/train/<run_id>`` every that many steps (``heterogeneity sweep --checkpoint-every``
    sets it for every point).
    """

    loss_fn: Callable
    params: Any
    optimizer: Any
    num_steps: int
    batches: Any = None
    key: Any = None
    eval_fn: Callable | None = None
    eval_every: int | None = None
    log_every: int = 1
    partition: Any = None
    num_workers: int | None = None
    summarize: Callable | None = None
    extras: Mapping[str, Any] = {}
    checkpoint_every: int | None = None


Grid = Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Sequence[Any]]]


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """One experiment: a grid over hyperparameters and how to build a run (see module docstring)."""

    name: str
    build: Callable[[dict], RunSpec]
    grid: Grid
    base: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    scales: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=lambda: {"laptop": {}, "gpu": {}})
    smoke: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    smoke_grid: Grid | None = None
    metric: str = "final_loss"
    description: str = ""
    validate: Callable[[dict], Any] | None = None
    divergence_factor: float | None = DEFAULT_DIVERGENCE_FACTOR

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("SweepConfig.name must be a non-empty string")
        if not callable(self.build):
            raise ValueError(f"SweepConfig {self.name!r}: build must be callable hparams -> RunSpec")
        _subgrids(self.grid, f"SweepConfig {self.name!r}: grid")
        if self.smoke_grid is not None:
            _subgrids(self.smoke_grid, f"SweepConfig {self.name!r}: smoke_grid")
        unknown = set(self.scales) - set(SCALES)
        if unknown:
            raise ValueError(f"SweepConfig {self.name!r}: unknown scales {sorted(unknown)}; use {list(SCALES)}")
        if self.validate is not None and not callable(self.validate):
            raise ValueError(f"SweepConfig {self.name!r}: validate must be callable hparams -> None "
                             "(raising ValueError on bad input)")
        f = self.divergence_factor
        if f is not None and (isinstance(f, bool) or not isinstance(f, (int, float)) or not 1 <= f < math.inf):
            raise ValueError(f"SweepConfig {self.name!r}: divergence_factor must be None or a finite number >= 1, "
                             f"got {f!r}")


def _subgrids(grid: Grid, what: str) -> list[dict[str, list]]:
    subs = [grid] if isinstance(grid, Mapping) else list(grid)
    if not subs:
        raise ValueError(f"{what} is empty")
    out = []
    for i, sub in enumerate(subs):
        if not isinstance(sub, Mapping):
            raise ValueError(f"{what}[{i}] must be a dict axis -> list of values, got {type(sub).__name__}")
        axes = {}
        for axis, values in sub.items():
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
                raise ValueError(f"{what}: axis {axis!r} must be a non-empty list of values, got {values!r}")
            axes[str(axis)] = list(values)
        out.append(axes)
    return out


def _check_json(value: Any, where: str) -> None:
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"hyperparameter {where} = {value!r} is not finite")
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_json(v, f"{where}[{i}]")
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"hyperparameter {where} has a non-string key {k!r}")
            _check_json(v, f"{where}.{k}")
        return
    raise ValueError(f"hyperparameter {where} = {value!r} ({type(value).__name__}) is not a plain JSON value")


def canonical_scale(scale: str) -> str:
    scale = _ALIASES.get(scale, scale)
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {list(SCALES)} (or 'accelerator'), got {scale!r}")
    return scale


def resolve(config: SweepConfig, *, scale: str = "laptop", smoke: bool = False,
            overrides: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Ordered, de-duplicated list of resolved hyperparameter dicts (``base`` ⊕ scale ⊕ smoke ⊕ point).

    ``overrides`` (``--set key=value``) replace a key's value in every point that has it (a
    grid axis collapses to that one value; points made equal are kept once). Check the keys
    first with `check_overrides`: here an unknown key is simply never applied.
    """
    scale = canonical_scale(scale)
    overrides = dict(overrides or {})
    base = {**config.base, **config.scales.get(scale, {})}
    if smoke:
        base.update(config.smoke)
        if config.smoke_grid is not None:
            subs = _subgrids(config.smoke_grid, f"{config.name}: smoke_grid")
        else:
            subs = [{a: (v if a == "optimizer" else v[:1]) for a, v in sub.items()}
                    for sub in _subgrids(config.grid, f"{config.name}: grid")]
    else:
        subs = _subgrids(config.grid, f"{config.name}: grid")
    out, seen = [], set()
    for sub in subs:
        axes = list(sub)
        for values in itertools.product(*(sub[a] for a in axes)):
            hp = {**base, **dict(zip(axes, values))}
            hp.update({k: v for k, v in overrides.items() if k in hp})
            for k, v in hp.items():
                _check_json(v, k)
            rid = run_id(config.name, hp)
            if rid not in seen:
                seen.add(rid)
                out.append(hp)
    return out


def check_overrides(config: SweepConfig, overrides: Mapping[str, Any], *, scale: str = "laptop",
                    smoke: bool = False) -> None:
    """Raise ``ValueError`` (one line, with close names) for an override key no grid point has."""
    if not overrides:
        return
    known = grid_keys(resolve(config, scale=scale, smoke=smoke))
    for key, value in overrides.items():
        if key not in known:
            raise ValueError(unknown_hyperparameter("--set", key, value, config.name, known))
        _check_json(value, key)


def grid_keys(points: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every hyperparameter name of the grid ``points``, in first-seen order."""
    keys: list[str] = []
    for hp in points:
        keys.extend(k for k in hp if k not in keys)
    return keys


def unknown_hyperparameter(flag: str, key: str, value: Any, config_name: str, known: Sequence[str]) -> str:
    """The one-line error for ``flag key=value`` naming no hyperparameter of the grid: close names, then all."""
    close = difflib.get_close_matches(key, known, n=3)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return (f"{flag} {key}={json.dumps(value)}: {config_name} has no hyperparameter {key!r}.{hint} "
            f"Known: {', '.join(sorted(known))}")


def run_id(config_name: str, hparams: Mapping[str, Any]) -> str:
    """Deterministic id: first 16 hex digits of SHA-256 of the canonical JSON of (name, hparams)."""
    text = json.dumps({"config": config_name, "hparams": hparams}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def optimizer_kwargs(hparams: Mapping[str, Any], prefix: str = "opt.") -> dict[str, Any]:
    """Optimizer keyword arguments from the flat hyperparameters ``{"opt.b1": 0.9, ...}``."""
    return {k[len(prefix):]: v for k, v in hparams.items() if k.startswith(prefix)}


def partition_from_spec(spec: Any, params: Any = None):
    """A `heterogeneity.partition.Partition` from a JSON-able spec (so it can be a hyperparameter).

    A string is a name of `heterogeneity.partition.from_name` (the one map of names to
    partitions, shared with ``heterogeneity report --partition``): ``"leaf"``, ``"role"``,
    ``"layer"``, ``"single"``, ``"coordinate"`` (`heterogeneity.partition.PARTITION_NAMES`
    says what each builds). A Partition object is returned as is. ``params`` is not needed
    (every named partition resolves lazily) and kept for callers that pass it.
    """
    from heterogeneity import partition as hp_mod

    if isinstance(spec, hp_mod.Partition):
        return spec
    try:
        return hp_mod.from_name(spec)
    except ValueError as e:
        raise ValueError(f"{e} (or pass a heterogeneity.partition.Partition)") from None


def _seeded(name: Any, kwargs: dict, hparams: Mapping[str, Any]) -> dict:
    """``kwargs`` plus ``key=hparams["seed"]`` when the optimizer ``name`` requires a PRNG key
    (``sto_signsgd``, ``mvsm_v1``, ``mvsm_v2`` and their ``rotated_`` forms) and ``opt.key`` is not set."""
    import inspect

    from heterogeneity.optim._registry import factory

    if "key" in kwargs or "seed" not in hparams or not isinstance(name, str):
        return kwargs
    try:
        params = inspect.signature(factory(name)).parameters
    except ValueError:  # an unknown name: reported by the registry's own check
        return kwargs
    if "key" in params and params["key"].default is inspect.Parameter.empty:
        return {**kwargs, "key": int(hparams["seed"])}
    return kwargs


def make_optimizer(hparams: Mapping[str, Any], params: Any = None, *, learning_rate: Any = None,
                   inject: bool = True):
    """``heterogeneity.optim.get(hparams["optimizer"], learning_rate=..., **opt.* kwargs)``, injected.

    ``learning_rate`` defaults to ``hparams["lr"]`` (a config resolves symbolic rates such as
    "optimal" before calling). A string ``opt.partition`` is turned into a partition of
    ``params`` with `partition_from_spec`. Names and values are validated eagerly by the
    registry. With ``inject`` (default) the optimizer is
    ``optax.inject_hyperparams(factory(name, **structural))(learning_rate=lr, **numeric)``: the
    same algorithm, with every numeric hyperparameter held in the optimizer state (as the
    parameters' float dtype, at least float32), so that points differing only in those numbers
    share one compiled program (see the module docstring).
    """
    from heterogeneity.optim._registry import _STRUCTURAL, ROTATED_PREFIX, factory, get

    if "optimizer" not in hparams:
        raise ValueError(f"hyperparameters need an 'optimizer' name; got keys {sorted(hparams)}")
    name = hparams["optimizer"]
    kwargs = _seeded(name, optimizer_kwargs(hparams), hparams)
    if "partition" in kwargs and not hasattr(kwargs["partition"], "layout"):
        kwargs["partition"] = partition_from_spec(kwargs["partition"], params)
    lr = hparams.get("lr") if learning_rate is None else learning_rate
    if lr is None or isinstance(lr, str):
        raise ValueError(f"learning rate must be a number (resolve {lr!r} in the config's build first)")
    plain = get(name, learning_rate=lr, **kwargs)  # the registry's eager checks, with its error messages
    if not inject:
        return plain
    static_keys = set(_STRUCTURAL) | ({"rotation", "depth"} if str(name).startswith(ROTATED_PREFIX) else set())
    structural = {k: kwargs.pop(k) for k in list(kwargs) if k in static_keys}
    dtype = None
    if params is not None and jax.tree.leaves(params):
        import jax.numpy as jnp
        import optax

        highest = optax.tree.dtype(params, "highest")
        if jnp.issubdtype(highest, jnp.floating) and jnp.dtype(highest).itemsize < 4:
            dtype = jnp.float32  # bf16 would round b2 = 0.999 to 1
    import optax

    return optax.inject_hyperparams(factory(name, **structural), hyperparam_dtype=dtype)(learning_rate=lr, **kwargs)


def _axes(config: SweepConfig) -> list[str]:
    axes: list[str] = []
    for grid in (config.grid, config.smoke_grid):
        if grid is not None:
            for sub in _subgrids(grid, config.name):
                axes.extend(a for a in sub if a not in axes)
    return axes


def describe_point(config: SweepConfig, hparams: Mapping[str, Any]) -> str:
    """The swept axes of a point, ``optimizer='adam', lr=0.001, seed=0`` (for messages)."""
    return ", ".join(f"{a}={hparams[a]!r}" for a in _axes(config) if a in hparams)


def _point_error(config: SweepConfig, hp: Mapping[str, Any], cache: dict) -> str | None:
    """Why ``hp`` cannot run (registry names, optimizer hyperparameters, ``config.validate``), or None."""
    from heterogeneity import models
    from heterogeneity import partition as hp_mod
    from heterogeneity.optim._registry import get

    if "optimizer" in hp:
        name = hp["optimizer"]
        kwargs = _seeded(name, optimizer_kwargs(hp), hp)
        lr = hp.get("lr")
        key = json.dumps([name, kwargs, lr], sort_keys=True, default=repr)
        if key not in cache:
            cache[key] = None
            try:
                if not isinstance(name, str):
                    raise ValueError(f"optimizer must be a registry name (a string), got {name!r}")
                spec = kwargs.get("partition")
                if isinstance(spec, str):
                    try:
                        kwargs["partition"] = hp_mod.from_name(spec)
                    except ValueError as e:
                        raise ValueError(f"opt.partition: {e}") from None
                numeric_lr = isinstance(lr, (int, float)) and not isinstance(lr, bool)
                get(name, learning_rate=lr if numeric_lr else 1e-3, **kwargs)
            except (ValueError, TypeError) as e:
                cache[key] = " ".join(str(e).split())
        if cache[key] is not None:
            return cache[key]
    model = hp.get("model")
    if isinstance(model, str) and model not in models.MODELS:
        close = difflib.get_close_matches(model, list(models.MODELS), n=3)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return f"unknown model {model!r}.{hint} Valid names: {', '.join(sorted(models.MODELS))}"
    if config.validate is not None:
        try:
            config.validate(dict(hp))
        except (ValueError, TypeError, KeyError) as e:
            return " ".join(str(e).split()) or type(e).__name__
    return None


def validate_points(config: SweepConfig, points: Sequence[Mapping[str, Any]]) -> None:
    """Check every grid point before anything runs; raise one ``ValueError`` line for the first bad one.

    Checked: the optimizer name (the registry suggests close names), its ``opt.*``
    hyperparameters and the learning rate (names, types and ranges, by constructing the
    optimizer once per distinct combination), a ``model`` name against
    `heterogeneity.models.MODELS`, and the config's own ``validate``. An empty grid is an error.
    """
    if not points:
        raise ValueError(f"{config.name}: the grid has no points")
    cache: dict = {}
    bad: dict[str, list[int]] = {}
    for i, hp in enumerate(points):
        msg = _point_error(config, hp, cache)
        if msg is not None:
            bad.setdefault(msg, []).append(i)
    if bad:
        msg, where = next(iter(bad.items()))
        n = sum(len(v) for v in bad.values())
        count = f" ({n} of {len(points)} grid points are invalid)" if n > 1 else ""
        raise ValueError(f"{config.name}: grid point {where[0] + 1}/{len(points)} "
                         f"({describe_point(config, points[where[0]])}): {msg}{count}")
