"""ℓ∞ geometry of the loss landscape and Φ-smoothness ([Xie24, §3, Definition 3.9, Table 1]).

[Xie24] explains Adam's advantage over AdaSGD (rotation-invariant, one adaptive scalar)
by comparing the smoothness constants of their partitions Φ:

* Φ_AdaSGD (one block):   H(L, Φ_AdaSGD) = d · sup_x ‖∇²L(x)‖₂            (exact, §3.3)
* Φ_Adam (every coordinate): H(L, Φ_Adam) ≤ sup_x ‖∇²L(x)‖_{1,1}           (the surrogate)
* Φ blockwise (Algorithm 3): H(L, Φ) of Definition 3.9, between the two.

Table 1 reports ‖H‖_{1,1}/d against ‖H‖₂: Adam is faster when ‖H‖_{1,1}/d ≪ ‖H‖₂.
`linf_geometry` gives these numbers for a dense Hessian, `blockwise_linf_geometry`
the same per diagonal block.

Definition 3.9 (read with the paper's remark and Lemma C.3): a diagonal A *follows* Φ if
it is constant on each block (A = diag(a_b on block b)); it *dominates* |∇²L(x)| if
−A ⪯ ∇²L(x) ⪯ A; and H(L, Φ) = min Tr(A) = min Σ_b d_b a_b over such A dominating the
Hessian at every x. `phi_smoothness` solves this semidefinite program exactly (log-det
barrier interior-point method, float64, host NumPy) for one dense Hessian — the local
value at x, which is the exact H(L, Φ) for a quadratic — or for a stack of Hessians
(points along a trajectory; a lower bound of the supremum over all x).

For models too large for a dense Hessian, `phi_smoothness_bounds` brackets the local
value from blockwise estimates (all with a per-x caveat: Definition 3.9 takes sup_x):

* lower  Σ_b d_b ‖H_bb‖₂ — any dominating A has a_b ≥ ‖H_bb‖₂ (principal sub-blocks);
  exact when the Hessian is block-diagonal over Φ ([Tomihari25, Assumption 4.3], [Zhang24, §2.3]);
  for Φ_Adam this is Σ_i |H_ii|, for Φ_AdaSGD it is d‖H‖₂ (exact).
* upper  Σ_{b,b'} √(d_b d_b') ‖H_bb'‖₂ — from |Δᵀ H Δ| ≤ Σ ‖H_bb'‖ ‖Δ_b‖‖Δ_b'‖ and AM–GM
  (the block form of Lemma C.3); for Φ_Adam it is ‖H‖_{1,1}, for Φ_AdaSGD d‖H‖₂.
  Alternatively, from row ℓ1 sums r_i = Σ_j |H_ij| (the Cauchy sketch of [Xie24]
  Algorithm 4 estimates them): diag(r) dominates H (Gershgorin), so a_b = max_{i∈b} r_i
  is feasible and Σ_b d_b max_{i∈b} r_i is an upper bound.
"""
from __future__ import annotations

import functools
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from heterogeneity import curvature as hc
from heterogeneity import partition as hp
from heterogeneity.curvature._lanczos import check_positive_int
from heterogeneity.metrics._lambda import blockwise_hessian_norms

PyTree = Any

__all__ = [
    "LinfGeometry",
    "BlockwiseLinfGeometry",
    "PhiSmoothness",
    "PhiSmoothnessBounds",
    "linf_geometry",
    "blockwise_linf_geometry",
    "blockwise_norm_matrix",
    "phi_smoothness",
    "phi_smoothness_bounds",
    "LinfReport",
    "dense_linf_report",
    "estimate_linf_report",
]


class LinfGeometry(NamedTuple):
    r"""ℓ∞-geometry numbers of one (d, d) Hessian H at one point ([Xie24, Table 1, §3.3]).

    All in the units of the Hessian (loss per parameter unit squared) except ``dim`` and
    ``ratio``; every field is a 0-d array. From `estimate_linf_report` ``l11`` and ``spectral``
    are estimates (Cauchy sketch and Lanczos), the rest follow from them.

    Attributes:
      l11: () :math:`\|H\|_{1,1} = \sum_{i,j} |H_{ij}|`, the surrogate upper bound of
        :math:`H(L, \Phi_{\text{Adam}})`.
      spectral: () :math:`\|H\|_2 = \max_i |\lambda_i(H)|`.
      dim: () d, the number of parameters (floating).
      l11_over_d: () :math:`\|H\|_{1,1} / d`, the (1,1)-norm column of [Xie24, Table 1].
      d_spectral: () :math:`d\,\|H\|_2 = H(L, \Phi_{\text{AdaSGD}})` at this point.
      ratio: () :math:`\|H\|_{1,1} / (d\,\|H\|_2)`, dimensionless in :math:`[1/d, \sqrt d]`;
        below 1 favours Adam over AdaSGD. NaN when H = 0.
    """

    l11: jax.Array  # () ‖H‖_{1,1} = Σ_ij |H_ij|
    spectral: jax.Array  # () ‖H‖₂ = max |eigenvalue|
    dim: jax.Array  # () d
    l11_over_d: jax.Array  # () ‖H‖_{1,1} / d            ([Xie24, Table 1] column)
    d_spectral: jax.Array  # () d ‖H‖₂ = H(L, Φ_AdaSGD) at this point
    ratio: jax.Array  # () ‖H‖_{1,1} / (d ‖H‖₂): < 1 favours Adam over AdaSGD


