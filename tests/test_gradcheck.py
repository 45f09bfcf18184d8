"""The gradient checker itself: numerical_gradient, rel_error, check_gradients."""

from __future__ import annotations

import numpy as np
import pytest

from handgrad import MLP, check_gradients, numerical_gradient, rel_error
from handgrad.gradcheck import gradient_errors, norm_error


def test_numerical_gradient_of_known_functions():
    x = np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(
        numerical_gradient(lambda v: float(np.sum(v**3)), x), 3 * x**2, rtol=1e-9
    )
    M = np.array([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_allclose(
        numerical_gradient(lambda m: float(np.sum(np.sin(m))), M), np.cos(M), rtol=1e-9
    )


def test_numerical_gradient_restores_the_array():
    x = np.array([0.3, 0.7])
    before = x.copy()
    numerical_gradient(lambda v: float(v @ v), x)
    np.testing.assert_array_equal(x, before)


def test_centred_differences_are_second_order():
    f = lambda v: float(np.exp(v[0]))  # noqa: E731
    x = np.array([0.0])
    err_big = abs(numerical_gradient(f, x, h=1e-2)[0] - 1)
    err_small = abs(numerical_gradient(f, x, h=1e-3)[0] - 1)
    assert err_big / err_small == pytest.approx(100, rel=0.01)


def test_rel_error():
    assert rel_error([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert rel_error([1.0], [3.0]) == pytest.approx(0.5)
    assert rel_error([0.0], [1e-12]) == pytest.approx(1e-4)  # the 1e-8 floor
    assert rel_error(np.zeros(0), np.zeros(0)) == 0.0
    with pytest.raises(ValueError, match="equal shapes"):
        rel_error(np.zeros(2), np.zeros(3))


def test_check_gradients_works_on_float32_models_without_changing_them():
    net = MLP(3, (4,), 2, init="normal", std=0.5, seed=0, dtype=np.float32)
    before = {k: v.copy() for k, v in net.params.items()}
    X = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    errors = check_gradients(net, X, np.array([0, 1, 1, 0]), reg=0.1)
    assert max(errors.values()) < 1e-6
    for k, v in net.params.items():
        assert v.dtype == np.float32
        np.testing.assert_array_equal(v, before[k])


def test_norm_error_and_gradient_errors():
    assert norm_error([3.0, 4.0], [3.0, 4.0]) == 0.0
    assert norm_error([1.0, 0.0], [0.0, 0.0]) == pytest.approx(1.0)
    net = MLP(3, (4,), 2, init="normal", std=0.5, seed=0)
    X = np.random.default_rng(0).standard_normal((4, 3))
    errors = gradient_errors(net, X, np.array([0, 1, 1, 0]), reg=0.1)
    assert set(errors) == set(net.params)
    for entry, norm in errors.values():
        assert norm <= entry + 1e-15 and entry < 1e-6


def test_a_sample_of_entries_matches_the_full_check_at_those_entries():
    from handgrad.gradcheck import numerical_gradient, sample_entries

    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 7))

    def f(a):
        return float(np.sum(np.sin(a) * a))

    entries = sample_entries(x.shape, 5, np.random.default_rng(3))
    assert entries == sample_entries(x.shape, 5, np.random.default_rng(3))  # seeded
    assert len(set(entries)) == 5 and all(0 <= i < 6 and 0 <= j < 7 for i, j in entries)
    full = numerical_gradient(f, x)
    part = numerical_gradient(f, x, entries=entries)
    np.testing.assert_array_equal(part, [full[i] for i in entries])
    assert len(sample_entries((3,), 10, rng)) == 3  # never more than there are


def test_gradcheck_of_a_model_samples_entries_and_refuses_architecture_options(tmp_path):
    from click.testing import CliRunner

    from handgrad.cli import main
    from handgrad.network import MLP
    from handgrad.state import save_model

    path = save_model(tmp_path / "m.safetensors", MLP(30, (40,), 3, seed=0))
    result = CliRunner().invoke(main, ["gradcheck", "--model", str(path), "--samples", "7"])
    assert result.exit_code == 0, result.output
    assert "checked in float64, 7 random entries of each parameter" in result.stdout
    every = CliRunner().invoke(main, ["gradcheck", "--model", str(path), "--all"])
    assert "checked in float64, every entry" in every.stdout
    for option in (["--hidden", "5"], ["--input", "3"], ["--activation", "tanh"]):
        refused = CliRunner().invoke(main, ["gradcheck", "--model", str(path), *option])
        assert refused.exit_code == 2
        assert f"{option[0]} cannot be used with --model" in refused.stderr
