"""Benchmark of heterogeneity.curvature, everything measured side by side in one run.

    python scripts/bench_curvature.py            # full run: MLP 784-512-512-10 (batch 256) + small GPT
    python scripts/bench_curvature.py --quick    # tiny sizes, < 60 s (CI smoke test)
    python scripts/bench_curvature.py --items blockwise --models report --block-steps 48 --reps 2
                                                 # blockwise vs loop on the main job's GPT (37 blocks)

Per model (float32, random data):
1. grad time; HVP time (forward-over-reverse, recomputed) and amortized HVP time (100 HVPs of
   one `linearized_hvp`, linearization included) — ratios to grad.
2. SLQ (m=100, 1 probe) for each reortho mode and matfree's full-reortho `tridiag_sym`, as a
   ratio to the "HVP floor" (the same 100 linearized HVPs alone), and the distance between the
   lean ("none") and the full-reortho densities of the same probe.
3. blockwise SLQ of all by-leaf blocks in one program vs a per-block Python loop of `slq`
   (one jit per block), cold (trace + compile + run) and warm.
4. compiled temp memory (`jit(...).lower(...).compile().memory_analysis().temp_size_in_bytes`)
   of the micro-batched HVP with 1, 4, 16 micro-batches of a fixed size, next to the HVP of the
   same examples as one batch.
Times are medians of ``--reps`` warm calls (after compilation). The machine may be shared:
compare ratios within one run, not absolute times across runs.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from heterogeneity import curvature as hc
from heterogeneity import partition as hp
from heterogeneity.tree import ravel


# ----------------------------------------------------------------------------- models
def make_mlp(key, sizes, batch_size):
    keys = jax.random.split(key, len(sizes) + 1)
    params = {"layers": [], "head": None}
    for i, (din, dout) in enumerate(zip(sizes[:-2], sizes[1:-1])):
        params["layers"].append({"kernel": jax.random.normal(keys[i], (din, dout)) / np.sqrt(din),
                                 "bias": jnp.zeros(dout)})
    params["head"] = {"kernel": jax.random.normal(keys[-2], sizes[-2:]) / np.sqrt(sizes[-2]), "bias": jnp.zeros(sizes[-1])}
    kx, ky = jax.random.split(keys[-1])
    batch = {"x": jax.random.normal(kx, (batch_size, sizes[0])), "y": jax.random.randint(ky, (batch_size,), 0, sizes[-1])}

    def loss_fn(p, b):
        h = b["x"]
        for layer in p["layers"]:
            h = jax.nn.relu(h @ layer["kernel"] + layer["bias"])
        logits = h @ p["head"]["kernel"] + p["head"]["bias"]
        return jnp.mean(jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, b["y"][:, None], -1)[:, 0])

    return loss_fn, params, batch


def make_gpt(key, *, vocab, d, layers, heads, seq, batch_size):
    ks = iter(jax.random.split(key, 8 * layers + 8))
    n = lambda *s: 0.02 * jax.random.normal(next(ks), s)  # noqa: E731
    params = {"embed": {"embedding": n(vocab, d)}, "pos_embed": n(seq, d), "layers": [],
              "final_norm": {"scale": jnp.ones(d)}, "head": {"kernel": n(d, vocab)}}
    for _ in range(layers):
        params["layers"].append({
            "norm_attn": {"scale": jnp.ones(d)}, "norm_mlp": {"scale": jnp.ones(d)},
            "attn": {"query": {"kernel": n(d, d)}, "key": {"kernel": n(d, d)}, "value": {"kernel": n(d, d)},
                     "out": {"kernel": n(d, d)}},
            "mlp": {"fc_in": {"kernel": n(d, 4 * d)}, "fc_out": {"kernel": n(4 * d, d)}}})
    tokens = jax.random.randint(next(ks), (batch_size, seq + 1), 0, vocab)
    batch = {"x": tokens[:, :-1], "y": tokens[:, 1:]}
    mask = jnp.tril(jnp.ones((seq, seq), bool))

    def norm(x, scale):
        return x / jnp.sqrt(jnp.mean(x * x, -1, keepdims=True) + 1e-6) * scale

    def loss_fn(p, b):
        h = p["embed"]["embedding"][b["x"]] + p["pos_embed"]
        bsz, t, _ = h.shape
        for layer in p["layers"]:
            x = norm(h, layer["norm_attn"]["scale"])
            split = lambda z: z.reshape(bsz, t, heads, d // heads).transpose(0, 2, 1, 3)  # noqa: E731
            q, k, v = (split(x @ layer["attn"][name]["kernel"]) for name in ("query", "key", "value"))
            att = jnp.where(mask, q @ k.transpose(0, 1, 3, 2) / np.sqrt(d // heads), -1e9)
            o = (jax.nn.softmax(att, -1) @ v).transpose(0, 2, 1, 3).reshape(bsz, t, d)
            h = h + o @ layer["attn"]["out"]["kernel"]
            x = norm(h, layer["norm_mlp"]["scale"])
            h = h + jax.nn.gelu(x @ layer["mlp"]["fc_in"]["kernel"]) @ layer["mlp"]["fc_out"]["kernel"]
        logits = norm(h, p["final_norm"]["scale"]) @ p["head"]["kernel"]
        return jnp.mean(jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, b["y"][..., None], -1)[..., 0])

    return loss_fn, params, batch


# ----------------------------------------------------------------------------- timing
def timed(fn, *args, reps=3):
    """(compile+first-call seconds, median warm seconds)."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - t0
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return first, float(np.median(times))


