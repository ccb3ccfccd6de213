"""The heterogeneity report: every diagnostic of the four papers on one model, in one call.

`report(loss_fn, params, batch, partition=..., out_dir=...)` computes, at the given params
(initial or a checkpoint):

- gradient heterogeneity: full-batch block gradient norms, normalized shares, Gini
  coefficient, layer-wise ratios [Tomihari25, App. C.2, D.5, Table S.6];
- blockwise Hessian spectra of every diagonal block by SLQ in one compiled program
  [Zhang24, App. C.2] and the pairwise JS matrices with JS⁰ in three modes: a bounded JS
  distance, the paper-compatible blurred symmetric KL, and a scale-normalized JS
  [Zhang24, §2.3, §2.6];
- Λ_G and Λ_P from block gradients and block Hessian norms [Tomihari25, Def. 4.5] and the
  gradient–Hessian rank correlation [Tomihari25, Fig. 1];
- ℓ∞ geometry: the Cauchy-sketch (1,1)-norm of the Hessian against d·‖H‖₂ [Xie24,
  Algorithm 4, Table 1], per block too;
- attention entropy ratios and Q/K/V gradient ratios when an attention function is given
  [Tomihari25, App. F.5].

The headline Gini and JS⁰ are computed for every block selection (``blocks="all"``, and
``"weights"``: kernels and embeddings only, as [Zhang24, App. D.1]) from the same block
gradient norms and spectra (no second SLQ pass); ``blocks`` picks the one the verdict reads.

It writes ``report.json`` (every number), four figures and ``report.md``, which states what
the numbers imply: the verdict and its decision rule (`DECISION_RULE`), each threshold and its
source, which params and which blocks were used, how the verdict changes without bias and norm
blocks, and what each JS⁰ mode is comparable for (`JS_MODE_NOTES`). All files are written
atomically.
"""
from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from heterogeneity import curvature as hc
from heterogeneity import metrics as hm
from heterogeneity import partition as hp
from heterogeneity.experiment import _figures as figs
from heterogeneity.experiment._store import atomic_write_json, atomic_write_text, to_jsonable
from heterogeneity.tree import size as tree_size

__all__ = ["ReportSettings", "report", "interpret", "THRESHOLDS", "DECISION_RULE", "JS_MODE_NOTES", "render_markdown",
           "lambda_table_rows", "LAMBDA_HEADER"]

PyTree = Any
JS_MODES = ("bounded", "paper", "scale_normalized")


class ReportSettings(NamedTuple):
    """Probe counts and engine options of the report's estimators (defaults fit a 2-core laptop
    in about a minute for the default GPT; BENCHMARKS.md)."""

    slq_steps: int = 32  # Lanczos steps per block ([Zhang24] uses 100 on GPUs)
    slq_probes: int = 2  # SLQ probes per block ([Zhang24] uses 10 on GPUs)
    top_steps: int = 30  # Lanczos steps for the full-Hessian spectral norm
    l11_probes: int = 50  # Cauchy probes for the (1,1)-norm ([Xie24, App. D.3] uses 50)
    reortho: str = "full"  # Lanczos reorthogonalization of the blockwise spectra
    probe_batch: int | str | None = "auto"  # (block, probe) pairs run at once (curvature.blockwise_slq)
    group_by: str = "module"  # which blocks share an HVP program (curvature.blockwise_slq)


THRESHOLDS = {
    "gini": {
        "low": 0.45,
        "high": 0.80,
        "source": "[Tomihari25, Tables S.5, S.8, S.11]: ResNet-18 0.41-0.43, ViT-Base 0.54-0.60, nanoGPT 0.61, "
                  "RoBERTa 0.93-0.95 (normalized gradients, one block per parameter tensor)",
    },
    "js0_paper": {
        "high": 1.0,
        "blur_sigma": 1e-5 ** 0.5,
        "source": "[Zhang24, Table 1]: CNNs (ResNet18 0.10, VGG16 0.09) vs Transformers/MLP-mixer (18.8-286) in the "
                  "paper's blurred-KL units; SGD lags Adam more as JS0 grows (Fig. 7)",
    },
    "lambda_ratio": {
        "high": 1.0,
        "source": "[Tomihari25, Thm 4.7/4.9]: gradient methods' iteration bound scales with Lambda_G, sign methods' "
                  "with Lambda_P",
    },
    "l11_ratio": {
        "strong": 0.1,
        "favourable": 1.0,
        "source": "[Xie24, Table 1] (||H||_2 = 1): Adam's loss vs AdaSGD's is 40x lower at (1,1)-norm/d = 0.012, "
                  "2.8x at 0.083, 1.6x at 0.51, 1.2x at 1.24 and level at 2.6",
    },
    "grad_hessian_spearman": {
        "high": 0.5,
        "source": "[Tomihari25, Fig. 1, Sec. 4.5]: block gradient norms correlate with block Hessian norms, which "
                  "makes gradient heterogeneity inflate Lambda_G",
    },
}

