"""Does a heterogeneity score predict the SGD–Adam gap? The statistics of the advisor study and its calibration.

The report's scores are measured at initialization on a set of architecture/task pairs; each
pair is then trained with SGD (momentum 0.9) and Adam, each on its own tuned learning-rate
grid, and its **gap** is ``log(L_SGD / L_Adam)``, the final training losses at each optimizer's
best learning rate (median over seeds). This module holds what turns those numbers into
evidence and into the report's advice [AdvisorStudy]:

* `SCORES`: every score the report computes, how to read it from ``report.json`` and the
  direction the papers expect (+1: larger means more heterogeneous, SGD lags more);
* `spearman`, `bootstrap_spearman`: rank correlation with the gap over pairs, with a
  percentile bootstrap interval over pairs;
* `fit_threshold`, `leave_one_out`: a one-score rule "SGD lags when ``s·score > s·t``" fitted by
  accuracy, and its leave-one-pair-out accuracy; `paper_rule` applies the papers' thresholds
  (`THRESHOLDS`, nothing fitted);
* `combined_rank_score`: the mean signed rank of the scores, fitted inside each fold;
* `calibrate`: the whole analysis of a study table, the dict the report's verdict reads
  (``advisor_calibration.json`` beside this module; `load_calibration`).

"SGD lags" is ``gap > LAGS_GAP`` (SGD's final loss more than twice Adam's).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np

__all__ = ["SCORES", "LAGS_GAP", "Score", "scores_of", "spearman", "bootstrap_spearman", "fit_threshold",
           "leave_one_out", "paper_rule", "combined_rank_score", "calibrate", "load_calibration", "decode_numbers",
           "CALIBRATION_PATH"]

LAGS_GAP = math.log(2.0)
"""A pair's SGD "lags" Adam when ``log(L_SGD/L_Adam) > log 2``: SGD's final loss is more than twice Adam's."""

CALIBRATION_PATH = Path(__file__).with_name("advisor_calibration.json")


class Score(NamedTuple):
    """One heterogeneity score of the report: ``read(report.json) -> float`` and its expected sign."""

    read: Callable[[Mapping[str, Any]], float]
    expected_sign: int  # +1: larger = more heterogeneous = SGD expected to lag more [source]
    description: str


def _sel(selection: str, *path: str):
    def read(r):
        node = r.get("selections", {}).get(selection)
        if node is None or "skipped" in node:
            return math.nan
        for p in path:
            node = node[p]
        return node

    return read


def _js(selection: str, mode: str):
    base = _sel(selection, "js", mode)

    def read(r):
        node = base(r)
        if not isinstance(node, dict):
            return math.nan
        return node["js0"] if node.get("resolved", True) else math.nan  # an unresolved grid gives no number

    return read


SCORES: dict[str, Score] = {
    "gini_all": Score(_sel("all", "gini"), +1, "Gini of normalized block gradient norms, all blocks [Tomihari25, App. D.5]"),
    "gini_weights": Score(_sel("weights", "gini"), +1, "Gini, weight blocks only [Tomihari25, App. D.5]"),
    **{f"js0_{mode}_{sel}": Score(_js(sel, mode), +1, f"JS⁰ of blockwise spectra, {mode} mode, {sel} blocks "
                                                      "[Zhang24, §2.6]")
       for sel in ("all", "weights") for mode in ("paper", "bounded", "scale_normalized")},
    "lambda_ratio": Score(lambda r: r["lambda"]["ratio"], +1, "Λ_G / Λ_P [Tomihari25, Def. 4.5]"),
    "l11_ratio": Score(lambda r: r["geometry"]["ratio"], -1, "‖H‖₁,₁ / (d‖H‖₂); small favours Adam [Xie24, Table 1]"),
    "grad_hessian_spearman": Score(lambda r: r["grad_hessian_correlation"]["spearman"], +1,
                                   "Spearman of block gradient norms with block Hessian norms [Tomihari25, Fig. 1]"),
}
"""Every score the report computes, in a fixed order (the study's columns)."""


