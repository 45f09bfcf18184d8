"""The regression heads (identity with squared error, poisson with the log link):
values, hand-derived gradients against finite differences, the workspace's in-place
form against the reference, and the validation score."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.special import xlogy
from sklearn.metrics import r2_score
from sklearn.neural_network._base import poisson_loss, squared_loss

import handgrad.training as training
from handgrad import MLP, check_gradients
from handgrad.heads import HEADS
from handgrad.workspace import Workspace

REGRESSION = ("identity", "poisson")


def _targets(head, rng, n, C):
    return HEADS[head].task.random_targets(rng, n, C)


@pytest.mark.parametrize("head", REGRESSION)
@pytest.mark.parametrize("C", [1, 3])
@pytest.mark.parametrize("weighted", [False, True])
def test_gradients_match_centred_differences(head, C, weighted):
    rng = np.random.default_rng(0)
    net = MLP(4, (6, 5), C, activation="tanh", head=head, seed=1)
    X = rng.standard_normal((8, 4))
    Y = _targets(head, rng, 8, C)
    w = rng.uniform(0.2, 3.0, 8) if weighted else None
    errors = check_gradients(net, X, Y, reg=0.1, sample_weight=w)
    assert max(errors.values()) < 1e-7, errors


def test_values_are_scikit_learns_for_one_output():
    rng = np.random.default_rng(1)
    S, Y = rng.standard_normal((10, 1)), rng.standard_normal((10, 1))
    w = rng.uniform(0.5, 2.0, 10)
    loss, dS = HEADS["identity"].loss(S, Y, w)
    assert loss == pytest.approx(squared_loss(Y, S, w), rel=1e-13)
    assert_allclose(dS, (S - Y) * w[:, None] / w.sum(), rtol=1e-14)
    counts = rng.poisson(2.0, (10, 3)).astype(float)
    loss, dS = HEADS["poisson"].loss(S[:, [0, 0, 0]], counts)
    assert loss == pytest.approx(poisson_loss(counts, np.exp(S[:, [0, 0, 0]])), rel=1e-13)
    assert_allclose(dS, (np.exp(S[:, [0, 0, 0]]) - counts) / 10, rtol=1e-14)


def test_squared_error_sums_the_outputs_where_scikit_learn_averages_them():
    """dS = (S − Y)/N is the gradient of the sum over outputs; scikit-learn reports the
    mean over outputs (the same for one output)."""
    rng = np.random.default_rng(2)
    S, Y = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))
    loss, _ = HEADS["identity"].loss(S, Y)
    assert loss == pytest.approx(0.5 * ((S - Y) ** 2).sum() / 6, rel=1e-14)
    assert loss == pytest.approx(3 * squared_loss(Y, S), rel=1e-13)


def test_poisson_zero_counts_and_1d_targets():
    S = np.array([[0.0], [1.0], [-2.0]])
    loss, dS = HEADS["poisson"].loss(S, np.array([0.0, 2.0, 0.0]))
    expected = np.mean([1.0, 2 * np.log(2) - 2 * 1 - 2 + np.e, np.exp(-2)])
    assert loss == pytest.approx(expected, rel=1e-14)
    assert_allclose(dS.ravel(), (np.exp(S.ravel()) - [0, 2, 0]) / 3, rtol=1e-14)
    assert np.isfinite(xlogy(0.0, 0.0))


@pytest.mark.parametrize("head", REGRESSION)
@pytest.mark.parametrize("C", [1, 4])
@pytest.mark.parametrize("weighted", [False, True])
def test_workspace_equals_the_reference(head, C, weighted):
    rng = np.random.default_rng(3)
    net = MLP(5, (7,), C, activation="relu", head=head, seed=2)
    X = rng.standard_normal((11, 5))
    T = net.encode_targets(_targets(head, rng, 11, C), 11)
    w = rng.uniform(0.2, 3.0, 11) if weighted else None
    ws = Workspace(net.layer_sizes, 16, activation="relu", head=head, dtype=np.float64)
    loss, grads, S = ws.step(net.params, X, T, 0.05, w)
    ref_loss, ref_grads, ref_S = net.loss_and_gradients(X, T, 0.05, w)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    assert_allclose(S, ref_S, rtol=1e-12, atol=1e-15)
    for k in ref_grads:
        assert_allclose(grads[k], ref_grads[k], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("head", REGRESSION)
def test_float32_stays_float32(head):
    rng = np.random.default_rng(4)
    net = MLP(3, (4,), 2, head=head, seed=0, dtype=np.float32)
    X = rng.standard_normal((5, 3)).astype(np.float32)
    loss, grads = net.loss(X, _targets(head, rng, 5, 2), reg=0.1)
    assert np.isfinite(loss) and all(g.dtype == np.float32 for g in grads.values())
    assert net.predict(X).dtype == np.float32 and net.predict(X).shape == (5, 2)


def test_predictions_are_the_link_of_the_scores():
    net = MLP(3, (4,), 1, head="poisson", seed=0)
    X = np.random.default_rng(5).standard_normal((6, 3))
    assert_allclose(net.predict(X), np.exp(net.loss(X).ravel()), rtol=1e-15)
    identity = MLP(3, (4,), 2, head="identity", seed=0)
    assert_allclose(identity.predict_proba(X), identity.loss(X), rtol=0)


@pytest.mark.parametrize(
    ("y", "match"),
    [
        (np.array([1.0, np.nan, 2.0]), "must be finite"),
        (np.array(["a", "b", "c"]), "must hold numbers"),
        (np.ones((3, 2)), r"\(n_samples, 1\) matrix"),
        (np.ones(4), "different lengths"),
    ],
)
def test_bad_targets_are_named(y, match):
    net = MLP(2, (3,), 1, head="identity", seed=0)
    with pytest.raises((ValueError, TypeError), match=match):
        net.loss(np.ones((3, 2)), y)


def test_poisson_refuses_negative_targets():
    net = MLP(2, (3,), 1, head="poisson", seed=0)
    with pytest.raises(ValueError, match=r"non-negative for the poisson head.*-1\.0"):
        net.loss(np.ones((3, 2)), np.array([1.0, -1.0, 0.0]))


@pytest.mark.parametrize("weighted", [False, True])
def test_validation_score_is_r2_for_regression_heads(weighted):
    rng = np.random.default_rng(6)
    net = MLP(3, (4,), 2, head="poisson", seed=0)
    X = rng.standard_normal((20, 3))
    Y = rng.poisson(1.5, (20, 2)).astype(float)
    w = rng.uniform(0.5, 2, 20) if weighted else None
    score = training.validation_score(net, net.loss(X), Y, w)
    assert score == pytest.approx(r2_score(Y, net.predict(X), sample_weight=w), rel=1e-12)
    const = np.ones((20, 2))  # a constant target: 1 if predicted exactly (e^0), else 0
    assert training.r2(net, np.zeros((20, 2)), const) == 1.0
    assert training.r2(net, np.full((20, 2), 0.5), const) == 0.0
    assert np.isnan(training.r2(net, np.full((20, 2), 1e300), const))  # e^S overflows
    assert np.isnan(training.r2(net, np.zeros((1, 2)), const[:1]))


@pytest.mark.parametrize(
    ("head", "P", "L"),
    [
        ("identity", "P = S", "(1/2N) Σ_i ‖P_i − Y_i‖²"),
        ("poisson", "P = e^S", "(1/N) Σ_i Σ_c [Y log(Y/P) − Y + P]"),
    ],
)
def test_explain_prints_the_regression_heads(head, P, L):
    from handgrad.explain import explain

    rows = {r.quantity: r for r in explain(4, (5,), 1, 8, head=head)}
    assert rows["P"].formula.startswith(P) and rows["P"].shape == "(8, 1)"
    assert rows["L"].formula.startswith(f"L = {L} + λ/2")
    assert rows["dS"].formula == "dS = (P − Y)/N"
