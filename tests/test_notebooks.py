"""Every tutorial notebook executes top to bottom, matches its builder script, and prints right numbers.

The notebooks assert their own checks; the tests here parse the printed numbers and assert them
again, so a notebook whose assert was edited out (or whose number is printed but never checked)
still fails. A notebook that prints ``max |eigenvalue error| = 6.91e+15`` must not pass.
"""
import ast
import collections
import math
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
NUM = r"([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|inf|nan))"  # what f"{x:.3f}" / f"{x:.2e}" print, inf/nan included
JS_MAX = math.sqrt(math.log(2))  # the JS distance lies in [0, √ln 2 = 0.8326]


def _one(pattern, text, what):
    """The groups of the single match of ``pattern`` (as floats where they parse)."""
    hits = re.findall(pattern, text, flags=re.MULTILINE)
    assert len(hits) == 1, f"expected one {what!r} line in the notebook output, found {len(hits)}"
    groups = hits[0] if isinstance(hits[0], tuple) else (hits[0],)
    return [float(g) for g in groups]


def check_quickstart(text: str) -> None:
    """Assert every number the quickstart prints (same tolerances as the notebook's own asserts)."""
    loss0, ln_v, vocab = _one(rf"^loss at init: {NUM} \(ln V = {NUM} for V = (\d+) characters\)$", text, "loss at init")
    assert math.isfinite(loss0) and abs(ln_v - math.log(vocab)) < 1e-3 and abs(loss0 - ln_v) < 1.0, (loss0, ln_v)

    rows = [(label, int(size.replace(",", "")), float(pct))
            for label, size, pct in re.findall(r"^(\S+)\s+([\d,]+)\s+([\d.]+)%$", text, flags=re.MULTILINE)]
    (total,) = _one(r"^total\s+([\d,]+)$", text.replace(",", ""), "partition total")
    assert rows and sum(n for _, n, _ in rows) == total, "partition block sizes do not add up to the total"
    assert abs(sum(pct for *_, pct in rows) - 100) <= 0.005 * len(rows) + 1e-9  # each printed to 0.01%

    grad_err, fb_loss, loss0_again = _one(
        rf"relative gradient error {NUM}, loss {NUM} vs {NUM}$", text, "micro-batched gradient")
    assert grad_err <= 1e-4 and abs(fb_loss - loss0) <= 1e-4 * loss0 + 1e-4 and loss0_again == round(loss0, 4)

    gini, gini_ref, nb, share_sum = _one(
        rf"^Gini of normalized block gradient norms: {NUM} \(O\(n²\) definition: {NUM}; (\d+) blocks, "
        rf"shares sum to {NUM}\)$", text, "Gini")
    assert 0 <= gini <= 1 - 1 / nb and abs(gini - gini_ref) <= 1.5e-3, (gini, gini_ref)  # printed to 3 decimals
    assert nb == len(rows) and abs(share_sum - 1) <= 1e-5, (nb, share_sum)
    shares = [float(s) for s in re.findall(r"^ *(\d+\.\d{3})  [\w/]+$", text, flags=re.MULTILINE)]
    assert len(shares) == 5 and shares == sorted(shares, reverse=True), shares
    assert all(0 <= s <= 1 for s in shares) and sum(shares) <= 1 + 5e-3, shares

    (js0,) = _one(rf"^JS0 \(bounded JS distance, <= 0\.833\): {NUM}$", text, "bounded JS0")
    assert 0 <= js0 <= round(JS_MAX, 3), js0
    (skl,) = _one(rf"^JS0 \(paper-compatible blurred symmetric KL\): {NUM}$", text, "paper JS0")
    assert math.isfinite(skl) and skl >= 0, skl
    (norms,) = re.findall(r"^largest block Hessian norms: (\[.*\])$", text, flags=re.MULTILINE) or [None]
    assert norms is not None, "no 'largest block Hessian norms' line"
    norms = [v for _, v in ast.literal_eval(norms.replace("nan", "None").replace("inf", "None"))]
    assert len(norms) == 3 and all(v is not None and v >= 0 for v in norms) and norms == sorted(norms, reverse=True)
    (wdev,) = _one(rf"^quadrature weights per probe sum to 1 within {NUM}$", text, "quadrature weights")
    assert wdev <= 1e-4, wdev

    nodes, n, err, scale, asym, slq_scale = _one(
        rf"^(\d+) SLQ nodes for a block of (\d+); max \|eigenvalue error\| = {NUM} \(spectral scale {NUM}; "
        rf"asymmetry of H_bb {NUM}; SLQ spectral scale {NUM}\)$", text, "dense-block eigenvalue check")
    assert nodes == n, (nodes, n)
    assert math.isfinite(scale) and scale > 0, scale
    assert err <= 1e-4 * scale and asym <= 1e-4 * scale, (err, asym, scale)
    assert abs(slq_scale - scale) <= 1e-2 * scale, (slq_scale, scale)  # equal to 1e-4, printed to 3 digits

    losses = {name: (float(v), float(init)) for name, v, init in re.findall(
        rf"^ *(\w+): loss after 40 steps = {NUM} \(at init {NUM}\)$", text, flags=re.MULTILINE)}
    assert sorted(losses) == ["adam", "sgd", "signsgd_s"], sorted(losses)
    for name, (v, init) in losses.items():
        assert math.isfinite(v) and v < init and abs(init - loss0) <= 1e-3, (name, v, init)


