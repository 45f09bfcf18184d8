"""Forward/backward pairs and the losses: the notes' equations as pure functions.

Every ``*_forward`` returns ``(out, cache)``; the matching ``*_backward(dout, cache)``
returns the gradients of the loss with respect to the forward's inputs. Shapes use the
notes' letters: N rows, D input features, H hidden units, C classes or regression
outputs (score columns). Each head's loss returns ``(L, dS)``: its mean loss and
``dS = ∂L/∂S``, which is ``(P − Y)/N`` for all four.

Nothing here holds state, trains, or touches files; this is the reference the fast
engine (:mod:`handgrad.workspace`, with its in-place kernels in
:mod:`handgrad.inplace`) is tested against. The records that name each activation and
head with its forms and formula text are in :mod:`handgrad.heads`.

The functions are written against the array API standard, in the namespace of their
inputs (:func:`handgrad._xp.namespace`): NumPy, or PyTorch, CuPy, array-api-strict
arrays on any device. Where NumPy and the standard differ, a helper of
:mod:`handgrad._xp` takes the difference (NumPy keeps computing what it always has, to
the bit); a loss is a Python float for NumPy, and for another library a 0-d array on
the input's device.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from handgrad._xp import (
    asarray_like,
    device,
    expit,
    multiply_mask,
    namespace,
    ones_like_rows,
    row_dot,
    squared_norm,
    total,
    weighted_sum,
    xlogy,
)

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

    In the notes: ``dW2 = A1ᵀ dS``, ``db2 = Σ_rows dS``, ``dA1 = dS W2ᵀ`` (the L2 term
    ``λW`` is added by :func:`l2_penalty`), and likewise ``dW1 = Xᵀ dZ1``, ``db1 = Σ dZ1``.
    """
    X, W = cache
    return dZ @ W.T, X.T @ dZ, namespace(dZ).sum(dZ, axis=0)


# ---------------------------------------------------------------------- activations
def relu_forward(Z: Array) -> tuple[Array, Cache]:
    """``A = max(Z, 0)``.  Z: (N, H) -> A: (N, H); cache ``(Z,)``."""
    return namespace(Z).maximum(Z, 0), (Z,)


def relu_backward(dA: Array, cache: Cache) -> Array:
    """``dZ = dA ⊙ [Z > 0]`` — the notes' "ismorethan" mask.  dA: (N, H) -> dZ: (N, H)."""
    (Z,) = cache
    return multiply_mask(dA, Z > 0)


def tanh_forward(Z: Array) -> tuple[Array, Cache]:
    """``A = tanh(Z)``.  Z: (N, H) -> A: (N, H); cache ``(A,)``."""
    A = namespace(Z).tanh(Z)
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


# ------------------------------------------------------------------------- the heads
def sigmoid(S: Array) -> Array:
    """``σ(S) = 1 / (1 + e^{−S})`` without overflow for any finite S.  S: (N, C) -> P: (N, C)."""
    return expit(S)


def softmax(S: Array) -> Array:
    """Row-wise ``P_ij = e^{S_ij} / Σ_k e^{S_ik}``, shifted by the row max for stability."""
    xp = namespace(S)
    E = xp.exp(S - xp.max(S, axis=1, keepdims=True))
    return E / xp.sum(E, axis=1, keepdims=True)


def _row_weights(sample_weight: Array | None, S: Array) -> tuple[Array, Any]:
    """Per-row weights ``w`` (N,) and their sum; ``w = 1`` gives the plain mean over N."""
    if sample_weight is None:
        return ones_like_rows(S), float(S.shape[0])
    w = asarray_like(sample_weight, S)
    return w, total(w)


def _targets_like(Y: Any, S: Array) -> Array:
    """Y as S's dtype and shape (a 1-D ``(N,)`` Y is one column)."""
    return namespace(S).reshape(asarray_like(Y, S), S.shape)


