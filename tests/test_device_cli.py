"""``handgrad train --device``: the data moved once to a PyTorch device and trained there.

Without a GPU the path is proven on ``--device torch:cpu`` (the same code as on CUDA:
PyTorch tensors under scikit-learn's array API dispatch); the CUDA case runs where a
device is, and is skipped elsewhere.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import handgrad.runs as runs
from handgrad.bundle import load_bundle
from handgrad.cli import main
from handgrad.runs import RunConfig

torch = pytest.importorskip("torch")
pytest.importorskip("array_api_compat")

SMALL = ("--data", "iris", "--hidden", "8", "--epochs", "4", "--quiet")


def invoke(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def _error_line(result):
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("handgrad: error: ")
    return line


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_cpu_run_equals_the_numpy_run(tmp_path, dtype):
    """Same split, same initial weights (drawn on the host), same batches: the run on
    PyTorch equals the NumPy run to rounding, and its model file is a NumPy model."""
    config = RunConfig(data="iris", hidden=(8,), epochs=6, dtype=dtype)
    here = runs.train(config, out=tmp_path / "numpy", progress=False, log=lambda _: None)
    there = runs.train(
        config, out=tmp_path / "torch", progress=False, log=lambda _: None, device="torch:cpu"
    )
    assert here.metrics["device"] == "cpu" and there.metrics["device"] == "torch:cpu"
    tol = 1e-12 if dtype == "float64" else 1e-5
    for a, b in zip(here.estimator.coefs_, there.estimator.coefs_, strict=True):
        assert isinstance(b, np.ndarray)  # moved back to the host after training
        np.testing.assert_allclose(b, a, rtol=tol, atol=tol)
    assert there.metrics["final"]["test_accuracy"] == here.metrics["final"]["test_accuracy"]
    saved = json.loads((tmp_path / "torch" / "metrics.json").read_text())
    assert saved["device"] == "torch:cpu"
    bundle = load_bundle(tmp_path / "torch" / "model.safetensors")
    X = np.random.default_rng(0).standard_normal((5, 4))
    np.testing.assert_array_equal(
        bundle.predict(X), load_bundle(tmp_path / "numpy" / "model.safetensors").predict(X)
    )


def test_command_line_trains_on_torch_cpu_and_says_where(tmp_path):
    result = invoke("train", *SMALL, "--device", "torch:cpu", "--out", tmp_path / "run")
    assert "4 epochs in" in result.output and "on cpu (PyTorch)" in result.output
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["device"] == "torch:cpu"
    # the run folder is like any other: evaluate and predict on the host
    invoke("evaluate", tmp_path / "run" / "model.safetensors", "--data", "iris")


def test_resume_on_another_device(tmp_path):
    """A checkpoint written by a NumPy run continues on PyTorch (and is saved on the
    host again)."""
    folder = tmp_path / "run"
    invoke("train", *SMALL, "--checkpoint-every", "2", "--out", folder)
    invoke("train", "--resume", folder, "--epochs", "6", "--device", "torch:cpu", "--quiet")
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["final"]["epochs"] == 6 and metrics["device"] == "torch:cpu"


def test_missing_cuda_is_one_line(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    result = invoke("train", *SMALL, "--device", "cuda", "--out", tmp_path / "r", ok=False)
    assert result.exit_code == 1
    assert "--device cuda: PyTorch" in _error_line(result)
    assert "finds no cuda device here" in _error_line(result)
    assert not (tmp_path / "r").exists()  # refused before a folder was made


@pytest.mark.parametrize(
    ("device", "message"),
    [("bogus", "unknown device 'bogus'"), ("cuda:99", "cuda")],
)
def test_bad_device_is_one_line(tmp_path, device, message):
    result = invoke("train", *SMALL, "--device", device, "--out", tmp_path / "r", ok=False)
    assert result.exit_code == 1
    assert message in _error_line(result)


def test_missing_pytorch_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "torch", None)  # import torch fails
    result = invoke("train", *SMALL, "--device", "cuda", "--out", tmp_path / "r", ok=False)
    line = _error_line(result)
    assert "PyTorch, which is not installed: pip install torch" in line


def test_a_file_trained_from_disk_is_refused_on_a_device(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "X.npy", rng.standard_normal((600, 4)).astype(np.float32))
    np.save(tmp_path / "y.npy", np.arange(600) % 3)
    result = invoke(
        "train",
        "--data",
        tmp_path / "X.npy",
        "--labels",
        tmp_path / "y.npy",
        "--epochs",
        "2",
        "--device",
        "torch:cpu",
        "--out",
        tmp_path / "r",
        "--quiet",
        ok=False,
    )
    assert "trained from its file a batch at a time" in _error_line(result)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_command_line_trains_on_cuda(tmp_path):  # pragma: no cover - needs a GPU
    result = invoke("train", *SMALL, "--device", "cuda", "--out", tmp_path / "run")
    assert "(PyTorch)" in result.output
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["device"].startswith(
        "torch:cuda"
    )
