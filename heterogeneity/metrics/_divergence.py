"""Divergences between blockwise Hessian spectra and JS⁰ ([Zhang24, §2.3, §2.6, Fig. 4, Table 1]).

[Zhang24] compares the SLQ spectral densities of every pair of parameter blocks by a
"Jensen–Shannon distance" and averages over pairs into JS⁰ (Table 1: 0.10 for ResNet18 up
to 286.41 for ViT-base). A Jensen–Shannon divergence is at most ln 2 ≈ 0.693 (its square
root, the JS *distance*, at most 0.833), so the published values cannot be either; with
the paper code's fixed absolute blur σ² = 1e-5 (zyushun/hessian-spectrum) they behave like
an unbounded divergence such as a symmetric KL between the blurred densities. Three
modes are therefore offered by `spectrum_divergence` (each documented there):

``"bounded"``          JS distance √JS ∈ [0, √ln 2] between densities on a shared grid, blur
                       relative to the pooled spectral range. Correct and bounded, but it
                       saturates at √ln 2 when block scales differ (disjoint supports).
``"paper"``            Paper-compatible: absolute σ² = 1e-5 blur, densities normalised to
                       unit integral on the grid, symmetric KL (Jeffreys) divergence
                       KL(p‖q) + KL(q‖p) with a documented density floor. Unbounded.
``"scale_normalized"`` Shape only: every block's eigenvalues divided by its own spectral
                       scale s_b (max |Ritz value| ≈ ‖H_b‖₂, or the RMS eigenvalue
                       ‖H_b‖_F/√d_b) before a relative blur, then the bounded JS distance.

The lower-level functions work on any densities sampled on one uniform grid; they
normalise internally, so the grid spacing cancels for KL and JS.
"""
from __future__ import annotations

import functools
from typing import Any, Literal, Mapping, NamedTuple, Sequence  # noqa: F401

import jax
import jax.numpy as jnp

from heterogeneity.curvature import Blockwise, BlockwiseSpectrum

__all__ = [
    "PairwiseDivergence",
    "kl_divergence",
    "js_divergence",
    "js_distance",
    "symmetric_kl",
    "spectral_scale",
    "pairwise_divergence",
    "mean_offdiagonal",
    "spectrum_divergence",
    "js0",
    "PAPER_SIGMA2",
]

PAPER_SIGMA2 = 1e-5
"""Absolute Gaussian blur variance of the [Zhang24] code (``sigma = 1e-5 ** 0.5``)."""

Divergence = Literal["js_distance", "js", "symmetric_kl"]


class PairwiseDivergence(NamedTuple):
    r"""Divergences between the blockwise Hessian spectral densities and their mean JS⁰ ([Zhang24, §2.6, Table 1]).

    B blocks, G grid points; the divergence is the one of the chosen mode (see
    `spectrum_divergence`): a JS distance in :math:`[0, \sqrt{\ln 2}]` or an unbounded
    symmetric KL (natural logarithms; dimensionless).

    Attributes:
      matrix: (B, B) divergence :math:`D(p_b, p_{b'})` between block densities (symmetric,
        zero diagonal).
      mean: () :math:`\frac{2}{B(B-1)} \sum_{b < b'} D(p_b, p_{b'})`, JS⁰ of [Zhang24, §2.6].
      labels: (B,) block labels, in row order.
      grid: (G,) the shared evaluation grid (eigenvalue units, divided by ``scales`` when
        scale-normalized).
      densities: (B, G) Gaussian-blurred densities :math:`p_b` on ``grid`` (unit integral).
      scales: (B,) eigenvalue scale :math:`s_b` each block was divided by (1 unless
        ``"scale_normalized"``).
      sigma: () the Gaussian blur σ used, in the units of ``grid``.
    """

    matrix: jax.Array  # (B, B) divergence between block densities (symmetric, zero diagonal)
    mean: jax.Array  # () mean over pairs i < j: JS⁰ of [Zhang24, §2.6] (in the chosen mode)
    labels: tuple[str, ...]  # block labels, row order
    grid: jax.Array  # (G,) shared evaluation grid
    densities: jax.Array  # (B, G) blurred densities (unit integral on the grid)
    scales: jax.Array  # (B,) eigenvalue scale each block was divided by (1 unless scale-normalized)
    sigma: jax.Array  # () Gaussian blur used (in the units of the, possibly normalised, eigenvalues)


