"""Run any optimizer on a rotated loss L∘R [Xie24, §4, App. D.2, Theorem 2.2].

For an orthogonal R on the flattened parameter vector, the rotated problem has coordinates
``x̃ = Rᵀx`` and gradient ``∇(L∘R)(x̃) = Rᵀ∇L(x)``. `rotated(inner, key)` feeds ``Rᵀg`` (and
``Rᵀx`` as params) to ``inner`` and maps its update back with ``R``, so the parameters follow
``x_t = R x̃_t`` where ``x̃_t`` is ``inner`` run on ``L∘R`` from ``x̃_0 = Rᵀx_0``. A rotation
invariant method (SGD, AdaSGD) is unchanged; Adam and SignSGD are not [Xie24, Thm 2.2].

RandPerm ([Xie24, App. D.2]; repo mohamad-amin/adam-coordinate-adaptivity): one layer permutes
the entries with a random π, reshapes the vector into a 3-D tensor ``[s1, s2, s3]`` and applies
a fixed Haar orthogonal matrix on each side, i.e. the Kronecker product ``Q1 ⊗ Q2 ⊗ Q3``; the
paper chains ``depth = 2`` layers with fresh permutations (RandPerm²). The paper's reshape needs
``d = s1 s2 s3``. To stay exactly orthogonal for *any* d, without padding, each layer cuts the
permuted vector into consecutive segments, each rotated by its own Kronecker product: the
first segment is the largest ``s·s·s3 ≤ d`` with ``s = ⌊d^{1/3}⌋``, ``s3 = ⌊d/s²⌋`` (the
paper's shape when d is a near-cube), the remainder (< s² entries) is factorised the same way,
recursively, and a remainder of at most 64 entries gets one dense Haar block. The next layer's
fresh permutation mixes the segments. Nothing of size d×d is formed: a layer costs
``O(d (s1 + s2 + s3))``. Haar matrices: QR of a Gaussian with the signs of diag(R) folded in.

The rotation is drawn once from ``key`` at `init` (the flattened size is known there, from
static shapes) and stored in the optimizer state as arrays: ``depth`` permutations of d int32
(memory: depth × the parameter count) and the small factors. The inner optimizer runs on one
flat float32 (float64 under x64) vector; updates are cast back to the parameters' dtypes.
Other rotations: ``"permutation"`` (a single random permutation: Adam stays invariant) and
``"haar"`` (a dense d×d Haar matrix, for small d, e.g. tests).

Parameters with no scalars (an empty pytree, or the placeholder `optax.tree_map_params` passes
to ``init``) get an empty rotation, an inner state built on a dummy length-1 vector (so the
state has the same structure as for real parameters) and no step.
"""
from __future__ import annotations

import functools
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from heterogeneity.optim._majority_vote import as_raw_key
from heterogeneity.optim._validate import HyperparameterTypeError, check_choice, static_int

__all__ = ["Rotation", "make_rotation", "rotate", "rotate_transpose", "RotatedState", "rotated"]

_DENSE_MAX = 64
_HAAR_MAX = 4096
_ROTATIONS = ("randperm", "permutation", "haar")


class Rotation(NamedTuple):
    """``R = K_depth P_depth ⋯ K_1 P_1``: ``perms[l]`` (int32, d) and per layer a tuple of segments,
    each a tuple ``(Q1, Q2, Q3)`` of Haar factors (``K_l`` = block-diagonal of their Kronecker products)."""

    perms: jax.Array
    factors: tuple


def _segments(d: int) -> list[tuple[int, int, int]]:
    out = []
    while d > 0:
        if d <= _DENSE_MAX:
            out.append((d, 1, 1))
            break
        s = int(round(d ** (1 / 3)))
        while s**3 > d:
            s -= 1
        while (s + 1) ** 3 <= d:
            s += 1
        s3 = d // (s * s)
        out.append((s, s, s3))
        d -= s * s * s3
    return out


def _haar(key: jax.Array, n: int, dtype) -> jax.Array:
    g = jax.random.normal(key, (n, n), dtype)
    q, r = jnp.linalg.qr(g)
    return q * jnp.where(jnp.diagonal(r) >= 0, 1, -1).astype(dtype)[None, :]


