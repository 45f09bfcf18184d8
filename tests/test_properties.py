"""Property-based numerical robustness of the losses and the network (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handgrad import MLP, layers

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True)


@st.composite
def problems(draw, head="softmax"):
    N = draw(st.integers(1, 12))
    C = draw(st.integers(2, 6))
    scale = draw(st.sampled_from([1e-3, 1.0, 30.0, 1e3, 1e4]))
    seed = draw(st.integers(0, 2**32 - 1))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(seed)
    S = (scale * rng.standard_normal((N, C))).astype(dtype)
    y = rng.integers(0, C, N) if head == "softmax" else rng.integers(0, 2, (N, C))
    return S, y, rng


LOSSES = {"softmax": layers.softmax_cross_entropy, "sigmoid": layers.sigmoid_cross_entropy}


@pytest.mark.parametrize("head", sorted(LOSSES))
def test_loss_and_gradient_are_finite(head):
    @SETTINGS
    @given(problems(head=head))
    def check(problem):
        S, y, _ = problem
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            loss, dS = LOSSES[head](S, y)
        assert np.isfinite(loss) and loss >= 0
        assert np.isfinite(dS).all() and dS.dtype == S.dtype

    check()


@SETTINGS
@given(problems())
def test_permuting_rows_leaves_the_mean_loss_unchanged(problem):
    S, y, rng = problem
    S = S.astype(np.float64)
    perm = rng.permutation(len(y))
    a, dS = layers.softmax_cross_entropy(S, y)
    b, dS_perm = layers.softmax_cross_entropy(S[perm], y[perm])
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dS[perm], dS_perm, rtol=1e-12, atol=1e-15)


@SETTINGS
@given(problems(), st.floats(-1e3, 1e3))
def test_adding_a_constant_to_every_logit_leaves_softmax_loss_unchanged(problem, c):
    S, y, _ = problem
    S = S.astype(np.float64)
    a, da = layers.softmax_cross_entropy(S, y)
    b, db = layers.softmax_cross_entropy(S + c, y)
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(da, db, atol=1e-9)


@SETTINGS
@given(
    st.integers(1, 10),
    st.integers(1, 8),
    st.lists(st.integers(1, 8), max_size=3),
    st.integers(2, 5),
    st.sampled_from(["relu", "tanh", "logistic", "identity"]),
    st.integers(0, 2**32 - 1),
)
def test_float32_and_float64_agree_to_float32_precision(N, D, hidden, C, activation, seed):
    rng = np.random.default_rng(seed)
    net64 = MLP(D, hidden, C, activation=activation, seed=seed)
    net32 = net64.copy(np.float32)
    X = rng.standard_normal((N, D))
    y = rng.integers(0, C, N)
    loss64, g64 = net64.loss(X, y, reg=0.01)
    loss32, g32 = net32.loss(X.astype(np.float32), y, reg=0.01)
    assert np.isfinite(loss32)
    np.testing.assert_allclose(loss32, loss64, rtol=1e-5, atol=1e-6)
    for k in g64:
        assert g32[k].dtype == np.float32
        np.testing.assert_allclose(g32[k], g64[k], rtol=1e-3, atol=1e-5)


@SETTINGS
@given(st.integers(1, 6), st.integers(0, 2**32 - 1), st.sampled_from([1.0, 1e3, 1e6]))
def test_network_losses_and_gradients_are_finite_for_finite_inputs(N, seed, scale):
    rng = np.random.default_rng(seed)
    net = MLP(3, (4, 3), 3, seed=seed)
    X = scale * rng.standard_normal((N, 3))
    loss, grads = net.loss(X, rng.integers(0, 3, N), reg=0.1)
    assert np.isfinite(loss)
    assert all(np.isfinite(g).all() for g in grads.values())
