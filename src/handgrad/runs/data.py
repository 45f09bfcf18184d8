"""A run's data, in one shape: all rows X, which may be a memory-mapped ``.npy`` file,
their labels y, and the row numbers of each part ("train", "val", "test").

:func:`read_data` reads a dataset, a CSV/``.npz`` file or a ``.npy`` pair, split into
its training and test rows with a seed, as stored (what ``handgrad evaluate`` scores a
model on); :func:`prepare_data` splits a validation part off the training rows and fits
the preprocessing on the rest (what a run trains on). A ``.npy`` X is never read into
memory: its parts are row numbers, read a chunk at a time.

A CSV table with text, yes/no or empty cells is read as a DataFrame (its columns typed by
what they hold); :func:`prepare_data` then decides each column's kind
(:func:`~handgrad.data.columns.plan_columns`: one-hot, 0/1, median imputation with a
missing-indicator, standardization, or dropped), fits that ``ColumnTransformer`` on the
training rows, and trains on the (N, D) rows it makes: the model file holds the
transformer, so the model reads such a table's rows by column name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from handgrad._mapped import RowReader, row_chunks
from handgrad._split import describe_labels, stratified_split
from handgrad._xp import is_dense_numpy
from handgrad.data import Preprocessor, load_dataset
from handgrad.data.mapped import is_npy, load_mapped
from handgrad.errors import HandgradError
from handgrad.runs.config import RunConfig, default_epochs
from handgrad.workspace import CHUNK_ROWS

__all__ = [
    "DataChangedError",
    "PreparedData",
    "RunData",
    "check_same_data",
    "data_fingerprint",
    "label_column",
    "prepare_data",
    "read_data",
    "table_columns",
]

_FILE_KINDS = ("csv", "npz", "npy")
# A regression target spanning fewer float64 steps than this is warned of (as noise).
NEAR_CONSTANT_STEPS = 1000


class DataChangedError(HandgradError, ValueError):
    """The data of a resumed run differ from the data its checkpoint was trained on."""


def label_column(label: str | int | None) -> str | int | None:
    """A CSV label column as given by a person: an integer string means an index."""
    if isinstance(label, str) and label.lstrip("-").isdigit():
        return int(label)
    return label


@dataclass
class RunData:
    """A dataset as stored: X (N, ...) — raw rows, or images (N, H, W[, C]); for a
    ``.npy`` file its memory map; for a CSV table with text or empty cells a DataFrame
    of its feature columns — y (N,), and ``rows``: the row numbers of each part
    ("train" and "test"; :func:`prepare_data` adds "val"). The other fields describe
    the data for the run's files."""

    X: np.ndarray
    y: np.ndarray
    rows: dict[str, np.ndarray]
    task: str
    name: str
    class_names: list[Any] = field(default_factory=list)
    feature_names: list[str] | None = None
    image_shape: tuple[int, ...] | None = None
    image_preparation: str | None = None
    #: Whether X is a ``.npy`` file's memory map, read from the file, never whole.
    mapped: bool = False

    def labels(self, part: str) -> np.ndarray:
        """y's rows of one part."""
        return self.y[self.rows[part]]