def make_rotation(
    key: Any, d: int, *, rotation: Literal["randperm", "permutation", "haar"] = "randperm", depth: int = 2
) -> Rotation:
    r"""An exactly orthogonal :math:`R \in O(d)` (see the module docstring) [Xie24, App. D.2].

    .. math::

        R = K_{depth} P_{depth} \cdots K_1 P_1,\qquad
        K_l = \operatorname{blockdiag}(Q_1 \otimes Q_2 \otimes Q_3, \ldots)

    with random permutations ``P_l`` and Haar factors ``Q``.

    Args:
      key: an int seed or a PRNG key (fixes R).
      d: the dimension (≥ 1).
      rotation: ``"randperm"`` (RandPerm^depth), ``"permutation"`` or ``"haar"`` (dense, d ≤ 4096).
      depth: number of RandPerm layers (≥ 1).

    Returns:
      A `Rotation` (arrays only: a valid optimizer-state leaf).

    >>> import jax.numpy as jnp
    >>> rot = make_rotation(0, 5)
    >>> v = jnp.arange(5.0)
    >>> print(bool(jnp.allclose(rotate_transpose(rot, rotate(rot, v)), v, atol=1e-5)))
    True
    """
    d = static_int("make_rotation", "d", d, minimum=1)
    depth = static_int("make_rotation", "depth", depth, minimum=1)
    check_choice("make_rotation", "rotation", rotation, _ROTATIONS)
    if rotation == "haar" and d > _HAAR_MAX:
        raise ValueError(
            f"make_rotation: rotation='haar' forms a dense d×d matrix; d={d} > {_HAAR_MAX}, use 'randperm'"
        )
    return _draw(as_raw_key(key, "make_rotation"), d, rotation, depth)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _draw(key: jax.Array, d: int, rotation: str, depth: int) -> Rotation:
    dtype = jnp.result_type(float)
    if rotation == "permutation":
        return Rotation(perms=jax.random.permutation(key, d)[None].astype(jnp.int32), factors=((),))
    if rotation == "haar":
        return Rotation(perms=jnp.arange(d, dtype=jnp.int32)[None], factors=(((_haar(key, d, dtype),),),))
    # Few random calls (each is a separate threefry program to compile): all permutations in
    # one vmapped call, all Haar factors of one size in one batched QR.
    k_perm, k_fac = jax.random.split(key)
    perms = jax.vmap(lambda k: jax.random.permutation(k, d))(jax.random.split(k_perm, depth)).astype(jnp.int32)
    shapes = _segments(d)
    sizes = [s for shape in shapes for s in shape] * depth
    pools = {}
    for n in sorted(set(sizes)):
        g = jax.random.normal(jax.random.fold_in(k_fac, n), (sizes.count(n), n, n), dtype)
        q, r = jnp.linalg.qr(g)
        pools[n] = list(q * jnp.where(jnp.diagonal(r, axis1=-2, axis2=-1) >= 0, 1, -1).astype(dtype)[:, None, :])
    factors = tuple(tuple(tuple(pools[n].pop() for n in shape) for shape in shapes) for _ in range(depth))
    return Rotation(perms=perms, factors=factors)


def _kron(segs: tuple, v: jax.Array, transpose: bool) -> jax.Array:
    if not segs:
        return v
    out, start = [], 0
    for qs in segs:
        if len(qs) == 1:  # dense block
            n = qs[0].shape[0]
            x = v[start:start + n]
            q = qs[0].T if transpose else qs[0]
            out.append(jnp.matmul(q, x, precision=jax.lax.Precision.HIGHEST))
        else:
            q1, q2, q3 = qs
            n = q1.shape[0] * q2.shape[0] * q3.shape[0]
            x = v[start:start + n].reshape(q1.shape[0], q2.shape[0], q3.shape[0])
            spec = "ia,jb,kc,ijk->abc" if transpose else "ai,bj,ck,ijk->abc"
            out.append(jnp.einsum(spec, q1, q2, q3, x, precision=jax.lax.Precision.HIGHEST).reshape(-1))
        start += n
    return jnp.concatenate(out) if len(out) > 1 else out[0]


def rotate(rotation: Rotation, v: jax.Array) -> jax.Array:
    r"""``R v`` for a flat vector ``v`` of length d (R from `make_rotation`).

    Args:
      rotation: a `Rotation`.
      v: a 1-D array of length d.

    Returns:
      :math:`Rv`, same shape.

    >>> import jax.numpy as jnp
    >>> rot = make_rotation(0, 3, rotation="permutation")
    >>> print(sorted(rotate(rot, jnp.array([1.0, 2.0, 3.0])).tolist()))
    [1.0, 2.0, 3.0]
    """
    for perm, segs in zip(rotation.perms, rotation.factors):
        v = _kron(segs, v[perm], transpose=False)
    return v


