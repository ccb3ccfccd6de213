"""Ready-made (model, data, loss, batch) setups for the report and the tutorials.

`setup("gpt")` builds a small causal char-level GPT on the shipped Shakespeare corpus (the
report's embedded default, [Tomihari25, App. D.10] at laptop scale); `"transformer"` is the
encoder classifier with Pre-/Post-/No-LN on a synthetic sequence task [Tomihari25, §4.7];
`"vit"`, `"mixer"`, `"cnn"` and `"mlp"` use scikit-learn's real 8×8 digits. Everything is
offline and deterministic in ``seed``.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from heterogeneity import data as hd
from heterogeneity import models as hmod
from heterogeneity import partition as hp
from heterogeneity.curvature import microbatch
from heterogeneity._deprecation import deprecated_alias
from heterogeneity.experiment._checkpoint import check_checkpoint, load_params

__all__ = ["Setup", "setup", "SETUPS", "DATA", "make_partition", "data_kind", "check_model_data",
           "default_batch_size", "ReportInputs", "is_user_model", "load_builder", "user_setup"]


class Setup(NamedTuple):
    loss_fn: Callable
    params: Any
    batch: Any
    attention_fn: Callable | None
    attention_mask: Any
    meta: dict


# name -> (data, model config, quick model config, batch size, quick batch size); the report's batch
# of the sequence models holds 1.5-2.2k tokens, which keeps every report within 2 minutes on 2 cores
SETUPS: dict[str, dict[str, Any]] = {
    "gpt": dict(data="shakespeare", model=dict(d_model=48, num_heads=4, num_layers=2, max_len=48),
                quick=dict(d_model=16, num_heads=2, num_layers=1, max_len=16), batch=32, quick_batch=8),
    "transformer": dict(data="synthetic", model=dict(d_model=48, num_heads=4, num_layers=2, max_len=32),
                        quick=dict(d_model=16, num_heads=2, num_layers=1, max_len=16), batch=64, quick_batch=32),
    "vit": dict(data="digits", model=dict(image_size=8, patch_size=2, in_channels=1, d_model=32, num_heads=4,
                                          num_layers=2), quick=dict(d_model=16, num_heads=2, num_layers=1),
                batch=128, quick_batch=32),
    "mixer": dict(data="digits", model=dict(image_size=8, patch_size=2, in_channels=1, d_model=32, num_layers=2),
                  quick=dict(d_model=16, num_layers=1), batch=256, quick_batch=32),
    "cnn": dict(data="digits", model=dict(in_channels=1, channels=(8, 16)), quick=dict(channels=(4, 8)),
                batch=256, quick_batch=32),
    "mlp": dict(data="digits", model=dict(in_features=64, hidden=(64, 32)), quick=dict(hidden=(16,)),
                batch=256, quick_batch=32),
}


def _make_partition(name: str, params=None) -> hp.Partition:
    """``heterogeneity.partition.from_name(name)``; ``params`` is not needed."""
    return hp.from_name(name)


make_partition = deprecated_alias(_make_partition, "heterogeneity.experiment.make_partition",
                                  "heterogeneity.partition.from_name")


DATA = ("digits", "shakespeare", "synthetic")  # named data sets; anything else is a path to a text file


def data_kind(data: str) -> str:
    """``"text"``, ``"digits"`` or ``"synthetic"`` for a data name or a text-file path (reads nothing)."""
    if data == "shakespeare":
        return "text"
    if data in DATA:
        return data
    path = Path(data)
    if path.is_file():
        return "text"
    if path.exists():
        raise ValueError(f"data {data!r} is a directory, not a text file")
    if path.suffix or "/" in data or "\\" in data:  # meant as a path
        raise FileNotFoundError(f"data file {data!r}: no such file")
    raise ValueError(f"unknown data {data!r}; choose from {', '.join(DATA)} or a path to a text file")


def check_model_data(model: str, data: str | None = None) -> str:
    """Check that ``model`` is known and can run on ``data``; return the data kind (reads nothing)."""
    if model not in SETUPS:
        raise ValueError(f"unknown model {model!r} for the report; choose from {', '.join(sorted(SETUPS))}")
    kind = data_kind(data or SETUPS[model]["data"])
    if kind == "text" and model != "gpt":
        raise ValueError(f"text data needs the gpt model, got {model!r}")
    if kind == "synthetic" and model != "transformer":
        raise ValueError(f"synthetic sequences need the transformer model, got {model!r}")
    if kind == "digits" and model in ("gpt", "transformer"):
        raise ValueError(f"{model} needs sequence data, not digits")
    return kind


def default_batch_size(model: str, quick: bool = False) -> int:
    """The setup's batch size when none is given."""
    return SETUPS[model]["quick_batch" if quick else "batch"]