def softmax_cross_entropy(
    S: Array, y: NDArray[np.integer], sample_weight: Array | None = None
) -> tuple[float, Array]:
    """Mean softmax cross-entropy and its gradient ``dS = (P − Y) / N``.

    S: (N, C) scores; y: (N,) integer class indices in ``[0, C)``; sample_weight: (N,)
    or None.  Returns ``L = −(1/N) Σ_i log P_{i, y_i}`` (a float; a 0-d array of a
    non-NumPy S's library) and ``dS`` (N, C).

    With weights ``w`` the mean becomes ``Σ_i w_i ℓ_i / Σ_i w_i`` and row i of dS is
    scaled by ``w_i / Σ w`` (``1/N`` when every ``w_i = 1``).

    Why ``P − Y``: the notes' softmax Jacobian ``∂P_j/∂S_k = P_j(δ_jk − P_k)`` times
    ``∂ℓ/∂P_j = −Y_j / P_j`` sums to ``−Y_k + P_k Σ_j Y_j = P_k − Y_k``.
    ``log P`` is computed as ``S − max − log Σ e^{S − max}`` (log-sum-exp), so any
    finite scores give a finite loss, exact in either dtype: no clipping, so that the
    loss and dS belong together (scikit-learn's clipped *reported* loss is the
    estimators' convention: :class:`handgrad.estimator.ReportedLoss`).
    """
    xp = namespace(S)
    shifted = S - xp.max(S, axis=1, keepdims=True)
    log_norm = xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))
    log_P = shifted - log_norm
    w, w_sum = _row_weights(sample_weight, S)
    picked = xp.take_along_axis(log_P, y[:, None], axis=1)[:, 0]  # log P_{i, y_i}
    loss = weighted_sum(w, -picked) / w_sum
    # Y one-hot, Y_ij = [j = y_i] (the standard has no fancy indexing): P − Y is P − 1
    # or P − 0, exactly
    Y = y[:, None] == xp.arange(S.shape[1], dtype=y.dtype, device=device(S))
    dS = xp.exp(log_P) - xp.astype(Y, S.dtype)
    dS *= (w / w_sum)[:, None]  # (P − Y) / N
    return loss, dS


def sigmoid_cross_entropy(
    S: Array, Y: Array, sample_weight: Array | None = None
) -> tuple[float, Array]:
    """Mean sigmoid cross-entropy (the notes' σ head) and ``dS = (σ(S) − Y) / N``.

    S: (N, C) scores; Y: (N, C) 0/1 indicators (C = 1 for a binary problem; a 1-D
    ``(N,)`` Y is taken as one column); sample_weight: (N,) or None.

    ``L = (1/N) Σ_i Σ_c [−Y log σ(S) − (1 − Y) log(1 − σ(S))]``.
    Per element ``∂ℓ/∂σ = (σ − Y) / (σ(1 − σ))`` and ``∂σ/∂S = σ(1 − σ)``: the product is
    ``σ − Y``, the same form as the softmax head.

    ``−log σ(S) = softplus(−S)`` and ``−log(1 − σ(S)) = softplus(S)``, so each term is
    ``softplus(S) − Y S``, computed as ``max(S, 0) − Y S + log(1 + e^{−|S|})``: exact
    and finite for any finite S, in either dtype (no clipping; scikit-learn's clipped
    *reported* loss is :class:`handgrad.estimator.ReportedLoss`).
    """
    xp = namespace(S)
    Y = _targets_like(Y, S)
    elementwise = softplus(S) - Y * S
    w, w_sum = _row_weights(sample_weight, S)
    loss = weighted_sum(w, xp.sum(elementwise, axis=1)) / w_sum
    dS = (sigmoid(S) - Y) * (w / w_sum)[:, None]
    return loss, dS


def softplus(S: Array) -> Array:
    """``log(1 + e^S)`` without overflow: ``max(S, 0) + log(1 + e^{−|S|})``."""
    xp = namespace(S)
    return xp.maximum(S, 0) + xp.log1p(xp.exp(-xp.abs(S)))


def exponential(S: Array) -> Array:
    """``P = e^S``: the log link's predicted means (the Poisson head).  S, P: (N, C)."""
    return namespace(S).exp(S)


def identity(S: Array) -> Array:
    """``P = S``: the identity head's predictions are its scores.  S, P: (N, C)."""
    return S


