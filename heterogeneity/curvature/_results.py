"""Blockwise results: one stacked pytree per estimator, block axis first, labels static.

Every ``blockwise_*`` estimator returns one of these frozen dataclasses: its array fields
carry a leading block axis (``B`` = number of blocks, in *partition order*) and ``labels``
is a tuple of the ``B`` block labels kept as static pytree metadata (not a traced leaf).
So a result passes through `jax.jit`, `jax.vmap` and `jax.tree.map` with its blocks in
partition order: a ``dict`` label -> result, which these functions returned before, comes
out of `jax.jit` with its keys sorted, and ``"layers/10"`` then precedes ``"layers/2"``.

    >>> import jax.numpy as jnp
    >>> r = BlockwiseNorms(value=jnp.array([3.0, 1.0]), finite=jnp.array([True, True]), labels=("w", "b"))
    >>> float(r.block("b")), r.index("w"), len(r)
    (1.0, 0, 2)
    >>> {k: float(v) for k, v in r.as_dict().items()}
    {'w': 3.0, 'b': 1.0}

Under `jax.vmap` (e.g. over keys) the mapped axis comes first: index ``x[:, r.index(label)]``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax

from heterogeneity.curvature._slq import Spectrum

__all__ = ["EigenEstimate", "Blockwise", "BlockwiseSpectrum", "BlockwiseEigenEstimate", "BlockwiseNorms"]


class EigenEstimate(NamedTuple):
    r"""A Ritz value θ and the bound on its residual from a Lanczos run [Lanczos50].

    Returned by `top_eigenvalue` (θ ≤ λ_max, the largest algebraic Ritz value) and
    `spectral_norm` (the largest |Ritz value|, ≤ ‖H‖₂); values in the units of H.

    Attributes:
      value: () the Ritz value θ (or its magnitude for `spectral_norm`).
      error_bound: () :math:`|\beta_{m+1} s_m| = \|H y - \theta y\|_2` for the unit Ritz vector
        y: an eigenvalue of H lies within this distance of θ.
      finite: () bool, False when a non-finite HVP froze the Lanczos run: ``value`` and
        ``error_bound`` then belong to the finite steps before the fault, or are NaN when
        there were none.
    """

    value: jax.Array
    error_bound: jax.Array
    finite: jax.Array | bool = True


class Blockwise:
    """Base of the stacked blockwise results (see the module docstring).

    ``labels``: the block labels in partition order (static). ``block(label)`` is one
    block's entry, ``as_dict()`` the old ``{label: entry}`` dict (partition order).
    """

    labels: tuple[str, ...]

    def index(self, label: str) -> int:
        """Position of ``label`` on the block axis; an unknown label raises `KeyError` naming the labels."""
        try:
            return self.labels.index(label)
        except ValueError:
            shown = ", ".join(map(repr, self.labels[:8])) + (", ..." if len(self.labels) > 8 else "")
            raise KeyError(f"unknown block label {label!r}; this result has {len(self.labels)} blocks: "
                           f"{shown}") from None

    def block(self, label: str) -> Any:
        """The entry of block ``label`` (the block axis indexed away)."""
        return self._entry(self.index(label))

    def as_dict(self) -> dict[str, Any]:
        """``{label: entry}`` in partition order (the dict these estimators used to return)."""
        return {label: self._entry(i) for i, label in enumerate(self.labels)}

    def replace(self, **changes) -> "Blockwise":
        """A copy with some fields replaced (``NamedTuple._replace``)."""
        return dataclasses.replace(self, **changes)

    def __len__(self) -> int:
        return len(self.labels)

    def _entry(self, i: int) -> Any:
        raise NotImplementedError


def _register(cls):
    data = [f.name for f in dataclasses.fields(cls) if f.name != "labels"]
    return jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=["labels"])


@_register
@dataclasses.dataclass(frozen=True, eq=False)  # arrays have no truth value: identity equality
class BlockwiseSpectrum(Blockwise):
    """SLQ quadratures of every diagonal block: ``nodes``, ``weights`` (B, num_probes, num_steps),
    ``finite`` (B,) bool (False: a non-finite HVP froze some probe of that block).
    ``block(label)`` is that block's `Spectrum`."""

    nodes: jax.Array
    weights: jax.Array
    finite: jax.Array
    labels: tuple[str, ...]

    def _entry(self, i):
        return Spectrum(self.nodes[i], self.weights[i], self.finite[i])


@_register
@dataclasses.dataclass(frozen=True, eq=False)  # arrays have no truth value: identity equality
class BlockwiseEigenEstimate(Blockwise):
    """Top Ritz value of every diagonal block: ``value``, ``error_bound``, ``finite``, each (B,).
    ``block(label)`` is that block's `EigenEstimate`."""

    value: jax.Array
    error_bound: jax.Array
    finite: jax.Array
    labels: tuple[str, ...]

    def _entry(self, i):
        return EigenEstimate(self.value[i], self.error_bound[i], self.finite[i])


@_register
@dataclasses.dataclass(frozen=True, eq=False)  # arrays have no truth value: identity equality
class BlockwiseNorms(Blockwise):
    """One scalar per block: ``value`` (B,) and ``finite`` (B,) bool (False: a non-finite HVP
    touched that block, and ``value`` is NaN/inf). ``block(label)`` is ``value`` of that block."""

    value: jax.Array
    finite: jax.Array
    labels: tuple[str, ...]

    def _entry(self, i):
        return self.value[i]
