"""Run builders shared by the model configs: classifiers on digits / synthetic sequences, char LMs.

A config's ``build(hp)`` calls `classifier_run` or `lm_run`, which read the model and data
hyperparameters from ``hp`` and return a `RunSpec`. Common protocol ([Tomihari25, App. C.1],
[Xie24, App. D.1]): the learning rate is tuned on the *training* loss, so every run evaluates the loss on a
fixed subset of the training data (``eval_train_loss``, the configs' headline metric) besides
the validation loss / accuracy.

Optimizer hyperparameters beyond the registry's (`make_optimizer`):

* ``clip``: global-norm gradient clipping threshold applied before the optimizer
  ([Tomihari25, App. C.1] clips at 1.0), ``None`` for none;
* ``schedule``: the learning-rate multiplier over the run, ``"constant"``, ``"cosine"`` (to 0),
  ``"linear"`` (to 0), or ``"linear_warmup"`` (linear warm-up over ``warmup`` of the steps, then
  linear decay); [Tomihari25, Fig. 5]. It multiplies the optimizer's update, so the learning rate itself
  stays an injected hyperparameter and points that differ only in ``lr`` still batch.

Model hyperparameters: ``model`` ∈ {transformer, vit, mixer, cnn, mlp} for `classifier_run`
(``data``: ``"order"`` / ``"majority"`` synthetic sequences for the encoder, ``"digits"`` for the
image models), and the GPT sizes for `lm_run`.
"""
from __future__ import annotations

import functools
import json
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from heterogeneity import data, models
from heterogeneity import partition as hpart
from heterogeneity.experiment._config import RunSpec, make_optimizer

TRAIN_EVAL = 1024  # training examples in the fixed training-loss subset


def schedule_fn(name: str, steps: int, warmup: float = 0.1) -> Callable | None:
    """The multiplier ``s(t) ∈ [0, 1]`` of the named schedule (None for ``"constant"``)."""
    steps = max(int(steps), 1)
    if name == "constant":
        return None
    if name == "cosine":
        return optax.cosine_decay_schedule(1.0, steps)
    if name == "linear":
        return optax.linear_schedule(1.0, 0.0, steps)
    if name == "linear_warmup":
        w = max(int(round(warmup * steps)), 1)
        return optax.join_schedules([optax.linear_schedule(0.0, 1.0, w), optax.linear_schedule(1.0, 0.0, steps - w)],
                                    [w])
    raise ValueError(f"schedule must be constant, cosine, linear or linear_warmup, got {name!r}")


def optimizer(hp, params):
    """`make_optimizer` with the optional ``clip`` and ``schedule`` of the module docstring."""
    parts = []
    if hp.get("clip") is not None:
        parts.append(optax.clip_by_global_norm(float(hp["clip"])))
    parts.append(make_optimizer(hp, params))
    shape = schedule_fn(hp.get("schedule", "constant"), int(hp["steps"]), float(hp.get("warmup", 0.1)))
    if shape is not None:
        parts.append(optax.scale_by_schedule(shape))
    return parts[0] if len(parts) == 1 else optax.chain(*parts)


@functools.lru_cache(maxsize=8)
def dataset(name: str, seq_len: int = 16, vocab_size: int = 16, num_train: int = 4096, data_seed: int = 0):
    if name == "digits":  # standardised pixels: no blank patch gives an all-zero token (see js0_init)
        return data.load_digits(layout="image", scaling="standardize", key=data_seed)
    if name == "digits_flat":
        return data.load_digits(layout="flat", scaling="unit", key=data_seed)
    return data.synthetic_sequences(name, key=data_seed, num_train=num_train, num_val=512, seq_len=seq_len,
                                    vocab_size=vocab_size)


MODEL_KEYS = ("model", "data", "seq_len", "vocab_size", "num_train", "data_seed", "d_model", "num_heads", "num_layers",
              "norm", "seed", "hidden", "channels", "patch_size", "scale_c")


def classifier(hp):
    """``(apply_fn, params, loss_fn, dataset)`` for the model and data named in ``hp``.

    Built once per model, data and seed (the ``MODEL_KEYS`` of ``hp``): the points of a sweep that
    differ only in optimizer or learning rate share the same objects, so programs keyed on
    ``loss_fn`` compile once. Callers must not mutate what it returns.
    """
    return _classifier(json.dumps({k: hp[k] for k in MODEL_KEYS if k in hp}, sort_keys=True))


