"""Restrict a linear operator to some input and output leaves, at trace time.

A block ``H_bb`` of a Hessian is ``H`` applied to a tangent that is zero outside block b,
read on block b only. Called as such, the operator's program still contains every
operation of the full HVP, and XLA has to prune it: the traced and lowered program of a
blockwise run is then ``#groups × (full HVP)``, which is where its trace and compile time
went (6M characters of StableHLO for the 37 blocks of a 2-layer GPT).

`restrict` traces the operator once to a jaxpr and re-emits only what the restricted
operator needs, so each block group traces and lowers only its own part:

* backwards from the wanted outputs, operations no wanted output depends on are dropped
  (the tangent weight-gradients of the other leaves);
* forwards from the inputs, inputs outside the group are *symbolic zeros* that propagate
  through operations that are linear in them (``mul``, ``dot_general``, ``add``, slicing,
  broadcasting, ...), as JAX's own autodiff does with its ``Zero`` tangents; an operation
  fed only zeros is not emitted (the forward tangent pass before the block's layer).

Anything the rules do not cover (control flow, custom calls, comparisons) gets real zeros
and is emitted as traced, so the result always equals the unrestricted operator (tested
against it and against dense Hessians). Nested ``jit`` calls are inlined so the rules
reach inside them.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from jax.extend import core as jcore

PyTree = Any

__all__ = ["Traced", "restrict"]


class _Zero:
    """A symbolic zero of a given abstract value."""

    __slots__ = ("aval",)

    def __init__(self, aval):
        self.aval = aval

    def materialize(self):
        return jnp.zeros(self.aval.shape, self.aval.dtype)


def _is_zero(x) -> bool:
    return isinstance(x, _Zero)


def _same_aval(x, aval) -> bool:
    return tuple(jnp.shape(x)) == tuple(aval.shape) and jnp.result_type(x) == aval.dtype


# operand positions that make the output zero when they are zero (the others are coefficients)
_ANY = "any"  # zero if any operand is zero (products)
_FIRST = (0,)  # zero if operand 0 is zero (unary maps, slicing by other operands, x / c)
_RULES: dict[str, Any] = {
    "mul": _ANY, "dot_general": _ANY, "conv_general_dilated": _ANY,
    "div": _FIRST, "neg": _FIRST, "convert_element_type": _FIRST, "reshape": _FIRST, "transpose": _FIRST,
    "broadcast_in_dim": _FIRST, "reduce_sum": _FIRST, "squeeze": _FIRST, "expand_dims": _FIRST,
    "slice": _FIRST, "dynamic_slice": _FIRST, "gather": _FIRST, "rev": _FIRST, "cumsum": _FIRST,
    "copy": _FIRST, "copy_p": _FIRST, "reduce_precision": _FIRST, "real": _FIRST, "imag": _FIRST,
    "conj": _FIRST, "integer_pow": _FIRST, "reduce_window_sum": _FIRST,
}
_ALL = ("concatenate", "add", "add_any", "sub", "dynamic_update_slice", "scatter-add", "scatter_add", "pad",
        "select_n")  # zero only when every data operand is zero
_INLINE = ("pjit", "jit", "closed_call", "core_call")


def _data_operands(name: str, invals: list) -> list:
    if name == "select_n":
        return invals[1:]  # the predicate is a coefficient
    if name in ("dynamic_update_slice",):
        return invals[:2]
    if name in ("scatter-add", "scatter_add"):
        return [invals[0], invals[2]]
    return invals


def _all_zero(name: str, invals: list) -> bool:
    rule = _RULES.get(name)
    if rule == _ANY:
        return any(_is_zero(x) for x in invals)
    if rule is not None:
        return all(_is_zero(invals[i]) for i in rule)
    if name in _ALL:
        return all(_is_zero(x) for x in _data_operands(name, invals))
    return False


def _eval(jaxpr, consts, args, wanted: Sequence[bool]) -> list:
    """Evaluate ``jaxpr`` with `_Zero` inputs, emitting only what the ``wanted`` outputs need."""
    needed = {v for v, w in zip(jaxpr.outvars, wanted) if w and isinstance(v, jcore.Var)}
    live = []
    for eqn in reversed(jaxpr.eqns):
        if eqn.effects or any(v in needed for v in eqn.outvars if isinstance(v, jcore.Var)):
            live.append(eqn)
            needed.update(v for v in eqn.invars if isinstance(v, jcore.Var))
    live.reverse()

    env: dict = {}

    def read(v):
        return v.val if isinstance(v, jcore.Literal) else env[v]

    for v, c in zip(jaxpr.constvars, consts):
        env[v] = c
    for v, a in zip(jaxpr.invars, args):
        env[v] = a
    for eqn in live:
        invals = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        outs = None
        if any(_is_zero(x) for x in invals):
            if name in _INLINE:
                inner = eqn.params["jaxpr"]
                used = [isinstance(v, jcore.Var) and v in needed for v in eqn.outvars]
                outs = _eval(inner.jaxpr, inner.consts, invals, used)
            elif _all_zero(name, invals):
                outs = [_Zero(v.aval) for v in eqn.outvars]
            elif name in ("add", "add_any", "sub") and len(invals) == 2:
                keep = invals[0] if _is_zero(invals[1]) else invals[1] if name != "sub" else None
                if keep is not None and _same_aval(keep, eqn.outvars[0].aval):  # no implicit broadcast
                    outs = [keep]
        if outs is None:
            vals = [x.materialize() if _is_zero(x) else x for x in invals]
            params = eqn.primitive.get_bind_params(eqn.params)
            if isinstance(params, tuple):  # older JAX: (subfuns, params)
                subfuns, params = params
                ans = eqn.primitive.bind(*subfuns, *vals, **params)
            else:
                with eqn.ctx.manager:
                    ans = eqn.primitive.bind(*vals, **params)
            outs = ans if eqn.primitive.multiple_results else [ans]
        for v, x in zip(eqn.outvars, outs):
            if isinstance(v, jcore.Var):
                env[v] = x
    return [read(v) if w else None for v, w in zip(jaxpr.outvars, wanted)]


class Traced:
    """A linear ``matvec`` on pytrees shaped like ``like``, traced once to a jaxpr (inside the
    caller's trace: the residuals it closes over stay tracers of that trace). `restrict` re-emits
    parts of it without tracing ``matvec`` again."""

    def __init__(self, matvec: Callable[[PyTree], PyTree], like: PyTree):
        flat, self.treedef = jax.tree.flatten(like)

        def on_leaves(*xs):
            return jax.tree.leaves(matvec(jax.tree.unflatten(self.treedef, list(xs))))

        specs = [jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)) for x in flat]
        closed = jax.make_jaxpr(on_leaves)(*specs)
        self.jaxpr, self.consts = closed.jaxpr, closed.consts

    def restrict(self, leaves: Sequence[int]) -> Callable:
        """``f(*parts) -> [out parts]``: the operator applied to the pytree that holds ``parts`` at
        the leaf numbers ``leaves`` (`jax.tree.leaves` order) and zeros elsewhere, read at the
        same leaves; each call emits only the operations those outputs need (module doc)."""
        leaves = tuple(int(n) for n in leaves)
        jaxpr, consts = self.jaxpr, self.consts
        chosen = set(leaves)
        wanted = [n in chosen for n in range(len(jaxpr.outvars))]
        position = {n: i for i, n in enumerate(leaves)}

        def run(*parts):
            args = [parts[position[n]] if n in chosen else _Zero(v.aval) for n, v in enumerate(jaxpr.invars)]
            outs = _eval(jaxpr, consts, args, wanted)
            return [outs[n].materialize() if _is_zero(outs[n]) else outs[n] for n in leaves]

        return run


def restrict(matvec: Callable[[PyTree], PyTree], like: PyTree, leaves: Sequence[int]) -> Callable:
    """`Traced` (``matvec``, ``like``) restricted to ``leaves``: a linear ``matvec`` (an HVP or any
    linear operator) applied to a pytree that is zero outside ``leaves``, read on ``leaves``."""
    return Traced(matvec, like).restrict(leaves)
