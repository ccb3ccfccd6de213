"""Blockwise Hessian spectra of every by-leaf block of a GPT-2-small-shaped model, chunk by chunk.

For each parameter tensor b (embedding, positions, each layer's query/key/value/out/fc_in/
fc_out kernels and biases, LayerNorm scales and biases, final norm, LM head) it estimates the
spectral density of the diagonal Hessian block H_bb by stochastic Lanczos quadrature [Zhang24, App. C.2, Alg. 5]: for probes v ~ Rademacher on block b, m Lanczos steps on v ↦ H_bb v give a
Gauss quadrature (nodes θ_j, weights c_j) with Σ_j c_j θ_j^k = vᵀ H_bbᵏ v for k < 2m.

    python scripts/blockwise_gpt2.py --out results/gpt2            # GPT-2 small, seq 1024, m=100, 10 probes
    python scripts/blockwise_gpt2.py --dry-run                     # program size, memory, estimated time
    python scripts/blockwise_gpt2.py --layers 2 --d-model 64 --heads 4 --seq 32 --batch 4 \\
        --steps 10 --probes 2 --out /tmp/g2                          # ~2 min on 2 CPU cores (compiles)

The model is `models.build("gpt", preset="gpt2_small")` (12 layers, d_model 768, 12 heads,
vocab 50257, untied head: 163M params, 197 blocks), at random init (``--seed``), on a synthetic
token batch drawn from the seed (or ``--tokens PATH``, a .npy of token ids, 1-D or (rows, ≥seq+1)).
``--chunk layer`` (default) runs the embedding/head blocks, then one transformer layer's 16
blocks, per compiled `blockwise_slq(..., blocks=chunk)` call; ``block`` runs one block per call.
Probes come from one key for every chunk (``blockwise_slq`` folds in the global block number), so
a chunk's numbers are those of a single all-blocks run. Each chunk is written atomically to
``OUT/<chunk>.npz`` (labels, nodes, weights (blocks, probes, steps), finite) and recorded in
``OUT/manifest.json``; a rerun skips chunks already on disk and refuses an OUT written with
other settings. A chunk file that cannot be read stops the run naming the file (delete it to
recompute). ``--batch-size``, ``--microbatches`` and ``--group-by`` only trade memory or compile
time for run time and may change between restarts.

``--dry-run`` runs nothing. It builds the params abstractly (`nnx.eval_shape`), lowers and
compiles the chunk of layer 0 (the costliest: its HVPs run all layers) at the full shape and
prints its StableHLO size, lower/compile seconds and XLA memory_analysis; then a table per chunk
(blocks, params, Lanczos basis steps·d_block·bytes for the items in flight, flops), the
linearization residuals (`jax.eval_shape` of `jax.linearize`), and an ESTIMATED time = total
flops / ``--device-tflops`` (an assumed sustained throughput, default 400). XLA's cost_analysis
counts a loop body once, so the flops come from loop-free programs (one linearization + one HVP of
every block of a chunk) times steps·probes, plus ~2·m²·d_b per probe of Gram-Schmidt. Compiling
those costs time per block and per layer, not per token, so for more than 2 layers they are
compiled at depth 1 and 2 and extrapolated linearly in depth (identical layers: a layer-l block's
HVP runs the L-l layers after it). At the GPT-2-small default it takes ~3.5 minutes on 2 CPU cores.
``--dry-run-max-seq S`` measures at sequence S instead and scales the flops linearly in tokens.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import re
import sys
import time
import zipfile

import numpy as np

MANIFEST = "manifest.json"
SETTINGS = ("layers", "d_model", "heads", "vocab", "seq", "batch", "steps", "probes", "seed", "dtype", "chunk",
            "tokens_sha256")  # fix the results; --batch-size/--microbatches/--group-by only trade memory or time


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--d-model", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=2, help="sequences in the Hessian batch (default 2)")
    ap.add_argument("--microbatches", type=int, default=1, help="scan the batch in this many micro-batches")
    ap.add_argument("--steps", type=int, default=100, help="Lanczos steps m")
    ap.add_argument("--probes", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=1, help="(block, probe) pairs run at once (None: 0)")
    ap.add_argument("--chunk", choices=("layer", "block"), default="layer")
    ap.add_argument("--group-by", choices=("module", "leaf", "layer", "all"), default="module",
                    help="blocks sharing one restricted HVP program (curvature.blockwise_slq; speed only)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="params/compute dtype")
    ap.add_argument("--tokens", default=None, help=".npy of token ids (default: synthetic from --seed)")
    ap.add_argument("--out", default=None, help="result directory (required unless --dry-run)")
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--device-tflops", type=float, default=400.0,
                    help="assumed sustained device throughput for the dry-run estimate (TFLOP/s)")
    ap.add_argument("--dry-run-max-seq", type=int, default=1024,
                    help="dry run measures at min(seq, this) and scales flops linearly in tokens")
    ap.add_argument("--compile-cache", default=None, help="JAX persistent compilation cache directory")
    args = ap.parse_args(argv)
    if not args.dry_run and not args.out:
        ap.error("--out is required (or give --dry-run)")
    if min(args.layers, args.d_model, args.heads, args.seq, args.batch, args.steps, args.probes) < 1:
        ap.error("--layers, --d-model, --heads, --seq, --batch, --steps and --probes must be >= 1")
    if args.batch % args.microbatches:
        ap.error(f"--batch {args.batch} is not divisible by --microbatches {args.microbatches}")
    args.batch_size = args.batch_size or None
    args.tokens_sha256 = _sha256(args.tokens) if args.tokens else None
    return args


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ------------------------------------------------------------------------------------ set-up

def setup(args, *, abstract=False, seq=None):
    """``(loss_fn, params, batch, partition, probe_key)``; ``abstract``: ShapeDtypeStructs only."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from heterogeneity import curvature as hc
    from heterogeneity import models
    from heterogeneity import partition as hp

    seq = seq or args.seq
    cfg = dict(models.PRESETS["gpt"]["gpt2_small"], num_layers=args.layers, d_model=args.d_model,
               num_heads=args.heads, d_ff=4 * args.d_model, vocab_size=args.vocab, max_len=seq)
    if abstract:
        net = nnx.eval_shape(lambda: models.GPT(**cfg, rngs=nnx.Rngs(args.seed)))
    else:
        net = models.build("gpt", seed=args.seed, **cfg)
    apply_fn, params = models.functional(net)
    dtype = jnp.dtype(args.dtype)
    params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, dtype) if abstract else x.astype(dtype), params)
    data_key, probe_key = jax.random.split(jax.random.key(args.seed))
    shape = (args.batch, seq + 1)
    if abstract:
        tokens = jax.ShapeDtypeStruct(shape, jnp.int32)
    elif args.tokens:
        tokens = jnp.asarray(load_tokens(args.tokens, shape, args.vocab))
    else:
        tokens = jax.random.randint(data_key, shape, 0, args.vocab)
    batch = {"tokens": tokens}
    if args.microbatches > 1:
        batch = jax.eval_shape(lambda b: hc.microbatch(b, args.microbatches), batch) if abstract \
            else hc.microbatch(batch, args.microbatches)
    return models.lm_loss(apply_fn), params, batch, hp.by_leaf(params), probe_key