_T = THRESHOLDS
DECISION_RULE = (
    "Four findings each cast one vote for an adaptive optimizer: "
    f"(1) gradient heterogeneity high, Gini > {_T['gini']['high']} (RoBERTa-like; between {_T['gini']['low']} "
    f"and {_T['gini']['high']} it reads moderate, ViT/nanoGPT-like, below {_T['gini']['low']} low, "
    "ResNet-like; neither votes); "
    f"(2) block heterogeneity high, JS⁰ in paper mode > {_T['js0_paper']['high']} (it separates the CNNs, about "
    "0.1, from the Transformers, 18.8 and more, in [Zhang24, Table 1]); "
    f"(3) Λ_G / Λ_P > {_T['lambda_ratio']['high']} (gradient methods' iteration bound grows with Λ_G, sign "
    "methods' with Λ_P, [Tomihari25, Thm 4.7, 4.9]); "
    f"(4) ‖H‖₁,₁ / (d·‖H‖₂) < {_T['l11_ratio']['favourable']} (the ℓ∞ geometry Adam exploits, [Xie24, Table 1]). "
    "Two or more votes: heterogeneous landscape, SGD is likely to lag Adam; one vote: mixed evidence; "
    "none: homogeneous, SGD with momentum is likely competitive. The gradient–Hessian correlation does not vote: "
    "it says whether gradient heterogeneity is what inflates Λ_G.")
"""How `interpret` turns the findings into the verdict (stated in report.md)."""

JS_MODE_NOTES = {
    "paper": "[Zhang24]'s units: absolute blur σ² = 1e-5 and a symmetric KL, so its magnitude can be read against "
             "[Zhang24, Table 1] and the threshold above. Unbounded; it depends on the absolute scale of the "
             "Hessian (the loss's units), the grid and the density floor, so it compares models by order of "
             "magnitude only",
    "bounded": "a true JS distance in [0, √ln2 ≈ 0.833], blurred by 1% of this model's pooled eigenvalue range. "
               "Comparable between the blocks of one model (the heatmap) and between runs of the same model and "
               "partition (seeds, checkpoints); not across models: the blur follows each model's own widest "
               "block, so one block with a wide spectrum makes the others look alike, and it can rank models in "
               "the reverse of [Zhang24, Table 1]'s order",
    "scale_normalized": "every block's eigenvalues divided by its own spectral norm before the bounded JS "
                        "distance: it compares the shapes of the spectra only and is blind to the scale "
                        "differences between blocks that [Zhang24] calls block heterogeneity, so very different "
                        "models get similar values. Use it within one model, to see whether blocks differ in "
                        "shape as well as in scale; it is no heterogeneity measure across models",
}
"""What each JS⁰ mode is and is not comparable for (stated in report.md)."""


def _stage(bar, name: str, timings: dict, start: float, outputs=None) -> float:
    """Record the stage's wall time; ``outputs`` are waited for first (JAX dispatches asynchronously,
    so an unwaited result would bill its compute to the next stage)."""
    jax.block_until_ready(outputs)
    now = time.perf_counter()
    timings[name] = now - start
    if bar is not None:
        bar.set_postfix_str(name)
        bar.update(1)
    return now


def _programs(loss_fn, params, batch, partition, settings: ReportSettings, attention_fn, keys) -> dict:
    """``name -> (jitted function, arguments)``: every program the report runs."""
    k_slq, k_top, k_l11 = keys
    progs = {
        "gradient": (jax.jit(lambda p, b: hm.full_batch_grad(loss_fn, p, b)), (params, batch)),
        "blockwise": (jax.jit(lambda p, b, k: hc.blockwise_slq(
            loss_fn, p, b, k, partition=partition, num_steps=settings.slq_steps, num_probes=settings.slq_probes,
            reortho=settings.reortho, batch_size=settings.probe_batch, group_by=settings.group_by)),
            (params, batch, k_slq)),
    }

    def geometry(p, b, k_top, k_l11):
        mv = hc.linearized_hvp(loss_fn, p, b)  # one linearization for both estimators
        return (hc.spectral_norm(mv, p, k_top, num_steps=settings.top_steps),
                hc.l11_norm(mv, p, k_l11, num_probes=settings.l11_probes))

    progs["geometry"] = (jax.jit(geometry), (params, batch, k_top, k_l11))
    if attention_fn is not None:
        progs["attention"] = (jax.jit(attention_fn), (params, batch))
    return progs


def _compile_all(programs: dict, timings: dict) -> dict:
    """Trace and lower every program, then compile each (``timings``: ``lower``, ``compile``, the
    report's fixed cost on small models); returns ``name -> run()``."""
    t = time.perf_counter()
    lowered = {name: (fn.lower(*args), args) for name, (fn, args) in programs.items()}
    timings["lower"] = time.perf_counter() - t
    compiled = {name: lo.compile() for name, (lo, _) in lowered.items()}
    timings["compile"] = time.perf_counter() - t - timings["lower"]
    return {name: functools.partial(compiled[name], *args) for name, (_, args) in lowered.items()}


