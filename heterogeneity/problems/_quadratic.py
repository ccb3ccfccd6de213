"""Quadratic objectives with exactly known Hessians, block structure and block quantities.

``L(w) = ½ wᵀ H w − hᵀ w`` with ``w`` stored as a dict of blocks ``{"block_0": w_0, ...}``
(one leaf per block, so ``heterogeneity.partition.by_leaf`` recovers the blocks and
`jax.tree.leaves` order equals block order). Everything a test or a paper reproduction
needs is computed once, in float64 NumPy, from the dense Hessian:

* blockwise: ``block_hessians`` (principal sub-matrices ``[H]_l``), ``block_eigenvalues``,
  ``block_top_eigenvalues``, ``block_spectral_norms`` (``‖[H]_l‖₂``), ``block_traces``,
  ``block_l11_norms``, ``block_condition_numbers``, ``block_sizes``;
* global: ``eigenvalues``, ``trace``, ``l11_norm`` (``Σ_ij |H_ij|``, [Xie24, §3.3]),
  ``spectral_norm``, ``frobenius_norm``, ``condition_number``, ``off_block_norm``
  (``δ_D = ‖H − blockdiag(H)‖₂``, [Tomihari25, Assumption 4.3]), ``minimizer``, ``min_value``;
* [Tomihari25, Def. 4.5]: ``lambda_p = Σ_b (P_b/P) ‖[H]_b‖₂`` (exact; Table S.9: 4999 on the
  homogeneous and 1701.33 on the heterogeneous case) and ``lambda_g(params)``, the
  gradient-weighted norm at one point (App. D.9 takes its sup over the trajectory).

Block-diagonal problems follow [Zhang24, §3.1]: ``H = diag(H_1, …, H_L)``,
``H_l = Q_l Λ_l Q_lᵀ``. ``rotation="orthogonal"`` draws ``Q_l`` Haar-orthogonal [Tomihari25, App. D.9], so the spectrum of ``H_l`` is exactly ``Λ_l``; ``rotation="gaussian"`` uses
i.i.d. standard Gaussian ``Q_l`` as [Zhang24, §3.1] writes — ``H_l`` is then still symmetric
positive definite but its eigenvalues are *not* ``Λ_l`` (all block quantities are computed
from the actual matrix, so they stay exact). ``rotation="identity"`` gives diagonal blocks.

Randomness: every draw comes from a NumPy ``Generator`` seeded by the bits of the given JAX
``key`` (`numpy_rng`): same key, same problem, and construction happens once, in float64,
on the host — independent of JAX's precision mode, with no per-shape XLA compilation.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "QuadraticProblem",
    "block_quadratic",
    "quadratic_case",
    "heterogeneous_quadratic",
    "homogeneous_quadratic",
    "HETEROGENEOUS_SPECTRA",
    "HOMOGENEOUS_SPECTRA",
    "transformer_like_spectra",
    "cnn_like_spectra",
    "rescale_spectra",
    "spectra_from_density",
]

HETEROGENEOUS_SPECTRA: tuple[tuple[float, ...], ...] = ((1.0, 2.0, 3.0), (99.0, 100.0, 101.0), (4998.0, 4999.0, 5000.0))
"""[Zhang24, §3.1] case 3 / [Tomihari25, App. D.9] "Hetero": the blocks' spectra have disjoint supports."""

HOMOGENEOUS_SPECTRA: tuple[tuple[float, ...], ...] = ((1.0, 99.0, 4998.0), (2.0, 100.0, 4999.0), (3.0, 101.0, 5000.0))
"""[Zhang24, §3.1] case 4 / [Tomihari25, App. D.9] "Homo": same eigenvalues as case 3, spread across blocks."""


def _block_names(n: int) -> tuple[str, ...]:
    width = len(str(n - 1))  # zero-pad so that sorted dict keys keep block order
    return tuple(f"block_{i:0{width}d}" for i in range(n))


