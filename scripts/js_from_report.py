"""Recompute JS⁰ (every mode) from the block spectra stored in a report.json, on this machine's JAX.

    python scripts/js_from_report.py report/report.json

Prints the recomputed JS⁰ next to the value stored in the report. Running it under two JAX versions
on the same report compares their numerics on identical spectra (how BENCHMARKS.md measured the jax
0.10.2 error).
"""
import json
import sys

import jax
import numpy as np

from heterogeneity import curvature as hc
from heterogeneity import metrics as hm

report = json.load(open(sys.argv[1] if len(sys.argv) > 1 else "report/report.json"))
spectra = {label: hc.Spectrum(np.asarray(s["nodes"], np.float32), np.asarray(s["weights"], np.float32))
           for label, s in report["spectra"].items()}
for mode, stored in report["js"].items():
    got = float(hm.spectrum_divergence(spectra, mode=mode).mean)
    print(f"jax {jax.__version__}  JS0 {mode:<16} recomputed {got:.6g}  stored {stored['js0']:.6g}")
