"""The one training loop: every model, the estimator and the command line train through it.

``fit`` runs epochs of shuffled minibatches (or full-batch L-BFGS), records a
:class:`History`, stops on a loss or validation plateau, restores the best weights
for early stopping, refuses to continue past a non-finite loss or non-finite weights
(keeping the last finite weights; a ValueError, as scikit-learn's), keeps the weights
when interrupted with Ctrl-C, and calls callbacks once per epoch (progress bars and
checkpoints hang off them).

Each step runs on one of two engines, chosen by ``TrainingConfig.engine``: ``"fast"``
(the default) computes it in the preallocated buffers of a
:class:`~handgrad.workspace.Workspace`, and for plain SGD (momentum 0) fuses the update
into the gradient's matrix product; ``"reference"`` calls
:meth:`MLP.loss_and_gradients <handgrad.network.MLP.loss_and_gradients>`, the
layer functions of the notes, and then the optimizer. The tests hold the two equal.

X may also be an array of another array-API library (a PyTorch or CuPy array on a GPU,
an array-api-strict array): training then runs there, on the reference engine (see
:class:`TrainingConfig`), with the network and the optimizer's state moved once to X's
device.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from handgrad._mapped import RowReader
from handgrad._threads import blas_threads
from handgrad._validation import (
    all_finite,
    check_choice,
    check_memory,
    check_number,
    check_sample_weight,
    check_X,
    format_bytes,
)
from handgrad._xp import (
    copy,
    copy_into,
    device,
    finite_on_device,
    namespace,
    to_device,
    to_numpy,
)
from handgrad.errors import TrainingDivergedError
from handgrad.heads import HEADS
from handgrad.layers import l2_penalty
from handgrad.network import MLP, as_rng, describe_sizes, params_nbytes
from handgrad.optim import LBFGS, SGD, Adam, Optimizer
from handgrad.workspace import CHUNK_ROWS, Workspace, scores

STOPPING = ("loss", "validation", "none")
ENGINES = ("fast", "reference")


@dataclass
class TrainingConfig:
    """How to train. ``reg`` is the notes' λ; with ``reg_per_sample`` (scikit-learn's
    ``alpha``) the penalty of each batch uses ``λ = reg / Σ_batch w`` instead.

    ``stopping``: ``"loss"`` stops when the epoch's training loss has not improved by
    ``tol`` for ``n_iter_no_change`` epochs; ``"validation"`` does the same on the
    validation score (:func:`validation_score`: accuracy, or R² for a regression head)
    and restores the best weights (early stopping); ``"none"`` runs
    to ``max_epochs``/``max_steps``.

    ``engine``: ``"fast"`` (buffers reused across steps; plain SGD fused into the
    products) or ``"reference"`` (``model.loss_and_gradients``, then the optimizer).
    Both compute the same step; the reference is the one to read, to debug, or to
    override in a subclass.

    ``report(S, T, w, penalty) -> float``: the loss the history records and the
    stopping rule reads, from a batch's scores, targets, weights and the penalty
    ``λ/2 Σ‖W‖²`` of the weights S was computed with; None records the core's loss
    (the notes' loss, exactly). The estimators pass
    scikit-learn's convention (:class:`handgrad.estimator.ReportedLoss`), which L-BFGS
    then minimises, as scikit-learn's does. Validation scoring and L-BFGS follow the same setting.
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
    rows: Any = None,
    validation_rows: Any = None,
) -> History:
    """Train ``model`` in place on X (N, D) and y (targets as ``model.loss`` takes them).

    Pass ``run`` (from an earlier call or a checkpoint) to continue training with its
    optimizer state, shuffling generator and history; otherwise one is made from
    ``optimizer`` and ``seed``. ``validation`` is ``(X_val, y_val)`` or
    ``(X_val, y_val, sample_weight_val)``; the validation score (accuracy, or R² for a
    regression head) is weighted by the latter. Raises :class:`TrainingDivergedError`
    (a ValueError) on a non-finite loss or non-finite weights, after putting back the
    weights of the last finished epoch (for L-BFGS, the last parameters whose loss was
    finite). X may be a SciPy sparse matrix: it stays sparse (CSR), in the first layer's
    products too. A request for more memory than the machine has is refused before
    anything is allocated (:func:`check_training_memory`).

    ``check_input=False`` (scikit-learn's idiom) skips the pass over X and X_val that
    checks shapes and finiteness, for callers that have just checked them (X must then
    be a finite (N, D) array of the model's dtype).

    ``rows`` (row numbers into X, y and sample_weight) trains on those rows only, and
    ``validation_rows`` holds those rows out as the validation data (instead of
    ``validation``): batches and the held-out scores are gathered from X, which is never
    copied whole — the way to split a memory-mapped X (``np.load(path, mmap_mode="r")``),
    whose batches are read from its file (:class:`handgrad._mapped.RowReader`). Training
    on ``rows`` is the same, bit for bit, as training on ``X[rows]``.

    X of another array-API library (a PyTorch or CuPy array, on any device) trains in
    that library on X's device, by the reference engine: the network (and a continued
    run's optimizer state) is moved there once; y and the sample weights are checked
    on the host and moved once; the shuffling order is drawn on the host by the same
    generator as for NumPy (the same batches) and moved once per epoch. A step brings
    one number back to the host, its loss; the running accuracy and the finiteness of
    the weights are read once per epoch. L-BFGS (SciPy's, on the host) moves the
    parameter vector to the device and the gradient back at every evaluation. A
    NumPy X moves a network trained elsewhere back to the host.
    """
    config = config or TrainingConfig()
    xp = namespace(X)
    if xp is not np:  # the reference engine, on X's device
        config = dataclasses.replace(config, engine="reference")
    if check_input:
        X = check_X(X, n_features=model.layer_sizes[0], dtype=model.dtype)
    T = model.encode_targets(to_numpy(y), X.shape[0])
    w = check_sample_weight(to_numpy(sample_weight), X.shape[0], model.dtype)
    if validation_rows is not None:
        if validation is not None:
            raise ValueError("give validation or validation_rows, not both")
        val = _check_rows(validation_rows, X.shape[0], "validation_rows")
        w_val = None if w is None else w[val].astype(np.float64)
        # A dense X's held-out rows are gathered chunk by chunk when scored; a sparse
        # X's (or another library's) are small enough to take.
        dense = isinstance(X, np.ndarray)
        validation = (X if dense else _take(X, val), T[val], w_val, val if dense else None)
    elif validation is not None:
        X_val = validation[0]
        if check_input or namespace(X_val) is not xp:
            X_val = check_X(X_val, n_features=model.layer_sizes[0], dtype=model.dtype, name="X_val")
        if namespace(X_val) is not xp:
            raise TypeError(
                "X_val must be an array of the same library as X "
                f"({xp.__name__}), got {type(X_val).__module__}.{type(X_val).__name__}"
            )
        w_val = to_numpy(validation[2]) if len(validation) > 2 else None
        validation = (
            X_val,
            model.encode_targets(to_numpy(validation[1]), X_val.shape[0]),
            check_sample_weight(w_val, X_val.shape[0], np.float64),
            None,
        )
    elif config.stopping == "validation":
        raise ValueError("stopping='validation' (early stopping) needs validation data")
    run = run or Run(model, optimizer, as_rng(seed))
    w_host = w
    if xp is not np or namespace(run.model.params["W1"]) is not np:
        _move_run(run, xp, device(X))
        T, w = to_device(T, xp, device(X)), to_device(w, xp, device(X))
        if validation is not None:
            X_val, T_val, w_val, rows_val = validation
            validation = (X_val, to_device(T_val, xp, device(X_val)), w_val, rows_val)
            if w_val is not None:
                validation = (*validation[:2], to_device(w_val, xp, device(X_val)), rows_val)
    lbfgs = isinstance(run.optimizer, LBFGS)
    rows = None if rows is None else _check_rows(rows, X.shape[0], "rows")
    if lbfgs and rows is not None:  # full batch: every iteration reads all the rows
        X, T, w, rows = _take(X, rows), _take(T, rows), None if w is None else _take(w, rows), None
    n_rows = X.shape[0] if rows is None else len(rows)
    check_training_memory(
        model.layer_sizes,
        n_rows if lbfgs else min(config.batch_size, n_rows),
        dtype=model.dtype,
        optimizer=run.optimizer,
        activation=model.activation,
        dense_X=isinstance(X, np.ndarray),
    )
    for cb in callbacks:
        cb.on_train_begin(run)
    step_rows = n_rows if lbfgs else min(config.batch_size, n_rows)
    # The step's size chooses the threads (for another library's CPU arrays too).
    with blas_threads(step_rows, model.layer_sizes, small_on_one_thread=xp is np):
        if lbfgs:
            _fit_lbfgs(run, X, T, w, config)
        else:
            with RowReader(X) if isinstance(X, np.ndarray) else nullcontext(X) as source:
                _fit_minibatch(run, source, T, w, config, validation, callbacks, rows, w_host)
    for cb in callbacks:
        cb.on_train_end(run)
    return run.history


