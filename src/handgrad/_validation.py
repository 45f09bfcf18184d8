"""Input checks shared by the network, the training loop and the command line.

Each check raises a ``ValueError`` or ``TypeError`` whose message names the argument,
what was expected and what came, so that no user ever sees a traceback from inside
NumPy.
"""

from __future__ import annotations

import numbers
import os
import stat
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from handgrad._mapped import is_mapped, row_chunks
from handgrad._xp import (
    finite_on_device,
    is_dense_numpy,
    is_numpy,
    namespace,
    to_numpy,
    xp_dtype,
)
from handgrad.errors import DataFormatError


def check_X(
    X: Any,
    *,
    n_features: int | None = None,
    dtype: Any = None,
    name: str = "X",
    finite: bool = True,
    row_major: bool = False,
) -> NDArray[np.floating] | sp.csr_matrix | sp.csr_array:
    """Return ``X`` as a finite 2-D float array of shape (N, D).

    dtype: the float dtype wanted (None keeps float32/float64 and turns anything else
    into float64). ``finite=False`` leaves the finiteness test to the caller (who must
    then run it, as :func:`handgrad.workspace.scores` does chunk by chunk).
    ``row_major=True`` gives a column-major NumPy X as one C-ordered copy where it fits
    (:func:`row_major`: the estimators' batches are gathered from contiguous rows).
    Raises ValueError/TypeError naming the problem.

    A SciPy sparse X stays sparse, as CSR (rows are what batches gather), with the
    same checks; its finiteness is that of its stored values. An array of another
    array-API library (PyTorch, CuPy …) stays in its library and on its device, with
    the same checks and messages (finiteness tested there, one value brought back).

    X's library is asked once, first (:mod:`handgrad._xp`); everything after is this
    module's.
    """
    host, xp = is_numpy(X), namespace(X)  # NumPy's for lists, DataFrames, sparse
    dtype = None if dtype is None else xp_dtype(xp, dtype)
    if sp.issparse(X):
        return _check_sparse_X(X, n_features, dtype, name, finite)
    if not host:
        return _check_array_api_X(X, xp, n_features, dtype, name, finite)
    arr = np.asarray(X)
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must hold numbers, but its dtype is {arr.dtype}"
            + (" (strings or objects)" if arr.dtype.kind in "OUS" else "")
        )
    _check_shape(arr.shape, n_features, name)
    if dtype is None:
        dtype = arr.dtype if arr.dtype in (np.float32, np.float64) else np.float64
    arr = np.asarray(arr, dtype=dtype)  # no copy when the dtype already matches
    if finite:
        _check_finite_rows(arr, name)
    return _row_major(arr) if row_major else arr


def _check_shape(shape: tuple[int, ...], n_features: int | None, name: str) -> None:
    """ValueError unless ``shape`` is (N, D) with N, D > 0 (and D = n_features)."""
    ndim = len(shape)
    if ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (n_samples, n_features), but it has {ndim} "
            f"dimension(s), shape {shape}"
            + (
                "; use X.reshape(-1, 1) for one feature or X.reshape(1, -1) for one sample"
                if ndim == 1
                else ""
            )
        )
    if shape[0] == 0:
        raise ValueError(f"{name} is empty: it has 0 samples (shape {shape})")
    if shape[1] == 0:
        raise ValueError(f"{name} has 0 features (shape {shape})")
    if n_features is not None and shape[1] != n_features:
        raise ValueError(f"{name} has {shape[1]} features, but the model expects {n_features}")


def _check_array_api_X(
    X: Any, xp: Any, n_features: int | None, dtype: Any, name: str, finite: bool
) -> Any:
    """check_X for an array of another array-API library (namespace ``xp``; ``dtype``
    one of xp's, or None): it stays there."""
    if not xp.isdtype(X.dtype, ("real floating", "integral", "bool")):
        raise TypeError(f"{name} must hold real numbers, but its dtype is {X.dtype}")
    _check_shape(tuple(X.shape), n_features, name)
    if dtype is None:
        dtype = X.dtype if X.dtype in (xp.float32, xp.float64) else xp.float64
    X = xp.astype(X, dtype, copy=False)
    if finite:
        _check_finite_on_device(X, xp, name)
    return X