def _all(pattern, text):
    return re.findall(pattern, text, flags=re.MULTILINE)


QUAD_METHODS = ["SGD", "SignSGD (S)", "Adam", "AdaSGD", "blockwise Adam"]


def check_optimizers(text: str) -> None:
    """Assert every number 02_optimizers prints (same bounds as the notebook's asserts)."""
    same, chain_err = _one(rf"^hand-built chain vs ready-made blockwise Adam: max \|difference\| {NUM}; "
                           rf"vs NumPy float64 Algorithm 3: relative error {NUM}$", text, "chain check")
    assert same == 0 and chain_err <= 1e-4, (same, chain_err)

    table_s9 = {"hetero": 5104 / 3, "homo": 4999.0}
    lams = _all(rf"^(hetero|homo): Lambda_P = {NUM} \(dense blocks: {NUM}; Table S\.9: {NUM}\), "
                rf"condition number {NUM}$", text)
    assert sorted(q for q, *_ in lams) == ["hetero", "homo"], lams
    for q, lam, dense, paper, cond in lams:
        lam, dense, paper, cond = map(float, (lam, dense, paper, cond))
        assert abs(lam - table_s9[q]) <= 0.006 and abs(dense - lam) <= 0.006 and abs(paper - table_s9[q]) <= 0.006
        assert abs(cond - 5000) <= 0.06, cond

    rows = _all(rf"^ *(hetero|homo) +({'|'.join(re.escape(m) for m in QUAD_METHODS)}): best lr {NUM}, "
                rf"loss {NUM} -> {NUM} after 100 steps$", text)
    assert sorted((q, m) for q, m, *_ in rows) == sorted((q, m) for q in ("hetero", "homo") for m in QUAD_METHODS)
    final = {}
    for q, m, lr, start, end in rows:
        lr, start, end = map(float, (lr, start, end))
        assert 1.5e-5 < lr < 20 and math.isfinite(end) and 0 <= end < start, (q, m, lr, start, end)  # interior rate
        final[q, m] = (end, start)
    (sgd_err,) = _one(rf"^SGD on hetero vs NumPy float64: max relative loss error {NUM} over 100 steps$", text, "SGD ref")
    assert sgd_err <= 1e-4, sgd_err

    ratios = {label: float(r) for label, r in _all(rf"^ratio ([\w ()/]+): {NUM}$", text)}
    expected = {  # label -> (numerator, denominator) in `final`, as the notebook computes them
        "hetero SGD/Adam": (("hetero", "SGD"), ("hetero", "Adam")),
        "hetero SGD/blockwise Adam": (("hetero", "SGD"), ("hetero", "blockwise Adam")),
        "hetero SGD/SignSGD (S)": (("hetero", "SGD"), ("hetero", "SignSGD (S)")),
        "hetero AdaSGD/Adam": (("hetero", "AdaSGD"), ("hetero", "Adam")),
        "homo SGD/Adam": (("homo", "SGD"), ("homo", "Adam")),
        "SignSGD (S) homo/hetero": (("homo", "SignSGD (S)"), ("hetero", "SignSGD (S)")),
    }
    assert sorted(ratios) == sorted(expected), sorted(ratios)
    for label, (num, den) in expected.items():
        r = ratios[label]
        assert (0.1 <= r <= 10) if label == "homo SGD/Adam" else r >= 10, (label, r)
        (a, a0), (b, b0) = final[num], final[den]
        if label.startswith("SignSGD"):
            a, b = a / a0, b / b0  # fractions of the starting loss
        if b > 0:  # both sides printed to 3-4 digits: agree within 1%
            assert abs(r - a / b) <= 0.01 * r, (label, r, a / b)

    gpt = {m: (float(lr), float(v), float(v0)) for m, lr, v, v0 in _all(
        rf"^GPT +({'|'.join(re.escape(m) for m in QUAD_METHODS)}): best lr {NUM}, validation loss {NUM} "
        rf"\(at init {NUM}\)$", text)}
    assert sorted(gpt) == sorted(QUAD_METHODS), sorted(gpt)
    init = {v0 for *_, v0 in gpt.values()}
    assert len(init) == 1 and all(math.isfinite(v) and v < v0 for _, v, v0 in gpt.values()), gpt
    gaps = {label: float(g) for label, g in _all(rf"^gap ([\w ()-]+?): {NUM}$", text)}
    pairs = {"SGD - Adam": ("SGD", "Adam"), "AdaSGD - Adam": ("AdaSGD", "Adam"),
             "SGD - SignSGD (S)": ("SGD", "SignSGD (S)"), "SGD - blockwise Adam": ("SGD", "blockwise Adam"),
             "blockwise Adam - Adam": ("blockwise Adam", "Adam")}
    assert sorted(gaps) == sorted(pairs), sorted(gaps)
    for label, (a, b) in pairs.items():
        assert abs(gaps[label] - (gpt[a][1] - gpt[b][1])) <= 2.5e-3, (label, gaps[label])  # printed to 3 decimals
    assert all(g >= 0.04 for g in gaps.values()), gaps


