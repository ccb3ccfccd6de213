"""Scale validation of the gradient, Λ, ℓ∞-geometry and (1,1)-norm diagnostics at 40–150 blocks.

The unit tests of `metrics._gradient`, `_lambda`, `_geometry` and `curvature.l11_norm` /
`blockwise_l11_norm_matvec` run on 2–6 blocks; jax 0.10.2 miscompiled XLA:CPU programs that were right
up to 16 rows and wrong from 17 on. Here every function runs on the block counts users have
(50 and 61 blocks for the curvature and geometry programs, 150 for the cheap reductions),
with odd block sizes, size-1 blocks (`Elementwise` leaves, scalar and (1,) leaves), leaves
split into many row blocks (`Split` along axis 0), column blocks (`Split` along axis 1 of a
matrix and the middle axis of a 3-D leaf: non-contiguous in ravel order), a block spanning
two leaves, blocks with zero gradient, and trajectories of 31 iterates. Each result is
compared with an independent float64 NumPy evaluation of the docstring formula
(`scale_reference`); block layouts are rebuilt here from the shapes (`element_labels`), not
from `heterogeneity.partition`. Float32 (what users run) and ``jax.enable_x64(True)`` with
float64 inputs (tighter tolerances) are both checked. Inputs are float32-representable, so
every difference is rounding inside the library.

Tolerances (float32 | float64):

* block norms, shares, Gini, Λ_G/Λ_P, layer ratios, trajectory: rtol 1e-5 | 1e-12 (sums of
  ≤ 255 positive float32 terms: worst-case n·eps = 1.5e-5 on a squared norm, i.e. 7.6e-6 on the
  norm; pairwise summation is far tighter); Gini additionally atol 1e-6 | 1e-13 (the sorted
  O(n log n) form has cancelling ± coefficients).
* ℓ∞ geometry: the (1,1)-norms rtol 1e-5 | 1e-12; ‖H‖₂ and ‖H_bb'‖₂ (float32 ``eigvalsh``/``svd``
  vs float64 LAPACK; a symmetric perturbation E moves eigenvalues and singular values by at
  most ‖E‖₂ ≈ √w·eps·‖H‖) rtol 2e-5 | 1e-11 of the block's own norm.
* (1,1)-norm sketch: the probes are drawn exactly as the library draws them (threefry is
  deterministic: ``split(key, n)`` for the full sketch, ``split(fold_in(key, b), n)`` per block
  for ``diagonal=True``, on the block's packed length), so the reference is the same estimator
  with the same Cauchy vectors. The only difference is float32 rounding of the HVP, bounded
  elementwise by δ = τ · (|A||v| + |U|ᵀ((|U||x|)² ⊙ |U||v|)) with τ = 2γ_d (γ_d = d·eps/(1 − d·eps),
  the standard dot-product bound); the median is monotone, so the medians of |Hv| ∓ δ bracket
  the library's medians rigorously (`scale_reference.median_bracket`), widened by γ_d for the
  final row sum. A statistical check against the dense (1,1)-norm (fixed seed) uses the
  distribution-free bound: the median of n |Cauchy(0, r)| samples has sd ≈ (π/2) r / √n, and the
  sd of a sum is at most the sum of the sds (Minkowski), whatever the correlation between rows.

The miscompiles this tier guards against gave errors of order 1: every tolerance is far below.
"""
import contextlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from scale_reference import (
    gini_pairwise,
    layer_of,
    median_bracket,
    ref_block_norm_matrix,
    ref_blockwise_linf_geometry,
    ref_linf_geometry,
    ref_weighted_hessian_norms,
    ref_weighted_hessian_norms_trajectory,
)
from heterogeneity import curvature as hc
from heterogeneity import metrics as hm
from heterogeneity import partition as hp

DTYPES = ["float32", "float64"]
RTOL = {"float32": 1e-5, "float64": 1e-12}
EPS = {"float32": float(np.finfo(np.float32).eps), "float64": float(np.finfo(np.float64).eps)}


def _precision(dtype):
    return jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()


