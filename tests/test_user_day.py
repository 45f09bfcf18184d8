"""The rest of a user's day on the command line (issue 25, points 1, 2, 3, 5, 7, 8):
searching regressors, resuming any run, run folders wherever a model file is taken,
advice that follows the cause, small frictions, and start-up."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from handgrad.cli import COMMANDS, main
from handgrad.modelfile import load_arrays
from handgrad.runs import METRICS, MODEL, outcome_warnings, read_json

ROOT = Path(__file__).resolve().parents[1]


def invoke(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run made without --checkpoint-every: 64 → 8 → 10 on digits, 3 epochs."""
    folder = tmp_path_factory.mktemp("day") / "run"
    invoke("train", "--hidden", "8", "--epochs", "3", "--quiet", "--out", folder)
    return folder


# ------------------------------------------------------------ 1. search for regressors
def test_search_tunes_a_regressor_by_r2(tmp_path):
    out = tmp_path / "s"
    args = ["search", "--data", "diabetes", "--iter", "2", "--cv", "2", "--epochs", "5"]
    result = invoke(*args, "--hidden-choices", "4,4x3", "--batch-size", "32", "--out", out)
    lines = result.output.splitlines()
    assert lines[0].split()[:6] == ["rank", "hidden", "learning", "rate", "alpha", "cv"]
    assert "cv R²" in lines[0]
    metrics = read_json(out / METRICS)
    assert metrics["task"] == "regression" and metrics["search"]["score"] == "r2"
    ranked = metrics["search"]["results"]
    assert len(ranked) == 2 and all("mean_cv_r2" in r for r in ranked)
    best = ranked[0]
    assert metrics["final"]["val_r2"] == pytest.approx(best["mean_cv_r2"])
    assert metrics["config"]["hidden"] == best["hidden"]
    assert f"best: test R² {metrics['final']['test_r2']:.4f}" in lines[-1]
    # the saved model predicts in the targets' units: evaluate gives the same R²
    scored = json.loads(invoke("evaluate", out, "--json").output)
    assert scored["r2"] == pytest.approx(metrics["final"]["test_r2"], abs=1e-9)


def test_search_takes_trains_options(tmp_path):
    args = ["search", "--data", "iris", "--iter", "1", "--cv", "2", "--epochs", "3"]
    invoke(
        *args,
        "--hidden-choices",
        "4",
        "--batch-size",
        "16",
        "--activation",
        "tanh",
        "--test-fraction",
        "0.3",
        "--out",
        tmp_path / "s",
    )
    config = read_json(tmp_path / "s" / METRICS)["config"]
    assert config["activation"] == "tanh" and config["test_fraction"] == 0.3
    assert config["task"] == "classification"


def test_search_says_once_that_the_batch_is_larger_than_a_fold(tmp_path):
    """scikit-learn's 'batch_size … clipped' warning, once per fit, does not leak."""
    args = ["search", "--data", "iris", "--iter", "2", "--cv", "2", "--epochs", "2"]
    result = invoke(*args, "--hidden-choices", "4", "--out", tmp_path / "s")
    assert "clipped" not in result.stderr
    (line,) = [li for li in result.stderr.splitlines() if "batch size" in li]
    assert line == (
        "handgrad: warning: batch size 64 is larger than the rows each cross-validation "
        "fit trains on (56 samples); every fit uses batches of 56"
    )
    assert read_json(tmp_path / "s" / METRICS)["config"]["batch_size"] == 56


