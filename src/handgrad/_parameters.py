"""scikit-learn's multi-layer-perceptron parameters translated into handgrad's objects.

Pure functions of the parameters, shared by the estimators and by model files (which
rebuild an optimizer and generator from saved parameters).
"""

from __future__ import annotations

import numbers
from typing import Any, Protocol

import numpy as np

from handgrad.optim import LBFGS, SCHEDULES, SGD, Adam, InvScaling, Optimizer

#: The parameters that make the optimizer: when one changes, warm_start starts a new one.
OPTIMIZER_PARAMS = (
    "solver",
    "learning_rate",
    "learning_rate_init",
    "power_t",
    "momentum",
    "nesterovs_momentum",
    "beta_1",
    "beta_2",
    "epsilon",
    "max_fun",
)


class SolverParameters(Protocol):
    """The constructor parameters of :data:`OPTIMIZER_PARAMS` (an estimator has them)."""

    solver: str
    learning_rate: str
    learning_rate_init: float
    power_t: float
    momentum: float
    nesterovs_momentum: bool
    beta_1: float
    beta_2: float
    epsilon: float
    max_fun: int


def seed_sequence(random_state: Any) -> np.random.SeedSequence:
    """A ``SeedSequence`` from scikit-learn's ``random_state``.

    int → the same sequence every call (bit-identical runs); ``RandomState`` → a seed
    drawn from it (so it advances, as scikit-learn's would); None → fresh OS entropy.
    """
    if random_state is None:
        return np.random.SeedSequence()
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return np.random.SeedSequence(int(random_state))
    if isinstance(random_state, np.random.RandomState):
        return np.random.SeedSequence(int(random_state.randint(2**31 - 1)))
    raise ValueError(
        f"random_state must be None, an int or a numpy RandomState, got {random_state!r}"
    )


def make_optimizer(p: SolverParameters) -> Optimizer:
    """The update rule and schedule for ``solver`` and ``learning_rate``."""
    lr = p.learning_rate_init
    if p.solver == "lbfgs":
        return LBFGS(learning_rate_init=lr, max_fun=p.max_fun)
    if p.solver == "adam":
        return Adam(learning_rate_init=lr, beta_1=p.beta_1, beta_2=p.beta_2, epsilon=p.epsilon)
    schedule_cls = SCHEDULES[p.learning_rate]
    schedule = InvScaling(power_t=p.power_t) if schedule_cls is InvScaling else schedule_cls()
    return SGD(
        learning_rate_init=lr,
        schedule=schedule,
        momentum=p.momentum,
        nesterov=p.nesterovs_momentum,
    )