def _require_finite(what: str, names, bad) -> None:
    """Raise when a stage produced non-finite numbers, naming where (no silent NaN in a report)."""
    bad_names = [n for n, flag in zip(names, bad) if flag]
    if bad_names:
        shown = ", ".join(bad_names[:5]) + (f" and {len(bad_names) - 5} more" if len(bad_names) > 5 else "")
        raise ValueError(
            f"non-finite {what} at these params (NaN/inf in the batch, the params or the loss's derivatives): "
            f"{shown}; nothing was written")


def report(
    loss_fn: Callable[[PyTree, PyTree], jax.Array],
    params: PyTree,
    batch: PyTree,
    *,
    partition: hp.Partition,
    out_dir: str | Path,
    key: jax.Array | None = None,
    settings: ReportSettings = ReportSettings(),
    attention_fn: Callable[[PyTree, PyTree], jax.Array] | None = None,
    attention_mask: jax.Array | None = None,
    meta: dict | None = None,
    progress: bool = True,
    selftest: bool = True,
    blocks: str = "all",
) -> dict:
    """Compute every diagnostic at ``params`` and write report.json, figures and report.md.

    ``batch`` may be a `heterogeneity.curvature.MicroBatched` (averaged in constant memory).
    ``attention_fn(params, batch) -> (L, ..., H, q, k)`` attention probabilities, optional.
    ``selftest``: record the verdict of the last ``heterogeneity selftest`` on this backend
    (`heterogeneity.selftest.cached_verdict`) in ``meta``, or that none was run. Independently
    of it, every JS number is recomputed in NumPy float64 before anything is written
    (``meta.self_check``); a disagreement raises. Programs: every stage is traced first, then
    compiled, then run; ``meta.timings_s`` has the lower, compile and per-stage run times.
    ``blocks``: the block selection the headline Gini, JS⁰ and the verdict use
    (`heterogeneity.partition.BLOCK_SELECTIONS`): ``"all"`` blocks, or ``"weights"`` (kernels and
    embeddings only, no bias or norm block, as [Zhang24, App. D.1]). Both selections' Gini and
    JS⁰ are computed (``selections``) from the same block gradient norms and spectra, so that
    report.md shows how the verdict changes; the figures show every block.
    ``meta["params"]`` (e.g. ``"initial (init seed 0)"`` or ``"checkpoint PATH"``) says which
    params these are in report.md.
    Returns the dict written to ``report.json``.
    """
    key = jax.random.key(0) if key is None else key
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    k_slq, k_top, k_l11 = jax.random.split(key, 3)
    layout = partition.layout(params)  # validates coverage before any compute
    labels, sizes = layout.labels, np.asarray(layout.sizes)
    d = tree_size(params)
    chosen = _selections(partition, params, blocks)  # checked before any compute too
    paths = partition.block_paths(params)
    mixed = [label for label in labels if label not in chosen["weights"] and any(map(hp.is_weight, paths[label]))]

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=7, desc="heterogeneity report", unit="stage")
    try:
        timings: dict[str, float] = {}
        t = time.perf_counter()

        # 0. every program of the report, traced and compiled up front (its fixed cost, timed apart)
        run = _compile_all(_programs(loss_fn, params, batch, partition, settings, attention_fn,
                                     (k_slq, k_top, k_l11)), timings)
        t = _stage(bar, "trace and compile", timings, t)

        # 1. full-batch gradient and its block statistics [Tomihari25, App. C.2, D.5]
        fb = run["gradient"]()
        loss = float(fb.loss)
        if not np.isfinite(loss):
            raise ValueError(f"the loss at these params is {loss}: cannot compute curvature of a non-finite loss")
        gh = hm.gradient_heterogeneity(fb.grad, partition=partition)
        _require_finite("gradient", labels, ~np.isfinite(np.asarray(gh.norms)))
        try:
            layers = hm.layer_ratios(fb.grad, partition=partition)
            layer_part = {"labels": list(layers.labels), "ratios": layers.ratios}
        except ValueError as e:  # a model without repeated layers
            layer_part = {"skipped": str(e)}
        t = _stage(bar, "gradient", timings, t, (fb, gh))

        # 2. blockwise spectra of all diagonal blocks in one program [Zhang24, App. C.2]
        spectra = run["blockwise"]().as_dict()  # a BlockwiseSpectrum, in partition order
        _require_finite("blockwise Hessian-vector product", labels,
                        [not bool(np.all(np.asarray(spectra[label].finite))) for label in labels])
        t = _stage(bar, "blockwise spectra", timings, t, spectra)

        # 3. divergences between blockwise spectra, three modes [Zhang24, §2.6]
        divergences = {mode: hm.spectrum_divergence(spectra, mode=mode) for mode in JS_MODES}
        # the headline numbers of every block selection, from the same gradient norms and spectra
        by_selection, selection_divs = _selection_stats(chosen, labels, sizes, gh, spectra, divergences)
        t = _stage(bar, "JS distances", timings, t, (divergences, selection_divs))

        # 4. block Hessian norms -> Lambda_G, Lambda_P and the gradient-Hessian correlation [Tomihari25, Def. 4.5]
        block_hnorm = np.array([float(hm.spectral_scale(spectra[label], scale="max")) for label in labels])
        lam = hm.lambda_norms(fb.grad, block_hnorm, partition=partition)
        corr = hm.gradient_hessian_correlation(gh.norms, jnp.asarray(block_hnorm))
        t = _stage(bar, "Lambda", timings, t, (lam, corr))

        # 5. l_inf geometry of the full Hessian [Xie24, Alg. 4, Table 1]
        spec, l11 = run["geometry"]()
        _require_finite("full-Hessian HVP (spectral norm / (1,1)-norm)", ["spectral_norm", "l11_norm"],
                        [not bool(spec.finite), not bool(l11.finite)])
        spectral = float(spec.value)
        block_rows_l11 = np.asarray(partition.block_sum(l11.row_sums))
        t = _stage(bar, "l_inf geometry", timings, t, (spec, l11))

        # 6. attention statistics [Tomihari25, App. F.5], when the model exposes attention
        attention = None
        if attention_fn is not None:
            probs = run["attention"]()
            ent = hm.layerwise_attention_entropy(probs, mask=attention_mask)
            attention = {"entropy_ratio_mean": ent.mean, "entropy_ratio_std": ent.std}
            try:
                qkv = hm.qkv_grad_ratios(fb.grad)
                attention.update({"qkv_layers": list(qkv.layers), "qkv_ratios": qkv.ratios})
            except ValueError as e:
                attention["qkv_skipped"] = str(e)
        _stage(bar, "attention", timings, t, attention)
    finally:  # an error or Ctrl-C in a stage must not leave a half-drawn bar behind
        if bar is not None:
            bar.close()

    backend = "not checked"
    if selftest:
        from heterogeneity.selftest import cached_verdict

        backend = cached_verdict(run_if_missing=False)
        if backend == "not run":
            backend = "not run on this backend yet (`heterogeneity selftest`, about a minute, checks it)"
    check = _check_divergences(spectra, divergences, labels)
    for name, divs in selection_divs.items():
        if divs is not divergences:
            sub = _check_divergences(spectra, divs, chosen[name])["js_vs_numpy_float64"]
            check["js_vs_numpy_float64"].update({f"{name}/{mode}": e for mode, e in sub.items()})
    result = {
        "meta": {**(meta or {}), "selftest": backend, "self_check": check, "num_params": d,
                 "num_blocks": len(labels),
                 "partition": partition.name, "blocks": blocks, "mixed_blocks": mixed,
                 "settings": settings._asdict(), "timings_s": timings},
        "loss": loss,
        "blocks": {"labels": list(labels), "sizes": sizes},
        "gradient": {"norms": gh.norms, "normalized": gh.normalized, "shares": gh.shares, "gini": gh.gini,
                     "layer_ratios": layer_part},
        "spectra": {label: {"nodes": s.nodes, "weights": s.weights} for label, s in spectra.items()},
        "block_hessian_norm": block_hnorm,
        "js": {mode: {"labels": list(div.labels), "matrix": div.matrix, "js0": div.mean, "sigma": div.sigma,
                      "grid_spacing": div.grid[1] - div.grid[0], "grid_start": div.grid[0],
                      "grid_stop": div.grid[-1], "num_grid": int(div.grid.shape[0]),
                      "resolved": _resolved(div)}
               for mode, div in divergences.items()},
        "lambda": {"lambda_G": lam.lambda_g, "lambda_P": lam.lambda_p, "ratio": lam.lambda_g / lam.lambda_p},
        "grad_hessian_correlation": {"spearman": corr.spearman, "pearson_log": corr.pearson_log},
        "geometry": {"l11": l11.value, "l11_over_d": l11.value / d, "spectral_norm": spectral,
                     "d_times_spectral": d * spectral, "ratio": l11.value / (d * spectral),
                     "block_rows_l11": block_rows_l11,
                     "block_rows_l11_over_size": block_rows_l11 / sizes},
        "attention": attention,
        "selections": by_selection,
    }
    result = to_jsonable(result)
    result["interpretation"] = interpret(result)
    result["interpretation"]["by_selection"] = {
        name: interpret(result, blocks=name) for name, stats in result["selections"].items() if "skipped" not in stats}
    atomic_write_json(out / "report.json", result)
    _write_figures(out, result, divergences)
    atomic_write_text(out / "report.md", render_markdown(result))
    return result


