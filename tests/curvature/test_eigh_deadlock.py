"""Regression: batched ``eigh`` deadlocks XLA:CPU when several run in one program (jaxlib 0.10.2).

`blockwise_slq` puts one batched eigh (the Gauss quadratures of a block group's probes) per block
group into one program; with ≥2 probes and a few dozen groups every intra-op pool thread ended up
blocked inside LAPACK's ``ParallelBatchMap`` (see ``scripts/repro_eigh_deadlock.py``). The fix is
`_lanczos._eigh`, whose vmap rule loops on CPU. The hang case runs in a subprocess with a timeout,
so a regression fails this test instead of stalling the suite.
"""
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np

from heterogeneity.curvature._lanczos import _eigh

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
    nodes = np.stack([np.asarray(s.nodes) for s in out.values()])
    weights = np.stack([np.asarray(s.weights) for s in out.values()])
    assert len(out) == 32 and np.all(np.isfinite(nodes)), nodes
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
    print("ok", len(out))
""")


def test_blockwise_slq_with_many_groups_and_probes_finishes():
    """40 block groups × 3 probes in one program: hung (forever) before the fix; ~40 s now (compiling 32 groups)."""
    proc = subprocess.run([sys.executable, "-c", _MANY_GROUPS], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["ok", "32"]


def test_vmapped_eigh_equals_lapack():
    """The vmap rule (a loop on CPU) gives LAPACK's batched result, under jit and nested vmap."""
    x = jax.random.normal(jax.random.key(1), (3, 5, 7, 7))
    x = x + x.swapaxes(-1, -2)
    vals, vecs = jax.jit(jax.vmap(jax.vmap(_eigh)))(x)
    ref_vals, ref_vecs = jnp.linalg.eigh(x)
    np.testing.assert_array_equal(vals, ref_vals)
    np.testing.assert_array_equal(vecs, ref_vecs)
    single = _eigh(x[0, 0])
    np.testing.assert_array_equal(single[0], ref_vals[0, 0])


def test_eigh_is_differentiable_like_lapack():
    """The custom vmap rule must not cost reverse-mode autodiff: gradients, under vmap, match eigh's."""
    x = jax.random.normal(jax.random.key(2), (4, 6, 6))
    x = x + x.swapaxes(-1, -2)

    def f(eigh, t):
        w, v = eigh(t)
        return w[-1] + jnp.sum(jnp.abs(v[0]))

    ours = jax.jit(jax.vmap(jax.grad(lambda t: f(_eigh, t))))(x)
    ref = jax.vmap(jax.grad(lambda t: f(lambda s: tuple(jnp.linalg.eigh(s)), t)))(x)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
    fwd = jax.vmap(jax.jacfwd(lambda t: f(_eigh, t)))(x)
    np.testing.assert_allclose(fwd, ref, rtol=1e-5, atol=1e-5)
