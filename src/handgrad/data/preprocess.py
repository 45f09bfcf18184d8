"""Turning samples into the (N, D) float rows a network eats, with state a model can save.

Kinds of :class:`Preprocessor`:

* ``"none"``: flatten and cast only.
* ``"scale"``: divide by 255 when the training data is uint8 (images), otherwise by the
  largest absolute value seen in training (1 if that is 0), so features land in [-1, 1].
* ``"standardize"``: per feature, subtract the training mean and divide by the training
  standard deviation (a deviation of 0 counts as 1).
* ``"mean_image"``: scale as above, then subtract the mean training image (CS231n style).

:meth:`Preprocessor.to_dict` gives a JSON-serialisable dict -- fitted arrays as lists of
floats -- that :meth:`Preprocessor.from_dict` turns back into the same transform.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import NotFittedError

from handgrad._validation import check_choice
from handgrad.errors import ModelFileError

__all__ = ["KINDS", "Preprocessor", "column_order", "flatten"]

KINDS = ("none", "scale", "standardize", "mean_image")


def flatten(X: np.ndarray, dtype: np.dtype | type | str = np.float32) -> np.ndarray:
    """Reshape (N, ...) samples to (N, D) rows of ``dtype`` (float32 by default)."""
    X = np.asarray(X)
    if X.ndim == 0:
        raise ValueError("X must have a first axis of samples, got a scalar")
    return X.reshape(len(X), -1).astype(dtype, copy=False)


class Preprocessor(TransformerMixin, BaseEstimator):
    """Fit-then-apply preprocessing whose fitted state is a plain dict.

    A scikit-learn transformer: the first step of the ``Pipeline`` that a run's model
    file loads as (:func:`handgrad.state.load_model`).

    Parameters
    ----------
    kind : "none", "scale", "standardize" or "mean_image"
    dtype : dtype of the (N, D) output (float32 by default)

    Attributes
    ----------
    n_features_ : int, D seen by ``fit``
    scale_ : float, the divisor of "scale" and "mean_image" (1.0 otherwise)
    mean_ : ndarray (D,) or None, subtracted after scaling
    std_ : ndarray (D,) or None, divisor of "standardize"
    data_min_, data_max_ : ndarray (D,), each raw feature's range in training, so that
        inputs far outside it can be noticed (:meth:`outside_range`)
    feature_names_in_ : ndarray (D,) of str, the column names when ``fit`` was given a
        DataFrame (or when a model file names them); ``transform`` then orders a
        DataFrame's columns by name
    """

    def __init__(self, kind: str = "scale", dtype: np.dtype | type | str = np.float32) -> None:
        check_choice(kind, "kind", KINDS)
        self.kind = kind
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "f":
            raise ValueError(f"dtype must be a floating type, got {self.dtype}")

    def fit(self, X: Any, y: Any = None) -> Preprocessor:
        """Learn the statistics of the training samples X (N, ...); ``y`` is ignored."""
        names = _column_names(X)
        X = np.asarray(X)
        if X.ndim == 0 or len(X) == 0:
            raise ValueError(f"X must hold at least one sample, got shape {X.shape}")
        rows = flatten(X, np.float64)
        if not np.all(np.isfinite(rows)):
            raise ValueError("X contains NaN or infinity")
        self.n_features_ = rows.shape[1]
        if names is not None:
            self.feature_names_in_ = np.asarray(names, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.data_min_, self.data_max_ = rows.min(axis=0), rows.max(axis=0)
        self.scale_ = 1.0
        self.mean_: np.ndarray | None = None
        self.std_: np.ndarray | None = None
        if self.kind in ("scale", "mean_image"):
            peak = float(np.abs(rows).max()) if rows.size else 0.0
            self.scale_ = 255.0 if X.dtype == np.uint8 else (peak or 1.0)
        with np.errstate(over="ignore"):  # the statistics are checked just below
            if self.kind == "mean_image":
                self.mean_ = rows.mean(axis=0) / self.scale_
            if self.kind == "standardize":
                self.mean_ = rows.mean(axis=0)
                std = rows.std(axis=0)
                self.std_ = np.where(std > 0, std, 1.0)
        fitted = [self.scale_, self.mean_, self.std_]
        if not all(np.all(np.isfinite(v)) for v in fitted if v is not None):
            raise ValueError(
                f"X holds values too large for preprocessing {self.kind!r} (up to "
                f"{float(np.abs(rows).max()):.6g}); choose another preprocessing"
            )
        return self

    def fit_chunks(self, chunks: Iterable[np.ndarray]) -> Preprocessor:
        """``fit`` over the training rows given as (n, D) chunks (a file read a chunk at a
        time, :mod:`handgrad.data.mapped`), for kind "none": the statistics of the other
        kinds would transform X, which stays as stored; this learns each feature's range
        (:meth:`outside_range`)."""
        if self.kind != "none":
            raise ValueError(f"preprocessing {self.kind!r} needs X in memory; use 'none'")
        lo = hi = None
        for chunk in chunks:
            lo = chunk.min(axis=0) if lo is None else np.minimum(lo, chunk.min(axis=0))
            hi = chunk.max(axis=0) if hi is None else np.maximum(hi, chunk.max(axis=0))
        if lo is None or hi is None:
            raise ValueError("X must hold at least one sample")
        if hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.n_features_ = len(lo)
        self.data_min_, self.data_max_ = lo.astype(np.float64), hi.astype(np.float64)
        self.scale_, self.mean_, self.std_ = 1.0, None, None
        return self

    @property
    def n_features_in_(self) -> int:
        """D, as scikit-learn names it."""
        return self.n_features_

    def transform(self, X: Any) -> np.ndarray:
        """Apply the fitted transform: (N, ...) samples -> (N, D) rows of ``dtype``.

        A DataFrame's columns are taken by name when the fitted names are known.

        Values beyond ``dtype``'s range (1e39 under float32) are transformed in float64
        first, so that scaling can bring them into range; one still out of range after
        the transform is a ValueError naming it and its column.
        """
        if not hasattr(self, "n_features_"):
            raise NotFittedError("this Preprocessor is not fitted yet; call fit(X) first")
        given = _column_names(X)
        known = getattr(self, "feature_names_in_", None)
        X = np.asarray(X)
        if given is not None and known is not None:
            X = X[:, column_order(given, list(known), "X")]
        wide = _beyond(X, self.dtype)
        rows = flatten(X, np.float64 if wide else self.dtype)
        if rows.shape[1] != self.n_features_:
            raise ValueError(
                f"X has {rows.shape[1]} features, but the preprocessor was fitted with "
                f"{self.n_features_}"
            )
        if np.may_share_memory(rows, X):
            rows = rows.copy()  # never modify the caller's array in place
        if self.scale_ != 1.0:
            rows *= rows.dtype.type(1.0 / self.scale_)
        if self.mean_ is not None:
            rows -= self.mean_.astype(rows.dtype)
        if self.std_ is not None:
            rows /= self.std_.astype(rows.dtype)
        if wide:
            self._check_range(rows)
            rows = rows.astype(self.dtype)
        return rows

    def _check_range(self, rows: np.ndarray) -> None:
        """Refuse transformed (N, D) float64 rows that ``dtype`` cannot hold."""
        top = float(np.finfo(self.dtype).max)
        over = np.isfinite(rows) & (np.abs(rows) > top)
        if over.any():
            i, j = np.argwhere(over)[0]
            raise ValueError(
                f"X holds {rows[i, j]:.6g} in column {j + 1} after preprocessing "
                f"{self.kind!r}, beyond {self.dtype.name}'s range (±{top:.3g}); choose "
                "preprocessing 'scale' or 'standardize', or dtype float64"
            )

    def fit_transform(self, X: Any, y: Any = None) -> np.ndarray:
        """``fit(X)`` then ``transform(X)``."""
        return self.fit(X).transform(X)

    def outside_range(self, X: Any) -> str | None:
        """Why raw samples X (N, ...) lie far outside the training data's range, or None.

        Far means: the largest magnitude is a tenth of the training data's or less, or
        ten times or more (data scaled differently, such as [0, 1] pixels for a 0-255
        model); or a feature lies beyond its training range by more than three times that
        range's width (the whole data's width for a feature that was constant).
        """
        if not hasattr(self, "data_min_"):
            return None  # a file written before the range was recorded
        rows = flatten(np.asarray(X), np.float64)
        finite = np.isfinite(rows)
        if rows.size == 0 or not finite.any():
            return None
        rows = np.where(finite, rows, 0.0)
        lo, hi = self.data_min_, self.data_max_
        seen = float(max(np.abs(lo).max(), np.abs(hi).max()))
        peak = float(np.abs(rows).max())
        where = f"training ranged over [{lo.min():.6g}, {hi.max():.6g}]"
        if seen > 0 and peak > 0 and not seen / 10 < peak < seen * 10:
            return (
                f"the inputs range over [{rows.min():.6g}, {rows.max():.6g}], but the "
                f"{where}: were they scaled differently?"
            )
        width = hi - lo
        margin = 3 * np.where(width > 0, width, hi.max() - lo.min())
        far = (rows < lo - margin) | (rows > hi + margin)
        if not far.any():
            return None
        i, j = np.argwhere(far)[0]
        name = self.feature_names_in_[j] if hasattr(self, "feature_names_in_") else j + 1
        return (
            f"{int(far.any(axis=1).sum())} of {len(rows)} inputs lie far outside the "
            f"training range (row {i + 1} has {rows[i, j]:.6g} in feature {name}, where "
            f"training saw {lo[j]:.6g} to {hi[j]:.6g})"
        )

    def to_dict(self) -> dict:
        """The settings and fitted state as a JSON-serialisable dict."""
        state: dict = {"kind": self.kind, "dtype": self.dtype.name}
        if hasattr(self, "n_features_"):
            state.update(n_features=self.n_features_, scale=self.scale_)
            for key, value in (("mean", self.mean_), ("std", self.std_)):
                state[key] = None if value is None else [float(v) for v in value]
            state["min"] = [float(v) for v in self.data_min_]
            state["max"] = [float(v) for v in self.data_max_]
            if hasattr(self, "feature_names_in_"):
                state["feature_names"] = [str(f) for f in self.feature_names_in_]
        return state

    @classmethod
    def from_dict(cls, state: dict) -> Preprocessor:
        """Rebuild a preprocessor from :meth:`to_dict`'s output.

        Raises
        ------
        ModelFileError
            The dict is not one that ``to_dict`` produces.
        """
        try:
            self = cls(state["kind"], state["dtype"])
            if "n_features" in state:
                self.n_features_ = int(state["n_features"])
                self.scale_ = float(state["scale"])
                self.mean_ = _vector(state["mean"], self.n_features_)
                self.std_ = _vector(state["std"], self.n_features_)
                if "min" in state:  # absent from files written before it was recorded
                    self.data_min_ = _vector(state["min"], self.n_features_)
                    self.data_max_ = _vector(state["max"], self.n_features_)
                names = state.get("feature_names")
                if names is not None:
                    if len(names) != self.n_features_ or len(set(names)) != len(names):
                        raise ValueError(f"{len(names)} feature names for {self.n_features_}")
                    self.feature_names_in_ = np.asarray([str(n) for n in names], dtype=object)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(
                f"invalid preprocessor state ({type(exc).__name__}: {exc})"
            ) from None
        if not np.isfinite(self.scale_) or self.scale_ <= 0:
            raise ModelFileError(f"invalid preprocessor state: scale {self.scale_}")
        return self

    def __repr__(self, N_CHAR_MAX: int = 700) -> str:
        return f"Preprocessor(kind={self.kind!r}, dtype={self.dtype.name!r})"


def column_order(given: Sequence[str], known: Sequence[str], source: str) -> list[int]:
    """Where each of the model's ``known`` feature names is among the ``given`` columns.

    Raises
    ------
    ValueError
        Naming every known column that ``source`` lacks (and the ones it has that the
        model never saw), in one message.
    """
    given = [str(g) for g in given]
    missing = [k for k in known if k not in given]
    if missing:
        extra = [g for g in given if g not in known]
        also = f"; it has {_names(extra)} that the model never saw" if extra else ""
        raise ValueError(
            f"{source} lacks the column{'s' if len(missing) > 1 else ''} {_names(missing)} "
            f"the model was trained with{also}"
        )
    return [given.index(k) for k in known]


def _names(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _column_names(X: Any) -> list[str] | None:
    """A DataFrame's column names when they are all strings (scikit-learn's rule)."""
    columns = getattr(X, "columns", None)
    if columns is None or not all(isinstance(c, str) for c in columns):
        return None
    return list(columns)


def _beyond(X: np.ndarray, dtype: np.dtype) -> bool:
    """Whether float samples X hold a finite value that ``dtype`` cannot."""
    if X.dtype.kind != "f" or X.dtype.itemsize <= dtype.itemsize or X.size == 0:
        return False
    top = float(np.finfo(dtype).max)
    with np.errstate(invalid="ignore"):
        return bool(np.any((np.abs(X) > top) & np.isfinite(X)))


def _vector(values: object, n: int) -> np.ndarray | None:
    if values is None:
        return None
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (n,) or not np.all(np.isfinite(array)):
        raise ValueError(f"expected {n} finite numbers, got shape {array.shape}")
    return array
