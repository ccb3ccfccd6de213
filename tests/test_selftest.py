"""`heterogeneity selftest`: every check passes on the supported backend, and a wrong or hung
backend is reported as a failure with a non-zero exit status."""
import json

import numpy as np
import pytest

from heterogeneity import selftest


@pytest.mark.slow
def test_every_check_passes_here(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HETEROGENEITY_CACHE", str(tmp_path))
    assert selftest.main(quick=True, timeout=120) == 0
    out = capsys.readouterr().out.splitlines()
    checks = [line for line in out if line.startswith(("PASS", "FAIL"))]
    assert [line.split()[1] for line in checks] == ["eigh_deadlock", *selftest.CHECKS]
    assert all(line.startswith("PASS") for line in checks), out
    assert out[-1].startswith("verdict: pass 7/7 (jax ")
    record = json.loads(next(tmp_path.glob("selftest-*.json")).read_text())
    assert record["quick"] is True and len(record["checks"]) == 7
    assert selftest.cached_verdict(run_if_missing=False).startswith("pass 7/7")


def test_a_wrong_backend_fails_with_exit_status_1(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HETEROGENEITY_CACHE", str(tmp_path))

    def wrong(quick):  # what a miscompiled kernel looks like to a check
        return False, "max relative error 9.7e-01 (tolerance 1e-05)"

    def crashes(quick):
        raise RuntimeError("XLA internal error")

    monkeypatch.setattr(selftest, "CHECKS", {"wrong": wrong, "crashes": crashes})
    monkeypatch.setattr(selftest, "check_eigh_deadlock",
                        lambda timeout: selftest.Check("eigh_deadlock", True, "finished", 0.0))
    assert selftest.main(quick=True) == 1
    out = capsys.readouterr().out
    assert "FAIL  wrong" in out and "9.7e-01" in out
    assert "FAIL  crashes" in out and "raised RuntimeError: XLA internal error" in out
    assert "verdict: FAIL 1/3: wrong, crashes" in out
    assert selftest.cached_verdict(run_if_missing=False).startswith("FAIL 1/3: wrong, crashes")


def test_a_hung_program_is_a_failure_not_a_hang():
    check = selftest.check_eigh_deadlock(timeout=0.05)  # no interpreter imports jax in 50 ms
    assert not check.ok and "did not finish in 0 s" in check.detail


def test_cache_is_absent_until_written(tmp_path, monkeypatch):
    monkeypatch.setenv("HETEROGENEITY_CACHE", str(tmp_path / "none"))
    assert selftest.cached_verdict(run_if_missing=False) == "not run"
    (tmp_path / "none").mkdir()
    selftest._cache_path().write_text("{ truncated")  # a corrupt cache is ignored, not trusted
    assert selftest.cached_verdict(run_if_missing=False) == "not run"


def test_divergence_reference_agrees_with_scipy():
    """The NumPy reference the selftest trusts is itself checked against SciPy's JS distance."""
    from scipy.spatial.distance import jensenshannon

    spectra = selftest._random_spectra(6, seed=3)
    grid, dens, dx = selftest._reference_densities([x for x, _ in spectra], [w for _, w in spectra],
                                                   mode="bounded", num_grid=2048)
    mat = selftest._reference_matrix(dens, dx, "bounded")
    clean = np.where(dens > 1e-300, dens, 0.0)  # SciPy's (p+q)/2 underflows to 0 for subnormal p: inf
    ref = np.array([[jensenshannon(p, q) for q in clean] for p in clean])
    np.testing.assert_allclose(mat, ref, atol=1e-7)
    np.testing.assert_allclose(dens.sum(1) * dx, 1.0, rtol=1e-12)
