"""scripts/reproduce.py: runs a config's sweep, writes findings, resumes, splices EXPERIMENTS.md, rejects bad usage."""
import importlib.util
import json
import sys
import types
from pathlib import Path

import jax.numpy as jnp
import pytest

from heterogeneity.experiment._config import RunSpec, SweepConfig, make_optimizer, run_id

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from configs import _findings  # noqa: E402


def _script():
    spec = importlib.util.spec_from_file_location("_reproduce_script", ROOT / "scripts" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build(hp):
    params = {"w": jnp.asarray([3.0, -2.0])}
    loss = lambda p, batch: 0.5 * jnp.sum(jnp.asarray([1.0, 10.0]) * p["w"] ** 2)  # noqa: E731
    return RunSpec(loss_fn=loss, params=params, optimizer=make_optimizer(hp, params), num_steps=int(hp["steps"]),
                   batches=jnp.zeros(()), log_every=1)


def _fake_experiment():
    cfg = SweepConfig(name="toy", build=_build, base={"steps": 20}, metric="final_loss",
                      grid={"optimizer": ["sgd", "adam"], "lr": [0.01, 0.05, 0.3], "seed": [0, 1]},
                      smoke={"steps": 2}, smoke_grid={"optimizer": ["sgd"], "lr": [0.05], "seed": [0]})

    def findings(runs):
        best = _findings.best_over(runs, ["optimizer"], "final_loss")
        if len(best) < 2:
            return _findings.findings("", "incomplete", "missing optimizers")
        sgd, adam = best[("sgd",)]["median"], best[("adam",)]["median"]
        rows = [(k[0], v["lr"], _findings.fmt_iqr(v)) for k, v in best.items()]
        verdict = "holds" if adam < sgd else "does not hold at this scale"
        return _findings.findings(_findings.md_table(["optimizer", "best lr", "final loss"], rows), verdict,
                                  "Adam's best final loss below SGD's.", {"sgd": sgd, "adam": adam})

    return types.SimpleNamespace(CONFIG=cfg, PAPER="[Test] Adam beats SGD on an ill-conditioned quadratic.",
                                 findings=findings)


def test_reproduce_runs_resumes_and_updates(tmp_path, capsys):
    rp = _script()
    module, out = _fake_experiment(), tmp_path / "toy"
    assert rp.reproduce("toy", module, scale="laptop", smoke=False, out=out, run=True, update=False) == 0
    found = json.loads((out / "findings.json").read_text())
    assert found["num_runs"] == 12 and found["verdict"] in _findings.VERDICTS and found["wall_s"] > 0
    assert set(found["numbers"]) == {"sgd", "adam"} and "| optimizer | best lr |" in found["table"]
    assert f"{found['numbers']['sgd']:.3g}" in found["table"]
    md = (out / "findings.md").read_text()
    assert md.startswith("<!-- reproduce:toy begin -->") and "python scripts/reproduce.py toy" in md
    wall = found["wall_s"]
    capsys.readouterr()
    # resumed: nothing reruns, the wall time is not counted again
    assert rp.reproduce("toy", module, scale="laptop", smoke=False, out=out, run=True, update=False) == 0
    assert "[1/" not in capsys.readouterr().out
    assert json.loads((out / "findings.json").read_text())["wall_s"] == wall
    # a result that is no point of the current grid (an earlier, wider grid) is ignored, not counted
    stale = json.loads(next((out / "runs").glob("*.json")).read_text())
    stale["hparams"]["lr"], stale["final"]["final_loss"] = 0.123, -1.0
    stale["run_id"] = run_id("toy", stale["hparams"])
    (out / "runs" / f"{stale['run_id']}.json").write_text(json.dumps(stale))
    assert rp.reproduce("toy", module, scale="laptop", smoke=False, out=out, run=False, update=False) == 0
    assert "ignoring 1 result(s)" in capsys.readouterr().out
    assert json.loads((out / "findings.json").read_text())["numbers"] == found["numbers"]
    # --update: appended once, then replaced in place; the rest of the file is kept
    doc = tmp_path / "EXPERIMENTS.md"
    doc.write_text("# Experiments\n\nintro\n\n<!-- reproduce:index begin -->\n<!-- reproduce:index end -->\n\n"
                   "<!-- reproduce:other begin -->\nx\n<!-- reproduce:other end -->\n")
    text = md
    rp.update_experiments_md("toy", text, doc)
    rp.update_experiments_md("toy", text.replace("| optimizer |", "| OPTIMIZER |"), doc)
    body = doc.read_text()
    assert body.count("<!-- reproduce:toy begin -->") == 1 and "| OPTIMIZER |" in body and "| optimizer |" not in body
    assert "intro" in body and "<!-- reproduce:other begin -->\nx\n" in body
    assert f"| [`toy`](#toy) | [Test] Adam beats SGD on an ill-conditioned quadratic. | {found['verdict']} |" in body


def test_reproduce_incomplete_and_findings_only(tmp_path):
    rp = _script()
    module, out = _fake_experiment(), tmp_path / "toy"
    assert rp.reproduce("toy", module, scale="laptop", smoke=False, out=out, run=False, update=False) == 1
    assert rp.reproduce("toy", module, scale="laptop", smoke=True, out=out, run=True, update=False) == 1  # 1 of 2
    assert json.loads((out / "findings.json").read_text())["verdict"] == "incomplete"


def test_reproduce_cli_rejects_bad_usage(capsys):
    rp = _script()
    assert rp.main(["no_such_experiment"]) == 2
    assert "unknown experiment" in capsys.readouterr().err
    assert rp.main([]) == 2
    names = list(rp.experiments())
    if names:
        assert rp.main([names[0], "--smoke", "--update"]) == 2
        assert "never holds smoke" in capsys.readouterr().err
        if len(names) > 1:
            assert rp.main(names[:2] + ["--out", "x"]) == 2


def test_every_experiment_declares_a_claim():
    for name, module in _script().experiments().items():
        assert isinstance(module.PAPER, str) and "[" in module.PAPER, name
        assert module.CONFIG.name == name


def test_findings_helpers():
    rec = lambda opt, lr, seed, x, status="finished": {  # noqa: E731
        "status": status, "hparams": {"optimizer": opt, "lr": lr, "seed": seed}, "final": {"m": x}}
    runs = {str(i): r for i, r in enumerate([
        rec("a", 0.1, 0, 1.0), rec("a", 0.1, 1, 3.0), rec("a", 0.1, 2, 2.0),
        rec("a", 1.0, 0, 0.5), rec("a", 1.0, 1, 0.0, "diverged"), rec("a", 1.0, 2, 0.4),
        rec("a", 0.01, 0, 5.0), rec("a", 0.01, 1, float("nan")), rec("b", 0.1, 0, 7.0, "failed")])}
    best = _findings.best_over(runs, ["optimizer"], "m")
    cell = best[("a",)]
    # lr=1.0: values 0.5, inf, 0.4 -> median 0.5 beats lr=0.1's median 2.0; 1.0 is the grid's largest value
    assert cell["lr"] == 1.0 and cell["median"] == 0.5 and cell["edge"] and cell["n"] == 3
    assert ("b",) not in best  # a failed run carries no result
    assert "lr=1" in _findings.edge_note(best)
    assert _findings.median_iqr([1.0, 2.0, 3.0]) == (2.0, 1.5, 2.5)
    # higher is better (an accuracy): a diverged run is the worst, never the best
    acc = {"0": rec("a", 0.1, 0, 0.9), "1": rec("a", 1.0, 0, 0.0, "diverged"), "2": rec("a", 0.01, 0, 0.5)}
    top = _findings.best_over(acc, ["optimizer"], "m", lower_is_better=False)[("a",)]
    assert top["lr"] == 0.1 and top["median"] == 0.9
    assert _findings.fmt(float("inf")) == "diverged" and _findings.fmt(None) == "—" and _findings.fmt(0.012345) == "0.0123"
    with pytest.raises(ValueError, match="verdict"):
        _findings.findings("", "maybe", "")