class BlockwiseLinfGeometry(NamedTuple):
    r"""`LinfGeometry` of every diagonal block :math:`H_{bb}` of a partition Φ ([Xie24, Def. 3.9, Table 1]).

    B blocks in partition (or ``block_ids``) order, :math:`d_b` coordinates each; units as in
    `LinfGeometry`.

    Attributes:
      l11: (B,) :math:`\|H_{bb}\|_{1,1} = \sum_{i,j \in b} |H_{ij}|`.
      spectral: (B,) :math:`\|H_{bb}\|_2`.
      sizes: (B,) :math:`d_b` (floating).
      l11_over_d: (B,) :math:`\|H_{bb}\|_{1,1} / d_b`.
      d_spectral: (B,) :math:`d_b \|H_{bb}\|_2`, the block's term of the lower bound
        :math:`\sum_b d_b \|H_{bb}\|_2` of :math:`H(L, \Phi)`.
      ratio: (B,) :math:`\|H_{bb}\|_{1,1} / (d_b \|H_{bb}\|_2)` (NaN for a zero block).
      labels: (B,) block labels.
    """

    l11: jax.Array  # (B,) ‖H_bb‖_{1,1}
    spectral: jax.Array  # (B,) ‖H_bb‖₂
    sizes: jax.Array  # (B,) d_b
    l11_over_d: jax.Array  # (B,)
    d_spectral: jax.Array  # (B,)
    ratio: jax.Array  # (B,)
    labels: tuple[str, ...]


class PhiSmoothness(NamedTuple):
    r"""Φ-smoothness :math:`H(L, \Phi)` of [Xie24, Def. 3.9] at given dense Hessian(s), from `phi_smoothness`.

    Host (NumPy float64) values in the units of the Hessian; B blocks with :math:`d_b`
    coordinates, K the number of Hessians :math:`H^{(k)}` given.

    Attributes:
      value: float, :math:`\sum_b d_b a_b` of the returned (feasible) ``a``: an upper end of
        :math:`\min \operatorname{Tr}(A)` over diagonal A following Φ with
        :math:`-A \preceq H^{(k)} \preceq A` for all k.
      gap: float, the certified duality gap: the optimum lies in [``value`` − ``gap``, ``value``].
      a: (B,) the per-block diagonal entries :math:`a_b` of the optimal A.
      sizes: (B,) :math:`d_b` (float).
      lower: float, :math:`\sum_b d_b \max_k \|H^{(k)}_{bb}\|_2` (a lower bound of the optimum).
      upper: float, :math:`\sum_{b,b'} \sqrt{d_b d_{b'}} \max_k \|H^{(k)}_{bb'}\|_2`, the value
        of a feasible point ([Xie24, Lemma C.3] in block form).
    """

    value: float  # H(L, Φ) at the given Hessian(s): min Σ_b d_b a_b (Definition 3.9)
    gap: float  # certified duality gap: the optimum lies in [value − gap, value]
    a: np.ndarray  # (B,) optimal per-block diagonal a_b
    sizes: np.ndarray  # (B,) d_b
    lower: float  # Σ_b d_b max_k ‖H_bb^{(k)}‖₂
    upper: float  # Σ_{b,b'} √(d_b d_b') max_k ‖H_bb'^{(k)}‖₂ (a feasible point)


class PhiSmoothnessBounds(NamedTuple):
    r"""A bracket [``lower``, ``upper``] of the local Φ-smoothness :math:`H(L, \Phi)` ([Xie24, Def. 3.9]).

    Both 0-d arrays in the units of the Hessian; see `phi_smoothness_bounds` for the bounds
    and `LinfReport` for how each report fills them.

    Attributes:
      lower: () lower bound, e.g. :math:`\sum_b d_b \|H_{bb}\|_2` (NaN when not estimated).
      upper: () upper bound, e.g. :math:`\sum_{b,b'} \sqrt{d_b d_{b'}} \|H_{bb'}\|_2` or
        :math:`\sum_b d_b \max_{i \in b} \sum_j |H_{ij}|` (NaN when neither input was given).
    """

    lower: jax.Array  # () Σ_b d_b ‖H_bb‖₂
    upper: jax.Array  # () upper bound (NaN if neither block_norms nor row_l1 is given)


# ----------------------------------------------------------------------------- helpers
def _check_hessian(h, name="hessian") -> jax.Array:
    h = jnp.asarray(h)
    if h.ndim != 2 or h.shape[0] != h.shape[1] or h.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty square (d, d) matrix, got shape {h.shape}")
    return h


