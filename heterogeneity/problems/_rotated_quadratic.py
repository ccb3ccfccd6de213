"""The rotated quadratic of [Xie24, §4.1 / App. D.1] (Table 1).

``Σ = diag(1, …, 1, 1/2², 1/3², …, 1/990²) ∈ R^{1000×1000}`` (eleven ones, then ``1/k²`` for
``k = 2 … 990``), ``L_t(x) = ½ xᵀ R_tᵀ Σ R_t x`` with ``R_t = exp(t A)``, ``A = M − Mᵀ``,
``M_ij ~ N(0, 1)`` i.i.d. (one ``M`` for the whole family), and
``t ∈ {0, 0.002, 0.008, 0.015, 0.1}``. The start point is ``x_0 ~ Unif([0, 1]^1000)`` for
``t = 0`` and ``R_tᵀ x_0`` otherwise, so every member starts at the same loss.

Table 1's column "(1,1)-norm/d" is ``Σ_ij |[∇²L_t]_ij| / d`` with ``d = 1000``: for ``t = 0`` it
is ``(11 + Σ_{k=2}^{990} k⁻²)/1000 = 0.011644``; the spectral norm is always 1. Rotations
leave the spectrum (hence AdaSGD) unchanged but grow the (1,1)-norm that governs Adam.
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np
import scipy.linalg

from heterogeneity.problems._quadratic import QuadraticProblem, numpy_rng

__all__ = ["RotatedQuadratic", "ROTATION_TIMES", "sigma_diagonal", "rotated_quadratic", "rotated_quadratic_family"]

ROTATION_TIMES: tuple[float, ...] = (0.0, 0.002, 0.008, 0.015, 0.1)
"""``t`` of [Xie24, App. D.1] (``t = 0``: no rotation; Table 1 rows Adam, Adam(R_1..R_4))."""


def sigma_diagonal(dim: int = 1000, *, last: int = 990) -> np.ndarray:
    """``diag(Σ)``: ``dim − last + 1`` ones then ``1/k²`` for ``k = 2 … last`` [Xie24, §4.1]."""
    if not 2 <= last <= dim:
        raise ValueError(f"sigma_diagonal: need 2 <= last <= dim, got last={last}, dim={dim}")
    return np.concatenate([np.ones(dim - last + 1), 1.0 / np.arange(2, last + 1, dtype=np.float64) ** 2])


@dataclasses.dataclass(frozen=True, eq=False)
class RotatedQuadratic(QuadraticProblem):
    """A `QuadraticProblem` (one block ``"x"``) plus ``t``, ``rotation`` = ``R_t`` and ``sigma`` = ``diag(Σ)``."""

    t: float = 0.0
    rotation: np.ndarray | None = None
    sigma: np.ndarray | None = None




def _build(t: float, a: np.ndarray, sigma: np.ndarray, u0: np.ndarray) -> RotatedQuadratic:
    if t < 0:
        raise ValueError(f"rotation time t must be >= 0, got {t}")
    dim = sigma.size
    r = np.eye(dim) if t == 0 else scipy.linalg.expm(t * a)
    h = (r.T * sigma) @ r
    return RotatedQuadratic(
        name=f"rotated_quadratic(t={t:g})", hessian=0.5 * (h + h.T), linear=np.zeros(dim), x0=r.T @ u0,
        block_sizes=(dim,), block_labels=("x",), block_diagonal=False, t=float(t), rotation=r, sigma=sigma,
    )


def _draws(key: jax.Array, dim: int) -> tuple[np.ndarray, np.ndarray]:
    rng = numpy_rng(key)  # M ~ N(0,1)^{d×d}, then x_0 ~ Unif([0,1]^d)
    m = rng.standard_normal((dim, dim))
    return m - m.T, rng.uniform(0.0, 1.0, dim)


def rotated_quadratic(t: float, *, key: jax.Array, dim: int = 1000, last: int = 990) -> RotatedQuadratic:
    """``L_t(x) = ½ xᵀ R_tᵀ Σ R_t x`` of [Xie24, §4.1]; same ``key`` → same ``M`` and ``x_0`` for every ``t``."""
    a, u0 = _draws(key, dim)
    return _build(float(t), a, sigma_diagonal(dim, last=last), u0)


def rotated_quadratic_family(
    *, key: jax.Array, times=ROTATION_TIMES, dim: int = 1000, last: int = 990
) -> tuple[RotatedQuadratic, ...]:
    """All members of [Xie24, Table 1] sharing one ``M`` and one ``x_0`` (``M`` sampled once)."""
    a, u0 = _draws(key, dim)
    sigma = sigma_diagonal(dim, last=last)
    return tuple(_build(float(t), a, sigma, u0) for t in times)