def squared_error(S: Array, Y: Array, sample_weight: Array | None = None) -> tuple[float, Array]:
    """Half the mean squared error of the identity head and ``dS = (S − Y) / N``.

    S: (N, C) scores, which are the predictions (``P = S``); Y: (N, C) targets (a 1-D
    ``(N,)`` Y is taken as one column); sample_weight: (N,) or None.

    ``L = 1/(2N) Σ_i ‖S_i − Y_i‖²`` (weighted: ``Σ_i w_i ½‖S_i − Y_i‖² / Σ_i w_i``).
    Per row ``∂ℓ/∂S = S − Y``: the same ``P − Y`` as the classification heads. For one
    output this is scikit-learn's ``squared_loss``; for C > 1 scikit-learn reports
    that loss averaged over the outputs as well (``1/(2NC) Σ‖S − Y‖²``) while stepping
    along ``(S − Y)/N``, the gradient of this sum, which is the one derived here.
    """
    Y = _targets_like(Y, S)
    w, w_sum = _row_weights(sample_weight, S)
    dS = S - Y
    loss = 0.5 * weighted_sum(w, row_dot(dS, dS)) / w_sum
    dS *= (w / w_sum)[:, None]
    return loss, dS


def poisson_deviance(S: Array, Y: Array, sample_weight: Array | None = None) -> tuple[float, Array]:
    """Mean half Poisson deviance of the log-link head and ``dS = (e^S − Y) / N``.

    S: (N, C) scores, the logs of the predicted means (``P = e^S``); Y: (N, C)
    non-negative counts or rates (1-D ``(N,)`` is one column); sample_weight: (N,) or None.

    ``L = (1/N) Σ_i Σ_c [Y log(Y / P) − Y + P]`` (``0 log 0 = 0``), scikit-learn's
    ``poisson_loss``; written in S it is ``Y log Y − Y S − Y + e^S``, so
    ``∂ℓ/∂S = −Y + e^S = P − Y`` again.
    """
    xp = namespace(S)
    Y = _targets_like(Y, S)
    w, w_sum = _row_weights(sample_weight, S)
    P = exponential(S)
    elementwise = xlogy(Y, Y) - Y * S - Y + P  # 0 log 0 = 0
    loss = weighted_sum(w, xp.sum(elementwise, axis=1)) / w_sum
    dS = (P - Y) * (w / w_sum)[:, None]
    return loss, dS


def l2_penalty(weights: list[Array], reg: float) -> tuple[float, list[Array]]:
    """``λ/2 Σ_l ‖W_l‖²`` over weight matrices only, and its gradients ``λ W_l``.

    weights: ``[W1 (D, H1), …, WL (H_{L−1}, C)]``; biases are not penalised. Returns the
    penalty and one gradient per matrix, each shaped like its W. The penalty is a float
    for NumPy weights, else a 0-d array on their device; with ``λ = 0`` it is 0.0 and
    no norm is computed (a gradient check calls this once per nudged entry).
    """
    if not reg:
        return 0.0, [0 * W for W in weights]
    penalty = 0.5 * reg * sum(squared_norm(W) for W in weights)
    return penalty, [reg * W for W in weights]