def _check_positive(name: str, value) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def _data(kind: str, data: str, *, seed: int, seq_len: int):
    if kind == "text":
        return hd.load_shakespeare(max_chars=400_000) if data == "shakespeare" else hd.load_text(Path(data))
    if kind == "synthetic":
        return hd.synthetic_sequences("order", key=seed, seq_len=seq_len, vocab_size=16)
    return None


def setup(
    model: str = "gpt",
    data: str | None = None,
    *,
    norm: str = "pre",
    seed: int = 0,
    batch_size: int | None = None,
    microbatches: int = 1,
    checkpoint: str | None = None,
    quick: bool = False,
) -> Setup:
    """Build the named setup; params come from ``checkpoint`` (``.npz``) when given.

    Every argument is checked before any data is read or model built. The batch of the digits
    and synthetic data is capped at the training-set size; ``microbatches`` must divide it."""
    kind = check_model_data(model, data)
    if batch_size is not None:
        _check_positive("batch_size", batch_size)
    _check_positive("microbatches", microbatches)
    requested = batch_size or default_batch_size(model, quick)
    if requested % microbatches:
        raise ValueError(f"microbatches={microbatches} does not divide the batch size {requested}")
    if checkpoint is not None:
        check_checkpoint(checkpoint)
    spec = SETUPS[model]
    cfg = dict(spec["model"], **(spec["quick"] if quick else {}))
    key = jax.random.key(seed)
    source = _data(kind, data or spec["data"], seed=seed, seq_len=cfg.get("max_len", 16))
    meta = {"model": model, "data": data or spec["data"], "seed": seed, "batch_size": requested,
            "model_config": cfg}
    attention_fn = attention_mask = None

    def restore(params):  # right after the model is built: a mismatch fails before any batch is drawn
        return params if checkpoint is None else load_params(checkpoint, params)

    if kind == "text":
        net = hmod.build("gpt", vocab_size=source.vocab_size, norm=norm, seed=seed, **cfg)
        apply_fn, params = hmod.functional(net)
        params = restore(params)
        loss_fn = hmod.lm_loss(apply_fn)
        batch = source.sample_batch("train", requested, cfg["max_len"], key)
        s = cfg["max_len"]
        attention_mask = jnp.tril(jnp.ones((s, s), bool))
    else:
        if kind == "synthetic":
            ds = source
            net = hmod.build("transformer", vocab_size=16, num_classes=2, norm=norm, seed=seed, **cfg)
        else:
            # patch models get standardised pixels: with [0, 1] pixels 27% of the 2x2 patches are blank, their
            # token is the zero-initialised patch bias, and LayerNorm of a zero vector amplifies it by 1/sqrt(eps)
            scaling = "standardize" if model in ("vit", "mixer") else "unit"
            ds = hd.load_digits(layout="flat" if model == "mlp" else "image", scaling=scaling, key=seed)
            meta["pixels"] = scaling
            extra = {} if model in ("cnn", "mlp", "mixer") else {"norm": norm}
            net = hmod.build(model, num_classes=ds.num_classes, seed=seed, **cfg, **extra)
        apply_fn, params = hmod.functional(net)
        params = restore(params)
        loss_fn = hmod.classification_loss(apply_fn)
        n_train = len(ds.y_train)
        if requested > n_train and n_train % microbatches:
            raise ValueError(f"microbatches={microbatches} does not divide the batch size {n_train} (batch_size "
                             f"{requested} capped at the {n_train} training examples)")
        batch = hd.sample_batch(ds.x_train, ds.y_train, min(requested, n_train), key)
        meta["batch_size"] = min(requested, n_train)
    meta["norm"] = norm

    if model in ("gpt", "transformer", "vit"):
        def attention_fn(p, b):
            return apply_fn(p, b["x"], return_attention=True)[1]

    if checkpoint is not None:
        meta["checkpoint"] = str(checkpoint)
    meta["params"] = f"checkpoint {checkpoint}" if checkpoint is not None else f"initial (init seed {seed})"
    if microbatches > 1:
        batch = microbatch(batch, microbatches)
        if attention_fn is not None:
            inner = attention_fn

            def attention_fn(p, mb):  # attention of the first micro-batch is representative and cheap
                return inner(p, jax.tree.map(lambda x: x[0], mb.batch))
    meta["microbatches"] = microbatches
    return Setup(loss_fn, params, batch, attention_fn, attention_mask, meta)