def _selections(partition: hp.Partition, params, blocks: str) -> dict[str, tuple[str, ...]]:
    """``{selection: block labels}`` for every `heterogeneity.partition.BLOCK_SELECTIONS`; the chosen
    ``blocks`` must hold at least two blocks (the Gini and JS⁰ compare blocks)."""
    if blocks not in hp.BLOCK_SELECTIONS:
        raise ValueError(f"blocks must be one of {', '.join(map(repr, hp.BLOCK_SELECTIONS))}, got {blocks!r}")
    out = {name: hp.block_selection(partition, params, name) for name in hp.BLOCK_SELECTIONS}
    if len(out[blocks]) < 2:
        why = ("; blocks mixing kernels with bias or norm leaves are not weight blocks, so use a partition that "
               "separates them (leaf or role)" if blocks == "weights" else "")
        raise ValueError(f"blocks={blocks!r} selects {len(out[blocks])} block(s) of partition {partition.name} "
                         f"({', '.join(out[blocks]) or 'none'}); the Gini and JS0 compare at least 2 blocks{why}")
    return out


def _selection_stats(selections: dict, labels, sizes, gh, spectra: dict, divergences: dict) -> tuple[dict, dict]:
    """Gini of the normalized block gradient norms and JS⁰ (every mode) over each selection's blocks.

    Reuses the block norms and spectra already computed: a selection's Gini is that of its
    blocks' ``G_b/√P_b`` [Tomihari25, App. D.5]; its JS⁰ is that of `spectrum_divergence` over
    its blocks' spectra alone (grid and blur set by those blocks; `_restricted_divergence`).
    Returns ``({selection: stats}, {selection: {mode: PairwiseDivergence}})``."""
    index = {label: i for i, label in enumerate(labels)}
    spectra = {label: spectra[label] for label in labels}  # rows of `_restricted_divergence` in label order
    normalized = np.asarray(gh.normalized)
    stats, divs = {}, {}
    for name, chosen in selections.items():
        if len(chosen) < 2:
            stats[name] = {"labels": list(chosen), "skipped": f"{len(chosen)} block(s): nothing to compare"}
            continue
        idx = np.asarray([index[label] for label in chosen])
        divs[name] = divergences if tuple(chosen) == tuple(labels) else {
            mode: _restricted_divergence(spectra, idx, mode) for mode in JS_MODES}
        stats[name] = {"labels": list(chosen), "num_blocks": len(chosen), "num_params": int(np.sum(sizes[idx])),
                       "gini": hm.gini(normalized[idx]),
                       "js": {mode: {"js0": div.mean, "sigma": div.sigma, "resolved": _resolved(div)}
                              for mode, div in divs[name].items()}}
    return stats, divs


