"""A model bundle: a fitted classifier and the preprocessing its inputs need, in one file.

The file is an ordinary handgrad model file (:func:`handgrad.state.save_model`): the
classifier's own tensors and metadata, plus a ``"bundle"`` entry with
the preprocessing (:meth:`Preprocessor.to_dict`) and what is known about the inputs —
image shape, pixel range, class and feature names, where the data came from. So
``handgrad predict`` can take raw rows, arrays or image files and treat them exactly
like the training data.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from handgrad.data import Preprocessor, load_array, load_feature_csv, load_images
from handgrad.data.images import preparation_for
from handgrad.errors import ModelFileError
from handgrad.state import load_model, save_model

__all__ = ["Bundle", "load_bundle", "save_bundle"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass
class Bundle:
    """A classifier with its preprocessing and facts about its inputs.

    info keys (all optional): ``image_shape`` (e.g. [8, 8] or [32, 32, 3]),
    ``pixel_max`` (the largest raw pixel value of the training images: 255, or 16 for
    scikit-learn's digits), ``image_preparation`` (how they were made: "mnist",
    "fashion-mnist", "digits" or "resize"; by the dataset's name when absent),
    ``class_names``, ``feature_names``, ``data`` (dataset name),
    ``split_seed``, ``test_fraction``, ``training`` (a summary).
    """

    classifier: Any
    preprocessor: Preprocessor | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        """D, the number of raw input features (pixels for images)."""
        if self.preprocessor is not None and hasattr(self.preprocessor, "n_features_"):
            return int(self.preprocessor.n_features_)
        n = getattr(self.classifier, "n_features_in_", None)
        if n is None:
            n = self.classifier.layer_sizes[0]
        return int(n)

    @property
    def classes(self) -> np.ndarray:
        """The labels ``predict`` returns, in column order of ``predict_proba``."""
        classes = getattr(self.classifier, "classes_", None)
        if classes is None:
            classes = np.arange(self.classifier.layer_sizes[-1])
        return np.asarray(classes)

    @property
    def image_shape(self) -> tuple[int, ...] | None:
        shape = self.info.get("image_shape")
        return None if shape is None else tuple(int(s) for s in shape)

    def features(self, X: Any, name: str = "X") -> np.ndarray:
        """Raw samples (N, D) or (N, *image_shape) -> the (N, D) rows the model eats."""
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
        # NaN/inf: the classifier reports them (naming row and column) without a pass here.
        if self.preprocessor is None:
            return rows.astype(np.float64)
        return self.preprocessor.transform(rows)

    def predict(self, X: Any) -> np.ndarray:
        """Labels (N,) for raw samples."""
        return np.asarray(self.classifier.predict(self.features(X)))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (N, C) for raw samples, columns in :attr:`classes` order."""
        P = np.asarray(self.classifier.predict_proba(self.features(X)))
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
    classifier: Any,
    preprocessor: Preprocessor | None = None,
    info: Mapping[str, Any] | None = None,
) -> Path:
    """Save ``classifier`` (any kind :func:`handgrad.state.save_model` saves), the
    fitted ``preprocessor`` and ``info`` to one model file, atomically."""
    bundle = {
        "preprocessing": None if preprocessor is None else preprocessor.to_dict(),
        "info": dict(info or {}),
    }
    return save_model(path, classifier, extra={"bundle": bundle})


def load_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Load a file written by :func:`save_bundle`, or a plain model file (no preprocessing).

    Raises FileNotFoundError when there is no such file, ModelFileError when it is not a
    valid handgrad model file or its parts disagree.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such model file: {path}")
    classifier, meta = load_model(path, return_metadata=True)
    stored = meta.get("bundle") or {}
    if not isinstance(stored, dict):
        raise ModelFileError(f"{path}: the bundle metadata is not an object")
    pre_state = stored.get("preprocessing")
    preprocessor = None if pre_state is None else Preprocessor.from_dict(pre_state)
    info = stored.get("info") or {}
    if not isinstance(info, dict):
        raise ModelFileError(f"{path}: the bundle's info is not an object")
    bundle = Bundle(classifier, preprocessor, dict(info))
    _check_consistent(path, bundle)
    return bundle


def _check_consistent(path: Path, bundle: Bundle) -> None:
    model_d = getattr(bundle.classifier, "n_features_in_", None)
    if model_d is None and hasattr(bundle.classifier, "layer_sizes"):
        model_d = bundle.classifier.layer_sizes[0]
    if model_d is not None and int(model_d) != bundle.n_features:
        raise ModelFileError(
            f"{path}: the preprocessing expects {bundle.n_features} features, but the "
            f"model takes {model_d}"
        )
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
def evaluate(bundle: Bundle, X: Any, y: Any, name: str = "X") -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1/support and the confusion matrix.

    Returns a JSON-serialisable dict: ``accuracy``, ``n_samples``, ``labels`` (the
    model's classes), ``class_names``, ``per_class`` (one dict per class),
    ``macro_avg``, ``weighted_avg`` and ``confusion_matrix`` (rows true, columns
    predicted, in ``labels`` order).
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    y = np.asarray(y)
    pred = np.asarray(bundle.classifier.predict(bundle.features(X, name=name)))
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
) -> tuple[list[str], np.ndarray]:
    """Raw samples (N, D) from CSV, .npy/.npz and image files, in order, and a name for
    each row (``file`` for an image, ``file:row`` for a table)."""
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"no such input file: {path}")
    names: list[str] = []
    blocks: list[np.ndarray] = []
    for path in paths:
        suffix = Path(path).suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            blocks.append(bundle.load_images([path], invert=invert).reshape(1, -1))
            names.append(str(path))
            continue
        if suffix == ".csv":
            X, _ = load_feature_csv(path, drop=label)
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
