"""Bad input on the command line: one clear line, a non-zero exit, nothing written."""

import numpy as np
import pytest
from click.testing import CliRunner

from handgrad.cli import main


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    result = CliRunner().invoke(
        main, ["train", "--epochs", "2", "--hidden", "8", "--quiet", "--out", str(folder / "run")]
    )
    assert result.exit_code == 0, result.output
    return folder / "run" / "model.safetensors"


def _files(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


def _fails_cleanly(args, tmp_path, match, code=None):
    before = _files(tmp_path)
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code != 0, result.output
    if code is not None:
        assert result.exit_code == code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("handgrad: error: ") and match in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert _files(tmp_path) == before  # nothing written, nothing half-written
    return lines[0]


TRAIN_CASES = {
    "hidden zero": (["--hidden", "0"], "hidden sizes must be positive integers, got 0"),
    "hidden negative": (["--hidden", "-5"], "got -5"),
    "hidden not numbers": (["--hidden", "a,b"], "'a,b' is not a comma-separated list"),
    "hidden empty layer": (["--hidden", "64,,32"], "not a comma-separated list"),
    "negative learning rate": (["--lr", "-0.1"], "learning rate must be > 0"),
    "infinite learning rate": (["--lr", "inf"], "learning rate must be finite"),
    "nan alpha": (["--alpha", "nan"], "alpha (L2 regularisation) must be finite"),
    "negative alpha": (["--reg", "-1"], "alpha (L2 regularisation) must be >= 0"),
    "zero epochs": (["--epochs", "0"], "epochs must be >= 1, but got 0"),
    "epochs not a number": (["--epochs", "ten"], "'ten' is not a valid integer"),
    "zero batch size": (["--batch-size", "0"], "batch size must be >= 1"),
    "batch larger than N": (
        ["--batch-size", "5000"],
        "batch size 5000 is larger than the training set (1212 samples",
    ),
    "validation fraction": (
        ["--validation-fraction", "1.5"],
        "validation fraction must be in (0, 1)",
    ),
    "unknown dataset": (["--data", "nosuch"], "unknown dataset 'nosuch'; available: digits"),
    "missing csv": (["--data", "missing.csv"], "no such CSV file: missing.csv"),
    "unknown activation": (["--activation", "softsign"], "'softsign' is not one of"),
    "unknown dtype": (["--dtype", "float16"], "'float16' is not one of"),
    "zero checkpoint interval": (["--checkpoint-every", "0"], "checkpoint interval must be"),
    "negative seed": (["--seed", "-1"], "seed must be >= 0"),
    "seed beyond 32 bits": (["--seed", "4294967296"], "seed must be <= 4294967295"),
}


@pytest.mark.parametrize("case", TRAIN_CASES)
def test_train_rejects_bad_options(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args, match = TRAIN_CASES[case]
    _fails_cleanly(["train", *args, "--out", tmp_path / "out"], tmp_path, match)
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()


def test_usage_errors_exit_2_and_point_to_help(tmp_path):
    line = _fails_cleanly(["train", "--hidden", "x"], tmp_path, "Invalid value", code=2)
    assert "(see 'handgrad train --help')" in line
    _fails_cleanly(["trian"], tmp_path, "No such command 'trian'", code=2)


def test_unwritable_output_folder(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    _fails_cleanly(
        ["train", "--epochs", "1", "--out", tmp_path / "file" / "run"], tmp_path, "is a file"
    )


def test_corrupt_and_truncated_and_missing_model_files(tmp_path, model):
    data = bytearray(model.read_bytes())
    data[-20] ^= 0xFF
    (tmp_path / "edited.safetensors").write_bytes(bytes(data))
    (tmp_path / "short.safetensors").write_bytes(bytes(data[:100]))
    (tmp_path / "text.safetensors").write_text("hello")
    _fails_cleanly(
        ["evaluate", tmp_path / "edited.safetensors"], tmp_path, "failed its integrity check"
    )
    _fails_cleanly(
        ["predict", tmp_path / "short.safetensors", model],
        tmp_path,
        "not a valid handgrad model file",
    )
    _fails_cleanly(
        ["gradcheck", "--model", tmp_path / "text.safetensors"],
        tmp_path,
        "not a valid handgrad model file",
    )
    _fails_cleanly(["evaluate", tmp_path / "nope.safetensors"], tmp_path, "no such model file")


def test_wrong_feature_count_at_predict_and_evaluate(tmp_path, model):
    rows = np.arange(60.0).reshape(6, 10)
    rows[:, -1] = [0, 1, 2, 0, 1, 2]  # as a training file: every class splittable
    np.savetxt(tmp_path / "ten.csv", rows, delimiter=",")
    np.save(tmp_path / "ten.npy", rows)
    _fails_cleanly(
        ["predict", model, tmp_path / "ten.csv"],
        tmp_path,
        "ten.csv has 10 features, but the model was trained with 64",
    )
    _fails_cleanly(
        ["predict", model, tmp_path / "ten.npy"],
        tmp_path,
        "ten.npy has 10 features, but the model was trained with 64",
    )
    _fails_cleanly(
        ["evaluate", model, "--data", tmp_path / "ten.csv"],
        tmp_path,
        "ten.csv has 9 features, but the model was trained with 64",
    )


def test_bad_prediction_inputs(tmp_path, model):
    (tmp_path / "notes.txt").write_text("1,2,3")
    (tmp_path / "cells.csv").write_text("1,2,x\n")
    (tmp_path / "fake.png").write_bytes(b"\x89PNG not really")
    _fails_cleanly(["predict", model, tmp_path / "notes.txt"], tmp_path, "unknown input type")
    _fails_cleanly(
        ["predict", model, tmp_path / "cells.csv"],
        tmp_path,
        "line 1, column 3 ('x2'): 'x' is not a finite number",
    )
    _fails_cleanly(["predict", model, tmp_path / "fake.png"], tmp_path, "not a readable image")
    _fails_cleanly(["predict", model, tmp_path / "gone.csv"], tmp_path, "no such input file")
    _fails_cleanly(
        ["predict", model, tmp_path / "cells.csv", "--output", tmp_path / "no" / "out.csv"],
        tmp_path,
        "is not a finite number",
    )


def test_resume_errors(tmp_path, model):
    _fails_cleanly(["train", "--resume", tmp_path / "none"], tmp_path, "no such run folder")
    # a run folder without a checkpoint resumes from its model file (issue 25, point 2);
    # a folder with neither is refused
    (tmp_path / "empty").mkdir()
    _fails_cleanly(
        ["train", "--resume", tmp_path / "empty"],
        tmp_path,
        "has neither checkpoint.safetensors nor model.safetensors to resume from",
    )
    _fails_cleanly(
        ["train", "--resume", model.parent, "--lr", "0.1"],
        tmp_path,
        "--resume takes its settings from the run in",
        code=2,
    )


def test_other_commands_reject_bad_input(tmp_path):
    _fails_cleanly(
        ["explain", "--input", "4", "--hidden", "0", "--classes", "3", "--batch", "2"],
        tmp_path,
        "hidden sizes must be positive",
    )
    _fails_cleanly(
        ["explain", "--input", "4", "--hidden", "5", "--classes", "3", "--batch", "0"],
        tmp_path,
        "0 is not in the range x>=1",
    )
    _fails_cleanly(
        ["explain", "--input", "4", "--hidden", "5", "--classes", "1", "--batch", "2"],
        tmp_path,
        "softmax head needs at least 2 classes",
    )
    _fails_cleanly(["plot", tmp_path], tmp_path, "no such file")
    _fails_cleanly(
        ["search", "--iter", "0", "--out", tmp_path / "s"],
        tmp_path,
        "number of iterations must be >= 1",
    )
    _fails_cleanly(["gradcheck", "--threshold", "-1"], tmp_path, "-1.0 is not in the range")


def test_debug_shows_the_traceback(tmp_path):
    result = CliRunner().invoke(main, ["train", "--data", "nosuch", "--debug"])
    assert result.exit_code != 0 and isinstance(result.exception, ValueError)


def test_a_mistyped_command_is_told_the_closest_one():
    from click.testing import CliRunner

    from handgrad.cli import main

    result = CliRunner().invoke(main, ["evalute"])
    assert result.exit_code == 2
    assert "No such command 'evalute' (did you mean 'evaluate'?)" in result.output


def test_the_version_is_the_package_metadata():
    import importlib.metadata

    import handgrad

    assert handgrad.__version__ == importlib.metadata.version("handgrad")


def test_the_version_says_whether_the_compiled_step_was_built():
    from handgrad.training import compiled

    lines = CliRunner().invoke(main, ["--version"]).output.splitlines()
    assert lines[0].startswith("handgrad, version ")
    assert lines[1] == "compiled step: built" if compiled.available() else "not built" in lines[1]