def read_data(
    data: str,
    *,
    labels: str | None = None,
    data_dir: str | None = None,
    label: str | int | None = None,
    header: bool | None = None,
    missing_label: str = "error",
    task: str | None = None,
    seed: int = 0,
    test_fraction: float = 0.25,
    columns: str | tuple[list[str], list[str]] = "auto",
) -> RunData:
    """``data`` (a dataset's name, a CSV or ``.npz`` file, or a ``.npy`` file with its
    ``labels`` file) as :class:`RunData`: the rows of its training and test parts (split
    with ``seed``, stratified for classification), X as stored. ``columns`` says how a
    CSV file's columns are read (:func:`~handgrad.data.load_dataset`'s: ``"auto"`` to
    train, a model's ``"numbers"`` or ``(numeric, text)`` to score it; see
    :func:`table_columns`)."""
    if is_npy(data):
        ds = load_mapped(data, labels, split_seed=seed, test_size=test_fraction, task=task)
        rows = {"train": ds.train_rows, "test": ds.test_rows}
        return RunData(ds.X, ds.y, rows, ds.task, ds.name, list(ds.class_names), mapped=True)
    if labels is not None:
        raise ValueError(
            "--labels goes with a .npy --data file (X.npy); a CSV file's label column is "
            "named with --label"
        )
    ds = load_dataset(
        data,
        data_dir=data_dir,
        split_seed=seed,
        test_size=test_fraction,
        label=label_column(label),
        header=header,
        missing_label=missing_label,
        task=task,
        columns=columns,
    )
    n_train, n_test = len(ds.X_train), len(ds.X_test)
    if is_dense_numpy(ds.X_train):
        X = np.concatenate([ds.X_train, ds.X_test])
    else:  # a DataFrame
        import pandas as pd

        X = pd.concat([ds.X_train, ds.X_test], ignore_index=True)
    return RunData(
        X,
        np.concatenate([ds.y_train, ds.y_test]),
        {"train": np.arange(n_train), "test": np.arange(n_train, n_train + n_test)},
        ds.task,
        ds.name,
        list(ds.class_names),
        None if ds.feature_names is None else list(ds.feature_names),
        None if ds.image_shape is None else tuple(ds.image_shape),
        ds.image_preparation if ds.image_shape is not None else None,
    )


@dataclass
class PreparedData:
    """A dataset ready to train: X (N, D) preprocessed (for a ``.npy`` file, its memory
    map, trained as stored), y (N,), and the row numbers of each part in ``rows``
    ("train", "val", "test"). ``preprocessor`` is the fitted
    :class:`~handgrad.data.Preprocessor`, or for a table read by column kind the fitted
    ``ColumnTransformer`` (its decisions in ``info["columns"]``, a
    :class:`~handgrad.data.columns.ColumnPlan`'s dict).

    ``config`` is the configuration with its defaults settled for these data (see
    :class:`RunConfig`); ``info`` describes the data for the run's files. :meth:`predict`
    and :meth:`predictions` read a part's rows a chunk at a time."""

    X: np.ndarray
    y: np.ndarray
    rows: dict[str, np.ndarray]
    preprocessor: Any
    info: dict[str, Any] = field(default_factory=dict)
    config: RunConfig | None = None
    #: Whether X is a ``.npy`` file's memory map, read from the file, never whole.
    mapped: bool = False

    @property
    def y_train(self) -> np.ndarray:
        return self.y[self.rows["train"]]

    @property
    def y_val(self) -> np.ndarray:
        return self.y[self.rows["val"]]

    @property
    def y_test(self) -> np.ndarray:
        return self.y[self.rows["test"]]

    def take(self, part: str | np.ndarray) -> np.ndarray:
        """X's rows of one part (or the given row numbers), read into memory (a copy)."""
        rows = self.rows[part] if isinstance(part, str) else part
        with RowReader(self.X) as reader:
            return reader.take(rows)

    def predict(self, model: Any, part: str) -> np.ndarray:
        """``model.predict`` of one part ("train", "val" or "test"), of its rows read
        CHUNK_ROWS at a time (the chunks ``predict`` makes of rows in memory, so the same
        numbers)."""
        chunks = row_chunks(self.X, CHUNK_ROWS, self.rows[part])
        return np.concatenate([model.predict(chunk) for _, chunk in chunks])

    def predictions(self, model: Any) -> dict[str, np.ndarray]:
        """:meth:`predict` of every part ("train", "val", "test"), each part read once:
        what a finished run's metrics are built from."""
        return {part: self.predict(model, part) for part in ("train", "val", "test")}


