"""`heterogeneity` console entry point.

    heterogeneity report [--model gpt | --model mypkg.mymodule:build] [--data shakespeare] [--checkpoint params.npz]
                         [--partition leaf] [--blocks all | weights] [--out report/]
    heterogeneity sweep --config configs/quadratic_cases.py --out results/quadratic_cases [--shard 0/4]
    heterogeneity plot results/quadratic_cases
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
    rep.add_argument("--model", default="gpt",
                     help="gpt | transformer | vit | mixer | mlp | cnn (default: gpt), or your own model as "
                          "package.module:function, a function of no arguments returning (loss_fn, params, batch) "
                          "(heterogeneity.experiment.ReportInputs; the current directory is searched first)"),
    rep.add_argument("--data", default=None,
                     help="shakespeare | digits | synthetic | PATH to a text file (default: the model's natural data)")
    rep.add_argument("--norm", default=None, choices=["pre", "post", "none"],
                     help="LN placement of the built-in transformers (default: pre)")
    rep.add_argument("--checkpoint", default=None, help=".npz parameter checkpoint (default: initial params)")
    rep.add_argument("--partition", default="leaf", choices=["leaf", "role", "layer"],
                     help="parameter blocks (heterogeneity.partition.from_name): leaf = one per tensor as in the "
                          "papers (default), role = per layer and role, layer = per repeated layer")
    rep.add_argument("--blocks", default="all", choices=["all", "weights"],
                     help="blocks behind the headline Gini, JS0 and verdict: all (default) or weights = kernels and "
                          "embeddings only, no bias or norm blocks, as [Zhang24, App. D.1]; report.md shows both")
    rep.add_argument("--out", default=None,
                     help="output directory (default: ./report, or ./report-quick with --quick)")
    rep.add_argument("--seed", type=int, default=0)
    rep.add_argument("--batch-size", type=int, default=None, help="examples in the (full) batch")
    rep.add_argument("--microbatches", type=int, default=1, help="split the batch into this many micro-batches")
    rep.add_argument("--slq-steps", type=int, default=None, help="Lanczos steps per block (default: preset)")
    rep.add_argument("--slq-probes", type=int, default=None,
                     help="SLQ probes per block (default 2; [Zhang24] uses 10)")
    rep.add_argument("--l11-probes", type=int, default=None, help="Cauchy probes for the (1,1)-norm sketch")
    rep.add_argument("--quick", action="store_true",
                     help="tiny model and few probes (a smoke run, ~40 s; writes ./report-quick unless --out, and "
                          "never over a full report)")
    rep.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_compile_cache(rep)

    sw = sub.add_parser("sweep", help="run (or resume) a sweep from a config module",
                        description="Run or resume a sweep. Exit code 0: every selected point done; 1: some point "
                                    "failed (see runs/<id>.json); 2: bad input (nothing written); 130: interrupted.")
    sw.add_argument("--config", required=True, help="path to a configs/*.py module")
    sw.add_argument("--out", required=True, help="output directory; finished runs there are not redone; several "
                                                 "processes may share it (each point is claimed by one)")
    sw.add_argument("--scale", default="laptop", choices=["laptop", "gpu", "accelerator"])
    sw.add_argument("--smoke", action="store_true", help="a few steps per run and a reduced grid, to check a config")
    sw.add_argument("--only", action="append", default=[], metavar="KEY=VALUE",
                    help="run only points with hparams[KEY] == VALUE (JSON, or a plain string); repeatable")
    sw.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                    help="override a hyperparameter in every point that has it (JSON, or a plain string); repeatable")
    sw.add_argument("--shard", default=None, metavar="I/N",
                    help="run only the I-th of N contiguous slices of the selected points (0 <= I < N), e.g. "
                         "--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT")
    sw.add_argument("--no-batch", action="store_true",
                    help="run every point on its own (default: points differing only in numbers share one program)")
    sw.add_argument("--max-batch", type=int, default=64, metavar="M", help="at most M points per batch (default 64)")
    sw.add_argument("--lock-timeout", type=_positive_float, default=900.0, metavar="SECONDS",
                    help="a point's lock without a heartbeat for this long is stale and taken over (default 900)")
    sw.add_argument("--checkpoint-every", type=int, default=None, metavar="K",
                    help="make every point resumable: it runs on its own and checkpoints every K steps into "
                         "OUT/train/<run id>, so a killed sweep continues each point where it stopped")
    sw.add_argument("--no-resume", action="store_true", help="rerun every selected point, overwriting its record")
    sw.add_argument("--no-retry-failed", action="store_true", help="on resume, keep runs recorded as failed")
    sw.add_argument("--metric", default=None, help="metric of the printed table (default: the config's)")
    sw.add_argument("--best-over", default=None, metavar="AXIS",
                    help="reduce the printed table to the best value of this axis (e.g. lr)")
    sw.add_argument("--higher-is-better", action="store_true", help="with --best-over: maximise the metric")
    sw.add_argument("--quiet", action="store_true", help="no per-run progress lines")
    _add_compile_cache(sw)

    pl = sub.add_parser("plot", help="training curves, learning-rate sensitivity and best-lr table of a sweep")
    pl.add_argument("out_dir", metavar="OUT_DIR", help="a sweep's output directory (figures go to OUT_DIR/plots)")
    pl.add_argument("--curve", default="loss", metavar="NAME",
                    help="history entry drawn as the training curve (default: loss)")
    pl.add_argument("--select", default="final_loss", metavar="METRIC",
                    help="final metric that picks the best learning rate (default: final_loss, the final training "
                         "loss)")

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
    """Run one command; return the exit code (0 ok, 1 a sweep point failed, 2 bad input, 130 interrupted)."""
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
            from heterogeneity.experiment._cli import sweep_from_cli

            return sweep_from_cli(args)
        elif args.command == "plot":
            from heterogeneity.experiment._cli import plot_from_cli

            return plot_from_cli(args)
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
