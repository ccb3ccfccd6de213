"""Scale validation of `curvature.blockwise_slq` / `blockwise_top_eigenvalue` at 66–86 blocks.

jax 0.10.2 returned garbage for vmapped HVPs with block-confined tangents (from a vmap batch of
8) while the blockwise unit tests, on 2–6 blocks, passed. Here the model (`scale_models`) has
86 blocks in 44 groups: 41 row blocks of one `Split` leaf (one group, a vmap batch of 41 blocks
× 2 probes), 3 `Elementwise` blocks of size 1, and 42 by-leaf blocks of odd sizes 1–45 (the head
bias has one element). Both functions run jitted in float32, as users run them, and every block
is compared with the dense float64 Hessian's diagonal block H_bb (`jax.hessian`, itself checked
by finite differences) through `numpy.linalg.eigh`:

* blocks with d_b ≤ num_steps: the quadrature is exact, so its measure Σ w_j δ_{x_j} must be
  the probe's spectral measure Σ (vᵀq_i)² δ_{λ_i} (equal CDFs between eigenvalue gaps, no
  weighted node off the spectrum; the check of tests/curvature/test_blockwise.py);
* larger blocks: the Gauss quadrature matches the moments Σ w λᵏ = vᵀH_bbᵏv (k = 1..3), for the
  same probe v, rebuilt here from the key as the library draws it (fold_in(key, block number),
  split into num_probes, Rademacher, normalised).

Tolerances, relative to the block's own spectral scale ‖H_bb‖₂ (float32 HVPs and Lanczos vs
float64 eigh): nodes carrying weight > 1e-4 within 5e-4·‖H_bb‖₂ of an eigenvalue, CDFs within
2e-4, moments within 1e-4·‖H_bb‖₂ᵏ. Observed errors are ≲ 6e-5 (nodes, near-degenerate pairs)
and ≲ 1e-6 (moments); the 0.10.2 garbage was of order 1.

Compiling the blockwise programs costs ~1.5 s per group on 2 cores (the Lanczos program is
traced and compiled once per group), so these tests are marked slow.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scale_models import block_indices, dense_reference, expected_labels, make_deep_mlp, partition
from scale_reference import assert_measure_equals_eigh
from heterogeneity import curvature as hc

NUM_STEPS, NUM_PROBES = 16, 2


@pytest.fixture(scope="module")
def dense():
    with jax.enable_x64(True):
        return dense_reference()[0]


def _probes(key, block_number, n):
    """The unit Rademacher probes `blockwise_slq` draws for a block of n elements (every group of
    this model has equal-sized blocks, so the packed length is n and no padding is masked)."""
    keys = jax.random.split(jax.random.fold_in(key, block_number), NUM_PROBES)
    u = np.stack([np.asarray(jax.random.rademacher(k, (n,), dtype=jnp.float32), np.float64) for k in keys])
    return u / np.linalg.norm(u, axis=1, keepdims=True)


def test_layout_is_the_independent_one():
    """The partition resolves to the block labels, order and coordinates rebuilt from the shapes."""
    _, params, _ = make_deep_mlp()
    for kind in ("leaf", "layer", "stage"):
        part = partition(kind)
        labels = expected_labels(params, kind)
        assert part.labels(params) == labels
        idx = block_indices(params, kind)
        ids = part.flat_block_ids(params)
        for b, label in enumerate(labels):
            np.testing.assert_array_equal(np.flatnonzero(ids == b), idx[label])
        assert part.sizes(params) == {label: len(idx[label]) for label in labels}
    sizes = partition().sizes(params)
    assert len(sizes) == 86 and sum(1 for lab in sizes if lab.startswith("embed/")) == 41
    assert sorted(lab for lab, n in sizes.items() if n == 1) == ["gain[0]", "gain[1]", "gain[2]", "head/b", "layers/15/b"]
    assert sum(n > NUM_STEPS for n in sizes.values()) == 10 and max(sizes.values()) == 45
    assert len({n for n in sizes.values() if n % 2}) >= 8  # many odd sizes


@pytest.mark.slow
def test_blockwise_slq_86_blocks_matches_dense_eigh(dense):
    loss_fn, params, batch = make_deep_mlp()
    part = partition()
    key = jax.random.key(0)
    run = jax.jit(lambda p, b, k: hc.blockwise_slq(loss_fn, p, b, k, partition=part, num_steps=NUM_STEPS,
                                                   num_probes=NUM_PROBES))
    spectra = run(params, batch, key)
    labels = expected_labels(params)
    assert spectra.labels == tuple(part.labels(params)) and set(spectra.labels) == set(labels)  # partition order
    exact_blocks = moment_blocks = 0
    for b, (label, ix) in enumerate(block_indices(params).items()):
        hb = dense[np.ix_(ix, ix)]
        scale = np.abs(np.linalg.eigvalsh(hb)).max()
        s = spectra.block(label)
        assert s.nodes.shape == s.weights.shape == (NUM_PROBES, NUM_STEPS) and s.nodes.dtype == jnp.float32
        nodes, weights = np.asarray(s.nodes, np.float64), np.asarray(s.weights, np.float64)
        assert np.all(np.isfinite(nodes)) and np.all(np.isfinite(weights)), label
        assert np.all(weights >= 0), label
        np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-5, err_msg=label)
        for p, v in enumerate(_probes(key, b, len(ix))):
            if len(ix) <= NUM_STEPS:
                exact_blocks += p == 0
                try:
                    assert_measure_equals_eigh(nodes[p], weights[p], hb, v, cdf_tol=2e-4, node_tol=5e-4, heavy=1e-4)
                except AssertionError as e:
                    raise AssertionError(f"block {label} (d={len(ix)}), probe {p}: {e}") from None
            else:
                moment_blocks += p == 0
                hv = v.copy()
                for k in (1, 2, 3):
                    hv = hb @ hv
                    got = np.sum(weights[p] * nodes[p] ** k)
                    assert abs(got - v @ hv) <= 1e-4 * scale**k, (label, p, k, got, v @ hv, scale)
    assert exact_blocks == 76 and moment_blocks == 10


@pytest.mark.slow
def test_blockwise_top_eigenvalue_48_blocks_matches_dense_eigh(dense):
    """The 41 row blocks, the size-1 blocks, and two stage blocks spanning 20 leaves each (a
    stage partition: 6 groups, so the compile stays short). 60 Lanczos steps (every block runs
    them all; 250, the largest block size, took twice as long for the same values: worst error
    3.4e-6·‖H_bb‖₂ at both): the small blocks are exact, and the stage blocks (240 and 250
    elements) have converged, which the asserted `error_bound` certifies and dense eigh confirms."""
    loss_fn, params, batch = make_deep_mlp()
    part = partition("stage")
    idx = block_indices(params, "stage")
    sizes = sorted(len(ix) for ix in idx.values())
    assert len(idx) == 48 and sizes[-2] > 200 and sizes[-3] <= 60  # two stage blocks larger than the steps
    tops = jax.jit(lambda p, b, k: hc.blockwise_top_eigenvalue(loss_fn, p, b, k, partition=part, num_steps=60))(
        params, batch, jax.random.key(2))
    assert set(tops.labels) == set(idx) and len(tops) == len(idx)
    for label, ix in idx.items():
        lam = np.linalg.eigvalsh(dense[np.ix_(ix, ix)])
        scale = np.abs(lam).max()
        value, bound = float(tops.block(label).value), float(tops.block(label).error_bound)
        assert np.isfinite(value) and np.isfinite(bound), label
        assert abs(value - lam[-1]) <= 1e-4 * scale, (label, value, lam[-1], scale)
        assert bound <= 1e-3 * scale, (label, bound, scale)
