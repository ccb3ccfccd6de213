"""Per-call cost of the curvature estimators, closure form against operator form.

    python scripts/bench_operator_cache.py [--calls 4] [--out FILE]

On the MLP 784-512-512-10 (batch 256) of `bench_curvature.py`, each estimator is called
``--calls`` times with new params and a new batch of the same shapes, the way a researcher
calls it once per checkpoint:

* closure: ``f(hc.linearized_hvp(loss_fn, params, batch), params, key)`` — a new matvec per
  call, so every call traces and compiles again;
* operator: ``f(hc.HessianOperator(loss_fn, params, batch), params, key)`` — compiled on the
  first call, served from jit's cache afterwards.

Reported: the first call (cold: trace + compile + run) and the median of the later calls,
with `block_until_ready`. Compare ratios within one run (the machine may be shared).
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_curvature import make_mlp  # noqa: E402

from heterogeneity import curvature as hc  # noqa: E402

ESTIMATORS = {
    "top_eigenvalue(m=8)": lambda op, p, k: hc.top_eigenvalue(op, p, k, num_steps=8).value,
    "slq(m=100, 1 probe, full)": lambda op, p, k: hc.slq(op, p, k, num_steps=100, num_probes=1).nodes,
    "hutchinson_trace(100 probes, batch_size=10)": lambda op, p, k: hc.hutchinson_trace(
        op, p, k, num_probes=100, batch_size=10).trace,
    "l11_norm(50 probes, batch_size=10)": lambda op, p, k: hc.l11_norm(op, p, k, num_probes=50, batch_size=10).value,
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=4)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.calls < 2:
        raise SystemExit("--calls must be >= 2")
    t0, load0 = time.time(), os.getloadavg()[0]
    loss_fn, params, batch = make_mlp(jax.random.key(0), (784, 512, 512, 10), 256)
    # new params and batches of the same shapes, one per call
    inputs = [make_mlp(jax.random.key(i + 1), (784, 512, 512, 10), 256)[1:] for i in range(args.calls)]
    rows = []
    for name, f in ESTIMATORS.items():
        for form in ("closure", "operator"):
            times = []
            for i, (p, b) in enumerate(inputs):
                t = time.perf_counter()
                op = hc.linearized_hvp(loss_fn, p, b) if form == "closure" else hc.HessianOperator(loss_fn, p, b)
                jax.block_until_ready(f(op, p, jax.random.key(i)))
                times.append(time.perf_counter() - t)
            rows.append((name, form, times[0], float(np.median(times[1:]))))
            print(rows[-1], flush=True)
    head = (f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {platform.machine()}, "
            f"{os.cpu_count()} CPUs, jax {jax.__version__} on {jax.default_backend()}; load average at start "
            f"{load0:.1f}, at end {os.getloadavg()[0]:.1f}; wall {time.time() - t0:.0f} s\n"
            f"command: python scripts/bench_operator_cache.py --calls {args.calls}\n\n")
    table = ["| estimator (MLP 784-512-512-10, batch 256) | form | first call (cold) | later calls (median) |",
             "|---|---|---|---|"]
    table += [f"| {n} | {form} | {a:.3f} s | {b:.3f} s |" for n, form, a, b in rows]
    text = head + "\n".join(table) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