TABLE1_L11 = {0.0: 0.01164, 0.002: 0.08324, 0.008: 0.50729, 0.015: 1.23731, 0.1: 2.59919}
TABLE1_LOSS = {"Adam": [0.00002, 0.00066, 0.00134, 0.00183, 0.00254], "AdaSGD": [0.00405] * 5}


def check_linf(text: str) -> None:
    """Assert every number 03_linf_geometry prints."""
    times = sorted(TABLE1_L11)
    geo = _all(rf"^t = {NUM} *: \(1,1\)-norm/d {NUM} \(float64 {NUM}, Table 1 {NUM}\); spectral norm {NUM} "
               rf"\(exact 1\); ratio {NUM}$", text)
    assert [float(g[0]) for g in geo] == times, geo
    dense = {}
    for t, l11, ref, paper, spec, ratio in (map(float, g) for g in geo):
        dense[t] = ref
        assert abs(l11 - ref) <= 1e-5 * ref + 1e-5 and abs(spec - 1) <= 1e-5, (t, l11, ref, spec)
        assert paper == TABLE1_L11[t] and abs(ref - paper) <= 0.03 * paper, (t, ref)
        assert abs(ratio - l11 / spec) <= 1e-3 * ratio + 1e-4, (t, ratio)  # l11 and spec printed to 5-6 digits
    closed, dense0 = _one(rf"^t = 0 closed form \(11 \+ sum k\^-2\)/d = {NUM}, dense {NUM}$", text, "closed form")
    assert abs(closed - (11 + sum(1 / k**2 for k in range(2, 991))) / 1000) <= 1e-6 and closed == dense0

    sk = _all(rf"^t = {NUM} *: sketched \(1,1\)-norm/d {NUM} \(dense {NUM}, error {NUM}, allowed {NUM}\); "
              rf"Lanczos spectral norm {NUM}$", text)
    assert [float(s[0]) for s in sk] == times, sk
    tol = 4 * math.pi / (2 * math.sqrt(400))
    est = [float(s[1]) for s in sk]
    for t, e, den, err, allowed, lanczos in (map(float, s) for s in sk):
        assert abs(den - dense[t]) <= 1e-4 and abs(allowed - tol) <= 1e-3 and abs(err) <= tol, (t, err)
        assert abs(e / den - 1 - err) <= 0.01 and abs(lanczos - 1) <= 1e-4, (t, e, lanczos)
    assert est == sorted(est) and len(set(est)) == len(est), est

    rows = _all(rf"^ *(Adam|AdaSGD|SGD) t = {NUM} *: best final loss {NUM} \(lr {NUM}; Table 1: {NUM}\), "
                rf"\(1,1\)-norm/d {NUM}$", text)
    best = collections.defaultdict(list)
    for name, t, loss, lr, paper, l11 in rows:
        best[name].append((float(t), float(loss)))
        assert abs(float(l11) - dense[float(t)]) <= 1e-4 and 1e-3 <= float(lr) <= 1.0
    assert sorted(best) == ["AdaSGD", "Adam", "SGD"] and all([t for t, _ in v] == times for v in best.values()), best
    adam = [loss for _, loss in best["Adam"]]
    assert all(a < b for a, b in zip(adam, adam[1:])), adam
    assert 10 * adam[0] <= best["AdaSGD"][0][1], (adam[0], best["AdaSGD"])
    for name, paper in TABLE1_LOSS.items():
        for (_, got), ref in zip(best[name], paper):
            assert abs(got - ref) <= 0.5 * ref + 1e-5 + 0.005 * got, (name, got, ref)  # printed to 3 digits
    for name in ("AdaSGD", "SGD"):  # rotation invariant: the same best loss at every t
        losses = [loss for _, loss in best[name]]
        assert max(losses) <= min(losses) * 1.006, (name, losses)
    ada_spread, sgd_spread = _one(rf"^rotation invariance: AdaSGD curves differ across t by at most {NUM} "
                                  rf"\(relative\), SGD by {NUM}$", text, "invariance")
    assert ada_spread <= 1e-3 and sgd_spread <= 1e-3, (ada_spread, sgd_spread)
    (grows,) = _all(r"^Adam's best loss grows with t: (.*); AdaSGD \S+$", text) or [None]
    assert grows is not None, "no 'Adam's best loss grows with t' line"
    shown = [float(x) for x in grows.split(" < ")]  # to 2 digits; `adam` to 3
    assert len(shown) == 5 and all(abs(x - a) <= 0.06 * a for x, a in zip(shown, adam)), (shown, adam)

    orth, l11_rot, l11_01, l11_0 = _one(rf"^RandPerm\^2: \|R\^T R - I\| <= {NUM}; \(1,1\)-norm/d of R\^T Sigma R = "
                                        rf"{NUM} \(t = 0\.1: {NUM}, t = 0: {NUM}\)$", text, "RandPerm geometry")
    assert orth <= 1e-5 and l11_rot > dense[0.015] and abs(l11_01 - dense[0.1]) <= 1e-4, (orth, l11_rot)
    ada_diff, perm_diff = _one(rf"^rotated AdaSGD vs AdaSGD: max relative difference {NUM}; permuted Adam vs Adam: "
                               rf"max relative difference {NUM}$", text, "optimizer-side rotation")
    assert ada_diff <= 1e-3 and perm_diff <= 1e-3, (ada_diff, perm_diff)
    a0, rot, a01 = _one(rf"^Adam on L_0: {NUM}; RandPerm\^2-rotated Adam: {NUM}; Adam on L_0\.1: {NUM}$", text, "rot")
    assert rot >= 10 * a0 and abs(a0 - adam[0]) <= 0.01 * a0 and abs(a01 - adam[-1]) <= 0.01 * a01, (a0, rot, a01)


