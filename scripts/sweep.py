#!/usr/bin/env python
"""Thin wrapper around ``heterogeneity sweep`` (same flags), with ``--out`` defaulting to results/<config stem>.

    python scripts/sweep.py --config configs/quadratic_cases.py --out results/quadratic_cases
    python scripts/sweep.py --config configs/rotated_quadratic.py --scale gpu --best-over lr
    python scripts/sweep.py --config configs/nanogpt_char.py --smoke      # a few steps, tiny sizes
    python scripts/sweep.py --config configs/quadratic_cases.py --only seed=0 --set steps=500 --shard 0/4

Prefer ``heterogeneity sweep ...`` (``heterogeneity sweep --help`` lists the flags). Bad input
exits with the error message (``SystemExit``); otherwise the exit code is the command's (0 ok,
1 some point failed).
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    from heterogeneity import cli
    from heterogeneity.experiment._cli import sweep_from_cli

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = cli.build_parser().parse_args(["sweep", "--out", "", *argv])
    except cli.UsageError as e:
        raise SystemExit(f"sweep: error: {e}") from None
    if not args.out:
        args.out = str(ROOT / "results" / (Path(args.config).stem + ("_smoke" if args.smoke else "")))
    try:
        return sweep_from_cli(args)
    except ValueError as e:
        raise SystemExit(f"sweep: error: {' '.join(str(e).split())}") from None


if __name__ == "__main__":
    sys.exit(main())
