"""Experiment configs: one module per experiment, each exposing ``CONFIG`` (a `SweepConfig`).

Run one with ``python scripts/sweep.py --config configs/<name>.py [--scale laptop|gpu] [--smoke]``
(or ``heterogeneity sweep --config ... --out ...``); `tests/test_configs.py` imports and
smoke-runs every module here.
"""