# ----------------------------------------------------------------------------- on densities
def _masses(p: jax.Array, axis: int) -> jax.Array:
    p = jnp.asarray(p)
    if not jnp.issubdtype(p.dtype, jnp.floating):
        p = p.astype(jnp.float32)
    return p / jnp.sum(p, axis=axis, keepdims=True)


def _xlogy_ratio(a, b):
    """a log(a/b) with 0 log 0 = 0 (and a > 0, b = 0 gives +inf).

    Masses below 4·tiny are treated as 0: XLA flushes subnormals, so a subnormal ``a``
    can meet a flushed-to-zero ``b = (a + q)/2`` and would otherwise give a spurious inf.
    """
    a = jnp.where(a >= 4 * jnp.finfo(a.dtype).tiny, a, 0.0)
    safe_a = jnp.where(a > 0, a, 1)
    safe_b = jnp.where(b > 0, b, 1)
    return jnp.where(a > 0, jnp.where(b > 0, a * (jnp.log(safe_a) - jnp.log(safe_b)), jnp.inf), 0.0)


@functools.partial(jax.jit, static_argnames=("axis",))
def kl_divergence(p: jax.Array, q: jax.Array, *, axis: int = -1) -> jax.Array:
    """KL(p‖q) = Σ p log(p/q) of densities on a shared uniform grid (normalised internally)."""
    p, q = _masses(p, axis), _masses(q, axis)
    return jnp.sum(_xlogy_ratio(p, q), axis=axis)


@functools.partial(jax.jit, static_argnames=("axis",))
def js_divergence(p: jax.Array, q: jax.Array, *, axis: int = -1) -> jax.Array:
    r"""Jensen–Shannon divergence [Lin91], natural log, in ``[0, \ln 2]``:

    .. math:: \mathrm{JS}(p, q) = \tfrac12 \mathrm{KL}(p\|m) + \tfrac12 \mathrm{KL}(q\|m),\qquad m = \tfrac12 (p + q).

    >>> import jax.numpy as jnp
    >>> from heterogeneity import metrics as hm
    >>> round(float(hm.js_divergence(jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0]))), 4)   # disjoint: ln 2
    0.6931

    ``p``, ``q``: nonnegative densities (or masses) on a shared uniform grid along ``axis``;
    each is normalised to sum 1 first, so the grid spacing cancels.
    """
    p, q = _masses(p, axis), _masses(q, axis)
    m = 0.5 * (p + q)
    js = 0.5 * jnp.sum(_xlogy_ratio(p, m), axis=axis) + 0.5 * jnp.sum(_xlogy_ratio(q, m), axis=axis)
    return jnp.clip(js, 0.0, jnp.log(2.0))


@functools.partial(jax.jit, static_argnames=("axis",))
def js_distance(p: jax.Array, q: jax.Array, *, axis: int = -1) -> jax.Array:
    """Jensen–Shannon distance √JS (a metric), in [0, √ln 2]; equals `scipy.spatial.distance.jensenshannon`."""
    return jnp.sqrt(js_divergence(p, q, axis=axis))


@functools.partial(jax.jit, static_argnames=("axis",))
def symmetric_kl(p: jax.Array, q: jax.Array, *, dx: float | jax.Array, floor: float = 1e-12, axis: int = -1) -> jax.Array:
    """Symmetric KL (Jeffreys) divergence KL(p‖q) + KL(q‖p) between densities on a uniform grid.

    Both densities are normalised to unit integral (Σ p·dx = 1), ``floor`` is added to the
    density values (so disjoint supports give a finite value) and they are renormalised.
    The value grows like log(1/floor) when supports barely overlap: it is unbounded and
    not scale-free. For two Gaussians: ((s₁² − s₂²)² / (2 s₁² s₂²)) + (μ₁ − μ₂)²(1/s₁² + 1/s₂²)/2.
    """
    p = _masses(p, axis) / dx + floor
    q = _masses(q, axis) / dx + floor
    p, q = _masses(p, axis), _masses(q, axis)
    term = jnp.where(p == q, 0.0, (p - q) * (jnp.log(p) - jnp.log(q)))
    return jnp.sum(term, axis=axis)


