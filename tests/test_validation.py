"""The shared input checks: finiteness found however X is laid out, named where it is;
labels that cannot be ordered named as such."""

from __future__ import annotations

import numpy as np
import pytest

from handgrad import MLPClassifier
from handgrad._validation import all_finite


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["C", "F"])
def test_all_finite_finds_any_bad_entry_and_survives_overflowing_sums(dtype, layout):
    X = np.asarray(np.ones((50, 7), dtype), order=layout)
    assert all_finite(X) and all_finite(X[:, 0])
    X[:] = np.finfo(dtype).max / 2  # finite entries whose row sums overflow to inf
    assert all_finite(X)
    for bad in (np.nan, np.inf, -np.inf):
        Y = X.copy(order=layout)
        Y[31, 4] = bad
        assert not all_finite(Y) and not all_finite(Y[:, 4])


def test_fit_names_the_first_non_finite_entry():
    X = np.random.default_rng(0).standard_normal((30, 4))
    X[17, 2] = np.nan
    with pytest.raises(ValueError, match=r"X contains NaN \(first at row 17, column 2\)"):
        MLPClassifier(max_iter=1).fit(X, np.arange(30) % 3)


@pytest.mark.parametrize("labels", [["a", 1, "b"], ["a", None, "b"]])
def test_fit_refuses_labels_that_cannot_be_ordered(labels):
    y = np.array(labels * 4, dtype=object)
    X = np.random.default_rng(0).standard_normal((len(y), 3))
    with pytest.raises(ValueError, match="y mixes labels that cannot be ordered"):
        MLPClassifier(max_iter=1).fit(X, y)
