"""Forward/backward pairs and the two losses: the seed's equations as pure functions.

Every ``*_forward`` returns ``(out, cache)``; the matching ``*_backward(dout, cache)``
returns the gradients of the loss with respect to the forward's inputs. Shapes use the
seed's letters: N rows, D input features, H hidden units, C classes (score columns).

Nothing here holds state, trains, or touches files. These functions are the reference
that the fast path in :mod:`handgrad.workspace` is tested against.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.floating]
Cache = tuple


# --------------------------------------------------------------------------- affine
def affine_forward(X: Array, W: Array, b: Array) -> tuple[Array, Cache]:
    """``Z = X W + b``.

    X: (N, D), W: (D, H), b: (H,)  ->  Z: (N, H); cache ``(X, W)``.
    """
    return X @ W + b, (X, W)


def affine_backward(dZ: Array, cache: Cache) -> tuple[Array, Array, Array]:
    """Gradients of ``Z = X W + b`` given ``dZ = ∂L/∂Z``.

    dZ: (N, H)  ->  ``dX = dZ Wᵀ`` (N, D), ``dW = Xᵀ dZ`` (D, H), ``db = Σ_rows dZ`` (H,).

    In the seed: ``dW2 = A1ᵀ dS``, ``db2 = Σ_rows dS``, ``dA1 = dS W2ᵀ`` (the L2 term
    ``λW`` is added by :func:`l2_penalty`), and likewise ``dW1 = Xᵀ dZ1``, ``db1 = Σ dZ1``.
    """
    X, W = cache
    return dZ @ W.T, X.T @ dZ, dZ.sum(axis=0)


# ---------------------------------------------------------------------- activations
def relu_forward(Z: Array) -> tuple[Array, Cache]:
    """``A = max(Z, 0)``.  Z: (N, H) -> A: (N, H); cache ``(Z,)``."""
    return np.maximum(Z, 0), (Z,)


def relu_backward(dA: Array, cache: Cache) -> Array:
    """``dZ = dA ⊙ [Z > 0]`` — the seed's "ismorethan" mask.  dA: (N, H) -> dZ: (N, H)."""
    (Z,) = cache
    return dA * (Z > 0)


def tanh_forward(Z: Array) -> tuple[Array, Cache]:
    """``A = tanh(Z)``.  Z: (N, H) -> A: (N, H); cache ``(A,)``."""
    A = np.tanh(Z)
    return A, (A,)


def tanh_backward(dA: Array, cache: Cache) -> Array:
    """``dZ = dA ⊙ (1 − A²)``, since ``tanh' = 1 − tanh²``.  dA: (N, H) -> dZ: (N, H)."""
    (A,) = cache
    return dA * (1 - A * A)


def logistic_forward(Z: Array) -> tuple[Array, Cache]:
    """``A = σ(Z) = 1 / (1 + e^{−Z})``.  Z: (N, H) -> A: (N, H); cache ``(A,)``."""
    A = sigmoid(Z)
    return A, (A,)


def logistic_backward(dA: Array, cache: Cache) -> Array:
    """``dZ = dA ⊙ A ⊙ (1 − A)``, since ``σ' = σ(1 − σ)``.  dA: (N, H) -> dZ: (N, H)."""
    (A,) = cache
    return dA * A * (1 - A)


def identity_forward(Z: Array) -> tuple[Array, Cache]:
    """``A = Z``.  Z: (N, H) -> A: (N, H); cache ``()``."""
    return Z, ()


def identity_backward(dA: Array, cache: Cache) -> Array:
    """``dZ = dA``.  dA: (N, H) -> dZ: (N, H)."""
    return dA


Forward = Callable[[Array], tuple[Array, Cache]]
Backward = Callable[[Array, Cache], Array]

#: Hidden-layer activations by scikit-learn's names: ``name -> (forward, backward)``.
ACTIVATIONS: dict[str, tuple[Forward, Backward]] = {
    "relu": (relu_forward, relu_backward),
    "tanh": (tanh_forward, tanh_backward),
    "logistic": (logistic_forward, logistic_backward),
    "identity": (identity_forward, identity_backward),
}


