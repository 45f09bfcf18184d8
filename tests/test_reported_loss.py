"""The core's loss is the notes' loss, exactly; scikit-learn's clipped *reported* loss is
the estimators' convention (handgrad.estimator.ReportedLoss), in one place."""

import numpy as np
import pytest
import torch
from sklearn.neural_network._base import ACTIVATIONS as SK_ACTIVATIONS
from sklearn.neural_network._base import LOSS_FUNCTIONS

from handgrad import MLP, TwoLayerNet, check_gradients
from handgrad.estimator import ReportedLoss
from handgrad.heads import HEADS


def _scores(C, dtype, n=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng, (rng.standard_normal((n, C)) * 30).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("head", "C"), [("softmax", 3), ("sigmoid", 1), ("sigmoid", 3)])
@pytest.mark.parametrize("weighted", [False, True])
def test_the_reported_loss_is_scikit_learns_where_p_reaches_0_and_1(head, C, dtype, weighted):
    rng, S = _scores(C, dtype)
    w = rng.uniform(0.1, 2.0, len(S)).astype(dtype) if weighted else None
    P = S.copy()
    SK_ACTIVATIONS["softmax" if head == "softmax" else "logistic"](P)  # in place
    if head == "softmax":
        T = rng.integers(0, C, len(S))
        theirs = LOSS_FUNCTIONS["log_loss"](np.eye(C, dtype=dtype)[T], P, w)
    else:
        T = rng.integers(0, 2, (len(S), C)).astype(dtype)
        theirs = LOSS_FUNCTIONS["binary_log_loss"](T, P, w)
    exact = HEADS[head].loss(S, T, w)[0]
    reported = ReportedLoss(head)(S, T, w, 0.25)
    tol = 2e-6 if dtype == np.float32 else 1e-12
    assert reported == pytest.approx(theirs + 0.25, rel=tol)
    assert exact > theirs + 0.1  # the clip mattered: the exact loss is larger


@pytest.mark.parametrize("head", ["identity", "poisson"])
def test_the_reported_regression_loss_is_scikit_learns(head):
    rng = np.random.default_rng(1)
    S, Y = rng.standard_normal((30, 3)), rng.uniform(0.5, 2.0, (30, 3))
    name = "squared_error" if head == "identity" else "poisson"
    pred = S if head == "identity" else np.exp(S)
    theirs = LOSS_FUNCTIONS[name](Y, pred)
    assert ReportedLoss(head)(S, Y, None, 0.5) == pytest.approx(theirs + 0.5, rel=1e-12)


def _large_score_net():
    """The issue's case: TwoLayerNet(28, 25, 6, std=0.5) on X = 3·N(0, 1), 44 rows."""
    rng = np.random.default_rng(0)
    net = TwoLayerNet(28, 25, 6, std=0.5, seed=0)
    X = 3 * rng.standard_normal((44, 28))
    y = rng.integers(0, 6, 44)
    return net, X, y


def test_two_layer_net_loss_is_torch_cross_entropy_plus_penalty():
    net, X, y = _large_score_net()
    reg = 0.1
    scores = net.loss(X)
    assert np.abs(scores).max() > 30  # scores far past float32's −log ε
    loss, _ = net.loss(X, y, reg=reg)
    S = torch.from_numpy(scores)
    theirs = torch.nn.functional.cross_entropy(S, torch.from_numpy(y)).item()
    penalty = 0.5 * reg * sum(float(np.sum(net.params[k] ** 2)) for k in ("W1", "W2"))
    assert loss == pytest.approx(theirs + penalty, rel=1e-12)
    assert max(check_gradients(net, X, y, reg=reg).values()) < 1e-6


@pytest.mark.parametrize("head", ["softmax", "sigmoid"])
def test_mlp_loss_is_torch_on_scores_reaching_100(head):
    rng = np.random.default_rng(3)
    model = MLP(10, (16,), 4, head=head, seed=0)
    X = 60 * rng.standard_normal((25, 10))
    S = model.forward(X)[0]
    assert np.abs(S).max() > 100
    St = torch.from_numpy(S)
    if head == "softmax":
        y = rng.integers(0, 4, 25)
        theirs = torch.nn.functional.cross_entropy(St, torch.from_numpy(y)).item()
    else:
        y = rng.integers(0, 2, (25, 4))
        theirs = (
            torch.nn.functional.binary_cross_entropy_with_logits(
                St, torch.from_numpy(y.astype(np.float64)), reduction="sum"
            ).item()
            / 25
        )
    loss, _ = model.loss(X, y, reg=0.0)
    assert loss == pytest.approx(theirs, rel=1e-12)
    assert max(check_gradients(model, X, y).values()) < 1e-5  # ReLU kinks within h


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gradcheck_passes_on_a_default_trained_model(tmp_path, dtype):
    """A trained network is confidently right on most rows; with the clipped loss of
    before, the finite differences saw a constant and called it wrong (errors of 1.0)."""
    from click.testing import CliRunner

    from handgrad.cli import main

    runner = CliRunner()
    run = tmp_path / "run"
    trained = runner.invoke(main, ["train", "--dtype", dtype, "--out", str(run)])
    assert trained.exit_code == 0, trained.output
    checked = runner.invoke(main, ["gradcheck", "--model", str(run)])
    assert checked.exit_code == 0, checked.output
    assert "PASS: every gradient agrees with finite differences" in checked.output
    assert "FAIL" not in checked.output
