"""MLPClassifier: scikit-learn's contract, its semantics step for step, and its extras."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import load_digits, make_multilabel_classification
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.neural_network import MLPClassifier as SkMLP
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from handgrad import MLPClassifier

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.25, stratify=y, random_state=0)


# ----------------------------------------------------------------- the signature
def test_every_parameter_name_and_default_is_scikit_learns():
    ours = inspect.signature(MLPClassifier).parameters
    theirs = inspect.signature(SkMLP).parameters
    # scikit-learn's, in its order, then the two beyond it (issue 27), off by default
    assert list(ours) == [*theirs, "dropout", "norm"]
    assert (ours["dropout"].default, ours["norm"].default) == (0.0, None)
    for name, p in theirs.items():
        assert ours[name].default == p.default, name
        assert ours[name].kind == p.kind, name


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"solver": "newton"}, "'solver' parameter of MLPClassifier must be a str among"),
        ({"alpha": -1.0}, "'alpha' parameter of MLPClassifier must be a float in the range"),
        ({"batch_size": 0}, "'batch_size' parameter"),
        ({"momentum": 1.5}, "'momentum' parameter"),
        ({"learning_rate": "cosine"}, "'learning_rate' parameter"),
        ({"max_iter": 0}, "'max_iter' parameter"),
    ],
)
def test_invalid_parameters_raise_scikit_learns_errors(blobs, params, match):
    X, y = blobs
    with pytest.raises(InvalidParameterError, match=match):
        MLPClassifier(**params).fit(X, y)


def test_non_positive_hidden_size_is_named(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match=r"hidden_layer_sizes must be positive .*\[3, 0\]"):
        MLPClassifier(hidden_layer_sizes=[3, 0]).fit(X, y)


# ---------------------------------------- same steps as scikit-learn, from the same W0
def _both_from_same_start(X, y, sample_weight=None, **params):
    """One of ours and one of scikit-learn's, with the same initial weights W0."""
    common = dict(shuffle=False, random_state=0, warm_start=True, max_iter=1, **params)
    ours = MLPClassifier(**{**common, "learning_rate_init": 1e-300})
    theirs = SkMLP(**common)
    ours.fit(X, y, sample_weight)  # a step of 1e-300 leaves W0 as it was
    theirs.fit(X, y, sample_weight)
    theirs.coefs_ = [W.copy() for W in ours.coefs_]
    theirs.intercepts_ = [b.copy() for b in ours.intercepts_]
    return ours, theirs


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("multiclass", dict(solver="sgd", momentum=0.9, nesterovs_momentum=True)),
        (
            "multiclass",
            dict(solver="sgd", momentum=0.5, nesterovs_momentum=False, learning_rate="invscaling"),
        ),
        ("binary", dict(solver="adam", activation="tanh")),
        ("multilabel", dict(solver="adam", activation="logistic")),
        ("weighted", dict(solver="sgd", momentum=0.0)),
        ("multiclass", dict(solver="lbfgs", activation="tanh")),
    ],
)
def test_training_follows_scikit_learn_step_for_step(blobs, kind, params):
    X, y = blobs
    w = None
    if kind == "binary":
        y = np.where(y == 1, "yes", "no")
    elif kind == "multilabel":
        y = np.stack([y == 0, y != 1, y == 2], axis=1).astype(int)
    elif kind == "weighted":
        w = np.random.default_rng(0).uniform(0.2, 3.0, len(y))
    params = dict(hidden_layer_sizes=(7, 5), alpha=0.3, batch_size=32, **params)
    ours, theirs = _both_from_same_start(X, y, w, **params)
    for est in (ours, theirs):
        est.set_params(learning_rate_init=0.05, max_iter=6).fit(X, y, w)
    rtol = 1e-6 if params["solver"] == "lbfgs" else 1e-9
    for a, b in zip(
        ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_, strict=True
    ):
        assert_allclose(a, b, rtol=rtol, atol=1e-12)
    assert_allclose(ours.loss_, theirs.loss_, rtol=rtol)
    assert ours.n_iter_ == theirs.n_iter_
    if params["solver"] != "lbfgs":
        assert_allclose(ours.loss_curve_[1:], theirs.loss_curve_[1:], rtol=1e-9)
        assert ours.t_ == theirs.t_
    assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-6, atol=1e-12)


