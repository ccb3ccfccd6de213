"""`heterogeneity selftest`: is this JAX backend computing our numbers correctly?

Run it on the machine (CPU, GPU or TPU) whose numbers you are about to trust:

    heterogeneity selftest            # every check; exit status 1 if any fails
    heterogeneity selftest --quick    # the same checks at smaller sizes

Each check compares a jitted computation with an independent NumPy float64 (or unjitted)
reference at the shapes users run — dozens to hundreds of blocks, odd sizes, zero-weight
padding — because the backend itself can be wrong:

* ``gaussian_sum``: the XLA:CPU miscompile of jax/jaxlib 0.10.2 (a jitted Gaussian sum over
  more than 16 rows times a scalar is off by 50–100%; `scripts/repro_gaussian_miscompile.py`).
* ``eigh_deadlock``: the XLA:CPU deadlock of batched ``eigh`` in jaxlib 0.10.0–0.10.2 (64
  batched ``eigh`` in one program hang forever; `scripts/repro_eigh_deadlock.py`), run in a
  subprocess with a timeout.
* ``vmapped_block_hvp``: a dense Hessian block built from vmapped HVPs of block-confined
  tangents equals the same HVPs one at a time (garbage from batch 8 on 0.10.2).
* ``spectrum_divergence``: JS⁰, the pair matrix and the densities of `metrics.spectrum_divergence`
  in the "bounded", "scale_normalized" and "paper" modes against NumPy, at 17–150 blocks.
* ``blockwise_slq`` / ``blockwise_top_eigenvalue``: every diagonal Hessian block of a
  ≥ 50-block problem against dense ``eigh`` of the float64 Hessian.
* ``gradient_metrics``: block gradient norms, shares and Gini against NumPy at 150 blocks.
* ``l11_norm``: the Cauchy sketch of ‖H‖₁,₁ against the dense value.

The report records the short verdict (`cached_verdict`) in ``report.json`` ``meta``.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

__all__ = ["Check", "CHECKS", "run_checks", "verdict", "cached_verdict", "main", "check_eigh_deadlock"]


class Check(NamedTuple):
    """One check's outcome: ``detail`` gives the measured error and its tolerance."""

    name: str
    ok: bool
    detail: str
    seconds: float


def _rel(got, ref) -> float:
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    return float(np.max(np.abs(got - ref)) / max(float(np.max(np.abs(ref))), 1e-300))


# ----------------------------------------------------------------------------- backend reproducers
def check_gaussian_sum(quick: bool = False) -> tuple[bool, str]:
    """The jax 0.10.2 miscompile: ``vmap_t(Σ_j w exp(−½((t − x)/σ)²)) · 1/(√(2π)σ)`` over B rows."""
    import jax
    import jax.numpy as jnp

    def f(nodes, weights, sig, grid):
        inv = 1.0 / (jnp.sqrt(2 * jnp.pi) * sig)
        return jax.vmap(lambda t: jnp.sum(weights * jnp.exp(-0.5 * ((t - nodes) / sig) ** 2), axis=1) * inv)(grid)

    worst, tol = 0.0, 1e-5  # float32 sum of 32 terms: ~1e-7 when right, ≥ 0.5 when miscompiled
    for rows in ((17, 37) if quick else (16, 17, 37, 150)):
        rng = np.random.default_rng(rows)
        x = rng.normal(size=(rows, 32)).astype(np.float32)
        w = np.full((rows, 32), 1 / 32, np.float32)
        grid = np.linspace(-2.0, 2.0, 2048, dtype=np.float32)
        got = jax.jit(f)(x, w, np.float32(0.05), grid)
        xn, wn, g = x.astype(np.float64), w.astype(np.float64), grid.astype(np.float64)
        ref = (wn[None] * np.exp(-0.5 * ((g[:, None, None] - xn[None]) / 0.05) ** 2)).sum(-1) / (np.sqrt(2 * np.pi) * 0.05)
        worst = max(worst, _rel(got, ref))
    return worst < tol, f"max relative error {worst:.1e} (tolerance {tol:.0e})"


