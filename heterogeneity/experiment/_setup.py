"""Ready-made (model, data, loss, batch) setups for the report and the tutorials.

`setup("gpt")` builds a small causal char-level GPT on the shipped Shakespeare corpus (the
report's embedded default, seed 000 App. D.10 at laptop scale); `"transformer"` is the
encoder classifier with Pre-/Post-/No-LN on a synthetic sequence task (seed 000 §4.7);
`"vit"`, `"mixer"`, `"cnn"` and `"mlp"` use scikit-learn's real 8×8 digits. Everything is
offline and deterministic in ``seed``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from heterogeneity import data as hd
from heterogeneity import models as hmod
from heterogeneity import partition as hp
from heterogeneity.curvature import microbatch
from heterogeneity.experiment._checkpoint import check_checkpoint, load_params

__all__ = ["Setup", "setup", "SETUPS", "DATA", "make_partition", "data_kind", "check_model_data",
           "default_batch_size"]


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


def make_partition(name: str, params) -> hp.Partition:
    """``"leaf"`` (one block per tensor, the papers' blocks), ``"role"`` or ``"layer"``."""
    if name == "leaf":
        return hp.by_leaf(params)
    if name == "role":
        return hp.by_role(per_layer=True, default="other")
    if name == "layer":
        return hp.by_layer()
    raise ValueError(f"unknown partition {name!r}; choose 'leaf', 'role' or 'layer'")


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
            ds = hd.load_digits(layout="flat" if model == "mlp" else "image", key=seed)
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
    if microbatches > 1:
        batch = microbatch(batch, microbatches)
        if attention_fn is not None:
            inner = attention_fn

            def attention_fn(p, mb):  # attention of the first micro-batch is representative and cheap
                return inner(p, jax.tree.map(lambda x: x[0], mb.batch))
    meta["microbatches"] = microbatches
    return Setup(loss_fn, params, batch, attention_fn, attention_mask, meta)