# ---------------------------------------------------------------- heads and labels
def test_binary_string_labels_use_one_sigmoid_output(blobs):
    X, y = blobs
    labels = np.where(y == 0, "cat", "dog")
    clf = MLPClassifier(hidden_layer_sizes=(8,), solver="lbfgs", random_state=0).fit(X, labels)
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 1
    assert_array_equal(clf.classes_, ["cat", "dog"])
    assert clf.coefs_[-1].shape == (8, 1)
    P = clf.predict_proba(X)
    assert P.shape == (len(X), 2)
    assert_allclose(P.sum(axis=1), 1.0)
    assert_array_equal(clf.predict(X), clf.classes_[P.argmax(axis=1)])
    assert_allclose(clf.predict_log_proba(X), np.log(P))
    assert clf.score(X, labels) > 0.95


def test_multiclass_non_contiguous_labels(blobs):
    X, y = blobs
    labels = np.array([7, -3, 100])[y]
    clf = MLPClassifier(hidden_layer_sizes=(8,), solver="lbfgs", random_state=0).fit(X, labels)
    assert clf.out_activation_ == "softmax" and clf.n_outputs_ == 3
    assert_array_equal(clf.classes_, [-3, 7, 100])
    assert set(clf.predict(X)) <= {-3, 7, 100}
    assert clf.score(X, labels) > 0.95
    assert clf.n_layers_ == 3 and clf.n_features_in_ == 4


def test_multilabel_uses_sigmoid_outputs():
    X, Y = make_multilabel_classification(n_samples=150, n_features=6, n_classes=4, random_state=0)
    X = StandardScaler().fit_transform(X)
    clf = MLPClassifier(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=200, random_state=0).fit(
        X, Y
    )
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 4
    P = clf.predict_proba(X)
    assert P.shape == (150, 4) and ((P >= 0) & (P <= 1)).all()
    assert_array_equal(clf.predict(X), (P > 0.5).astype(int))
    assert clf.score(X, Y) > 0.88  # subset accuracy


# ------------------------------------------------------------ determinism, dtypes
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_random_state_is_bit_identical(blobs, dtype):
    X, y = blobs[0].astype(dtype), blobs[1]
    params = dict(
        hidden_layer_sizes=(6,),
        max_iter=15,
        random_state=3,
        early_stopping=True,
        validation_fraction=0.2,
    )
    a, b = MLPClassifier(**params).fit(X, y), MLPClassifier(**params).fit(X, y)
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        assert p.dtype == dtype and p.tobytes() == q.tobytes()
    assert a.loss_curve_ == b.loss_curve_ and a.validation_scores_ == b.validation_scores_
    c = MLPClassifier(**{**params, "random_state": 4}).fit(X, y)
    assert not np.array_equal(a.coefs_[0], c.coefs_[0])


@pytest.mark.parametrize(
    ("in_dtype", "net_dtype"),
    [(np.float32, np.float32), (np.float64, np.float64), (np.int64, np.float64)],
)
def test_dtype_is_kept_end_to_end(blobs, in_dtype, net_dtype):
    X, y = (blobs[0] * 10).astype(in_dtype), blobs[1]
    clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0).fit(X, y)
    assert all(W.dtype == net_dtype for W in clf.coefs_ + clf.intercepts_)
    assert clf.predict_proba(X).dtype == net_dtype
    assert clf.predict_proba(X.astype(np.float64)).dtype == net_dtype


def test_coefs_are_views_of_the_network(blobs):
    X, y = blobs
    clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0).fit(X, y)
    assert np.shares_memory(clf.coefs_[0], clf.network_.params["W1"])
    before = clf.predict_proba(X)
    clf.intercepts_[-1][0] += 5.0
    assert (clf.predict_proba(X)[:, 0] > before[:, 0]).all()
    assert not hasattr(MLPClassifier(), "coefs_")