def hvp_chain(loss_fn, num):
    """Linearize once, then ``num`` HVPs in a loop (normalised power iteration): the floor."""

    @jax.jit
    def run(params, batch, v):
        mv = hc.linearized_hvp(loss_fn, params, batch)

        def body(_, x):
            y = ravel(mv(x))[0]
            y = y / (jnp.linalg.norm(y) + 1e-30)
            return ravel(params)[1](y)

        return jax.lax.fori_loop(0, num, body, v)

    return run


def density_distances(full: hc.Spectrum, lean: hc.Spectrum):
    """Total variation ½∫|p−q| of the blurred densities (σ = 1% of the full range, common
    grid) and the 1-Wasserstein distance of the quadrature measures / spectral range."""
    lo, hi = (float(x) for x in hc.spectral_range(full))
    sigma = 0.01 * (hi - lo)
    grid = jnp.linspace(lo - 5 * sigma, hi + 5 * sigma, 4000)
    p = hc.density(full, grid, sigma=sigma).values
    q = hc.density(lean, grid, sigma=sigma).values
    tv = 0.5 * float(jnp.trapezoid(jnp.abs(p - q), grid))
    xs = np.concatenate([np.ravel(full.nodes), np.ravel(lean.nodes)])
    order = np.sort(xs)
    cdf = lambda s: np.array([np.sum(np.asarray(s.weights)[np.asarray(s.nodes) <= t]) / s.nodes.shape[0] for t in order[:-1]])  # noqa: E731
    w1 = float(np.sum(np.abs(cdf(full) - cdf(lean)) * np.diff(order))) / (hi - lo)
    return tv, w1


ITEMS = ("hvp", "slq", "matfree", "blockwise", "memory")


