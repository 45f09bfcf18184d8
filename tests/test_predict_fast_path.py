"""Prediction's fast path (a plain float ndarray skips ``validate_data``) agrees with the
checked path on every result, error and warning."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

import handgrad.estimator as estimator
from handgrad import MLPClassifier

D = 6


@pytest.fixture(scope="module", params=["float64", "float32"])
def fitted(request):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, D)).astype(request.param)
    y = rng.integers(0, 3, 120)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        clf = MLPClassifier((7,), max_iter=5, random_state=0).fit(X, y)
    return clf, X


@pytest.fixture
def count_validate_data(monkeypatch):
    """The number of calls to scikit-learn's validate_data made by prediction."""
    calls = []
    real = estimator.validate_data

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(estimator, "validate_data", counting)
    return calls


def _outputs(clf, X):
    return clf.predict(X), clf.predict_proba(X), clf.predict_log_proba(X)


def _error(call, X) -> tuple[type, str]:
    with pytest.raises((ValueError, TypeError)) as info:
        call(X)
    return info.type, str(info.value)


def _checked(clf, name: str, X):
    """``clf.<name>(X)`` with the fast path switched off: validate_data for every input."""
    clf._plain_rows = lambda X: None
    try:
        return getattr(clf, name)(X)
    finally:
        del clf._plain_rows


def _checked_error(clf, name: str, X) -> tuple[type, str]:
    return _error(lambda X: _checked(clf, name, X), X)


@pytest.mark.parametrize("rows", [1, 3, 50])
def test_fast_and_checked_paths_give_identical_results(fitted, rows, count_validate_data):
    clf, X = fitted
    fast = np.ascontiguousarray(X[:rows])
    slow = {
        "list": fast.tolist(),
        "fortran": np.asfortranarray(fast),
        "strided": np.repeat(fast, 2, axis=0)[::2],
        "other float": fast.astype(np.float32 if fast.dtype == np.float64 else np.float64),
    }
    expected = _outputs(clf, fast)
    assert count_validate_data == []  # the fast path did not call it
    for a, name in zip(expected, ["predict", "predict_proba", "predict_log_proba"], strict=True):
        assert np.array_equal(a, _checked(clf, name, fast))
    count_validate_data.clear()
    assert expected[1].shape == (rows, 3) and expected[1].dtype == X.dtype
    for name, other in slow.items():
        got = _outputs(clf, other)
        if name == "other float":  # the fast path too: a cast to the network's dtype
            continue
        for a, b in zip(expected, got, strict=True):
            assert a.dtype == b.dtype and np.array_equal(a, b), name
    # One-row Fortran or strided views are C-contiguous too (NumPy's relaxed strides).
    checked = ["list"] + (["fortran", "strided"] if rows > 1 else [])
    assert len(count_validate_data) == 3 * len(checked)


def test_integer_input_takes_the_checked_path_and_agrees(fitted, count_validate_data):
    clf, X = fitted
    ints = np.arange(2 * D).reshape(2, D) % 3
    as_float = np.ascontiguousarray(ints, dtype=X.dtype)
    assert np.array_equal(clf.predict_proba(ints), clf.predict_proba(as_float))
    assert len(count_validate_data) == 1


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_entry_raises_the_same_error_on_both_paths(fitted, bad):
    clf, X = fitted
    Xb = X[:4].copy()
    Xb[2, 3] = bad
    assert clf._plain_rows(Xb) is Xb
    for name in ("predict", "predict_proba"):
        fast = _error(getattr(clf, name), Xb)
        assert fast == _checked_error(clf, name, Xb) == _error(getattr(clf, name), Xb.tolist())
        assert fast[0] is ValueError and re.search(r"row 2|\[2, 3\]|X\[2", fast[1]), fast


@pytest.mark.parametrize(
    "shape",
    [(D,), (1, D - 1), (2, D + 1), (0, D), (1, 1, D)],
    ids=["1-D", "fewer features", "more features", "no rows", "3-D"],
)
def test_wrong_shapes_raise_scikit_learns_errors(fitted, shape):
    clf, _ = fitted
    X = np.zeros(shape)
    for name in ("predict", "predict_proba"):
        got = _error(getattr(clf, name), X)
        assert got == _checked_error(clf, name, X)
    if shape == (1, D - 1):
        assert got[1] == (
            f"X has {D - 1} features, but MLPClassifier is expecting {D} features as input."
        )


def test_unfitted_raises_not_fitted_on_both_calls():
    clf = MLPClassifier()
    for call in (clf.predict, clf.predict_proba):
        with pytest.raises(NotFittedError, match="not fitted yet"):
            call(np.zeros((1, D)))


def test_feature_names_are_checked_as_scikit_learn_does(count_validate_data):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.standard_normal((60, 3)), columns=["a", "b", "c"])
    y = rng.integers(0, 2, 60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        named = MLPClassifier((4,), max_iter=3, random_state=0).fit(X, y)
        plain = MLPClassifier((4,), max_iter=3, random_state=0).fit(X.to_numpy(), y)
    row = np.ascontiguousarray(X.to_numpy()[:1])
    # fitted with names, given an ndarray: scikit-learn's warning, not the fast path
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        named.predict(row)
    with pytest.raises(ValueError, match="The feature names should match"):
        named.predict(X[["b", "a", "c"]].iloc[:1])
    # fitted without names, given a DataFrame: the other warning
    with pytest.warns(UserWarning, match="X has feature names, but MLPClassifier was fitted"):
        plain.predict_proba(X.iloc[:1])
    count_validate_data.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning on the fast path
        assert np.array_equal(plain.predict_proba(row), named.predict_proba(X.iloc[:1]))
    assert len(count_validate_data) == 1  # the DataFrame's call only


def test_sparse_rows_agree_with_dense(fitted):
    sp = pytest.importorskip("scipy.sparse")
    clf, X = fitted
    rows = np.ascontiguousarray(X[:5])
    # Sparse X stays sparse: its products sum in another order, so the last bits may differ.
    tol = 1e-6 if rows.dtype == np.float32 else 1e-12
    sparse = clf.predict_proba(sp.csr_matrix(rows))
    np.testing.assert_allclose(sparse, clf.predict_proba(rows), rtol=tol, atol=tol)
