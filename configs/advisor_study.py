"""The advisor study [AdvisorStudy]: do the report's heterogeneity scores, measured at initialization, predict the SGD–Adam gap?

For every architecture/task pair in `PAIRS` (MLPs with layer scale c ∈ {1, 10, 100}, the CNN,
the MLP-mixer and the ViT on the 8×8 digits; Pre-LN, Post-LN and No-LN encoders on a synthetic
sequence task; the char GPT on Shakespeare; the block-diagonal quadratics of [Zhang24, §3.1]
cases 1–4, of which cases 3 and 4 are [Tomihari25, App. D.9]'s Hetero and Homo):

* ``measure="scores"`` points (one per seed, no training): `heterogeneity.experiment.report` at the
  initial params, every score of `heterogeneity.experiment._advisor.SCORES` (Gini, JS⁰ in each mode
  and block selection, Λ_G/Λ_P, ‖H‖₁,₁/(d‖H‖₂), the gradient–Hessian Spearman);
* ``measure="train"`` points: SGD with momentum 0.9 and Adam (Optax defaults), each on its own
  learning-rate grid (`PAIRS[...]["lrs"]`), 3 seeds, the same steps and batch for both; the
  final loss is the training loss on a fixed training subset (classifiers, GPT) or the
  full-batch loss (quadratics, whose minimum is 0).

`findings` computes each pair's **gap** ``log(L_SGD / L_Adam)`` per seed at each optimizer's best
learning rate (tuned on the median over seeds; a diverged run counts as +inf) and its median and
interquartile range, the median score over seeds, and then `heterogeneity.experiment._advisor.calibrate`:
Spearman of every score with the gap over the pairs and its bootstrap interval, the
leave-one-pair-out accuracy of a fitted one-score threshold and of the papers' rule, and a
combined rank score. ``scripts/advisor_study.py`` runs it, draws the scatter plots and writes the
calibration the report reads.

Adding a pair: one entry in `PAIRS` (``run``: classifier, lm or quadratic; its model and budget
keys; ``lrs`` for both optimizers; a ``gpu`` override). Everything downstream is generic.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from configs import _runs
from configs._findings import best_over, findings as make_findings, fmt, md_table, median_iqr
from configs.quadratic_cases import problem as quadratic_problem, quadratic_run
from heterogeneity import data
from heterogeneity import partition as hpart
from heterogeneity.experiment import _advisor
from heterogeneity.experiment._config import RunSpec, SweepConfig, make_optimizer

SEEDS = [0, 1, 2]
OPTIMIZERS = ("sgd", "adam")
PAPER = ("[Zhang24, Fig. 7], [Tomihari25, §4], [Xie24, Table 1]: heterogeneity (JS⁰ of blockwise spectra, gradient "
         "Gini / Λ_G vs Λ_P, ‖H‖₁,₁ vs d‖H‖₂) explains why SGD lags Adam; [Zhang24, Fig. 7] shows SGD's gap growing "
         "with JS⁰ over 7 models. Tested here: does any score, measured at initialization, rank the measured gap "
         "over ≥ 10 pairs (target Spearman ≥ 0.8)?")

def lr_grid(lo: int, hi: int) -> list[float]:
    """``1·10^k`` and ``3·10^k`` from ``10^lo`` up to ``10^hi``: half decades, the papers' usual spacing."""
    return [float(f"{m}e{k}") for k in range(lo, hi + 1) for m in (1, 3) if m == 1 or k < hi]


SGD_GRID = lr_grid(-3, 0)  # SGD with momentum 0.9, networks at c = 1: 1e-3 ... 1
ADAM_GRID = lr_grid(-4, -1)  # 1e-4 ... 0.1
DIGITS = {"run": "classifier", "data": "digits", "batch_size": 64, "steps": 300, "score_batch": 256}
ENCODER = {"run": "classifier", "model": "transformer", "data": "order", "seq_len": 16, "vocab_size": 16,
           "num_train": 2048, "data_seed": 0, "d_model": 32, "num_heads": 2, "num_layers": 2, "batch_size": 32,
           "steps": 300, "score_batch": 64}
