"""MLP and TwoLayerNet: every gradient against finite differences, shapes, dtypes, errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from handgrad import MLP, TwoLayerNet, check_gradients
from handgrad.heads import ACTIVATIONS
from handgrad.heads import HEADS as HEAD_RECORDS

HEADS = [("softmax", 3), ("sigmoid", 1), ("sigmoid", 3)]
DEPTHS = [(5,), (5, 4), (5, 4, 3)]

# Centred differences in float64 with h = 1e-5 carry an absolute error of about
# 1e-11 · |L| per entry, so a relative error of 1e-7 is only measurable on entries whose
# magnitude is above ~1e-4 · |L|. The fixture draws random nets until every analytic
# gradient entry is either exactly zero (a dead unit, which the numerical side sees as
# exactly zero too) or above that floor; a wrong gradient still shows as an error ~1.
FLOOR = 1e-4
# logistic's slope is at most 1/4: larger weights keep deep gradients above the floor.
STD = {"relu": 0.5, "tanh": 0.5, "identity": 0.5, "logistic": 1.5}


def _net_and_data(activation, head, C, hidden, seed, reg=0.1, weighted=True):
    rng = np.random.default_rng(seed)
    for _ in range(200):
        net = MLP(
            4,
            hidden,
            C,
            activation=activation,
            head=head,
            init="normal",
            std=STD[activation],
            seed=rng,
        )
        for name, value in net.params.items():
            if name.startswith("b"):  # nonzero biases: no Z lands exactly on ReLU's kink
                net.params[name] = rng.normal(0, 0.5, value.shape)
        X = rng.standard_normal((3, 4))
        y = rng.integers(0, C, 3) if head == "softmax" else rng.integers(0, 2, (3, C))
        w = rng.uniform(0.5, 2.0, 3) if weighted else None
        loss, grads = net.loss(X, y, reg=reg, sample_weight=w)
        g = np.concatenate([v.ravel() for v in grads.values()])
        if np.all((g == 0) | (np.abs(g) > FLOOR * max(1.0, loss))):
            return net, X, y, w
    raise AssertionError("no well-conditioned net drawn")


@pytest.mark.parametrize(
    "activation,head_c,hidden",
    list(itertools.product(sorted(ACTIVATIONS), HEADS, DEPTHS)),
)
@pytest.mark.parametrize("reg", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_every_gradient_matches_numerical(activation, head_c, hidden, reg, weighted):
    head, C = head_c
    net, X, y, w = _net_and_data(activation, head, C, hidden, len(hidden) * 7 + C, reg, weighted)
    errors = check_gradients(net, X, y, reg=reg, sample_weight=w)
    assert set(errors) == set(net.params)
    assert max(errors.values()) < 1e-7, errors


def test_a_wrong_gradient_is_caught():
    net, X, y, _ = _net_and_data("relu", "softmax", 3, (5,), seed=0)
    good = check_gradients(net, X, y, reg=0.1)
    assert max(good.values()) < 1e-7
    original = net.backward

    def broken(dS, caches, reg):
        grads = original(dS, caches, reg)
        grads["W1"] = grads["W1"] * 1.01
        return grads

    net.backward = broken
    bad = check_gradients(net, X, y, reg=0.1)
    assert bad["W1"] > 1e-3 and bad["W2"] < 1e-7


def test_two_layer_net_shapes_and_init():
    net = TwoLayerNet(6, 10, 4, std=1e-2, seed=0)
    shapes = {k: v.shape for k, v in net.params.items()}
    assert shapes == {"W1": (6, 10), "b1": (10,), "W2": (10, 4), "b2": (4,)}
    np.testing.assert_array_equal(net.params["b1"], 0)
    assert 0.005 < net.params["W1"].std() < 0.015
    scores = net.loss(np.ones((3, 6)))
    assert scores.shape == (3, 4)


def test_known_weights_give_known_scores_and_loss():
    net = TwoLayerNet(2, 2, 2)
    net.params["W1"] = np.array([[1.0, -1.0], [0.0, 2.0]])
    net.params["b1"] = np.array([0.0, -1.0])
    net.params["W2"] = np.array([[1.0, 0.0], [0.0, 1.0]])
    net.params["b2"] = np.array([0.5, 0.0])
    X = np.array([[1.0, 1.0]])
    # Z1 = [1, 0], A1 = [1, 0], S = [1.5, 0]
    np.testing.assert_allclose(net.loss(X), [[1.5, 0.0]])
    loss, grads = net.loss(X, np.array([0]), reg=0.0)
    assert loss == pytest.approx(np.log(1 + np.exp(-1.5)))
    p0 = 1 / (1 + np.exp(-1.5))
    np.testing.assert_allclose(grads["b2"], [p0 - 1, 1 - p0])
    np.testing.assert_allclose(grads["W2"], [[p0 - 1, 1 - p0], [0, 0]])


def test_reg_adds_half_lambda_norms_to_the_loss():
    net = TwoLayerNet(3, 4, 2, std=0.3, seed=1)
    X, y = np.ones((2, 3)), np.array([0, 1])
    base, _ = net.loss(X, y, reg=0.0)
    with_reg, grads = net.loss(X, y, reg=0.2)
    norms = np.sum(net.params["W1"] ** 2) + np.sum(net.params["W2"] ** 2)
    assert with_reg - base == pytest.approx(0.1 * norms)
    _, grads0 = net.loss(X, y, reg=0.0)
    np.testing.assert_allclose(grads["W1"] - grads0["W1"], 0.2 * net.params["W1"])
    np.testing.assert_array_equal(grads["b1"], grads0["b1"])  # biases not penalised


def test_predict_and_predict_proba():
    net = MLP(3, (4,), 3, seed=0)
    X = np.random.default_rng(0).standard_normal((5, 3))
    P = net.predict_proba(X)
    np.testing.assert_allclose(P.sum(axis=1), 1)
    np.testing.assert_array_equal(net.predict(X), P.argmax(axis=1))
    binary = MLP(3, (4,), 1, head="sigmoid", seed=0)
    assert binary.predict(X).shape == (5,)
    multilabel = MLP(3, (4,), 2, head="sigmoid", seed=0)
    assert multilabel.predict(X).shape == (5, 2)


@pytest.mark.parametrize("init", ["glorot", "he", "normal"])
def test_inits_are_seeded(init):
    a = MLP(5, (7, 3), 2, init=init, seed=3)
    b = MLP(5, (7, 3), 2, init=init, seed=3)
    c = MLP(5, (7, 3), 2, init=init, seed=4)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert not np.array_equal(a.params["W1"], c.params["W1"])


def test_glorot_bounds_match_scikit_learn():
    net = MLP(100, (50,), 10, init="glorot", seed=0)
    bound = np.sqrt(6 / 150)
    assert np.abs(net.params["W1"]).max() <= bound
    assert np.abs(net.params["W1"]).max() > 0.95 * bound


def test_float32_stays_float32_through_loss_and_train():
    net = TwoLayerNet(4, 8, 3, std=0.1, seed=0, dtype=np.float32)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 4)).astype(np.float32)
    y = rng.integers(0, 3, 30)
    assert net.loss(X).dtype == np.float32
    loss, grads = net.loss(X, y, reg=0.1)
    assert isinstance(loss, float)
    assert all(g.dtype == np.float32 for g in grads.values())
    net.train(X, y, X, y, num_iters=5, batch_size=10)
    assert all(p.dtype == np.float32 for p in net.params.values())
    assert net.predict_proba(X.astype(np.float64)).dtype == np.float32


def test_train_drives_loss_below_002_on_separable_data():
    rng = np.random.default_rng(0)
    centres = np.array([[3.0, 3.0], [-3.0, 3.0], [0.0, -3.0]])
    y = np.repeat(np.arange(3), 30)
    X = centres[y] + 0.3 * rng.standard_normal((90, 2))
    net = TwoLayerNet(2, 20, 3, std=0.1, seed=0)
    history = net.train(
        X,
        y,
        X,
        y,
        learning_rate=0.5,
        learning_rate_decay=0.99,
        reg=1e-5,
        num_iters=300,
        batch_size=30,
        seed=0,
    )
    assert history["loss_history"][-1] < 0.02
    assert len(history["loss_history"]) == 300
    assert len(history["train_acc_history"]) == len(history["val_acc_history"]) == 100
    assert history["val_acc_history"][-1] == 1.0


@pytest.mark.parametrize(
    "X, y, message",
    [
        (np.ones((3, 5)), np.array([0, 1, 2]), "X has 5 features, but the model expects 4"),
        (np.ones(4), np.array([0]), "must be 2-D"),
        (np.ones((2, 4, 1)), np.array([0, 1]), "must be 2-D"),
        (np.array([[np.nan, 1, 1, 1]]), np.array([0]), "contains NaN"),
        (np.array([[np.inf, 1, 1, 1]]), np.array([0]), "contains infinity"),
        (np.ones((3, 4)), np.array([0, 1, 3]), "label 3 out of range"),
        (np.ones((3, 4)), np.array([0, -1, 1]), "label -1 out of range"),
        (np.ones((3, 4)), np.array([0, 1]), "different lengths"),
        (np.empty((0, 4)), np.array([], dtype=int), "is empty"),
        (np.array([["a", "b", "c", "d"]]), np.array([0]), "must hold numbers"),
        (np.ones((2, 4)), np.array(["a", "b"]), "integer class indices"),
    ],
)
def test_bad_input_names_the_problem(X, y, message):
    net = MLP(4, (3,), 3, seed=0)
    with pytest.raises((ValueError, TypeError), match=message):
        net.loss(X, y)


def test_bad_predict_input_and_bad_reg():
    net = MLP(4, (3,), 3, seed=0)
    with pytest.raises(ValueError, match="3 features, but the model expects 4"):
        net.predict(np.ones((2, 3)))
    with pytest.raises(ValueError, match="reg must be >= 0"):
        net.loss(np.ones((2, 4)), np.array([0, 1]), reg=-1.0)
    with pytest.raises(ValueError, match="reg must be finite"):
        net.loss(np.ones((2, 4)), np.array([0, 1]), reg=float("nan"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"hidden_sizes": (0,)}, "hidden size 1 must be >= 1"),
        ({"activation": "swish"}, "activation must be one of"),
        ({"head": "linear"}, "head must be one of"),
        ({"dtype": np.int64}, "dtype must be float32 or float64"),
        ({"output_size": 1}, "softmax head needs output_size >= 2"),
        ({"std": -1.0}, "std must be > 0"),
    ],
)
def test_bad_constructor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MLP(**{"input_size": 3, "output_size": 2, **kwargs})


def test_copy_is_deep_and_casts():
    net = MLP(3, (4,), 2, seed=0)
    twin = net.copy(np.float32)
    assert twin.dtype == np.float32 and net.dtype == np.float64
    twin.params["W1"][0, 0] = 99
    assert net.params["W1"][0, 0] != 99


# ------------------------------------------------------------------------ memory
def test_a_network_too_large_for_memory_is_refused_before_allocating():
    """100 → 10⁹ → 3 in float64 is 775 GiB of weights: a ValueError naming the size,
    not NumPy's MemoryError from the first draw."""
    with pytest.raises(
        ValueError,
        match=r"the network 100→1000000000→3 \(float64\) needs 775 GiB for its weights, "
        r"more than this machine's [\d.]+ [GMT]iB of memory; use fewer or smaller",
    ):
        MLP(100, (10**9,), 3)


