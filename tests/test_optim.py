"""Update rules and schedules against steps computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

from handgrad.optim import LBFGS, SGD, Adam, Adaptive, Constant, InvScaling, StepDecay

G = np.array([0.5, -1.0])  # the same gradient every step


def _run(opt, grads, theta=(1.0, 2.0)):
    params = {"W1": np.array(theta)}
    trail = []
    for g in grads:
        opt.update(params, {"W1": np.array(g)})
        trail.append(params["W1"].copy())
    return trail


def test_plain_sgd():
    (step,) = _run(SGD(learning_rate_init=0.1), [G])
    assert_allclose(step, [1 - 0.1 * 0.5, 2 + 0.1 * 1.0])  # θ − η g = [0.95, 2.1]


def test_momentum():
    # v1 = −η g = [−0.05, 0.1];  v2 = 0.9 v1 − η g = [−0.095, 0.19]
    one, two = _run(SGD(learning_rate_init=0.1, momentum=0.9), [G, G])
    assert_allclose(one, [0.95, 2.1])
    assert_allclose(two, [0.855, 2.29])


def test_nesterov_momentum():
    # θ ← θ + μ v − η g with v updated first: step 1 moves [−0.095, 0.19],
    # step 2 (v2 = [−0.095, 0.19]) moves 0.9 v2 − η g = [−0.1355, 0.271].
    one, two = _run(SGD(learning_rate_init=0.1, momentum=0.9, nesterov=True), [G, G])
    assert_allclose(one, [0.905, 2.19])
    assert_allclose(two, [0.7695, 2.461])


def test_adam_first_two_steps():
    g1, g2 = np.array([0.5, -1.0]), np.array([-0.2, 0.4])
    one, two = _run(Adam(learning_rate_init=0.1), [g1, g2])
    # step 1: m = 0.1 g1, v = 0.001 g1², η1 = 0.1 √0.001 / 0.1 = √0.001
    m, v = 0.1 * g1, 0.001 * g1**2
    want1 = np.array([1.0, 2.0]) - math.sqrt(0.001) * m / (np.sqrt(v) + 1e-8)
    assert_allclose(one, want1, rtol=1e-12)
    assert_allclose(one, [0.9, 2.1], atol=1e-6)  # ≈ η sign(g) on the first step
    # step 2: m = 0.9 m + 0.1 g2, v = 0.999 v + 0.001 g2², η2 = 0.1 √(1 − 0.999²) / (1 − 0.9²)
    m, v = 0.9 * m + 0.1 * g2, 0.999 * v + 0.001 * g2**2
    eta2 = 0.1 * math.sqrt(1 - 0.999**2) / (1 - 0.9**2)
    assert_allclose(two, want1 - eta2 * m / (np.sqrt(v) + 1e-8), rtol=1e-12)


def test_sgd_state_round_trip_resumes_identically():
    a = SGD(learning_rate_init=0.1, momentum=0.9, nesterov=True)
    _run(a, [G])
    arrays, scalars = a.state()
    b = SGD(learning_rate_init=0.1, momentum=0.9, nesterov=True)
    b.load_state(arrays, scalars)
    assert _run(a, [G], theta=(0.0, 0.0))[0].tolist() == _run(b, [G], theta=(0.0, 0.0))[0].tolist()


def test_adam_state_round_trip_resumes_identically():
    a = Adam(learning_rate_init=0.1)
    _run(a, [G, -G])
    b = Adam(learning_rate_init=0.1)
    b.load_state(*a.state())
    assert b.t == 2
    assert _run(a, [G])[0].tolist() == _run(b, [G])[0].tolist()


# ------------------------------------------------------------------------- schedules
def test_invscaling_uses_samples_seen():
    opt = SGD(learning_rate_init=0.5, schedule=InvScaling(power_t=0.5))
    opt.schedule.epoch_end(opt, 99)  # η0 / (99 + 1)^0.5
    assert opt.learning_rate == pytest.approx(0.05)
    opt.schedule.epoch_end(opt, 9999)
    assert opt.learning_rate == pytest.approx(0.005)
    assert opt.schedule.plateau(opt) is True


def test_adaptive_divides_by_five_until_1e_6():
    opt = SGD(learning_rate_init=1e-4, schedule=Adaptive())
    opt.schedule.epoch_end(opt, 1000)
    assert opt.learning_rate == 1e-4  # unchanged while the loss improves
    assert opt.schedule.plateau(opt) is False and opt.learning_rate == pytest.approx(2e-5)
    assert opt.schedule.plateau(opt) is False and opt.learning_rate == pytest.approx(4e-6)
    assert opt.schedule.plateau(opt) is False and opt.learning_rate == pytest.approx(8e-7)
    assert opt.schedule.plateau(opt) is True  # at or below 1e-6: stop


def test_step_decay_per_epoch():
    opt = SGD(learning_rate_init=1.0, schedule=StepDecay(decay=0.9))
    for _ in range(3):
        opt.schedule.epoch_end(opt, 0)
    assert opt.learning_rate == pytest.approx(0.729)
    with pytest.raises(ValueError, match="learning_rate_decay must be <= 1"):
        StepDecay(decay=1.5)


def test_constant_stops_on_plateau():
    opt = Adam(learning_rate_init=0.01, schedule=Constant())
    opt.schedule.epoch_end(opt, 10)
    assert opt.learning_rate == 0.01 and opt.schedule.plateau(opt) is True


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: SGD(learning_rate_init=0.0), "learning_rate must be > 0"),
        (lambda: SGD(momentum=1.5), "momentum must be <= 1"),
        (lambda: Adam(beta_1=-0.1), "beta_1 must be >= 0"),
        (lambda: Adam(epsilon=0.0), "epsilon must be > 0"),
        (lambda: LBFGS(max_fun=0), "max_fun must be >= 1"),
    ],
)
def test_invalid_settings_are_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()