# ------------------------------------------- weights assigned before fit (test_fit's)
_SGD = dict(hidden_layer_sizes=(5,), solver="sgd", shuffle=False, random_state=0)


def _weights(seed=1):
    rng = np.random.default_rng(seed)
    W = [rng.standard_normal((4, 5)), rng.standard_normal((5, 3))]
    return W, [rng.standard_normal(5), rng.standard_normal(3)]


def test_weights_assigned_before_fit_are_where_warm_start_and_partial_fit_begin(blobs):
    """As scikit-learn: a warm-started fit, or partial_fit, starts from them; the same
    steps as from the same weights assigned to a fitted estimator."""
    X, y = blobs
    W, b = _weights()
    reference = MLPClassifier(**_SGD, max_iter=3, warm_start=True).fit(X, y)
    reference.coefs_, reference.intercepts_ = W, b
    reference.fit(X, y)  # a fresh optimizer from (W, b), as a warm start's
    clf = MLPClassifier(**_SGD, max_iter=3, warm_start=True)
    clf.coefs_ = [0, 0]
    clf.coefs_[0], clf.coefs_[1] = W  # a layer at a time, as scikit-learn's test_fit
    clf.intercepts_ = b
    clf.fit(X, y)
    ours, theirs = clf.coefs_ + clf.intercepts_, reference.coefs_ + reference.intercepts_
    for a, c in zip(ours, theirs, strict=True):
        assert_array_equal(a, c)
    assert clf.n_iter_ == 3 and not np.array_equal(clf.coefs_[0], W[0])
    one = MLPClassifier(**_SGD, max_iter=1, warm_start=True)
    part = MLPClassifier(**_SGD)
    for est in (one, part):
        est.coefs_, est.intercepts_ = W, b
    one.fit(X, y)
    part.partial_fit(X, y, classes=[0, 1, 2])
    for a, c in zip(part.coefs_ + part.intercepts_, one.coefs_ + one.intercepts_, strict=True):
        assert_array_equal(a, c)
    plain = MLPClassifier(**_SGD, max_iter=2)  # a plain fit draws its own, as scikit-learn
    plain.coefs_ = W
    plain.fit(X, y)
    assert_array_equal(plain.coefs_[0], MLPClassifier(**_SGD, max_iter=2).fit(X, y).coefs_[0])


@pytest.mark.parametrize(
    ("case", "error", "match"),
    [
        ("other-width", ValueError, r"coefs_\[0\] must have shape \(4, 5\), got \(3, 5\)"),
        ("one-missing", ValueError, r"coefs_ must have 2 arrays \(one per layer\), got 1"),
        ("nan", ValueError, r"coefs_\[1\] must be finite in float64"),
        ("float32-overflow", ValueError, r"coefs_\[0\] must be finite in float32"),
        ("strings", TypeError, r"coefs_\[0\] must hold real numbers"),
        ("unset-layer", ValueError, r"coefs_\[1\] must have shape \(5, 3\), got \(\)"),
    ],
)
def test_weights_assigned_before_fit_are_checked_when_the_network_is_built(
    blobs, case, error, match
):
    X, y = blobs
    W, _ = _weights()
    bad = {
        "other-width": [np.ones((3, 5)), W[1]],
        "one-missing": W[:1],
        "nan": [W[0], np.full((5, 3), np.nan)],
        "float32-overflow": [np.full((4, 5), 1e300), W[1]],
        "strings": [np.full((4, 5), "a"), W[1]],
        "unset-layer": [W[0], 0],
    }[case]
    X = X.astype(np.float32) if case == "float32-overflow" else X
    clf = MLPClassifier(**_SGD)
    clf.coefs_ = bad
    with pytest.raises(error, match=match):
        clf.partial_fit(X, y, classes=[0, 1, 2])
    assert clf.coefs_ == bad and not hasattr(clf, "network_")  # kept, to be put right
    clf.coefs_ = W
    clf.partial_fit(X, y)
    assert clf.network_.layer_sizes == (4, 5, 3)


