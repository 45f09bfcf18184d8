"""Held-out data that scores itself each epoch: arrays (in memory, or on another
library's device), or rows of X read a chunk at a time (a memory-mapped X is never
read whole). :func:`held_out` makes one from what :func:`~handgrad.training.fit` takes."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from handgrad._mapped import row_chunks
from handgrad._validation import check_sample_weight, check_X
from handgrad._xp import device, is_dense_numpy, namespace, to_device, to_numpy
from handgrad.network import MLP
from handgrad.training.data import TrainingData, check_rows, take
from handgrad.training.scores import validation_score
from handgrad.workspace import CHUNK_ROWS


class Scorer(Protocol):
    """How an engine computes scores S (n, C) of rows X (n, D) (the engine's forward)."""

    def scores(self, X: Any) -> Any: ...


class HeldOut(Protocol):
    """Held-out data: ``score(model, engine)`` is the model's validation score on it."""

    def score(self, model: MLP, engine: Scorer) -> float: ...


class HeldOutArrays:
    """X_val (n, D) with its encoded targets T_val and float64 weights (or None), on
    X_val's device: scored in one pass of the engine's forward."""

    def __init__(self, X: Any, T: Any, w: Any = None) -> None:
        xp, dev = namespace(X), device(X)
        self.X, self.T, self.w = X, to_device(T, xp, dev), to_device(w, xp, dev)

    def score(self, model: MLP, engine: Scorer) -> float:
        return validation_score(model, engine.scores(self.X), self.T, self.w)


class HeldOutRows:
    """Rows ``rows`` of a dense NumPy X, gathered CHUNK_ROWS at a time into one reused
    buffer (a memory-mapped X's from its file): the same chunks, so the same numbers,
    as scoring ``X[rows]``."""

    def __init__(self, X: np.ndarray, rows: np.ndarray, T: np.ndarray, w: Any = None) -> None:
        self.X, self.rows, self.T, self.w = X, rows, T, w

    def score(self, model: MLP, engine: Scorer) -> float:
        S = np.empty((len(self.rows), model.layer_sizes[-1]), model.dtype)
        for start, X_chunk in row_chunks(self.X, CHUNK_ROWS, self.rows):
            S[start : start + X_chunk.shape[0]] = engine.scores(X_chunk)
        return validation_score(model, S, self.T, self.w)


def held_out(
    model: MLP,
    data: TrainingData,
    validation: tuple[Any, ...] | None = None,
    validation_rows: Any = None,
    *,
    check_input: bool = True,
) -> HeldOut | None:
    """The held-out data of :func:`~handgrad.training.fit`: ``validation``,
    ``(X_val, y_val)`` or ``(X_val, y_val, sample_weight_val)``, checked like X (skipped
    without ``check_input`` where X_val is of X's library); or ``validation_rows``, rows
    of the training data's X (with their targets and weights); or None."""
    if validation_rows is not None:
        if validation is not None:
            raise ValueError("give validation or validation_rows, not both")
        return _held_out_rows(data, check_rows(validation_rows, data.X.shape[0], "validation_rows"))
    if validation is None:
        return None
    xp = namespace(data.X)
    X_val = validation[0]
    if check_input or namespace(X_val) is not xp:
        X_val = check_X(X_val, n_features=model.layer_sizes[0], dtype=model.dtype, name="X_val")
    if namespace(X_val) is not xp:
        raise TypeError(
            "X_val must be an array of the same library as X "
            f"({xp.__name__}), got {type(X_val).__module__}.{type(X_val).__name__}"
        )
    w_val = to_numpy(validation[2]) if len(validation) > 2 else None
    return HeldOutArrays(
        X_val,
        model.encode_targets(to_numpy(validation[1]), X_val.shape[0]),
        check_sample_weight(w_val, X_val.shape[0], np.float64),
    )


def _held_out_rows(data: TrainingData, rows: np.ndarray) -> HeldOut:
    """Rows of the training data's X held out: a dense X's are read chunk by chunk
    when scored; a sparse X's (or another library's) are small enough to take."""
    w = None if data.w is None else data.w[rows].astype(np.float64)
    if is_dense_numpy(data.X):
        return HeldOutRows(data.X, rows, data.T[rows], w)
    return HeldOutArrays(take(data.X, rows), data.T[rows], w)
