"""Synthetic two-class sequence-classification tasks for the transformer encoder.

[Tomihari25] compares optimizers on transformer encoders fine-tuned for sequence classification
(Sec. 5) and varies the LayerNorm placement (Sec. 4.7, Table 2). These tasks give such an
encoder something to learn with a known answer, offline and in seconds on a CPU:

* ``"order"``: every sequence holds exactly one token A (= 1) and one token B (= 2) at a uniformly
  random pair of distinct positions, the other positions are filler tokens uniform in [3, vocab_size).
  Clean label = 1 if A comes before B, else 0 (balanced: P = 1/2). Needs attention between two
  positions, not a bag of tokens. Requires vocab_size >= 4, seq_len >= 2.
* ``"majority"``: tokens in [1, vocab_size); "high" tokens are those >= threshold =
  1 + (vocab_size - 1) // 2. Each sequence first draws p ~ U(0, 1), then every position is high
  with probability p (and uniform inside the low or high range). Clean label = 1 if more than
  half the tokens are high (2 * count > seq_len), else 0; balanced for odd seq_len (for even
  seq_len ties count as 0, so P(1) = 1/2 - 1/(2 (seq_len + 1))). Requires vocab_size >= 3.

Token 0 is never emitted, so a model may use it as [CLS] or padding.

Difficulty knob: the observed label is the clean label flipped with probability difficulty / 2,
independently per example. At difficulty 0 the label is a deterministic function of x
(`sequence_labels`), at 1 it is independent of x; the Bayes-optimal accuracy is
1 - difficulty / 2 (`bayes_accuracy`).
"""
from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from heterogeneity.data._arrays import Dataset, host_rng

TASKS = ("order", "majority")
TOKEN_A, TOKEN_B = 1, 2


def _check(task: str, seq_len: int, vocab_size: int) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    for name, v in (("seq_len", seq_len), ("vocab_size", vocab_size)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
            raise ValueError(f"{name} must be an int, got {v!r}")
    need_vocab = 4 if task == "order" else 3
    if vocab_size < need_vocab:
        raise ValueError(f"task {task!r} needs vocab_size >= {need_vocab}, got {vocab_size}")
    if seq_len < (2 if task == "order" else 1):
        raise ValueError(f"task {task!r} needs seq_len >= {2 if task == 'order' else 1}, got {seq_len}")


def majority_threshold(vocab_size: int) -> int:
    """Tokens >= this value are "high" in the majority task."""
    return 1 + (vocab_size - 1) // 2


def bayes_accuracy(difficulty: float) -> float:
    """Best achievable accuracy at a given difficulty: 1 - difficulty / 2."""
    return 1.0 - float(difficulty) / 2.0


def sequence_labels(x: Any, *, task: str, vocab_size: int) -> Any:
    """Clean labels (N,) int32: the deterministic rule of `task` applied to sequences x (N, L).

    numpy in, numpy out (no compile); jax arrays and tracers go through jnp."""
    xp = np if isinstance(x, np.ndarray) else jnp
    x = xp.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (N, seq_len), got {x.shape}")
    _check(task, x.shape[1], vocab_size)
    if task == "order":
        return (xp.argmax(x == TOKEN_A, axis=1) < xp.argmax(x == TOKEN_B, axis=1)).astype(xp.int32)
    count = xp.sum(x >= majority_threshold(vocab_size), axis=1)
    return (2 * count > x.shape[1]).astype(xp.int32)


def sample_sequences(key: Any, num: int, *, task: str, seq_len: int, vocab_size: int,
                     difficulty: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(x, y): `num` fresh sequences (num, seq_len) int32 and labels (num,) int32 of `task`.

    Drawn on the host from `host_rng(key)` (numpy PCG64 seeded by the key's bits: no XLA compile
    per shape, so a training loop can also draw a fresh batch per step from `fold_in(key, step)`).
    Same key, same sequences.
    """
    _check(task, seq_len, vocab_size)
    if not isinstance(num, (int, np.integer)) or isinstance(num, bool) or num < 1:
        raise ValueError(f"num must be a positive int, got {num!r}")
    difficulty = float(difficulty)
    if not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"difficulty must be in [0, 1], got {difficulty}")
    rng = host_rng(key)
    if task == "order":
        x = rng.integers(3, vocab_size, size=(num, seq_len), dtype=np.int32)
        rows = np.arange(num)
        pos_a = rng.integers(0, seq_len, size=num)
        pos_b = (pos_a + rng.integers(1, seq_len, size=num)) % seq_len  # uniform over positions != pos_a
        x[rows, pos_a] = TOKEN_A
        x[rows, pos_b] = TOKEN_B
    else:
        t = majority_threshold(vocab_size)
        p = rng.random((num, 1))
        high = rng.random((num, seq_len)) < p
        x = np.where(high, rng.integers(t, vocab_size, size=(num, seq_len), dtype=np.int32),
                     rng.integers(1, t, size=(num, seq_len), dtype=np.int32))
    y = sequence_labels(x, task=task, vocab_size=vocab_size)
    flip = rng.random(num) < difficulty / 2
    return x, np.where(flip, 1 - y, y).astype(np.int32)


def synthetic_sequences(task: str = "order", *, key: Any = 0, num_train: int = 2048, num_val: int = 512,
                        seq_len: int = 16, vocab_size: int = 16, difficulty: float = 0.0) -> Dataset:
    """A two-class `Dataset` of `task` (see module docstring): num_train + num_val iid draws from
    `sample_sequences(key, ...)`, the first num_train for training (the validation labels carry the
    same label noise). Same key, same data."""
    for name, v in (("num_train", num_train), ("num_val", num_val)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    x, y = sample_sequences(key, num_train + num_val, task=task, seq_len=seq_len, vocab_size=vocab_size,
                            difficulty=difficulty)
    return Dataset(x[:num_train], y[:num_train], x[num_train:], y[num_train:], 2)
