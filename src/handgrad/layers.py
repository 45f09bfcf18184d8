"""Forward/backward pairs and the two losses: the notes' equations as pure functions.

Every ``*_forward`` returns ``(out, cache)``; the matching ``*_backward(dout, cache)``
returns the gradients of the loss with respect to the forward's inputs. Shapes use the
notes' letters: N rows, D input features, H hidden units, C classes or regression
outputs (score columns).

Beside each pair sits its in-place form (name ending in ``_``), which writes its result
over its input or into buffers it is given: the same equation, for the fast path in
:mod:`handgrad.workspace`. :data:`ACTIVATIONS` and :data:`HEADS` hold one record per
activation and per head with all of its forms and its formula text; everything else
(the network, the workspace, ``explain``) looks them up there, so adding one is
editing this file only.

Nothing here holds state, trains, or touches files. The reference functions are what
the fast path is tested against. They are written against the array API standard, in
the namespace of their inputs (:func:`handgrad._xp.namespace`): NumPy, or PyTorch,
CuPy, array-api-strict arrays on any device. For NumPy input they compute what they
always have, to the bit (SciPy's ``expit``/``xlogy`` and ``np.dot`` stay there); a
loss is then a Python float, and for another library a 0-d array on the input's
device, so that a training step brings one number back to the host, not one per term.
The in-place forms are NumPy's only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import scipy.special
from numpy.typing import NDArray

from handgrad._validation import check_class_indices, check_indicators, check_target_matrix
from handgrad._xp import device, namespace

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
    if isinstance(dA, np.ndarray):
        return dA * (Z > 0)
    return dA * namespace(dA).astype(Z > 0, dA.dtype)  # the standard multiplies no bools


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


# ------------------------------------------------------------- in-place activations
def relu_(Z: Array, D: Array | None = None) -> Array:
    """``A = max(Z, 0)`` over Z; with D, also ``D = [Z > 0]``.  Z, D: (n, H).

    With D, ``A = Z ⊙ D`` (a NaN stays NaN); without, ``max(Z, 0)`` in one pass.
    """
    if D is None:
        return np.maximum(Z, 0, out=Z)
    np.greater(Z, 0, out=D)
    Z *= D
    return Z


def tanh_(Z: Array, D: Array | None = None) -> Array:
    """``A = tanh(Z)`` over Z; with D, also ``D = 1 − A²``.  Z, D: (n, H)."""
    np.tanh(Z, out=Z)
    if D is not None:
        np.multiply(Z, Z, out=D)
        np.subtract(1, D, out=D)
    return Z


def logistic_(Z: Array, D: Array | None = None) -> Array:
    """``A = σ(Z)`` over Z; with D, also ``D = A (1 − A)``.  Z, D: (n, H)."""
    scipy.special.expit(Z, out=Z)
    if D is not None:
        np.subtract(1, Z, out=D)
        D *= Z
    return Z


def identity_(Z: Array, D: Array | None = None) -> Array:
    """``A = Z``; D is not written (``act' = 1``).  Z: (n, H)."""
    return Z


Forward = Callable[[Array], tuple[Array, Cache]]
Backward = Callable[[Array, Cache], Array]
InPlace = Callable[[Array, Array | None], Array]


@dataclass(frozen=True)
class Activation:
    """One hidden activation in every form the library uses.

    ``forward``/``backward`` are the reference pair. ``forward_(Z, D)`` writes
    ``A = act(Z)`` over Z and, with D given, ``D = act'(Z)``, so that the backward pass
    is ``dZ = dA ⊙ D``; ``needs_derivative`` is False where ``act' = 1`` (no D to keep).
    ``formula`` and ``backward_formula`` are the text ``explain`` prints, with ``{Z}``,
    ``{A}`` and ``{dA}`` standing for the layer's symbols. ``glorot_factor`` is the
    numerator of scikit-learn's uniform bound ``sqrt(factor / (fan_in + fan_out))``.
    """

    name: str
    forward: Forward
    backward: Backward
    forward_: InPlace
    needs_derivative: bool
    formula: str
    backward_formula: str
    glorot_factor: float = 6.0


#: Hidden-layer activations by scikit-learn's names.
ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation(
            "relu",
            relu_forward,
            relu_backward,
            relu_,
            needs_derivative=True,
            formula="ReLU({Z}) = max(0, {Z})",
            backward_formula="{dA} ⊙ [{Z} > 0]",
        ),
        Activation(
            "tanh",
            tanh_forward,
            tanh_backward,
            tanh_,
            needs_derivative=True,
            formula="tanh({Z})",
            backward_formula="{dA} ⊙ (1 − {A}²)",
        ),
        Activation(
            "logistic",
            logistic_forward,
            logistic_backward,
            logistic_,
            needs_derivative=True,
            formula="σ({Z}) = 1 / (1 + e^(−{Z}))",
            backward_formula="{dA} ⊙ {A} ⊙ (1 − {A})",
            glorot_factor=2.0,
        ),
        Activation(
            "identity",
            identity_forward,
            identity_backward,
            identity_,
            needs_derivative=False,
            formula="{Z}",
            backward_formula="{dA}",
        ),
    )
}