# ---------------------------------------------------------------------- the user's own model
class ReportInputs(NamedTuple):
    """What a user's builder returns for ``heterogeneity report --model package.module:build``.

    ``build()`` is called with no arguments and returns a `ReportInputs`, a plain tuple
    ``(loss_fn, params, batch[, attention_fn[, attention_mask]])`` or a dict with those keys:

    * ``loss_fn(params, batch) -> scalar``: the loss whose gradient and Hessian the report studies;
    * ``params``: a pytree of float arrays (the partition's blocks are its leaves);
    * ``batch``: any pytree ``loss_fn`` takes (``--microbatches m`` splits its leading axis);
    * ``attention_fn(params, batch) -> (L, ..., H, q, k)`` attention probabilities, optional;
    * ``attention_mask``: a boolean (q, k) mask for the attention statistics, optional.

        # mymodel.py, next to where `heterogeneity report --model mymodel:build` runs
        def build():
            params = {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}
            batch = {"x": jnp.ones((8, 4)), "y": jnp.zeros((8, 3))}
            return ReportInputs(lambda p, b: jnp.mean((b["x"] @ p["w"] + p["b"] - b["y"]) ** 2), params, batch)
    """

    loss_fn: Callable
    params: Any
    batch: Any
    attention_fn: Callable | None = None
    attention_mask: Any = None


def is_user_model(model: str) -> bool:
    """``"package.module:function"`` names a user's builder; a plain name a built-in setup."""
    return ":" in model


_SPEC = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")


def load_builder(spec: str) -> Callable:
    """Import ``package.module:function`` (the current directory is searched first) and return the callable.

    Raises:
        ValueError: a malformed spec, a module that does not import, a missing attribute or one
            that is not callable (one line naming which).
    """
    if not _SPEC.match(spec):
        raise ValueError(f"{spec!r} is not of the form package.module:function (dotted Python names; no file path)")
    module_name, attr = spec.split(":")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"cannot import module {module_name!r}: {type(e).__name__}: {e}") from None
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(cwd)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{spec} is not callable (a {type(obj).__name__}); give a function returning "
                         "(loss_fn, params, batch)")
    return obj


