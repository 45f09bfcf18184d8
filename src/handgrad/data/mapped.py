"""A ``.npy`` file of samples X too large for memory, and its labels: split by row numbers.

X is opened memory-mapped (``np.load(path, mmap_mode="r")``) and never copied: the
train/test split (the same as :func:`~handgrad.data.load_dataset` makes of an ``.npz``
file holding the same arrays) is a pair of row-number arrays, and the training loop and
the scoring read those rows from the file (:mod:`handgrad._mapped`). The labels, one per
row, are small enough to load: a ``.npy`` file, or a ``.csv`` file of one column.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass

import numpy as np

from handgrad._split import stratified_split
from handgrad._validation import check_memory
from handgrad.data import check_task_labels
from handgrad.data._files import read_bounded, require_file

__all__ = [
    "MappedDataset",
    "is_npy",
    "load_mapped",
    "npy_path",
    "open_X",
    "read_labels",
    "read_npy_header",
]


@dataclass(frozen=True, eq=False)
class MappedDataset:
    """X (N, D) mapped from its ``.npy`` file, the labels y (N,) in memory, and the row
    numbers of the train and test parts (as :class:`~handgrad.data.Dataset`, without
    copying X)."""

    X: np.ndarray
    y: np.ndarray
    train_rows: np.ndarray
    test_rows: np.ndarray
    class_names: tuple[str, ...]
    name: str
    task: str = "classification"


def is_npy(data: str) -> bool:
    """Whether a ``--data`` value names a ``.npy`` file (``npy:PATH`` or ``PATH.npy``)."""
    kind, _, path = data.partition(":")
    return (bool(path) and kind.lower() == "npy") or data.lower().endswith(".npy")


def npy_path(data: str) -> str:
    """The path of a ``.npy`` ``--data`` value."""
    kind, _, path = data.partition(":")
    return path if path and kind.lower() == "npy" else data


def open_X(path: str | os.PathLike[str]) -> np.ndarray:
    """X (N, D) float32/float64 memory-mapped from a ``.npy`` file, or one ValueError
    saying why it cannot be trained on without copying it into memory."""
    name = os.path.basename(path)
    shape, fortran, dtype = read_npy_header(path, ".npy file")
    if len(shape) != 2:
        raise ValueError(
            f"{name} must hold a 2-D array (n_samples, n_features), but it has shape {shape}"
        )
    if shape[0] == 0:
        raise ValueError(f"{name} has no rows (shape {shape}): there is nothing to train on")
    if dtype not in (np.float32, np.float64) or fortran:
        what = "a Fortran-ordered array" if fortran else dtype
        raise ValueError(
            f"{name} holds {what}; a .npy file trained from disk must hold float32 or "
            "float64 in C order (converting it would copy it into memory): save it as "
            "np.save(path, np.ascontiguousarray(X, dtype=np.float32))"
        )
    X = np.load(path, mmap_mode="r", allow_pickle=False)
    if not isinstance(X, np.memmap):
        raise ValueError(f"{name} cannot be memory-mapped (an empty array)")
    return X


def read_npy_header(
    path: str | os.PathLike[str], what: str
) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` of the regular ``.npy`` file ``path``, read from
    its header alone; one ValueError when it is not a ``.npy`` file, holds Python
    objects, or is shorter than its header declares (nothing else is read)."""
    require_file(path, what)
    name = os.path.basename(path)
    with open(path, "rb") as handle:
        try:
            version = np.lib.format.read_magic(handle)
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read(handle)
        except ValueError:
            raise ValueError(
                f"{name} is not a .npy file (its header is not NumPy's): write it with np.save"
            ) from None
        if dtype.hasobject:
            raise ValueError(
                f"{name} holds Python objects ({dtype}), which are never unpickled: save "
                "numbers or strings"
            )
        declared = math.prod(shape) * dtype.itemsize
        held = os.fstat(handle.fileno()).st_size - handle.tell()
    if what == "labels file":  # loaded into memory, unlike a mapped X
        check_memory(declared, name)
    if declared > held:
        raise ValueError(
            f"{name} is truncated: its header declares {declared} bytes of data "
            f"(shape {shape}, {dtype}), the file holds {held}"
        )
    return shape, fortran, dtype


def read_labels(path: str | os.PathLike[str]) -> np.ndarray:
    """Labels (N,) from a ``.npy`` file or a one-column ``.csv`` file (a first line
    that is not a number, above numbers, is its header)."""
    name = os.path.basename(path)
    if str(path).lower().endswith(".csv"):
        text = read_bounded(path, "labels file").decode("utf-8")
        cells = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
        if any(len(row) != 1 for row in cells):
            raise ValueError(f"{name} must hold one column of labels, one per row of X")
        values = [row[0].strip() for row in cells]
        if len(values) > 1 and _number(values[0]) is None and _number(values[1]) is not None:
            values = values[1:]  # a header
        y = np.asarray(values)
        numbers = [_number(v) for v in values]
        if values and all(v is not None for v in numbers):
            y = np.asarray(numbers)
            if np.all(y == np.round(y)):
                y = y.astype(np.int64)
        return y
    read_npy_header(path, "labels file")
    y = np.load(path, allow_pickle=False)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(f"{name} must hold one label per row of X (1-D), got shape {y.shape}")
    return y


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def load_mapped(
    data: str,
    labels: str | os.PathLike[str] | None,
    *,
    split_seed: int = 0,
    test_size: float = 0.25,
    task: str | None = None,
) -> MappedDataset:
    """X mapped from the ``.npy`` file ``data``, its ``labels``, and a train/test split
    of the row numbers (stratified for classification, seeded by ``split_seed``): the
    split :func:`~handgrad.data.load_dataset` makes of an ``.npz`` of the same arrays."""
    path = npy_path(data)
    if labels is None:
        raise ValueError(
            f"--data {data} needs its labels: give --labels LABELS.npy (or a one-column .csv)"
        )
    X = open_X(path)
    y = read_labels(labels)
    if len(y) != X.shape[0]:
        raise ValueError(
            f"{os.path.basename(labels)} holds {len(y)} labels, but "
            f"{os.path.basename(path)} has {X.shape[0]} rows"
        )
    task = task or "classification"
    y = check_task_labels(y, task, os.path.basename(labels))
    regression = task == "regression"
    train_rows, test_rows = stratified_split(
        np.arange(len(y)), test_size=test_size, seed=split_seed, stratify=None if regression else y
    )
    class_names = () if regression else tuple(str(c) for c in np.unique(y))
    return MappedDataset(X, y, train_rows, test_rows, class_names, os.path.basename(path), task)
