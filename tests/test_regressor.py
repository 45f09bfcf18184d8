"""MLPRegressor: scikit-learn's MLPRegressor parameter for parameter and step for step."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import load_diabetes, make_regression
from sklearn.exceptions import DataConversionWarning
from sklearn.metrics import r2_score
from sklearn.neural_network import MLPRegressor as SkMLPRegressor
from sklearn.utils._param_validation import InvalidParameterError

from handgrad import MLPRegressor

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def data():
    X, y = make_regression(n_samples=90, n_features=4, n_targets=2, noise=0.5, random_state=0)
    y = y / y.std(axis=0)
    return X, y


def test_every_parameter_name_and_default_is_scikit_learns():
    ours, theirs = MLPRegressor().get_params(), SkMLPRegressor().get_params()
    # scikit-learn's, then the two beyond it (issue 27), off by default
    assert ours == theirs | {"dropout": 0.0, "norm": None}
    constraints = dict(MLPRegressor._parameter_constraints)
    assert set(constraints.pop("dropout") + constraints.pop("norm")) >= {None}
    assert constraints == SkMLPRegressor._parameter_constraints


@pytest.mark.parametrize(
    ("params", "match"),
    [
        (dict(loss="absolute_error"), "'loss' parameter"),
        (dict(solver="newton"), "'solver' parameter"),
        (dict(alpha=-1.0), "'alpha' parameter"),
        (dict(validation_fraction=1.0), "'validation_fraction' parameter"),
    ],
)
def test_invalid_parameters_raise_scikit_learns_errors(data, params, match):
    X, y = data
    with pytest.raises(InvalidParameterError, match=match):
        MLPRegressor(**params).fit(X, y[:, 0])


# ---------------------------------------- same steps as scikit-learn, from the same W0
def _both_from_same_start(X, y, sample_weight=None, **params):
    """One of ours and one of scikit-learn's, with the same initial weights W0."""
    common = dict(shuffle=False, random_state=0, warm_start=True, max_iter=1, **params)
    ours = MLPRegressor(**{**common, "learning_rate_init": 1e-300})
    theirs = SkMLPRegressor(**common)
    ours.fit(X, y, sample_weight)  # a step of 1e-300 leaves W0 as it was
    theirs.fit(X, y, sample_weight)
    theirs.coefs_ = [W.copy() for W in ours.coefs_]
    theirs.intercepts_ = [b.copy() for b in ours.intercepts_]
    return ours, theirs


SOLVERS = [
    dict(solver="sgd", momentum=0.9, nesterovs_momentum=True),
    dict(solver="sgd", momentum=0.9, nesterovs_momentum=False),
    dict(solver="sgd", momentum=0.0, learning_rate="invscaling"),
    dict(solver="sgd", momentum=0.5, learning_rate="adaptive", tol=10.0, n_iter_no_change=1),
    dict(solver="adam", activation="tanh"),
    dict(solver="lbfgs", activation="tanh"),
]


