"""The doors of the loop: :func:`fit` (checks what it is given, then trains),
:func:`new_run` (a new network and its optimizer, their memory checked before they are
allocated) and :func:`train` (trains checked data: places the run, chooses the engine
and the batch source once, and hands them to the loop or to L-BFGS)."""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np
import scipy.sparse as sp

from handgrad._threads import blas_threads
from handgrad._xp import device, is_numpy, is_on, namespace, to_device, to_numpy
from handgrad.network import MLP, as_rng
from handgrad.optim import LBFGS, Optimizer
from handgrad.training.config import TrainingConfig
from handgrad.training.data import TrainingData
from handgrad.training.engines import engine_for
from handgrad.training.lbfgs import fit_lbfgs
from handgrad.training.loop import minibatch_loop
from handgrad.training.memory import check_run_memory, check_training_memory, is_new, step_rows
from handgrad.training.run import Callback, History, Run
from handgrad.training.sources import batch_source
from handgrad.training.validation import HeldOut, held_out


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
    anything is allocated (:func:`check_training_memory`) beyond the model given.

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
    data = TrainingData.of(model, X, y, sample_weight, rows)
    held = held_out(model, data, validation, validation_rows)
    run = run or Run(model, optimizer, as_rng(seed))
    if is_new(run):  # a run that has trained is checked by train
        _check_memory(run, data, config)
    return train(run, data, config, held, callbacks)


def new_run(
    layer_sizes: Sequence[int],
    optimizer: Optimizer,
    *,
    rows: int,
    dtype: Any,
    activation: str,
    head: str,
    seed: np.random.Generator,
    rng: np.random.Generator,
    dense_X: bool = True,
    dropout: float = 0.0,
    norm: str | None = None,
) -> Run:
    """A run of a new network of ``layer_sizes`` (Glorot's initialisation, drawn from
    ``seed`` on the host in ``dtype``; ``dropout`` and ``norm`` as :class:`MLP` takes
    them) trained by ``optimizer`` on batches of ``rows`` rows and shuffled by ``rng``
    (which draws the dropout masks too). Its memory is checked first, before any of it
    is allocated (:func:`check_training_memory`); :func:`train` does not check it
    again."""
    check_training_memory(
        layer_sizes, rows, dtype=dtype, optimizer=optimizer, activation=activation, dense_X=dense_X
    )
    input_size, *hidden, output_size = layer_sizes
    model = MLP(
        input_size,
        hidden,
        output_size,
        activation=activation,
        head=head,
        init="glorot",
        seed=seed,
        dtype=dtype,
        dropout=dropout,
        norm=norm,
    )
    return Run(model, optimizer, rng)


def train(
    run: Run,
    data: TrainingData,
    config: TrainingConfig,
    held_out: HeldOut | None = None,
    callbacks: Sequence[Callback] = (),
) -> History:
    """Train ``run`` on checked ``data`` (:class:`TrainingData`), scoring ``held_out``
    each epoch: the network moved once to X's library and device, the engine and the
    batch source chosen, then the loop (or L-BFGS) in the threads the step's size
    chooses. Returns the run's history.

    The memory a run needs is checked once per fit: a new run's where it was made
    (:func:`new_run`, before anything is allocated; :func:`fit`), a run that has
    trained here, as its next batches may be larger."""
    if config.stopping == "validation" and held_out is None:
        raise ValueError("stopping='validation' (early stopping) needs validation data")
    xp = namespace(data.X)
    _move_run(run, xp, device(data.X))
    model, full_batch = run.model, isinstance(run.optimizer, LBFGS)
    if full_batch:  # every iteration reads every training row
        data = data.taken().placed()
    if not is_new(run):
        _check_memory(run, data, config)
    rows = step_rows(data.n_rows, config.batch_size, run.optimizer)
    for cb in callbacks:
        cb.on_train_begin(run)
    # The step's size chooses the threads (for another library's CPU arrays too).
    with blas_threads(rows, model.layer_sizes, small_on_one_thread=is_numpy(data.X)):
        engine = engine_for(model, run.optimizer, config, rows, run.rng)
        if full_batch:
            fit_lbfgs(run, engine, data, config)
        else:
            with batch_source(data, rows, engine.workspace) as source:
                minibatch_loop(run, source, engine, config, held_out, callbacks)
    for cb in callbacks:
        cb.on_train_end(run)
    return run.history


def _check_memory(run: Run, data: TrainingData, config: TrainingConfig) -> None:
    """The memory ``run`` needs to train on ``data`` in batches of ``config``'s size."""
    rows = step_rows(data.n_rows, config.batch_size, run.optimizer)
    check_run_memory(run, rows, dense_X=not sp.issparse(data.X))


def _move_run(run: Run, xp: ModuleType, dev: Any) -> None:
    """Move the run's network, optimizer state and best weights to namespace ``xp`` on
    ``dev``, unless they are there already."""
    if is_on(run.model.params["W1"], xp, dev):
        return
    run.model.to(xp, dev)
    run.optimizer.to(xp, dev)
    if run.best_params is not None:
        run.best_params = {k: to_device(to_numpy(v), xp, dev) for k, v in run.best_params.items()}
