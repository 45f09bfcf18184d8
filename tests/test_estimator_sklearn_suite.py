"""scikit-learn's own tests of its neural_network estimators, run on handgrad's.

Each test listed below is scikit-learn's ``sklearn/neural_network/tests/test_mlp.py``
function itself, with that module's ``MLPClassifier`` and ``MLPRegressor`` swapped for
handgrad's: the same data, the same assertions. Left out are the tests that poke
scikit-learn's private helpers (``_loss_grad_lbfgs``, ``_optimizer``,
``_no_improvement_count``); those facts are ported below
with handgrad's public reads (``optimizer_``, ``history_.n_no_improvement``), on fewer
epochs where scikit-learn's take thousands. Left out for time only:
``test_partial_fit_classification`` (hundreds of ``partial_fit`` calls; the same fact is
``test_partial_fit_in_chunks_reaches_fit_accuracy`` in test_estimator.py). Skipped
where the installed scikit-learn ships without its tests.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import handgrad.estimator as estimator
from handgrad import MLPClassifier

sk_tests = pytest.importorskip("sklearn.neural_network.tests.test_mlp")

pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning", "ignore::RuntimeWarning"
)

#: What a user can rely on, scikit-learn's words for it.
PORTED = [
    "test_alpha",
    "test_lbfgs_classification",
    "test_lbfgs_regression",
    "test_lbfgs_classification_maxfun",
    "test_lbfgs_regression_maxfun",
    "test_multilabel_classification",
    "test_multioutput_regression",
    "test_partial_fit_classes_error",
    "test_partial_fit_unseen_classes",
    "test_partial_fit_regression",
    "test_partial_fit_errors",
    "test_predict_proba_binary",
    "test_predict_proba_multiclass",
    "test_predict_proba_multilabel",
    "test_shuffle",
    "test_sparse_matrices",
    "test_tolerance",
    "test_verbose_sgd",
    "test_early_stopping",
    "test_warm_start",
    "test_warm_start_full_iteration",
    "test_early_stopping_stratified",
    "test_mlp_early_stopping_string_labels",
    "test_mlp_classifier_dtypes_casting",
    "test_mlp_regressor_dtypes_casting",
    "test_mlp_param_dtypes",
    "test_mlp_loading_from_joblib_partial_fit",
    "test_preserve_feature_names",
    "test_mlp_warm_start_with_early_stopping",
    "test_mlp_warm_start_no_convergence",
    "test_mlp_partial_fit_after_fit",
    "test_mlp_sample_weight_with_early_stopping",
    "test_mlp_vs_poisson_glm_equivalent",
    "test_minimum_input_sample_size",
    "test_fit",
    "test_mlp_diverging_loss",
    "test_nonfinite_params",
]
FIXTURES = {"capsys", "tmp_path"}  # pytest's, asked of the request
VALUES = {"global_random_seed": [0, 42]}  # scikit-learn's own fixture, a few seeds


def _cases():
    """(test name, its arguments) for every parametrisation of every ported test."""
    for name in PORTED:
        func = getattr(sk_tests, name, None)
        if func is None:  # a later scikit-learn renamed or dropped it
            continue
        grids = []
        for mark in getattr(func, "pytestmark", []):
            if mark.name == "parametrize":
                names = [n.strip() for n in mark.args[0].split(",")]
                values = [v if len(names) > 1 else (v,) for v in mark.args[1]]
                grids.append([dict(zip(names, v, strict=True)) for v in values])
        code = func.__code__.co_varnames[: func.__code__.co_argcount]
        grids += [[{n: v} for v in VALUES[n]] for n in code if n in VALUES]
        for combo in itertools.product(*grids):
            kwargs = {k: v for part in combo for k, v in part.items()}
            ident = "-".join(getattr(v, "__name__", str(v))[:20] for v in kwargs.values())
            yield pytest.param(name, kwargs, id=f"{name}[{ident}]" if ident else name)


@pytest.mark.parametrize(("name", "kwargs"), list(_cases()))
def test_scikit_learns_own_test(name, kwargs, monkeypatch, request):
    monkeypatch.setattr(sk_tests, "MLPClassifier", estimator.MLPClassifier)
    monkeypatch.setattr(sk_tests, "MLPRegressor", estimator.MLPRegressor)
    # parametrised estimator classes were bound when scikit-learn's module was imported
    kwargs = {
        k: getattr(estimator, v.__name__)
        if isinstance(v, type) and v.__module__.startswith("sklearn.neural_network")
        else v
        for k, v in kwargs.items()
    }
    func = getattr(sk_tests, name)
    code = func.__code__.co_varnames[: func.__code__.co_argcount]
    kwargs |= {n: request.getfixturevalue(n) for n in code if n in FIXTURES}
    func(**kwargs)


# ------------------------------------- the private pokes, through public reads
def test_learning_rate_warmstart():
    X, y = [[3, 2], [1, 6], [5, 6], [-2, -4]], [1, 1, 1, 0]
    for learning_rate in ["invscaling", "constant"]:
        mlp = MLPClassifier(
            solver="sgd",
            hidden_layer_sizes=4,
            learning_rate=learning_rate,
            max_iter=1,
            power_t=0.25,
            warm_start=True,
        )
        prev_eta = mlp.fit(X, y).optimizer_.learning_rate
        post_eta = mlp.fit(X, y).optimizer_.learning_rate
        if learning_rate == "constant":
            assert prev_eta == post_eta
        else:
            assert mlp.learning_rate_init / pow(8 + 1, mlp.power_t) == post_eta


def test_adaptive_learning_rate():
    clf = MLPClassifier(tol=0.5, max_iter=3000, solver="sgd", learning_rate="adaptive")
    clf.fit([[3, 2], [1, 6]], [1, 0])
    assert clf.max_iter > clf.n_iter_
    assert 1e-6 > clf.optimizer_.learning_rate


def test_n_iter_no_change():
    X, y = sk_tests.X_digits_binary[:100], sk_tests.y_digits_binary[:100]
    for n_iter_no_change in [2, 5, 10]:
        clf = MLPClassifier(
            tol=0.01, max_iter=3000, solver="sgd", n_iter_no_change=n_iter_no_change
        )
        clf.fit(X, y)
        assert clf.history_.n_no_improvement == n_iter_no_change + 1
        assert 3000 > clf.n_iter_


def test_n_iter_no_change_inf():
    X, y = sk_tests.X_digits_binary[:100], sk_tests.y_digits_binary[:100]
    clf = MLPClassifier(tol=1e9, max_iter=300, solver="sgd", n_iter_no_change=np.inf)
    clf.fit(X, y)
    assert clf.n_iter_ == 300
    assert clf.history_.n_no_improvement == clf.n_iter_ - 1
