"""ONNX export: ONNX Runtime on the exported graph agrees with handgrad's predict and
predict_proba, for every head, activation, depth and preprocessing, in a Pipeline too."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
skl2onnx = pytest.importorskip("skl2onnx")

from click.testing import CliRunner  # noqa: E402
from sklearn.datasets import load_digits, load_iris  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from handgrad import MLPClassifier  # noqa: E402
from handgrad.bundle import Bundle, load_bundle  # noqa: E402
from handgrad.cli import main  # noqa: E402
from handgrad.data import Preprocessor  # noqa: E402
from handgrad.export import to_onnx  # noqa: E402
from handgrad.state import load_model, save_model  # noqa: E402

TOL = 1e-5  # float32 probabilities


def run_onnx(model, X, dtype=np.float32):
    """(label, probabilities) from ONNX Runtime, for a ModelProto or a file."""
    source = model if isinstance(model, str | Path) else model.SerializeToString()
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return session.run(["label", "probabilities"], {"X": np.asarray(X, dtype)})


def fit(X, y, **params):
    """A float32 model, so that handgrad computes in the graph's precision."""
    settings = {"solver": "lbfgs", "max_iter": 100, "random_state": 0, **params}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few iterations: ConvergenceWarning
        return MLPClassifier(**settings).fit(np.asarray(X, np.float32), y)


def assert_agrees(model, X, predictor=None):
    """The exported graph's label and probabilities are handgrad's, on every row."""
    predictor = predictor or model
    label, P = run_onnx(to_onnx(model), X)
    expected = predictor.predict(X)
    np.testing.assert_array_equal(label, expected)
    np.testing.assert_allclose(P, predictor.predict_proba(X), rtol=0, atol=TOL)
    return label, P


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X).astype(np.float32), y


@pytest.fixture(scope="module")
def digits():
    return load_digits(return_X_y=True)