# ============================================================================ layouts from the shapes
def _leaves(tree):
    """``[(path, leaf)]`` in pytree (= ravel) order, paths joined by '/'."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [("/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path), x) for path, x in flat]


def element_labels(tree, spec) -> np.ndarray:
    """Block label of every coordinate of ``ravel_pytree(tree)``. ``spec(path)`` is ``("whole", label)``,
    ``("split", label, axis, parts)`` (part i of the axis -> ``label/i``) or ``("each", label)``
    (``label[i]`` in ravel order)."""
    out = []
    for path, x in _leaves(tree):
        shape, kind = np.shape(x), spec(path)
        if kind[0] == "whole":
            lab = np.full(shape, kind[1], dtype=object)
        elif kind[0] == "split":
            _, label, axis, parts = kind
            part = np.indices(shape)[axis] // (shape[axis] // parts)
            lab = np.array([f"{label}/{i}" for i in part.reshape(-1)], dtype=object)
        else:
            lab = np.array([f"{kind[1]}[{i}]" for i in range(int(np.prod(shape)))], dtype=object)
        out.append(np.asarray(lab).reshape(-1))
    return np.concatenate(out)


def leaf_numbers(tree) -> np.ndarray:
    """Leaf number of every coordinate of ``ravel_pytree(tree)``."""
    return np.concatenate([np.full(int(np.prod(np.shape(x))), n) for n, (_, x) in enumerate(_leaves(tree))])


class Layout:
    """labels (order of first appearance along the raveled params), per-block coordinates, sizes, ids."""

    def __init__(self, tree, spec):
        lab = element_labels(tree, spec)
        self.labels = tuple(dict.fromkeys(lab.tolist()))
        self.index = {label: np.flatnonzero(lab == label) for label in self.labels}
        self.sizes = np.array([len(self.index[label]) for label in self.labels], np.float64)
        number = {label: b for b, label in enumerate(self.labels)}
        self.ids = np.array([number[label] for label in lab])
        # `blockwise_l11_norm_matvec(diagonal=True)` packs the blocks touching the same leaves side by side
        leaf = leaf_numbers(tree)
        touch = [tuple(np.unique(leaf[self.index[label]])) for label in self.labels]
        self.packed = np.array([max(int(s) for t2, s in zip(touch, self.sizes) if t2 == t) for t in touch])


def library_partition(spec, name):
    def rule(path):
        kind = spec(path)
        if kind[0] == "split":
            return hp.Split(kind[1], axis=kind[2], parts=kind[3])
        return hp.Elementwise(kind[1]) if kind[0] == "each" else kind[1]

    return hp.from_fn(rule, name=name)


# ---------------------------------------------------------------------------- the 150-block gradient tree
WIDTHS = (3, 1, 5, 7, 2, 9, 1, 3, 11, 5, 4, 13, 1, 7, 3, 6, 9, 1, 5, 3, 7, 2, 11, 1, 3, 5, 9, 7, 1, 4, 13, 3,
          5, 1, 7, 9, 2, 5, 3, 11, 1, 6, 3, 5)  # 43 layers: layers/i/w is (W_i, W_{i+1}), layers/i/b (W_{i+1},)
ZERO_BLOCKS = ("layers/5/b", "proj/4")  # blocks whose gradient is exactly zero


def _wide_spec(path):
    if path == "embed":
        return ("split", "embed", 0, 37)  # (37, 5): 37 row blocks of 5
    if path == "proj":
        return ("split", "proj", 1, 17)  # (6, 51): 17 column blocks of 6x3 (non-contiguous)
    if path == "gain":
        return ("each", "gain")  # 7 blocks of size 1
    return ("whole", path)


WIDE = library_partition(_wide_spec, "scale_wide")


def _wide_shapes():
    return {"embed": (37, 5), "proj": (6, 51), "gain": (7,), "scale": (),
            "head": {"w": (WIDTHS[-1], 1), "b": (1,)},
            "layers": [{"w": (a, b), "b": (b,)} for a, b in zip(WIDTHS[:-1], WIDTHS[1:])]}


def _is_shape(s):
    return isinstance(s, tuple)


def _template(shapes):
    """NumPy zeros shaped like ``shapes`` (the layout needs only shapes)."""
    return jax.tree.map(lambda s: np.zeros(s, np.float32), shapes, is_leaf=_is_shape)


def _unflatten(shapes, flat, dtype):
    """The pytree whose `ravel_pytree` is ``flat`` (shape (..., d): leading axes stay leading), built
    with NumPy slicing: an eager `unravel` would compile one slice program per leaf shape."""
    leaves, treedef = jax.tree.flatten(shapes, is_leaf=_is_shape)
    cuts = np.cumsum([int(np.prod(s)) for s in leaves])[:-1]
    lead = np.shape(flat)[:-1]
    return jax.tree.unflatten(treedef, [jnp.asarray(c.reshape(lead + s), dtype)
                                        for c, s in zip(np.split(np.asarray(flat), cuts, axis=-1), leaves)])


def jit_labelled(fn):
    """``jax.jit(fn)`` for a function returning a NamedTuple with a static ``labels`` field: the labels
    (Python strings, fixed at trace time) are taken from the trace and put back on the result."""
    box = {}

    def strip(*args):
        out = fn(*args)
        box["labels"] = out.labels
        return out._replace(labels=None)

    jitted = jax.jit(strip)
    return lambda *args: jitted(*args)._replace(labels=box["labels"])


def wide_gradient(dtype, seed=0):
    """(gradient pytree in ``dtype``, its float64 flat values, Layout): per-block magnitudes spread over
    3.5 decades, two all-zero blocks; values float32-representable."""
    template = _template(_wide_shapes())
    lay = Layout(template, _wide_spec)
    rng = np.random.default_rng(seed)
    scale = {label: 10.0 ** rng.uniform(-2, 1.5) for label in lay.labels}
    for label in ZERO_BLOCKS:
        scale[label] = 0.0
    lab = element_labels(template, _wide_spec)
    flat = (rng.normal(size=len(lab)) * np.array([scale[x] for x in lab])).astype(np.float32).astype(np.float64)
    return _unflatten(_wide_shapes(), flat, dtype), flat, lay


# ---------------------------------------------------------------------------- the 50-block curvature problem
def _quad_spec(path):
    return {"a": ("split", "a", 0, 23),  # (23, 3): 23 row blocks of 3
            "c": ("split", "c", 1, 7),  # (5, 21): 7 column blocks of 5x3
            "e": ("each", "e"),  # (9,): 9 blocks of size 1
            "k": ("split", "k", 1, 7),  # (3, 7, 3): 7 blocks along the middle axis, 9 each
            "m/b": ("whole", "m"), "m/w": ("whole", "m")}.get(path, ("whole", path))  # m spans two leaves


QUAD = library_partition(_quad_spec, "scale_quad")
QUAD_SHAPES = {"a": (23, 3), "c": (5, 21), "e": (9,), "k": (3, 7, 3), "m": {"w": (4, 5), "b": (5,)},
               "s": (), "t": (11,), "u": (1,)}
# The same 50 blocks (same splits, size-1 blocks, non-contiguous column blocks, a block spanning two
# leaves), each smaller: d = 90 instead of 284, for the host SDP of `phi_smoothness` (O(d³) per Newton step).
QUAD_SHAPES_SMALL = {"a": (23, 1), "c": (3, 7), "e": (9,), "k": (3, 7, 1), "m": {"w": (2, 3), "b": (3,)},
                     "s": (), "t": (5,), "u": (1,)}
RANK = 7


def quad_loss(params, batch):
    """½ xᵀAx + (1/12) Σ_j (Ux)_j⁴ on x = ravel(params): Hessian A + Uᵀ diag((Ux)²) U."""
    x = ravel_pytree(params)[0]
    return 0.5 * x @ (batch["A"] @ x) + jnp.sum((batch["U"] @ x) ** 4) / 12


def quad_problem(dtype, seed=0, shapes=QUAD_SHAPES):
    """(params, batch, Layout, dense float64 Hessian H, float64 x, A, U); every block has its own scale
    (10^±0.7), H is indefinite."""
    lay = Layout(_template(shapes), _quad_spec)
    d = len(lay.ids)
    rng = np.random.default_rng(seed)
    s = (10.0 ** rng.uniform(-0.7, 0.7, size=len(lay.labels)))[lay.ids]
    g = rng.normal(size=(d, d))
    a = (s[:, None] * (g + g.T) * s[None, :] / np.sqrt(8 * d)).astype(np.float32).astype(np.float64)
    u = (0.3 * rng.normal(size=(RANK, d)) / np.sqrt(d) * s).astype(np.float32).astype(np.float64)
    x = (0.7 * rng.normal(size=d)).astype(np.float32).astype(np.float64)
    h = a + u.T @ ((u @ x)[:, None] ** 2 * u)
    params = _unflatten(shapes, x, dtype)
    batch = {"A": jnp.asarray(a, dtype), "U": jnp.asarray(u, dtype)}
    return params, batch, lay, h, x, a, u


def test_layouts_are_the_independent_ones():
    """The partitions resolve to the labels, order, sizes and coordinates rebuilt from the shapes."""
    for part, tree, spec, nb in [(WIDE, wide_gradient(jnp.float32)[0], _wide_spec, 150),
                                 (QUAD, quad_problem(jnp.float32)[0], _quad_spec, 50)]:
        lay = Layout(tree, spec)
        assert len(lay.labels) == nb
        assert part.labels(tree) == lay.labels
        assert part.sizes(tree) == {label: int(n) for label, n in zip(lay.labels, lay.sizes)}
        np.testing.assert_array_equal(part.flat_block_ids(tree), lay.ids)
        assert np.sum(lay.sizes == 1) >= 9
    quad = Layout(quad_problem(jnp.float32)[0], _quad_spec)
    assert set(quad.sizes) == {1, 3, 9, 11, 15, 25}  # all odd
    wide = Layout(wide_gradient(jnp.float32)[0], _wide_spec)
    assert np.sum(wide.sizes == 1) == 7 + 1 + 1 + WIDTHS[1:].count(1)  # gain, scale, head/b, 1-wide biases
    by_leaf = hp.by_leaf(wide_gradient(jnp.float32)[0])
    assert len(by_leaf.labels(wide_gradient(jnp.float32)[0])) == 2 * 43 + 6


# ============================================================================ gradient heterogeneity
def _ref_gradient_stats(flat, lay, keep=None):
    keep = range(len(lay.labels)) if keep is None else keep
    norms = np.array([np.linalg.norm(flat[lay.index[lay.labels[b]]]) for b in keep])
    sizes = lay.sizes[list(keep)]
    normalized = norms / np.sqrt(sizes)
    return norms, sizes, normalized, normalized / normalized.sum(), gini_pairwise(normalized)


@pytest.mark.parametrize("dtype", DTYPES)
def test_block_norms_shares_gini_150_blocks(dtype):
    rtol, eps = RTOL[dtype], EPS[dtype]
    with _precision(dtype):
        grads, flat, lay = wide_gradient(jnp.dtype(dtype))
        norms, sizes, normalized, shares, g = _ref_gradient_stats(flat, lay)
        bn = jit_labelled(lambda t: hm.blockwise_grad_norms(t, partition=WIDE))(grads)
        assert bn.labels == lay.labels and bn.norms.dtype == jnp.dtype(dtype)
        np.testing.assert_allclose(np.asarray(bn.norms, np.float64), norms, rtol=rtol)
        np.testing.assert_allclose(np.asarray(bn.sq_norms, np.float64), norms**2, rtol=2 * rtol)
        np.testing.assert_array_equal(np.asarray(bn.sizes), sizes)
        assert np.all(np.asarray(bn.norms)[[lay.labels.index(z) for z in ZERO_BLOCKS]] == 0)

        gh = jit_labelled(lambda t: hm.gradient_heterogeneity(t, partition=WIDE))(grads)
        assert gh.labels == lay.labels
        np.testing.assert_allclose(np.asarray(gh.norms, np.float64), norms, rtol=rtol)
        np.testing.assert_array_equal(np.asarray(gh.sizes), sizes)
        np.testing.assert_allclose(np.asarray(gh.normalized, np.float64), normalized, rtol=rtol)
        np.testing.assert_allclose(np.asarray(gh.shares, np.float64), shares, rtol=rtol, atol=0)
        np.testing.assert_allclose(float(np.sum(np.asarray(gh.shares, np.float64))), 1.0, atol=300 * eps)
        np.testing.assert_allclose(float(gh.gini), g, rtol=rtol, atol=rtol / 10)
        np.testing.assert_allclose(float(hm.gini(gh.shares)), g, rtol=rtol, atol=rtol / 10)  # scale-free
        assert 0.4 < g < 0.95  # a spread, not a degenerate case
        # shares straight from (norms, sizes): the jitted `normalized_shares`
        np.testing.assert_allclose(np.asarray(hm.normalized_shares(bn.norms, bn.sizes), np.float64), shares, rtol=rtol)

        for exclude in (r"/b$", r"^(embed|proj)/", r"^layers/(1\d|[2-9])/"):
            keep = [b for b, label in enumerate(lay.labels) if not re.search(exclude, label)]
            assert 40 <= len(keep) < 150, (exclude, len(keep))
            norms_k, sizes_k, normalized_k, shares_k, g_k = _ref_gradient_stats(flat, lay, keep)
            ex = jit_labelled(lambda t, e=exclude: hm.gradient_heterogeneity(t, partition=WIDE, exclude=e))(grads)
            assert ex.labels == tuple(lay.labels[b] for b in keep), exclude
            np.testing.assert_allclose(np.asarray(ex.norms, np.float64), norms_k, rtol=rtol)
            np.testing.assert_array_equal(np.asarray(ex.sizes), sizes_k)
            np.testing.assert_allclose(np.asarray(ex.normalized, np.float64), normalized_k, rtol=rtol)
            np.testing.assert_allclose(np.asarray(ex.shares, np.float64), shares_k, rtol=rtol)
            np.testing.assert_allclose(float(ex.gini), g_k, rtol=rtol, atol=rtol / 10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gini_and_shares_batched_rows(dtype):
    """(23, 150) rows through the batched `gini` / `normalized_shares`: random spreads, all equal (0),
    one nonzero ((n−1)/n), all zero (0, shares 0); a negative entry gives NaN under jit in its row only."""
    rtol = RTOL[dtype]
    rng = np.random.default_rng(3)
    n = 150
    x = np.abs(rng.standard_cauchy(size=(23, n))) * 10.0 ** rng.uniform(-3, 3, size=(23, 1))
    x[3] = 2.5
    x[7] = 0.0
    x[7, 41] = 4.0
    x[11] = 0.0
    x[19, ::2] = 0.0  # half zeros
    x = x.astype(np.float32).astype(np.float64)
    sizes = rng.integers(1, 300, size=n).astype(np.float64)
    ref_gini = np.array([gini_pairwise(row) for row in x])
    np.testing.assert_allclose(ref_gini[[3, 7, 11]], [0.0, (n - 1) / n, 0.0], atol=1e-15)
    with _precision(dtype):
        xj = jnp.asarray(x, dtype)
        got = np.asarray(hm.gini(xj), np.float64)
        np.testing.assert_allclose(got, ref_gini, rtol=rtol, atol=rtol / 10)
        norm = x / np.sqrt(sizes)
        with np.errstate(invalid="ignore"):
            ref_shares = np.nan_to_num(norm / norm.sum(1, keepdims=True))
        np.testing.assert_allclose(np.asarray(hm.normalized_shares(xj, jnp.asarray(sizes, dtype)), np.float64),
                                   ref_shares, rtol=rtol, atol=0)
        neg = x.copy()
        neg[5, 77] = -1.0
        got = np.asarray(jax.jit(hm.gini)(jnp.asarray(neg, dtype)), np.float64)
        assert np.isnan(got[5]) and not np.any(np.isnan(np.delete(got, 5)))
        np.testing.assert_allclose(np.delete(got, 5), np.delete(ref_gini, 5), rtol=rtol, atol=rtol / 10)


def _micro_loss(params, batch):
    """Σ_leaves Σ (c ⊙ p + ½ a p²): gradient c + a p."""
    c = jax.tree.leaves(batch["c"])
    return sum(jnp.sum(ci * p + 0.5 * batch["a"] * p**2) for ci, p in zip(c, jax.tree.leaves(params)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_full_batch_gradient_heterogeneity_microbatched(dtype):
    """The count-weighted mean gradient of 19 micro-batches (one `lax.scan`) at 150 blocks."""
    rtol = RTOL[dtype]
    with _precision(dtype):
        dt = jnp.dtype(dtype)
        params, p_flat, lay = wide_gradient(dt, seed=1)
        _, target, _ = wide_gradient(dt, seed=2)
        m = 19
        rng = np.random.default_rng(4)
        c = (target[None] * (1 + 0.2 * rng.normal(size=(m, len(target))))).astype(np.float32).astype(np.float64)
        a = rng.uniform(-0.05, 0.05, size=m).astype(np.float32).astype(np.float64)
        counts = rng.integers(1, 40, size=m).astype(np.float64)
        batch = {"c": _unflatten(_wide_shapes(), c, dt), "a": jnp.asarray(a, dt)}
        w = counts / counts.sum()
        grad_ref = (w[:, None] * (c + a[:, None] * p_flat[None])).sum(0)
        norms, sizes, normalized, shares, g = _ref_gradient_stats(grad_ref, lay)
        mb = hc.MicroBatched(batch, jnp.asarray(counts, dt))
        out = jit_labelled(lambda p, b: hm.full_batch_gradient_heterogeneity(_micro_loss, p, b, partition=WIDE))(
            params, mb)
        assert out.labels == lay.labels
        np.testing.assert_allclose(np.asarray(out.norms, np.float64), norms, rtol=rtol, atol=0)
        np.testing.assert_allclose(np.asarray(out.shares, np.float64), shares, rtol=rtol, atol=0)
        np.testing.assert_allclose(float(out.gini), g, rtol=rtol, atol=rtol / 10)
        fb = jax.jit(lambda p, b: hm.full_batch_grad(_micro_loss, p, b))(params, mb)
        loss_ref = np.sum(w * (c @ p_flat + 0.5 * a * (p_flat @ p_flat)))
        np.testing.assert_allclose(float(fb.loss), loss_ref, rtol=10 * rtol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_ratios_150_blocks(dtype):
    """Default by-leaf partition (43 layers of 2 leaves), a Mapping `layer_of` over the 150-block
    partition (12 groups, numeric order chunk2 < chunk10), and a callable with ``exclude``."""
    rtol = RTOL[dtype]
    with _precision(dtype):
        grads, flat, lay = wide_gradient(jnp.dtype(dtype))

        def ref(labels_of_blocks, block_norms, block_sizes, group_of):
            groups = {}
            for label, nrm, size in zip(labels_of_blocks, block_norms, block_sizes):
                grp = group_of(label)
                if grp is not None:
                    groups[grp] = groups.get(grp, 0.0) + nrm / np.sqrt(size)
            keys = sorted(groups, key=lambda s: (re.sub(r"\d+", "", s), [int(t) for t in re.findall(r"\d+", s)]))
            sums = np.array([groups[k] for k in keys])
            return tuple(keys), sums, sums / sums.sum()

        # (a) by_leaf: the leaves, in pytree order, and their norms from the flat vector
        leaf_paths, offsets = [], [0]
        for path, x in _leaves(grads):
            leaf_paths.append(path)
            offsets.append(offsets[-1] + int(np.prod(np.shape(x))))
        leaf_norms = [np.linalg.norm(flat[offsets[i]:offsets[i + 1]]) for i in range(len(leaf_paths))]
        leaf_sizes = np.diff(offsets)
        labels, sums, ratios = ref(leaf_paths, leaf_norms, leaf_sizes, layer_of)
        out = jit_labelled(hm.layer_ratios)(grads)
        assert out.labels == labels and len(labels) == 43 and labels[:3] == ("layers/0", "layers/1", "layers/2")
        np.testing.assert_allclose(np.asarray(out.layer_sums, np.float64), sums, rtol=rtol)
        np.testing.assert_allclose(np.asarray(out.ratios, np.float64), ratios, rtol=rtol)

        # (b) a Mapping over the 150 blocks
        norms = np.array([np.linalg.norm(flat[lay.index[label]]) for label in lay.labels])
        mapping = {label: f"chunk{b % 12}" for b, label in enumerate(lay.labels) if not label.startswith("layers/")}
        labels, sums, ratios = ref(lay.labels, norms, lay.sizes, mapping.get)
        out = jit_labelled(lambda t: hm.layer_ratios(t, partition=WIDE, layer_of=mapping))(grads)
        assert out.labels == labels and len(labels) == 12 and out.labels.index("chunk2") < out.labels.index("chunk10")
        np.testing.assert_allclose(np.asarray(out.layer_sums, np.float64), sums, rtol=rtol)
        np.testing.assert_allclose(np.asarray(out.ratios, np.float64), ratios, rtol=rtol)

        # (c) callable layer_of + exclude (biases dropped)
        def group_of(label):
            return None if label == "scale" else label.split("/")[0] + str(len(label) % 3)

        keep = [b for b, label in enumerate(lay.labels) if not re.search(r"/b$", label)]
        labels, sums, ratios = ref([lay.labels[b] for b in keep], norms[keep], lay.sizes[keep], group_of)
        out = jit_labelled(lambda t: hm.layer_ratios(t, partition=WIDE, layer_of=group_of, exclude=r"/b$"))(grads)
        assert out.labels == labels
        np.testing.assert_allclose(np.asarray(out.layer_sums, np.float64), sums, rtol=rtol)
        np.testing.assert_allclose(np.asarray(out.ratios, np.float64), ratios, rtol=rtol)


# ============================================================================ Λ_G, Λ_P
def _lambda_inputs(t, b, seed):
    rng = np.random.default_rng(seed)
    g2 = (10.0 ** rng.uniform(-4, 2, size=(t, b))) ** 2
    h = rng.normal(size=(t, b)) * 10.0 ** rng.uniform(-2, 3, size=(t, b))  # signed: |h| is used
    sizes = rng.integers(1, 5000, size=b).astype(np.float64)
    sizes[::13] = 1
    return tuple(x.astype(np.float32).astype(np.float64) for x in (g2, h, sizes))


def _compare_lambda(out, ref, rtol):
    for name in ("lambda_g", "lambda_p", "grad_weights", "size_weights", "hessian_norms"):
        np.testing.assert_allclose(np.asarray(getattr(out, name), np.float64), ref[name], rtol=rtol, atol=0,
                                   err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_weighted_hessian_norms_150_blocks(dtype):
    rtol = RTOL[dtype]
    g2, h, sizes = _lambda_inputs(9, 150, seed=5)
    g2[4] = 0.0  # a stationary point: Λ_G NaN, Λ_P defined
    with _precision(dtype):
        j = lambda x: jnp.asarray(x, dtype)  # noqa: E731
        for t in (0, 1, 8):
            _compare_lambda(hm.weighted_hessian_norms(j(g2[t]), j(h[t]), j(sizes)),
                            ref_weighted_hessian_norms(g2[t], h[t], sizes), rtol)
        batched = hm.weighted_hessian_norms(j(g2), j(h), j(np.broadcast_to(sizes, g2.shape)))
        ref = ref_weighted_hessian_norms(g2, h, sizes)
        assert np.isnan(float(batched.lambda_g[4])) and np.all(np.isnan(np.asarray(batched.grad_weights[4])))
        np.testing.assert_allclose(np.asarray(batched.lambda_g, np.float64), ref["lambda_g"], rtol=rtol)
        np.testing.assert_allclose(np.asarray(batched.lambda_p, np.float64), ref["lambda_p"], rtol=rtol)

        # lambda_norms: the gradient pytree of 150 blocks and per-block norms as a dict or a (B,) array
        grads, flat, lay = wide_gradient(jnp.dtype(dtype))
        g2_ref = np.array([np.sum(flat[lay.index[label]] ** 2) for label in lay.labels])
        ref = ref_weighted_hessian_norms(g2_ref, h[0], lay.sizes)
        as_dict = {label: j(h[0, b]) for b, label in reversed(list(enumerate(lay.labels)))}  # not in label order
        for norms in (as_dict, j(h[0])):
            _compare_lambda(jax.jit(lambda t, n: hm.lambda_norms(t, n, partition=WIDE))(grads, norms), ref, rtol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_weighted_hessian_norms_trajectory_31_iterates(dtype):
    """(31, 150) iterates; rows 0 and 17 stationary (skipped for sup Λ_G); per-iterate and constant Hessians."""
    rtol = RTOL[dtype]
    g2, h, sizes = _lambda_inputs(31, 150, seed=6)
    g2[[0, 17]] = 0.0
    g2[23] *= 50.0  # scale-free: Λ_G(θ_23) must not change
    with _precision(dtype):
        j = lambda x: jnp.asarray(x, dtype)  # noqa: E731
        for hess in (h, h[12]):
            out = hm.weighted_hessian_norms_trajectory(j(g2), j(hess), j(sizes))
            ref = ref_weighted_hessian_norms_trajectory(g2, hess, sizes)
            lg = np.asarray(out.lambda_g_t, np.float64)
            assert np.array_equal(np.isnan(lg), np.isnan(ref["lambda_g_t"])) and np.sum(np.isnan(lg)) == 2
            live = ~np.isnan(lg)
            np.testing.assert_allclose(lg[live], ref["lambda_g_t"][live], rtol=rtol)
            np.testing.assert_allclose(np.asarray(out.lambda_p_t, np.float64), ref["lambda_p_t"], rtol=rtol)
            np.testing.assert_allclose(float(out.lambda_g), ref["lambda_g"], rtol=rtol)
            np.testing.assert_allclose(float(out.lambda_p), ref["lambda_p"], rtol=rtol)
            second = np.sort(ref["lambda_g_t"][live])[-2]
            if second < ref["lambda_g"] * (1 - 10 * rtol):  # the argmax is well defined
                assert int(out.argmax_g) == ref["argmax_g"]


# ============================================================================ ℓ∞ geometry
def _random_interleaved(seed=7, num=61):
    """A dense symmetric indefinite matrix and (d,) block ids of ``num`` odd-sized blocks (1..13),
    assigned to random (non-contiguous) coordinates, with per-block scales."""
    rng = np.random.default_rng(seed)
    sizes = rng.choice([1, 1, 3, 5, 7, 9, 11, 13], size=num)
    ids = rng.permutation(np.repeat(np.arange(num), sizes))
    d = len(ids)
    s = (10.0 ** rng.uniform(-1, 1, size=num))[ids]
    g = rng.normal(size=(d, d))
    h = s[:, None] * (g + g.T) * s[None, :] / np.sqrt(8 * d)
    h[np.diag_indices(d)] -= 2.0 * s**2 * (ids % 3 == 0)  # some blocks dominated by a negative eigenvalue
    return h.astype(np.float32).astype(np.float64), ids


def _compare_geometry(out, ref, rtol_l11, rtol_spec, names=("l11", "spectral", "l11_over_d", "d_spectral", "ratio")):
    for name in names:
        rtol = rtol_l11 if name in ("l11", "l11_over_d") else rtol_spec if name != "ratio" else rtol_l11 + rtol_spec
        np.testing.assert_allclose(np.asarray(getattr(out, name), np.float64), ref[name], rtol=rtol, atol=0,
                                   err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_linf_geometry_and_blockwise_at_50_and_61_blocks(dtype):
    """Whole-matrix geometry, every diagonal block (batched eigvalsh on padded blocks) and the (B, B)
    block-norm matrix (batched svd) of (a) the 284-dim Hessian of the 50-block problem (its own
    partition), (b) a 380-dim matrix with 61 blocks on random interleaved coordinates."""
    rtol_l11, rtol_spec = (1e-5, 2e-5) if dtype == "float32" else (1e-12, 1e-11)
    with _precision(dtype):
        _, _, lay, h_quad, *_ = quad_problem(jnp.dtype(dtype))
        h_quad = h_quad.astype(np.float32).astype(np.float64)  # float32-representable input
        h_rand, ids_rand = _random_interleaved()
        for h, ids, labels in [(h_quad, lay.ids, lay.labels), (h_rand, ids_rand, None)]:
            hj = jnp.asarray(h, dtype)
            geo = hm.linf_geometry(hj)
            ref = ref_linf_geometry(h)
            _compare_geometry(geo, ref, rtol_l11, rtol_spec)
            assert float(geo.dim) == h.shape[0]
            # a given spectral norm is used as is
            given = hm.linf_geometry(hj, spectral=-ref["spectral"])
            np.testing.assert_allclose(float(given.ratio), ref["ratio"], rtol=rtol_l11)

            bl = hm.blockwise_linf_geometry(hj, ids, labels=labels)
            bref = ref_blockwise_linf_geometry(h, ids)
            num = int(ids.max()) + 1
            assert num >= 50 and bl.labels == (labels or tuple(str(b) for b in range(num)))
            np.testing.assert_array_equal(np.asarray(bl.sizes), bref["sizes"])
            _compare_geometry(bl, bref, rtol_l11, rtol_spec)
            neg = [b for b in range(num) if -np.linalg.eigvalsh(h[np.ix_(ids == b, ids == b)]).min() == bref["spectral"][b]]
            assert len(neg) >= 5  # blocks whose norm is a negative eigenvalue

            nm = np.asarray(hm.blockwise_norm_matrix(hj, ids), np.float64)
            nref = ref_block_norm_matrix(h, ids)
            assert nm.shape == (num, num)
            np.testing.assert_allclose(nm, nref, rtol=rtol_spec, atol=0)
            np.testing.assert_allclose(np.diag(nm), bref["spectral"], rtol=rtol_spec)


# ============================================================================ the (1,1)-norm sketch
def _cauchy(keys, n, dtype):
    return np.asarray(jax.vmap(lambda k: jax.random.cauchy(k, (n,), dtype))(keys), np.float64)


def _error_scale(a, u, x, v, rows, cols):
    """Elementwise bound scale of float rounding in (H v)[rows] for v supported on ``cols``:
    |A||v| + |U|ᵀ((|U||x|)² ⊙ |U||v|), the sums the HVP of `quad_loss` forms (v: (n, |cols|))."""
    au, ux = np.abs(u), np.abs(u) @ np.abs(x)
    return (np.abs(a[np.ix_(rows, cols)]) @ np.abs(v).T
            + au[:, rows].T @ (ux[:, None] ** 2 * (au[:, cols] @ np.abs(v).T)))  # (|rows|, n)


@pytest.mark.parametrize("dtype", DTYPES)
def test_l11_sketches_match_the_same_probes_at_50_blocks(dtype):
    """`l11_norm` (50 probes: even, the median interpolates), `blockwise_l11_norm_matvec` (rows of each
    block, same probes) and `blockwise_l11_norm_matvec(diagonal=True)` (51 block-confined probes per block,
    vmapped over 7 packed groups), all jitted on the `linearized_hvp` of the 50-block problem, against the same
    estimator in float64 NumPy with the same Cauchy vectors (rigorous rounding brackets)."""
    eps = EPS[dtype]
    with _precision(dtype):
        dt = jnp.dtype(dtype)
        params, batch, lay, h, x, a, u = quad_problem(dt)
        d = len(x)
        gamma = d * eps / (1 - d * eps)
        tau = 2 * gamma
        key, key_diag = jax.random.key(11), jax.random.key(12)

        @jax.jit
        def run(p, b, k, kd):
            mv = hc.linearized_hvp(quad_loss, p, b)
            return (hc.l11_norm(mv, p, k, num_probes=50),
                    hc.blockwise_l11_norm_matvec(mv, p, k, partition=QUAD, num_probes=50),
                    hc.blockwise_l11_norm_matvec(mv, p, kd, partition=QUAD, num_probes=51, diagonal=True))

        full, rows_by_block, diag = run(params, batch, key, key_diag)
        assert bool(full.finite)

        # full sketch: the probes of split(key, 50), rows of H against all columns
        v = _cauchy(jax.random.split(key, 50), d, dt)
        allc = np.arange(d)
        lo, mid, hi = median_bracket(h @ v.T, tau * _error_scale(a, u, x, v, allc, allc), axis=1)
        rows = np.asarray(ravel_pytree(full.row_sums)[0], np.float64)
        assert np.all(rows >= lo * (1 - 2 * eps)) and np.all(rows <= hi * (1 + 2 * eps)), \
            np.max(np.abs(rows - mid) / (hi - lo + 1e-300))
        value = float(full.value)
        assert lo.sum() * (1 - gamma) <= value <= hi.sum() * (1 + gamma), (value, lo.sum(), hi.sum())
        np.testing.assert_allclose(value, mid.sum(), rtol=5 * gamma)
        width = np.max((hi - lo) / mid)
        assert width < (5e-3 if dtype == "float32" else 1e-11), width  # the bracket is tight

        # rows of each block (same probes)
        assert rows_by_block.labels == tuple(lay.labels)  # partition order, through jit
        for label, ix in lay.index.items():
            got = float(rows_by_block.block(label))
            assert lo[ix].sum() * (1 - gamma) <= got <= hi[ix].sum() * (1 + gamma), (label, got, mid[ix].sum())

        # diagonal blocks: probes split(fold_in(key, b), 51) of the packed length, first d_b entries
        assert diag.labels == tuple(lay.labels)
        widths = []
        for b, (label, ix) in enumerate(lay.index.items()):
            vb = _cauchy(jax.random.split(jax.random.fold_in(key_diag, b), 51), int(lay.packed[b]), dt)[:, :len(ix)]
            lo_b, mid_b, hi_b = median_bracket(h[np.ix_(ix, ix)] @ vb.T, tau * _error_scale(a, u, x, vb, ix, ix), axis=1)
            got = float(diag.block(label))
            g_b = len(ix) * eps
            assert lo_b.sum() * (1 - g_b) - 1e-300 <= got <= hi_b.sum() * (1 + g_b), (label, got, mid_b.sum())
            widths.append((hi_b.sum() - lo_b.sum()) / mid_b.sum())
        # the brackets are informative: tight for almost every block; a block whose median falls between
        # two near-tied probe values gets a wider (still valid) bracket
        widths = np.asarray(widths)
        assert np.median(widths) < (5e-3 if dtype == "float32" else 1e-11), np.median(widths)
        assert widths.max() < (5e-2 if dtype == "float32" else 1e-9), (lay.labels[int(widths.argmax())], widths.max())


def test_l11_sketch_estimates_the_dense_norms():
    """Fixed seed, float32: the sketch estimates ‖H‖_{1,1} (50 probes) and Σ_b ‖H_bb‖_{1,1} (50 probes per
    block). Each row median of n |Cauchy(0, r_i)| has sd ≈ (π/2) r_i/√n; the sd of a sum is at most the sum of
    the sds (any correlation), so the relative sd of the total is ≤ (π/2)/√n: 0.22 at n = 50 (3 sd: 0.67).
    The k = 11 size-1 blocks are independent (distinct fold_in keys): their mean relative error has sd
    ≤ 0.22/√k = 0.066 (3 sd: 0.20)."""
    params, batch, lay, h, *_ = quad_problem(jnp.float32)
    n = 50
    sd = np.pi / 2 / np.sqrt(n)

    @jax.jit
    def run(p, b, k):
        mv = hc.linearized_hvp(quad_loss, p, b)
        return hc.l11_norm(mv, p, k, num_probes=n).value, hc.blockwise_l11_norm_matvec(
            mv, p, k, partition=QUAD, num_probes=n, diagonal=True)

    value, diag = run(params, batch, jax.random.key(2024))
    assert abs(float(value) / np.abs(h).sum() - 1) < 3 * sd
    true = np.array([np.abs(h[np.ix_(ix, ix)]).sum() for ix in lay.index.values()])
    est = np.array([float(diag.block(label)) for label in lay.labels])
    assert abs(est.sum() / true.sum() - 1) < 3 * sd
    ones = lay.sizes == 1
    k = int(ones.sum())
    assert k == 11
    assert abs(np.mean(est[ones] / true[ones]) - 1) < 3 * sd / np.sqrt(k)


# ============================================================================ dense report
def test_dense_linf_parts_at_50_blocks():
    """What `dense_linf_report` computes, on the 50-block problem with smaller blocks (`QUAD_SHAPES_SMALL`,
    d = 90: the host SDP costs O(d³) per Newton step), float64: geometry and blocks as above; the exact SDP
    brackets: Φ_AdaSGD = d‖H‖₂ (closed form) and the partition's Φ (B = 50) between the independent bounds
    Σ_b d_b ‖H_bb‖₂ ≤ H(L, Φ) ≤ min(Σ_bb' √(d_b d_b') ‖H_bb'‖₂, Σ_b d_b max_{i∈b} Σ_j |H_ij|).
    Φ_Adam (B = d, a d×d Newton system per barrier step) is checked on smaller problems in
    tests/metrics/test_geometry.py; the report's assembly of the parts is checked there too."""
    with jax.enable_x64(True):
        params, batch, lay, h, *_ = quad_problem(jnp.float64, shapes=QUAD_SHAPES_SMALL)
        hj = hc.dense_hessian(quad_loss, params, batch)
        geometry = hm.linf_geometry(hj)
        blocks = hm.blockwise_linf_geometry(hj, QUAD.flat_block_ids(params), labels=QUAD.labels(params))
    np.testing.assert_allclose(np.asarray(hj), h, rtol=1e-10, atol=1e-12)
    d = h.shape[0]
    _compare_geometry(geometry, ref_linf_geometry(h), 1e-10, 1e-10)
    bref = ref_blockwise_linf_geometry(h, lay.ids)
    _compare_geometry(blocks, bref, 1e-10, 1e-10)
    assert blocks.labels == lay.labels
    spec = ref_linf_geometry(h)["spectral"]
    adasgd = hm.phi_smoothness(h, "adasgd")
    np.testing.assert_allclose([adasgd.value - adasgd.gap, adasgd.value], d * spec, rtol=1e-8)
    rows = np.abs(h).sum(1)
    res = hm.phi_smoothness(h, lay.ids)
    lo, up = float(res.value - res.gap), float(res.value)
    assert 0 <= up - lo <= 1e-8 * up
    nb = lay.ids.max() + 1
    assert nb == 50 and d == 90 and set(lay.sizes) == {1, 3, 5, 9}
    sizes = np.bincount(lay.ids)
    norms = ref_block_norm_matrix(h, lay.ids)
    lower = np.sum(sizes * np.diag(norms))
    upper = min(np.sum(np.sqrt(np.outer(sizes, sizes)) * norms),
                np.sum(sizes * np.array([rows[lay.ids == b].max() for b in range(nb)])))
    assert lower * (1 - 1e-8) <= lo and up <= upper * (1 + 1e-8), (lower, lo, up, upper)
    assert up > lower * 1.01  # H is not block-diagonal: the value lies strictly inside
