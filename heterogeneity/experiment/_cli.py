"""Bridges from `heterogeneity.cli` arguments to the experiment functions.

Every argument is checked before any work (no data read, no model built, no compile, no
folder made); a bad one raises `CLIArgumentError` naming the flag and the value. The report
is written into a hidden staging folder and moved into ``--out`` only when complete, so an
interrupted or failed run leaves nothing behind and never touches an existing ``--out``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import threading
from pathlib import Path

import jax

from heterogeneity.experiment._checkpoint import CheckpointError, check_checkpoint
from heterogeneity.experiment._report import ReportSettings, report
from heterogeneity.experiment._setup import (SETUPS, check_model_data, data_kind, default_batch_size, make_partition,
                                             setup)

__all__ = ["report_from_cli", "sweep_from_cli", "validate_report_args", "validate_sweep_args", "CLIArgumentError"]

QUICK = ReportSettings(slq_steps=16, slq_probes=2, top_steps=12, l11_probes=20)
POSITIVE_INTS = ("batch_size", "slq_steps", "slq_probes", "l11_probes")


class CLIArgumentError(ValueError):
    """A command-line argument that cannot work; the message names the flag and the value."""


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, int(n ** 0.5) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def _check_out(out: str) -> Path:
    if not out:
        raise CLIArgumentError("--out: must be a directory path, got ''")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise CLIArgumentError(f"--out {out}: exists and is not a directory")
    ancestor = path.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise CLIArgumentError(f"--out {out}: {ancestor} is not a directory")
    if not os.access(path if path.exists() else ancestor, os.W_OK | os.X_OK):
        raise CLIArgumentError(f"--out {out}: {path if path.exists() else ancestor} is not writable")
    return path


def validate_report_args(args: argparse.Namespace) -> int:
    """Check every `heterogeneity report` argument without doing any work; return the batch size."""
    for dest in POSITIVE_INTS:
        value = getattr(args, dest)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise CLIArgumentError(f"{_flag(dest)} {value}: must be an int >= 1")
    if isinstance(args.microbatches, bool) or not isinstance(args.microbatches, int):
        raise CLIArgumentError(f"--microbatches {args.microbatches!r}: must be an int >= 1")
    if args.model not in SETUPS:
        raise CLIArgumentError(f"--model: unknown model {args.model!r}; choose from {', '.join(sorted(SETUPS))}")
    if args.data is not None:
        try:
            data_kind(args.data)
        except FileNotFoundError as e:
            raise CLIArgumentError(f"--data {args.data}: no such file") from e
        except ValueError as e:
            raise CLIArgumentError(f"--data: {e}") from e
    try:
        check_model_data(args.model, args.data)
    except ValueError as e:
        raise CLIArgumentError(f"--model {args.model} with --data {args.data}: {e}") from e
    batch = args.batch_size or default_batch_size(args.model, args.quick)
    m = args.microbatches
    if m < 1 or batch % m:
        quick = " with --quick" if args.quick else ""
        where = "--batch-size" if args.batch_size else f"the {args.model} default{quick}"
        raise CLIArgumentError(f"--microbatches {m}: must be an int >= 1 that divides the batch size {batch} "
                               f"({where}): one of {', '.join(map(str, _divisors(batch)))}")
    if args.checkpoint is not None:
        try:
            check_checkpoint(args.checkpoint)
        except FileNotFoundError as e:
            raise CLIArgumentError(f"--checkpoint {args.checkpoint}: no such file (checkpoint not found)") from e
        except CheckpointError as e:
            raise CLIArgumentError(f"--checkpoint {args.checkpoint}: {e.reason}") from e
    _check_out(args.out)
    return batch


@contextlib.contextmanager
def _sigint_deferred():
    """Hold a Ctrl-C until the block is done (a rename must not be cut in two), then raise it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
    if caught:
        raise KeyboardInterrupt