def _take(A: Any, rows: np.ndarray) -> Any:
    """The rows of A (NumPy, sparse, or another library's array on its device)."""
    xp = namespace(A)
    if xp is np:
        return A[rows]
    return xp.take(A, to_device(rows, xp, device(A)), axis=0)


def _move_run(run: Run, xp: ModuleType, dev: Any) -> None:
    """Move the run's network, optimizer state and best weights to namespace ``xp`` on
    ``dev``, unless they are there already."""
    W1 = run.model.params["W1"]
    if namespace(W1) is xp and (xp is np or device(W1) == dev):
        return
    run.model.to(xp, dev)
    run.optimizer.to(xp, dev)
    if run.best_params is not None:
        run.best_params = {k: to_device(to_numpy(v), xp, dev) for k, v in run.best_params.items()}


def _check_rows(rows: Any, n: int, name: str) -> np.ndarray:
    """``rows`` as a 1-D intp array of row numbers in ``[0, n)``, or a ValueError."""
    arr = np.asarray(rows)
    if arr.ndim != 1 or arr.dtype.kind not in "iu" or not len(arr):
        raise ValueError(
            f"{name} must be a non-empty 1-D array of integer row numbers, but it has "
            f"shape {arr.shape} and dtype {arr.dtype}"
        )
    if arr.min() < 0 or arr.max() >= n:
        raise ValueError(f"{name} must be row numbers in [0, {n}), got {arr.min()}..{arr.max()}")
    return arr.astype(np.intp, copy=False)


