"""Write the tutorial notebooks in notebooks/ from the cell sources below (outputs stripped).

    python scripts/build_notebooks.py        # rewrites notebooks/*.ipynb

The test suite executes every notebook (tests/test_notebooks.py), so they stay runnable.

Every number a notebook prints as a check is also asserted in the notebook, with its tolerance
stated next to it (a notebook that prints a wrong number must fail, not just print it), and
tests/test_notebooks.py parses the printed numbers and asserts them again (so the check survives
an assert being edited out). Keep the printed formats in step with that test.
"""
from __future__ import annotations

from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]

QUICKSTART = [
    ("md", """# Why do transformers need Adam? A 2-minute tour of `heterogeneity`

We take a small causal char-level GPT on the shipped Shakespeare corpus (offline), and measure
the two kinds of heterogeneity the papers blame for SGD's trouble:

* **gradient heterogeneity** (Tomihari & Sato, seed 000): block gradient norms differ wildly;
* **block (Hessian) heterogeneity** (Zhang et al., seed 001): blockwise Hessian spectra differ.

Then we run SGD, Adam and SignSGD (S) for a few steps with the toolkit's Optax transforms."""),
    ("code", """import jax, jax.numpy as jnp, numpy as np, optax
from heterogeneity import curvature as hc, data, metrics as hm, models, optim, partition as hp

corpus = data.load_shakespeare(max_chars=200_000)
net = models.build("gpt", vocab_size=corpus.vocab_size, d_model=32, num_heads=2, num_layers=2, max_len=32)
apply_fn, params = models.functional(net)
loss_fn = models.lm_loss(apply_fn)
batch = corpus.sample_batch("train", 16, 32, jax.random.key(0))
loss0 = float(loss_fn(params, batch))
print(f"loss at init: {loss0:.4f} (ln V = {np.log(corpus.vocab_size):.4f} for V = {corpus.vocab_size} characters)")
# An untrained model predicts close to uniformly, so its cross-entropy is near ln V (measured 4.93).
assert np.isfinite(loss0) and abs(loss0 - np.log(corpus.vocab_size)) < 1.0, loss0"""),
    ("md", """## Partitions: the shared language
One block per parameter tensor, as both papers use. The same object drives block norms,
blockwise spectra and blockwise Adam."""),
    ("code", """p = hp.by_leaf(params)
print(p.describe(params))
# The blocks tile the parameters exactly: their sizes add up to the parameter count.
assert sum(p.sizes(params).values()) == sum(x.size for x in jax.tree.leaves(params))"""),
    ("md", """## Gradient heterogeneity (seed 000 App. C.2, D.5)
A full-batch gradient, averaged over 4 micro-batches in constant memory, then normalized block
norms $G_b/\\sqrt{P_b}$, their shares, and the Gini coefficient. The 4 micro-batches have equal
size, so their averaged gradient must equal the gradient of the whole batch in one shot."""),
    ("code", """fb = hm.full_batch_grad(loss_fn, params, hc.microbatch(batch, 4))
direct = jax.grad(loss_fn)(params, batch)
grad_err = float(optax.global_norm(jax.tree.map(jnp.subtract, fb.grad, direct)) / optax.global_norm(direct))
print(f"micro-batched vs one-shot: relative gradient error {grad_err:.1e}, loss {float(fb.loss):.4f} vs {loss0:.4f}")
# Only float32 summation order differs (measured 3e-7); 1e-4 still catches any wrong weighting.
assert grad_err <= 1e-4 and abs(float(fb.loss) - loss0) <= 1e-4 * loss0, (grad_err, float(fb.loss))

gh = hm.gradient_heterogeneity(fb.grad, partition=p)
gini, shares, nb = float(gh.gini), np.asarray(gh.shares, np.float64), len(gh.labels)
x = np.asarray(gh.normalized, np.float64)
gini_ref = np.abs(x[:, None] - x[None, :]).sum() / (2 * nb * x.sum())  # the O(n²) definition
print(f"Gini of normalized block gradient norms: {gini:.3f} (O(n²) definition: {gini_ref:.3f}; "
      f"{nb} blocks, shares sum to {shares.sum():.6f})")
# The Gini of n nonnegative values lies in [0, (n-1)/n]; the shares are a distribution.
assert 0 <= gini <= 1 - 1 / nb and abs(gini - gini_ref) <= 1e-5, (gini, gini_ref)
assert np.all(shares >= 0) and abs(shares.sum() - 1) <= 1e-5, shares.sum()
for label, share in sorted(zip(gh.labels, shares), key=lambda t: -t[1])[:5]:
    print(f"{share:6.3f}  {label}")"""),
    ("md", """## Blockwise Hessian spectra in one compiled program (seed 001 App. C.2)
Stochastic Lanczos quadrature of every diagonal block $H_{bb}$ at once, then the pairwise JS
distance between their blurred densities and JS⁰, their mean."""),
    ("code", """slq = jax.jit(lambda prm, b, k: hc.blockwise_slq(loss_fn, prm, b, k, partition=p, num_steps=40, num_probes=1))
spectra = slq(params, batch, jax.random.key(1))
bounded = hm.spectrum_divergence(spectra, mode="bounded")
paper = hm.spectrum_divergence(spectra, mode="paper")
print(f"JS0 (bounded JS distance, <= 0.833): {float(bounded.mean):.3f}")
print(f"JS0 (paper-compatible blurred symmetric KL): {float(paper.mean):.2f}")
top = {label: float(hm.spectral_scale(s)) for label, s in spectra.items()}
print("largest block Hessian norms:", sorted(top.items(), key=lambda t: -t[1])[:3])
wsum = np.concatenate([np.asarray(s.weights, np.float64).sum(-1) for s in spectra.values()])
print(f"quadrature weights per probe sum to 1 within {np.abs(wsum - 1).max():.1e}")
# Bounds that hold for any input: the JS distance lies in [0, √ln 2 = 0.8326] (1e-6 for float32
# rounding), the symmetric KL is finite and >= 0, norms are >= 0, and the Gauss quadrature weights
# of a unit probe sum to 1 (float32: measured 1e-7; tolerance 1e-4).
js = np.asarray(bounded.matrix)
assert 0 <= float(bounded.mean) <= np.sqrt(np.log(2)) and js.min() >= 0 and js.max() <= np.sqrt(np.log(2)) + 1e-6
assert np.isfinite(float(paper.mean)) and float(paper.mean) >= 0, float(paper.mean)
assert all(np.isfinite(v) and v >= 0 for v in top.values()), top
assert np.abs(wsum - 1).max() <= 1e-4, wsum"""),
    ("md", """## Is the estimator right? Check one block against dense `eigh`
A small block (a LayerNorm scale, 32 parameters) has fewer parameters than Lanczos steps, so
SLQ returns its exact eigenvalues. We build that dense block $H_{bb}$ column by column from 32
Hessian-vector products on the block's basis vectors (`scatter` puts a vector into the block,
`gather` reads the block back), vmapped in one compiled call."""),
    ("code", """label = "layers/0/norm_attn/scale"
n = p.sizes(params)[label]
zeros = jax.tree.map(jnp.zeros_like, params)
column = lambda e: p.gather(hc.hvp(loss_fn, params, batch, p.scatter(zeros, label, e)), label)
H_bb = np.asarray(jax.jit(jax.vmap(column))(jnp.eye(n)))
exact = np.linalg.eigvalsh((H_bb + H_bb.T) / 2)
s = spectra[label]
got = np.sort(np.asarray(s.nodes[0])[np.asarray(s.weights[0]) > 1e-6])
scale = np.abs(exact).max()
err = np.abs(got - exact).max() if got.size == n else np.inf
asym = np.abs(H_bb - H_bb.T).max()
print(f"{got.size} SLQ nodes for a block of {n}; max |eigenvalue error| = {err:.2e}"
      f" (spectral scale {scale:.2e}; asymmetry of H_bb {asym:.2e}; SLQ spectral scale {top[label]:.2e})")
# Both sides are float32 Hessian-vector products: errors of ~1e-7 x scale are rounding (measured
# 4e-7 x scale), so 1e-4 x scale leaves wide headroom and still fails on any real error.
assert got.size == n, (got.size, n)  # n < 40 Lanczos steps: every eigenvalue is a node
assert np.isfinite(scale) and scale > 0, scale  # a zero Hessian would pass the checks below vacuously
assert err <= 1e-4 * scale, (err, scale)
assert asym <= 1e-4 * scale, (asym, scale)  # a Hessian is symmetric
assert abs(top[label] - scale) <= 1e-4 * scale, (top[label], scale)  # max |Ritz value| = ‖H_bb‖₂ here"""),
    ("md", """## Optimizers as Optax transforms
`optim.get(name, **hparams)` builds any optimizer of the four papers; they chain with Optax.
Learning rates are lightly tuned (a 4-point grid each); SignSGD (S) steps by γ‖g‖₁·sign(g)
(seed 000 §4.6), so its γ is small."""),
    ("code", """def run(opt, steps=40):
    state = opt.init(params)

    @jax.jit
    def step(prm, st):  # full-batch steps on the fixed batch above
        g = jax.grad(loss_fn)(prm, batch)
        upd, st = opt.update(g, st, prm)
        return optax.apply_updates(prm, upd), st

    prm = params
    for _ in range(steps):
        prm, state = step(prm, state)
    return float(loss_fn(prm, batch))

losses = {}
for name, hp_ in [("sgd", dict(learning_rate=0.5)), ("adam", dict(learning_rate=3e-3)),
                  ("signsgd_l1", dict(learning_rate=1e-4))]:
    opt = optax.chain(optax.clip_by_global_norm(1.0), optim.get(name, **hp_))
    losses[name] = run(opt)
    print(f"{name:>10}: loss after 40 steps = {losses[name]:.3f} (at init {loss0:.3f})")
# 40 full-batch steps on one fixed batch must lower its loss, for every optimizer.
assert all(np.isfinite(v) and v < loss0 for v in losses.values()), losses"""),
    ("md", """For the full picture on any model (Λ_G/Λ_P, ℓ∞ geometry, figures and a written verdict),
run `heterogeneity report` or `heterogeneity.experiment.report(...)`."""),
]

NOTEBOOKS = {"01_quickstart.ipynb": QUICKSTART}


def build(cells) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
                for kind, src in cells]
    return nb


def main() -> None:
    out = ROOT / "notebooks"
    out.mkdir(exist_ok=True)
    for name, cells in NOTEBOOKS.items():
        nbformat.write(build(cells), out / name)
        print("wrote", out / name)


if __name__ == "__main__":
    main()
