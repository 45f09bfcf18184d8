"""The fast path (handgrad.workspace) against the reference layer functions."""

from __future__ import annotations

import dataclasses
import tracemalloc

import numpy as np
import pytest

from handgrad import MLP, workspace
from handgrad.optim import SGD, Adam
from handgrad.training import Callback, TrainingConfig, fit
from handgrad.workspace import Workspace, gemm_, scores

ACTIVATIONS = ("relu", "tanh", "logistic", "identity")
HEADS = (("softmax", 3), ("sigmoid", 1), ("sigmoid", 3))
DEPTHS = ((), (6,), (7, 5), (4, 6, 5))


def _workspace(model, rows):
    return Workspace(
        model.layer_sizes, rows, activation=model.activation, head=model.head, dtype=model.dtype
    )


def _problem(activation, head, C, hidden, n=13, D=8, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    model = MLP(D, hidden, C, activation=activation, head=head, seed=seed, dtype=dtype)
    X = rng.standard_normal((n, D)).astype(dtype)
    T = model.encode_targets(
        rng.integers(0, C, n) if head == "softmax" else rng.integers(0, 2, (n, C)), n
    )
    w = rng.uniform(0.1, 2.0, n).astype(dtype)
    return model, X, T, w


def _assert_close(a, b, tol=1e-12):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("head_c", HEADS)
@pytest.mark.parametrize("hidden", DEPTHS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reg", [0.0, 0.3])
def test_step_equals_reference(activation, head_c, hidden, weighted, reg):
    model, X, T, w = _problem(activation, *head_c, hidden)
    w = w if weighted else None
    loss_ref, grads_ref, S_ref = model.loss_and_gradients(X, T, reg, w)
    ws = _workspace(model, rows=20)  # more rows than the batch: views of the buffers
    loss, grads, S = ws.step(model.params, X, T, reg, w)
    assert loss == pytest.approx(loss_ref, rel=1e-12, abs=1e-12)
    _assert_close(S, S_ref)
    assert set(grads) == set(grads_ref)
    for name in grads_ref:
        _assert_close(grads[name], grads_ref[name])


def _numpy_bundles_openblas() -> bool:
    import sys
    from pathlib import Path

    libs = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    return sys.platform == "linux" and any(libs.glob("libscipy_openblas64_*.so"))


@pytest.fixture(params=["numpy's cblas", "matmul route"])
def blas_route(request, monkeypatch):
    """Run a test with the fused BLAS call and with the NumPy fallback."""
    if request.param == "matmul route":
        monkeypatch.setattr(workspace, "_CBLAS_GEMM", None)
    elif workspace._CBLAS_GEMM is None:
        pytest.skip("NumPy's own OpenBLAS is not reachable here: only the fallback runs")
    return request.param


@pytest.mark.skipif(
    not _numpy_bundles_openblas(),
    reason="NumPy is not the Linux wheel that bundles scipy_openblas64_",
)
def test_the_fused_route_is_found_where_numpy_bundles_openblas():
    # Without this, a change in NumPy's wheel would silently turn the fast path off.
    assert workspace._CBLAS_GEMM is not None


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("head_c", HEADS)
@pytest.mark.parametrize("hidden", DEPTHS[:3])
@pytest.mark.parametrize("weighted", [False, True])
def test_fused_sgd_step_equals_reference_update(activation, head_c, hidden, weighted, blas_route):
    model, X, T, w = _problem(activation, *head_c, hidden, seed=3)
    w = w if weighted else None
    reg, lr = 0.2, 0.05
    loss_ref, grads_ref, S_ref = model.loss_and_gradients(X, T, reg, w)
    expected = {k: v - lr * grads_ref[k] for k, v in model.params.items()}
    before = {k: v for k, v in model.params.items()}
    loss, S = _workspace(model, X.shape[0]).sgd_step(model.params, X, T, reg, w, lr)
    assert loss == pytest.approx(loss_ref, rel=1e-12, abs=1e-12)
    _assert_close(S, S_ref)
    for name, value in expected.items():
        assert model.params[name] is before[name]  # updated in place
        _assert_close(model.params[name], value)


def test_float32_stays_float32():
    model, X, T, w = _problem("relu", "softmax", 3, (6, 5), dtype=np.float32)
    ws = _workspace(model, X.shape[0])
    _, grads, S = ws.step(model.params, X, T, 0.1, w)
    assert S.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads.values())
    _, grads_ref, _ = model.loss_and_gradients(X, T, 0.1, w)
    _assert_close(grads["W1"], grads_ref["W1"], tol=1e-5)
    ws.sgd_step(model.params, X, T, 0.1, w, 0.01)
    assert all(p.dtype == np.float32 for p in model.params.values())
    assert scores(model.params, X, model.activation).dtype == np.float32
    assert model.predict_proba(X).dtype == np.float32


@pytest.mark.parametrize("head_c", HEADS)
def test_scores_and_predict_proba_equal_reference(head_c):
    model, X, _, _ = _problem("tanh", *head_c, (7, 5), n=37)
    S_ref = model.forward(X)[0]
    _assert_close(
        scores(model.params, X, model.activation, chunk_rows=8), S_ref
    )  # several chunks and a remainder
    P = model.predict_proba(X)
    from handgrad import layers

    ref = layers.softmax(S_ref) if head_c[0] == "softmax" else layers.sigmoid(S_ref)
    _assert_close(P, ref)


def test_gather_takes_rows_into_reused_buffers():
    model, X, T, w = _problem("relu", "softmax", 3, (6,), n=13)
    ws = _workspace(model, rows=5)
    idx = np.array([4, 0, 12])
    Xb, Tb, wb = ws.gather(X, T, w, idx)
    np.testing.assert_array_equal(Xb, X[idx])
    np.testing.assert_array_equal(Tb, T[idx])
    np.testing.assert_array_equal(wb, w[idx])
    Xb2, _, _ = ws.gather(X, T, None, np.array([1, 2, 3, 5, 7]))
    assert np.shares_memory(Xb, Xb2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_is_one_fused_update_or_declines(dtype):
    rng = np.random.default_rng(0)
    A, dZ = rng.standard_normal((9, 4)).astype(dtype), rng.standard_normal((9, 3)).astype(dtype)
    C = rng.standard_normal((4, 3)).astype(dtype)
    expected = 0.5 * C - 2.0 * A.T @ dZ
    if workspace._CBLAS_GEMM is None:
        assert not gemm_(A, dZ, C, -2.0, 0.5, trans_a=True)
    else:
        assert gemm_(A, dZ, C, -2.0, 0.5, trans_a=True)
        _assert_close(C, expected, tol=1e-5 if dtype == np.float32 else 1e-12)
    if workspace._CBLAS_GEMM is not None:  # op(A) = A, and A a view that starts late
        rows = rng.standard_normal((7, 4)).astype(dtype)
        Z = rng.standard_normal((5, 3)).astype(dtype)
        want = Z + rows[2:7] @ C
        assert gemm_(rows[2:7], C, Z, 1.0, 1.0)
        _assert_close(Z, want, tol=1e-5 if dtype == np.float32 else 1e-12)
    F = np.asfortranarray(C)
    assert not gemm_(A, dZ, F, -2.0, 0.5, trans_a=True)  # not row-major: declined, untouched
    np.testing.assert_array_equal(F, C)


def test_fused_step_on_fortran_ordered_params_updates_them_in_place():
    model, X, T, _ = _problem("relu", "softmax", 3, (6,), seed=4)
    model.params = {k: np.asfortranarray(v) for k, v in model.params.items()}
    _, grads_ref, _ = model.loss_and_gradients(X, T, 0.1)
    expected = {k: v - 0.5 * grads_ref[k] for k, v in model.params.items()}
    _workspace(model, X.shape[0]).sgd_step(model.params, X, T, 0.1, None, 0.5)
    for name, value in expected.items():
        _assert_close(model.params[name], value)


def _reference_trained(model, optimizer, X, y, w, config):
    """The same fit, on the reference engine."""
    config = dataclasses.replace(config, engine="reference")
    fit(model, X, y, optimizer=optimizer, config=config, sample_weight=w, seed=7)
    return model


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda: SGD(0.05),
        lambda: SGD(0.05, momentum=0.9, nesterov=True),
        lambda: Adam(0.01),
    ],
)
@pytest.mark.parametrize("weighted", [False, True])
def test_fit_on_the_fast_path_equals_the_reference_loop(make_optimizer, weighted):
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((53, 6)), rng.integers(0, 3, 53)
    w = rng.uniform(0.5, 1.5, 53) if weighted else None
    config = TrainingConfig(batch_size=10, max_epochs=3, reg=1e-2, stopping="none")
    fast = MLP(6, (8, 5), 3, seed=2)
    slow = MLP(6, (8, 5), 3, seed=2)
    h_fast = fit(fast, X, y, optimizer=make_optimizer(), config=config, sample_weight=w, seed=7)
    _reference_trained(slow, make_optimizer(), X, y, w, config)
    for name in fast.params:
        _assert_close(fast.params[name], slow.params[name], tol=1e-11)
    assert len(h_fast.step_loss) == 18 and len(h_fast.train_score) == 3