def test_the_memory_check_uses_the_machines_total(monkeypatch):
    import handgrad._validation as validation

    monkeypatch.setattr(validation, "total_memory", lambda: 500)
    # (4 + 1)·8 + (8 + 1)·3 = 67 parameters, 536 bytes
    with pytest.raises(
        ValueError,
        match="needs 536 bytes for its weights, more than this machine's 500 bytes of memory",
    ):
        MLP(4, (8,), 3)
    monkeypatch.setattr(validation, "total_memory", lambda: None)  # unknown: no check
    assert MLP(4, (8,), 3).params["W1"].shape == (4, 8)


def test_sizes_in_messages_never_carry_an_exponent():
    from handgrad._validation import format_bytes

    assert format_bytes(12) == "12 bytes"
    assert format_bytes(1.5 * 2**20) == "1.5 MiB"
    assert format_bytes(775 * 2**30) == "775 GiB"
    assert format_bytes(1010 * 2**30) == "1010 GiB"
    assert format_bytes(3 * 2**40) == "3 TiB"


@pytest.mark.parametrize("reg", [0.0, 0.3])
@pytest.mark.parametrize("head_c", [("softmax", 3), ("sigmoid", 2), ("poisson", 2)])
def test_objective_is_the_loss_without_the_backward_pass(reg, head_c):
    head, C = head_c
    rng = np.random.default_rng(0)
    net = MLP(4, (5, 3), C, head=head, seed=0)
    X, w = rng.standard_normal((7, 4)), rng.random(7)
    y = HEAD_RECORDS[head].task.random_targets(rng, 7, C)
    assert net.objective(X, y, reg, w) == net.loss(X, y, reg=reg, sample_weight=w)[0]
    with pytest.raises(ValueError, match="reg must be >= 0"):
        net.objective(X, y, -1.0)


def test_a_gradient_with_no_penalty_is_the_data_gradient_exactly():
    rng = np.random.default_rng(1)
    net = MLP(4, (5,), 3, seed=0)
    X, y = rng.standard_normal((6, 4)), np.array([0, 1, 2, 0, 1, 2])
    S, caches = net.forward(X)
    _, dS = net.data_loss(S, y, None)
    dW2 = caches[1][0][0].T @ dS  # A1ᵀ dS: nothing added for λ = 0
    np.testing.assert_array_equal(net.backward(dS, caches, 0.0)["W2"], dW2)
