"""`heterogeneity` CLI: arguments checked before any work, one-line errors, Ctrl-C, staged report output."""
import glob
import json
import os
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest

from heterogeneity import cli
from heterogeneity.experiment import _cli


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if the setup or the report starts (validation must come first)."""
    def boom(*a, **k):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(_cli, "setup", boom)
    monkeypatch.setattr(_cli, "report", boom)


def _leftovers(out):
    return glob.glob(os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.tmp-*"))


def _one_error_line(capsys, command="report") -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"heterogeneity {command}: error: "), err
    return err


@pytest.fixture
def files(tmp_path):
    np.save(tmp_path / "array.npy", np.ones(3))
    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    np.savez(tmp_path / "objects.npz", a=np.array([{"x": 1}], dtype=object))
    return tmp_path


@pytest.mark.parametrize("argv, expected", [
    (["--microbatches", "0"], "--microbatches 0: must be an int >= 1 that divides the batch size 32 (the gpt default)"),
    (["--microbatches", "-2"], "--microbatches -2: must be an int >= 1 that divides the batch size 32"),
    (["--quick", "--microbatches", "3"], "--microbatches 3: must be an int >= 1 that divides the batch size 8 "
                                         "(the gpt default with --quick): one of 1, 2, 4, 8"),
    (["--batch-size", "12", "--microbatches", "5"],
     "divides the batch size 12 (--batch-size): one of 1, 2, 3, 4, 6, 12"),
    (["--slq-steps", "-5"], "--slq-steps -5: must be an int >= 1"),
    (["--slq-probes", "0"], "--slq-probes 0: must be an int >= 1"),
    (["--l11-probes", "-1"], "--l11-probes -1: must be an int >= 1"),
    (["--batch-size", "0"], "--batch-size 0: must be an int >= 1"),
    (["--batch-size", "many"], "argument --batch-size: invalid int value: 'many'"),
    (["--checkpoint", "{tmp}/array.npy"],
     "--checkpoint {tmp}/array.npy: not a .npz parameter checkpoint (a single .npy array"),
    (["--checkpoint", "{tmp}/notes.txt"], "--checkpoint {tmp}/notes.txt: not a .npz parameter checkpoint (not a zip"),
    (["--checkpoint", "{tmp}/none.npz"], "--checkpoint {tmp}/none.npz: no such file"),
    (["--checkpoint", "{tmp}"], "--checkpoint {tmp}: not a .npz parameter checkpoint (a directory)"),
    (["--model", "resnet50"], "--model: unknown model 'resnet50'; choose from cnn, gpt, mixer, mlp, transformer, vit"),
    (["--data", "mnist"], "--data: unknown data 'mnist'; choose from digits, shakespeare, synthetic or a path"),
    (["--data", "{tmp}/missing.txt"], "--data {tmp}/missing.txt: no such file"),
    (["--model", "mlp", "--data", "shakespeare"], "--model mlp with --data shakespeare: text data needs the gpt model"),
    (["--out", "{tmp}/notes.txt"], "--out {tmp}/notes.txt: exists and is not a directory"),
    (["--norm", "middle"], "argument --norm: invalid choice: 'middle'"),
])
def test_report_arguments_are_checked_before_any_work(files, no_work, capsys, argv, expected):
    out = str(files / "out")
    argv = [a.replace("{tmp}", str(files)) for a in argv]
    t0 = time.perf_counter()
    assert cli.main(["report", "--out", out, *argv]) == 2
    assert time.perf_counter() - t0 < 5
    assert expected.replace("{tmp}", str(files)) in _one_error_line(capsys)
    assert not os.path.exists(out) and not _leftovers(out)


def test_checkpoint_with_pickled_entries_or_other_keys(files, capsys):
    out = str(files / "out")
    assert cli.main(["report", "--quick", "--model", "mlp", "--checkpoint", str(files / "objects.npz"),
                     "--out", out]) == 2
    err = _one_error_line(capsys)
    assert "not a .npz parameter checkpoint (entry 'a' holds pickled Python objects" in err
    np.savez(files / "other.npz", **{"head/kernel": np.ones((2, 2)), "stray": np.ones(1)})
    assert cli.main(["report", "--quick", "--model", "mlp", "--checkpoint", str(files / "other.npz"),
                     "--out", out]) == 2
    err = _one_error_line(capsys)
    assert f"--checkpoint {files}/other.npz: does not match the model: missing [" in err
    assert "'layers/0/kernel'], unexpected ['stray'], shape mismatch ['head/kernel (2, 2)->(16, 10)']" in err
    assert err.endswith("(--model mlp, --quick)\n")
    assert not os.path.exists(out) and not _leftovers(out)


def test_setup_checks_its_arguments_first():
    from heterogeneity.experiment import setup

    for kwargs, match in [(dict(microbatches=0), "microbatches must be an int >= 1, got 0"),
                          (dict(batch_size=12, microbatches=5), "microbatches=5 does not divide the batch size 12"),
                          (dict(batch_size=-1), "batch_size must be an int >= 1"),
                          (dict(data="mnist"), "unknown data 'mnist'")]:
        with pytest.raises(ValueError, match=match):
            setup("mlp", quick=True, **kwargs)
    with pytest.raises(FileNotFoundError, match="no such file"):
        setup("gpt", "missing/corpus.txt", quick=True)


def test_sweep_and_selftest_arguments(tmp_path, capsys, monkeypatch):
    (tmp_path / "c.txt").write_text("")
    assert cli.main(["sweep", "--config", str(tmp_path / "nope.py"), "--out", str(tmp_path / "o")]) == 2
    assert f"--config {tmp_path}/nope.py: no such file" in _one_error_line(capsys, "sweep")
    assert cli.main(["sweep", "--config", str(tmp_path / "c.txt"), "--out", str(tmp_path / "o")]) == 2
    assert "not a .py config module" in _one_error_line(capsys, "sweep")
    assert cli.main(["sweep", "--config", "configs/quadratic_cases.py"]) == 2
    assert "the following arguments are required: --out" in _one_error_line(capsys, "sweep")
    assert not (tmp_path / "o").exists()
    for bad in ("0", "-3", "soon"):
        assert cli.main(["selftest", "--timeout", bad]) == 2
        err = _one_error_line(capsys, "selftest")
        assert f"argument --timeout: must be a number of seconds > 0, got '{bad}'" in err
    calls = []
    fake = types.ModuleType("heterogeneity.selftest")
    fake.main = lambda quick, timeout: calls.append((quick, timeout)) or 1
    monkeypatch.setitem(sys.modules, "heterogeneity.selftest", fake)
    assert cli.main(["selftest", "--quick", "--timeout", "30"]) == 1 and cli.main(["selftest"]) == 1
    assert calls == [(True, 30.0), (False, 120.0)]


def _fake_report(*args, out_dir, meta, **kwargs):
    (out_dir / "report.json").write_text(json.dumps({"meta": meta}))
    (out_dir / "report.md").write_text("new")
    return {"interpretation": {"advice": "fake", "findings": {}}}


def test_report_is_staged_and_moved_into_place(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(_cli, "setup", lambda *a, **k: types.SimpleNamespace(
        loss_fn=None, params={"w": np.zeros(2)}, batch=None, attention_fn=None, attention_mask=None, meta={}))
    monkeypatch.setattr(_cli, "report", _fake_report)
    new = tmp_path / "a" / "b" / "rep"
    assert cli.main(["report", "--quick", "--model", "mlp", "--out", str(new)]) == 0
    assert sorted(os.listdir(new)) == ["report.json", "report.md"] and not _leftovers(str(new))
    old = tmp_path / "old"
    old.mkdir()
    (old / "marker").write_text("keep")
    (old / "report.md").write_text("stale")
    assert cli.main(["report", "--quick", "--model", "mlp", "--out", str(old)]) == 0
    assert sorted(os.listdir(old)) == ["marker", "report.json", "report.md"]
    assert (old / "report.md").read_text() == "new" and (old / "marker").read_text() == "keep"
    assert json.loads((old / "report.json").read_text())["meta"]["quick"] is True
    capsys.readouterr()

    def interrupted(*args, out_dir, **kwargs):
        (out_dir / "report.json").write_text("half")
        raise KeyboardInterrupt

    def buggy(*args, out_dir, **kwargs):
        (out_dir / "report.json").write_text("half")
        raise RuntimeError("a real bug")

    monkeypatch.setattr(_cli, "report", interrupted)
    assert cli.main(["report", "--quick", "--model", "mlp", "--out", str(tmp_path / "x" / "rep")]) == 130
    assert capsys.readouterr().err == "heterogeneity report: interrupted\n"
    assert not (tmp_path / "x").exists()  # the parents made for the output are gone too
    assert cli.main(["report", "--quick", "--model", "mlp", "--out", str(old)]) == 130
    assert sorted(os.listdir(old)) == ["marker", "report.json", "report.md"]
    assert json.loads((old / "report.json").read_text()) == {"meta": {"quick": True}}
    monkeypatch.setattr(_cli, "report", buggy)
    with pytest.raises(RuntimeError, match="a real bug"):  # a bug keeps its traceback
        cli.main(["report", "--quick", "--model", "mlp", "--out", str(tmp_path / "rep")])
    assert sorted(os.listdir(tmp_path)) == ["a", "old"]


def _interrupt_report(cwd, out, *extra, wait_for):
    """Start ``heterogeneity report --quick``, SIGINT it once its staging folder exists, return (rc, stderr)."""
    # The child restores Python's SIGINT handler first: a suite started in the background (`cmd &` in a script)
    # ignores SIGINT, a child inherits that, and Python then never raises KeyboardInterrupt. (Done in the child's
    # own code, not with preexec_fn, which forks the multithreaded JAX process.)
    restore = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
               "sys.argv[0] = 'heterogeneity'; runpy.run_module('heterogeneity.cli', run_name='__main__')")
    proc = subprocess.Popen([sys.executable, "-c", restore, "report", "--quick", "--out", str(out), *extra], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not glob.glob(wait_for) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.returncode, err


def test_ctrl_c_exits_130_with_one_line_and_no_output(tmp_path):
    out = tmp_path / "X"
    rc, err = _interrupt_report(tmp_path, out, "--no-progress", wait_for=str(tmp_path / ".X.tmp-*"))
    assert rc == 130 and err == "heterogeneity report: interrupted\n", err
    assert os.listdir(tmp_path) == []
    out.mkdir()
    (out / "marker").write_text("keep")
    rc, err = _interrupt_report(tmp_path, out, wait_for=str(out / ".report.tmp-*"))
    assert rc == 130 and err.splitlines()[-1] == "heterogeneity report: interrupted" and "Traceback" not in err, err
    assert os.listdir(tmp_path) == ["X"] and os.listdir(out) == ["marker"] and (out / "marker").read_text() == "keep"


def test_compile_cache_flag(files, no_work, capsys, monkeypatch):
    """--compile-cache: a file is refused in one line before any work; a directory is created and handed to
    JAX's persistent cache for this command only (the library never sets it)."""
    import jax

    out = str(files / "out")
    assert cli.main(["report", "--out", out, "--compile-cache", str(files / "notes.txt")]) == 2
    err = _one_error_line(capsys)
    assert "--compile-cache" in err and "exists and is not a directory" in err
    assert not os.path.exists(out)
    seen = {}
    monkeypatch.setattr(jax.config, "update", lambda name, value: seen.__setitem__(name, value))
    cache = files / "cache" / "xla"
    with pytest.raises(AssertionError, match="work started"):  # validation passed, then the (stubbed) work
        cli.main(["report", "--out", out, "--compile-cache", str(cache)])
    assert cache.is_dir() and seen == {"jax_compilation_cache_dir": str(cache)}
    import heterogeneity.curvature  # noqa: F401  importing the library sets nothing
    assert jax.config.jax_compilation_cache_dir is None


