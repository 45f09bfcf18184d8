"""Tables from users: CSV files and NumPy ``.npz`` archives.

CSV: every column but the label is a feature and must hold finite numbers (:func:`load_csv`),
or holds numbers, text or empty cells, each column typed by what it holds
(:func:`load_frame_csv`, for :mod:`handgrad.data.columns`); the label column is kept as
integers when every cell is an integer, else as strings.
NPZ: arrays ``X`` (N, ...) numeric and ``y`` (N,), read without pickle and with every
array's size checked against the archive before it is allocated.
"""

from __future__ import annotations

import csv
import math
import os
import warnings
import zipfile
import zlib
from collections.abc import Collection
from typing import TYPE_CHECKING

import numpy as np

from handgrad._validation import check_choice
from handgrad.data._files import require_file
from handgrad.errors import DataFormatError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "first_row_is_header",
    "load_array",
    "load_csv",
    "load_feature_csv",
    "load_frame_csv",
    "load_npz",
]

_MAX_NPZ_MEMBER = 2**32
# Deflate cannot expand data by more than about 1032:1 (the IDX reader's bound too); a
# member claiming more is lying, or a bomb in another compression method.
_MAX_COMPRESSION_RATIO = 1100


def load_csv(
    path: str | os.PathLike,
    label: str | int | None = None,
    header: bool | None = None,
    delimiter: str = ",",
    missing_label: str = "error",
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read a CSV file of numeric features and one label column.

    Parameters
    ----------
    path : path of the CSV file (UTF-8, an optional byte-order mark is skipped)
    label : column name, or column index (negative counts from the end);
        None means the last column.
    header : True or False to say whether the first row names the columns; None
        decides as a person would (see :func:`first_row_is_header`).
    delimiter : field separator.
    missing_label : "error" (an empty label cell is an error naming its line) or
        "drop" (such rows are left out, with a warning that counts them).

    Returns
    -------
    X : ndarray of shape (N, D), float64 (values beyond float32's range are kept:
        the preprocessing scales them before any cast)
    y : ndarray of shape (N,), int64 if every label is an integer, else str
    feature_names : list of D names (``x0``, ``x1`` ... without a header)
    """
    check_choice(missing_label, "missing_label", ("error", "drop"))
    X, labels, names = _read_table(
        path, label, header, delimiter, with_label=True, missing_label=missing_label
    )
    return X, _label_array(labels), names


def load_feature_csv(
    path: str | os.PathLike,
    drop: str | int | None = None,
    header: bool | None = None,
    delimiter: str = ",",
) -> tuple[np.ndarray, list[str]]:
    """Read a CSV file of numeric features only (rows to predict, say).

    ``drop`` names a column to ignore (a label column left in the file), by name or
    index; the other arguments are as in :func:`load_csv`. Returns X (N, D) float64 and
    the D feature names.
    """
    X, _, names = _read_table(path, drop, header, delimiter, with_label=drop is not None)
    return X, names


def load_frame_csv(
    path: str | os.PathLike,
    label: str | int | None = None,
    header: bool | None = None,
    delimiter: str = ",",
    missing_label: str = "error",
    *,
    numeric: Collection[str] = (),
    text: Collection[str] = (),
    with_label: bool = True,
) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Read a CSV file of any columns -- numbers, words, empty cells -- and one label
    column, each feature column typed by what it holds.

    A column whose every cell is a number or empty becomes float64 (NaN where empty);
    any other becomes text (str, NaN where empty). Empty means a blank cell or one of
    :data:`~handgrad.data.columns.MISSING_CELLS` (``NA``, ``NaN``, ``null`` ...). The
    arguments are those of :func:`load_csv`, and:

    numeric : columns that must be numbers (those a model read as numbers, at predict
        time): a cell in one that is not is the one-line error :func:`load_csv` gives.
    text : columns kept as text even where every cell is a number (those a model read
        as text); :func:`~handgrad.data.columns.model_kinds` gives both for a model.
    with_label : False to read features only; ``label`` then names a column to leave
        out (if given), and no labels are returned.

    Returns
    -------
    frame : DataFrame (N, D) of the features, columns named as in the header (``x0``,
        ``x1`` ... without one)
    y : ndarray (N,) as :func:`load_csv`'s, or None without ``with_label``
    """
    import pandas as pd

    from handgrad.data.columns import MISSING_CELLS

    check_choice(missing_label, "missing_label", ("error", "drop"))
    names, features, body, labels, hint_line = _labelled_rows(
        path,
        label,
        header,
        delimiter,
        with_label or label is not None,
        missing_label if with_label else None,
    )
    data = {}
    for j in features:
        cells = [cells[j].strip() for _, cells in body]
        empty = [c.lower() in MISSING_CELLS for c in cells]
        numbers = None if names[j] in text else _numbers(cells, empty)
        if numbers is None and names[j] in numeric:
            line, cell = next(
                (ln, c)
                for (ln, _), c, e in zip(body, cells, empty, strict=True)
                if not e and not _is_number(c)
            )
            _number(path, line, j, names[j], cell, line == hint_line)
        if numbers is not None and not np.isfinite(numbers[~np.array(empty, bool)]).all():
            line, cell = next(
                (ln, c)
                for (ln, _), c, e in zip(body, cells, empty, strict=True)
                if not e and not math.isfinite(float(c))
            )
            _number(path, line, j, names[j], cell, line == hint_line)
        if numbers is None:
            text = np.array(cells, dtype=object)
            text[np.array(empty, bool)] = np.nan
            data[names[j]] = pd.Series(text, dtype=object)
        else:
            data[names[j]] = numbers
    frame = pd.DataFrame(data, columns=[names[j] for j in features])
    return frame, _label_array(labels) if with_label else None


def _numbers(cells: list[str], empty: list[bool]) -> np.ndarray | None:
    """The cells as float64 (NaN where empty), or None when one is not a number."""
    out = np.full(len(cells), np.nan)
    for i, (cell, blank) in enumerate(zip(cells, empty, strict=True)):
        if not blank:
            try:
                out[i] = float(cell)
            except ValueError:
                return None
    return out


def first_row_is_header(
    path: str | os.PathLike, rows: list[tuple[int, list[str]]], label: str | int | None
) -> bool:
    """Whether the first of ``rows`` names the columns, decided as a person would.

    It does when ``label`` is a name, when it holds no number, or when its numbers are
    0, 1, 2 ... in order (pandas' default column names, as in ``0,1,2,3,target``); a
    row with any other number (``5.1``, ``-2``, an empty cell) is data. Where a data row
    could look the same -- no cell names a column of numbers below it, as ``target``
    does over integer labels -- a warning says which was chosen and how to choose
    otherwise.
    """
    first = [c.strip() for c in rows[0][1]]
    if isinstance(label, str):
        return True
    numbers = [c for c in first if _is_number(c)]
    if not numbers:
        return True
    names = first[1:] if first[0] == "" else first  # "" heads pandas' index column
    if "" in names or numbers != [str(k) for k in range(len(numbers))]:
        return False
    later = rows[1:]
    names_a_number_column = later and any(
        not _is_number(cell) and all(j < len(r) and _is_number(r[j]) for _, r in later)
        for j, cell in enumerate(first)
    )
    if not names_a_number_column:
        shown = ",".join(first) if len(first) <= 8 else ",".join(first[:7]) + ",..."
        warnings.warn(
            f"{path}: line {rows[0][0]} ({shown}) was read as the column names, as pandas "
            "writes them; pass header=False (--no-header) to read it as data",
            UserWarning,
            stacklevel=4,
        )
    return True


def _read_table(path, label, header, delimiter, *, with_label: bool, missing_label=None):
    """Features (N, D) float64, the label cells (or None), and the feature names.

    ``missing_label`` None means the label column is only dropped, not read."""
    names, features, body, labels, hint_line = _labelled_rows(
        path, label, header, delimiter, with_label, missing_label
    )
    X = np.empty((len(body), len(features)), dtype=np.float64)
    for n, (line, cells) in enumerate(body):
        for k, j in enumerate(features):
            X[n, k] = _number(path, line, j, names[j], cells[j], line == hint_line)
    return X, labels, [names[j] for j in features]


def _labelled_rows(path, label, header, delimiter, with_label, missing_label):
    """The column names, the feature columns' indices, the rows kept ``(line, cells)``,
    their label cells (None without ``missing_label``), and the line to hint
    ``header=True`` at (the first, when it was read as data by inference)."""
    rows = _read_rows(path, delimiter)
    if not rows:
        raise DataFormatError(f"{path}: the CSV file is empty")
    inferred = header is None
    if inferred:
        header = first_row_is_header(path, rows, label)
    elif not isinstance(header, bool):
        raise ValueError(f"header must be True, False or None (decide), got {header!r}")
    width = len(rows[0][1])
    names = [c.strip() for c in rows[0][1]] if header else [f"x{j}" for j in range(width)]
    body = rows[1:] if header else rows
    if not body:
        raise DataFormatError(f"{path}: the CSV file has a header but no data rows")
    column = _label_index(path, label, names, bool(header)) if with_label else None
    if with_label and width < 2:
        raise DataFormatError(f"{path}: {width} column; need features and a label column")
    features = [j for j in range(width) if j != column]
    labels: list[str] = []
    dropped: list[int] = []
    kept = []
    for line, cells in body:
        if len(cells) != width:
            raise DataFormatError(f"{path}: line {line} has {len(cells)} fields, expected {width}")
        if missing_label is not None:
            cell = cells[column].strip()
            if not cell and missing_label == "drop":
                dropped.append(line)
                continue
            if not cell:
                raise DataFormatError(
                    f"{path}: line {line} has no label (column {column + 1}, "
                    f"{names[column]!r}, is empty); fill it in or drop such rows "
                    "(missing_label='drop')"
                )
            labels.append(cell)
        kept.append((line, cells))
    if dropped:
        _warn_dropped(path, dropped, labels)
    hint_line = rows[0][0] if inferred and not header else None
    return names, features, kept, labels if missing_label is not None else None, hint_line


def _warn_dropped(path: str | os.PathLike, dropped: list[int], labels: list[str]) -> None:
    """The warning for the rows ``missing_label='drop'`` dropped (at their ``dropped``
    lines), or the error where no row kept a label."""
    if not labels:
        raise DataFormatError(f"{path}: no row has a label")
    shown = ", ".join(map(str, dropped[:5])) + (", ..." if len(dropped) > 5 else "")
    rows_word = "row" if len(dropped) == 1 else "rows"
    lines_word = "line" if len(dropped) == 1 else "lines"
    warnings.warn(
        f"{path}: dropped {len(dropped)} {rows_word} without a label ({lines_word} {shown})",
        UserWarning,
        stacklevel=6,  # one frame deeper than _labelled_rows
    )


def _read_rows(path: str | os.PathLike, delimiter: str) -> list[tuple[int, list[str]]]:
    """Non-blank rows with the 1-based line number each starts on."""
    require_file(path, "CSV file")
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


def _number(
    path: str | os.PathLike, line: int, j: int, name: str, cell: str, header_hint: bool = False
) -> float:
    try:
        value = float(cell)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value):
        shown = cell if len(cell) <= 40 else cell[:37] + "..."
        hint = f"; if line {line} names the columns, pass header=True (--header)"
        raise DataFormatError(
            f"{path}: line {line}, column {j + 1} ({name!r}): {shown!r} is not a finite number"
            + (hint if header_hint else "")
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
    require_file(path, ".npz file")
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
    if X.dtype.kind == "f":
        finite = np.isfinite(X.reshape(len(X), -1)).all(axis=1)
        if not finite.all():
            row = int(np.argmin(finite))
            value = X[row][~np.isfinite(X[row])].flat[0]
            raise DataFormatError(
                f"{path}: row {row} of X holds {value}; every value must be a finite number"
            )
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
    require_file(path, "NumPy file")
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
    """One array of an archive, its declared size checked before anything is allocated."""
    info = archive.getinfo(member)
    claimed = f"{_size(info.file_size)} from {info.compress_size} compressed bytes"
    if info.file_size > _MAX_NPZ_MEMBER:
        raise DataFormatError(
            f"{path}: array {key} claims {claimed}, more than the limit of "
            f"{_size(_MAX_NPZ_MEMBER)}; refused"
        )
    stored = info.compress_type == zipfile.ZIP_STORED
    if (stored and info.file_size > info.compress_size) or (
        info.file_size > max(info.compress_size, 1) * _MAX_COMPRESSION_RATIO
    ):
        raise DataFormatError(
            f"{path}: array {key} claims {claimed}, more than compression can give "
            f"(at most {_MAX_COMPRESSION_RATIO}:1): a corrupt or hostile archive; refused"
        )
    with archive.open(info) as handle:
        _read_header(path, handle, info.file_size, key)
    with archive.open(info) as handle:
        return np.lib.format.read_array(handle, allow_pickle=False)


def _size(n: int) -> str:
    """Bytes for people: ``3.35 GiB (3600000000 bytes)``."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit} ({n} bytes)"
    return f"{n} bytes"