def _as_inputs(spec: str, got: Any) -> ReportInputs:
    expected = ("(loss_fn, params, batch[, attention_fn[, attention_mask]]), a dict with those keys or "
                "heterogeneity.experiment.ReportInputs")
    if isinstance(got, ReportInputs):
        inputs = got
    elif isinstance(got, dict):
        unknown = sorted(set(got) - set(ReportInputs._fields))
        missing = [k for k in ("loss_fn", "params", "batch") if k not in got]
        if unknown or missing:
            raise ValueError(f"{spec} returned a dict with keys {sorted(got)} (missing {missing}, unknown {unknown}); "
                             f"expected {expected}")
        inputs = ReportInputs(**got)
    elif isinstance(got, (tuple, list)) and 3 <= len(got) <= 5:
        inputs = ReportInputs(*got)
    else:
        shown = f"a {type(got).__name__} of length {len(got)}" if isinstance(got, (tuple, list)) else \
            f"a value of type {type(got).__name__}"
        raise ValueError(f"{spec} returned {shown}; expected {expected}")
    if not callable(inputs.loss_fn):
        raise ValueError(f"{spec} returned loss_fn = {type(inputs.loss_fn).__name__}, not a callable "
                         "loss_fn(params, batch)")
    leaves = jax.tree.leaves(inputs.params)
    if not leaves:
        raise ValueError(f"{spec} returned params with no arrays")
    bad = [type(x).__name__ if not hasattr(x, "dtype") else str(x.dtype) for x in leaves
           if not (hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating))]
    if bad:
        raise ValueError(f"{spec} returned params with leaves that are not float arrays "
                         f"({', '.join(sorted(set(bad)))})")
    if inputs.attention_fn is not None and not callable(inputs.attention_fn):
        raise ValueError(f"{spec} returned attention_fn = {type(inputs.attention_fn).__name__}, not a callable or None")
    return inputs


def user_setup(spec: str, *, microbatches: int = 1, checkpoint: str | None = None, seed: int = 0) -> Setup:
    """`Setup` from a user's builder ``package.module:function`` (`ReportInputs` is the protocol).

    The builder is imported (`load_builder`) and called with no arguments; its return is
    checked (shape of the tuple, callables, float params, a scalar loss by `jax.eval_shape`)
    before any compute. ``checkpoint`` replaces the params (same paths and shapes);
    ``microbatches`` splits the batch's leading axis.

    Raises:
        ValueError: one line naming what is wrong with the spec or the builder's return.
    """
    _check_positive("microbatches", microbatches)
    if checkpoint is not None:
        check_checkpoint(checkpoint)
    inputs = _as_inputs(spec, load_builder(spec)())
    params = inputs.params if checkpoint is None else load_params(checkpoint, inputs.params)
    loss = jax.eval_shape(inputs.loss_fn, params, inputs.batch)
    if not (hasattr(loss, "shape") and loss.shape == () and jnp.issubdtype(loss.dtype, jnp.floating)):
        raise ValueError(f"{spec}: loss_fn(params, batch) must return a float scalar, got "
                         f"{getattr(loss, 'shape', type(loss).__name__)} {getattr(loss, 'dtype', '')}".rstrip())
    batch, attention_fn = inputs.batch, inputs.attention_fn
    sizes = {int(np.shape(x)[0]) if np.ndim(x) else None for x in jax.tree.leaves(batch)}
    n = next(iter(sizes)) if len(sizes) == 1 else None
    if microbatches > 1:
        try:
            batch = microbatch(batch, microbatches)
        except ValueError as e:
            raise ValueError(f"microbatches={microbatches} cannot split {spec}'s batch: {e}") from None
        if attention_fn is not None:
            inner = attention_fn

            def attention_fn(p, mb):  # attention of the first micro-batch is representative and cheap
                return inner(p, jax.tree.map(lambda x: x[0], mb.batch))
    meta = {"model": spec, "seed": seed, "microbatches": microbatches,
            "params": f"checkpoint {checkpoint}" if checkpoint is not None else f"as returned by {spec}"}
    if n is not None:
        meta["batch_size"] = n
    if checkpoint is not None:
        meta["checkpoint"] = str(checkpoint)
    return Setup(inputs.loss_fn, params, batch, attention_fn, inputs.attention_mask, meta)
