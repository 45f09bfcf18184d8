"""What a run trains on: X, its encoded targets T and weights w, and the rows of X
that train (:class:`TrainingData`), checked once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from handgrad._validation import check_sample_weight, check_X
from handgrad._xp import device, is_numpy, namespace, to_device, to_numpy
from handgrad.network import MLP


@dataclass(frozen=True)
class TrainingData:
    """X (N, D), checked; T, the targets encoded for the head, and w (N,) or None, on
    the host; ``rows``, the row numbers of X that train (None: all of them).

    X may be a NumPy array (memory-mapped or not), a SciPy sparse (CSR) matrix, or an
    array of another array-API library on its device.
    """

    X: Any
    T: np.ndarray
    w: np.ndarray | None = None
    rows: np.ndarray | None = None

    @classmethod
    def of(
        cls,
        model: MLP,
        X: Any,
        y: Any,
        sample_weight: Any = None,
        rows: Any = None,
        *,
        check_input: bool = True,
    ) -> TrainingData:
        """X checked for ``model`` (skipped without ``check_input``, for an X its caller
        has just checked), y encoded by the model's head, the weights and rows checked."""
        if check_input:
            X = check_X(X, n_features=model.layer_sizes[0], dtype=model.dtype)
        T = model.encode_targets(to_numpy(y), X.shape[0])
        w = check_sample_weight(to_numpy(sample_weight), X.shape[0], model.dtype)
        return cls(X, T, w, None if rows is None else check_rows(rows, X.shape[0], "rows"))

    @property
    def n_rows(self) -> int:
        """The number of rows that train."""
        return self.X.shape[0] if self.rows is None else len(self.rows)

    def taken(self) -> TrainingData:
        """The training rows gathered into arrays of their own (for full-batch
        training, which reads every row at every step)."""
        if self.rows is None:
            return self
        w = None if self.w is None else take(self.w, self.rows)
        return TrainingData(take(self.X, self.rows), take(self.T, self.rows), w)

    def placed(self) -> TrainingData:
        """T and w moved once to X's library and device (as they are, for NumPy)."""
        xp, dev = namespace(self.X), device(self.X)
        return TrainingData(
            self.X, to_device(self.T, xp, dev), to_device(self.w, xp, dev), self.rows
        )


def take(A: Any, rows: np.ndarray) -> Any:
    """The rows of A (NumPy, sparse, or another library's array on its device)."""
    if is_numpy(A):
        return A[rows]
    xp = namespace(A)
    return xp.take(A, to_device(rows, xp, device(A)), axis=0)


def check_rows(rows: Any, n: int, name: str) -> np.ndarray:
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