class _TraceSecondEpoch(Callback):
    """Starts tracemalloc when epoch 1 ends; reads the peak when epoch 2 ends."""

    def __init__(self):
        self.allocated = None

    def on_epoch_end(self, run):
        if run.history.epochs == 1:
            tracemalloc.start()
            tracemalloc.reset_peak()
            self.start, _ = tracemalloc.get_traced_memory()
        elif run.history.epochs == 2:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            self.allocated = peak - self.start


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make_optimizer", [lambda: SGD(0.01), lambda: Adam(1e-3)])
def test_a_further_epoch_allocates_almost_nothing(dtype, make_optimizer):
    rng = np.random.default_rng(0)
    N, D, H, C, batch = 1000, 256, 256, 10, 128  # 7 full batches and one of 104 rows
    X = rng.standard_normal((N, D)).astype(dtype)
    y = rng.integers(0, C, N)
    model = MLP(D, (H,), C, seed=0, dtype=dtype)
    config = TrainingConfig(batch_size=batch, max_epochs=2, reg=1e-4, stopping="none")
    trace = _TraceSecondEpoch()
    fit(model, X, y, optimizer=make_optimizer(), config=config, callbacks=[trace], seed=0)
    # What a step may allocate: a few (batch,)-sized temporaries (the head's picked
    # entries, the accuracy count) and the growth of the history's lists. One batch of X
    # or of A1 is 128 KiB in float32, W1 256 KiB: no copy of any of them, per step or per
    # epoch, fits in the budget.
    budget = 24 * 1024
    assert trace.allocated is not None and trace.allocated < budget, trace.allocated


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("hidden", [(), (4,)])
def test_predict_names_a_non_finite_entry_even_behind_zero_weights(bad, hidden):
    model = MLP(5, hidden, 3, seed=0)
    model.params["W1"][2] = 0  # the bad feature's weights: inf · 0 is NaN, still caught
    X = np.ones((5000, 5))
    X[4100, 2] = bad
    with pytest.raises(ValueError, match=r"first at row 4100, column 2"):
        model.predict(X)


