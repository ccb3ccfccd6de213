"""Curvature work split over a `jax.sharding.Mesh` of 8 simulated CPU devices (tests/conftest.py
sets ``--xla_force_host_platform_device_count=8``) equals the single-device result.

Probe counts are chosen not to divide 8 (padding) and meshes are 1-D (Auto axes) and 2-D
(`jax.make_mesh`, Explicit axes). References: the same call without a mesh, and the dense
float64 Hessian for the HVPs.
"""
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from curvature_tiny import dense_of, make_mlp
from jax.sharding import Mesh

from heterogeneity import curvature as hc
from heterogeneity import partition as hp
from heterogeneity.curvature._sharding import shard_items
from heterogeneity.tree import ravel


def _meshes():
    devices = jax.devices()
    assert len(devices) == 8, "tests/conftest.py should simulate 8 CPU devices"
    return [Mesh(np.array(devices), ("x",)), jax.make_mesh((4, 2), ("a", "b"))]


def _close(a, b, rtol=1e-10, atol=1e-12):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def test_items_are_split_over_every_device():
    """Each of 13 items (padded to 16) is computed on device ``i // 2`` of the flattened mesh."""
    for mesh in _meshes():
        names = tuple(mesh.axis_names)

        @jax.jit
        def where(xs):
            return shard_items(lambda part: jnp.full(part.shape, jax.lax.axis_index(names)), xs, mesh)

        out = np.asarray(where(jnp.arange(13.0)))
        np.testing.assert_array_equal(out, np.arange(16)[:13] // 2)


def test_sharded_estimators_equal_the_single_device_ones():
    """Every probe-parallel estimator on the 2-D (Explicit) mesh; `blockwise_slq` and `l11_norm`
    on the 1-D (Auto) mesh too."""
    with jax.enable_x64(True):
        loss_fn, params, batch = make_mlp()
        op = hc.HessianOperator(loss_fn, params, batch)
        key = jax.random.key(3)
        p = hp.by_leaf(params)
        calls = {
            "blockwise": lambda **m: hc.blockwise_slq(loss_fn, params, batch, key, partition=p, num_steps=10,
                                                      num_probes=3, **m),
            "l11": lambda **m: hc.l11_norm(op, params, key, num_probes=13, **m),
            "slq": lambda **m: hc.slq(op, params, key, num_steps=12, num_probes=5, **m),
            "trace": lambda **m: hc.hutchinson_trace(op, params, key, num_probes=11, **m),
            "block_l11": lambda **m: hc.blockwise_l11_norm_matvec(op, params, key, partition=p, num_probes=7,
                                                                  diagonal=True, **m),
            "top": lambda **m: hc.blockwise_top_eigenvalue(loss_fn, params, batch, key, partition=p, num_steps=10,
                                                           **m),
        }
        line, grid = _meshes()
        for name, call in calls.items():
            ref = call()
            for mesh in (grid, line) if name in ("blockwise", "l11") else (grid,):
                got = call(mesh=mesh)
                _close(got, ref)
                if name == "blockwise":
                    assert got.labels == tuple(p.labels(params))
                    assert bool(np.all(np.asarray(got.finite)))
        # and the sharded trace is the dense trace within its standard error
        tr = calls["trace"](mesh=line)
        assert abs(float(tr.trace) - np.trace(dense_of(make_mlp))) < 5 * float(tr.stderr) + 1e-9


def test_sharded_microbatch_hvp_equals_the_serial_scan_and_the_dense_hessian():
    """6 micro-batches of unequal counts over 8 devices: 2 padded micro-batches of weight 0."""
    with jax.enable_x64(True):
        loss_fn, params, batch = make_mlp()  # 32 examples, loss is the mean over them
        mb = hc.microbatch(batch, 4)
        # 6 micro-batches: the 4 of 8 examples, then the first two again with weights that still average
        mb = hc.MicroBatched(jax.tree.map(lambda x: jnp.concatenate([x, x[:2]]), mb.batch),
                             jnp.asarray([8.0, 8.0, 8.0, 8.0, 0.0, 0.0]))
        flat, unravel = ravel(params)
        v = unravel(jnp.asarray(np.random.default_rng(0).normal(size=flat.shape[0])))
        h = dense_of(make_mlp)
        want = h @ np.asarray(ravel(v)[0])
        serial = hc.hvp(loss_fn, params, mb, v)
        for mesh in _meshes():
            got = hc.hvp(loss_fn, params, mb, v, mesh=mesh)
            _close(got, serial)
            np.testing.assert_allclose(np.asarray(ravel(got)[0]), want, rtol=1e-9, atol=1e-12)
            op = hc.HessianOperator(loss_fn, params, mb, mesh=mesh)
            np.testing.assert_allclose(np.asarray(ravel(jax.jit(lambda o: o.bind()(v))(op))[0]), want,
                                       rtol=1e-9, atol=1e-12)
            ref = hc.slq(hc.HessianOperator(loss_fn, params, mb), params, jax.random.key(0), num_steps=8,
                         num_probes=2)
            _close(hc.slq(op, params, jax.random.key(0), num_steps=8, num_probes=2), ref, rtol=1e-8, atol=1e-10)


def test_sharded_operator_compiles_once():
    """The mesh is static data of the operator: new params of the same shapes reuse the program."""
    traces = {"n": 0}
    mesh = _meshes()[0]

    def loss_fn(p, b):
        traces["n"] += 1
        return jnp.mean((jnp.tanh(b["x"] @ p["w"]) - b["y"]) ** 2)

    rng = np.random.default_rng(0)
    batch = hc.microbatch({"x": jnp.asarray(rng.normal(size=(16, 3)), jnp.float32),
                           "y": jnp.asarray(rng.normal(size=(16, 2)), jnp.float32)}, 4)
    for scale in (1.0, 2.0):
        params = {"w": jnp.asarray(scale * rng.normal(size=(3, 2)), jnp.float32)}
        hc.slq(hc.HessianOperator(loss_fn, params, batch, mesh=mesh), params, jax.random.key(0), num_steps=4,
               num_probes=2)
        if scale == 1.0:
            first = traces["n"]
    assert first > 0 and traces["n"] == first


def test_mesh_errors_are_precise():
    with jax.enable_x64(True):
        loss_fn, params, batch = make_mlp()
        mesh = _meshes()[0]
        op = hc.HessianOperator(loss_fn, params, batch)
        with pytest.raises(ValueError, match="mesh must be a jax.sharding.Mesh"):
            hc.slq(op, params, jax.random.key(0), num_steps=4, num_probes=2, mesh=8)
        with pytest.raises(ValueError, match="wrap the batch with microbatch"):
            hc.HessianOperator(loss_fn, params, batch, mesh=mesh)
        with pytest.raises(ValueError, match="wrap the batch with microbatch"):
            hc.hvp(loss_fn, params, batch, params, mesh=mesh)
        sharded = hc.HessianOperator(loss_fn, params, hc.microbatch(batch, 4), mesh=mesh)
        with pytest.raises(ValueError, match="mesh given twice"):
            hc.hutchinson_trace(sharded, params, jax.random.key(0), num_probes=4, mesh=mesh)


_DISTRIBUTED = textwrap.dedent("""
    import os, socket
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax, jax.numpy as jnp, numpy as np
    s = socket.socket(); s.bind(("localhost", 0)); port = s.getsockname()[1]; s.close()
    jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=1, process_id=0)
    from jax.sharding import Mesh
    from heterogeneity import curvature as hc, partition as hp
    assert jax.process_count() == 1 and jax.device_count() == 4
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32), "b": jnp.zeros(2, jnp.float32)}
    batch = {"x": jnp.asarray(rng.normal(size=(8, 3)), jnp.float32), "y": jnp.asarray(rng.normal(size=(8, 2)), jnp.float32)}
    loss_fn = lambda p, b: jnp.mean((jnp.tanh(b["x"] @ p["w"] + p["b"]) - b["y"]) ** 2)
    mesh = Mesh(np.array(jax.devices()), ("hosts_and_devices",))
    p = hp.by_leaf(params)
    one = hc.blockwise_slq(loss_fn, params, batch, jax.random.key(1), partition=p, num_steps=4, num_probes=3)
    many = hc.blockwise_slq(loss_fn, params, batch, jax.random.key(1), partition=p, num_steps=4, num_probes=3, mesh=mesh)
    assert many.labels == one.labels == tuple(p.labels(params))
    np.testing.assert_allclose(np.asarray(many.nodes), np.asarray(one.nodes), rtol=1e-5, atol=1e-6)
    jax.distributed.shutdown()
    print("distributed ok")
""")


def test_single_process_distributed_runtime():
    """The multi-host entry point, ``jax.distributed.initialize``, with one process of 4 devices."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    res = subprocess.run([sys.executable, "-c", _DISTRIBUTED], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "distributed ok" in res.stdout
