"""How to train: :class:`TrainingConfig`, checked once when made."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from handgrad._validation import check_choice, check_number

STOPPING = ("loss", "validation", "none")
ENGINES = ("fast", "reference")


@dataclass
class TrainingConfig:
    """How to train. ``reg`` is the notes' λ; with ``reg_per_sample`` (scikit-learn's
    ``alpha``) the penalty of each batch uses ``λ = reg / Σ_batch w`` instead.

    ``stopping``: ``"loss"`` stops when the epoch's training loss has not improved by
    ``tol`` for ``n_iter_no_change`` epochs; ``"validation"`` does the same on the
    validation score (:func:`~handgrad.training.validation_score`: accuracy, or R² for a
    regression head) and restores the best weights (early stopping); ``"none"`` runs
    to ``max_epochs``/``max_steps``.

    ``engine``: ``"fast"`` (buffers reused across steps; plain SGD fused into the
    products) or ``"reference"`` (``model.loss_and_gradients``, then the optimizer).
    Both compute the same step; the reference is the one to read, to debug, or to
    override in a subclass.

    ``report(S, T, w, penalty, row_losses=None) -> float``: the loss the history records and the
    stopping rule reads, from a batch's scores, targets, weights and the penalty
    ``λ/2 Σ‖W‖²`` of the weights S was computed with; None records the core's loss
    (the notes' loss, exactly). The estimators pass
    scikit-learn's convention (:class:`handgrad.estimator.ReportedLoss`), which L-BFGS
    then minimises, as scikit-learn's does. Validation scoring and L-BFGS follow the same setting.
    A report may also say ``row_clip(dtype) -> (low, high) | None``: that its value is the
    mean of the rows' exact losses each clipped to ``[low, high]`` plus the penalty; the
    compiled engine then computes it inside its steps.
    An X of another array-API library than NumPy (PyTorch, CuPy …) always trains on
    the reference engine, whatever ``engine`` says: the fast engine's buffers and
    fused products are NumPy's.
    """

    batch_size: int = 200
    max_epochs: int | None = 200
    max_steps: int | None = None
    shuffle: bool = True
    reg: float = 0.0
    reg_per_sample: bool = True
    stopping: str = "loss"
    tol: float = 1e-4
    n_iter_no_change: int = 10
    verbose: bool = False
    engine: str = "fast"
    report: Callable[[Any, Any, Any, Any], float] | None = None

    def __post_init__(self) -> None:
        check_number(self.batch_size, "batch_size", low=1, integer=True)
        if self.max_epochs is None and self.max_steps is None:
            raise ValueError("give max_epochs or max_steps (or both)")
        if self.max_epochs is not None:
            check_number(self.max_epochs, "max_epochs", low=1, integer=True)
        if self.max_steps is not None:
            check_number(self.max_steps, "max_steps", low=1, integer=True)
        check_number(self.reg, "reg (alpha)", low=0)
        check_number(self.tol, "tol", low=0)
        check_number(self.n_iter_no_change, "n_iter_no_change", low=1, integer=True)
        check_choice(self.stopping, "stopping", STOPPING)
        check_choice(self.engine, "engine", ENGINES)

    def reg_of(self, n_weight: float) -> float:
        """The λ of a batch whose weights sum to ``n_weight`` (its row count when
        unweighted): ``reg / n_weight`` per sample, else ``reg``."""
        return self.reg / n_weight if self.reg_per_sample else self.reg
