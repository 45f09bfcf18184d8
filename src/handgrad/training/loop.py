"""The minibatch loop: it counts, records and stops.

Epochs of shuffled minibatches from a source, stepped by an engine an epoch at a time
(``engine.epoch(source, limit)``: batch by batch, or all in one compiled call; both
chosen before the loop: :mod:`~handgrad.training.engines`,
:mod:`~handgrad.training.sources`). The loop records the :class:`History`, scores the
held-out data, applies the stopping rule, calls the callbacks, restores the best
weights for early stopping, goes back to the epoch's start on Ctrl-C or divergence
(:class:`EpochStart`), and refuses to continue past a non-finite loss or weights: a
:class:`TrainingDivergedError`, or with early stopping, as scikit-learn's, the end of
the run with the best weights (:func:`_diverged_epoch`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from handgrad.errors import TrainingDivergedError
from handgrad.training.config import TrainingConfig
from handgrad.training.engines import Engine
from handgrad.training.run import Callback, EpochStart, Run
from handgrad.training.scores import score_name
from handgrad.training.sources import BatchSource
from handgrad.training.validation import HeldOut

#: scikit-learn's words for training that produced non-finite numbers (its ValueError's
#: message), which every divergence message begins with: handgrad's details follow.
NON_FINITE = (
    "Solver produced non-finite parameter weights. The input data may contain large "
    "values and need to be preprocessed."
)


# A diverging step overflows on its way to the non-finite loss that the loop reports
# itself (TrainingDivergedError): no NumPy warnings on top of that.
@np.errstate(over="ignore", invalid="ignore", divide="ignore")
def minibatch_loop(
    run: Run,
    source: BatchSource,
    engine: Engine,
    config: TrainingConfig,
    held_out: HeldOut | None = None,
    callbacks: Sequence[Callback] = (),
) -> None:
    """Epochs of minibatches of ``source`` stepped by ``engine``, until a stopping
    rule, a callback, ``max_epochs``/``max_steps``, Ctrl-C ("interrupted", the
    unfinished epoch dropped) or, with early stopping, divergence ends them."""
    hist = run.history
    epoch_start = EpochStart(run)
    # rng.permutation(N) is 0..N-1 shuffled: the same order, in one reused (N,) array
    order = _counting(np.empty(source.n_rows, np.intp))
    mid_epoch = False  # True while the weights are part way through an epoch
    try:
        for _ in _epochs(config):
            if config.shuffle:
                run.rng.shuffle(_counting(order))
            source.begin_epoch(order)
            mid_epoch = True
            total, correct, seen = _epoch(run, source, engine, config, epoch_start)
            if not engine.weights_finite():  # a finite loss, but an overflowing update
                epoch_start.restore(run)
                _weights_diverged(run)
            mid_epoch = False
            if seen == 0:
                hist.stop_reason = "max_steps"
                break
            train_score = int(correct) / seen if engine.classifies else None
            _record_epoch(run, total / seen, train_score, seen, held_out, engine, config)
            stop = _stopping_rule(run, config)
            epoch_start.take(run)  # where the next epoch starts (copies made in epoch 1)
            # Every callback sees every finished epoch, the last one included.
            if any([cb.on_epoch_end(run) for cb in callbacks]) and not stop:
                hist.stop_reason = "callback"
                stop = True
            if stop:
                break
        else:
            hist.stop_reason = "max_epochs"
    except KeyboardInterrupt:
        if mid_epoch:  # drop the unfinished epoch: back to the last finished one
            epoch_start.restore(run)
        hist.stop_reason = "interrupted"
    except TrainingDivergedError:
        if config.stopping != "validation":
            raise
        _diverged_epoch(run, engine)
    _restore_best(run, config)


def _restore_best(run: Run, config: TrainingConfig) -> None:
    """Early stopping's end: the weights of the best validation score put back."""
    if config.stopping == "validation" and run.best_params is not None:
        run.model.restore(run.best_params)


def _epochs(config: TrainingConfig) -> Iterable[int]:
    """One item per epoch allowed: ``max_epochs``, or unbounded (``max_steps`` ends it)."""
    return itertools.count() if config.max_epochs is None else range(config.max_epochs)


def _epoch(
    run: Run, source: BatchSource, engine: Engine, config: TrainingConfig, epoch_start: EpochStart
) -> tuple[float, Any, int]:
    """One pass of steps over the source (at most the steps ``max_steps`` leaves):
    ``(Σ loss·n, rows right, rows seen)``."""
    hist = run.history
    limit = None if config.max_steps is None else max(config.max_steps - hist.steps, 0)
    steps = engine.epoch(source, limit)
    finite = steps.losses[:-1] if steps.diverged else steps.losses
    hist.step_loss.extend(finite)
    hist.steps += len(finite)
    if steps.diverged:
        _diverged(run, epoch_start)
    return steps.total, steps.correct, steps.seen