def _check_ids(block_ids, d: int) -> tuple[np.ndarray, int]:
    ids = np.asarray(block_ids, dtype=np.int64).reshape(-1)
    if ids.shape != (d,):
        raise ValueError(f"block_ids must have one entry per coordinate ({d}), got shape {ids.shape}")
    num = int(ids.max()) + 1 if ids.size else 0
    if ids.min() < 0 or len(np.unique(ids)) != num:
        raise ValueError(f"block_ids must be 0..B-1 with every block non-empty, got values {np.unique(ids)[:20]}")
    return ids, num


def _spectral(h: jax.Array) -> jax.Array:
    return jnp.max(jnp.abs(jnp.linalg.eigvalsh(h)))


def _geometry(l11, spec, d) -> tuple:
    dspec = d * spec
    ratio = jnp.where(dspec > 0, l11 / jnp.where(dspec > 0, dspec, 1), jnp.nan)
    return l11 / d, dspec, ratio


# ----------------------------------------------------------------------------- dense
def linf_geometry(hessian: jax.Array, *, spectral: float | jax.Array | None = None) -> LinfGeometry:
    r"""(1,1)-norm / d, d·‖H‖₂ and their ratio for a dense symmetric Hessian [Xie24, Table 1]:

    .. math:: \frac{\|H\|_{1,1}}{d} = \frac{1}{d}\sum_{ij} |H_{ij}|,\qquad d\,\|H\|_2,\qquad
              \text{ratio} = \frac{\|H\|_{1,1}}{d\,\|H\|_2} \ (<1 \text{ favours Adam over AdaSGD}).

    >>> import jax.numpy as jnp
    >>> from heterogeneity import metrics as hm
    >>> g = hm.linf_geometry(jnp.diag(jnp.array([1.0, 0.5, 0.5, 0.0])))
    >>> float(g.l11_over_d), float(g.d_spectral), float(g.ratio)
    (0.5, 4.0, 0.5)

    ``spectral``: a known or estimated ‖H‖₂ (e.g. `curvature.spectral_norm`) to skip the
    O(d³) dense eigendecomposition; the (1,1)-norm is always computed exactly (O(d²)).
    """
    h = _check_hessian(hessian)
    d = jnp.asarray(h.shape[0], jnp.result_type(h, jnp.float32))
    l11 = jnp.sum(jnp.abs(h))
    spec = _spectral(h) if spectral is None else jnp.abs(jnp.asarray(spectral, l11.dtype))
    return LinfGeometry(l11, spec, d, *_geometry(l11, spec, d))


def _blocks(ids: np.ndarray, num: int) -> list[np.ndarray]:
    return [np.flatnonzero(ids == b) for b in range(num)]


def _block_index(ids: np.ndarray, num: int) -> tuple[np.ndarray, np.ndarray]:
    """Static gather of every block: ``index[b, :d_b]`` its coordinates (ascending), padding
    repeats coordinate 0 and is masked by ``valid``; width ``max_b d_b``."""
    members = _blocks(ids, num)
    width = max(len(m) for m in members)
    index = np.zeros((num, width), np.int32)
    valid = np.zeros((num, width), bool)
    for b, m in enumerate(members):
        index[b, : len(m)] = m
        valid[b, : len(m)] = True
    return index, valid


def _gather_block(h, ri, rv, ci, cv):
    """``H[rows, cols]`` of one block pair, zero padded to (width, width): zero rows and
    columns add only zero eigen/singular values, so ‖·‖₂ and Σ|·| are those of the block."""
    return jnp.where(rv[:, None] & cv[None, :], h[ri[:, None], ci[None, :]], 0)


@jax.jit
def _block_geometry(h, index, valid):
    """(1,1)-norm and ‖·‖₂ of every diagonal block (one program, batched ``eigvalsh`` on
    (B, w, w) padded blocks, w the largest block: cost B·w³, not B·d³)."""

    def one(i, v):
        hb = _gather_block(h, i, v, i, v)
        return jnp.sum(jnp.abs(hb)), jnp.max(jnp.abs(jnp.linalg.eigvalsh(hb)))

    return jax.vmap(one)(index, valid)


@jax.jit
def _block_norms(h, index, valid):
    """(B, B) largest singular values of the padded blocks H_bb' (batched ``svd``, B²·w³)."""

    def one(ri, rv, ci, cv):
        return jnp.linalg.svd(_gather_block(h, ri, rv, ci, cv), compute_uv=False)[0]

    return jax.vmap(lambda ri, rv: jax.vmap(lambda ci, cv: one(ri, rv, ci, cv))(index, valid))(index, valid)