@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
@pytest.mark.parametrize("params", SOLVERS)
@pytest.mark.parametrize("weighted", [False, True])
def test_training_follows_scikit_learn_step_for_step(data, loss, params, weighted):
    X, y = data
    y = y[:, 0] if loss == "squared_error" else np.exp(y / 2)  # poisson: two outputs
    w = np.random.default_rng(0).uniform(0.2, 3.0, len(X)) if weighted else None
    params = dict(hidden_layer_sizes=(7, 5), alpha=0.3, batch_size=32, loss=loss, **params)
    ours, theirs = _both_from_same_start(X, y, w, **params)
    for est in (ours, theirs):
        est.set_params(learning_rate_init=0.01, max_iter=6).fit(X, y, w)
    for a, b in zip(
        ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_, strict=True
    ):
        assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    assert_allclose(ours.loss_, theirs.loss_, rtol=1e-9)
    assert ours.n_iter_ == theirs.n_iter_ and ours.t_ == theirs.t_
    if params["solver"] != "lbfgs":  # epoch 1 of ours stood still (the 1e-300 step)
        assert_allclose(ours.loss_curve_[1:], theirs.loss_curve_[1:], rtol=1e-9)
    if params.get("learning_rate") == "adaptive":  # divided by 5 after each plateau
        assert ours.optimizer_.learning_rate == theirs._optimizer.learning_rate == 0.01 / 125
        assert ours.history_.n_no_improvement == theirs._no_improvement_count
    assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_several_squared_error_outputs_take_scikit_learns_steps(data, solver):
    """The steps agree (they descend the sum over outputs), and so does the loss curve,
    which reports the data term's mean over the C outputs as scikit-learn's does."""
    X, y = data
    ours, theirs = _both_from_same_start(X, y, solver=solver, hidden_layer_sizes=(6,), alpha=0.3)
    for est in (ours, theirs):
        est.set_params(learning_rate_init=0.01, max_iter=5).fit(X, y)
    for a, b in zip(ours.coefs_, theirs.coefs_, strict=True):
        assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    if solver != "lbfgs":  # scikit-learn keeps no loss_curve_ for lbfgs
        assert_allclose(ours.loss_curve_[1:], theirs.loss_curve_[1:], rtol=1e-9)
    assert_allclose(ours.loss_, theirs.loss_, rtol=1e-9)
    assert ours.n_iter_ == theirs.n_iter_


@pytest.mark.parametrize("weighted", [False, True])
def test_lbfgs_with_three_outputs_follows_scikit_learns_trajectory(weighted):
    """15 L-BFGS iterations on three squared-error outputs from the same weights: SciPy
    gets scikit-learn's objective (the data term averaged over the outputs too) with
    its gradient (of the sum over outputs), so its line searches, hence the weights,
    agree to 1e-9."""
    X, y = make_regression(n_samples=90, n_features=4, n_targets=3, noise=0.5, random_state=0)
    y = y / y.std(axis=0)
    w = np.random.default_rng(0).uniform(0.2, 3.0, len(X)) if weighted else None
    ours, theirs = _both_from_same_start(
        X, y, w, solver="lbfgs", hidden_layer_sizes=(20,), alpha=0.3
    )
    for est in (ours, theirs):
        est.set_params(max_iter=15).fit(X, y, w)
    assert ours.n_iter_ == theirs.n_iter_ == 15
    for a, b in zip(
        ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_, strict=True
    ):
        assert_allclose(a, b, rtol=1e-9, atol=1e-9)
    assert_allclose(ours.loss_, theirs.loss_, rtol=1e-9)


# ------------------------------------------------------------ the regressor's face
def test_shapes_of_one_and_several_outputs(data):
    X, y = data
    one = MLPRegressor(hidden_layer_sizes=(5,), max_iter=5, random_state=0).fit(X, y[:, 0])
    assert one.predict(X).shape == (90,) and one.n_outputs_ == 1
    assert one.out_activation_ == "identity" and one.coefs_[-1].shape == (5, 1)
    two = MLPRegressor(hidden_layer_sizes=(5,), max_iter=5, random_state=0).fit(X, y)
    assert two.predict(X).shape == (90, 2) and two.n_outputs_ == 2
    with pytest.warns(DataConversionWarning):
        MLPRegressor(max_iter=2).fit(X, y[:, :1])