def _record_epoch(
    run: Run,
    loss: float,
    train_score: float | None,
    seen: int,
    held_out: HeldOut | None,
    engine: Engine,
    config: TrainingConfig,
) -> None:
    """The finished epoch into the history, the held-out data scored, the plateau
    counted and the schedule stepped."""
    model, opt, hist = run.model, run.optimizer, run.history
    hist.epochs += 1
    hist.samples_seen += seen
    hist.loss.append(loss)
    if train_score is not None:
        hist.train_score.append(train_score)
    hist.learning_rate.append(opt.learning_rate)
    if held_out is not None:
        hist.val_score.append(held_out.score(model, engine))
    if config.verbose:
        val = f", validation {score_name(model)} = {hist.val_score[-1]:.4f}" if held_out else ""
        print(f"Iteration {hist.epochs}, loss = {loss:.8f}{val}")
    _update_plateau(run, config)
    opt.schedule.epoch_end(opt, hist.samples_seen)


def _stopping_rule(run: Run, config: TrainingConfig) -> bool:
    """Whether the plateau (when the schedule has no smaller step left) or
    ``max_steps`` ends training after this epoch, naming why in the history."""
    hist, opt = run.history, run.optimizer
    if config.stopping != "none" and hist.n_no_improvement > config.n_iter_no_change:
        if opt.schedule.plateau(opt):
            hist.stop_reason = "early_stopping" if config.stopping == "validation" else "converged"
            return True
        hist.n_no_improvement = 0
    if config.max_steps is not None and hist.steps >= config.max_steps:
        hist.stop_reason = "max_steps"
        return True
    return False


def _update_plateau(run: Run, config: TrainingConfig) -> None:
    """scikit-learn's no-improvement count, on the loss or the validation score."""
    hist = run.history
    if config.stopping == "validation":
        score = hist.val_score[-1]
        improved = score >= hist.best_val_score + config.tol
        if score > hist.best_val_score:
            hist.best_val_score = score
            run.best_params = run.model.snapshot()  # running statistics included
    else:
        improved = hist.loss[-1] <= hist.best_loss - config.tol
        hist.best_loss = min(hist.best_loss, hist.loss[-1])
    hist.n_no_improvement = 0 if improved else hist.n_no_improvement + 1


def _counting(order: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """``order[:] = 0, 1, …, N−1``, a chunk at a time: no second (N,) array."""
    for start in range(0, len(order), chunk):
        stop = min(start + chunk, len(order))
        order[start:stop] = np.arange(start, stop)
    return order


def _diverged(run: Run, epoch_start: EpochStart) -> None:
    """Back to the epoch's start, then raise for the non-finite loss of the step just
    taken (named by its epoch and its step over the whole run)."""
    hist = run.history
    epoch, step = hist.epochs + 1, hist.steps + 1  # named before the rollback
    epoch_start.restore(run)
    hist.stop_reason = "diverged"
    raise TrainingDivergedError(
        f"{NON_FINITE} The training loss became non-finite in epoch {epoch} (step "
        f"{step}) with learning rate {run.optimizer.learning_rate:g}; the weights of the "
        "last finished epoch were kept. Lower the learning rate, standardise the inputs, "
        "or increase the regularisation."
    )


def _weights_diverged(run: Run) -> None:
    """Stop on weights that became non-finite while the loss stayed finite (an update
    that overflowed), as scikit-learn refuses such weights."""
    run.history.stop_reason = "diverged"
    raise TrainingDivergedError(
        f"{NON_FINITE} The update gave non-finite parameter weights in epoch "
        f"{run.history.epochs + 1} with learning rate {run.optimizer.learning_rate:g}; the "
        "weights of the last finished epoch were kept. Lower the learning rate, or standardise "
        "the inputs."
    )


def _diverged_epoch(run: Run, engine: Engine) -> None:
    """With early stopping, a diverged epoch (already rolled back to its start) ends the
    run as scikit-learn's: no error; the epoch is recorded with a NaN loss and a NaN
    validation score (the weights it reached predict nothing finite), and the loop then
    restores the best weights (the epoch's start when no epoch scored yet). The run
    stays consistent, so it can be continued."""
    hist = run.history
    hist.epochs += 1
    hist.loss.append(math.nan)
    if engine.classifies:
        hist.train_score.append(math.nan)
    hist.learning_rate.append(run.optimizer.learning_rate)
    hist.val_score.append(math.nan)
    hist.stop_reason = "diverged"