# ------------------------------------------------------------------------- the heads
def sigmoid(S: Array) -> Array:
    """``σ(S)`` without overflow for any finite S (exp is only taken of ``−|S|``)."""
    xp = namespace(S)
    E = xp.exp(-xp.abs(S))
    return xp.where(S >= 0, 1 / (1 + E), E / (1 + E))


def softmax(S: Array) -> Array:
    """Row-wise ``P_ij = e^{S_ij} / Σ_k e^{S_ik}``, shifted by the row max for stability."""
    xp = namespace(S)
    E = xp.exp(S - xp.max(S, axis=1, keepdims=True))
    return E / xp.sum(E, axis=1, keepdims=True)


def _row_weights(sample_weight: Array | None, S: Array) -> tuple[Array, Any]:
    """Per-row weights ``w`` (N,) and their sum; ``w = 1`` gives the plain mean over N.

    The sum is a float for NumPy, a 0-d array on S's device otherwise (not brought back).
    """
    N, xp = S.shape[0], namespace(S)
    if xp is np:
        if sample_weight is None:
            return np.ones(N, dtype=S.dtype), float(N)
        w = np.asarray(sample_weight, dtype=S.dtype)
        return w, float(w.sum())
    if sample_weight is None:
        return xp.ones(N, dtype=S.dtype, device=device(S)), float(N)
    w = xp.astype(sample_weight, S.dtype, copy=False)
    return w, xp.sum(w)


def _weighted_sum(w: Array, losses: Array) -> Any:
    """``Σ_i w_i ℓ_i``: a float by ``np.dot`` for NumPy, a 0-d array otherwise."""
    if isinstance(losses, np.ndarray):
        return float(np.dot(w, losses))
    return namespace(losses).vecdot(w, losses)


def _targets_like(Y: Any, S: Array) -> Array:
    """Y as S's dtype and shape (a 1-D ``(N,)`` Y is one column)."""
    xp = namespace(S)
    if xp is np:
        return np.asarray(Y, dtype=S.dtype).reshape(S.shape)
    return xp.reshape(xp.astype(Y, S.dtype, copy=False), S.shape)


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
    loss = _weighted_sum(w, -picked) / w_sum
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
    loss = _weighted_sum(w, xp.sum(elementwise, axis=1)) / w_sum
    dS = (sigmoid(S) - Y) * (w / w_sum)[:, None]
    return loss, dS


