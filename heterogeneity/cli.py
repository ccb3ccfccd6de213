"""`heterogeneity` console entry point.

    heterogeneity report [--model gpt] [--data shakespeare] [--checkpoint params.npz] [--out report/]
    heterogeneity sweep --config configs/quadratic_cases.py --out results/quadratic_cases
    heterogeneity selftest [--quick] [--timeout 120]

With no options, `report` runs on the embedded default (a small GPT on the shipped
Shakespeare corpus), which is the README's main job. Bad arguments are reported as one line
``heterogeneity <command>: error: ...`` with exit code 2 before any work starts; Ctrl-C exits
with one line and code 130 (an interrupted report leaves no output behind).
"""
from __future__ import annotations

import argparse
import sys

__all__ = ["main", "build_parser"]


class UsageError(Exception):
    """An argparse error, raised instead of printing usage and exiting (``main`` prints one line)."""

    def __init__(self, prog: str, message: str):
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(self.prog, message)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="heterogeneity", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    rep = sub.add_parser("report", help="gradient heterogeneity, blockwise spectra, JS0, Lambda, l_inf geometry")
    rep.add_argument("--model", default="gpt", help="gpt | transformer | vit | mixer | mlp | cnn (default: gpt)")
    rep.add_argument("--data", default=None,
                     help="shakespeare | digits | synthetic | PATH to a text file (default: the model's natural data)")
    rep.add_argument("--norm", default="pre", choices=["pre", "post", "none"], help="LN placement of transformers")
    rep.add_argument("--checkpoint", default=None, help=".npz parameter checkpoint (default: initial params)")
    rep.add_argument("--partition", default="leaf", choices=["leaf", "role", "layer"],
                     help="parameter blocks: one per tensor as in the papers (default), by role, or by layer")
    rep.add_argument("--out", default="report", help="output directory (default: ./report)")
    rep.add_argument("--seed", type=int, default=0)
    rep.add_argument("--batch-size", type=int, default=None, help="examples in the (full) batch")
    rep.add_argument("--microbatches", type=int, default=1, help="split the batch into this many micro-batches")
    rep.add_argument("--slq-steps", type=int, default=None, help="Lanczos steps per block (default: preset)")
    rep.add_argument("--slq-probes", type=int, default=None,
                     help="SLQ probes per block (default 2; seed 001 uses 10)")
    rep.add_argument("--l11-probes", type=int, default=None, help="Cauchy probes for the (1,1)-norm sketch")
    rep.add_argument("--quick", action="store_true", help="tiny model and few probes (a smoke run, ~1 minute)")
    rep.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_compile_cache(rep)

    sw = sub.add_parser("sweep", help="run (or resume) a sweep from a config module")
    sw.add_argument("--config", required=True, help="path to a configs/*.py module")
    sw.add_argument("--out", required=True, help="output directory; finished runs there are not redone")
    sw.add_argument("--scale", default="laptop", choices=["laptop", "gpu"])
    sw.add_argument("--smoke", action="store_true", help="a few steps per run, to check a config")
    _add_compile_cache(sw)

    st = sub.add_parser("selftest", help="check this JAX backend's numerics the report relies on")
    st.add_argument("--quick", action="store_true", help="skip the slow checks")
    st.add_argument("--timeout", type=_positive_float, default=120.0, metavar="SECONDS",
                    help="limit for the checks run in a subprocess (default: 120)")
    return parser


def _add_compile_cache(parser) -> None:
    parser.add_argument("--compile-cache", default=None, metavar="DIR",
                        help="JAX's persistent compilation cache in DIR: a rerun with the same shapes skips the "
                             "XLA compiles that took >= 1 s (only this command; the library never sets it)")


def _use_compile_cache(path: str | None) -> None:
    if path is None:
        return
    import os

    import jax

    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"--compile-cache {path!r} exists and is not a directory")
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", os.path.abspath(path))


def main(argv: list[str] | None = None) -> int:
    """Run one command; return the exit code (0 ok, 2 bad input, 130 interrupted)."""
    try:
        args = build_parser().parse_args(argv)
    except UsageError as e:
        print(f"{e.prog}: error: {e}", file=sys.stderr)
        return 2
    try:
        _use_compile_cache(getattr(args, "compile_cache", None))
        if args.command == "report":
            from heterogeneity.experiment import report_from_cli

            report_from_cli(args)
        elif args.command == "sweep":
            from heterogeneity.experiment import sweep_from_cli

            sweep_from_cli(args)
        elif args.command == "selftest":
            from heterogeneity.selftest import main as selftest_main

            return selftest_main(quick=args.quick, timeout=args.timeout)
    except KeyboardInterrupt:
        print(f"heterogeneity {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError) as e:  # bad input (CLIArgumentError is a ValueError); others keep tracebacks
        print(f"heterogeneity {args.command}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
