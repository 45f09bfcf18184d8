"""A run's model file as the command line uses it: the model and what is known of its inputs.

A run folder's ``model.safetensors`` is an ordinary handgrad model file
(:func:`handgrad.state.save_model`) holding a scikit-learn ``Pipeline`` -- the fitted
:class:`~handgrad.data.preprocess.Preprocessor`, then the estimator -- with an ``"info"``
entry beside it: image shape, pixel range, class and feature names, where the data came
from. :func:`handgrad.state.load_model` is the one loader; :func:`load_bundle` calls it
and keeps the info too, which ``handgrad predict`` needs to read raw rows, arrays or
image files exactly like the training data.

A table read by column kind (text, yes/no or empty cells) has, in the Preprocessor's
place, the fitted ``ColumnTransformer`` of :func:`handgrad.data.columns.plan_columns`
(:attr:`Bundle.columns`): its model reads a DataFrame (or CSV rows) by column name.
"""

from __future__ import annotations

import copy
import csv
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from handgrad._mapped import is_mapped, row_chunks
from handgrad.data import Preprocessor, load_array, load_feature_csv, load_images, require_file
from handgrad.data.images import preparation_for
from handgrad.data.preprocess import column_order
from handgrad.errors import ModelFileError
from handgrad.modelfile import save_arrays
from handgrad.state import load_model, model_state
from handgrad.workspace import CHUNK_ROWS

