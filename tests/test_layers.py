"""Each forward/backward pair and both losses against centred finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from handgrad import layers
from handgrad.gradcheck import numerical_gradient, rel_error
from handgrad.heads import ACTIVATIONS


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _check_backward(forward, backward, Z, dA, tol=1e-8):
    """dZ from backward equals the numerical gradient of <forward(Z), dA>."""
    _, cache = forward(Z)
    dZ = backward(dA, cache)
    num = numerical_gradient(lambda z: float(np.sum(forward(z)[0] * dA)), Z.copy())
    assert dZ.shape == Z.shape
    assert rel_error(dZ, num) < tol


def test_affine_backward_matches_numerical(rng):
    X, W, b = rng.standard_normal((4, 5)), rng.standard_normal((5, 3)), rng.standard_normal(3)
    dZ = rng.standard_normal((4, 3))
    Z, cache = layers.affine_forward(X, W, b)
    assert Z.shape == (4, 3)
    np.testing.assert_allclose(Z, X @ W + b)
    dX, dW, db = layers.affine_backward(dZ, cache)

    def f(_):  # numerical_gradient nudges X, W or b in place
        return float(np.sum(layers.affine_forward(X, W, b)[0] * dZ))

    assert rel_error(dX, numerical_gradient(f, X)) < 1e-8
    assert rel_error(dW, numerical_gradient(f, W)) < 1e-8
    assert rel_error(db, numerical_gradient(f, b)) < 1e-8
    assert (dX.shape, dW.shape, db.shape) == ((4, 5), (5, 3), (3,))


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_backward_matches_numerical(name, rng):
    forward, backward = ACTIVATIONS[name].forward, ACTIVATIONS[name].backward
    Z = rng.standard_normal((6, 4))
    Z[np.abs(Z) < 1e-3] = 0.5  # keep ReLU's kink away from the finite difference
    _check_backward(forward, backward, Z, rng.standard_normal((6, 4)))


def test_relu_mask_is_the_notes_ismorethan():
    Z = np.array([[-1.0, 0.0, 2.0]])
    A, cache = layers.relu_forward(Z)
    np.testing.assert_array_equal(A, [[0, 0, 2]])
    np.testing.assert_array_equal(layers.relu_backward(np.ones_like(Z), cache), [[0, 0, 1]])


def _softmax_jacobian(s):
    """The notes' C×C Jacobian, entry by entry: ∂P_j/∂S_k = P_j(δ_jk − P_k)."""
    C = s.size
    e = np.exp(s - s.max())
    P = e / e.sum()
    J = np.empty((C, C))
    for j in range(C):
        for k in range(C):
            J[j, k] = P[j] * (1 - P[k]) if j == k else -P[j] * P[k]
    return J, P


@pytest.mark.parametrize("C", [2, 3, 5])
def test_softmax_dS_equals_jacobian_times_dL_dP(C, rng):
    N = 4
    S = rng.standard_normal((N, C))
    y = rng.integers(0, C, N)
    _, dS = layers.softmax_cross_entropy(S, y)
    for i in range(N):
        J, P = _softmax_jacobian(S[i])
        dL_dP = np.zeros(C)
        dL_dP[y[i]] = -1.0 / P[y[i]] / N  # ∂(−log P_y / N)/∂P
        np.testing.assert_allclose(dS[i], J.T @ dL_dP, rtol=1e-12, atol=1e-15)


def test_softmax_cross_entropy_value_and_gradient(rng):
    S, y = rng.standard_normal((5, 4)), np.array([0, 3, 1, 1, 2])
    loss, dS = layers.softmax_cross_entropy(S, y)
    P = np.exp(S) / np.exp(S).sum(axis=1, keepdims=True)
    assert loss == pytest.approx(-np.mean(np.log(P[np.arange(5), y])), rel=1e-12)
    num = numerical_gradient(lambda s: layers.softmax_cross_entropy(s, y)[0], S.copy())
    assert rel_error(dS, num) < 1e-8
    np.testing.assert_allclose(dS.sum(axis=1), 0, atol=1e-15)  # rows of P − Y sum to 0


def test_uniform_scores_give_log_C():
    loss, _ = layers.softmax_cross_entropy(np.zeros((3, 10)), np.array([1, 2, 3]))
    assert loss == pytest.approx(np.log(10))


