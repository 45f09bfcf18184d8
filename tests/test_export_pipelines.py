"""ONNX export of whole scikit-learn pipelines ending in a handgrad estimator (issue 25,
points 9 and 10), and of a model that reads a table by column kind (issue 23): ONNX
Runtime's labels, probabilities and predictions are ``predict``'s on every row."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
skl2onnx = pytest.importorskip("skl2onnx")
pd = pytest.importorskip("pandas")

from click.testing import CliRunner  # noqa: E402
from sklearn.base import BaseEstimator, TransformerMixin  # noqa: E402
from sklearn.compose import TransformedTargetRegressor  # noqa: E402
from sklearn.datasets import load_diabetes, load_iris  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.linear_model import LinearRegression  # noqa: E402
from sklearn.neural_network import MLPRegressor as SklearnMLPRegressor  # noqa: E402
from sklearn.pipeline import make_pipeline, make_union  # noqa: E402
from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, StandardScaler  # noqa: E402

from handgrad import MLPClassifier, MLPRegressor  # noqa: E402
from handgrad.bundle import load_bundle  # noqa: E402
from handgrad.cli import main  # noqa: E402
from handgrad.data import Preprocessor  # noqa: E402
from handgrad.data.columns import onnx_feeds  # noqa: E402
from handgrad.export import to_onnx  # noqa: E402
from handgrad.state import load_model  # noqa: E402

TOL = 1e-5  # float32 probabilities; predictions relative to the targets' size


def session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def fitted(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few iterations: ConvergenceWarning
        return model.fit(X, y)


def classifier():
    return MLPClassifier((8,), solver="lbfgs", max_iter=100, random_state=0)


def regressor():
    return MLPRegressor(hidden_layer_sizes=(16,), max_iter=60, random_state=0)


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return X.astype(np.float32), y  # raw: the pipeline scales them


@pytest.fixture(scope="module")
def diabetes():
    X, y = load_diabetes(return_X_y=True, scaled=False)
    return X.astype(np.float32), y


def assert_predicts(got, expected):
    """Predictions within TOL of ``predict``'s, relative to each target's largest (a
    float32 graph rounds a prediction near 0 as one of the target's size)."""
    assert got.shape == expected.shape
    for g, e in zip(got.reshape(len(got), -1).T, expected.reshape(len(got), -1).T, strict=True):
        np.testing.assert_allclose(g, e, rtol=TOL, atol=TOL * np.abs(e).max())


class Doubler(TransformerMixin, BaseEstimator):
    """A transformer skl2onnx has no converter for."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return 2 * X


# -------------------------------------------------- point 9: handgrad.export.to_onnx
@pytest.mark.parametrize(
    "before",
    [
        lambda: [StandardScaler()],
        lambda: [MinMaxScaler(), PCA(3, random_state=0)],
        lambda: [make_pipeline(StandardScaler(), PCA(3, random_state=0))],  # nested
        lambda: [make_union(StandardScaler(), PCA(2, random_state=0)), "passthrough"],
        lambda: [Preprocessor("standardize")],  # a run's own preprocessing, bare
    ],
)
def test_to_onnx_converts_a_pipeline_ending_in_a_classifier(iris, before):
    X, y = iris
    pipeline = fitted(make_pipeline(*before(), classifier()), X, y)
    model = to_onnx(pipeline)
    (rows,) = model.graph.input
    assert rows.name == "X" and rows.type.tensor_type.shape.dim[1].dim_value == 4
    label, P = session(model).run(["label", "probabilities"], {"X": X})
    np.testing.assert_array_equal(label, pipeline.predict(X))
    # skl2onnx's float32 Scaler rounds (x − offset)·scale, scikit-learn's (x − mean)/scale:
    # an ulp apart, which the network can grow tenfold on a row near a class boundary
    np.testing.assert_allclose(P, pipeline.predict_proba(X), rtol=0, atol=10 * TOL)
    assert P.shape == (150, 3) and np.mean(label == y) > 0.9  # a trained model


@pytest.mark.parametrize("n_targets", [1, 2])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_to_onnx_converts_a_pipeline_ending_in_a_regressor(diabetes, n_targets, dtype):
    X, y = diabetes
    Y = y if n_targets == 1 else np.stack([y, np.log(y)], axis=1)
    pipeline = fitted(make_pipeline(StandardScaler(), regressor()), X.astype(dtype), Y)
    (prediction,) = session(to_onnx(pipeline, dtype=dtype)).run(None, {"X": X.astype(dtype)})
    expected = pipeline.predict(X.astype(dtype))
    assert prediction.shape == expected.shape == ((442,) if n_targets == 1 else (442, 2))
    assert_predicts(prediction, expected)


@pytest.mark.parametrize("transformer", [StandardScaler, lambda: None])
def test_to_onnx_converts_a_target_scaled_regressor_in_a_pipeline(diabetes, transformer):
    X, y = diabetes
    scaled = TransformedTargetRegressor(regressor(), transformer=transformer())
    pipeline = fitted(make_pipeline(StandardScaler(), scaled), X, y)
    (prediction,) = session(to_onnx(pipeline)).run(None, {"X": X})
    expected = pipeline.predict(X)
    assert np.ptp(expected) > 10  # in the target's units
    assert_predicts(prediction, expected)


def test_to_onnx_converts_the_readme_s_target_scaled_pipeline(diabetes):
    """A TransformedTargetRegressor holding a pipeline that ends in the regressor, as in
    the README: its steps come before the network, the target scaling after it."""
    X, y = diabetes
    inner = make_pipeline(StandardScaler(), PCA(8, random_state=0), regressor())
    reg = fitted(TransformedTargetRegressor(inner, transformer=StandardScaler()), X, y)
    (prediction,) = session(to_onnx(reg)).run(None, {"X": X})
    assert_predicts(prediction, reg.predict(X))
    assert np.ptp(prediction) > 100
    twice = fitted(make_pipeline(StandardScaler(), reg), X, y)  # "standardscaler" twice, flattened
    (prediction,) = session(to_onnx(twice)).run(None, {"X": X})
    assert_predicts(prediction, twice.predict(X))


def test_a_step_without_a_converter_is_one_line_naming_it(iris, diabetes):
    X, y = iris
    pipeline = fitted(make_pipeline(StandardScaler(), Doubler(), classifier()), X, y)
    with pytest.raises(TypeError) as caught:
        to_onnx(pipeline)
    assert str(caught.value) == (
        f"cannot export this pipeline: its step 'doubler' ({__name__}.Doubler) has no "
        "skl2onnx converter (register one with skl2onnx.update_registered_converter, or "
        "leave the step out)"
    )
    inside = fitted(make_pipeline(make_union(PCA(2), Doubler()), classifier()), X, y)
    settings = fitted(make_pipeline(FunctionTransformer(np.abs), classifier()), X, y)
    for model, said in (
        (
            inside,
            "skl2onnx says \"Unable to find a shape calculator for type '<class '"
            f"{__name__}.Doubler'>'.\" (a step inside another has no converter",
        ),
        (settings, "skl2onnx says 'FunctionTransformer is not supported unless"),
    ):
        with pytest.raises(TypeError) as caught:
            to_onnx(model)
        assert str(caught.value).startswith(f"cannot export this pipeline: {said}")
        assert "\n" not in str(caught.value)
    Xd, yd = diabetes
    linear = TransformedTargetRegressor(LinearRegression(), transformer=StandardScaler())
    other = fitted(linear, Xd, yd)
    with pytest.raises(TypeError, match=r"MLPRegressor.*got sklearn\..*LinearRegression$"):
        to_onnx(make_pipeline(StandardScaler().fit(Xd), other))
    logged = TransformedTargetRegressor(regressor(), func=np.log, inverse_func=np.exp)
    with pytest.raises(TypeError, match=r"StandardScaler \(or left as it is\), got FunctionT"):
        to_onnx(fitted(logged, Xd, yd))


# --------------------------------------------------- point 10: skl2onnx.to_onnx itself
def _outputs(model):
    return [
        (o.name, o.type.tensor_type.elem_type, len(o.type.tensor_type.shape.dim))
        for o in model.graph.output
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_skl2onnx_converts_a_regressor_as_scikit_learns(diabetes, dtype):
    X, y = diabetes[0].astype(dtype), diabetes[1]
    ours = fitted(make_pipeline(StandardScaler(), regressor()), X, y)
    theirs = fitted(
        make_pipeline(StandardScaler(), SklearnMLPRegressor(hidden_layer_sizes=(4,), max_iter=5)),
        X,
        y,
    )
    model = skl2onnx.to_onnx(ours, X[:1])
    assert _outputs(model) == _outputs(skl2onnx.to_onnx(theirs, X[:1]))  # variable (N, 1)
    (got,) = session(model).run(None, {"X": X})
    assert got.shape == (442, 1) and got.dtype == dtype
    assert_predicts(got[:, 0], ours.predict(X))


def test_skl2onnx_converts_several_targets_and_a_run_s_target_scaled_pipeline(diabetes):
    X, y = diabetes
    Y = np.stack([y, np.log(y), -y], axis=1)
    several = fitted(make_pipeline(StandardScaler(), regressor()), X, Y)
    (got,) = session(skl2onnx.to_onnx(several, X[:1])).run(None, {"X": X})
    assert got.shape == (442, 3)
    assert_predicts(got, several.predict(X))
    # As a run's model file holds it: its Preprocessor, then the target-scaled regressor.
    scaled = TransformedTargetRegressor(regressor(), transformer=StandardScaler())
    run = fitted(make_pipeline(Preprocessor("standardize"), scaled), X, y)
    (got,) = session(skl2onnx.to_onnx(run, X[:1])).run(None, {"X": X})
    assert got.shape == (442, 1)
    assert_predicts(got[:, 0], run.predict(X))


# ------------------------------------------------ issue 23: a table read by column kind
@pytest.fixture(scope="module")
def penguin_runs(tmp_path_factory):
    """Runs on palmerpenguins (text, categorical and empty cells), classifying species
    and predicting body mass (its rows without one left out), each exported by the CLI."""
    penguins = pytest.importorskip("palmerpenguins").load_penguins()
    tmp = tmp_path_factory.mktemp("penguins")
    weighed = penguins.dropna(subset=["body_mass_g"]).reset_index(drop=True)
    weighed.loc[3:7, "bill_length_mm"] = np.nan  # empty numbers in it too
    tasks = {"species": (penguins, []), "body_mass_g": (weighed, ["--task", "regression"])}
    runs = {}
    for label, (frame, task) in tasks.items():
        data, run, out = tmp / f"{label}.csv", tmp / label, tmp / f"{label}.onnx"
        frame.to_csv(data, index=False)
        train = ["train", "--data", data, "--label", label, *task, "--epochs", 5, "--out", run]
        for args in (train, ["export", run / "model.safetensors", out]):
            result = CliRunner().invoke(main, [str(a) for a in args])
            assert result.exit_code == 0, result.output
        runs[label] = (run / "model.safetensors", out, pd.read_csv(data).drop(columns=[label]))
    return runs


def _assert_serves_as_predict(model, path, frame):
    """ONNX Runtime on every row of ``frame`` gives the model file's predictions."""
    bundle = load_bundle(path)
    pipeline = load_model(path)
    rt = session(model)
    inputs = {i.name: i.type for i in rt.get_inputs()}
    assert list(inputs) == bundle.feature_names  # one input per column, named as it
    assert {inputs[c] for c in ("island", "sex")} == {"tensor(string)"}
    assert inputs["bill_length_mm"] == "tensor(float)"
    assert all(i.shape[1:] == [1] for i in rt.get_inputs())
    assert "one (N, 1) input per column" in model.doc_string
    assert frame["bill_length_mm"].isna().any() and frame["sex"].isna().any()  # empty cells
    outputs = rt.run(None, onnx_feeds(bundle.columns, frame))
    if bundle.is_regressor:
        assert_predicts(outputs[0], pipeline.predict(frame))
        return outputs[0]
    label, P = outputs
    np.testing.assert_array_equal(label, pipeline.predict(frame))
    np.testing.assert_allclose(P, pipeline.predict_proba(frame), rtol=0, atol=TOL)
    return label


@pytest.mark.parametrize("label", ["species", "body_mass_g"])
def test_export_of_a_table_model_serves_every_row_as_predict(penguin_runs, label):
    path, out, frame = penguin_runs[label]
    served = _assert_serves_as_predict(onnx.load(out), path, frame)
    assert served.shape == (len(frame),)
    if label == "species":
        assert set(served) == {"Adelie", "Chinstrap", "Gentoo"}
    else:
        assert np.ptp(served) > 100  # grams, not standardized units
    # One row with empty cells, its columns in another order: fed by name.
    (i, *_) = np.flatnonzero(frame["bill_length_mm"].isna())
    row = frame.iloc[[i]][frame.columns[::-1]]
    one = session(onnx.load(out)).run(None, onnx_feeds(load_bundle(path).columns, row))
    assert one[0].shape == (1,) and one[0][0] == served[i]


@pytest.mark.parametrize("label", ["species", "body_mass_g"])
def test_to_onnx_of_a_table_model_and_its_pipeline(penguin_runs, label):
    path, _, frame = penguin_runs[label]
    _assert_serves_as_predict(to_onnx(path), path, frame)
    _assert_serves_as_predict(to_onnx(load_model(path)), path, frame)  # the Pipeline
    message = "dtype must be float32 for a model that reads a table's columns, got float64"
    with pytest.raises(ValueError, match=message):
        to_onnx(path, dtype="float64")
    result = CliRunner().invoke(
        main, ["export", str(path), str(path.parent / "m.onnx"), "--dtype", "float64"]
    )
    assert result.exit_code == 1 and result.output == f"handgrad: error: {message}\n"
    assert not (path.parent / "m.onnx").exists()
