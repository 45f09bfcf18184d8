"""The estimator's doors for the command line: ``fit``'s ``rows``/``eval_set`` (a run
trains on row numbers of X, never a copy) and the one pair through which
:mod:`handgrad.state` reads and restores a fitted estimator."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.base import clone
from sklearn.datasets import make_blobs, make_regression

from handgrad import MLPClassifier, MLPRegressor

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _problem(kind):
    if kind == "classifier":
        X, y = make_blobs(n_samples=90, centers=3, n_features=4, random_state=0)
        return MLPClassifier, X, y
    X, y = make_regression(n_samples=90, n_features=4, noise=0.5, random_state=0)
    return MLPRegressor, X, y / y.std()


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
@pytest.mark.parametrize("early_stopping", [False, True])
def test_rows_and_held_out_rows_fit_as_the_rows_copied(kind, early_stopping):
    Est, X, y = _problem(kind)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(X))
    rows, held_out = order[:70], order[70:]
    params = dict(hidden_layer_sizes=(7,), max_iter=4, random_state=0)
    params |= dict(early_stopping=early_stopping)
    by_rows = Est(**params).fit(X, y, rows=rows, eval_set=held_out)
    copied = Est(**params).fit(X[rows], y[rows], eval_set=(X[held_out], y[held_out]))
    ours, theirs = by_rows.coefs_ + by_rows.intercepts_, copied.coefs_ + copied.intercepts_
    for a, b in zip(ours, theirs, strict=True):
        assert_array_equal(a, b)
    assert by_rows.history_.val_score == copied.history_.val_score
    assert len(by_rows.history_.val_score) == 4
    assert by_rows.loss_curve_ == copied.loss_curve_


def test_rows_without_held_out_rows_train_those_rows_only():
    Est, X, y = _problem("classifier")
    rows = np.arange(0, 90, 2)
    params = dict(hidden_layer_sizes=(5,), max_iter=3, random_state=0)
    by_rows = Est(**params).fit(X, y, rows=rows)
    copied = Est(**params).fit(X[rows], y[rows])
    assert_array_equal(by_rows.coefs_[0], copied.coefs_[0])
    assert by_rows.history_.val_score == []


@pytest.mark.parametrize(
    ("params", "eval_set", "match"),
    [
        (
            dict(early_stopping=True),
            None,
            r"with rows, eval_set must be the held-out row numbers of X \(an array of int\) "
            "for early stopping, got NoneType",
        ),
        ({}, "pair", r"with rows, eval_set must be the held-out row numbers of X .*got tuple"),
    ],
)
def test_rows_take_held_out_rows_only(params, eval_set, match):
    Est, X, y = _problem("classifier")
    if eval_set == "pair":
        eval_set = (X[:5], y[:5])
    with pytest.raises(ValueError, match=match):
        Est(max_iter=2, **params).fit(X, y, rows=np.arange(50), eval_set=eval_set)


def test_a_row_number_outside_X_is_refused():
    Est, X, y = _problem("classifier")
    with pytest.raises(ValueError, match="rows"):
        Est(max_iter=2).fit(X, y, rows=np.array([0, 1, 90]))


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_the_fitted_state_restores_an_equal_estimator(kind):
    Est, X, y = _problem(kind)
    est = Est(hidden_layer_sizes=(6, 4), max_iter=5, random_state=0).fit(X, y)
    state = est._get_fitted_state()
    assert set(state) == {"run", "optimizer_params"} | (
        {"label_binarizer"} if kind == "classifier" else set()
    )
    back = clone(est)
    back.n_features_in_ = est.n_features_in_
    back._set_fitted_state(state)
    assert_array_equal(back.predict(X), est.predict(X))
    assert (back.n_outputs_, back.n_layers_, back.out_activation_) == (
        est.n_outputs_,
        est.n_layers_,
        est.out_activation_,
    )
    if kind == "classifier":
        assert_array_equal(back.classes_, [0, 1, 2])


def test_a_state_whose_network_does_not_fit_is_refused():
    Est, X, y = _problem("classifier")
    est = Est(hidden_layer_sizes=(6,), max_iter=2, random_state=0).fit(X, y)
    other = Est(hidden_layer_sizes=(5,))
    other.n_features_in_ = 4
    with pytest.raises(ValueError, match=r"does not fit the estimator: it needs layer sizes "):
        other._set_fitted_state(est._get_fitted_state())
    assert not hasattr(other, "_run") and not hasattr(other, "classes_")
