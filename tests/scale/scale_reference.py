"""Independent NumPy float64 references for the scale-validation tier (tests/scale).

Nothing here calls the code under test: every formula is re-derived from the docstrings
(`heterogeneity/metrics/_divergence.py`, `_gradient.py`, `_lambda.py`, `_geometry.py`,
`curvature/_estimators.py`, `curvature/_blockwise.py`) and evaluated in float64 NumPy, so a
wrong XLA program (jax 0.10.2 miscompiled jitted Gaussian sums over > 16 rows and vmapped
block-confined HVPs) cannot hide in both sides of a comparison. The only jax used is for
drawing the *same* random probes the library draws (threefry is deterministic), and
`jax.hessian` in float64 eager mode for the dense reference Hessian.

Not a conftest: the test modules import it by name (pytest puts tests/scale on sys.path).
"""
from __future__ import annotations

import re

import numpy as np

LN2 = np.log(2.0)
PAPER_SIGMA = np.sqrt(1e-5)


# ============================================================================ spectra divergences
def random_spectra(num_blocks: int, seed: int):
    """``num_blocks`` SLQ-like spectra with unequal (num_probes, num_steps) per block.

    Nodes cluster around a few shared "eigenvalues" (jittered per block, so pairs of
    densities overlap partially and the divergences spread over their range instead of
    saturating), times a per-block scale (within ±35%, and 6x for every fifth block); some
    blocks have negative eigenvalues. Each probe's weights sum to 1 over its valid steps; the
    remaining steps are zero-weight padding whose nodes repeat the largest valid node (what
    `gauss_quadrature` emits) or, for every third block, are far-away junk (1e4) that must be
    ignored for the grid range and the scale. Every seventh block has a probe whose measure
    is a single node. Values are rounded to float32 so the float32 library sees exactly the
    reference's numbers.
    """
    rng = np.random.default_rng(seed)
    base = np.array([-0.35, 0.0, 0.4, 0.9, 1.6, 2.5])
    out = []
    for b in range(num_blocks):
        p = int(rng.integers(1, 4))  # 1..3 probes
        m = int(rng.integers(2, 13))  # 2..12 steps
        scale = float(np.exp(rng.uniform(-0.3, 0.3))) * (6.0 if b % 5 == 4 else 1.0)
        centre = base[rng.integers(0, len(base), size=(p, m))]
        nodes = np.sort(scale * (centre + rng.normal(scale=rng.uniform(0.01, 0.08), size=(p, m))), axis=1)
        weights = rng.dirichlet(np.full(m, 0.6), size=p)
        valid = np.ones((p, m), bool)
        for i in range(p):
            k = int(rng.integers(0, m // 2 + 1))  # trailing zero-weight padding steps
            if k:
                valid[i, m - k:] = False
        if b % 7 == 3:
            valid[0, 1:] = False
        weights = np.where(valid, weights, 0.0)
        weights /= weights.sum(1, keepdims=True)
        for i in range(p):
            nodes[i, ~valid[i]] = 1e4 if b % 3 == 0 else nodes[i][valid[i]].max()
        out.append((nodes.astype(np.float32).astype(np.float64), weights.astype(np.float32).astype(np.float64)))
    return out


def ref_spectrum_divergence(spectra, *, mode: str, scale: str = "max", sigma: float | None = None,
                            num_grid: int | None = None, floor: float = 1e-12) -> dict:
    """The `spectrum_divergence` docstring, in float64 NumPy.

    ``spectra``: list of (nodes, weights), each (num_probes, num_steps). Returns dict with
    matrix, mean, grid, densities, scales, sigma.
    """
    g = (50_000 if mode == "paper" else 2048) if num_grid is None else int(num_grid)
    xs, ws = [], []
    for nodes, weights in spectra:
        nodes, weights = np.atleast_2d(np.asarray(nodes, np.float64)), np.atleast_2d(np.asarray(weights, np.float64))
        xs.append(nodes.reshape(-1))
        ws.append(weights.reshape(-1) / nodes.shape[0])  # probe average (Hutchinson)
    live = [w > 0 for w in ws]
    scales = np.ones(len(xs))
    if mode == "scale_normalized":
        for b, (x, w, lv) in enumerate(zip(xs, ws, live)):
            s = np.max(np.abs(x[lv])) if scale == "max" else np.sqrt(np.sum(w * x**2) / np.sum(w))
            scales[b] = s if s > 0 else 1.0  # "A block whose scale is 0 is left unscaled"
    xs = [x / s for x, s in zip(xs, scales)]
    pooled = np.concatenate([x[lv] for x, lv in zip(xs, live)])
    lo, hi = pooled.min(), pooled.max()
    if sigma is None:
        if mode == "paper":
            sigma = PAPER_SIGMA
        elif mode == "scale_normalized":
            sigma = 0.02
        else:  # bounded: 1% of the pooled range (a degenerate range gets 1e-3 max(|hi|, 1))
            sigma = 0.01 * (hi - lo) if hi > lo else 1e-3 * max(abs(hi), 1.0)
    pad = 1.0 if mode == "paper" else 5 * sigma
    grid = np.linspace(lo - pad, hi + pad, g)
    dx = grid[1] - grid[0]
    dens = np.empty((len(xs), g))
    for b, (x, w, lv) in enumerate(zip(xs, ws, live)):
        x, w = x[lv], w[lv]
        z = (grid[:, None] - x[None, :]) / sigma
        dens[b] = (np.exp(-0.5 * z**2) @ w) / (np.sqrt(2 * np.pi) * sigma)
    dens /= dens.sum(1, keepdims=True) * dx  # unit integral on the grid
    matrix = sym_kl_matrix(dens, dx, floor) if mode == "paper" else js_distance_matrix(dens)
    iu = np.triu_indices(len(xs), 1)
    return {"matrix": matrix, "mean": matrix[iu].mean(), "grid": grid, "densities": dens, "scales": scales,
            "sigma": sigma}


def js_distance_matrix(dens: np.ndarray) -> np.ndarray:
    """√JS (natural log) between every pair of rows, each row normalised to a probability vector."""
    p = dens / dens.sum(1, keepdims=True)
    b = p.shape[0]
    out = np.zeros((b, b))
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
        for i in range(b):
            m = 0.5 * (p[i][None] + p)  # (b, G)
            mlogm = np.where(m > 0, m * np.log(np.where(m > 0, m, 1.0)), 0.0)
            # JS = ½Σ p log p + ½Σ q log q − Σ m log m  (= ½KL(p‖m) + ½KL(q‖m))
            js = 0.5 * plogp[i].sum() + 0.5 * plogp.sum(1) - mlogm.sum(1)
            out[i] = np.sqrt(np.clip(js, 0.0, LN2))
    np.fill_diagonal(out, 0.0)
    return 0.5 * (out + out.T)


def sym_kl_matrix(dens: np.ndarray, dx: float, floor: float) -> np.ndarray:
    """KL(p‖q) + KL(q‖p) with ``floor`` added to unit-integral densities, by one matmul:
    Σ (p−q)(log p − log q) = Σp log p + Σq log q − Σp log q − Σq log p."""
    p = dens / (dens.sum(1, keepdims=True) * dx) + floor
    p = p / p.sum(1, keepdims=True)
    lg = np.log(p)
    cross = p @ lg.T  # (i, j): Σ p_i log p_j
    self_ = np.diag(cross)
    out = self_[:, None] + self_[None, :] - cross - cross.T
    np.fill_diagonal(out, 0.0)
    return np.maximum(out, 0.0)


# ============================================================================ gradient statistics
def gini_pairwise(x: np.ndarray) -> float:
    """Σ_i Σ_j |x_i − x_j| / (2 n Σ x): the O(n²) definition ([Tomihari25, App. D.5])."""
    x = np.asarray(x, np.float64)
    return float(np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) * x.sum())) if x.sum() > 0 else 0.0