_PAIR_FNS = {
    "js_distance": lambda p, q, dx, floor: js_distance(p, q),
    "js": lambda p, q, dx, floor: js_divergence(p, q),
    "symmetric_kl": lambda p, q, dx, floor: symmetric_kl(p, q, dx=dx, floor=floor),
}


@functools.partial(jax.jit, static_argnames=("kind",))
def pairwise_divergence(
    densities: jax.Array,
    *,
    kind: Divergence = "js_distance",
    dx: float | jax.Array = 1.0,
    floor: float = 1e-12,
) -> jax.Array:
    """(B, B) matrix of ``kind`` between the rows of ``densities`` (B, G) on a shared uniform grid.

    ``dx`` and ``floor`` only matter for ``kind="symmetric_kl"``. The diagonal is exactly 0.
    Rows are processed one at a time (`lax.map`), so memory is O(B·G).
    """
    if kind not in _PAIR_FNS:
        raise ValueError(f"pairwise_divergence: kind must be one of {sorted(_PAIR_FNS)}, got {kind!r}")
    d = jnp.asarray(densities)
    if d.ndim != 2:
        raise ValueError(f"pairwise_divergence: densities must be (num_blocks, num_grid), got {d.shape}")
    fn = _PAIR_FNS[kind]
    row = lambda p: jax.vmap(lambda q: fn(p, q, dx, floor))(d)  # noqa: E731
    mat = jax.lax.map(row, d)
    mat = 0.5 * (mat + mat.T)
    return mat * (1 - jnp.eye(d.shape[0], dtype=mat.dtype))


def mean_offdiagonal(matrix: jax.Array) -> jax.Array:
    """Mean of the entries above the diagonal: JS⁰ of [Zhang24, §2.6] from a pairwise matrix."""
    matrix = jnp.asarray(matrix)
    b = matrix.shape[0]
    if matrix.ndim != 2 or matrix.shape[1] != b or b < 2:
        raise ValueError(f"mean_offdiagonal: need a square matrix with >= 2 rows, got {matrix.shape}")
    i, j = jnp.triu_indices(b, k=1)
    return jnp.mean(matrix[i, j])


# ----------------------------------------------------------------------------- on spectra
def _nodes_weights(spectrum) -> tuple[jax.Array, jax.Array]:
    if hasattr(spectrum, "nodes") and hasattr(spectrum, "weights"):
        nodes, weights = spectrum.nodes, spectrum.weights
    elif isinstance(spectrum, (tuple, list)) and len(spectrum) == 2:
        nodes, weights = spectrum
    else:
        raise ValueError("a spectrum must have .nodes and .weights (curvature.Spectrum) or be a (nodes, weights) pair; "
                         f"got {type(spectrum).__name__}")
    nodes, weights = jnp.asarray(nodes), jnp.asarray(weights)
    if nodes.shape != weights.shape:
        raise ValueError(f"spectrum nodes and weights differ in shape: {nodes.shape} vs {weights.shape}")
    if nodes.ndim == 1:
        nodes, weights = nodes[None], weights[None]
    if nodes.ndim != 2:
        raise ValueError(f"spectrum nodes must be (num_probes, num_steps) or (num_steps,), got {nodes.shape}")
    dtype = jnp.result_type(nodes, weights, jnp.float32)
    return nodes.astype(dtype), weights.astype(dtype)