@pytest.mark.parametrize("C", [1, 3])
def test_sigmoid_cross_entropy_value_and_gradient(C, rng):
    S = rng.standard_normal((6, C))
    Y = rng.integers(0, 2, (6, C)).astype(float)
    loss, dS = layers.sigmoid_cross_entropy(S, Y)
    P = 1 / (1 + np.exp(-S))
    expected = -np.sum(Y * np.log(P) + (1 - Y) * np.log(1 - P)) / 6
    assert loss == pytest.approx(expected, rel=1e-12)
    num = numerical_gradient(lambda s: layers.sigmoid_cross_entropy(s, Y)[0], S.copy())
    assert rel_error(dS, num) < 1e-8
    np.testing.assert_allclose(dS, (P - Y) / 6, rtol=1e-12)


def test_binary_sigmoid_accepts_1d_targets(rng):
    S = rng.standard_normal((5, 1))
    y = np.array([0, 1, 1, 0, 1])
    assert layers.sigmoid_cross_entropy(S, y)[0] == layers.sigmoid_cross_entropy(S, y[:, None])[0]


@pytest.mark.parametrize("head", ["softmax", "sigmoid"])
def test_sample_weight_is_a_weighted_mean(head, rng):
    S = rng.standard_normal((4, 3))
    if head == "softmax":
        y, fn = np.array([0, 1, 2, 1]), layers.softmax_cross_entropy
    else:
        y, fn = rng.integers(0, 2, (4, 3)).astype(float), layers.sigmoid_cross_entropy
    w = np.array([1.0, 2.0, 0.0, 1.0])
    loss, dS = fn(S, y, w)
    # Weight 2 is the row repeated; weight 0 is the row dropped.
    rows = [0, 1, 1, 3]
    loss_rep, dS_rep = fn(S[rows], y[rows])
    assert loss == pytest.approx(loss_rep, rel=1e-12)
    np.testing.assert_allclose(dS[1], 2 * dS_rep[1], rtol=1e-12)
    np.testing.assert_array_equal(dS[2], 0)
    num = numerical_gradient(lambda s: fn(s, y, w)[0], S.copy())
    assert rel_error(dS, num) < 1e-8


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("head", ["softmax", "sigmoid"])
def test_huge_logits_give_the_exact_loss(head, dtype):
    """The notes' loss, exactly: no clipping (scikit-learn's clipped value is the
    estimators' reported loss, tests/test_reported_loss.py)."""
    S = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5e3]], dtype=dtype)
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        if head == "softmax":
            loss, dS = layers.softmax_cross_entropy(S, np.array([1, 0]))
            assert loss == 2e4  # each row: log P_y = −2e4
        else:
            Y = np.array([[1, 0, 1], [0, 0, 1]], dtype=dtype)
            loss, dS = layers.sigmoid_cross_entropy(S, Y)
            # softplus(S) − Y S: log 2 for the 0 score, 1e4 for the wrong 1e4, else 0
            assert loss == pytest.approx((np.log(2) + 1e4) / 2, rel=1e-7)
    assert np.isfinite(loss)
    assert np.isfinite(dS).all()
    assert dS.dtype == dtype


def test_sigmoid_has_no_overflow_warning():
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        out = layers.sigmoid(np.array([-1e4, -50.0, 0.0, 50.0, 1e4]))
    np.testing.assert_allclose(out, [0, 1.9287498479639178e-22, 0.5, 1, 1])


def test_l2_penalty_skips_nothing_it_is_given_and_scales_by_half_lambda(rng):
    W1, W2 = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    penalty, (g1, g2) = layers.l2_penalty([W1, W2], 0.3)
    assert penalty == pytest.approx(0.15 * (np.sum(W1**2) + np.sum(W2**2)))
    np.testing.assert_allclose(g1, 0.3 * W1)
    np.testing.assert_allclose(g2, 0.3 * W2)


def test_no_penalty_costs_no_norm_and_is_exactly_zero():
    W = np.full((3, 4), 1e200)  # ‖W‖² overflows: a norm computed for λ = 0 would be inf·0
    with np.errstate(over="raise", invalid="raise"):
        penalty, (g,) = layers.l2_penalty([W], 0.0)
    assert penalty == 0.0
    np.testing.assert_array_equal(g, np.zeros_like(W))