def blockwise_linf_geometry(
    hessian: jax.Array, block_ids: np.ndarray | Sequence[int], *, labels: Sequence[str] | None = None
) -> BlockwiseLinfGeometry:
    r"""`linf_geometry` of every diagonal block ``H_bb`` [Xie24, Def. 3.9, Table 1]: per block,
    ``\|H_{bb}\|_{1,1}``, ``\|H_{bb}\|_2``, ``d_b``, ``\|H_{bb}\|_{1,1}/d_b``, ``d_b\|H_{bb}\|_2`` and their ratio
    (``block_ids``: (d,) ints, e.g. `Partition.flat_block_ids`).

    >>> import jax.numpy as jnp
    >>> from heterogeneity import metrics as hm
    >>> g = hm.blockwise_linf_geometry(jnp.diag(jnp.array([1.0, -2.0, 0.5])), [0, 0, 1], labels=["a", "b"])
    >>> g.labels, [float(x) for x in g.l11], [float(x) for x in g.spectral]
    (('a', 'b'), [3.0, 0.5], [2.0, 0.5])

    All blocks are processed by one compiled program on zero-padded (w, w) copies, w the
    largest block (cost B·w³), compiled once per (d, B, w).
    """
    h = _check_hessian(hessian)
    ids, num = _check_ids(block_ids, h.shape[0])
    labels = tuple(str(i) for i in range(num)) if labels is None else tuple(labels)
    if len(labels) != num:
        raise ValueError(f"labels: expected {num} labels, got {len(labels)}")
    l11, spec = _block_geometry(h, *(jnp.asarray(x) for x in _block_index(ids, num)))
    sizes = jnp.asarray(np.bincount(ids, minlength=num), l11.dtype)
    return BlockwiseLinfGeometry(l11, spec, sizes, *_geometry(l11, spec, sizes), labels)


def blockwise_norm_matrix(hessian: jax.Array, block_ids: np.ndarray | Sequence[int]) -> jax.Array:
    r"""(B, B) matrix of block operator norms ``M_{bb'} = \|H_{bb'}\|_2 = \sigma_{\max}(H_{bb'})`` of a
    dense Hessian (batched SVD of zero-padded blocks; the input of the upper bound of
    `phi_smoothness_bounds`, [Xie24, Def. 3.9, Lemma C.3]).

    Args:
      hessian: (d, d) dense Hessian. block_ids: (d,) ints 0..B-1 (`Partition.flat_block_ids`).

    Returns:
      (B, B) array of largest singular values.

    >>> import jax.numpy as jnp
    >>> from heterogeneity import metrics as hm
    >>> h = jnp.array([[2.0, 1.0, 0.0], [1.0, 2.0, 3.0], [0.0, 3.0, -4.0]])
    >>> [[round(float(x), 4) for x in row] for row in hm.blockwise_norm_matrix(h, [0, 0, 1])]
    [[3.0, 3.0], [3.0, 4.0]]
    """
    h = _check_hessian(hessian)
    ids, num = _check_ids(block_ids, h.shape[0])
    return _block_norms(h, *(jnp.asarray(x) for x in _block_index(ids, num)))


def phi_smoothness_bounds(
    diag_block_norms: jax.Array,
    sizes: jax.Array,
    *,
    block_norms: jax.Array | None = None,
    row_l1: jax.Array | None = None,
    block_ids: np.ndarray | Sequence[int] | None = None,
) -> PhiSmoothnessBounds:
    r"""Bracket the local Φ-smoothness H(L, Φ) of [Xie24, Def. 3.9] from blockwise estimates:

    .. math:: \sum_b d_b \|H_{bb}\|_2 \;\le\; H(L, \Phi)\big|_x \;\le\;
              \sum_{b,b'} \sqrt{d_b d_{b'}}\, \|H_{bb'}\|_2
              \quad\text{or}\quad \sum_b d_b \max_{i \in b} \sum_j |H_{ij}|.

    Lower: any dominating A has :math:`a_b \ge \|H_{bb}\|_2` (principal sub-blocks); exact for
    a block-diagonal Hessian. Upper: the block form of [Xie24, Lemma C.3] (AM–GM on
    :math:`|\Delta^\top H \Delta| \le \sum_{b,b'} \|H_{bb'}\|_2 \|\Delta_b\|_2 \|\Delta_{b'}\|_2`),
    or Gershgorin: :math:`\operatorname{diag}(r)` with row sums :math:`r_i = \sum_j |H_{ij}|`
    dominates H ([Xie24, Algorithm 4] estimates :math:`r_i`). See the module docstring.

    Args:
      diag_block_norms: (B,) :math:`\|H_{bb}\|_2` (e.g. blockwise top absolute eigenvalue by
        Lanczos, `blockwise_hessian_norms`); absolute values are taken.
      sizes: (B,) :math:`d_b`.
      block_norms: optional (B, B) :math:`\|H_{bb'}\|_2` (e.g. `blockwise_norm_matrix`): the
        first upper bound.
      row_l1: optional (d,) row sums :math:`\sum_j |H_{ij}|` (used when ``block_norms`` is not
        given): the second upper bound.
      block_ids: (d,) block of every row, 0..B-1; required with ``row_l1``.

    Returns:
      `PhiSmoothnessBounds` (``upper`` NaN when neither ``block_norms`` nor ``row_l1`` is given).

    >>> import jax.numpy as jnp
    >>> from heterogeneity import metrics as hm
    >>> h = jnp.array([[2.0, 0.0, 0.5], [0.0, 1.0, 0.0], [0.5, 0.0, 1.0]]); ids = [0, 0, 1]
    >>> m = hm.blockwise_norm_matrix(h, ids)                    # [[2, 0.5], [0.5, 1]]
    >>> b = hm.phi_smoothness_bounds(jnp.diag(m), jnp.array([2.0, 1.0]), block_norms=m)
    >>> r = hm.phi_smoothness_bounds(jnp.diag(m), jnp.array([2.0, 1.0]), row_l1=jnp.abs(h).sum(1), block_ids=ids)
    >>> round(float(b.lower), 4), round(float(b.upper), 4), round(float(r.upper), 4)   # exact: 6.4142
    (5.0, 6.4142, 6.5)
    """
    n = jnp.abs(jnp.asarray(diag_block_norms))
    s = jnp.asarray(sizes, n.dtype)
    if n.shape != s.shape or n.ndim != 1:
        raise ValueError(f"diag_block_norms and sizes must both be (B,), got {n.shape} and {s.shape}")
    lower = jnp.sum(s * n)
    if block_norms is not None:
        m = jnp.asarray(block_norms)
        if m.shape != (n.shape[0],) * 2:
            raise ValueError(f"block_norms must be ({n.shape[0]}, {n.shape[0]}), got {m.shape}")
        r = jnp.sqrt(s)
        upper = jnp.sum(r[:, None] * r[None, :] * jnp.abs(m))
    elif row_l1 is not None:
        if block_ids is None:
            raise ValueError("phi_smoothness_bounds: row_l1 needs block_ids (which block each row belongs to)")
        r1 = jnp.asarray(row_l1)
        ids, num = _check_ids(block_ids, r1.shape[0])
        if num != n.shape[0]:
            raise ValueError(f"block_ids name {num} blocks but diag_block_norms has {n.shape[0]}")
        upper = jnp.sum(s * jax.ops.segment_max(r1, jnp.asarray(ids), num_segments=num))
    else:
        upper = jnp.asarray(jnp.nan, lower.dtype)
    return PhiSmoothnessBounds(lower, upper)


