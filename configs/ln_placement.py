"""[Tomihari25, §4.7 / Table 2]: LayerNorm placement and gradient heterogeneity, with SGD / SignSGD / Adam.

A transformer encoder (`heterogeneity.models.TransformerEncoder`) with ``norm`` ∈ {pre, post,
none} learns the synthetic two-class "order" task (`heterogeneity.data.synthetic_sequences`:
is token A before token B? — needs attention, offline, exact labels) from scratch. [Tomihari25]
fine-tunes RoBERTa on RTE; that does not fit a laptop, the mechanism (Post-LN multiplies the
LN Jacobians into every layer's gradient, eq. 5–7) does.

Recorded per run: the Gini coefficient of the normalized block gradient norms ``G_b/√P_b``
(one block per parameter tensor; [Tomihari25, App. D.5]) of the gradient on a fixed probe batch
(``probe_size`` training examples; a large-batch stand-in for the paper's full-batch
gradient) at initialisation (``gini_init``: Table 2's "Scratch" column) and along training
(``eval_gini``), the per-step mini-batch Gini (``gini``), and validation loss / accuracy.
Paper (Table 2): Post-LN 0.941 > Pre-LN > No-LN 0.867 (scratch) — Post-LN is the most
heterogeneous; and Adam ≥ SignSGD ≫ SGD, with the gap largest where heterogeneity is largest.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from heterogeneity import data, models
from heterogeneity import partition as hpart
from heterogeneity.experiment._config import RunSpec, SweepConfig, make_optimizer
from heterogeneity.metrics import gradient_heterogeneity

NORMS = ["pre", "post", "none"]


@functools.lru_cache(maxsize=4)
def dataset(task: str, seq_len: int, vocab_size: int, num_train: int, data_seed: int):
    return data.synthetic_sequences(task, key=data_seed, num_train=num_train, num_val=512, seq_len=seq_len,
                                    vocab_size=vocab_size)


def build(hp) -> RunSpec:
    ds = dataset(hp["task"], int(hp["seq_len"]), int(hp["vocab_size"]), int(hp["num_train"]), int(hp["data_seed"]))
    model = models.build(
        "transformer", vocab_size=int(hp["vocab_size"]), max_len=int(hp["seq_len"]), d_model=int(hp["d_model"]),
        num_heads=int(hp["num_heads"]), num_layers=int(hp["num_layers"]), num_classes=2, norm=hp["norm"],
        seed=int(hp["seed"]))
    apply_fn, params = models.functional(model)
    loss_fn = models.classification_loss(apply_fn)
    partition = hpart.by_leaf(params)
    train_split = jax.tree.map(jnp.asarray, ds.train)
    probe = jax.tree.map(lambda a: a[: int(hp["probe_size"])], train_split)
    val = jax.tree.map(jnp.asarray, ds.val)
    batch_size = int(hp["batch_size"])

    @jax.jit
    def batches(step, key):  # one compiled sampler instead of eager ops
        return data.sample_split(train_split, batch_size, key)

    def eval_fn(p):
        logits = apply_fn(p, val["x"])
        gini = gradient_heterogeneity(jax.grad(loss_fn)(p, probe), partition=partition).gini
        return {"val_loss": loss_fn(p, val), "val_acc": jnp.mean(jnp.argmax(logits, -1) == val["y"]), "gini": gini}

    def summarize(result):
        return {"gini_init": float(result.history["eval_gini"][0]),
                "gini_minibatch_mean": float(result.history["gini"].mean())}

    opt = make_optimizer(hp, params)
    return RunSpec(
        loss_fn=loss_fn, params=params, optimizer=opt, num_steps=int(hp["steps"]), batches=batches,
        key=jax.random.key(1000 + int(hp["seed"])), eval_fn=eval_fn, eval_every=int(hp["eval_every"]),
        log_every=int(hp["log_every"]), partition=partition, summarize=summarize,
        extras={"num_params": int(sum(x.size for x in jax.tree.leaves(params))), "num_blocks": len(partition.labels(params))},
    )


CONFIG = SweepConfig(
    name="ln_placement",
    description="[Tomihari25, §4.7 / Table 2]: encoder with pre/post/no LayerNorm on the synthetic order task; Gini; SGD vs SignSGD vs Adam",
    build=build,
    base={"task": "order", "seq_len": 16, "vocab_size": 16, "num_train": 4096, "data_seed": 0, "d_model": 32,
          "num_heads": 2, "num_layers": 2, "batch_size": 64, "steps": 400, "log_every": 10, "eval_every": 100,
          "probe_size": 512},
    grid=[
        {"norm": NORMS, "optimizer": ["sgd"], "lr": [0.03, 0.1, 0.3], "opt.momentum": [0.9], "seed": [0, 1, 2]},
        {"norm": NORMS, "optimizer": ["signsgd"], "lr": [3e-4, 1e-3, 3e-3], "opt.momentum": [0.9], "seed": [0, 1, 2]},
        {"norm": NORMS, "optimizer": ["adam"], "lr": [3e-4, 1e-3, 3e-3], "seed": [0, 1, 2]},
    ],
    scales={"laptop": {}, "gpu": {"seq_len": 64, "vocab_size": 32, "num_train": 32768, "d_model": 256, "num_heads": 8,
                                  "num_layers": 6, "batch_size": 128, "steps": 5000, "log_every": 25,
                                  "eval_every": 500, "probe_size": 2048}},
    smoke={"steps": 3, "num_train": 64, "d_model": 8, "num_layers": 1, "batch_size": 8, "log_every": 1,
           "eval_every": 2, "probe_size": 16},
    smoke_grid={"norm": ["post"], "optimizer": ["signsgd"], "lr": [1e-3], "opt.momentum": [0.9], "seed": [0]},
    metric="eval_val_loss",
)
