"""`heterogeneity report --model package.module:function`: the user's own model, and one clear error line
for a bad path, a missing attribute or a wrong return."""
import itertools
import json
import os
import sys
import textwrap

import jax
import numpy as np
import pytest

from heterogeneity import cli
from heterogeneity import partition as hp
from heterogeneity.experiment import _cli
from heterogeneity.experiment._setup import ReportInputs, load_builder, user_setup

TINY_MODEL = '''
import jax
import jax.numpy as jnp
from heterogeneity.experiment._setup import ReportInputs

CONSTANT = 3


def _params():
    k1, k2 = jax.random.split(jax.random.key(0))
    return {"layers": [{"kernel": jax.random.normal(k1, (3, 4)) * 0.5, "bias": jnp.zeros(4)}],
            "head": {"kernel": jax.random.normal(k2, (4, 2)) * 0.5, "bias": jnp.zeros(2)}}


def loss_fn(p, b):
    h = jnp.tanh(b["x"] @ p["layers"][0]["kernel"] + p["layers"][0]["bias"])
    return 0.5 * jnp.mean(jnp.sum((h @ p["head"]["kernel"] + p["head"]["bias"] - b["y"]) ** 2, -1))


def batch():
    kx, ky = jax.random.split(jax.random.key(1))
    return {"x": jax.random.normal(kx, (16, 3)), "y": jax.random.normal(ky, (16, 2))}


def build():
    return ReportInputs(loss_fn, _params(), batch())


def build_tuple():
    return loss_fn, _params(), batch()


def build_dict():
    return {"loss_fn": loss_fn, "params": _params(), "batch": batch()}


def build_int():
    return 3


def build_pair():
    return loss_fn, _params()


def build_dict_missing():
    return {"loss_fn": loss_fn, "params": _params(), "batches": batch()}


def build_not_callable_loss():
    return 1.0, _params(), batch()


def build_int_params():
    return loss_fn, {"w": jnp.ones(3, jnp.int32)}, batch()


def build_vector_loss():
    return (lambda p, b: b["x"][:, 0] * p["head"]["bias"][0]), _params(), batch()
'''