def load_tokens(path, shape, vocab):
    t = np.load(path)
    if not np.issubdtype(t.dtype, np.integer):
        raise SystemExit(f"--tokens {path}: token ids must be integers, got dtype {t.dtype}")
    n = shape[0] * shape[1]
    if t.ndim == 1 and t.size >= n:
        t = t[:n].reshape(shape)
    elif t.ndim == 2 and t.shape[0] >= shape[0] and t.shape[1] >= shape[1]:
        t = t[: shape[0], : shape[1]]
    else:
        raise SystemExit(f"--tokens {path}: need >= {n} ids (1-D) or >= {shape} (2-D), got shape {t.shape}")
    if t.min() < 0 or t.max() >= vocab:
        raise SystemExit(f"--tokens {path}: ids must lie in [0, {vocab}), got [{t.min()}, {t.max()}]")
    return t.astype(np.int32)


def make_chunks(labels, mode):
    """``[(name, [labels])]``: embedding/head blocks first, then one chunk per layer (or per block)."""
    if mode == "block":
        return [(f"block{i:03d}", [lab]) for i, lab in enumerate(labels)]
    groups: dict[str, list[str]] = {}
    for lab in labels:
        m = re.match(r"layers/(\d+)/", lab)
        groups.setdefault(f"layer{int(m.group(1)):03d}" if m else "embed_head", []).append(lab)
    head = [("embed_head", groups.pop("embed_head"))] if "embed_head" in groups else []
    return head + sorted(groups.items())


def chunk_program(loss_fn, partition, args):
    """``f(params, batch, key, labels)`` -> `curvature.BlockwiseSpectrum` (a function to `jax.jit` per chunk)."""
    from heterogeneity import curvature as hc

    def run(params, batch, key, *, labels):
        return hc.blockwise_slq(loss_fn, params, batch, key, partition=partition, num_steps=args.steps,
                                num_probes=args.probes, batch_size=args.batch_size, blocks=labels,
                                group_by=args.group_by)

    return run


