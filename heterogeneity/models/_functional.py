"""Pure functions from NNX models: ``functional(model) -> (apply_fn, params)`` and loss helpers.

``params`` is a plain nested dict of arrays (`nnx.to_pure_dict` of the `nnx.Param` state),
so its paths are the naming-contract paths (``layers/0/attn/query/kernel``) with no NNX
wrapper objects, and every pytree tool (Optax, `heterogeneity.partition`, `jax.hessian`)
applies directly. ``apply_fn(params, x, **kwargs)`` rebuilds the module with `nnx.merge`
inside the trace and calls it: a pure, jit-able function of ``params``.

BatchNorm and curvature. A Hessian is only well defined for a fixed function of the
parameters; BatchNorm makes the function depend on *how* statistics are taken:

* ``batch_stats="eval"`` (default): normalise with the stored running statistics, as
  PyHessian does (``model.eval()``). The function is then a deterministic function of
  ``params`` and the input alone, per example, so batches can be split and averaged.
* ``batch_stats="batch"``: normalise with the statistics of the batch passed in, as in
  training (``model.train()``); the statistics are differentiated through (they are
  functions of the parameters of earlier layers), as the training loss is. The running
  averages are *not* updated (the update is discarded): ``apply_fn`` stays pure. The
  result depends on the composition of the batch, so micro-batched Hessians differ.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

__all__ = ["functional", "classification_loss", "lm_loss"]


def functional(model: nnx.Module, *, batch_stats: str = "eval") -> tuple[Callable[..., Any], dict]:
    """``(apply_fn, params)`` with ``apply_fn(params, x, **kwargs) == model(x, **kwargs)`` (pure).

    ``batch_stats``: ``"eval"`` (running statistics; deterministic in params) or ``"batch"``
    (per-batch statistics) for models with BatchNorm; ignored by models without it. Any
    Dropout is made deterministic. Non-parameter state (BatchNorm running statistics) is
    captured as constants at call time.
    """
    if batch_stats not in ("eval", "batch"):
        raise ValueError(f"batch_stats must be 'eval' or 'batch', got {batch_stats!r}")
    view = nnx.view(model, use_running_average=batch_stats == "eval", deterministic=True, raise_if_not_found=False)
    graphdef, params_state, rest_state = nnx.split(view, nnx.Param, ...)
    params = nnx.to_pure_dict(params_state)
    rest = nnx.to_pure_dict(rest_state)

    def apply_fn(params, x, **kwargs):
        module = nnx.merge(graphdef, params, rest)
        return module(x, **kwargs)

    return apply_fn, params


def classification_loss(apply_fn: Callable[..., Any]) -> Callable[[Any, dict], jax.Array]:
    """``loss_fn(params, batch)``: mean softmax cross-entropy, ``batch = {"x": inputs, "y": int labels}``."""

    def loss_fn(params, batch):
        _check_keys(batch, ("x", "y"), "classification_loss")
        logits = apply_fn(params, batch["x"])
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]))

    return loss_fn


def lm_loss(apply_fn: Callable[..., Any]) -> Callable[[Any, dict], jax.Array]:
    """``loss_fn(params, batch)``: mean next-token cross-entropy over all positions.

    ``batch`` is either ``{"x": tokens[:, :-1], "y": tokens[:, 1:]}`` or ``{"tokens": tokens}``
    (shape (B, S+1); split into inputs and shifted targets here).
    """

    def loss_fn(params, batch):
        if not isinstance(batch, dict):
            raise ValueError(f"lm_loss: batch must be a dict, got {type(batch).__name__}")
        if "tokens" in batch:
            tokens = batch["tokens"]
            x, y = tokens[:, :-1], tokens[:, 1:]
        else:
            _check_keys(batch, ("x", "y"), "lm_loss")
            x, y = batch["x"], batch["y"]
        logits = apply_fn(params, x)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))

    return loss_fn


def _check_keys(batch, keys, who):
    if not isinstance(batch, dict) or any(k not in batch for k in keys):
        got = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(f"{who}: batch must be a dict with keys {list(keys)}, got {got}")