@functools.lru_cache(maxsize=32)
def _classifier(model_json: str):
    hp = json.loads(model_json)
    name = hp["model"]
    if name == "transformer":
        ds = dataset(hp["data"], int(hp["seq_len"]), int(hp["vocab_size"]), int(hp["num_train"]),
                     int(hp.get("data_seed", 0)))
        net = models.build("transformer", vocab_size=int(hp["vocab_size"]), max_len=int(hp["seq_len"]),
                           d_model=int(hp["d_model"]), num_heads=int(hp["num_heads"]),
                           num_layers=int(hp["num_layers"]), num_classes=2, norm=hp["norm"], seed=int(hp["seed"]))
    else:
        ds = dataset("digits_flat" if name == "mlp" else "digits", data_seed=int(hp.get("data_seed", 0)))
        if name == "mlp":
            cfg = dict(in_features=64, hidden=tuple(hp["hidden"]), output_scale=float(hp.get("scale_c", 1.0)))
        elif name == "cnn":
            cfg = dict(in_channels=1, channels=tuple(hp["channels"]))
        elif name == "vit":
            cfg = dict(image_size=8, patch_size=int(hp["patch_size"]), in_channels=1, d_model=int(hp["d_model"]),
                       num_heads=int(hp["num_heads"]), num_layers=int(hp["num_layers"]), norm=hp.get("norm", "pre"))
        elif name == "mixer":
            cfg = dict(image_size=8, patch_size=int(hp["patch_size"]), in_channels=1, d_model=int(hp["d_model"]),
                       num_layers=int(hp["num_layers"]))
        else:
            raise ValueError(f"classifier_run: unknown model {name!r}")
        net = models.build(name, num_classes=ds.num_classes, seed=int(hp["seed"]), **cfg)
    apply_fn, params = models.functional(net)
    return apply_fn, params, models.classification_loss(apply_fn), ds


def classifier_run(hp, *, params=None, summarize=None, extra_eval=None, opt=None) -> RunSpec:
    """One classification run (module docstring); ``params`` replaces the model's initial ones."""
    apply_fn, init, loss_fn, ds = classifier(hp)
    params = init if params is None else params
    train_split = jax.tree.map(jnp.asarray, ds.train)
    n = int(train_split["y"].shape[0])
    fixed = jax.tree.map(lambda a: a[: min(TRAIN_EVAL, n)], train_split)
    val = jax.tree.map(jnp.asarray, ds.val)
    batch_size = min(int(hp["batch_size"]), n)

    @jax.jit
    def batches(step, key):  # one compiled sampler instead of eager ops
        return data.sample_split(train_split, batch_size, key)

    def eval_fn(p):
        logits = apply_fn(p, val["x"])
        out = {"train_loss": loss_fn(p, fixed), "val_loss": loss_fn(p, val),
               "val_acc": jnp.mean(jnp.argmax(logits, -1) == val["y"])}
        if extra_eval is not None:
            out.update(extra_eval(p))
        return out

    partition = hpart.by_leaf(params)
    return RunSpec(
        loss_fn=loss_fn, params=params, optimizer=opt if opt is not None else optimizer(hp, params),
        num_steps=int(hp["steps"]), batches=batches, key=jax.random.key(1000 + int(hp["seed"])), eval_fn=eval_fn,
        eval_every=int(hp["eval_every"]), log_every=int(hp["log_every"]), partition=partition, summarize=summarize,
        extras={"num_params": int(sum(x.size for x in jax.tree.leaves(params))),
                "num_blocks": len(partition.labels(params))},
    )


@functools.lru_cache(maxsize=2)
def corpus(max_chars):
    return data.load_shakespeare(max_chars=max_chars)


def gpt(hp, text=None):
    """``(apply_fn, params, loss_fn)`` of the char GPT sized by ``hp``."""
    text = text or corpus(hp.get("max_chars"))
    net = models.build("gpt", seed=int(hp["seed"]), vocab_size=text.vocab_size, max_len=int(hp["block_size"]),
                       d_model=int(hp["d_model"]), num_heads=int(hp["num_heads"]), num_layers=int(hp["num_layers"]))
    apply_fn, params = models.functional(net)
    return apply_fn, params, models.lm_loss(apply_fn)


def lm_run(hp, *, params=None, tokens=None, eval_tokens=None, summarize=None, opt=None) -> RunSpec:
    """A char-GPT run on ``tokens`` (default: the Shakespeare training split); ``params`` replaces the init.

    Evaluates the loss on fixed windows of the training stream (``train_loss``) and of
    ``eval_tokens`` (default: the validation split; ``val_loss``).
    """
    text = corpus(hp.get("max_chars"))
    apply_fn, init, loss_fn = gpt(hp, text)
    params = init if params is None else params
    block, batch_size = int(hp["block_size"]), int(hp["batch_size"])
    train_tokens = jnp.asarray(text.train if tokens is None else tokens)
    eval_tokens = jnp.asarray(text.val if eval_tokens is None else eval_tokens)
    k = jax.random.key(12345)
    train_batch = data.sample_windows(train_tokens, int(hp["val_windows"]), block, k)
    val_batch = data.sample_windows(eval_tokens, int(hp["val_windows"]), block, k)

    @jax.jit
    def batches(step, key):
        return data.sample_windows(train_tokens, batch_size, block, key)

    def eval_fn(p):
        return {"train_loss": loss_fn(p, train_batch), "val_loss": loss_fn(p, val_batch)}

    partition = hpart.by_leaf(params)
    return RunSpec(
        loss_fn=loss_fn, params=params, optimizer=opt if opt is not None else optimizer(hp, params),
        num_steps=int(hp["steps"]), batches=batches, key=jax.random.key(1000 + int(hp["seed"])), eval_fn=eval_fn,
        eval_every=int(hp["eval_every"]), log_every=int(hp["log_every"]), partition=partition, summarize=summarize,
        extras={"num_params": int(sum(x.size for x in jax.tree.leaves(params))), "vocab_size": text.vocab_size},
    )


def finite_or_nan(x: Any) -> float:
    x = float(x)
    return x if x == x and abs(x) != float("inf") else float("nan")