# ------------------------------------------------ the loss value is the notes' exact loss
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("head", "C"), HEADS)
def test_both_forms_give_the_exact_loss_where_p_reaches_0_and_1(head, C, dtype):
    """Scores spread wide enough that P reaches 0 and 1 in the dtype: both forms of the
    head give the notes' loss exactly (log-sum-exp, softplus: nothing clipped) and
    ``dS = (P − Y) w / Σw``. scikit-learn's clipped value is the estimators'
    reported loss (tests/test_reported_loss.py)."""
    from scipy.special import expit, log_softmax

    from handgrad.heads import HEADS as HEAD_RECORDS

    rng = np.random.default_rng(0)
    n = 40
    S = (rng.standard_normal((n, C)) * 30).astype(dtype)
    w = rng.uniform(0.1, 2.0, n).astype(dtype)
    S64, c = S.astype(np.float64), (w / w.sum()).astype(np.float64)
    if head == "softmax":
        T = rng.integers(0, C, n)
        Y = np.eye(C)[T]
        exact = -(log_softmax(S64, axis=1) * Y).sum(axis=1) @ c
        P = np.exp(log_softmax(S64, axis=1))
    else:
        T = rng.integers(0, 2, (n, C)).astype(dtype)
        Y = T.astype(np.float64)
        exact = (np.logaddexp(0, S64) - Y * S64).sum(axis=1) @ c
        P = expit(S64)
    assert P.min() < np.finfo(dtype).eps and P.max() > 1 - np.finfo(dtype).eps
    loss_ref, dS_ref = HEAD_RECORDS[head].loss(S, T, w)
    model = MLP(2, (), C, head=head, dtype=dtype)
    ws = _workspace(model, rows=n)
    loss_fast = ws.head_loss(S.copy(), T, w)
    tol = 2e-6 if dtype == np.float32 else 1e-12
    assert loss_ref == pytest.approx(exact, rel=tol)
    assert loss_fast == pytest.approx(exact, rel=tol)
    dS = (P - Y) * c[:, None]
    _assert_close(dS_ref, dS, tol=1e-6 if dtype == np.float32 else 1e-13)
    _assert_close(ws._dS[:n], dS, tol=1e-6 if dtype == np.float32 else 1e-13)


