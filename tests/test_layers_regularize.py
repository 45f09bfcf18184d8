"""Dropout, batch norm and layer norm: finite differences, PyTorch autograd, the array API.

Each backward is checked against centred finite differences of ``L = Σ dy ⊙ y`` for a
random upstream dy (float64), and against PyTorch's own layers (``nn.BatchNorm1d``,
``nn.LayerNorm``, ``F.dropout``) to 1e-10, running statistics included.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import handgrad._xp as _xp
from handgrad import layers
from handgrad.gradcheck import numerical_gradient

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)
TIGHT = {"rtol": 1e-10, "atol": 1e-12}


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def torch():
    return pytest.importorskip("torch", reason="PyTorch not installed (optional extra 'bench')")


def _assert_gradient(analytic, f, x):
    """``analytic`` equals the centred finite differences of f at x (nudged in place).

    An absolute floor, since some entries are exactly 0 (batch norm's dx for N = 2).
    """
    numeric = numerical_gradient(f, x)
    assert analytic.shape == x.shape
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)


def _problem(seed, N, D):
    """x (N, D), γ, β (D,), upstream dy (N, D), running mean and variance (D,)."""
    r = np.random.default_rng(seed)
    x = 3 * r.standard_normal((N, D)) + r.standard_normal(D)
    gamma, beta = r.uniform(0.5, 2.0, D), r.standard_normal(D)
    return x, gamma, beta, r.standard_normal((N, D)), r.standard_normal(D), r.uniform(0.5, 2, D)


shapes = st.tuples(st.integers(0, 2**32 - 1), st.integers(2, 8), st.integers(1, 6))


# ------------------------------------------------------------------ finite differences
def test_dropout_backward_matches_numerical_with_a_fixed_mask(rng):
    A, dout = rng.standard_normal((5, 7)), rng.standard_normal((5, 7))
    M = rng.random((5, 7)) < 0.6
    out, cache = layers.dropout_forward(A, 0.4, M, True)
    np.testing.assert_allclose(out, A * M / 0.6, rtol=1e-15)
    dA = layers.dropout_backward(dout, cache)
    _assert_gradient(
        dA, lambda a: float(np.sum(layers.dropout_forward(a, 0.4, M, True)[0] * dout)), A
    )
    np.testing.assert_array_equal(dA[~M], 0)  # a dropped entry passes no gradient


@SETTINGS
@given(shapes, st.booleans())
def test_batchnorm_backward_matches_numerical(shape, train):
    x, gamma, beta, dy, rm, rv = _problem(*shape)

    def f(_):  # numerical_gradient nudges x, γ or β in place
        return float(np.sum(layers.batchnorm_forward(x, gamma, beta, rm, rv, train)[0] * dy))

    _, cache, _ = layers.batchnorm_forward(x, gamma, beta, rm, rv, train)
    dx, dgamma, dbeta = layers.batchnorm_backward(dy, cache)
    _assert_gradient(dx, f, x)
    _assert_gradient(dgamma, f, gamma)
    _assert_gradient(dbeta, f, beta)


@SETTINGS
@given(shapes)
def test_layernorm_backward_matches_numerical(shape):
    seed, N, D = shape
    x, gamma, beta, dy, _, _ = _problem(seed, N, D + 1)

    def f(_):
        return float(np.sum(layers.layernorm_forward(x, gamma, beta)[0] * dy))

    _, cache = layers.layernorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = layers.layernorm_backward(dy, cache)
    _assert_gradient(dx, f, x)
    _assert_gradient(dgamma, f, gamma)
    _assert_gradient(dbeta, f, beta)


def test_batchnorm_backward_is_the_compact_form(rng):
    x, gamma, beta, dy, rm, rv = _problem(3, 6, 4)
    y, cache, _ = layers.batchnorm_forward(x, gamma, beta, rm, rv, True, eps=1e-3)
    N, mu, var = 6, x.mean(axis=0), x.var(axis=0)
    x_hat = (x - mu) / np.sqrt(var + 1e-3)
    np.testing.assert_allclose(y, gamma * x_hat + beta, rtol=1e-13)
    expected = (gamma / N / np.sqrt(var + 1e-3)) * (
        N * dy - dy.sum(axis=0) - x_hat * (dy * x_hat).sum(axis=0)
    )
    dx, dgamma, dbeta = layers.batchnorm_backward(dy, cache)
    np.testing.assert_allclose(dx, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dgamma, (dy * x_hat).sum(axis=0), rtol=1e-13)
    np.testing.assert_allclose(dbeta, dy.sum(axis=0), rtol=1e-13)
    np.testing.assert_allclose(y.mean(axis=0), beta, atol=1e-13)  # x̂ has mean 0 ...
    np.testing.assert_allclose(((y - beta) / gamma).var(axis=0), var / (var + 1e-3))  # var 1


@SETTINGS
@given(shapes)
def test_shifting_what_is_normalized_changes_nothing_so_dx_sums_to_zero(shape):
    """Adding a constant to a column (batch norm) or a row (layer norm) leaves x̂ as it
    was: dx sums to zero along the axis of the statistics, as docs/derivation.md notes."""
    x, gamma, beta, dy, rm, rv = _problem(*shape)
    _, cache, _ = layers.batchnorm_forward(x, gamma, beta, rm, rv, True)
    dx = layers.batchnorm_backward(dy, cache)[0]
    np.testing.assert_allclose(dx.sum(axis=0), 0, atol=1e-12 * np.abs(dx).max(initial=1))
    _, cache = layers.layernorm_forward(x, gamma, beta)
    dx = layers.layernorm_backward(dy, cache)[0]
    np.testing.assert_allclose(dx.sum(axis=1), 0, atol=1e-12 * np.abs(dx).max(initial=1))


# ------------------------------------------------------------------ PyTorch autograd
def _torch_grads(torch, y, dy, inputs):
    return [g.numpy() for g in torch.autograd.grad((y * torch.tensor(dy)).sum(), inputs)]


def test_batchnorm_equals_torch_batchnorm1d_over_several_steps_and_in_eval(torch):
    D, steps = 5, 4
    bn = torch.nn.BatchNorm1d(D, dtype=torch.float64)
    x, gamma, beta, dy, _, _ = _problem(1, 7, D)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(gamma))
        bn.bias.copy_(torch.tensor(beta))
    running = (np.zeros(D), np.ones(D))  # BatchNorm1d's start
    r = np.random.default_rng(2)
    for step in range(steps + 1):
        train = step < steps  # the last pass predicts
        bn.train(train)
        x, dy = 2 * r.standard_normal((7 + step, D)) + step, r.standard_normal((7 + step, D))
        x_t = torch.tensor(x, requires_grad=True)
        y_t = bn(x_t)
        t_dx, t_dgamma, t_dbeta = _torch_grads(torch, y_t, dy, [x_t, bn.weight, bn.bias])
        y, cache, running = layers.batchnorm_forward(x, gamma, beta, *running, train)
        dx, dgamma, dbeta = layers.batchnorm_backward(dy, cache)
        np.testing.assert_allclose(y, y_t.detach().numpy(), **TIGHT)
        np.testing.assert_allclose(dx, t_dx, **TIGHT)
        np.testing.assert_allclose(dgamma, t_dgamma, **TIGHT)
        np.testing.assert_allclose(dbeta, t_dbeta, **TIGHT)
        np.testing.assert_allclose(running[0], bn.running_mean.numpy(), **TIGHT)
        np.testing.assert_allclose(running[1], bn.running_var.numpy(), **TIGHT)
    assert not np.allclose(running[1], 1)  # the steps moved the statistics


@pytest.mark.parametrize("momentum,eps", [(0.3, 1e-3), (1.0, 1e-5), (0.0, 0.1)])
def test_batchnorm_momentum_and_eps_are_torchs(torch, momentum, eps):
    x, gamma, beta, dy, rm, rv = _problem(4, 6, 3)
    rm_t, rv_t = torch.tensor(rm), torch.tensor(rv)  # F.batch_norm updates these in place
    x_t, g_t, b_t = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    y_t = torch.nn.functional.batch_norm(x_t, rm_t, rv_t, g_t, b_t, True, momentum, eps)
    y, cache, (new_rm, new_rv) = layers.batchnorm_forward(
        x, gamma, beta, rm, rv, True, momentum, eps
    )
    np.testing.assert_allclose(y, y_t.detach().numpy(), **TIGHT)
    for ours, theirs in zip(
        layers.batchnorm_backward(dy, cache),
        _torch_grads(torch, y_t, dy, [x_t, g_t, b_t]),
        strict=True,
    ):
        np.testing.assert_allclose(ours, theirs, **TIGHT)
    np.testing.assert_allclose(new_rm, rm_t.numpy(), **TIGHT)
    np.testing.assert_allclose(new_rv, rv_t.numpy(), **TIGHT)  # unbiased: σ²_B N/(N − 1)


@SETTINGS
@given(shapes)
def test_layernorm_equals_torch_layernorm(shape):
    torch = pytest.importorskip("torch")
    seed, N, D = shape
    x, gamma, beta, dy, _, _ = _problem(seed, N, D + 1)
    ln = torch.nn.LayerNorm(D + 1, dtype=torch.float64)
    with torch.no_grad():
        ln.weight.copy_(torch.tensor(gamma))
        ln.bias.copy_(torch.tensor(beta))
    x_t = torch.tensor(x, requires_grad=True)
    y_t = ln(x_t)
    y, cache = layers.layernorm_forward(x, gamma, beta)
    np.testing.assert_allclose(y, y_t.detach().numpy(), **TIGHT)
    theirs = _torch_grads(torch, y_t, dy, [x_t, ln.weight, ln.bias])
    for ours, t in zip(layers.layernorm_backward(dy, cache), theirs, strict=True):
        np.testing.assert_allclose(ours, t, **TIGHT)


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_dropout_equals_torch_dropout_with_its_own_mask(torch, rng, rate):
    """``rate`` is PyTorch's p: with the mask torch drew, the same output and gradient."""
    A, dout = rng.standard_normal((20, 30)), rng.standard_normal((20, 30))
    torch.manual_seed(0)
    A_t = torch.tensor(A, requires_grad=True)
    out_t = torch.nn.functional.dropout(A_t, p=rate, training=True)
    M = out_t.detach().numpy() != 0  # A has no zeros: the entries torch kept
    out, cache = layers.dropout_forward(A, rate, M, True)
    np.testing.assert_allclose(out, out_t.detach().numpy(), **TIGHT)
    (t_dA,) = _torch_grads(torch, out_t, dout, [A_t])
    np.testing.assert_allclose(layers.dropout_backward(dout, cache), t_dA, **TIGHT)


# ------------------------------------------------------------------ dropout's contract
def test_dropout_is_the_identity_when_not_training(rng):
    A, dout = rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
    gen = np.random.default_rng(5)
    before = gen.bit_generator.state
    out, cache = layers.dropout_forward(A, 0.5, gen, False)
    np.testing.assert_array_equal(out, A)
    np.testing.assert_array_equal(layers.dropout_backward(dout, cache), dout)
    assert gen.bit_generator.state == before  # predict time draws nothing
    out, cache = layers.dropout_forward(A, 0.0, gen, True)  # rate 0: also nothing
    np.testing.assert_array_equal(out, A)
    assert gen.bit_generator.state == before


def test_dropout_keeps_the_expected_fraction_and_the_expected_value():
    A = np.ones((400, 250))
    out, _ = layers.dropout_forward(A, 0.2, np.random.default_rng(0), True)
    kept = out != 0
    # 10⁵ Bernoulli(0.8) draws: the standard deviation of the fraction is 0.0013.
    assert abs(kept.mean() - 0.8) < 0.005
    np.testing.assert_allclose(out[kept], 1 / 0.8, rtol=1e-15)
    assert abs(out.mean() - 1.0) < 0.007  # inverted: E[Ã] = A


def test_dropout_mask_is_the_generators_uniforms_below_p():
    """Same seed, same mask: what a resumed run relies on."""
    A = np.ones((6, 9))
    a, _ = layers.dropout_forward(A, 0.3, np.random.default_rng(7), True)
    b, _ = layers.dropout_forward(A, 0.3, np.random.default_rng(7), True)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a != 0, np.random.default_rng(7).random((6, 9)) < 0.7)
    gen = np.random.default_rng(7)
    first, _ = layers.dropout_forward(A, 0.3, gen, True)
    second, _ = layers.dropout_forward(A, 0.3, gen, True)
    assert (first != second).any()  # the generator moves on