# ------------------------------------------------------------- 2. every run resumable
def test_a_run_without_checkpoints_resumes_from_its_model_file(tmp_path):
    folder, reference = tmp_path / "run", tmp_path / "reference"
    invoke("train", "--hidden", "8", "--epochs", "3", "--quiet", "--out", folder)
    assert not (folder / "checkpoint.safetensors").exists()
    result = invoke("train", "--resume", folder, "--epochs", "6")  # not --quiet: its log
    warm = [li for li in result.stderr.splitlines() if "warm start" in li]
    assert warm == [
        f"no newer checkpoint.safetensors in {folder}: a warm start from model.safetensors "
        "(its weights and optimizer state after epoch 3)"
    ]
    assert "3 epochs (to 6) in " in result.output  # this invocation's epochs (point 7)
    history = read_json(folder / METRICS)["history"]
    assert history["epochs"] == 6 and len(history["loss"]) == 6
    assert history["step_loss"] == []  # the model file kept none: the report is per epoch
    # the model file carries the optimizer and the shuffling generator: the same weights
    # as six epochs in one go
    invoke("train", "--hidden", "8", "--epochs", "6", "--quiet", "--out", reference)
    got, want = load_arrays(folder / MODEL)[0], load_arrays(reference / MODEL)[0]
    assert sorted(got) == sorted(want)
    for name in want:
        assert np.array_equal(got[name], want[name]), name


def test_a_newer_model_file_wins_over_an_older_checkpoint(tmp_path):
    folder = tmp_path / "run"
    args = ["--hidden", "8", "--epochs", "5", "--checkpoint-every", "2", "--quiet"]
    invoke("train", *args, "--out", folder)  # checkpoint at epoch 4, model at 5
    result = invoke("train", "--resume", folder, "--epochs", "7")
    assert "after epoch 5)" in result.stderr and "from epoch 5 of 7" in result.stderr
    assert "2 epochs (to 7)" in result.output


# ------------------------------------------------------ 3. run folders, explain --model
def test_every_command_takes_a_run_folder(run_dir, tmp_path):
    by_file = invoke("evaluate", run_dir / MODEL, "--json").output
    by_folder = invoke("evaluate", run_dir, "--json").output
    assert json.loads(by_folder)["accuracy"] == json.loads(by_file)["accuracy"]
    rows = tmp_path / "rows.npy"
    np.save(rows, np.zeros((5, 64)))
    predicted = invoke("predict", run_dir, rows).output.splitlines()
    assert len(predicted) == 2 + 5
    checked = invoke("gradcheck", "--model", run_dir, "--samples", "2").output
    assert "PASS: every gradient agrees" in checked and "(64, 8)" in checked
    pytest.importorskip("skl2onnx")
    invoke("export", run_dir, tmp_path / "m.onnx")
    assert (tmp_path / "m.onnx").stat().st_size > 1000


def test_a_folder_without_a_model_file_says_so(tmp_path):
    (tmp_path / "empty").mkdir()
    result = invoke("predict", tmp_path / "empty", tmp_path / "x.npy", ok=False)
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"handgrad: error: run folder {tmp_path / 'empty'} has no model.safetensors"
    )
    (tmp_path / "empty" / "checkpoint.safetensors").write_bytes(b"")  # a crashed run
    result = invoke("evaluate", tmp_path / "empty", ok=False)
    assert result.stderr.strip().endswith(
        f"(it holds checkpoint.safetensors: finish the run with "
        f"'handgrad train --resume {tmp_path / 'empty'}')"
    )


def test_explain_model_gives_that_networks_shapes(run_dir):
    text = invoke("explain", "--model", run_dir, "--batch", "5").output
    assert text.splitlines()[0] == (
        "network 64→8→10, relu hidden activation, softmax head, batch N=5"
    )
    shapes = {m[0]: m[1] for m in re.findall(r"^\w+\s+(\w+)\s+.*?(\(.*\)|scalar)\s*$", text, re.M)}
    assert shapes["W1" if "W1" in shapes else "dW1"] == "(64, 8)"
    assert shapes["Z1"] == "(5, 8)" and shapes["S"] == "(5, 10)" and shapes["db2"] == "(10,)"
    assert "610 parameters" in text  # 64·8 + 8 + 8·10 + 10
    refused = invoke("explain", "--model", run_dir, "--hidden", "3", ok=False)
    assert refused.exit_code == 2 and "--hidden cannot be used with --model" in refused.stderr


