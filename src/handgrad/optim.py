"""Update rules and learning-rate schedules.

An optimizer changes ``params`` in place from ``grads`` (both dicts keyed ``W1, b1, …``).
A schedule changes ``optimizer.learning_rate`` at the end of each epoch, and decides what
happens when the loss stops improving. The loop that calls them is
:func:`handgrad.training.fit`; the rules follow scikit-learn's definitions so that
``MLPClassifier`` means what its scikit-learn namesake means.

For NumPy parameters an update writes into reused scratch arrays (``out=``), allocating
nothing per step; for arrays of another array-API library (PyTorch, CuPy …) it is the
same equations with the standard's in-place operators, on the parameters' device, where
the state (momentum, Adam's moments) stays too. ``state()`` gives that state as it is;
:mod:`handgrad.state` moves it to the host when it writes a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from handgrad._validation import check_number
from handgrad._xp import copy, is_numpy, namespace, to_device, to_numpy

Params = dict[str, np.ndarray]


# ------------------------------------------------------------------------- schedules
class Schedule:
    """Constant rate: ``η_t = η_0``; a loss plateau stops training."""

    name = "constant"

    def epoch_end(self, optimizer: Optimizer, samples_seen: int) -> None:
        """Called once per epoch, after the updates; ``samples_seen`` is scikit-learn's t_."""

    def plateau(self, optimizer: Optimizer) -> bool:
        """Called when the loss has not improved for too long; True means stop."""
        return True


Constant = Schedule


@dataclass
class InvScaling(Schedule):
    """``η = η_0 / (t + 1)^power_t`` with t the samples seen so far (scikit-learn's)."""

    power_t: float = 0.5
    name = "invscaling"

    def epoch_end(self, optimizer: Optimizer, samples_seen: int) -> None:
        optimizer.learning_rate = optimizer.learning_rate_init / (samples_seen + 1) ** self.power_t


@dataclass
class Adaptive(Schedule):
    """Keep ``η`` while the loss improves; on a plateau ``η ← η / 5`` until ``η < 1e-6``."""

    name = "adaptive"

    def plateau(self, optimizer: Optimizer) -> bool:
        if optimizer.learning_rate <= 1e-6:
            return True
        optimizer.learning_rate /= 5.0
        return False


@dataclass
class StepDecay(Schedule):
    """``η ← decay · η`` once per epoch (CS231n's ``learning_rate_decay``)."""

    decay: float = 0.95
    name = "step"

    def __post_init__(self) -> None:
        check_number(self.decay, "learning_rate_decay", low=0, low_open=True, high=1)

    def epoch_end(self, optimizer: Optimizer, samples_seen: int) -> None:
        optimizer.learning_rate *= self.decay


# ------------------------------------------------------------------------ optimizers
@dataclass
class Optimizer:
    """Base class: a learning rate, a schedule, and state arrays keyed like params."""

    learning_rate_init: float = 1e-3
    schedule: Schedule = field(default_factory=Schedule)

    def __post_init__(self) -> None:
        check_number(self.learning_rate_init, "learning_rate", low=0, low_open=True)
        self.learning_rate = float(self.learning_rate_init)

    def update(self, params: Params, grads: Params) -> None:
        """Change ``params`` in place by one step against ``grads``."""
        raise NotImplementedError

    def _scratch(self, name: str, like: np.ndarray, slot: int = 0) -> np.ndarray:
        """A reused array shaped like ``like``, so that updates allocate nothing per step."""
        buffers = self.__dict__.setdefault("_buffers", {})
        buf = buffers.get((name, slot))
        if buf is None or buf.shape != like.shape or buf.dtype != like.dtype:
            buf = buffers[(name, slot)] = np.empty_like(like)
        return buf

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """``(arrays, scalars)``: everything needed to resume bit-identically."""
        return {}, {"learning_rate": self.learning_rate}

    def load_state(self, arrays: dict[str, np.ndarray], scalars: dict[str, Any]) -> None:
        self.learning_rate = float(scalars["learning_rate"])

    def to(self, xp: Any, device: Any = None) -> Optimizer:
        """Move the state arrays (in place, once) to array namespace ``xp`` on
        ``device``, where the parameters it updates are (see :meth:`MLP.to
        <handgrad.network.MLP.to>`). Returns the optimizer."""
        arrays, scalars = self.state()
        self.load_state({k: to_device(to_numpy(v), xp, device) for k, v in arrays.items()}, scalars)
        self.__dict__.pop("_buffers", None)
        return self


