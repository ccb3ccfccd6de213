"""Standalone reproducer of an XLA:CPU deadlock in batched ``eigh`` (jaxlib 0.10.0, 0.10.1 and 0.10.2).

    python scripts/repro_eigh_deadlock.py            # 64 batched eigh in one program: hangs on 0.10.0-0.10.2
    python scripts/repro_eigh_deadlock.py --serial   # the same batches as a lax.map of single eigh: finishes

No heterogeneity code is used, so the script can be filed upstream as it is. jaxlib's LAPACK
``syevd`` FFI kernel splits a batch over the intra-op thread pool with ``jax::ParallelBatchMap``
and then blocks the calling pool thread on an ``absl::BlockingCounter``. XLA:CPU's thunk executor
runs independent ``eigh`` thunks concurrently on that same pool, so once every pool thread is
blocked inside one of them, the sub-tasks they wait for never run (`gdb -p PID -batch -ex "thread
apply all bt"`: every XLA worker idle or in ``BlockingCounter::Wait`` under ``lapack_ssyevd_ffi``).
``--xla_cpu_multi_thread_eigen=false`` does not help; ``qr``, ``svd`` and ``cholesky`` with the
same layout do not hang. Measured 2026-12-02 on 2 cores: 0.10.2, 0.10.1 and 0.10.0 hang (killed at
120 s), 0.9.2 finishes in 1.8 s. `heterogeneity selftest` runs this program in a subprocess.
"""
import argparse
import time

import jax
import jax.numpy as jnp

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--groups", type=int, default=64, help="independent eigh calls in the program")
parser.add_argument("--batch", type=int, default=2, help="matrices per eigh call (1 never hangs)")
parser.add_argument("--size", type=int, default=48)
parser.add_argument("--serial", action="store_true", help="lax.map of single eigh instead of the batch kernel")
args = parser.parse_args()

eigh = (lambda x: jax.lax.map(jnp.linalg.eigh, x)) if args.serial else jnp.linalg.eigh
xs = jax.random.normal(jax.random.key(0), (args.groups, args.batch, args.size, args.size))


@jax.jit
def program(xs):
    return sum(eigh(x + x.swapaxes(-1, -2))[0].sum() for x in xs)


t = time.time()
print(f"jax {jax.__version__}: {args.groups} x eigh(batch={args.batch}), serial={args.serial}: "
      f"sum of eigenvalues {float(program(xs)):.4f} in {time.time() - t:.1f} s")