SIGN_METHODS = ["signSGD-MV", "Sto-signSGD", "MVSM v1", "MVSM v2"]


def check_distributed(text: str) -> None:
    """Assert every number 04_distributed_sign prints."""
    (devices,) = _one(r"^(\d+) cpu devices$", text, "device count")
    assert devices == 8, devices
    d, n_train = _one(r"^(\d+) parameters, (\d+) training images, 8 workers x 16 images per step$", text, "setup")
    assert d == 64 * 32 + 32 + 32 * 10 + 10 and n_train > 1000, (d, n_train)
    same = {m: (ways, float(v)) for m, ways, v in _all(
        rf"^ *({'|'.join(re.escape(m) for m in SIGN_METHODS)}): 10 steps, ([\w ,-]+): max \|update difference\| {NUM}$",
        text)}
    assert sorted(same) == sorted(SIGN_METHODS) and all(v == 0 for _, v in same.values()), same
    assert all(same[m][0] == "devices vs vmap" for m in SIGN_METHODS[:3]), same
    assert same["MVSM v2"][0] == "devices vs vmap vs devices, 1-bit", same
    (ties,) = _one(r"^signSGD-MV equals its NumPy transcription on all 10 steps \((\d+) tied coordinates stepped 0\)$",
                   text, "NumPy signSGD-MV")
    int8, onebit, f32 = _one(r"^bytes per worker per step: int8 vote (\d+), 1-bit vote (\d+) \(float32 gradient (\d+)\)$",
                             text, "wire bytes")
    assert int8 == d and onebit == math.ceil(d / 8) and f32 == 4 * d and ties > 0, (int8, onebit, f32, ties)
    runs = {m: tuple(map(float, v)) for m, *v in _all(
        rf"^ *({'|'.join(re.escape(m) for m in SIGN_METHODS)}): lr {NUM}, validation loss {NUM} "
        rf"\(start {NUM}\), accuracy {NUM}$", text)}
    assert sorted(runs) == sorted(SIGN_METHODS), sorted(runs)
    starts = {s for _, _, s, _ in runs.values()}
    assert len(starts) == 1 and all(math.isfinite(v) and v < s and 0 <= acc <= 1 for _, v, s, acc in runs.values())
    gaps = {label: float(g) for label, g in _all(rf"^gap ([\w -]+?): {NUM}$", text)}
    pairs = {"signSGD-MV - MVSM v1": ("signSGD-MV", "MVSM v1"), "Sto-signSGD - MVSM v1": ("Sto-signSGD", "MVSM v1"),
             "signSGD-MV - MVSM v2": ("signSGD-MV", "MVSM v2"), "Sto-signSGD - MVSM v2": ("Sto-signSGD", "MVSM v2"),
             "MVSM v2 - MVSM v1": ("MVSM v2", "MVSM v1")}
    assert sorted(gaps) == sorted(pairs), sorted(gaps)
    for label, (a, b) in pairs.items():
        assert abs(gaps[label] - (runs[a][1] - runs[b][1])) <= 2.5e-3, (label, gaps[label])
    for label in ("signSGD-MV - MVSM v1", "Sto-signSGD - MVSM v1", "signSGD-MV - MVSM v2"):
        assert gaps[label] >= 0.03, (label, gaps[label])
    moved, total, max_diff, mesh_loss, sim_loss = _one(
        rf"^MVSM v2, mesh vs vmap after 200 steps: (\d+) of (\d+) parameters differ \(max {NUM}\), "
        rf"validation loss {NUM} vs {NUM}$", text, "mesh vs vmap")
    assert total == d and 0 <= moved <= d and abs(mesh_loss - sim_loss) <= 1e-2, (moved, mesh_loss, sim_loss)
    assert abs(mesh_loss - runs["MVSM v2"][1]) <= 1e-3, (mesh_loss, runs["MVSM v2"])


