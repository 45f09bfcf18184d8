"""The `handgrad` command, in process (click's CliRunner) and as a subprocess."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from sklearn.datasets import load_digits

from handgrad.bundle import load_bundle
from handgrad.cli import main
from handgrad.modelfile import load_arrays
from handgrad.runs import read_json

CLI = [sys.executable, "-c", "from handgrad.cli import main; main()"]
COMMANDS = ["train", "evaluate", "predict", "gradcheck", "explain", "search", "plot", "datasets"]
SMALL = ["--epochs", "4", "--hidden", "16", "--quiet"]


def invoke(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli") / "small"
    invoke("train", *SMALL, "--out", folder)
    return folder


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_default_train_as_subprocess_reaches_095(tmp_path):
    """The README's first command: no arguments, digits, a timestamped run folder."""
    done = subprocess.run(
        [*CLI, "train"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "val_acc=" in done.stderr and "loss=" in done.stderr  # the progress bar
    (folder,) = (tmp_path / "runs").iterdir()
    assert {"model.safetensors", "metrics.json", "report.png", "config.json"} <= {
        p.name for p in folder.iterdir()
    }
    final = read_json(folder / "metrics.json")["final"]
    assert final["test_accuracy"] >= 0.95
    assert f"test accuracy {final['test_accuracy']:.4f}" in done.stdout
    assert (folder / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_command_has_help(command):
    result = invoke(*([command] if command else []), "--help")
    assert "Usage:" in result.output
    if command:
        assert "Example" in result.output


def test_help_as_subprocess():
    done = subprocess.run([*CLI, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and all(c in done.stdout for c in COMMANDS)


def test_train_writes_a_complete_run_folder(run_dir):
    metrics = read_json(run_dir / "metrics.json")
    assert metrics["config"]["hidden"] == [16] and metrics["config"]["epochs"] == 4
    assert len(metrics["history"]["loss"]) == 4 == len(metrics["history"]["val_score"])
    assert np.asarray(metrics["confusion_matrix"]).sum() == metrics["sizes"]["test"] == 450
    assert set(metrics["final"]) >= {"train_accuracy", "val_accuracy", "test_accuracy"}
    assert read_json(run_dir / "config.json") == metrics["config"]
    bundle = load_bundle(run_dir / "model.safetensors")
    assert bundle.image_shape == (8, 8) and bundle.info["pixel_max"] == 16.0
    assert bundle.preprocessor.kind == "scale"


def test_save_load_predict_identical(tmp_path, digits):
    from handgrad.runs import RunConfig, train

    result = train(RunConfig(epochs=3, hidden=(8,), dtype="float64"), out=tmp_path, progress=False)
    bundle = load_bundle(tmp_path / "model.safetensors")
    rows = bundle.preprocessor.transform(digits.data)
    assert np.array_equal(
        bundle.estimator.predict_proba(rows), result.estimator.predict_proba(rows)
    )
    assert np.array_equal(bundle.predict(digits.data), result.estimator.predict(rows))
    tensors, _ = load_arrays(tmp_path / "model.safetensors")
    for W, saved in zip(result.estimator.coefs_, (tensors["W1"], tensors["W2"]), strict=True):
        assert np.array_equal(W, saved) and saved.dtype == np.float64


def test_evaluate_prints_tables_and_json(run_dir):
    text = invoke("evaluate", run_dir / "model.safetensors").output
    assert "digits (test split, 450 samples): accuracy" in text
    assert "precision" in text and "confusion matrix" in text and "true 9" in text
    report = json.loads(invoke("evaluate", run_dir / "model.safetensors", "--json").output)
    metrics = read_json(run_dir / "metrics.json")
    assert report["accuracy"] == pytest.approx(metrics["final"]["test_accuracy"])
    assert report["confusion_matrix"] == metrics["confusion_matrix"]
    assert len(report["per_class"]) == 10 and report["per_class"][3]["support"] == 46
    assert {"precision", "recall", "f1"} <= set(report["macro_avg"])


def test_evaluate_on_a_csv_file(tmp_path, run_dir, digits):
    path = tmp_path / "digits.csv"
    np.savetxt(path, np.c_[digits.data, digits.target], delimiter=",", fmt="%g")
    report = json.loads(
        invoke(
            "evaluate", run_dir / "model.safetensors", "--data", path, "--split", "all", "--json"
        ).output
    )
    assert report["n_samples"] == 1797 and report["accuracy"] > 0.3
    assert sum(map(sum, report["confusion_matrix"])) == 1797


def test_predict_csv_npy_npz_and_images(tmp_path, run_dir, digits):
    bundle = load_bundle(run_dir / "model.safetensors")
    np.savetxt(tmp_path / "a.csv", digits.data[:3], delimiter=",", fmt="%g")
    np.save(tmp_path / "b.npy", digits.data[3:5])
    np.savez(tmp_path / "c.npz", X=digits.images[5:7])
    for i in (7, 8):
        img = (digits.images[i] / 16 * 255).astype(np.uint8)
        Image.fromarray(img).resize((32, 32), Image.Resampling.NEAREST).save(tmp_path / f"d{i}.png")
        Image.fromarray(255 - img).resize((32, 32), Image.Resampling.NEAREST).save(
            tmp_path / f"ink{i}.png"
        )  # dark ink on white paper: inverted automatically
    inputs = ["a.csv", "b.npy", "c.npz", "d7.png", "ink7.png", "d8.png"]
    out = invoke(
        "predict", run_dir / "model.safetensors", *[tmp_path / n for n in inputs]
    ).output.splitlines()
    labels = [line.split()[-1] for line in out[2:]]
    assert len(labels) == 3 + 2 + 2 + 3
    want = bundle.predict(digits.data[:7]).tolist()
    assert [int(v) for v in labels[:7]] == want
    assert labels[7] == labels[8]  # the same digit, either colour
    assert out[9].split()[0].endswith("d7.png")


def test_predict_proba_to_csv(tmp_path, run_dir, digits):
    np.savetxt(
        tmp_path / "x.csv",
        np.c_[digits.data[:4], digits.target[:4]],
        delimiter=",",
        fmt="%g",
        header=",".join([f"p{i}" for i in range(64)] + ["digit"]),
        comments="",
    )
    invoke(
        "predict",
        run_dir / "model.safetensors",
        tmp_path / "x.csv",
        "--label",
        "digit",
        "--proba",
        "--output",
        tmp_path / "out.csv",
    )
    with open(tmp_path / "out.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][:3] == ["input", "label", "p(0)"] and len(rows[0]) == 12
    P = np.array([[float(v) for v in r[2:]] for r in rows[1:]])
    assert P.shape == (4, 10) and np.allclose(P.sum(axis=1), 1, atol=1e-5)
    bundle = load_bundle(run_dir / "model.safetensors")
    assert np.allclose(P, bundle.predict_proba(digits.data[:4]), atol=1e-6)
    assert [int(r[1]) for r in rows[1:]] == bundle.predict(digits.data[:4]).tolist()


def test_gradcheck_pass_and_fail():
    text = invoke(
        "gradcheck", "--hidden", "6,5", "--activation", "tanh", "--head", "sigmoid"
    ).output
    assert text.count("PASS") == 7 and "W3" in text
    failed = invoke("gradcheck", "--threshold", "1e-30", ok=False)
    assert failed.exit_code == 1 and "FAIL" in failed.output


def test_gradcheck_on_a_saved_model(run_dir):
    text = invoke("gradcheck", "--model", run_dir / "model.safetensors").output
    assert "64→16→10" in text and "PASS: every gradient" in text


def test_explain_table():
    text = invoke(
        "explain", "--input", "64", "--hidden", "100,50", "--classes", "10", "--batch", "32"
    ).output
    assert "dW3 = A2ᵀ dS + λW3" in text and "(100, 50)" in text and "dZ1 = dA1 ⊙ [Z1 > 0]" in text
    assert "network 64→100→50→10" in text and "12,060 parameters" in text


def test_search_ranks_and_saves_the_best(tmp_path):
    text = invoke(
        "search",
        "--data",
        "iris",
        "--iter",
        "2",
        "--cv",
        "2",
        "--epochs",
        "3",
        "--batch-size",
        "16",
        "--hidden-choices",
        "4,3x3",
        "--out",
        tmp_path / "s",
    ).output
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["rank", "hidden", "learning"] and "best:" in lines[-1]
    metrics = read_json(tmp_path / "s" / "metrics.json")
    assert len(metrics["search"]["results"]) == 2
    assert load_bundle(tmp_path / "s" / "model.safetensors").n_features == 4


def test_plot_regenerates_the_report(run_dir):
    (run_dir / "report.png").unlink()
    assert "report.png" in invoke("plot", run_dir).output
    assert (run_dir / "report.png").stat().st_size > 10_000


def test_datasets_lists_names():
    text = invoke("datasets").output
    for name in ("digits", "iris", "mnist", "fashion-mnist", "cifar10", "csv:PATH"):
        assert name in text
    assert "downloads go to" in text


def test_early_stopping_and_named_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = invoke(
        "train",
        "--epochs",
        "60",
        "--hidden",
        "8",
        "--early-stopping",
        "--patience",
        "2",
        "--quiet",
        "--name",
        "early",
        "--lr",
        "0.05",
    ).output
    metrics = read_json(tmp_path / "runs" / "early" / "metrics.json")
    assert metrics["final"]["stop_reason"] == "early_stopping"
    assert metrics["final"]["epochs"] < 60 and "stopped: early_stopping" in text


def test_divergence_keeps_the_good_model(tmp_path):
    folder = tmp_path / "good"
    invoke("train", *SMALL, "--out", folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    result = invoke(
        "train",
        "--solver",
        "sgd",
        "--lr",
        "1e4",
        "--epochs",
        "20",
        "--quiet",
        "--out",
        folder,
        "--overwrite",
        ok=False,
    )
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("handgrad: error: training diverged") and "epoch" in line
    assert "Lower the learning rate" in line
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_resume_a_finished_run_in_process(tmp_path):
    folder = tmp_path / "r"
    invoke("train", *SMALL, "--checkpoint-every", "2", "--out", folder)
    model, _ = load_arrays(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()  # a crash right after the last checkpoint
    assert "from epoch 4 of 4" in invoke("train", "--resume", folder).stderr
    again, _ = load_arrays(folder / "model.safetensors")
    assert all(np.array_equal(model[k], again[k]) for k in model)


def test_ctrl_c_during_training_saves_the_model_and_exits_130(tmp_path, monkeypatch):
    from handgrad.callbacks import ProgressBar

    def interrupt(self, run):
        if run.history.epochs == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(ProgressBar, "on_epoch_end", interrupt)
    result = invoke("train", *SMALL, "--out", tmp_path / "cut", ok=False)
    assert result.exit_code == 130, result.output
    assert "(stopped: interrupted)" in result.output
    final = read_json(tmp_path / "cut" / "metrics.json")["final"]
    assert final["stop_reason"] == "interrupted" and final["epochs"] == 2
    assert load_bundle(tmp_path / "cut" / "model.safetensors").estimator.n_iter_ == 2


def test_predict_names_a_nan_in_the_input(run_dir, tmp_path):
    rows = np.zeros((3, 64))
    rows[1, 5] = np.nan
    np.save(tmp_path / "rows.npy", rows)
    result = invoke("predict", run_dir / "model.safetensors", tmp_path / "rows.npy", ok=False)
    assert result.exit_code == 1
    assert "contains NaN (first at row 1, column 5)" in result.stderr
