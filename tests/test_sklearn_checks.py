"""scikit-learn's own estimator checks, run on handgrad's MLPClassifier and MLPRegressor."""

from __future__ import annotations

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from handgrad import MLPClassifier, MLPRegressor

# Small networks and few epochs keep the checks fast; they test the API, not learning.
ESTIMATORS = [
    MLPClassifier(hidden_layer_sizes=(5,), learning_rate_init=0.01, max_iter=50, random_state=0),
    MLPClassifier(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=50, random_state=0),
    MLPRegressor(hidden_layer_sizes=(5,), learning_rate_init=0.01, max_iter=50, random_state=0),
    MLPRegressor(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=50, random_state=0),
]


def expected_failed_checks(estimator):
    return {}  # none: every check passes for both instances


pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible(estimator, check):
    check(estimator)