# ------------------------------------------------------------------------- a run's model
def test_export_of_a_run_serves_without_handgrad_and_agrees(digits, tmp_path):
    """The issue's 'done when': ``handgrad export`` on the README's default run (fewer
    epochs, standardised inputs) gives a file that ONNX Runtime serves in a fresh process
    where handgrad cannot be imported, with handgrad's labels and probabilities."""
    run, out = tmp_path / "run", tmp_path / "digits.onnx"
    train = ["train", "--epochs", "3", "--preprocessing", "standardize", "--quiet"]
    assert CliRunner().invoke(main, [*train, "--out", str(run)]).exit_code == 0
    result = CliRunner().invoke(main, ["export", str(run / "model.safetensors"), str(out)])
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"wrote {out}: input X (N, 64), outputs label (N,), probabilities (N, 10)\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits.onnx", "run"]  # no temp left

    X = digits[0].astype(np.float32)
    label, P = run_without_handgrad(out, X, tmp_path)
    bundle = load_bundle(run / "model.safetensors")
    assert bundle.preprocessor.kind == "standardize"
    np.testing.assert_array_equal(label, bundle.predict(X))
    np.testing.assert_allclose(P, bundle.predict_proba(X), rtol=0, atol=TOL)
    assert label.dtype == np.int64 and P.shape == (1797, 10)
    assert len(set(label.tolist())) == 10  # a trained model, not a constant one

    model = onnx.load(out)  # an image model: says its input is the flattened images
    assert "flattened 8×8 image" in model.doc_string
    assert {p.key: p.value for p in model.metadata_props} == {"image_shape": "[8, 8]"}
    (rows,) = model.graph.input
    assert rows.type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def run_without_handgrad(path, X, folder):
    """(label, probabilities) from ONNX Runtime in ``python -I -S``: site-packages on the
    path without its .pth files (so no editable install of handgrad), and handgrad,
    scikit-learn, skl2onnx and onnx hidden in case they are installed there."""
    np.save(folder / "X.npy", X)
    site = str(Path(ort.__file__).parents[1])  # where onnxruntime and numpy live
    code = textwrap.dedent(
        f"""
        import importlib.abc, sys
        class Hide(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("handgrad", "sklearn", "skl2onnx", "onnx"):
                    raise ModuleNotFoundError(name)
        sys.meta_path.insert(0, Hide())
        sys.path.append({site!r})
        try:
            import handgrad
            sys.exit("handgrad is importable")
        except ImportError:
            pass
        import numpy as np, onnxruntime as ort
        session = ort.InferenceSession({str(path)!r}, providers=["CPUExecutionProvider"])
        label, P = session.run(None, {{"X": np.load({str(folder / "X.npy")!r})}})
        np.savez({str(folder / "out.npz")!r}, label=label, P=P)
        print(sorted(m for m in sys.modules if m.startswith(("handgrad", "sklearn"))))
        """
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    result = np.load(folder / "out.npz")
    return result["label"], result["P"]


@pytest.mark.parametrize("kind", ["scale", "mean_image", "none"])
def test_bundle_preprocessing_is_in_the_graph(kind, digits):
    X, y = digits[0][:300], digits[1][:300]
    images = (X * 15.9375).astype(np.uint8)  # as 0…255 pixels: scale divides by 255
    pre = Preprocessor(kind).fit(images)
    clf = fit(pre.transform(images), y, hidden_layer_sizes=(16,), max_iter=40)
    bundle = Bundle(make_pipeline(pre, clf), {"image_shape": [8, 8]})
    label, _ = assert_agrees(bundle, images.astype(np.float32), predictor=bundle)
    assert np.mean(label == y) > 0.5  # a trained model: chance is 0.1


# --------------------------------------------------------------------------- estimators
def test_iris_with_string_labels(iris):
    X, y = iris
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = fit(X, names, hidden_layer_sizes=(8,))
    label, P = assert_agrees(clf, X)
    assert label.dtype == object and set(label) == set(names)
    assert P.shape == (150, 3)


@pytest.mark.parametrize(
    "classes, dtype",
    [
        (["no", "yes"], object),
        ([3, 7], np.int64),
        ([-1.0, 1.0], np.int64),  # whole numbers, as skl2onnx has float labels
        ([False, True], np.int64),
    ],
)
def test_binary_model_gives_both_columns_and_the_labels(iris, classes, dtype):
    X, y = iris
    labels = np.array(classes)[(y == 2).astype(int)]
    clf = fit(X, labels, hidden_layer_sizes=(6,))
    assert clf.n_outputs_ == 1  # one sigmoid output
    label, P = assert_agrees(clf, X)
    assert label.dtype == dtype and label.shape == (150,)
    assert P.shape == (150, 2) and len(set(label.tolist())) == 2


def test_multilabel_model_gives_indicators(iris):
    X, y = iris
    Y = np.stack([y == 0, y == 2, X[:, 2] > 0.5], axis=1).astype(int)
    clf = fit(X, Y, hidden_layer_sizes=(8,))
    label, P = assert_agrees(clf, X)
    assert label.shape == P.shape == (150, 3) and label.dtype == np.int64
    assert (label.sum(axis=0) > 0).all()


@pytest.mark.parametrize(
    "activation, hidden",
    [("relu", (7, 5)), ("tanh", (7, 5)), ("logistic", (7, 5)), ("identity", (7, 5)), ("relu", ())],
)
def test_every_activation_and_depth(iris, activation, hidden):
    X, y = iris
    clf = fit(X, y, hidden_layer_sizes=hidden, activation=activation, max_iter=80)
    assert len(clf.coefs_) == len(hidden) + 1
    model = to_onnx(clf)
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("MatMul") == len(hidden) + 1
    onnx_op = {"relu": "Relu", "tanh": "Tanh", "logistic": "Sigmoid", "identity": "Identity"}
    if hidden and activation != "identity":
        assert ops.count(onnx_op[activation]) == len(hidden)
    assert_agrees(clf, X)


def test_float64_graph_matches_a_float64_model(iris):
    X, y = iris[0].astype(np.float64), iris[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = MLPClassifier((8,), "tanh", solver="lbfgs", max_iter=50, random_state=0).fit(X, y)
    assert clf.coefs_[0].dtype == np.float64
    model = to_onnx(clf, dtype="float64")
    label, P = run_onnx(model, X, np.float64)
    np.testing.assert_array_equal(label, clf.predict(X))
    np.testing.assert_allclose(P, clf.predict_proba(X), rtol=0, atol=1e-12)


# ----------------------------------------------------------------- skl2onnx registration
def test_pipeline_converts_like_one_ending_in_scikit_learns_mlp(digits):
    X, y = digits[0].astype(np.float32)[:500], digits[1][:500]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = make_pipeline(StandardScaler(), MLPClassifier((16,), max_iter=30, random_state=0))
        ours.fit(X, y)
        theirs = make_pipeline(StandardScaler(), SklearnMLPClassifier((16,), max_iter=5)).fit(X, y)

    def outputs(model):
        return [(o.name, o.type.WhichOneof("value")) for o in model.graph.output]

    onnx_ours = skl2onnx.to_onnx(ours, X[:1])
    assert outputs(onnx_ours) == outputs(skl2onnx.to_onnx(theirs, X[:1]))
    session = ort.InferenceSession(onnx_ours.SerializeToString())
    label, maps = session.run(None, {"X": X})  # zipmap: one {class: probability} per row
    np.testing.assert_array_equal(label, ours.predict(X))
    P = np.array([[row[c] for c in range(10)] for row in maps])
    np.testing.assert_allclose(P, ours.predict_proba(X), rtol=0, atol=TOL)

    clf = ours[-1]
    index_model = skl2onnx.to_onnx(ours, X[:1], options={id(clf): {"zipmap": False, "nocl": True}})
    label, P = ort.InferenceSession(index_model.SerializeToString()).run(None, {"X": X})
    np.testing.assert_array_equal(label, np.searchsorted(clf.classes_, ours.predict(X)))
    np.testing.assert_allclose(P, ours.predict_proba(X), rtol=0, atol=TOL)


# -------------------------------------------------------------------------------- errors
def test_to_onnx_refuses_what_it_cannot_export(iris):
    with pytest.raises(NotFittedError):
        to_onnx(MLPClassifier())
    sklearn_mlp = SklearnMLPClassifier((3,), max_iter=2)
    with pytest.raises(
        TypeError, match=r"takes a fitted handgrad.MLPClassifier.*got sklearn\..*\.MLPClassifier"
    ):
        to_onnx(Bundle(sklearn_mlp))
    clf = fit(*iris, hidden_layer_sizes=(3,), max_iter=5)
    with pytest.raises(ValueError, match="dtype must be float32 or float64, got int64"):
        to_onnx(clf, dtype=np.int64)


def test_export_command_on_a_saved_classifier_and_its_errors(iris, tmp_path, monkeypatch):
    X, y = iris
    model = str(save_model(tmp_path / "clf.safetensors", fit(X, y, hidden_layer_sizes=(5,))))
    result = CliRunner().invoke(
        main, ["export", model, str(tmp_path / "clf.onnx"), "--dtype", "float64"]
    )
    assert result.exit_code == 0, result.output
    label, P = run_onnx(str(tmp_path / "clf.onnx"), X, np.float64)
    clf = load_model(model)
    np.testing.assert_array_equal(label, clf.predict(X))
    np.testing.assert_allclose(P, clf.predict_proba(X), rtol=0, atol=TOL)

    result = CliRunner().invoke(main, ["export", model, str(tmp_path / "no" / "m.onnx")])
    assert result.exit_code == 1
    assert result.output == (
        f"handgrad: error: cannot save to {tmp_path / 'no' / 'm.onnx'}: the folder "
        f"{tmp_path / 'no'} does not exist\n"
    )
    # Without the optional extra: the one line says what to install.
    monkeypatch.setitem(sys.modules, "skl2onnx", None)
    monkeypatch.delitem(sys.modules, "handgrad.export")
    result = CliRunner().invoke(main, ["export", model, str(tmp_path / "m.onnx")])
    assert result.exit_code == 1
    assert result.output == (
        "handgrad: error: ONNX export needs onnx and skl2onnx (skl2onnx is missing): "
        "pip install 'handgrad[onnx]'\n"
    )
    assert not (tmp_path / "m.onnx").exists()


def test_help_does_not_import_onnx():
    code = (
        "import sys; from handgrad.cli import main\n"
        "try: main(['--help'])\n"
        "except SystemExit: pass\n"
        "print(sorted(m for m in ('onnx', 'skl2onnx', 'onnxruntime') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^  export +Write MODEL", done.stdout, re.MULTILINE)
    assert done.stdout.strip().endswith("[]")


# ----------------------------------------------------------------------------- benchmark
def test_latency_benchmark_quick_run(tmp_path, capsys):
    benchmarks = Path(__file__).resolve().parents[1] / "benchmarks"
    spec = importlib.util.spec_from_file_location("_bench_latency", benchmarks / "latency.py")
    latency = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(benchmarks))  # it imports epoch.py beside it
    try:
        spec.loader.exec_module(latency)
        rows = latency.main(["--quick", "--out", str(tmp_path / "latency.json")])
    finally:
        sys.path.remove(str(benchmarks))
    assert {r["candidate"] for r in rows} == {"handgrad", "scikit-learn", "ONNX Runtime"}
    assert all(r["median_us"] > 0 and r["p99_us"] >= r["median_us"] for r in rows)
    assert len(rows) == 3 * 2 * 2  # candidates × rows × methods
    assert "| quick (8→4→3) | 1 | `predict` |" in capsys.readouterr().out
    assert (tmp_path / "latency.json").is_file()
