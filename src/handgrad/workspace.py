"""The fast engine: a training step of a network in preallocated buffers.

A :class:`Workspace` is made from the network's description (layer sizes, activation,
head, dtype) and reads the parameters from the dict passed to each call; it knows no
model class. The same equations as :mod:`handgrad.layers` (which stays the readable
reference, and which the tests hold this module to, within 1e-12 in float64), arranged
so that a steady-state step allocates nothing that grows with the batch or the network:

- every matrix product writes into a buffer of the :class:`Workspace`, on top of the
  bias written there first (``Z = b; Z += A W`` by BLAS with β = 1);
- activations and the head work in place, by the in-place forms
  (:mod:`handgrad.inplace`) named in the records of :data:`handgrad.heads.ACTIVATIONS`
  and :data:`~handgrad.heads.HEADS`; ReLU keeps its mask ``[Z > 0]`` for the backward
  pass; the bias sums ``Σ_rows dZ`` are products ``1ᵀ dZ`` with a ones vector;
- everything stays in the model's dtype (no float32 → float64 temporaries);
- for plain SGD the weight update is fused into the gradient's product:
  ``W ← (1 − ηλ) W − η A_prevᵀ dZ`` is one BLAS ``gemm`` with ``β = 1 − ηλ``, ``α = −η``,
  so ``dW`` is never written out. The call goes to NumPy's own OpenBLAS (the library and
  thread pool behind ``np.matmul``), found with ctypes; where it is not found the same
  step takes NumPy's route (``matmul`` into a buffer, then ``W += ...``);
- the views of the buffers for a batch size, and the BLAS calls of its products with
  their arguments converted to C types, are made once (:class:`_Views`, for the
  batch buffer that :meth:`Workspace.gather` fills and the weight arrays of the
  first call; made again when either changes): per step, a small network's
  products cost less than converting their arguments did. The same calls with the
  same arguments, so the same bits (a test holds them to exact equality);
- the softmax loss's row argmax is the predicted class, so the running accuracy
  reads it (:meth:`Workspace.right_rows`) instead of another argmax of S;
- a normalization (``Y_l = norm(Z_l)`` over Z_l's buffer, x̂ kept for the backward
  pass) and dropout (its scale ``M / p`` kept) are the in-place forms their records
  name (:data:`handgrad.heads.NORMS`, :data:`~handgrad.heads.DROPOUT`); a plain network
  takes none of their branches.

Tried and dropped (benchmarks/README.md has the figures): SciPy's
``scipy.linalg.blas.sgemm`` offers the same fusion, but SciPy ships its own OpenBLAS,
whose products were slower than NumPy's here, and alternating between two libraries'
thread pools within a step costs more than the products. Gathering the next batch on a
helper thread during the step (or a batch on two threads) gained nothing: the copy is
memory-bound and the handoff costs as much. The workspace leaves thread counts alone
(:mod:`handgrad._threads` chooses them around the loop).
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp
from numpy.typing import DTypeLike, NDArray

from handgrad._mapped import RowReader, row_chunks
from handgrad._validation import all_finite, check_X
from handgrad.heads import ACTIVATIONS, DROPOUT, HEADS, NORM_EPS, NORM_MOMENTUM, NORMS
from handgrad.inplace import RowBuffers, head_buffers, softmax_cross_entropy_
from handgrad.layers import batchnorm_running_update

Array = NDArray[np.floating]
Params = dict[str, Array]

#: Rows per chunk in :func:`scores`: large enough for full-speed products, small enough
#: that the hidden activations of a chunk stay in cache and are reused.
CHUNK_ROWS = 2048


# ------------------------------------------------------------------- the products
def _numpy_openblas() -> ctypes.CDLL | None:
    """The OpenBLAS that NumPy's wheel bundles (already loaded by NumPy: the same
    library), or None. Only the one build whose symbols are known is used
    (``scipy_openblas64_``: 64-bit integers); anything else (MKL, a system BLAS, another
    platform) gives None."""
    libs = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    found = sorted(libs.glob("libscipy_openblas64_*.so")) if sys.platform == "linux" else []
    try:
        return ctypes.CDLL(str(found[0])) if found else None
    except OSError:
        return None


#: NumPy's OpenBLAS, where it is the known build (:func:`_numpy_openblas`).
NUMPY_OPENBLAS = _numpy_openblas()


def _numpy_cblas_gemm() -> dict | None:
    """``{dtype: cblas_?gemm}`` of :data:`NUMPY_OPENBLAS`, or None."""
    lib = NUMPY_OPENBLAS
    if lib is None:
        return None
    try:
        funcs = {
            np.dtype(np.float32): (lib.scipy_cblas_sgemm64_, ctypes.c_float),
            np.dtype(np.float64): (lib.scipy_cblas_dgemm64_, ctypes.c_double),
        }
    except AttributeError:
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
    """The address of M's first element: ``M.ctypes.data`` builds an object per call,
    which costs more than the small products of a step."""
    if M.flags.c_contiguous and M.flags.writeable:
        return ctypes.addressof(ctypes.c_char.from_buffer(M))
    return M.ctypes.data


def _gemm_for(A: Array, B: Array, C: Array):
    """NumPy's cblas ``?gemm`` for C's dtype where A, B, C are laid out as it reads them
    (C row-major and writeable, A and B row-major by rows); None otherwise."""
    gemm = None if _CBLAS_GEMM is None else _CBLAS_GEMM.get(C.dtype)
    if gemm is None or not (
        C.flags.c_contiguous and C.flags.writeable and _rows_ok(A, C.dtype) and _rows_ok(B, C.dtype)
    ):
        return None
    return gemm


def gemm_(A: Array, B: Array, C: Array, alpha: float, beta: float, trans_a: bool = False) -> bool:
    """``C ← β C + α op(A) B`` in place by one BLAS call; False (C untouched) if unavailable.

    ``op(A) = Aᵀ`` with ``trans_a``. A: (k, m) if trans_a else (m, k); B: (k, n);
    C: (m, n); all of one dtype and row-major.
    """
    gemm = _gemm_for(A, B, C)
    if gemm is None:
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


class _Gemm:
    """:func:`gemm_` on arrays fixed once: ``C ← β C + α op(A) B``, its arguments (the
    arrays' addresses, sizes and strides) converted to C types when made, so that a
    call converts only α and β. The call that :func:`gemm_` makes, with the same
    arguments: the same numbers. It keeps A, B and C, whose memory it points into."""

    __slots__ = ("_args", "_arrays", "_gemm")

    def __init__(self, gemm, A: Array, B: Array, C: Array, trans_a: bool = False) -> None:
        I, L, P = ctypes.c_int, ctypes.c_int64, ctypes.c_void_p
        (m, n), k, size = C.shape, B.shape[0], C.itemsize
        self._gemm, self._arrays = gemm, (A, B, C)
        self._args = [
            I(_ROW_MAJOR),
            I(_TRANS if trans_a else _NO_TRANS),
            I(_NO_TRANS),
            L(m),
            L(n),
            L(k),
            0.0,  # α
            P(_address(A)),
            L(A.strides[0] // size),
            P(_address(B)),
            L(B.strides[0] // size),
            0.0,  # β
            P(_address(C)),
            L(n),
        ]

    @classmethod
    def make(cls, A: Array, B: Array, C: Array, trans_a: bool = False) -> _Gemm | None:
        """The prepared call, or None where :func:`gemm_` would decline."""
        gemm = _gemm_for(A, B, C)
        return None if gemm is None else cls(gemm, A, B, C, trans_a)

    def __call__(self, alpha: float, beta: float) -> None:
        args = self._args
        args[6], args[11] = float(alpha), float(beta)
        self._gemm(*args)


class _Views:
    """A workspace's buffers as views of n rows, and the prepared products of a step
    on them (:class:`_Gemm`; None where :func:`gemm_` would decline): made once per
    batch size, for one set of weight arrays, so that a step slices nothing and
    converts no arguments. ``forward[l]`` is ``Z_l ← Z_l + A_{l−1} W_l`` and
    ``update[l]`` the fused SGD update ``W_l ← β W_l + α A_{l−1}ᵀ dZ_l`` (index 0
    unused); those of layer 1 read the workspace's own batch buffer X, and are made
    only for it."""

    def __init__(self, ws: Workspace, n: int, params: Params | None) -> None:
        L = len(ws.layer_sizes) - 1
        self.A = [A[:n] for A in ws._A]
        self.D = [None if D is None else D[:n] for D in ws._D]
        self.dZ = [dZ[:n] for dZ in ws._dZ]
        self.S, self.dS, self.ones, self.c = ws._S[:n], ws._dS[:n], ws._ones[:n], ws._c[:n]
        # the layers beyond the notes' (empty lists for a plain network)
        self.x_hat = [x[:n] for x in ws._x_hat]
        self.sq = [x[:n] for x in ws._sq]
        self.rows = [RowBuffers(*(b[:n] for b in r)) for r in ws._rows]
        self.U = [U[:n] for U in ws._U]
        self.scale = [m[:n] for m in ws._scale]
        self.forward: list[_Gemm | None] = [None] * (L + 1)
        self.update: list[_Gemm | None] = [None] * (L + 1)
        self.X: Array | None = None  # the batch that layer 1's products read
        self.weights = None if params is None else [params[W] for W, _ in ws._names[1:]]
        if self.weights is None:  # views only (a head or backward pass on its own)
            return
        Z, dZ = [*self.A, self.S], [*self.dZ, self.dS]
        for l in range(2, L + 1):
            W = self.weights[l - 1]
            self.forward[l] = _Gemm.make(self.A[l - 2], W, Z[l - 1])
            self.update[l] = _Gemm.make(self.A[l - 2], dZ[l - 1], W, trans_a=True)
        self._Z1, self._dZ1 = Z[0], dZ[0]

    def made_for(self, names: list[tuple[str, str]], params: Params) -> bool:
        """Whether these views' products were made for the weight arrays of ``params``."""
        return self.weights is not None and all(
            params[W] is V for (W, _), V in zip(names, self.weights, strict=True)
        )

    def first_layer(self, X: Array) -> None:
        """Layer 1's products for X (a view of the workspace's batch buffer)."""
        W1 = self.weights[0]
        self.forward[1] = _Gemm.make(X, W1, self._Z1)
        self.update[1] = _Gemm.make(X, self._dZ1, W1, trans_a=True)
        self.X = X


def affine_(A: Array, W: Array, b: Array, Z: Array) -> Array:
    """``Z ← A W + b`` in place: ``Z = b``, then ``Z += A W`` within the product (β = 1).

    A: (n, D), W: (D, H), b: (H,), Z: (n, H). NumPy's broadcast ``Z += b`` runs through
    a buffered iterator (a buffer allocated per call, slower than a plain add); written
    first, b costs one copy and the product nothing more. A may be a SciPy sparse batch
    of X (then ``A W`` is SciPy's sparse-times-dense product, into a temporary).
    """
    if sp.issparse(A):  # sparse X: never made dense
        return np.add(A @ W, b, out=Z)
    np.copyto(Z, b)
    if not gemm_(A, W, Z, 1.0, 1.0):  # without NumPy's cblas: the product, then b
        np.matmul(A, W, out=Z)
        Z += b
    return Z


def _transposed_product(A: Array, dZ: Array, out: Array, sparse: bool) -> Array:
    """``out ← Aᵀ dZ``; with ``sparse``, A is a SciPy sparse batch of X and ``dW1 = Xᵀ dZ1``
    is SciPy's (sparse)ᵀ-times-dense product, into a temporary."""
    if sparse:
        np.copyto(out, A.T @ dZ)
        return out
    return np.matmul(A.T, dZ, out=out)


def _sqnorm(W: Array) -> float:
    """``‖W‖²`` in one pass, without a temporary."""
    return float(np.vdot(W, W))


# ----------------------------------------------------------------------- the buffers
class StepBuffers(NamedTuple):
    """A :class:`Workspace`'s buffers of one step, for batches of at most ``rows`` rows:
    per hidden layer A_l and dZ_l (rows, H_l), the scores S and dS (rows, C), the
    gradients (shaped like the parameters), and (rows,) scratch for each row's loss and
    predicted class."""

    A: list[Array]
    dZ: list[Array]
    S: Array
    dS: Array
    grads: Params
    losses: Array
    labels: NDArray[np.intp]


class Workspace:
    """Buffers for forward, loss and backward of one network on batches of ≤ ``rows`` rows.

    The network is described by ``layer_sizes`` (D, H1, …, C), the names of its hidden
    ``activation`` and its ``head`` (keys of :data:`handgrad.heads.ACTIVATIONS` and
    :data:`~handgrad.heads.HEADS`) and the ``dtype`` of its parameters. Holds, for
    n ≤ rows: ``A_l`` and ``act'(Z_l)`` (n, H_l) per hidden layer, ``dZ_l`` (n, H_l),
    the scores S and ``dS`` (n, C), the gradients (shaped like the parameters), and —
    once :meth:`gather` is used — the batch X (n, D), its targets and weights.
    Parameters are read from the dict passed to each call, never held.
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        rows: int,
        *,
        activation: str,
        head: str,
        dtype: DTypeLike,
        norm: str | None = None,
        dropout: float = 0.0,
    ) -> None:
        self.layer_sizes = tuple(int(s) for s in layer_sizes)
        self.activation, self.head, self.dtype = activation, head, np.dtype(dtype)
        self._act, self._head = ACTIVATIONS[activation], HEADS[head]
        self.rows = rows = int(rows)
        dt, hidden, C = self.dtype, self.layer_sizes[1:-1], self.layer_sizes[-1]
        L = len(self.layer_sizes) - 1
        self._names = [(f"W{l}", f"b{l}") for l in range(L + 1)]  # [l] = ("W_l", "b_l")
        self._A = [np.empty((rows, h), dt) for h in hidden]
        self._D = [
            np.empty((rows, h), dt) if self._act.needs_derivative else None for h in hidden
        ]  # act'(Z_l)
        self._dZ = [np.empty((rows, h), dt) for h in hidden]
        self._S, self._dS = np.empty((rows, C), dt), np.empty((rows, C), dt)
        self._ones = np.ones(rows, dt)  # Σ_rows dZ = 1ᵀ dZ
        self._head_buffers = head_buffers(rows, C, dt)
        self._c = np.empty(rows, dt)  # each row's share of the mean
        self.grads: Params = {}
        self.penalty = 0.0  # the last step's ``λ/2 Σ‖W‖²``, the part of its loss not in S
        self.row_losses: Array | None = None  # the last head's exact loss of each row (n,)
        for l in range(1, L + 1):
            self.grads[f"W{l}"] = np.empty(self.layer_sizes[l - 1 : l + 1], dt)
            self.grads[f"b{l}"] = np.empty(self.layer_sizes[l], dt)
        self._layers(hidden, norm, dropout)
        self._scratches: dict[tuple[int, ...], Array] = {}
        self._batch: tuple[Array, NDArray, Array] | None = None
        self._views: dict[int, _Views] = {}
        self._batch_views: dict[int, tuple] = {}
        # The softmax loss leaves each row's predicted class in its buffers: the running
        # accuracy reads it there (right_rows) instead of a second argmax of S.
        self._labels_of: Array | None = None  # the scores whose classes they are
        self._right = np.empty(rows, np.bool_)

    def _layers(self, hidden: Sequence[int], norm: str | None, dropout: float) -> None:
        """Buffers of the normalization (x̂ and scratch (rows, H_l); layer norm's per-row
        statistics) and of dropout (its uniforms, float64 as the reference draws them,
        and its scale ``M / p``), with γ's and β's gradients; none for a plain network."""
        rows, dt = self.rows, self.dtype
        self._norm = None if norm is None else NORMS[norm]
        self.dropout = float(dropout)
        self._x_hat: list[Array] = []
        self._sq: list[Array] = []
        self._rows: list[tuple[Array, ...]] = []
        self._U: list[Array] = []
        self._scale: list[Array] = []
        self._norm_train = [True] * len(hidden)  # batch statistics, per layer, last forward
        self._inv_std: list[Array | None] = [None] * len(hidden)
        if self._norm is not None:
            self._x_hat = [np.empty((rows, h), dt) for h in hidden]
            self._sq = [np.empty((rows, h), dt) for h in hidden]
            if not self._norm.keeps_running:
                self._rows = [tuple(np.empty((rows, 1), dt) for _ in range(3)) for _ in hidden]
            for l, h in enumerate(hidden, start=1):
                self.grads[f"gamma{l}"] = np.empty(h, dt)
                self.grads[f"beta{l}"] = np.empty(h, dt)
        if self.dropout:
            self._U = [np.empty((rows, h), np.float64) for h in hidden]
            self._scale = [np.empty((rows, h), dt) for h in hidden]

    @staticmethod
    def buffer_nbytes(
        layer_sizes: Sequence[int], rows: int, *, activation: str, dtype: DTypeLike, dense_X: bool
    ) -> int:
        """Bytes of the buffers that grow with the batch, before any is allocated: per row
        ``A_l``, ``dZ_l`` (and ``act'(Z_l)``) for each hidden layer, S, dS, the targets
        and (``dense_X``) the gathered X; the gradients are the parameters' size."""
        hidden, C = layer_sizes[1:-1], layer_sizes[-1]
        per_hidden = 3 if ACTIVATIONS[activation].needs_derivative else 2
        per_row = per_hidden * sum(hidden) + 3 * C + 8 + (layer_sizes[0] if dense_X else 0)
        return int(rows) * per_row * np.dtype(dtype).itemsize

    # ------------------------------------------------------------------- batches
    def gather(
        self, X: Array | RowReader, T: NDArray, w: Array | None, idx: NDArray[np.intp]
    ) -> tuple[Array, NDArray, Array | None]:
        """Rows ``idx`` of X (N, D), T and w copied into reused buffers; no allocation.

        X given as a :class:`~handgrad._mapped.RowReader` (of a memory-mapped X) is read
        row by row from its file into the buffer, so that none of the file stays in
        memory. A SciPy sparse (CSR) X gives a sparse batch ``X[idx]`` instead (a new one
        each call, of the batch's non-zeros only): its first-layer products stay sparse.
        """
        n = len(idx)
        reader = X if isinstance(X, RowReader) else None
        X = X if reader is None else reader.X
        dense = not sp.issparse(X)
        self.batch_buffers(X, T)
        views = self._batch_views.get(n)
        if views is None:  # the same views every time: the step's products are made once
            views = self._batch_views[n] = tuple(
                None if buf is None else buf[:n] for buf in self._batch
            )
        Xb, Tb, wb = views
        # "clip": unbuffered. The methods, not np.take: its wrapper costs more per call.
        if reader is not None and reader.reads_file:
            reader.take(idx, Xb)
        elif dense:
            X.take(idx, axis=0, out=Xb, mode="clip")
        else:
            Xb = X[idx]
        T.take(idx, axis=0, out=Tb, mode="clip")
        if w is None:
            return Xb, Tb, None
        return Xb, Tb, w.take(idx, out=wb, mode="clip")

    def batch_buffers(self, X: Any, T: NDArray) -> tuple[Array | None, NDArray]:
        """The reused buffers a batch of X's rows (rows, D) — None for a sparse X — and
        of T's (rows, …) are gathered into, made on the first call."""
        if self._batch is None:
            self._batch = (
                None if sp.issparse(X) else np.empty((self.rows, X.shape[1]), self.dtype),
                np.empty((self.rows, *T.shape[1:]), T.dtype),
                np.empty(self.rows, self.dtype),
            )
        return self._batch[0], self._batch[1]

    def step_buffers(self) -> StepBuffers:
        """The buffers of a step (:class:`StepBuffers`), for an engine that computes the
        same step in compiled code (:mod:`handgrad.training.compiled`): it needs no
        memory beyond the workspace's, which the memory check counts."""
        head = self._head_buffers
        return StepBuffers(self._A, self._dZ, self._S, self._dS, self.grads, head.m, head.labels)

    # ------------------------------------------------------------------- forward
    def _views_for(self, params: Params, X: Array) -> _Views:
        """The :class:`_Views` of X's batch size, for these weight arrays and this X."""
        n = X.shape[0]
        views = self._views.get(n)
        if views is None or not views.made_for(self._names[1:], params):
            views = self._views[n] = _Views(self, n, params)
        if views.X is not X:  # gather returns the same view of its buffer every time
            own = (
                self._batch is not None
                and not sp.issparse(X)
                and (X.base is self._batch[0] and _address(X) == _address(self._batch[0]))
            )
            if own:
                views.first_layer(X)
            else:
                views.forward[1] = views.update[1] = views.X = None
        return views

    def forward(self, params: Params, X: Array) -> Array:
        """Scores S (n, C) of X (n, D): ``Z_l = A_{l−1} W_l + b_l``, ``A_l = act(Z_l)``
        (a training forward pass: batch statistics; no dropout without a generator).

        Hidden activations and ``act'(Z_l)`` stay in the workspace for the backward
        pass; S is a view of a buffer, valid until the next call.
        """
        return self._forward(params, X, self._views_for(params, X))

    def _forward(
        self,
        params: Params,
        X: Array,
        views: _Views,
        state: Params | None = None,
        rng: np.random.Generator | None = None,
    ) -> Array:
        """The forward pass; with a normalization, ``Y_l = norm(Z_l)`` before the
        activation (batch norm's running statistics in ``state`` move), and with a
        generator, dropout after it."""
        L = len(self.layer_sizes) - 1
        self._labels_of = None
        A = X
        for l in range(1, L + 1):
            W, b = self._names[l]
            Z = views.S if l == L else views.A[l - 1]
            product = views.forward[l] if l > 1 or views.X is X else None
            if product is None:
                affine_(A, params[W], params[b], Z)
            else:  # affine_'s own two calls: Z = b, then Z += A W by BLAS
                np.copyto(Z, params[b])
                product(1.0, 1.0)
            if l == L:
                return Z
            if self._norm is not None:
                self._normalize(l, Z, params, state, views)
            A = self._act.forward_(Z, views.D[l - 1])
            if self.dropout and rng is not None:
                DROPOUT.forward_(A, self.dropout, rng, views.U[l - 1], views.scale[l - 1])
        raise AssertionError("unreachable")

    def _normalize(self, l: int, Z: Array, params: Params, state: Params | None, views) -> None:
        """Layer l's normalization over Z (n, H_l), as :meth:`MLP._norm_forward
        <handgrad.network.MLP._norm_forward>` has it: batch statistics (for two rows or
        more), the running ones moved in ``state``."""
        norm, k = self._norm, l - 1
        gamma, beta = params[f"gamma{l}"], params[f"beta{l}"]
        if not norm.keeps_running:
            norm.forward_(Z, gamma, beta, views.x_hat[k], views.sq[k], views.rows[k], NORM_EPS)
            return
        names = (f"running_mean{l}", f"running_var{l}")
        running = (state[names[0]], state[names[1]])
        train = self._norm_train[k] = Z.shape[0] > 1
        inv_std, mu, var = norm.forward_(
            Z, gamma, beta, views.x_hat[k], views.sq[k], running, train, NORM_EPS
        )
        self._inv_std[k] = inv_std
        if train:
            moved = batchnorm_running_update(*running, mu, var, Z.shape[0], NORM_MOMENTUM)
            state.update(zip(names, moved, strict=True))

    # ---------------------------------------------------------------------- head
    def head_loss(self, S: Array, T: NDArray, w: Array | None) -> float:
        """The head's mean loss; writes ``dS`` (n, C), e.g. ``(P − Y) ⊙ w / Σw``."""
        return self._head_loss(S, T, w, self._views_for_rows(S.shape[0]))

    def _head_loss(self, S: Array, T: NDArray, w: Array | None, views: _Views) -> float:
        n = S.shape[0]
        # c_i: each row's share of the mean, 1/n or w_i / Σw
        c = (1.0 / n) if w is None else np.divide(w, w.sum(), out=views.c)
        losses = self.row_losses = self._head.loss_(S, T, c, views.dS, self._head_buffers)
        self._labels_of = S if self._head.loss_ is softmax_cross_entropy_ else None
        return float(np.dot(losses, c)) if w is not None else float(losses.sum()) * c

    def _views_for_rows(self, n: int) -> _Views:
        """Views of n rows for the head called on its own (no products needed)."""
        views = self._views.get(n)
        if views is None:
            views = self._views[n] = _Views(self, n, None)
        return views

    def right_rows(self, S: Array, T: NDArray) -> NDArray[np.bool_]:
        """(n,) bool, as the head's ``right_rows(S, T)``: rows whose scores S predict T.

        After the softmax loss of S the predicted classes are those it found (its row
        argmax), read from its buffers rather than found again.
        """
        if S is not self._labels_of:
            return self._head.right_rows(S, T)
        n = S.shape[0]
        return np.equal(self._head_buffers.labels[:n], T, out=self._right[:n])

    # ------------------------------------------------------------------- backward
    def _backward(
        self,
        params: Params,
        X: Array,
        reg: float,
        learning_rate: float | None,
        views: _Views,
    ) -> None:
        """From dS back to X: gradients into ``self.grads``, or (η given) the SGD step.

        For l = L … 1, with ``dZ_L = dS`` and ``A_0 = X``:
        ``dA_{l−1} = dZ_l W_lᵀ`` (with W_l before its update),
        ``dW_l = A_{l−1}ᵀ dZ_l + λ W_l``, ``db_l = Σ_rows dZ_l = 1ᵀ dZ_l``,
        ``dZ_{l−1} = dA_{l−1} ⊙ act'(Z_{l−1})``.
        """
        L = len(self.layer_sizes) - 1
        dZ, ones = views.dS, views.ones
        decay = self.dtype.type(1.0 - (learning_rate or 0.0) * reg)
        for l in range(L, 0, -1):
            W_name, b_name = self._names[l]
            W, b, dW, db = params[W_name], params[b_name], self.grads[W_name], self.grads[b_name]
            A_prev = X if l == 1 else views.A[l - 2]
            sparse = l == 1 and sp.issparse(X)
            # dA_{l−1} = dZ_l W_lᵀ, with W_l as it was before this step
            dA = None if l == 1 else np.matmul(dZ, W.T, out=views.dZ[l - 2])
            np.matmul(ones, dZ, out=db)  # db_l = 1ᵀ dZ_l
            update = None
            if learning_rate is not None and (l > 1 or views.X is X):
                update = views.update[l]  # gemm_'s call below, its arguments made once
            if learning_rate is None:
                _transposed_product(A_prev, dZ, dW, sparse)  # dW_l = A_{l−1}ᵀ dZ_l + λ W_l
                if reg:
                    dW += np.multiply(W, reg, out=self._scratch(dW))
            elif update is not None:
                update(-learning_rate, decay)
            elif sparse or not gemm_(A_prev, dZ, W, -learning_rate, decay, trans_a=True):
                # W_l ← (1 − ηλ) W_l + A_{l−1}ᵀ (−η dZ_l), in two passes without BLAS's β
                dZ *= -learning_rate
                _transposed_product(A_prev, dZ, dW, sparse)
                if decay != 1:  # 1 − ηλ can round to 1 (float32, small λ): nothing to do
                    W *= decay
                W += dW
            if learning_rate is not None:  # b_l ← b_l − η db_l
                db *= learning_rate
                b -= db
            if dA is not None:
                self._hidden_backward(l - 1, dA, params, views, learning_rate)
                dZ = dA

    def _hidden_backward(
        self, k: int, dA: Array, params: Params, views, learning_rate: float | None
    ) -> None:
        """Hidden layer k's ``dZ_k`` from the gradient of its output, in place over dA:
        through dropout (``dA_k = dÃ_k ⊙ M / p``), the activation
        (``dY_k = dA_k ⊙ act'(Y_k)``) and the norm (``dZ_k`` from ``dY_k``; without a
        norm ``Y_k = Z_k``)."""
        if self.dropout:
            dA *= views.scale[k - 1]
        D = views.D[k - 1]
        if D is not None:
            dA *= D
        if self._norm is not None:
            self._norm_backward(k, dA, params, views, learning_rate)

    def _norm_backward(
        self, k: int, dY: Array, params: Params, views, learning_rate: float | None
    ) -> None:
        """Layer k's ``dZ_k`` over ``dY_k``, ``dγ_k`` and ``dβ_k`` into the gradients
        (with η given, the SGD step ``γ ← γ − η dγ``, ``β ← β − η dβ`` after them)."""
        gamma, beta = params[f"gamma{k}"], params[f"beta{k}"]
        dgamma, dbeta = self.grads[f"gamma{k}"], self.grads[f"beta{k}"]
        if self._norm.keeps_running:
            x_hat, inv_std, train = (
                views.x_hat[k - 1],
                self._inv_std[k - 1],
                self._norm_train[k - 1],
            )
            self._norm.backward_(dY, x_hat, gamma, inv_std, train, dgamma, dbeta, views.sq[k - 1])
        else:
            self._norm.backward_(
                dY, views.x_hat[k - 1], gamma, views.rows[k - 1], dgamma, dbeta, views.sq[k - 1]
            )
        if learning_rate is not None:
            dgamma *= learning_rate
            gamma -= dgamma
            dbeta *= learning_rate
            beta -= dbeta

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
        self,
        params: Params,
        X: Array,
        T: NDArray,
        reg: float,
        w: Array | None = None,
        state: Params | None = None,
        rng: np.random.Generator | None = None,
    ) -> tuple[float, Params, Array]:
        """``(loss, grads, S)`` as :meth:`MLP.loss_and_gradients
        <handgrad.network.MLP.loss_and_gradients>`, in this workspace's buffers.

        X: (n, D) with n ≤ rows; T: encoded targets; w: (n,) or None. ``grads`` is
        ``self.grads`` and S a buffer view: both are overwritten by the next call.
        A training step: batch norm moves the running statistics in ``state``, dropout
        draws its masks from ``rng``.
        """
        views = self._views_for(params, X)
        S = self._forward(params, X, views, state, rng)
        self.penalty = self._penalty(params, reg)
        loss = self._head_loss(S, T, w, views) + self.penalty
        self._backward(params, X, reg, None, views)
        return loss, self.grads, S

    def sgd_step(
        self,
        params: Params,
        X: Array,
        T: NDArray,
        reg: float,
        w: Array | None,
        learning_rate: float,
        state: Params | None = None,
        rng: np.random.Generator | None = None,
    ) -> tuple[float, Array]:
        """One plain-SGD step in place: ``θ ← θ − η ∂L/∂θ`` for every parameter.

        Returns the loss before the step and the scores S (n, C) it was computed from.
        """
        views = self._views_for(params, X)
        S = self._forward(params, X, views, state, rng)
        self.penalty = self._penalty(params, reg)
        loss = self._head_loss(S, T, w, views) + self.penalty
        self._backward(params, X, reg, learning_rate, views)
        return loss, S


def _affine_one_row_(A: Array, W: Array, b: Array, Z: Array) -> Array:
    """``Z ← A W + b`` for one row A (1, D): NumPy's product takes BLAS's matrix-vector
    routine, where a matrix product of one row is several times slower."""
    np.matmul(A, W, out=Z)
    Z += b
    return Z


def scores(
    params: Params,
    X: Array,
    activation: str,
    chunk_rows: int = CHUNK_ROWS,
    check_finite: bool = False,
) -> Array:
    """Scores S (N, C) of a checked X (N, D) by the network ``params`` (``W1, b1, …``)
    with hidden ``activation``, in the parameters' dtype, chunk by chunk.

    One set of hidden buffers of ``chunk_rows`` rows is reused for every chunk, so the
    memory beyond S does not grow with N; the last layer writes straight into S. A
    memory-mapped X is read from its file a chunk at a time (:func:`row_chunks`).

    ``check_finite`` raises check_X's ValueError for a NaN or infinity in X, tested on
    ``Z1 = X W1 + b1`` while it is in cache rather than by another pass over X: in IEEE
    arithmetic a non-finite ``X_ij`` makes all of row i of Z1 non-finite (``±inf · w``
    is ±inf or, with ``w = 0``, NaN, and a NaN stays NaN through the sum).
    """
    L = len(params) // 2
    weights = [params[f"W{l}"] for l in range(1, L + 1)]
    N, dtype, forward_ = X.shape[0], weights[0].dtype, ACTIVATIONS[activation].forward_
    S = np.empty((N, weights[-1].shape[1]), dtype)
    hidden = [np.empty((min(N, chunk_rows), W.shape[1]), dtype) for W in weights[:-1]]
    for start, A in row_chunks(X, chunk_rows):
        n = A.shape[0]
        affine = _affine_one_row_ if n == 1 else affine_
        for l in range(1, L + 1):
            out = S[start : start + n] if l == L else hidden[l - 1][:n]
            if l == 1 and check_finite:
                with np.errstate(invalid="ignore", over="ignore"):  # reported below
                    Z = affine(A, params["W1"], params["b1"], out)
                if not all_finite(Z):
                    check_X(X)  # raises, naming X's first non-finite entry (if any)
            else:
                Z = affine(A, params[f"W{l}"], params[f"b{l}"], out)
            A = forward_(Z) if l < L else Z
    return S