@pytest.mark.parametrize(
    "rate,mask,message",
    [
        (1.0, None, r"rate must be a drop probability in \[0, 1\), got 1.0"),
        (-0.1, None, r"rate must be a drop probability in \[0, 1\), got -0.1"),
        (0.5, None, "dropout in training needs a numpy.random.Generator or a mask, got None"),
        (0.5, np.ones((3, 4)), r"the dropout mask has shape \(3, 4\), but A has shape \(3, 5\)"),
    ],
)
def test_dropout_bad_arguments_are_one_clear_error(rate, mask, message):
    with pytest.raises(ValueError, match=message):
        layers.dropout_forward(np.ones((3, 5)), rate, mask, True)


# ------------------------------------------------------------------ running statistics
def test_running_statistics_are_new_arrays_and_the_callers_are_kept():
    x, gamma, beta, _, rm, rv = _problem(0, 5, 3)
    rm0, rv0 = rm.copy(), rv.copy()
    _, _, (new_rm, new_rv) = layers.batchnorm_forward(x, gamma, beta, rm, rv, True, 0.25)
    np.testing.assert_array_equal(rm, rm0)
    np.testing.assert_array_equal(rv, rv0)
    np.testing.assert_allclose(new_rm, 0.75 * rm0 + 0.25 * x.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(new_rv, 0.75 * rv0 + 0.25 * x.var(axis=0, ddof=1), rtol=1e-14)
    _, _, (same_rm, same_rv) = layers.batchnorm_forward(x, gamma, beta, rm, rv, False, 0.25)
    np.testing.assert_array_equal(same_rm, rm0)  # predict time leaves them as they are
    np.testing.assert_array_equal(same_rv, rv0)


def test_batchnorm_eval_uses_the_running_statistics():
    x, gamma, beta, _, rm, rv = _problem(2, 4, 3)
    y, _, _ = layers.batchnorm_forward(x, gamma, beta, rm, rv, False, eps=1e-5)
    np.testing.assert_allclose(y, gamma * (x - rm) / np.sqrt(rv + 1e-5) + beta, rtol=1e-13)
    one_row, _, _ = layers.batchnorm_forward(x[:1], gamma, beta, rm, rv, False)
    np.testing.assert_allclose(one_row, y[:1], rtol=1e-15)  # each row on its own


def test_batchnorm_training_on_one_row_is_one_clear_error():
    x, gamma, beta, _, rm, rv = _problem(0, 1, 3)
    with pytest.raises(
        ValueError, match="batch normalization needs at least 2 rows to train, but x has 1"
    ):
        layers.batchnorm_forward(x, gamma, beta, rm, rv, True)


def test_layernorm_rows_are_independent_of_the_batch(rng):
    x, gamma, beta, _, _, _ = _problem(5, 6, 4)
    y, _ = layers.layernorm_forward(x, gamma, beta)
    np.testing.assert_allclose(layers.layernorm_forward(x[2:3], gamma, beta)[0], y[2:3], rtol=1e-15)
    x_hat = (y - beta) / gamma
    np.testing.assert_allclose(x_hat.mean(axis=1), 0, atol=1e-14)


# ------------------------------------------------------------------ dtypes and the array API
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_pair_keeps_the_dtype(dtype):
    x, gamma, beta, dy, rm, rv = (a.astype(dtype) for a in _problem(0, 6, 4))
    exact = _every_pair(*_problem(0, 6, 4))
    got = _every_pair(x, gamma, beta, dy, rm, rv)
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-15, "atol": 0}
    for name in exact:
        assert got[name].dtype == dtype, name
        np.testing.assert_allclose(got[name], exact[name], **tol, err_msg=name)


