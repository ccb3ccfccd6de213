"""Experiment configs: one module per experiment of the four papers, each exposing ``CONFIG`` (a `SweepConfig`).

An experiment module also defines ``PAPER`` (the claim it tests, with its source) and
``findings(runs)`` (our numbers beside the paper's and a verdict computed from them;
`configs._findings`). ``python scripts/reproduce.py NAME`` runs one and reports it (EXPERIMENTS.md);
``heterogeneity sweep --config configs/<name>.py --out DIR [--scale gpu] [--smoke]`` runs the
sweep alone. Shared pieces: `configs._runs` (classifier and char-LM runs), `configs._spectra`
(JS⁰ over a block selection). `tests/test_configs.py` imports and smoke-runs every module here.
"""
