"""Training that blows up: scikit-learn's ValueError (and its words) where its weights
become non-finite, the last finite weights kept, and a message that says where and what
to do; with early stopping, scikit-learn's quiet end with the best weights."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_iris, make_blobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as SkMLP

from handgrad import MLP, MLPClassifier, MLPRegressor
from handgrad.errors import TrainingDivergedError
from handgrad.optim import LBFGS, SGD
from handgrad.training import Callback, TrainingConfig, fit

# scikit-learn's own overflow on the way to its error
pytestmark = [
    pytest.mark.filterwarnings("ignore::RuntimeWarning:sklearn.*"),
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
]


#: scikit-learn's message, which each of handgrad's begins with (its advice after it)
SCIKIT_LEARNS = (
    "Solver produced non-finite parameter weights. The input data may contain large values "
    "and need to be preprocessed. "
)


@pytest.fixture(scope="module")
def blobs():
    return make_blobs(n_samples=60, centers=3, n_features=4, random_state=0)


def _outcome(est, X, y):
    """("ok", loss_) or ("ValueError", message) of ``est.fit(X, y)``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        try:
            est.fit(X, y)
        except ValueError as exc:
            return "ValueError", str(exc)
    return "ok", est.loss_


def test_the_divergence_error_is_a_value_error():
    assert issubclass(TrainingDivergedError, ValueError)
    assert issubclass(TrainingDivergedError, FloatingPointError)  # as before


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_huge_inputs_end_as_scikit_learns_from_the_same_weights(blobs, solver):
    """X × 1e150, 20 seeds: where scikit-learn's weights become non-finite both raise a
    ValueError (ours keeps finite weights); elsewhere both report the same, finite, loss
    (not one of ~1e150 computed without scikit-learn's clip)."""
    X, y = blobs
    outcomes = []
    for seed in range(20):
        common = dict(
            hidden_layer_sizes=(8,),
            solver=solver,
            random_state=seed,
            shuffle=False,
            warm_start=True,
            max_iter=1,
        )
        ours = MLPClassifier(**common, learning_rate_init=1e-300).fit(X, y)
        theirs = SkMLP(**common).fit(X, y)
        theirs.coefs_ = [W.copy() for W in ours.coefs_]
        theirs.intercepts_ = [b.copy() for b in ours.intercepts_]
        for est in (ours, theirs):
            est.set_params(max_iter=20, learning_rate_init=1e-3)
        (kind, value), (their_kind, their_value) = (
            _outcome(ours, X * 1e150, y),
            _outcome(theirs, X * 1e150, y),
        )
        assert kind == their_kind, (seed, value, their_value)
        assert all(np.isfinite(p).all() for p in ours.coefs_ + ours.intercepts_)
        if kind == "ok":
            assert value == pytest.approx(their_value, rel=1e-9)
        else:
            assert "non-finite" in value and "epoch" in value
        outcomes.append(kind)
    assert set(outcomes) == ({"ValueError"} if solver == "sgd" else {"ok"})


def test_weights_that_overflow_with_a_finite_loss_stop_training():
    """An update that overflows the weights while the loss stays finite (clipped) is
    caught at the end of its epoch; the weights of the epoch before are put back."""
    X, y = make_blobs(n_samples=40, centers=3, n_features=4, random_state=0)
    model = MLP(4, (6,), 3, seed=0)
    before = {k: v.copy() for k, v in model.params.items()}
    with pytest.raises(
        TrainingDivergedError, match=r"non-finite parameter weights in epoch 1"
    ) as info:
        with np.errstate(over="ignore", invalid="ignore"):
            fit(
                model,
                X * 1e306,
                y,
                optimizer=SGD(learning_rate_init=1e10, momentum=0.0),
                config=TrainingConfig(batch_size=40, max_epochs=1),
                seed=0,
            )
    assert (
        str(info.value).startswith(SCIKIT_LEARNS)
        and "lower the learning rate" in str(info.value).lower()
    )
    for k, v in model.params.items():
        np.testing.assert_array_equal(v, before[k])


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_huge_inputs_get_scikit_learns_words_then_handgrads_advice(solver):
    """scikit-learn's test_nonfinite_params, for both kinds of solver: its message
    first, then where it happened and what to do."""
    rng = np.random.RandomState(0)
    X = np.finfo(np.float64).max * rng.uniform(size=(10, 2))
    y = rng.standard_normal(size=10)
    with pytest.raises(ValueError) as info:
        MLPRegressor(solver=solver).fit(X, y)
    message = str(info.value)
    assert message.startswith(SCIKIT_LEARNS)
    where = "in epoch 1 (step 1)" if solver == "adam" else "in L-BFGS iteration 1"
    assert f"The training loss became non-finite {where}" in message
    assert "standardise the inputs" in message