def layer_of(label: str):
    """The repeated-layer prefix ``layers/<i>`` of a block label (None outside repeated layers)."""
    m = re.match(r"^(layers/\d+)(?:/|$)", label)
    return m.group(1) if m else None


# ============================================================================ SLQ measure checks
def assert_measure_equals_eigh(nodes, weights, hb, v, *, cdf_tol, node_tol, heavy=1e-10):
    """The Gauss quadrature Σ w_j δ_{x_j} equals the probe's spectral measure Σ (vᵀq_i)² δ_{λ_i}
    of H_bb: equal CDFs between every pair of distinct eigenvalues, and no weighted node off the
    spectrum (the logic of tests/curvature/test_blockwise.py). ``node_tol`` is relative to the
    block's spectral scale, ``cdf_tol`` absolute (weights sum to 1)."""
    lam, q = np.linalg.eigh(hb)
    w_exact = (q.T @ v) ** 2
    scale = max(np.max(np.abs(lam)), 1e-300)
    gaps = np.nonzero(np.diff(lam) > max(1e-6, 10 * node_tol) * scale)[0]
    for t in (lam[gaps] + lam[gaps + 1]) / 2:
        np.testing.assert_allclose(weights[nodes <= t].sum(), w_exact[lam <= t].sum(), atol=cdf_tol)
    big = weights > heavy
    dist = np.min(np.abs(nodes[big][:, None] - lam[None]), axis=1)
    assert np.all(dist <= node_tol * scale), (dist.max() / scale, node_tol)
    np.testing.assert_allclose(weights.sum(), 1.0, atol=cdf_tol)