_count = itertools.count()


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A fresh importable module (unique name) holding TINY_MODEL, found via the current directory."""
    name = f"user_model_{os.getpid()}_{next(_count)}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(TINY_MODEL))
    monkeypatch.chdir(tmp_path)
    yield name
    sys.modules.pop(name, None)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("heterogeneity report: error: "), err
    return err


@pytest.mark.parametrize("attr", ["build", "build_tuple", "build_dict"])
def test_every_return_form_gives_the_same_setup(user_module, attr):
    s = user_setup(f"{user_module}:{attr}")
    module = sys.modules[user_module]
    assert jax.tree.structure(s.params) == jax.tree.structure(module._params())
    np.testing.assert_allclose(s.loss_fn(s.params, s.batch), module.loss_fn(module._params(), module.batch()))
    assert s.meta == {"model": f"{user_module}:{attr}", "seed": 0, "microbatches": 1, "batch_size": 16,
                      "params": f"as returned by {user_module}:{attr}"}
    assert s.attention_fn is None and s.attention_mask is None
    micro = user_setup(f"{user_module}:{attr}", microbatches=4)
    from heterogeneity import curvature as hc

    np.testing.assert_allclose(hc.mean_loss(micro.loss_fn, micro.params, micro.batch),
                               s.loss_fn(s.params, s.batch), rtol=1e-6)


def test_cli_report_on_the_users_model(user_module, tmp_path, capsys):
    out = tmp_path / "rep"
    argv = ["report", "--model", f"{user_module}:build", "--out", str(out), "--no-progress", "--slq-steps", "6",
            "--l11-probes", "8", "--blocks", "weights", "--seed", "2"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    r = json.loads((out / "report.json").read_text())
    assert r["meta"]["model"] == f"{user_module}:build" and r["meta"]["blocks"] == "weights"
    assert r["blocks"]["labels"] == ["head/bias", "head/kernel", "layers/0/bias", "layers/0/kernel"]
    assert r["selections"]["weights"]["labels"] == ["head/kernel", "layers/0/kernel"]
    module = sys.modules[user_module]
    np.testing.assert_allclose(r["loss"], float(module.loss_fn(module._params(), module.batch())), rtol=1e-6)
    text = (out / "report.md").read_text()
    assert f"Model: {user_module}:build, 26 parameters" in text  # 3·4 + 4 + 4·2 + 2
    assert f"Params: as returned by {user_module}:build." in text
    # a checkpoint replaces the params, and the meta (hence report.md's "Params:" line) says which
    from heterogeneity.experiment import save_params
    from heterogeneity.experiment._markdown import _params_line

    moved = jax.tree.map(lambda x: x + 0.1, module._params())
    ckpt = save_params(tmp_path / "c.npz", moved)
    s = user_setup(f"{user_module}:build", checkpoint=str(ckpt))
    for x, y in zip(jax.tree.leaves(s.params), jax.tree.leaves(moved)):
        np.testing.assert_array_equal(x, y)
    assert s.meta["params"] == f"checkpoint {ckpt}" and _params_line(s.meta) == f"Params: checkpoint {ckpt}."


@pytest.mark.parametrize("spec, expected", [
    ("{m}:nope", "--model {m}:nope: module '{m}' has no attribute 'nope'"),
    ("no_such_module_xyz:build", "--model no_such_module_xyz:build: cannot import module 'no_such_module_xyz': "
                                 "ModuleNotFoundError: No module named 'no_such_module_xyz'"),
    ("{m}:CONSTANT", "--model {m}:CONSTANT: {m}:CONSTANT is not callable (a int); give a function returning "
                     "(loss_fn, params, batch)"),
    ("my/file.py:build", "--model my/file.py:build: 'my/file.py:build' is not of the form package.module:function"),
    ("{m}:", "is not of the form package.module:function"),
])
def test_bad_model_paths_are_one_line_before_any_work(user_module, tmp_path, capsys, monkeypatch, spec, expected):
    monkeypatch.setattr(_cli, "user_setup", lambda *a, **k: pytest.fail("work started"))
    spec = spec.replace("{m}", user_module)
    out = tmp_path / "out"
    assert cli.main(["report", "--model", spec, "--out", str(out)]) == 2
    assert expected.replace("{m}", user_module) in _one_error_line(capsys)
    assert not out.exists()


@pytest.mark.parametrize("attr, expected", [
    ("build_int", "{m}:build_int returned a value of type int; expected (loss_fn, params, batch[, attention_fn"
                  "[, attention_mask]])"),
    ("build_pair", "{m}:build_pair returned a tuple of length 2; expected (loss_fn, params, batch"),
    ("build_dict_missing", "{m}:build_dict_missing returned a dict with keys ['batches', 'loss_fn', 'params'] "
                           "(missing ['batch'], unknown ['batches'])"),
    ("build_not_callable_loss", "{m}:build_not_callable_loss returned loss_fn = float, not a callable"),
    ("build_int_params", "{m}:build_int_params returned params with leaves that are not float arrays (int32)"),
    ("build_vector_loss", "{m}:build_vector_loss: loss_fn(params, batch) must return a float scalar, got (16,) "
                          "float32"),
])
def test_wrong_returns_are_one_line_and_leave_nothing(user_module, tmp_path, capsys, monkeypatch, attr, expected):
    monkeypatch.setattr(_cli, "report", lambda *a, **k: pytest.fail("work started"))
    out = tmp_path / "out"
    assert cli.main(["report", "--model", f"{user_module}:{attr}", "--out", str(out)]) == 2
    assert expected.replace("{m}", user_module) in _one_error_line(capsys)
    assert not out.exists() and not list(tmp_path.glob(".out.tmp-*"))


def test_flags_of_the_built_in_models_are_refused(user_module, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(_cli, "report", lambda *a, **k: pytest.fail("work started"))
    for flags in (["--data", "digits"], ["--batch-size", "8"], ["--norm", "post"]):
        assert cli.main(["report", "--model", f"{user_module}:build", *flags, "--out", str(tmp_path / "o")]) == 2
        assert f"{flags[0]} {flags[1]}: only for the built-in models; {user_module}:build supplies" in \
            _one_error_line(capsys)
    assert cli.main(["report", "--model", f"{user_module}:build", "--microbatches", "3",
                     "--out", str(tmp_path / "o")]) == 2
    assert (f"microbatches=3 cannot split {user_module}:build's batch: batch size 16 is not divisible by "
            "num_microbatches=3") in _one_error_line(capsys)
    assert not (tmp_path / "o").exists()


def test_load_builder_searches_the_current_directory_only_while_importing(user_module):
    cwd = os.getcwd()
    had = cwd in sys.path
    fn = load_builder(f"{user_module}:build")
    assert callable(fn) and isinstance(fn(), ReportInputs)
    assert (cwd in sys.path) == had
    assert hp.by_leaf().labels(fn().params) == ("head/bias", "head/kernel", "layers/0/bias", "layers/0/kernel")