def memory_needed(
    layer_sizes: Sequence[int],
    rows: int,
    *,
    dtype: Any,
    optimizer: Optimizer,
    activation: str = "relu",
    dense_X: bool = True,
) -> dict[str, int]:
    """Bytes that training a network of ``layer_sizes`` on batches of ``rows`` rows
    needs, part by part, estimated before anything is allocated.

    The parts: the weights; their gradients, the L2 term's scratch and the copy kept at
    each epoch's start; the optimizer's state (momentum, Adam's moments, or L-BFGS's
    float64 history of ten pairs) with its copy; the workspace's per-row buffers
    (:meth:`Workspace.buffer_nbytes`, without X's batch when X is sparse).
    """
    weights = params_nbytes(layer_sizes, dtype)
    n_params = weights // np.dtype(dtype).itemsize
    if isinstance(optimizer, LBFGS):  # θ, the last finite θ, the gradient, 2 × 10 pairs
        state = 8 * 25 * n_params
    elif isinstance(optimizer, Adam):  # m, v, two scratches, the copies of m and v
        state = 6 * weights
    elif isinstance(optimizer, SGD) and optimizer.momentum:
        state = 4 * weights  # velocity, two scratches, the velocity's copy
    else:
        state = weights
    name = getattr(optimizer, "name", type(optimizer).__name__)
    return {
        "the weights": weights,
        "their gradients and copies": 3 * weights,
        f"{name}'s state": state,
        f"buffers for batches of {rows} rows": Workspace.buffer_nbytes(
            layer_sizes, rows, activation=activation, dtype=dtype, dense_X=dense_X
        ),
    }


def check_training_memory(
    layer_sizes: Sequence[int],
    rows: int,
    *,
    dtype: Any,
    optimizer: Optimizer,
    activation: str = "relu",
    dense_X: bool = True,
) -> None:
    """ValueError, before anything is allocated, where :func:`memory_needed` is more
    than this machine's memory; the message names each part."""
    parts = memory_needed(
        layer_sizes,
        rows,
        dtype=dtype,
        optimizer=optimizer,
        activation=activation,
        dense_X=dense_X,
    )
    check_memory(
        sum(parts.values()),
        f"training the network {describe_sizes(layer_sizes)} ({np.dtype(dtype).name})",
        "(" + ", ".join(f"{k} {format_bytes(v)}" for k, v in parts.items()) + ")",
        "use fewer or smaller hidden layers, or smaller batches",
    )


