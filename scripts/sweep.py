#!/usr/bin/env python
"""Run (or resume) one experiment sweep and print its result table.

    python scripts/sweep.py --config configs/quadratic_cases.py --out results/quadratic_cases
    python scripts/sweep.py --config configs/rotated_quadratic.py --scale gpu --best-over lr
    python scripts/sweep.py --config configs/nanogpt_char.py --smoke      # a few steps, tiny sizes
    python scripts/sweep.py --config configs/quadratic_cases.py --only seed=0 --best-over lr

Resumable: rerunning the same command skips finished runs (see
`heterogeneity.experiment.run_sweep`); results are in ``OUT/runs/*.json`` and ``OUT/summary.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _filters(items):
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise SystemExit(f"--only expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="path to a configs/*.py module")
    ap.add_argument("--out", help="result directory (default results/<config file stem>[_smoke])")
    ap.add_argument("--scale", default="laptop", help="laptop | gpu (alias: accelerator)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, a few steps, reduced grid")
    ap.add_argument("--no-resume", action="store_true", help="rerun every point, overwriting records")
    ap.add_argument("--no-retry-failed", action="store_true", help="on resume, keep runs recorded as failed")
    ap.add_argument("--only", action="append", default=[], metavar="KEY=VALUE",
                    help="run only points with hparams[KEY] == VALUE (JSON, or a plain string); repeatable")
    ap.add_argument("--metric", help="metric of the table (default: the config's)")
    ap.add_argument("--best-over", help="reduce the table to the best value of this axis (e.g. lr)")
    ap.add_argument("--higher-is-better", action="store_true", help="with --best-over: maximise the metric")
    ap.add_argument("--quiet", action="store_true", help="no per-run progress lines")
    args = ap.parse_args(argv)
    filters = _filters(args.only)

    from heterogeneity.experiment._sweep import run_sweep_from_path

    out = Path(args.out) if args.out else ROOT / "results" / (Path(args.config).stem + ("_smoke" if args.smoke else ""))
    quiet_log = lambda line: None if line.startswith("[") else print(line)  # noqa: E731
    try:
        result = run_sweep_from_path(
            args.config, out, scale=args.scale, smoke=args.smoke, resume=not args.no_resume,
            retry_failed=not args.no_retry_failed, best_over=args.best_over, metric=args.metric,
            lower_is_better=not args.higher_is_better, log=quiet_log if args.quiet else print,
            only=(lambda hp: all(hp.get(k) == v for k, v in filters.items())) if filters else None)
    except ValueError as e:
        raise SystemExit(f"sweep: error: {e}") from None
    return 0 if result.summary["counts"]["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
