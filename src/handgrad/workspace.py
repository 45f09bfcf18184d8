"""The fast path: a training step of an :class:`~handgrad.MLP` in preallocated buffers.

The same equations as :mod:`handgrad.layers` (which stays the readable reference, and
which the tests hold this module to, within 1e-12 in float64), arranged so that a
steady-state step allocates nothing that grows with the batch or the network:

- every matrix product writes into a buffer of the :class:`Workspace`, on top of the
  bias written there first (``Z = b; Z += A W`` by BLAS with β = 1);
- activations and the softmax work in place; ReLU keeps its mask ``[Z > 0]`` for the
  backward pass; the bias sums ``Σ_rows dZ`` are products ``1ᵀ dZ`` with a ones vector;
- everything stays in the model's dtype (no float32 → float64 temporaries);
- for plain SGD the weight update is fused into the gradient's product:
  ``W ← (1 − ηλ) W − η A_prevᵀ dZ`` is one BLAS ``gemm`` with ``β = 1 − ηλ``, ``α = −η``,
  so ``dW`` is never written out. The call goes to NumPy's own OpenBLAS (the library and
  thread pool behind ``np.matmul``), found with ctypes; where it is not found the same
  step takes NumPy's route (``matmul`` into a buffer, then ``W += ...``).

Measured and dropped: SciPy's ``scipy.linalg.blas.sgemm`` offers the same fusion, but
SciPy ships its own OpenBLAS: here its products are 20–30 % slower than NumPy's, and
alternating between two libraries' thread pools within a step costs several times the
products. Gathering the next batch on a helper thread during the step (or a batch on
two threads) gained nothing: the copy is memory-bound and the handoff costs as much.
Thread counts are left as the user set them.
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.special
from numpy.typing import NDArray

from handgrad._validation import all_finite, check_X

if TYPE_CHECKING:
    from handgrad.network import MLP

Array = NDArray[np.floating]
Params = dict[str, Array]

#: Rows per chunk in :func:`scores`: large enough for full-speed products, small enough
#: that the hidden activations of a chunk stay in cache and are reused.
CHUNK_ROWS = 2048


# ------------------------------------------------------------------- the products
def _numpy_cblas_gemm() -> dict | None:
    """``{dtype: cblas_?gemm}`` from the OpenBLAS that NumPy's wheel bundles, or None.

    Only the one build whose symbols are known is used (``scipy_openblas64_``: 64-bit
    integers); anything else (MKL, a system BLAS, another platform) returns None.
    """
    libs = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    found = sorted(libs.glob("libscipy_openblas64_*.so")) if sys.platform == "linux" else []
    if not found:
        return None
    try:
        lib = ctypes.CDLL(str(found[0]))  # already loaded by NumPy: the same library
        funcs = {
            np.dtype(np.float32): (lib.scipy_cblas_sgemm64_, ctypes.c_float),
            np.dtype(np.float64): (lib.scipy_cblas_dgemm64_, ctypes.c_double),
        }
    except (OSError, AttributeError):
        return None
    I, L, P = ctypes.c_int, ctypes.c_int64, ctypes.c_void_p
    for func, real in funcs.values():
        func.argtypes = [I, I, I, L, L, L, real, P, L, P, L, real, P, L]
        func.restype = None
    return {dt: func for dt, (func, _) in funcs.items()}


_CBLAS_GEMM = _numpy_cblas_gemm()
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


def _rows_ok(M: Array, dtype: np.dtype) -> bool:
    """Row-major with unit column stride, as CBLAS reads it."""
    rows, cols = M.strides
    return M.dtype == dtype and cols == M.itemsize and rows >= M.shape[1] * M.itemsize


def _address(M: Array) -> int:
    """The address of M's first element (``M.ctypes.data``, three times faster)."""
    if M.flags.c_contiguous and M.flags.writeable:
        return ctypes.addressof(ctypes.c_char.from_buffer(M))
    return M.ctypes.data


