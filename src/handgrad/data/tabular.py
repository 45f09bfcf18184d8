"""Tables from users: CSV files and NumPy ``.npz`` archives.

CSV: every column but the label is a feature and must hold finite numbers; the label
column is kept as integers when every cell is an integer, else as strings.
NPZ: arrays ``X`` (N, ...) numeric and ``y`` (N,), read without pickle and with every
array's size checked against the archive before it is allocated.
"""

from __future__ import annotations

import csv
import math
import os
import zipfile
import zlib

import numpy as np

from handgrad.errors import DataFormatError

__all__ = ["load_array", "load_csv", "load_feature_csv", "load_npz"]

_MAX_NPZ_MEMBER = 2**32


def load_csv(
    path: str | os.PathLike,
    label: str | int | None = None,
    header: bool | str = "infer",
    delimiter: str = ",",
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read a CSV file of numeric features and one label column.

    Parameters
    ----------
    path : path of the CSV file (UTF-8, an optional byte-order mark is skipped)
    label : column name, or column index (negative counts from the end);
        None means the last column.
    header : True, False or "infer". "infer" takes the first row as a header when
        none of its cells is a number (always, when ``label`` is a name).
    delimiter : field separator.

    Returns
    -------
    X : ndarray of shape (N, D), float64
    y : ndarray of shape (N,), int64 if every label is an integer, else str
    feature_names : list of D names (``x0``, ``x1`` ... without a header)
    """
    X, labels, names = _read_table(path, label, header, delimiter, with_label=True)
    return X, _label_array(labels), names


def load_feature_csv(
    path: str | os.PathLike,
    drop: str | int | None = None,
    header: bool | str = "infer",
    delimiter: str = ",",
) -> tuple[np.ndarray, list[str]]:
    """Read a CSV file of numeric features only (rows to predict, say).

    ``drop`` names a column to ignore (a label column left in the file), by name or
    index; the other arguments are as in :func:`load_csv`. Returns X (N, D) float64 and
    the D feature names.
    """
    X, _, names = _read_table(path, drop, header, delimiter, with_label=drop is not None)
    return X, names


def _read_table(path, label, header, delimiter, *, with_label: bool):
    """Features (N, D) float64, the label cells (or None), and the feature names."""
    rows = _read_rows(path, delimiter)
    if not rows:
        raise DataFormatError(f"{path}: the CSV file is empty")
    if header == "infer":
        header = isinstance(label, str) or not any(_is_number(c) for c in rows[0][1])
    elif not isinstance(header, bool):
        raise ValueError(f"header must be True, False or 'infer', got {header!r}")
    width = len(rows[0][1])
    names = [c.strip() for c in rows[0][1]] if header else [f"x{j}" for j in range(width)]
    body = rows[1:] if header else rows
    if not body:
        raise DataFormatError(f"{path}: the CSV file has a header but no data rows")
    column = _label_index(path, label, names, bool(header)) if with_label else None
    if with_label and width < 2:
        raise DataFormatError(f"{path}: {width} column; need features and a label column")
    features = [j for j in range(width) if j != column]
    X = np.empty((len(body), len(features)), dtype=np.float64)
    labels = []
    for i, (line, cells) in enumerate(body):
        if len(cells) != width:
            raise DataFormatError(f"{path}: line {line} has {len(cells)} fields, expected {width}")
        for k, j in enumerate(features):
            X[i, k] = _number(path, line, j, names[j], cells[j])
        if column is not None:
            labels.append(cells[column].strip())
    return X, labels if with_label else None, [names[j] for j in features]


def _read_rows(path: str | os.PathLike, delimiter: str) -> list[tuple[int, list[str]]]:
    """Non-blank rows with the 1-based line number each starts on."""
    rows = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            line = 1
            for cells in reader:
                if any(c.strip() for c in cells):
                    rows.append((line, cells))
                line = reader.line_num + 1
    except UnicodeDecodeError as exc:
        raise DataFormatError(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    except csv.Error as exc:
        raise DataFormatError(f"{path}: malformed CSV ({exc})") from None
    return rows


def _label_index(
    path: str | os.PathLike, label: str | int | None, names: list[str], has_header: bool
) -> int:
    width = len(names)
    if label is None:
        return width - 1
    if isinstance(label, str):
        if label in names:
            return names.index(label)
        raise DataFormatError(
            f"{path}: no label column {label!r}; available columns: {', '.join(names)}"
        )
    if isinstance(label, bool) or not isinstance(label, int | np.integer):
        raise TypeError(f"label must be a column name or index, got {type(label).__name__}")
    if not -width <= label < width:
        raise DataFormatError(
            f"{path}: label column index {label} is out of range for {width} columns"
            + (f" ({', '.join(names)})" if has_header else "")
        )
    return int(label) % width


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _number(path: str | os.PathLike, line: int, j: int, name: str, cell: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value):
        shown = cell if len(cell) <= 40 else cell[:37] + "..."
        raise DataFormatError(
            f"{path}: line {line}, column {j + 1} ({name!r}): {shown!r} is not a finite number"
        )
    return value


def _label_array(labels: list[str]) -> np.ndarray:
    try:
        return np.array([int(v) for v in labels], dtype=np.int64)
    except (ValueError, OverflowError):
        return np.array(labels, dtype=str)


def load_npz(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read arrays ``X`` and ``y`` from an ``.npz`` archive, never unpickling.

    Returns
    -------
    X : ndarray of shape (N, ...), numeric, as stored
    y : ndarray of shape (N,), as stored

    Raises
    ------
    DataFormatError
        Not an npz archive, ``X`` or ``y`` missing, object arrays, corrupt or oversized
        members, or shapes that do not agree.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = {n[:-4]: n for n in archive.namelist() if n.endswith(".npy")}
            missing = [k for k in ("X", "y") if k not in members]
            if missing:
                raise DataFormatError(
                    f"{path}: no array {' or '.join(missing)}; the archive holds "
                    f"{sorted(members) or 'no arrays'} (expected 'X' and 'y')"
                )
            X, y = (_read_member(path, archive, members[k], k) for k in ("X", "y"))
    except DataFormatError:
        raise
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        OSError,
        EOFError,
        zlib.error,
        ValueError,
        NotImplementedError,
        RuntimeError,
    ) as exc:
        raise DataFormatError(f"{path}: not a readable .npz archive ({exc})") from None
    if X.ndim < 2 or X.dtype.kind not in "biuf":
        raise DataFormatError(f"{path}: X must be a numeric (N, D) array, got {X.dtype} {X.shape}")
    if y.ndim != 1 or y.dtype.kind not in "biufUS":
        raise DataFormatError(f"{path}: y must be a 1-D array of labels, got {y.dtype} {y.shape}")
    if len(X) != len(y):
        raise DataFormatError(f"{path}: X has {len(X)} rows but y has {len(y)} labels")
    return X, y


def load_array(path: str | os.PathLike) -> np.ndarray:
    """One array from a ``.npy`` file, or from an ``.npz`` archive (its array ``X``, or
    its only array), never unpickling and with the size its header claims checked
    against the file before anything is allocated."""
    _npz_errors = (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        OSError,
        EOFError,
        zlib.error,
        ValueError,
        NotImplementedError,
        RuntimeError,
    )
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                members = {n[:-4]: n for n in archive.namelist() if n.endswith(".npy")}
                key = "X" if "X" in members else next(iter(members), None)
                if key is None or (key != "X" and len(members) > 1):
                    raise DataFormatError(
                        f"{path}: holds {sorted(members) or 'no arrays'}; expected an "
                        "array named X (or a single array)"
                    )
                return _read_member(path, archive, members[key], key)
        with open(path, "rb") as handle:
            _read_header(path, handle, os.path.getsize(path), "the array")
            handle.seek(0)
            return np.lib.format.read_array(handle, allow_pickle=False)
    except DataFormatError:
        raise
    except _npz_errors as exc:
        raise DataFormatError(f"{path}: not a readable NumPy file ({exc})") from None


def _read_header(path: str | os.PathLike, handle, size: int, key: str) -> None:
    """Check a ``.npy`` header: known version, no objects, claimed bytes ≤ ``size``."""
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
    else:
        raise DataFormatError(f"{path}: array {key} uses .npy version {version}")
    if dtype.hasobject:
        raise DataFormatError(f"{path}: array {key} holds Python objects; refused")
    if math.prod(shape) * dtype.itemsize > size:
        raise DataFormatError(
            f"{path}: array {key} claims shape {shape} of {dtype}, more than its {size} bytes"
        )


def _read_member(
    path: str | os.PathLike, archive: zipfile.ZipFile, member: str, key: str
) -> np.ndarray:
    info = archive.getinfo(member)
    if info.file_size > _MAX_NPZ_MEMBER:
        raise DataFormatError(f"{path}: array {key} is {info.file_size} bytes; refused")
    with archive.open(info) as handle:
        _read_header(path, handle, info.file_size, key)
    with archive.open(info) as handle:
        return np.lib.format.read_array(handle, allow_pickle=False)