CHECKS = {
    "01_quickstart.ipynb": check_quickstart,
    "02_optimizers.ipynb": check_optimizers,
    "03_linf_geometry.ipynb": check_linf,
    "04_distributed_sign.ipynb": check_distributed,
}

# What the quickstart printed on jax 0.9.2 / CPU (abridged to six partition rows), for the fast tests.
GOOD_QUICKSTART = """\
loss at init: 4.9283 (ln V = 4.4308 for V = 84 characters)
embed/embedding                  2,688   40.00%
layers/0/mlp/fc_out/kernel       2,048   30.48%
layers/0/attn/out/kernel         1,024   15.24%
pos_embed/embedding                896   13.33%
final_norm/bias                     32    0.48%
final_norm/scale                    32    0.48%
total                            6,720
micro-batched vs one-shot: relative gradient error 3.1e-07, loss 4.9283 vs 4.9283
Gini of normalized block gradient norms: 0.431 (O(n²) definition: 0.431; 6 blocks, shares sum to 1.000000)
 0.077  final_norm/bias
 0.074  final_norm/scale
 0.069  layers/0/attn/out/kernel
 0.066  pos_embed/embedding
 0.063  embed/embedding
JS0 (bounded JS distance, <= 0.833): 0.111
JS0 (paper-compatible blurred symmetric KL): 6.14
largest block Hessian norms: [('layers/0/mlp/fc_out/kernel', 2.86045503616333), ('layers/0/attn/out/kernel', 0.9411357045173645), ('pos_embed/embedding', 0.8078974485397339)]
quadrature weights per probe sum to 1 within 1.2e-07
32 SLQ nodes for a block of 32; max |eigenvalue error| = 2.61e-08 (spectral scale 6.67e-02; asymmetry of H_bb 1.40e-08; SLQ spectral scale 6.67e-02)
       sgd: loss after 40 steps = 1.410 (at init 4.928)
      adam: loss after 40 steps = 0.363 (at init 4.928)
 signsgd_s: loss after 40 steps = 0.396 (at init 4.928)
"""


# What notebooks 02-04 printed on jax 0.9.2 / CPU, for the fast tests of their checks.
GOOD_OPTIMIZERS = """\
hand-built chain vs ready-made blockwise Adam: max |difference| 0.0e+00; vs NumPy float64 Algorithm 3: relative error 9.7e-06
hetero: Lambda_P = 1701.33 (dense blocks: 1701.33; Table S.9: 1701.33), condition number 5000.0
homo: Lambda_P = 4999.00 (dense blocks: 4999.00; Table S.9: 4999.00), condition number 5000.0
hetero         AdaSGD: best lr 3.2e-01, loss 1217.5 -> 8.611e-01 after 100 steps
hetero           Adam: best lr 1.0e-01, loss 1217.5 -> 7.679e-03 after 100 steps
hetero            SGD: best lr 3.2e-04, loss 1217.5 -> 1.248e+00 after 100 steps
hetero    SignSGD (S): best lr 1.0e-04, loss 1217.5 -> 3.027e-32 after 100 steps
hetero blockwise Adam: best lr 1.0e+00, loss 1217.5 -> 4.287e-04 after 100 steps
  homo         AdaSGD: best lr 1.0e+00, loss 2088.5 -> 5.418e-01 after 100 steps
  homo           Adam: best lr 1.0e+00, loss 2088.5 -> 8.448e-01 after 100 steps
  homo            SGD: best lr 3.2e-04, loss 2088.5 -> 8.146e-01 after 100 steps
  homo    SignSGD (S): best lr 3.2e-05, loss 2088.5 -> 1.168e+01 after 100 steps
  homo blockwise Adam: best lr 3.2e-01, loss 2088.5 -> 5.713e-01 after 100 steps
SGD on hetero vs NumPy float64: max relative loss error 5.2e-07 over 100 steps
ratio hetero SGD/Adam: 1.63e+02
ratio hetero SGD/blockwise Adam: 2.91e+03
ratio hetero SGD/SignSGD (S): 4.12e+31
ratio hetero AdaSGD/Adam: 1.12e+02
ratio homo SGD/Adam: 9.64e-01
ratio SignSGD (S) homo/hetero: 2.25e+32
GPT            SGD: best lr 3e+00, validation loss 2.742 (at init 4.972)
GPT    SignSGD (S): best lr 3e-04, validation loss 2.590 (at init 4.972)
GPT           Adam: best lr 3e-02, validation loss 2.591 (at init 4.972)
GPT         AdaSGD: best lr 1e-02, validation loss 2.715 (at init 4.972)
GPT blockwise Adam: best lr 3e-02, validation loss 2.680 (at init 4.972)
gap SGD - Adam: +0.151
gap AdaSGD - Adam: +0.124
gap SGD - SignSGD (S): +0.152
gap SGD - blockwise Adam: +0.062
gap blockwise Adam - Adam: +0.088
"""

