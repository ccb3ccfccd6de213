"""Cold and warm cost of `blockwise_slq` as the number of blocks grows (GPT of 1 to 8 layers).

    python scripts/bench_blockwise_scaling.py [--layers 1,2,4,8] [--steps 30] [--probes 1] [--out FILE]

Each depth runs in a FRESH subprocess (no jit cache, no persistent cache), on the by-leaf
partition of a char GPT (d_model 64, 4 heads, sequence 64, batch 16, vocab 65): 16 blocks per
layer plus 5, so 21, 37, 69 and 133 blocks. Per depth it reports

* trace: `jax.jit(...).lower` (Python tracing + StableHLO emission), with the StableHLO size;
* compile: `lowered.compile()` (XLA);
* first run and warm run (a second call with a new key; `block_until_ready`);
* cold = trace + compile + first run: what a researcher waits for once per checkpoint.

Run it against another version of the engine by putting that version first on the path
(``PYTHONPATH=/path/to/old/checkout python scripts/bench_blockwise_scaling.py``) and compare
ratios within one machine state (2 shared cores: read ratios, not seconds).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time


def one_depth(layers: int, steps: int, probes: int) -> dict:
    import jax
    import jax.numpy as jnp

    import heterogeneity
    from heterogeneity import curvature as hc
    from heterogeneity import models as hm
    from heterogeneity import partition as hp

    net = hm.build("gpt", vocab_size=65, d_model=64, num_heads=4, num_layers=layers, max_len=64)
    apply_fn, params = hm.functional(net)
    loss_fn = hm.lm_loss(apply_fn)
    batch = {"tokens": jax.random.randint(jax.random.key(0), (16, 65), 0, 65)}
    part = hp.by_leaf(params)
    n_blocks = len(part.labels(params))

    def run(p, b, k):
        return hc.blockwise_slq(loss_fn, p, b, k, partition=part, num_steps=steps, num_probes=probes)

    t = time.perf_counter()
    lowered = jax.jit(run).lower(params, batch, jax.random.key(1))
    t_trace = time.perf_counter() - t
    hlo = len(lowered.as_text())
    t = time.perf_counter()
    compiled = lowered.compile()
    t_compile = time.perf_counter() - t
    t = time.perf_counter()
    jax.block_until_ready(compiled(params, batch, jax.random.key(1)))
    t_first = time.perf_counter() - t
    t = time.perf_counter()
    out = jax.block_until_ready(compiled(params, batch, jax.random.key(2)))
    t_warm = time.perf_counter() - t
    finite = bool(jnp.all(out.finite))
    groups = len(hc.block_packing(part, params, small=steps))  # Lanczos programs inside the one jit
    return dict(layers=layers, blocks=n_blocks, params=int(sum(x.size for x in jax.tree.leaves(params))),
                groups=groups, stablehlo_chars=hlo, trace_s=t_trace, compile_s=t_compile, first_run_s=t_first,
                cold_s=t_trace + t_compile + t_first, warm_s=t_warm, finite=finite,
                engine=os.path.dirname(heterogeneity.__file__))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", default="1,2,4,8")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--probes", type=int, default=1)
    ap.add_argument("--out", default=None)
    ap.add_argument("--_one", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._one is not None:
        print(json.dumps(one_depth(args._one, args.steps, args.probes)))
        return 0
    rows = []
    load0 = os.getloadavg()[0]
    for layers in [int(x) for x in args.layers.split(",")]:
        cmd = [sys.executable, os.path.abspath(__file__), "--_one", str(layers), "--steps", str(args.steps),
               "--probes", str(args.probes)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode:
            sys.stderr.write(res.stderr)
            raise SystemExit(f"depth {layers} failed")
        row = json.loads(res.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"L={row['layers']} blocks={row['blocks']:4d} groups={row['groups']} hlo={row['stablehlo_chars'] / 1e6:.2f}M "
              f"trace {row['trace_s']:.1f}s compile {row['compile_s']:.1f}s first {row['first_run_s']:.1f}s "
              f"cold {row['cold_s']:.1f}s warm {row['warm_s']:.2f}s finite={row['finite']}", flush=True)
    base = rows[0]
    for r in rows:
        r["trace_compile_vs_first"] = (r["trace_s"] + r["compile_s"]) / (base["trace_s"] + base["compile_s"])
        r["warm_vs_first"] = r["warm_s"] / base["warm_s"]
    print("trace+compile growth:", ", ".join(f"{r['blocks']}: {r['trace_compile_vs_first']:.2f}x" for r in rows))
    print("warm growth:        ", ", ".join(f"{r['blocks']}: {r['warm_vs_first']:.2f}x" for r in rows))
    meta = dict(date=datetime.datetime.now().isoformat(timespec="seconds"), machine=platform.platform(),
                cpus=os.cpu_count(), load_before=load0, load_after=os.getloadavg()[0], steps=args.steps,
                probes=args.probes)
    print(json.dumps(meta))
    if args.out:
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)
        os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