@dataclasses.dataclass(frozen=True, eq=False)
class QuadraticProblem:
    """``L(w) = ½ wᵀHw − hᵀw`` over a dict of blocks, with exact float64 reference quantities.

    Attributes: ``name``, ``hessian`` (d, d), ``linear`` (= h, (d,)), ``x0`` (start, (d,)),
    ``block_sizes``, ``block_labels`` (dict keys of the params, in block order) — all NumPy
    float64 — and ``block_diagonal`` (whether H has no coupling across blocks).
    """

    name: str
    hessian: np.ndarray
    linear: np.ndarray
    x0: np.ndarray
    block_sizes: tuple[int, ...]
    block_labels: tuple[str, ...]
    block_diagonal: bool = False

    def __post_init__(self):
        d = int(sum(self.block_sizes))
        if self.hessian.shape != (d, d):
            raise ValueError(f"hessian has shape {self.hessian.shape}, block_sizes {self.block_sizes} need ({d}, {d})")
        if self.linear.shape != (d,) or self.x0.shape != (d,):
            raise ValueError(f"linear {self.linear.shape} and x0 {self.x0.shape} must both have shape ({d},)")
        if len(self.block_labels) != len(self.block_sizes) or sorted(self.block_labels) != list(self.block_labels):
            raise ValueError(f"block_labels {self.block_labels} must be sorted (dict-key order) and one per block")
        if not np.allclose(self.hessian, self.hessian.T, rtol=0, atol=1e-10 * max(1.0, np.abs(self.hessian).max())):
            raise ValueError("hessian must be symmetric")

    # ------------------------------------------------------------------ params
    @property
    def dim(self) -> int:
        return int(self.hessian.shape[0])

    @property
    def num_blocks(self) -> int:
        return len(self.block_sizes)

    @functools.cached_property
    def block_offsets(self) -> tuple[int, ...]:
        return tuple(int(o) for o in np.concatenate([[0], np.cumsum(self.block_sizes)[:-1]]))

    def vector_to_params(self, w) -> dict[str, jax.Array]:
        """Split a flat ``(d,)`` vector into the params dict (block order)."""
        w = jnp.asarray(w)
        return {lab: w[o:o + n] for lab, o, n in zip(self.block_labels, self.block_offsets, self.block_sizes)}

    def params_to_vector(self, params) -> jax.Array:
        """Concatenate the params dict into the flat vector the dense Hessian acts on."""
        self._check_params(params)
        return jnp.concatenate([jnp.ravel(params[lab]) for lab in self.block_labels])

    def _host_to_params(self, w: np.ndarray, dtype) -> dict[str, jax.Array]:
        return {lab: jnp.asarray(w[o:o + n], dtype=dtype)  # slice on the host: no XLA compilation
                for lab, o, n in zip(self.block_labels, self.block_offsets, self.block_sizes)}

    def init_params(self, dtype=None) -> dict[str, jax.Array]:
        """The starting point ``x0`` as a params dict (float32 by default, float64 under x64)."""
        return self._host_to_params(self.x0, dtype)

    def optimum_params(self, dtype=None) -> dict[str, jax.Array]:
        """The minimiser ``w* = H⁻¹h`` as a params dict."""
        return self._host_to_params(self.minimizer, dtype)

    def _check_params(self, params) -> None:
        if not isinstance(params, dict) or set(params) != set(self.block_labels):
            got = sorted(params) if isinstance(params, dict) else type(params).__name__
            raise ValueError(f"{self.name}: params must be a dict with keys {list(self.block_labels)}, got {got}")
        for lab, n in zip(self.block_labels, self.block_sizes):
            if jnp.shape(params[lab]) != (n,):
                raise ValueError(f"{self.name}: params[{lab!r}] has shape {jnp.shape(params[lab])}, expected ({n},)")

    # ------------------------------------------------------------------ objective
    def loss_fn(self, params, batch=None) -> jax.Array:
        """``½ wᵀHw − hᵀw`` (``batch`` is ignored; it is there for the ``loss_fn(params, batch)`` API)."""
        self._check_params(params)
        dtype = jnp.result_type(*jax.tree.leaves(params))
        if self.block_diagonal:
            total = jnp.zeros((), dtype)
            for lab, hb, o, n in zip(self.block_labels, self.block_hessians, self.block_offsets, self.block_sizes):
                w = params[lab]
                hw = jnp.asarray(hb, dtype) @ w
                total = total + 0.5 * jnp.vdot(w, hw) - jnp.vdot(jnp.asarray(self.linear[o:o + n], dtype), w)
            return total
        w = self.params_to_vector(params)
        return 0.5 * jnp.vdot(w, jnp.asarray(self.hessian, dtype) @ w) - jnp.vdot(jnp.asarray(self.linear, dtype), w)

    def grad_fn(self, params, batch=None) -> dict[str, jax.Array]:
        """Exact gradient ``Hw − h`` as a params dict."""
        w = self.params_to_vector(params)
        return self.vector_to_params(jnp.asarray(self.hessian, w.dtype) @ w - jnp.asarray(self.linear, w.dtype))

    def hvp(self, params, vector, batch=None) -> dict[str, jax.Array]:
        """Exact Hessian-vector product ``H v`` (independent of ``params``)."""
        del params
        v = self.params_to_vector(vector)
        return self.vector_to_params(jnp.asarray(self.hessian, v.dtype) @ v)

    @functools.cached_property
    def partition(self):
        """`heterogeneity.partition.by_leaf` over the params dict: one block per ``block_labels`` entry."""
        from heterogeneity import partition as hp

        return hp.by_leaf(jax.eval_shape(self.init_params))

    # ------------------------------------------------------------------ exact quantities
    @functools.cached_property
    def block_hessians(self) -> tuple[np.ndarray, ...]:
        """Principal sub-matrices ``[H]_l`` ([Zhang24, §2.1] notation)."""
        return tuple(self.hessian[o:o + n, o:o + n].copy() for o, n in zip(self.block_offsets, self.block_sizes))

    @functools.cached_property
    def block_eigenvalues(self) -> tuple[np.ndarray, ...]:
        """Ascending spectrum of every block (the exact blockwise spectra [Zhang24] estimates by SLQ)."""
        return tuple(np.linalg.eigvalsh(hb) for hb in self.block_hessians)

    @functools.cached_property
    def block_top_eigenvalues(self) -> np.ndarray:
        return np.array([ev[-1] for ev in self.block_eigenvalues])

    @functools.cached_property
    def block_spectral_norms(self) -> np.ndarray:
        """``‖[H]_b‖₂ = max |λ|`` per block: the block Hessian norms of [Tomihari25, Def. 4.5]."""
        return np.array([np.abs(ev).max() for ev in self.block_eigenvalues])

    @functools.cached_property
    def block_traces(self) -> np.ndarray:
        return np.array([np.trace(hb) for hb in self.block_hessians])

    @functools.cached_property
    def block_l11_norms(self) -> np.ndarray:
        return np.array([np.abs(hb).sum() for hb in self.block_hessians])

    @functools.cached_property
    def block_condition_numbers(self) -> np.ndarray:
        return np.array([ev[-1] / ev[0] for ev in self.block_eigenvalues])

    @functools.cached_property
    def eigenvalues(self) -> np.ndarray:
        return np.linalg.eigvalsh(self.hessian)

    @property
    def trace(self) -> float:
        return float(np.trace(self.hessian))

    @functools.cached_property
    def l11_norm(self) -> float:
        """``‖H‖_{1,1} = Σ_ij |H_ij|``, the (1,1)-norm of [Xie24, §3.3 / Table 1]."""
        return float(np.abs(self.hessian).sum())

    @property
    def spectral_norm(self) -> float:
        return float(np.abs(self.eigenvalues).max())

    @property
    def frobenius_norm(self) -> float:
        return float(np.linalg.norm(self.hessian))

    @property
    def condition_number(self) -> float:
        ev = self.eigenvalues
        return float(ev[-1] / ev[0])

    @functools.cached_property
    def off_block_norm(self) -> float:
        """``δ_D = ‖H − blockdiag([H]_1, …, [H]_B)‖₂`` [Tomihari25, Assumption 4.3, eq. 1]."""
        off = self.hessian.copy()
        for o, n in zip(self.block_offsets, self.block_sizes):
            off[o:o + n, o:o + n] = 0.0
        return float(np.abs(np.linalg.eigvalsh(off)).max())

    @property
    def lambda_p(self) -> float:
        """Parameter-weighted Hessian norm ``Λ_P = Σ_b (P_b/P) ‖[H]_b‖₂`` [Tomihari25, Def. 4.5].

        The Hessian of a quadratic is constant, so the sup over θ is attained everywhere.
        """
        sizes = np.asarray(self.block_sizes, dtype=np.float64)
        return float(np.sum(sizes / sizes.sum() * self.block_spectral_norms))

    def lambda_g(self, params) -> jax.Array:
        """``Σ_b ‖g_b‖²/‖g‖² ‖[H]_b‖₂`` at ``params`` ([Tomihari25, Def. 4.5] before the sup; App. D.9).

        jit-able; the sup over a trajectory is the caller's ``max`` over steps.
        """
        g = self.grad_fn(params)
        dtype = jnp.result_type(*jax.tree.leaves(g))
        sq = jnp.stack([jnp.sum(g[lab] ** 2) for lab in self.block_labels])
        return jnp.sum(sq * jnp.asarray(self.block_spectral_norms, dtype)) / jnp.sum(sq)

    @functools.cached_property
    def minimizer(self) -> np.ndarray:
        return np.linalg.solve(self.hessian, self.linear)

    @property
    def min_value(self) -> float:
        return float(-0.5 * self.linear @ self.minimizer)

    def __repr__(self) -> str:
        return f"QuadraticProblem({self.name!r}, d={self.dim}, block_sizes={self.block_sizes})"


