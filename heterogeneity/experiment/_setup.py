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

from heterogeneity import data as hd
from heterogeneity import models as hmod
from heterogeneity import partition as hp
from heterogeneity.curvature import microbatch
from heterogeneity.experiment._checkpoint import load_params

__all__ = ["Setup", "setup", "SETUPS", "make_partition"]


class Setup(NamedTuple):
    loss_fn: Callable
    params: Any
    batch: Any
    attention_fn: Callable | None
    attention_mask: Any
    meta: dict


# name -> (data, model config, quick model config, batch size, quick batch size)
SETUPS: dict[str, dict[str, Any]] = {
    "gpt": dict(data="shakespeare", model=dict(d_model=48, num_heads=4, num_layers=2, max_len=48),
                quick=dict(d_model=16, num_heads=2, num_layers=1, max_len=16), batch=32, quick_batch=8),
    "transformer": dict(data="synthetic", model=dict(d_model=48, num_heads=4, num_layers=2, max_len=32),
                        quick=dict(d_model=16, num_heads=2, num_layers=1, max_len=16), batch=128, quick_batch=32),
    "vit": dict(data="digits", model=dict(image_size=8, patch_size=2, in_channels=1, d_model=32, num_heads=4,
                                          num_layers=2), quick=dict(d_model=16, num_heads=2, num_layers=1),
                batch=256, quick_batch=32),
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


def _data(kind: str, *, seed: int, seq_len: int):
    if kind == "shakespeare":
        return "text", hd.load_shakespeare(max_chars=400_000)
    if kind == "digits":
        return "digits", None
    if kind == "synthetic":
        return "synthetic", hd.synthetic_sequences("order", key=seed, seq_len=seq_len, vocab_size=16)
    path = Path(kind)
    if path.exists() or kind.endswith(".txt"):
        return "text", hd.load_text(path)
    raise ValueError(f"unknown data {kind!r}; choose shakespeare, digits, synthetic or a path to a text file")


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
    """Build the named setup; params come from ``checkpoint`` (``.npz``) when given."""
    if model not in SETUPS:
        raise ValueError(f"unknown model {model!r} for the report; choose from {sorted(SETUPS)}")
    spec = SETUPS[model]
    cfg = dict(spec["model"], **(spec["quick"] if quick else {}))
    batch_size = batch_size or (spec["quick_batch"] if quick else spec["batch"])
    key = jax.random.key(seed)
    kind, source = _data(data or spec["data"], seed=seed, seq_len=cfg.get("max_len", 16))
    meta = {"model": model, "data": data or spec["data"], "seed": seed, "batch_size": batch_size,
            "model_config": cfg}
    attention_fn = attention_mask = None

    if kind == "text":
        if model != "gpt":
            raise ValueError(f"text data needs the gpt model, got {model!r}")
        net = hmod.build("gpt", vocab_size=source.vocab_size, norm=norm, seed=seed, **cfg)
        apply_fn, params = hmod.functional(net)
        loss_fn = hmod.lm_loss(apply_fn)
        batch = source.sample_batch("train", batch_size, cfg["max_len"], key)
        s = cfg["max_len"]
        attention_mask = jnp.tril(jnp.ones((s, s), bool))
    else:
        if kind == "synthetic":
            if model != "transformer":
                raise ValueError(f"synthetic sequences need the transformer model, got {model!r}")
            ds = source
            net = hmod.build("transformer", vocab_size=16, num_classes=2, norm=norm, seed=seed, **cfg)
        else:
            if model in ("gpt", "transformer"):
                raise ValueError(f"{model} needs sequence data, not digits")
            ds = hd.load_digits(layout="flat" if model == "mlp" else "image", key=seed)
            extra = {} if model in ("cnn", "mlp", "mixer") else {"norm": norm}
            net = hmod.build(model, num_classes=ds.num_classes, seed=seed, **cfg, **extra)
        apply_fn, params = hmod.functional(net)
        loss_fn = hmod.classification_loss(apply_fn)
        batch = hd.sample_batch(ds.x_train, ds.y_train, min(batch_size, len(ds.y_train)), key)
    meta["norm"] = norm

    if model in ("gpt", "transformer", "vit"):
        def attention_fn(p, b):
            return apply_fn(p, b["x"], return_attention=True)[1]

    if checkpoint is not None:
        params = load_params(checkpoint, params)
        meta["checkpoint"] = str(checkpoint)
    if microbatches > 1:
        batch = microbatch(batch, microbatches)
        if attention_fn is not None:
            inner = attention_fn

            def attention_fn(p, mb):  # attention of the first micro-batch is representative and cheap
                return inner(p, jax.tree.map(lambda x: x[0], mb.batch))
    meta["microbatches"] = microbatches
    return Setup(loss_fn, params, batch, attention_fn, attention_mask, meta)
