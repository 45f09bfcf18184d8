"""An independent oracle (micrograd's habit): PyTorch autograd on the same network.

PyTorch is an optional benchmark extra (``pip install -e '.[bench]'``); without it
these tests are skipped.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from handgrad import MLP

torch = pytest.importorskip("torch", reason="PyTorch not installed (optional extra 'bench')")

ACT = {"relu": torch.relu, "tanh": torch.tanh, "logistic": torch.sigmoid, "identity": lambda z: z}


def _torch_loss(net: MLP, X, y, reg, w):
    params = {k: torch.tensor(v, requires_grad=True) for k, v in net.params.items()}
    A = torch.tensor(X)
    for l in range(1, net.n_layers + 1):
        Z = A @ params[f"W{l}"] + params[f"b{l}"]
        A = ACT[net.activation](Z) if l < net.n_layers else Z
    weights = torch.tensor(w) if w is not None else torch.ones(len(X), dtype=torch.float64)
    if net.head == "softmax":
        per_row = torch.nn.functional.cross_entropy(A, torch.tensor(y), reduction="none")
    elif net.head == "identity":
        per_row = 0.5 * ((A - torch.tensor(y)) ** 2).sum(dim=1)
    elif net.head == "poisson":  # half deviance: e^S − Y S, plus Y log Y − Y
        Y = torch.tensor(y)
        nll = torch.nn.functional.poisson_nll_loss(A, Y, log_input=True, reduction="none")
        per_row = (nll + torch.xlogy(Y, Y) - Y).sum(dim=1)
    else:
        per_row = torch.nn.functional.binary_cross_entropy_with_logits(
            A, torch.tensor(y, dtype=torch.float64), reduction="none"
        ).sum(dim=1)
    loss = (weights * per_row).sum() / weights.sum()
    loss = loss + 0.5 * reg * sum((params[f"W{l}"] ** 2).sum() for l in range(1, net.n_layers + 1))
    loss.backward()
    return loss.item(), {k: p.grad.numpy() for k, p in params.items()}


@pytest.mark.parametrize(
    "activation,head,hidden,weighted",
    list(
        itertools.product(
            ["relu", "tanh", "logistic", "identity"],
            ["softmax", "sigmoid", "identity", "poisson"],
            [(7,), (6, 5)],
            [False, True],
        )
    ),
)
def test_loss_and_gradients_equal_pytorch_autograd(activation, head, hidden, weighted):
    rng = np.random.default_rng(0)
    C = 4
    net = MLP(5, hidden, C, activation=activation, head=head, seed=1)
    X = rng.standard_normal((9, 5))
    y = {
        "softmax": lambda: rng.integers(0, C, 9),
        "sigmoid": lambda: rng.integers(0, 2, (9, C)),
        "identity": lambda: rng.standard_normal((9, C)),
        "poisson": lambda: rng.poisson(2.0, (9, C)).astype(float),
    }[head]()
    w = rng.uniform(0.2, 3.0, 9) if weighted else None
    loss, grads = net.loss(X, y, reg=0.05, sample_weight=w)
    t_loss, t_grads = _torch_loss(net, X, y, 0.05, w)
    assert loss == pytest.approx(t_loss, rel=1e-12)
    for k in grads:
        np.testing.assert_allclose(grads[k], t_grads[k], rtol=1e-10, atol=1e-13)