# ---------------------------------------------------------------------- construction
def numpy_rng(key: jax.Array) -> np.random.Generator:
    """A float64 NumPy generator determined by a JAX PRNG key (typed or raw uint32)."""
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    return np.random.default_rng([int(v) for v in np.asarray(data).ravel()])


def _haar_orthogonal(gaussian: np.ndarray) -> np.ndarray:
    q, r = np.linalg.qr(gaussian)
    return q * np.sign(np.diag(r))  # sign fix makes the QR factor Haar-distributed


def block_quadratic(
    spectra: Sequence[Sequence[float]],
    *,
    key: jax.Array,
    rotation: str = "orthogonal",
    linear: np.ndarray | None = None,
    x0: np.ndarray | str = "gaussian",
    name: str = "block_quadratic",
) -> QuadraticProblem:
    """Block-diagonal quadratic ``H = diag(Q_l Λ_l Q_lᵀ)`` with ``Λ_l = diag(spectra[l])`` [Zhang24, §3.1].

    Args:
      spectra: one 1-D sequence of eigenvalues per block (the block sizes are their lengths).
      key: PRNG key for ``Q_l`` and the start point.
      rotation: ``"orthogonal"`` (Haar, [Tomihari25, App. D.9]), ``"gaussian"`` (i.i.d. N(0,1)
        entries, as [Zhang24, §3.1] writes; the block spectrum is then not ``Λ_l``) or
        ``"identity"``.
      linear: ``h`` (default 0, as in [Zhang24, §3.1]).
      x0: start point, ``"gaussian"`` (standard Gaussian, [Zhang24, §3.1]), ``"zeros"`` or an array.
    """
    spectra = [np.asarray(s, dtype=np.float64) for s in spectra]
    if not spectra or any(s.ndim != 1 or s.size == 0 for s in spectra):
        raise ValueError("spectra must be a non-empty sequence of non-empty 1-D eigenvalue sequences")
    if rotation not in ("orthogonal", "gaussian", "identity"):
        raise ValueError(f"rotation must be 'orthogonal', 'gaussian' or 'identity', got {rotation!r}")
    sizes = tuple(int(s.size) for s in spectra)
    d = sum(sizes)
    rng = numpy_rng(key)
    hessian = np.zeros((d, d))
    o = 0
    for s in spectra:
        n = s.size
        if rotation == "identity":
            q = np.eye(n)
        else:
            g = rng.standard_normal((n, n))
            q = _haar_orthogonal(g) if rotation == "orthogonal" else g
        block = (q * s) @ q.T
        hessian[o:o + n, o:o + n] = 0.5 * (block + block.T)
        o += n
    if linear is None:
        linear = np.zeros(d)
    linear = np.asarray(linear, dtype=np.float64)
    if isinstance(x0, str):
        if x0 == "gaussian":
            x0 = rng.standard_normal(d)
        elif x0 == "zeros":
            x0 = np.zeros(d)
        else:
            raise ValueError(f"x0 must be 'gaussian', 'zeros' or an array, got {x0!r}")
    x0 = np.asarray(x0, dtype=np.float64)
    return QuadraticProblem(
        name=name, hessian=hessian, linear=linear, x0=x0, block_sizes=sizes,
        block_labels=_block_names(len(sizes)), block_diagonal=True,
    )


