"""Every loader works with the network disabled, from a cold in-process cache."""
import socket
from importlib import resources

import numpy as np
import pytest

import heterogeneity.data as hd
from heterogeneity.data import _digits, _text


def _no_network(*args, **kwargs):
    raise OSError("network disabled by test")


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setattr(socket, "socket", _no_network)
    monkeypatch.setattr(socket, "create_connection", _no_network)
    monkeypatch.setattr(socket, "getaddrinfo", _no_network)
    # cold caches: everything below is really read again while offline
    _digits._raw_digits.cache_clear()
    _text.shakespeare_text.cache_clear()
    _text._shakespeare_corpus.cache_clear()
    yield
    _text._shakespeare_corpus.cache_clear()


def test_everything_loads_offline_and_deterministically(offline, tmp_path):
    with pytest.raises(OSError, match="network disabled"):
        socket.create_connection(("pypi.org", 443))
    d1, d2 = hd.load_digits(key=0), hd.load_digits(key=0)
    np.testing.assert_array_equal(d1.x_train, d2.x_train)
    assert d1.x_train.shape[0] + d1.x_val.shape[0] == 1797

    c = hd.load_shakespeare(max_chars=50_000)
    b1, b2 = c.sample_batch("train", 4, 32, 0), c.sample_batch("train", 4, 32, 0)
    np.testing.assert_array_equal(b1["x"], b2["x"])
    assert "ROMEO" in hd.shakespeare_text() and "thou" in c.decode(c.train)

    p = tmp_path / "t.txt"
    p.write_text("to be or not to be\n" * 10)
    assert hd.load_text(p).vocab_size == len(set(p.read_text()))

    s1 = hd.synthetic_sequences("order", key=1, num_train=64, num_val=16)
    s2 = hd.synthetic_sequences("order", key=1, num_train=64, num_val=16)
    np.testing.assert_array_equal(s1.x_train, s2.x_train)
    a = hd.from_arrays(np.eye(10, dtype=np.float32), np.arange(10) % 2, key=2)
    batches = [b["y"] for b in hd.batches(a.train, 4, 3)]
    np.testing.assert_array_equal(np.concatenate(batches), np.concatenate([b["y"] for b in hd.batches(a.train, 4, 3)]))


def test_corpus_ships_inside_the_package():
    folder = resources.files("heterogeneity.data").joinpath("corpus")
    names = {f.name for f in folder.iterdir()}
    assert {"shakespeare.txt.xz", "PROVENANCE.md"} <= names
    size = folder.joinpath("shakespeare.txt.xz").stat().st_size if hasattr(folder, "stat") else \
        len(folder.joinpath("shakespeare.txt.xz").read_bytes())
    assert size < 3_000_000
