"""Bridges from `heterogeneity.cli` arguments to the experiment functions."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax

from heterogeneity.experiment._report import ReportSettings, report
from heterogeneity.experiment._setup import make_partition, setup

__all__ = ["report_from_cli", "sweep_from_cli"]

QUICK = ReportSettings(slq_steps=16, slq_probes=2, top_steps=12, l11_probes=20)


def report_from_cli(args: argparse.Namespace) -> dict:
    """`heterogeneity report ...`: build the setup, run the report, print where it went."""
    s = setup(args.model, args.data, norm=args.norm, seed=args.seed, batch_size=args.batch_size,
              microbatches=args.microbatches, checkpoint=args.checkpoint, quick=args.quick)
    base = QUICK if args.quick else ReportSettings()
    settings = base._replace(**{k: v for k, v in (("slq_steps", args.slq_steps), ("slq_probes", args.slq_probes),
                                                  ("l11_probes", args.l11_probes)) if v is not None})
    result = report(s.loss_fn, s.params, s.batch, partition=make_partition(args.partition, s.params),
                    out_dir=args.out, key=jax.random.key(args.seed), settings=settings,
                    attention_fn=s.attention_fn, attention_mask=s.attention_mask, meta=s.meta,
                    progress=not args.no_progress)
    out = Path(args.out)
    print(f"report written to {out}/report.md, {out}/report.json and 4 figures")
    print(f"verdict: {result['interpretation']['advice']}")
    print(json.dumps(result["interpretation"]["findings"], indent=1))
    return result


def sweep_from_cli(args: argparse.Namespace):
    """`heterogeneity sweep ...`: run or resume a sweep from a config module."""
    from heterogeneity.experiment._sweep import run_sweep_from_path

    return run_sweep_from_path(args.config, args.out, scale=args.scale, smoke=args.smoke)