def softplus(S: Array) -> Array:
    """``log(1 + e^S)`` without overflow: ``max(S, 0) + log(1 + e^{−|S|})``."""
    xp = namespace(S)
    return xp.maximum(S, 0) + xp.log1p(xp.exp(-xp.abs(S)))


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
    xp = namespace(S)
    Y = _targets_like(Y, S)
    w, w_sum = _row_weights(sample_weight, S)
    dS = S - Y
    row_sums = np.einsum("ij,ij->i", dS, dS) if xp is np else xp.vecdot(dS, dS, axis=-1)
    loss = 0.5 * _weighted_sum(w, row_sums) / w_sum
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
    P = xp.exp(S)
    elementwise = _xlogx(Y) - Y * S - Y + P
    loss = _weighted_sum(w, xp.sum(elementwise, axis=1)) / w_sum
    dS = (P - Y) * (w / w_sum)[:, None]
    return loss, dS


def _xlogx(Y: Array) -> Array:
    """``Y log Y`` with ``0 log 0 = 0``: SciPy's ``xlogy`` for NumPy."""
    xp = namespace(Y)
    if xp is np:
        return scipy.special.xlogy(Y, Y)
    positive = Y > 0
    return xp.where(positive, Y * xp.log(xp.where(positive, Y, 1.0)), 0.0)


def l2_penalty(weights: list[Array], reg: float) -> tuple[float, list[Array]]:
    """``λ/2 Σ_l ‖W_l‖²`` over weight matrices only, and its gradients ``λ W_l``.

    Biases are not penalised. Returns the penalty and one gradient per matrix, each
    shaped like its W. The penalty is a float for NumPy weights, else a 0-d array on
    their device.
    """
    xp = namespace(*weights)
    if xp is np:
        penalty = 0.5 * reg * sum(float(np.vdot(W, W)) for W in weights)
    else:
        penalty = 0.5 * reg * sum(xp.sum(W * W) for W in weights)
    return penalty, [reg * W for W in weights]


# ------------------------------------------------------------ in-place heads
def softmax_(S: Array) -> Array:
    """Row-wise softmax of S (N, C) written over S, shifted by the row max."""
    S -= S.max(axis=1, keepdims=True)
    np.exp(S, out=S)
    S /= S.sum(axis=1, keepdims=True)
    return S


def sigmoid_(S: Array) -> Array:
    """``σ(S)`` element-wise, written over S (N, C)."""
    return scipy.special.expit(S, out=S)


class HeadBuffers(NamedTuple):
    """Scratch arrays an in-place head loss may use, for batches of at most ``rows`` rows.

    Made once per workspace by :func:`head_buffers`; a loss uses the first n entries.
    """

    ones_C: Array  # (C,) ones: row sums as a product
    row_starts: NDArray[np.intp]  # (rows,) i·C, the flat index of row i's first entry
    flat: NDArray[np.intp]  # (rows,) flat indices
    m: Array  # (rows,) each
    total: Array
    picked: Array
    labels: NDArray[np.intp]  # (rows,) each row's predicted class (the softmax loss's)


def head_buffers(rows: int, C: int, dtype: np.dtype) -> HeadBuffers:
    """Empty :class:`HeadBuffers` for batches of at most ``rows`` rows and C columns."""
    m, total, picked = np.empty((3, rows), dtype)
    return HeadBuffers(
        np.ones(C, dtype),
        np.arange(rows) * C,
        np.empty(rows, np.intp),
        m,
        total,
        picked,
        np.empty(rows, np.intp),
    )


