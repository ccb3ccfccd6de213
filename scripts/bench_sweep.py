#!/usr/bin/env python
"""Benchmark: 12 same-shape sweep points as one batched program vs the sequential loop.

    python scripts/bench_sweep.py                 # 12 points (6 learning rates x 2 seeds), 500 steps
    python scripts/bench_sweep.py --steps 2000 --dim 200

The 12 points are Adam on a dense quadratic ``½ wᵀ H_s w`` (``H_s`` a random rotation of a
spectrum in [1, 100], one per seed), differing only in learning rate and seed, so they share
one program. Each mode runs the whole sweep once into a fresh directory (build, trace,
compile, train, write 12 run files), as a user would: ``run_sweep(..., batch=True)`` against
``run_sweep(..., batch=False)`` (one `train` call per point). Prints both wall times, the
ratio, and how closely the two agree: the largest relative difference of the logged losses
over the first 100 steps (float32 rounding: batched contractions sum in another order) and of
the final losses (larger: Adam at a large constant rate oscillates around the minimum, which
amplifies rounding). Results go in BENCHMARKS.md, not in tests.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def make_config(dim: int, steps: int, log_every: int):
    import jax.numpy as jnp
    import numpy as np

    from heterogeneity.experiment import RunSpec, SweepConfig, make_optimizer

    def build(hp):
        rng = np.random.default_rng(hp["seed"])
        q, _ = np.linalg.qr(rng.normal(size=(hp["dim"], hp["dim"])))
        h = jnp.asarray((q * np.geomspace(1.0, 100.0, hp["dim"])) @ q.T, jnp.float32)
        params = jnp.asarray(rng.normal(size=hp["dim"]), jnp.float32)
        return RunSpec(loss_fn=lambda w, batch: 0.5 * w @ (h @ w), params=params,
                       optimizer=make_optimizer(hp, params), num_steps=hp["steps"], log_every=hp["log_every"])

    return SweepConfig(name="bench_sweep", build=build,
                       base={"dim": dim, "steps": steps, "log_every": log_every},
                       grid={"optimizer": ["adam"], "lr": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1], "seed": [0, 1]})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--log-every", type=int, default=10)
    args = ap.parse_args(argv)

    import jax
    import numpy as np

    from heterogeneity.experiment import load_runs, run_sweep

    config = make_config(args.dim, args.steps, args.log_every)
    times, finals = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("sequential", "batched"):
            out = os.path.join(tmp, mode)
            t0 = time.perf_counter()
            res = run_sweep(config, out, batch=mode == "batched")
            times[mode] = time.perf_counter() - t0
            assert len(res.ran) == 12 and not res.failed, res
            runs = load_runs(out)
            finals[mode] = {rid: (float(r["final"]["final_loss"]),
                                  [float(v) for s, v in zip(r["history"]["step"], r["history"]["loss"]) if s < 100])
                            for rid, r in runs.items()}
            modes = {r["execution"]["mode"] for r in runs.values()}
            assert modes == {mode}, modes
    def rel(index):
        a = np.array([finals["batched"][k][index] for k in sorted(finals["sequential"])], np.float64)
        b = np.array([finals["sequential"][k][index] for k in sorted(finals["sequential"])], np.float64)
        return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-30)))

    print(f"backend {jax.default_backend()}, {os.cpu_count()} CPUs, jax {jax.__version__}; 12 points x {args.steps} "
          f"steps, dim {args.dim}")
    print(f"sequential loop: {times['sequential']:.2f} s")
    print(f"batched:         {times['batched']:.2f} s")
    print(f"ratio:           {times['sequential'] / times['batched']:.1f}x")
    print(f"max rel. difference batched vs sequential: {rel(1):.1e} (losses, steps < 100), {rel(0):.1e} (final losses)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
