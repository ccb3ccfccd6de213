"""scripts/advisor_study.py on hand-made run records (no training): analysis, figures, calibration, bad usage."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
for p in (ROOT, ROOT / "scripts", ROOT / "tests" / "findings"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import advisor_study  # noqa: E402  (scripts/advisor_study.py)
from configs import advisor_study as S  # noqa: E402
from heterogeneity.experiment import _advisor as A  # noqa: E402
from heterogeneity.experiment._config import run_id  # noqa: E402
from test_findings_advisor import _records, _tracking  # noqa: E402


def _write(out: Path, records: dict) -> None:
    (out / "runs").mkdir(parents=True)
    for rec in records.values():
        rid = run_id(S.CONFIG.name, rec["hparams"])
        (out / "runs" / f"{rid}.json").write_text(json.dumps({**rec, "run_id": rid, "history": {}}))


def test_findings_only_analyses_plots_and_calibrates(tmp_path, monkeypatch):
    out = tmp_path / "study"
    _write(out, _records(_tracking))
    target = tmp_path / "advisor_calibration.json"
    monkeypatch.setattr(A, "CALIBRATION_PATH", target)
    assert advisor_study.main(["--findings-only", "--calibrate", "--out", str(out)]) == 0
    found = json.loads((out / "findings.json").read_text())
    assert found["verdict"] == "holds"
    for name in ["scatter.png", *(f"scatter_{s}.png" for s in A.SCORES)]:
        assert (out / name).stat().st_size > 10_000, name
    cal = json.loads(target.read_text())
    assert cal["best"] and cal["predictive"] and cal["study"]["scale"] == "laptop" and len(cal["pairs"]) == len(S.PAIRS)
    assert json.loads((out / "calibration.json").read_text()) == cal


def test_partial_or_incomplete_studies_never_calibrate(tmp_path, monkeypatch):
    out = tmp_path / "study"
    _write(out, _records(_tracking, drop={"gpt", "cnn"}))
    target = tmp_path / "advisor_calibration.json"
    monkeypatch.setattr(A, "CALIBRATION_PATH", target)
    assert advisor_study.main(["--findings-only", "--calibrate", "--out", str(out)]) == 1
    assert not target.exists() and (out / "scatter.png").exists()  # analysed and drawn, not calibrated


def test_bad_usage(tmp_path, capsys):
    assert advisor_study.main(["--pairs", "resnet152", "--out", str(tmp_path)]) == 2
    assert "unknown pair(s) ['resnet152']" in capsys.readouterr().err
    assert advisor_study.main(["--pairs", "cnn", "--smoke", "--out", str(tmp_path)]) == 2
