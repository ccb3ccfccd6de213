"""Every config in configs/ is imported, its grids resolve, and its smoke grid runs end to end."""
import importlib
import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from heterogeneity.experiment._config import SweepConfig, resolve, run_id
from heterogeneity.experiment._store import read_json
from heterogeneity.experiment._sweep import load_config, load_runs, run_one, run_sweep

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # configs import each other as `configs.<name>`
    sys.path.insert(0, str(ROOT))
CONFIG_NAMES = sorted(p.stem for p in (ROOT / "configs").glob("*.py") if not p.stem.startswith("_"))
EXPECTED = {  # one per experiment of the four papers (EXPERIMENTS.md)
    "optimizer_comparison", "schedules", "ln_placement", "grad_correlation", "seed000_quadratic", "nanogpt_char",
    "quadratic_cases", "js0_init", "mlp_scale", "pretrained_vs_scratch",
    "sign_methods", "majority_vote", "sign_sensitivity",
    "rotated_quadratic", "rotation_gpt", "rotation_cnn",
    "advisor_study",  # the study of whether the scores predict the SGD-Adam gap
}


def _load(name):
    return importlib.import_module(f"configs.{name}").CONFIG


def test_every_expected_config_exists():
    assert EXPECTED <= set(CONFIG_NAMES)


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_config_grids_resolve(name):
    cfg = _load(name)
    assert load_config(ROOT / "configs" / f"{name}.py").name == cfg.name  # the launchers' path loader
    assert isinstance(cfg, SweepConfig) and cfg.name == name and cfg.description
    for scale in ("laptop", "gpu"):
        points = resolve(cfg, scale=scale)
        ids = [run_id(cfg.name, p) for p in points]
        assert len(points) >= 2 and len(set(ids)) == len(ids)
        assert all("optimizer" in p and "seed" in p for p in points)
    smoke = resolve(cfg, smoke=True)
    assert 1 <= len(smoke) <= 4 and all(int(p["steps"]) <= 5 for p in smoke)


# > 10 s each on the loaded 2-core machine (marked slow, still run in CI)
MODEL_CONFIGS = {"sign_methods", "majority_vote", "ln_placement", "nanogpt_char", "js0_init", "mlp_scale",
                 "pretrained_vs_scratch", "rotation_gpt", "grad_correlation"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in MODEL_CONFIGS else n
                                  for n in CONFIG_NAMES])
def test_config_smoke_runs(name, tmp_path):
    cfg = _load(name)
    res = run_sweep(cfg, tmp_path, smoke=True)
    runs = load_runs(tmp_path)
    assert len(runs) == len(resolve(cfg, smoke=True)) and not list(tmp_path.rglob("*.tmp"))
    for rec in runs.values():
        assert rec["status"] == "finished", rec.get("error")
        assert rec["num_compiles"] == 1
        value = rec["final"][cfg.metric]
        assert isinstance(value, float) and math.isfinite(value), (cfg.metric, value)
        assert len(rec["history"]["loss"]) >= 2
    assert read_json(tmp_path / "summary.json")["complete"] and res.summary["counts"]["finished"] == len(runs)


def test_seed000_quadratic_signsgd_feels_lambda_p():
    """[Tomihari25, App. D.9] in 300 steps: SignSGD (η_t = ‖g‖₁/(PΛ_P)) gains far more on Hetero, SGD does not."""
    cfg = _load("seed000_quadratic")
    gaps = {}
    for setting in ("homo", "hetero"):
        for opt in ("sgd", "signsgd_s"):
            hp = {**resolve(cfg, smoke=True)[0], "steps": 300, "setting": setting, "optimizer": opt}
            rec = run_one(cfg, hp)
            assert rec["status"] == "finished", rec.get("error")
            gaps[opt, setting] = rec["final"]["rel_gap"]
            np.testing.assert_allclose(rec["final"]["lambda_p"], {"homo": 4999.0, "hetero": 5104.0 / 3}[setting])
            if opt == "sgd":  # Table S.9: Λ_G ≈ λ_max on both
                assert 4900 < rec["final"]["lambda_g"] <= 5000 + 1e-6
    assert gaps["signsgd_s", "hetero"] < 1e-2 * gaps["signsgd_s", "homo"]
    assert 0.1 < gaps["sgd", "hetero"] / gaps["sgd", "homo"] < 10


def _script(name):
    spec = importlib.util.spec_from_file_location(f"_script_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_launch_scripts_smoke(tmp_path, capsys):
    out = tmp_path / "s9"
    assert _script("sweep").main(["--config", str(ROOT / "configs" / "seed000_quadratic.py"), "--out", str(out),
                                  "--smoke", "--best-over", "lr"]) == 0
    text = capsys.readouterr().out
    assert "rel_gap" in text and "signsgd_s" in text and len(load_runs(out)) == 2
    # the Table S.9 launcher resumes the same sweep (nothing to rerun) and prints the exact Λ_P
    assert _script("reproduce_table_s9").main(["--out", str(out), "--smoke"]) == 0
    text = capsys.readouterr().out
    assert "[1/" not in text  # no progress line: both runs were found done
    assert "1701.3333" in text and (out / "table_s9.json").exists()
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        _script("sweep").main(["--config", str(ROOT / "configs" / "seed000_quadratic.py"), "--only", "seed"])


def test_launch_script_checks_fail_on_wrong_numbers():
    s9 = _script("reproduce_table_s9")
    run = lambda setting, opt, lp, lg: {"run_id": "x", "status": "finished", "final": {"lambda_p": lp, "lambda_g": lg},  # noqa: E731
                                        "hparams": {"setting": setting, "optimizer": opt}}
    good = [run("homo", "sgd", 4999.0, 4999.1), run("hetero", "sgd", 5104 / 3, 4999.99),
            run("hetero", "signsgd_s", 5104 / 3, float("nan"))]  # Λ_G is only checked on SGD runs
    assert s9.checks(good) == []
    for bad in (run("hetero", "sgd", 1701.34, 4999.99), run("homo", "sgd", 4999.0, 5000.5),
                run("homo", "sgd", 4999.0, 4800.0), run("homo", "sgd", 4999.0, float("nan")),
                run("hetero", "signsgd_s", float("nan"), 1.0)):
        assert len(s9.checks(good + [bad])) == 1, bad
    assert s9.checks([{**run("homo", "sgd", 0.0, 0.0), "status": "diverged"}]) == []

    t1 = _script("reproduce_table1_seed003")
    paper_size = {"dim": 1000, "last": 990, "steps": 100}
    cell = lambda m: {"mean": m}  # noqa: E731
    out = [{"optimizer": opt, "t": t, "l11_over_d": t1.PAPER.get((opt, t), (0.01164,))[0], "paper": t1.PAPER.get((opt, t)),
            "cells": {str(list(b)): cell(t1.PAPER[(opt, t)][1 + i] if (opt, t) in t1.PAPER else 0.01)
                      for i, b in enumerate(t1.BETAS)}}
           for opt, t in [*t1.PAPER, ("rotated_adam", 0.0)]]
    assert t1.checks(out, paper_size) == [] and t1.checks(out, {**paper_size, "dim": 24}) is None
    out[2]["cells"]["[0.9, 0.99]"]["mean"] = 0.01  # Adam at t=0.002: 15x the paper, and no longer increasing in t
    assert len(t1.checks(out, paper_size)) == 2
