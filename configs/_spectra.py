"""JS⁰ of a model at given parameters, over both block selections and all divergence modes ([Zhang24, §2.6, App. D.1]).

[Zhang24, App. D.1] computes blockwise spectra "for all parameter blocks except for the
BatchNorm layers" (ResNet, whose convolutions have no bias) and "except for the LayerNorm
layers" (BERT, GPT2-nano): its JS⁰ compares weight matrices. ``"weights"``
(`heterogeneity.partition.block_selection`: kernels and embeddings, no biases, no
normalisation parameters) reproduces that selection on our models; ``"all"`` keeps every
tensor. A small bias block can dominate the pair average in paper mode, which is why both are
recorded. One blockwise SLQ over every block serves both selections.

Shared by `configs.js0_init`, `configs.mlp_scale` and `configs.pretrained_vs_scratch`.
"""
from __future__ import annotations

import jax
import numpy as np

from heterogeneity import curvature as hc
from heterogeneity import metrics as hm
from heterogeneity import partition as hpart

SELECTIONS = ("weights", "all")
MODES = ("paper", "bounded", "scale_normalized")


def spectra(loss_fn, params, batch, key, *, num_steps: int, num_probes: int, group_by: str = "module"):
    """``(partition, BlockwiseSpectrum)``: SLQ of every by-leaf block of ``params``.

    ``group_by`` (`heterogeneity.curvature.blockwise_slq`): ``"all"`` compiles about twice as fast
    on CPU as the default ``"module"`` for small models, where compiling dominates.
    """
    partition = hpart.by_leaf(params)
    return partition, hc.blockwise_slq(loss_fn, params, batch, key, partition=partition, num_steps=num_steps,
                                       num_probes=num_probes, group_by=group_by)


def top_eigenvalues(spec) -> dict[str, float]:
    """Largest SLQ node (over probes, non-zero weights) of every block: ``{label: λ_max}``."""
    nodes, weights = np.asarray(spec.nodes, np.float64), np.asarray(spec.weights, np.float64)
    out = {}
    for i, lab in enumerate(spec.labels):
        n = nodes[i][weights[i] > 0]
        out[lab] = float(n.max()) if n.size else float("nan")
    return out


def js0_of(partition, params, spec, *, selections=SELECTIONS, modes=MODES, prefix: str = "js0") -> dict[str, float]:
    """``{f"{prefix}_{mode}_{selection}": JS⁰, f"blocks_{selection}": count}`` from one `BlockwiseSpectrum`."""
    out: dict[str, float] = {}
    for which in selections:
        labels = hpart.block_selection(partition, params, which)
        sub = {lab: spec.block(lab) for lab in labels}
        out[f"blocks_{which}"] = float(len(labels))
        for mode in modes:
            out[f"{prefix}_{mode}_{which}"] = float(hm.js0(sub, mode=mode)) if len(labels) >= 2 else float("nan")
    return out


def js0(loss_fn, params, batch, key, *, num_steps: int = 30, num_probes: int = 2, prefix: str = "js0",
        top: bool = False, group_by: str = "module") -> dict[str, float]:
    """JS⁰ of ``loss_fn`` at ``params`` on ``batch`` for every selection and mode (`js0_of`).

    With ``top``, also ``lam_max/<label>`` per block (the largest SLQ node).
    """
    partition, spec = spectra(loss_fn, params, batch, key, num_steps=num_steps, num_probes=num_probes,
                              group_by=group_by)
    out = js0_of(partition, params, spec, prefix=prefix)
    if top:
        out.update({f"lam_max/{lab}": v for lab, v in top_eigenvalues(spec).items()})
    return out


def probe_key(seed: int) -> jax.Array:
    """The SLQ probe key of a run (fixed per seed, independent of the model's init key)."""
    return jax.random.key(777 + int(seed))
