"""The command line on regression: diabetes and a CSV with a numeric label, the errors for
a label that does not fit the task, and the model file as a scikit-learn Pipeline."""

import csv
import json
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import load_diabetes
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import r2_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from handgrad.bundle import load_bundle
from handgrad.cli import main
from handgrad.data import load_dataset
from handgrad.estimator import MLPRegressor
from handgrad.runs import read_json
from handgrad.state import load_model, save_model


def invoke(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def fails_with(*args, match):
    result = invoke(*args, ok=False)
    assert result.exit_code != 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("handgrad: error: ") and match in lines[0], lines[0]
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture(scope="module")
def diabetes_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("diabetes") / "run"
    result = invoke("train", "--data", "diabetes", "--quiet", "--out", folder)
    return folder, result.output


@pytest.fixture(scope="module")
def diabetes_csv(tmp_path_factory):
    """scikit-learn's diabetes table as a CSV file with a header; the label is "target"."""
    path = tmp_path_factory.mktemp("csv") / "diabetes.csv"
    bunch = load_diabetes()
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*bunch.feature_names, "target"])
        for x, t in zip(bunch.data, bunch.target, strict=True):
            writer.writerow([*(repr(float(v)) for v in x), repr(float(t))])
    return path


def _rows_csv(path, X, names):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        writer.writerows([[repr(float(v)) for v in row] for row in X])
    return path


def _predictions(output):
    lines = output.strip().splitlines()
    assert lines[0].split() == ["input", "prediction"]
    return np.array([float(line.split()[-1]) for line in lines[2:]])


def test_train_diabetes_prints_r2_and_writes_regression_metrics(diabetes_run):
    folder, output = diabetes_run
    summary = output.splitlines()[0]
    assert summary.startswith("train R² ") and "test R² " in summary and "accuracy" not in output
    metrics = read_json(folder / "metrics.json")
    assert metrics["task"] == "regression" and metrics["config"]["task"] == "regression"
    final = metrics["final"]
    for part in ("train", "val", "test"):
        assert {f"{part}_r2", f"{part}_mae", f"{part}_rmse"} <= set(final)
        assert final[f"{part}_rmse"] >= final[f"{part}_mae"] > 0
    assert f"test R² {final['test_r2']:.4f}" in summary
    # Early stopping (on by default for regression) scored R² epoch by epoch.
    assert metrics["config"]["early_stopping"] is True
    assert len(metrics["history"]["val_score"]) == final["epochs"]
    predictions = metrics["test_predictions"]
    assert len(predictions["true"]) == len(predictions["predicted"]) == 111
    t, p = np.array(predictions["true"]), np.array(predictions["predicted"])
    assert r2_score(t, p) == pytest.approx(final["test_r2"], abs=1e-9)
    assert (folder / "report.png").stat().st_size > 10_000


def test_evaluate_prints_r2_mae_rmse_of_the_test_part(diabetes_run):
    folder, _ = diabetes_run
    final = read_json(folder / "metrics.json")["final"]
    text = invoke("evaluate", folder / "model.safetensors").output
    assert text.startswith("diabetes (test split, 111 samples): R² ")
    assert f"R² {final['test_r2']:.4f}" in text and "MAE" in text and "RMSE" in text
    report = json.loads(invoke("evaluate", folder / "model.safetensors", "--json").output)
    assert report["task"] == "regression" and report["n_samples"] == 111
    for key in ("r2", "mae", "rmse"):
        assert report[key] == pytest.approx(final[f"test_{key}"], rel=1e-6)


def test_predict_prints_what_the_model_file_pipeline_predicts(diabetes_run, tmp_path):
    folder, _ = diabetes_run
    bunch = load_diabetes()
    X = bunch.data[:5]
    rows = _rows_csv(tmp_path / "rows.csv", X, bunch.feature_names)
    printed = _predictions(invoke("predict", folder / "model.safetensors", rows).output)
    pipeline = load_model(folder / "model.safetensors")
    assert isinstance(pipeline, Pipeline)
    assert isinstance(pipeline[-1], TransformedTargetRegressor)
    assert isinstance(pipeline[-1].regressor_, MLPRegressor)
    expected = pipeline.predict(X)
    assert expected.shape == (5,)
    np.testing.assert_allclose(printed, expected, rtol=1e-4)
    # In the targets' units (the disease score is 25 … 346), not standardized ones.
    assert np.all((expected > 20) & (expected < 400))
    # The Pipeline saves and loads again, predicting the same.
    save_model(tmp_path / "again.safetensors", pipeline)
    np.testing.assert_array_equal(load_model(tmp_path / "again.safetensors").predict(X), expected)


def test_predict_refuses_proba_for_a_regressor(diabetes_run, tmp_path):
    folder, _ = diabetes_run
    bunch = load_diabetes()
    rows = _rows_csv(tmp_path / "rows.csv", bunch.data[:2], bunch.feature_names)
    result = invoke("predict", folder / "model.safetensors", rows, "--proba", ok=False)
    assert result.exit_code == 2 and "--proba needs a classifier" in result.output


def test_export_of_a_regressor_runs_in_onnxruntime_as_predict(diabetes_run, tmp_path):
    rt = pytest.importorskip("onnxruntime")
    pytest.importorskip("skl2onnx")
    folder, _ = diabetes_run
    X = load_diabetes().data[:20]
    expected = load_model(folder / "model.safetensors").predict(X)
    for dtype, rtol in (("float32", 1e-5), ("float64", 1e-5)):
        out = tmp_path / f"m-{dtype}.onnx"
        result = invoke("export", folder / "model.safetensors", out, "--dtype", dtype)
        assert "output prediction (N,)" in result.stderr
        session = rt.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        assert [o.name for o in session.get_outputs()] == ["prediction"]
        (got,) = session.run(None, {"X": X.astype(dtype)})
        assert got.shape == (20,) and got.dtype == np.dtype(dtype)
        np.testing.assert_allclose(got, expected, rtol=rtol)