_EIGH_PROGRAM = textwrap.dedent("""
    import jax, jax.numpy as jnp
    xs = jax.random.normal(jax.random.key(0), (64, 2, 48, 48))
    f = jax.jit(lambda xs: sum(jnp.linalg.eigh(x + x.swapaxes(-1, -2))[0].sum() for x in xs))
    print(float(f(xs)))
""")


def check_eigh_deadlock(timeout: float = 120.0) -> Check:
    """64 independent batched ``eigh`` (batch 2, 48×48) in one jit, in a subprocess with ``timeout``."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", _EIGH_PROGRAM], capture_output=True, text=True,
                              timeout=timeout, env={**os.environ})
    except subprocess.TimeoutExpired:
        return Check("eigh_deadlock", False, f"64 batched eigh did not finish in {timeout:.0f} s: the batched-eigh "
                     "deadlock of jaxlib 0.10.0-0.10.2 (install a jax in this package's supported range)",
                     time.perf_counter() - t0)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        return Check("eigh_deadlock", False, f"subprocess failed (exit {proc.returncode}): {tail[0]}", dt)
    return Check("eigh_deadlock", True, f"64 batched eigh finished in {dt:.1f} s (limit {timeout:.0f} s)", dt)


# ----------------------------------------------------------------------------- our diagnostics
def _tiny_gpt():
    import jax

    from heterogeneity import models

    # vocabulary 65 (the Shakespeare corpus' size): at 16, jax 0.10.2's miscompile does not show
    net = models.build("gpt", vocab_size=65, d_model=32, num_heads=2, num_layers=2, max_len=16)
    apply_fn, params = models.functional(net)
    tokens = jax.random.randint(jax.random.key(0), (8, 17), 0, 65)
    return params, models.lm_loss(apply_fn), {"tokens": tokens}


def check_vmapped_block_hvp(quick: bool = False) -> tuple[bool, str]:
    """Dense ``H_bb`` of a 32-parameter LayerNorm block from vmapped vs one-at-a-time HVPs."""
    import jax
    import jax.numpy as jnp

    from heterogeneity import curvature as hc
    from heterogeneity import partition as hp

    params, loss_fn, batch = _tiny_gpt()
    p = hp.by_leaf(params)
    label = next(lab for lab in p.labels(params) if lab.endswith("norm_attn/scale"))
    n = p.sizes(params)[label]
    zeros = jax.tree.map(jnp.zeros_like, params)

    def column(e):
        return p.gather(hc.hvp(loss_fn, params, batch, p.scatter(zeros, label, e)), label)

    eye = np.eye(n, dtype=np.float32)
    vmapped = np.asarray(jax.jit(jax.vmap(column))(eye))
    one = jax.jit(column)
    looped = np.stack([np.asarray(one(e)) for e in eye[: 8 if quick else n]])
    err = _rel(vmapped[: len(looped)], looped)
    tol = 1e-4  # the same float32 HVPs, batched or not: ~1e-7 when right, ≥ 1e3 when miscompiled
    return bool(np.isfinite(err)) and err < tol, f"{n} vmapped HVP columns: max relative difference {err:.1e} (tolerance {tol:.0e})"


def _gaussian_sum(grid: np.ndarray, x: np.ndarray, w: np.ndarray, sigma: float, reach: float = 12.0) -> np.ndarray:
    """``Σ_j w_j exp(-(grid - x_j)² / 2σ²)`` on the sorted, evenly spaced ``grid``, each Gaussian
    summed over the grid points within ``reach``·σ of its node (the terms left out are below
    exp(-72) ≈ 5e-32 of the peak): the paper mode's 50 000-point grid in milliseconds."""
    out = np.zeros_like(grid)
    dx = grid[1] - grid[0]
    half = int(np.ceil(reach * sigma / dx)) + 1
    if 2 * half + 1 >= grid.size:  # a blur as wide as the grid: the plain sum
        return (w[None] * np.exp(-0.5 * ((grid[:, None] - x[None]) / sigma) ** 2)).sum(1)
    centre = np.rint((x - grid[0]) / dx).astype(np.int64)
    offsets = np.arange(-half, half + 1)
    idx = centre[:, None] + offsets[None]
    inside = (idx >= 0) & (idx < grid.size)
    vals = w[:, None] * np.exp(-0.5 * ((grid[np.clip(idx, 0, grid.size - 1)] - x[:, None]) / sigma) ** 2)
    np.add.at(out, idx[inside], vals[inside])
    return out