def _check_finite_on_device(X: Any, xp: Any, name: str) -> None:
    """ValueError naming the first NaN or infinity of a 2-D X of namespace ``xp``, with
    one value brought back to the host when there is none: a NaN or infinity makes the
    sum non-finite, and only then (or when the sum overflows) are the entries looked at,
    on the device."""
    if bool(xp.isfinite(xp.sum(X))):
        return
    rows, cols = xp.nonzero(~xp.isfinite(X))
    if rows.shape[0] == 0:  # the sum overflowed: every entry is finite
        return
    row, col = int(rows[0]), int(cols[0])  # nonzero's order is row-major
    _raise_non_finite(name, bool(xp.isnan(X[row, col])), row, col)


def _raise_non_finite(name: str, nan: bool, row: int, col: int) -> None:
    """The one message for a NaN or infinity at (row, col) of X."""
    raise ValueError(
        f"{name} contains {'NaN' if nan else 'infinity'} (first at row {row}, column "
        f"{col}); remove or impute non-finite values"
    )


def row_major(X: Any) -> Any:
    """X (N, D), as one C-ordered copy when it is a column-major NumPy array in memory
    (a pandas float frame's ``to_numpy()``, a Fortran-ordered array) and the copy fits
    in the memory available: a batch of rows is then gathered from contiguous memory,
    once per fit or predict instead of once per batch. A memory-mapped X keeps its path
    (its rows are read from the file), and anything else (C-ordered, sparse, another
    library's array, or a copy too large) is returned as it is."""
    return _row_major(X) if is_dense_numpy(X) else X


def _row_major(arr: NDArray) -> NDArray:
    """:func:`row_major` for a NumPy array."""
    if (
        arr.ndim == 2
        and not arr.flags.c_contiguous
        and not is_mapped(arr)
        and arr.nbytes <= available_memory()
    ):
        return np.ascontiguousarray(arr)
    return arr


#: Bytes of X looked at per chunk by the finiteness check.
FINITE_CHUNK_BYTES = 2 * 2**20