def softmax_cross_entropy_(
    S: Array, y: NDArray[np.integer], c: float | Array, dS: Array, buf: HeadBuffers
) -> Array:
    """Per-row ``ℓ_i = log Σ_k e^{S_ik − m_i} − (S_iy − m_i)`` (m_i the row max), and
    ``dS = (P − Y) c`` written into dS, with ``P = e^{S − m} / Σ_k e^{S_k − m}``.

    S, dS: (n, C); y: (n,) class indices; c: each row's share of the mean (``1/n``, or
    (n,) ``w_i / Σ w``). Returns ℓ (n,), a view of ``buf``. The row max comes from
    ``argmax`` (a cheaper reduction than ``max`` over short rows), kept in
    ``buf.labels`` as the predicted classes (a running accuracy reads them there); the
    row sums from a product with ones. ℓ is exact, as in :func:`softmax_cross_entropy`.
    """
    n = S.shape[0]
    flat, starts, labels = buf.flat[:n], buf.row_starts[:n], buf.labels[:n]
    m, total, picked = buf.m[:n], buf.total[:n], buf.picked[:n]
    S.argmax(axis=1, out=labels)  # the method: np.argmax's wrapper costs more per call
    np.add(labels, starts, out=flat)
    S.take(flat, out=m)  # m_i; the method, not np.take: its wrapper costs more per call
    np.subtract(S, m[:, None], out=dS)
    np.exp(dS, out=dS)  # e^{S − m}
    np.matmul(dS, buf.ones_C, out=total)  # Σ_k e^{S_ik − m_i}
    np.add(y, starts, out=flat)  # (i, y_i)
    S.take(flat, out=picked)
    picked -= m  # S_iy − m_i
    dS *= np.divide(c, total, out=m)[:, None]  # P c
    dS.reshape(-1)[flat] -= c  # (P − Y) c
    losses = np.log(total, out=total)
    losses -= picked
    return losses


def sigmoid_cross_entropy_(
    S: Array, Y: Array, c: float | Array, dS: Array, buf: HeadBuffers
) -> Array:
    """Per-row ``ℓ_i = −Σ_c [Y log P + (1 − Y) log(1 − P)]`` with P = σ(S), and
    ``dS = (P − Y) c`` into dS.

    S, dS, Y: (n, C); c as in :func:`softmax_cross_entropy_`. Returns ℓ (n,), each term
    ``softplus(S) − Y S`` as in :func:`sigmoid_cross_entropy` (exact, no clipping).
    """
    elementwise = np.abs(S)
    np.negative(elementwise, out=elementwise)
    np.exp(elementwise, out=elementwise)
    np.log1p(elementwise, out=elementwise)  # log(1 + e^{−|S|})
    elementwise += np.maximum(S, 0)
    elementwise -= Y * S  # softplus(S) − Y S
    losses = elementwise.sum(axis=1)
    scipy.special.expit(S, out=dS)  # P
    dS -= Y
    dS *= c[:, None] if isinstance(c, np.ndarray) else c
    return losses


def squared_error_(S: Array, Y: Array, c: float | Array, dS: Array, buf: HeadBuffers) -> Array:
    """Per-row ``ℓ_i = ½ ‖S_i − Y_i‖²``, and ``dS = (S − Y) c`` into dS.

    S, dS, Y: (n, C); c as in :func:`softmax_cross_entropy_`. Returns ℓ (n,), a view
    of ``buf``.
    """
    losses = buf.total[: S.shape[0]]
    np.subtract(S, Y, out=dS)
    np.einsum("ij,ij->i", dS, dS, out=losses)
    losses *= 0.5
    dS *= c[:, None] if isinstance(c, np.ndarray) else c
    return losses


def poisson_deviance_(S: Array, Y: Array, c: float | Array, dS: Array, buf: HeadBuffers) -> Array:
    """Per-row ``ℓ_i = Σ_c Y log Y − Y S − Y + e^S``, and ``dS = (e^S − Y) c`` into dS.

    S, dS, Y: (n, C); c as in :func:`softmax_cross_entropy_`. Returns ℓ (n,), a view
    of ``buf``.
    """
    n = S.shape[0]
    losses, picked = buf.total[:n], buf.picked[:n]
    np.exp(S, out=dS)  # P = e^S
    np.matmul(dS, buf.ones_C, out=losses)  # Σ_c P
    np.einsum("ij,ij->i", Y, S, out=picked)  # Σ_c Y S
    losses -= picked
    (scipy.special.xlogy(Y, Y) - Y).sum(axis=1, out=picked)  # Σ_c Y log Y − Y
    losses += picked
    dS -= Y
    dS *= c[:, None] if isinstance(c, np.ndarray) else c
    return losses