def test_weights_assigned_before_fit_are_a_list_and_no_fitted_model(blobs):
    X, _ = blobs
    clf = MLPClassifier(**_SGD)
    with pytest.raises(TypeError, match="coefs_ must be a list of arrays, one per layer"):
        clf.coefs_ = np.ones((4, 5))
    clf.coefs_, clf.intercepts_ = _weights()
    clf.n_features_in_, clf.n_outputs_, clf.out_activation_ = 4, 3, "softmax"
    with pytest.raises(NotFittedError, match="is not fitted yet"):  # until fit builds it
        clf.predict(X)


# --------------------------------------------------- fitted state, stopping, warnings
def test_max_iter_reached_warns_like_scikit_learn(blobs):
    X, y = blobs
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(3\) reached"):
        MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0).fit(X, y)


def test_loss_stopping_sets_scikit_learn_attributes(blobs):
    X, y = blobs
    clf = MLPClassifier(hidden_layer_sizes=(5,), tol=10.0, n_iter_no_change=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf.fit(X, y)
    assert clf.n_iter_ == 4 and len(clf.loss_curve_) == 4  # 3 epochs without improvement
    assert clf.best_loss_ == min(clf.loss_curve_) and clf.loss_ == clf.loss_curve_[-1]
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None
    assert clf.t_ == 4 * len(X)


def test_early_stopping_attributes(blobs):
    X, y = blobs
    clf = MLPClassifier(
        hidden_layer_sizes=(5,),
        early_stopping=True,
        max_iter=40,
        n_iter_no_change=5,
        learning_rate_init=0.01,
        random_state=0,
    ).fit(X, y)
    assert clf.best_loss_ is None
    assert len(clf.validation_scores_) == clf.n_iter_ == len(clf.loss_curve_)
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.t_ == clf.n_iter_ * 108  # 10% of 120 rows held out


def test_partial_fit_in_chunks_reaches_fit_accuracy(digits):
    X_tr, X_te, y_tr, y_te = digits
    params = dict(hidden_layer_sizes=(32,), learning_rate_init=0.01, random_state=0)
    full = MLPClassifier(max_iter=20, **params).fit(X_tr, y_tr)
    chunked = MLPClassifier(**params)
    order = np.random.default_rng(0).permutation(len(X_tr))
    for epoch in range(20):
        for chunk in np.array_split(order, 4):
            chunked.partial_fit(
                X_tr[chunk], y_tr[chunk], classes=np.arange(10) if epoch == 0 else None
            )
    assert chunked.n_iter_ == 1 and len(chunked.loss_curve_) == 80
    assert chunked.score(X_te, y_te) >= full.score(X_te, y_te) - 0.02
    assert full.score(X_te, y_te) > 0.93


def test_partial_fit_contract(blobs):
    X, y = blobs
    clf = MLPClassifier(hidden_layer_sizes=(5,), random_state=0)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[y < 2], y[y < 2], classes=[0, 1, 2, 9])
    assert_array_equal(clf.classes_, [0, 1, 2, 9]) and clf.n_outputs_ == 4
    with pytest.raises(ValueError, match=r"labels \[5\] that are not in classes_"):
        clf.partial_fit(X, np.where(y == 2, 5, y))
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        MLPClassifier(early_stopping=True).partial_fit(X, y, classes=[0, 1, 2])


def test_warm_start_continues_the_same_run(blobs):
    """The weights, shuffling generator and loss curve go on; the optimizer starts
    afresh on every fit, as scikit-learn's (partial_fit continues it)."""
    X, y = blobs
    clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, warm_start=True, random_state=0)
    clf.fit(X, y)
    run, optimizer, t = clf._run, clf.optimizer_, clf.optimizer_.t
    clf.fit(X, y)
    assert clf._run is run and clf.optimizer_ is not optimizer and clf.optimizer_.t == t
    assert len(clf.loss_curve_) == 6 and clf.n_iter_ == 3
    clf.partial_fit(X, y)
    assert clf.optimizer_.t == t + t // 3
    clf.set_params(learning_rate_init=0.1).fit(X, y)  # a solver parameter changed
    assert clf.optimizer_.learning_rate == 0.1
    with pytest.raises(ValueError, match="warm_start can only be used where `y` has the same"):
        clf.fit(X, np.where(y == 2, 1, y))


