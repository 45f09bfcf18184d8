"""Sparse X trains sparse: the first layer's products take the CSR batch as it is, and
the result is the dense result (to rounding), in both engines and for every solver."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose

from handgrad import MLP, MLPClassifier
from handgrad.optim import LBFGS, SGD, Adam
from handgrad.training import TrainingConfig, fit

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def data():
    X = sp.random(150, 40, density=0.1, random_state=0, format="csr")
    X.data *= 3
    y = np.random.default_rng(0).integers(0, 3, 150)
    return X, y


def _params(est):
    return est.coefs_ + est.intercepts_


@pytest.mark.parametrize(
    "params",
    [
        dict(solver="sgd", momentum=0.9),
        dict(solver="sgd", momentum=0.0),  # plain SGD: the fused update
        dict(solver="adam", alpha=0.1),
        dict(solver="lbfgs"),
    ],
)
def test_sparse_and_dense_X_train_the_same_weights(data, params):
    X, y = data
    common = dict(hidden_layer_sizes=(8, 5), random_state=0, max_iter=8, batch_size=32)
    sparse = MLPClassifier(**common, **params).fit(X, y)
    dense = MLPClassifier(**common, **params).fit(X.toarray(), y)
    for a, b in zip(_params(sparse), _params(dense), strict=True):
        assert_allclose(a, b, rtol=0, atol=1e-10)
    assert_allclose(sparse.loss_curve_, dense.loss_curve_, rtol=1e-12)


@pytest.mark.parametrize("engine", ["fast", "reference"])
@pytest.mark.parametrize("make_optimizer", [lambda: SGD(0.1), lambda: Adam(0.01), LBFGS])
def test_both_engines_train_sparse_X_as_dense(data, engine, make_optimizer):
    X, y = data
    w = np.random.default_rng(1).uniform(0.5, 2.0, X.shape[0])
    models = []
    for X_in in (X, X.toarray()):
        model = MLP(40, (6,), 3, seed=0)
        config = TrainingConfig(batch_size=25, max_epochs=4, reg=0.01, engine=engine)
        fit(model, X_in, y, optimizer=make_optimizer(), config=config, sample_weight=w, seed=0)
        models.append(model)
    for k in models[0].params:
        assert_allclose(models[0].params[k], models[1].params[k], rtol=0, atol=1e-10)


def test_float32_stays_float32(data):
    X, y = data
    X32 = X.astype(np.float32)
    clf = MLPClassifier((8,), solver="adam", random_state=0, max_iter=5).fit(X32, y)
    dense = MLPClassifier((8,), solver="adam", random_state=0, max_iter=5).fit(X32.toarray(), y)
    assert all(p.dtype == np.float32 for p in _params(clf))
    assert clf.predict_proba(X32).dtype == np.float32
    for a, b in zip(_params(clf), _params(dense), strict=True):
        assert_allclose(a, b, rtol=0, atol=1e-5)


def test_predict_on_sparse_input_is_predict_on_dense(data):
    X, y = data
    clf = MLPClassifier((8,), solver="lbfgs", random_state=0, max_iter=30).fit(X.toarray(), y)
    P = clf.predict_proba(X.toarray())
    assert_allclose(clf.predict_proba(X), P, rtol=1e-12, atol=1e-15)
    assert_allclose(clf.predict_proba(X.tocsc()), P, rtol=1e-12, atol=1e-15)
    assert (clf.predict(X) == clf.predict(X.toarray())).all()
    assert (clf.predict(X) == clf.classes_[P.argmax(axis=1)]).all()


def test_non_finite_sparse_values_are_named(data):
    X, y = data
    bad = X.copy()
    bad.data[5] = np.nan
    row = int(np.searchsorted(bad.indptr, 5, side="right")) - 1
    message = rf"X contains NaN \(first at row {row}, column {bad.indices[5]}\)"
    with pytest.raises(ValueError, match=message):
        MLPClassifier((4,), max_iter=2).fit(bad, y)
    clf = MLPClassifier((4,), max_iter=2, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match=message):
        clf.predict(bad)


def test_early_stopping_on_sparse_X(data):
    X, y = data
    common = dict(hidden_layer_sizes=(8,), random_state=0, max_iter=10, early_stopping=True)
    sparse = MLPClassifier(**common).fit(X, y)
    dense = MLPClassifier(**common).fit(X.toarray(), y)
    assert sparse.validation_scores_ == dense.validation_scores_
    for a, b in zip(_params(sparse), _params(dense), strict=True):
        assert_allclose(a, b, rtol=0, atol=1e-10)


def _wide_sparse_X():
    """5000 × 200000 with 5000 non-zeros: 7.45 GiB made dense."""
    rng = np.random.default_rng(0)
    N, D = 5000, 200_000
    X = sp.csr_matrix((rng.standard_normal(N), (np.arange(N), rng.integers(0, D, N))), shape=(N, D))
    return X, rng.integers(0, 2, N)


def _peak_bytes(work):
    tracemalloc.start()
    try:
        result = work()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_wide_sparse_X_trains_in_little_memory():
    X, y = _wide_sparse_X()

    def work():
        clf = MLPClassifier((4,), solver="adam", max_iter=2, random_state=0).fit(X, y)
        return clf, clf.predict_proba(X)

    (clf, P), peak = _peak_bytes(work)
    assert P.shape == (5000, 2) and clf.coefs_[0].shape == (200_000, 4)
    assert peak < 200 * 2**20, f"peak {peak / 2**20:.0f} MiB"


def test_the_reference_engine_never_makes_a_dense_dX_either():
    """The reference backward skips ``dX = dZ1 W1ᵀ``: (200, 200000) dense per batch."""
    X, y = _wide_sparse_X()
    model = MLP(X.shape[1], (4,), 2, seed=0)
    config = TrainingConfig(batch_size=200, max_epochs=1, engine="reference")
    hist, peak = _peak_bytes(lambda: fit(model, X, y, optimizer=SGD(0.1), config=config))
    assert hist.epochs == 1
    assert peak < 200 * 2**20, f"peak {peak / 2**20:.0f} MiB"