def _every_pair(x, gamma, beta, dy, rm, rv, mask=None):
    """Every output of every pair on one problem, by name."""
    out = {}
    mask = (np.arange(x.shape[0] * x.shape[1]).reshape(x.shape) % 3 != 0) if mask is None else mask
    out["dropout"], cache = layers.dropout_forward(x, 0.25, mask, True)
    out["dropout dA"] = layers.dropout_backward(dy, cache)
    for train in (True, False):
        y, cache, (new_rm, new_rv) = layers.batchnorm_forward(x, gamma, beta, rm, rv, train)
        grads = layers.batchnorm_backward(dy, cache)
        for name, a in zip(
            ("y", "dx", "dgamma", "dbeta", "rm", "rv"), (y, *grads, new_rm, new_rv), strict=True
        ):
            out[f"batchnorm {train} {name}"] = a
    y, cache = layers.layernorm_forward(x, gamma, beta)
    for name, a in zip(
        ("y", "dx", "dgamma", "dbeta"), (y, *layers.layernorm_backward(dy, cache)), strict=True
    ):
        out[f"layernorm {name}"] = a
    return out


@pytest.fixture(params=["array_api_strict", "torch"])
def put(request):
    """How to put a NumPy array on another library's device (tests/test_array_api.py)."""
    if request.param == "torch":
        torch = pytest.importorskip("torch")
        return torch.asarray
    xs = pytest.importorskip("array_api_strict")
    return lambda a: xs.asarray(a, device=xs.Device("device1"))


