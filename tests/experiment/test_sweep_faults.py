"""Bad input and faults: validation before any run, one-line errors with exit code 2 and nothing written,
exit code 1 when a point failed, corrupt run files moved aside and rerun, best learning rates on a grid's edge."""
import json
import sys
from pathlib import Path

import pytest

from heterogeneity import cli
from heterogeneity.experiment._config import resolve, run_id
from heterogeneity.experiment._summary import lr_edge_warnings
from heterogeneity.experiment._sweep import load_config, load_runs, run_sweep

sys.path.insert(0, str(Path(__file__).parent))
from test_sweep_batched import write_toy  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SMALL = [{"optimizer": ["sgd"], "lr": [0.1, 0.3], "seed": [0, 1]}]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("heterogeneity sweep: error: "), err
    return err


def _config_file(tmp_path: Path, text: str) -> Path:
    (tmp_path / "configs").mkdir(exist_ok=True)
    path = tmp_path / "configs" / "broken.py"
    path.write_text(text)
    return path


CONFIG_HEAD = "from heterogeneity.experiment import SweepConfig\n"


@pytest.mark.parametrize("case, argv, expected", [
    ("grid", [{"optimizer": ["adamm", "sgd"], "lr": [0.1], "seed": [0]}],
     "toy: grid point 1/2 (optimizer='adamm', lr=0.1, seed=0): unknown optimizer 'adamm'. Did you mean 'adam'"),
    ("grid", [{"optimizer": ["adam"], "lr": [0.1], "opt.b1": [1.5], "seed": [0, 1]}],
     "adam: b1 must be in [0, 1) (bias correction divides by 1 - b1**t), got 1.5 (2 of 2 grid points are invalid)"),
    ("grid", [{"optimizer": ["adam"], "lr": [0.1], "opt.bb1": [0.5], "seed": [0]}],
     "adam: unknown hyperparameter(s) ['bb1']"),
    ("grid", [{"optimizer": ["adam"], "lr": [-1.0], "seed": [0]}], "learning_rate"),
    ("grid", [{"optimizer": ["sgd"], "model": ["mlpp"], "lr": [0.1], "seed": [0]}],
     "unknown model 'mlpp'. Did you mean 'mlp'?"),
    ("file", CONFIG_HEAD + "import does_not_exist\n", "failed to import (line 2): ModuleNotFoundError: No module"),
    ("file", CONFIG_HEAD + "CONFIG = SweepConfig(\n", "failed to import (line 2): SyntaxError"),
    ("file", CONFIG_HEAD + "CONFIG = SweepConfig(name='x', build=print, grid=[])\n",
     "failed to import (line 2): ValueError: SweepConfig 'x': grid is empty"),
    ("file", CONFIG_HEAD + "CONFIG = 3\n", "must define CONFIG = SweepConfig(...), got int"),
    ("flags", ["--set", "lrr=0.1"], "--set lrr=0.1: toy has no hyperparameter 'lrr'. Did you mean 'lr'?"),
    ("flags", ["--only", "sed=1"], "--only sed=1: toy has no hyperparameter 'sed'. Did you mean 'seed'?"),
    ("flags", ["--only", "seed=7"], "--only seed=7: no grid point of toy matches (4 points)"),
    ("flags", ["--only", "seed"], "--only seed: expected KEY=VALUE"),
    ("flags", ["--set", "=3"], "--set =3: expected KEY=VALUE"),
    ("flags", ["--shard", "2/2"], "--shard 2/2: expected I/N with integers 0 <= I < N"),
    ("flags", ["--shard", "first"], "--shard first: expected I/N"),
    ("flags", ["--max-batch", "0"], "--max-batch 0: must be an int >= 1"),
    ("flags", ["--checkpoint-every", "-5"], "--checkpoint-every -5: must be an int >= 1"),
    ("flags", ["--lock-timeout", "0"], "argument --lock-timeout: must be a number of seconds > 0"),
])
def test_bad_input_is_one_error_line_exit_2_and_nothing_written(tmp_path, capsys, case, argv, expected):
    if case == "grid":
        config, flags = write_toy(tmp_path, grid=argv), []
    elif case == "file":
        config, flags = _config_file(tmp_path, argv), []
    else:
        config, flags = write_toy(tmp_path, grid=SMALL), argv
    out = tmp_path / "out" / "sweep"
    assert cli.main(["sweep", "--config", str(config), "--out", str(out), *flags]) == 2
    assert expected in _error_line(capsys)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError):  # the library refuses the same input before writing, too
        if case == "grid":
            run_sweep(load_config(config), out)
        elif case == "file":
            load_config(config)
        else:
            raise ValueError("flags are the CLI's")
    assert not (tmp_path / "out").exists()


