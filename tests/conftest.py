"""Test configuration.

Eight simulated CPU devices are set up before JAX is imported, so the multi-device
majority-vote tests run under `jax.shard_map` on CPU. Library code never changes
global JAX flags; tests that need float64 use the `jax.enable_x64(True)` context.

Under pytest-xdist (CI: ``-n 2`` on 2 cores) every worker's BLAS (NumPy, SciPy) runs one
thread, and so do the notebook kernels and subprocesses it starts (through the environment):
OpenBLAS threads busy-wait, and with the other core busy a 2-thread ``inv`` of a 284×284 matrix
took 12-40x the single-thread time and CPU (the Φ-smoothness SDP of
tests/scale/test_gradient_scale.py at d = 284: over 600 s instead of 40 s on a loaded 2-core
machine). A plain ``pytest`` run keeps the default.
"""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
if os.environ.get("PYTEST_XDIST_WORKER") and "OPENBLAS_NUM_THREADS" not in os.environ:
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")  # processes started from here
    from threadpoolctl import threadpool_limits  # a dev dependency (and scikit-learn's)

    threadpool_limits(1, user_api="blas")  # this process: NumPy is already loaded by pytest's plugins
