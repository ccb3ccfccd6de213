#!/usr/bin/env python
"""Reproduce one paper experiment: run its config's sweep (resumably), then report our numbers beside the paper's.

    python scripts/reproduce.py --list                      # the experiments and the claims they test
    python scripts/reproduce.py ln_placement                # laptop scale, results/ln_placement/
    python scripts/reproduce.py ln_placement --update        # ... and rewrite its section of EXPERIMENTS.md
    python scripts/reproduce.py rotated_quadratic --scale gpu
    python scripts/reproduce.py all --smoke                 # every experiment, tiny sizes (a plumbing check)
    python scripts/reproduce.py js0_init --findings-only    # re-read results/js0_init without running

An experiment is a module ``configs/NAME.py`` that defines ``CONFIG``, ``PAPER`` and
``findings(runs)`` (`configs/_findings.py`). The sweep runs through
`heterogeneity.experiment.run_sweep`, so a killed reproduction resumes where it stopped and
two processes on one directory never run a point twice. Afterwards ``OUT/findings.md`` and
``OUT/findings.json`` hold the table, the verdict (computed from the numbers by the config's
stated rule) and the run facts: scale, number of runs, wall time summed over the invocations
that ran points, machine and date. ``--update`` writes the same section between the markers
``<!-- reproduce:NAME begin -->`` and ``<!-- reproduce:NAME end -->`` of EXPERIMENTS.md
(appended if absent); smoke results never go there.

Exit status: 0 when every point finished or diverged; 1 when a point failed or the findings
are incomplete; 2 on bad usage (unknown experiment, ``--out`` with several experiments).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import os
import platform
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # configs import each other as `configs.<name>`
    sys.path.insert(0, str(ROOT))
EXPERIMENTS_MD = ROOT / "EXPERIMENTS.md"


def experiments() -> dict[str, object]:
    """``{name: module}`` for every ``configs/NAME.py`` that defines ``findings``, sorted by name."""
    out = {}
    for path in sorted((ROOT / "configs").glob("*.py")):
        if path.stem.startswith("_"):
            continue
        module = importlib.import_module(f"configs.{path.stem}")
        if callable(getattr(module, "findings", None)):
            out[path.stem] = module
    return out


def default_out(name: str, scale: str, smoke: bool) -> Path:
    suffix = ("_gpu" if scale != "laptop" else "") + ("_smoke" if smoke else "")
    return ROOT / "results" / f"{name}{suffix}"


def _machine() -> str:
    import jax

    devices = jax.devices()
    kind = devices[0].device_kind if devices else "?"
    return f"{platform.machine()}, {os.cpu_count()} cores, {len(devices)}× {jax.default_backend()} ({kind})"


def _command(name: str, scale: str) -> str:
    return f"python scripts/reproduce.py {name}" + ("" if scale == "laptop" else f" --scale {scale}")


def section(name: str, module, found, facts: dict) -> str:
    """The markdown section of one experiment (what ``--update`` writes into EXPERIMENTS.md)."""
    minutes = facts["wall_s"] / 60
    lines = [
        f"<!-- reproduce:{name} begin -->",
        f"### `{name}`",
        "",
        f"**Paper.** {module.PAPER}",
        "",
        f"**Command.** `{facts['command']}` · scale `{facts['scale']}` · {facts['num_runs']} runs "
        f"({facts['counts']}) · wall time {minutes:.1f} min on {facts['machine']} · {facts['date']}",
        "",
        f"**Verdict: {found.verdict}.** {found.reason}",
        "",
        found.table.strip(),
        f"<!-- reproduce:{name} end -->",
    ]
    return "\n".join(lines) + "\n"


def update_experiments_md(name: str, text: str, path: Path = EXPERIMENTS_MD) -> None:
    """Replace experiment ``name``'s marked section of ``path`` with ``text`` (append it if absent), atomically."""
    from heterogeneity.experiment import atomic_write_text

    old = path.read_text() if path.exists() else "# Experiments\n"
    pattern = re.compile(rf"<!-- reproduce:{re.escape(name)} begin -->.*?<!-- reproduce:{re.escape(name)} end -->\n?",
                         re.S)
    if pattern.search(old):
        new = pattern.sub(lambda _: text, old, count=1)
    else:
        new = old.rstrip("\n") + "\n\n" + text
    atomic_write_text(path, with_index(new))


SECTION = re.compile(r"<!-- reproduce:(\w+) begin -->\n### `\w+`\n\n\*\*Paper\.\*\* (.*?)\n.*?"
                     r"\*\*Verdict: (.*?)\.\*\*.*?<!-- reproduce:\1 end -->", re.S)
INDEX = re.compile(r"<!-- reproduce:index begin -->.*?<!-- reproduce:index end -->\n?", re.S)


def with_index(text: str) -> str:
    """``text`` with its ``<!-- reproduce:index -->`` block (if any) rebuilt: one row per section, in file order."""
    rows = ["| experiment | claim tested | verdict |", "|---|---|---|"]
    for name, paper, verdict in SECTION.findall(text):
        claim = paper.split(":", 1)[0] if paper.startswith("[") else paper[:60]
        rows.append(f"| [`{name}`](#{name}) | {claim} | {verdict} |")
    block = "<!-- reproduce:index begin -->\n" + "\n".join(rows) + "\n<!-- reproduce:index end -->\n"
    return INDEX.sub(lambda _: block, text, count=1)


