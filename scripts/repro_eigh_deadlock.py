"""Minimal reproducer of an XLA:CPU deadlock in batched ``eigh`` (jax/jaxlib 0.10.2).

    python scripts/repro_eigh_deadlock.py            # several batched eigh in one program: hangs on a 2-core CPU
    python scripts/repro_eigh_deadlock.py --serial   # the same with heterogeneity's workaround: finishes

jaxlib's LAPACK ``syevd`` FFI kernel splits a batch over the intra-op thread pool with
``jax::ParallelBatchMap`` and then blocks the calling pool thread on an ``absl::BlockingCounter``.
XLA:CPU's thunk executor runs independent ``eigh`` thunks concurrently on that same pool, so
once every pool thread is blocked inside one of them, the sub-tasks they wait for never run.
`gdb -p PID -batch -ex "thread apply all bt"` on the hung process shows every XLA worker either
idle or in ``BlockingCounter::Wait`` under ``lapack_ssyevd_ffi``. ``--xla_cpu_multi_thread_eigen=false``
does not help; ``qr``, ``svd`` and ``cholesky`` with the same layout do not hang (2026-11-22).

This is what hung `blockwise_slq` with >1 probe on the report's GPT (one batched eigh of the
tridiagonals per block group). heterogeneity now routes every Gauss-quadrature ``eigh`` through
`heterogeneity.curvature._lanczos._eigh`, whose vmap rule loops on CPU (``--serial`` below).
"""
import argparse
import time

import jax
import jax.numpy as jnp

from heterogeneity.curvature._lanczos import _eigh

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--groups", type=int, default=64, help="independent eigh calls in the program")
parser.add_argument("--batch", type=int, default=2, help="matrices per eigh call (1 never hangs)")
parser.add_argument("--size", type=int, default=48)
parser.add_argument("--serial", action="store_true", help="use heterogeneity's vmap-safe eigh")
args = parser.parse_args()

eigh = jax.vmap(_eigh) if args.serial else jnp.linalg.eigh
xs = jax.random.normal(jax.random.key(0), (args.groups, args.batch, args.size, args.size))


@jax.jit
def program(xs):
    return sum(eigh(x + x.swapaxes(-1, -2))[0].sum() for x in xs)


t = time.time()
print(f"{args.groups} x eigh(batch={args.batch}), serial={args.serial}: sum of eigenvalues "
      f"{float(program(xs)):.4f} in {time.time() - t:.1f} s")