__all__ = ["Bundle", "bundle_state", "load_bundle", "save_bundle"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass
class Bundle:
    """A model as :func:`handgrad.state.load_model` returns it, and facts about its inputs.

    ``model`` is a ``Pipeline`` (preprocessing, then the estimator: the classifier, or
    the regressor in a ``TransformedTargetRegressor`` when it was trained on scaled
    targets) for a run's file, else the bare model. info keys (all optional):
    ``image_shape`` (e.g. [8, 8] or [32, 32, 3]), ``pixel_max`` (the largest raw pixel
    value of the training images: 255, or 16 for scikit-learn's digits),
    ``image_preparation`` (how they were made: "mnist",
    "fashion-mnist", "digits" or "resize"; by the dataset's name when absent),
    ``class_names``, ``feature_names``, ``data`` (dataset name),
    ``split_seed``, ``test_fraction``, ``training`` (a summary).
    """

    model: Any
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def estimator(self) -> Any:
        """The classifier or regressor, the pipeline's last step."""
        return self.model[-1] if hasattr(self.model, "steps") else self.model

    @property
    def is_regressor(self) -> bool:
        """Whether the model predicts numbers (an ``MLPRegressor``, perhaps wrapped)."""
        from sklearn.base import is_regressor

        return bool(is_regressor(self.estimator))

    @property
    def preprocessor(self) -> Preprocessor | None:
        """The fitted preprocessing of numbers, the pipeline's first step (None for a
        bare model, or one that reads a table by column kind: :attr:`columns`)."""
        first = self.model[0] if hasattr(self.model, "steps") else None
        return None if _is_column_transformer(first) else first

    @property
    def columns(self) -> Any:
        """The fitted ``ColumnTransformer`` that reads a table by column kind, the
        pipeline's first step (None for a model of numbers)."""
        first = self.model[0] if hasattr(self.model, "steps") else None
        return first if _is_column_transformer(first) else None

    @property
    def n_features(self) -> int:
        """D, the number of raw input features (pixels for images; the columns read,
        for a model that reads a table by column kind)."""
        if self.columns is not None:
            return len(self.feature_names or ())
        if self.preprocessor is not None:
            return int(self.preprocessor.n_features_)
        n = getattr(self.estimator, "n_features_in_", None)
        if n is None:
            n = getattr(self.estimator, "regressor_", self.estimator).layer_sizes[0]
        return int(n)

    @property
    def feature_names(self) -> list[str] | None:
        """The names of the D raw features, when the training data named them."""
        if self.columns is not None:
            from handgrad.data.columns import model_kinds

            numeric, text = model_kinds(self.columns)
            return [*numeric, *text]
        names = getattr(self.preprocessor, "feature_names_in_", None)
        if names is None:
            names = self.info.get("feature_names")
        if names is None or len(names) != self.n_features:
            return None
        return [str(n) for n in names]

    @property
    def classes(self) -> np.ndarray:
        """The labels ``predict`` returns, in column order of ``predict_proba``."""
        classes = getattr(self.estimator, "classes_", None)
        if classes is None:
            classes = np.arange(self.estimator.layer_sizes[-1])
        return np.asarray(classes)

    @property
    def image_shape(self) -> tuple[int, ...] | None:
        shape = self.info.get("image_shape")
        return None if shape is None else tuple(int(s) for s in shape)

    def features(self, X: Any, name: str = "X", check_range: bool = True) -> np.ndarray:
        """Raw samples (N, D) or (N, *image_shape) -> the (N, D) rows the model eats.

        Warns in one line when the samples lie far outside the training data's range
        (:meth:`Preprocessor.outside_range`), unless ``check_range`` is False.

        A model that reads a table by column kind takes a DataFrame (N rows, its columns
        in any order, extra ones ignored): a column it lacks is one ValueError naming
        it, and cells holding categories never seen in training are counted in one
        warning (each encodes as none of the known ones).
        """
        if self.columns is not None:
            return self._table_rows(X, name)
        X = np.asarray(X)
        if X.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold numbers, but its dtype is {X.dtype}")
        if X.ndim == 1:
            X = X.reshape(1, -1)
        if X.ndim == 0 or len(X) == 0:
            raise ValueError(f"{name} holds no samples (shape {X.shape})")
        rows = X.reshape(len(X), -1)
        if rows.shape[1] != self.n_features:
            raise ValueError(
                f"{name} has {rows.shape[1]} features, but the model was trained with "
                f"{self.n_features}"
            )
        # NaN/inf: the estimator reports them (naming row and column) without a pass here.
        if self.preprocessor is None:
            return rows.astype(np.float64)
        outside = self.preprocessor.outside_range(rows) if check_range else None
        if outside is not None:
            warnings.warn(f"{name}: {outside}", UserWarning, stacklevel=2)
        return self.preprocessor.transform(rows)

    def _table_rows(self, frame: Any, name: str) -> np.ndarray:
        """A DataFrame's rows through the model's column transformer, (N, D) float64."""
        from handgrad.data.columns import check_columns, unknown_categories, unknown_note

        if not hasattr(frame, "columns") or not hasattr(frame, "iloc"):
            raise TypeError(
                f"{name} must be a pandas DataFrame with the columns "
                f"{', '.join(self.feature_names or ())}: this model reads a table's "
                f"columns by name, but got {type(frame).__name__}"
            )
        if len(frame) == 0:
            raise ValueError(f"{name} holds no samples (shape {frame.shape})")
        check_columns(frame, self.columns, source=name)
        note = unknown_note(unknown_categories(self.columns, frame))
        if note is not None:
            warnings.warn(f"{name}: {note}", UserWarning, stacklevel=3)
        return self.columns.transform(frame)

    def predict(self, X: Any) -> np.ndarray:
        """Labels (N,) for raw samples."""
        return np.asarray(self.estimator.predict(self.features(X)))

    def predict_rows(self, X: Any, rows: Any = None, name: str = "X") -> np.ndarray:
        """Labels (or values) for raw samples X (N, D), or for its ``rows`` (row numbers)
        only; a memory-mapped X, or ``rows``, is read CHUNK_ROWS rows at a time, so that
        a file larger than memory is never held whole (the range warning of
        :meth:`features` is then judged on the first chunk). A DataFrame (a model that
        reads a table by column kind) is taken whole, or its ``rows``."""
        if self.columns is not None:
            frame = X if rows is None else X.iloc[np.asarray(rows)]
            return np.asarray(self.estimator.predict(self.features(frame, name)))
        if rows is None and not is_mapped(X):
            return np.asarray(self.estimator.predict(self.features(X, name)))
        parts = [
            np.asarray(self.estimator.predict(self.features(chunk, name, check_range=not start)))
            for start, chunk in row_chunks(X, CHUNK_ROWS, rows)
        ]
        return np.concatenate(parts)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (N, C) for raw samples, columns in :attr:`classes` order."""
        return self.proba_of_rows(self.features(X))

    def proba_of_rows(self, rows: np.ndarray) -> np.ndarray:
        """Class probabilities (N, C) for rows :meth:`features` made."""
        P = np.asarray(self.estimator.predict_proba(rows))
        if P.ndim == 2 and P.shape[1] == 1:  # one sigmoid output: P(class 1)
            P = np.hstack([1 - P, P])
        return P

    def load_images(
        self, paths: Sequence[str | os.PathLike[str]], invert: bool | None = None
    ) -> np.ndarray:
        """Image files as raw samples prepared like the training images (the model's
        ``image_preparation``, see :mod:`handgrad.data.images`): same shape, channels and
        pixel range. ``invert=None`` inverts a digit drawn dark on light paper."""
        shape = self.image_shape
        if shape is None:
            raise ValueError(
                "this model was not trained on images, so it cannot read image files; "
                "give a CSV or .npy/.npz file of feature rows"
            )
        preparation = self.info.get("image_preparation") or preparation_for(self.info.get("name"))
        pixel_max = float(self.info.get("pixel_max") or 255.0)
        return load_images(
            paths, shape, preparation=preparation, pixel_max=pixel_max, invert=invert
        )


def save_bundle(
    path: str | os.PathLike[str],
    estimator: Any,
    preprocessor: Preprocessor | None = None,
    info: Mapping[str, Any] | None = None,
) -> Path:
    """Save a fitted estimator and its fitted ``preprocessor`` as one ``Pipeline`` (see
    :func:`handgrad.state.save_model`), with ``info`` beside it, atomically. Without a
    preprocessor, ``estimator`` is any kind ``save_model`` saves."""
    return save_arrays(path, *bundle_state(estimator, preprocessor, info))


def bundle_state(
    estimator: Any,
    preprocessor: Preprocessor | None = None,
    info: Mapping[str, Any] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """What :func:`save_bundle` writes, taken without writing (tensors and metadata, see
    :func:`handgrad.state.model_state`): a run makes every file before writing any.
    ``preprocessor`` may be the fitted ``ColumnTransformer`` of a table read by column
    kind (the pipeline's step "columns")."""
    info = dict(info or {})
    model = estimator
    if _is_column_transformer(preprocessor):
        from sklearn.pipeline import Pipeline

        model = Pipeline([("columns", preprocessor), ("estimator", estimator)])
    elif preprocessor is not None:
        from sklearn.pipeline import Pipeline

        names = info.get("feature_names")
        if names is not None and not hasattr(preprocessor, "feature_names_in_"):
            # The names travel with the preprocessing: the pipeline then takes a
            # DataFrame's columns by name.
            preprocessor = copy.copy(preprocessor)
            preprocessor.feature_names_in_ = np.asarray([str(n) for n in names], dtype=object)
        model = Pipeline([("preprocessor", preprocessor), ("estimator", estimator)])
    return model_state(model, extra={"info": info})


def load_bundle(path: str | os.PathLike[str]) -> Bundle:
    """The model :func:`handgrad.state.load_model` loads from ``path``, with the file's
    info about its inputs.

    Raises FileNotFoundError/IsADirectoryError when there is no such file,
    ModelFileError when it is not a valid handgrad model file or its parts disagree.
    """
    path = Path(path)
    require_file(path, "model file")
    model, meta = load_model(path, return_metadata=True)
    info = meta.get("info") or {}
    if not isinstance(info, dict):
        raise ModelFileError(f"{path}: the model file's info is not an object")
    bundle = Bundle(model, dict(info))
    _check_consistent(path, bundle)
    return bundle


def _is_column_transformer(step: Any) -> bool:
    return type(step).__name__ == "ColumnTransformer"


def _check_consistent(path: Path, bundle: Bundle) -> None:
    shape = bundle.info.get("image_shape")
    if shape is not None:
        if (
            not isinstance(shape, list)
            or not all(isinstance(s, int) and s > 0 for s in shape)
            or int(np.prod(shape)) != bundle.n_features
        ):
            raise ModelFileError(
                f"{path}: image shape {shape} does not fit {bundle.n_features} features"
            )


# ------------------------------------------------------------------------- evaluation
def evaluate(bundle: Bundle, X: Any, y: Any, name: str = "X", rows: Any = None) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1/support and the confusion matrix (a
    regressor's R², MAE and RMSE: see :func:`evaluate_regression`) of raw samples X, or
    of its ``rows`` only (y then holds their labels; see :meth:`Bundle.predict_rows`).

    Returns a JSON-serialisable dict: ``accuracy``, ``n_samples``, ``labels`` (the
    model's classes), ``class_names``, ``per_class`` (one dict per class),
    ``macro_avg``, ``weighted_avg`` and ``confusion_matrix`` (rows true, columns
    predicted, in ``labels`` order).
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    if bundle.is_regressor:
        return evaluate_regression(bundle, X, y, name, rows)
    y = np.asarray(y)
    pred = bundle.predict_rows(X, rows, name)
    if len(y) != len(pred):
        raise ValueError(f"{name} has {len(pred)} samples, but {len(y)} labels")
    labels = bundle.classes
    unknown = sorted(set(np.unique(y).tolist()) - set(labels.tolist()))
    if unknown:
        raise ValueError(
            f"the data have labels {unknown[:5]} the model was not trained on "
            f"(it knows {labels.tolist()[:10]})"
        )
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    names = class_names(bundle)
    per_class = [
        {
            "label": _plain(c),
            "name": n,
            "precision": float(pi),
            "recall": float(ri),
            "f1": float(fi),
            "support": int(si),
        }
        for c, n, pi, ri, fi, si in zip(labels, names, p, r, f, s, strict=True)
    ]
    averages = {}
    for average in ("macro", "weighted"):
        pa, ra, fa, _ = precision_recall_fscore_support(
            y, pred, labels=labels, average=average, zero_division=0
        )
        averages[f"{average}_avg"] = {"precision": float(pa), "recall": float(ra), "f1": float(fa)}
    return {
        "accuracy": float(np.mean(pred == y)),
        "n_samples": len(y),
        "labels": [_plain(c) for c in labels],
        "class_names": names,
        "per_class": per_class,
        **averages,
        "confusion_matrix": confusion_matrix(y, pred, labels=labels).tolist(),
    }


def evaluate_regression(
    bundle: Bundle, X: Any, y: Any, name: str = "X", rows: Any = None
) -> dict[str, Any]:
    """A regressor's R², mean absolute error and root mean squared error on raw samples
    X (or its ``rows``) and targets y, in the targets' units: ``{"task", "n_samples",
    "r2", "mae", "rmse"}``.
    """
    from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

    from handgrad.data import check_task_labels

    y = check_task_labels(np.asarray(y), "regression", name)
    pred = np.asarray(bundle.predict_rows(X, rows, name), dtype=np.float64)
    if len(y) != len(pred):
        raise ValueError(f"{name} has {len(pred)} samples, but {len(y)} targets")
    return {
        "task": "regression",
        "n_samples": len(y),
        "r2": float(r2_score(y, pred)) if len(y) >= 2 else float("nan"),
        "mae": float(mean_absolute_error(y, pred)),
        "rmse": float(root_mean_squared_error(y, pred)),
    }


def class_names(bundle: Bundle) -> list[str]:
    """A readable name per class: the dataset's names where they fit, else the labels."""
    labels = bundle.classes
    names = bundle.info.get("class_names")
    if isinstance(names, list) and len(names) == len(labels):
        if labels.dtype.kind in "iu" and all(0 <= int(c) < len(names) for c in labels):
            return [str(names[int(c)]) for c in labels]
        if [str(c) for c in labels] == [str(n) for n in names]:
            return [str(n) for n in names]
    return [str(c) for c in labels]


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# ---------------------------------------------------------------------------- inputs
def read_inputs(
    bundle: Bundle,
    paths: Sequence[str | os.PathLike[str]],
    *,
    label: str | int | None = None,
    invert: bool | None = None,
    header: bool | None = None,
) -> tuple[list[str], np.ndarray]:
    """Raw samples (N, D) from CSV, .npy/.npz and image files, in order, and a name for
    each row (``file`` for an image, ``file:row`` for a table).

    A CSV file's columns are matched to the model's features by name when both are
    named (see :func:`read_feature_csv`); ``header`` forces whether line 1 names them.

    For a model that reads a table by column kind, the inputs are CSV files and the
    rows one DataFrame (see :func:`read_table_csv`).
    """
    for path in paths:
        require_file(path, "input file")
    if bundle.columns is not None:
        return _read_tables(bundle, paths, label=label, header=header)
    names: list[str] = []
    blocks: list[np.ndarray] = []
    for path in paths:
        suffix = Path(path).suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            blocks.append(bundle.load_images([path], invert=invert).reshape(1, -1))
            names.append(str(path))
            continue
        if suffix == ".csv":
            X = read_feature_csv(bundle, path, label=label, header=header)
        elif suffix in (".npy", ".npz"):
            X = load_array(path)
        else:
            raise ValueError(
                f"{path}: unknown input type {suffix or '(none)'}; give a .csv, .npy, .npz "
                f"or an image ({', '.join(IMAGE_SUFFIXES)})"
            )
        if X.dtype.kind not in "biuf":
            raise TypeError(f"{path} must hold numbers, but its dtype is {X.dtype}")
        X = X.reshape(1, -1) if X.ndim <= 1 else X.reshape(len(X), -1)
        if X.shape[1] != bundle.n_features:
            raise ValueError(
                f"{path} has {X.shape[1]} features, but the model was trained "
                f"with {bundle.n_features}"
            )
        blocks.append(X)
        names += [f"{path}:{i}" for i in range(len(X))]
    return names, np.concatenate([b.astype(np.float64) for b in blocks])


def _read_tables(
    bundle: Bundle,
    paths: Sequence[str | os.PathLike[str]],
    *,
    label: str | int | None,
    header: bool | None,
) -> tuple[list[str], Any]:
    """The rows of CSV files as one DataFrame, for a model that reads columns by name."""
    import pandas as pd

    names: list[str] = []
    frames = []
    for path in paths:
        if Path(path).suffix.lower() != ".csv":
            raise ValueError(
                f"{path}: this model reads a table's columns by name ("
                f"{', '.join((bundle.feature_names or [])[:8])}...); give a .csv file with "
                "a header naming them"
            )
        frame = read_table_csv(bundle, path, label=label, header=header)
        frames.append(frame)
        names += [f"{path}:{i}" for i in range(len(frame))]
    return names, pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def read_table_csv(
    bundle: Bundle,
    path: str | os.PathLike[str],
    *,
    label: str | int | None = None,
    header: bool | None = None,
) -> Any:
    """A CSV file's rows as a DataFrame, each column the model reads typed as it read
    it in training (a number in a text column stays text; text in a numeric column is
    one error naming its line). ``label`` (or, where line 1 names it, the model's own
    label column) is left out; other columns are kept (the model ignores them)."""
    from handgrad.data import load_frame_csv
    from handgrad.data.columns import model_kinds

    numeric, text = model_kinds(bundle.columns)
    if label is None:
        label = model_label(bundle, str(path))
    frame, _ = load_frame_csv(
        path, label=label, header=header, numeric=numeric, text=text, with_label=False
    )
    return frame


def model_label(bundle: Bundle, data: str) -> str | None:
    """The label column the model was trained with, when ``data`` is a CSV file whose
    line 1 names it (None otherwise: the file's own rules, its last column, apply)."""
    own = bundle.info.get("label")
    kind, _, rest = data.partition(":")
    named = bool(rest) and kind.lower() == "csv"
    path = rest if named else data
    if not isinstance(own, str) or not (named or path.lower().endswith(".csv")):
        return None
    return own if own in _first_row(path) else None


def read_feature_csv(
    bundle: Bundle,
    path: str | os.PathLike[str],
    *,
    label: str | int | None = None,
    header: bool | None = None,
) -> np.ndarray:
    """A CSV file's feature rows (N, D), in the order of the model's features.

    When the model knows its feature names and line 1 names some of them, line 1 is
    the header and the columns are taken by name: a missing one is an error naming it,
    and one column the model never saw (a label left in the file) is dropped with a
    note. Otherwise the columns are taken by position.
    """
    known = bundle.feature_names
    first = _first_row(path) if known is not None and header is not False else []
    if not set(first) & set(known or ()):
        X, names = load_feature_csv(path, drop=label, header=header)
        return align_columns(bundle, X, names, str(path))
    if isinstance(label, int):
        label = first[label] if -len(first) <= label < len(first) else label
    column_order([c for c in first if c != label], known, str(path))  # none missing
    extra = [c for c in first if c not in known and c != label]
    if (extra and label is not None) or len(extra) > 1:
        raise ValueError(
            f"{path} has the columns {', '.join(map(repr, extra))} that the model was not "
            "trained with; remove them (a label column can be named with --label COL)"
        )
    if extra:
        warnings.warn(
            f"{path}: ignored the column {extra[0]!r}, which the model was not trained with",
            UserWarning,
            stacklevel=2,
        )
        label = extra[0]
    X, names = load_feature_csv(path, drop=label, header=True)
    return align_columns(bundle, X, names, str(path))


def align_columns(bundle: Bundle, X: np.ndarray, names: Sequence[str] | None, source: str) -> Any:
    """Feature rows X (N, D') whose columns are ``names``, in the model's feature order.

    By name when the model's names and ``names`` share any; a column the model never
    saw is dropped with a note, a missing one is an error naming it. By position (as
    they are) when they share none or either side has no names.
    """
    known = bundle.feature_names
    if known is None or names is None or list(names) == known:
        return X
    names = [str(n) for n in names]
    if not set(names) & set(known):
        return X
    extra = [n for n in names if n not in known]
    order = column_order(names, known, source)
    if extra:
        warnings.warn(
            f"{source}: ignored the column{'s' if len(extra) > 1 else ''} "
            f"{', '.join(map(repr, extra))}, which the model was not trained with",
            UserWarning,
            stacklevel=2,
        )
    return np.asarray(X)[:, order]


def _first_row(path: str | os.PathLike[str]) -> list[str]:
    """The cells of a CSV file's first non-blank line, stripped ([] when unreadable:
    the reader then says why)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            for cells in csv.reader(handle):
                if any(c.strip() for c in cells):
                    return [c.strip() for c in cells]
    except (OSError, UnicodeDecodeError, csv.Error):
        pass
    return []