def spectral_scale(spectrum, *, scale: Literal["max", "rms"] = "max") -> jax.Array:
    r"""A block's eigenvalue scale: ``"max"`` = ``\max_j |\theta_j|`` over nodes with positive weight
    (→ ‖H_b‖₂ as Lanczos converges); ``"rms"`` = ``(\sum_j w_j \theta_j^2 / \sum_j w_j)^{1/2}`` (the RMS
    eigenvalue ‖H_b‖_F / √d_b, robust to one outlier) [Zhang24, §2.6].

    >>> import jax.numpy as jnp
    >>> from heterogeneity import curvature as hc, metrics as hm
    >>> s = hc.Spectrum(jnp.array([[-3.0, 1.0, 9.0]]), jnp.array([[0.5, 0.5, 0.0]]))   # 9.0 is padding
    >>> float(hm.spectral_scale(s)), round(float(hm.spectral_scale(s, scale="rms")), 4)
    (3.0, 2.2361)
    """
    nodes, weights = _nodes_weights(spectrum)
    if scale == "max":
        return jnp.max(jnp.where(weights > 0, jnp.abs(nodes), 0.0))
    if scale == "rms":
        return jnp.sqrt(jnp.sum(weights * nodes**2) / jnp.sum(weights))
    raise ValueError(f"spectral_scale: scale must be 'max' or 'rms', got {scale!r}")


def _labels_and_spectra(spectra) -> tuple[tuple[str, ...], list]:
    if isinstance(spectra, BlockwiseSpectrum):
        labels = tuple(spectra.labels)
        items = [(spectra.nodes[i], spectra.weights[i]) for i in range(len(labels))]
    elif isinstance(spectra, Blockwise):
        raise ValueError(f"spectra must be a BlockwiseSpectrum (curvature.blockwise_slq), got {type(spectra).__name__}")
    elif isinstance(spectra, Mapping):
        labels = tuple(str(k) for k in spectra)
        items = list(spectra.values())
    elif isinstance(spectra, (list, tuple)) and not hasattr(spectra, "nodes"):
        items = list(spectra)
        labels = tuple(str(i) for i in range(len(items)))
    else:
        raise ValueError("spectra must be a curvature.BlockwiseSpectrum, a dict label -> Spectrum or a list of "
                         f"Spectrum, got {type(spectra).__name__}")
    if len(items) < 2:
        raise ValueError(f"need at least two block spectra to compare, got {len(items)}")
    return labels, items


def _flat_padded(parsed) -> tuple[jax.Array, jax.Array]:
    """Every block's nodes flattened to (N_b,), weights divided by its probe count, padded to max N."""
    n = max(int(nodes.size) for nodes, _ in parsed)
    xs, ws = [], []
    for nodes, weights in parsed:
        x, w = nodes.reshape(-1), weights.reshape(-1) / nodes.shape[0]
        xs.append(jnp.pad(x, (0, n - x.shape[0])))
        ws.append(jnp.pad(w, (0, n - w.shape[0])))
    return jnp.stack(xs), jnp.stack(ws)