def rotate_transpose(rotation: Rotation, v: jax.Array) -> jax.Array:
    r"""``Rᵀ v`` (= :math:`R^{-1} v`) for a flat vector ``v`` of length d.

    Args:
      rotation: a `Rotation`.
      v: a 1-D array of length d.

    Returns:
      :math:`R^\top v`, same shape.

    >>> import jax.numpy as jnp
    >>> rot = make_rotation(1, 4, rotation="haar")
    >>> v = jnp.array([1.0, 0.0, 0.0, 0.0])
    >>> print(round(float(jnp.linalg.norm(rotate_transpose(rot, v))), 5))
    1.0
    """
    for perm, segs in zip(rotation.perms[::-1], rotation.factors[::-1]):
        v = _kron(segs, v, transpose=True)
        v = jnp.zeros_like(v).at[perm].set(v)
    return v


class RotatedState(NamedTuple):
    """The fixed rotation (arrays) and the inner optimizer's state in rotated coordinates."""

    rotation: Rotation
    inner_state: Any


def rotated(
    inner: optax.GradientTransformation,
    key: Any,
    *,
    rotation: Literal["randperm", "permutation", "haar"] = "randperm",
    depth: int = 2,
) -> optax.GradientTransformationExtraArgs:
    r"""``inner`` run on the rotated loss L∘R [Xie24, App. D.2] (RandPerm^depth).

    .. math::

        \tilde g = R^\top g,\quad (\tilde u, s) = \texttt{inner.update}(\tilde g, s, R^\top x),\quad u = R \tilde u,

    hence :math:`x_t = R \tilde x_t` with :math:`\tilde x_t` the trajectory of ``inner`` on L∘R.

    Args:
      inner: any ``optax.GradientTransformation``.
      key: an int seed or a PRNG key; fixes R (drawn at ``init``).
      rotation: ``"randperm"``, ``"permutation"`` or ``"haar"`` (see `make_rotation`).
      depth: RandPerm layers (≥ 1).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` (state `RotatedState`).

    >>> import jax.numpy as jnp, optax
    >>> opt = rotated(optax.sgd(0.1), key=0)  # SGD is rotation invariant
    >>> u, _ = opt.update(jnp.array([1.0, -2.0, 3.0]), opt.init(jnp.zeros(3)))
    >>> print(bool(jnp.allclose(u, jnp.array([-0.1, 0.2, -0.3]), atol=1e-6)))
    True
    """
    if not (callable(getattr(inner, "init", None)) and callable(getattr(inner, "update", None))):
        raise HyperparameterTypeError(
            f"rotated: inner must be an optax.GradientTransformation, got {type(inner).__name__}"
        )
    depth = static_int("rotated", "depth", depth, minimum=1)
    check_choice("rotated", "rotation", rotation, _ROTATIONS)
    raw_key = as_raw_key(key, "rotated")
    inner = optax.with_extra_args_support(inner)
    compute = jnp.result_type(float)

    def init_fn(params):
        flat, _ = ravel_pytree(params)
        if flat.size == 0:  # nothing to rotate (an empty tree, or tree_map_params' placeholder)
            # the inner state is built on a dummy 1-vector (its structure is all tree_map_params
            # needs; an inner optimizer may refuse a 0-length vector) and never updated
            rot = Rotation(perms=jnp.zeros([depth, 0], jnp.int32), factors=jnp.zeros([depth, 0], compute))
            return RotatedState(rotation=rot, inner_state=inner.init(jnp.zeros([1], compute)))
        rot = make_rotation(raw_key, flat.size, rotation=rotation, depth=depth)
        return RotatedState(rotation=rot, inner_state=inner.init(rotate_transpose(rot, flat.astype(compute))))

    def update_fn(updates, state, params=None, **extra_args):
        flat, unravel = ravel_pytree(updates)
        rot = state.rotation
        if flat.size == 0:  # no parameters: no step, the inner state stays as initialised
            return updates, state
        g_rot = rotate_transpose(rot, flat.astype(compute))
        p_rot = None
        if params is not None:
            p_rot = rotate_transpose(rot, ravel_pytree(params)[0].astype(compute))
        u_rot, inner_state = inner.update(g_rot, state.inner_state, p_rot, **extra_args)
        out = unravel(rotate(rot, u_rot).astype(flat.dtype))
        out = jax.tree.map(lambda u, g: u.astype(g.dtype), out, updates)
        return out, RotatedState(rotation=rot, inner_state=inner_state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