class LinfReport(NamedTuple):
    r"""ℓ∞ geometry and Φ-smoothness brackets at one point ([Xie24, Def. 3.9, Table 1, App. D.3]).

    By the refinement property of [Xie24, Def. 3.9],
    :math:`H(L, \Phi_{\text{Adam}}) \le H(L, \Phi) \le H(L, \Phi_{\text{AdaSGD}}) = d\,\|H\|_2`
    (pointwise too). `dense_linf_report` fills each bracket with the exact SDP optimum
    (``lower`` = value − gap, ``upper`` = value); `estimate_linf_report` with estimates (its
    ``adam.lower`` is NaN).

    Attributes:
      geometry: `LinfGeometry` of the whole Hessian.
      blocks: `BlockwiseLinfGeometry` of the partition's diagonal blocks.
      adam: `PhiSmoothnessBounds` of :math:`H(L, \Phi_{\text{Adam}})` (every coordinate a
        block; estimated upper end :math:`\|H\|_{1,1}`).
      blockwise: `PhiSmoothnessBounds` of :math:`H(L, \Phi)` for the given partition.
      adasgd: `PhiSmoothnessBounds` of :math:`H(L, \Phi_{\text{AdaSGD}}) = d\,\|H\|_2` (one block).
    """

    geometry: LinfGeometry  # whole-Hessian (1,1)-norm / spectral geometry
    blocks: BlockwiseLinfGeometry  # the same per diagonal block of the partition
    adam: PhiSmoothnessBounds  # H(L, Φ_Adam) bracket (exact: lower = value − gap, upper = value)
    blockwise: PhiSmoothnessBounds  # H(L, Φ) for the given partition
    adasgd: PhiSmoothnessBounds  # H(L, Φ_AdaSGD) = d‖H‖₂


# ----------------------------------------------------------------------------- exact SDP
def _partition_ids(partition, d: int) -> np.ndarray:
    if isinstance(partition, str):
        if partition == "adam":
            return np.arange(d)
        if partition == "adasgd":
            return np.zeros(d, np.int64)
        raise ValueError(f"phi_smoothness: partition must be 'adam', 'adasgd' or (d,) block ids, got {partition!r}")
    return np.asarray(partition, np.int64)