def _restricted_divergence(spectra: dict, idx: np.ndarray, mode: str):
    """`spectrum_divergence` of the blocks ``idx`` alone, run by the program already compiled for all
    blocks (a new block count would compile it again, which costs more than the run).

    The other blocks get zero weights, which `spectrum_divergence` ignores for the grid range,
    the blur and the scales (its rule for padding); their density rows are empty and are
    dropped, so the kept pairs are those of a call on the chosen spectra only (the report's
    NumPy float64 check recomputes them from those spectra alone)."""
    keep = set(idx.tolist())
    masked = {label: (s.nodes, s.weights if i in keep else np.zeros(np.shape(s.weights), np.asarray(s.weights).dtype))
              for i, (label, s) in enumerate(spectra.items())}
    div = hm.spectrum_divergence(masked, mode=mode)
    # the cut in NumPy: new shapes in jnp would compile a few small programs (seconds on a busy CPU)
    sub = np.asarray(div.matrix)[np.ix_(idx, idx)]
    upper = sub[np.triu_indices(len(idx), 1)]
    return hm.PairwiseDivergence(sub, np.mean(upper), tuple(div.labels[i] for i in idx), div.grid,
                                 np.asarray(div.densities)[idx], np.asarray(div.scales)[idx], div.sigma)


def _resolved(div) -> bool:
    """A Gaussian blur is only seen by the grid when several points fall inside one sigma."""
    return bool(div.grid[1] - div.grid[0] < div.sigma / 3)


def _check_divergences(spectra: dict, divergences: dict, labels, tol: float = 5e-3) -> dict:
    """Recompute every JS matrix and JS⁰ of the report from its own spectra in NumPy float64
    (`heterogeneity.selftest.reference_js`) and refuse to write numbers that disagree: the
    report's own guard against a backend that miscompiles the Gaussian sums (jax 0.10.2 did,
    from 17 blocks on). Float32 against float64 agrees to ~1e-4 (~1e-3 in paper mode)."""
    from heterogeneity.selftest import reference_js

    nodes = [np.asarray(spectra[label].nodes) for label in labels]
    weights = [np.asarray(spectra[label].weights) for label in labels]
    errors = {}
    for mode, div in divergences.items():
        if not _resolved(div):  # float32 and float64 underflow differently there; the number is not used
            errors[mode] = "skipped: the grid is coarser than the blur"
            continue
        mat, js0 = reference_js(nodes, weights, mode)
        got, got0 = np.append(np.asarray(div.matrix, np.float64).ravel(), float(div.mean)), float(div.mean)
        want = np.append(mat.ravel(), js0)
        if not np.array_equal(np.isfinite(got), np.isfinite(want)):  # NaN (an unresolved grid) must agree too
            errors[mode] = float("inf")
            continue
        ok = np.isfinite(want)
        scale = max(float(np.max(np.abs(want[ok]), initial=0.0)), 1e-30)
        errors[mode] = max(float(np.max(np.abs(got[ok] - want[ok]), initial=0.0)) / scale,
                           abs(got0 - js0) / max(abs(js0), 1e-30) if np.isfinite(js0) else 0.0)
    bad = {mode: e for mode, e in errors.items() if not isinstance(e, str) and not e < tol}
    if bad:
        raise ValueError(f"the JS numbers of this backend disagree with a NumPy float64 recomputation (relative "
                         f"error {bad}, tolerance {tol:g}): the backend miscompiles them; run `heterogeneity "
                         f"selftest`. Nothing was written")
    return {"js_vs_numpy_float64": errors, "tolerance": tol}


