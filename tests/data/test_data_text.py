"""Tests for heterogeneity/data/_text.py: the shipped corpus, load_text, tokenizer, windows."""
import collections
import gzip
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import heterogeneity.data as hd
from heterogeneity.data import _text


@pytest.fixture(scope="module")
def corpus():
    return hd.load_shakespeare()


def test_shipped_corpus_is_real_english(corpus):
    n = corpus.train.size + corpus.val.size
    assert n == _text.SHAKESPEARE_NUM_CHARS
    assert corpus.vocab_size == 84
    assert corpus.vocab[0] == "\n" and corpus.vocab[1] == " "
    assert corpus.train.dtype == np.int32 and corpus.val.dtype == np.int32
    # nanoGPT split: last 10% of the characters validate
    assert corpus.val.size == round(0.1 * n)
    head = corpus.decode(corpus.train[:300_000])
    assert head.startswith("THE SONNETS\nby William Shakespeare")
    assert "From fairest creatures we desire increase," in head
    text = hd.shakespeare_text()
    for known in ("ROMEO AND JULIET", "ROMEO", "thou", "To be, or not to be", "Exeunt", "Juliet"):
        assert known in text, known
    words = collections.Counter(re.findall(r"[a-z']+", text[:1_000_000].lower()))
    top = [w for w, _ in words.most_common(40)]
    assert {"the", "and", "i", "to", "of"} <= set(top[:8]), top
    assert {"thou", "thy", "my", "you"} <= set(top), top
    # letters and spaces dominate, as in English prose and verse
    letters = sum(c.isalpha() or c == " " for c in text[:200_000]) / 200_000
    assert letters > 0.85
    # validation = whole plays, Othello onwards
    tail = corpus.decode(corpus.val[-2000:])
    assert "Pericles" in hd.shakespeare_text()[-120_000:] and tail.endswith("\n")


def test_encode_decode_round_trip(corpus):
    text = hd.shakespeare_text()
    piece = text[3_741_989:3_742_989]  # opening of Romeo and Juliet (PROVENANCE.md index)
    assert piece.startswith("ROMEO AND JULIET")
    ids = corpus.encode(piece)
    assert ids.dtype == np.int32 and ids.shape == (1000,)
    np.testing.assert_array_equal(ids, corpus.train[3_741_989:3_742_989])
    assert corpus.decode(ids) == piece
    assert corpus.decode(jnp.asarray(ids)) == piece
    assert corpus.decode([]) == ""
    assert corpus.decode(corpus.encode("fixèd")) == "fixèd"


def test_cache_and_max_chars(corpus):
    assert hd.load_shakespeare() is hd.load_shakespeare()  # cached in-process
    small = hd.load_shakespeare(max_chars=10_000)
    assert small.train.size + small.val.size == 10_000
    assert small.vocab == corpus.vocab  # vocabulary of the whole corpus
    np.testing.assert_array_equal(small.train, corpus.train[:small.train.size])
    assert not small.train.flags.writeable


def test_sample_batch_windows_deterministic(corpus):
    key = jax.random.key(3)
    b1 = corpus.sample_batch("train", 8, 64, key)
    b2 = corpus.sample_batch("train", 8, 64, key)
    b3 = corpus.sample_batch("train", 8, 64, jax.random.key(4))
    assert b1["x"].shape == (8, 64) and b1["y"].shape == (8, 64) and b1["x"].dtype == jnp.int32
    np.testing.assert_array_equal(b1["x"], b2["x"])
    assert not np.array_equal(b1["x"], b3["x"])
    np.testing.assert_array_equal(b1["x"][:, 1:], b1["y"][:, :-1])
    starts = hd.host_rng(key).integers(0, corpus.train.size - 64, size=8)
    for s, x, y in zip(starts, np.asarray(b1["x"]), np.asarray(b1["y"])):
        np.testing.assert_array_equal(x, corpus.train[s:s + 64])
        np.testing.assert_array_equal(y, corpus.train[s + 1:s + 65])
    # int seed == key from that seed; the jitted device path gives the same windows
    np.testing.assert_array_equal(corpus.sample_batch("val", 4, 16, 7)["x"],
                                  corpus.sample_batch("val", 4, 16, jax.random.key(7))["x"])
    # device-resident tokens: jax.random path, jit-able, same windows eagerly and under jit
    dev = jnp.asarray(corpus.val[:5000])
    eager = hd.sample_windows(dev, 4, 16, jax.random.key(7))
    jitted = jax.jit(hd.sample_windows, static_argnums=(1, 2))(dev, 4, 16, jax.random.key(7))
    np.testing.assert_array_equal(jitted["x"], eager["x"])
    np.testing.assert_array_equal(jitted["y"], eager["y"])
    np.testing.assert_array_equal(eager["x"][:, 1:], eager["y"][:, :-1])
    s = np.asarray(jax.random.randint(jax.random.key(7), (4,), 0, 5000 - 16))
    np.testing.assert_array_equal(eager["x"], np.stack([corpus.val[i:i + 16] for i in s]))


