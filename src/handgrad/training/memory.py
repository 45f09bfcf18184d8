"""Rows per step and the memory training needs, estimated before anything is allocated."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from handgrad._validation import check_memory, format_bytes
from handgrad.network import describe_sizes, params_nbytes
from handgrad.optim import LBFGS, SGD, Adam, Optimizer
from handgrad.training.run import Run
from handgrad.workspace import Workspace


def step_rows(n_rows: int, batch_size: int, optimizer: Optimizer) -> int:
    """Rows a step computes on: all ``n_rows`` for L-BFGS (full batch), else a batch
    of ``batch_size`` rows, or fewer when there are fewer rows. The one place this is
    decided: the memory check, the thread choice, the engine's buffers and the batches
    all read it."""
    return n_rows if isinstance(optimizer, LBFGS) else min(batch_size, n_rows)


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


def check_run_memory(run: Run, rows: int, *, dense_X: bool) -> None:
    """:func:`check_training_memory` for ``run``'s network and optimizer on batches of
    ``rows`` rows."""
    model = run.model
    check_training_memory(
        model.layer_sizes,
        rows,
        dtype=model.dtype,
        optimizer=run.optimizer,
        activation=model.activation,
        dense_X=dense_X,
    )


def is_new(run: Run) -> bool:
    """Whether ``run`` has not trained yet: its memory was checked where it was made
    (:func:`~handgrad.training.new_run`, :func:`~handgrad.training.fit`); a run that
    has trained is checked again by :func:`~handgrad.training.train`, as its next
    batches may be larger."""
    return run.history.steps == 0 and run.history.epochs == 0