GOOD_LINF = """\
5 problems, d = 1000, t = [0.0, 0.002, 0.008, 0.015, 0.1]
t = 0.0  : (1,1)-norm/d 0.01164 (float64 0.01164, Table 1 0.01164); spectral norm 1.000000 (exact 1); ratio 0.0116
t = 0.002: (1,1)-norm/d 0.08318 (float64 0.08318, Table 1 0.08324); spectral norm 1.000000 (exact 1); ratio 0.0832
t = 0.008: (1,1)-norm/d 0.50819 (float64 0.50819, Table 1 0.50729); spectral norm 1.000000 (exact 1); ratio 0.5082
t = 0.015: (1,1)-norm/d 1.24001 (float64 1.24001, Table 1 1.23731); spectral norm 1.000000 (exact 1); ratio 1.2400
t = 0.1  : (1,1)-norm/d 2.58801 (float64 2.58802, Table 1 2.59919); spectral norm 1.000000 (exact 1); ratio 2.5880
t = 0 closed form (11 + sum k^-2)/d = 0.011644, dense 0.011644
t = 0.0  : sketched (1,1)-norm/d 0.0115 (dense 0.0116, error -0.013, allowed 0.314); Lanczos spectral norm 1.00000
t = 0.002: sketched (1,1)-norm/d 0.0772 (dense 0.0832, error -0.072, allowed 0.314); Lanczos spectral norm 1.00000
t = 0.008: sketched (1,1)-norm/d 0.4623 (dense 0.5082, error -0.090, allowed 0.314); Lanczos spectral norm 1.00000
t = 0.015: sketched (1,1)-norm/d 1.1274 (dense 1.2400, error -0.091, allowed 0.314); Lanczos spectral norm 1.00000
t = 0.1  : sketched (1,1)-norm/d 2.4855 (dense 2.5880, error -0.040, allowed 0.314); Lanczos spectral norm 1.00000
  Adam t = 0.0  : best final loss 1.41e-05 (lr 3e-01; Table 1: 2e-05), (1,1)-norm/d 0.0116
  Adam t = 0.002: best final loss 6.63e-04 (lr 3e-01; Table 1: 7e-04), (1,1)-norm/d 0.0832
  Adam t = 0.008: best final loss 1.25e-03 (lr 3e-01; Table 1: 1e-03), (1,1)-norm/d 0.5082
  Adam t = 0.015: best final loss 1.88e-03 (lr 3e-01; Table 1: 2e-03), (1,1)-norm/d 1.2400
  Adam t = 0.1  : best final loss 2.32e-03 (lr 1e-01; Table 1: 3e-03), (1,1)-norm/d 2.5880
AdaSGD t = 0.0  : best final loss 3.37e-03 (lr 1e-01; Table 1: 4e-03), (1,1)-norm/d 0.0116
AdaSGD t = 0.002: best final loss 3.37e-03 (lr 1e-01; Table 1: 4e-03), (1,1)-norm/d 0.0832
AdaSGD t = 0.008: best final loss 3.37e-03 (lr 1e-01; Table 1: 4e-03), (1,1)-norm/d 0.5082
AdaSGD t = 0.015: best final loss 3.37e-03 (lr 1e-01; Table 1: 4e-03), (1,1)-norm/d 1.2400
AdaSGD t = 0.1  : best final loss 3.37e-03 (lr 1e-01; Table 1: 4e-03), (1,1)-norm/d 2.5880
   SGD t = 0.0  : best final loss 2.77e-03 (lr 1e+00; Table 1: nan), (1,1)-norm/d 0.0116
   SGD t = 0.002: best final loss 2.77e-03 (lr 1e+00; Table 1: nan), (1,1)-norm/d 0.0832
   SGD t = 0.008: best final loss 2.77e-03 (lr 1e+00; Table 1: nan), (1,1)-norm/d 0.5082
   SGD t = 0.015: best final loss 2.77e-03 (lr 1e+00; Table 1: nan), (1,1)-norm/d 1.2400
   SGD t = 0.1  : best final loss 2.77e-03 (lr 1e+00; Table 1: nan), (1,1)-norm/d 2.5880
rotation invariance: AdaSGD curves differ across t by at most 1.1e-04 (relative), SGD by 1.1e-04
Adam's best loss grows with t: 1.4e-05 < 6.6e-04 < 1.2e-03 < 1.9e-03 < 2.3e-03; AdaSGD 3.37e-03
RandPerm^2: |R^T R - I| <= 8.9e-07; (1,1)-norm/d of R^T Sigma R = 2.5698 (t = 0.1: 2.5880, t = 0: 0.0116)
rotated AdaSGD vs AdaSGD: max relative difference 1.2e-05; permuted Adam vs Adam: max relative difference 3.8e-06
Adam on L_0: 1.41e-05; RandPerm^2-rotated Adam: 2.22e-03; Adam on L_0.1: 2.32e-03
"""