def _verdict(value, low=None, high=None) -> str:
    if not isinstance(value, (int, float)):
        return "n/a"
    if high is not None and value > high:
        return "high"
    if low is not None and value < low:
        return "low"
    return "moderate"


def interpret(result: dict, blocks: str | None = None) -> dict:
    """Map the numbers to the papers' conclusions (`DECISION_RULE`, thresholds in `THRESHOLDS`).

    ``blocks``: the block selection whose Gini and JS⁰ are read from ``result["selections"]``
    (default: ``result["meta"]["blocks"]`` when recorded); without selections, every block's
    (``result["gradient"]``, ``result["js"]``). Λ, the ℓ∞ geometry and the correlation are
    always over every block.
    """
    T = THRESHOLDS
    blocks = blocks if blocks is not None else result.get("meta", {}).get("blocks")
    chosen = result.get("selections", {}).get(blocks) if blocks is not None else None
    if blocks is not None and "selections" in result and (chosen is None or "skipped" in chosen):
        raise ValueError(f"interpret: no numbers for block selection {blocks!r}; the report has "
                         f"{[k for k, v in result['selections'].items() if 'skipped' not in v]}")
    gini = chosen["gini"] if chosen else result["gradient"]["gini"]
    paper = chosen["js"]["paper"] if chosen else result["js"]["paper"]
    js0 = paper["js0"] if paper.get("resolved", True) else "unresolved"
    ratio = result["lambda"]["ratio"]
    l11r = result["geometry"]["ratio"]
    rho = result["grad_hessian_correlation"]["spearman"]
    findings = {
        "gradient_heterogeneity": _verdict(gini, T["gini"]["low"], T["gini"]["high"]),
        "block_heterogeneity": (_verdict(js0, high=T["js0_paper"]["high"]) if isinstance(js0, float)
                                else "n/a (paper-mode grid coarser than its blur)" if js0 == "unresolved" else "n/a"),
        "lambda_ratio": "high" if isinstance(ratio, float) and ratio > T["lambda_ratio"]["high"] else "low",
        "linf_geometry": ("n/a" if not isinstance(l11r, float) else "strongly favourable"
                          if l11r < T["l11_ratio"]["strong"] else "favourable"
                          if l11r < T["l11_ratio"]["favourable"] else "neutral"),
        "grad_hessian_correlation": "strong" if isinstance(rho, float) and rho > T["grad_hessian_spearman"]["high"]
        else "weak",
    }
    votes = sum([findings["gradient_heterogeneity"] == "high", findings["block_heterogeneity"] == "high",
                 findings["lambda_ratio"] == "high", findings["linf_geometry"].endswith("favourable")])
    if votes >= 2:
        advice = ("heterogeneous landscape: SGD is likely to lag Adam; sign-based (SignSGD (S), Signum, Lion) or "
                  "blockwise-adaptive methods (Adam, blockwise Adam) are advised")
    elif votes == 1:
        advice = "mixed evidence: compare SGD with Adam/SignSGD on a short run before committing"
    else:
        advice = "homogeneous landscape: SGD with momentum is likely competitive with Adam"
    return {"findings": findings, "votes_for_adaptive": votes, "advice": advice, "blocks": blocks or "all"}


def _largest(r: dict) -> str:
    errs = [e for e in r["meta"]["self_check"]["js_vs_numpy_float64"].values() if isinstance(e, (int, float))]
    return f"{max(errs):.1e}" if errs else "none checked"


def _fmt(x, spec=".4g") -> str:
    return format(x, spec) if isinstance(x, (int, float)) else str(x)


def _params_line(meta: dict) -> str:
    said = meta.get("params")
    if said is None:
        return "Params: as passed to `report()` (the caller did not record whether they are initial or trained)."
    if said.startswith("initial"):
        return f"Params: the {said} parameters, before any training (pass `--checkpoint` for trained ones)."
    return f"Params: {said}."


