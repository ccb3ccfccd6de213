"""Recompute JS⁰ and the pairwise matrix (every mode) from the block spectra stored in a report.json.

    python scripts/js_from_report.py report/report.json [--rtol 1e-4]

Prints the recomputed JS⁰ next to the value stored in the report, and the largest relative
difference of the pairwise matrices; exits 1 when any mode differs by more than ``--rtol``
(the stored numbers do not reproduce on this machine's JAX). Running it under two JAX versions
on the same report compares their numerics on identical spectra (how BENCHMARKS.md measured the
jax 0.10.2 error).
"""
import argparse
import json
import sys

import jax
import numpy as np

from heterogeneity import curvature as hc
from heterogeneity import metrics as hm

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("report", nargs="?", default="report/report.json")
ap.add_argument("--rtol", type=float, default=1e-4, help="largest relative difference accepted (default 1e-4)")
args = ap.parse_args()

report = json.load(open(args.report))
labels = report["blocks"]["labels"]  # partition order; the JSON object itself is written key-sorted
spectra = {label: hc.Spectrum(np.asarray(report["spectra"][label]["nodes"], np.float32),
                              np.asarray(report["spectra"][label]["weights"], np.float32)) for label in labels}
failed = []
for mode, stored in report["js"].items():
    div = hm.spectrum_divergence(spectra, mode=mode)
    assert list(div.labels) == stored["labels"], "block order differs from the report's"
    got, want = float(div.mean), float(stored["js0"])
    matrix, stored_matrix = np.asarray(div.matrix, np.float64), np.asarray(stored["matrix"], np.float64)
    scale = max(np.abs(stored_matrix).max(), 1e-30)
    err = max(abs(got - want) / max(abs(want), 1e-30), np.abs(matrix - stored_matrix).max() / scale)
    ok = err <= args.rtol
    failed += [] if ok else [mode]
    print(f"jax {jax.__version__}  JS0 {mode:<16} recomputed {got:.6g}  stored {want:.6g}  "
          f"max rel diff {err:.2e}  {'ok' if ok else 'MISMATCH'}")
if failed:
    sys.exit(f"stored JS numbers do not reproduce here (rtol {args.rtol:g}): {', '.join(failed)}")