GOOD_DISTRIBUTED = """\
8 cpu devices
2410 parameters, 1438 training images, 8 workers x 16 images per step
  signSGD-MV: 10 steps, devices vs vmap: max |update difference| 0.0e+00
 Sto-signSGD: 10 steps, devices vs vmap: max |update difference| 0.0e+00
     MVSM v1: 10 steps, devices vs vmap: max |update difference| 0.0e+00
     MVSM v2: 10 steps, devices vs vmap vs devices, 1-bit: max |update difference| 0.0e+00
signSGD-MV equals its NumPy transcription on all 10 steps (12214 tied coordinates stepped 0)
bytes per worker per step: int8 vote 2410, 1-bit vote 302 (float32 gradient 9640)
  signSGD-MV: lr 1e-02, validation loss 0.221 (start 2.327), accuracy 0.947
 Sto-signSGD: lr 1e-02, validation loss 0.160 (start 2.327), accuracy 0.969
     MVSM v1: lr 3e-02, validation loss 0.088 (start 2.327), accuracy 0.967
     MVSM v2: lr 1e-02, validation loss 0.147 (start 2.327), accuracy 0.969
gap signSGD-MV - MVSM v1: +0.133
gap Sto-signSGD - MVSM v1: +0.073
gap signSGD-MV - MVSM v2: +0.073
gap Sto-signSGD - MVSM v2: +0.013
gap MVSM v2 - MVSM v1: +0.060
MVSM v2, mesh vs vmap after 200 steps: 0 of 2410 parameters differ (max 0.0e+00), validation loss 0.1475 vs 0.1475
"""
GOOD = {check_optimizers: GOOD_OPTIMIZERS, check_linf: GOOD_LINF, check_distributed: GOOD_DISTRIBUTED}


def test_notebooks_exist_and_match_builder():
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_notebooks", ROOT / "scripts" / "build_notebooks.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    assert [p.name for p in NOTEBOOKS] == sorted(builder.NOTEBOOKS)
    assert sorted(CHECKS) == sorted(builder.NOTEBOOKS), "every notebook needs an output check in CHECKS"
    for path in NOTEBOOKS:
        cells = nbformat.read(path, as_version=4).cells
        assert [c.source for c in cells] == [src for _, src in builder.NOTEBOOKS[path.name]], f"rebuild {path.name}"
        code = [c for c in cells if c.cell_type == "code"]
        assert not any(c.outputs or c.execution_count for c in code), f"{path.name}: commit it with outputs cleared"


def test_quickstart_check_accepts_good_output():
    check_quickstart(GOOD_QUICKSTART)


