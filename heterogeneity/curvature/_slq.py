"""Stochastic Lanczos quadrature ([Zhang24, App. C.2, Algorithm 5]).

For a unit probe ``v``, ``m`` Lanczos steps give the Jacobi matrix ``T`` of the spectral
measure ``μ_v = Σ_i (vᵀq_i)² δ_{λ_i}`` ([Zhang24, Theorem 4]); its eigenvalues are the Gauss
nodes and the squared first eigenvector components the weights (Theorem 3), exact for
polynomials of degree < 2m: ``Σ_j c_j x_j^k = vᵀHᵏv``. Averaging the quadratures of
``num_probes`` probes estimates the spectral density ``(1/d) Σ δ_{λ_i}`` (Hutchinson).

Probes are normalised Rademacher vectors (Algorithm 5) or normalised Gaussians (what
[Zhang24]'s code samples, App. C.2 Step 1 / D.1); both are unbiased. Probes are drawn on the
flattened vector, so a pytree and its `ravel` give identical numbers. Probes are vmapped
(or run in chunks of ``batch_size`` with `lax.map` to bound memory).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from heterogeneity.curvature._lanczos import _check_options, check_positive_int, gauss_quadrature, lanczos_flat
from heterogeneity.curvature._operator import operator_jit
from heterogeneity.curvature._sharding import check_mesh, shard_items
from heterogeneity.tree import leaves_with_paths, ravel

PyTree = Any

__all__ = ["Spectrum", "slq", "probe_vector"]

PROBES = ("rademacher", "normal")


class Spectrum(NamedTuple):
    r"""Gauss quadratures of the probes, from `slq` ([Ubaru17], [Zhang24, App. C.2, Algorithm 5]).

    Probe l's quadrature :math:`\sum_j \tau^{(l)}_j \delta(t - \theta^{(l)}_j)` approximates the
    spectral measure :math:`\sum_i (u_l^\top q_i)^2 \delta(t - \lambda_i)` of H seen from the
    unit probe :math:`u_l` (:math:`q_i` the unit eigenvectors of H); their mean over probes
    estimates the spectral density (`density`).

    Attributes:
      nodes: (num_probes, num_steps) Ritz values :math:`\theta^{(l)}_j`, in the units of H.
      weights: (num_probes, num_steps) weights :math:`\tau^{(l)}_j \ge 0`; each probe's
        weights sum to 1 (unused steps: weight 0).
      finite: a bool array, or True for a hand-built spectrum: False when a non-finite HVP
        (NaN/inf in the batch or loss) froze some probe's Lanczos run. That probe's
        quadrature then covers only its finite steps, or is NaN when its first HVP already
        was non-finite (see `heterogeneity.curvature.lanczos`). Check it: values are traced,
        so a jitted call cannot raise on them.
    """

    nodes: jax.Array
    weights: jax.Array
    finite: jax.Array | bool = True


def probe_vector(key: jax.Array, d: int, dtype, probe: str = "rademacher", support=None) -> jax.Array:
    """A unit probe of length ``d`` (zero outside ``support`` when given)."""
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"probe vectors need a floating dtype, got {jnp.dtype(dtype)}")
    if probe == "rademacher":
        u = jax.random.rademacher(key, (d,), dtype=dtype)
    elif probe == "normal":
        u = jax.random.normal(key, (d,), dtype=dtype)
    else:
        raise ValueError(f"probe must be one of {PROBES}, got {probe!r}")
    if support is not None:
        u = u * support.astype(dtype)
    return u / jnp.linalg.norm(u)


def map_probes(fn: Callable, xs, batch_size: int | None, mesh=None):
    """``vmap(fn)(xs)``, or `lax.map` in chunks of ``batch_size`` (bounded memory; ``1``: a plain
    loop, nothing batched); with a ``mesh``, the items are split over its devices first
    (`shard_items`) and each device maps its share.

    A single item runs unbatched: XLA:CPU (jax 0.9.2) runs a batch-of-1 vmapped Lanczos step with
    a full basis about 3x slower than the same step unbatched (BENCHMARKS.md).
    """
    if mesh is not None:
        return shard_items(lambda part: map_probes(fn, part, batch_size), xs, mesh)
    if jax.tree.leaves(xs)[0].shape[0] == 1:
        check_batch_size(batch_size)
        return jax.tree.map(lambda y: jnp.expand_dims(y, 0), fn(jax.tree.map(lambda x: x[0], xs)))
    if batch_size is None:
        return jax.vmap(fn)(xs)
    check_batch_size(batch_size)
    if int(batch_size) == 1:
        return jax.lax.map(fn, xs)  # a plain loop: traced once, nothing batched
    return jax.lax.map(fn, xs, batch_size=int(batch_size))


def resolve_batch_size(batch_size):
    """``"auto"``: one item at a time on CPU, all items vmapped on other backends; else
    ``batch_size`` checked (None = vmap all). On XLA:CPU (jax 0.9.2, 2 cores) a plain loop over
    (block, probe) items both compiles and runs faster than vmapping them: 1.8× less
    trace + compile and 1.9× less run time for the 37-block report GPT (BENCHMARKS.md)."""
    if isinstance(batch_size, str) and batch_size == "auto":
        return 1 if jax.default_backend() == "cpu" else None
    try:
        check_batch_size(batch_size)
    except ValueError:
        raise ValueError(f"batch_size must be a positive int, None or 'auto', got {batch_size!r}") from None
    return batch_size


def check_batch_size(batch_size) -> None:
    if batch_size is not None:
        try:
            check_positive_int(batch_size, "batch_size")
        except ValueError:
            raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}") from None


def check_probe(probe) -> None:
    if not isinstance(probe, str) or probe not in PROBES:
        raise ValueError(f"probe must be one of {PROBES}, got {probe!r}")


def check_like(like, name: str = "like") -> None:
    """The vectors of a matvec must be real floating pytrees with at least one leaf."""
    named = leaves_with_paths(like)
    if not named:
        raise ValueError(f"{name} has no array leaves")
    for path, x in named:
        dt = jnp.result_type(x)
        if not jnp.issubdtype(dt, jnp.floating):
            raise ValueError(f"{name} leaf {path or '<root>'!r} has dtype {dt}; curvature vectors must be "
                             "real floating point (cast integer/bool leaves, or leave them out of the pytree)")


def slq(
    matvec: Callable[[PyTree], PyTree],
    like: PyTree,
    key: jax.Array,
    *,
    num_steps: int = 100,
    num_probes: int = 10,
    reortho: str = "full",
    probe: str = "rademacher",
    dtype=None,
    batch_size: int | None = None,
    mesh=None,
) -> Spectrum:
    r"""Stochastic Lanczos quadrature of the symmetric operator ``matvec`` [Ubaru17] [Zhang24, Alg. 5].

    For ``n`` unit probes ``v`` and ``m`` Lanczos steps each, the Gauss quadrature
    [GolubMeurant10] of the spectral measure ``\mu_v = \sum_i (v^\top u_i)^2 \delta_{\lambda_i}``
    estimates the spectral density:

    .. math:: \frac{1}{d}\sum_{i=1}^{d} \delta_{\lambda_i(H)} \approx \frac{1}{n}\sum_{l=1}^{n}
              \sum_{j=1}^{m} \tau_j^{(l)}\, \delta_{\theta_j^{(l)}}.

    Returns a `Spectrum` with ``nodes``/``weights`` (num_probes, num_steps) and ``finite``.

    >>> import jax, jax.numpy as jnp
    >>> from heterogeneity import curvature as hc
    >>> op = hc.LinearOperator(lambda v, d: d * v, jnp.array([1.0, 2.0, 3.0, 4.0]))
    >>> s = hc.slq(op, jnp.zeros(4), jax.random.key(0), num_steps=4, num_probes=3)
    >>> round(float(jnp.sum(s.nodes * s.weights) / 3), 4)   # Rademacher: the mean eigenvalue, exactly
    2.5

    Details:

    ``like``: a pytree with the structure/dtypes of the vectors ``matvec`` takes (e.g. the
    params). ``reortho``: "full" (exact Ritz values) or "none" (basis-free, at the HVP
    floor; fine for densities, see `lanczos`). ``dtype``: recurrence scalar dtype.
    Use `density` to turn the result into a blurred spectral density. ``Spectrum.finite`` is
    False when an HVP was non-finite (e.g. NaN in the batch); bad arguments raise
    `ValueError` naming them. An `Operator` (e.g. `HessianOperator`) is compiled once per
    (function, options, shapes); a closure is traced per call. ``mesh``: a
    `jax.sharding.Mesh` whose devices split the probes (see `heterogeneity.curvature._sharding`).
    """
    num_probes = check_positive_int(num_probes, "num_probes")
    _check_options(num_steps, reortho, dtype)
    check_probe(probe)
    check_batch_size(batch_size)
    check_like(like)
    check_mesh(mesh, matvec)
    opts = dict(num_steps=int(num_steps), num_probes=num_probes, reortho=reortho, probe=probe, dtype=dtype,
                batch_size=batch_size, mesh=mesh)
    return _slq_run(matvec, like, key, **opts)


def _slq(matvec, like, key, *, num_steps, num_probes, reortho, probe, dtype, batch_size, mesh):
    flat, unravel = ravel(like)
    d = flat.shape[0]

    def mv(x):
        return ravel(matvec(unravel(x)))[0].astype(flat.dtype)

    def one(k):
        v0 = probe_vector(k, d, flat.dtype, probe)
        res = lanczos_flat(mv, v0, num_steps, reortho=reortho, dtype=dtype)
        return (*gauss_quadrature(res), res.finite)

    nodes, weights, finite = map_probes(one, jax.random.split(key, num_probes), batch_size, mesh)
    return Spectrum(nodes, weights, jnp.all(finite))


_slq_run = operator_jit(_slq, ("num_steps", "num_probes", "reortho", "probe", "dtype", "batch_size", "mesh"))
