"""The one training loop: every model, the estimator and the command line train through it.

``fit`` runs epochs of shuffled minibatches (or full-batch L-BFGS), records a
:class:`History`, stops on a loss or validation plateau, restores the best weights
for early stopping, refuses to continue past a non-finite loss (keeping the last finite
weights), keeps the weights when interrupted with Ctrl-C, and calls callbacks once per
epoch (progress bars and checkpoints hang off them).

Each step runs on one of two engines, chosen by ``TrainingConfig.engine``: ``"fast"``
(the default) computes it in the preallocated buffers of a
:class:`~handgrad.workspace.Workspace`, and for plain SGD (momentum 0) fuses the update
into the gradient's matrix product; ``"reference"`` calls
:meth:`MLP.loss_and_gradients <handgrad.network.MLP.loss_and_gradients>`, the
layer functions of the notes, and then the optimizer. The tests hold the two equal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from handgrad._threads import blas_threads
from handgrad._validation import check_choice, check_number, check_sample_weight, check_X
from handgrad.errors import TrainingDivergedError
from handgrad.layers import HEADS
from handgrad.network import MLP, as_rng
from handgrad.optim import LBFGS, SGD, Optimizer
from handgrad.workspace import Workspace, scores

STOPPING = ("loss", "validation", "none")
ENGINES = ("fast", "reference")


@dataclass
class TrainingConfig:
    """How to train. ``reg`` is the notes' λ; with ``reg_per_sample`` (scikit-learn's
    ``alpha``) the penalty of each batch uses ``λ = reg / Σ_batch w`` instead.

    ``stopping``: ``"loss"`` stops when the epoch's training loss has not improved by
    ``tol`` for ``n_iter_no_change`` epochs; ``"validation"`` does the same on the
    validation accuracy and restores the best weights (early stopping); ``"none"`` runs
    to ``max_epochs``/``max_steps``.

    ``engine``: ``"fast"`` (buffers reused across steps; plain SGD fused into the
    products) or ``"reference"`` (``model.loss_and_gradients``, then the optimizer).
    Both compute the same step; the reference is the one to read, to debug, or to
    override in a subclass. Validation scoring and L-BFGS follow the same setting.
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


@dataclass
class History:
    """What training did, epoch by epoch (lists grow across ``fit`` calls)."""

    loss: list[float] = field(default_factory=list)  # mean training loss per epoch
    step_loss: list[float] = field(default_factory=list)  # loss of every minibatch
    train_score: list[float] = field(default_factory=list)  # running accuracy per epoch
    val_score: list[float] = field(default_factory=list)  # validation accuracy per epoch
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
    best_params: dict[str, np.ndarray] | None = None


class Callback:
    """Hooks called by :func:`fit`. ``on_epoch_end`` returning True stops training."""

    def on_train_begin(self, run: Run) -> None: ...

    def on_epoch_end(self, run: Run) -> bool | None: ...

    def on_train_end(self, run: Run) -> None: ...


def fit(
    model: MLP,
    X: Any,
    y: Any,
    *,
    optimizer: Optimizer,
    config: TrainingConfig | None = None,
    validation: tuple[Any, ...] | None = None,
    sample_weight: Any = None,
    seed: int | np.random.Generator | None = None,
    callbacks: Sequence[Callback] = (),
    run: Run | None = None,
    check_input: bool = True,
) -> History:
    """Train ``model`` in place on X (N, D) and y (targets as ``model.loss`` takes them).

    Pass ``run`` (from an earlier call or a checkpoint) to continue training with its
    optimizer state, shuffling generator and history; otherwise one is made from
    ``optimizer`` and ``seed``. ``validation`` is ``(X_val, y_val)`` or
    ``(X_val, y_val, sample_weight_val)``; the validation accuracy is weighted by the
    latter. Raises :class:`TrainingDivergedError` on a non-finite
    loss, after putting back the weights of the last finished epoch.

    ``check_input=False`` (scikit-learn's idiom) skips the pass over X and X_val that
    checks shapes and finiteness, for callers that have just checked them (X must then
    be a finite (N, D) array of the model's dtype).
    """
    config = config or TrainingConfig()
    if check_input:
        X = check_X(X, n_features=model.layer_sizes[0], dtype=model.dtype)
    T = model.encode_targets(y, X.shape[0])
    w = check_sample_weight(sample_weight, X.shape[0], model.dtype)
    if validation is not None:
        X_val = validation[0]
        if check_input:
            X_val = check_X(X_val, n_features=model.layer_sizes[0], dtype=model.dtype, name="X_val")
        w_val = validation[2] if len(validation) > 2 else None
        validation = (
            X_val,
            model.encode_targets(validation[1], X_val.shape[0]),
            check_sample_weight(w_val, X_val.shape[0], np.float64),
        )
    elif config.stopping == "validation":
        raise ValueError("stopping='validation' (early stopping) needs validation data")
    run = run or Run(model, optimizer, as_rng(seed))
    for cb in callbacks:
        cb.on_train_begin(run)
    full_batch = isinstance(run.optimizer, LBFGS)
    rows = X.shape[0] if full_batch else min(config.batch_size, X.shape[0])
    with blas_threads(rows, model.layer_sizes):  # the step's size chooses the threads
        if full_batch:
            _fit_lbfgs(run, X, T, w, config)
        else:
            _fit_minibatch(run, X, T, w, config, validation, callbacks)
    for cb in callbacks:
        cb.on_train_end(run)
    return run.history


