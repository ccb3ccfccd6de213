#!/usr/bin/env python
"""The advisor study: do the report's heterogeneity scores, measured at initialization, predict the SGD–Adam gap?

    python scripts/advisor_study.py                      # laptop scale: run (resumably), analyse, plot
    python scripts/advisor_study.py --findings-only      # re-analyse results/advisor_study without running
    python scripts/advisor_study.py --update --calibrate  # ... and write EXPERIMENTS.md and the report's calibration
    python scripts/advisor_study.py --pairs mlp_c1,cnn   # only these pairs (e.g. a pair added to PAIRS)
    python scripts/advisor_study.py --scale gpu

The pairs, the training protocol and the gap are defined in ``configs/advisor_study.py``; the
statistics in `heterogeneity.experiment._advisor`. The sweep runs through ``scripts/reproduce.py``'s
machinery (resumable; two processes never run a point twice), with JAX's persistent compilation
cache in ``OUT/.jax_cache`` so that the seeds of a pair share their compiled report programs.

Writes into ``OUT`` (default ``results/advisor_study``): ``findings.{md,json}`` (the per-pair table,
the Spearman table with bootstrap intervals, the leave-one-pair-out checks, the verdict),
``scatter.png`` (every score against the gap) and ``scatter_<score>.png``, ``calibration.json``.
``--update`` also writes the EXPERIMENTS.md section and copies the figures to
``docs/figures/advisor_study/``; ``--calibrate`` writes ``calibration.json`` into the package
(`heterogeneity.experiment._advisor.CALIBRATION_PATH`), which the report's advice reads. Neither
is done for a smoke run, a partial ``--pairs`` run or incomplete findings.

Exit status as ``reproduce.py``: 0 complete, 1 a point failed or the findings are incomplete, 2 bad usage.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import math
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "scripts"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

FIGURES = ROOT / "docs" / "figures" / "advisor_study"


def plot_scatter(table: dict, cal: dict, out: Path) -> list[Path]:
    """``scatter.png`` (one panel per score) and ``scatter_<score>.png``: median score over seeds (IQR bars)
    against the median gap (IQR bars), the "SGD lags" line and the fitted threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from heterogeneity.experiment._advisor import LAGS_GAP, SCORES

    names = list(cal["pairs"])
    fam = {p: p.split("_")[0] for p in names}
    colours = {f: plt.cm.tab10(i % 10) for i, f in enumerate(sorted(set(fam.values())))}

    def panel(ax, score):
        e = cal["per_score"][score]
        for p in names:
            t = table[p]
            x, (xl, xh) = t["scores"][score], t["score_iqr"][score]
            y = t["gap"]
            if not (math.isfinite(x) and math.isfinite(y)):
                continue
            ax.errorbar(x, y, xerr=[[max(x - xl, 0)], [max(xh - x, 0)]] if math.isfinite(xl) else None,
                        yerr=[[max(y - t["gap_q25"], 0)], [max(t["gap_q75"] - y, 0)]]
                        if math.isfinite(t["gap_q25"]) and math.isfinite(t["gap_q75"]) else None,
                        fmt="o", ms=4, color=colours[fam[p]], ecolor="0.7", lw=0.8)
            ax.annotate(p, (x, y), fontsize=6, xytext=(3, 2), textcoords="offset points")
        ax.axhline(LAGS_GAP, color="0.5", ls="--", lw=0.8)
        if "threshold" in e and math.isfinite(e["threshold"]):
            ax.axvline(e["threshold"], color="tab:red", ls=":", lw=0.8)
        lo, hi = e["ci95"]
        ax.set_title(f"{score}\nρ = {e['spearman']:.2f} [{lo:.2f}, {hi:.2f}], n = {e['n']}", fontsize=8)
        ax.set_xlabel(score, fontsize=7)
        ax.set_ylabel("gap log(L_SGD / L_Adam)", fontsize=7)
        ax.tick_params(labelsize=6)
        xs = np.asarray([table[p]["scores"][score] for p in names], float)
        xs = xs[np.isfinite(xs)]
        if xs.size and xs.min() > 0 and xs.max() / xs.min() > 100:
            ax.set_xscale("log")
        ax.set_yscale("symlog", linthresh=1.0)  # the quadratics' gaps (~35) would flatten the networks' (~1)

    out.mkdir(parents=True, exist_ok=True)
    written = []
    scores = list(SCORES)
    cols = 4
    rows = math.ceil(len(scores) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.4 * rows))
    for ax, score in zip(axes.ravel(), scores):
        panel(ax, score)
    for ax in axes.ravel()[len(scores):]:
        ax.axis("off")
    fig.suptitle("Advisor study: heterogeneity at initialization vs the SGD–Adam gap (dashed: SGD lags, gap > log 2; "
                 "dotted: fitted threshold)", fontsize=9)
    fig.tight_layout()
    written.append(out / "scatter.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)
    for score in scores:
        fig, ax = plt.subplots(figsize=(4.6, 3.6))
        panel(ax, score)
        fig.tight_layout()
        written.append(out / f"scatter_{score}.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="advisor_study.py", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="laptop", choices=["laptop", "gpu"])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: a plumbing check (never calibrates)")
    parser.add_argument("--findings-only", action="store_true", help="re-analyse OUT without running")
    parser.add_argument("--update", action="store_true", help="write the EXPERIMENTS.md section and its figures")
    parser.add_argument("--calibrate", action="store_true", help="write the report's calibration from this study")
    parser.add_argument("--pairs", help="comma-separated pairs of configs/advisor_study.PAIRS (default: all)")
    parser.add_argument("--out", type=Path, help="results directory (default results/advisor_study[_gpu][_smoke])")
    parser.add_argument("--no-compile-cache", action="store_true", help="do not use JAX's persistent compilation cache")
    args = parser.parse_args(argv)

    import reproduce
    from configs import advisor_study as study

    if args.pairs:
        chosen = [p.strip() for p in args.pairs.split(",") if p.strip()]
        unknown = [p for p in chosen if p not in study.PAIRS]
        if unknown or not chosen:
            print(f"advisor_study.py: unknown pair(s) {unknown}; choose from {', '.join(study.PAIRS)}", file=sys.stderr)
            return 2
        if args.smoke:
            print("advisor_study.py: --pairs and --smoke do not combine (the smoke grid is fixed)", file=sys.stderr)
            return 2
        study.CONFIG = dataclasses.replace(study.CONFIG, grid=study._grid(chosen, study.SEEDS))
    partial = bool(args.pairs) and set(args.pairs.split(",")) != set(study.PAIRS)
    out = args.out or reproduce.default_out("advisor_study", args.scale, args.smoke)
    if not args.no_compile_cache and not args.findings_only:
        import jax

        jax.config.update("jax_compilation_cache_dir", str(out / ".jax_cache"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    update_md = args.update and not (args.smoke or partial)
    status = reproduce.reproduce("advisor_study", study, scale=args.scale, smoke=args.smoke, out=out,
                                 run=not args.findings_only, update=update_md)
    from heterogeneity.experiment import atomic_write_json, read_json

    from heterogeneity.experiment._advisor import decode_numbers

    found = read_json(out / "findings.json")
    found["numbers"] = decode_numbers(found["numbers"])
    cal = found["numbers"].get("calibration")
    if cal is None:
        print(f"advisor_study.py: fewer than 4 complete pairs in {out}: no analysis, no figures")
        return status or 1
    figures = plot_scatter(found["numbers"]["pairs"], cal, out)
    nets = found["numbers"].get("networks_only")
    record = {**cal, "networks_only": None if nets is None else {
        "pairs": nets["pairs"], "baseline_loo_accuracy": nets["baseline_loo_accuracy"],
        "per_score": {k: {f: v.get(f) for f in ("n", "spearman", "ci95", "loo_accuracy")}
                      for k, v in nets["per_score"].items()}}, "study": {"command": found.get("command"), "scale": args.scale, "machine": found.get("machine"),
                               "date": found.get("date") or _dt.date.today().isoformat(),
                               "verdict": found["verdict"], "num_runs": found.get("num_runs"),
                               "reference": "[AdvisorStudy] EXPERIMENTS.md, section advisor_study"}}
    atomic_write_json(out / "calibration.json", record)
    complete = found["verdict"] != "incomplete" and not args.smoke and not partial
    if args.update and complete:
        FIGURES.mkdir(parents=True, exist_ok=True)
        for f in figures:
            shutil.copyfile(f, FIGURES / f.name)
        print(f"figures copied to {FIGURES}")
    if args.calibrate:
        if not complete:
            print("advisor_study.py: --calibrate needs complete findings of the full laptop or gpu study; not written",
                  file=sys.stderr)
            return status or 1
        from heterogeneity.experiment._advisor import CALIBRATION_PATH

        atomic_write_json(CALIBRATION_PATH, record)
        print(f"calibration written to {CALIBRATION_PATH}")
    return status


if __name__ == "__main__":
    sys.exit(main())