ENCODER_GPU = {"seq_len": 64, "vocab_size": 32, "num_train": 32768, "d_model": 256, "num_heads": 8, "num_layers": 12,
               "batch_size": 64, "steps": 5000, "score_batch": 512}
QUAD = {"run": "quadratic", "steps": 500, "lrs": {
    "sgd": [1e-5, 3e-5, 1e-4, 2e-4, 4e-4, 6e-4, 7e-4, 7.5e-4, 8e-4],  # heavy ball (β = 0.9) is stable below 2(1+β)/L = 7.6e-4
    "adam": lr_grid(-3, 1)}, "gpu": {"steps": 5000}}  # 1e-3 ... 10 (constant-rate Adam oscillates: big rates can win)


def _scaled(c: int) -> dict[str, Any]:
    """The MLP of [Zhang24, §2.4] at layer scale c (3 scaled layers: the logits scale as c³). Where the
    best rates sit is not known beforehand (a saturated softmax caps the gradient), so the grids span
    every half decade from the c = 1 grid down by c⁶ (SGD) and c³ (Adam)."""
    e = math.log10(c)
    return {**DIGITS, "model": "mlp", "hidden": [128, 64], "scale_c": float(c),
            "lrs": {"sgd": lr_grid(math.floor(-3 - 6 * e), 0), "adam": lr_grid(math.floor(-4 - 3 * e), -1)},
            "gpu": {"hidden": [300, 128, 64], "steps": 3000, "batch_size": 128, "score_batch": 1024},
            "source": "[Zhang24, §2.4, Fig. 5(a)]"}


NETS = {"sgd": SGD_GRID, "adam": ADAM_GRID}
PAIRS: dict[str, dict[str, Any]] = {
    "mlp_c1": _scaled(1),
    "mlp_c10": _scaled(10),
    "mlp_c3": _scaled(3),  # added with the three pairs below
    "mlp_c100": _scaled(100),
    "cnn": {**DIGITS, "model": "cnn", "channels": [8, 16], "lrs": NETS,
            "gpu": {"channels": [32, 64], "steps": 3000, "batch_size": 128, "score_batch": 1024},
            "source": "[Zhang24, Table 1], [Tomihari25, Fig. 4]"},
    "mixer": {**DIGITS, "model": "mixer", "patch_size": 2, "d_model": 32, "num_layers": 2, "lrs": NETS,
              "gpu": {"d_model": 128, "num_layers": 8, "steps": 3000, "batch_size": 128, "score_batch": 1024},
              "source": "[Zhang24, Table 1]"},
    "vit": {**DIGITS, "model": "vit", "patch_size": 2, "d_model": 32, "num_heads": 4, "num_layers": 2, "norm": "pre",
            "lrs": NETS, "gpu": {"d_model": 192, "num_heads": 6, "num_layers": 6, "steps": 3000, "batch_size": 128,
                                 "score_batch": 1024},
            "source": "[Zhang24, Table 1], [Tomihari25, Fig. 4]"},
    "encoder_pre_ln": {**ENCODER, "norm": "pre", "lrs": NETS, "gpu": ENCODER_GPU, "source": "[Tomihari25, Table 2]"},
    "encoder_post_ln": {**ENCODER, "norm": "post", "lrs": NETS, "gpu": ENCODER_GPU, "source": "[Tomihari25, Table 2]"},
    "encoder_no_ln": {**ENCODER, "norm": "none", "lrs": NETS, "gpu": ENCODER_GPU, "source": "[Tomihari25, Table 2]"},
    # added after the first 14 pairs, to test the fitted rule on pairs it had not seen (EXPERIMENTS.md)
    "encoder_post_ln_4layers": {**ENCODER, "norm": "post", "num_layers": 4, "lrs": NETS, "gpu": ENCODER_GPU,
                                "source": "[Tomihari25, Table 2], deeper"},
    "vit_post_ln": {**DIGITS, "model": "vit", "patch_size": 2, "d_model": 32, "num_heads": 4, "num_layers": 2,
                    "norm": "post", "lrs": NETS, "gpu": {"d_model": 192, "num_heads": 6, "num_layers": 6,
                                                        "steps": 3000, "batch_size": 128, "score_batch": 1024},
                    "source": "[Tomihari25, Table 2] placement on [Zhang24]'s ViT"},
    "vit_no_ln": {**DIGITS, "model": "vit", "patch_size": 2, "d_model": 32, "num_heads": 4, "num_layers": 2,
                  "norm": "none", "lrs": NETS, "gpu": {"d_model": 192, "num_heads": 6, "num_layers": 6,
                                                      "steps": 3000, "batch_size": 128, "score_batch": 1024},
                  "source": "[Tomihari25, Table 2] placement on [Zhang24]'s ViT"},
    "gpt": {"run": "lm", "max_chars": 200_000, "block_size": 32, "d_model": 32, "num_heads": 4, "num_layers": 2,
            "batch_size": 16, "steps": 300, "val_windows": 64, "score_batch": 32, "lrs": NETS,
            "gpu": {"max_chars": None, "block_size": 256, "d_model": 384, "num_heads": 6, "num_layers": 6,
                    "batch_size": 64, "steps": 5000, "score_batch": 64},
            "source": "[Tomihari25, App. D.10], [Zhang24, Table 1]"},
    **{f"quadratic_case{c}": {**QUAD, "case": c, "source": f"[Zhang24, §3.1] case {c}"
                              + {3: ", [Tomihari25, App. D.9] Hetero", 4: ", [Tomihari25, App. D.9] Homo"}.get(c, "")}
       for c in (1, 2, 3, 4)},
}
"""``{pair: settings}``: the architecture/task pairs of the study (module docstring)."""