def right_rows(model: MLP, S: np.ndarray, T: np.ndarray) -> np.ndarray:
    """(n,) bool: rows whose scores S predict encoded targets T exactly (every label)."""
    return HEADS[model.head].right_rows(S, T)


def accuracy(model: MLP, S: np.ndarray, T: np.ndarray, sample_weight=None) -> float:
    """(Weighted) fraction of rows predicted exactly right from scores S and targets T."""
    return float(np.average(right_rows(model, S, T), weights=sample_weight))


class _EpochStart:
    """The run as it was when the current epoch began: weights, optimizer state,
    shuffling generator and step counters. Ctrl-C or divergence part way through an
    epoch goes back to it, so the run stays consistent (and can be continued)."""

    def __init__(self, run: Run) -> None:
        self.params = {k: v.copy() for k, v in run.model.params.items()}
        self.optimizer_arrays: dict[str, np.ndarray] = {}

    def take(self, run: Run) -> None:
        for k, v in run.model.params.items():
            np.copyto(self.params[k], v)
        arrays, self.optimizer_scalars = run.optimizer.state()
        for k, v in arrays.items():  # reuse the copies: no allocation after epoch 1
            if k in self.optimizer_arrays:
                np.copyto(self.optimizer_arrays[k], v)
            else:
                self.optimizer_arrays[k] = v.copy()
        self.rng_state = run.rng.bit_generator.state
        self.steps, self.n_step_loss = run.history.steps, len(run.history.step_loss)

    def restore(self, run: Run) -> None:
        for k, v in self.params.items():
            np.copyto(run.model.params[k], v)
        run.optimizer.load_state(self.optimizer_arrays, dict(self.optimizer_scalars))
        run.rng.bit_generator.state = self.rng_state
        run.history.steps = self.steps
        del run.history.step_loss[self.n_step_loss :]


# A diverging step overflows on its way to the non-finite loss that the loop reports
# itself (TrainingDivergedError): no NumPy warnings on top of that.
@np.errstate(over="ignore", invalid="ignore", divide="ignore")
def _fit_minibatch(run, X, T, w, config, validation, callbacks) -> None:
    model, opt, hist = run.model, run.optimizer, run.history
    N = X.shape[0]
    batch_size = min(config.batch_size, N)
    epoch_start = _EpochStart(run)
    epoch_start.take(run)
    ws = _workspace(model, batch_size, config)
    # θ ← θ − η g: the update can be fused into the gradient's product
    fused = ws is not None and type(opt) is SGD and opt.momentum == 0
    arange = np.arange(N)
    order = arange.copy()  # rng.permutation(N) is arange + shuffle: same order, no alloc
    epochs_done = 0
    mid_epoch = False  # True while the weights are part way through an epoch
    try:
        while True:
            if config.max_epochs is not None and epochs_done >= config.max_epochs:
                hist.stop_reason = "max_epochs"
                break
            if config.shuffle:
                np.copyto(order, arange)
                run.rng.shuffle(order)
            total, correct, seen = 0.0, 0.0, 0
            mid_epoch = True
            for start in range(0, N, batch_size):
                if config.max_steps is not None and hist.steps >= config.max_steps:
                    break
                idx = order[start : start + batch_size]
                n = len(idx)
                if ws is None:
                    Xb, Tb, wb = X[idx], T[idx], (None if w is None else w[idx])
                else:
                    Xb, Tb, wb = ws.gather(X, T, w, idx)
                n_b = n if wb is None else float(wb.sum())
                reg = config.reg / n_b if config.reg_per_sample else config.reg
                if fused:
                    loss, S = ws.sgd_step(model.params, Xb, Tb, reg, wb, opt.learning_rate)
                elif ws is None:
                    loss, grads, S = model.loss_and_gradients(Xb, Tb, reg, wb)
                else:
                    loss, grads, S = ws.step(model.params, Xb, Tb, reg, wb)
                if not math.isfinite(loss):
                    epoch_start.restore(run)
                    _diverged(hist, opt)
                if not fused:
                    opt.update(model.params, grads)
                hist.step_loss.append(loss)
                hist.steps += 1
                total += loss * n
                correct += int(np.count_nonzero(right_rows(model, S, Tb)))
                seen += n
            mid_epoch = False
            if seen == 0:
                hist.stop_reason = "max_steps"
                break
            epochs_done += 1
            stop = _end_epoch(run, total / seen, correct / seen, seen, validation, config)
            epoch_start.take(run)  # where the next epoch starts (copies made in epoch 1)
            # Every callback sees every finished epoch, the last one included.
            if any([cb.on_epoch_end(run) for cb in callbacks]) and not stop:
                hist.stop_reason = "callback"
                stop = True
            if stop:
                break
    except KeyboardInterrupt:
        if mid_epoch:  # drop the unfinished epoch: back to the last finished one
            epoch_start.restore(run)
        hist.stop_reason = "interrupted"
    if config.stopping == "validation" and run.best_params is not None:
        for k, v in run.best_params.items():
            np.copyto(model.params[k], v)


