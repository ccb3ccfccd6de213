"""heterogeneity.experiment: the heterogeneity report, train loop, resumable sweeps and result files.

* `report` / `ReportSettings` / `setup`: every diagnostic on one model (``heterogeneity report``);
  `ReportInputs` / `user_setup`: the same on your own model (``--model package.module:build``).
* `atomic_write_json`, `read_json`: result files that are never half-written.
* `save_params`, `load_params`: ``.npz`` checkpoints keyed by parameter path.
* `train`: the one train loop (jitted step, divergence recorded, block statistics, simulated workers).
* `run_sweep` / `SweepConfig`: resumable sweeps; each finished run is one atomic JSON file.
"""
from heterogeneity.experiment._checkpoint import load_params, save_params
from heterogeneity.experiment._cli import report_from_cli, sweep_from_cli
from heterogeneity.experiment._config import (
    SCALES,
    RunSpec,
    SweepConfig,
    canonical_scale,
    make_optimizer,
    optimizer_kwargs,
    partition_from_spec,
    resolve,
    run_id,
)
from heterogeneity.experiment._report import THRESHOLDS, ReportSettings, interpret, render_markdown, report
from heterogeneity.experiment._setup import SETUPS, ReportInputs, Setup, make_partition, setup, user_setup
from heterogeneity.experiment._store import atomic_write_bytes, atomic_write_json, atomic_write_text, read_json, to_jsonable
from heterogeneity.experiment._sweep import (
    DONE_STATUSES,
    SweepResult,
    format_table,
    load_config,
    load_runs,
    run_one,
    run_sweep,
    run_sweep_from_path,
    summarize_runs,
    table_rows,
)
from heterogeneity.experiment._train import TrainResult, train

__all__ = [
    "report", "ReportSettings", "interpret", "render_markdown", "THRESHOLDS",
    "setup", "Setup", "SETUPS", "make_partition", "ReportInputs", "user_setup",
    "save_params", "load_params",
    "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "read_json", "to_jsonable",
    "report_from_cli", "sweep_from_cli",
    "train", "TrainResult",
    "SweepConfig", "RunSpec", "resolve", "run_id", "make_optimizer", "partition_from_spec", "optimizer_kwargs",
    "canonical_scale", "SCALES",
    "run_sweep", "run_one", "SweepResult", "load_runs", "summarize_runs", "table_rows", "format_table",
    "load_config", "run_sweep_from_path", "DONE_STATUSES",
]