def scores_of(report_result: Mapping[str, Any]) -> dict[str, float]:
    """``{score name: value}`` of a report's result dict (NaN where the report has no number)."""
    out = {}
    for name, s in SCORES.items():
        try:
            v = s.read(report_result)
            out[name] = float(v) if isinstance(v, (int, float)) and v is not None else math.nan
        except (KeyError, TypeError):
            out[name] = math.nan
    return out


def _finite(x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok]


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation over the pairs where both are finite (ties get average ranks); NaN if < 3
    pairs or a constant side."""
    from scipy.stats import rankdata

    x, y = _finite(x, y)
    if x.size < 3:
        return math.nan
    rx, ry = rankdata(x), rankdata(y)
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def bootstrap_spearman(x, y, *, n_boot: int = 4000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of `spearman` over pairs (pairs resampled with replacement;
    resamples with a constant side are dropped). ``(nan, nan)`` with fewer than 4 finite pairs."""
    from scipy.stats import rankdata

    x, y = _finite(x, y)
    n = x.size
    if n < 4:
        return (math.nan, math.nan)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    rx = rankdata(x[idx], axis=1)
    ry = rankdata(y[idx], axis=1)
    rx -= rx.mean(1, keepdims=True)
    ry -= ry.mean(1, keepdims=True)
    den = np.sqrt((rx ** 2).sum(1) * (ry ** 2).sum(1))
    ok = den > 0
    rho = (rx * ry).sum(1)[ok] / den[ok]
    a = (1 - level) / 2
    return (float(np.quantile(rho, a)), float(np.quantile(rho, 1 - a)))


class Threshold(NamedTuple):
    """The rule "SGD lags when ``sign · score > sign · threshold``" and its accuracy on the fitting pairs."""

    threshold: float
    sign: int
    accuracy: float