# ------------------------------------------------ 5. the advice follows the cause
def _at_chance(loss, learning_rate):
    return {
        "final": {"test_accuracy": 0.1},
        "classes": list(range(10)),
        "confusion_matrix": np.eye(10, dtype=int).tolist(),
        "history": {"loss": loss},
        "config": {"learning_rate": learning_rate, "preprocessing": "scale"},
        "data": {"image_shape": [8, 8]},
    }


def test_too_small_a_learning_rate_is_told_to_raise_it():
    (note,) = outcome_warnings(_at_chance([2.3671, 2.3670, 2.3670], 1e-9))
    assert note.endswith(
        "the loss barely moved (2.367 to 2.367): try a higher learning rate than 1e-09"
    )


def test_too_large_a_learning_rate_is_told_to_lower_it():
    # ended above a uniform guess's loss (ln 10 = 2.30), though lower than it began
    (note,) = outcome_warnings(_at_chance([8.67, 4.39, 2.71], 5.0))
    assert note.endswith("; try a lower learning rate than 5")
    rose = outcome_warnings(_at_chance([1.5, 1.0, 2.0], 0.5))
    assert rose[-1].startswith("the training loss rose from 1.5 (first epoch) to 2")
    assert rose[-1].endswith("; try a lower learning rate than 0.5")


def test_a_loss_still_falling_is_told_to_train_longer():
    (note,) = outcome_warnings(_at_chance([2.2, 1.9, 1.6], 1e-3))
    assert note.endswith("the loss was still falling (2.2 to 1.6): train longer (--epochs)")


def test_train_with_a_tiny_learning_rate_says_raise_it(tmp_path):
    args = ["train", "--lr", "1e-9", "--quiet", "--out", tmp_path / "r"]
    warned = [li for li in invoke(*args).stderr.splitlines() if "at chance" in li]
    assert len(warned) == 1 and "try a higher learning rate than 1e-09" in warned[0]
    assert "lower" not in warned[0]


# ---------------------------------------------------------------- 7. small frictions
def test_hidden_takes_the_sizes_search_writes(tmp_path):
    args = ["--epochs", "1", "--quiet", "--out"]
    invoke("train", "--hidden", "16x8", *args, tmp_path / "x")
    invoke("train", "--hidden", "16,8", *args, tmp_path / "comma")
    assert read_json(tmp_path / "x" / METRICS)["config"]["hidden"] == [16, 8]
    assert read_json(tmp_path / "comma" / METRICS)["config"]["hidden"] == [16, 8]
    bad = invoke("train", "--hidden", "16xa", *args, tmp_path / "bad", ok=False)
    assert bad.exit_code == 2 and "'16xa' is not a comma-separated list" in bad.stderr


def test_the_readmes_gradient_error_is_what_it_prints():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("```python\nimport numpy as np\nfrom handgrad import TwoLayerNet")[1]
    code = "import numpy as np\nfrom handgrad import TwoLayerNet" + block.split("```")[0]
    claim = re.search(r"# max relative error per parameter, below (\S+)", code)
    assert claim is not None
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    errors = eval(done.stdout.strip().splitlines()[-1])  # the dict it prints
    assert max(errors.values()) < float(claim.group(1))
    assert max(errors.values()) > float(claim.group(1)) / 10  # the bound says the size


def test_a_tables_report_lays_out_three_panels():
    from handgrad.plots import report_figure

    history = {"loss": [1.0, 0.5], "train_score": [0.5, 0.8], "val_score": [0.5, 0.7]}
    figure = report_figure(history, cm=np.array([[3, 1], [0, 4]]), cm_split="test")
    boxes = [ax.get_position() for ax in figure.axes if ax.get_visible()]
    titles = [ax.get_title() for ax in figure.axes]
    assert len([t for t in titles if t]) == 3
    assert len({round(b.y0, 2) for b in boxes if b.width > 0.1}) == 1  # one row
    assert "Confusion matrix (test split, 8 samples)" in titles


