"""The benchmark scripts run end to end on tiny sizes, so that they cannot rot."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_epoch_benchmark_quick_run(tmp_path, capsys):
    epoch = _load("epoch")
    out = tmp_path / "epoch.json"
    results = epoch.main(
        ["--quick", "--dtype", "float32", "--skip", "PyTorch eager", "--out", str(out)]
    )
    rows = {r["candidate"]: r for r in results["epoch"]["quick/float32"]}
    assert rows["GEMM floor"]["ratio_to_floor"] == 1.0
    assert {"handgrad loop", "scikit-learn MLPClassifier"} <= set(rows)
    assert all(r["median_s"] > 0 and len(r["times_s"]) == 2 for r in rows.values())
    assert "handgrad MLP.predict" in {r["candidate"] for r in results["predict"]["quick/float32"]}
    assert json.loads(out.read_text())["info"]["blas"]
    assert "× floor" in capsys.readouterr().out


def test_epoch_benchmark_torch_candidate_trains_or_is_skipped():
    epoch = _load("epoch")
    X, y = epoch.make_data(400, 8, 3, "float32")
    run = epoch.torch_eager(X, y, 6, 3)
    if run is None:
        pytest.skip("torch is not installed (optional extra 'bench')")
    run()


def test_epoch_flops_counts_the_five_products():
    epoch = _load("epoch")
    assert epoch.epoch_flops(60000, 784, 256, 10) == pytest.approx(49.1e9, rel=1e-3)


def test_memory_benchmark_small_run(tmp_path):
    memory = _load("memory")
    rows = memory.main(
        [
            "--n",
            "2000",
            "--d",
            "16",
            "--hidden",
            "8",
            "--candidates",
            "handgrad loop",
            "--out",
            str(tmp_path / "m.json"),
        ]
    )
    assert rows and all(r["peak"] > r["baseline"] > 0 for r in rows)


def test_fused_step_experiment_quick_run(tmp_path):
    """The numba experiment (optional): its step agrees with handgrad's and it runs."""
    pytest.importorskip("numba")
    sys.path.insert(0, str(BENCHMARKS))  # it imports epoch.py beside it
    try:
        fused = _load("fused_step")
        results = fused.main(["--quick", "--dtype", "float64", "--out", str(tmp_path / "f.json")])
    finally:
        sys.path.remove(str(BENCHMARKS))
    assert results["agreement"]["float64"] < 1e-12
    names = {r["candidate"] for r in results["epoch"]["quick/float64"]}
    assert {"handgrad NumPy steps", "numba-fused steps"} <= names


def test_versions_benchmark_compares_two_checkouts(capsys):
    versions = _load("versions")
    here = BENCHMARKS.parent
    rows = versions.main([str(here), str(here), "--rounds", "2", "--quick"])
    assert {(r["workload"], r["candidate"]) for r in rows} == {
        (f"quick/{d}", c) for d in ("float32", "float64") for c in ("loop", "estimator")
    }
    assert all(r["ratio"] > 0 for r in rows)
    assert "new ÷ old" in capsys.readouterr().out


def test_regularize_benchmark_quick_run(tmp_path, capsys):
    regularize = _load("regularize")
    args = ["--seeds", "1", "--epochs", "2", "--tables", "wine", "--mnist", str(tmp_path)]
    rows = regularize.main([*args, "--out", str(tmp_path)])
    assert [r["variant"] for r in rows] == list(regularize.VARIANTS)
    assert all(r["dataset"] == "wine" and 0 <= r["accuracy"] <= 1 for r in rows)
    assert json.loads((tmp_path / "regularize.json").read_text())["rows"] == rows
    assert "| wine |" in capsys.readouterr().out
