"""Blockwise SLQ: every diagonal block equals `eigh` of the dense block (float64)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from curvature_tiny import dense_of, make_attention, make_mlp
from heterogeneity import curvature as hc
from heterogeneity import partition as hp
from heterogeneity.curvature._slq import probe_vector


@functools.partial(jax.jit, static_argnums=(1, 2))
def _draw(key, num_probes, probe, valid):
    keys = jax.random.split(key, num_probes)
    return jax.vmap(lambda k: probe_vector(k, valid.shape[0], jnp.float64, probe, support=valid))(keys)


def _probes(partition, params, key, num_steps, num_probes, probe):
    """Rebuild each block's probes and flat indices as `blockwise_slq` draws them: keys
    split from ``fold_in(key, b)``, the probe on the block's first ``d_b`` packed entries
    (JAX's counter PRNG makes that independent of the padding width), blocks in flat order."""
    flat_ids = np.concatenate([np.asarray(x).reshape(-1) for x in jax.tree.leaves(partition.block_ids(params))])
    out = {}
    for b, label in enumerate(partition.labels(params)):
        flat = np.nonzero(flat_ids == b)[0]
        vs = None
        if num_probes:
            vs = np.asarray(_draw(jax.random.fold_in(key, b), num_probes, probe, jnp.ones(len(flat), bool)))
        out[label] = (flat, vs)
    return out


def _assert_measure_equals_eigh(nodes, weights, hb, v, tol=1e-8):
    """The quadrature Σ w_j δ_{x_j} equals the probe's spectral measure Σ (vᵀq_i)² δ_{λ_i}:
    equal CDFs between every pair of distinct eigenvalues, and no weighted node off the spectrum."""
    lam, q = np.linalg.eigh(hb)
    w_exact = (q.T @ v) ** 2
    scale = max(np.max(np.abs(lam)), 1e-300)
    gaps = np.nonzero(np.diff(lam) > 1e-6 * scale)[0]
    for t in (lam[gaps] + lam[gaps + 1]) / 2:
        np.testing.assert_allclose(weights[nodes <= t].sum(), w_exact[lam <= t].sum(), atol=tol)
    heavy = weights > 1e-10
    dist = np.min(np.abs(nodes[heavy][:, None] - lam[None]), axis=1)
    assert np.all(dist <= 1e-7 * scale), dist.max()


def test_blockwise_equals_eigh_of_dense_diagonal_blocks():
    """num_steps ≥ every block size: each block's quadrature is exact, in one compiled
    program. Blocks include leaves cut into column chunks (`Split`), so packed blocks are
    non-contiguous in the flat vector; the 4-element head bias exercises breakdown."""
    with jax.enable_x64(True):
        loss_fn, params, batch = make_mlp()
        part = hp.by_regex([(r"layers/1/kernel", hp.Split("l1k", axis=1, parts=4)),
                            (r"layers/0/kernel", hp.Split("l0k", axis=1, parts=2)),
                            (r"head/kernel", hp.Split("hk", axis=0, parts=2)), (r".*", "rest")])
        # also merges leaves: "rest" = both hidden biases + the head bias (16 + 16 + 4 = 36)
        m = max(part.sizes(params).values())
        assert m == 64 and part.sizes(params)["rest"] == 36
        key = jax.random.key(0)
        run = jax.jit(lambda p, b, k: hc.blockwise_slq(loss_fn, p, b, k, partition=part, num_steps=m, num_probes=1))
        spectra = run(params, batch, key)
        assert spectra.labels == tuple(part.labels(params))  # partition order, through jit
        h = dense_of(make_mlp)
        for label, (idx, vs) in _probes(part, params, key, m, 1, "rademacher").items():
            hb = h[np.ix_(idx, idx)]
            for p, v in enumerate(vs):
                nodes, weights = np.asarray(spectra.block(label).nodes[p]), np.asarray(spectra.block(label).weights[p])
                assert np.all(np.isfinite(nodes)) and np.all(np.isfinite(weights))
                _assert_measure_equals_eigh(nodes, weights, hb, v)


def test_large_blocks_match_moments_small_blocks_exact():
    """num_steps=10: blocks with ≤ 10 elements are exact (breakdown handled, always full
    re-orthogonalisation); larger blocks match vᵀH_bbᵏv for k < 2·num_steps, in both modes."""
    with jax.enable_x64(True):
        loss_fn, params, batch = make_mlp()
        part = hp.by_regex([(r"head/bias", "head_bias"), (r"head", "head"), (r"layers/(\d)", r"layer\1")])
        m, key = 10, jax.random.key(1)

        @jax.jit
        def run(p, b, k):
            return {mode: hc.blockwise_slq(loss_fn, p, b, k, partition=part, num_steps=m, num_probes=2, reortho=mode)
                    for mode in ("full", "none")}

        both = run(params, batch, key)
        h = dense_of(make_mlp)
        for spectra in both.values():
            for label, (idx, vs) in _probes(part, params, key, m, 2, "rademacher").items():
                hb = h[np.ix_(idx, idx)]
                for p, v in enumerate(vs):
                    nodes, weights = np.asarray(spectra.block(label).nodes[p]), np.asarray(spectra.block(label).weights[p])
                    if len(idx) <= m:
                        assert label == "head_bias"
                        _assert_measure_equals_eigh(nodes, weights, hb, v)
                        continue
                    lam_max = np.max(np.abs(np.linalg.eigvalsh(hb)))
                    hv = v.copy()
                    for k in range(1, 2 * m):
                        hv = hb @ hv
                        assert abs(np.sum(weights * nodes**k) - v @ hv) <= 1e-9 * lam_max**k


def test_blockwise_top_eigenvalue_matches_eigh():
    with jax.enable_x64(True):
        loss_fn, params, batch = make_attention()
        part = hp.by_leaf(params)
        tops = jax.jit(lambda p, b, k: hc.blockwise_top_eigenvalue(loss_fn, p, b, k, partition=part, num_steps=64))(
            params, batch, jax.random.key(2))
        h = dense_of(make_attention)
        for label, (idx, _) in _probes(part, params, jax.random.key(2), 64, 0, "normal").items():
            lam = np.linalg.eigvalsh(h[np.ix_(idx, idx)])
            np.testing.assert_allclose(tops.block(label).value, lam[-1], rtol=1e-8, atol=1e-12)
            assert float(tops.block(label).error_bound) < 1e-6 * max(abs(lam).max(), 1e-12)


def test_blocks_subset_gives_the_full_run_numbers_and_bad_labels_raise():
    """``blocks=`` computes only those labels (partition order), with the same probes and numbers as
    the full run; unknown, repeated, empty or string block lists raise naming the problem."""
    loss_fn, params, batch = make_mlp()
    part = hp.by_leaf(params)
    labels = part.labels(params)
    key = jax.random.key(3)
    full = hc.blockwise_slq(loss_fn, params, batch, key, partition=part, num_steps=6, num_probes=2)
    chosen = [labels[-1], labels[0]]
    sub = hc.blockwise_slq(loss_fn, params, batch, key, partition=part, num_steps=6, num_probes=2, blocks=chosen)
    assert sub.labels == (labels[0], labels[-1]) and sub.nodes.shape[0] == 2
    for label in sub.labels:
        np.testing.assert_allclose(sub.block(label).nodes, full.block(label).nodes, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(sub.block(label).weights, full.block(label).weights, rtol=1e-5, atol=1e-6)
    top = hc.blockwise_top_eigenvalue(loss_fn, params, batch, key, partition=part, num_steps=6, blocks=[labels[1]])
    assert top.labels == (labels[1],) and top.value.shape == (1,)
    for bad, msg in [(["nope"], "unknown block label"), ([labels[0], labels[0]], "twice"), ([], "empty"),
                     (labels[0], "sequence of block labels")]:
        with pytest.raises(ValueError, match=msg):
            hc.blockwise_slq(loss_fn, params, batch, key, partition=part, num_steps=6, blocks=bad)
