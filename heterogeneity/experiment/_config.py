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
* ``build(hparams) -> RunSpec``: everything `train` needs for one run.

`resolve` turns a config into the ordered list of resolved hyperparameter dicts; `run_id`
hashes one of them (with the config name) into the deterministic id of its result file.
Hyperparameters are plain JSON values (numbers, strings, bools, None, lists, dicts), so
that the id is stable across processes and the result files are self-describing.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
from typing import Any, Callable, Mapping, NamedTuple, Sequence

__all__ = [
    "RunSpec", "SweepConfig", "resolve", "run_id", "optimizer_kwargs", "make_optimizer", "partition_from_spec",
    "canonical_scale", "SCALES",
]

SCALES = ("laptop", "gpu")
_ALIASES = {"accelerator": "gpu", "cpu": "laptop"}


class RunSpec(NamedTuple):
    """What a config's ``build(hparams)`` returns: the arguments of one `train` call.

    ``summarize(result) -> dict`` (optional) adds scalar metrics to the run record's
    ``final`` (e.g. ``sup_t Λ_G`` from an eval history); ``extras`` are static facts recorded
    with the run (e.g. the exact ``Λ_P`` of the problem).
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


def resolve(config: SweepConfig, *, scale: str = "laptop", smoke: bool = False) -> list[dict[str, Any]]:
    """Ordered, de-duplicated list of resolved hyperparameter dicts (``base`` ⊕ scale ⊕ smoke ⊕ point)."""
    scale = canonical_scale(scale)
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
            for k, v in hp.items():
                _check_json(v, k)
            rid = run_id(config.name, hp)
            if rid not in seen:
                seen.add(rid)
                out.append(hp)
    return out


def run_id(config_name: str, hparams: Mapping[str, Any]) -> str:
    """Deterministic id: first 16 hex digits of SHA-256 of the canonical JSON of (name, hparams)."""
    text = json.dumps({"config": config_name, "hparams": hparams}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def optimizer_kwargs(hparams: Mapping[str, Any], prefix: str = "opt.") -> dict[str, Any]:
    """Optimizer keyword arguments from the flat hyperparameters ``{"opt.b1": 0.9, ...}``."""
    return {k[len(prefix):]: v for k, v in hparams.items() if k.startswith(prefix)}


_PARTITIONS = {
    "leaf": lambda hp_mod: hp_mod.by_leaf,
    "role": lambda hp_mod: lambda params: hp_mod.by_role(per_layer=True),
    "layer": lambda hp_mod: lambda params: hp_mod.by_layer(depth=2),
    "single": lambda hp_mod: lambda params: hp_mod.single_block("all"),
    "coordinate": lambda hp_mod: lambda params: hp_mod.by_coordinate(),
}


def partition_from_spec(spec: Any, params: Any):
    """A `heterogeneity.partition.Partition` from a JSON-able spec (so it can be a hyperparameter).

    ``"leaf"`` (one block per leaf, bound to ``params``), ``"role"`` (per-layer roles),
    ``"layer"`` (first two path components), ``"single"`` (one block: AdaSGD's extreme),
    ``"coordinate"`` (every scalar: Adam's extreme); a Partition object is returned as is.
    """
    from heterogeneity import partition as hp_mod

    if isinstance(spec, hp_mod.Partition):
        return spec
    if spec not in _PARTITIONS:
        raise ValueError(f"partition spec must be one of {sorted(_PARTITIONS)} or a Partition, got {spec!r}")
    return _PARTITIONS[spec](hp_mod)(params)


def make_optimizer(hparams: Mapping[str, Any], params: Any = None, *, learning_rate: Any = None):
    """``heterogeneity.optim.get(hparams["optimizer"], learning_rate=..., **opt.* kwargs)``.

    ``learning_rate`` defaults to ``hparams["lr"]`` (a config resolves symbolic rates such as
    "optimal" before calling). A string ``opt.partition`` is turned into a partition of
    ``params`` with `partition_from_spec`.
    """
    try:
        from heterogeneity.optim import get
    except ImportError:  # registry not re-exported (yet): use the module itself
        from heterogeneity.optim._registry import get
    if "optimizer" not in hparams:
        raise ValueError(f"hyperparameters need an 'optimizer' name; got keys {sorted(hparams)}")
    kwargs = optimizer_kwargs(hparams)
    if "partition" in kwargs and not hasattr(kwargs["partition"], "layout"):
        kwargs["partition"] = partition_from_spec(kwargs["partition"], params)
    lr = hparams.get("lr") if learning_rate is None else learning_rate
    if lr is None or isinstance(lr, str):
        raise ValueError(f"learning rate must be a number (resolve {lr!r} in the config's build first)")
    return get(hparams["optimizer"], learning_rate=lr, **kwargs)