def _reference_densities(nodes_list, weights_list, *, mode: str, num_grid: int):
    """NumPy float64 densities on the shared grid, following `spectrum_divergence`'s documented rules."""
    scales = np.ones(len(nodes_list))
    if mode == "scale_normalized":
        scales = np.array([np.max(np.abs(x[w > 0])) for x, w in zip(nodes_list, weights_list)])
        scales = np.where(scales > 0, scales, 1.0)
    xs = [np.asarray(x, np.float64).reshape(-1) / s for x, s in zip(nodes_list, scales)]
    ws = [np.asarray(w, np.float64).reshape(-1) / np.shape(w)[0] for w in weights_list]
    live = np.concatenate([x[w > 0] for x, w in zip(xs, ws)])
    lo, hi = live.min(), live.max()
    sigma, pad = {"bounded": (0.01 * (hi - lo), None), "scale_normalized": (0.02, None),
                  "paper": (1e-5 ** 0.5, 1.0)}[mode]
    pad = 5 * sigma if pad is None else pad
    grid = np.linspace(lo - pad, hi + pad, num_grid)
    dx = grid[1] - grid[0]
    dens = np.stack([_gaussian_sum(grid, x, w, sigma) for x, w in zip(xs, ws)])
    dens /= dens.sum(1, keepdims=True) * dx
    return grid, dens, dx


def _reference_matrix(dens, dx, mode: str, floor: float = 1e-12):
    b = dens.shape[0]
    mat = np.zeros((b, b))
    if mode == "paper":
        p = dens / dens.sum(1, keepdims=True) / dx + floor
        p = p / p.sum(1, keepdims=True)
        logp = np.log(p)
        for i in range(b):
            mat[i] = np.sum((p[i] - p) * (logp[i] - logp), axis=1)
    else:
        p = dens / dens.sum(1, keepdims=True)
        for i in range(b):
            s = p[i] + p  # a log(2a / (a + c)) never divides by an underflowed (a + c) / 2
            with np.errstate(divide="ignore", invalid="ignore"):
                kl_i = np.where(p[i] > 0, p[i] * np.log(2 * p[i] / s), 0.0).sum(1)
                kl_j = np.where(p > 0, p * np.log(2 * p / s), 0.0).sum(1)
            mat[i] = np.sqrt(np.clip(0.5 * kl_i + 0.5 * kl_j, 0.0, np.log(2)))
    np.fill_diagonal(mat, 0.0)
    return mat


def reference_js(nodes_list, weights_list, mode: str) -> tuple[np.ndarray, float]:
    """The pair matrix and JS⁰ of `metrics.spectrum_divergence` (default ``sigma``/``num_grid``
    of ``mode``) recomputed in NumPy float64 from its documented rules: an independent check
    of the jitted Gaussian sums (the computation jax 0.10.2 miscompiled)."""
    num_grid = 50_000 if mode == "paper" else 2048
    _, dens, dx = _reference_densities(nodes_list, weights_list, mode=mode, num_grid=num_grid)
    mat = _reference_matrix(dens, dx, mode)
    i, j = np.triu_indices(len(nodes_list), 1)
    return mat, float(mat[i, j].mean()) if len(i) else 0.0