def test_a_failed_point_gives_exit_code_1_and_the_others_run(tmp_path, capsys):
    config = write_toy(tmp_path, grid=[{"optimizer": ["sgd"], "lr": [0.1], "seed": [0, 1], "fail": [False, True]}],
                       steps=4)
    out = tmp_path / "out"
    assert cli.main(["sweep", "--config", str(config), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "2 of 4 selected points failed; tracebacks in" in captured.err
    runs = load_runs(out)
    assert sorted(r["status"] for r in runs.values()) == ["failed", "failed", "finished", "finished"]
    assert all("boom: deliberately failing build" in r["error"] for r in runs.values() if r["status"] == "failed")
    # without the failing points the same directory is complete: exit code 0
    assert cli.main(["sweep", "--config", str(config), "--out", str(out), "--only", "fail=false"]) == 0


def test_corrupt_run_files_are_reported_moved_aside_and_rerun(tmp_path):
    cfg = load_config(write_toy(tmp_path, grid=SMALL, steps=4))
    out = tmp_path / "out"
    run_sweep(cfg, out)
    ids = [run_id("toy", hp) for hp in resolve(cfg)]
    runs_dir = out / "runs"
    good = (runs_dir / f"{ids[0]}.json").read_text()
    (runs_dir / f"{ids[0]}.json").write_text(good[: len(good) // 2])  # truncated
    (runs_dir / f"{ids[1]}.json").write_text("[]")  # valid JSON, not a record
    (runs_dir / f"{ids[2]}.json").write_text((runs_dir / f"{ids[3]}.json").read_text())  # another point's record
    with pytest.raises(ValueError, match=r"runs/\w{16}\.json: (corrupt JSON|not a run record|its run_id)"):
        load_runs(out)
    assert sorted(load_runs(out, strict=False)) == [ids[3]]
    lines = []
    res = run_sweep(cfg, out, log=lines.append, only=lambda hp: hp["seed"] == 0 or hp["lr"] == 0.1)
    # ids[0..2] are selected; each is reported, moved aside and rerun, never trusted
    assert sorted(res.ran) == sorted(ids[:3]) == sorted(res.corrupt) and res.skipped == () and res.selected == 3
    assert sum("corrupt run file" in line and "rerunning the point" in line for line in lines) == 3
    for rid in ids[:3]:
        aside = list(runs_dir.glob(f"{rid}.json.corrupt-*"))
        assert len(aside) == 1 and aside[0].read_text() != (runs_dir / f"{rid}.json").read_text()
    runs = load_runs(out)
    assert sorted(runs) == sorted(ids) and all(r["status"] == "finished" for r in runs.values())
    assert runs[ids[2]]["hparams"] == resolve(cfg)[2]
    # a corrupt file outside this process's selection is left in place and reported in the summary
    (runs_dir / f"{ids[3]}.json").write_text("{")
    res = run_sweep(cfg, out, only=lambda hp: hp["seed"] == 0)
    assert (runs_dir / f"{ids[3]}.json").read_text() == "{" and res.summary["counts"]["pending"] == 1
    assert any(w.startswith(f"corrupt run file for {ids[3]}") for w in res.summary["warnings"])


def test_best_learning_rate_on_the_grid_edge_is_warned(tmp_path, capsys):
    config = write_toy(tmp_path, grid=[{"optimizer": ["sgd"], "lr": [0.01, 0.03], "seed": [0, 1]},
                                       {"optimizer": ["adam"], "lr": [0.01, 0.3, 3.0], "seed": [0]}], steps=6)
    assert cli.main(["sweep", "--config", str(config), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["warnings"] == ["best lr 0.03 is the largest of the grid [0.01, 0.03] for optimizer='sgd' "
                                   "(by mean final_loss): not a tuned result, widen the grid"]
    assert "warning: best lr 0.03 is the largest" in out


def test_lr_edge_warnings_rules():
    def group(lr, mean, statuses=("finished",), **hp):
        return {"hparams": {"optimizer": "adam", "lr": lr, **hp}, "statuses": list(statuses),
                "metrics": {"final_loss": {"mean": mean} if mean is not None else {}}}

    interior = [group(0.1, 3.0), group(0.3, 1.0), group(1.0, 2.0)]
    assert lr_edge_warnings(interior, "final_loss") == []
    low = [group(0.1, 0.5), group(0.3, 1.0)]
    assert "smallest" in lr_edge_warnings(low, "final_loss")[0]
    assert "largest" in lr_edge_warnings(low, "final_loss", lower_is_better=False)[0]
    assert lr_edge_warnings([group(0.1, 0.5), group(0.3, 1.0, statuses=("pending",))], "final_loss") == []
    assert lr_edge_warnings([group(0.1, 0.5)], "final_loss") == []  # one rate: nothing was tuned
    # a rate at which a seed diverged is no candidate, whatever the mean of the others
    assert lr_edge_warnings([group(0.1, 2.0), group(0.3, 1.0), group(1.0, 0.5, statuses=("finished", "diverged"))],
                            "final_loss") == []
    assert lr_edge_warnings([group("optimal", 0.5), group(0.3, 1.0)], "final_loss") == []
    only_finite = lr_edge_warnings([group(0.1, None), group(0.3, 1.0)], "final_loss")
    assert only_finite[0].startswith("best lr 0.3 is the largest")
    two = low + [group(0.1, 2.0, b1=0.9), group(0.3, 1.0, b1=0.9)]  # two families, both on an edge
    assert len(lr_edge_warnings(two, "final_loss", axes=("optimizer", "b1"))) == 2


def test_set_only_and_smoke_flags(tmp_path, capsys):
    config = write_toy(tmp_path, grid=SMALL, steps=6)
    out = tmp_path / "out"
    assert cli.main(["sweep", "--config", str(config), "--out", str(out), "--set", "steps=3", "--set", "dim=4",
                     "--only", "seed=1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "[1/" not in printed and "final_loss" in printed  # --quiet: the table, no progress lines
    runs = load_runs(out)
    assert len(runs) == 2 and all(r["hparams"]["steps"] == 3 and r["hparams"]["dim"] == 4 and r["hparams"]["seed"] == 1
                                  for r in runs.values())
    sweep = json.loads((out / "sweep.json").read_text())
    assert sweep["overrides"] == {"steps": 3, "dim": 4} and len(sweep["runs"]) == 4
    # the README command, at smoke size: every optimizer of the config, exit code 0
    out = tmp_path / "quadratic_cases"
    assert cli.main(["sweep", "--config", str(ROOT / "configs" / "quadratic_cases.py"), "--out", str(out),
                     "--smoke", "--best-over", "lr"]) == 0
    assert sorted(r["hparams"]["optimizer"] for r in load_runs(out).values()) == [
        "adam_no_bias_correction", "blockwise_adam", "frozen_adam", "sgd"]


def test_checkpointed_points_resume_where_they_were_interrupted(tmp_path, monkeypatch):
    """``checkpoint_every``: each point runs alone through train's run_dir; a Ctrl-C at step 25 of the first
    point leaves its checkpoint at step 20 and no record; the resumed sweep continues it from there, runs the
    second, and ends with the records of an uninterrupted sweep."""
    grid = [{"optimizer": ["sgd"], "lr": [0.1], "seed": [0, 1], "noisy": [True]}]
    cfg = load_config(write_toy(tmp_path, grid=grid, steps=40))
    run_sweep(cfg, tmp_path / "clean", checkpoint_every=10)
    monkeypatch.setenv("TOY_INTERRUPT_AT", "25")
    monkeypatch.setenv("TOY_INTERRUPT_MARK", str(tmp_path / "interrupted"))
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_sweep(cfg, out, checkpoint_every=10, batch=False)
    ids = [run_id("toy", hp) for hp in resolve(cfg)]
    assert load_runs(out) == {} and not list((out / "locks").iterdir())
    checkpoints = sorted(p.name for p in (out / "train" / ids[0]).glob("ckpt-*.npz"))
    assert checkpoints and checkpoints[-1].endswith("20.npz")  # the newest is at step 20
    lines = (out / "train" / ids[0] / "metrics.jsonl").read_text().splitlines()
    res = run_sweep(cfg, out, checkpoint_every=10)
    assert res.ran == tuple(ids)
    resumed = (out / "train" / ids[0] / "metrics.jsonl").read_text().splitlines()
    assert resumed[:len(lines) - 1] == lines[:-1] and len(resumed) > len(lines)  # continued, not restarted
    clean, got = load_runs(tmp_path / "clean"), load_runs(out)
    for rid in ids:
        assert got[rid]["execution"] == {"mode": "sequential", "run_dir": f"train/{rid}", "checkpoint_every": 10}
        assert got[rid]["history"] == clean[rid]["history"] and got[rid]["final"] == clean[rid]["final"]
