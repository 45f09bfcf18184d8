"""The one train/held-out split: stratified by label where it can be, plain where not.

Used by the datasets (train/test), the command line's runs (train/validation) and the
estimators' early stopping (train/validation), so the three always agree.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

__all__ = ["describe_labels", "stratified_split"]


def describe_labels(labels: Any, limit: int = 5) -> str:
    """A few labels, then how many more: a message must not list two thousand of them."""
    labels = list(labels)
    shown = ", ".join(repr(_plain(v)) for v in labels[:limit])
    rest = len(labels) - limit
    return shown + (f" and {rest} more" if rest > 0 else "")


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def stratified_split(
    *arrays: Any, test_size: float | int, seed: int, stratify: Any = None, strict: bool = False
) -> list[np.ndarray]:
    """``[a_train, a_held_out, b_train, b_held_out, …]`` for ``arrays`` split by rows.

    ``test_size`` is a fraction of the rows or a number of rows; ``seed`` makes the split
    the same every call. With ``stratify`` (labels, one per row) every label is in the
    training part and each label keeps its share on both sides where it can: a label
    with a single row stays in the training part (with a warning naming such labels,
    where scikit-learn's ``train_test_split`` refuses them), and where the held-out part
    is too small to hold every label, the split is a random one that still keeps one row
    of each label for training. A held-out part that cannot be filled that way is a
    ValueError. With ``strict`` (the estimators' early stopping, as scikit-learn's) a
    label too small to stratify is scikit-learn's ValueError instead.
    """
    if stratify is None:
        return train_test_split(*arrays, test_size=test_size, random_state=seed)
    if strict:
        return train_test_split(*arrays, test_size=test_size, random_state=seed, stratify=stratify)
    labels = np.asarray(stratify)
    n = len(labels)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    lonely = counts[inverse.reshape(-1)] < 2
    if not lonely.any():
        try:
            return train_test_split(
                *arrays, test_size=test_size, random_state=seed, stratify=labels
            )
        except ValueError:  # the held-out (or training) part is smaller than the classes
            return _split_keeping_every_class(arrays, labels, test_size, seed)
    n_test = _held_out_rows(test_size, n)
    single = classes[counts < 2]
    rest = np.flatnonzero(~lonely)
    if n_test > len(rest) - len(classes[counts >= 2]):
        raise ValueError(
            f"cannot hold out {n_test} of {n} samples: {len(single)} of {len(classes)} "
            f"classes have a single sample ({describe_labels(single)}), which must stay in "
            "the training part; give each class at least 2 samples"
        )
    warnings.warn(
        f"{len(single)} of {len(classes)} classes have a single sample, kept in the "
        f"training part and never held out: {describe_labels(single)}",
        UserWarning,
        stacklevel=2,
    )
    train, held_out = stratified_split(rest, test_size=n_test, seed=seed, stratify=labels[rest])
    train = np.concatenate([train, np.flatnonzero(lonely)])
    return _take(arrays, train, held_out)


def _held_out_rows(test_size: float | int, n: int) -> int:
    if isinstance(test_size, int | np.integer):
        return int(test_size)
    return math.ceil(test_size * n)  # as train_test_split rounds


def _take(arrays: tuple[Any, ...], train: np.ndarray, held_out: np.ndarray) -> list[Any]:
    from sklearn.utils import _safe_indexing  # rows of arrays, sparse matrices, frames

    return [
        part for a in arrays for part in (_safe_indexing(a, train), _safe_indexing(a, held_out))
    ]


def _split_keeping_every_class(
    arrays: tuple[Any, ...], labels: np.ndarray, test_size: float | int, seed: int
) -> list[np.ndarray]:
    n = len(labels)
    n_test = _held_out_rows(test_size, n)
    order = np.random.RandomState(seed).permutation(n)
    _, first = np.unique(labels[order], return_index=True)
    keep = np.zeros(n, dtype=bool)
    keep[order[first]] = True  # one row of each class stays in the training part
    free = order[~keep[order]]
    if n_test > len(free):
        raise ValueError(
            f"cannot hold out {n_test} of {n} samples and keep every one of the "
            f"{len(first)} classes in the training part; use a smaller held-out fraction"
        )
    held_out = free[:n_test]
    mask = np.ones(n, dtype=bool)
    mask[held_out] = False
    return _take(arrays, order[mask[order]], held_out)