def test_refit_without_warm_start_starts_afresh(blobs):
    X, y = blobs
    clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0)
    first = clf.fit(X, y).coefs_[0].copy()
    assert_array_equal(clf.fit(X, y).coefs_[0], first)
    assert len(clf.loss_curve_) == 3


# ------------------------------------------------------------- scikit-learn tools
def test_pipeline_gridsearch_cross_val_clone(blobs):
    X, y = blobs
    pipe = make_pipeline(
        StandardScaler(), MLPClassifier(hidden_layer_sizes=(6,), solver="lbfgs", random_state=0)
    )
    grid = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1e-1]}, cv=3).fit(X, y)
    assert grid.best_score_ > 0.9
    assert cross_val_score(pipe, X, y, cv=3).mean() > 0.9
    twin = clone(grid.best_estimator_)
    assert twin.get_params()["mlpclassifier__alpha"] == grid.best_params_["mlpclassifier__alpha"]
    assert not hasattr(twin[-1], "classes_")


# ------------------------------------- fit's eval_set, callbacks and resume (the CLI's)
def test_fit_passes_callbacks_and_resumes_a_run_bit_for_bit(blobs):
    import copy

    from handgrad.training import Callback

    X, y = blobs
    params = dict(
        hidden_layer_sizes=(6,), max_iter=6, batch_size=32, random_state=0, n_iter_no_change=100
    )
    whole = MLPClassifier(**params).fit(X, y)

    class StopAt3(Callback):
        def on_train_begin(self, run):
            # the estimator shows the run before the loop starts
            self.same = run.model is est.network_ and run.history is est.history_
            self.run = run

        def on_epoch_end(self, run):
            return run.history.epochs == 3

    est, stop = MLPClassifier(**params), StopAt3()
    est.fit(X, y, callbacks=[stop])
    assert stop.same and est.n_iter_ == 3
    resumed = MLPClassifier(**params).fit(X, y, resume=copy.deepcopy(stop.run))
    assert resumed.n_iter_ == 3 and len(resumed.loss_curve_) == 6
    for a, b in zip(
        resumed.coefs_ + resumed.intercepts_, whole.coefs_ + whole.intercepts_, strict=True
    ):
        assert a.tobytes() == b.tobytes()
    assert_array_equal(resumed.predict(X), whole.predict(X))


def test_fit_scores_an_eval_set():
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    Xv, yv = X[::5], y[::5]
    clf = MLPClassifier(
        hidden_layer_sizes=(8,), max_iter=5, n_iter_no_change=np.inf, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y, eval_set=(Xv, yv))
    history = clf.history_
    assert len(history.val_score) == 5 and clf.n_iter_ == 5
    assert history.val_score[-1] == pytest.approx(clf.score(Xv, yv))
    with pytest.raises(ValueError, match=r"y_val has labels \[7\]"):
        MLPClassifier(max_iter=1).fit(X, y, eval_set=(Xv, np.full(len(yv), 7)))
    with pytest.raises(ValueError, match="features"):
        MLPClassifier(max_iter=1).fit(X, y, eval_set=(Xv[:, :2], yv))


def test_warm_start_cast_to_float32_that_overflows_is_refused():
    X = np.random.default_rng(0).standard_normal((20, 3)).astype(np.float32)
    y = np.arange(20) % 2
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)
        big = X.astype(np.float64)
        big[3, 1] = 1e300  # finite in float64, infinite once cast to the network's float32
        with pytest.raises(ValueError, match="infinity"):
            clf.fit(big, y)
