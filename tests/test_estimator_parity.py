"""The last differences from scikit-learn's estimators (issue 14), each compared with
scikit-learn itself, for the classifier and the regressor alike."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import make_blobs, make_regression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SkMLPClassifier
from sklearn.neural_network import MLPRegressor as SkMLPRegressor

from handgrad import MLPClassifier, MLPRegressor
from handgrad._parameters import seed_sequence

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _problem(kind):
    if kind == "classifier":
        X, y = make_blobs(n_samples=80, centers=3, n_features=4, random_state=0)
        return MLPClassifier, SkMLPClassifier, X, y
    X, y = make_regression(n_samples=80, n_features=4, noise=0.5, random_state=0)
    return MLPRegressor, SkMLPRegressor, X, y / y.std()


def _from_same_weights(kind, **params):
    """Ours and scikit-learn's, fitted once (warm_start) and then given the same
    weights: the next fit of each starts from the same point."""
    Ours, Theirs, X, y = _problem(kind)
    common = dict(hidden_layer_sizes=(6,), shuffle=False, random_state=0, warm_start=True)
    ours = Ours(**common, **params, max_iter=1).fit(X, y)
    theirs = Theirs(**common, **params, max_iter=1).fit(X, y)
    ours.coefs_, ours.intercepts_ = theirs.coefs_, theirs.intercepts_  # 14.4: assignable
    return ours, theirs, X, y


def _assert_same(ours, theirs, rtol=1e-9):
    for a, b in zip(
        ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_, strict=True
    ):
        assert_allclose(a, b, rtol=rtol, atol=1e-12)
    assert_allclose(ours.loss_curve_[1:], theirs.loss_curve_[1:], rtol=rtol)


# ------------------------------------------------------- 14.1 warm_start's optimizer
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
@pytest.mark.parametrize(
    "params",
    [
        dict(solver="sgd", momentum=0.9, learning_rate_init=0.05),
        dict(solver="sgd", learning_rate="adaptive", tol=10.0, n_iter_no_change=1),
        dict(solver="adam", learning_rate_init=0.02),
    ],
)
def test_warm_started_fit_restarts_the_optimizer_as_scikit_learn(kind, params):
    ours, theirs, X, y = _from_same_weights(kind, **params)
    for _ in range(3):  # each warm fit: fresh momentum / Adam moments / learning rate
        for est in (ours, theirs):
            est.set_params(max_iter=4).fit(X, y)
        _assert_same(ours, theirs)
    if params["solver"] == "sgd":  # (scikit-learn's Adam reports its bias-corrected step)
        assert ours.optimizer_.learning_rate == theirs._optimizer.learning_rate
    for _ in range(3):  # partial_fit continues the optimizer of the last fit
        for est in (ours, theirs):
            est.partial_fit(X, y, **({"classes": np.unique(y)} if kind == "classifier" else {}))
        _assert_same(ours, theirs)
    assert ours.t_ == theirs.t_


# ------------------------------------------------ 14.3 a class too small to stratify
def test_early_stopping_with_a_one_member_class_raises_scikit_learns_error():
    X, y = make_blobs(n_samples=40, centers=2, n_features=3, random_state=0)
    y = np.where(np.arange(40) == 0, 1, 0)  # binary, class 1 has one member
    with pytest.raises(ValueError) as theirs:
        SkMLPClassifier(early_stopping=True, max_iter=3).fit(X, y)
    assert "The least populated classes in y have only 1 member" in str(theirs.value)
    with pytest.raises(ValueError) as ours:
        MLPClassifier(early_stopping=True, max_iter=3).fit(X, y)
    assert str(ours.value) == str(theirs.value)


def _fit_on_plain_split(est, X, y):
    """``est`` fitted on the rows that scikit-learn's ``train_test_split``, not
    stratified, holds out with the estimator's own split seed, given as ``rows`` and
    ``eval_set``: the same fit as ``fit(X, y)`` where early stopping splits that way."""
    seed = int(seed_sequence(est.random_state).spawn(3)[2].generate_state(1)[0])
    rows, held_out = train_test_split(
        np.arange(len(X)), test_size=est.validation_fraction, random_state=seed
    )
    return est.fit(X, y, rows=rows, eval_set=held_out), held_out


def _assert_same_fit(a, b):
    assert_array_equal(a.validation_scores_, b.validation_scores_)
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        assert_array_equal(p, q)


def test_multiclass_early_stopping_split_is_not_stratified_as_scikit_learn():
    X, y = make_blobs(n_samples=40, centers=2, n_features=3, random_state=0)
    y[0] = 2  # a third class of one member: scikit-learn does not stratify, nor do we
    SkMLPClassifier(early_stopping=True, max_iter=3).fit(X, y)  # no error
    params = dict(early_stopping=True, max_iter=3, random_state=0)
    ours = MLPClassifier(**params).fit(X, y)
    plain, held_out = _fit_on_plain_split(MLPClassifier(**params), X, y)
    _assert_same_fit(ours, plain)
    assert len(held_out) == 4 and len(ours.validation_scores_) == 3


def test_regressor_early_stopping_split_is_never_stratified():
    _, _, X, y = _problem("regressor")
    params = dict(early_stopping=True, max_iter=3, random_state=0)
    ours = MLPRegressor(**params).fit(X, y)
    plain, held_out = _fit_on_plain_split(MLPRegressor(**params), X, y)
    _assert_same_fit(ours, plain)
    assert len(held_out) == 8 and len(ours.validation_scores_) == 3


# --------------------------------------------------------- 14.4 setting the weights
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_assigned_weights_predict_as_scikit_learn(kind):
    Ours, Theirs, X, y = _problem(kind)
    theirs = Theirs(hidden_layer_sizes=(5, 4), max_iter=30, random_state=1).fit(X, y)
    ours = Ours(hidden_layer_sizes=(5, 4), max_iter=1, random_state=0).fit(X, y)
    ours.coefs_ = theirs.coefs_
    ours.intercepts_ = [list(b) for b in theirs.intercepts_]  # any array-like
    assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-14)
    ours.coefs_[0] = np.zeros_like(theirs.coefs_[0])  # one layer at a time
    assert not ours.network_.params["W1"].any()


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ("same-but-one-wrong-shape", ValueError, r"coefs_\[1\] must have shape \(6, 3\)"),
        ("one-missing", ValueError, "must have 2 arrays"),
        ("nan", ValueError, r"coefs_\[0\] must be finite"),
        ("strings", TypeError, r"coefs_\[0\] must hold real numbers"),
        ("an-array", TypeError, "must be a list of 2 arrays"),
        ("float32-overflow", ValueError, r"coefs_\[0\] must be finite in float32"),
    ],
)
def test_assigned_weights_are_checked_and_nothing_is_half_written(value, error, match):
    _, _, X, y = _problem("classifier")
    clf = MLPClassifier(hidden_layer_sizes=(6,), max_iter=2, random_state=0)
    clf.fit(X.astype(np.float32) if value == "float32-overflow" else X, y)
    before = [W.copy() for W in clf.coefs_]
    good = [np.ones_like(W) for W in before]
    bad = {
        "same-but-one-wrong-shape": [good[0], np.ones((6, 2))],
        "one-missing": good[:1],
        "nan": [np.full_like(good[0], np.nan), good[1]],
        "strings": [np.full(good[0].shape, "a"), good[1]],
        "an-array": good[0],
        "float32-overflow": [np.full(good[0].shape, 1e300), good[1]],
    }[value]
    with pytest.raises(error, match=match):
        clf.coefs_ = bad
    for a, b in zip(clf.coefs_, before, strict=True):
        assert_array_equal(a, b)


def test_weights_assigned_before_fit_wait_for_the_network():
    reg = MLPRegressor()
    with pytest.raises(AttributeError, match="it is set by fit"):
        reg.coefs_  # noqa: B018 (nothing assigned, nothing fitted)
    reg.coefs_ = [np.ones((2, 2))]  # as scikit-learn: kept, checked when the network is built
    assert len(reg.coefs_) == 1 and reg.coefs_[0].shape == (2, 2)


# ----------------------------------------------------------------- 14.5 L-BFGS's t_
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_lbfgs_leaves_t_at_zero_as_scikit_learn(kind):
    Ours, Theirs, X, y = _problem(kind)
    params = dict(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=15, random_state=0)
    ours, theirs = Ours(**params).fit(X, y), Theirs(**params).fit(X, y)
    assert ours.t_ == theirs.t_ == 0
    ours.set_params(warm_start=True).fit(X, y)
    assert ours.t_ == 0
