"""A run's model file: one loader, one meaning (a Pipeline), columns by name, the
training range, and model files that declare more than they hold."""

from __future__ import annotations

import errno
import tempfile
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import Pipeline, make_pipeline

from handgrad.bundle import load_bundle, save_bundle
from handgrad.cli import main
from handgrad.data import Preprocessor
from handgrad.errors import ModelFileError
from handgrad.estimator import MLPClassifier
from handgrad.modelfile import load_arrays, save_arrays
from handgrad.network import MLP
from handgrad.state import load_model, save_model

IRIS = load_iris(as_frame=True)
NAMES = list(IRIS.data.columns)


def _fit(X, y):
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return clf.fit(X, y)


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory) -> Path:
    """Iris standardized, saved as ``handgrad train`` saves a run's model file."""
    pre = Preprocessor("standardize").fit(IRIS.data.to_numpy())
    clf = _fit(pre.transform(IRIS.data.to_numpy()), IRIS.target.to_numpy())
    path = tmp_path_factory.mktemp("run") / "model.safetensors"
    info = {"data": "iris", "feature_names": NAMES, "class_names": list(IRIS.target_names)}
    save_bundle(path, clf, pre, info)
    return path


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


# -------------------------------------------------------------- 12.1 one meaning
def test_a_run_file_loads_as_the_pipeline_that_handgrad_predict_uses(iris_run, tmp_path):
    model = load_model(iris_run)
    assert isinstance(model, Pipeline)
    assert [type(step) for _, step in model.steps] == [Preprocessor, MLPClassifier]
    X, y = IRIS.data.to_numpy(), IRIS.target.to_numpy()
    assert model.score(X, y) > 0.9  # the bare classifier on raw rows scores 0.33
    np.testing.assert_array_equal(model.predict(X), load_bundle(iris_run).predict(X))
    np.save(tmp_path / "rows.npy", X[:5])
    result = invoke("predict", iris_run, tmp_path / "rows.npy")
    assert result.exit_code == 0, result.output
    printed = [int(line.split()[-1]) for line in result.stdout.splitlines()[2:]]
    assert printed == model.predict(X[:5]).tolist()


def test_save_model_of_a_pipeline_writes_the_same_kind_of_file(tmp_path):
    pipe = make_pipeline(Preprocessor("standardize"), MLPClassifier(max_iter=50, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe.fit(IRIS.data, IRIS.target)
    back = load_model(save_model(tmp_path / "p.safetensors", pipe))
    assert isinstance(back, Pipeline) and [n for n, _ in back.steps] == [n for n, _ in pipe.steps]
    np.testing.assert_array_equal(back.predict_proba(IRIS.data), pipe.predict_proba(IRIS.data))
    assert list(back.feature_names_in_) == NAMES
    # The same columns in another order are taken by name.
    shuffled = IRIS.data[NAMES[::-1]]
    np.testing.assert_array_equal(back.predict(shuffled), pipe.predict(IRIS.data))
    assert load_bundle(tmp_path / "p.safetensors").preprocessor.kind == "standardize"


def test_pipelines_of_other_steps_and_other_objects_are_refused(tmp_path):
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=5))
    with pytest.raises(TypeError, match="a Pipeline of exactly a handgrad Preprocessor and an"):
        save_model(tmp_path / "p", pipe)
    with pytest.raises(TypeError, match=r"cannot save a object: a model file holds an MLP, a "):
        save_model(tmp_path / "o", object())
    assert not any(tmp_path.iterdir())


# -------------------------------------------------------------- 12.2 columns by name
def _write(df: pd.DataFrame, path: Path) -> Path:
    df.to_csv(path, index=False)
    return path


def test_evaluate_takes_columns_by_name(iris_run, tmp_path):
    reordered = _write(IRIS.frame[[*NAMES[::-1], "target"]], tmp_path / "rev.csv")
    result = invoke("evaluate", iris_run, "--data", reordered, "--split", "all", "--json")
    assert result.exit_code == 0, result.output
    accuracy = float(result.stdout.split('"accuracy": ')[1].split(",")[0])
    assert accuracy > 0.9  # by position: 0.18


def test_predict_takes_columns_by_name_and_drops_the_label_with_one_note(iris_run, tmp_path):
    plain = _write(IRIS.data, tmp_path / "plain.csv")
    shuffled = _write(IRIS.frame[["target", *NAMES[::-1]]], tmp_path / "shuffled.csv")
    want = invoke("predict", iris_run, plain)
    got = invoke("predict", iris_run, shuffled)
    assert want.exit_code == 0 and got.exit_code == 0, got.output
    labels = [line.split()[-1] for line in got.stdout.splitlines()[2:]]
    assert labels == [line.split()[-1] for line in want.stdout.splitlines()[2:]]
    assert got.stderr.count("ignored the column 'target'") == 1
    assert "which the model was not trained with" in got.stderr


