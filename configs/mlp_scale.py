"""[Zhang24, §2.4 Example 1, Fig. 5(a), App. D.3]: an MLP made heterogeneous by a layer scale c; SGD degrades, Adam does not.

Paper: a 4-layer ReLU MLP on MNIST (hidden widths 300, 128, 64; batch 128) whose every
layer's output is multiplied by ``c ∈ {1, …, 15}``; SGD and Adam (default hyperparameters)
with the learning rate grid-searched over 1e-4 … 1e-1, best test accuracy after one epoch.
Fig. 5(a): SGD's accuracy falls as c grows, Adam's stays (Fig. 14: training curves). No
numbers are printed; the figure's JS⁰ is not given for this model.

Ours (laptop scale): the same MLP (`heterogeneity.models.MLP`, ``output_scale=c``: every layer,
head included, computes ``c·(Wx + b)``) on the 8×8 digits (flat, pixels in [0, 1]), batch
128, 150 steps (~13 epochs of the 1,438 training digits: one epoch is 11 steps), c ∈ {1, 4, 8,
15}, lr ∈ {1e-4, 1e-3, 1e-2, 1e-1} for plain SGD and Adam (Optax defaults), 3 seeds.
Headline: the best validation accuracy (lr chosen on the median over seeds of the final
``eval_val_acc``, as the paper picks the best test accuracy). Alongside, at initialisation (a
``steps = 0`` point per c and seed, measured in ``summarize``): JS⁰ of the blockwise spectra
(`configs._spectra`: SLQ 30 steps × 2 probes on 128 examples; all three modes; selections
``all`` — [Zhang24, App. D.1] leaves out only normalisation layers and this MLP has none — and
``weights``; paper mode can turn NaN at large c, where the eigenvalues reach ~1e5: see findings).
gpu scale: 600 steps, SLQ 100 steps × 10 probes on 1024 examples.
"""
from __future__ import annotations

import functools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np

from configs import _runs, _spectra
from configs._findings import best_over, edge_note, findings as make_findings, fmt, groups, md_table, median_iqr
from heterogeneity import data
from heterogeneity.experiment._config import RunSpec, SweepConfig, make_optimizer

CS = [1, 4, 8, 15]
LRS = [1e-4, 1e-3, 1e-2, 1e-1]
SEEDS = [0, 1, 2]
OPTIMIZERS = ["sgd", "adam"]
SGD_DROP, ADAM_KEEP = 0.10, 0.05  # rule thresholds (accuracy points), see findings
PAPER = ("[Zhang24, §2.4, Fig. 5(a), App. D.3]: 4-layer MLP on MNIST with every layer scaled by c = 1..15; as c "
         "(the heterogeneity) grows SGD's best test accuracy falls while Adam's is unaffected (curves only).")


@functools.lru_cache(maxsize=16)
def _shared_loss(arch: str):
    """One ``loss_fn`` per architecture (c included), shared by the seeds: SLQ compiles once per loss_fn."""
    return _runs.classifier({**json.loads(arch), "seed": 0})[2]


def build(hp) -> RunSpec:
    if hp["measure"] == "train":
        return _runs.classifier_run(hp)
    _, params, _, ds = _runs.classifier(hp)
    loss_fn = _shared_loss(json.dumps({k: v for k, v in sorted(hp.items()) if k != "seed"}))
    train = jax.tree.map(jnp.asarray, ds.train)
    batch = data.sample_split(train, min(int(hp["slq_batch"]), int(train["y"].shape[0])), jax.random.key(int(hp["seed"])))

    def summarize(result):
        return _spectra.js0(loss_fn, params, batch, _spectra.probe_key(hp["seed"]), num_steps=int(hp["slq_steps"]),
                            num_probes=int(hp["slq_probes"]), group_by=hp["slq_group_by"])

    return RunSpec(loss_fn=loss_fn, params=params, optimizer=make_optimizer(hp, params), num_steps=int(hp["steps"]),
                   batches=batch, log_every=1, summarize=summarize,
                   extras={"num_params": int(sum(x.size for x in jax.tree.leaves(params)))})


CONFIG = SweepConfig(
    name="mlp_scale",
    description="[Zhang24, Fig. 5(a)]: MLP with every layer scaled by c on digits: SGD vs Adam accuracy and JS0 at init",
    build=build,
    base={"model": "mlp", "hidden": [300, 128, 64], "batch_size": 128, "steps": 150, "eval_every": 50,
          "log_every": 10, "slq_batch": 128, "slq_steps": 30, "slq_probes": 2, "slq_group_by": "module",
          "measure": "train"},
    grid=[
        {"scale_c": CS, "optimizer": OPTIMIZERS, "lr": LRS, "seed": SEEDS},
        {"scale_c": CS, "measure": ["js0"], "steps": [0], "optimizer": ["sgd"], "lr": [0.0], "seed": SEEDS},
    ],
    scales={"laptop": {}, "gpu": {"steps": 600, "eval_every": 100, "slq_batch": 1024, "slq_steps": 100,
                                  "slq_probes": 10, "slq_group_by": "module"}},
    smoke={"hidden": [8], "batch_size": 16, "steps": 3, "eval_every": 3, "log_every": 1, "slq_batch": 16,
           "slq_steps": 4, "slq_probes": 1},
    smoke_grid=[
        {"scale_c": [3], "optimizer": ["adam"], "lr": [1e-2], "seed": [0]},  # one training program: tests stay fast
        {"scale_c": [3], "measure": ["js0"], "steps": [2], "optimizer": ["sgd"], "lr": [0.0], "seed": [0]},
    ],
    metric="final_loss",
)


