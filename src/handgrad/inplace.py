"""The NumPy in-place kernels of the fast engine (:mod:`handgrad.workspace`).

Each is the same equation as its reference in :mod:`handgrad.layers`, written over its
input or into buffers it is given, so that a training step allocates nothing that grows
with the batch: an activation's ``forward_(Z, D)`` writes ``A = act(Z)`` over Z and, with
D given, ``D = act'(Z)`` (the backward pass is then ``dZ = dA ⊙ D``); a head's
``loss_(S, T, c, dS, buf)`` returns the per-row losses ℓ (n,) and writes ``dS = (P − Y) c``.
The records of :mod:`handgrad.heads` name them beside their references; the tests hold
each to its reference (1e-12 in float64). NumPy arrays only.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.special
from numpy.typing import NDArray

Array = NDArray[np.floating]


# ------------------------------------------------------------------- activations
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


# ------------------------------------------------------------------------- links
def softmax_(S: Array) -> Array:
    """Row-wise softmax of S (N, C) written over S, shifted by the row max."""
    S -= S.max(axis=1, keepdims=True)
    np.exp(S, out=S)
    S /= S.sum(axis=1, keepdims=True)
    return S


def sigmoid_(S: Array) -> Array:
    """``σ(S)`` element-wise, written over S (N, C)."""
    return scipy.special.expit(S, out=S)


def exp_(S: Array) -> Array:
    """``P = e^S`` (the log link's mean), written over S (N, C)."""
    return np.exp(S, out=S)


def identity_link_(S: Array) -> Array:
    """``P = S``: the identity head predicts its scores."""
    return S


# ------------------------------------------------------------------------- losses
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


def _per_row(c: float | Array) -> float | Array:
    """c as a factor of an (n, C) array: a scalar as it is, an (n,) vector as a column."""
    return c[:, None] if getattr(c, "ndim", 0) else c


def softmax_cross_entropy_(
    S: Array, y: NDArray[np.integer], c: float | Array, dS: Array, buf: HeadBuffers
) -> Array:
    """Per-row ``ℓ_i = log Σ_k e^{S_ik − m_i} − (S_iy − m_i)`` (m_i the row max), and
    ``dS = (P − Y) c`` written into dS, with ``P = e^{S − m} / Σ_k e^{S_k − m}``.

    S, dS: (n, C); y: (n,) class indices; c: each row's share of the mean (``1/n``, or
    (n,) ``w_i / Σ w``). Returns ℓ (n,), a view of ``buf``. The row max comes from
    ``argmax`` (a cheaper reduction than ``max`` over short rows), kept in
    ``buf.labels`` as the predicted classes (a running accuracy reads them there); the
    row sums from a product with ones. ℓ is exact, as in
    :func:`handgrad.layers.softmax_cross_entropy`.
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
    ``softplus(S) − Y S`` as in :func:`handgrad.layers.sigmoid_cross_entropy` (exact, no
    clipping).
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
    dS *= _per_row(c)
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
    dS *= _per_row(c)
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
    dS *= _per_row(c)
    return losses


# ------------------------------------------------- normalizations and dropout
def batchnorm_(
    Z: Array,
    gamma: Array,
    beta: Array,
    x_hat: Array,
    sq: Array,
    running: tuple[Array, Array],
    train: bool,
    eps: float,
) -> tuple[Array, Array, Array]:
    """``Y = γ x̂ + β`` over Z, ``x̂ = (Z − μ_B)/√(σ²_B + ε)`` into x_hat.  Z, x_hat, sq:
    (n, H); γ, β and the running ``(mean, var)``: (H,).

    Returns ``((σ²+ε)^(−1/2), μ_B, σ²_B)``, (H,) each; out of ``train`` the running
    statistics are μ and σ² (returned as given). sq is scratch.
    """
    if train:
        mu = Z.mean(axis=0)
        np.subtract(Z, mu, out=x_hat)
        np.multiply(x_hat, x_hat, out=sq)
        var = sq.mean(axis=0)
    else:
        mu, var = running
        np.subtract(Z, mu, out=x_hat)
    inv_std = 1 / np.sqrt(var + eps)
    x_hat *= inv_std
    np.multiply(gamma, x_hat, out=Z)
    Z += beta
    return inv_std, mu, var


def batchnorm_backward_(
    dY: Array,
    x_hat: Array,
    gamma: Array,
    inv_std: Array,
    train: bool,
    dgamma: Array,
    dbeta: Array,
    sq: Array,
) -> Array:
    """``dZ = (1/n) γ (σ²+ε)^(−1/2) (n dY − Σ dY − x̂ Σ dY ⊙ x̂)`` over dY; ``dγ``, ``dβ``
    (H,) into theirs.  dY, x_hat, sq: (n, H). Out of ``train``: ``dZ = γ (σ²+ε)^(−1/2) dY``."""
    np.sum(dY, axis=0, out=dbeta)
    np.multiply(dY, x_hat, out=sq)
    np.sum(sq, axis=0, out=dgamma)
    if not train:
        dY *= gamma * inv_std
        return dY
    n = dY.shape[0]
    dY *= n
    dY -= dbeta
    np.multiply(x_hat, dgamma, out=sq)
    dY -= sq
    dY *= gamma * inv_std / n
    return dY


class RowBuffers(NamedTuple):
    """Layer norm's per-row scratch, (n, 1) each: μ_i (then Σ dx̂), σ²_i (then
    Σ dx̂ ⊙ x̂) and ``(σ²_i + ε)^(−1/2)``."""

    first: Array
    second: Array
    inv_std: Array


def layernorm_(
    Z: Array, gamma: Array, beta: Array, x_hat: Array, sq: Array, rows: RowBuffers, eps: float
) -> None:
    """``Y = γ x̂ + β`` over Z, ``x̂ = (Z − μ_i)/√(σ²_i + ε)`` into x_hat, each row by its
    own statistics.  Z, x_hat, sq: (n, H); γ, β: (H,); ``rows.inv_std`` keeps
    ``(σ²_i + ε)^(−1/2)`` (n, 1) for the backward pass."""
    mu, var, inv_std = rows
    np.mean(Z, axis=1, keepdims=True, out=mu)
    np.subtract(Z, mu, out=x_hat)
    np.multiply(x_hat, x_hat, out=sq)
    np.mean(sq, axis=1, keepdims=True, out=var)
    np.add(var, eps, out=inv_std)
    np.sqrt(inv_std, out=inv_std)
    np.divide(1, inv_std, out=inv_std)
    x_hat *= inv_std
    np.multiply(gamma, x_hat, out=Z)
    Z += beta


def layernorm_backward_(
    dY: Array,
    x_hat: Array,
    gamma: Array,
    rows: RowBuffers,
    dgamma: Array,
    dbeta: Array,
    sq: Array,
) -> Array:
    """``dZ = (1/H) (σ²_i+ε)^(−1/2) (H dx̂ − Σ dx̂ − x̂ Σ dx̂ ⊙ x̂)``, ``dx̂ = γ ⊙ dY``, over
    dY; ``dγ``, ``dβ`` (H,) into theirs.  dY, x_hat, sq: (n, H)."""
    sum_dx_hat, sum_dx_hat_x_hat, inv_std = rows
    H = dY.shape[1]
    np.sum(dY, axis=0, out=dbeta)
    np.multiply(dY, x_hat, out=sq)
    np.sum(sq, axis=0, out=dgamma)
    dY *= gamma  # dx̂
    np.sum(dY, axis=1, keepdims=True, out=sum_dx_hat)
    np.multiply(dY, x_hat, out=sq)
    np.sum(sq, axis=1, keepdims=True, out=sum_dx_hat_x_hat)
    dY *= H
    dY -= sum_dx_hat
    np.multiply(x_hat, sum_dx_hat_x_hat, out=sq)
    dY -= sq
    np.divide(inv_std, H, out=sum_dx_hat)
    dY *= sum_dx_hat
    return dY


def dropout_(A: Array, rate: float, rng: np.random.Generator, U: Array, scale: Array) -> Array:
    """``Ã = A ⊙ M / p`` over A, ``M = [U < p]`` with U (n, H) float64 drawn from rng into
    U (the uniforms of :func:`handgrad.layers.dropout_forward`, in the same order), and
    ``M / p`` into scale (n, H), which the backward pass multiplies by."""
    p = 1 - rate
    rng.random(out=U)
    np.less(U, p, out=scale)
    scale /= p
    A *= scale
    return A