def bench_model(name, loss_fn, params, batch, *, m, reps, micro_sizes, rows, partition=None, block_steps=None,
                items=ITEMS):
    key = jax.random.key(0)
    d = ravel(params)[0].shape[0]
    print(f"\n== {name}: {d:,} parameters", flush=True)
    v = jax.tree.map(lambda x: jax.random.normal(jax.random.key(1), x.shape, x.dtype), params)

    grad = jax.jit(jax.grad(loss_fn))
    _, t_grad = timed(grad, params, batch, reps=max(reps, 5))
    chain = hvp_chain(loss_fn, m)
    _, t_floor = timed(chain, params, batch, v, reps=reps) if {"hvp", "slq", "matfree"} & set(items) else (0, 0)
    if "hvp" in items:
        bench_hvp(name, loss_fn, params, batch, v, m, reps, t_grad, t_floor, rows)
    if "slq" in items:
        bench_slq(name, loss_fn, params, batch, key, m, reps, t_floor, rows, "matfree" in items)
    if "blockwise" in items:
        bench_blockwise(name, loss_fn, params, batch, key, block_steps or m, reps, partition, rows)
    if "memory" in items:
        bench_memory(name, loss_fn, params, batch, v, micro_sizes, rows)


def bench_hvp(name, loss_fn, params, batch, v, m, reps, t_grad, t_floor, rows):
    """Ratios from interleaved rounds (grad, HVP, 100-HVP chain, back to back), median over
    rounds, so load drifts on a shared machine hit numerator and denominator alike."""
    grad = jax.jit(jax.grad(loss_fn))
    plain = jax.jit(lambda p, b, t: hc.hvp(loss_fn, p, b, t))
    chain = hvp_chain(loss_fn, m)
    for f, a in ((grad, (params, batch)), (plain, (params, batch, v)), (chain, (params, batch, v))):
        jax.block_until_ready(f(*a))
    g_t, h_t, c_t = [], [], []
    for _ in range(max(reps, 3)):
        g_t.append(timed(grad, params, batch, reps=5)[1])
        h_t.append(timed(plain, params, batch, v, reps=5)[1])
        c_t.append(timed(chain, params, batch, v, reps=1)[1] / m)
    g_t, h_t, c_t = map(np.asarray, (g_t, h_t, c_t))
    rows.append((name, "grad", f"{1e3 * np.median(g_t):.2f} ms", "1.00"))
    rows.append((name, "HVP, forward-over-reverse (recomputed)", f"{1e3 * np.median(h_t):.2f} ms",
                 f"{np.median(h_t / g_t):.2f} x grad"))
    rows.append((name, f"HVP amortized ({m} linearized HVPs incl. linearization)", f"{1e3 * np.median(c_t):.2f} ms",
                 f"{np.median(c_t / g_t):.2f} x grad (rounds: {', '.join(f'{x:.2f}' for x in c_t / g_t)})"))
    print(rows[-3:], flush=True)


def bench_slq(name, loss_fn, params, batch, key, m, reps, t_floor, rows, with_matfree):
    spectra = {}
    for mode in hc.REORTHO_MODES:
        run = jax.jit(lambda p, b, k, mode=mode: hc.slq(hc.linearized_hvp(loss_fn, p, b), p, k, num_steps=m,
                                                        num_probes=1, reortho=mode))
        _, t = timed(run, params, batch, key, reps=reps)
        spectra[mode] = run(params, batch, key)
        rows.append((name, f"SLQ m={m}, 1 probe, reortho={mode!r}", f"{t:.3f} s", f"{t / t_floor:.2f} x HVP floor"))
        print(rows[-1], flush=True)
    rows.append((name, f"HVP floor: {m} linearized HVPs", f"{t_floor:.3f} s", "1.00"))
    try:
        if not with_matfree:
            raise ImportError
        from matfree import decomp

        tri = decomp.tridiag_sym(m, materialize=False, reortho="full")

        @jax.jit
        def mf(p, b, k):
            mv = hc.linearized_hvp(loss_fn, p, b)
            flat, unravel = ravel(p)
            v0 = jax.random.rademacher(k, flat.shape, flat.dtype)
            return tri(lambda x: ravel(mv(unravel(x)))[0], v0 / jnp.linalg.norm(v0)).J_small

        _, t = timed(mf, params, batch, key, reps=max(1, reps - 1))
        rows.append((name, f"matfree tridiag_sym({m}, reortho='full')", f"{t:.3f} s", f"{t / t_floor:.2f} x HVP floor"))
        print(rows[-1], flush=True)
    except ImportError:
        pass
    tv, w1 = density_distances(spectra["full"], spectra["none"])
    rows.append((name, "density distance lean vs full (same probe)", f"TV={tv:.4f}", f"W1/range={w1:.4f}"))
    print(rows[-1], flush=True)