# ============================================================================ Λ_G, Λ_P ([Tomihari25, Def. 4.5])
def ref_weighted_hessian_norms(g2, h, sizes) -> dict:
    """Λ_G = Σ_b (g2_b / Σ g2) |h_b| (NaN where Σ g2 = 0) and Λ_P = Σ_b (P_b / P) |h_b| over the last axis."""
    g2, h, p = (np.asarray(x, np.float64) for x in (g2, h, sizes))
    h = np.abs(h)
    p = np.broadcast_to(p, g2.shape)
    total = g2.sum(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        wg = np.where(total > 0, g2 / np.where(total > 0, total, 1.0), np.nan)
    wp = p / p.sum(-1, keepdims=True)
    return {"lambda_g": (wg * h).sum(-1), "lambda_p": (wp * h).sum(-1), "grad_weights": wg, "size_weights": wp,
            "hessian_norms": h}


def ref_weighted_hessian_norms_trajectory(g2, h, sizes) -> dict:
    """[Tomihari25, App. D.9]: sup over iterates of Λ_G (iterates with zero gradient skipped) and of Λ_P."""
    g2 = np.asarray(g2, np.float64)
    h = np.broadcast_to(np.asarray(h, np.float64), g2.shape)
    lg, lp = [], []
    for t in range(g2.shape[0]):
        r = ref_weighted_hessian_norms(g2[t], h[t], sizes)
        lg.append(r["lambda_g"])
        lp.append(r["lambda_p"])
    lg, lp = np.array(lg), np.array(lp)
    live = np.flatnonzero(~np.isnan(lg))
    arg = int(live[np.argmax(lg[live])]) if live.size else 0
    return {"lambda_g": lg[arg] if live.size else np.nan, "lambda_p": lp.max(), "lambda_g_t": lg, "lambda_p_t": lp,
            "argmax_g": arg}


# ============================================================================ ℓ∞ geometry ([Xie24, Table 1])
def ref_linf_geometry(h) -> dict:
    """‖H‖_{1,1}, ‖H‖₂ = max|λ|, d, ‖H‖_{1,1}/d, d‖H‖₂ and ‖H‖_{1,1}/(d‖H‖₂) of a dense symmetric H."""
    h = np.asarray(h, np.float64)
    d = h.shape[0]
    l11 = np.abs(h).sum()
    spec = np.abs(np.linalg.eigvalsh(h)).max()
    return {"l11": l11, "spectral": spec, "dim": float(d), "l11_over_d": l11 / d, "d_spectral": d * spec,
            "ratio": l11 / (d * spec)}


def ref_blockwise_linf_geometry(h, block_ids) -> dict:
    """`ref_linf_geometry` of every diagonal block H[ids == b, ids == b], as (B,) arrays."""
    h = np.asarray(h, np.float64)
    ids = np.asarray(block_ids)
    rows = [ref_linf_geometry(h[np.ix_(ix, ix)]) for ix in (np.flatnonzero(ids == b) for b in range(ids.max() + 1))]
    out = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    out["sizes"] = out.pop("dim")
    return out


def ref_block_norm_matrix(h, block_ids) -> np.ndarray:
    """(B, B) largest singular values ‖H_bb'‖₂ of the blocks of a dense matrix."""
    h = np.asarray(h, np.float64)
    ids = np.asarray(block_ids)
    members = [np.flatnonzero(ids == b) for b in range(ids.max() + 1)]
    return np.array([[np.linalg.norm(h[np.ix_(i, j)], 2) for j in members] for i in members])


# ============================================================================ Cauchy (1,1)-norm sketch
def median_bracket(y, delta, axis=0):
    """The row medians of |y| (over ``axis``: the probes) and a bracket for any |y'| with |y' − y| ≤ delta.

    The median (for an even count, the mean of the two middle order statistics) is monotone in
    every argument, so the medians of ``max(|y| − δ, 0)`` and ``|y| + δ`` bound the median of
    any perturbation of y by at most δ elementwise: a rigorous interval for a library whose
    only deviation from the reference is rounding bounded by δ. Returns ``(lo, mid, hi)``.
    """
    a = np.abs(np.asarray(y, np.float64))
    d = np.asarray(delta, np.float64)
    return (np.median(np.maximum(a - d, 0.0), axis=axis), np.median(a, axis=axis), np.median(a + d, axis=axis))
