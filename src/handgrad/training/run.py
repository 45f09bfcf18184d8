"""What changes while training: the :class:`Run` (what a checkpoint holds), its
:class:`History`, the :class:`Callback` hooks, and :class:`EpochStart`, the run as the
current epoch found it (to go back to on Ctrl-C or divergence)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from handgrad._xp import copy, copy_into
from handgrad.network import MLP
from handgrad.optim import Optimizer


@dataclass
class History:
    """What training did, epoch by epoch (lists grow across ``fit`` calls)."""

    loss: list[float] = field(default_factory=list)  # mean training loss per epoch
    step_loss: list[float] = field(default_factory=list)  # loss of every minibatch
    # running accuracy per epoch (classification heads only)
    train_score: list[float] = field(default_factory=list)
    val_score: list[float] = field(default_factory=list)  # validation score per epoch
    learning_rate: list[float] = field(default_factory=list)
    epochs: int = 0
    steps: int = 0
    samples_seen: int = 0
    best_loss: float = math.inf
    best_val_score: float = -math.inf
    n_no_improvement: int = 0
    stop_reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (infinities become None)."""
        d = asdict(self)
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        d = dict(d)
        d["best_loss"] = math.inf if d.get("best_loss") is None else d["best_loss"]
        d["best_val_score"] = -math.inf if d.get("best_val_score") is None else d["best_val_score"]
        return cls(**d)


@dataclass
class Run:
    """Everything that changes while training: what a checkpoint must hold."""

    model: MLP
    optimizer: Optimizer
    rng: np.random.Generator
    history: History = field(default_factory=History)
    best_params: dict[str, np.ndarray] | None = None  # and running statistics: MLP.snapshot()


class Callback:
    """Hooks called by :func:`~handgrad.training.fit`. ``on_epoch_end`` returning True
    stops training."""

    def on_train_begin(self, run: Run) -> None: ...

    def on_epoch_end(self, run: Run) -> bool | None: ...

    def on_train_end(self, run: Run) -> None: ...


class EpochStart:
    """The run as it was when the current epoch began: weights, running statistics,
    optimizer state, generator (shuffling and dropout) and step counters. Ctrl-C or
    divergence part way through an epoch goes back to it, so the run stays consistent
    (and can be continued)."""

    def __init__(self, run: Run) -> None:
        # copies where the arrays are: on the device for another library's
        self.params = {k: copy(v) for k, v in run.model.params.items()}
        self.state = {k: copy(v) for k, v in run.model.state.items()}
        self.optimizer_arrays: dict[str, Any] = {}
        self.take(run)

    def take(self, run: Run) -> None:
        """Remember the run as it is now (reusing the copies: no allocation after the
        first epoch)."""
        for k, v in run.model.params.items():
            copy_into(self.params[k], v)
        for k, v in run.model.state.items():
            copy_into(self.state[k], v)
        arrays, self.optimizer_scalars = run.optimizer.state()
        for k, v in arrays.items():
            if k in self.optimizer_arrays:
                copy_into(self.optimizer_arrays[k], v)
            else:
                self.optimizer_arrays[k] = copy(v)
        self.rng_state = run.rng.bit_generator.state
        self.steps, self.n_step_loss = run.history.steps, len(run.history.step_loss)

    def restore(self, run: Run) -> None:
        """Put the run back as :meth:`take` found it."""
        for k, v in self.params.items():
            copy_into(run.model.params[k], v)
        for k, v in self.state.items():
            copy_into(run.model.state[k], v)
        run.optimizer.load_state(self.optimizer_arrays, dict(self.optimizer_scalars))
        run.rng.bit_generator.state = self.rng_state
        run.history.steps = self.steps
        del run.history.step_loss[self.n_step_loss :]