def right_rows(
    model: MLP, S: np.ndarray, T: np.ndarray, workspace: Workspace | None = None
) -> np.ndarray:
    """(n,) bool: rows whose scores S predict encoded targets T exactly (every label);
    given the ``workspace`` whose step computed S, from the classes its loss found."""
    if workspace is not None:
        return workspace.right_rows(S, T)
    return HEADS[model.head].right_rows(S, T)


def accuracy(model: MLP, S: np.ndarray, T: np.ndarray, sample_weight=None) -> float:
    """(Weighted) fraction of rows predicted exactly right from scores S and targets T
    (computed in S's library, on its device)."""
    right = right_rows(model, S, T)
    if isinstance(right, np.ndarray):
        return float(np.average(right, weights=sample_weight))
    xp = namespace(right)
    right = xp.astype(right, xp.float64)
    if sample_weight is None:
        return float(xp.mean(right))
    return float(xp.vecdot(right, sample_weight) / xp.sum(sample_weight))


def r2(model: MLP, S: np.ndarray, T: np.ndarray, sample_weight=None) -> float:
    """(Weighted) coefficient of determination of the predictions from scores S (which
    are overwritten) against targets T (n, C), averaged over the C outputs.

    Per output ``R² = 1 − Σ w (Y − P)² / Σ w (Y − Ȳ)²``; as scikit-learn's
    ``r2_score``: a constant target gives 1 when predicted exactly and 0 otherwise,
    fewer than two rows or non-finite predictions give NaN.
    """
    if not isinstance(S, np.ndarray):
        return _r2_array_api(model, S, T, sample_weight)
    with np.errstate(over="ignore"):  # an overflowing e^S scores NaN, as below
        P = HEADS[model.head].probabilities_(S)
    if T.shape[0] < 2 or not np.isfinite(P).all():
        return math.nan
    w = np.ones(T.shape[0]) if sample_weight is None else np.asarray(sample_weight)
    Y = T.reshape(P.shape).astype(np.float64)
    residual = w @ (Y - P) ** 2
    spread = w @ (Y - np.average(Y, axis=0, weights=w)) ** 2
    per_output = np.where(residual == 0, 1.0, 0.0)
    nonzero = spread != 0
    per_output[nonzero] = 1 - residual[nonzero] / spread[nonzero]
    return float(per_output.mean())


def _r2_array_api(model: MLP, S: Any, T: Any, sample_weight=None) -> float:
    """:func:`r2` in the library of S, on its device (float64, as there)."""
    xp = namespace(S)
    P = xp.astype(HEADS[model.head].probabilities(S), xp.float64)
    if T.shape[0] < 2 or not finite_on_device([P]):
        return math.nan
    if sample_weight is None:
        w = xp.ones(T.shape[0], dtype=xp.float64, device=device(S))
    else:
        w = xp.astype(sample_weight, xp.float64)
    Y = xp.reshape(xp.astype(T, xp.float64), P.shape)
    residual = w @ (Y - P) ** 2
    mean = (w @ Y) / xp.sum(w)
    spread = w @ (Y - mean) ** 2
    nonzero = spread != 0
    ratio = residual / xp.where(nonzero, spread, 1.0)
    exact = xp.astype(residual == 0, xp.float64)  # a constant target: 1 if exact, else 0
    per_output = xp.where(nonzero, 1 - ratio, exact)
    return float(xp.mean(per_output))


#: How held-out data is scored, by the head's ``score`` name.
SCORES = {"accuracy": accuracy, "r2": r2}


def validation_score(model: MLP, S: np.ndarray, T: np.ndarray, sample_weight=None) -> float:
    """The head's score of scores S (may be overwritten) against targets T: accuracy
    for a classification head, R² for a regression head."""
    return SCORES[HEADS[model.head].score](model, S, T, sample_weight)


class _EpochStart:
    """The run as it was when the current epoch began: weights, optimizer state,
    shuffling generator and step counters. Ctrl-C or divergence part way through an
    epoch goes back to it, so the run stays consistent (and can be continued)."""

    def __init__(self, run: Run) -> None:
        # copies where the arrays are: on the device for another library's
        self.params = {k: copy(v) for k, v in run.model.params.items()}
        self.optimizer_arrays: dict[str, np.ndarray] = {}

    def take(self, run: Run) -> None:
        for k, v in run.model.params.items():
            copy_into(self.params[k], v)
        arrays, self.optimizer_scalars = run.optimizer.state()
        for k, v in arrays.items():  # reuse the copies: no allocation after epoch 1
            if k in self.optimizer_arrays:
                copy_into(self.optimizer_arrays[k], v)
            else:
                self.optimizer_arrays[k] = copy(v)
        self.rng_state = run.rng.bit_generator.state
        self.steps, self.n_step_loss = run.history.steps, len(run.history.step_loss)

    def restore(self, run: Run) -> None:
        for k, v in self.params.items():
            copy_into(run.model.params[k], v)
        run.optimizer.load_state(self.optimizer_arrays, dict(self.optimizer_scalars))
        run.rng.bit_generator.state = self.rng_state
        run.history.steps = self.steps
        del run.history.step_loss[self.n_step_loss :]