def bench_blockwise(name, loss_fn, params, batch, key, m, reps, partition, rows):
    """blockwise vs per-block loop (lean mode in both; one probe)."""
    part = partition or hp.by_leaf(params)
    labels = part.labels(params)
    block = jax.jit(lambda p, b, k: hc.blockwise_slq(loss_fn, p, b, k, partition=part, num_steps=m, num_probes=1,
                                                     reortho="none"))
    cold_b, warm_b = timed(block, params, batch, key, reps=max(1, reps - 1))

    def one_block(label, linearize=True):
        def run(p, b, k):
            mv = hc.linearized_hvp(loss_fn, p, b) if linearize else (lambda t: hc.hvp(loss_fn, p, b, t))
            zeros = jax.tree.map(jnp.zeros_like, p)
            return hc.slq(lambda x: part.gather(mv(part.scatter(zeros, label, x)), label), part.gather(p, label), k,
                          num_steps=m, num_probes=1, reortho="none")
        return jax.jit(run)

    def loop(fns):
        return {label: fns[label](params, batch, jax.random.fold_in(key, i)) for i, label in enumerate(labels)}

    t0 = time.perf_counter()
    fns = {label: one_block(label) for label in labels}
    jax.block_until_ready(loop(fns))
    cold_l = time.perf_counter() - t0
    warm = []
    for _ in range(max(1, reps - 1)):
        t0 = time.perf_counter()
        jax.block_until_ready(loop(fns))
        warm.append(time.perf_counter() - t0)
    warm_l = float(np.median(warm))
    rows.append((name, f"blockwise SLQ m={m}, {len(labels)} blocks, one program (cold / warm)", f"{cold_b:.2f} s / {warm_b:.2f} s",
                 f"loop/blockwise: {cold_l / cold_b:.2f}x cold, {warm_l / warm_b:.2f}x warm"))
    rows.append((name, "per-block Python loop of slq, linearized HVP (cold / warm)", f"{cold_l:.2f} s / {warm_l:.2f} s", ""))
    print(rows[-2:], flush=True)
    # the seed-001 way: one Lanczos per block, every HVP recomputed (forward-over-reverse)
    t0 = time.perf_counter()
    fns = {label: one_block(label, linearize=False) for label in labels}
    jax.block_until_ready(loop(fns))
    cold_n = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(loop(fns))
    warm_n = time.perf_counter() - t0
    rows.append((name, "per-block Python loop of slq, recomputed HVP as [Zhang24] (cold / warm)",
                 f"{cold_n:.2f} s / {warm_n:.2f} s", f"loop/blockwise: {cold_n / cold_b:.2f}x cold, {warm_n / warm_b:.2f}x warm"))
    print(rows[-1], flush=True)



