"""Our curvature estimators against their peers, on identical weights and batches, in one run.

    python scripts/bench_peers.py --out peers.json              # full run (long: see below)
    python scripts/bench_peers.py --quick                       # tiny sizes, smoke test (~3 min on 2 cores)
    python scripts/bench_peers.py --sections c --threads 1      # one section, one core
    python scripts/bench_peers.py --sections a --gpt-layers 1,2 --group-by leaf

Needs the ``bench`` extra (``pip install -e '.[bench]'``: torch and PyHessian) for the torch
columns; without it only section c runs, ours alone. The full run compiles ``blockwise_slq``
cold once per (depth, ``group_by``), 12 fresh processes in all: budget about an hour on 2 idle
cores, most of it compiling the 8-layer GPT (``--no-hlo`` skips the extra lowering for the
StableHLO size, which costs about the cold trace + lower time again, after the timings).

a. **The blockwise-spectrum paper's PyTorch loop vs ours** on ``models.build("gpt", num_layers=L)``
   for L = 1, 2, 4, 8 (21 / 37 / 69 / 133 by-leaf blocks; d_model 64, so 63k / 113k / 213k /
   413k parameters). The torch side is a PyTorch port of our flax GPT (Pre-LN, LayerNorm eps 1e-6,
   separate Q/K/V/out, tanh-GELU, untied head without bias) loaded with the same weights. Its loop:
   one gradient with ``create_graph=True``, then for every block a Lanczos run (m=30, 1 Rademacher
   probe, full re-orthogonalisation by CGS2) whose HVPs are
   ``torch.autograd.grad(g_block, block_param, v, retain_graph=True)``. Ours:
   ``curvature.blockwise_slq(loss_fn, params, batch, key, partition=by_leaf(params), num_steps=30,
   num_probes=1, group_by=G)`` for every ``G`` in ``leaf``, ``module``, ``layer``, ``all``: cold (first call in
   a fresh process: trace + lower + compile + run, split by ``jax.monitoring`` events, with the
   number of XLA programs compiled and the StableHLO size) and warm (second call, new key).
   Checked: the torch block HVP equals ours block by block, and every block's top Ritz value agrees.
   Last rows: the growth of trace + lower + compile and of warm time from the shallowest to the
   deepest GPT, per ``group_by`` (a target of the engine, reported, not asserted).
b. **PyHessian and matfree** on the MLP 784-512-512-10 (synthetic batch of 256):
   - top eigenvalue *at equal accuracy*: PyHessian's power iteration (default tol 1e-3) started from
     our start vector; ours `top_eigenvalue` at the smallest m of a ladder whose error to the
     reference (ours at m = 100, with its residual bound) is at most PyHessian's. With one start
     vector the Lanczos value at m = PyHessian's HVP count can not be below PyHessian's (its iterate
     lies in that Krylov space): asserted;
   - SLQ m=100, 1 probe: PyHessian ``density`` vs our ``slq`` with ``reortho="full"`` and
     ``"none"`` vs matfree's ``tridiag_sym(reortho="full")``, all on the same probe; the HVP floor
     (m chained HVPs of the same operator, nothing else); the moments ``k = 1, 2`` (exact for any
     Lanczos) and the top nodes of the re-orthogonalised runs must agree;
   - trace with 100 probes: PyHessian ``trace(tol=-inf)`` fed our probes vs ``hutchinson_trace``
     (default ``batch_size="auto"``, and all probes vmapped): equal to float32 rounding.
   Ours are timed cold and warm in one fresh process per estimator (warm: a new
   ``HessianOperator`` on the same shapes and a new key; the loss's trace counter tells whether it
   recompiled). PyHessian draws its probes from ``torch``; it is fed ours, after checking on a small
   matrix that we reproduce our estimators' sampling (a failed check is reported, and then the
   same-probe assertions compare different probes and fail too).
c. **Correctness against dense eigh in float64** on an MLP and a GPT of a few hundred parameters:
   the spectral moments ``Σ w_i λ_i^k`` (k <= 4, exact for Gauss quadrature with m >= 3) of the SLQ
   quadrature against the exact ``vᵀHᵏv/‖v‖²`` of the same probe, for ours (``slq`` under
   ``jax.enable_x64(True)``; asserted <= 1e-10) and for PyHessian as shipped and with the
   ``+ 1e-6`` of its ``normalization`` removed (asserted <= 1e-10 without it, and the shipped
   error asserted to come from it).

Every claim printed as a comparison is also a check: the run prints ``ok``/``FAIL`` for each, the
JSON keeps them under ``checks``, and the script exits 1 after writing its results when one failed.
PyHessian 0.1 calls ``torch.eig`` (removed from torch): its module sees a proxy of ``torch`` whose
``eig`` is a ``torch.linalg.eigh`` shim (T is symmetric), patched at run time; nothing of
PyHessian is copied here. Every torch model is checked against the flax model (loss to 1e-5)
before anything is timed. Times: `time.perf_counter` with `jax.block_until_ready`; each torch or
PyHessian time is the best of ``1 + --reps`` runs after a warm-up, each ours warm time the median
of ``1 + --reps``. Compare ratios within one run: the machine may be shared. The JSON records the
command, machine, dates, load averages before and after, versions and environment.

torch's OpenMP pool spin-waits by default; with 2 threads on a loaded 2-core machine that made
each autograd call ~100x slower (9 s against 0.04 s for 100 small HVPs, measured while writing
this script). So ``OMP_WAIT_POLICY`` defaults to ``PASSIVE`` here (set it to ``ACTIVE`` in the
environment to time torch's default); it is recorded in the JSON.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import importlib
import json
import math
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
import warnings
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from heterogeneity import curvature as hc  # noqa: E402
from heterogeneity import models as hmod  # noqa: E402
from heterogeneity import partition as hp  # noqa: E402
from heterogeneity.tree import leaves_with_paths, ravel  # noqa: E402

# ----------------------------------------------------------------------------- configurations
GROUPINGS = ("leaf", "module", "layer", "all")  # blockwise_slq's group_by values compared in section a
FULL = dict(
    gpt_layers=(1, 2, 4, 8), gpt=dict(d_model=64, num_heads=2, max_len=32), gpt_batch=8, block_steps=30,
    mlp=dict(in_features=784, hidden=(512, 512), num_classes=10), mlp_batch=256, slq_steps=100,
    trace_probes=100, dense_steps=40, top_ladder=(2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 25, 30, 40, 50),
)
QUICK = dict(
    gpt_layers=(1,), gpt=dict(d_model=8, num_heads=2, max_len=8), gpt_batch=2, block_steps=8,
    mlp=dict(in_features=32, hidden=(16, 16), num_classes=10), mlp_batch=16, slq_steps=12,
    trace_probes=10, dense_steps=12, top_ladder=(2, 3, 4, 6, 8),
)
# dense-eigh models of section c (a few hundred parameters)
DENSE_MLP = dict(in_features=10, hidden=(16, 8), num_classes=3)
DENSE_GPT = dict(vocab_size=8, d_model=4, num_heads=2, num_layers=1, max_len=4)
DENSE_BATCH = 16
MOMENTS = (0, 1, 2, 3, 4)

# Tolerances of the checks. float32 ones are ~100x the spread seen on these models; float64 ones
# are far above rounding (~1e-13 measured) and far below a real fault (PyHessian's eps: ~1e-3).
LOSS_TOL = 1e-5          # flax vs torch loss, float32, relative to max(1, |loss|)
HVP_TOL = 1e-3           # flax vs torch HVP (block or full), float32, relative to the HVP's norm
SAME_PROBE_TOL = 1e-3    # same-probe SLQ moments k=1,2 of two float32 Lanczos runs, relative ...
F32_QUAD_TOL = 5e-7      # ... plus this times λmax^k: float32 Gauss weights are off by ~eps absolute, so a
#                          moment dominated by a bulk near 0 is off by ~eps λmax^k (3e-8 λmax² measured, MLP)
TOP_NODE_TOL = 2e-3      # top SLQ node, same probe, both re-orthogonalised: the probe's weight on the top
#                          eigenvector is ~2e-7 on the MLP and float32 rounding moves the node by up to 4e-4
TRACE_TOL = 1e-4         # same-probe Hutchinson means, relative to max(|tr|, sample std)
KRYLOV_TOL = 1e-4        # Lanczos(m = power-iteration HVPs) >= power iteration, float32 slack
EXACT_RITZ_TOL = 1e-3    # top node of a block with d_b <= m (exact on both sides), float32
DENSE_TOL = 1e-10        # float64 moments against dense eigh (ours; PyHessian without its eps)
DENSE_MODEL_TOL = 1e-12  # float64: flax vs torch loss, torch HVP vs dense H, asymmetry of H


def ritz_median_tol(m: int) -> float:
    """Median relative gap allowed between the top Ritz values of two independent probes per
    block. The top value converges first: at m=30 on the 1-layer GPT the median gap seen is 2e-7
    (max 4e-6); at m=8 (``--quick``) unconverged blocks reach 0.1."""
    return 1e-3 if m >= 20 else 0.3


# ----------------------------------------------------------------------------- bookkeeping
def now_utc() -> str:
    return f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S} UTC"


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def git(*args) -> str:
    try:
        out = subprocess.run(["git", "--no-optional-locks", *args], cwd=ROOT, capture_output=True, text=True,
                             timeout=30)
        return out.stdout.strip()
    except Exception as e:  # noqa: BLE001
        return f"unavailable: {e}"


def versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("jax", "jaxlib", "flax", "optax", "numpy", "matfree", "torch", "pyhessian"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _json_default(x):
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    if isinstance(x, (np.ndarray, jax.Array)):
        return np.asarray(x).tolist()
    return str(x)


def write_json_atomic(path: str, obj) -> None:
    """``json.dump`` to a temp file beside ``path``, then `os.replace` (atomic)."""
    path = os.path.abspath(path)
    fd, tmp = tempfile.mkstemp(prefix=".bench_peers.", suffix=".json", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=1, default=_json_default)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class Checks:
    """The run's assertions: each is printed and kept; `main` exits 1 after saving when one failed
    (a long benchmark keeps its numbers). A NaN compares False, so it fails."""

    def __init__(self):
        self.items: list[dict] = []

    def expect(self, name: str, ok, detail: str = "") -> bool:
        ok = bool(ok)
        self.items.append({"name": name, "ok": ok, "detail": detail})
        print(f"  [{'ok' if ok else 'FAIL'}] {name}: {detail}", flush=True)
        return ok

    @property
    def failed(self) -> list[dict]:
        return [c for c in self.items if not c["ok"]]


def worst_of(errors: dict):
    """(key, value) of the largest error, NaN counted as the largest (Python's `max` skips NaN)."""
    key = max(errors, key=lambda k: math.inf if math.isnan(errors[k]) else errors[k])
    return key, float(errors[key])


def rel(a, b) -> float:
    a, b = float(a), float(b)
    return abs(a - b) / max(abs(b), 1e-30)


def block(x):
    return jax.block_until_ready(x)


# ----------------------------------------------------------------------------- models and data
def flax_model(kind: str, cfg: dict, seed: int = 0):
    """(loss_fn, params, apply_fn) of our flax GPT or MLP."""
    net = hmod.build(kind, seed=seed, **cfg)
    apply_fn, params = hmod.functional(net)
    loss = hmod.lm_loss(apply_fn) if kind == "gpt" else hmod.classification_loss(apply_fn)
    return loss, params, apply_fn


def gpt_problem(num_layers: int, cfg: dict, batch_size: int, seed: int = 0):
    """(loss_fn, params, apply_fn, batch, model cfg) of section a: the char GPT on Shakespeare."""
    from heterogeneity import data as hd

    corpus = hd.load_shakespeare(max_chars=200_000)
    mcfg = dict(cfg, num_layers=num_layers, vocab_size=corpus.vocab_size)
    batch = corpus.sample_batch("train", batch_size, cfg["max_len"], jax.random.key(seed))
    return (*flax_model("gpt", mcfg), batch, mcfg)


def synthetic_batch(n: int, d: int, classes: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"x": jnp.asarray(rng.normal(size=(n, d)).astype(np.float32)),
            "y": jnp.asarray(rng.integers(0, classes, size=n).astype(np.int32))}


def save_problem(path: str, params, batch) -> None:
    arrays = {f"p:{p}": np.asarray(x) for p, x in leaves_with_paths(params)}
    arrays.update({f"b:{k}": np.asarray(v) for k, v in batch.items()})
    np.savez(path, **arrays)


def load_problem(path: str, like_params):
    z = np.load(path)
    leaves = [jnp.asarray(z[f"p:{p}"]) for p, _ in leaves_with_paths(like_params)]
    params = jax.tree.unflatten(jax.tree.structure(like_params), leaves)
    batch = {k[2:]: jnp.asarray(z[k]) for k in z.files if k.startswith("b:")}
    return params, batch


# ----------------------------------------------------------------------------- our side (JAX)
def our_probe(key, d: int, dtype):
    """The unit Rademacher probe `slq` draws for ``num_probes=1`` (checked by `check_sampling`)."""
    u = jax.random.rademacher(jax.random.split(key, 1)[0], (d,), dtype=dtype)
    return u / jnp.linalg.norm(u)


def our_trace_probes(key, n: int, d: int, dtype):
    """The Rademacher vectors of `hutchinson_trace` (checked by `check_sampling`)."""
    return jax.vmap(lambda k: jax.random.rademacher(k, (d,), dtype=dtype))(jax.random.split(key, n))


def our_top_start(key, d: int, dtype):
    """The Gaussian start vector of `top_eigenvalue` (checked by `check_sampling`)."""
    return jax.random.normal(key, (d,), dtype)


def check_sampling(dtype=jnp.float32) -> dict:
    """Do `our_probe`, `our_trace_probes` and `our_top_start` reproduce the estimators' own draws?
    On a random symmetric 12x12 matrix, where another sign pattern changes the result by O(1)."""
    d = 12
    a = np.random.default_rng(0).normal(size=(d, d))
    a64 = (a + a.T) / 2
    op = hc.LinearOperator(lambda v, m: m @ v, jnp.asarray(a64, dtype))
    like = jnp.zeros((d,), dtype)
    key = jax.random.key(123)
    lam, q = np.linalg.eigh(a64)
    spec = hc.slq(op, like, key, num_steps=d, num_probes=1, reortho="full")
    v = np.asarray(our_probe(key, d, dtype), np.float64)
    m3 = quadrature_moments(spec.nodes[0], spec.weights[0], (3,))[3]
    m3_exact = float(np.sum((q.T @ v) ** 2 * lam**3))
    est = hc.hutchinson_trace(op, like, key, num_probes=3)
    z = np.asarray(our_trace_probes(key, 3, d, dtype), np.float64)
    tr = float(np.mean(np.einsum("ni,ij,nj->n", z, a64, z)))
    top = hc.top_eigenvalue(op, like, key, num_steps=1)
    v0 = np.asarray(our_top_start(key, d, dtype), np.float64)
    rq = float(v0 @ a64 @ v0 / (v0 @ v0))
    return {"slq_probe": abs(m3 - m3_exact) <= 1e-3 * max(1.0, abs(m3_exact)),
            "trace_probes": abs(float(est.trace) - tr) <= 1e-4 * max(1.0, abs(tr)),
            "top_start": abs(float(top.value) - rq) <= 1e-4 * max(1.0, abs(rq))}


def quadrature_moments(nodes, weights, ks=MOMENTS) -> dict:
    n = np.asarray(nodes, np.float64).ravel()
    w = np.asarray(weights, np.float64).ravel()
    return {k: float(np.sum(w * n**k)) for k in ks}


def top_node(nodes, weights) -> float:
    n, w = np.asarray(nodes, np.float64).ravel(), np.asarray(weights, np.float64).ravel()
    return float(np.max(n[w > 0])) if np.any(w > 0) else float("nan")


def top_weight(nodes, weights) -> float:
    n, w = np.asarray(nodes, np.float64).ravel(), np.asarray(weights, np.float64).ravel()
    return float(w[w > 0][np.argmax(n[w > 0])]) if np.any(w > 0) else float("nan")


def tridiag_quadrature(diag, off):
    t = np.diag(np.asarray(diag, np.float64)) + np.diag(np.asarray(off, np.float64), 1) \
        + np.diag(np.asarray(off, np.float64), -1)
    lam, u = np.linalg.eigh(t)
    return lam, u[0] ** 2


_COMPILE_EVENTS = {"/jax/core/compile/jaxpr_trace_duration": "trace",
                   "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
                   "/jax/core/compile/backend_compile_duration": "compile"}


def compile_listener() -> dict:
    """Counts and seconds of JAX's trace / lower / XLA-compile events from now on."""
    stats = {v: {"n": 0, "s": 0.0} for v in _COMPILE_EVENTS.values()}

    def listen(event, duration, **_):
        if event in _COMPILE_EVENTS:
            stats[_COMPILE_EVENTS[event]]["n"] += 1
            stats[_COMPILE_EVENTS[event]]["s"] += float(duration)

    jax.monitoring.register_event_duration_secs_listener(listen)
    return stats


def worker_call(spec: dict, loss_fn, params):
    """``call(params, batch, key)`` of the estimator a worker times, and a summary of its result."""
    task, m = spec["task"], spec.get("num_steps")
    if task == "blockwise":
        part = hp.by_leaf(params)

        def call(p, b, k):
            return hc.blockwise_slq(loss_fn, p, b, k, partition=part, num_steps=m, num_probes=1,
                                    group_by=spec["group_by"])

        def summary(res):
            return {"blocks": len(res), "labels": list(res.labels), "finite": bool(np.all(np.asarray(res.finite))),
                    "top_node": {lab: top_node(s.nodes[0], s.weights[0]) for lab, s in res.as_dict().items()}}
    elif task == "top_eigenvalue":
        def call(p, b, k):
            return hc.top_eigenvalue(hc.HessianOperator(loss_fn, p, b), p, k, num_steps=m)

        def summary(res):
            return {"value": float(res.value), "error_bound": float(res.error_bound), "finite": bool(res.finite)}
    elif task in ("slq_full", "slq_none"):
        def call(p, b, k):
            return hc.slq(hc.HessianOperator(loss_fn, p, b), p, k, num_steps=m, num_probes=1,
                          reortho=task.split("_")[1])

        def summary(res):
            return {"nodes": np.asarray(res.nodes[0]).tolist(), "weights": np.asarray(res.weights[0]).tolist(),
                    "finite": bool(res.finite)}
    elif task == "trace":
        def call(p, b, k):
            return hc.hutchinson_trace(hc.HessianOperator(loss_fn, p, b), p, k, num_probes=spec["num_probes"],
                                       batch_size=spec.get("batch_size", "auto"))

        def summary(res):
            return {"value": float(res.trace), "stderr": float(res.stderr), "finite": bool(res.finite)}
    elif task == "hvp_floor":
        @jax.jit
        def call(p, b, k):  # m chained HVPs of the same operator, normalised: the cost floor of m-step Lanczos
            mv = hc.HessianOperator(loss_fn, p, b).bind()
            flat, unravel = ravel(p)

            def step(_, x):
                y = ravel(mv(unravel(x)))[0]
                return y / jnp.linalg.norm(y)
            return jax.lax.fori_loop(0, m, step, our_probe(k, flat.shape[0], flat.dtype))

        def summary(res):
            return {"finite": bool(jnp.all(jnp.isfinite(res)))}
    elif task == "matfree":
        from matfree import decomp

        tri = decomp.tridiag_sym(m, materialize=False, reortho="full")

        @jax.jit
        def call(p, b, k):
            mv = hc.HessianOperator(loss_fn, p, b).bind()
            flat, unravel = ravel(p)
            return tri(lambda x: ravel(mv(unravel(x)))[0], our_probe(k, flat.shape[0], flat.dtype)).J_small

        def summary(res):
            lam, w = tridiag_quadrature(*res)
            return {"nodes": lam.tolist(), "weights": w.tolist(), "finite": bool(np.all(np.isfinite(lam)))}
    else:
        raise SystemExit(f"unknown worker task {task!r}")
    return call, summary


def worker(spec: dict) -> dict:
    """One cold call and ``1 + reps`` warm calls of one estimator of ours (in a fresh process)."""
    stats = compile_listener()
    loss_fn, like, _ = flax_model(spec["model"], spec["cfg"])
    params, batch = load_problem(spec["npz"], like)
    traces = {"n": 0}

    def counted(p, b):  # Python runs only while JAX traces: a cached call leaves the count unchanged
        traces["n"] += 1
        return loss_fn(p, b)

    out: dict[str, Any] = {"task": spec["task"], "d": int(ravel(params)[0].shape[0])}
    if spec["task"] == "top_ladder":  # values and warm times of top_eigenvalue over a ladder of m
        out["ladder"] = []
        for m in spec["ladder"]:
            call, summary = worker_call(dict(spec, task="top_eigenvalue", num_steps=m), counted, params)
            res = summary(block(call(params, batch, jax.random.key(0))))
            t0 = time.perf_counter()
            block(call(params, batch, jax.random.key(0)))
            out["ladder"].append(dict(res, num_steps=m, warm_s=time.perf_counter() - t0))
        return out
    call, summary = worker_call(spec, counted, params)
    before = {k: dict(v) for k, v in stats.items()}
    t0 = time.perf_counter()
    res = block(call(params, batch, jax.random.key(0)))
    out["cold_s"] = time.perf_counter() - t0
    out["cold_events"] = {k: {"n": stats[k]["n"] - before[k]["n"], "s": stats[k]["s"] - before[k]["s"]}
                          for k in stats}
    out["traces_cold"] = traces["n"]
    warm = []
    for r in range(1 + int(spec.get("reps", 0))):
        t0 = time.perf_counter()
        block(call(params, batch, jax.random.key(1 + r)))
        warm.append(time.perf_counter() - t0)
    out.update(warm_s=float(np.median(warm)), warm_all_s=warm, retraced_on_warm=traces["n"] != out["traces_cold"])
    out.update(summary(res))
    if spec.get("hlo"):  # the StableHLO of the whole call, lowered once more outside the timings
        t0 = time.perf_counter()
        out["stablehlo_chars"] = len(jax.jit(call).lower(params, batch, jax.random.key(0)).as_text())
        out["stablehlo_lower_s"] = time.perf_counter() - t0
    if spec["task"] == "blockwise":
        out["groups"] = len(hc.block_packing(hp.by_leaf(params), params, group_by=spec["group_by"]))
    out["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_worker(spec: dict, tmpdir: str, timeout: float = 3600) -> dict:
    """`worker` in a fresh Python process (nothing compiled, persistent compilation cache off)."""
    fd, spec_path = tempfile.mkstemp(prefix=f"spec_{spec['task']}_", suffix=".json", dir=tmpdir)
    with os.fdopen(fd, "w") as fh:
        json.dump(spec, fh)
    env = dict(os.environ)
    for var in ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"):
        env.pop(var, None)
    env["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", spec_path], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"worker {spec['task']} failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}")
    out = json.loads(lines[-1][len("RESULT "):])
    out["process_wall_s"] = time.perf_counter() - t0
    return out


# ----------------------------------------------------------------------------- torch side
def torch_modules():
    """Torch classes reproducing our flax GPT and MLP (imported lazily: torch is optional)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Attention(nn.Module):
        def __init__(self, d, h):
            super().__init__()
            self.h = h
            self.query, self.key, self.value, self.out = (nn.Linear(d, d) for _ in range(4))

        def forward(self, x, mask):
            b, s, d = x.shape
            split = lambda t: t.view(b, s, self.h, d // self.h).transpose(1, 2)  # noqa: E731
            q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
            logits = q @ k.transpose(-2, -1) / math.sqrt(d // self.h)
            logits = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
            y = (torch.softmax(logits, -1) @ v).transpose(1, 2).reshape(b, s, d)
            return self.out(y)

    class FeedForward(nn.Module):
        def __init__(self, d, dff):
            super().__init__()
            self.fc_in, self.fc_out = nn.Linear(d, dff), nn.Linear(dff, d)

        def forward(self, x):
            return self.fc_out(F.gelu(self.fc_in(x), approximate="tanh"))  # jax.nn.gelu's default

    class Block(nn.Module):  # Pre-LN
        def __init__(self, d, h, dff):
            super().__init__()
            self.attn, self.mlp = Attention(d, h), FeedForward(d, dff)
            self.norm_attn, self.norm_mlp = nn.LayerNorm(d, eps=1e-6), nn.LayerNorm(d, eps=1e-6)  # flax's eps

        def forward(self, x, mask):
            x = x + self.attn(self.norm_attn(x), mask)
            return x + self.mlp(self.norm_mlp(x))

    class GPT(nn.Module):
        def __init__(self, vocab_size, max_len, d_model, num_heads, num_layers, d_ff=None):
            super().__init__()
            self.embed, self.pos_embed = nn.Embedding(vocab_size, d_model), nn.Embedding(max_len, d_model)
            self.layers = nn.ModuleList([Block(d_model, num_heads, d_ff or 4 * d_model) for _ in range(num_layers)])
            self.final_norm = nn.LayerNorm(d_model, eps=1e-6)
            self.head = nn.Linear(d_model, vocab_size, bias=False)  # untied, no bias

        def forward(self, x):
            s = x.shape[1]
            h = self.embed(x) + self.pos_embed(torch.arange(s))[None]
            mask = torch.tril(torch.ones(s, s, dtype=torch.bool))[None, None]
            for layer in self.layers:
                h = layer(h, mask)
            return self.head(self.final_norm(h))

    class MLP(nn.Module):
        def __init__(self, in_features, hidden, num_classes):
            super().__init__()
            widths = (in_features,) + tuple(hidden)
            self.layers = nn.ModuleList([nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:])])
            self.head = nn.Linear(widths[-1], num_classes)

        def forward(self, x):
            x = x.reshape(x.shape[0], -1)
            for layer in self.layers:
                x = torch.relu(layer(x))
            return self.head(x)

    return GPT, MLP


def torch_model(kind: str, cfg: dict):
    GPT, MLP = torch_modules()
    if kind == "gpt":
        return GPT(cfg["vocab_size"], cfg["max_len"], cfg["d_model"], cfg["num_heads"], cfg["num_layers"])
    return MLP(cfg["in_features"], cfg["hidden"], cfg["num_classes"])


def _flax_get(params, path: str):
    node = params
    for part in path.split("/"):
        node = node[int(part)] if isinstance(node, dict) and part not in node and part.isdigit() else node[part]
    return node


def torch_layout(model, params) -> list[dict]:
    """Per torch parameter (in ``model.parameters()`` order): its flax path, shape, offset in our
    `ravel` vector and whether it is stored transposed (Linear weights: torch (out, in), flax (in, out))."""
    from torch import nn

    offsets, off = {}, 0
    for path, x in leaves_with_paths(params):
        offsets[path] = (tuple(int(s) for s in np.shape(x)), off)
        off += int(np.size(x))
    flax_name = {}
    for mname, mod in model.named_modules():
        prefix = mname.replace(".", "/")
        if isinstance(mod, nn.Linear):
            flax_name[f"{mname}.weight"] = (f"{prefix}/kernel", True)
            if mod.bias is not None:
                flax_name[f"{mname}.bias"] = (f"{prefix}/bias", False)
        elif isinstance(mod, nn.LayerNorm):
            flax_name[f"{mname}.weight"] = (f"{prefix}/scale", False)
            flax_name[f"{mname}.bias"] = (f"{prefix}/bias", False)
        elif isinstance(mod, nn.Embedding):
            flax_name[f"{mname}.weight"] = (f"{prefix}/embedding", False)
    out = []
    for name, p in model.named_parameters():
        path, transposed = flax_name[name]
        shape, off = offsets[path]
        want = tuple(reversed(shape)) if transposed else shape
        if tuple(p.shape) != want:
            raise ValueError(f"{name}: torch shape {tuple(p.shape)} vs flax {path} {shape}")
        out.append(dict(name=name, path=path, shape=shape, offset=off, transposed=transposed))
    if len(out) != len(offsets):
        raise ValueError(f"torch model has {len(out)} parameters, flax {len(offsets)}")
    return out


def load_flax_into_torch(model, params, dtype=None):
    import torch

    if dtype is not None:
        model.to(dtype)
    layout = torch_layout(model, params)
    with torch.no_grad():
        for (_, p), item in zip(model.named_parameters(), layout):
            x = np.asarray(_flax_get(params, item["path"]))
            p.copy_(torch.from_numpy(np.array(x.T if item["transposed"] else x)).to(p.dtype))
    return layout


def flat_to_torch(flat, layout, dtype):
    """Our `ravel` vector as a list of tensors shaped like the torch parameters."""
    import torch

    flat = np.asarray(flat)
    out = []
    for item in layout:
        x = flat[item["offset"]:item["offset"] + int(np.prod(item["shape"], dtype=np.int64))].reshape(item["shape"])
        out.append(torch.from_numpy(np.array(x.T if item["transposed"] else x)).to(dtype))
    return out


def torch_to_flat(tensors, layout, d: int) -> np.ndarray:
    flat = np.zeros((d,), np.float64)
    for t, item in zip(tensors, layout):
        x = t.detach().cpu().double().numpy()
        x = x.T if item["transposed"] else x
        flat[item["offset"]:item["offset"] + x.size] = x.reshape(-1)
    return flat


def torch_batch(model, batch):
    import torch

    x = torch.from_numpy(np.array(batch["x"]))
    x = x.to(next(model.parameters()).dtype) if x.is_floating_point() else x.long()
    return x, torch.from_numpy(np.array(batch["y"]).astype(np.int64))


def torch_criterion(logits, y):
    """Mean cross entropy over every position (our `lm_loss` / `classification_loss`)."""
    import torch.nn.functional as F

    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def check_same_model(model, loss_fn, params, batch, checks: Checks, name: str, tol=LOSS_TOL) -> dict:
    """The flax and torch losses on the same weights and batch (a check)."""
    import torch

    with torch.no_grad():
        lt = float(torch_criterion(model(torch_batch(model, batch)[0]), torch_batch(model, batch)[1]))
    lj = float(jax.jit(loss_fn)(params, batch))
    out = {"loss_flax": lj, "loss_torch": lt, "loss_abs_diff": abs(lj - lt)}
    checks.expect(f"{name}: flax and torch losses agree", out["loss_abs_diff"] <= tol * max(1.0, abs(lj)),
                  f"{lj:.9g} vs {lt:.9g} (tol {tol:g})")
    return out


def torch_block_hvps(model, batch) -> list[tuple[str, int, Any]]:
    """The seed loop's operators: one gradient with ``create_graph=True``, then per parameter
    ``v -> autograd.grad(g_b, p_b, v)`` = ``H_bb v``."""
    import torch

    x, y = torch_batch(model, batch)
    named = list(model.named_parameters())
    grads = torch.autograd.grad(torch_criterion(model(x), y), [p for _, p in named], create_graph=True)

    def make(g, p):
        def hvp(v):
            return torch.autograd.grad(g, p, grad_outputs=v.view_as(p), retain_graph=True)[0].reshape(-1)
        return hvp
    return [(name, p.numel(), make(g, p)) for (name, p), g in zip(named, grads)]


def torch_block_lanczos(hvp, d: int, m: int, gen, dtype):
    """Lanczos with full re-orthogonalisation (CGS2 against the stored basis), one Rademacher probe;
    stops early at an invariant subspace (the quadrature is then exact). Returns (nodes, weights)."""
    import torch

    v = (torch.randint(0, 2, (d,), generator=gen).to(dtype) * 2 - 1) / math.sqrt(d)
    basis = torch.zeros(m, d, dtype=dtype)
    basis[0] = v
    alphas, betas = [], []
    beta, v_prev, scale = 0.0, torch.zeros_like(v), 0.0
    for j in range(m):
        w = hvp(basis[j])
        a = float(w @ basis[j])
        alphas.append(a)
        w = w - a * basis[j] - beta * v_prev
        q = basis[: j + 1]
        for _ in range(2):
            w = w - q.T @ (q @ w)
        beta = float(torch.linalg.vector_norm(w))
        scale = max(scale, abs(a) + beta)
        if j == m - 1 or beta <= 1e-6 * scale:
            break
        betas.append(beta)
        v_prev = basis[j]
        basis[j + 1] = w / beta
    return tridiag_quadrature(alphas, betas)


def torch_seed_loop(model, batch, m: int, seed: int = 0) -> dict:
    """The blockwise-spectrum paper's loop: grad once (create_graph), then per block a Lanczos."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    ops = torch_block_hvps(model, batch)
    t_grad = time.perf_counter() - t0
    counter = {"n": 0}
    top = {}
    for name, d, hvp in ops:
        def counted(v, hvp=hvp):
            counter["n"] += 1
            return hvp(v)

        top[name] = top_node(*torch_block_lanczos(counted, d, m, gen, next(model.parameters()).dtype))
    return {"total_s": time.perf_counter() - t0, "grad_s": t_grad, "hvps": counter["n"], "top_node": top}


def torch_warmup() -> None:
    """One double backward on a toy model: torch's first autograd call pays one-off setup that a
    researcher's process has long paid (ours pays its own in the cold column)."""
    import torch

    lin = torch.nn.Linear(4, 4)
    g = torch.autograd.grad(lin(torch.ones(2, 4)).square().sum(), lin.weight, create_graph=True)[0]
    torch.autograd.grad(g, lin.weight, grad_outputs=torch.ones_like(g))


def best_of(fn, reps: int):
    """(result of the last run, best time) over ``1 + reps`` runs of ``fn() -> (result, seconds)``."""
    times, res = [], None
    for _ in range(1 + reps):
        res, t = fn()
        times.append(t)
    return res, min(times), times


# --- PyHessian ---------------------------------------------------------------------------------
class _TorchProxy:
    """What PyHessian's module sees as ``torch``: the real module, plus ``eig`` (removed from torch;
    a `torch.linalg.eigh` shim, T is symmetric) and, inside `feed`, ``randint_like``/``randn``
    that return given probe vectors in order."""

    def __init__(self, torch):
        self._torch = torch
        self._ints: list = []
        self._normals: list = []

    def __getattr__(self, name):
        return getattr(self._torch, name)

    def eig(self, a, eigenvectors=False):  # the torch<1.9 API: (n, 2) [real, imag] and vectors
        evals, evecs = self._torch.linalg.eigh(a)
        return self._torch.stack([evals, self._torch.zeros_like(evals)], 1), (evecs if eigenvectors else None)

    def randint_like(self, p, *args, **kwargs):
        if not self._ints:
            return self._torch.randint_like(p, *args, **kwargs)
        t = self._ints.pop(0)
        if tuple(t.shape) != tuple(p.shape):
            raise AssertionError(f"fed probe of shape {tuple(t.shape)} for a parameter of shape {tuple(p.shape)}")
        return ((t.sign() + 1) / 2).to(p.dtype)  # 0/1; PyHessian maps 0 -> -1

    def randn(self, *size, **kwargs):
        if not self._normals:
            return self._torch.randn(*size, **kwargs)
        t = self._normals.pop(0)
        if tuple(t.shape) != tuple(self._torch.Size(*size)):
            raise AssertionError(f"fed start vector of shape {tuple(t.shape)} for {size}")
        return t.to(kwargs.get("dtype") or self._torch.get_default_dtype())

    @contextlib.contextmanager
    def feed(self, ints=(), normals=()):
        self._ints, self._normals = list(ints), list(normals)
        try:
            yield self
        finally:
            left = len(self._ints) + len(self._normals)
            self._ints, self._normals = [], []
            if left:
                raise AssertionError(f"PyHessian drew {left} fewer probe tensors than fed")


_PROXY: _TorchProxy | None = None
_HVP_COUNT = {"n": 0}


def pyhessian_module():
    """The module ``pyhessian.hessian`` (the package rebinds that attribute to the class), patched at
    run time for current torch (see `_TorchProxy`), with an HVP counter."""
    global _PROXY
    ph = importlib.import_module("pyhessian.hessian")
    if _PROXY is None:
        import torch

        _PROXY = _TorchProxy(torch)
        ph.torch = _PROXY
        original = ph.hessian_vector_product

        def counted(*a, **k):
            _HVP_COUNT["n"] += 1
            return original(*a, **k)

        ph.hessian_vector_product = counted
    return ph


@contextlib.contextmanager
def pyhessian_without_eps():
    """PyHessian with ``normalization(v) = v / ‖v‖`` (its ``+ 1e-6`` removed), to attribute errors.
    Both module globals are patched: ``density`` calls the copy in ``hessian``, ``orthnormal`` the
    one in ``utils``."""
    ph = pyhessian_module()
    pu = importlib.import_module("pyhessian.utils")

    def normalization(v):
        s = float(pu.group_product(v, v)) ** 0.5
        return [vi / s for vi in v]

    saved = (ph.normalization, pu.normalization)
    ph.normalization = pu.normalization = normalization
    try:
        yield
    finally:
        ph.normalization, pu.normalization = saved


def timed_pyhessian(model, batch, method: str, feed=None, **kwargs):
    """``pyhessian.hessian(model, ...).<method>(**kwargs)``, timed from construction (its forward and
    create_graph backward) to the result; grads cleared first (PyHessian's ``backward`` would
    otherwise add onto a previous create_graph gradient and double the Hessian)."""
    ph = pyhessian_module()
    _HVP_COUNT["n"] = 0
    x, y = torch_batch(model, batch)
    model.zero_grad(set_to_none=True)
    with _PROXY.feed(**feed) if feed else contextlib.nullcontext():
        t0 = time.perf_counter()
        h = ph.hessian(model, torch_criterion, data=(x, y), cuda=False)
        out = getattr(h, method)(**kwargs)
        total = time.perf_counter() - t0
    model.zero_grad(set_to_none=True)
    return (out, _HVP_COUNT["n"]), total


# ----------------------------------------------------------------------------- a. blockwise GPT
def block_hvp_check(model, loss_fn, params, batch, layout, checks: Checks, name: str) -> dict:
    """Every block's torch HVP of the loop (`torch_block_hvps`) against ours, ``H_bb u`` for a
    random unit ``u`` on the block: the loop and ``blockwise_slq`` see the same operators. Errors
    are relative to ``max(‖H_bb u‖, 1e-2 max_b ‖H_bb u‖)``: some blocks have ``H_bb = 0`` exactly
    (a key bias shifts every logit of a softmax row alike), where both sides return rounding noise."""
    import torch

    hv = jax.jit(lambda p, b, t: hc.hvp(loss_fn, p, b, t))
    leaves, treedef = jax.tree.flatten(params)
    ops = {op[0]: op[2] for op in torch_block_hvps(model, batch)}
    rng = np.random.default_rng(0)
    err, size = {}, {}
    for item in layout:
        i = next(j for j, (p, _) in enumerate(leaves_with_paths(params)) if p == item["path"])
        u = rng.normal(size=item["shape"])
        u = (u / np.linalg.norm(u)).astype(np.float32)
        tangent = [jnp.zeros_like(x) for x in leaves]
        tangent[i] = jnp.asarray(u)
        ours = np.asarray(jax.tree.leaves(hv(params, batch, jax.tree.unflatten(treedef, tangent)))[i], np.float64)
        ut = torch.from_numpy(np.array(u.T if item["transposed"] else u))
        theirs = ops[item["name"]](ut).detach().double().numpy().reshape(ut.shape)
        theirs = theirs.T if item["transposed"] else theirs
        err[item["path"]], size[item["path"]] = float(np.linalg.norm(theirs - ours)), float(np.linalg.norm(ours))
    floor = 1e-2 * max(size.values())
    rels = {p: err[p] / max(size[p], floor) for p in err}
    worst, err_max = worst_of(rels)
    checks.expect(f"{name}: torch block HVPs equal ours (H_bb u, every block)", err_max <= HVP_TOL,
                  f"max rel {err_max:.1e} at {worst} (tol {HVP_TOL:g})")
    return {"max_rel": err_max, "worst_block": worst}


def ritz_agreement(ours_top: dict, torch_top: dict, sizes: dict, m: int, checks: Checks, name: str) -> dict:
    """Top Ritz value per block, ours against torch (independent probes: the top value converges
    first). Blocks with ``d_b <= m`` are exact on both sides and must agree to float32."""
    scale = max(abs(v) for v in torch_top.values())
    diffs = {p: rel(ours_top.get(p, float("nan")), v) for p, v in torch_top.items() if abs(v) > 1e-3 * scale}
    exact = {p: diffs[p] for p in diffs if sizes[p] <= m}
    med, (worst, diff_max) = float(np.median(list(diffs.values()))), worst_of(diffs)
    checks.expect(f"{name}: same block labels as torch", set(ours_top) == set(torch_top),
                  f"{len(ours_top)} vs {len(torch_top)} blocks")
    checks.expect(f"{name}: top Ritz value per block vs torch, median", med <= ritz_median_tol(m),
                  f"median rel {med:.1e} over {len(diffs)} blocks (tol {ritz_median_tol(m):g}); max {diff_max:.1e}"
                  f" at {worst}")
    if exact:
        worst_exact, exact_max = worst_of(exact)
        checks.expect(f"{name}: top eigenvalue of the {len(exact)} blocks with d_b <= m={m} (exact both sides)",
                      exact_max <= EXACT_RITZ_TOL, f"max rel {exact_max:.1e} at {worst_exact} (tol {EXACT_RITZ_TOL:g})")
    return {"median": med, "max": diff_max, "worst_block": worst, "compared": len(diffs),
            "exact_blocks": len(exact), "exact_max": worst_of(exact)[1] if exact else None}


def section_a(cfg, rows, results, checks: Checks, tmpdir, reps, groupings, hlo, save) -> None:
    """The blockwise-spectrum paper's torch loop vs blockwise_slq on the flax GPT."""
    torch_warmup()
    m = cfg["block_steps"]
    out = results.setdefault("a_blockwise_gpt", {})
    for L in cfg["gpt_layers"]:
        loss_fn, params, _, batch, mcfg = gpt_problem(L, cfg["gpt"], cfg["gpt_batch"])
        d = int(ravel(params)[0].shape[0])
        sizes = {p: int(np.size(x)) for p, x in leaves_with_paths(params)}
        model = torch_model("gpt", mcfg)
        layout = load_flax_into_torch(model, params)
        name = f"GPT L={L} ({len(sizes)} blocks, {d:,} params, batch {cfg['gpt_batch']}x{cfg['gpt']['max_len']})"
        print(f"\n== a. {name}", flush=True)
        entry = out[str(L)] = dict(blocks=len(sizes), params=d, num_steps=m)
        entry["same_model"] = check_same_model(model, loss_fn, params, batch, checks, name)
        entry["block_hvp"] = block_hvp_check(model, loss_fn, params, batch, layout, checks, name)
        tl, t_torch, t_all = best_of(lambda: (r := torch_seed_loop(model, batch, m), r["total_s"]), reps)
        entry["torch"] = dict(tl, best_s=t_torch, all_s=t_all)
        print(f"torch loop: best {t_torch:.2f} s of {len(t_all)} ({tl['hvps']} HVPs)", flush=True)
        rows.append((name, f"torch loop: grad (create_graph) + {len(sizes)} x Lanczos m={m}, full reortho "
                           f"({tl['hvps']} HVPs), best of {len(t_all)}", f"{t_torch:.2f} s", "1.00"))
        torch_top = {item["path"]: tl["top_node"][item["name"]] for item in layout}
        npz = os.path.join(tmpdir, f"gpt{L}.npz")
        save_problem(npz, params, batch)
        for g in groupings:
            spec = dict(task="blockwise", model="gpt", cfg=mcfg, npz=npz, num_steps=m, reps=reps, group_by=g, hlo=hlo)
            try:
                ours = run_worker(spec, tmpdir)
            except (RuntimeError, subprocess.TimeoutExpired) as e:  # keep the other depths and groupings
                checks.expect(f"{name} group_by={g}: worker ran", False, str(e)[-600:])
                entry[f"ours_{g}"] = {"error": str(e)[-4000:]}
                save()
                continue
            ev = ours["cold_events"]
            print(f"ours group_by={g}: cold {ours['cold_s']:.2f} s (trace {ev['trace']['s']:.1f}, lower "
                  f"{ev['lower']['s']:.1f}, compile {ev['compile']['s']:.1f} in {ev['compile']['n']} programs), "
                  f"warm {ours['warm_s']:.3f} s", flush=True)
            agree = ritz_agreement(ours["top_node"], torch_top, sizes, m, checks, f"{name} group_by={g}")
            checks.expect(f"{name} group_by={g}: finite", ours["finite"], "every block's Spectrum.finite")
            entry[f"ours_{g}"] = dict(ours, top_ritz_vs_torch=agree, ratio_torch_over_ours_cold=t_torch / ours["cold_s"],
                                      ratio_torch_over_ours_warm=t_torch / ours["warm_s"])
            size = f", StableHLO {ours['stablehlo_chars'] / 1e6:.2f}M chars" if "stablehlo_chars" in ours else ""
            rows.append((name, f"ours blockwise_slq(group_by={g!r}) cold: fresh process, trace + lower + compile + run "
                               f"({ours['groups']} groups)",
                         f"{ours['cold_s']:.2f} s (trace {ev['trace']['s']:.1f} + lower {ev['lower']['s']:.1f} + "
                         f"compile {ev['compile']['s']:.1f} s, {ev['compile']['n']} XLA programs{size})",
                         f"torch/ours {t_torch / ours['cold_s']:.2f}x; peak RSS {ours['max_rss_mb']:.0f} MB"))
            rows.append((name, f"ours blockwise_slq(group_by={g!r}) warm (new key, median of {len(ours['warm_all_s'])})",
                         f"{ours['warm_s']:.3f} s", f"torch/ours {t_torch / ours['warm_s']:.1f}x"
                         + ("; RETRACED" if ours["retraced_on_warm"] else "")))
            rows.append((name, f"top Ritz value per block, torch vs ours group_by={g!r} (own probes)",
                         f"median rel diff {agree['median']:.1e}", f"max {agree['max']:.1e} over {agree['compared']} blocks"))
            save()
        rows.append((name, "block HVPs H_bb u, torch loop vs ours, every block", f"max rel {entry['block_hvp']['max_rel']:.1e}",
                     f"tol {HVP_TOL:g}"))
    depths = [str(L) for L in cfg["gpt_layers"]]
    if len(depths) > 1:  # growth from the shallowest to the deepest GPT (a target, not a check)
        first, last = out[depths[0]], out[depths[-1]]
        for g in groupings:
            lo, hi = first.get(f"ours_{g}", {}), last.get(f"ours_{g}", {})
            if "cold_events" not in lo or "cold_events" not in hi:
                continue
            c_lo, c_hi = (sum(x["cold_events"][k]["s"] for k in ("trace", "lower", "compile")) for x in (lo, hi))
            growth = dict(blocks=last["blocks"] / first["blocks"], trace_lower_compile=c_hi / c_lo,
                          warm=hi["warm_s"] / lo["warm_s"], torch=last["torch"]["best_s"] / first["torch"]["best_s"])
            out[f"growth_{g}"] = growth
            rows.append((f"GPT L={depths[0]} -> L={depths[-1]}", f"growth, group_by={g!r}: trace + lower + compile / warm",
                         f"{growth['trace_lower_compile']:.2f}x / {growth['warm']:.2f}x",
                         f"blocks {growth['blocks']:.2f}x; torch loop {growth['torch']:.2f}x"))


# ----------------------------------------------------------------------------- b. PyHessian, matfree
def torch_full_hvp(model, batch, u: np.ndarray, layout) -> np.ndarray:
    """``H u`` of the torch model (one create_graph gradient, one double backward), in our order."""
    import torch

    x, y = torch_batch(model, batch)
    ps = list(model.parameters())
    grads = torch.autograd.grad(torch_criterion(model(x), y), ps, create_graph=True)
    hu = torch.autograd.grad(grads, ps, grad_outputs=flat_to_torch(u, layout, ps[0].dtype))
    return torch_to_flat(hu, layout, u.shape[0])


def full_hvp_check(model, loss_fn, params, batch, layout, checks: Checks, name: str, tol: float) -> float:
    flat, unravel = ravel(params)
    u = np.random.default_rng(0).normal(size=flat.shape).astype(np.asarray(flat).dtype)
    ours = np.asarray(ravel(jax.jit(lambda p, b, t: hc.hvp(loss_fn, p, b, t))(params, batch, unravel(u)))[0], np.float64)
    err = float(np.linalg.norm(torch_full_hvp(model, batch, u, layout) - ours) / np.linalg.norm(ours))
    checks.expect(f"{name}: torch HVP equals ours (H u, random u)", err <= tol, f"rel {err:.1e} (tol {tol:g})")
    return err


def section_b(cfg, rows, results, checks: Checks, tmpdir, reps, matched: dict, save) -> None:
    """PyHessian and matfree against ours on the MLP."""
    import torch

    torch_warmup()
    mc = cfg["mlp"]
    loss_fn, params, _ = flax_model("mlp", mc)
    batch = synthetic_batch(cfg["mlp_batch"], mc["in_features"], mc["num_classes"])
    flat = ravel(params)[0]
    d, f32 = int(flat.shape[0]), flat.dtype
    model = torch_model("mlp", mc)
    layout = load_flax_into_torch(model, params)
    widths = "-".join(str(x) for x in (mc["in_features"], *mc["hidden"], mc["num_classes"]))
    name = f"MLP {widths} ({d:,} params, batch {cfg['mlp_batch']})"
    print(f"\n== b. {name}", flush=True)
    out = results.setdefault("b_mlp", {"name": name, "params": d, "probes_matched": matched})
    out["same_model"] = check_same_model(model, loss_fn, params, batch, checks, name)
    out["full_hvp_rel"] = full_hvp_check(model, loss_fn, params, batch, layout, checks, name, HVP_TOL)
    npz = os.path.join(tmpdir, "mlp.npz")
    save_problem(npz, params, batch)
    key0 = jax.random.key(0)  # the key of every cold call of ours (the worker's first call)

    def ours(label, task, **kw):
        r = run_worker(dict(model="mlp", cfg=mc, npz=npz, reps=reps, task=task, **kw), tmpdir)
        print(f"ours {label}: cold {r['cold_s']:.2f} s, warm {r['warm_s']:.3f} s"
              + (" RETRACED" if r["retraced_on_warm"] else ""), flush=True)
        out[f"ours_{label}"] = r
        return r

    def retr(r):
        return "; RETRACED" if r["retraced_on_warm"] else "; no retrace"

    # --- top eigenvalue at equal accuracy
    start = flat_to_torch(our_top_start(key0, d, f32), layout, torch.float32)
    (res, n_ph), t_ph, _ = best_of(lambda: timed_pyhessian(model, batch, "eigenvalues", feed={"normals": start},
                                                          top_n=1), reps)
    ph_top, m_ref = float(res[0][0]), cfg["slq_steps"]
    ladder = sorted({s for s in cfg["top_ladder"] if s < n_ph} | {n_ph, m_ref})
    lad = {e["num_steps"]: e for e in run_worker(dict(model="mlp", cfg=mc, npz=npz, task="top_ladder", ladder=ladder),
                                                   tmpdir)["ladder"]}
    ref, bound = lad[m_ref]["value"], lad[m_ref]["error_bound"]
    slack = KRYLOV_TOL * abs(ref)
    vals = [lad[s]["value"] for s in ladder]
    checks.expect(f"{name}: top_eigenvalue nondecreasing in m (one start vector)",
                  all(b >= a - slack for a, b in zip(vals, vals[1:])), f"m={ladder}: " + ", ".join(f"{v:.6g}" for v in vals))
    checks.expect(f"{name}: Lanczos(m={n_ph}) >= PyHessian's power iteration ({n_ph} HVPs, same start)",
                  lad[n_ph]["value"] >= ph_top - slack, f"{lad[n_ph]['value']:.7g} vs {ph_top:.7g}")
    err_ph = (ref - ph_top) / abs(ref)
    m_eq = min((s for s in ladder if (ref - lad[s]["value"]) / abs(ref) <= err_ph), default=n_ph)
    top = ours(f"top_eigenvalue_m{m_eq}", "top_eigenvalue", num_steps=m_eq)
    checks.expect(f"{name}: top_eigenvalue(m={m_eq}) at PyHessian's accuracy",
                  (ref - top["value"]) / abs(ref) <= err_ph + KRYLOV_TOL and top["finite"],
                  f"rel err {(ref - top['value']) / abs(ref):.1e} vs PyHessian {err_ph:.1e}")
    out["top"] = dict(pyhessian=dict(value=ph_top, hvps=n_ph, best_s=t_ph, rel_err=err_ph), ladder=list(lad.values()),
                      reference=dict(value=ref, num_steps=m_ref, error_bound=bound), equal_accuracy_steps=m_eq)
    rows.append((name, f"reference λmax: ours top_eigenvalue(m={m_ref})", f"{ref:.7g}", f"residual bound {bound:.1e}"))
    rows.append((name, f"PyHessian eigenvalues(top_n=1): power iteration, tol 1e-3, {n_ph} HVPs, our start vector",
                 f"{t_ph:.3f} s", f"λ={ph_top:.7g}, rel err {err_ph:.1e}"))
    rows.append((name, f"ours top_eigenvalue(m={m_eq}) (smallest m of {ladder} at PyHessian's accuracy), cold / warm",
                 f"{top['cold_s']:.3f} s / {top['warm_s']:.3f} s",
                 f"λ={top['value']:.7g}, rel err {(ref - top['value']) / abs(ref):.1e}; PyHessian/ours "
                 f"{t_ph / top['cold_s']:.2f}x cold, {t_ph / top['warm_s']:.2f}x warm" + retr(top)))
    rows.append((name, f"ours top_eigenvalue at m = PyHessian's {n_ph} HVPs (same start): Krylov bound",
                 f"λ={lad[n_ph]['value']:.7g}", f"rel err {(ref - lad[n_ph]['value']) / abs(ref):.1e}, warm "
                 f"{lad[n_ph]['warm_s']:.3f} s"))
    save()

    # --- SLQ, one probe, the same for all
    m = cfg["slq_steps"]
    probe = flat_to_torch(our_probe(key0, d, f32), layout, torch.float32)
    ((nodes, weights), n_den), t_den, _ = best_of(
        lambda: timed_pyhessian(model, batch, "density", feed={"ints": probe}, iter=m, n_v=1), reps)
    ph = {"nodes": np.asarray(nodes[0], np.float64).tolist(), "weights": np.asarray(weights[0], np.float64).tolist()}
    s_full, s_none = ours("slq_full", "slq_full", num_steps=m), ours("slq_none", "slq_none", num_steps=m)
    mf, floor = ours("matfree", "matfree", num_steps=m), ours("hvp_floor", "hvp_floor", num_steps=m)
    out["pyhessian_density"] = dict(ph, best_s=t_den, hvps=n_den)
    rows.append((name, f"PyHessian density(iter={m}, n_v=1), our probe", f"{t_den:.3f} s", "1.00"))
    for r, label in ((s_full, "full"), (s_none, "none")):
        rows.append((name, f"ours slq(m={m}, 1 probe, reortho={label!r}), cold / warm",
                     f"{r['cold_s']:.3f} s / {r['warm_s']:.3f} s",
                     f"PyHessian/ours {t_den / r['cold_s']:.2f}x cold, {t_den / r['warm_s']:.2f}x warm; "
                     f"{r['warm_s'] / floor['warm_s']:.2f}x the HVP floor" + retr(r)))
    rows.append((name, f"matfree tridiag_sym({m}, reortho='full'), same operator and probe, cold / warm",
                 f"{mf['cold_s']:.3f} s / {mf['warm_s']:.3f} s",
                 f"matfree/ours(full) {mf['warm_s'] / s_full['warm_s']:.2f}x warm, {mf['cold_s'] / s_full['cold_s']:.2f}x cold"))
    rows.append((name, f"HVP floor: {m} chained HVPs of the same operator, nothing else, warm", f"{floor['warm_s']:.3f} s",
                 f"PyHessian density / floor {t_den / floor['warm_s']:.2f}x"))
    mo = quadrature_moments(s_full["nodes"], s_full["weights"], (1, 2))
    top_full = top_node(s_full["nodes"], s_full["weights"])
    agree = {}
    for label, r in (("PyHessian", ph), ("matfree", mf), ("ours reortho='none'", s_none)):
        mr = quadrature_moments(r["nodes"], r["weights"], (1, 2))
        gap = {k: abs(mr[k] - mo[k]) for k in (1, 2)}
        a = {f"m{k}_rel": gap[k] / abs(mo[k]) for k in (1, 2)}
        a.update({f"m{k}_per_lmax^k": gap[k] / abs(ref) ** k for k in (1, 2)})
        a["top_node"] = rel(top_node(r["nodes"], r["weights"]), top_full)
        agree[label] = a
        checks.expect(f"{name}: SLQ moments k=1,2 of {label} equal ours (same probe)",
                      all(gap[k] <= SAME_PROBE_TOL * abs(mo[k]) + F32_QUAD_TOL * abs(ref) ** k for k in (1, 2)),
                      f"|Δm_k| / |m_k| = {a['m1_rel']:.1e}, {a['m2_rel']:.1e}; / λmax^k = {a['m1_per_lmax^k']:.1e}, "
                      f"{a['m2_per_lmax^k']:.1e} (tol {SAME_PROBE_TOL:g} |m_k| + {F32_QUAD_TOL:g} λmax^k)")
        if label != "ours reortho='none'":  # without re-orthogonalisation spurious Ritz values may exceed λmax
            checks.expect(f"{name}: top SLQ node of {label} equals ours full (same probe, both re-orthogonalised)",
                          a["top_node"] <= TOP_NODE_TOL, f"rel {a['top_node']:.1e} (tol {TOP_NODE_TOL:g})")
        rows.append((name, f"SLQ {label} vs ours full, same probe",
                     f"moments k=1,2: rel {a['m1_rel']:.1e}, {a['m2_rel']:.1e}; per λmax^k {a['m1_per_lmax^k']:.1e}, "
                     f"{a['m2_per_lmax^k']:.1e}", f"top node {top_node(r['nodes'], r['weights']):.6g} (weight "
                     f"{top_weight(r['nodes'], r['weights']):.1e}), rel {a['top_node']:.1e} to ours full "
                     f"{top_full:.6g}; λmax {ref:.6g}"))
    checks.expect(f"{name}: SLQ results finite", all(r["finite"] for r in (s_full, s_none, mf, floor)),
                  "ours full / none, matfree, HVP floor")
    out["slq_agreement"] = agree
    save()

    # --- trace, the same probes for all
    n = cfg["trace_probes"]
    tr, tr_v = ours("trace", "trace", num_probes=n), ours("trace_vmap", "trace", num_probes=n, batch_size=None)
    z = [t for v in np.asarray(our_trace_probes(key0, n, d, f32)) for t in flat_to_torch(v, layout, torch.float32)]
    (samples, n_tr), t_tr, _ = best_of(
        lambda: timed_pyhessian(model, batch, "trace", feed={"ints": z}, maxIter=n, tol=float("-inf")), reps)
    (samples_d, _), t_tr_d = timed_pyhessian(model, batch, "trace", maxIter=n)
    ph_tr, sd = float(np.mean(samples)), float(np.std(samples, ddof=1)) if len(samples) > 1 else 0.0
    scale = max(abs(ph_tr), sd)
    for r, label in ((tr, "hutchinson_trace"), (tr_v, "hutchinson_trace(batch_size=None)")):
        checks.expect(f"{name}: {label} equals PyHessian's trace on the same {n} probes",
                      len(samples) == n and abs(r["value"] - ph_tr) <= TRACE_TOL * scale and r["finite"],
                      f"{r['value']:.7g} vs {ph_tr:.7g} over {len(samples)} probes (tol {TRACE_TOL:g} x {scale:.3g})")
    out["trace"] = dict(pyhessian=dict(value=ph_tr, sample_std=sd, n=len(samples), best_s=t_tr),
                        pyhessian_default_tol=dict(value=float(np.mean(samples_d)), n=len(samples_d), s=t_tr_d))
    rows.append((name, f"PyHessian trace(maxIter={n}, tol=-inf), our probes", f"{t_tr:.3f} s",
                 f"tr={ph_tr:.6g} ± {sd / math.sqrt(max(1, len(samples))):.2g}"))
    rows.append((name, f"PyHessian trace(maxIter={n}), default tol 1e-3, own probes (stopped after {len(samples_d)})",
                 f"{t_tr_d:.3f} s", f"tr={np.mean(samples_d):.6g}"))
    for r, label in ((tr, "default batch_size='auto'"), (tr_v, "batch_size=None (all vmapped)")):
        rows.append((name, f"ours hutchinson_trace(num_probes={n}), {label}, cold / warm",
                     f"{r['cold_s']:.3f} s / {r['warm_s']:.3f} s",
                     f"tr={r['value']:.6g} (rel diff to PyHessian {rel(r['value'], ph_tr):.1e}); PyHessian/ours "
                     f"{t_tr / r['cold_s']:.2f}x cold, {t_tr / r['warm_s']:.2f}x warm" + retr(r)))
    save()


# ----------------------------------------------------------------------------- c. dense float64
@functools.lru_cache(maxsize=None)
def dense_problem(kind: str):
    """(name, loss_fn, params, batch, model cfg) of section c, float32 params. Cached: the same
    ``loss_fn`` object each time, so repeated cases reuse the compiled programs."""
    if kind == "mlp":
        cfg = DENSE_MLP
        batch = synthetic_batch(DENSE_BATCH, cfg["in_features"], cfg["num_classes"], seed=1)
        name = f"MLP {cfg['in_features']}-{'-'.join(map(str, cfg['hidden']))}-{cfg['num_classes']}"
    else:
        cfg = DENSE_GPT
        tok = np.random.default_rng(2).integers(0, cfg["vocab_size"], size=(DENSE_BATCH // 2, cfg["max_len"] + 1))
        batch = {"x": jnp.asarray(tok[:, :-1].astype(np.int32)), "y": jnp.asarray(tok[:, 1:].astype(np.int32))}
        name = f"GPT L=1 d={cfg['d_model']} V={cfg['vocab_size']} T={cfg['max_len']}"
    loss, params, _ = flax_model(kind, cfg)
    return name, loss, params, batch, cfg


def dense_case(kind: str, m: int, key, with_torch: bool) -> dict:
    """Float64 SLQ moments against dense eigh for one model: ours, and PyHessian when ``with_torch``.
    Exact: ``vᵀHᵏv/‖v‖²`` of the unit Rademacher probe ``v`` of ours; errors relative to
    ``Σ c_i |λ_i|^k`` (the moment's own scale)."""
    name, loss_fn, params, batch, cfg = dense_problem(kind)
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), params)
        b64 = {k: (jnp.asarray(v, jnp.float64) if jnp.issubdtype(v.dtype, jnp.floating) else v) for k, v in batch.items()}
        h = np.asarray(hc.dense_hessian(loss_fn, p64, b64))
        v = np.asarray(our_probe(key, h.shape[0], jnp.float64))
        spec = hc.slq(hc.HessianOperator(loss_fn, p64, b64), p64, key, num_steps=m, num_probes=1, reortho="full")
        nodes, weights, finite = np.asarray(spec.nodes[0]), np.asarray(spec.weights[0]), bool(spec.finite)
    lam, q = np.linalg.eigh(h)
    c2 = (q.T @ v) ** 2 / (v @ v)
    exact = {k: float(np.sum(c2 * lam**k)) for k in MOMENTS}
    scale = {k: float(np.sum(c2 * np.abs(lam) ** k)) for k in MOMENTS}

    def errors(nodes_, weights_):
        got = quadrature_moments(nodes_, weights_)
        return got, {k: abs(got[k] - exact[k]) / scale[k] for k in MOMENTS}

    ours, ours_err = errors(nodes, weights)
    entry = dict(name=name, d=int(h.shape[0]), m=m, exact=exact, ours=ours, ours_rel_err=ours_err, ours_finite=finite,
                 asymmetry=float(np.max(np.abs(h - h.T)) / np.max(np.abs(h))), lam_min=float(lam[0]),
                 lam_max=float(lam[-1]))
    if not with_torch:
        return entry
    import torch

    saved = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # PyHessian allocates T and its zeros in the default dtype
    try:
        model = torch_model(kind, cfg)
        layout = load_flax_into_torch(model, p64, dtype=torch.float64)
        with torch.no_grad():
            lt = float(torch_criterion(model(torch_batch(model, b64)[0]), torch_batch(model, b64)[1]))
        with jax.enable_x64(True):
            lj = float(jax.jit(loss_fn)(p64, b64))
        u = np.random.default_rng(0).normal(size=h.shape[0])
        entry["loss_rel_diff"] = abs(lt - lj) / max(1.0, abs(lj))
        entry["torch_hvp_vs_dense_rel"] = float(np.linalg.norm(torch_full_hvp(model, b64, u, layout) - h @ u)
                                                / np.linalg.norm(h @ u))
        probe = flat_to_torch(v, layout, torch.float64)
        for variant, ctx in (("PyHessian", contextlib.nullcontext()), ("PyHessian without +1e-6", pyhessian_without_eps())):
            with ctx:
                ((n_, w_), _), _ = timed_pyhessian(model, b64, "density", feed={"ints": probe}, iter=m, n_v=1)
            got, err = errors(n_[0], w_[0])
            entry[variant] = dict(moments=got, rel_err=err)
    finally:
        torch.set_default_dtype(saved)
    return entry


def dense_checks(entry: dict, checks: Checks, label: str) -> None:
    """The assertions of section c on one `dense_case` entry (the tests corrupt one to see them fire)."""
    worst = worst_of(entry["ours_rel_err"])[1]
    checks.expect(f"{label}: ours slq moments = dense eigh", worst <= DENSE_TOL and entry["ours_finite"],
                  f"max rel {worst:.1e} (tol {DENSE_TOL:g})")
    checks.expect(f"{label}: dense Hessian symmetric", entry["asymmetry"] <= DENSE_MODEL_TOL,
                  f"max |H - Hᵀ| / max |H| = {entry['asymmetry']:.1e}")
    if "PyHessian" not in entry:
        return
    checks.expect(f"{label}: torch float64 model = ours", entry["loss_rel_diff"] <= DENSE_MODEL_TOL
                  and entry["torch_hvp_vs_dense_rel"] <= DENSE_MODEL_TOL,
                  f"loss {entry['loss_rel_diff']:.1e}, HVP vs dense H {entry['torch_hvp_vs_dense_rel']:.1e}")
    shipped = worst_of(entry["PyHessian"]["rel_err"])[1]
    fixed = worst_of(entry["PyHessian without +1e-6"]["rel_err"])[1]
    checks.expect(f"{label}: PyHessian without its +1e-6 = dense eigh", fixed <= DENSE_TOL, f"max rel {fixed:.1e}")
    checks.expect(f"{label}: PyHessian's shipped error comes from its +1e-6", shipped > max(1e3 * fixed, DENSE_TOL),
                  f"max rel {shipped:.1e} as shipped vs {fixed:.1e} without")


def section_c(cfg, rows, results, checks: Checks, with_torch: bool, save=lambda: None) -> None:
    m = cfg["dense_steps"]
    out = results.setdefault("c_dense", {})
    for kind in ("mlp", "gpt"):
        entry = dense_case(kind, m, jax.random.key(7), with_torch)
        label = f"{entry['name']} ({entry['d']} params, float64, m={m})"
        print(f"\n== c. {label}: λ in [{entry['lam_min']:.3g}, {entry['lam_max']:.3g}]", flush=True)
        dense_checks(entry, checks, label)
        out[kind] = entry
        ks = ",".join(map(str, MOMENTS))
        rows.append((label, f"exact vᵀHᵏv/‖v‖², k={ks} (dense eigh)", ", ".join(f"{entry['exact'][k]:.6g}" for k in MOMENTS),
                     "one unit Rademacher probe for all"))
        for variant in ("PyHessian", "PyHessian without +1e-6"):
            if variant in entry:
                errs = entry[variant]["rel_err"]
                rows.append((label, f"{variant} density(iter={m}): rel error of the moments",
                             ", ".join(f"{errs[k]:.1e}" for k in MOMENTS), f"max {worst_of(errs)[1]:.1e}"))
        errs = entry["ours_rel_err"]
        rows.append((label, f"ours slq(m={m}, full, float64): rel error of the moments",
                     ", ".join(f"{errs[k]:.1e}" for k in MOMENTS), f"max {worst_of(errs)[1]:.1e}"))
        save()


# ----------------------------------------------------------------------------- main
def set_threads(n: int | None, torch_too: bool = True) -> dict:
    avail = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count()))
    if n is not None:
        if n < 1:
            raise SystemExit("--threads must be >= 1")
        if n < len(avail) and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, set(avail[:n]))  # XLA:CPU sizes its pool by the affinity mask; workers inherit it
        avail = avail[:n]
    if torch_too:
        with contextlib.suppress(ImportError):
            import torch

            torch.set_num_threads(len(avail))
    return {"cpus": len(avail), "affinity": avail}