def gemm_(A: Array, B: Array, C: Array, alpha: float, beta: float, trans_a: bool = False) -> bool:
    """``C ← β C + α op(A) B`` in place by one BLAS call; False (C untouched) if unavailable.

    ``op(A) = Aᵀ`` with ``trans_a``. A: (k, m) if trans_a else (m, k); B: (k, n);
    C: (m, n); all of one dtype and row-major.
    """
    gemm = None if _CBLAS_GEMM is None else _CBLAS_GEMM.get(C.dtype)
    if gemm is None or not (
        C.flags.c_contiguous and C.flags.writeable and _rows_ok(A, C.dtype) and _rows_ok(B, C.dtype)
    ):
        return False
    (m, n), k, size = C.shape, B.shape[0], C.itemsize
    gemm(
        _ROW_MAJOR,
        _TRANS if trans_a else _NO_TRANS,
        _NO_TRANS,
        m,
        n,
        k,
        float(alpha),
        _address(A),
        A.strides[0] // size,
        _address(B),
        B.strides[0] // size,
        float(beta),
        _address(C),
        n,
    )
    return True


def affine_into(A: Array, W: Array, b: Array, Z: Array) -> Array:
    """``Z ← A W + b`` in place: ``Z = b``, then ``Z += A W`` within the product (β = 1).

    A: (n, D), W: (D, H), b: (H,), Z: (n, H). NumPy's broadcast ``Z += b`` runs through
    a buffered iterator (an 8192-element buffer allocated per call, at half the speed
    of a plain add); written first, b costs one copy and the product nothing more.
    """
    np.copyto(Z, b)
    if not gemm_(A, W, Z, 1.0, 1.0):  # without NumPy's cblas: the product, then b
        np.matmul(A, W, out=Z)
        Z += b
    return Z


def _sqnorm(W: Array) -> float:
    """``‖W‖²`` in one pass, without a temporary."""
    return float(np.vdot(W, W))


# ------------------------------------------------------------- in-place activations
def activation_forward_(Z: Array, activation: str, D: Array | None = None) -> Array:
    """``A = act(Z)``, overwriting Z; with D given, also ``D = act'(Z)``.  Z, D: (n, H).

    ReLU: ``D = [Z > 0]``, ``A = Z ⊙ D`` (a NaN stays NaN); without D, ``max(Z, 0)``
    (which is slower than the two passes on a batch in cache, faster on the large
    chunks of prediction); tanh: ``D = 1 − A²``; logistic: ``D = A (1 − A)``;
    identity: D is not written. The backward pass is then ``dZ = dA ⊙ D``.
    """
    if activation == "relu":
        if D is None:
            return np.maximum(Z, 0, out=Z)
        np.greater(Z, 0, out=D)
        Z *= D
    elif activation == "tanh":
        np.tanh(Z, out=Z)
        if D is not None:
            np.multiply(Z, Z, out=D)
            np.subtract(1, D, out=D)
    elif activation == "logistic":
        scipy.special.expit(Z, out=Z)
        if D is not None:
            np.subtract(1, Z, out=D)
            D *= Z
    return Z


def softmax_(S: Array) -> Array:
    """Row-wise softmax of S (N, C) in place, shifted by the row max."""
    S -= S.max(axis=1, keepdims=True)
    np.exp(S, out=S)
    S /= S.sum(axis=1, keepdims=True)
    return S