def test_poisson_predicts_exp_of_the_scores_and_refuses_negative_targets(data):
    X, y = data
    reg = MLPRegressor(loss="poisson", hidden_layer_sizes=(5,), max_iter=5, random_state=0)
    reg.fit(X, np.exp(y[:, 0]))
    assert reg.out_activation_ == "exp"
    assert_allclose(reg.predict(X), np.exp(reg.network_.loss(X).ravel()), rtol=1e-14)
    with pytest.raises(ValueError, match="non-negative for the poisson head"):
        reg.fit(X, y[:, 0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept_end_to_end(data, dtype):
    X, y = data
    reg = MLPRegressor(hidden_layer_sizes=(5,), max_iter=20, random_state=0)
    reg.fit(X.astype(dtype), y)
    assert all(p.dtype == dtype for p in reg.coefs_ + reg.intercepts_)
    assert reg.predict(X.astype(dtype)).dtype == dtype
    ref = clone(reg).fit(X, y)
    if dtype == np.float32:
        assert_allclose(reg.predict(X), ref.predict(X), rtol=1e-3, atol=1e-4)


def test_sample_weight_of_two_is_a_repeated_row(data):
    X, y = data
    params = dict(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=30, random_state=0)
    w = np.ones(len(X))
    w[:10] = 2
    weighted = MLPRegressor(**params).fit(X, y, sample_weight=w)
    repeated = MLPRegressor(**params).fit(np.vstack([X, X[:10]]), np.vstack([y, y[:10]]))
    assert_allclose(weighted.loss_curve_[0], repeated.loss_curve_[0], rtol=1e-12)


def test_early_stopping_scores_r2_on_the_held_out_part(data):
    X, y = data
    reg = MLPRegressor(
        hidden_layer_sizes=(8,), early_stopping=True, max_iter=40, random_state=0
    ).fit(X, y)
    assert reg.best_loss_ is None and len(reg.validation_scores_) == reg.n_iter_
    assert reg.best_validation_score_ == max(reg.validation_scores_)
    X_val, y_val = X[:30], y[:30]  # eval_set, scored every epoch (no early stopping)
    reg2 = MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    reg2.fit(X, y, eval_set=(X_val, y_val))
    assert len(reg2.history_.val_score) == 5
    assert reg2.history_.val_score[-1] == pytest.approx(
        r2_score(y_val, reg2.predict(X_val)), rel=1e-12
    )
    assert reg2.history_.train_score == []  # no running accuracy for a regressor


def test_partial_fit_continues_the_optimizer(data):
    X, y = data
    reg = MLPRegressor(hidden_layer_sizes=(5,), random_state=0)
    for _ in range(3):
        reg.partial_fit(X, y)
    assert (
        reg.n_iter_ == 1 and len(reg.loss_curve_) == 3 and reg.optimizer_.t == 3
    )  # one batch an epoch
    assert not hasattr(MLPRegressor(solver="lbfgs"), "partial_fit")


def test_lbfgs_leaves_t_at_zero(data):
    X, y = data
    reg = MLPRegressor(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=10, random_state=0)
    assert reg.fit(X, y).t_ == 0
    theirs = SkMLPRegressor(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=10, random_state=0)
    assert theirs.fit(X, y).t_ == 0


def test_diabetes_is_learned(data):
    X, y = load_diabetes(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    reg = MLPRegressor(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=200, random_state=0)
    assert reg.fit(X, y).score(X, y) > 0.5
    assert_array_equal(reg.predict(X), reg.predict(X.copy()))


@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
def test_model_file_round_trip_continues_bit_for_bit(data, tmp_path, loss):
    from handgrad.state import load_model, save_model

    X, y = data
    y = y if loss == "squared_error" else np.exp(y)
    reg = MLPRegressor(loss=loss, hidden_layer_sizes=(6,), max_iter=4, random_state=0)
    reg.fit(X.astype(np.float32), y)
    save_model(tmp_path / "reg.safetensors", reg)
    loaded = load_model(tmp_path / "reg.safetensors")
    assert type(loaded) is MLPRegressor and loaded.get_params() == reg.get_params()
    assert_array_equal(loaded.predict(X), reg.predict(X))
    assert loaded.loss_curve_ == reg.loss_curve_ and loaded.out_activation_ == reg.out_activation_
    for est in (reg, loaded):
        est.partial_fit(X.astype(np.float32), y)
    for a, b in zip(reg.coefs_ + reg.intercepts_, loaded.coefs_ + loaded.intercepts_, strict=True):
        assert_array_equal(a, b)