def prepare_data(config: RunConfig, *, log: Callable[[str], None] | None = None) -> PreparedData:
    """Read ``config.data`` (:func:`read_data`), split off a validation part from its
    training rows (stratified for classification; seeded by ``config.seed``), and fit
    the preprocessing on the training rows.

    A table read by column kind (text, yes/no or empty cells) is preprocessed by the
    ``ColumnTransformer`` of :func:`~handgrad.data.columns.plan_columns`, each column's
    kind decided on the whole table and the transformer fitted on the training rows;
    its one-line summary goes to ``log`` (each decision:
    ``5 numeric, 2 categorical (island: 3 levels, sex: 3 levels)``), and it is recorded
    in ``info["columns"]``.

    Everything that can be wrong with the data is found here, before any training: a
    single class, a class too small to split, a label that does not fit the task, a
    batch larger than the training part. A ``.npy`` file is trained from its file, as
    stored: no preprocessing, in the file's dtype.
    """
    run = read_data(
        config.data,
        labels=config.labels,
        data_dir=config.data_dir,
        label=config.label,
        header=config.header,
        missing_label=config.missing_label,
        task=config.task,
        seed=config.seed,
        test_fraction=config.test_fraction,
    )
    if run.mapped:
        _check_as_stored(config, run)
    y_train = run.labels("train")
    _check_labels(config, run.task, y_train, run.labels("test"))
    regression = run.task == "regression"
    n_val = max(1, round(config.validation_fraction * len(y_train)))
    # The rows the split of the arrays X_train, y_train would take (the same permutation).
    train_rows, val_rows = stratified_split(
        run.rows["train"],
        test_size=n_val,
        seed=config.seed,
        stratify=None if regression else y_train,
    )
    _check_batch_size(config, len(train_rows))
    config = _settled(config, run, len(train_rows))
    rows = {"train": train_rows, "val": val_rows, "test": run.rows["test"]}
    info = _info(config, run)
    if run.mapped:
        chunks = (chunk for _, chunk in row_chunks(run.X, CHUNK_ROWS, train_rows))
        pre = Preprocessor("none", dtype=config.dtype).fit_chunks(chunks)
        X = run.X
    elif not is_dense_numpy(run.X):  # a table read by column kind
        pre, plan, X = _fit_columns(run.X, train_rows, config)
        info["columns"] = plan.to_dict()
        if log is not None:
            log(f"columns: {plan.summary()}")
    else:
        pre = Preprocessor(config.preprocessing, dtype=config.dtype).fit(run.X[train_rows])
        X = pre.transform(run.X)  # row by row: each part as if transformed alone
    return PreparedData(X, run.y, rows, pre, info, config, run.mapped)


def _fit_columns(frame: Any, train_rows: np.ndarray, config: RunConfig) -> tuple[Any, Any, Any]:
    """The ``ColumnTransformer`` for a DataFrame, its
    :class:`~handgrad.data.columns.ColumnPlan`, and all rows transformed (N, D), in the
    run's dtype.

    Each column's kind is decided on the whole table (a row number is an identifier
    only among all the rows); the transformer is fitted on the training rows, and the
    plan returned holds the categories it learnt there. A table's numbers are
    standardized and its text encoded: ``--preprocessing`` other than standardize is
    refused."""
    from handgrad._columns_state import columns_state
    from handgrad.data.columns import ColumnPlan, plan_columns

    if config.preprocessing not in (None, "standardize"):
        raise ValueError(
            f"{config.data} has text or empty cells, read column by column (numbers "
            "standardized, text one-hot encoded); --preprocessing "
            f"{config.preprocessing} takes a table of numbers only: leave it out"
        )
    ct, planned = plan_columns(frame)
    if not planned.columns:
        raise ValueError(
            f"{config.data}: every feature column was dropped ({planned.summary()}); "
            "nothing is left to learn from"
        )
    ct.fit(frame.iloc[train_rows])
    fitted = ColumnPlan.from_dict(columns_state(ct)[1]["columns"])
    plan = dataclasses.replace(fitted, dropped=planned.dropped, numeric_only=planned.numeric_only)
    X = np.ascontiguousarray(ct.transform(frame), dtype=config.dtype)  # row by row
    return ct, plan, X


