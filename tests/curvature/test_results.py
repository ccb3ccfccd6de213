"""Blockwise results (`heterogeneity.curvature._results`): one stacked pytree, block axis in
partition order, labels static; through `jax.jit` and `jax.vmap` unchanged; deprecated aliases."""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from heterogeneity import curvature as hc
from heterogeneity import partition as hp

NUM_BLOCKS = 21
SIZES = [2 if b % 2 else 5 for b in range(NUM_BLOCKS)]  # alternating: "small" and large blocks pack apart
SCALE = np.arange(1.0, NUM_BLOCKS + 1)  # H_bb = c_b I, c_b = b + 1
FEW = 11  # blocks of the smaller problem (labels layers/0 .. layers/10 still sort differently)


def _problem(num_blocks=NUM_BLOCKS):
    """``num_blocks`` leaves ``layers/{i}/w`` (a list: tree order 0, 1, 2, ..., while sorted labels
    run layers/0, layers/1, layers/10, ...), block-diagonal Hessian ``c_b I``. Compile time grows
    with the number of block groups: tests other than the order test use 11 blocks, one group."""
    params = {"layers": [{"w": jnp.zeros(n, jnp.float32)} for n in SIZES[:num_blocks]]}

    def loss_fn(p, batch):
        return 0.5 * sum(c * jnp.sum(layer["w"] ** 2) for c, layer in zip(SCALE, p["layers"]))

    return loss_fn, params, hp.by_leaf(params)


def test_labels_sort_differently_from_partition_order():
    _, params, part = _problem()
    labels = tuple(part.labels(params))
    assert labels == tuple(f"layers/{i}/w" for i in range(NUM_BLOCKS)) and len(labels) >= 20
    assert labels != tuple(sorted(labels))  # the case a dict out of jit got wrong


def test_blockwise_results_are_in_partition_order_through_jit():
    """21 blocks. reortho="none" packs blocks of at most num_steps elements apart from the others,
    so with group_by="all" the two groups interleave in partition order and the result needs the
    gather back."""
    loss_fn, params, part = _problem()
    labels = tuple(part.labels(params))
    key = jax.random.key(0)
    opts = dict(partition=part, num_steps=3, reortho="none", group_by="all")
    eager = hc.blockwise_top_eigenvalue(loss_fn, params, None, key, **opts)
    jitted = jax.jit(lambda p, k: hc.blockwise_top_eigenvalue(loss_fn, p, None, k, **opts))(params, key)
    for res in (eager, jitted):
        assert isinstance(res, hc.BlockwiseEigenEstimate) and res.labels == labels and len(res) == NUM_BLOCKS
        np.testing.assert_allclose(np.asarray(res.value, np.float64), SCALE, rtol=1e-6)  # λ_max(c_b I) = c_b
        assert res.value.shape == res.error_bound.shape == res.finite.shape == (NUM_BLOCKS,)
    spec = jax.jit(lambda p, k: hc.blockwise_slq(loss_fn, p, None, k, num_probes=2, **opts))(params, key)
    assert isinstance(spec, hc.BlockwiseSpectrum) and spec.labels == labels
    assert spec.nodes.shape == spec.weights.shape == (NUM_BLOCKS, 2, 3) and spec.finite.shape == (NUM_BLOCKS,)
    mean = np.sum(np.asarray(spec.nodes, np.float64) * np.asarray(spec.weights, np.float64), axis=-1)
    np.testing.assert_allclose(mean, np.repeat(SCALE[:, None], 2, axis=1), rtol=1e-6)  # vᵀ(c I)v = c
    # the result itself passes through jit (labels are static metadata, not traced leaves)
    again = jax.jit(lambda r: r)(spec)
    assert again.labels == labels
    for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(spec)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert len(jax.tree.leaves(spec)) == 3  # nodes, weights, finite: no string leaves