def _selection_rows(r: dict) -> list[str]:
    """One table row per block selection: its headline numbers and the verdict they give."""
    rows = ["| blocks | blocks used | parameters | Gini | reading | JS⁰ paper | reading | JS⁰ bounded | "
            "JS⁰ scale-norm. | votes | verdict |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    total = r["meta"]["num_blocks"]
    for name, stats in r["selections"].items():
        if "skipped" in stats:
            rows.append(f"| {name} | {len(stats['labels'])} of {total} | | n/a | | n/a | | | | | {stats['skipped']} |")
            continue
        v = r["interpretation"]["by_selection"][name]
        js = stats["js"]
        rows.append(f"| {name} | {stats['num_blocks']} of {total} | {stats['num_params']:,} | "
                    f"{_fmt(stats['gini'], '.3f')} | {v['findings']['gradient_heterogeneity']} | "
                    f"{_fmt(js['paper']['js0'])} | {v['findings']['block_heterogeneity']} | "
                    f"{_fmt(js['bounded']['js0'], '.3f')} | {_fmt(js['scale_normalized']['js0'], '.3f')} | "
                    f"{v['votes_for_adaptive']} | {v['advice'].split(':')[0]} |")
    return rows


def _selection_text(r: dict) -> list[str]:
    blocks, sel = r["meta"].get("blocks", "all"), r.get("selections")
    if not sel:
        return []
    chosen = sel[blocks]
    text = (f"Blocks: the headline numbers and the verdict use `--blocks {blocks}`: {chosen['num_blocks']} of "
            f"{r['meta']['num_blocks']} blocks ({hp.BLOCK_SELECTIONS[blocks]}). Λ, the ℓ∞ geometry, the correlation "
            "and the figures use every block.")
    lines = [text, ""]
    w, a = sel.get("weights", {}), sel.get("all", {})
    by = r["interpretation"].get("by_selection", {})
    if "skipped" in w or "all" not in by or "weights" not in by:
        change = f"Without bias and norm blocks there is nothing to compare ({w.get('skipped', 'n/a')})."
    elif w["num_blocks"] == r["meta"]["num_blocks"]:
        change = "This partition has no bias or norm blocks: both selections are the same."
    else:
        dropped = r["meta"]["num_blocks"] - w["num_blocks"]
        same = by["weights"]["advice"] == by["all"]["advice"]
        change = (f"Without the {dropped} blocks that hold biases or norm parameters (as [Zhang24, App. D.1], which "
                  f"leaves BatchNorm and LayerNorm out) the Gini goes from {_fmt(a['gini'], '.3f')} "
                  f"({by['all']['findings']['gradient_heterogeneity']}) to {_fmt(w['gini'], '.3f')} "
                  f"({by['weights']['findings']['gradient_heterogeneity']}) and JS⁰ (paper mode) from "
                  f"{_fmt(a['js']['paper']['js0'])} to {_fmt(w['js']['paper']['js0'])}; the verdict "
                  + ("is the same." if same else f"changes from \"{by['all']['advice'].split(':')[0]}\" to "
                                                 f"\"{by['weights']['advice'].split(':')[0]}\"."))
    mixed = r["meta"].get("mixed_blocks") or []
    if mixed:
        change += (f" {len(mixed)} block(s) mix kernels with bias or norm leaves and count as non-weights "
                   f"({', '.join(mixed[:5])}{' ...' if len(mixed) > 5 else ''}): a partition that separates them "
                   "(leaf, role) gives a cleaner comparison.")
    return lines + [change, ""] + _selection_rows(r) + [""]


def render_markdown(r: dict) -> str:
    """A short report.md: the numbers, the decision rule behind the verdict, what each JS⁰ mode is
    comparable for, the effect of leaving bias and norm blocks out, and each threshold's source."""
    T, f = THRESHOLDS, r["interpretation"]["findings"]
    lam, geo, js = r["lambda"], r["geometry"], r["js"]
    blocks = r["meta"].get("blocks", "all")
    head = r["selections"][blocks] if r.get("selections") else {"gini": r["gradient"]["gini"], "js": js}
    hjs = head["js"]
    sel = f" ({blocks} blocks)" if r.get("selections") else ""
    lines = [
        "# Heterogeneity report",
        "",
        f"Model: {r['meta'].get('model', 'user model')}, {r['meta']['num_params']:,} parameters in "
        f"{r['meta']['num_blocks']} blocks ({r['meta']['partition']}); loss at these params {_fmt(r['loss'])}.",
        "",
        _params_line(r["meta"]),
        "",
        f"Backend selftest: {r['meta'].get('selftest', 'not checked')}. Every JS number below was recomputed in "
        f"NumPy float64 from the stored spectra (largest relative difference {_largest(r)}).",
        "",
        f"**Verdict: {r['interpretation']['advice']}** ({r['interpretation']['votes_for_adaptive']} of 4 votes).",
        "",
        f"Decision rule: {DECISION_RULE}",
        "",
        "| diagnostic | value | reading | threshold and source |",
        "|---|---|---|---|",
        f"| Gini of normalized block gradients{sel} | {_fmt(head['gini'], '.3f')} | {f['gradient_heterogeneity']} | "
        f"low < {T['gini']['low']}, high > {T['gini']['high']}; {T['gini']['source']} |",
        f"| JS⁰, paper mode (blurred symmetric KL){sel} | {_fmt(hjs['paper']['js0'])} | {f['block_heterogeneity']} | "
        f"high > {T['js0_paper']['high']}; {T['js0_paper']['source']} |",
        f"| JS⁰, bounded JS distance{sel} | {_fmt(hjs['bounded']['js0'], '.3f')} | — | within one model only "
        "(below) |",
        f"| JS⁰, scale-normalized JS distance{sel} | {_fmt(hjs['scale_normalized']['js0'], '.3f')} | — | "
        "spectral shapes only (below) |",
        f"| Λ_G / Λ_P | {_fmt(lam['ratio'], '.3f')} (Λ_G {_fmt(lam['lambda_G'])}, Λ_P {_fmt(lam['lambda_P'])}) | "
        f"{f['lambda_ratio']} | > {T['lambda_ratio']['high']} favours sign methods; {T['lambda_ratio']['source']} |",
        f"| ‖H‖₁,₁ / (d·‖H‖₂) | {_fmt(geo['ratio'], '.4f')} | {f['linf_geometry']} | "
        f"< {T['l11_ratio']['favourable']} favours Adam over AdaSGD (< {T['l11_ratio']['strong']} strongly); "
        f"{T['l11_ratio']['source']} |",
        f"| Spearman(block ‖g_b‖, ‖H_bb‖₂) | {_fmt(r['grad_hessian_correlation']['spearman'], '.3f')} | "
        f"{f['grad_hessian_correlation']} | > {T['grad_hessian_spearman']['high']} (does not vote); "
        f"{T['grad_hessian_spearman']['source']} |",
        "",
        *_selection_text(r),
        "What each JS⁰ mode is comparable for:",
        "",
        *[f"- {mode}: {note}." for mode, note in JS_MODE_NOTES.items()],
        "",
        "Block statistics: `report.json` (`gradient`, `block_hessian_norm`, `spectra`, `js`, `selections`, "
        "`geometry`).",
        "Figures: `gradient_shares.png` [Tomihari25, Fig. 3], `js_heatmap.png` [Zhang24, Fig. 4], "
        "`spectra.png` [Zhang24, Figs. 2-3], `lambda_table.png` [Tomihari25, Def. 4.5]; every block, in partition "
        "order.",
        "",
        "Caveats: the thresholds come from the papers' models and block definitions (one block per parameter "
        "tensor); SLQ densities use "
        f"{r['meta']['settings']['slq_steps']} Lanczos steps × {r['meta']['settings']['slq_probes']} probes per block "
        "and the (1,1)-norm a Cauchy sketch, so small differences are within estimator noise.",
    ]
    if r.get("attention"):
        a = r["attention"]
        lines += ["", "Attention entropy ratio per layer [Tomihari25, App. F.5]: "
                  + ", ".join(_fmt(x, ".3f") for x in a["entropy_ratio_mean"])]
    return "\n".join(lines) + "\n"


LAMBDA_HEADER = ("block", "P_b", "‖g_b‖₂", "‖H_bb‖₂", "Λ_G weight ‖g_b‖²/‖g‖²", "Λ_P weight P_b/P")


def lambda_table_rows(r: dict) -> tuple[list[list[str]], list[list[str]]]:
    """Rows of the Λ table (`LAMBDA_HEADER`): one per block, then Λ_G and Λ_P, each the weighted sum
    of the ‖H_bb‖₂ column with its weight column [Tomihari25, Def. 4.5], under ‖H_bb‖₂."""
    labels, sizes = r["blocks"]["labels"], np.asarray(r["blocks"]["sizes"], float)
    g2 = np.square(np.asarray(r["gradient"]["norms"], float))
    wg = g2 / g2.sum() if g2.sum() > 0 else np.full_like(g2, np.nan)
    wp = sizes / sizes.sum()
    rows = [[label, f"{int(n):,d}", _fmt(g, ".3g"), _fmt(h, ".3g"), f"{a:.3f}", f"{b:.3f}"]
            for label, n, g, h, a, b in zip(labels, sizes, r["gradient"]["norms"], r["block_hessian_norm"], wg, wp)]
    footer = [["Λ_G = Σ_b (‖g_b‖²/‖g‖²) ‖H_bb‖₂", "", "", _fmt(r["lambda"]["lambda_G"], ".3g"), "1", ""],
              ["Λ_P = Σ_b (P_b/P) ‖H_bb‖₂", f"{int(sizes.sum()):,d}", "", _fmt(r["lambda"]["lambda_P"], ".3g"), "",
               "1"]]
    return rows, footer


def _write_figures(out: Path, r: dict, divergences) -> None:
    """The four figures, every block in partition order."""
    labels = r["blocks"]["labels"]
    figs.plot_gradient_shares(out / "gradient_shares.png", labels, r["gradient"]["shares"], gini=r["gradient"]["gini"],
                              title="Gradient heterogeneity, all blocks")
    figs.plot_js_heatmap(out / "js_heatmap.png", labels, r["js"]["bounded"]["matrix"],
                         title="JS distance between blockwise Hessian spectra (bounded mode)",
                         colorbar_label="JS distance, bounded mode (at most √ln2 ≈ 0.83)")
    bounded = divergences["bounded"]
    figs.plot_spectra(out / "spectra.png", np.asarray(bounded.grid),
                      {label: np.asarray(bounded.densities[i]) for i, label in enumerate(labels)})
    rows, footer = lambda_table_rows(r)
    figs.plot_lambda_table(out / "lambda_table.png", rows, LAMBDA_HEADER, footer=footer,
                           title="Block gradients and Hessian norms behind Λ_G / Λ_P = "
                                 f"{_fmt(r['lambda']['ratio'], '.3f')} "
                                 "[Tomihari25, Def. 4.5]")
