"""Tests for heterogeneity/data/_batching.py: sampling, epochs, micro-batch reshaping."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import heterogeneity.data as hd

N = 50


def _split():
    ids = np.arange(N, dtype=np.int32)
    return {"x": np.stack([ids, -ids], 1).astype(np.float32), "y": ids}


def test_sample_batch_distinct_deterministic():
    s = _split()
    b1 = hd.sample_batch(s["x"], s["y"], 16, jax.random.key(0))
    b2 = hd.sample_batch(s["x"], s["y"], 16, 0)
    b3 = hd.sample_batch(s["x"], s["y"], 16, 1)
    assert isinstance(b1["x"], jax.Array) and b1["x"].shape == (16, 2) and b1["y"].shape == (16,)
    np.testing.assert_array_equal(b1["y"], b2["y"])
    assert not np.array_equal(b1["y"], b3["y"])
    assert len(set(np.asarray(b1["y"]).tolist())) == 16  # without replacement
    np.testing.assert_array_equal(b1["x"][:, 0], b1["y"])  # rows stay aligned
    # device arrays: jax.random.choice path, jit-able and deterministic
    xd, yd = jnp.asarray(s["x"]), jnp.asarray(s["y"])
    f = jax.jit(hd.sample_batch, static_argnums=2)
    j1, e1 = f(xd, yd, 8, jax.random.key(2)), hd.sample_batch(xd, yd, 8, jax.random.key(2))
    np.testing.assert_array_equal(j1["y"], e1["y"])
    np.testing.assert_array_equal(j1["x"][:, 0], j1["y"])
    assert len(set(np.asarray(j1["y"]).tolist())) == 8


def test_batches_epochs_and_steps():
    s = _split()
    ep = list(hd.batches(s, 16, 7))
    assert len(ep) == 3 and all(b["y"].shape == (16,) for b in ep)
    seen = np.concatenate([b["y"] for b in ep])
    assert len(set(seen.tolist())) == 48  # one pass, no repeats, 2 dropped
    full = list(hd.batches((s["x"], s["y"]), 16, 7, drop_remainder=False))
    assert [b["y"].shape[0] for b in full] == [16, 16, 16, 2]
    assert sorted(np.concatenate([b["y"] for b in full]).tolist()) == list(range(N))
    np.testing.assert_array_equal(full[0]["y"], ep[0]["y"])
    again = list(hd.batches(s, 16, jax.random.key(7)))
    for a, b in zip(ep, again):
        np.testing.assert_array_equal(a["x"], b["x"])
    steps = list(hd.batches(s, 16, 7, num_steps=7))
    assert len(steps) == 7
    np.testing.assert_array_equal(steps[0]["y"], ep[0]["y"])
    epoch2 = np.concatenate([b["y"] for b in steps[3:6]])
    assert len(set(epoch2.tolist())) == 48 and not np.array_equal(epoch2, seen)  # reshuffled
    assert list(hd.batches(s, 16, 7, num_steps=0)) == []
    # any pytree with a shared leading axis
    nested = {"inputs": {"a": s["x"], "b": s["y"][:, None]}, "y": s["y"]}
    nb = next(hd.batches(nested, 5, 0))
    np.testing.assert_array_equal(nb["inputs"]["b"][:, 0], nb["y"])


def test_microbatch_round_trip_and_average():
    b = hd.sample_batch(*_split().values(), 12, 0)
    b["mask"] = jnp.ones((12, 3, 2))
    mb = hd.microbatch(b, 4)
    assert isinstance(mb, hd.MicroBatched) and mb.counts is None
    np.testing.assert_array_equal(hd.unmicrobatch(mb)["x"], b["x"])
    mb = mb.batch
    assert mb["x"].shape == (4, 3, 2) and mb["y"].shape == (4, 3) and mb["mask"].shape == (4, 3, 3, 2)
    np.testing.assert_array_equal(mb["y"][1], b["y"][3:6])  # contiguous, order kept
    back = hd.unmicrobatch(mb)
    for k in b:
        np.testing.assert_array_equal(back[k], b[k])
    # averaging per-micro-batch means recovers the full-batch mean (what curvature.hvp relies on)
    np.testing.assert_allclose(jnp.mean(jax.vmap(lambda m: jnp.mean(m["x"]))(mb)), jnp.mean(b["x"]), rtol=1e-6)
    jitted = jax.jit(hd.microbatch, static_argnums=1)(b, 3)
    assert jitted.batch["x"].shape == (3, 4, 2)
    np.testing.assert_array_equal(hd.microbatch(b, 1).batch["x"][0], b["x"])
    np.testing.assert_array_equal(hd.microbatch(b, 12).batch["y"][:, 0], b["y"])
    np_batch = {"x": np.arange(24.0).reshape(6, 4)}
    np.testing.assert_array_equal(hd.unmicrobatch(hd.microbatch(np_batch, 2))["x"], np_batch["x"])


def test_batching_bad_inputs():
    s = _split()
    with pytest.raises(ValueError, match="not divisible by num_microbatches=4"):
        hd.microbatch({"x": jnp.ones((10, 2))}, 4)
    for m in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="num_microbatches must be a positive int"):
            hd.microbatch({"x": jnp.ones((10, 2))}, m)
    with pytest.raises(ValueError, match="disagree on the leading"):
        hd.microbatch({"x": jnp.ones((10, 2)), "y": jnp.ones(8)}, 2)
    with pytest.raises(ValueError, match="scalar leaf"):
        hd.microbatch({"x": jnp.ones((10, 2)), "t": jnp.float32(1)}, 2)
    with pytest.raises(ValueError, match="no array leaves"):
        hd.microbatch({}, 2)
    with pytest.raises(ValueError, match=r"\(M, B/M, ...\)"):
        hd.unmicrobatch({"y": jnp.ones(4)})
    with pytest.raises(ValueError, match="disagree"):
        hd.unmicrobatch({"x": jnp.ones((2, 3)), "y": jnp.ones((3, 2))})
    with pytest.raises(ValueError, match="exceeds the number of examples N=50"):
        hd.sample_batch(s["x"], s["y"], 51, 0)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        next(hd.batches(s, 0, 0))
    with pytest.raises(ValueError, match="num_steps"):
        next(hd.batches(s, 5, 0, num_steps=-1))
    with pytest.raises(ValueError, match="disagree on the leading"):
        hd.sample_batch(s["x"], s["y"][:10], 4, 0)
    with pytest.raises(ValueError, match="key"):
        hd.sample_batch(s["x"], s["y"], 4, 1.5)
