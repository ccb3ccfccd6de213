"""Reproduce a known hang: blockwise SLQ with >1 probe on the report's default GPT (XLA:CPU).

    python scripts/repro_blockwise_hang.py --probes 1   # compiles (~90 s on 2 cores), runs (~45 s)
    python scripts/repro_blockwise_hang.py --probes 2   # compiles, then never finishes: every thread waits on a futex

Seen 2026-11-22 on the 2-core CPU machine with jax/jaxlib 0.10.2: 37 blocks (one per tensor of the
default `setup("gpt")`), 48 Lanczos steps. It hangs for reortho "full" and "none", with
`batch_size=37` chunking, and with XLA_FLAGS=--xla_cpu_multi_thread_eigen=false; 1 probe runs, and
every size used in the test suite runs with any probe count. Not yet root-caused.
"""
import argparse
import time

import jax

from heterogeneity import curvature as hc
from heterogeneity.experiment import make_partition, setup

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--probes", type=int, default=2)
parser.add_argument("--steps", type=int, default=48)
parser.add_argument("--reortho", default="full", choices=["full", "none"])
args = parser.parse_args()

s = setup("gpt")
p = make_partition("leaf", s.params)
f = jax.jit(lambda prm, b, k: hc.blockwise_slq(s.loss_fn, prm, b, k, partition=p, num_steps=args.steps,
                                                num_probes=args.probes, reortho=args.reortho))
t = time.time()
compiled = f.lower(s.params, s.batch, jax.random.key(0)).compile()
print(f"{p.num_blocks(s.params)} blocks: compiled in {time.time() - t:.1f} s", flush=True)
t = time.time()
jax.block_until_ready(compiled(s.params, s.batch, jax.random.key(0)))
print(f"ran in {time.time() - t:.1f} s")
