"""Rows of an array backed by a memory-mapped file, read without keeping the file in memory.

Pages of a mapped file (``np.memmap``, ``np.load(path, mmap_mode="r")``) that a process
has read count in its resident memory until they are unmapped, whole page-cache folios
at a time, so a pass through the mapping over a file larger than memory would make the
process as large as the file. :class:`RowReader` reads the rows from the file instead
(``os.preadv``): the kernel copies them from the page cache into the caller's buffer, and
the process's memory stays bounded by what it holds, not by N.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from itertools import repeat
from typing import Any

import numpy as np

__all__ = ["RowReader", "is_mapped", "row_chunks"]


class RowReader:
    """Rows of a 2-D X copied into a caller's buffer, without mapping X's file.

    For an X backed by a shared memory-mapped file (``np.load(path, mmap_mode="r")``),
    rows are read from the file with ``os.preadv``: the kernel copies them from the page
    cache straight into the buffer and nothing of the file stays in this process (reading
    through the mapping instead leaves every page touched resident, whole page-cache
    folios at a time, until it is unmapped). For any other X, ``np.take``. Use as a
    context manager (the file is open while it is).
    """

    def __init__(self, X: np.ndarray) -> None:
        self.X, self._fd, self._offset = X, None, 0
        base = _memmap_base(X)
        if base is not None and X.ndim == 2 and X.strides[1] == X.itemsize:
            # The file offset of X's first row: the memmap's offset in the file plus
            # where X starts within the memmap.
            start = X.__array_interface__["data"][0] - base.__array_interface__["data"][0]
            self._offset = base.offset + start
            self._fd = os.open(base.filename, os.O_RDONLY)
            self._views: dict[int, list[tuple[memoryview]]] = {}

    @property
    def reads_file(self) -> bool:
        """True where rows come from X's file rather than from X in memory."""
        return self._fd is not None

    def __enter__(self) -> RowReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def read(self, start: int, out: np.ndarray) -> np.ndarray:
        """``out[:] = X[start : start + len(out)]``: consecutive rows, in one read."""
        if self._fd is None or self.X.strides[0] != self.X.shape[1] * self.X.itemsize:
            return self.take(np.arange(start, start + len(out)), out)  # rows apart
        self._read(memoryview(out).cast("B"), start)
        return out

    def take(self, idx: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``X[idx]`` for (n,) row numbers ``idx``, into ``out`` (C-contiguous (n, D)) or
        a new array."""
        if out is None:
            out = np.empty((len(idx), self.X.shape[1]), self.X.dtype)
        if self._fd is None:
            return np.take(self.X, idx, axis=0, out=out, mode="clip")  # "clip": unbuffered
        # The one Python loop per row: offsets computed in NumPy, buffers made once.
        fd, preadv, row_bytes = self._fd, os.preadv, self.X.shape[1] * self.X.itemsize
        offsets = (idx * self.X.strides[0] + self._offset).tolist()
        got = sum(map(preadv, repeat(fd), self._row_views(out), offsets))
        if got != len(idx) * row_bytes:
            self._read_failed(idx)
        return out

    def _read(self, view: memoryview, row: int) -> None:
        """Bytes from X's row ``row`` on into ``view``; a file cut short is a ValueError."""
        got = os.preadv(self._fd, (view,), self._offset + row * self.X.strides[0])
        if got != view.nbytes:
            self._read_failed(np.array([row]))

    def _read_failed(self, idx: np.ndarray) -> None:
        end = os.fstat(self._fd).st_size
        past = idx[idx * self.X.strides[0] + self._offset + self.X.strides[0] > end]
        row = int(past[0]) if len(past) else int(idx[0])
        raise ValueError(
            f"X's file ended early: row {row} is past its end (was the file truncated?)"
        )

    def _row_views(self, out: np.ndarray) -> list[tuple[memoryview]]:
        """One ``(memoryview,)`` per row of ``out`` (what ``preadv`` takes), kept while
        ``out`` is the same buffer."""
        key = out.__array_interface__["data"][0]
        views = self._views.get(key)
        if views is None or len(views) < len(out):
            self._views = {key: [(memoryview(row).cast("B"),) for row in out]}
            views = self._views[key]
        return views


def is_mapped(X: Any) -> bool:
    """Whether X is (a view of) a shared memory-mapped file, whose rows :func:`row_chunks`
    and :class:`RowReader` read from the file."""
    return _memmap_base(X) is not None


def row_chunks(X: Any, chunk_rows: int, rows: Any = None) -> Iterator[tuple[int, Any]]:
    """``(start, X[start : start + chunk_rows])`` for each chunk of the rows of a 2-D X
    (an array or a SciPy sparse matrix), in order; with ``rows`` (row numbers), the
    chunks of ``X[rows]`` instead, ``start`` counting positions in ``rows``.

    Where X is backed by a memory-mapped file, each chunk is read from the file into one
    reused buffer (valid until the next chunk is asked for), so that a pass over X does
    not bring the file into memory; otherwise the chunks are slices of X (or, with
    ``rows``, new arrays).
    """
    n_rows = X.shape[0] if rows is None else len(rows)
    if _memmap_base(X) is None:  # the common case, kept light for one-row predictions
        for start in range(0, n_rows, chunk_rows):
            stop = start + chunk_rows
            yield start, X[start:stop] if rows is None else X[rows[start:stop]]
        return
    with RowReader(X) as reader:
        buffer = np.empty((min(chunk_rows, n_rows), X.shape[1]), X.dtype)
        for start in range(0, n_rows, chunk_rows):
            chunk = buffer[: min(chunk_rows, n_rows - start)]
            if rows is None:
                yield start, reader.read(start, chunk)
            else:
                yield start, reader.take(rows[start : start + chunk_rows], chunk)


def _memmap_base(X: Any) -> np.memmap | None:
    """The shared, file-named memmap under X (X itself or a view of it), or None."""
    base = X
    while base is not None:  # an array's base chain ends in the mmap, or None
        if isinstance(base, np.memmap):
            ok = base.mode != "c" and base.filename is not None and base.dtype == X.dtype
            return base if ok else None
        base = getattr(base, "base", None)
    return None
