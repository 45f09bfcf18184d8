"""Fixtures shared by the test modules."""

from __future__ import annotations

import os

# scikit-learn accepts array_api_dispatch=True (tests/test_array_api.py) only when SciPy
# was imported with its array API support on: set before anything imports SciPy.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.preprocessing import StandardScaler


@pytest.fixture(scope="session")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    """Three standardised Gaussian blobs in 4 features, 120 rows: a small, separable
    multi-class problem that any of the solvers fits in a few epochs."""
    X, y = make_blobs(n_samples=120, centers=3, n_features=4, random_state=0)
    return StandardScaler().fit_transform(X), y
