"""What a batch is, and where it comes from: rows of X gathered into the fast engine's
buffers, rows taken as new arrays (the reference engine; a sparse X stays sparse), or
rows of an array on another library's device. A memory-mapped X's rows are read from
its file (:class:`~handgrad._mapped.RowReader`) by the first two.

A source is told each epoch's order (positions 0 … n−1, shuffled), and
``batch(start, stop)`` gives the batch of positions ``order[start:stop]``, a
:data:`Batch`. With ``rows``, positions are indices into ``rows``, the row numbers of
X that train. Chosen once, by :func:`batch_source`; a source is a context manager (the
file of a memory-mapped X is open while it is).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from handgrad._mapped import RowReader
from handgrad._xp import device, is_numpy, namespace, to_device
from handgrad.training.data import TrainingData
from handgrad.workspace import Workspace

#: One batch: ``(X, T, w, n_weight)``, X (n, D), its encoded targets T and weights w
#: (n,) or None, all where the engine computes; ``n_weight`` a host number, ``Σ w``
#: (n unweighted). A plain tuple: one is made every step.
Batch = tuple[Any, Any, Any, float]

#: ``(X, T, w, order, rows)``: a NumPy X in memory, its targets, weights or None, the
#: epoch's order of positions and the row numbers they index (None: positions are rows):
#: what an engine that gathers its own batches reads (:meth:`BatchSource.in_memory`).
InMemory = tuple[np.ndarray, np.ndarray, "np.ndarray | None", np.ndarray, "np.ndarray | None"]


class BatchSource(Protocol):
    """Batches of ``batch_size`` rows out of ``n_rows``, one epoch's order at a time."""

    n_rows: int
    batch_size: int

    def begin_epoch(self, order: np.ndarray) -> None: ...

    def batch(self, start: int, stop: int) -> Batch: ...

    def in_memory(self) -> InMemory | None: ...

    def __enter__(self) -> BatchSource: ...

    def __exit__(self, *exc: Any) -> None: ...


class _HostRows:
    """The row numbers of each batch, on the host; the context manager of them all."""

    def __init__(self, data: TrainingData, batch_size: int) -> None:
        self.n_rows, self.batch_size = data.n_rows, batch_size
        self.X, self.T, self.w, self.rows = data.X, data.T, data.w, data.rows
        self._row_numbers = np.empty(batch_size, np.intp)
        self._reader: RowReader | None = None

    def begin_epoch(self, order: np.ndarray) -> None:
        """This epoch's order of positions (the array stays the caller's)."""
        self._order = order

    def row_numbers(self, start: int, stop: int) -> np.ndarray:
        """The row numbers of X in the batch of positions ``order[start:stop]``."""
        idx = self._order[start:stop]
        if self.rows is None:
            return idx
        return np.take(self.rows, idx, out=self._row_numbers[: stop - start])

    def in_memory(self) -> InMemory | None:
        """The arrays themselves, for an engine that gathers its batches itself; None
        here: batches come from :meth:`batch` only."""
        return None

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._reader is not None:
            self._reader.close()


class GatheredBatches(_HostRows):
    """Rows of a NumPy X (or a sparse X's, as a sparse batch), T and w copied into the
    fast engine's reused buffers (:meth:`Workspace.gather`): no allocation per step."""

    def __init__(self, data: TrainingData, batch_size: int, workspace: Workspace) -> None:
        super().__init__(data, batch_size)
        self.workspace = workspace
        if not sp.issparse(self.X):  # a dense X is read through its RowReader
            self._reader = RowReader(self.X)
        self._source = self.X if self._reader is None else self._reader

    def in_memory(self) -> InMemory | None:
        """The arrays, where X is a NumPy array in memory (not a file's rows, not
        sparse)."""
        if type(self.X) is not np.ndarray:
            return None
        return self.X, self.T, self.w, self._order, self.rows

    def batch(self, start: int, stop: int) -> Batch:
        Xb, Tb, wb = self.workspace.gather(
            self._source, self.T, self.w, self.row_numbers(start, stop)
        )
        return Xb, Tb, wb, stop - start if wb is None else float(wb.sum())


class TakenBatches(_HostRows):
    """Rows of X (a dense X's through its :class:`RowReader`; a sparse X's as a sparse
    batch), T and w as new arrays: the reference engine's batches."""

    def __init__(self, data: TrainingData, batch_size: int) -> None:
        super().__init__(data, batch_size)
        if not sp.issparse(self.X):  # a dense X is read through its RowReader
            self._reader = RowReader(self.X)
        self._take_X = self.X.__getitem__ if self._reader is None else self._reader.take

    def batch(self, start: int, stop: int) -> Batch:
        idx = self.row_numbers(start, stop)
        wb = None if self.w is None else self.w[idx]
        n_weight = stop - start if wb is None else float(wb.sum())
        return self._take_X(idx), self.T[idx], wb, n_weight


class DeviceBatches(_HostRows):
    """Rows of an array of another library, on its device: the epoch's row numbers are
    moved there once (per epoch), and each batch is taken there (``xp.take``). T and w
    are moved once; each batch's weight sum is taken from w's host copy, not brought
    back."""

    def __init__(self, data: TrainingData, batch_size: int) -> None:
        super().__init__(data, batch_size)
        self.xp, self.device = namespace(self.X), device(self.X)
        self.w_host = data.w
        placed = data.placed()
        self.T, self.w = placed.T, placed.w

    def begin_epoch(self, order: np.ndarray) -> None:
        super().begin_epoch(order)
        epoch_rows = order if self.rows is None else self.rows[order]
        self._on_device = to_device(epoch_rows, self.xp, self.device)

    def batch(self, start: int, stop: int) -> Batch:
        xp, idx = self.xp, self._on_device[start:stop]
        Xb, Tb = xp.take(self.X, idx, axis=0), xp.take(self.T, idx, axis=0)
        if self.w is None:
            return Xb, Tb, None, stop - start
        n_weight = float(self.w_host[self.row_numbers(start, stop)].sum())
        return Xb, Tb, xp.take(self.w, idx, axis=0), n_weight


def batch_source(
    data: TrainingData, batch_size: int, workspace: Workspace | None = None
) -> BatchSource:
    """The source of ``data``'s batches of ``batch_size`` rows: on X's device for
    another library, else gathered into the fast engine's ``workspace`` where there is
    one, else taken."""
    if not is_numpy(data.X):
        return DeviceBatches(data, batch_size)
    if workspace is not None:
        return GatheredBatches(data, batch_size, workspace)
    return TakenBatches(data, batch_size)