# ----------------------------------------------------------------------- the buffers
class Workspace:
    """Buffers for forward, loss and backward of one model on batches of ≤ ``rows`` rows.

    Holds, for n ≤ rows: ``A_l`` and ``act'(Z_l)`` (n, H_l) per hidden layer, ``dZ_l``
    (n, H_l), the scores S and ``dS`` (n, C), the gradients (shaped like ``params``),
    and — once :meth:`gather` is used — the batch X (n, D), its targets and weights.
    Parameters are read from the dict passed to each call, never held.
    """

    def __init__(self, model: MLP, rows: int) -> None:
        self.layer_sizes = model.layer_sizes
        self.activation, self.head, self.dtype = model.activation, model.head, model.dtype
        self.rows = rows = int(rows)
        dt, hidden, C = self.dtype, self.layer_sizes[1:-1], self.layer_sizes[-1]
        L = len(self.layer_sizes) - 1
        self._names = [(f"W{l}", f"b{l}") for l in range(L + 1)]  # [l] = ("W_l", "b_l")
        self._A = [np.empty((rows, h), dt) for h in hidden]
        self._D = [
            None if self.activation == "identity" else np.empty((rows, h), dt) for h in hidden
        ]  # act'(Z_l)
        self._dZ = [np.empty((rows, h), dt) for h in hidden]
        self._S, self._dS = np.empty((rows, C), dt), np.empty((rows, C), dt)
        self._ones = np.ones(rows, dt)  # Σ_rows dZ = 1ᵀ dZ
        # softmax head: Σ_cols as a product, flat indices of (i, argmax_i) and (i, y_i)
        self._ones_C = np.ones(C, dt)
        self._row_starts = np.arange(rows) * C
        self._flat = np.empty(rows, np.intp)
        self._m, self._total, self._picked, self._c = np.empty((4, rows), dt)  # (rows,) each
        self.grads: Params = {}
        for l in range(1, L + 1):
            self.grads[f"W{l}"] = np.empty(self.layer_sizes[l - 1 : l + 1], dt)
            self.grads[f"b{l}"] = np.empty(self.layer_sizes[l], dt)
        self._scratches: dict[tuple[int, ...], Array] = {}
        self._batch: tuple[Array, NDArray, Array] | None = None

    # ------------------------------------------------------------------- batches
    def gather(
        self, X: Array, T: NDArray, w: Array | None, idx: NDArray[np.intp]
    ) -> tuple[Array, NDArray, Array | None]:
        """Rows ``idx`` of X (N, D), T and w copied into reused buffers; no allocation."""
        n = len(idx)
        if self._batch is None:
            self._batch = (
                np.empty((self.rows, X.shape[1]), self.dtype),
                np.empty((self.rows, *T.shape[1:]), T.dtype),
                np.empty(self.rows, self.dtype),
            )
        Xb, Tb, wb = (buf[:n] for buf in self._batch)
        np.take(X, idx, axis=0, out=Xb, mode="clip")  # "clip": unbuffered
        np.take(T, idx, axis=0, out=Tb, mode="clip")
        if w is None:
            return Xb, Tb, None
        return Xb, Tb, np.take(w, idx, out=wb, mode="clip")

    # ------------------------------------------------------------------- forward
    def forward(self, params: Params, X: Array) -> Array:
        """Scores S (n, C) of X (n, D): ``Z_l = A_{l−1} W_l + b_l``, ``A_l = act(Z_l)``.

        Hidden activations and ``act'(Z_l)`` stay in the workspace for the backward
        pass; S is a view of a buffer, valid until the next call.
        """
        n, L = X.shape[0], len(self.layer_sizes) - 1
        A = X
        for l in range(1, L):
            W, b = self._names[l]
            Z = affine_into(A, params[W], params[b], self._A[l - 1][:n])
            D = self._D[l - 1]
            A = activation_forward_(Z, self.activation, None if D is None else D[:n])
        W, b = self._names[L]
        return affine_into(A, params[W], params[b], self._S[:n])

    # ---------------------------------------------------------------------- head
    def head_loss(self, S: Array, T: NDArray, w: Array | None) -> float:
        """The head's mean cross-entropy; writes ``dS = (P − Y) ⊙ w / Σw`` (n, C)."""
        n = S.shape[0]
        dS = self._dS[:n]
        # c_i: each row's share of the mean, 1/n or w_i / Σw
        c = (1.0 / n) if w is None else np.divide(w, w.sum(), out=self._c[:n])
        if self.head == "softmax":
            losses = self._softmax_head(S, T, c, dS)
        else:
            # ℓ_i = Σ_c softplus(S) − Y S;  dS = σ(S) − Y
            elementwise = np.logaddexp(0, S)
            np.multiply(T, S, out=dS)
            elementwise -= dS
            losses = elementwise.sum(axis=1)
            scipy.special.expit(S, out=dS)
            dS -= T
            dS *= c if w is None else c[:, None]
        return float(np.dot(losses, c)) if w is not None else float(losses.sum()) * c

    def _softmax_head(self, S: Array, T: NDArray, c: float | Array, dS: Array) -> Array:
        """Per-row ``ℓ_i = log Σ_k e^{S_ik − m_i} − (S_iy − m_i)``, m_i the row max;
        writes ``dS = (P − Y) c`` with ``P = e^{S − m} / Σ_k e^{S_k − m}``.

        The row max comes from ``argmax`` (a faster reduction than ``max`` over short
        rows), the row sums from a product with ones.
        """
        n = S.shape[0]
        flat, starts = self._flat[:n], self._row_starts[:n]
        m, total, picked = self._m[:n], self._total[:n], self._picked[:n]
        np.argmax(S, axis=1, out=flat)
        flat += starts
        np.take(S, flat, out=m)  # m_i
        np.subtract(S, m[:, None], out=dS)
        np.exp(dS, out=dS)  # e^{S − m}
        np.matmul(dS, self._ones_C, out=total)  # Σ_k e^{S_ik − m_i}
        np.add(T, starts, out=flat)  # (i, y_i)
        np.take(S, flat, out=picked)
        picked -= m  # S_iy − m_i
        dS *= np.divide(c, total, out=m)[:, None]  # P c
        dS.reshape(-1)[flat] -= c  # (P − Y) c
        losses = np.log(total, out=total)
        losses -= picked
        return losses

    # ------------------------------------------------------------------- backward
    def _backward(self, params: Params, X: Array, reg: float, learning_rate: float | None):
        """From dS back to X: gradients into ``self.grads``, or (η given) the SGD step.

        For l = L … 1, with ``dZ_L = dS`` and ``A_0 = X``:
        ``dA_{l−1} = dZ_l W_lᵀ`` (with W_l before its update),
        ``dW_l = A_{l−1}ᵀ dZ_l + λ W_l``, ``db_l = Σ_rows dZ_l = 1ᵀ dZ_l``,
        ``dZ_{l−1} = dA_{l−1} ⊙ act'(Z_{l−1})``.
        """
        n, L = X.shape[0], len(self.layer_sizes) - 1
        dZ, ones = self._dS[:n], self._ones[:n]
        decay = self.dtype.type(1.0 - (learning_rate or 0.0) * reg)
        for l in range(L, 0, -1):
            W_name, b_name = self._names[l]
            W, b, dW, db = params[W_name], params[b_name], self.grads[W_name], self.grads[b_name]
            A_prev = X if l == 1 else self._A[l - 2][:n]
            # dA_{l−1} = dZ_l W_lᵀ, with W_l as it was before this step
            dA = None if l == 1 else np.matmul(dZ, W.T, out=self._dZ[l - 2][:n])
            np.matmul(ones, dZ, out=db)  # db_l = 1ᵀ dZ_l
            if learning_rate is None:
                np.matmul(A_prev.T, dZ, out=dW)  # dW_l = A_{l−1}ᵀ dZ_l + λ W_l
                if reg:
                    dW += np.multiply(W, reg, out=self._scratch(dW))
            elif not gemm_(A_prev, dZ, W, -learning_rate, decay, trans_a=True):
                # W_l ← (1 − ηλ) W_l + A_{l−1}ᵀ (−η dZ_l), in two passes without BLAS's β
                dZ *= -learning_rate
                np.matmul(A_prev.T, dZ, out=dW)
                if decay != 1:  # 1 − ηλ can round to 1 (float32, small λ): nothing to do
                    W *= decay
                W += dW
            if learning_rate is not None:  # b_l ← b_l − η db_l
                db *= learning_rate
                b -= db
            if dA is not None:
                D = self._D[l - 2]
                if D is not None:
                    dA *= D[:n]  # dZ_{l−1} = dA_{l−1} ⊙ act'(Z_{l−1})
                dZ = dA

    def _scratch(self, like: Array) -> Array:
        """A reused array shaped like ``like`` (made on first use)."""
        buf = self._scratches.get(like.shape)
        if buf is None:
            buf = self._scratches[like.shape] = np.empty_like(like)
        return buf

    def _penalty(self, params: Params, reg: float) -> float:
        """``λ/2 Σ_l ‖W_l‖²`` (biases not penalised)."""
        if not reg:
            return 0.0
        return 0.5 * reg * sum(_sqnorm(params[W]) for W, _ in self._names[1:])

    # ---------------------------------------------------------------------- steps
    def step(
        self, params: Params, X: Array, T: NDArray, reg: float, w: Array | None = None
    ) -> tuple[float, Params, Array]:
        """``(loss, grads, S)`` as :meth:`MLP.training_step`, in this workspace's buffers.

        X: (n, D) with n ≤ rows; T: encoded targets; w: (n,) or None. ``grads`` is
        ``self.grads`` and S a buffer view: both are overwritten by the next call.
        """
        S = self.forward(params, X)
        loss = self.head_loss(S, T, w) + self._penalty(params, reg)
        self._backward(params, X, reg, None)
        return loss, self.grads, S

    def sgd_step(
        self,
        params: Params,
        X: Array,
        T: NDArray,
        reg: float,
        w: Array | None,
        learning_rate: float,
    ) -> tuple[float, Array]:
        """One plain-SGD step in place: ``θ ← θ − η ∂L/∂θ`` for every parameter.

        Returns the loss before the step and the scores S (n, C) it was computed from.
        """
        S = self.forward(params, X)
        loss = self.head_loss(S, T, w) + self._penalty(params, reg)
        self._backward(params, X, reg, learning_rate)
        return loss, S