# ---------------------------------------------------------- dropout and normalization
# Beyond the notes, as the course goes on: inverted dropout, batch normalization and
# layer normalization, each a pure pair like the ones above (docs/derivation.md derives
# their backward passes). Randomness comes in from the caller's generator, and running
# statistics go out as new arrays: nothing here keeps state.
def dropout_forward(
    A: Array, rate: float, rng_or_mask: np.random.Generator | Array | None, train: bool
) -> tuple[Array, Cache]:
    """``Ã = A ⊙ M / p`` with ``M ~ Bernoulli(p)``, ``p = 1 − rate`` the keep probability.

    A: (N, H) -> Ã: (N, H); cache ``(M / p,)``. ``rate`` is the *drop* probability
    (PyTorch's ``p``): ``rate=0.2`` zeroes a fifth of the entries and scales the rest by
    ``1/0.8``, so that ``E[Ã] = A`` and predict time needs no rescaling (inverted
    dropout). M is drawn as ``U < p``, U uniform from ``rng_or_mask`` when it is a
    ``numpy.random.Generator`` (the run's, so that a resumed run draws the same masks;
    on the host, then moved to A's device), or ``rng_or_mask`` is M itself, (N, H) of
    0/1 or bools in A's namespace. When not ``train``, or with ``rate=0``, Ã = A and the
    generator is not drawn from.
    """
    if not 0 <= rate < 1:
        raise ValueError(f"rate must be a drop probability in [0, 1), got {rate!r}")
    if not train or rate == 0:
        return A, (1,)
    p = 1 - rate
    if isinstance(rng_or_mask, np.random.Generator):
        xp = namespace(A)
        M = xp.asarray(rng_or_mask.random(A.shape) < p, device=device(A))
    elif rng_or_mask is None:
        raise ValueError("dropout in training needs a numpy.random.Generator or a mask, got None")
    else:
        if tuple(rng_or_mask.shape) != tuple(A.shape):
            raise ValueError(
                f"the dropout mask has shape {tuple(rng_or_mask.shape)}, "
                f"but A has shape {tuple(A.shape)}"
            )
        xp, M = namespace(A, rng_or_mask), rng_or_mask
    scale = xp.astype(M, A.dtype) / p
    return A * scale, (scale,)


def dropout_backward(dout: Array, cache: Cache) -> Array:
    """``dA = dÃ ⊙ M / p``: a dropped entry passes no gradient.  dÃ: (N, H) -> dA: (N, H)."""
    (scale,) = cache
    return dout * scale


class NormCache(NamedTuple):
    """What a normalization's backward needs from its forward.

    ``x_hat`` (N, H) the normalized input; ``gamma`` (H,); ``inv_std`` the
    ``(σ² + ε)^(−1/2)`` it divided by, (H,) for batch norm and (N, 1) for layer norm;
    ``train``: whether the statistics were the batch's own (batch norm in eval mode
    divides by constants).
    """

    x_hat: Array
    gamma: Array
    inv_std: Array
    train: bool = True


def _standardize(x: Array, axis: int, eps: float) -> tuple[Array, Array, Array, Array]:
    """``x̂ = (x − μ)/√(σ² + ε)`` with μ, σ² (biased) taken along ``axis``.

    Returns ``(x̂, (σ² + ε)^(−1/2), μ, σ²)``, the statistics kept as a dimension of
    length 1 along ``axis``.
    """
    xp = namespace(x)
    mu = xp.mean(x, axis=axis, keepdims=True)
    var = xp.var(x, axis=axis, keepdims=True)
    inv_std = 1 / xp.sqrt(var + eps)
    return (x - mu) * inv_std, inv_std, mu, var


def batchnorm_running_update(
    running_mean: Array,
    running_var: Array,
    mu: Array,
    var: Array,
    N: int,
    momentum: float,
) -> tuple[Array, Array]:
    """``r' = (1 − m) r + m b`` for the mean and the variance, as new arrays.

    running_mean, running_var, mu, var: (H,); ``var`` is the batch's biased σ²_B, and
    the running variance takes the unbiased ``σ²_B N/(N − 1)``, as PyTorch's
    ``nn.BatchNorm1d`` does (``momentum`` is its ``momentum``, the weight of the batch).
    """
    return (
        (1 - momentum) * running_mean + momentum * mu,
        (1 - momentum) * running_var + momentum * (var * (N / (N - 1))),
    )