def _random_spectra(num_blocks: int, seed: int):
    """Block spectra with unequal node counts, scales over 4 decades, and zero-weight padding."""
    rng = np.random.default_rng(seed)
    out = []
    for b in range(num_blocks):
        probes, steps = 1 + b % 3, 6 + (7 * b) % 11
        scale = 10.0 ** rng.uniform(-2, 2)
        nodes = np.sort(rng.normal(size=(probes, steps)) * scale + scale * rng.uniform(-1, 1), axis=1)
        weights = rng.dirichlet(np.ones(steps), size=probes)
        pad = b % 4  # the last `pad` steps of each probe are padding: weight 0, node repeated
        if pad:
            weights[:, -pad:] = 0.0
            weights /= weights.sum(1, keepdims=True)
            nodes[:, -pad:] = nodes[:, [-pad - 1]]
        out.append((nodes.astype(np.float32), weights.astype(np.float32)))
    return out


def check_spectrum_divergence(quick: bool = False) -> tuple[bool, str]:
    """JS⁰, the pair matrix and the densities against NumPy at 17–150 blocks, three modes."""
    from heterogeneity import curvature as hc
    from heterogeneity import metrics as hm

    cases = [(17, "bounded"), (37, "scale_normalized"), (17, "paper")] if quick else \
        [(17, "bounded"), (37, "bounded"), (150, "bounded"), (64, "scale_normalized"), (37, "paper")]
    ok, lines = True, []
    for num_blocks, mode in cases:
        spectra = _random_spectra(num_blocks, seed=num_blocks)
        got = hm.spectrum_divergence({f"b{i}": hc.Spectrum(x, w) for i, (x, w) in enumerate(spectra)}, mode=mode)
        num_grid = 50_000 if mode == "paper" else 2048
        grid, dens, dx = _reference_densities([x for x, _ in spectra], [w for _, w in spectra], mode=mode,
                                              num_grid=num_grid)
        mat = _reference_matrix(dens, dx, mode)
        i, j = np.triu_indices(num_blocks, 1)
        errs = (_rel(got.densities, dens), _rel(got.matrix, mat), abs(float(got.mean) - mat[i, j].mean()) / mat[i, j].mean())
        # float32 densities vs float64: ~1e-4 on 2048 points; the paper mode's floored symmetric KL
        # sums 50 000 float32 log-ratios (~1e-3). A miscompile gives errors of order 1.
        tol = 5e-3 if mode == "paper" else 1e-3
        ok = ok and bool(np.isfinite(max(errs))) and max(errs) < tol
        lines.append(f"{mode}@{num_blocks}: {max(errs):.1e} (tol {tol:.0e})")
    return ok, "max relative error of densities, pair matrix and JS0: " + ", ".join(lines)