def test_array_api_path_gives_the_numpy_numbers(put):
    problem = _problem(0, 6, 4)
    mask = np.random.default_rng(1).random((6, 4)) < 0.75
    expected = _every_pair(*problem, mask=mask)
    moved = [put(a) for a in problem]
    got = _every_pair(*moved, mask=put(mask))
    where = _xp.device(moved[0])
    for name, a in expected.items():
        assert type(got[name]) is type(moved[0]) and _xp.device(got[name]) == where, name
        np.testing.assert_allclose(
            np.asarray(_xp.to_numpy(got[name])), a, rtol=0, atol=1e-12, err_msg=name
        )


def test_array_api_dropout_draws_the_numpy_mask_from_the_generator(put):
    A = np.random.default_rng(0).standard_normal((5, 8))
    A_moved = put(A)
    expected, _ = layers.dropout_forward(A, 0.4, np.random.default_rng(3), True)
    got, cache = layers.dropout_forward(A_moved, 0.4, np.random.default_rng(3), True)
    assert _xp.device(got) == _xp.device(A_moved)
    np.testing.assert_array_equal(np.asarray(_xp.to_numpy(got)), expected)
    dA = layers.dropout_backward(put(np.ones((5, 8))), cache)
    np.testing.assert_array_equal(np.asarray(_xp.to_numpy(dA)), (expected != 0) / 0.6)
