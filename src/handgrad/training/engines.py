"""What a step is: the gradients of a batch, the loss as the caller reports it, and
the update — by the fast engine (:class:`~handgrad.workspace.Workspace`), plain SGD
fused into its products, or the reference (:meth:`MLP.loss_and_gradients
<handgrad.network.MLP.loss_and_gradients>`, then the optimizer). Chosen once, by
:func:`engine_for`.

A step returns ``(loss, right)``: the loss, a float (the one number a step brings back
from a device), and the number of rows its scores predicted exactly right (for the
running accuracy; 0 for a head that does not classify), which on another library's
device stays there until the epoch's sum is read. The loop asks an engine for an
epoch's steps at a time (``epoch``, a :class:`~handgrad.training.steps.Steps`): batch by
batch, or, for the compiled engine, all in one call.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from handgrad._validation import all_finite
from handgrad._xp import finite_on_device, is_numpy, namespace
from handgrad.heads import HEADS
from handgrad.layers import l2_penalty
from handgrad.network import MLP, Context
from handgrad.optim import SGD, Optimizer
from handgrad.training.compiled import compiled_engine
from handgrad.training.config import TrainingConfig
from handgrad.training.sources import BatchSource
from handgrad.training.steps import Steps, step_through
from handgrad.workspace import Workspace, scores


class Engine:
    """The reference engine: the layer functions of the notes, then the optimizer, in
    the parameters' library (NumPy, or another array-API library on its device).

    Its steps run the model's forward pass in a training :class:`~handgrad.network.Context`
    (batch statistics, dropout masks drawn from ``rng``, the run's generator: a resumed
    or rolled-back run draws the same masks); its :meth:`scores` at predict time."""

    workspace: Workspace | None = None  # the fast engine's buffers, which batches fill

    def __init__(
        self,
        model: MLP,
        optimizer: Optimizer,
        config: TrainingConfig,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.model, self.optimizer, self.config = model, optimizer, config
        self.context = Context(train=True, rng=rng)
        self.xp = namespace(model.params["W1"])
        # a running accuracy to keep (a regression head has none)
        self.classifies = HEADS[model.head].right_rows is not None
        self._finite = _finite_on_host if is_numpy(model.params["W1"]) else finite_on_device

    # --------------------------------------------------------------- one step
    def step(self, X: Any, T: Any, w: Any, n_weight: float) -> tuple[float, Any]:
        """One minibatch step on a :data:`~handgrad.training.sources.Batch`:
        ``(loss, right)``; the weights move only where the loss is finite (the loop
        then puts the epoch back)."""
        reg = self.config.reg_of(n_weight)
        loss, grads, S = self.loss_and_gradients(X, T, w, reg)
        loss = self.reported(loss, S, T, w, reg)
        if math.isfinite(loss):
            self.optimizer.update(self.model.params, grads)
        return loss, self.right(S, T)

    def epoch(self, source: BatchSource, limit: int | None = None) -> Steps:
        """The steps of one epoch of ``source`` (its order set), at most ``limit``;
        they end after a step whose loss is not finite (the loop then puts the epoch
        back)."""
        return step_through(self.step, source, limit)

    def loss_and_gradients(self, X: Any, T: Any, w: Any, reg: float) -> tuple[Any, Any, Any]:
        """``(loss, grads, S)`` of the notes for rows X (n, D) at the current weights."""
        return self.model.loss_and_gradients(X, T, reg, w, self.context)

    def penalty(self, reg: float) -> Any:
        """``λ/2 Σ‖W‖²`` of the weights the last scores were computed with."""
        return l2_penalty(self.model.weights, reg)[0]

    def reported(self, loss: Any, S: Any, T: Any, w: Any, reg: float) -> float:
        """The loss of scores S against T, w as the caller's convention has it
        (``config.report``), as a float."""
        report = self.config.report
        if report is None:
            return float(loss)
        return float(report(S, T, w, self.penalty(reg)))

    def right(self, S: Any, T: Any) -> Any:
        """How many rows the scores S predict exactly right (0 for a head that does not
        classify); on a device, a 0-d array left there."""
        if not self.classifies:
            return 0
        return self.xp.count_nonzero(HEADS[self.model.head].right_rows(S, T))

    # ---------------------------------------------------------- around the steps
    def scores(self, X: Any) -> Any:
        """Scores S (n, C) of rows X (n, D): the forward pass alone."""
        return self.model.forward(X)[0]

    def weights_finite(self) -> bool:
        """Whether every weight (and running statistic) is finite (on a device: one
        number read back)."""
        return self._finite([*self.model.params.values(), *self.model.state.values()])


class FastEngine(Engine):
    """The same step in a :class:`~handgrad.workspace.Workspace`'s reused buffers."""

    def __init__(
        self,
        model: MLP,
        optimizer: Optimizer,
        config: TrainingConfig,
        workspace: Workspace,
        rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__(model, optimizer, config, rng)
        self.workspace = workspace

    def loss_and_gradients(self, X: Any, T: Any, w: Any, reg: float) -> tuple[Any, Any, Any]:
        model = self.model
        return self.workspace.step(model.params, X, T, reg, w, model.state, self.context.rng)

    def penalty(self, reg: float) -> float:
        return self.workspace.penalty

    def reported(self, loss: Any, S: Any, T: Any, w: Any, reg: float) -> float:
        report = self.config.report
        if report is None:
            return float(loss)
        # the rows' exact losses are at hand: no second pass over S
        return float(report(S, T, w, self.penalty(reg), row_losses=self.workspace.row_losses))

    def right(self, S: Any, T: Any) -> int:
        if not self.classifies:
            return 0
        # after the softmax loss, the classes its row argmax found
        return int(np.count_nonzero(self.workspace.right_rows(S, T)))

    def scores(self, X: Any) -> Any:
        if not self.model.plain:  # predict time's normalization: the reference's forward
            return super().scores(X)
        return scores(self.model.params, X, self.model.activation)


class FusedSGD(FastEngine):
    """Plain SGD (momentum 0) on the fast engine: ``θ ← θ − η g`` fused into the
    gradient's matrix product, so no gradient is written out."""

    def step(self, X: Any, T: Any, w: Any, n_weight: float) -> tuple[float, Any]:
        reg = self.config.reg_of(n_weight)
        model = self.model
        loss, S = self.workspace.sgd_step(
            model.params,
            X,
            T,
            reg,
            w,
            self.optimizer.learning_rate,
            model.state,
            self.context.rng,
        )
        return self.reported(loss, S, T, w, reg), self.right(S, T)


def engine_for(
    model: MLP,
    optimizer: Optimizer,
    config: TrainingConfig,
    rows: int,
    rng: np.random.Generator | None = None,
) -> Engine:
    """The engine ``config.engine`` names, with buffers for steps of ``rows`` rows;
    ``rng`` is the run's generator, which dropout draws its masks from. For ``"fast"``,
    the compiled step (:mod:`handgrad.training.compiled`) where it covers the fit.
    Parameters of another library than NumPy always take the reference engine: the
    fast engine's buffers and fused products are NumPy's."""
    if config.engine == "reference" or not is_numpy(model.params["W1"]):
        return Engine(model, optimizer, config, rng)
    workspace = Workspace(
        model.layer_sizes,
        rows,
        activation=model.activation,
        head=model.head,
        dtype=model.dtype,
        norm=model.norm,
        dropout=model.dropout,
    )
    if type(optimizer) is SGD and optimizer.momentum == 0:
        fast = FusedSGD(model, optimizer, config, workspace, rng)
    else:
        fast = FastEngine(model, optimizer, config, workspace, rng)
    # its steps compiled, where the extension is built and covers the fit
    return compiled_engine(fast) or fast


def _finite_on_host(arrays: list[np.ndarray]) -> bool:
    return all(all_finite(v) for v in arrays)