def scores(model: MLP, X: Array, chunk_rows: int = CHUNK_ROWS, check_finite: bool = False) -> Array:
    """Scores S (N, C) of a checked X (N, D) in the model's dtype, chunk by chunk.

    One workspace of ``chunk_rows`` rows is reused for every chunk, so the memory beyond
    S does not grow with N; the last layer writes straight into S.

    ``check_finite`` raises check_X's ValueError for a NaN or infinity in X, tested on
    ``Z1 = X W1 + b1`` while it is in cache rather than by another pass over X: in IEEE
    arithmetic a non-finite ``X_ij`` makes all of row i of Z1 non-finite (``±inf · w``
    is ±inf or, with ``w = 0``, NaN, and a NaN stays NaN through the sum).
    """
    N, L = X.shape[0], model.n_layers
    S = np.empty((N, model.layer_sizes[-1]), model.dtype)
    hidden = [np.empty((min(N, chunk_rows), h), model.dtype) for h in model.hidden_sizes]
    params = model.params
    for start in range(0, N, chunk_rows):
        A = X[start : start + chunk_rows]
        n = A.shape[0]
        for l in range(1, L + 1):
            out = S[start : start + n] if l == L else hidden[l - 1][:n]
            if l == 1 and check_finite:
                with np.errstate(invalid="ignore", over="ignore"):  # reported below
                    Z = affine_into(A, params["W1"], params["b1"], out)
                if not all_finite(Z):
                    check_X(X)  # raises, naming X's first non-finite entry (if any)
            else:
                Z = affine_into(A, params[f"W{l}"], params[f"b{l}"], out)
            A = activation_forward_(Z, model.activation) if l < L else Z
    return S
