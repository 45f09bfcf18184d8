"""Datasets by name, and readers for the file formats they come in.

``load_dataset(name)`` returns a :class:`Dataset` with a train and a test part:

=====================  =============================================================
name                   what
=====================  =============================================================
digits, iris, wine,    scikit-learn's bundled tables; a stratified split with
breast_cancer          ``test_size`` (0.25) of the samples for testing
diabetes               scikit-learn's bundled regression table (442 rows, 10 features,
                       a disease-progression score); a plain random split
mnist, fashion-mnist   the official 60000 / 10000 split, uint8 (N, 28, 28)
mnist-t10k,            only the 10000 official *test* images, split like the tables
fashion-mnist-t10k     (handy when just ``t10k-*`` files are at hand)
cifar10                the official 50000 / 10000 split, uint8 (N, 32, 32, 3)
csv:PATH, npz:PATH     a user file (a plain PATH ending in .csv or .npz works too),
                       split like the tables; see :mod:`handgrad.data.tabular`
=====================  =============================================================

Every dataset has a task, "classification" or "regression" (diabetes); a user file is
classification unless ``task="regression"`` is asked for (see :func:`load_dataset`), and
a label that does not fit the task is one ValueError saying which task it fits.

Image datasets keep their raw uint8 pixels; :class:`~handgrad.data.preprocess.Preprocessor`
turns them into (N, D) float rows. Names ignore case, and ``_`` equals ``-``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn import datasets as sk_datasets

from handgrad._split import stratified_split
from handgrad._xp import is_dense_numpy
from handgrad.data import remote
from handgrad.data._files import require_file
from handgrad.data.cifar import extract_archive, load_cifar10
from handgrad.data.idx import load_mnist_files, read_idx, write_idx
from handgrad.data.images import load_image_files, load_images, preparation_for
from handgrad.data.preprocess import Preprocessor, flatten
from handgrad.data.remote import data_home
from handgrad.data.tabular import (
    load_array,
    load_csv,
    load_feature_csv,
    load_frame_csv,
    load_npz,
)
from handgrad.errors import DatasetUnavailableError, did_you_mean

__all__ = [
    "TASKS",
    "Dataset",
    "Preprocessor",
    "available_datasets",
    "check_task_labels",
    "data_home",
    "dataset_status",
    "extract_archive",
    "flatten",
    "load_array",
    "load_cifar10",
    "load_csv",
    "load_dataset",
    "load_feature_csv",
    "load_frame_csv",
    "load_image_files",
    "load_images",
    "load_mnist_files",
    "load_npz",
    "read_idx",
    "require_file",
    "write_idx",
]

_MNIST_TRAIN = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
_MNIST_TEST = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
_FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_DIGITS = tuple(str(d) for d in range(10))
TASKS = ("classification", "regression")
# Integer labels with at most this many distinct values are class labels, not a target.
FEW_CLASSES = 10


@dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset split into train and test parts.

    Attributes
    ----------
    X_train, X_test : ndarray (N, D) float64 for tables, (N, *image_shape) uint8 for images;
        for a CSV table with text or empty cells, a pandas DataFrame of its feature
        columns (each typed by :func:`~handgrad.data.tabular.load_frame_csv`), its rows
        numbered from 0
    y_train, y_test : ndarray (N,) of labels (int64, or str for some user files); float64
        targets for a regression task
    class_names : names of the classes, in label order (empty for regression)
    image_shape : shape of one image, e.g. (28, 28) or (32, 32, 3); None for tables.
        ``X.reshape(len(X), *image_shape)`` always works when it is not None.
    name : the dataset's name
    feature_names : column names of a table, None for images
    image_preparation : how the images were made, so that a picture can be prepared the
        same way (see :mod:`handgrad.data.images`); None for tables
    task : "classification" or "regression"
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    image_shape: tuple[int, ...] | None
    name: str
    feature_names: tuple[str, ...] | None = None
    image_preparation: str | None = None
    task: str = "classification"


def available_datasets() -> list[str]:
    """Names :func:`load_dataset` accepts (besides ``csv:PATH`` and ``npz:PATH``)."""
    return list(_LOADERS)


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    split_seed: int = 0,
    test_size: float = 0.25,
    download: bool = True,
    label: str | int | None = None,
    header: bool | None = None,
    missing_label: str = "error",
    task: str | None = None,
    columns: str | tuple[Sequence[str], Sequence[str]] = "auto",
) -> Dataset:
    """Load a dataset by name (see the module docstring for the names).

    Parameters
    ----------
    name : dataset name, ``csv:PATH``/``npz:PATH``, or a path ending in .csv/.npz
    data_dir : folder of downloaded files (default ``$HANDGRAD_DATA_DIR`` or the user cache)
    split_seed : seed of the train/test split where the dataset has no official one
    test_size : fraction of samples for testing where the dataset has no official split
    download : whether missing files may be downloaded
    label : label column of a CSV file (name or index; default the last column)
    header : whether a CSV file's first row names its columns; None decides (see
        :func:`~handgrad.data.tabular.first_row_is_header`)
    missing_label : what an empty label cell of a CSV file is: "error" or "drop" (the
        row, with a warning that counts them)
    task : "classification" or "regression"; None is the dataset's own (a user file's
        is classification: a person says when a column is a target to regress)
    columns : how a CSV file's feature columns are read: ``"auto"`` (a table of complete
        numbers as float64 arrays, any other -- text, yes/no or empty cells -- as
        DataFrames, each column typed by what it holds); ``"numbers"`` (every cell a
        finite number, or one error naming it: rows for a model trained on numbers);
        or ``(numeric, text)``, the column names a model reads as numbers and as text
        (:func:`~handgrad.data.columns.model_kinds`): DataFrames read as that model
        reads them

    Raises
    ------
    ValueError
        Unknown name; a label that does not fit the task (text or a few integer classes
        for regression, a continuous target for classification).
    FileNotFoundError, IsADirectoryError
        A user file is missing, or is a folder.
    DatasetUnavailableError
        Files are missing and cannot be downloaded; the message says where to put them.
    DataFormatError
        A file is corrupt or does not match its pinned checksum.
    """
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    kind, _, path = name.partition(":")
    csv = {"label": label, "header": header, "missing_label": missing_label, "columns": columns}
    user = {"task": task or "classification"}
    if path and kind.lower() in ("csv", "npz"):
        return _load_user_file(path, kind.lower(), split_seed, test_size, csv, **user)
    if name.lower().endswith((".csv", ".npz")):
        return _load_user_file(name, name[-3:].lower(), split_seed, test_size, csv, **user)
    key = _ALIASES.get(name.lower().replace("_", "-"))
    if key is None and os.path.isdir(name):
        raise IsADirectoryError(
            f"{name} is a folder, not a dataset name or a .csv/.npz file; for the files of "
            "a named dataset in it, give the name and --data-dir (data_dir) the folder"
        )
    if key is None:
        raise ValueError(
            f"unknown dataset {name!r}{did_you_mean(name, _LOADERS)}; available: "
            f"{', '.join(_LOADERS)}, csv:PATH, npz:PATH"
        )
    split = {"seed": split_seed, "test_size": test_size}
    ds = _LOADERS[key](data_dir=data_dir, download=download, **split)
    if task is not None and task != ds.task:
        raise ValueError(
            f"{key} is a {ds.task} dataset, not a {task} one (its task is {ds.task!r})"
        )
    return ds


def check_task_labels(y: np.ndarray, task: str, source: str) -> np.ndarray:
    """The labels ``y`` of ``source`` for ``task``: float64 targets for regression, the
    labels as they are for classification -- or one ValueError saying which task they
    fit.

    A regression target must be numeric and not a handful of integer classes (at most
    :data:`FEW_CLASSES` distinct integers); a classification label must not look
    continuous: numbers with fractions, or more than twice :data:`FEW_CLASSES` distinct
    values that are written as floats ("151.0") or are more than half of the rows.
    """
    y = np.asarray(y)
    values = _as_numbers(y)
    if task == "regression":
        if values is None:
            _check_finite_target(y, source)
            example = next((str(v) for v in y if _as_number(v) is None), "?")
            raise ValueError(
                f"{source}: the label holds text ({example!r}), which is a class label, "
                "not a number to regress; give --task classification"
            )
        distinct = np.unique(values)
        if len(distinct) == 1:
            raise ValueError(
                f"{source}: the target is {distinct[0]:g} in every row: there is nothing "
                "to regress (nor to classify)"
            )
        with np.errstate(over="ignore", invalid="ignore"):
            scalable = np.isfinite(np.var(values))  # as the target's StandardScaler needs
        if not scalable:
            big = np.max(np.abs(values))
            raise ValueError(
                f"{source}: the target holds values up to {big:g}, too large to scale (its "
                f"variance overflows float64): divide it by 1e{int(np.log10(big)) - 3} first"
            )
        if len(distinct) <= FEW_CLASSES and np.all(distinct == np.round(distinct)):
            raise ValueError(
                f"{source}: the label has only {len(distinct)} distinct integer values "
                f"({', '.join(f'{v:g}' for v in distinct[:FEW_CLASSES])}): class labels, "
                "not a target to regress; give --task classification"
            )
        return values
    if values is not None and len(values):
        distinct = np.unique(values)
        fractional = not np.all(distinct == np.round(distinct))
        many = len(distinct) > 2 * FEW_CLASSES
        # "151.0": numbers written as floats are measurements, not class names.
        as_floats = y.dtype.kind == "f" or (
            y.dtype.kind in "OU" and any("." in str(v) or "e" in str(v).lower() for v in y)
        )
        if fractional or (many and (as_floats or len(distinct) > 0.5 * len(values))):
            raise ValueError(
                f"{source}: the label looks continuous ({len(distinct)} distinct values in "
                f"{len(values)} rows{', with fractions' if fractional else ''}), not class "
                "labels; give --task regression to predict it as a number"
            )
    return y


def _as_number(v: object) -> float | None:
    try:
        x = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return x if np.isfinite(x) else None


def _check_finite_target(y: np.ndarray, source: str) -> None:
    """A ValueError naming the first NaN or infinity of a target that is otherwise all
    numbers (text falls through, to be named as text)."""
    numbers = []
    for v in y:
        try:
            numbers.append(float(v))
        except (TypeError, ValueError):
            return
    bad = np.flatnonzero(~np.isfinite(np.asarray(numbers, dtype=np.float64)))
    if len(bad):
        raise ValueError(
            f"{source}: the target is not finite ({numbers[bad[0]]} in row {bad[0]}"
            f"{f' and {len(bad) - 1} more rows' if len(bad) > 1 else ''}): a regression "
            "target must be a number in every row; remove or fill those rows"
        )


def _as_numbers(y: np.ndarray) -> np.ndarray | None:
    """``y`` as finite float64, or None when some label is not a finite number."""
    if y.dtype.kind in "biuf":
        values = y.astype(np.float64)
        return values if np.all(np.isfinite(values)) else None
    numbers = [_as_number(v) for v in y]
    if any(x is None for x in numbers):
        return None
    return np.asarray(numbers, dtype=np.float64)


def _sklearn(loader_name: str, image_shape: tuple[int, ...] | None = None) -> Callable:
    def load(*, data_dir: object, download: bool, seed: int, test_size: float) -> Dataset:
        bunch = getattr(sk_datasets, f"load_{loader_name}")()
        X_train, X_test, y_train, y_test = stratified_split(
            bunch.data, bunch.target, test_size=test_size, seed=seed, stratify=bunch.target
        )
        names = tuple(str(n) for n in bunch.target_names)
        features = None if image_shape else tuple(str(f) for f in bunch.feature_names)
        preparation = preparation_for(loader_name) if image_shape else None
        return Dataset(
            X_train, y_train, X_test, y_test, names, image_shape, loader_name, features, preparation
        )

    return load


def _diabetes(*, data_dir: object, download: bool, seed: int, test_size: float) -> Dataset:
    bunch = sk_datasets.load_diabetes()
    X_train, X_test, y_train, y_test = stratified_split(
        bunch.data, bunch.target.astype(np.float64), test_size=test_size, seed=seed
    )
    features = tuple(str(f) for f in bunch.feature_names)
    return Dataset(
        X_train, y_train, X_test, y_test, (), None, "diabetes", features, task="regression"
    )


def _mnist_like(dataset: str, classes: tuple[str, ...], test_only: bool) -> Callable:
    def load(*, data_dir: object, download: bool, seed: int, test_size: float) -> Dataset:
        names = _MNIST_TEST if test_only else _MNIST_TRAIN + _MNIST_TEST
        try:
            paths = remote.fetch(dataset, names, data_dir=data_dir, download=download)
        except DatasetUnavailableError as exc:
            raise DatasetUnavailableError(_t10k_hint(exc, dataset, data_dir)) from None
        X_test, y_test = load_mnist_files(*(paths[n] for n in _MNIST_TEST))
        if test_only:
            X_train, X_test, y_train, y_test = stratified_split(
                X_test, y_test, test_size=test_size, seed=seed, stratify=y_test
            )
        else:
            X_train, y_train = load_mnist_files(*(paths[n] for n in _MNIST_TRAIN))
        name = f"{dataset}-t10k" if test_only else dataset
        return Dataset(
            X_train, y_train, X_test, y_test, classes, (28, 28), name, None, preparation_for(name)
        )

    return load


def _t10k_hint(exc: DatasetUnavailableError, dataset: str, data_dir: object) -> str:
    try:
        remote.fetch(dataset, _MNIST_TEST, data_dir=data_dir, download=False)  # type: ignore[arg-type]
    except (DatasetUnavailableError, ValueError):
        return str(exc)
    return (
        f"{exc}\nOnly the test files (t10k-*) are present: '{dataset}-t10k' splits "
        "those 10000 images into a train and a test part."
    )


def _cifar10(*, data_dir: object, download: bool, seed: int, test_size: float) -> Dataset:
    folder = remote.cifar10_folder(data_dir, download=download)  # type: ignore[arg-type]
    X_train, y_train, X_test, y_test, names = load_cifar10(folder)
    return Dataset(
        X_train, y_train, X_test, y_test, tuple(names), (32, 32, 3), "cifar10", None, "resize"
    )


def _load_user_file(
    path: str, kind: str, seed: int, test_size: float, csv: dict, task: str
) -> Dataset:
    require_file(path, "CSV file" if kind == "csv" else ".npz file")
    features = None
    csv = dict(csv)
    columns = csv.pop("columns", "auto")
    if kind == "csv":
        X, y, feature_names = _read_csv(path, csv, columns)
        features = tuple(feature_names)
    else:
        X, y = load_npz(path)
    name = os.path.basename(path)
    y = check_task_labels(y, task, name)
    image_shape = tuple(X.shape[1:]) if X.ndim > 2 else None
    regression = task == "regression"
    stratify = None if regression else y
    if is_dense_numpy(X):  # else a table's DataFrame
        X_train, X_test, y_train, y_test = stratified_split(
            X, y, test_size=test_size, seed=seed, stratify=stratify
        )
    else:  # a DataFrame: its rows split as an array's would be
        rows_train, rows_test, y_train, y_test = stratified_split(
            np.arange(len(y)), y, test_size=test_size, seed=seed, stratify=stratify
        )
        X_train = X.iloc[rows_train].reset_index(drop=True)
        X_test = X.iloc[rows_test].reset_index(drop=True)
    class_names = () if regression else tuple(str(c) for c in np.unique(y))
    preparation = "resize" if image_shape else None
    return Dataset(
        X_train,
        y_train,
        X_test,
        y_test,
        class_names,
        image_shape,
        name,
        features,
        preparation,
        task,
    )


def _read_csv(
    path: str, csv: dict, columns: str | tuple[Sequence[str], Sequence[str]]
) -> tuple[Any, np.ndarray, list[str]]:
    """A CSV file's features (an array, or a DataFrame: see :func:`load_dataset`'s
    ``columns``), its labels and its feature names."""
    if columns == "numbers":
        return load_csv(path, **csv)
    if isinstance(columns, str):
        if columns != "auto":
            raise ValueError(
                f"columns must be 'auto', 'numbers' or (numeric, text) names, got {columns!r}"
            )
        frame, y = load_frame_csv(path, **csv)
        names = [str(c) for c in frame.columns]
        # ColumnPlan.numeric_only, without planning: complete columns of numbers.
        numbers = all(frame[c].dtype.kind == "f" for c in names)
        if numbers and not frame.isna().to_numpy().any():
            return np.ascontiguousarray(frame.to_numpy(dtype=np.float64)), y, names
        return frame, y, names
    numeric, text = columns
    frame, y = load_frame_csv(path, **csv, numeric=numeric, text=text)
    return frame, y, [str(c) for c in frame.columns]


def dataset_status(name: str, data_dir: str | os.PathLike | None = None) -> str:
    """What the data folder holds of a named dataset, judged by the files' checksums:
    "bundled with scikit-learn", "present", "not downloaded", or what is there and not."""
    key = _ALIASES.get(name.lower().replace("_", "-"))
    if key is None:
        raise ValueError(
            f"unknown dataset {name!r}{did_you_mean(name, _LOADERS)}; "
            f"available: {', '.join(_LOADERS)}"
        )
    if key in ("digits", "iris", "wine", "breast_cancer", "diabetes"):
        return "bundled with scikit-learn"
    dataset = key.removesuffix("-t10k")
    names = _MNIST_TEST if key.endswith("-t10k") else None
    return remote.status(dataset, names, data_dir=data_dir)


_LOADERS: dict[str, Callable[..., Dataset]] = {
    "digits": _sklearn("digits", image_shape=(8, 8)),
    "iris": _sklearn("iris"),
    "wine": _sklearn("wine"),
    "breast_cancer": _sklearn("breast_cancer"),
    "diabetes": _diabetes,
    "mnist": _mnist_like("mnist", _DIGITS, test_only=False),
    "mnist-t10k": _mnist_like("mnist", _DIGITS, test_only=True),
    "fashion-mnist": _mnist_like("fashion-mnist", _FASHION_CLASSES, test_only=False),
    "fashion-mnist-t10k": _mnist_like("fashion-mnist", _FASHION_CLASSES, test_only=True),
    "cifar10": _cifar10,
}
_ALIASES = {key.replace("_", "-"): key for key in _LOADERS}