def phi_smoothness(
    hessian: np.ndarray | jax.Array,
    partition: str | np.ndarray | Sequence[int] = "adam",
    *,
    rtol: float = 1e-9,
    max_newton: int = 200,
) -> PhiSmoothness:
    r"""Exact Φ-smoothness H(L, Φ) of [Xie24, Def. 3.9] at given dense Hessian(s) :math:`H^{(k)}`:

    .. math:: H(L, \Phi) = \min_{a \in \mathbb{R}^B} \sum_{b=1}^{B} d_b\, a_b
              \quad\text{s.t.}\quad -A \preceq H^{(k)} \preceq A \ \ \forall k,
              \qquad A = \operatorname{diag}(a_{\Phi(1)}, \dots, a_{\Phi(d)}),

    i.e. :math:`\min \operatorname{Tr}(A)` over diagonal A that follow Φ and dominate
    :math:`|H^{(k)}|`. Solved by a log-det barrier interior-point method (Newton with
    backtracking, float64 NumPy on the host; for small d, not jit-able). One Hessian gives
    the local value at x, the exact H(L, Φ) for a quadratic; a stack (points along a
    trajectory) gives their common dominating A, a lower bound of the sup over all x.
    :math:`\Phi_{\text{Adam}}` gives the smallest and :math:`\Phi_{\text{AdaSGD}}` the
    largest value (:math:`d\,\|H\|_2`) over all partitions.

    Args:
      hessian: (d, d), or (n, d, d) for n points (symmetrised; must be finite).
      partition: ``"adam"`` (every coordinate a block), ``"adasgd"`` (one block) or (d,)
        block ids 0..B-1 (`Partition.flat_block_ids`).
      rtol: target relative duality gap: the value is certified to within
        ``gap`` ≤ rtol·value (barrier duality gap 2nd/t).
      max_newton: Newton steps per barrier round.

    Returns:
      `PhiSmoothness` (``value``, ``gap``, the optimal ``a``, ``sizes`` and the ``lower`` /
        ``upper`` bounds of `phi_smoothness_bounds`). `RuntimeError` if the gap is not reached.

    >>> import numpy as np
    >>> from heterogeneity import metrics as hm
    >>> h = np.diag([2.0, 1.0, -1.0])     # Adam Σ|H_ii|, blocks {0, 1}, {2}: 2·2 + 1, AdaSGD 3·2
    >>> [round(hm.phi_smoothness(h, p).value, 4) for p in ("adam", [0, 0, 1], "adasgd")]
    [4.0, 5.0, 6.0]
    """
    hs = np.asarray(hessian, dtype=np.float64)
    if hs.ndim == 2:
        hs = hs[None]
    if hs.ndim != 3 or hs.shape[1] != hs.shape[2] or hs.shape[1] == 0:
        raise ValueError(f"phi_smoothness: hessian must be (d, d) or (n, d, d), got {np.shape(hessian)}")
    if not np.all(np.isfinite(hs)):
        bad = np.argwhere(~np.isfinite(hs))[0]
        raise ValueError(f"phi_smoothness: hessian has non-finite entries (first at index {tuple(int(i) for i in bad)}); "
                         "a NaN/inf batch or loss gives no Φ-smoothness")
    hs = 0.5 * (hs + np.swapaxes(hs, 1, 2))
    n_pts, d, _ = hs.shape
    ids, num = _check_ids(_partition_ids(partition, d), d)
    E = np.zeros((d, num))
    E[np.arange(d), ids] = 1.0
    sizes = E.sum(0)
    idx = _blocks(ids, num)
    if num == d:  # one coordinate per block (Adam): block norms are |H_ij| in block order
        order = np.argsort(ids)
        bnorm = np.max(np.abs(hs[:, order][:, :, order]), axis=0)
    else:
        bnorm = np.max([[[np.linalg.norm(h[np.ix_(i, j)], 2) for j in idx] for i in idx] for h in hs], axis=0)
    lower = float(np.sum(sizes * np.diag(bnorm)))
    r = np.sqrt(sizes)
    upper_a = (bnorm * r[None, :]).sum(1) / r  # feasible a_b = Σ_b' √(d_b'/d_b) ‖H_bb'‖₂
    upper = float(np.sum(sizes * upper_a))
    scale = max(float(np.max(np.abs(np.linalg.eigvalsh(hs)))), 0.0)
    if scale == 0.0:
        return PhiSmoothness(0.0, 0.0, np.zeros(num), sizes, 0.0, 0.0)
    mats = np.concatenate([hs, -hs])  # constraints A - M ⪰ 0 for M in ±H_k
    m_barrier = mats.shape[0] * d

    def chol_all(a):
        A = np.diag(E @ a)
        out = []
        for M in mats:
            try:
                out.append(np.linalg.cholesky(A - M))
            except np.linalg.LinAlgError:
                return None
        return out

    def f(a, t, chols):
        return t * sizes @ a - sum(2 * np.sum(np.log(np.diag(L))) for L in chols)

    a = upper_a + 1e-2 * scale + 1e-3 * np.abs(upper_a)
    chols = chol_all(a)
    t = m_barrier / max(sizes @ a, 1e-300)
    for _ in range(100):  # t grows 20x per round: 100 rounds is far beyond any rtol
        for _ in range(max_newton):
            invs = [np.linalg.inv(L) for L in chols]
            invs = [Li.T @ Li for Li in invs]  # (A - M)^{-1}
            grad = t * sizes - sum(E.T @ np.diag(S) for S in invs)
            hess = sum(E.T @ (S * S) @ E for S in invs)
            step = -np.linalg.solve(hess + 1e-300 * np.eye(num), grad)
            dec = -grad @ step
            if dec / 2 <= 1e-12:
                break
            f0, s = f(a, t, chols), 1.0
            while True:
                trial = a + s * step
                c = chol_all(trial)
                if c is not None and f(trial, t, c) <= f0 - 0.25 * s * dec:
                    a, chols = trial, c
                    break
                s *= 0.5
                if s < 1e-16:
                    break
            if s < 1e-16:
                break
        value = float(sizes @ a)
        gap = m_barrier / t
        if gap <= rtol * value + 1e-15 * scale * d:
            return PhiSmoothness(value, gap, a, sizes, lower, upper)
        t *= 20.0
    raise RuntimeError(f"phi_smoothness: barrier method did not reach rtol={rtol} (value {value}, gap {gap})")