def _split_problem(rows: int):
    """A two-layer tanh net whose (rows × 5) first layer is cut into one block per row, plus
    odd-sized and one-element blocks; float32 params and a float64 dense Hessian."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    from heterogeneity import partition as hp

    rng = np.random.default_rng(rows)
    params = {"w": rng.normal(size=(rows, 5)).astype(np.float32) / np.sqrt(rows),
              "u": rng.normal(size=(5, 3)).astype(np.float32) / 2, "c": np.float32(0.3),
              "v": rng.normal(size=(7,)).astype(np.float32) / 3}
    x = rng.normal(size=(24, rows)).astype(np.float32)
    y = rng.normal(size=(24, 3)).astype(np.float32)

    def loss_fn(p, batch):
        xb, yb = batch
        h = jnp.tanh(xb @ p["w"]) @ p["u"] + p["c"] * jnp.tanh(jnp.sum(p["v"] ** 2))
        return jnp.mean((h - yb) ** 2)

    part = hp.from_fn(lambda path: hp.Split("w", axis=0, parts=rows) if path == "w" else path)
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        flat, unravel = ravel_pytree(p64)
        dense = np.asarray(jax.hessian(lambda f: loss_fn(unravel(f), (x.astype(np.float64), y.astype(np.float64))))(flat))
    ids = part.flat_block_ids(params)
    blocks = {lab: dense[np.ix_(ids == b, ids == b)] for b, lab in enumerate(part.labels(params))}
    return params, loss_fn, (x, y), part, blocks


def check_blockwise(quick: bool = False) -> tuple[bool, str]:
    """`blockwise_slq` and `blockwise_top_eigenvalue` on a 51–83-block problem vs dense ``eigh``.

    Every block has at most 7 elements and Lanczos runs 8 steps, so both are exact: every
    node carrying weight is an eigenvalue of ``H_bb`` and the top Ritz value is ``λ_max(H_bb)``.
    """
    import jax

    from heterogeneity import curvature as hc

    params, loss_fn, batch, part, blocks = _split_problem(48 if quick else 80)
    spectra = jax.jit(lambda p, b, k: hc.blockwise_slq(loss_fn, p, b, k, partition=part, num_steps=8,
                                                       num_probes=2))(params, batch, jax.random.key(0))
    tops = jax.jit(lambda p, b, k: hc.blockwise_top_eigenvalue(loss_fn, p, b, k, partition=part, num_steps=8))(
        params, batch, jax.random.key(1))
    worst_node = worst_top = 0.0
    for label, h in blocks.items():
        ev = np.linalg.eigvalsh(h)
        scale = max(np.abs(ev).max(), 1e-12)
        nodes, weights = np.asarray(spectra.block(label).nodes), np.asarray(spectra.block(label).weights)
        live = nodes[weights > 1e-3]
        gap = np.abs(live[:, None] - ev[None]).min(1).max() / scale if live.size else np.inf
        worst_node = max(worst_node, gap)
        worst_top = max(worst_top, abs(float(tops.block(label).value) - ev.max()) / scale)
    tol = 1e-3  # float32 HVPs and recurrence against float64 eigh
    ok = bool(np.isfinite(worst_node) and np.isfinite(worst_top)) and worst_node < tol and worst_top < tol
    return ok, (f"{len(blocks)} blocks: max node-to-eigenvalue gap {worst_node:.1e}, top eigenvalue error "
                f"{worst_top:.1e} (relative to ‖H_bb‖; tolerance {tol:.0e})")


def check_gradient_metrics(quick: bool = False) -> tuple[bool, str]:
    """Block norms, normalized shares and Gini [Tomihari25, App. C.2, D.5] at 150 blocks vs NumPy."""
    import jax

    from heterogeneity import metrics as hm
    from heterogeneity import partition as hp

    rng = np.random.default_rng(1)
    num = 40 if quick else 150
    grads = {f"l{i:03d}": (rng.normal(size=(1 + (7 * i) % 13,)) * 10.0 ** rng.uniform(-3, 1)).astype(np.float32)
             for i in range(num)}
    part = hp.by_leaf(grads)
    got = jax.jit(lambda g: hm.gradient_heterogeneity(g, partition=part)[:5])(grads)
    got = hm.GradientHeterogeneity(*got, labels=part.labels(grads))
    leaves = [np.asarray(grads[k], np.float64) for k in sorted(grads)]
    norms = np.array([np.linalg.norm(g) for g in leaves])
    normalized = norms / np.sqrt([g.size for g in leaves])
    shares = normalized / normalized.sum()
    x = np.sort(normalized)
    n = x.size
    gini = float(np.sum((2 * np.arange(1, n + 1) - n - 1) * x) / (n * x.sum()))
    errs = (_rel(got.norms, norms), _rel(got.shares, shares), abs(float(got.gini) - gini) / gini)
    tol = 1e-5
    return max(errs) < tol, f"{num} blocks: max relative error {max(errs):.1e} (tolerance {tol:.0e})"


def check_l11_norm(quick: bool = False) -> tuple[bool, str]:
    """Cauchy-sketch ‖H‖₁,₁ [Xie24, Alg. 4] vs the dense float64 value."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    from heterogeneity import curvature as hc

    params, loss_fn, batch, _, _ = _split_problem(24)

    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        flat, unravel = ravel_pytree(p64)
        b64 = tuple(np.asarray(a, np.float64) for a in batch)
        dense = float(np.abs(np.asarray(jax.hessian(lambda f: loss_fn(unravel(f), b64))(flat))).sum())
    probes = 200 if quick else 400
    mv = hc.linearized_hvp(loss_fn, params, batch)
    got = float(jax.jit(lambda k: hc.l11_norm(mv, params, k, num_probes=probes).value)(jax.random.key(0)))
    err = abs(got - dense) / dense
    tol = 6 / np.sqrt(probes)  # the median of |Cauchy| has relative sd ≈ 1.6/√n per row; sums average it down
    return err < tol, f"relative error {err:.1e} with {probes} probes (tolerance {tol:.1e})"