@contextlib.contextmanager
def staged_dir(target: str | os.PathLike):
    """Yield a fresh hidden folder to write into; on success move its contents to ``target``.

    A missing ``target`` gets the whole folder renamed into place (one atomic rename); an
    existing one gets each file renamed in (atomic per file; its other files are kept). On
    any exception, Ctrl-C included, the staging folder and any parents made for it are
    removed and ``target`` is left as it was."""
    target = Path(target)
    pid = os.getpid()
    made: list[Path] = []
    tmp = target / f".report.tmp-{pid}" if target.is_dir() else target.parent / f".{target.name}.tmp-{pid}"
    try:
        try:
            for parent in reversed(target.absolute().parents):
                if not parent.exists():
                    parent.mkdir()
                    made.append(parent)
            if tmp.exists():  # a leftover of a killed run that had our pid
                shutil.rmtree(tmp)
            tmp.mkdir()
        except OSError as e:
            raise CLIArgumentError(f"--out {target}: cannot create {e.filename or tmp}: {e.strerror or e}") from e
        yield tmp
        with _sigint_deferred():
            if tmp.parent == target:
                for entry in sorted(tmp.iterdir()):
                    os.replace(entry, target / entry.name)
                tmp.rmdir()
            else:
                os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for parent in reversed(made):
            with contextlib.suppress(OSError):
                parent.rmdir()
        raise


def _close_progress_bars() -> None:
    """Erase progress bars an interrupt left open, so that the interrupt message stands alone."""
    try:
        from tqdm.std import tqdm
    except ImportError:
        return
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.leave = False
        bar.close()


def report_from_cli(args: argparse.Namespace) -> dict:
    """`heterogeneity report ...`: check the arguments, build the setup, run the report, print where it went."""
    validate_report_args(args)
    base = QUICK if args.quick else ReportSettings()
    settings = base._replace(**{k: v for k, v in (("slq_steps", args.slq_steps), ("slq_probes", args.slq_probes),
                                                  ("l11_probes", args.l11_probes)) if v is not None})
    out = Path(args.out)
    try:
        with staged_dir(out) as tmp:  # made first, so that an unusable --out fails before any work
            try:
                s = setup(args.model, args.data, norm=args.norm, seed=args.seed, batch_size=args.batch_size,
                          microbatches=args.microbatches, checkpoint=args.checkpoint, quick=args.quick)
            except CheckpointError as e:  # paths or shapes that do not fit this model
                raise CLIArgumentError(f"--checkpoint {args.checkpoint}: {e.reason} (--model {args.model}"
                                       f"{', --quick' if args.quick else ''})") from e
            result = report(s.loss_fn, s.params, s.batch, partition=make_partition(args.partition, s.params),
                            out_dir=tmp, key=jax.random.key(args.seed), settings=settings,
                            attention_fn=s.attention_fn, attention_mask=s.attention_mask, meta=s.meta,
                            progress=not args.no_progress)
    except KeyboardInterrupt:
        _close_progress_bars()
        raise
    print(f"report written to {out}/report.md, {out}/report.json and 4 figures")
    print(f"verdict: {result['interpretation']['advice']}")
    print(json.dumps(result["interpretation"]["findings"], indent=1))
    return result


def validate_sweep_args(args: argparse.Namespace) -> None:
    """Check `heterogeneity sweep` arguments: an existing ``.py`` config and a usable ``--out``."""
    if not args.config:
        raise CLIArgumentError("--config: must be a path to a configs/*.py module, got ''")
    config = Path(args.config)
    if not config.exists():
        raise CLIArgumentError(f"--config {args.config}: no such file")
    if not config.is_file() or config.suffix != ".py":
        raise CLIArgumentError(f"--config {args.config}: not a .py config module")
    _check_out(args.out)


def sweep_from_cli(args: argparse.Namespace):
    """`heterogeneity sweep ...`: run or resume a sweep from a config module."""
    validate_sweep_args(args)
    from heterogeneity.experiment._sweep import run_sweep_from_path

    return run_sweep_from_path(args.config, args.out, scale=args.scale, smoke=args.smoke)