# A diverging step overflows on its way to the non-finite loss that the loop reports
# itself (TrainingDivergedError): no NumPy warnings on top of that.
@np.errstate(over="ignore", invalid="ignore", divide="ignore")
def _fit_minibatch(run, X, T, w, config, validation, callbacks, rows=None, w_host=None) -> None:
    """Epochs of minibatches over X (an array, or a RowReader of one) or its ``rows``.

    For X of another library, T and w are on X's device and ``w_host`` is w's host copy
    (each batch's weight sum is taken there, not brought back)."""
    model, opt, hist = run.model, run.optimizer, run.history
    xp = namespace(model.params["W1"])
    on_device = xp is not np
    reader = X if isinstance(X, RowReader) else None
    N = (X.X if reader else X).shape[0] if rows is None else len(rows)
    batch_size = min(config.batch_size, N)
    epoch_start = _EpochStart(run)
    epoch_start.take(run)
    ws = _workspace(model, batch_size, config)
    # θ ← θ − η g: the update can be fused into the gradient's product
    fused = ws is not None and type(opt) is SGD and opt.momentum == 0
    classifies = HEADS[model.head].right_rows is not None  # a running accuracy to keep
    # rng.permutation(N) is 0..N-1 shuffled: the same order, in one reused (N,) array
    order = _counting(np.empty(N, np.intp))
    row_numbers = np.empty(batch_size, np.intp)
    epochs_done = 0
    mid_epoch = False  # True while the weights are part way through an epoch
    try:
        while True:
            if config.max_epochs is not None and epochs_done >= config.max_epochs:
                hist.stop_reason = "max_epochs"
                break
            if config.shuffle:
                run.rng.shuffle(_counting(order))
            if on_device:  # the epoch's row numbers, moved once
                order_on_device = to_device(order if rows is None else rows[order], xp, device(X))
            total, correct, seen = 0.0, 0, 0
            mid_epoch = True
            for start in range(0, N, batch_size):
                if config.max_steps is not None and hist.steps >= config.max_steps:
                    break
                idx = order[start : start + batch_size]
                n = len(idx)
                if rows is not None:  # positions in rows -> row numbers of X
                    idx = np.take(rows, idx, out=row_numbers[:n])
                if on_device:
                    batch = order_on_device[start : start + n]
                    Xb, Tb = xp.take(X, batch, axis=0), xp.take(T, batch, axis=0)
                    wb = None if w is None else xp.take(w, batch, axis=0)
                elif ws is None:
                    Xb = X[idx] if reader is None else reader.take(idx, None)
                    Tb, wb = T[idx], (None if w is None else w[idx])
                else:
                    Xb, Tb, wb = ws.gather(X, T, w, idx)
                n_b = n if wb is None else float((w_host[idx] if on_device else wb).sum())
                reg = config.reg / n_b if config.reg_per_sample else config.reg
                if fused:
                    loss, S = ws.sgd_step(model.params, Xb, Tb, reg, wb, opt.learning_rate)
                elif ws is None:
                    loss, grads, S = model.loss_and_gradients(Xb, Tb, reg, wb)
                else:
                    loss, grads, S = ws.step(model.params, Xb, Tb, reg, wb)
                if config.report is not None:  # the loss as the caller's convention has it
                    penalty = l2_penalty(model.weights, reg)[0] if ws is None else ws.penalty
                    loss = config.report(S, Tb, wb, penalty)
                loss = float(loss)  # the one number a step brings back from a device
                if not math.isfinite(loss):
                    # Named before the rollback, which puts the counters back too.
                    epoch, step = hist.epochs + 1, hist.steps + 1
                    epoch_start.restore(run)
                    _diverged(hist, opt, epoch, step)
                if not fused:
                    opt.update(model.params, grads)
                hist.step_loss.append(loss)
                hist.steps += 1
                total += loss * n
                if classifies and on_device:  # on another library's device: read once per epoch
                    correct += xp.count_nonzero(right_rows(model, S, Tb))
                elif classifies:
                    correct += int(np.count_nonzero(right_rows(model, S, Tb, ws)))
                seen += n
            if not _all_finite_params(model):  # a finite loss, but an overflowing update
                epoch_start.restore(run)
                _weights_diverged(hist, opt)
            mid_epoch = False
            if seen == 0:
                hist.stop_reason = "max_steps"
                break
            epochs_done += 1
            train_score = int(correct) / seen if classifies else None
            stop = _end_epoch(run, total / seen, train_score, seen, validation, config, reader)
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
            copy_into(model.params[k], v)


