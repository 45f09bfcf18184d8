"""Training that blows up: scikit-learn's ValueError where its weights become
non-finite, the last finite weights kept, and a message that says where and what to do."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as SkMLP

from handgrad import MLP, MLPClassifier
from handgrad.errors import TrainingDivergedError
from handgrad.optim import LBFGS, SGD
from handgrad.training import TrainingConfig, fit

# scikit-learn's own overflow on the way to its error
pytestmark = [
    pytest.mark.filterwarnings("ignore::RuntimeWarning:sklearn.*"),
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
]


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
    with pytest.raises(TrainingDivergedError, match=r"non-finite parameter weights in epoch 1"):
        with np.errstate(over="ignore", invalid="ignore"):
            fit(
                model,
                X * 1e306,
                y,
                optimizer=SGD(learning_rate_init=1e10, momentum=0.0),
                config=TrainingConfig(batch_size=40, max_epochs=1),
                seed=0,
            )
    for k, v in model.params.items():
        np.testing.assert_array_equal(v, before[k])


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