LAPTOP_REPORT = {"slq_steps": 32, "slq_probes": 2, "top_steps": 30, "l11_probes": 50}  # the report's defaults
GPU_REPORT = {"slq_steps": 100, "slq_probes": 10, "top_steps": 50, "l11_probes": 50}  # [Zhang24]'s SLQ sizes


def pair_settings(hp) -> dict[str, Any]:
    """The pair's settings at the run's scale (``hp["size"]``), with the run's seed, optimizer and lr."""
    name = hp["pair"]
    if name not in PAIRS:
        raise ValueError(f"unknown pair {name!r}; the study's pairs are {', '.join(PAIRS)}")
    spec = {k: v for k, v in PAIRS[name].items() if k not in ("gpu", "lrs", "source")}
    if hp.get("size", "laptop") == "gpu":
        spec.update(PAIRS[name].get("gpu", {}))
    spec.update({k: v for k, v in hp.items() if k not in ("pair", "size")})
    return {**spec, "eval_every": int(spec["steps"]), "log_every": max(int(spec["steps"]) // 20, 1)}


def _inputs(s) -> tuple[Any, Any, Any, Any]:
    """``(loss_fn, params, batch, partition)`` at initialization, for the report."""
    seed = int(s["seed"])
    if s["run"] == "quadratic":
        p = quadratic_problem(int(s["case"]), seed, "orthogonal")
        return p.loss_fn, p.init_params(), None, p.partition
    key = jax.random.key(10_000 + seed)
    if s["run"] == "lm":
        _, params, loss_fn = _runs.gpt(s)
        tokens = jnp.asarray(_runs.corpus(s.get("max_chars")).train)
        return loss_fn, params, data.sample_windows(tokens, int(s["score_batch"]), int(s["block_size"]), key), \
            hpart.by_leaf(params)
    _, params, loss_fn, ds = _runs.classifier(s)
    train = jax.tree.map(jnp.asarray, ds.train)
    batch = data.sample_split(train, min(int(s["score_batch"]), int(train["y"].shape[0])), key)
    return loss_fn, params, batch, hpart.by_leaf(params)


def scores(s) -> dict[str, float]:
    """Every score of the report at the pair's initial params (`_advisor.scores_of`)."""
    from heterogeneity.experiment._report import ReportSettings, report

    loss_fn, params, batch, partition = _inputs(s)
    settings = ReportSettings(**(GPU_REPORT if s.get("size") == "gpu" else LAPTOP_REPORT))
    r = report(loss_fn, params, batch, partition=partition, out_dir=None, key=jax.random.key(777 + int(s["seed"])),
               settings=settings, progress=False, selftest=False)
    return {**_advisor.scores_of(r), "init_loss": float(r["loss"]), "num_params": float(r["meta"]["num_params"]),
            "num_blocks": float(r["meta"]["num_blocks"])}


def build(hp) -> RunSpec:
    s = pair_settings(hp)
    if hp["measure"] == "scores":
        loss_fn, params, batch, _ = _inputs(s)

        def summarize(result):
            with jax.enable_x64(bool(s.get("x64", False))):  # a batched sweep calls this outside the run's x64
                return scores({**s, "size": hp.get("size", "laptop")})

        # no training (a smoke run takes a few steps at lr 0 to exercise the loop); the scores read the initial params
        return RunSpec(loss_fn=loss_fn, params=params, optimizer=make_optimizer(hp, params),
                       num_steps=int(hp.get("steps", 0)), batches=batch, log_every=1, summarize=summarize)
    if s["run"] == "quadratic":
        p = quadratic_problem(int(s["case"]), int(s["seed"]), "orthogonal")
        return quadratic_run(s, p, lr=float(hp["lr"]))
    if s["run"] == "lm":
        return _runs.lm_run(s)
    return _runs.classifier_run(s)


def _grid(pairs, seeds) -> list[dict[str, list]]:
    """Per pair: SGD (momentum 0.9) and Adam on their grids, and the scores; the quadratics run in float64
    (``x64`` is a grid key: the sweep enables it around build, training and summary)."""
    grid = []
    for name in pairs:
        lrs = PAIRS[name]["lrs"]
        x64 = {"x64": [True]} if PAIRS[name]["run"] == "quadratic" else {}
        grid += [{"pair": [name], "measure": ["train"], "optimizer": ["sgd"], "opt.momentum": [0.9],
                  "lr": list(lrs["sgd"]), "seed": list(seeds), **x64},
                 {"pair": [name], "measure": ["train"], "optimizer": ["adam"], "lr": list(lrs["adam"]),
                  "seed": list(seeds), **x64},
                 {"pair": [name], "measure": ["scores"], "optimizer": ["sgd"], "lr": [0.0], "seed": list(seeds), **x64}]
    return grid


CONFIG = SweepConfig(
    name="advisor_study",
    description="[AdvisorStudy]: report scores at init vs log(SGD/Adam final loss) over architecture/task pairs",
    build=build,
    base={"size": "laptop"},
    grid=_grid(PAIRS, SEEDS),
    scales={"laptop": {}, "gpu": {"size": "gpu"}},
    smoke={"steps": 3},
    smoke_grid=[{"pair": ["quadratic_case3"], "measure": ["train"], "optimizer": ["adam"], "lr": [0.1], "seed": [0],
                 "x64": [True]},
                {"pair": ["quadratic_case3"], "measure": ["scores"], "optimizer": ["sgd"], "lr": [0.0],
                 "seed": [0], "x64": [True]}],
    metric="final_loss",
)


def final_loss(record) -> float:
    """The loss the gap compares: the training-subset loss of the final evaluation (networks) or the
    final full-batch loss (quadratics); +inf when the run diverged or the loss is not finite."""
    if record.get("status") == "diverged":
        return math.inf
    f = record.get("final", {})
    x = f.get("eval_train_loss", f.get("final_loss"))
    x = math.nan if x is None else float(x)
    return x if math.isfinite(x) else math.inf


def study_table(runs) -> dict[str, dict[str, Any]]:
    """``{pair: {"gap", "gap_q25", "gap_q75", "gaps", "sgd", "adam", "scores", "score_iqr", "n_scores"}}``
    for every pair with training runs of both optimizers and at least one scored seed."""
    train = {k: r for k, r in runs.items() if r.get("hparams", {}).get("measure") == "train"}
    for r in train.values():
        r.setdefault("final", {})["study_loss"] = final_loss(r)
    best = best_over(train, ["pair", "optimizer"], "study_loss")
    out = {}
    for name in sorted({k[0] for k in best}):
        if (name, "sgd") not in best or (name, "adam") not in best:
            continue
        seed_loss = {}
        for o in OPTIMIZERS:
            lr = best[(name, o)]["lr"]
            seed_loss[o] = {r["hparams"]["seed"]: r["final"]["study_loss"] for r in train.values()
                            if r.get("status") in ("finished", "diverged") and r["hparams"]["pair"] == name
                            and r["hparams"]["optimizer"] == o and r["hparams"]["lr"] == lr}
        seeds = sorted(set(seed_loss["sgd"]) & set(seed_loss["adam"]))
        gaps = [_log_ratio(seed_loss["sgd"][s], seed_loss["adam"][s]) for s in seeds]
        med, q25, q75 = median_iqr(gaps)
        scored = [r["final"] for r in runs.values() if r.get("hparams", {}).get("measure") == "scores"
                  and r["hparams"].get("pair") == name and r.get("status") == "finished"]
        if not scored:
            continue
        sc, iqr = {}, {}
        for s in _advisor.SCORES:
            vals = [float(f.get(s, math.nan)) for f in scored]
            vals = [v for v in vals if math.isfinite(v)]
            m = median_iqr(vals) if vals else (math.nan,) * 3
            sc[s], iqr[s] = m[0], [m[1], m[2]]
        out[name] = {"gap": med, "gap_q25": q25, "gap_q75": q75, "gaps": gaps, "seeds": seeds,
                     "sgd": {k: best[(name, "sgd")][k] for k in ("lr", "median", "edge")},
                     "adam": {k: best[(name, "adam")][k] for k in ("lr", "median", "edge")},
                     "scores": sc, "score_iqr": iqr, "n_scores": len(scored),
                     "num_params": scored[0].get("num_params"), "source": PAIRS.get(name, {}).get("source", "")}
    return out


def _log_ratio(a: float, b: float) -> float:
    if a == b:
        return 0.0
    if math.isinf(a) or b == 0:
        return math.inf
    if math.isinf(b) or a == 0:
        return -math.inf
    return math.log(a / b)


def _shipped_says(cal, scores, lags: bool) -> str:
    """What the report's shipped calibration advises for these scores, and whether that matches the measured gap
    (in-sample for the pairs it was fitted on; a test for pairs added since)."""
    if cal is None:
        return "no calibration"
    if not cal.get("predictive"):
        return "no advice"
    e = cal["per_score"][cal["best"]]
    x = scores.get(cal["best"], math.nan)
    if not math.isfinite(x):
        return "no value"
    says = e["sign"] * x > e["sign"] * e["threshold"]
    return f"{'lags' if says else 'competitive'} ({'right' if says == lags else 'wrong'})"


MIN_PAIRS = 10
TARGET_RHO = 0.8


def findings(runs):
    table = study_table(runs)
    cal = _advisor.calibrate(table) if len(table) >= 4 else None
    shipped = _advisor.load_calibration()
    rows = []
    for name, t in table.items():
        lags = t["gap"] > _advisor.LAGS_GAP
        rows.append([name, t["source"], fmt(t["num_params"]), f"{fmt(t['sgd']['median'])} (lr {fmt(t['sgd']['lr'])}"
                     + (", edge" if t["sgd"]["edge"] else "") + ")",
                     f"{fmt(t['adam']['median'])} (lr {fmt(t['adam']['lr'])}" + (", edge" if t["adam"]["edge"] else "")
                     + ")", f"{fmt(t['gap'], 2)} [{fmt(t['gap_q25'], 2)}, {fmt(t['gap_q75'], 2)}]",
                     "yes" if lags else "no", _shipped_says(shipped, t["scores"], lags),
                     *[fmt(t["scores"][s], 3) for s in _advisor.SCORES]])
    pair_md = md_table(["pair", "source", "params", "SGD final loss", "Adam final loss", "gap [IQR]", "SGD lags",
                        "shipped advice", *_advisor.SCORES], rows)
    numbers: dict[str, Any] = {"pairs": table, "calibration": cal}
    rule = (f"Rule: holds if some score reaches Spearman ≥ {TARGET_RHO} with the gap over ≥ {MIN_PAIRS} pairs and its "
            "95% bootstrap interval excludes 0; holds qualitatively if the best score is predictive (interval "
            "excludes 0 in the papers' direction and its leave-one-pair-out threshold beats the majority baseline); "
            "otherwise does not hold. The best of 11 scores is selected after the fact, so its ρ is optimistic; the "
            "leave-one-out accuracy is the honest number.")
    want = {(p, o) for p in PAIRS for o in OPTIMIZERS}
    have = {(r["hparams"]["pair"], r["hparams"]["optimizer"]) for r in runs.values()
            if r.get("hparams", {}).get("measure") == "train" and r.get("status") in ("finished", "diverged")}
    missing = sorted(f"{p}/{o}" for p, o in want - have) + sorted(set(PAIRS) - set(table))
    if cal is None or len(table) < MIN_PAIRS or missing:
        return make_findings(pair_md, "incomplete", f"{len(table)} pairs complete; missing {missing[:8]}. " + rule,
                             numbers)
    score_rows = []
    for s, e in cal["per_score"].items():
        score_rows.append([s, str(e["n"]), fmt(e["spearman"], 2), f"[{fmt(e['ci95'][0], 2)}, {fmt(e['ci95'][1], 2)}]",
                           "+" if e["expected_sign"] > 0 else "−",
                           f"{'>' if e.get('sign', 1) > 0 else '<'} {fmt(e.get('threshold'), 3)}" if "threshold" in e
                           else "—", fmt(e.get("loo_accuracy"), 2), ", ".join(e.get("loo_wrong", [])) or "—"])
    corr_md = md_table(["score", "pairs", "Spearman ρ", "95% CI", "papers' sign", "fitted rule (SGD lags if)",
                        "LOO accuracy", "LOO misclassified"], score_rows)
    nets = {p: t for p, t in table.items() if PAIRS.get(p, {}).get("run") != "quadratic"}
    sub = _advisor.calibrate(nets) if len(nets) >= 4 else None
    numbers["networks_only"] = sub
    if sub is not None:
        corr_md += (f"\n\nNetworks only ({len(nets)} pairs, no quadratics; does a score rank the networks, not just tell "
                    "quadratics from networks?):\n\n" + md_table(
                        ["score", "pairs", "Spearman ρ", "95% CI", "LOO accuracy"],
                        [[k, str(v["n"]), fmt(v["spearman"], 2), f"[{fmt(v['ci95'][0], 2)}, {fmt(v['ci95'][1], 2)}]",
                          fmt(v.get("loo_accuracy"), 2)] for k, v in sub["per_score"].items()])
                    + f"\n\nBaseline leave-one-out accuracy {fmt(sub['baseline_loo_accuracy'], 2)}; {sub['why']}.")
    best = cal["best"]
    e = cal["per_score"][best]
    extra = (f"\n\nBaseline (predict the other pairs' majority): leave-one-out accuracy "
             f"{fmt(cal['baseline_loo_accuracy'], 2)}. The papers' rule (report thresholds, ≥ 2 of 4 votes, nothing "
             f"fitted): accuracy {fmt(cal['paper_rule']['accuracy'], 2)}."
             + (f" Combined rank score: leave-one-out ρ {fmt(cal['combined']['loo_spearman'], 2)}, accuracy "
                f"{fmt(cal['combined']['loo_accuracy'], 2)} ({'kept' if cal['combined']['kept'] else 'not better than the best single score: left out'})."
                if cal["combined"] else ""))
    top = max(cal["per_score"].values(), key=lambda v: np.nan_to_num(v["spearman"] * v["expected_sign"], nan=-9))
    strong = [s for s, v in cal["per_score"].items()
              if v["n"] >= MIN_PAIRS and v["spearman"] * v["expected_sign"] >= TARGET_RHO
              and (v["ci95"][0] > 0 if v["expected_sign"] > 0 else v["ci95"][1] < 0)]
    if strong:
        verdict = "holds"
    elif cal["predictive"]:
        verdict = "holds qualitatively"
    else:
        verdict = "does not hold at this scale"
    reason = (rule + f" Best by leave-one-out: {best} (ρ {fmt(e['spearman'], 2)}, LOO accuracy "
              f"{fmt(e['loo_accuracy'], 2)}); largest ρ in the papers' direction: "
              f"{fmt(top['spearman'] * top['expected_sign'], 2)}. {cal['why']}.")
    return make_findings(pair_md + "\n\n" + corr_md + extra, verdict, reason, numbers)