def batchnorm_forward(
    x: Array,
    gamma: Array,
    beta: Array,
    running_mean: Array,
    running_var: Array,
    train: bool,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> tuple[Array, Cache, tuple[Array, Array]]:
    """``y = γ x̂ + β``, ``x̂ = (x − μ_B)/√(σ²_B + ε)``, μ_B and σ²_B over the N rows.

    x: (N, H), a layer's N rows of H features (its Z); gamma, beta, running_mean,
    running_var: (H,)  ->  y: (N, H), cache :class:`NormCache`, and the running
    ``(mean, var)`` for predict time.

    In ``train`` mode each column is standardized by its batch mean and biased variance,
    and the running statistics move towards them by
    :func:`batchnorm_running_update` (new arrays; the caller's are not changed). Out of
    ``train`` mode the running statistics take their place and are returned as given.
    The defaults are ``nn.BatchNorm1d``'s. Training needs N ≥ 2: one row has no
    variance (PyTorch refuses it too).
    """
    if not train:  # predict time: the running statistics are constants
        inv_std = 1 / namespace(x).sqrt(running_var + eps)
        x_hat = (x - running_mean) * inv_std
        cache = NormCache(x_hat, gamma, inv_std, False)
        return gamma * x_hat + beta, cache, (running_mean, running_var)
    N = x.shape[0]
    if N < 2:
        raise ValueError(f"batch normalization needs at least 2 rows to train, but x has {N}")
    x_hat, inv_std, mu, var = _standardize(x, 0, eps)
    running = batchnorm_running_update(running_mean, running_var, mu[0, :], var[0, :], N, momentum)
    return gamma * x_hat + beta, NormCache(x_hat, gamma, inv_std[0, :], True), running


def batchnorm_backward(dy: Array, cache: Cache) -> tuple[Array, Array, Array]:
    """``dx = (1/N) γ (σ²_B + ε)^(−1/2) (N dy − Σ dy − x̂ Σ(dy ⊙ x̂))``, sums over rows.

    dy: (N, H)  ->  dx (N, H), ``dγ = Σ_rows dy ⊙ x̂`` (H,), ``dβ = Σ_rows dy`` (H,).
    The two sums in dx are dβ and dγ. In eval mode μ and σ² are constants, so
    ``dx = γ (σ² + ε)^(−1/2) dy``.
    """
    x_hat, gamma, inv_std, train = cache
    xp = namespace(dy)
    dbeta = xp.sum(dy, axis=0)
    dgamma = xp.sum(dy * x_hat, axis=0)
    if not train:
        return (gamma * inv_std) * dy, dgamma, dbeta
    N = dy.shape[0]
    dx = (gamma * inv_std / N) * (N * dy - dbeta - x_hat * dgamma)
    return dx, dgamma, dbeta


def layernorm_forward(
    x: Array, gamma: Array, beta: Array, eps: float = 1e-5
) -> tuple[Array, Cache]:
    """``y = γ x̂ + β``, ``x̂ = (x − μ_i)/√(σ²_i + ε)``, μ_i and σ²_i over row i's H features.

    x: (N, H); gamma, beta: (H,)  ->  y: (N, H); cache :class:`NormCache` (inv_std
    (N, 1)). Each row is standardized by its own statistics, so training and predict
    time compute the same thing and no running statistics are kept. The default ε is
    ``nn.LayerNorm``'s.
    """
    x_hat, inv_std, _, _ = _standardize(x, 1, eps)
    return gamma * x_hat + beta, NormCache(x_hat, gamma, inv_std)


def layernorm_backward(dy: Array, cache: Cache) -> tuple[Array, Array, Array]:
    """``dx = (1/H) (σ²_i + ε)^(−1/2) (H dx̂ − Σ dx̂ − x̂ Σ(dx̂ ⊙ x̂))``, ``dx̂ = γ ⊙ dy``.

    dy: (N, H)  ->  dx (N, H) (its sums over each row's features), ``dγ = Σ_rows dy ⊙ x̂``
    (H,), ``dβ = Σ_rows dy`` (H,). Batch norm's form along the other axis; γ stays
    inside the sums, as it varies along them here.
    """
    x_hat, gamma, inv_std, _ = cache
    xp = namespace(dy)
    H = dy.shape[1]
    dx_hat = dy * gamma
    sum_dx_hat = xp.sum(dx_hat, axis=1, keepdims=True)
    sum_dx_hat_x_hat = xp.sum(dx_hat * x_hat, axis=1, keepdims=True)
    dx = (inv_std / H) * (H * dx_hat - sum_dx_hat - x_hat * sum_dx_hat_x_hat)
    return dx, xp.sum(dy * x_hat, axis=0), xp.sum(dy, axis=0)