def _trend(xs, ys) -> float:
    """Spearman rank correlation of ``ys`` with ``xs`` (NaN if fewer than 3 finite pairs)."""
    pairs = [(x, y) for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
    if len(pairs) < 3:
        return float("nan")
    rx = np.argsort(np.argsort([p[0] for p in pairs]))
    ry = np.argsort(np.argsort([p[1] for p in pairs]))
    return float(np.corrcoef(rx, ry)[0, 1])


def _acc(x: float) -> str:
    return "diverged" if x == -math.inf else fmt(x)


JS_KEYS = [f"js0_{m}_{s}" for s in ("all", "weights") for m in _spectra.MODES]


def findings(runs):
    train = {k: r for k, r in runs.items() if r["hparams"].get("measure") == "train"}
    js = {k: r for k, r in runs.items() if r["hparams"].get("measure") == "js0"}
    # lr chosen on the validation error 1 − val_acc, lower is better, so that a diverged run counts as +inf
    err = {k: {**r, "final": {**r.get("final", {}), "val_err": 1.0 - float(r.get("final", {}).get("eval_val_acc", 0.0))}}
           for k, r in train.items()}
    acc = {key: {**cell, "median": 1.0 - cell["median"]}
           for key, cell in best_over(err, ["scale_c", "optimizer"], "val_err").items()}
    jsm = {c: {k: median_iqr([float(r["final"].get(k, np.nan)) for r in recs])[0] for k in JS_KEYS}
           for (c,), recs in groups(js, ["scale_c"]).items()}
    for (c,), recs in groups(js, ["scale_c"]).items():
        jsm[c]["n"] = len(recs)
    rows, numbers = [], {}
    for c in CS:
        a = {o: acc.get((c, o)) for o in OPTIMIZERS}
        j = jsm.get(c, {})
        numbers[f"c={c}"] = {**{f"{o}_val_acc": (a[o]["median"] if a[o] else None) for o in OPTIMIZERS},
                             **{f"{o}_lr": (a[o]["lr"] if a[o] else None) for o in OPTIMIZERS},
                             **{k: j.get(k) for k in JS_KEYS}}
        rows.append([str(c), *[f"{_acc(a[o]['median'])} (lr {fmt(a[o]['lr'])})" if a[o] else "—" for o in OPTIMIZERS],
                     fmt(a["adam"]["median"] - a["sgd"]["median"]) if a["adam"] and a["sgd"] else "—",
                     *[fmt(j.get(k)) for k in JS_KEYS]])
    table = md_table(["c", "SGD val acc", "Adam val acc", "Adam − SGD", *JS_KEYS], rows)
    rule = (f"Rule: best val accuracy per (c, optimizer), lr tuned on the median over {len(SEEDS)} seeds. holds: SGD "
            f"at c = {CS[-1]} is ≥ {SGD_DROP:g} below SGD at c = 1, Adam at c = {CS[-1]} within {ADAM_KEEP:g} of "
            "Adam at c = 1, and paper-mode JS⁰ (all blocks) is finite at every c and rises with it (Spearman > 0); holds "
            "qualitatively: the "
            "two accuracy conditions without the JS⁰ trend, or the Adam − SGD gap widening by ≥ "
            f"{SGD_DROP:g} with Adam degrading too; otherwise does not hold.")
    want_train = {(c, o) for c in CS for o in OPTIMIZERS}
    n_train = {(c, o): len([r for r in train.values() if r["hparams"]["scale_c"] == c
                            and r["hparams"]["optimizer"] == o and r.get("status") in ("finished", "diverged")])
               for c, o in want_train}
    missing = [f"c={c} {o}" for (c, o), n in sorted(n_train.items()) if n < len(LRS) * len(SEEDS)]
    missing += [f"c={c} js0" for c in CS if jsm.get(c, {}).get("n", 0) < len(SEEDS)]
    if missing:
        return make_findings(table, "incomplete", f"Missing points: {missing[:8]}. " + rule, numbers)
    s1, sC = acc[(1, "sgd")]["median"], acc[(CS[-1], "sgd")]["median"]
    a1, aC = acc[(1, "adam")]["median"], acc[(CS[-1], "adam")]["median"]
    sgd_drops, adam_keeps = s1 - sC >= SGD_DROP, a1 - aC <= ADAM_KEEP
    js_trend = {k: _trend(CS, [jsm[c][k] for c in CS]) for k in JS_KEYS}
    gap_grows = (aC - sC) - (a1 - s1) >= SGD_DROP
    numbers.update(sgd_drop=s1 - sC, adam_drop=a1 - aC, js0_spearman=js_trend)
    trend_txt = ", ".join(f"{k} {fmt(v, 2)}" for k, v in js_trend.items())
    facts = (f" SGD {_acc(s1)} → {_acc(sC)}, Adam {_acc(a1)} → {_acc(aC)} from c = 1 to {CS[-1]}; Spearman of JS⁰ "
             f"with c: {trend_txt}.")
    finite = [c for c in CS if math.isfinite(jsm[c]["js0_paper_all"])]
    if len(finite) < len(CS):
        facts += (f" Paper-mode JS⁰ is not finite at c = {[c for c in CS if c not in finite]} (the block eigenvalues grow "
                  "steeply with c, up to ~6e5 at c = 8 in a spot check, so the 50,000-point grid's spacing far exceeds "
                  "the fixed σ ≈ 3e-3 and the blurred densities vanish): no trend is claimed.")
    if sgd_drops and adam_keeps and len(finite) == len(CS) and js_trend["js0_paper_all"] > 0:
        verdict = "holds"
    elif (sgd_drops and adam_keeps) or gap_grows:
        verdict = "holds qualitatively"
    else:
        verdict = "does not hold at this scale"
    note = edge_note(acc)
    return make_findings(table, verdict, rule + facts + note, numbers)
