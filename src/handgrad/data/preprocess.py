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

import io
import os
from collections.abc import Iterable

import numpy as np
from PIL import Image, UnidentifiedImageError
from sklearn.exceptions import NotFittedError

from handgrad._validation import check_choice
from handgrad.errors import DataFormatError, ModelFileError

__all__ = ["KINDS", "Preprocessor", "flatten", "load_image_files"]

KINDS = ("none", "scale", "standardize", "mean_image")
_MAX_IMAGE_FILE = 2**28


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
        if self.kind == "mean_image":
            self.mean_ = rows.mean(axis=0) / self.scale_
        if self.kind == "standardize":
            self.mean_ = rows.mean(axis=0)
            std = rows.std(axis=0)
            self.std_ = np.where(std > 0, std, 1.0)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Apply the fitted transform: (N, ...) samples -> (N, D) rows of ``dtype``."""
        if not hasattr(self, "n_features_"):
            raise NotFittedError("this Preprocessor is not fitted yet; call fit(X) first")
        rows = flatten(X, self.dtype)
        if rows.shape[1] != self.n_features_:
            raise ValueError(
                f"X has {rows.shape[1]} features, but the preprocessor was fitted with "
                f"{self.n_features_}"
            )
        if np.may_share_memory(rows, X):
            rows = rows.copy()  # never modify the caller's array in place
        if self.scale_ != 1.0:
            rows *= self.dtype.type(1.0 / self.scale_)
        if self.mean_ is not None:
            rows -= self.mean_.astype(self.dtype)
        if self.std_ is not None:
            rows /= self.std_.astype(self.dtype)
        return rows

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


def _vector(values: object, n: int) -> np.ndarray | None:
    if values is None:
        return None
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (n,) or not np.all(np.isfinite(array)):
        raise ValueError(f"expected {n} finite numbers, got shape {array.shape}")
    return array


def load_image_files(
    paths: Iterable[str | os.PathLike], shape: tuple[int, int] = (28, 28), mode: str = "L"
) -> np.ndarray:
    """Read image files (PNG, JPEG, ... anything Pillow opens) into one uint8 array.

    Parameters
    ----------
    paths : image files
    shape : (height, width) every image is resized to
    mode : Pillow mode, "L" (grey) or "RGB"

    Returns
    -------
    images : ndarray (N, height, width) for "L", (N, height, width, 3) for "RGB"; uint8

    Raises
    ------
    DataFormatError
        A file is not an image Pillow can decode.
    """
    if mode not in ("L", "RGB"):
        raise ValueError(f"mode must be 'L' or 'RGB', got {mode!r}")
    height, width = (int(s) for s in shape)
    images = []
    for path in paths:
        try:
            # from memory: a chunk length that lies then cannot make Pillow allocate more
            # than the file holds (a file object would allocate the claimed size)
            with Image.open(io.BytesIO(_read_limited(path))) as image:
                image = image.convert(mode).resize((width, height), Image.Resampling.BILINEAR)
                images.append(np.asarray(image, dtype=np.uint8))
        except FileNotFoundError:
            raise
        except (
            UnidentifiedImageError,
            Image.DecompressionBombError,
            OSError,
            ValueError,
            SyntaxError,
            EOFError,
        ) as exc:
            raise DataFormatError(f"{path}: not a readable image ({exc})") from None
    if not images:
        raise ValueError("paths is empty: no image files to read")
    return np.stack(images)


def _read_limited(path: str | os.PathLike) -> bytes:
    size = os.path.getsize(path)
    if size > _MAX_IMAGE_FILE:
        raise DataFormatError(f"{path}: {size} bytes, too large for an image file")
    with open(path, "rb") as handle:
        return handle.read()
