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

import numpy as np
from sklearn.exceptions import NotFittedError

from handgrad._validation import check_choice
from handgrad.errors import ModelFileError

__all__ = ["KINDS", "Preprocessor", "flatten"]

KINDS = ("none", "scale", "standardize", "mean_image")


def flatten(X: np.ndarray, dtype: np.dtype | type | str = np.float32) -> np.ndarray:
    """Reshape (N, ...) samples to (N, D) rows of ``dtype`` (float32 by default)."""
    X = np.asarray(X)
    if X.ndim == 0:
        raise ValueError("X must have a first axis of samples, got a scalar")
    return X.reshape(len(X), -1).astype(dtype, copy=False)


class Preprocessor:
    """Fit-then-apply preprocessing whose fitted state is a plain dict.

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
    """

    def __init__(self, kind: str = "scale", dtype: np.dtype | type | str = np.float32) -> None:
        check_choice(kind, "kind", KINDS)
        self.kind = kind
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "f":
            raise ValueError(f"dtype must be a floating type, got {self.dtype}")

    def fit(self, X: np.ndarray) -> Preprocessor:
        """Learn the statistics of the training samples X (N, ...)."""
        X = np.asarray(X)
        if X.ndim == 0 or len(X) == 0:
            raise ValueError(f"X must hold at least one sample, got shape {X.shape}")
        rows = flatten(X, np.float64)
        if not np.all(np.isfinite(rows)):
            raise ValueError("X contains NaN or infinity")
        self.n_features_ = rows.shape[1]
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

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Apply the fitted transform: (N, ...) samples -> (N, D) rows of ``dtype``.

        Values beyond ``dtype``'s range (1e39 under float32) are transformed in float64
        first, so that scaling can bring them into range; one still out of range after
        the transform is a ValueError naming it and its column.
        """
        if not hasattr(self, "n_features_"):
            raise NotFittedError("this Preprocessor is not fitted yet; call fit(X) first")
        X = np.asarray(X)
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

    def fit_transform(self, X: np.ndarray) -> np.ndarray:
        """``fit(X)`` then ``transform(X)``."""
        return self.fit(X).transform(X)

    def to_dict(self) -> dict:
        """The settings and fitted state as a JSON-serialisable dict."""
        state: dict = {"kind": self.kind, "dtype": self.dtype.name}
        if hasattr(self, "n_features_"):
            state.update(n_features=self.n_features_, scale=self.scale_)
            for key, value in (("mean", self.mean_), ("std", self.std_)):
                state[key] = None if value is None else [float(v) for v in value]
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
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(
                f"invalid preprocessor state ({type(exc).__name__}: {exc})"
            ) from None
        if not np.isfinite(self.scale_) or self.scale_ <= 0:
            raise ModelFileError(f"invalid preprocessor state: scale {self.scale_}")
        return self

    def __repr__(self) -> str:
        return f"Preprocessor(kind={self.kind!r}, dtype={self.dtype.name!r})"


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