# ----------------------------------------------------------------------------- reports
def _bracket(res: PhiSmoothness) -> PhiSmoothnessBounds:
    return PhiSmoothnessBounds(jnp.asarray(res.value - res.gap), jnp.asarray(res.value))


def dense_linf_report(loss_fn, params: PyTree, batch: PyTree, *, partition: hp.Partition) -> LinfReport:
    r"""Exact ℓ∞ geometry and Φ-smoothness at ``params`` from the dense Hessian [Xie24, Def. 3.9, Table 1]:

    .. math:: \frac{\|H\|_{1,1}}{d},\quad d\,\|H\|_2,\qquad
              H(L, \Phi_{\text{Adam}}) \le H(L, \Phi) \le H(L, \Phi_{\text{AdaSGD}}) = d\,\|H\|_2,

    at :math:`H = \nabla^2 L(\theta)` (small models only): `curvature.dense_hessian` (float64
    if enabled), `linf_geometry`, `blockwise_linf_geometry` and the exact SDP `phi_smoothness`
    for :math:`\Phi_{\text{Adam}}`, ``partition`` and :math:`\Phi_{\text{AdaSGD}}`. The SDP is a
    host solver with B×B Newton systems: meant for d up to a few hundred.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``.
      params: the point θ.
      batch: the batch (may be a `curvature.MicroBatched`).
      partition: the blocks Φ.

    Returns:
      `LinfReport`; each Φ bracket is [value − gap, value] of the SDP.

    >>> import jax.numpy as jnp
    >>> from heterogeneity import metrics as hm, partition as hp
    >>> loss = lambda p, b: jnp.sum(jnp.array([1.0, 0.5]) * p["w"] ** 2) - 0.5 * jnp.sum(p["v"] ** 2)
    >>> params = {"v": jnp.zeros(1), "w": jnp.zeros(2)}            # H = diag(-1, 2, 1)
    >>> r = hm.dense_linf_report(loss, params, None, partition=hp.by_leaf(params))
    >>> [round(float(x.upper), 4) for x in (r.adam, r.blockwise, r.adasgd)], round(float(r.geometry.ratio), 4)
    ([4.0, 5.0, 6.0], 0.6667)
    """
    h = hc.dense_hessian(loss_fn, params, batch)
    ids, labels = partition.flat_block_ids(params), partition.labels(params)
    hn = np.asarray(h, np.float64)
    return LinfReport(linf_geometry(h), blockwise_linf_geometry(h, ids, labels=labels),
                      _bracket(phi_smoothness(hn, "adam")), _bracket(phi_smoothness(hn, ids)),
                      _bracket(phi_smoothness(hn, "adasgd")))


@functools.partial(jax.jit, static_argnames=("loss_fn", "partition", "num_probes", "num_steps"))
def _estimate_linf_run(params, batch, key, *, loss_fn, partition, num_probes, num_steps):
    """All estimators of `estimate_linf_report` in one program, compiled once per
    (loss_fn, partition, num_probes, num_steps) and shapes (static args hash by identity)."""
    k_l11, k_spec, k_blocks, k_bl11 = jax.random.split(key, 4)
    matvec = hc.linearized_hvp(loss_fn, params, batch)
    l11 = hc.l11_norm(matvec, params, k_l11, num_probes=num_probes)
    spec = hc.spectral_norm(matvec, params, k_spec, num_steps=num_steps)
    rows, _ = ravel_pytree(l11.row_sums)
    norms = blockwise_hessian_norms(loss_fn, params, batch, k_blocks, partition=partition, num_steps=num_steps)
    bl11 = hc.blockwise_l11_norm_matvec(matvec, params, k_bl11, partition=partition, num_probes=num_probes,
                                        diagonal=True)
    # non-finite HVPs (NaN/inf batch or loss): NaN rather than a plausible-looking number
    nan = jnp.asarray(jnp.nan, l11.value.dtype)
    l11_value = jnp.where(l11.finite, l11.value, nan)
    spec_value = jnp.where(spec.finite, spec.value, jnp.asarray(jnp.nan, spec.value.dtype))
    rows = jnp.where(l11.finite, rows, jnp.asarray(jnp.nan, rows.dtype))
    return l11_value, spec_value, rows, norms, bl11