def test_blockwise_l11_norm_in_partition_order_against_numpy():
    """11 blocks (the diagonal mode packs one group per leaf). Both modes against float64 NumPy with the same Cauchy probes (rows: split(key, n) on the
    flat vector; diagonal: split(fold_in(key, b), n) on block b, packed width d_b here)."""
    loss_fn, params, part = _problem(FEW)
    labels = tuple(part.labels(params))
    key, n = jax.random.key(5), 7
    op = hc.HessianOperator(loss_fn, params, None)
    c_flat = np.repeat(SCALE[:FEW], SIZES[:FEW])
    rows = jax.jit(lambda o, k: hc.blockwise_l11_norm_matvec(o, params, k, partition=part, num_probes=n))(op, key)
    v = np.stack([np.asarray(jax.random.cauchy(k, (sum(SIZES[:FEW]),), jnp.float32), np.float64)
                  for k in jax.random.split(key, n)])
    med = np.median(np.abs(c_flat[None] * v), axis=0)
    want = np.add.reduceat(med, np.cumsum([0] + SIZES[:FEW - 1]))
    assert rows.labels == labels and bool(np.all(np.asarray(rows.finite)))
    np.testing.assert_allclose(np.asarray(rows.value, np.float64), want, rtol=1e-5)
    diag = hc.blockwise_l11_norm(loss_fn, params, None, key, partition=part, num_probes=n, diagonal=True)
    want = [c * np.sum(np.median(np.abs(np.stack([np.asarray(jax.random.cauchy(k, (d,), jnp.float32), np.float64)
                                                  for k in jax.random.split(jax.random.fold_in(key, b), n)])), axis=0))
            for b, (c, d) in enumerate(zip(SCALE, SIZES[:FEW]))]
    assert isinstance(diag, hc.BlockwiseNorms) and diag.labels == labels
    np.testing.assert_allclose(np.asarray(diag.value, np.float64), want, rtol=1e-5)


def test_vmap_over_keys_keeps_labels_and_block_axis():
    loss_fn, params, part = _problem(FEW)
    keys = jax.random.split(jax.random.key(1), 3)
    out = jax.vmap(lambda k: hc.blockwise_top_eigenvalue(loss_fn, params, None, k, partition=part, num_steps=2,
                                                         reortho="none", group_by="all"))(keys)
    assert out.labels == tuple(part.labels(params)) and out.value.shape == (3, FEW)
    np.testing.assert_allclose(np.asarray(out.value[:, out.index("layers/10/w")]), SCALE[10], rtol=1e-6)


def test_block_lookup_and_as_dict():
    loss_fn, params, part = _problem(FEW)
    res = hc.blockwise_slq(loss_fn, params, None, jax.random.key(2), partition=part, num_steps=2, num_probes=1,
                           group_by="all")
    s = res.block("layers/10/w")
    assert isinstance(s, hc.Spectrum) and s.nodes.shape == (1, 2)
    np.testing.assert_array_equal(np.asarray(s.nodes), np.asarray(res.nodes[10]))
    d = res.as_dict()
    assert list(d) == list(res.labels) and all(isinstance(x, hc.Spectrum) for x in d.values())
    with pytest.raises(KeyError, match="unknown block label 'nope'"):
        res.block("nope")
    with pytest.raises(TypeError):
        res["layers/0/w"]  # the dict behaviour is `as_dict()` only


def test_deprecated_block_l11_norms_warns_and_matches():
    loss_fn, params, part = _problem(FEW)
    op, key = hc.HessianOperator(loss_fn, params, None), jax.random.key(3)
    with pytest.warns(DeprecationWarning, match="blockwise_l11_norm_matvec"):
        old = hc.block_l11_norms(op, params, key, partition=part, num_probes=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = hc.blockwise_l11_norm_matvec(op, params, key, partition=part, num_probes=5)
    assert old.labels == new.labels
    np.testing.assert_array_equal(np.asarray(old.value), np.asarray(new.value))


def test_loss_first_forms_equal_the_operator_forms():
    """`blockwise_X(loss_fn, params, batch, key)` is `blockwise_X_matvec(HessianOperator(...), params, key)`."""
    loss_fn, params, part = _problem(FEW)
    op, key = hc.HessianOperator(loss_fn, params, None), jax.random.key(4)
    opts = dict(partition=part, num_steps=3, group_by="all")
    pairs = [(hc.blockwise_slq(loss_fn, params, None, key, **opts), hc.blockwise_slq_matvec(op, params, key, **opts)),
             (hc.blockwise_top_eigenvalue(loss_fn, params, None, key, **opts),
              hc.blockwise_top_eigenvalue_matvec(op, params, key, **opts)),
             (hc.blockwise_l11_norm(loss_fn, params, None, key, partition=part, num_probes=3),
              hc.blockwise_l11_norm_matvec(op, params, key, partition=part, num_probes=3))]
    for a, b in pairs:
        assert type(a) is type(b) and a.labels == b.labels
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