def _counting(order: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """``order[:] = 0, 1, …, N−1``, a chunk at a time: no second (N,) array."""
    for start in range(0, len(order), chunk):
        stop = min(start + chunk, len(order))
        order[start:stop] = np.arange(start, stop)
    return order


def _workspace(model: MLP, rows: int, config: TrainingConfig) -> Workspace | None:
    """The fast engine's buffers for ``model`` on ``rows`` rows; None for the reference."""
    if config.engine != "fast":
        return None
    return Workspace(
        model.layer_sizes, rows, activation=model.activation, head=model.head, dtype=model.dtype
    )


def _end_epoch(run: Run, loss, train_score, seen, validation, config, reader=None) -> bool:
    """Record the epoch, step the schedule, apply the stopping rule; True means stop."""
    model, opt, hist = run.model, run.optimizer, run.history
    hist.epochs += 1
    hist.samples_seen += seen
    hist.loss.append(loss)
    if train_score is not None:
        hist.train_score.append(train_score)
    hist.learning_rate.append(opt.learning_rate)
    if validation is not None:
        X_val, T_val, w_val, rows_val = validation
        if rows_val is not None:
            S_val = _scores_of_rows(model, reader, rows_val, config)
        elif config.engine == "fast":
            S_val = scores(model.params, X_val, model.activation)
        else:
            S_val = model.forward(X_val)[0]
        hist.val_score.append(validation_score(model, S_val, T_val, w_val))
    if config.verbose:
        name = {"accuracy": "accuracy", "r2": "R²"}[HEADS[model.head].score]
        val = f", validation {name} = {hist.val_score[-1]:.4f}" if validation else ""
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


def _scores_of_rows(model: MLP, reader: RowReader, rows: np.ndarray, config) -> np.ndarray:
    """Scores S (n, C) of X's ``rows``, gathered CHUNK_ROWS at a time into one buffer:
    the same chunks, so the same numbers, as scoring ``X[rows]``."""
    S = np.empty((len(rows), model.layer_sizes[-1]), model.dtype)
    chunk = np.empty((min(CHUNK_ROWS, len(rows)), reader.X.shape[1]), model.dtype)
    for start in range(0, len(rows), CHUNK_ROWS):
        idx = rows[start : start + CHUNK_ROWS]
        X_chunk = reader.take(idx, chunk[: len(idx)])
        if config.engine == "fast":
            S[start : start + len(idx)] = scores(model.params, X_chunk, model.activation)
        else:
            S[start : start + len(idx)] = model.forward(X_chunk)[0]
    return S


def _update_plateau(run: Run, config: TrainingConfig) -> None:
    """scikit-learn's no-improvement count, on the loss or the validation score."""
    hist = run.history
    if config.stopping == "validation":
        score = hist.val_score[-1]
        improved = score >= hist.best_val_score + config.tol
        if score > hist.best_val_score:
            hist.best_val_score = score
            run.best_params = {k: copy(v) for k, v in run.model.params.items()}
    else:
        improved = hist.loss[-1] <= hist.best_loss - config.tol
        hist.best_loss = min(hist.best_loss, hist.loss[-1])
    hist.n_no_improvement = 0 if improved else hist.n_no_improvement + 1


def _diverged(hist: History, opt: Optimizer, epoch: int, step: int) -> None:
    """Raise for a non-finite loss first seen at ``step`` (counted over the whole run)
    of ``epoch``."""
    hist.stop_reason = "diverged"
    raise TrainingDivergedError(
        f"the training loss became non-finite in epoch {epoch} (step "
        f"{step}) with learning rate {opt.learning_rate:g}; the weights of the "
        "last finished epoch were kept. Lower the learning rate, standardise the inputs, "
        "or increase the regularisation."
    )


def _all_finite_params(model: MLP) -> bool:
    params = list(model.params.values())
    if isinstance(params[0], np.ndarray):
        return all(all_finite(v) for v in params)
    return finite_on_device(params)  # one number back to the host


def _weights_diverged(hist: History, opt: Optimizer) -> None:
    """Stop on weights that became non-finite while the loss stayed finite (an update
    that overflowed), as scikit-learn refuses such weights."""
    hist.stop_reason = "diverged"
    raise TrainingDivergedError(
        f"Solver produced non-finite parameter weights in epoch {hist.epochs + 1} with "
        f"learning rate {opt.learning_rate:g}; the weights of the last finished epoch "
        "were kept. The input data may contain large values and need to be preprocessed "
        "(standardise the inputs), or lower the learning rate."
    )


class _NonFiniteLoss(Exception):
    """Raised inside SciPy's L-BFGS to stop it at a non-finite loss."""


# A diverging line search overflows on its way to the non-finite loss reported below.
@np.errstate(over="ignore", invalid="ignore", divide="ignore")
def _fit_lbfgs(run: Run, X, T, w, config: TrainingConfig) -> None:
    """Full-batch L-BFGS-B on the flattened parameters, driven by the hand-derived grads.

    On a non-finite loss it puts back the last parameters whose loss was finite and
    raises :class:`TrainingDivergedError` naming the iteration. SciPy's L-BFGS works on
    host vectors: for X of another library, each evaluation moves θ to X's device and
    the loss and gradient back.
    """
    import scipy.optimize

    model, opt, hist = run.model, run.optimizer, run.history
    names = list(model.params)
    shapes = [model.params[k].shape for k in names]
    splits = np.cumsum([int(np.prod(s)) for s in shapes])[:-1]
    n_w = X.shape[0] if w is None else float(namespace(w).sum(w))
    reg = config.reg / n_w if config.reg_per_sample else config.reg
    ws = _workspace(model, X.shape[0], config)
    xp, dev, dtype = namespace(model.params["W1"]), device(model.params["W1"]), model.dtype

    def unpack(theta: np.ndarray) -> None:
        for k, part, shape in zip(names, np.split(theta, splits), shapes, strict=True):
            if xp is np:
                model.params[k][...] = part.reshape(shape)
            else:
                copy_into(model.params[k], to_device(part.reshape(shape), xp, dev, dtype))

    def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        unpack(theta)
        if ws is None:
            loss, grads, S = model.loss_and_gradients(X, T, reg, w)
        else:
            loss, grads, S = ws.step(model.params, X, T, reg, w)
        if config.report is not None:  # the objective as the caller's convention has it
            loss = config.report(S, T, w, l2_penalty(model.weights, reg)[0])
        loss = float(loss)
        if not math.isfinite(loss):
            unpack(finite_theta)
            raise _NonFiniteLoss
        np.copyto(finite_theta, theta)
        if xp is not np:
            grads = {k: to_numpy(g) for k, g in grads.items()}
        return loss, np.concatenate([grads[k].ravel() for k in names], dtype=np.float64)

    epochs_before = hist.epochs

    def record(intermediate_result) -> None:
        hist.loss.append(float(intermediate_result.fun))
        hist.epochs += 1

    host = {k: to_numpy(model.params[k]) for k in names}
    theta0 = np.concatenate([host[k].ravel() for k in names]).astype(np.float64)

    finite_theta = theta0.copy()  # the last parameters whose loss was finite
    max_iter = config.max_epochs or config.max_steps
    try:
        result = scipy.optimize.minimize(
            loss_grad,
            theta0,
            method="L-BFGS-B",
            jac=True,
            callback=record,
            options={"maxfun": opt.max_fun, "maxiter": max_iter, "gtol": config.tol},
        )
    except _NonFiniteLoss:
        hist.stop_reason = "diverged"
        raise TrainingDivergedError(
            f"the training loss became non-finite in L-BFGS iteration {hist.epochs + 1}; "
            "the last weights with a finite loss were kept. The input data may contain "
            "large values: standardise the inputs, or increase the regularisation (alpha)."
        ) from None
    hist.epochs = epochs_before
    unpack(result.x)
    hist.epochs += int(result.nit)
    hist.steps += int(result.nfev)
    hist.samples_seen += int(result.nit) * X.shape[0]
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