def test_export_of_a_bare_regressor_with_two_targets_and_poisson_loss():
    rt = pytest.importorskip("onnxruntime")
    from handgrad.export import to_onnx

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    Y = np.exp(0.3 * X[:, :2])
    for loss in ("squared_error", "poisson"):
        reg = MLPRegressor(hidden_layer_sizes=(8,), loss=loss, max_iter=30, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            reg.fit(X, Y)
        session = rt.InferenceSession(
            to_onnx(reg, dtype=np.float64).SerializeToString(),
            providers=["CPUExecutionProvider"],
        )
        (got,) = session.run(None, {"X": X})
        assert got.shape == (60, 2)
        np.testing.assert_allclose(got, reg.predict(X), rtol=1e-9)


def test_csv_with_numeric_label_and_task_regression(diabetes_csv, tmp_path):
    out = tmp_path / "run"
    invoke(
        "train",
        *("--data", diabetes_csv, "--label", "target", "--task", "regression"),
        *("--quiet", "--out", out),
    )
    metrics = read_json(out / "metrics.json")
    assert metrics["data"]["task"] == "regression"
    # The same rows, split with the same seed, as the named dataset: the same score.
    assert metrics["final"]["test_r2"] > 0.25
    report = json.loads(invoke("evaluate", out / "model.safetensors", "--json").output)
    assert report["r2"] == pytest.approx(metrics["final"]["test_r2"], rel=1e-6)
    bundle = load_bundle(out / "model.safetensors")
    assert bundle.is_regressor and bundle.feature_names == list(load_diabetes().feature_names)


def test_continuous_label_given_to_classification_suggests_regression(diabetes_csv, tmp_path):
    line = fails_with(
        "train",
        "--data",
        diabetes_csv,
        "--label",
        "target",
        "--out",
        tmp_path / "r",
        match="the label looks continuous (214 distinct values in 442 rows)",
    )
    assert line.endswith("give --task regression to predict it as a number")
    fails_with(
        "train",
        "--data",
        "diabetes",
        "--task",
        "classification",
        "--out",
        tmp_path / "r",
        match="diabetes is a regression dataset",
    )
    # handgrad search --task classification: a regression dataset is refused up front.
    fails_with(
        "search",
        "--data",
        "diabetes",
        "--task",
        "classification",
        "--out",
        tmp_path / "r",
        match="diabetes is a regression dataset, not a classification one",
    )
    assert not (tmp_path / "r").exists()


def test_class_labels_given_to_regression_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    words, numbers = tmp_path / "words.csv", tmp_path / "classes.csv"
    with open(words, "w") as handle:
        handle.write("a,b,c,kind\n")
        for i, row in enumerate(X):
            handle.write(",".join(map(str, row)) + f",{'cat' if i % 2 else 'dog'}\n")
    with open(numbers, "w") as handle:
        handle.write("a,b,c,digit\n")
        for i, row in enumerate(X):
            handle.write(",".join(map(str, row)) + f",{i % 3}\n")
    fails_with(
        "train",
        "--data",
        words,
        "--task",
        "regression",
        "--out",
        tmp_path / "r",
        match="the label holds text ('dog'), which is a class label",
    )
    line = fails_with(
        "train",
        "--data",
        numbers,
        "--task",
        "regression",
        "--out",
        tmp_path / "r",
        match="only 3 distinct integer values (0, 1, 2)",
    )
    assert line.endswith("give --task classification")
    fails_with(
        "train",
        "--data",
        "iris",
        "--task",
        "regression",
        "--out",
        tmp_path / "r",
        match="iris is a classification dataset",
    )


def test_default_run_reaches_scikit_learns_target_scaled_r2(tmp_path):
    """The defaults' test R² is at least that of scikit-learn's usual recipe -- scaled
    features, an MLPRegressor with its defaults, scaled targets -- on the same split,
    less 0.02, over several splits."""
    from sklearn.neural_network import MLPRegressor as SkMLPRegressor

    from handgrad.runs import RunConfig, prepare_data, train

    for seed in (0, 1, 2):
        ds = load_dataset("diabetes", split_seed=seed)
        ours = train(
            RunConfig(data="diabetes", seed=seed),
            out=tmp_path / str(seed),
            progress=False,
            log=lambda _: None,
        ).metrics["final"]["test_r2"]
        theirs = TransformedTargetRegressor(
            make_pipeline(StandardScaler(), SkMLPRegressor(random_state=0)),
            transformer=StandardScaler(),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            theirs.fit(ds.X_train, ds.y_train)
        baseline = r2_score(ds.y_test, theirs.predict(ds.X_test))
        # the test part is the same rows for both
        same = prepare_data(RunConfig("diabetes", seed=seed)).y_test
        np.testing.assert_array_equal(same, ds.y_test)
        assert ours >= baseline - 0.02, (seed, ours, baseline)


def test_a_regressor_worse_than_the_mean_is_reported(tmp_path):
    """L-BFGS without early stopping learns diabetes' 298 training rows by heart."""
    result = invoke(
        "train", "--data", "diabetes", "--solver", "lbfgs", "--quiet", "--out", tmp_path / "r"
    )
    r2 = read_json(tmp_path / "r" / "metrics.json")["final"]["test_r2"]
    assert r2 < 0
    assert (
        f"the model predicts no better than the mean of the targets: test R² {r2:.4f}; "
        "try a larger --alpha, or early stopping (adam or sgd)"
    ) in result.stderr