def estimate_linf_report(
    loss_fn,
    params: PyTree,
    batch: PyTree,
    key: jax.Array,
    *,
    partition: hp.Partition,
    num_probes: int = 50,
    num_steps: int = 30,
) -> LinfReport:
    r"""Matrix-free ℓ∞ geometry and Φ-smoothness brackets at ``params`` [Xie24, App. D.3]:

    .. math:: \widehat{\|H\|}_{1,1} = \sum_i \hat r_i, \quad
              \hat r_i = \operatorname{median}_{k \le n} |(H v^{(k)})_i|,\ v^{(k)} \sim \text{Cauchy}^d,
              \qquad \sum_b d_b \|H_{bb}\|_2 \le H(L, \Phi) \le \sum_b d_b \max_{i \in b} \hat r_i.

    Estimators (all from `heterogeneity.curvature`, HVPs only):

    * ‖H‖_{1,1} and its row sums r_i = Σ_k |H_ik|: Cauchy sketch, ``num_probes`` HVPs
      ([Xie24, Algorithm 4], `curvature.l11_norm`); ‖H‖₂: Lanczos (`curvature.spectral_norm`);
    * per block: ‖H_bb‖₂ by blockwise Lanczos (`metrics.blockwise_hessian_norms`) and
      ‖H_bb‖_{1,1} by block-confined Cauchy probes (`curvature.blockwise_l11_norm_matvec(diagonal=True)`).

    Φ brackets (see the module docstring): Φ_Adam: upper = ‖H‖_{1,1} ([Xie24]'s
    surrogate; lower not estimated, NaN); ``partition``: lower Σ_b d_b ‖H_bb‖₂ (exact for
    block-diagonal H), upper Σ_b d_b max_{i∈b} r_i; Φ_AdaSGD: d·‖H‖₂ (both ends). The
    brackets are local (at ``params``) and inherit the estimators' randomness: the Cauchy
    median has relative error ≈ (π/2)/√num_probes per row, so with few probes the
    estimated upper end of the ``partition`` bracket can fall below its lower end (which
    stays a true lower bound: Ritz values never exceed ‖H_bb‖₂ in magnitude).

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar`` (define it once: a jit cache key).
      params: the point θ.
      batch: the batch (may be a `curvature.MicroBatched`).
      key: PRNG key of the probes.
      partition: the blocks Φ.
      num_probes: Cauchy probes n of each (1,1)-norm sketch.
      num_steps: Lanczos steps of each spectral-norm estimate.

    Returns:
      `LinfReport` (``adam.lower`` NaN; NaN estimates when an HVP is non-finite). Compiled
        once per (``loss_fn``, ``partition``, ``num_probes``, ``num_steps``) and shapes.

    >>> import jax, jax.numpy as jnp
    >>> from heterogeneity import metrics as hm, partition as hp
    >>> loss = lambda p, b: jnp.sum(jnp.array([1.0, 0.5]) * p["w"] ** 2) - 0.5 * jnp.sum(p["v"] ** 2)
    >>> params = {"v": jnp.zeros(1), "w": jnp.zeros(2)}            # H = diag(-1, 2, 1)
    >>> r = hm.estimate_linf_report(loss, params, None, jax.random.key(0), partition=hp.by_leaf(params),
    ...                             num_probes=5, num_steps=3)
    >>> round(float(r.blockwise.lower), 4), round(float(r.adasgd.upper), 4), bool(jnp.isnan(r.adam.lower))
    (5.0, 6.0, True)
    """
    labels = partition.labels(params)
    ids = partition.flat_block_ids(params)
    sizes_np = np.asarray(partition.layout(params).sizes, np.float64)

    num_probes = check_positive_int(num_probes, "num_probes")
    num_steps = check_positive_int(num_steps, "num_steps")
    l11_value, spec, rows, norms, bl11 = _estimate_linf_run(params, batch, key, loss_fn=loss_fn, partition=partition,
                                                            num_probes=num_probes, num_steps=num_steps)
    dt = jnp.result_type(rows, jnp.float32)
    l11_value, spec = jnp.asarray(l11_value, dt), jnp.asarray(spec, dt)
    dim = jnp.asarray(rows.shape[0], dt)
    geometry = LinfGeometry(l11_value, spec, dim, *_geometry(l11_value, spec, dim))
    bspec = jnp.asarray(norms.value, dt)  # both in partition order (`curvature.Blockwise` results)
    bl = jnp.asarray(bl11.value, dt)
    sizes = jnp.asarray(sizes_np, dt)
    blocks = BlockwiseLinfGeometry(bl, bspec, sizes, *_geometry(bl, bspec, sizes), labels)
    blockwise = phi_smoothness_bounds(bspec, sizes, row_l1=rows, block_ids=ids)
    nan = jnp.asarray(jnp.nan, dt)
    return LinfReport(geometry, blocks, PhiSmoothnessBounds(nan, l11_value), blockwise,
                      PhiSmoothnessBounds(dim * spec, dim * spec))
