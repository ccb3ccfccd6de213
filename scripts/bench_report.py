"""Wall time and peak memory of `heterogeneity report` for every built-in model, each in a fresh process.

    python scripts/bench_report.py                       # default GPT, --quick and every --model
    python scripts/bench_report.py --models gpt,vit      # some of them

Each run is a fresh ``heterogeneity report --no-progress`` subprocess (cold: imports, set-up,
trace, compile and run, nothing cached), timed from outside; its peak resident memory is the
child's own ``ru_maxrss`` (``os.wait4``). The per-stage times come from the run's own ``report.json``
(``meta.timings_s``). Targets (issue "compile once"): the default within 60 s and 1.5 GB on 2
cores, every other model within 2 minutes and 2 GB. Prints a markdown table for BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = {
    "gpt (default)": [],
    "gpt --quick": ["--quick"],
    "transformer --norm post": ["--model", "transformer", "--norm", "post"],
    "transformer --norm pre": ["--model", "transformer", "--norm", "pre"],
    "vit": ["--model", "vit"],
    "mixer": ["--model", "mixer"],
    "cnn": ["--model", "cnn"],
    "mlp": ["--model", "mlp"],
}


def run_one(name: str, extra: list[str], workdir: Path) -> dict:
    out = workdir / name.replace(" ", "_").replace("-", "")
    cmd = [sys.executable, "-m", "heterogeneity.cli", "report", "--no-progress", "--out", str(out), *extra]
    t = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage (ru_maxrss in KiB on Linux)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t
        err.seek(0)
        stderr = err.read()
    row = {"name": name, "command": "heterogeneity report " + " ".join(extra), "rc": proc.returncode,
           "wall_s": wall, "peak_rss_gb": usage.ru_maxrss * 1024 / 1e9}
    if proc.returncode == 0:
        meta = json.loads((out / "report.json").read_text())["meta"]
        row["stages_s"] = meta["timings_s"]
        row["blocks"], row["params"] = meta["num_blocks"], meta["num_params"]
    else:
        row["error"] = stderr.strip().splitlines()[-1:]
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(RUNS), help="comma list of: " + ", ".join(RUNS))
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        ap.error(f"unknown models {unknown}; choose from {list(RUNS)}")
    print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.2f}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            row = run_one(name, RUNS[name], Path(tmp))
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| run | blocks | wall | peak RSS | trace + compile | blockwise run |\n|---|---|---|---|---|---|")
    for r in rows:
        st = r.get("stages_s", {})
        rss = f"{r['peak_rss_gb']:.2f} GB"
        print(f"| `{r['command']}` | {r.get('blocks', '—')} | {r['wall_s']:.1f} s | {rss} | "
              f"{st.get('trace and compile', float('nan')):.1f} s | {st.get('blockwise spectra', float('nan')):.1f} s |"
              if r["rc"] == 0 else f"| `{r['command']}` | failed: {r.get('error')} | | | | |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0 if all(r["rc"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
