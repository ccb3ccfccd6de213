"""Hessian-vector products, micro-batched in constant memory, with reusable linearization.

The Hessian of ``loss_fn(params, batch)`` is applied forward-over-reverse,
``Hv = d/dε ∇L(θ + εv)`` (Pearlmutter's trick, [Zhang24, App. D.1]: "two backpropagation
passes"). A `MicroBatched` batch is the *average* of its micro-batch losses,
``L = Σ_m w_m L_m`` with ``w_m = n_m / Σ n`` (uniform when no counts are given), so the
eigenvalues do not grow with the number of micro-batches ([Zhang24]'s public code sums them,
scaling every eigenvalue by M). Micro-batches are visited by one `lax.scan`, so peak memory
is that of a single micro-batch whatever M is.

`linearized_hvp` returns a matvec that reuses one `jax.linearize` of the gradient on a
fixed batch: the primal forward and backward passes are computed once and every further
HVP only runs the tangent passes (the many HVPs of a Lanczos run). For a `MicroBatched`
batch the residuals of all micro-batches would have to be stored, so there the matvec
recomputes each micro-batch inside the scan (constant memory, no reuse).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from heterogeneity.curvature._sharding import check_mesh, pad_items, shard_sum

PyTree = Any

__all__ = ["MicroBatched", "microbatch", "hvp", "linearized_hvp", "mean_loss"]


class MicroBatched(NamedTuple):
    """A batch whose every leaf has a leading micro-batch axis of size M.

    ``counts`` (shape ``(M,)``, optional) are the example counts of the micro-batches; the
    loss, gradient and Hessian are then the count-weighted average of the micro-batch ones
    (``loss_fn`` must return the *mean* loss of the micro-batch it is given). Without
    counts the micro-batches are weighted equally.
    """

    batch: PyTree
    counts: Any = None

    @property
    def num_microbatches(self) -> int:
        return _num_microbatches(self)

    def weights(self, dtype=jnp.float32) -> jax.Array:
        """``(M,)`` averaging weights ``n_m / Σ n`` (or ``1/M``)."""
        m = _num_microbatches(self)
        if self.counts is None:
            return jnp.full((m,), 1.0 / m, dtype)
        counts = jnp.asarray(self.counts, dtype)
        return counts / jnp.sum(counts)


def _num_microbatches(mb: MicroBatched) -> int:
    leaves = jax.tree.leaves(mb.batch)
    if not leaves:
        raise ValueError("MicroBatched.batch has no array leaves")
    sizes = {int(jnp.shape(x)[0]) if jnp.ndim(x) else -1 for x in leaves}
    if len(sizes) != 1 or -1 in sizes:
        raise ValueError(f"MicroBatched.batch: every leaf needs the same leading micro-batch axis, got sizes {sorted(sizes)}")
    m = sizes.pop()
    if m < 1:
        raise ValueError("MicroBatched.batch has zero micro-batches")
    if mb.counts is not None and tuple(jnp.shape(mb.counts)) != (m,):
        raise ValueError(f"MicroBatched.counts must have shape ({m},), got {tuple(jnp.shape(mb.counts))}")
    return m


def microbatch(batch: PyTree, num_microbatches: int, counts=None) -> MicroBatched:
    """Reshape every leaf ``(B, ...)`` to ``(M, B // M, ...)``, M = ``num_microbatches``.

    Micro-batch m holds examples ``m·B/M … (m+1)·B/M − 1`` (a contiguous, order-keeping cut).
    Raises `ValueError` when M is not a positive int, B is not divisible by M, or the leaves
    disagree on B (or have no example axis). Jit-able for a static M.
    """
    if not isinstance(num_microbatches, (int, np.integer)) or isinstance(num_microbatches, bool) \
            or num_microbatches < 1:
        raise ValueError(f"num_microbatches must be a positive int, got {num_microbatches!r}")
    named = jax.tree_util.tree_leaves_with_path(batch)
    if not named:
        raise ValueError("batch has no array leaves")
    if any(jnp.ndim(x) == 0 for _, x in named):
        raise ValueError("batch has a scalar leaf; every leaf needs a leading example axis")
    sizes = {jax.tree_util.keystr(p): int(jnp.shape(x)[0]) for p, x in named}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"batch leaves disagree on the leading (example) axis: {sizes}")
    b, m = next(iter(sizes.values())), int(num_microbatches)
    if b % m:
        raise ValueError(f"batch size {b} is not divisible by num_microbatches={m}")
    return MicroBatched(jax.tree.map(lambda x: jnp.reshape(x, (m, b // m) + tuple(jnp.shape(x)[1:])), batch), counts)


def mean_loss(loss_fn: Callable, params: PyTree, batch: PyTree) -> jax.Array:
    """The loss the curvature functions differentiate: ``loss_fn`` or its micro-batch average."""
    if not isinstance(batch, MicroBatched):
        return loss_fn(params, batch)
    first = jax.tree.map(lambda x: x[0], batch.batch)
    dtype = jax.eval_shape(loss_fn, params, first).dtype
    w = batch.weights(dtype)

    def body(acc, xs):
        b, wm = xs
        return acc + wm * loss_fn(params, b), None

    total, _ = jax.lax.scan(body, jnp.zeros((), dtype), (batch.batch, w))
    return total


def check_params(params: PyTree, name: str = "params") -> None:
    """Every leaf must be floating (or complex): integer/bool leaves cannot be differentiated."""
    named = jax.tree_util.tree_leaves_with_path(params)
    if not named:
        raise ValueError(f"{name} has no array leaves")
    for path, x in named:
        dt = jnp.result_type(x)
        if not jnp.issubdtype(dt, jnp.inexact):
            where = jax.tree_util.keystr(path) or "<root>"
            raise ValueError(f"{name} leaf {where} has dtype {dt}: the Hessian needs floating-point params "
                             "(integer/bool leaves cannot be differentiated; cast them, or close over them in "
                             "loss_fn instead of passing them as params)")


def _check_tangent(params: PyTree, tangent: PyTree) -> None:
    ps, ts = jax.tree.structure(params), jax.tree.structure(tangent)
    if ps != ts:
        raise ValueError(f"hvp: tangent must have the structure of params; params {ps}, tangent {ts}")
    for (path, p), t in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(tangent)):
        if tuple(jnp.shape(p)) != tuple(jnp.shape(t)):
            raise ValueError(f"hvp: tangent leaf {jax.tree_util.keystr(path) or '<root>'} has shape "
                             f"{tuple(jnp.shape(t))}, but the params leaf has shape {tuple(jnp.shape(p))}")


def hvp(loss_fn: Callable, params: PyTree, batch: PyTree, tangent: PyTree, *, mesh=None) -> PyTree:
    r"""``∇²L(params) · tangent`` by forward-over-reverse [Pearlmutter94] [Zhang24, App. D.1]:

    .. math:: H v = \frac{d}{d\varepsilon}\, \nabla L(\theta + \varepsilon v)\Big|_{\varepsilon=0}.

    >>> import jax.numpy as jnp
    >>> from heterogeneity import curvature as hc
    >>> loss = lambda p, b: jnp.sum(b * p ** 2) / 2 + p[0] * p[1]   # H = [[1, 1], [1, 2]]
    >>> [float(x) for x in hc.hvp(loss, jnp.zeros(2), jnp.array([1.0, 2.0]), jnp.array([1.0, 0.0]))]
    [1.0, 1.0]

    ``batch`` may be a `MicroBatched`: the HVP is then the weighted average of the
    micro-batch HVPs, accumulated by one `lax.scan` (peak memory of one micro-batch).
    ``mesh`` (a `jax.sharding.Mesh`, `MicroBatched` only): the devices split the
    micro-batches, each scans its share and the partial sums are added by `psum`.
    Raises `ValueError` for integer params (naming the leaf) or a tangent whose structure or
    leaf shapes differ from the params. A NaN/inf batch or loss gives a non-finite HVP (the
    estimators built on it report that in their ``finite`` flag).
    """
    check_params(params)
    _check_tangent(params, tangent)
    _check_hvp_mesh(batch, mesh)
    tangent = jax.tree.map(lambda t, p: jnp.asarray(t, jnp.result_type(p)), tangent, params)
    if not isinstance(batch, MicroBatched):
        return jax.jvp(lambda p: jax.grad(loss_fn)(p, batch), (params,), (tangent,))[1]
    w = batch.weights(jnp.result_type(*jax.tree.leaves(params)))

    def weighted_sum(xs):
        def body(acc, x):
            b, wm = x
            hv = jax.jvp(lambda p: jax.grad(loss_fn)(p, b), (params,), (tangent,))[1]
            return jax.tree.map(lambda a, h: a + wm.astype(a.dtype) * h, acc, hv), None

        out, _ = jax.lax.scan(body, jax.tree.map(jnp.zeros_like, params), xs)
        return out

    if mesh is None:
        return weighted_sum((batch.batch, w))
    mbs, m = pad_items(batch.batch, mesh.size)
    w = jnp.concatenate([w, jnp.zeros((-m % mesh.size,), w.dtype)])  # padded micro-batches weigh 0
    return shard_sum(weighted_sum, (mbs, w), mesh)


def _check_hvp_mesh(batch, mesh) -> None:
    check_mesh(mesh)
    if mesh is not None and not isinstance(batch, MicroBatched):
        raise ValueError("mesh splits the micro-batches of a MicroBatched batch: wrap the batch with "
                         "microbatch(batch, num_microbatches) (a plain batch is one loss evaluation and is "
                         "not split), or pass mesh= to the estimator to split its probes instead")


def linearized_hvp(loss_fn: Callable, params: PyTree, batch: PyTree, *, mesh=None) -> Callable[[PyTree], PyTree]:
    """A matvec ``v -> ∇²L(params) v`` that reuses one linearization of the gradient.

    ``jax.linearize(∇L, params)`` runs the primal forward/backward once and stores its
    residuals; each call then costs only the tangent passes. Build it inside the same
    `jax.jit` as the Lanczos run that uses it. For a `MicroBatched` batch the matvec is
    `hvp` (constant memory in M; nothing is reused across calls), split over ``mesh``'s
    devices when given.
    """
    check_params(params)
    _check_hvp_mesh(batch, mesh)
    if isinstance(batch, MicroBatched):
        batch.num_microbatches  # validate eagerly

        def matvec(v):
            return hvp(loss_fn, params, batch, v, mesh=mesh)

        return matvec
    _, jvp_fn = jax.linearize(lambda p: jax.grad(loss_fn)(p, batch), params)

    def matvec(v):
        _check_tangent(params, v)
        return jvp_fn(jax.tree.map(lambda t, p: jnp.asarray(t, jnp.result_type(p)), v, params))

    return matvec