# ----------------------------------------------------------------------------- chunk files

def save_chunk(path, labels, spectra):
    arrays = dict(labels=np.asarray(labels),
                  nodes=np.stack([np.asarray(spectra.block(b).nodes, np.float32) for b in labels]),
                  weights=np.stack([np.asarray(spectra.block(b).weights, np.float32) for b in labels]),
                  finite=np.asarray([bool(spectra.block(b).finite) for b in labels]))
    _atomic(path, lambda f: np.savez(f, **arrays))


def load_chunk(path, labels, probes, steps):
    """The chunk's ``{label: (nodes, weights, finite)}``; an unreadable or mismatching file raises
    `SystemExit` naming it."""
    try:
        with np.load(path) as z:
            got = [str(x) for x in z["labels"]]
            nodes, weights, finite = z["nodes"], z["weights"], z["finite"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise SystemExit(f"corrupt chunk file {path}: {type(e).__name__}: {e}. Delete it to recompute that chunk.")
    want = (len(labels), probes, steps)
    if got != list(labels) or nodes.shape != want or weights.shape != want or finite.shape != (len(labels),):
        raise SystemExit(f"corrupt chunk file {path}: holds labels {got[:3]}... with nodes {nodes.shape}, expected "
                         f"{len(labels)} blocks {labels[:3]}... of shape {want}. Delete it to recompute that chunk.")
    return {b: (nodes[i], weights[i], bool(finite[i])) for i, b in enumerate(labels)}


def _atomic(path, write):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_json(path, obj):
    _atomic(path, lambda f: f.write(json.dumps(obj, indent=1).encode()))


# ------------------------------------------------------------------------------------- run

def run(args):
    import jax

    os.makedirs(args.out, exist_ok=True)
    settings = {k: getattr(args, k) for k in SETTINGS}
    mpath = os.path.join(args.out, MANIFEST)
    old = None
    if os.path.exists(mpath):
        try:
            with open(mpath) as f:
                old = json.load(f)
            diff = {k: (old["settings"].get(k), v) for k, v in settings.items() if old["settings"].get(k) != v}
            dict(old["chunks"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise SystemExit(f"corrupt manifest {mpath}: {type(e).__name__}: {e}")
        if diff:
            raise SystemExit(f"{args.out} holds a run with other settings (old, new): {diff}; use another --out")
    loss_fn, params, batch, part, key = setup(args)
    labels = list(part.labels(params))
    chunks = make_chunks(labels, args.chunk)
    manifest = {"settings": settings, "blocks": labels, "chunks": dict(old["chunks"]) if old else {}}
    n_params = sum(x.size for x in jax.tree.leaves(params))
    print(f"{len(labels)} blocks, {n_params:,} params, {len(chunks)} chunks -> {args.out}", flush=True)
    program = chunk_program(loss_fn, part, args)
    t_all = time.perf_counter()
    for name, chunk in chunks:
        path = os.path.join(args.out, f"{name}.npz")
        if os.path.exists(path):
            load_chunk(path, chunk, args.probes, args.steps)
            manifest["chunks"].setdefault(name, dict(file=f"{name}.npz", labels=chunk))  # killed before the manifest
            print(f"{name}: done before, skipped ({path})", flush=True)
            continue
        t0 = time.perf_counter()
        compiled = jax.jit(functools.partial(program, labels=chunk)).lower(params, batch, key).compile()
        t1 = time.perf_counter()
        spectra = jax.block_until_ready(compiled(params, batch, key))
        t2 = time.perf_counter()
        save_chunk(path, chunk, spectra)
        finite = all(bool(spectra.block(b).finite) for b in chunk)
        manifest["chunks"][name] = dict(file=f"{name}.npz", labels=chunk, compile_s=t1 - t0, run_s=t2 - t1,
                                        finite=finite)
        _write_json(mpath, manifest)
        print(f"{name}: {len(chunk)} blocks, compile {t1 - t0:.1f}s run {t2 - t1:.1f}s finite={finite}", flush=True)
    if manifest != old:
        _write_json(mpath, manifest)
    print(f"all {len(labels)} blocks in {args.out} ({time.perf_counter() - t_all:.1f}s)")
    return 0


# --------------------------------------------------------------------------------- dry run

def _hvp_flops(loss_fn, part, params, batch, labels, group_by):
    """XLA flops of one linearization plus one HVP of every block in ``labels`` (no loops), each
    through its group's restricted HVP as `blockwise_slq` runs it."""
    import jax
    import jax.numpy as jnp

    from heterogeneity import curvature as hc

    def once(p, b, key):
        mv = hc.HessianOperator(loss_fn, p, b).bind()
        total = jnp.zeros((), jnp.float32)
        for g in hc.block_packing(part, p, blocks=labels, group_by=group_by):
            f = hc.group_matvec(mv, p, g, jnp.float32)
            for i in range(len(g.labels)):
                x = jax.random.rademacher(jax.random.fold_in(key, i), (g.index.shape[1],), jnp.float32)
                total += jnp.vdot(x, f(x, i))
        return total

    return _flops(jax.jit(once).lower(params, batch, jax.random.key(0)))


def _flops(lowered):
    """XLA's flop count of the optimized HLO (LLVM optimization skipped: the code is never run)."""
    return lowered.compile(compiler_options={"xla_backend_optimization_level": 0}).cost_analysis()["flops"]


def _measure(args, depth, seq, names):
    """``(grad flops, {chunk: flops of one HVP of each of its blocks})`` of a ``depth``-layer model."""
    import jax

    from heterogeneity import curvature as hc

    loss_fn, params, batch, part, _ = setup(argparse.Namespace(**{**vars(args), "layers": depth}), abstract=True,
                                            seq=seq)
    chunks = dict(make_chunks(list(part.labels(params)), "layer"))
    grad = jax.grad(lambda p, b: hc.mean_loss(loss_fn, p, b))
    g = _flops(jax.jit(grad).lower(params, batch))
    lin = g if args.microbatches == 1 else 0.0  # a micro-batched HVP recomputes its pass: nothing shared
    return g, {n: _hvp_flops(loss_fn, part, params, batch, chunks[n], args.group_by) - lin for n in names}


def chunk_hvp_flops(args, seq):
    """Grad flops and per-chunk HVP flops of the full model. Up to 2 layers measured as is; deeper
    models from depth 1 and 2 (identical layers: a layer-l block's HVP runs the L-l layers after it,
    so every cost is linear in depth)."""
    L = args.layers
    names = [n for n, _ in make_chunks([f"layers/{i}/" for i in range(L)] + ["embed"], "layer")]
    if L <= 2:
        return _measure(args, L, seq, names)
    g1, h1 = _measure(args, 1, seq, ["embed_head"])
    g2, h2 = _measure(args, 2, seq, ["embed_head", "layer000", "layer001"])
    per_layer = h2["layer000"] - h2["layer001"]  # one more layer in the block's tail
    hvp = {"embed_head": h1["embed_head"] + (h2["embed_head"] - h1["embed_head"]) * (L - 1)}
    hvp.update({f"layer{i:03d}": h2["layer001"] + per_layer * (L - 1 - i) for i in range(L)})
    return g1 + (g2 - g1) * (L - 1), hvp


def _residual_bytes(loss_fn, params, batch):
    """Bytes `jax.linearize` of the gradient keeps (abstract; for a micro-batched batch: one micro-batch's)."""
    import jax

    from heterogeneity.curvature import MicroBatched

    if isinstance(batch, MicroBatched):
        batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), batch.batch)
    res = jax.eval_shape(lambda p, b: jax.linearize(lambda q: jax.grad(loss_fn)(q, b), p)[1], params, batch)
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(res))


