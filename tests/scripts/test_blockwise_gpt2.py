"""scripts/blockwise_gpt2.py on a tiny GPT: every block written, numbers of a direct
`blockwise_slq(..., blocks=[label])` call, resume, corrupt chunk files, settings check, dry run."""
import functools
import importlib.util
import json
import os
import re
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from heterogeneity import curvature as hc
from heterogeneity import models
from heterogeneity import partition as hp

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "blockwise_gpt2.py"
TINY = dict(layers=1, d_model=8, heads=2, vocab=11, seq=4, batch=2, steps=4, probes=1, seed=3)
ARGV = [x for k, v in TINY.items() for x in (f"--{k.replace('_', '-')}", str(v))]


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def bg():
    spec = importlib.util.spec_from_file_location("blockwise_gpt2", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def done(bg, tmp_path_factory):
    """A run killed while tracing the layer chunk, then resumed: ``(out dir, the two logs)``."""
    out = tmp_path_factory.mktemp("g2") / "run"
    real = bg.chunk_program

    def dies_on_layers(*a):
        program = real(*a)

        def run(params, batch, key, *, labels):
            if labels[0].startswith("layers/"):
                raise Killed
            return program(params, batch, key, labels=labels)

        return run

    bg.chunk_program = dies_on_layers
    try:
        with pytest.raises(Killed):
            bg.main(ARGV + ["--out", str(out)])
    finally:
        bg.chunk_program = real
    first = sorted(f.name for f in out.iterdir())
    assert bg.main(ARGV + ["--out", str(out)]) == 0
    return out, first


@functools.lru_cache(maxsize=None)
def _tiny_problem():
    """The script's problem, built here from its documented rules (not from its code)."""
    net = models.build("gpt", seed=TINY["seed"], vocab_size=TINY["vocab"], max_len=TINY["seq"], d_model=TINY["d_model"],
                       num_heads=TINY["heads"], num_layers=TINY["layers"], d_ff=4 * TINY["d_model"])
    apply_fn, params = models.functional(net)
    data_key, probe_key = jax.random.split(jax.random.key(TINY["seed"]))
    tokens = jax.random.randint(data_key, (TINY["batch"], TINY["seq"] + 1), 0, TINY["vocab"])
    return models.lm_loss(apply_fn), params, {"tokens": tokens}, probe_key


def _spectra(out):
    got = {}
    for f in sorted(out.glob("*.npz")):
        with np.load(f) as z:
            for i, label in enumerate(z["labels"]):
                assert str(label) not in got, f"{label} written twice"
                got[str(label)] = (z["nodes"][i], z["weights"][i], bool(z["finite"][i]))
    return got


def test_every_block_written(done):
    done, first = done
    assert first == ["embed_head.npz", "manifest.json"]  # the killed run kept its finished chunk only
    _, params, _, _ = _tiny_problem()
    labels = hp.by_leaf(params).labels(params)
    got = _spectra(done)
    assert sorted(got) == sorted(labels) and len(labels) == 21  # 5 outside the layers + 16 in the one layer
    manifest = json.loads((done / "manifest.json").read_text())
    assert sorted(manifest["chunks"]) == ["embed_head", "layer000"]
    assert manifest["chunks"]["layer000"]["labels"] == [b for b in labels if b.startswith("layers/0/")]
    for label, (nodes, weights, finite) in got.items():
        assert finite and nodes.shape == weights.shape == (TINY["probes"], TINY["steps"])
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)
        assert np.all(weights >= 0) and np.ptp(nodes) > 0, label
    # the LM head's Hessian is a Gauss-Newton term: PSD; its quadrature nodes are >= 0 up to rounding
    assert got["head/kernel"][0].min() > -1e-5


def test_chunk_equals_direct_blockwise_slq(done):
    done, _ = done
    loss_fn, params, batch, key = _tiny_problem()
    got = _spectra(done)
    for label in ("layers/0/mlp/fc_in/kernel",):
        direct = hc.blockwise_slq(loss_fn, params, batch, key, partition=hp.by_leaf(params), num_steps=TINY["steps"],
                                  num_probes=TINY["probes"], blocks=[label]).block(label)
        np.testing.assert_allclose(got[label][0], np.asarray(direct.nodes), rtol=2e-4, atol=1e-6)
        np.testing.assert_allclose(got[label][1], np.asarray(direct.weights), rtol=2e-4, atol=1e-6)


def test_rerun_skips_every_chunk(bg, done, capsys):
    done, _ = done
    before = {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in done.iterdir()}
    capsys.readouterr()
    assert bg.main(ARGV + ["--out", str(done)]) == 0
    log = capsys.readouterr().out
    assert log.count("done before, skipped") == 2 and "compile" not in log
    assert {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in done.iterdir()} == before


def test_corrupt_chunk_and_other_settings_refused(bg, done, tmp_path):
    done, _ = done
    out = tmp_path / "run"
    shutil.copytree(done, out)
    bad = out / "layer000.npz"
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(SystemExit, match=r"corrupt chunk file .*layer000\.npz.*Delete it"):
        bg.main(ARGV + ["--out", str(out)])
    argv = ARGV[:ARGV.index("--steps") + 1] + ["5"] + ARGV[ARGV.index("--steps") + 2:]
    with pytest.raises(SystemExit, match=r"other settings.*'steps': \(4, 5\)"):
        bg.main(argv + ["--out", str(out)])


def test_dry_run_prints_size_memory_time(bg, tmp_path, capsys):
    argv = ARGV + ["--chunk", "block", "--device-tflops", "1e-8",
                                            "--dry-run", "--out", str(tmp_path)]
    assert bg.main(argv) == 0
    log = capsys.readouterr().out
    n_params = 11 * 8 + 4 * 8 + 2 * 8 + 8 * 11 + 4 * (8 * 8 + 8) + 8 * 32 + 32 + 32 * 8 + 8 + 4 * 8
    assert f"{n_params:,} params, 21 blocks, 21 chunks (block)" in log
    assert float(re.search(r"representative chunk block004 \(1 blocks, full shape\): StableHLO ([\d.]+)M chars",
                           log).group(1)) > 0.01
    assert re.search(r"XLA memory_analysis: arguments [\d.]+ MB, outputs [\d.]+ MB, temp [\d.]+ MB", log)
    assert re.search(r"linearization residuals [\d.]+ MB", log) and f"params {n_params * 4 / 1e6:.3f} MB" in log
    rep = json.loads((tmp_path / "dry_run.json").read_text())
    assert [c["name"] for c in rep["chunks"]] == ["embed_head", "layer000"]
    assert [c["basis_bytes"] for c in rep["chunks"]] == [1 * 4 * 88 * 4, 1 * 4 * 256 * 4]  # 1 item x m x d_max x 4 B
    assert rep["total_flops"] > 21 * 4 * 1000  # 84 HVPs of the tiny model: thousands of flops each
    minutes = float(re.search(r"ESTIMATED time: ([\d.]+) min at an assumed 1e-08 TFLOP/s", log).group(1))
    assert minutes == pytest.approx(rep["total_flops"] / 1e4 / 60, rel=0.01)