def test_quick_report_has_its_own_default_folder():
    """A smoke run never lands on (or replaces) a real report: --quick defaults to ./report-quick."""
    from heterogeneity.cli import build_parser
    from heterogeneity.experiment._cli import validate_report_args

    for argv, want in ((["report", "--quick"], "report-quick"), (["report"], "report"),
                       (["report", "--quick", "--out", "mine"], "mine")):
        args = build_parser().parse_args(argv)
        validate_report_args(args)
        assert args.out == want


def test_result_files_get_normal_permissions(tmp_path):
    import os
    import stat

    from heterogeneity.experiment._store import atomic_write_json

    old = os.umask(0o022)
    try:
        path = atomic_write_json(tmp_path / "r.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_quick_never_replaces_a_full_report(tmp_path, monkeypatch, capsys):
    """An explicit --out holding a full report is refused for --quick (one line, before any work); a
    quick report there is replaced; a full run may replace either."""
    monkeypatch.setattr(_cli, "setup", lambda *a, **k: types.SimpleNamespace(
        loss_fn=None, params={"w": np.zeros(2)}, batch=None, attention_fn=None, attention_mask=None, meta={}))
    monkeypatch.setattr(_cli, "report", _fake_report)
    full = tmp_path / "report"
    assert cli.main(["report", "--model", "mlp", "--out", str(full)]) == 0
    assert json.loads((full / "report.json").read_text())["meta"]["quick"] is False
    before = (full / "report.json").read_text()
    monkeypatch.setattr(_cli, "setup", lambda *a, **k: pytest.fail("work started"))
    assert cli.main(["report", "--quick", "--model", "mlp", "--out", str(full)]) == 2
    err = _one_error_line(capsys)
    assert f"--out {full}: holds a report that is not from a --quick run; a --quick smoke run never replaces it" in err
    assert (full / "report.json").read_text() == before and not _leftovers(str(full))
    (full / "report.json").write_text("{")  # unreadable: it cannot be shown to be a quick one, so it is kept too
    assert cli.main(["report", "--quick", "--model", "mlp", "--out", str(full)]) == 2
    assert "not from a --quick run" in _one_error_line(capsys)
    monkeypatch.setattr(_cli, "setup", lambda *a, **k: types.SimpleNamespace(
        loss_fn=None, params={"w": np.zeros(2)}, batch=None, attention_fn=None, attention_mask=None, meta={}))
    quick = tmp_path / "smoke"
    assert cli.main(["report", "--quick", "--model", "mlp", "--out", str(quick)]) == 0
    assert cli.main(["report", "--quick", "--model", "mlp", "--out", str(quick)]) == 0  # quick over quick: fine
    assert cli.main(["report", "--model", "mlp", "--out", str(quick)]) == 0  # a full run replaces a smoke run
    assert json.loads((quick / "report.json").read_text())["meta"]["quick"] is False


def test_partition_and_blocks_flags_reach_the_report(tmp_path, monkeypatch):
    from heterogeneity import partition as hp

    seen = {}
    monkeypatch.setattr(_cli, "setup", lambda *a, **k: types.SimpleNamespace(
        loss_fn=None, params={"w": np.zeros(2)}, batch=None, attention_fn=None, attention_mask=None, meta={}))

    def spy(*args, partition, blocks, **kwargs):
        seen.update(partition=partition, blocks=blocks)
        return _fake_report(*args, **kwargs)

    monkeypatch.setattr(_cli, "report", spy)
    params = {"layers": [{"kernel": np.ones((2, 2)), "bias": np.ones(2)}], "head": {"kernel": np.ones((2, 1))}}
    for name in ("leaf", "role", "layer"):
        assert cli.main(["report", "--partition", name, "--blocks", "weights", "--out", str(tmp_path / name)]) == 0
        assert seen["blocks"] == "weights"
        assert seen["partition"].sizes(params) == hp.from_name(name).sizes(params)
    assert cli.main(["report", "--out", str(tmp_path / "d")]) == 0 and seen["blocks"] == "all"
    assert seen["partition"].sizes(params) == hp.by_leaf().sizes(params)


def test_bad_blocks_and_partition_flags(files, no_work, capsys):
    out = str(files / "out")
    assert cli.main(["report", "--blocks", "kernels", "--out", out]) == 2
    assert "argument --blocks: invalid choice: 'kernels' (choose from 'all', 'weights')" in _one_error_line(capsys)
    assert cli.main(["report", "--partition", "heads", "--out", out]) == 2
    assert "argument --partition: invalid choice: 'heads'" in _one_error_line(capsys)
    assert not os.path.exists(out)