def _workspace(model: MLP, rows: int, config: TrainingConfig) -> Workspace | None:
    """The fast engine's buffers for ``model`` on ``rows`` rows; None for the reference."""
    if config.engine != "fast":
        return None
    return Workspace(
        model.layer_sizes, rows, activation=model.activation, head=model.head, dtype=model.dtype
    )


def _end_epoch(run: Run, loss, train_score, seen, validation, config) -> bool:
    """Record the epoch, step the schedule, apply the stopping rule; True means stop."""
    model, opt, hist = run.model, run.optimizer, run.history
    hist.epochs += 1
    hist.samples_seen += seen
    hist.loss.append(loss)
    hist.train_score.append(train_score)
    hist.learning_rate.append(opt.learning_rate)
    if validation is not None:
        X_val, T_val, w_val = validation
        if config.engine == "fast":
            S_val = scores(model.params, X_val, model.activation)
        else:
            S_val = model.forward(X_val)[0]
        hist.val_score.append(accuracy(model, S_val, T_val, w_val))
    if config.verbose:
        val = f", validation accuracy = {hist.val_score[-1]:.4f}" if validation else ""
        print(f"Iteration {hist.epochs}, loss = {loss:.8f}{val}")
    _update_plateau(run, config)
    opt.schedule.epoch_end(opt, hist.samples_seen)
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
            run.best_params = {k: v.copy() for k, v in run.model.params.items()}
    else:
        improved = hist.loss[-1] <= hist.best_loss - config.tol
        hist.best_loss = min(hist.best_loss, hist.loss[-1])
    hist.n_no_improvement = 0 if improved else hist.n_no_improvement + 1


def _diverged(hist: History, opt: Optimizer) -> None:
    hist.stop_reason = "diverged"
    raise TrainingDivergedError(
        f"the training loss became non-finite in epoch {hist.epochs + 1} (step "
        f"{hist.steps + 1}) with learning rate {opt.learning_rate:g}; the weights of the "
        "last finished epoch were kept. Lower the learning rate, standardise the inputs, "
        "or increase the regularisation."
    )


def _fit_lbfgs(run: Run, X, T, w, config: TrainingConfig) -> None:
    """Full-batch L-BFGS-B on the flattened parameters, driven by the hand-derived grads."""
    import scipy.optimize

    model, opt, hist = run.model, run.optimizer, run.history
    names = list(model.params)
    shapes = [model.params[k].shape for k in names]
    splits = np.cumsum([int(np.prod(s)) for s in shapes])[:-1]
    n_w = X.shape[0] if w is None else float(w.sum())
    reg = config.reg / n_w if config.reg_per_sample else config.reg
    ws = _workspace(model, X.shape[0], config)

    def unpack(theta: np.ndarray) -> None:
        for k, part, shape in zip(names, np.split(theta, splits), shapes, strict=True):
            model.params[k][...] = part.reshape(shape)

    def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        unpack(theta)
        if ws is None:
            loss, grads, _ = model.loss_and_gradients(X, T, reg, w)
        else:
            loss, grads, _ = ws.step(model.params, X, T, reg, w)
        if not math.isfinite(loss):
            raise TrainingDivergedError("the loss became non-finite during L-BFGS")
        return loss, np.concatenate([grads[k].ravel() for k in names], dtype=np.float64)

    def record(intermediate_result) -> None:
        hist.loss.append(float(intermediate_result.fun))

    theta0 = np.concatenate([model.params[k].ravel() for k in names]).astype(np.float64)
    max_iter = config.max_epochs or config.max_steps
    result = scipy.optimize.minimize(
        loss_grad,
        theta0,
        method="L-BFGS-B",
        jac=True,
        callback=record,
        options={"maxfun": opt.max_fun, "maxiter": max_iter, "gtol": config.tol},
    )
    unpack(result.x)
    hist.epochs += int(result.nit)
    hist.steps += int(result.nfev)
    hist.samples_seen += int(result.nit) * X.shape[0]
    if not hist.loss or hist.loss[-1] != float(result.fun):
        hist.loss.append(float(result.fun))
    hist.best_loss = min(hist.best_loss, float(result.fun))
    if result.success:
        hist.stop_reason = "converged"
    elif result.nit >= max_iter:
        hist.stop_reason = "max_epochs"
    else:
        hist.stop_reason = f"lbfgs: {result.message}"