def table(rows) -> str:
    lines = ["| model | measurement | value | ratio / notes |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    ap.add_argument("--out", default=None, help="write the results here as JSON (atomically, after every step)")
    ap.add_argument("--threads", type=int, default=None, help="CPU cores for torch and XLA (default: all)")
    ap.add_argument("--sections", default="a,b,c", help="comma list of a (blockwise GPT), b (MLP peers), c (dense)")
    ap.add_argument("--gpt-layers", default=None, help="comma list of GPT depths for section a (default 1,2,4,8)")
    ap.add_argument("--group-by", default=",".join(GROUPINGS), help="comma list of blockwise_slq group_by values")
    ap.add_argument("--no-hlo", action="store_true", help="skip lowering once more for the StableHLO size")
    ap.add_argument("--reps", type=int, default=0, help="extra timed runs (ours: median of warm; peers: best)")
    ap.add_argument("--no-torch", action="store_true", help="ours only (section c), even if torch is installed")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported (see the docstring)
    # PyHessian's own `loss.backward(create_graph=True)` warns on every construction
    warnings.filterwarnings("ignore", message=r"Using backward\(\) with create_graph=True")
    if args.worker:
        with open(args.worker) as fh:
            spec = json.load(fh)
        print("RESULT " + json.dumps(worker(spec), default=_json_default), flush=True)
        return None
    threads = set_threads(args.threads, torch_too=not args.no_torch)
    cfg = dict(QUICK if args.quick else FULL)
    if args.gpt_layers:
        cfg["gpt_layers"] = tuple(int(x) for x in args.gpt_layers.split(","))
    groupings = tuple(g for g in args.group_by.split(",") if g)
    sections = [s for s in args.sections.split(",") if s]
    bad = set(sections) - {"a", "b", "c"}
    if bad:
        raise SystemExit(f"unknown --sections {sorted(bad)}")
    try:
        if args.no_torch:
            raise ImportError("--no-torch")
        import pyhessian  # noqa: F401
        import torch  # noqa: F401
        have_torch = True
    except ImportError as e:
        have_torch = False
        print(f"torch/pyhessian not used ({e}; pip install -e '.[bench]'): only section c, ours only", flush=True)
        sections = [s for s in sections if s == "c"]
    t_start = time.perf_counter()
    results: dict[str, Any] = {
        "command": shlex.join([sys.executable, os.path.abspath(__file__), *(sys.argv[1:] if argv is None else argv)]),
        "date_start": now_utc(), "load_average_start": load_average(), "quick": args.quick, "config": cfg,
        "machine": {"node": platform.node(), "platform": platform.platform(), "cpu": cpu_model(),
                    "cpu_count": os.cpu_count(), **threads},
        "versions": versions(), "jax_backend": jax.default_backend(),
        "env": {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "XLA_FLAGS", "JAX_PLATFORMS")},
        "git_head": git("rev-parse", "HEAD"), "git_status_heterogeneity": git("status", "--short", "heterogeneity"),
    }
    checks, rows = Checks(), []
    results["checks"], results["rows"] = checks.items, rows

    def save():
        if args.out:
            write_json_atomic(args.out, results)

    print(f"{results['date_start']}; load average {results['load_average_start']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_peers_") as tmpdir:
        if "a" in sections:
            section_a(cfg, rows, results, checks, tmpdir, args.reps, groupings, not args.no_hlo, save)
        if "b" in sections:
            matched = check_sampling()
            for k, ok in matched.items():
                checks.expect(f"probe reconstruction: {k}", ok, "our sampling reproduced on a 12x12 matrix")
            section_b(cfg, rows, results, checks, tmpdir, args.reps, matched, save)
        if "c" in sections:
            section_c(cfg, rows, results, checks, with_torch=have_torch, save=save)
    results.update(date_end=now_utc(), load_average_end=load_average(), wall_s=time.perf_counter() - t_start)
    v = results["versions"]
    results["table"] = (
        f"{results['date_start']} -> {results['date_end']}; {results['machine']['cpu']}, {threads['cpus']} CPU threads; "
        f"jax {v['jax']}, torch {v['torch']}, pyhessian {v['pyhessian']}, matfree {v['matfree']}; "
        f"wall {results['wall_s']:.0f} s\nload average before {results['load_average_start']}, after "
        f"{results['load_average_end']}\ncommand: {results['command']}\ngit HEAD {results['git_head']}; "
        f"git status --short heterogeneity:\n{results['git_status_heterogeneity'] or '(clean)'}\n\n" + table(rows))
    print("\n" + results["table"], flush=True)
    save()
    if args.out:
        print(f"wrote {args.out}", flush=True)
    failed = checks.failed
    print(f"\nchecks: {len(checks.items) - len(failed)} passed, {len(failed)} failed", flush=True)
    for c in failed:
        print(f"  FAIL {c['name']}: {c['detail']}", flush=True)
    if failed:
        raise SystemExit(1)
    return results


if __name__ == "__main__":
    main()