class _Weights(Callback):
    """The weights when training began and at every epoch's end."""

    def on_train_begin(self, run):
        self.params = [{k: v.copy() for k, v in run.model.params.items()}]

    def on_epoch_end(self, run):
        self.params.append({k: v.copy() for k, v in run.model.params.items()})


def test_early_stopping_ends_a_diverging_run_as_scikit_learns():
    """scikit-learn's test_mlp_diverging_loss, and more: no error, the diverged epoch's
    validation score a float NaN, the best weights back, a warning that says so, and a
    run that a lower learning rate continues."""
    X, y = load_iris(return_X_y=True)
    reg = MLPRegressor(
        hidden_layer_sizes=100,
        activation="identity",
        solver="sgd",
        learning_rate_init=1,
        max_iter=20,
        early_stopping=True,
        random_state=0,
        warm_start=True,
    )
    seen = _Weights()
    with pytest.warns(ConvergenceWarning) as caught:
        reg.fit(X, y, callbacks=[seen])
    (message,) = [str(w.message) for w in caught if "non-finite" in str(w.message)]
    assert message.startswith(f"the training loss became non-finite in epoch {reg.n_iter_} ")
    assert "kept the weights of the best validation score" in message
    assert reg.history_.stop_reason == "diverged" and 1 < reg.n_iter_ < 20
    scores = reg.validation_scores_
    assert len(scores) == reg.n_iter_ and isinstance(scores[-1], float) and math.isnan(scores[-1])
    best = int(np.nanargmax(scores))
    assert reg.best_validation_score_ == scores[best]
    for W, name in zip(reg.coefs_, ["W1", "W2"], strict=True):
        np.testing.assert_array_equal(W, seen.params[best + 1][name])
    reg.set_params(learning_rate_init=1e-4, max_iter=3).fit(X, y)  # the run goes on
    assert reg.n_iter_ == 3 and all(np.isfinite(reg.loss_curve_[-3:]))


def test_early_stopping_that_diverges_in_its_first_epoch_keeps_the_start():
    X, y = load_iris(return_X_y=True)
    reg = MLPRegressor(hidden_layer_sizes=(5,), early_stopping=True, random_state=0)
    seen = _Weights()
    with pytest.warns(ConvergenceWarning, match="kept the weights it started from"):
        reg.fit(X * 1e200, y, callbacks=[seen])
    assert reg.n_iter_ == 1 and reg.best_validation_score_ == -np.inf
    assert math.isnan(reg.validation_scores_[0]) and math.isnan(reg.loss_)
    np.testing.assert_array_equal(reg.coefs_[0], seen.params[0]["W1"])


def test_lbfgs_divergence_keeps_the_last_finite_point_and_says_where(blobs):
    X, y = blobs
    model = MLP(4, (8,), 3, seed=0)
    with pytest.raises(TrainingDivergedError, match=r"L-BFGS iteration (\d+)") as info:
        fit(model, X * 1e305, y, optimizer=LBFGS(), config=TrainingConfig(max_epochs=50))
    message = str(info.value)
    assert "standardise the inputs" in message and "last weights with a finite loss" in message
    assert all(np.isfinite(v).all() for v in model.params.values())
    loss, _ = model.loss(X * 1e305, y)
    assert np.isfinite(loss)


def test_lbfgs_divergence_in_the_estimator_leaves_finite_coefs(blobs):
    X, y = blobs
    clf = MLPClassifier(hidden_layer_sizes=(8,), solver="lbfgs", random_state=0)
    with pytest.raises(ValueError, match=r"non-finite in L-BFGS iteration \d+"):
        clf.fit(X * 1e305, y)
    assert all(np.isfinite(p).all() for p in clf.coefs_ + clf.intercepts_)