def fit_threshold(x: Sequence[float], lags: Sequence[bool], *, prefer_sign: int = +1) -> Threshold:
    """The threshold and direction that classify the most pairs correctly (``x`` finite).

    Candidates are the midpoints between consecutive distinct values and one beyond each end
    (all one class). Ties go to ``prefer_sign`` (the papers' direction), then to the candidate
    nearest the middle of the tied range (largest margin).
    """
    x, lags = np.asarray(x, float), np.asarray(lags, bool)
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError("fit_threshold needs at least one pair and finite scores")
    v = np.unique(x)
    cands = np.concatenate([[v[0] - 1.0], (v[:-1] + v[1:]) / 2, [v[-1] + 1.0]]) if v.size > 1 else \
        np.asarray([v[0] - 1.0, v[0] + 1.0])
    best = None
    for sign in (prefer_sign, -prefer_sign):
        acc = np.asarray([np.mean((sign * x > sign * t) == lags) for t in cands])
        top = np.flatnonzero(acc == acc.max())
        t = float(cands[top[len(top) // 2]])
        if best is None or acc.max() > best.accuracy:
            best = Threshold(t, sign, float(acc.max()))
    return best


def leave_one_out(x: Sequence[float], lags: Sequence[bool], *, prefer_sign: int = +1) -> np.ndarray:
    """Predicted "SGD lags" for each pair by the rule fitted on the others (NaN score: no prediction, -1)."""
    x, lags = np.asarray(x, float), np.asarray(lags, bool)
    out = np.full(x.size, -1, int)
    for i in range(x.size):
        if not np.isfinite(x[i]):
            continue
        keep = np.isfinite(x) & (np.arange(x.size) != i)
        if keep.sum() < 2:
            continue
        rule = fit_threshold(x[keep], lags[keep], prefer_sign=prefer_sign)
        out[i] = int(rule.sign * x[i] > rule.sign * rule.threshold)
    return out


def paper_rule(scores: Mapping[str, float], blocks: str = "all") -> dict[str, Any]:
    """The papers' thresholds (`THRESHOLDS`, nothing fitted) on one pair's scores: the four votes of
    `DECISION_RULE` and the verdict "SGD lags" (two votes or more)."""
    from heterogeneity.experiment._interpret import THRESHOLDS as T

    votes = {
        "gini": scores.get(f"gini_{blocks}", math.nan) > T["gini"]["high"],
        "js0_paper": scores.get(f"js0_paper_{blocks}", math.nan) > T["js0_paper"]["high"],
        "lambda_ratio": scores.get("lambda_ratio", math.nan) > T["lambda_ratio"]["high"],
        "l11_ratio": scores.get("l11_ratio", math.nan) < T["l11_ratio"]["favourable"],
    }
    return {"votes": votes, "lags": sum(votes.values()) >= 2}


def _signed_ranks(train: np.ndarray, signs: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Mean over scores of ``sign ×`` the query's empirical CDF among the training values (NaN-aware)."""
    cols = []
    for j in range(train.shape[1]):
        col = train[:, j][np.isfinite(train[:, j])]
        if col.size == 0 or signs[j] == 0:
            continue
        q = query[:, j]
        cdf = np.where(np.isfinite(q), (np.searchsorted(np.sort(col), q, side="right") + 0.5) / (col.size + 1),
                       np.nan)
        cols.append(signs[j] * (cdf - 0.5))
    return np.nanmean(np.stack(cols, 1), 1) if cols else np.full(query.shape[0], np.nan)


def combined_rank_score(table: np.ndarray, gaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out predictions of the combined score: on the other pairs, each score's sign is that
    of its Spearman with the gap (0 if NaN); the held-out pair's combined score is the mean signed
    empirical-CDF rank of its scores among theirs. Returns ``(combined score per pair, signs of the
    full-data fit)``."""
    n = table.shape[0]
    out = np.full(n, np.nan)
    for i in range(n):
        keep = np.arange(n) != i
        signs = np.asarray([np.sign(np.nan_to_num(spearman(table[keep, j], gaps[keep])))
                            for j in range(table.shape[1])])
        out[i] = _signed_ranks(table[keep], signs, table[i:i + 1])[0]
    full = np.asarray([np.sign(np.nan_to_num(spearman(table[:, j], gaps))) for j in range(table.shape[1])])
    return out, full


def calibrate(pairs: Mapping[str, Mapping[str, Any]], *, n_boot: int = 4000, seed: int = 0) -> dict[str, Any]:
    """The advisor study's analysis of ``{pair: {"gap": float, "scores": {name: value}}}``.

    For each score in `SCORES`: Spearman ρ with the gap over the pairs where it is finite, its
    bootstrap interval, the one-score rule fitted on every pair and its leave-one-pair-out accuracy.
    Also the papers' rule (`paper_rule`, unfitted), the majority-class baseline (leave-one-out:
    predict the majority of the other pairs) and the combined rank score (kept only if its
    leave-one-out accuracy beats the best single score's). ``predictive``: the best score (by
    leave-one-out accuracy, then |ρ|) has an interval excluding 0 in the expected direction and beats
    the baseline; only then does the report advise from it.
    """
    names = sorted(pairs)
    gaps = np.asarray([float(pairs[p]["gap"]) for p in names])
    ok = np.isfinite(gaps)
    names, gaps = [p for p, k in zip(names, ok) if k], gaps[ok]
    lags = gaps > LAGS_GAP
    n = len(names)
    table = np.asarray([[float(pairs[p]["scores"].get(s, math.nan)) for s in SCORES] for p in names]).reshape(n, -1)
    base_pred = np.asarray([int(np.mean(np.delete(lags, i)) > 0.5) for i in range(n)]) if n > 1 else np.zeros(0)
    baseline = float(np.mean(base_pred == lags)) if n else math.nan
    per_score = {}
    for j, (name, s) in enumerate(SCORES.items()):
        x = table[:, j]
        fin = np.isfinite(x)
        rho = spearman(x, gaps)
        lo, hi = bootstrap_spearman(x, gaps, n_boot=n_boot, seed=seed)
        entry = {"n": int(fin.sum()), "spearman": rho, "ci95": [lo, hi], "expected_sign": s.expected_sign,
                 "description": s.description}
        if fin.sum() >= 3:
            rule = fit_threshold(x[fin], lags[fin], prefer_sign=s.expected_sign)
            pred = leave_one_out(x, lags, prefer_sign=s.expected_sign)
            held = pred >= 0
            entry.update(threshold=rule.threshold, sign=rule.sign, fit_accuracy=rule.accuracy,
                         loo_accuracy=float(np.mean(pred[held] == lags[held])) if held.any() else math.nan,
                         loo_n=int(held.sum()),
                         loo_wrong=[names[i] for i in np.flatnonzero(held & (pred != lags))])
        per_score[name] = entry
    paper = {p: paper_rule(pairs[p]["scores"]) for p in names}
    paper_acc = float(np.mean([paper[p]["lags"] == lag for p, lag in zip(names, lags)])) if n else math.nan
    ranked = sorted((k for k, e in per_score.items() if isinstance(e.get("loo_accuracy"), float)
                     and math.isfinite(e["loo_accuracy"])),
                    key=lambda k: (-per_score[k]["loo_accuracy"], -abs(np.nan_to_num(per_score[k]["spearman"]))))
    best = ranked[0] if ranked else None
    combined = None
    if n >= 4:
        comb, signs = combined_rank_score(table, gaps)
        pred = leave_one_out(comb, lags)
        held = pred >= 0
        comb_acc = float(np.mean(pred[held] == lags[held])) if held.any() else math.nan
        combined = {"loo_spearman": spearman(comb, gaps), "loo_accuracy": comb_acc,
                    "signs": dict(zip(SCORES, signs.tolist())),
                    "kept": bool(best is not None and comb_acc > per_score[best]["loo_accuracy"])}
    predictive = False
    why = "no score has a leave-one-out accuracy"
    if best is not None:
        e = per_score[best]
        lo, hi = e["ci95"]
        sign_ok = (lo > 0 and e["expected_sign"] > 0) or (hi < 0 and e["expected_sign"] < 0)
        beats = e["loo_accuracy"] > baseline
        predictive = bool(sign_ok and beats and e["sign"] == e["expected_sign"])
        why = (f"best score {best}: Spearman {e['spearman']:.2f} [{lo:.2f}, {hi:.2f}], leave-one-out accuracy "
               f"{e['loo_accuracy']:.2f} vs {baseline:.2f} for always predicting the other pairs' majority; "
               + ("its interval excludes 0 in the papers' direction and it beats the baseline" if predictive else
                  "not predictive: " + "; ".join(
                      ([] if sign_ok else ["its interval includes 0 or has the wrong sign"])
                      + ([] if beats else ["it does not beat the baseline"])
                      + ([] if e["sign"] == e["expected_sign"] else ["its fitted rule runs against the papers' "
                                                                     "direction"]))))
    return {"pairs": names, "gaps": dict(zip(names, gaps.tolist())), "lags": dict(zip(names, lags.tolist())),
            "lags_gap": LAGS_GAP, "scores": {p: pairs[p]["scores"] for p in names}, "per_score": per_score,
            "baseline_loo_accuracy": baseline, "paper_rule": {"accuracy": paper_acc, "by_pair": paper},
            "combined": combined, "best": best, "predictive": predictive, "why": why}


_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def decode_numbers(obj: Any) -> Any:
    """Undo `heterogeneity.experiment.to_jsonable`'s strings for NaN and ±inf, recursively."""
    if isinstance(obj, dict):
        return {k: decode_numbers(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode_numbers(v) for v in obj]
    if isinstance(obj, str) and obj in _NONFINITE:
        return _NONFINITE[obj]
    return obj


def load_calibration(path: str | Path | None = None) -> dict[str, Any] | None:
    """The calibration the report's advice reads (None when no study has been run into it)."""
    path = Path(path) if path is not None else CALIBRATION_PATH
    if not path.is_file():
        return None
    return decode_numbers(json.loads(path.read_text()))
