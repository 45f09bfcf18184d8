"""Full-batch L-BFGS: SciPy's L-BFGS-B on the flattened parameters, driven by the
hand-derived gradients of an engine (:mod:`handgrad.training.engines`).

SciPy's L-BFGS works on host vectors: for parameters on another library's device, each
evaluation moves θ there and brings the loss and gradient back.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from handgrad._xp import copy_into, device, namespace, to_device, to_numpy
from handgrad.errors import TrainingDivergedError
from handgrad.training.config import TrainingConfig
from handgrad.training.data import TrainingData
from handgrad.training.engines import Engine
from handgrad.training.loop import NON_FINITE
from handgrad.training.run import History, Run


class _NonFiniteLoss(Exception):
    """Raised inside SciPy's L-BFGS to stop it at a non-finite loss."""


class _Objective:
    """``θ ↦ (loss, ∂loss/∂θ)`` over every row, for SciPy: θ is the parameters
    flattened in float64 on the host; the loss is the engine's (as reported)."""

    def __init__(self, engine: Engine, data: TrainingData, config: TrainingConfig) -> None:
        params = engine.model.params
        self.engine, self.params, self.names = engine, params, list(params)
        self.shapes = [params[k].shape for k in self.names]
        self.splits = np.cumsum([int(np.prod(s)) for s in self.shapes])[:-1]
        self.xp, self.device = namespace(params["W1"]), device(params["W1"])
        self.dtype = engine.model.dtype
        X, T, w = data.X, data.T, data.w
        n_weight = X.shape[0] if w is None else float(namespace(w).sum(w))
        self.X, self.T, self.w, self.reg = X, T, w, config.reg_of(n_weight)
        host = {k: to_numpy(params[k]) for k in self.names}
        self.theta0 = np.concatenate([host[k].ravel() for k in self.names]).astype(np.float64)
        self.finite_theta = self.theta0.copy()  # the last parameters whose loss was finite

    def unpack(self, theta: np.ndarray) -> None:
        """The parameters set to θ (moved to their device)."""
        parts = np.split(theta, self.splits)
        for k, part, shape in zip(self.names, parts, self.shapes, strict=True):
            part = to_device(part.reshape(shape), self.xp, self.device, self.dtype)
            copy_into(self.params[k], part)

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        self.unpack(theta)
        X, T, w, reg = self.X, self.T, self.w, self.reg
        loss, grads, S = self.engine.loss_and_gradients(X, T, w, reg)
        loss = self.engine.reported(loss, S, T, w, reg)
        if not math.isfinite(loss):
            self.unpack(self.finite_theta)
            raise _NonFiniteLoss
        np.copyto(self.finite_theta, theta)
        host = {k: to_numpy(grads[k]) for k in self.names}
        return loss, np.concatenate([host[k].ravel() for k in self.names], dtype=np.float64)


# A diverging line search overflows on its way to the non-finite loss reported below.
@np.errstate(over="ignore", invalid="ignore", divide="ignore")
def fit_lbfgs(run: Run, engine: Engine, data: TrainingData, config: TrainingConfig) -> None:
    """Full-batch L-BFGS-B of ``run`` on ``data`` (its training rows taken, T and w on
    X's device). On a non-finite loss it puts back the last parameters whose loss was
    finite and raises :class:`TrainingDivergedError` naming the iteration."""
    import scipy.optimize

    hist = run.history
    objective = _Objective(engine, data, config)
    epochs_before = hist.epochs

    def record(intermediate_result: Any) -> None:
        hist.loss.append(float(intermediate_result.fun))
        hist.epochs += 1

    max_iter = config.max_epochs or config.max_steps
    try:
        result = scipy.optimize.minimize(
            objective,
            objective.theta0,
            method="L-BFGS-B",
            jac=True,
            callback=record,
            options={"maxfun": run.optimizer.max_fun, "maxiter": max_iter, "gtol": config.tol},
        )
    except _NonFiniteLoss:
        hist.stop_reason = "diverged"
        raise TrainingDivergedError(
            f"{NON_FINITE} The training loss became non-finite in L-BFGS iteration "
            f"{hist.epochs + 1}; the last weights with a finite loss were kept. "
            "Increase the regularisation (alpha), or standardise the inputs."
        ) from None
    hist.epochs = epochs_before
    objective.unpack(result.x)
    _record(hist, result, data.X.shape[0], max_iter)


def _record(hist: History, result: Any, n_rows: int, max_iter: int) -> None:
    """What SciPy's L-BFGS did, into the history: iterations as epochs, evaluations
    as steps, and why it stopped."""
    hist.epochs += int(result.nit)
    hist.steps += int(result.nfev)
    hist.samples_seen += int(result.nit) * n_rows
    final = float(result.fun)
    if not hist.loss or hist.loss[-1] != final:
        hist.loss.append(final)
    hist.best_loss = min(hist.best_loss, final)
    if result.success:
        hist.stop_reason = "converged"
    elif result.nit >= max_iter:
        hist.stop_reason = "max_epochs"
    else:
        hist.stop_reason = f"lbfgs: {result.message}"