def _softmax_labels(S: Array) -> NDArray[np.intp]:
    return namespace(S).argmax(S, axis=1)  # the highest score is the likeliest class


def _sigmoid_labels(S: Array) -> NDArray[np.intp]:
    xp = namespace(S)
    if xp is np:
        labels = (sigmoid_(S) > 0.5).astype(np.intp)
    else:
        labels = xp.astype(sigmoid(S) > 0.5, xp.int64)
    return xp.reshape(labels, (-1,)) if labels.shape[1] == 1 else labels


def _softmax_right_rows(S: Array, y: NDArray) -> NDArray[np.bool_]:
    return namespace(S).argmax(S, axis=1) == y


def _sigmoid_right_rows(S: Array, Y: NDArray) -> NDArray[np.bool_]:
    return namespace(S).all((S > 0) == (Y > 0.5), axis=1)


def _predictions(S: Array) -> Array:
    return S  # the identity head predicts its scores


def _poisson_predictions(S: Array) -> Array:
    return np.exp(S, out=S)  # the log link's mean e^S, over S


def _poisson_means(S: Array) -> Array:
    return namespace(S).exp(S)  # the log link's mean e^S


def _values(
    predict_: Callable[[Array], Array], predict: Callable[[Array], Array]
) -> Callable[[Array], NDArray]:
    """A regression head's ``labels``: its predictions (in place over a NumPy S, by the
    reference otherwise), one column as (N,)."""

    def labels(S: Array) -> NDArray:
        xp = namespace(S)
        P = predict_(S) if xp is np else predict(S)
        return xp.reshape(P, (-1,)) if P.shape[1] == 1 else P

    return labels


def _real_targets(y: Any, n_samples: int, C: int, dtype: np.dtype, *, low: float | None = None):
    """y as an (N, C) matrix of finite real targets (``>= low`` where given)."""
    arr = check_target_matrix(y, n_samples, C, "matrix of targets for this regression head")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"y must hold numbers for a regression head, but its dtype is {arr.dtype}")
    arr = arr.astype(dtype)
    if not np.isfinite(arr).all():
        raise ValueError("y must be finite for a regression head (NaN or infinity found)")
    if low is not None and (arr < low).any():
        raise ValueError(
            "y must be non-negative for the poisson head (counts or rates), but has "
            f"{arr[arr < low].ravel()[0]!r}"
        )
    return arr


def _count_targets(y: Any, n_samples: int, C: int, dtype: np.dtype) -> NDArray:
    return _real_targets(y, n_samples, C, dtype, low=0.0)


def _random_reals(rng: np.random.Generator, n: int, C: int) -> NDArray:
    return rng.standard_normal((n, C))


def _random_counts(rng: np.random.Generator, n: int, C: int) -> NDArray:
    return rng.poisson(2.0, size=(n, C)).astype(float)


def _class_indices(y: Any, n_samples: int, C: int, dtype: np.dtype) -> NDArray:
    return check_class_indices(y, n_samples, C)


def _random_class_indices(rng: np.random.Generator, n: int, C: int) -> NDArray:
    return rng.integers(0, C, size=n)


def _random_indicators(rng: np.random.Generator, n: int, C: int) -> NDArray:
    return rng.integers(0, 2, size=(n, C))