def table_columns(model: Any) -> str | tuple[list[str], list[str]]:
    """How to read a CSV file for ``model`` (a fitted pipeline or its first step):
    the ``(numeric, text)`` columns of a ``ColumnTransformer`` first step
    (:func:`~handgrad.data.columns.model_kinds`), else ``"numbers"``; :func:`read_data`'s
    ``columns``."""
    first = model[0] if hasattr(model, "steps") else model
    if type(first).__name__ != "ColumnTransformer":
        return "numbers"
    from handgrad.data.columns import model_kinds

    return model_kinds(first)


def _settled(config: RunConfig, run: RunData, n_train: int) -> RunConfig:
    """``config`` with its defaults settled for these data, and its files' paths made
    absolute (so that the run resumes from any folder)."""
    if run.mapped:
        preprocessing = "none"
    else:
        preprocessing = config.preprocessing or (
            "scale" if run.image_shape is not None else "standardize"
        )
    data_dir = config.data_dir
    if data_dir is not None:
        data_dir = None if run.mapped else os.path.abspath(data_dir)
    early_stopping = config.early_stopping
    if early_stopping is None:
        early_stopping = run.task == "regression" and config.solver != "lbfgs"
    return dataclasses.replace(
        config,
        data=_absolute_data(config.data),
        labels=None if config.labels is None else os.path.abspath(config.labels),
        data_dir=data_dir,
        preprocessing=preprocessing,
        epochs=config.epochs or default_epochs(n_train, config.batch_size),
        task=run.task,
        early_stopping=early_stopping,
    )


def _info(config: RunConfig, run: RunData) -> dict[str, Any]:
    """What the run's files say about its data (the model file's ``info``)."""
    info: dict[str, Any] = {
        "data": config.data,
        **({} if config.labels is None else {"labels": config.labels}),
        "data_dir": config.data_dir,
        "label": config.label,
        "header": config.header,
        "task": run.task,
        "name": run.name,
        "class_names": list(run.class_names),
        "image_shape": None if run.image_shape is None else list(run.image_shape),
        "split_seed": config.seed,
        "test_fraction": config.test_fraction,
        "fingerprint": data_fingerprint(config, run),
    }
    if run.feature_names is not None:
        info["feature_names"] = list(run.feature_names)
    if run.image_shape is not None:
        X_train = run.X[run.rows["train"]]
        info["pixel_max"] = 255.0 if X_train.dtype == np.uint8 else float(X_train.max())
        info["image_preparation"] = run.image_preparation
    return info


def _check_as_stored(config: RunConfig, run: RunData) -> None:
    """A ``.npy`` X trains as stored: no preprocessing, the network in its dtype."""
    if config.preprocessing not in (None, "none"):
        raise ValueError(
            f"{run.name} is trained from its file, as stored: --preprocessing "
            f"{config.preprocessing} would need X in memory; prepare X beforehand and "
            "give --preprocessing none (the default for a .npy file)"
        )
    if np.dtype(config.dtype) != run.X.dtype:
        raise ValueError(
            f"{run.name} holds {run.X.dtype}; give --dtype {run.X.dtype} (a {config.dtype} "
            "network would need a converted copy of X in memory)"
        )


def _check_labels(config: RunConfig, task: str, y_train: np.ndarray, y_test: np.ndarray) -> None:
    """A regression target that varies; two classes at least."""
    if task == "regression":
        if np.ptp(y_train) == 0:
            raise ValueError(
                f"{config.data}: the target is {y_train[0]:g} in every training row: "
                "there is nothing to regress"
            )
        steps = np.ptp(y_train) / np.spacing(np.max(np.abs(y_train)))
        if steps < NEAR_CONSTANT_STEPS:  # the differences are rounding, not signal
            warnings.warn(
                f"the target barely varies: {np.ptp(y_train):.3g} across the training rows "
                f"around {np.mean(y_train):.6g}, {steps:.0f} steps of float64 rounding; "
                "its R² means nothing: check the --labels or --label column",
                stacklevel=2,
            )
    else:
        classes = np.unique(np.concatenate([y_train, y_test]))
        if len(classes) < 2:
            raise ValueError(
                f"{config.data} has a single class ({describe_labels(classes)}): there is "
                "nothing to classify"
            )