# ------------------------------------------------------------------- sparse X
@pytest.mark.parametrize("learning_rate", [None, 0.1])  # step, and the fused SGD step
def test_a_sparse_batch_steps_as_the_dense_one(learning_rate):
    import scipy.sparse as sp

    model, X, T, w = _problem("relu", "softmax", 3, (6, 5), n=13, D=8)
    X[np.random.default_rng(1).random(X.shape) < 0.7] = 0
    results = []
    for X_in in (X, sp.csr_matrix(X)):
        params = {k: v.copy() for k, v in model.params.items()}
        ws = _workspace(model, rows=20)
        Xb, Tb, wb = ws.gather(X_in, T, w, np.arange(13)[::-1])
        if learning_rate is None:
            loss, grads, _ = ws.step(params, Xb, Tb, 0.3, wb)
            results.append((loss, {k: g.copy() for k, g in grads.items()}))
        else:
            loss, _ = ws.sgd_step(params, Xb, Tb, 0.3, wb, learning_rate)
            results.append((loss, params))
    assert sp.issparse(Xb) and Xb.shape == (13, 8)
    assert ws._batch[0] is None  # no dense (rows, D) buffer for a sparse X
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-14)
    for k in results[0][1]:
        _assert_close(results[1][1][k], results[0][1][k], tol=1e-13)


def test_scores_of_sparse_X_chunk_by_chunk():
    import scipy.sparse as sp

    model, X, _, _ = _problem("tanh", "sigmoid", 3, (6,), n=50, D=8)
    X[X < 0.5] = 0
    dense = scores(model.params, X, "tanh", chunk_rows=16)
    _assert_close(scores(model.params, sp.csr_matrix(X), "tanh", chunk_rows=16), dense)


def test_buffer_estimate_covers_the_buffers_made():
    """What the memory check counts per batch is at least what a workspace allocates."""
    model, X, T, w = _problem("relu", "softmax", 3, (7, 5), n=20, D=8)
    ws = _workspace(model, rows=20)
    ws.gather(X, T, w, np.arange(20))
    made = sum(a.nbytes for a in [*ws._A, *ws._D, *ws._dZ, ws._S, ws._dS, *ws._batch])
    estimate = Workspace.buffer_nbytes(
        model.layer_sizes, 20, activation="relu", dtype=np.float64, dense_X=True
    )
    assert made <= estimate < 2 * made


