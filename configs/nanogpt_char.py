"""[Tomihari25, App. D.10] (Tables S.10, S.11): a character GPT trained from scratch on Shakespeare.

nanoGPT's ``shakespeare_char`` setting (the ``"gpt"`` preset ``seed000_nanogpt``: 6 layers,
6 heads, width 384, context 256) is the ``gpu`` scale; the laptop scale is a 2-layer, width-64
GPT with context 64 on the same shipped corpus (`heterogeneity.data.load_shakespeare`).
Optimizers, as in the paper: SGD (momentum 0.9), Adam, SignSGD (heavy-ball momentum 0.9,
[Tomihari25, §3.2]) and SignSGD (S), the ℓ1-scaled learning rate ``γ ‖m‖₁`` of §4.6
(``signsgd_s``), each over a small learning-rate grid.

Recorded: training loss ("Min" and "Last" of Table S.10: ``min_loss``, ``final_loss``),
validation loss on fixed held-out windows, and the Gini coefficient of the normalized block
gradient norms (one block per parameter tensor; Table S.11 reports 0.609 ± 0.004 for nanoGPT)
at every logged step (``gini``; ``gini_mean`` over training, ``gini_init`` at step 0).
Paper (Table S.10, Last): Adam 0.687 < SignSGD 0.820 < SGD 0.964.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from heterogeneity import data, models
from heterogeneity import partition as hpart
from heterogeneity.experiment._config import RunSpec, SweepConfig, make_optimizer


@functools.lru_cache(maxsize=2)
def corpus(max_chars):
    return data.load_shakespeare(max_chars=max_chars)


def build(hp) -> RunSpec:
    text = corpus(hp["max_chars"])
    model_cfg = dict(vocab_size=text.vocab_size, max_len=int(hp["block_size"]), d_model=int(hp["d_model"]),
                     num_heads=int(hp["num_heads"]), num_layers=int(hp["num_layers"]))
    model = models.build("gpt", seed=int(hp["seed"]), **model_cfg)
    apply_fn, params = models.functional(model)
    loss_fn = models.lm_loss(apply_fn)
    partition = hpart.by_leaf(params)
    batch_size, block = int(hp["batch_size"]), int(hp["block_size"])
    train_tokens = jnp.asarray(text.train)
    val_batch = data.sample_windows(jnp.asarray(text.val), int(hp["val_windows"]), block, jax.random.key(12345))

    @jax.jit
    def batches(step, key):  # one compiled sampler instead of eager gathers
        return data.sample_windows(train_tokens, batch_size, block, key)

    def eval_fn(p):
        return {"val_loss": loss_fn(p, val_batch)}

    def summarize(result):
        g = result.history["gini"]
        return {"gini_init": float(g[0]), "gini_mean": float(g.mean())}

    return RunSpec(
        loss_fn=loss_fn, params=params, optimizer=make_optimizer(hp, params), num_steps=int(hp["steps"]),
        batches=batches, key=jax.random.key(1000 + int(hp["seed"])), eval_fn=eval_fn,
        eval_every=int(hp["eval_every"]), log_every=int(hp["log_every"]), partition=partition, summarize=summarize,
        extras={"num_params": int(sum(x.size for x in jax.tree.leaves(params))), "vocab_size": text.vocab_size},
    )


CONFIG = SweepConfig(
    name="nanogpt_char",
    description="[Tomihari25, App. D.10]: char GPT on Shakespeare from scratch; SGD vs Adam vs SignSGD vs SignSGD (S)",
    build=build,
    base={"max_chars": None, "block_size": 64, "d_model": 64, "num_heads": 4, "num_layers": 2, "batch_size": 32,
          "steps": 1000, "log_every": 20, "eval_every": 250, "val_windows": 64},
    # Every learning-rate grid extends one step beyond the old one on each side (the old best rates sat on
    # an edge); the sweep summary warns if a best rate is still on the edge.
    grid=[
        {"optimizer": ["adam"], "lr": [3e-4, 1e-3, 3e-3, 1e-2], "seed": [0, 1]},
        {"optimizer": ["sgd"], "lr": [0.03, 0.1, 0.3, 1.0, 3.0], "opt.momentum": [0.9], "seed": [0, 1]},
        {"optimizer": ["signsgd"], "lr": [3e-5, 1e-4, 3e-4, 1e-3, 3e-3], "opt.momentum": [0.9], "seed": [0, 1]},
        {"optimizer": ["signsgd_s"], "lr": [1e-8, 1e-7, 1e-6, 1e-5, 1e-4], "opt.momentum": [0.9], "seed": [0, 1]},
    ],
    scales={"laptop": {}, "gpu": {"block_size": 256, "d_model": 384, "num_heads": 6, "num_layers": 6,
                                  "batch_size": 64, "steps": 5000, "log_every": 50, "eval_every": 500,
                                  "val_windows": 256}},
    smoke={"max_chars": 20000, "block_size": 8, "d_model": 8, "num_heads": 2, "num_layers": 1, "batch_size": 4,
           "steps": 3, "log_every": 1, "eval_every": 2, "val_windows": 4},
    smoke_grid={"optimizer": ["signsgd_s"], "lr": [1e-5], "opt.momentum": [0.9], "seed": [0]},
    metric="final_loss",
)
