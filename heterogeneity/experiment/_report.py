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
atomically. The verdict lives in `heterogeneity.experiment._interpret`, the Markdown in
`heterogeneity.experiment._markdown`; both are re-exported here.
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
from heterogeneity.experiment._interpret import DECISION_RULE, JS_MODE_NOTES, THRESHOLDS, interpret
from heterogeneity.experiment._markdown import LAMBDA_HEADER, _fmt, lambda_table_rows, render_markdown
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
    out_dir: str | Path | None,
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
    ``out_dir=None`` computes everything and writes nothing (the advisor study's use).
    Returns the dict written to ``report.json``.
    """
    key = jax.random.key(0) if key is None else key
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
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
        name: interpret(result, blocks=name, calibration=None) for name, stats in result["selections"].items() if "skipped" not in stats}
    if out is not None:
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