def _steps_two_ways(model, X, T, batches, dtype, lr=0.05, reg=0.01):
    """SGD steps on the workspace's own gathered batches (its prepared products) and the
    same steps on copies of those batches (gemm_'s call with its arguments converted on
    every call, the route of a batch from elsewhere): (losses, S) of each, per step."""
    other = MLP(
        X.shape[1],
        model.hidden_sizes,
        model.layer_sizes[-1],
        head=model.head,
        activation=model.activation,
        seed=0,
        dtype=dtype,
    )
    for k, v in model.params.items():
        np.copyto(other.params[k], v)
    ws, ws_other = _workspace(model, 6), _workspace(other, 6)
    runs = []
    for idx in batches:
        Xb, Tb, _ = ws.gather(X, T, None, idx)
        loss, S = ws.sgd_step(model.params, Xb, Tb, reg, None, lr)
        loss_other, S_other = ws_other.sgd_step(other.params, Xb.copy(), Tb, reg, None, lr)
        runs.append((loss, loss_other, S.copy(), S_other.copy()))
        for k in model.params:  # bit for bit, every step
            np.testing.assert_array_equal(model.params[k], other.params[k])
    return ws, runs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("activation", "head_c", "hidden"),
    [
        ("relu", ("softmax", 3), (7,)),
        ("tanh", ("sigmoid", 3), (7, 5)),
        ("relu", ("softmax", 4), ()),
    ],
)
def test_prepared_products_change_no_bit(dtype, activation, head_c, hidden):
    # The step's products are prepared once per batch size (workspace._Gemm); the same
    # BLAS calls as gemm_ makes on each call, so the same bits: held to exact equality
    # here, where the 1e-12 tests against the reference would let a changed bit pass.
    model, X, T, _ = _problem(activation, *head_c, hidden, n=17, dtype=dtype)
    batches = [np.arange(0, 6), np.arange(6, 12), np.arange(12, 17), np.arange(5, 11)]
    ws, runs = _steps_two_ways(model, X, T, batches, dtype)
    for loss, loss_other, S, S_other in runs:
        assert loss == loss_other
        np.testing.assert_array_equal(S, S_other)
    if workspace._CBLAS_GEMM is not None:  # the prepared route was the one taken
        assert all(p is not None for p in ws._views[6].update[1:])
        assert ws._views[5].forward[1] is not None


def test_prepared_products_follow_new_weight_arrays_and_foreign_batches():
    model, X, T, _ = _problem("relu", "softmax", 3, (7,), n=12)
    ws = _workspace(model, 6)
    Xb, Tb, _ = ws.gather(X, T, None, np.arange(6))
    ws.sgd_step(model.params, Xb, Tb, 0.01, None, 0.05)
    # New arrays for the weights (e.g. assigned coefs_): the step must update those.
    fresh = {k: v.copy() for k, v in model.params.items()}
    expected = {k: v.copy() for k, v in fresh.items()}
    _workspace(model, 6).sgd_step(expected, Xb.copy(), Tb, 0.01, None, 0.05)
    ws.sgd_step(fresh, Xb, Tb, 0.01, None, 0.05)
    for k in fresh:
        np.testing.assert_array_equal(fresh[k], expected[k])
    # A view of the batch buffer that starts one row in is not the gathered batch.
    part, Tpart = Xb[1:], Tb[1:]
    want = {k: v.copy() for k, v in fresh.items()}
    _workspace(model, 6).sgd_step(want, part.copy(), Tpart, 0.01, None, 0.05)
    ws.sgd_step(fresh, part, Tpart, 0.01, None, 0.05)
    for k in fresh:
        np.testing.assert_array_equal(fresh[k], want[k])


def test_running_accuracy_from_the_softmax_loss_is_the_heads():
    from handgrad.heads import HEADS as HEAD_RECORDS

    model, X, T, _ = _problem("relu", "softmax", 4, (7,), n=12)
    ws = _workspace(model, 12)
    Xb, Tb, _ = ws.gather(X, T, None, np.arange(12))
    _, S = ws.sgd_step(model.params, Xb, Tb, 0.0, None, 0.05)
    S[3] = S[3, 0]  # a row of ties: the first class, as argmax
    S[5, 2] = np.nan  # a NaN: argmax's NaN is the maximum
    ws.head_loss(S, Tb, None)
    right = ws.right_rows(S, Tb)
    np.testing.assert_array_equal(right, HEAD_RECORDS["softmax"].right_rows(S, Tb))
    S[:, 0] = 1e3  # the loss sees class 0 win every row ...
    ws.head_loss(S, Tb, None)
    S2 = ws.forward(model.params, Xb)  # ... then new scores, in the same buffer
    expected = HEAD_RECORDS["softmax"].right_rows(S2, Tb)
    assert not np.array_equal(expected, Tb == 0)  # stale classes would be caught
    np.testing.assert_array_equal(ws.right_rows(S2, Tb), expected)
