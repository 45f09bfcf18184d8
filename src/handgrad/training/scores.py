"""How well scores S fit targets T: the running accuracy's right rows, and the
held-out score of a head (accuracy, or R² for a regression head)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from handgrad._xp import device, finite_on_device, is_numpy, namespace
from handgrad.heads import HEADS
from handgrad.network import MLP
from handgrad.workspace import Workspace


def right_rows(
    model: MLP, S: np.ndarray, T: np.ndarray, workspace: Workspace | None = None
) -> np.ndarray:
    """(n,) bool: rows whose scores S predict encoded targets T exactly (every label);
    given the ``workspace`` whose step computed S, from the classes its loss found."""
    if workspace is not None:
        return workspace.right_rows(S, T)
    return HEADS[model.head].right_rows(S, T)


def accuracy(model: MLP, S: np.ndarray, T: np.ndarray, sample_weight=None) -> float:
    """(Weighted) fraction of rows predicted exactly right from scores S and targets T
    (computed in S's library, on its device)."""
    right = right_rows(model, S, T)
    if is_numpy(right):
        return float(np.average(right, weights=sample_weight))
    xp = namespace(right)
    right = xp.astype(right, xp.float64)
    if sample_weight is None:
        return float(xp.mean(right))
    return float(xp.vecdot(right, sample_weight) / xp.sum(sample_weight))


def r2(model: MLP, S: np.ndarray, T: np.ndarray, sample_weight=None) -> float:
    """(Weighted) coefficient of determination of the predictions from scores S (which
    are overwritten) against targets T (n, C), averaged over the C outputs.

    Per output ``R² = 1 − Σ w (Y − P)² / Σ w (Y − Ȳ)²``; as scikit-learn's
    ``r2_score``: a constant target gives 1 when predicted exactly and 0 otherwise,
    fewer than two rows or non-finite predictions give NaN.
    """
    if not is_numpy(S):
        return _r2_array_api(model, S, T, sample_weight)
    with np.errstate(over="ignore"):  # an overflowing e^S scores NaN, as below
        P = HEADS[model.head].probabilities_(S)
    if T.shape[0] < 2 or not np.isfinite(P).all():
        return math.nan
    w = np.ones(T.shape[0]) if sample_weight is None else np.asarray(sample_weight)
    Y = T.reshape(P.shape).astype(np.float64)
    residual = w @ (Y - P) ** 2
    spread = w @ (Y - np.average(Y, axis=0, weights=w)) ** 2
    per_output = np.where(residual == 0, 1.0, 0.0)
    nonzero = spread != 0
    per_output[nonzero] = 1 - residual[nonzero] / spread[nonzero]
    return float(per_output.mean())


def _r2_array_api(model: MLP, S: Any, T: Any, sample_weight=None) -> float:
    """:func:`r2` in the library of S, on its device (float64, as there)."""
    xp = namespace(S)
    P = xp.astype(HEADS[model.head].probabilities(S), xp.float64)
    if T.shape[0] < 2 or not finite_on_device([P]):
        return math.nan
    if sample_weight is None:
        w = xp.ones(T.shape[0], dtype=xp.float64, device=device(S))
    else:
        w = xp.astype(sample_weight, xp.float64)
    Y = xp.reshape(xp.astype(T, xp.float64), P.shape)
    residual = w @ (Y - P) ** 2
    mean = (w @ Y) / xp.sum(w)
    spread = w @ (Y - mean) ** 2
    nonzero = spread != 0
    ratio = residual / xp.where(nonzero, spread, 1.0)
    exact = xp.astype(residual == 0, xp.float64)  # a constant target: 1 if exact, else 0
    per_output = xp.where(nonzero, 1 - ratio, exact)
    return float(xp.mean(per_output))


#: How held-out data is scored, by the head's ``score`` name.
SCORES = {"accuracy": accuracy, "r2": r2}


def validation_score(model: MLP, S: np.ndarray, T: np.ndarray, sample_weight=None) -> float:
    """The head's score of scores S (may be overwritten) against targets T: accuracy
    for a classification head, R² for a regression head."""
    return SCORES[HEADS[model.head].score](model, S, T, sample_weight)


def score_name(model: MLP) -> str:
    """What :func:`validation_score` computes for ``model``'s head, as printed."""
    return {"accuracy": "accuracy", "r2": "R²"}[HEADS[model.head].score]