def test_the_confusion_matrix_names_its_split(run_dir):
    text = invoke("evaluate", run_dir, "--split", "train").output
    assert "confusion matrix, train split (rows: true class" in text


# --------------------------------------------------------------------- 8. start-up
def _loaded_by(args: list[str], libraries: set[str]) -> list[str]:
    """Which of ``libraries`` a fresh process running ``handgrad ARGS`` imports."""
    code = (
        "import sys\nfrom handgrad.cli import main\ntry:\n"
        f"    main({args!r})\nexcept SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {libraries!r}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return eval(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_loads_no_numpy_scipy_or_scikit_learn(command):
    args = ["--help"] if command is None else [command, "--help"]
    assert _loaded_by(args, {"numpy", "scipy", "sklearn", "matplotlib", "pandas", "dask"}) == []


def test_the_choice_names_match_their_registries():
    from handgrad import _names
    from handgrad.data import TASKS
    from handgrad.data.preprocess import KINDS
    from handgrad.heads import ACTIVATIONS, HEADS, NORMS
    from handgrad.optim import OPTIMIZERS

    assert _names.ACTIVATIONS == tuple(ACTIVATIONS)
    assert _names.HEADS == tuple(HEADS)
    assert _names.NORMS == tuple(NORMS)
    assert _names.SOLVERS == tuple(OPTIMIZERS)
    assert _names.TASKS == tuple(TASKS)
    assert _names.PREPROCESSING == tuple(KINDS)


def test_the_startup_benchmark_lists_every_command():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import startup
    finally:
        sys.path.pop(0)
    cases = startup.cases(Path("m"), Path("r.npy"))
    assert set(startup.COMMANDS) == set(COMMANDS)
    assert cases["predict 5 rows"] == ["predict", "m", "r.npy"] and len(cases) == 11
    text = startup.table({"--help": {"before": 0.5, "after": 0.25}})
    assert text.splitlines()[2] == "| `handgrad --help` | 0.500 | 0.250 | 0.50 |"


def test_plot_of_a_tables_run_loads_no_scikit_learn(tmp_path):
    invoke("train", "--data", "iris", "--epochs", "2", "--quiet", "--out", tmp_path / "r")
    (tmp_path / "r" / "report.png").unlink()
    assert _loaded_by(["plot", str(tmp_path / "r")], {"sklearn", "scipy"}) == []
    assert (tmp_path / "r" / "report.png").stat().st_size > 10_000


def test_resuming_an_early_stopped_run_says_nothing_is_left(tmp_path):
    folder = tmp_path / "run"
    args = ["--data", "iris", "--early-stopping", "--patience", "2", "--lr", "0.3"]
    invoke("train", *args, "--epochs", "200", "--quiet", "--out", folder)
    stopped = read_json(folder / METRICS)["final"]
    assert stopped["stop_reason"] == "early_stopping" and stopped["epochs"] < 200
    result = invoke("train", "--resume", folder, "--epochs", "300")
    n = stopped["epochs"]
    assert f"{folder} ended by early stopping at epoch {n}: nothing is left to train" in (
        result.stderr
    )
    assert f"0 epochs (to {n}) in " in result.output


def test_a_diverged_run_is_told_to_lower_the_learning_rate(tmp_path):
    from click.testing import CliRunner

    from handgrad.cli import main

    result = CliRunner().invoke(
        main,
        [
            "train",
            "--data",
            "diabetes",
            "--solver",
            "sgd",
            "--lr",
            "1e4",
            "--out",
            str(tmp_path / "r"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        "training diverged" in result.output and "lower learning rate than 10000" in result.output
    )
    assert "(stopped: diverged)" in result.output
    assert (tmp_path / "r" / "model.safetensors").exists()  # the best epoch's weights, saved
