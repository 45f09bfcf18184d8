"""MLPClassifier's model files: labels of every kind, state that does not fit refused,
and a loaded estimator that continues training exactly as the saved one would have."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from handgrad import MLPClassifier
from handgrad.errors import ModelFileError
from handgrad.modelfile import load_arrays, save_arrays
from handgrad.state import labels_from_json, labels_to_json, load_model, save_model

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


# --------------------------------------------------------------------- model files
@pytest.mark.parametrize(
    "labels",
    [np.array(["b", "a", "c"]), np.array([10, -2, 3]), np.array([True, False, True]), "multilabel"],
)
def test_model_file_round_trip(tmp_path, blobs, labels):
    X, y = blobs
    Y = np.stack([y == 0, y == 1], axis=1).astype(int) if isinstance(labels, str) else labels[y]
    clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=5, random_state=0).fit(X, Y)
    path = save_model(tmp_path / "clf.safetensors", clf)
    back = load_model(path)
    assert isinstance(back, MLPClassifier) and back.get_params() == clf.get_params()
    assert_array_equal(back.classes_, clf.classes_)
    assert back.classes_.dtype.kind == clf.classes_.dtype.kind
    assert_array_equal(back.predict(X), clf.predict(X))
    assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    assert back.loss_curve_ == clf.loss_curve_ and back.n_iter_ == clf.n_iter_
    back.set_params(warm_start=True, max_iter=2).fit(X, Y)  # a loaded model trains on
    assert len(back.loss_curve_) == 7


def test_model_file_with_inconsistent_state_is_refused(tmp_path, blobs):
    X, y = blobs
    clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=2, random_state=0).fit(X, y)
    path = save_model(tmp_path / "clf.safetensors", clf)
    tensors, meta = load_arrays(path)
    meta["classes"]["values"].append(3)  # four labels for a three-output network
    save_arrays(tmp_path / "bad.safetensors", tensors, meta)
    with pytest.raises(ModelFileError, match="does not fit the estimator"):
        load_model(tmp_path / "bad.safetensors")
    meta["classes"]["values"].pop()
    meta["params"]["solver"] = "newton"
    save_arrays(tmp_path / "bad2.safetensors", tensors, meta)
    with pytest.raises(ModelFileError, match="solver"):
        load_model(tmp_path / "bad2.safetensors")


def test_labels_json_refuses_objects_it_cannot_store():
    labels = np.empty(2, dtype=object)
    labels[:] = [(1, 2), (3, 4)]
    with pytest.raises(TypeError, match="strings, integers or booleans"):
        labels_to_json(labels)
    mixed = np.array(["x", "y"], dtype=object)
    back = labels_from_json(labels_to_json(mixed))
    assert back.dtype == object and back.tolist() == ["x", "y"]


def _assert_same_estimator(a: MLPClassifier, b: MLPClassifier) -> None:
    for wa, wb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        assert_array_equal(wa, wb)
    assert a.loss_curve_ == b.loss_curve_ and a.t_ == b.t_ and a.n_iter_ == b.n_iter_


@pytest.mark.parametrize(
    "params",
    [
        dict(solver="adam"),
        dict(solver="sgd", momentum=0.9, learning_rate="adaptive", learning_rate_init=0.05),
        dict(solver="sgd", momentum=0.5, learning_rate="invscaling", nesterovs_momentum=False),
    ],
)
def test_loaded_estimator_continues_bit_for_bit(tmp_path, blobs, params):
    """Optimizer state (momenta, Adam's moments and t, the current learning rate) and the
    shuffling generator travel in the file: partial_fit and a warm-started fit after a
    load do exactly what they would have done without the save."""
    X, y = blobs
    clf = MLPClassifier(hidden_layer_sizes=(6,), batch_size=16, random_state=0, **params)
    for _ in range(3):
        clf.partial_fit(X, y, classes=np.unique(y))
    back = load_model(save_model(tmp_path / "clf.safetensors", clf))
    for est in (clf, back):
        est.partial_fit(X[:60], y[:60])
        est.set_params(warm_start=True, max_iter=4).fit(X, y)
    _assert_same_estimator(back, clf)


def test_loaded_early_stopping_estimator_keeps_its_best_weights(tmp_path, blobs):
    X, y = blobs
    clf = MLPClassifier(
        hidden_layer_sizes=(6,),
        early_stopping=True,
        max_iter=8,
        n_iter_no_change=2,
        random_state=0,
        warm_start=True,
    ).fit(X, y)
    back = load_model(save_model(tmp_path / "clf.safetensors", clf))
    assert back.best_validation_score_ == clf.best_validation_score_
    for est in (clf, back):
        est.set_params(max_iter=5, learning_rate_init=0.5).fit(X, y)  # a new optimizer
    _assert_same_estimator(back, clf)


def test_model_file_state_that_does_not_fit_is_refused(tmp_path, blobs):
    X, y = blobs
    clf = MLPClassifier(
        hidden_layer_sizes=(5,), solver="sgd", momentum=0.9, max_iter=2, random_state=0
    ).fit(X, y)
    tensors, meta = load_arrays(save_model(tmp_path / "clf.safetensors", clf))
    assert {"optim.velocity.W1", "optim.velocity.b2"} <= set(tensors)
    bad = tensors | {"optim.velocity.W1": np.zeros((3, 3))}
    save_arrays(tmp_path / "bad.safetensors", bad, meta)
    with pytest.raises(ModelFileError, match=r"optim\.velocity\.W1 .* fits none"):
        load_model(tmp_path / "bad.safetensors")
    nan = tensors | {"optim.velocity.b1": np.full_like(tensors["b1"], np.nan)}
    save_arrays(tmp_path / "nan.safetensors", nan, meta)
    with pytest.raises(ModelFileError, match="non-finite"):
        load_model(tmp_path / "nan.safetensors")


def test_model_file_without_run_state_is_refused(tmp_path, blobs):
    """Every MLPClassifier file carries the run it continues; one without is refused."""
    X, y = blobs
    clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=2, random_state=0).fit(X, y)
    tensors, meta = load_arrays(save_model(tmp_path / "clf.safetensors", clf))
    del meta["run"], meta["optimizer_params"]
    weights = {k: v for k, v in tensors.items() if "." not in k}
    save_arrays(tmp_path / "old.safetensors", weights, meta)
    with pytest.raises(ModelFileError, match="holds no training run"):
        load_model(tmp_path / "old.safetensors")