def rescale_spectra(spectra: Sequence[Sequence[float]], *, lo: float = 1.0, hi: float = 5000.0) -> tuple[np.ndarray, ...]:
    """One affine map (shift + proportional scale) of all blocks' eigenvalues onto ``[lo, hi]``.

    [Zhang24, §3.1] cases 1–2: "shifting and proportional scaling are performed to ensure all
    elements in Λ_l lie in [1, 5000]", making the global condition number exactly ``hi/lo``.
    The map is shared by all blocks, so their relative positions (the heterogeneity) survive.
    """
    spectra = [np.asarray(s, dtype=np.float64) for s in spectra]
    allv = np.concatenate(spectra)
    vmin, vmax = allv.min(), allv.max()
    if not vmax > vmin:
        raise ValueError("rescale_spectra: all eigenvalues are equal; cannot map onto [lo, hi]")
    if not 0 < lo < hi:
        raise ValueError(f"rescale_spectra: need 0 < lo < hi, got lo={lo}, hi={hi}")
    return tuple(lo + (s - vmin) * (hi - lo) / (vmax - vmin) for s in spectra)


def spectra_from_density(nodes, weights, n: int) -> np.ndarray:
    """``n`` eigenvalues drawn deterministically (mid-point quantiles) from a discrete density.

    ``nodes``/``weights`` are e.g. the Ritz values and weights of a blockwise SLQ run
    (``heterogeneity.curvature``), flattened over probes; this turns a model's estimated
    block spectrum into the ``Λ_l`` of [Zhang24, §3.1] cases 1–2 ("we sample d_l numbers
    according to the spectrum of ..."). Combine with `rescale_spectra`.
    """
    nodes = np.ravel(np.asarray(nodes, dtype=np.float64))
    weights = np.ravel(np.asarray(weights, dtype=np.float64))
    if nodes.shape != weights.shape or nodes.size == 0 or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError("spectra_from_density: nodes and weights must be same-size non-empty arrays, weights >= 0")
    order = np.argsort(nodes)
    cdf = np.cumsum(weights[order]) / weights.sum()
    u = (np.arange(n) + 0.5) / n
    return nodes[order][np.minimum(np.searchsorted(cdf, u), nodes.size - 1)]


