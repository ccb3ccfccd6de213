"""Every tutorial notebook executes top to bottom, matches its builder script, and prints right numbers.

The notebooks assert their own checks; the tests here parse the printed numbers and assert them
again, so a notebook whose assert was edited out (or whose number is printed but never checked)
still fails. A notebook that prints ``max |eigenvalue error| = 6.91e+15`` must not pass.
"""
import ast
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
    assert sorted(losses) == ["adam", "sgd", "signsgd_l1"], sorted(losses)
    for name, (v, init) in losses.items():
        assert math.isfinite(v) and v < init and abs(init - loss0) <= 1e-3, (name, v, init)


CHECKS = {"01_quickstart.ipynb": check_quickstart}

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
signsgd_l1: loss after 40 steps = 0.396 (at init 4.928)
"""


def test_notebooks_exist_and_match_builder():
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_notebooks", ROOT / "scripts" / "build_notebooks.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    assert [p.name for p in NOTEBOOKS] == sorted(builder.NOTEBOOKS)
    assert sorted(CHECKS) == sorted(builder.NOTEBOOKS), "every notebook needs an output check in CHECKS"
    for path in NOTEBOOKS:
        on_disk = [c.source for c in nbformat.read(path, as_version=4).cells]
        assert on_disk == [src for _, src in builder.NOTEBOOKS[path.name]], f"rebuild {path.name}"


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
    ("signsgd_l1: loss after 40 steps = 0.396 (at init 4.928)\n", ""),  # a check line gone
])
def test_quickstart_check_rejects_wrong_numbers(good, bad):
    assert good in GOOD_QUICKSTART
    with pytest.raises(AssertionError):
        check_quickstart(GOOD_QUICKSTART.replace(good, bad))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path):
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, [f"{o.ename}: {o.evalue}" for o in errors]
    assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code"), "a code cell did not run"
    stderr = "".join(o.get("text", "") for o in outputs if o.output_type == "stream" and o.get("name") == "stderr")
    assert "Traceback" not in stderr and "Error" not in stderr, stderr[-2000:]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream" and o.get("name") == "stdout")
    CHECKS[path.name](text)