CHECKS: dict[str, Callable] = {
    "gaussian_sum": check_gaussian_sum,
    "vmapped_block_hvp": check_vmapped_block_hvp,
    "spectrum_divergence": check_spectrum_divergence,
    "blockwise": check_blockwise,
    "gradient_metrics": check_gradient_metrics,
    "l11_norm": check_l11_norm,
}
"""In-process checks by name; ``eigh_deadlock`` runs separately, in a subprocess."""


def run_checks(*, quick: bool = False, timeout: float = 120.0, echo: Callable[[str], None] | None = None) -> list[Check]:
    """Run every check (the deadlock one first, in a subprocess); ``echo`` gets one line per check."""
    results = []

    def record(check: Check):
        results.append(check)
        if echo is not None:
            echo(f"{'PASS' if check.ok else 'FAIL'}  {check.name:<20} {check.detail}  [{check.seconds:.1f} s]")

    record(check_eigh_deadlock(timeout))
    for name, fn in CHECKS.items():
        t0 = time.perf_counter()
        try:
            ok, detail = fn(quick)
        except Exception as e:  # a crash is a failed check, reported with its cause
            ok, detail = False, f"raised {type(e).__name__}: {e}"
        record(Check(name, bool(ok), detail, time.perf_counter() - t0))
    return results


def _backend() -> str:
    import jax
    import jaxlib

    dev = jax.devices()[0]
    return f"jax {jax.__version__}, jaxlib {jaxlib.__version__}, {dev.platform} ({getattr(dev, 'device_kind', '?')})"


def verdict(checks: list[Check]) -> str:
    """One line: ``"pass 7/7 (jax …, cpu (cpu))"`` or ``"FAIL 5/7: names (…)"``."""
    passed = sum(c.ok for c in checks)
    failed = [c.name for c in checks if not c.ok]
    head = f"pass {passed}/{len(checks)}" if not failed else f"FAIL {passed}/{len(checks)}: {', '.join(failed)}"
    return f"{head} ({_backend()})"


def _cache_path() -> Path:
    root = Path(os.environ.get("HETEROGENEITY_CACHE", Path.home() / ".cache" / "heterogeneity"))
    key = hashlib.sha256(f"{_backend()}|{platform.machine()}|{_version()}".encode()).hexdigest()[:16]
    return root / f"selftest-{key}.json"


def _version() -> str:
    from heterogeneity import __version__

    return __version__


def _write_cache(checks: list[Check], quick: bool) -> None:
    path = _cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"verdict": verdict(checks), "quick": quick, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                  "checks": [c._asdict() for c in checks]}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".selftest-")
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=1)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home only costs a rerun next time


def cached_verdict(*, run_if_missing: bool = True, timeout: float = 120.0) -> str:
    """The selftest verdict for this backend and package version, from the cache (written by every
    `heterogeneity selftest`), else from a ``--quick`` run now (or ``"not run"``)."""
    try:
        record = json.loads(_cache_path().read_text())
        return f"{record['verdict']}, {'quick ' if record.get('quick') else ''}selftest of {record['date']}"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if not run_if_missing:
        return "not run"
    checks = run_checks(quick=True, timeout=timeout)
    _write_cache(checks, quick=True)
    return f"{verdict(checks)}, quick selftest run now"


def main(*, quick: bool = False, timeout: float = 120.0) -> int:
    """Print one line per check and the verdict; 0 if every check passed, 1 otherwise."""
    print(f"heterogeneity selftest on {_backend()}{' (quick)' if quick else ''}", flush=True)
    checks = run_checks(quick=quick, timeout=timeout, echo=lambda line: print(line, flush=True))
    _write_cache(checks, quick)
    print(f"verdict: {verdict(checks)}")
    return 0 if all(c.ok for c in checks) else 1