def _check_batch_size(config: RunConfig, n_train: int) -> None:
    if config.batch_size > n_train:
        raise ValueError(
            f"batch size {config.batch_size} is larger than the training set "
            f"({n_train} samples after the validation split)"
        )


def _data_file(data: str) -> Path | None:
    """The file a ``--data`` value names, or None for a named dataset."""
    kind, _, path = data.partition(":")
    if path and kind.lower() in _FILE_KINDS:
        return Path(path)
    if data.lower().endswith(tuple(f".{k}" for k in _FILE_KINDS)):
        return Path(data)
    return None


def _absolute_data(data: str) -> str:
    """``data`` with a file's path made absolute, so the run resumes from any folder."""
    kind, _, rest = data.partition(":")
    if rest and kind.lower() in _FILE_KINDS:
        return f"{kind}:{os.path.abspath(rest)}"
    if data.lower().endswith(tuple(f".{k}" for k in _FILE_KINDS)):
        return os.path.abspath(data)
    return data


def data_fingerprint(config: RunConfig, run: RunData | None = None) -> dict[str, Any]:
    """What identifies the data a run trained on: a file's absolute path, size and
    SHA-256 of its bytes (read a megabyte at a time: a file larger than memory is hashed
    whole without being held; with ``config.labels``, of both files, the sizes summed);
    for a named dataset, the SHA-256 of its arrays and of its split."""
    path = _data_file(config.data)
    if path is not None:
        files = [path] if config.labels is None else [path, Path(config.labels)]
        digest, each = hashlib.sha256(), {}
        for file in files:
            one = hashlib.sha256()  # of this file alone: a refusal names the one changed
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
                    one.update(block)
            each[os.path.abspath(file)] = one.hexdigest()
        return {
            "path": os.path.abspath(path),
            **({} if config.labels is None else {"labels": os.path.abspath(config.labels)}),
            "size": sum(file.stat().st_size for file in files),
            "sha256": digest.hexdigest(),
            "files": each,
        }
    if run is None:
        raise ValueError(f"the fingerprint of the dataset {config.data!r} needs its data")
    digest = hashlib.sha256()
    for a in (run.X, run.y, run.rows["train"], run.rows["test"]):
        a = np.asarray(a)
        if a.dtype == object:
            a = a.astype(str)
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(np.ascontiguousarray(a).tobytes())
    return {"name": config.data, "sha256": digest.hexdigest()}


def check_same_data(
    run_dir: Path,
    recorded: dict[str, Any],
    now: dict[str, Any],
    force: bool,
    log: Callable[[str], None],
) -> None:
    """Refuse (:class:`DataChangedError`) to resume on data other than the checkpoint's
    (``recorded``, its fingerprint), or with ``force`` go on and say so."""
    if recorded.get("sha256") == now["sha256"]:
        return
    where = now.get("path") or now.get("name")
    if isinstance(recorded.get("files"), dict) and "files" in now:
        changed = [f for f, sha in now["files"].items() if recorded["files"].get(f) != sha]
        where = " and ".join(changed) or where
    detail = (
        f"{recorded.get('size')} bytes then, {now['size']} now"
        if "size" in now and recorded.get("size") != now["size"]
        else "same size, different content"
        if "size" in now
        else "different content"
    )
    if force:
        log(f"warning: {where} changed since the checkpoint ({detail}); continuing (--force)")
        return
    raise DataChangedError(
        f"the data changed since {run_dir} was checkpointed: {where} ({detail}); "
        "resume with --force to continue on the new data anyway"
    )