def _mp_quantiles(n: int, ratio: float) -> np.ndarray:
    """Mid-point quantiles of the Marchenko–Pastur law (unit variance, aspect ``ratio`` < 1)."""
    a, b = (1 - np.sqrt(ratio)) ** 2, (1 + np.sqrt(ratio)) ** 2
    x = np.linspace(a, b, 4001)
    dens = np.sqrt(np.maximum((b - x) * (x - a), 0.0)) / (2 * np.pi * ratio * x)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(x))])
    cdf /= cdf[-1]
    return np.interp((np.arange(n) + 0.5) / n, cdf, x)


def transformer_like_spectra(n: int = 25) -> tuple[np.ndarray, ...]:
    """Parametric stand-in for [Zhang24, §3.1] case 1 (GPT-2 embedding, 3rd Query, 3rd Value, 3rd MLP).

    [Zhang24, Figs. 3, 12] show Transformer block spectra with different shapes *and* scales:
    embedding and Query concentrated near zero, Value and MLP larger with heavy tails. We use
    deterministic quantiles: embedding ``1e-3·Exp``, Query ``1e-2·u⁴`` (mass near 0), Value
    ``1e-1·MP(0.5)``, MLP ``MP(0.25)`` plus two outliers ×4, ×8 — raw values before
    `rescale_spectra`. Pass spectra measured on a model (`spectra_from_density`) instead to
    reproduce case 1 from a real network.
    """
    u = (np.arange(n) + 0.5) / n
    emb = 1e-3 * -np.log1p(-u)
    query = 1e-2 * u ** 4
    value = 1e-1 * _mp_quantiles(n, 0.5)
    mlp = _mp_quantiles(n, 0.25)
    mlp[-2:] = mlp[-1] * np.array([4.0, 8.0])
    return (emb, query, value, mlp)