@pytest.mark.parametrize("good, bad", [
    ("max |eigenvalue error| = 2.61e-08", "max |eigenvalue error| = 6.91e+15"),  # the jax 0.10.2 miscompile
    ("max |eigenvalue error| = 2.61e-08", "max |eigenvalue error| = 1.00e-04"),  # above 1e-4 x scale
    ("max |eigenvalue error| = 2.61e-08", "max |eigenvalue error| = nan"),
    ("32 SLQ nodes", "31 SLQ nodes"),
    ("spectral scale 6.67e-02;", "spectral scale 0.00e+00;"),
    ("SLQ spectral scale 6.67e-02", "SLQ spectral scale 7.67e-02"),
    ("asymmetry of H_bb 1.40e-08", "asymmetry of H_bb 1.40e-02"),
    ("<= 0.833): 0.111", "<= 0.833): 0.901"),
    ("<= 0.833): 0.111", "<= 0.833): -0.010"),
    ("symmetric KL): 6.14", "symmetric KL): nan"),
    ("Gini of normalized block gradient norms: 0.431", "Gini of normalized block gradient norms: 1.200"),
    ("(O(n²) definition: 0.431;", "(O(n²) definition: 0.331;"),
    ("shares sum to 1.000000", "shares sum to 0.950000"),
    ("relative gradient error 3.1e-07", "relative gradient error 2.0e-02"),
    ("loss at init: 4.9283", "loss at init: nan"),
    ("adam: loss after 40 steps = 0.363", "adam: loss after 40 steps = nan"),
    ("sgd: loss after 40 steps = 1.410", "sgd: loss after 40 steps = 5.410"),
    ("within 1.2e-07", "within 3.0e-01"),
    ("total                            6,720", "total                            6,721"),
    (" signsgd_s: loss after 40 steps = 0.396 (at init 4.928)\n", ""),  # a check line gone
])
def test_quickstart_check_rejects_wrong_numbers(good, bad):
    assert good in GOOD_QUICKSTART
    with pytest.raises(AssertionError):
        check_quickstart(GOOD_QUICKSTART.replace(good, bad))


@pytest.mark.parametrize("check", list(GOOD), ids=lambda f: f.__name__)
def test_check_accepts_good_output(check):
    check(GOOD[check])


@pytest.mark.parametrize("check, good, bad", [
    (check_optimizers, "max |difference| 0.0e+00", "max |difference| 1.0e-07"),
    (check_optimizers, "relative error 9.7e-06", "relative error 2.0e-04"),
    (check_optimizers, "Lambda_P = 1701.33", "Lambda_P = 1702.33"),
    (check_optimizers, "7.679e-03 after 100 steps", "nan after 100 steps"),
    (check_optimizers, "ratio homo SGD/Adam: 9.64e-01", "ratio homo SGD/Adam: 1.64e+01"),
    (check_optimizers, "ratio hetero AdaSGD/Adam: 1.12e+02", "ratio hetero AdaSGD/Adam: 2.00e+00"),
    (check_optimizers, "max relative loss error 5.2e-07", "max relative loss error 5.2e-03"),
    (check_optimizers, "gap SGD - Adam: +0.151", "gap SGD - Adam: +0.010"),
    (check_optimizers, "gap blockwise Adam - Adam: +0.088", ""),  # a check line gone
    (check_linf, "(1,1)-norm/d 2.58801", "(1,1)-norm/d 2.68801"),
    (check_linf, "spectral norm 1.000000 (exact 1); ratio 2.5880", "spectral norm 1.100000 (exact 1); ratio 2.5880"),
    (check_linf, "error -0.040, allowed 0.314", "error -0.400, allowed 0.314"),
    (check_linf, "AdaSGD curves differ across t by at most 1.1e-04", "AdaSGD curves differ across t by at most 2.1e-02"),
    (check_linf, "permuted Adam vs Adam: max relative difference 3.8e-06",
     "permuted Adam vs Adam: max relative difference 3.8e-02"),
    (check_linf, "RandPerm^2-rotated Adam: 2.22e-03", "RandPerm^2-rotated Adam: 2.22e-05"),
    (check_distributed, "MVSM v2: 10 steps, devices vs vmap vs devices, 1-bit: max |update difference| 0.0e+00",
     "MVSM v2: 10 steps, devices vs vmap vs devices, 1-bit: max |update difference| 1.0e-03"),
    (check_distributed, "1-bit vote 302", "1-bit vote 2410"),
    (check_distributed, "gap signSGD-MV - MVSM v1: +0.133", "gap signSGD-MV - MVSM v1: -0.133"),
    (check_distributed, "8 cpu devices", "1 cpu devices"),
])
def test_check_rejects_wrong_numbers(check, good, bad):
    assert good in GOOD[check]
    with pytest.raises(AssertionError):
        check(GOOD[check].replace(good, bad, 1))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path):
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    # A fresh kernel per notebook: 04 sets XLA_FLAGS (8 simulated devices) before its first `import jax`.
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, [f"{o.ename}: {o.evalue}" for o in errors]
    assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code"), "a code cell did not run"
    stderr = "".join(o.get("text", "") for o in outputs if o.output_type == "stream" and o.get("name") == "stderr")
    assert "Traceback" not in stderr and "Error" not in stderr, stderr[-2000:]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream" and o.get("name") == "stdout")
    CHECKS[path.name](text)
