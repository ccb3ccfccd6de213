"""scripts/bench_peers.py, section c (SLQ moments against dense eigh in float64), in its fast
mode: ours without torch, and PyHessian where the ``bench`` extra is installed. The checks must
pass on the real results and fire on corrupted ones (a check that cannot fail proves nothing)."""
import copy
import importlib.util
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_peers.py"


@pytest.fixture(scope="module")
def bp():
    spec = importlib.util.spec_from_file_location("bench_peers", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def dense(bp, kind, with_torch=False):
    return bp.dense_case(kind, bp.QUICK["dense_steps"], jax.random.key(7), with_torch)


def run_checks(bp, entry):
    checks = bp.Checks()
    bp.dense_checks(entry, checks, entry["name"])
    return checks


@pytest.fixture(scope="module")
def entries(bp):
    return {kind: dense(bp, kind) for kind in ("mlp", "gpt")}


def test_ours_match_dense_eigh(bp, entries):
    for entry in entries.values():
        checks = run_checks(bp, entry)
        assert len(checks.items) == 2 and not checks.failed, checks.items
        assert entry["exact"][0] == pytest.approx(1.0) and entry["ours"][0] == pytest.approx(1.0)
        assert max(entry["ours_rel_err"].values()) < 1e-12  # rounding, far below the check's 1e-10
        assert entry["lam_min"] < 0 < entry["lam_max"]  # indefinite: odd moments are not trivially positive


@pytest.mark.parametrize("field, value, fails", [
    ("ours_rel_err", {0: 0.0, 1: 0.0, 2: 0.0, 3: 2e-10, 4: 0.0}, "ours slq moments"),
    ("ours_rel_err", {0: 0.0, 1: float("nan"), 2: 0.0, 3: 0.0, 4: 0.0}, "ours slq moments"),
    ("ours_finite", False, "ours slq moments"),
    ("asymmetry", 1e-9, "dense Hessian symmetric"),
])
def test_checks_fire_on_corrupted_entry(bp, entries, field, value, fails):
    entry = copy.deepcopy(entries["mlp"])
    entry[field] = value
    assert [c["name"].split(": ", 1)[1] for c in run_checks(bp, entry).failed] == [fails + " = dense eigh"
                                                                                  if "moments" in fails else fails]


def corrupt_slq(bp, monkeypatch, *, scale=1.0, key=None):
    """`hc.slq` with its Ritz nodes scaled by ``scale`` or run on another ``key`` (another probe)."""
    real = bp.hc.slq

    def slq(op, like, k, **kw):
        spec = real(op, like, k if key is None else key, **kw)
        return spec._replace(nodes=spec.nodes * scale)

    monkeypatch.setattr(bp.hc, "slq", slq)


@pytest.mark.parametrize("corruption", [dict(scale=1 + 1e-8), dict(key=jax.random.key(8))],
                         ids=["nodes off by 1e-8", "another probe"])
def test_checks_fire_on_a_corrupted_estimator(bp, entries, monkeypatch, corruption):
    corrupt_slq(bp, monkeypatch, **corruption)
    entry = dense(bp, "mlp")
    failed = [c["name"] for c in run_checks(bp, entry).failed]
    assert failed == [f"{entry['name']}: ours slq moments = dense eigh"], failed


@pytest.mark.parametrize("skew, fails", [(True, "dense Hessian symmetric"), (False, "ours slq moments = dense eigh")],
                         ids=["asymmetric", "symmetric"])
def test_checks_fire_on_a_corrupted_hessian(bp, entries, monkeypatch, skew, fails):
    """eigh reads one triangle: an asymmetric error shows only in the symmetry check, a symmetric
    one (the dense reference no longer the operator's Hessian) only in the moments."""
    real = bp.hc.dense_hessian

    def corrupted(*a):
        h = real(*a)
        return h + 1e-8 * (jnp.triu(jnp.ones_like(h), 1) if skew else jnp.ones_like(h))

    monkeypatch.setattr(bp.hc, "dense_hessian", corrupted)
    assert [c["name"].split(": ", 1)[1] for c in run_checks(bp, dense(bp, "mlp")).failed] == [fails]


def test_main_records_the_run_and_fails_on_a_failed_check(bp, entries, monkeypatch, tmp_path):
    out = tmp_path / "c.json"
    results = bp.main(["--quick", "--sections", "c", "--no-torch", "--out", str(out)])
    saved = json.loads(out.read_text())
    for key in ("command", "date_start", "date_end", "load_average_start", "load_average_end", "machine",
                "versions", "env", "git_head", "table"):
        assert saved[key], key
    assert "--sections c" in saved["command"] and saved["versions"]["jax"] == jax.__version__
    assert saved["checks"] and all(c["ok"] for c in saved["checks"]) and results["c_dense"].keys() == {"mlp", "gpt"}

    corrupt_slq(bp, monkeypatch, scale=1 + 1e-8)
    with pytest.raises(SystemExit) as exit_:
        bp.main(["--quick", "--sections", "c", "--no-torch", "--out", str(out)])
    assert exit_.value.code == 1
    saved = json.loads(out.read_text())  # the numbers are kept when a check fails
    assert sorted(c["name"].split(": ", 1)[1] for c in saved["checks"] if not c["ok"]) == [
        "ours slq moments = dense eigh"] * 2


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")
def test_pyhessian_against_dense_eigh(bp):
    pytest.importorskip("torch")
    pytest.importorskip("pyhessian")
    entry = dense(bp, "mlp", with_torch=True)
    checks = run_checks(bp, entry)
    assert len(checks.items) == 5 and not checks.failed, checks.items
    shipped = max(entry["PyHessian"]["rel_err"].values())
    assert 1e-7 < shipped < 1e-2 and max(entry["PyHessian without +1e-6"]["rel_err"].values()) < 1e-12

    broken = copy.deepcopy(entry)  # PyHessian's eps patched out, but not both of its copies
    broken["PyHessian without +1e-6"] = broken["PyHessian"]
    failed = {c["name"].split(": ", 1)[1] for c in run_checks(bp, broken).failed}
    assert failed == {"PyHessian without its +1e-6 = dense eigh", "PyHessian's shipped error comes from its +1e-6"}