def _check_finite_rows(arr: NDArray[np.floating], name: str) -> None:
    """ValueError naming the first NaN or infinity of a 2-D ``arr``, chunk by chunk of
    rows: the temporaries stay the size of a chunk, and a memory-mapped X is read from
    its file a chunk at a time (:class:`handgrad._mapped.RowReader`), so that checking
    a file larger than memory does not bring it into memory."""
    rows = min(arr.shape[0], max(1, FINITE_CHUNK_BYTES // (arr.shape[1] * arr.itemsize)))
    for start, chunk in row_chunks(arr, rows):
        if not all_finite(chunk):
            bad = np.argwhere(~np.isfinite(chunk))[0]
            _raise_non_finite(name, bool(np.isnan(chunk[tuple(bad)])), start + bad[0], bad[1])


def _check_sparse_X(X: Any, n_features: int | None, dtype: Any, name: str, finite: bool):
    """check_X for a SciPy sparse matrix or array: CSR of a float dtype."""
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers, but its dtype is {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), but has shape {X.shape}")
    N, D = X.shape
    if N == 0 or D == 0:
        raise ValueError(f"{name} is empty: shape {X.shape}")
    if n_features is not None and D != n_features:
        raise ValueError(f"{name} has {D} features, but the model expects {n_features}")
    if dtype is None:
        dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.float64
    X = X.tocsr().astype(dtype, copy=False)
    if finite and not all_finite(X.data):
        k = int(np.argmax(~np.isfinite(X.data)))  # the first stored non-finite value
        row = int(np.searchsorted(X.indptr, k, side="right")) - 1
        _raise_non_finite(name, bool(np.isnan(X.data[k])), row, X.indices[k])
    return X


_SMALL = 4096  # entries below which all_finite tests each one directly


def all_finite(arr: NDArray[np.floating]) -> bool:
    """True when every entry is finite: one pass, no (N, D) boolean temporary.

    A NaN or ±inf anywhere makes the sum non-finite; only when the sum is non-finite
    (which a huge finite array can also cause, by overflow) is every entry looked at.
    A 2-D array is summed as ``(X 1) ᵀ 1``: the product runs on BLAS's threads, about
    twice as fast as ``np.sum`` (the check is a pass over all of X before training).
    A small array (a few rows to predict) is tested entry by entry: the sum's set-up
    would cost more than the pass.
    """
    if arr.size <= _SMALL:  # a few rows: one isfinite pass costs less than the set-up
        return bool(np.isfinite(arr).all())
    with np.errstate(over="ignore", invalid="ignore"):
        if arr.ndim == 2 and arr.dtype.kind == "f" and arr.size:
            total = np.matmul(arr, np.ones(arr.shape[1], arr.dtype)).sum()
        else:
            total = np.sum(arr)
        if np.isfinite(total):
            return True
    return bool(np.isfinite(arr).all())


def check_class_indices(y: Any, n_samples: int, n_classes: int, name: str = "y") -> NDArray:
    """Return ``y`` as (N,) integer class indices in ``[0, n_classes)``."""
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr.ravel()
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D class indices, but it has shape {arr.shape}")
    _check_length(arr, n_samples, name)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must hold integer class indices, but has non-integers")
    elif arr.dtype.kind not in "biu":
        raise TypeError(
            f"{name} must hold integer class indices 0..{n_classes - 1}, but its dtype is "
            f"{arr.dtype}; encode labels first (MLPClassifier does this for you)"
        )
    arr = arr.astype(np.intp, copy=False)  # read only: no second (N,) copy
    if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
        bad = arr[(arr < 0) | (arr >= n_classes)][0]
        raise ValueError(
            f"{name} has label {bad} out of range: the model has {n_classes} classes "
            f"(labels 0..{n_classes - 1})"
        )
    return arr


def check_target_matrix(Y: Any, n_samples: int, n_outputs: int, what: str, name: str = "y"):
    """``Y`` as an (N, C) array (a 1-D Y is one column when C = 1), or a ValueError
    naming its shape or length; ``what`` completes "must be an (n_samples, C) …"."""
    arr = np.asarray(Y)
    if arr.ndim == 1 and n_outputs == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != n_outputs:
        raise ValueError(
            f"{name} must be an (n_samples, {n_outputs}) {what}, but it has shape {arr.shape}"
        )
    _check_length(arr, n_samples, name)
    return arr


def check_indicators(Y: Any, n_samples: int, n_outputs: int, dtype: Any, name: str = "y"):
    """Return ``Y`` as an (N, C) float 0/1 indicator matrix for the sigmoid head."""
    arr = check_target_matrix(
        Y, n_samples, n_outputs, "0/1 indicator matrix for the sigmoid head", name
    )
    if arr.dtype.kind not in "biuf" or not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0 and 1 for the sigmoid head")
    return arr.astype(dtype)


def check_sample_weight(sample_weight: Any, n_samples: int, dtype: Any) -> NDArray | None:
    """Return (N,) finite non-negative weights with a positive sum, or None."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight)
    if w.ndim == 0:
        w = np.full(n_samples, w)
    if w.ndim != 1:
        raise ValueError(f"sample_weight must be 1-D, but it has shape {w.shape}")
    _check_length(w, n_samples, "sample_weight")
    if w.dtype.kind not in "biuf":
        raise TypeError(f"sample_weight must hold numbers, but its dtype is {w.dtype}")
    w = w.astype(dtype)
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("sample_weight must be finite and non-negative")
    if w.sum() <= 0:
        raise ValueError("sample_weight must have a positive sum")
    return w


def check_number(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> Any:
    """Return ``value`` if it is a finite (integer) number within the bounds, else raise.

    ``low_open=True`` makes the lower bound strict (``value > low``), ``high_open=True``
    the upper one (``value < high``).
    """
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        what = "an integer" if integer else "a number"
        raise TypeError(f"{name} must be {what}, but got {value!r}")
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, but got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        sign = ">" if low_open else ">="
        raise ValueError(f"{name} must be {sign} {low}, but got {value!r}")
    if high is not None and (value >= high if high_open else value > high):
        sign = "<" if high_open else "<="
        raise ValueError(f"{name} must be {sign} {high}, but got {value!r}")
    return value


def check_choice(value: Any, name: str, choices: Any) -> Any:
    """Return ``value`` if it is one of ``choices``, else a ValueError listing them."""
    if isinstance(value, str) and value in choices:
        return value
    raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, but got {value!r}")


def _check_length(arr: NDArray, n_samples: int, name: str) -> None:
    if arr.shape[0] != n_samples:
        raise ValueError(
            f"X and {name} have different lengths: X has {n_samples} samples, "
            f"{name} has {arr.shape[0]}"
        )


def check_finite_weights(weights: Sequence[Any], biases: Sequence[Any]) -> None:
    """Refuse a network whose ``coefs_`` (``weights``) or ``intercepts_`` (``biases``)
    hold NaN or infinity: written in place (``est.coefs_[0][0, 0] = np.nan``) they pass
    no assignment check, and would predict class 0 with NaN probabilities, or be saved
    to a file that no loader accepts. One sum per array in the usual, finite case."""
    if finite_on_device([*weights, *biases]):
        return
    for name, arrays in (("coefs_", weights), ("intercepts_", biases)):
        for i, array in enumerate(arrays):
            bad = int(array.size) - int(to_numpy(namespace(array).isfinite(array)).sum())
            if bad:
                raise ValueError(
                    f"{name}[{i}] holds non-finite values ({bad} of {array.size}, NaN or "
                    f"infinity): assign finite weights (est.{name}[{i}] = W) or fit again"
                )


# ------------------------------------------------------------------------------ files
def require_file(path: str | os.PathLike, what: str) -> None:
    """Raise unless ``path`` is a regular file (a link to one is fine), naming ``what``
    was expected ("CSV file", "model file", ...).

    Asked with ``stat`` before anything opens the path: opening a FIFO blocks until a
    writer comes, and a device (``/dev/zero``) never ends, so neither is ever read.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"no such {what}: {path}") from None
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"{path} is a folder, not {_article(what)} {what}")
    if not stat.S_ISREG(mode):
        kind = (
            "a FIFO"
            if stat.S_ISFIFO(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "a character device"
            if stat.S_ISCHR(mode)
            else "a block device"
            if stat.S_ISBLK(mode)
            else "not a file"
        )
        raise DataFormatError(
            f"{path} is {kind}, not a regular file: give the path of {_article(what)} {what}"
        )


def _article(what: str) -> str:
    return "an" if what.lstrip(".")[:1].lower() in "aeiou" else "a"


# ----------------------------------------------------------------------------- memory
def total_memory() -> int | None:
    """This machine's physical memory in bytes, or None where the system does not say."""
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not POSIX, or the name is unknown
        return None
    return pages * page_size if pages > 0 and page_size > 0 else None


def available_memory() -> float:
    """Memory available to a new allocation (Linux's ``MemAvailable``), or infinity
    where the system does not say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return float("inf")


def format_bytes(nbytes: float) -> str:
    """``745 GiB``, ``1.5 MiB``, ``1010 GiB``, ``12 bytes``: three significant digits,
    or the whole number of units from 1000 up."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= size:
            value = nbytes / size
            return f"{value:.3g} {unit}" if value < 1000 else f"{value:.0f} {unit}"
    return f"{int(nbytes)} bytes"


def check_memory(nbytes: int, what: str, purpose: str = "", advice: str = "") -> None:
    """Refuse, before allocating, a request for more than this machine's memory.

    The ValueError reads "{what} needs 745 GiB {purpose}, more than this machine's
    24 GiB of memory; {advice}". Where the machine's memory is unknown nothing is
    checked.
    """
    total = total_memory()
    if total is not None and nbytes > total:
        raise ValueError(
            f"{what} needs {format_bytes(nbytes)}{' ' + purpose if purpose else ''}, more "
            f"than this machine's {format_bytes(total)} of memory"
            + (f"; {advice}" if advice else "")
        )