# ------------------------------------------------------------------------- the heads
def sigmoid(S: Array) -> Array:
    """``σ(S)`` without overflow for any finite S (exp is only taken of ``−|S|``)."""
    E = np.exp(-np.abs(S))
    return np.where(S >= 0, 1 / (1 + E), E / (1 + E))


def softmax(S: Array) -> Array:
    """Row-wise ``P_ij = e^{S_ij} / Σ_k e^{S_ik}``, shifted by the row max for stability."""
    E = np.exp(S - S.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


def _row_weights(sample_weight: Array | None, N: int, dtype: np.dtype) -> tuple[Array, float]:
    """Per-row weights ``w`` (N,) and their sum; ``w = 1`` gives the plain mean over N."""
    if sample_weight is None:
        return np.ones(N, dtype=dtype), float(N)
    w = np.asarray(sample_weight, dtype=dtype)
    return w, float(w.sum())


def softmax_cross_entropy(
    S: Array, y: NDArray[np.integer], sample_weight: Array | None = None
) -> tuple[float, Array]:
    """Mean softmax cross-entropy and its gradient ``dS = (P − Y) / N``.

    S: (N, C) scores; y: (N,) integer class indices in ``[0, C)``; sample_weight: (N,)
    or None.  Returns ``L = −(1/N) Σ_i log P_{i, y_i}`` and ``dS`` (N, C).

    With weights ``w`` the mean becomes ``Σ_i w_i ℓ_i / Σ_i w_i`` and row i of dS is
    scaled by ``w_i / Σ w`` (``1/N`` when every ``w_i = 1``).

    Why ``P − Y``: the seed's softmax Jacobian ``∂P_j/∂S_k = P_j(δ_jk − P_k)`` times
    ``∂ℓ/∂P_j = −Y_j / P_j`` sums to ``−Y_k + P_k Σ_j Y_j = P_k − Y_k``.
    ``log P`` is computed as ``S − max − log Σ e^{S − max}`` (log-sum-exp), so any
    finite scores give a finite loss.
    """
    N = S.shape[0]
    shifted = S - S.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    log_P = shifted - log_norm
    w, w_sum = _row_weights(sample_weight, N, S.dtype)
    rows = np.arange(N)
    loss = -float(np.dot(w, log_P[rows, y])) / w_sum
    dS = np.exp(log_P)  # P
    dS[rows, y] -= 1  # P − Y
    dS *= (w / w_sum)[:, None]  # (P − Y) / N
    return loss, dS


def sigmoid_cross_entropy(
    S: Array, Y: Array, sample_weight: Array | None = None
) -> tuple[float, Array]:
    """Mean sigmoid cross-entropy (the seed's σ head) and ``dS = (σ(S) − Y) / N``.

    S: (N, C) scores; Y: (N, C) 0/1 indicators (C = 1 for a binary problem; a 1-D
    ``(N,)`` Y is taken as one column); sample_weight: (N,) or None.

    ``L = (1/N) Σ_i Σ_c [−Y log σ(S) − (1 − Y) log(1 − σ(S))]``, computed as
    ``max(S, 0) − Y S + log(1 + e^{−|S|})`` so that |S| of 1e4 stays finite.
    Per element ``∂ℓ/∂σ = (σ − Y) / (σ(1 − σ))`` and ``∂σ/∂S = σ(1 − σ)``: the product is
    ``σ − Y``, the same form as the softmax head.
    """
    N = S.shape[0]
    Y = np.asarray(Y, dtype=S.dtype).reshape(S.shape)
    elementwise = np.maximum(S, 0) - Y * S + np.log1p(np.exp(-np.abs(S)))
    w, w_sum = _row_weights(sample_weight, N, S.dtype)
    loss = float(np.dot(w, elementwise.sum(axis=1))) / w_sum
    dS = (sigmoid(S) - Y) * (w / w_sum)[:, None]
    return loss, dS


def l2_penalty(weights: list[Array], reg: float) -> tuple[float, list[Array]]:
    """``λ/2 Σ_l ‖W_l‖²`` over weight matrices only, and its gradients ``λ W_l``.

    Biases are not penalised. Returns the penalty and one gradient per matrix, each
    shaped like its W.
    """
    penalty = 0.5 * reg * sum(float(np.vdot(W, W)) for W in weights)
    return penalty, [reg * W for W in weights]
