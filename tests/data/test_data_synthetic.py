"""Tests for heterogeneity/data/_synthetic.py (two-class sequence tasks for the encoder)."""
import jax
import numpy as np
import pytest

import heterogeneity.data as hd


def _brute_labels(x, task, vocab_size):
    """Reference rule written with Python loops."""
    out = []
    for row in x.tolist():
        if task == "order":
            out.append(int(row.index(1) < row.index(2)))
        else:
            high = sum(t >= 1 + (vocab_size - 1) // 2 for t in row)
            out.append(int(2 * high > len(row)))
    return np.array(out)


@pytest.mark.parametrize("task,seq_len,vocab", [("order", 12, 10), ("majority", 15, 9), ("majority", 8, 3)])
def test_label_is_deterministic_function_at_difficulty_zero(task, seq_len, vocab):
    d = hd.synthetic_sequences(task, key=0, num_train=2000, num_val=500, seq_len=seq_len, vocab_size=vocab)
    assert d.num_classes == 2
    assert d.x_train.shape == (2000, seq_len) and d.x_train.dtype == np.int32 and d.y_train.dtype == np.int32
    for x, y in ((d.x_train, d.y_train), (d.x_val, d.y_val)):
        np.testing.assert_array_equal(y, _brute_labels(x, task, vocab))
        np.testing.assert_array_equal(y, hd.sequence_labels(x, task=task, vocab_size=vocab))
        assert x.min() >= 1 and x.max() < vocab  # token 0 is free for [CLS]/padding
    if task == "order":
        assert ((d.x_train == 1).sum(1) == 1).all() and ((d.x_train == 2).sum(1) == 1).all()
        pos_a = (d.x_train == 1).argmax(1)
        # A's position is uniform over the sequence
        assert np.bincount(pos_a, minlength=seq_len).min() > 2000 / seq_len * 0.6
    # balanced classes (odd seq_len or order task: P(1) = 1/2; even majority: 1/2 - 1/(2(L+1)))
    p = 0.5 if task == "order" or seq_len % 2 else 0.5 - 1 / (2 * (seq_len + 1))
    assert abs(d.y_train.mean() - p) < 4 * np.sqrt(p * (1 - p) / 2000)
    # same key, same data; train and validation are independent draws
    again = hd.synthetic_sequences(task, key=jax.random.key(0), num_train=2000, num_val=500, seq_len=seq_len,
                                   vocab_size=vocab)
    np.testing.assert_array_equal(again.x_train, d.x_train)
    assert not np.array_equal(d.x_train[:500], d.x_val)


def test_majority_is_learnable_by_a_linear_model_on_counts():
    d = hd.synthetic_sequences("majority", key=1, num_train=1000, num_val=500, seq_len=15, vocab_size=12)
    t = hd.majority_threshold(12)
    feats = lambda x: np.stack([(x >= t).sum(1), np.ones(len(x))], 1).astype(float)  # noqa: E731
    w, *_ = np.linalg.lstsq(feats(d.x_train), 2.0 * d.y_train - 1, rcond=None)
    acc = ((feats(d.x_val) @ w > 0) == d.y_val).mean()
    assert acc > 0.97


@pytest.mark.parametrize("difficulty", [0.4, 1.0])
def test_difficulty_flips_labels_at_rate_half_difficulty(difficulty):
    n = 4000
    d = hd.synthetic_sequences("order", key=2, num_train=n, num_val=8, difficulty=difficulty)
    clean = np.asarray(hd.sequence_labels(d.x_train, task="order", vocab_size=16))
    rate = (clean != d.y_train).mean()
    p = difficulty / 2
    assert abs(rate - p) < 4 * np.sqrt(p * (1 - p) / n)
    assert hd.bayes_accuracy(difficulty) == 1 - p
    # the inputs do not depend on the difficulty, only the labels
    np.testing.assert_array_equal(d.x_train, hd.synthetic_sequences("order", key=2, num_train=n, num_val=8).x_train)


def test_sample_sequences_deterministic_and_pair_uniform():
    key = jax.random.key(9)
    x1, y1 = hd.sample_sequences(key, 64, task="majority", seq_len=9, vocab_size=6, difficulty=0.3)
    x2, y2 = hd.sample_sequences(key, 64, task="majority", seq_len=9, vocab_size=6, difficulty=0.3)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    x3, _ = hd.sample_sequences(jax.random.fold_in(key, 1), 64, task="majority", seq_len=9, vocab_size=6)
    assert not np.array_equal(x1, x3)
    # order task: every ordered pair (pos_A, pos_B), A != B, is equally likely
    x, _ = hd.sample_sequences(0, 12_000, task="order", seq_len=4, vocab_size=5)
    pairs = (x == 1).argmax(1) * 4 + (x == 2).argmax(1)
    counts = np.bincount(pairs, minlength=16).reshape(4, 4)
    assert (np.diag(counts) == 0).all()
    off = counts[~np.eye(4, dtype=bool)]
    assert np.abs(off - 1000).max() < 4 * np.sqrt(1000)
    # jax arrays go through jnp (usable inside a jitted loss)
    labels = jax.jit(lambda a: hd.sequence_labels(a, task="order", vocab_size=5))(jax.numpy.asarray(x))
    np.testing.assert_array_equal(labels, hd.sequence_labels(x, task="order", vocab_size=5))


def test_bad_synthetic_arguments():
    with pytest.raises(ValueError, match="task must be one of"):
        hd.synthetic_sequences("parity")
    with pytest.raises(ValueError, match="vocab_size >= 4"):
        hd.synthetic_sequences("order", vocab_size=3)
    with pytest.raises(ValueError, match="vocab_size >= 3"):
        hd.synthetic_sequences("majority", vocab_size=2)
    with pytest.raises(ValueError, match="seq_len >= 2"):
        hd.synthetic_sequences("order", seq_len=1)
    with pytest.raises(ValueError, match="difficulty"):
        hd.synthetic_sequences("order", difficulty=1.5)
    with pytest.raises(ValueError, match="num_train"):
        hd.synthetic_sequences("order", num_train=0)
    with pytest.raises(ValueError, match="seq_len must be an int"):
        hd.synthetic_sequences("order", seq_len=4.0)
    with pytest.raises(ValueError, match="num must be"):
        hd.sample_sequences(0, 0, task="order", seq_len=4, vocab_size=5)
    with pytest.raises(ValueError, match=r"shape \(N, seq_len\)"):
        hd.sequence_labels(np.zeros(5, np.int32), task="order", vocab_size=8)