def reproduce(name: str, module, *, scale: str, smoke: bool, out: Path, run: bool, update: bool,
              log=print) -> int:
    """Run (unless ``run`` is False) and report one experiment; return its exit status."""
    from heterogeneity.experiment import atomic_write_json, atomic_write_text, read_json
    from heterogeneity.experiment._sweep import load_runs, run_sweep

    facts_path = out / "reproduce.json"
    facts = read_json(facts_path) if facts_path.exists() else {"wall_s": 0.0}
    if run:
        t0 = time.perf_counter()
        result = run_sweep(module.CONFIG, out, scale=scale, smoke=smoke, log=log)
        if result.ran:
            facts["wall_s"] = float(facts.get("wall_s", 0.0)) + time.perf_counter() - t0
            facts["machine"], facts["date"] = _machine(), _dt.date.today().isoformat()
    elif not (out / "runs").is_dir():
        log(f"{name}: no results in {out}; run without --findings-only first")
        return 1
    from heterogeneity.experiment._config import resolve, run_id

    current = {run_id(module.CONFIG.name, hp) for hp in resolve(module.CONFIG, scale=scale, smoke=smoke)}
    runs = load_runs(out, strict=False)
    stale = sorted(set(runs) - current)
    if stale:  # e.g. points of an earlier, since narrowed grid: a fresh run would not have them
        log(f"{name}: ignoring {len(stale)} result(s) in {out / 'runs'} that are not points of the current grid")
        runs = {k: v for k, v in runs.items() if k in current}
    summary = read_json(out / "summary.json") if (out / "summary.json").exists() else {}
    counts = summary.get("counts", {})
    facts.update(command=_command(name, scale) + (" --smoke" if smoke else ""), scale=scale, smoke=smoke,
                 num_runs=summary.get("num_runs", len(runs)),
                 counts=", ".join(f"{v} {k}" for k, v in counts.items() if v) or "none",
                 machine=facts.get("machine", "?"), date=facts.get("date", "?"))
    atomic_write_json(facts_path, facts)
    found = module.findings(runs)
    text = section(name, module, found, facts)
    atomic_write_text(out / "findings.md", text)
    atomic_write_json(out / "findings.json", {"name": name, "verdict": found.verdict, "reason": found.reason,
                                              "numbers": dict(found.numbers), "table": found.table, **facts})
    log(text)
    failed = counts.get("failed", 0)
    if update:
        update_experiments_md(name, text)
        log(f"{name}: section written to {EXPERIMENTS_MD.name}")
    if failed:
        log(f"{name}: {failed} point(s) failed; see {out / 'runs'}")
    return 1 if failed or found.verdict == "incomplete" else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="reproduce.py", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="experiments (configs/NAME.py with findings), or 'all'")
    parser.add_argument("--list", action="store_true", help="list the experiments and the claims they test")
    parser.add_argument("--scale", default="laptop", choices=["laptop", "gpu", "accelerator"])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and grids: checks the plumbing only")
    parser.add_argument("--out", help="result directory (one experiment only; default results/NAME[_gpu][_smoke])")
    parser.add_argument("--findings-only", action="store_true", help="report from existing results, run nothing")
    parser.add_argument("--update", action="store_true", help="write the section into EXPERIMENTS.md")
    args = parser.parse_args(argv)
    known = experiments()
    if args.list:
        for name, module in known.items():
            print(f"{name:24s} {module.PAPER}")
        return 0
    names = list(known) if args.names == ["all"] else args.names
    if not names:
        parser.print_usage()
        print("reproduce.py: error: name an experiment (or 'all'); --list shows them", file=sys.stderr)
        return 2
    unknown = [n for n in names if n not in known]
    if unknown:
        import difflib

        hints = {n: difflib.get_close_matches(n, known, n=1) for n in unknown}
        print("reproduce.py: error: unknown experiment(s): " + ", ".join(
            n + (f" (did you mean {hints[n][0]!r}?)" if hints[n] else "") for n in unknown)
            + f"; known: {', '.join(known)}", file=sys.stderr)
        return 2
    if args.out and len(names) > 1:
        print("reproduce.py: error: --out needs exactly one experiment", file=sys.stderr)
        return 2
    if args.update and args.smoke:
        print("reproduce.py: error: --update writes EXPERIMENTS.md, which never holds smoke results", file=sys.stderr)
        return 2
    scale = "gpu" if args.scale == "accelerator" else args.scale
    status = 0
    for name in names:
        out = Path(args.out) if args.out else default_out(name, scale, args.smoke)
        try:
            status |= reproduce(name, known[name], scale=scale, smoke=args.smoke, out=out,
                                run=not args.findings_only, update=args.update)
        except ValueError as e:  # bad config / overrides: one clear line
            print(f"reproduce.py: error: {name}: {' '.join(str(e).split())}", file=sys.stderr)
            status |= 1
    return status


if __name__ == "__main__":
    sys.exit(main())