@dataclass
class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    ``v ← μ v − η g``; then ``θ ← θ + v``, or with Nesterov ``θ ← θ + μ v − η g``.
    With μ = 0 this is plain ``θ ← θ − η g``.
    """

    name = "sgd"

    momentum: float = 0.0
    nesterov: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number(self.momentum, "momentum", low=0, high=1)
        self.velocity: Params = {}

    def update(self, params: Params, grads: Params) -> None:
        lr, mu = self.learning_rate, self.momentum
        if not is_numpy(next(iter(params.values()))):
            return self._update_array_api(params, grads)
        for name, g in grads.items():
            theta = params[name]
            if mu == 0:
                theta -= np.multiply(g, lr, out=self._scratch(name, theta))
                continue
            v = _zeros_once(self.velocity, name, theta)
            step = np.multiply(g, lr, out=self._scratch(name, theta))  # η g, in place
            v *= mu
            v -= step
            if self.nesterov:
                ahead = np.multiply(v, mu, out=self._scratch(name, theta, 1))
                ahead -= step
                theta += ahead
            else:
                theta += v

    def _update_array_api(self, params: Params, grads: Params) -> None:
        """:meth:`update` for arrays of another library: the same equations in place."""
        lr, mu = self.learning_rate, self.momentum
        for name, g in grads.items():
            theta = params[name]
            if mu == 0:
                theta -= g * lr
                continue
            v = _zeros_once(self.velocity, name, theta)
            step = g * lr  # η g
            v *= mu
            v -= step
            theta += v * mu - step if self.nesterov else v

    def state(self):
        _, scalars = super().state()
        return {f"velocity.{k}": v for k, v in self.velocity.items()}, scalars

    def load_state(self, arrays, scalars):
        super().load_state(arrays, scalars)
        self.velocity = {k.split(".", 1)[1]: copy(v) for k, v in arrays.items()}


@dataclass
class Adam(Optimizer):
    """Adam (Kingma & Ba), as scikit-learn writes it.

    ``m ← β1 m + (1 − β1) g``, ``v ← β2 v + (1 − β2) g²``,
    ``η_t = η √(1 − β2^t) / (1 − β1^t)``, ``θ ← θ − η_t m / (√v + ε)``.
    """

    name = "adam"

    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-8

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number(self.beta_1, "beta_1", low=0, high=1)
        check_number(self.beta_2, "beta_2", low=0, high=1)
        check_number(self.epsilon, "epsilon", low=0, low_open=True)
        self.t = 0
        self.m: Params = {}
        self.v: Params = {}

    def update(self, params: Params, grads: Params) -> None:
        self.t += 1
        b1, b2 = self.beta_1, self.beta_2
        # a Python float, so that float32 parameters are not stepped in float64
        lr_t = float(self.learning_rate * np.sqrt(1 - b2**self.t) / (1 - b1**self.t))
        if not is_numpy(next(iter(params.values()))):
            return self._update_array_api(params, grads, lr_t)
        for name, g in grads.items():
            theta = params[name]
            m = _zeros_once(self.m, name, theta)
            v = _zeros_once(self.v, name, theta)
            tmp, denom = self._scratch(name, theta), self._scratch(name, theta, 1)
            m *= b1
            m += np.multiply(g, 1 - b1, out=tmp)
            v *= b2
            np.multiply(g, g, out=tmp)
            v += np.multiply(tmp, 1 - b2, out=tmp)
            np.multiply(m, lr_t, out=tmp)
            np.sqrt(v, out=denom)
            denom += self.epsilon
            theta -= np.divide(tmp, denom, out=tmp)  # η_t m / (√v + ε)

    def _update_array_api(self, params: Params, grads: Params, lr_t: float) -> None:
        """:meth:`update` for arrays of another library: the same equations in place."""
        b1, b2 = self.beta_1, self.beta_2
        for name, g in grads.items():
            theta = params[name]
            xp = namespace(theta)
            m = _zeros_once(self.m, name, theta)
            v = _zeros_once(self.v, name, theta)
            m *= b1
            m += g * (1 - b1)
            v *= b2
            v += (g * g) * (1 - b2)
            theta -= (m * lr_t) / (xp.sqrt(v) + self.epsilon)  # η_t m / (√v + ε)

    def state(self):
        _, scalars = super().state()
        arrays = {f"m.{k}": a for k, a in self.m.items()} | {f"v.{k}": a for k, a in self.v.items()}
        return arrays, scalars | {"t": self.t}

    def load_state(self, arrays, scalars):
        super().load_state(arrays, scalars)
        self.t = int(scalars["t"])
        self.m = {k[2:]: copy(a) for k, a in arrays.items() if k.startswith("m.")}
        self.v = {k[2:]: copy(a) for k, a in arrays.items() if k.startswith("v.")}


@dataclass
class LBFGS(Optimizer):
    """Full-batch L-BFGS through ``scipy.optimize.minimize(method="L-BFGS-B", jac=True)``.

    It has no learning rate: the line search chooses the steps. The loop hands it the
    hand-derived ``loss``/``grads`` as one flat vector (see ``training.fit``).
    ``max_fun`` bounds the loss evaluations and ``tol`` is scipy's ``gtol``.
    """

    name = "lbfgs"

    max_fun: int = 15000

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number(self.max_fun, "max_fun", low=1, integer=True)


def _zeros_once(store: Params, name: str, like: np.ndarray) -> np.ndarray:
    """``store[name]``, created as zeros like ``like`` on first use (not on every call,
    as ``store.setdefault(name, np.zeros_like(like))`` would)."""
    if name not in store:
        store[name] = namespace(like).zeros_like(like)
    return store[name]


#: Schedules by name (scikit-learn's ``learning_rate`` values, and CS231n's step decay).
SCHEDULES: dict[str, type[Schedule]] = {
    cls.name: cls for cls in (Constant, InvScaling, Adaptive, StepDecay)
}
#: Update rules by scikit-learn's ``solver`` names.
OPTIMIZERS: dict[str, type[Optimizer]] = {cls.name: cls for cls in (SGD, Adam, LBFGS)}