@dataclass(frozen=True)
class Head:
    """One output head (the last layer's non-linearity and its loss) in every form.

    ``loss(S, T, sample_weight) -> (L, dS)`` is the reference; ``loss_(S, T, c, dS,
    buf) -> ℓ (n,)`` the in-place form (see :func:`softmax_cross_entropy_`).
    ``probabilities_(S)`` writes P over a NumPy S, and ``probabilities(S)`` is its
    reference (a new array, in S's namespace); ``labels(S)`` predicts from scores (S may be
    overwritten); ``right_rows(S, T)`` marks rows predicted exactly right.
    ``encode_targets(y, n_samples, C, dtype)`` checks y and returns the targets T the
    losses take; ``random_targets(rng, n, C)`` draws valid ones (for gradient checks).
    ``min_outputs`` is the smallest C the head accepts. The ``*_formula`` texts are
    what ``explain`` prints; ``targets_text`` names the form of Y. ``score`` names how
    held-out data is scored (``"accuracy"``, or ``"r2"`` for a regression head).

    A head for regression takes the same fields: squared error on the identity
    (``P = S``) or Poisson (``P = e^S``) also give ``dS = (P − Y)/N``. Its
    ``probabilities_`` writes the predictions P, ``labels`` returns them ((N,) for one
    output), and ``right_rows`` is None: no row is "exactly right", so training
    records no running accuracy.
    """

    name: str
    loss: Callable[..., tuple[float, Array]]
    loss_: Callable[..., Array]
    probabilities_: Callable[[Array], Array]
    labels: Callable[[Array], NDArray]
    right_rows: Callable[[Array, NDArray], NDArray[np.bool_]] | None
    encode_targets: Callable[[Any, int, int, np.dtype], NDArray]
    random_targets: Callable[[np.random.Generator, int, int], NDArray]
    min_outputs: int
    probabilities_formula: str
    loss_formula: str
    gradient_formula: str
    targets_text: str
    score: str = "accuracy"
    probabilities: Callable[[Array], Array] = _predictions


#: Output heads by name: softmax (one label per row) and sigmoid (binary or multi-label)
#: for classification; identity (squared error) and poisson (log link) for regression.
HEADS: dict[str, Head] = {
    h.name: h
    for h in (
        Head(
            "softmax",
            softmax_cross_entropy,
            softmax_cross_entropy_,
            softmax_,
            _softmax_labels,
            _softmax_right_rows,
            _class_indices,
            _random_class_indices,
            min_outputs=2,
            probabilities_formula="P = softmax(S), row-wise e^S / Σ_cols e^S",
            loss_formula="−(1/N) Σ_i log P[i, y_i]",
            gradient_formula="dS = (P − Y)/N",
            targets_text="one-hot",
            probabilities=softmax,
        ),
        Head(
            "sigmoid",
            sigmoid_cross_entropy,
            sigmoid_cross_entropy_,
            sigmoid_,
            _sigmoid_labels,
            _sigmoid_right_rows,
            check_indicators,
            _random_indicators,
            min_outputs=1,
            probabilities_formula="P = σ(S) = 1 / (1 + e^(−S))",
            loss_formula="−(1/N) Σ_i Σ_c [Y log P + (1 − Y) log(1 − P)]",
            gradient_formula="dS = (P − Y)/N",
            targets_text="0/1",
            probabilities=sigmoid,
        ),
        Head(
            "identity",
            squared_error,
            squared_error_,
            _predictions,
            _values(_predictions, _predictions),
            None,
            _real_targets,
            _random_reals,
            min_outputs=1,
            probabilities_formula="P = S (identity: the scores are the predictions)",
            loss_formula="(1/2N) Σ_i ‖P_i − Y_i‖²",
            gradient_formula="dS = (P − Y)/N",
            targets_text="real",
            score="r2",
        ),
        Head(
            "poisson",
            poisson_deviance,
            poisson_deviance_,
            _poisson_predictions,
            _values(_poisson_predictions, _poisson_means),
            None,
            _count_targets,
            _random_counts,
            min_outputs=1,
            probabilities_formula="P = e^S (log link: the predicted means)",
            loss_formula="(1/N) Σ_i Σ_c [Y log(Y/P) − Y + P]",
            gradient_formula="dS = (P − Y)/N",
            targets_text="count (≥ 0)",
            score="r2",
            probabilities=_poisson_means,
        ),
    )
}


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
