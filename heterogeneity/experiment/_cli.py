"""Bridges from `heterogeneity.cli` arguments to the experiment functions.

Every argument is checked before any work (no data read, no model built, no compile, no
folder made); a bad one raises `CLIArgumentError` naming the flag and the value. The report
is written into a hidden staging folder and moved into ``--out`` only when complete, so an
interrupted or failed run leaves nothing behind and never touches an existing ``--out``. A
``--quick`` smoke run defaults to ``./report-quick`` and refuses an ``--out`` that holds a
report not made by ``--quick`` (it would replace a real one). ``--model package.module:function``
reports on the user's own model (`heterogeneity.experiment._setup.ReportInputs` is the protocol);
``--partition`` names go through `heterogeneity.partition.from_name`, as the configs' do.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import threading
from pathlib import Path

import jax

from heterogeneity import partition as hp
from heterogeneity.experiment._checkpoint import CheckpointError, check_checkpoint
from heterogeneity.experiment._report import ReportSettings, report
from heterogeneity.experiment._setup import (SETUPS, check_model_data, data_kind, default_batch_size, is_user_model,
                                             load_builder, setup, user_setup)
from heterogeneity.experiment._store import read_json

__all__ = ["report_from_cli", "sweep_from_cli", "plot_from_cli", "validate_report_args", "validate_sweep_args",
           "CLIArgumentError"]

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


def validate_report_args(args: argparse.Namespace) -> int | None:
    """Check every `heterogeneity report` argument without doing any work; return the batch size
    (None for a user's ``--model package.module:function``, whose module is imported but not called)."""
    if args.out is None:  # a smoke run never lands on (or replaces) a real report
        args.out = "report-quick" if args.quick else "report"
    for dest in POSITIVE_INTS:
        value = getattr(args, dest)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise CLIArgumentError(f"{_flag(dest)} {value}: must be an int >= 1")
    if isinstance(args.microbatches, bool) or not isinstance(args.microbatches, int):
        raise CLIArgumentError(f"--microbatches {args.microbatches!r}: must be an int >= 1")
    if is_user_model(args.model):
        return _validate_user_model(args)
    if args.model not in SETUPS:
        raise CLIArgumentError(f"--model: unknown model {args.model!r}; choose from {', '.join(sorted(SETUPS))} "
                               "or give your own as package.module:function")
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
    _check_checkpoint_arg(args)
    _check_out_for(args)
    return batch


def _check_checkpoint_arg(args) -> None:
    if args.checkpoint is not None:
        try:
            check_checkpoint(args.checkpoint)
        except FileNotFoundError as e:
            raise CLIArgumentError(f"--checkpoint {args.checkpoint}: no such file (checkpoint not found)") from e
        except CheckpointError as e:
            raise CLIArgumentError(f"--checkpoint {args.checkpoint}: {e.reason}") from e


def _validate_user_model(args: argparse.Namespace) -> None:  # no batch size: the builder decides
    """``--model package.module:function``: import it (nothing is called yet) and refuse the flags that
    only the built-in setups use."""
    for flag, value in (("--data", args.data), ("--batch-size", args.batch_size), ("--norm", args.norm)):
        if value is not None:
            raise CLIArgumentError(f"{flag} {value}: only for the built-in models; {args.model} supplies its own "
                                   "batch and model")
    if args.microbatches < 1:
        raise CLIArgumentError(f"--microbatches {args.microbatches}: must be an int >= 1")
    try:
        load_builder(args.model)
    except ValueError as e:
        raise CLIArgumentError(f"--model {args.model}: {e}") from None
    _check_checkpoint_arg(args)
    _check_out_for(args)
    return None


def _check_out_for(args: argparse.Namespace) -> Path:
    """``--out`` must be usable; a ``--quick`` run must not land on a full report (it would replace it)."""
    path = _check_out(args.out)
    existing = path / "report.json"
    if args.quick and existing.exists():
        try:
            quick = read_json(existing).get("meta", {}).get("quick") is True
        except (ValueError, OSError, AttributeError):
            quick = False
        if not quick:
            raise CLIArgumentError(f"--out {args.out}: holds a report that is not from a --quick run; a --quick "
                                   "smoke run never replaces it (choose another --out, e.g. the default "
                                   "./report-quick)")
    return path


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
                if is_user_model(args.model):
                    s = user_setup(args.model, microbatches=args.microbatches, checkpoint=args.checkpoint,
                                   seed=args.seed)
                else:
                    s = setup(args.model, args.data, norm=args.norm or "pre", seed=args.seed,
                              batch_size=args.batch_size, microbatches=args.microbatches, checkpoint=args.checkpoint,
                              quick=args.quick)
            except CheckpointError as e:  # paths or shapes that do not fit this model
                raise CLIArgumentError(f"--checkpoint {args.checkpoint}: {e.reason} (--model {args.model}"
                                       f"{', --quick' if args.quick else ''})") from e
            result = report(s.loss_fn, s.params, s.batch, partition=hp.from_name(args.partition),
                            out_dir=tmp, key=jax.random.key(args.seed), settings=settings,
                            attention_fn=s.attention_fn, attention_mask=s.attention_mask,
                            meta={**s.meta, "quick": bool(args.quick)}, progress=not args.no_progress,
                            blocks=getattr(args, "blocks", "all"))
    except KeyboardInterrupt:
        _close_progress_bars()
        raise
    print(f"report written to {out}/report.md, {out}/report.json and 4 figures")
    print(f"verdict: {result['interpretation']['advice']}")
    print(json.dumps(result["interpretation"]["findings"], indent=1))
    return result


def _key_values(flag: str, items) -> dict:
    """``KEY=VALUE`` strings to a dict; VALUE is parsed as JSON, else kept as a plain string."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise CLIArgumentError(f"{flag} {item}: expected KEY=VALUE")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def _shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    i, sep, n = text.partition("/")
    try:
        shard = (int(i), int(n))
    except ValueError:
        shard = None
    if not sep or shard is None or not 0 <= shard[0] < shard[1]:
        raise CLIArgumentError(f"--shard {text}: expected I/N with integers 0 <= I < N")
    return shard


def validate_sweep_args(args: argparse.Namespace) -> dict:
    """Check every `heterogeneity sweep` argument before any work; return the `run_sweep` keyword arguments.

    Checked: the config file (it must import and define ``CONFIG``), ``--out``, ``--only`` /
    ``--set`` syntax and keys, ``--shard``, ``--max-batch``, and every selected grid point's
    names and hyperparameters (`validate_points`). Nothing is written.
    """
    from heterogeneity.experiment._config import (canonical_scale, check_overrides, grid_keys, resolve,
                                                  unknown_hyperparameter, validate_points)
    from heterogeneity.experiment._sweep import load_config

    if not args.config:
        raise CLIArgumentError("--config: must be a path to a configs/*.py module, got ''")
    config_path = Path(args.config)
    if not config_path.exists():
        raise CLIArgumentError(f"--config {args.config}: no such file")
    if not config_path.is_file() or config_path.suffix != ".py":
        raise CLIArgumentError(f"--config {args.config}: not a .py config module")
    _check_out(args.out)
    only = _key_values("--only", getattr(args, "only", []) or [])
    overrides = _key_values("--set", getattr(args, "overrides", []) or [])
    shard = _shard(getattr(args, "shard", None))
    max_batch = getattr(args, "max_batch", 64)
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise CLIArgumentError(f"--max-batch {max_batch}: must be an int >= 1")
    checkpoint_every = getattr(args, "checkpoint_every", None)
    if checkpoint_every is not None and (isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int)
                                         or checkpoint_every < 1):
        raise CLIArgumentError(f"--checkpoint-every {checkpoint_every}: must be an int >= 1")
    try:
        config = load_config(config_path)
    except ValueError as e:
        raise CLIArgumentError(f"--config {args.config}: {e}") from None
    scale = canonical_scale(args.scale)
    check_overrides(config, overrides, scale=scale, smoke=args.smoke)
    points = resolve(config, scale=scale, smoke=args.smoke, overrides=overrides)
    validate_points(config, points)
    keys = grid_keys(points)
    for key, value in only.items():
        if key not in keys:
            raise CLIArgumentError(unknown_hyperparameter("--only", key, value, config.name, keys))
    match = (lambda hp: all(k in hp and hp[k] == v for k, v in only.items())) if only else None
    if match is not None and not any(match(hp) for hp in points):
        shown = " ".join(f"{k}={json.dumps(v)}" for k, v in only.items())
        raise CLIArgumentError(f"--only {shown}: no grid point of {config.name} matches ({len(points)} points)")
    return dict(config=config, scale=scale, smoke=args.smoke, only=match, overrides=overrides, shard=shard,
                batch=not getattr(args, "no_batch", False), max_batch=max_batch,
                lock_timeout=getattr(args, "lock_timeout", 900.0), checkpoint_every=checkpoint_every,
                resume=not getattr(args, "no_resume", False),
                retry_failed=not getattr(args, "no_retry_failed", False))


def sweep_from_cli(args: argparse.Namespace) -> int:
    """`heterogeneity sweep ...`: check everything, run or resume the sweep, print its table; return the exit code.

    0: every selected point is done (finished or diverged, or held by another process);
    1: some selected point failed (its traceback is in ``runs/<id>.json``).
    """
    from heterogeneity.experiment._sweep import format_table, run_sweep, table_rows

    kwargs = validate_sweep_args(args)
    config = kwargs.pop("config")
    quiet = getattr(args, "quiet", False)
    log = (lambda line: None if line.startswith("[") else print(line)) if quiet else print  # noqa: E731
    result = run_sweep(config, args.out, log=log, **kwargs)
    summary = result.summary
    metric = getattr(args, "metric", None) or summary["metric"]
    shard = f", shard {args.shard}" if kwargs["shard"] is not None else ""
    extra = f", {len(result.busy)} held by other processes" if result.busy else ""
    print(f"\n{config.name} ({summary['scale']}{', smoke' if args.smoke else ''}{shard}): {summary['num_runs']} runs, "
          f"{summary['counts']}; ran {len(result.ran)}, skipped {len(result.skipped)}{extra}; results in {args.out}")
    print(format_table(table_rows(summary, metric=metric, best_over=getattr(args, "best_over", None),
                                  lower_is_better=not getattr(args, "higher_is_better", False)), metric=metric))
    if result.failed:
        print(f"{len(result.failed)} of {result.selected} selected points failed; tracebacks in "
              f"{Path(args.out) / 'runs'}/<id>.json (first: {result.failed[0]}.json)", file=sys.stderr)
        return 1
    return 0


def plot_from_cli(args: argparse.Namespace) -> int:
    """`heterogeneity plot OUT_DIR`: figures and the best-lr table of a sweep into ``OUT_DIR/plots``."""
    from heterogeneity.experiment._plot import plot_sweep

    out = Path(args.out_dir)
    if not out.is_dir():
        raise CLIArgumentError(f"OUT_DIR {args.out_dir}: no such directory")
    if not (out / "summary.json").is_file():
        raise CLIArgumentError(f"OUT_DIR {args.out_dir}: not a sweep directory (no summary.json)")
    written = plot_sweep(out, curve=args.curve, select=args.select)
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0