def test_a_missing_column_is_one_error_naming_it(iris_run, tmp_path):
    short = _write(IRIS.data[NAMES[1:]], tmp_path / "short.csv")
    result = invoke("predict", iris_run, short)
    assert result.exit_code == 1
    assert f"short.csv lacks the column '{NAMES[0]}' the model was trained with" in result.stderr
    two = _write(IRIS.frame[[*NAMES, "target"]].assign(extra=1), tmp_path / "two.csv")
    result = invoke("predict", iris_run, two)
    assert "the columns 'target', 'extra' that the model was not trained with" in result.stderr
    assert "--label COL" in result.stderr


def test_a_header_equal_to_the_models_names_is_a_header_without_a_warning(tmp_path):
    """pandas' numeric names (0,1,2,3): line 1 equals the model's feature names."""
    X, y = IRIS.data.to_numpy(), IRIS.target.to_numpy()
    pre = Preprocessor("standardize").fit(X)
    names = [str(j) for j in range(4)]
    path = save_bundle(
        tmp_path / "m.safetensors", _fit(pre.transform(X), y), pre, {"feature_names": names}
    )
    rows = _write(pd.DataFrame(X[:3]), tmp_path / "rows.csv")  # header 0,1,2,3
    result = invoke("predict", path, rows)
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 2 + 3 and "warning" not in result.stderr
    forced = invoke("predict", path, rows, "--no-header")
    assert forced.exit_code == 0 and len(forced.stdout.splitlines()) == 2 + 4  # line 1 as data


# ---------------------------------------------------------- 12.9 the training range
def test_inputs_scaled_differently_from_the_training_data_are_said(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (200, 16)).astype(np.uint8)  # 0-255 pixels
    y = (X[:, :8].mean(axis=1) > X[:, 8:].mean(axis=1)).astype(int)
    pre = Preprocessor("scale").fit(X)
    path = save_bundle(tmp_path / "m.safetensors", _fit(pre.transform(X), y), pre)
    np.save(tmp_path / "ok.npy", X[:10])
    np.save(tmp_path / "unit.npy", X[:10] / 255.0)  # already scaled to [0, 1]
    ok = invoke("predict", path, tmp_path / "ok.npy")
    assert ok.exit_code == 0 and "warning" not in ok.stderr
    unit = invoke("predict", path, tmp_path / "unit.npy", "--proba")
    assert unit.exit_code == 0
    (line,) = [li for li in unit.stderr.splitlines() if "warning" in li]  # once, with --proba
    assert "training ranged over [0, 255]: were they scaled differently?" in line


def test_a_feature_far_beyond_its_training_range_is_said():
    X = IRIS.data.to_numpy()
    pre = Preprocessor("standardize").fit(X)
    assert pre.outside_range(X) is None
    far = X[:3].copy()
    far[1, 3] = 40.0  # petal width: 0.1 to 2.5 in training
    message = pre.outside_range(far)
    assert message == (
        "1 of 3 inputs lie far outside the training range (row 2 has 40 in feature 4, "
        "where training saw 0.1 to 2.5)"
    )
    back = Preprocessor.from_dict(pre.to_dict())
    assert back.outside_range(far) == message


# ------------------------------------------------- 13.10 declared sizes checked first
def test_a_file_declaring_huge_layers_is_refused_before_allocating(tmp_path):
    tensors, meta = load_arrays(save_model(tmp_path / "m", MLP(4, (5,), 3, seed=0)))
    save_arrays(tmp_path / "big", tensors, meta | {"layer_sizes": [4, 2_000_000, 3]})
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match=r"tensor W1 has shape \(4, 5\) .* fits none"):
            load_model(tmp_path / "big")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20  # building the declared network would take over 60 MiB
    save_arrays(tmp_path / "huge", tensors, meta | {"layer_sizes": [4, 10**12, 3]})
    with pytest.raises(ModelFileError, match="parameters, more than the 1,073,741,824"):
        load_model(tmp_path / "huge")


# ------------------------------------------------------------------- 13.11 slips
def test_a_folder_given_as_input_says_it_is_a_folder(iris_run, tmp_path):
    result = invoke("predict", iris_run, tmp_path)
    assert result.exit_code == 1
    assert f"{tmp_path} is a folder, not an input file" in result.stderr
    with pytest.raises(IsADirectoryError, match="is a folder, not a model file"):
        load_bundle(tmp_path)


def test_predict_output_errors_name_the_target_not_the_temporary_file(
    iris_run, tmp_path, monkeypatch
):
    def read_only(*args, dir=None, prefix="", **kwargs):
        name = f"{dir}/{prefix}abc.tmp"
        raise OSError(errno.EROFS, "Read-only file system", name)

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", read_only)
    np.save(tmp_path / "rows.npy", IRIS.data.to_numpy()[:2])
    target = tmp_path / "out.csv"
    result = invoke("predict", iris_run, tmp_path / "rows.npy", "-o", target)
    assert result.exit_code == 1
    assert f"cannot write the predictions to {target}: Read-only file system" in result.stderr
    assert ".tmp" not in result.stderr