def bench_memory(name, loss_fn, params, batch, v, micro_sizes, rows):
    """compiled memory of the micro-batched HVP, micro-batch size fixed."""
    mb_size = jax.tree.leaves(batch)[0].shape[0]
    for num in micro_sizes:
        big = jax.tree.map(lambda x: jnp.concatenate([x] * num), batch)
        mb = hc.microbatch(big, num)
        c = jax.jit(lambda p, b, t: hc.hvp(loss_fn, p, b, t)).lower(params, mb, v).compile().memory_analysis()
        f = jax.jit(lambda p, b, t: hc.hvp(loss_fn, p, b, t)).lower(params, big, v).compile().memory_analysis()
        if c is None:
            rows.append((name, "memory", "backend gives no memory analysis", ""))
            break
        rows.append((name, f"HVP temp memory, {num} micro-batch(es) of {mb_size}",
                     f"{c.temp_size_in_bytes / 2**20:.1f} MiB",
                     f"one batch of {num * mb_size}: {f.temp_size_in_bytes / 2**20:.1f} MiB"))
        print(rows[-1], flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, < 60 s")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--out", default=None, help="write the markdown table here")
    ap.add_argument("--block-steps", type=int, default=None, help="Lanczos steps for the blockwise-vs-loop item")
    ap.add_argument("--items", default=",".join(ITEMS), help=f"comma list of {ITEMS}")
    ap.add_argument("--models", default="mlp,gpt",
                    help="comma list of mlp,gpt,report (report: the main job's default GPT, blockwise item only)")
    args = ap.parse_args()
    quick = args.quick
    reps = args.reps or (1 if quick else 3)
    m = 10 if quick else 100
    load0 = os.getloadavg()
    t_start = time.perf_counter()
    rows = []
    if quick:
        # compile-bound: one tiny model, 2 blocks, 2 micro-batch counts (~12 compilations)
        models = [("MLP 32-16-16-10 (batch 16)", make_mlp(jax.random.key(0), (32, 16, 16, 10), 16),
                   hp.by_regex([(r"head", "head"), (r".*", "hidden")]), ITEMS)]
        micro = (1, 4)
    else:
        # (name, (loss_fn, params, batch), partition for the blockwise item, items this model runs)
        models = []
        if "mlp" in args.models:
            models.append(("MLP 784-512-512-10 (batch 256)", make_mlp(jax.random.key(0), (784, 512, 512, 10), 256),
                           None, ITEMS))  # by_leaf: 6 blocks
        if "gpt" in args.models:
            gpt = make_gpt(jax.random.key(1), vocab=256, d=128, layers=2, heads=4, seq=64, batch_size=16)
            models.append(("GPT d=128 L=2 H=4 T=64 V=256 (batch 16)", gpt,
                           hp.by_regex([(r"attn", "attn"), (r"mlp", "mlp"), (r"norm", "norms"), (r".*", "embed_head")]),
                           ITEMS))
            # the same GPT with one block per tensor (20 blocks): the loop compiles 20 programs
            models.append(("GPT by-leaf blocks", gpt, hp.by_leaf(gpt[1]), ("blockwise",)))
        if "report" in args.models:  # the main job's default model: blockwise item only, by-leaf (37 blocks)
            from heterogeneity.experiment import setup

            rep = setup("gpt")
            models.append(("report GPT (setup(\"gpt\")) by-leaf blocks", (rep.loss_fn, rep.params, rep.batch),
                           hp.by_leaf(rep.params), ("blockwise",)))
        micro = (1, 4, 16)
    items = tuple(x for x in args.items.split(",") if x)
    bad = set(items) - set(ITEMS)
    if bad:
        raise SystemExit(f"unknown --items {sorted(bad)}; choose from {ITEMS}")
    for name, (loss_fn, params, batch), part, runs in models:
        chosen = tuple(x for x in items if x in runs)
        if chosen:
            bench_model(name, loss_fn, params, batch, m=m, reps=reps, micro_sizes=micro, rows=rows, partition=part,
                        block_steps=args.block_steps, items=chosen)
    load1 = os.getloadavg()
    lines = [
        f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}; machine: {platform.machine()}, "
        f"{os.cpu_count()} CPUs, jax {jax.__version__} on {jax.devices()[0].platform}; "
        f"load average at start {load0[0]:.1f}, at end {load1[0]:.1f}; wall {time.perf_counter() - t_start:.0f} s",
        "command: python scripts/bench_curvature.py " + " ".join(os.sys.argv[1:]), "",
        "| model | measurement | value | ratio |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    text = "\n".join(lines)
    print("\n" + text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
