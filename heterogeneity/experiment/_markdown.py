"""report.md: the report's numbers rendered as Markdown, and the Λ table shared with its figure.

`render_markdown(result)` writes the verdict, its decision rule and the params and blocks used
first, then one section per diagnostic; `lambda_table_rows` gives the rows of the Λ table
that both report.md and ``lambda_table.png`` show.
"""
from __future__ import annotations

import numpy as np

from heterogeneity import partition as hp
from heterogeneity.experiment._interpret import DECISION_RULE, JS_MODE_NOTES, THRESHOLDS

__all__ = ["render_markdown", "lambda_table_rows", "LAMBDA_HEADER"]


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
            "JS⁰ scale-norm. | votes | papers' rule |", "|---|---|---|---|---|---|---|---|---|---|---|"]
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
                  f"{_fmt(a['js']['paper']['js0'])} to {_fmt(w['js']['paper']['js0'])}; the papers' vote rule's verdict "
                  + ("is the same." if same else f"changes from \"{by['all']['advice'].split(':')[0]}\" to "
                                                 f"\"{by['weights']['advice'].split(':')[0]}\"."))
    mixed = r["meta"].get("mixed_blocks") or []
    if mixed:
        change += (f" {len(mixed)} block(s) mix kernels with bias or norm leaves and count as non-weights "
                   f"({', '.join(mixed[:5])}{' ...' if len(mixed) > 5 else ''}): a partition that separates them "
                   "(leaf, role) gives a cleaner comparison.")
    return lines + [change, ""] + _selection_rows(r) + [""]


def _verdict_lines(v: dict) -> list[str]:
    """The verdict, and where it comes from: the advisor study's calibration or the papers' vote rule."""
    votes = f"{v['votes_for_adaptive']} of 4 votes"
    cal = v.get("calibrated")
    if cal is None:
        return [f"**Verdict: {v['advice']}** ({votes}).", ""]
    return [f"**Verdict: {v['advice']}.**", "",
            f"The verdict is calibrated by the advisor study [AdvisorStudy] ({cal['pairs']} architecture/task pairs, "
            f"{cal.get('scale') or '?'} scale, {cal.get('date') or '?'}; EXPERIMENTS.md, section `advisor_study`), which "
            "measured every score below at initialization and the final-loss gap between tuned SGD with momentum and "
            f"tuned Adam. The papers' vote rule alone would say: {v['paper_advice']} ({votes}).", "",
            *_study_table(cal)]


def _study_table(cal: dict) -> list[str]:
    """What the advisor study measured for every score: its rank correlation with the gap, the interval,
    the rule fitted on the study's pairs and that rule's leave-one-pair-out accuracy."""
    def num(x, spec=".2f"):
        return format(x, spec) if isinstance(x, (int, float)) else "n/a"

    rows = ["| score (advisor study) | pairs | Spearman ρ with the gap | 95% CI | fitted rule: SGD lags if | "
            "leave-one-out accuracy |", "|---|---|---|---|---|---|"]
    for name, e in cal.get("by_score", {}).items():
        ci = e.get("ci95") or [None, None]
        rule = (f"{'>' if e.get('sign', 1) > 0 else '<'} {num(e.get('threshold'), '.3g')}"
                if isinstance(e.get("threshold"), (int, float)) else "n/a")
        mark = " (used)" if name == cal.get("score") and cal.get("predictive") else ""
        rows.append(f"| {name}{mark} | {e.get('n', 'n/a')} | {num(e.get('spearman'))} | [{num(ci[0])}, {num(ci[1])}] | "
                    f"{rule} | {num(e.get('loo_accuracy'))} |")
    return rows + ["", f"Always guessing the study's majority class scores {num(cal.get('baseline_loo_accuracy'))} "
                   f"held out; the papers' vote rule {num(cal.get('paper_rule_accuracy'))}. An interval that "
                   "contains 0 means the study cannot tell that score from noise.", ""]


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
        *_verdict_lines(r["interpretation"]),
        f"The papers' decision rule: {DECISION_RULE}",
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
