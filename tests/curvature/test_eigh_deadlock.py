"""Regression: batched ``eigh`` deadlocks XLA:CPU when several run in one program (jaxlib 0.10.0–0.10.2).

`blockwise_slq` puts one batched eigh (the Gauss quadratures of a block group's probes) per block
group into one program; with ≥2 probes and a few dozen groups every intra-op pool thread ended up
blocked inside LAPACK's ``ParallelBatchMap`` (see ``scripts/repro_eigh_deadlock.py``). The supported
jax range (pyproject.toml) excludes those versions; these tests run the hang cases in a subprocess
with a timeout, so a version that brings the deadlock back fails here instead of stalling the suite.
"""
import subprocess
import sys
import textwrap


_MANY_GROUPS = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from heterogeneity import curvature as hc, partition as hp
    rng = np.random.default_rng(0)
    params = [{"w": jnp.asarray(rng.normal(size=(4, 4)) / 2, jnp.float32),
               "b": jnp.asarray(rng.normal(size=4) / 10, jnp.float32)} for _ in range(16)]
    x = jnp.asarray(rng.normal(size=(16, 4)), jnp.float32)
    def loss_fn(p, x):
        for layer in p:
            x = jnp.tanh(x @ layer["w"] + layer["b"])
        return jnp.mean(x ** 2)
    part = hp.by_leaf(params)
    out = jax.jit(lambda p, x, k: hc.blockwise_slq(loss_fn, p, x, k, partition=part, num_steps=48,
                                                   num_probes=2))(params, x, jax.random.key(0))
    nodes, weights = np.asarray(out.nodes), np.asarray(out.weights)
    assert len(out) == 32 and nodes.shape[0] == 32 and np.all(np.isfinite(nodes)), nodes
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
    print("ok", len(out))
""")


def test_blockwise_slq_with_many_groups_and_probes_finishes():
    """32 block groups × 2 probes in one program: hung forever on jaxlib 0.10.2."""
    proc = subprocess.run([sys.executable, "-c", _MANY_GROUPS], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["ok", "32"]


def test_standalone_reproducer_finishes():
    """64 independent batched eigh calls in one jit (no heterogeneity code): hung on jaxlib 0.10.0–0.10.2."""
    from heterogeneity import selftest

    check = selftest.check_eigh_deadlock(timeout=120)
    assert check.ok, check.detail