@functools.partial(jax.jit, static_argnames=("kind", "num_grid"))
def _spectrum_divergence_core(nodes, weights, normalize, use_rms, sigma_fixed, sigma_rel, pad_fixed, floor, *,
                              kind, num_grid):
    """Traced switches (normalize, use_rms, σ and padding rules) share one compilation across modes."""
    live = weights > 0
    s_max = jnp.max(jnp.where(live, jnp.abs(nodes), 0.0), axis=1)
    s_rms = jnp.sqrt(jnp.sum(weights * nodes**2, axis=1) / jnp.sum(weights, axis=1))
    s = jnp.where(use_rms, s_rms, s_max)
    scales = jnp.where(normalize & (s > 0), s, 1.0)
    nodes = nodes / scales[:, None]
    lo = jnp.min(jnp.where(live, nodes, jnp.inf))
    hi = jnp.max(jnp.where(live, nodes, -jnp.inf))
    width = hi - lo
    relative = jnp.where(width > 0, sigma_rel * width, 1e-3 * jnp.maximum(jnp.abs(hi), 1.0))
    sig = jnp.where(sigma_fixed > 0, sigma_fixed, relative).astype(nodes.dtype)
    pad = jnp.where(pad_fixed > 0, pad_fixed, 5 * sig)
    grid = jnp.linspace(lo - pad, hi + pad, num_grid, dtype=nodes.dtype)
    dx = grid[1] - grid[0]
    inv = 1.0 / (jnp.sqrt(2 * jnp.pi) * sig)

    # φ_b(t) = Σ_j w_bj N(t; λ_bj, σ²) ([Zhang24, Alg. 5]; = `curvature.density`), all blocks at once
    def at(t):  # (B,) densities at one grid point
        return jnp.sum(weights * jnp.exp(-0.5 * ((t - nodes) / sig) ** 2), axis=1) * inv

    chunk = max(1, min(num_grid, (1 << 22) // max(1, nodes.size)))
    dens = jax.lax.map(at, grid, batch_size=chunk).T
    dens = dens / (jnp.sum(dens, axis=1, keepdims=True) * dx)
    mat = pairwise_divergence(dens, kind=kind, dx=dx, floor=floor)
    return mat, mean_offdiagonal(mat), grid, dens, scales, sig


def spectrum_divergence(
    spectra: Mapping[str, Any] | Sequence[Any],
    *,
    mode: Literal["bounded", "paper", "scale_normalized"] = "bounded",
    sigma: float | None = None,
    num_grid: int | None = None,
    scale: Literal["max", "rms"] = "max",
    floor: float = 1e-12,
) -> PairwiseDivergence:
    """Pairwise divergence matrix between blockwise spectra and its pair mean JS⁰ ([Zhang24, §2.6]).

    ``spectra``: a `curvature.BlockwiseSpectrum` (`heterogeneity.curvature.blockwise_slq`
    output), a dict ``label -> Spectrum`` (anything with ``.nodes``/``.weights`` of shape
    (num_probes, num_steps)), or a list of them. Nodes with zero weight (padding) are ignored for the grid range and
    the scale. The blurred densities are those of `curvature.density` ([Zhang24, Alg. 5]),
    evaluated for all blocks on one shared grid inside one jitted program.

    Modes (defaults of ``sigma`` / ``num_grid`` in brackets; pass them to override):

    * ``"bounded"``: JS distance √JS ∈ [0, √ln 2]. Grid over the pooled node range
      [lo − 5σ, hi + 5σ]; σ = 1% of the pooled range hi − lo [2048 points].
    * ``"paper"``: [Zhang24] code conventions: absolute σ = √1e-5, grid [lo − 1, hi + 1]
      [50 000 points, as in the paper code], densities renormalised to unit integral on
      the grid, symmetric KL (Jeffreys) KL(p‖q) + KL(q‖p) with density ``floor``.
      Unbounded; depends on σ, the grid and ``floor``. Reproduces the magnitude (not the
      exact values) of Table 1. The grid must resolve σ (spacing ≪ 0.003).
    * ``"scale_normalized"``: eigenvalues of block b divided by ``s_b`` (``scale="max"``:
      max |Ritz value| ≈ ‖H_b‖₂; ``"rms"``: √(Σ w λ² / Σ w) = ‖H_b‖_F/√d_b) so that only
      the spectrum's *shape* is compared; relative σ = 0.02 (of the unit scale) on
      [lo − 5σ, hi + 5σ] of the normalised nodes [2048 points]; JS distance. A block whose
      scale is 0 is left unscaled.
    """
    labels, items = _labels_and_spectra(spectra)
    if mode not in ("bounded", "paper", "scale_normalized"):
        raise ValueError(f"spectrum_divergence: mode must be 'bounded', 'paper' or 'scale_normalized', got {mode!r}")
    if scale not in ("max", "rms"):
        raise ValueError(f"spectrum_divergence: scale must be 'max' or 'rms', got {scale!r}")
    g = (50_000 if mode == "paper" else 2048) if num_grid is None else int(num_grid)
    if g < 2:
        raise ValueError(f"spectrum_divergence: num_grid must be >= 2, got {g}")
    if sigma is not None and not sigma > 0:
        raise ValueError(f"spectrum_divergence: sigma must be positive, got {sigma}")
    defaults = {"paper": (PAPER_SIGMA2 ** 0.5, 1.0), "bounded": (-1.0, -1.0), "scale_normalized": (0.02, -1.0)}
    sigma_fixed, pad_fixed = defaults[mode]
    sigma_fixed = sigma_fixed if sigma is None else sigma
    nodes, weights = _flat_padded([_nodes_weights(s) for s in items])
    dt = nodes.dtype
    mat, mean, grid, dens, scales, sig = _spectrum_divergence_core(
        nodes, weights, jnp.asarray(mode == "scale_normalized"), jnp.asarray(scale == "rms"),
        jnp.asarray(sigma_fixed, dt), jnp.asarray(0.01, dt), jnp.asarray(pad_fixed, dt), jnp.asarray(floor, dt),
        kind="symmetric_kl" if mode == "paper" else "js_distance", num_grid=g)
    return PairwiseDivergence(mat, mean, labels, grid, dens, scales, sig)


def js0(
    spectra: Mapping[str, Any] | Sequence[Any],
    *,
    mode: Literal["bounded", "paper", "scale_normalized"] = "bounded",
    sigma: float | None = None,
    num_grid: int | None = None,
    scale: Literal["max", "rms"] = "max",
    floor: float = 1e-12,
) -> jax.Array:
    r"""JS⁰: the mean pairwise divergence between blockwise Hessian spectra [Zhang24, §2.6, Table 1].

    .. math:: \mathrm{JS}^0 = \frac{2}{B(B-1)} \sum_{b < b'} D(\phi_b, \phi_{b'}),\qquad
              \phi_b(t) \propto \sum_j w_{bj}\, \mathcal{N}\!\big(t;\ \lambda_{bj}/s_b,\ \sigma^2\big),

    where ``(\lambda_{bj}, w_{bj})`` are block b's SLQ nodes and weights (probe-averaged, zero
    weights ignored) and every ``\phi_b`` is evaluated on one shared uniform grid and
    normalised to unit integral there. The modes (as `spectrum_divergence`, which returns
    the whole matrix; ``js0(...) == spectrum_divergence(...).mean``):

    * ``"bounded"``: ``D = \sqrt{\mathrm{JS}(p, q)}``, ``\mathrm{JS} = \tfrac12 \mathrm{KL}(p\|m) +
      \tfrac12 \mathrm{KL}(q\|m)``, ``m = (p+q)/2`` (natural log, [Lin91]); ``s_b = 1``,
      ``\sigma = 0.01\,(\mathrm{hi} - \mathrm{lo})`` of the pooled nodes. In ``[0, \sqrt{\ln 2}]``.
    * ``"paper"``: ``D = \mathrm{KL}(p\|q) + \mathrm{KL}(q\|p)`` with ``floor`` added to the
      densities; ``s_b = 1``, absolute ``\sigma = \sqrt{10^{-5}}`` (the [Zhang24] code), grid
      ``[\mathrm{lo} - 1, \mathrm{hi} + 1]`` of 50 000 points. Unbounded: the magnitude of
      Table 1 (the published values exceed ``\ln 2``, so they are not a JS divergence).
    * ``"scale_normalized"``: ``D = \sqrt{\mathrm{JS}}`` of the shapes: ``s_b = \max_j |\lambda_{bj}|``
      (``scale="max"``) or ``(\sum_j w_{bj}\lambda_{bj}^2 / \sum_j w_{bj})^{1/2}`` (``"rms"``),
      ``\sigma = 0.02``.

    Args:
      spectra: a `curvature.BlockwiseSpectrum` (`curvature.blockwise_slq`), a dict label ->
        `Spectrum`, or a list of them (at least two blocks).
      mode: ``"bounded"``, ``"paper"`` or ``"scale_normalized"`` (above).
      sigma: blur override (as in `spectrum_divergence`).
      num_grid: grid size override.
      scale: ``"max"`` or ``"rms"`` (scale-normalized mode).
      floor: density floor of the paper mode.

    Returns:
      () array, JS⁰ in the chosen mode.

    >>> import jax.numpy as jnp
    >>> from heterogeneity import curvature as hc, metrics as hm
    >>> one = lambda x: hc.Spectrum(jnp.array([[x]]), jnp.array([[1.0]]))   # a point mass at x
    >>> round(float(hm.js0({"a": one(1.0), "b": one(5.0)})), 4)              # disjoint: √ln 2
    0.8326
    >>> round(float(hm.js0({"a": one(1.0), "b": one(5.0)}, mode="scale_normalized")), 4)   # same shape
    0.0
    """
    return spectrum_divergence(spectra, mode=mode, sigma=sigma, num_grid=num_grid, scale=scale, floor=floor).mean