def test_window_covers_last_token():
    c = hd.corpus_from_text("abcdefgh" * 2, val_fraction=0.5)
    # train = "abcdefgh" (8 tokens); block 7 leaves exactly one start
    b = c.sample_batch("train", 5, 7, 0)
    assert c.decode(b["x"][0]) == "abcdefg" and c.decode(b["y"][0]) == "bcdefgh"


def test_load_text_user_file(tmp_path):
    p = tmp_path / "poem.txt"
    p.write_text("hello world\nthe quick brown fox\n" * 20, encoding="utf-8")
    c = hd.load_text(p, val_fraction=0.25)
    assert c.vocab == "".join(sorted(set(p.read_text())))
    assert c.train.size + c.val.size == len(p.read_text())
    assert c.decode(np.concatenate([c.train, c.val])) == p.read_text()
    gz = tmp_path / "poem.txt.gz"
    gz.write_bytes(gzip.compress(p.read_bytes()))
    np.testing.assert_array_equal(hd.load_text(gz, val_fraction=0.25).train, c.train)
    fixed = hd.load_text(p, vocab=c.vocab + "XYZ", max_chars=100)
    assert fixed.vocab_size == c.vocab_size + 3 and fixed.train.size + fixed.val.size == 100


def test_bad_text_inputs(tmp_path, corpus):
    missing = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        hd.load_text(missing)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty.*empty.txt"):
        hd.load_text(empty)
    with pytest.raises(ValueError, match="not a regular file"):
        hd.load_text(tmp_path)
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\xfa\x00abc")
    with pytest.raises(ValueError, match="not UTF-8"):
        hd.load_text(binary)
    one = tmp_path / "one.txt"
    one.write_text("a")
    with pytest.raises(ValueError, match="at least 2"):
        hd.load_text(one)
    with pytest.raises(ValueError, match="empty"):
        hd.corpus_from_text("")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        corpus.encode("hello \u00df")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        hd.corpus_from_text("abc", vocab="ab")
    with pytest.raises(ValueError, match="distinct"):
        hd.corpus_from_text("abc", vocab="aabc")
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 84\)"):
        corpus.decode([0, 84])
    with pytest.raises(ValueError, match="1-D"):
        corpus.decode(np.zeros((2, 2), int))
    with pytest.raises(ValueError, match="split must be one of"):
        corpus.sample_batch("test", 2, 8, 0)
    with pytest.raises(ValueError, match="block_size"):
        corpus.sample_batch("train", 2, 0, 0)
    with pytest.raises(ValueError, match="batch_size"):
        corpus.sample_batch("train", 0, 8, 0)
    with pytest.raises(ValueError, match="needs at least 11 tokens"):
        hd.corpus_from_text("abcdefghij" * 2, val_fraction=0.5).sample_batch("val", 2, 10, 0)
    with pytest.raises(ValueError, match="val_fraction"):
        hd.load_shakespeare(val_fraction=1.0)
    with pytest.raises(ValueError, match="max_chars"):
        hd.load_shakespeare(max_chars=1)
    with pytest.raises(ValueError, match="max_chars"):
        hd.load_shakespeare(max_chars=10.5)
    with pytest.raises(ValueError, match="1-D token stream"):
        hd.sample_windows(np.zeros((4, 4), np.int32), 2, 2, 0)
    with pytest.raises(ValueError, match="key"):
        corpus.sample_batch("train", 2, 8, "seed")