def cnn_like_spectra(n: int = 25) -> tuple[np.ndarray, ...]:
    """Parametric stand-in for [Zhang24, §3.1] case 2 (ResNet18 conv layers 1–4): similar blocks.

    [Zhang24, Fig. 3(a)]: convolution blocks share one spectral shape. Four Marchenko–Pastur
    (ratio 0.5) quantile sets with scales 1, 0.9, 1.1, 0.95 and one outlier each.
    """
    out = []
    for s in (1.0, 0.9, 1.1, 0.95):
        ev = s * _mp_quantiles(n, 0.5)
        ev[-1] *= 1.5
        out.append(ev)
    return tuple(out)


def quadratic_case(
    case: int,
    *,
    key: jax.Array,
    rotation: str = "orthogonal",
    spectra: Sequence[Sequence[float]] | None = None,
    block_size: int = 25,
) -> QuadraticProblem:
    """[Zhang24, §3.1] case 1–4 (condition number 5000, ``h = 0``, standard Gaussian start).

    1: Transformer-type spectra (4 blocks of ``block_size``), 2: CNN-type spectra, 3:
    heterogeneous ``{1,2,3},{99,100,101},{4998,4999,5000}``, 4: homogeneous
    ``{1,99,4998},{2,100,4999},{3,101,5000}``. For cases 1–2 ``spectra`` overrides the
    parametric stand-ins (raw values; they are rescaled onto [1, 5000] here).
    ``rotation`` defaults to orthogonal ``Q_l`` [Tomihari25, App. D.9] so that Table S.9 holds
    (``lambda_p`` = 4999 for case 4, 1701.33 for case 3); pass ``"gaussian"`` for [Zhang24]'s text.
    """
    if case in (1, 2):
        raw = spectra if spectra is not None else (transformer_like_spectra if case == 1 else cnn_like_spectra)(block_size)
        spec = rescale_spectra(raw, lo=1.0, hi=5000.0)
    elif case in (3, 4):
        if spectra is not None:
            raise ValueError(f"spectra is only accepted for cases 1 and 2, not case {case}")
        spec = HETEROGENEOUS_SPECTRA if case == 3 else HOMOGENEOUS_SPECTRA
    else:
        raise ValueError(f"case must be 1, 2, 3 or 4 [Zhang24, §3.1], got {case!r}")
    names = {1: "transformer_spectra", 2: "cnn_spectra", 3: "heterogeneous", 4: "homogeneous"}
    return block_quadratic(spec, key=key, rotation=rotation, name=f"case{case}_{names[case]}")


def heterogeneous_quadratic(*, key: jax.Array, rotation: str = "orthogonal") -> QuadraticProblem:
    """[Zhang24, §3.1] case 3 / [Tomihari25, App. D.9] "Hetero" (``lambda_p`` = 5104/3 ≈ 1701.33)."""
    return quadratic_case(3, key=key, rotation=rotation)


def homogeneous_quadratic(*, key: jax.Array, rotation: str = "orthogonal") -> QuadraticProblem:
    """[Zhang24, §3.1] case 4 / [Tomihari25, App. D.9] "Homo" (``lambda_p`` = 4999)."""
    return quadratic_case(4, key=key, rotation=rotation)