def _gb(n):
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.3f} MB"


def dry_run(args):
    import jax
    import jax.numpy as jnp

    t_start = time.perf_counter()
    seq = min(args.seq, args.dry_run_max_seq)
    scale = args.seq / seq  # flops ~ tokens (attention grows faster: then a lower bound)
    loss_fn, params, batch, part, key = setup(args, abstract=True)
    labels = list(part.labels(params))
    chunks = make_chunks(labels, args.chunk)
    sizes = part.sizes(params)
    isz = jnp.dtype(args.dtype).itemsize
    n_params = sum(sizes.values())
    inflight = min(args.batch_size or args.probes, args.probes)  # (block, probe) items of a block at once
    items = args.probes * args.steps
    print(f"model: {args.layers} layers, d_model {args.d_model}, {args.heads} heads, vocab {args.vocab}, seq {args.seq}, "
          f"batch {args.batch} ({args.microbatches} micro-batch(es)), {args.dtype}: {n_params:,} params, "
          f"{len(labels)} blocks, {len(chunks)} chunks ({args.chunk}); m={args.steps} steps, {args.probes} probes, "
          f"batch_size={args.batch_size}")

    rep_name, rep = next((n, c) for n, c in chunks if c[0].startswith("layers/"))  # the costliest kind
    t = time.perf_counter()
    lowered = jax.jit(functools.partial(chunk_program(loss_fn, part, args), labels=rep)).lower(params, batch, key)
    t_lower = time.perf_counter() - t
    hlo = len(lowered.as_text())
    t = time.perf_counter()
    mem = lowered.compile().memory_analysis()
    t_compile = time.perf_counter() - t
    print(f"representative chunk {rep_name} ({len(rep)} blocks, full shape): StableHLO {hlo / 1e6:.2f}M chars; "
          f"lower {t_lower:.1f}s + compile {t_compile:.1f}s on this machine (CPU)")
    print(f"  XLA memory_analysis: arguments {_gb(mem.argument_size_in_bytes)}, outputs "
          f"{_gb(mem.output_size_in_bytes)}, temp {_gb(mem.temp_size_in_bytes)}")

    t = time.perf_counter()
    grad_flops, hvp = chunk_hvp_flops(args, seq)
    t_flops = time.perf_counter() - t
    how = "measured at full depth" if args.layers <= 2 else "measured at depth 1 and 2, extrapolated linearly in depth"
    if scale > 1:
        how += f", at seq {seq} and scaled x{scale:g} in tokens (attention grows faster: a lower bound)"
    lin = grad_flops if args.microbatches == 1 else 0.0
    rows, total = [], 0.0
    for name, chunk in make_chunks(labels, "layer"):
        d = [sizes[b] for b in chunk]
        reortho = sum(2 * items * args.steps * db for db in d if db > args.steps)  # Gram-Schmidt, ~2 m^2 d per probe
        flops = scale * (lin + args.microbatches * items * hvp[name]) + reortho  # XLA costs a scan body once
        rows.append(dict(name=name, blocks=len(chunk), params=sum(d), basis_bytes=inflight * args.steps * max(d) * isz,
                         flops=flops))
        total += flops
    if args.chunk == "block":
        total += scale * lin * (len(chunks) - len(rows))  # one linearization per block instead of per layer
    residual = _residual_bytes(loss_fn, params, batch)
    print(f"memory: params {_gb(n_params * isz)}, linearization residuals {_gb(residual)} "
          f"({'kept for the chunk' if args.microbatches == 1 else 'one micro-batch, recomputed per HVP'}), "
          f"Lanczos basis {args.steps}·d_block·{isz} B per (block, probe) item, {inflight} item(s) of a block at once")
    print(f"  {'chunk':<12}{'blocks':>7}{'params':>13}{'basis GB':>10}{'GFLOP':>16}")
    for r in rows:
        print(f"  {r['name']:<12}{r['blocks']:>7}{r['params']:>13,}{r['basis_bytes'] / 1e9:>10.3f}{r['flops'] / 1e9:>16,.1f}")
    peak = n_params * isz + residual + max(r["basis_bytes"] for r in rows)
    print(f"memory estimate per chunk: <= {_gb(peak)} (params + residuals + largest basis); XLA's temp for "
          f"{rep_name} above")
    secs = total / (args.device_tflops * 1e12)
    print(f"flops: {total / 1e12:,.1f} TFLOP for {len(labels) * items:,} HVPs (XLA cost_analysis of one linearization "
          f"+ one HVP per block, x {items}; {how}; {t_flops:.0f}s)")
    print(f"ESTIMATED time: {secs / 60:.2f} min at an assumed {args.device_tflops:g} TFLOP/s sustained "
          f"(--device-tflops; an estimate, not a measurement) + compiling {len(chunks)} chunks "
          f"(~{(t_lower + t_compile) / 60:.1f} min each on this CPU; --compile-cache keeps them for restarts)")
    print(f"dry run took {time.perf_counter() - t_start:.1f}s")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        _write_json(os.path.join(args.out, "dry_run.json"), dict(
            stablehlo_chars=hlo, lower_s=t_lower, compile_s=t_compile, temp_bytes=mem.temp_size_in_bytes,
            residual_bytes=residual, total_flops=total, estimated_s=secs, device_tflops=args.device_tflops,
            flops_how=how, chunks=rows))
    return 0


def main(argv=None):
    args = parse(argv)
    if args.compile_cache:
        import jax
        jax.config.update("jax_compilation_cache_dir", args.compile_cache)
    return dry_run(args) if args.dry_run else run(args)


if __name__ == "__main__":
    sys.exit(main())
