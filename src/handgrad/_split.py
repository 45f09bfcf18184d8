"""The one train/held-out split: stratified by label where it can be, plain where not.

Used by the datasets (train/test), the command line's runs (train/validation) and the
estimators' early stopping (train/validation), so the three always agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split


def stratified_split(
    *arrays: Any, test_size: float | int, seed: int, stratify: Any = None, strict: bool = False
) -> list[np.ndarray]:
    """``[a_train, a_held_out, b_train, b_held_out, …]`` for ``arrays`` split by rows.

    ``test_size`` is a fraction of the rows or a number of rows; ``seed`` makes the split
    the same every call. With ``stratify`` (labels, one per row) each label keeps its
    share on both sides; where some label has too few rows for that, the split is a
    plain random one rather than an error — or, with ``strict`` (the estimators' early
    stopping, as scikit-learn's), scikit-learn's ValueError.
    """
    if stratify is not None:
        try:
            return train_test_split(
                *arrays, test_size=test_size, random_state=seed, stratify=stratify
            )
        except ValueError:  # some class too small to stratify
            if strict:
                raise
    return train_test_split(*arrays, test_size=test_size, random_state=seed)
