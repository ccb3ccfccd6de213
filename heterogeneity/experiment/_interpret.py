"""The report's verdict: thresholds with their sources, the decision rule, the advisor study's calibration, and `interpret`.

`interpret` reads the headline numbers of a report (Gini, JS⁰ in paper mode, Λ_G/Λ_P, the
(1,1)-norm ratio, the gradient–Hessian correlation) against `THRESHOLDS` and counts the votes
for an adaptive optimizer by `DECISION_RULE`: the papers' reading. The advice itself comes from
the advisor study [AdvisorStudy] when its calibration ships with the package
(`heterogeneity.experiment._advisor.load_calibration`): the one score and threshold that predicted
the measured SGD–Adam gap best, with its leave-one-pair-out accuracy and rank-correlation
interval, or, when no score predicted the gap, no advice at all. `JS_MODE_NOTES` says what each
JS⁰ mode is comparable for. report.md states all of it.
"""
from __future__ import annotations

__all__ = ["THRESHOLDS", "DECISION_RULE", "JS_MODE_NOTES", "interpret"]

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


def _verdict(value, low=None, high=None) -> str:
    if not isinstance(value, (int, float)):
        return "n/a"
    if high is not None and value > high:
        return "high"
    if low is not None and value < low:
        return "low"
    return "moderate"


def interpret(result: dict, blocks: str | None = None, calibration: dict | None | str = "shipped") -> dict:
    """Map the numbers to the papers' conclusions (`DECISION_RULE`, thresholds in `THRESHOLDS`) and to
    the advice the advisor study supports (`calibrated_advice`).

    ``calibration``: the advisor study's calibration dict; ``"shipped"`` (default) loads the one in
    the package, ``None`` uses the papers' vote rule alone (``advice`` is then ``paper_advice``).

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
        paper_advice = ("heterogeneous landscape: SGD is likely to lag Adam; sign-based (SignSGD (S), Signum, Lion) or "
                        "blockwise-adaptive methods (Adam, blockwise Adam) are advised")
    elif votes == 1:
        paper_advice = "mixed evidence: compare SGD with Adam/SignSGD on a short run before committing"
    else:
        paper_advice = "homogeneous landscape: SGD with momentum is likely competitive with Adam"
    out = {"findings": findings, "votes_for_adaptive": votes, "paper_advice": paper_advice, "advice": paper_advice,
           "blocks": blocks or "all"}
    if isinstance(calibration, str):
        if calibration != "shipped":
            raise ValueError(f"calibration must be a dict, None or 'shipped', got {calibration!r}")
        from heterogeneity.experiment._advisor import load_calibration

        calibration = load_calibration()
    if calibration is not None:
        out["calibrated"] = calibrated_advice(result, calibration)
        out["advice"] = out["calibrated"]["advice"]
    return out


def calibrated_advice(result: dict, calibration: dict) -> dict:
    """The advice the advisor study supports for this report [AdvisorStudy].

    When the study found a predictive score (``calibration["predictive"]``), its fitted rule
    "SGD lags when sign·score > sign·threshold" is applied to this report's value of that score,
    and the advice states the rule's leave-one-pair-out accuracy, its Spearman ρ with the gap and
    the ρ's 95% bootstrap interval. Otherwise the advice is that no score predicted the gap.
    """
    from heterogeneity.experiment._advisor import scores_of

    study = calibration.get("study", {})
    n = len(calibration.get("pairs", []))
    best = calibration.get("best")
    e = calibration.get("per_score", {}).get(best, {}) if best else {}
    base = calibration.get("baseline_loo_accuracy")
    paper = calibration.get("paper_rule", {}).get("accuracy")
    out = {"source": "[AdvisorStudy]", "pairs": n, "date": study.get("date"), "scale": study.get("scale"),
           "predictive": bool(calibration.get("predictive")), "score": best, "threshold": e.get("threshold"),
           "sign": e.get("sign"), "spearman": e.get("spearman"), "ci95": e.get("ci95"),
           "loo_accuracy": e.get("loo_accuracy"), "baseline_loo_accuracy": base, "paper_rule_accuracy": paper,
           "by_score": {k: {f: v.get(f) for f in ("n", "spearman", "ci95", "threshold", "sign", "loo_accuracy")}
                        for k, v in calibration.get("per_score", {}).items()}}

    def num(x, spec=".2f"):
        return format(x, spec) if isinstance(x, (int, float)) else "n/a"

    evidence = (f"in the advisor study over {n} architecture/task pairs, {best} had Spearman ρ {num(e.get('spearman'))} "
                f"[95% CI {num((e.get('ci95') or [None])[0])}, {num((e.get('ci95') or [None, None])[1])}] with "
                f"log(L_SGD/L_Adam) and its fitted threshold classified {num(e.get('loo_accuracy'))} of held-out "
                f"pairs correctly (always guessing the majority: {num(base)}; the papers' vote rule: {num(paper)})")
    nets = (calibration.get("networks_only") or {}).get("per_score", {}).get(best) if best else None
    if nets:
        out["networks_only"] = nets
        ci = nets.get("ci95") or [None, None]
        evidence += (f"; over its {nets.get('n')} neural-network pairs alone (no quadratics), ρ {num(nets.get('spearman'))} "
                     f"[{num(ci[0])}, {num(ci[1])}]" + (": it tells strongly heterogeneous problems from the rest but "
                                                        "does not reliably rank networks of similar heterogeneity"
                                                        if isinstance(ci[0], (int, float)) and ci[0] <= 0 else ""))
    if not out["predictive"]:
        out.update(value=None, lags=None, advice=(
            "no advice: no heterogeneity score predicted the SGD–Adam gap in the advisor study (" + evidence
            + "); compare SGD with momentum and Adam on a short run before committing"))
        return out
    value = scores_of(result).get(best)
    out["value"] = value
    if not isinstance(value, float) or value != value:
        out.update(lags=None, advice=f"no advice: this report has no value of {best}, the score the advisor study "
                                     f"calibrated ({evidence}); compare SGD with Adam on a short run")
        return out
    lags = out["sign"] * value > out["sign"] * out["threshold"]
    rel = ">" if out["sign"] > 0 else "<"
    rule = f"{best} = {value:.3g} {'' if lags else 'not '}{rel} {out['threshold']:.3g}"
    out["lags"] = bool(lags)
    out["advice"] = ((f"heterogeneous landscape: SGD is likely to lag Adam ({rule}; " if lags else
                      f"homogeneous landscape: SGD with momentum is likely competitive with Adam ({rule}; ")
                     + evidence + ")")
    return out
