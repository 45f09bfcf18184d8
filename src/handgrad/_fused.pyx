# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The compiled step of :mod:`handgrad.training.compiled`: forward, softmax loss,
backward and the update of a dense batch through hidden ReLU layers without Python —
one call a step (:meth:`Net.step`, :meth:`Net.update`) or one call for a whole epoch of
batches gathered from X (:meth:`Net.epoch`).

The same equations, in the same order and in the same dtype, as the fast engine
(:mod:`handgrad.workspace`, :mod:`handgrad.inplace`, :mod:`handgrad.optim`): products by
BLAS ``?gemm`` (NumPy's own cblas where :func:`use_cblas` is given its address, else
SciPy's through ``scipy.linalg.cython_blas``), elementwise work by the kernels of
``_kernels.c`` (vectorised, chosen for the CPU at load time). The row sums (softmax
denominator, bias gradients) are plain loops where NumPy calls ``gemv``, and the
softmax's exp is the kernels' own (within an ulp): the only sources of differences
(rounding, 1e-16 relative in float64).

Buffers and parameters are NumPy arrays that the Python side allocates and keeps; this
module holds their addresses (:class:`Net`), set again whenever an array changes.
"""

from cpython.exc cimport PyErr_CheckSignals
from libc.math cimport INFINITY, isfinite, pow, sqrt
from libc.stdint cimport int64_t
from scipy.linalg.cython_blas cimport dgemm as f_dgemm, sgemm as f_sgemm

cdef extern from "_kernels.h" nogil:
    void hg_add_bias_f(float* Z, const float* b, Py_ssize_t n, Py_ssize_t cols)
    void hg_add_bias_d(double* Z, const double* b, Py_ssize_t n, Py_ssize_t cols)
    void hg_add_bias_relu_f(float* Z, const float* b, Py_ssize_t n, Py_ssize_t cols)
    void hg_add_bias_relu_d(double* Z, const double* b, Py_ssize_t n, Py_ssize_t cols)
    void hg_relu_grad_f(float* dA, const float* A, Py_ssize_t n, Py_ssize_t cols, float* db)
    void hg_relu_grad_d(double* dA, const double* A, Py_ssize_t n, Py_ssize_t cols, double* db)
    void hg_column_sums_f(const float* dZ, Py_ssize_t n, Py_ssize_t cols, float* out)
    void hg_column_sums_d(const double* dZ, Py_ssize_t n, Py_ssize_t cols, double* out)
    double hg_sqnorm_f(const float* W, Py_ssize_t size)
    double hg_sqnorm_d(const double* W, Py_ssize_t size)
    double hg_softmax_xent_f(const float* S, float* dS, float* losses, int64_t* labels,
                             const int64_t* y, Py_ssize_t n, Py_ssize_t C, double c)
    double hg_softmax_xent_d(const double* S, double* dS, double* losses, int64_t* labels,
                             const int64_t* y, Py_ssize_t n, Py_ssize_t C, double c)
    void hg_adam_f(float* theta, const float* g, float* m, float* v, Py_ssize_t size,
                   double lr_t, double b1, double b2, double eps)
    void hg_adam_d(double* theta, const double* g, double* m, double* v, Py_ssize_t size,
                   double lr_t, double b1, double b2, double eps)
    void hg_gather_rows_f(float* dst, int64_t* t, const float* X, const int64_t* targets,
                          const int64_t* positions, const int64_t* rows, Py_ssize_t n,
                          Py_ssize_t D)
    void hg_gather_rows_d(double* dst, int64_t* t, const double* X, const int64_t* targets,
                          const int64_t* positions, const int64_t* rows, Py_ssize_t n,
                          Py_ssize_t D)
    void hg_add_scaled_f(float* dW, const float* W, Py_ssize_t size, double reg)
    void hg_add_scaled_d(double* dW, const double* W, Py_ssize_t size, double reg)
    void hg_momentum_f(float* theta, const float* g, float* v, Py_ssize_t size, double lr,
                       double mu, int nesterov)
    void hg_momentum_d(double* theta, const double* g, double* v, Py_ssize_t size, double lr,
                       double mu, int nesterov)

ctypedef void (*dgemm_t)(int, int, int, int64_t, int64_t, int64_t, double, const double*,
                         int64_t, const double*, int64_t, double, double*, int64_t) noexcept nogil
ctypedef void (*sgemm_t)(int, int, int, int64_t, int64_t, int64_t, float, const float*,
                         int64_t, const float*, int64_t, float, float*, int64_t) noexcept nogil

ctypedef fused real:
    float
    double

cdef enum:
    MAX_LAYERS = 16

# the update rules of :meth:`Net.epoch` (``handgrad.optim``'s SGD and Adam)
cdef enum:
    PLAIN = 0     # θ ← θ − η g, fused into the gradient's product
    MOMENTUM = 1  # SGD with momentum (Nesterov or not)
    ADAM = 2
cdef int ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112

ctypedef double (*ddot_t)(int64_t, const double*, int64_t, const double*, int64_t) noexcept nogil
ctypedef float (*sdot_t)(int64_t, const float*, int64_t, const float*, int64_t) noexcept nogil

cdef dgemm_t _cblas_d = NULL
cdef sgemm_t _cblas_s = NULL
cdef ddot_t _cblas_ddot = NULL
cdef sdot_t _cblas_sdot = NULL


def use_cblas(size_t sgemm, size_t dgemm, size_t sdot=0, size_t ddot=0) -> None:
    """Call these cblas ``?gemm`` (64-bit integers: NumPy's OpenBLAS) for the products
    and ``?dot`` for the squared norms (as NumPy's ``vdot``, on BLAS's threads); 0 for
    SciPy's BLAS and the kernels' own norm."""
    global _cblas_s, _cblas_d, _cblas_sdot, _cblas_ddot
    _cblas_s = <sgemm_t>sgemm
    _cblas_d = <dgemm_t>dgemm
    _cblas_sdot = <sdot_t>sdot
    _cblas_ddot = <ddot_t>ddot


cdef inline void gemm(bint ta, bint tb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, real alpha,
                      real* A, Py_ssize_t lda, real* B, Py_ssize_t ldb, real beta, real* C,
                      Py_ssize_t ldc) noexcept nogil:
    """Row-major ``C ← α op(A) op(B) + β C``; C (m, n)."""
    cdef int fm, fn, fk, flda, fldb, fldc
    cdef char ca, cb
    if real is double:
        if _cblas_d != NULL:
            _cblas_d(ROW_MAJOR, TRANS if ta else NO_TRANS, TRANS if tb else NO_TRANS,
                     m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
            return
    else:
        if _cblas_s != NULL:
            _cblas_s(ROW_MAJOR, TRANS if ta else NO_TRANS, TRANS if tb else NO_TRANS,
                     m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
            return
    # column-major BLAS: Cᵀ = op(B)ᵀ op(A)ᵀ
    fm, fn, fk, flda, fldb, fldc = n, m, k, lda, ldb, ldc
    ca = b'T' if tb else b'N'
    cb = b'T' if ta else b'N'
    if real is double:
        f_dgemm(&ca, &cb, &fm, &fn, &fk, &alpha, B, &fldb, A, &flda, &beta, C, &fldc)
    else:
        f_sgemm(&ca, &cb, &fm, &fn, &fk, &alpha, B, &fldb, A, &flda, &beta, C, &fldc)


cdef class Net:
    """Addresses of one network's parameters, gradients and buffers (rows ≤ ``rows``),
    all C-contiguous arrays of one dtype, held by the caller. ``sizes`` (L+1,): D, H…, C.
    Lists are indexed by layer 1…L at 0…L−1; hidden buffers A (activations) and dZ by 0…L−2. ``Xb``
    (rows, D) and ``yb`` (rows,) int64 are the batch buffers :meth:`epoch` gathers into
    (:meth:`set_batch`).

    After :meth:`epoch`: ``total`` (Σ loss · n over its steps), ``correct`` (rows whose
    argmax was their class) and ``seen`` (rows stepped on)."""

    cdef int L
    cdef bint double_
    cdef Py_ssize_t sizes[MAX_LAYERS + 1]
    cdef size_t W[MAX_LAYERS]
    cdef size_t b[MAX_LAYERS]
    cdef size_t dW[MAX_LAYERS]
    cdef size_t db[MAX_LAYERS]
    cdef size_t A[MAX_LAYERS]
    cdef size_t dZ[MAX_LAYERS]
    cdef size_t S, dS, losses, labels, Xb, yb
    # the update rule of :meth:`epoch` and the addresses of its state, W1, b1, W2, … order
    cdef int rule
    cdef size_t first[2 * MAX_LAYERS]   # momentum: the velocities; Adam: m
    cdef size_t second[2 * MAX_LAYERS]  # Adam: v
    cdef double mu, beta_1, beta_2, eps
    cdef bint nesterov
    cdef public double penalty, total
    cdef public Py_ssize_t correct, seen

    def __init__(self, sizes, bint double_, A, dZ, S, dS, losses, labels):
        cdef int l
        self.L = len(sizes) - 1
        if not 1 <= self.L <= MAX_LAYERS:
            raise ValueError(f"layers: expected 1 to {MAX_LAYERS}, got {self.L}")
        self.double_ = double_
        for l in range(self.L + 1):
            self.sizes[l] = sizes[l]
        for l in range(self.L - 1):
            self.A[l], self.dZ[l] = A[l], dZ[l]
        self.S, self.dS, self.losses, self.labels = S, dS, losses, labels
        self.Xb = self.yb = 0
        self.penalty = self.total = 0.0
        self.correct = self.seen = 0
        self.rule = PLAIN

    def set_parameters(self, W, b, dW, db) -> None:
        """The addresses of the weights, biases and their gradients, layer by layer."""
        cdef int l
        for l in range(self.L):
            self.W[l], self.b[l], self.dW[l], self.db[l] = W[l], b[l], dW[l], db[l]

    def set_batch(self, size_t Xb, size_t yb) -> None:
        """The addresses of the batch buffers :meth:`epoch` gathers into: Xb (rows, D),
        yb (rows,) int64."""
        self.Xb, self.yb = Xb, yb

    def set_rule(self, int rule, list first, list second, double mu=0.0, bint nesterov=False,
                 double beta_1=0.0, double beta_2=0.0, double eps=0.0) -> None:
        """The update rule of :meth:`epoch` (``PLAIN`` 0, ``MOMENTUM`` 1, ``ADAM`` 2),
        the addresses of its state arrays (velocities; or Adam's m and v) in W1, b1, W2,
        … order, and its constants."""
        cdef int i
        if rule not in (PLAIN, MOMENTUM, ADAM):
            raise ValueError(f"rule: expected 0, 1 or 2, got {rule}")
        for i in range(2 * self.L):
            self.first[i] = first[i] if rule != PLAIN else 0
            self.second[i] = second[i] if rule == ADAM else 0
        self.rule, self.mu, self.nesterov = rule, mu, nesterov
        self.beta_1, self.beta_2, self.eps = beta_1, beta_2, eps

    def step(self, size_t X, size_t y, Py_ssize_t n, double reg, double learning_rate,
             bint sgd, double low=-INFINITY, double high=INFINITY) -> float:
        """Forward, loss and backward of the batch at X (n, D) with classes y (n,) int64:
        returns the mean of the rows' losses, each clipped to ``[low, high]``, plus the
        penalty (kept in ``penalty``). The gradients go to dW, db; with ``sgd`` the plain
        SGD update is made instead (W by one gemm)."""
        cdef double loss
        with nogil:
            if self.double_:
                loss = _step(self, <double*>X, <int64_t*>y, n, reg, learning_rate, sgd, low, high)
            else:
                loss = _step(self, <float*>X, <int64_t*>y, n, reg, learning_rate, sgd, low, high)
        return loss

    def update(self, double lr, long t) -> None:
        """The update rule's step (momentum or Adam, :meth:`set_rule`) of every parameter
        from the gradients dW, db; Adam's ``t`` counts this step (1 for the first)."""
        with nogil:
            if self.double_:
                _update(self, <double*>NULL, lr, t)
            else:
                _update(self, <float*>NULL, lr, t)

    def epoch(self, size_t X, size_t T, size_t order, size_t rows, Py_ssize_t N,
              Py_ssize_t batch, Py_ssize_t steps, double reg, bint per_sample, double lr,
              long t, double low, double high, size_t out) -> int:
        """Up to ``steps`` steps over the batches of ``batch`` rows of one epoch: batch k
        is positions ``order[k·batch : (k+1)·batch]`` of the N, as row numbers of X (·, D)
        and T (·,) int64 — through ``rows`` (int64) where it is not 0. Each step gathers
        its rows into Xb, yb, steps (:meth:`step`, λ = reg / n with ``per_sample``) and
        updates by the rule (:meth:`set_rule`; Adam's step t + 1 for the first), writing
        its loss to ``out[k]`` (double). Stops after a step whose loss is not finite (its
        update not made, but for plain SGD's, fused). Returns the steps taken; Ctrl-C
        between two steps raises KeyboardInterrupt."""
        if self.Xb == 0 or self.yb == 0:
            raise ValueError("epoch: no batch buffers (set_batch)")
        if self.double_:
            return _epoch(self, <double*>X, <int64_t*>T, <int64_t*>order, <int64_t*>rows, N,
                          batch, steps, reg, per_sample, lr, t, low, high, <double*>out)
        return _epoch(self, <float*>X, <int64_t*>T, <int64_t*>order, <int64_t*>rows, N, batch,
                      steps, reg, per_sample, lr, t, low, high, <double*>out)

    def squared_norm(self) -> float:
        """Σ ‖W‖² + ‖b‖² over every layer (in double): finite exactly where every
        parameter is, unless the sum overflows."""
        cdef double total = 0.0
        cdef int l, i
        with nogil:
            for l in range(self.L):
                for i in range(2):
                    if self.double_:
                        total += sqnorm(<double*>(self.W[l] if i == 0 else self.b[l]),
                                        self._size(l, i))
                    else:
                        total += sqnorm(<float*>(self.W[l] if i == 0 else self.b[l]),
                                        self._size(l, i))
        return total

    cdef inline Py_ssize_t _size(self, int l, int i) noexcept nogil:
        return self.sizes[l] * self.sizes[l + 1] if i == 0 else self.sizes[l + 1]


cdef Py_ssize_t _epoch(Net net, real* X, int64_t* T, int64_t* order, int64_t* rows,
                       Py_ssize_t N, Py_ssize_t batch, Py_ssize_t steps, double reg,
                       bint per_sample, double lr, long t, double low, double high,
                       double* out) except -1:
    cdef Py_ssize_t k, i, n, start, right, D = net.sizes[0]
    cdef real* Xb = <real*>net.Xb
    cdef int64_t* yb = <int64_t*>net.yb
    cdef int64_t* labels = <int64_t*>net.labels
    cdef double loss, reg_b
    net.total, net.correct, net.seen = 0.0, 0, 0
    for k in range(steps):
        start = k * batch
        if start >= N:
            return k
        n = min(batch, N - start)
        reg_b = reg / n if per_sample else reg
        with nogil:
            gather_rows(Xb, yb, X, T, order + start, rows, n, D)  # the batch's rows
            loss = _step(net, Xb, yb, n, reg_b, lr, net.rule == PLAIN, low, high)
            out[k] = loss
            if isfinite(loss):
                if net.rule != PLAIN:
                    _update(net, Xb, lr, t + k + 1)
                right = 0
                for i in range(n):
                    right += labels[i] == yb[i]
                net.total += loss * n
                net.correct += right
                net.seen += n
        if not isfinite(loss):
            return k + 1
        PyErr_CheckSignals()  # Ctrl-C: between two steps
    return steps


cdef void _update(Net net, real* dtype, double lr, long t) noexcept nogil:
    """The momentum or Adam step of every parameter (``handgrad.optim``'s update), in
    the dtype of the (unread) pointer ``dtype``."""
    cdef int l, i
    cdef real* theta
    cdef real* g
    cdef double lr_t
    if net.rule == ADAM:
        # Adam.update's step size, the same expression
        lr_t = lr * sqrt(1 - pow(net.beta_2, <double>t)) / (1 - pow(net.beta_1, <double>t))
    for l in range(net.L):
        for i in range(2):
            theta = <real*>(net.W[l] if i == 0 else net.b[l])
            g = <real*>(net.dW[l] if i == 0 else net.db[l])
            if net.rule == ADAM:
                _adam(theta, g, <real*>net.first[2 * l + i], <real*>net.second[2 * l + i],
                      net._size(l, i), lr_t, net.beta_1, net.beta_2, net.eps)
            else:
                _momentum(theta, g, <real*>net.first[2 * l + i], net._size(l, i), lr,
                          net.mu, net.nesterov)


cdef double _step(Net net, real* X, int64_t* y, Py_ssize_t n, double reg,
                  double learning_rate, bint sgd, double low, double high) noexcept nogil:
    """One step on the batch X (n, D), y (n,): the mean of the rows' losses clipped to
    [low, high] (a NaN stays NaN) plus the penalty of the weights before the step."""
    cdef int L = net.L, l
    cdef Py_ssize_t i, j, k, rows_in, cols
    cdef real *A_prev
    cdef real *Z
    cdef real *W
    cdef real *b
    cdef real *dZ
    cdef real *dA
    cdef real *dW_
    cdef real *db_
    cdef real *S = <real*>net.S
    cdef real *dS = <real*>net.dS
    cdef real *losses = <real*>net.losses
    cdef real z, lr_r, decay
    cdef double penalty = 0.0, loss = 0.0
    cdef Py_ssize_t C = net.sizes[L]

    # forward (Z, A: (n, cols)): Z_l = A_{l−1} W_l by BLAS, then + b_l and, hidden,
    # A_l = ReLU(Z_l) = Z_l ⊙ [Z_l > 0] in the same pass, in place
    A_prev = X
    for l in range(L):
        rows_in, cols = net.sizes[l], net.sizes[l + 1]
        Z = S if l == L - 1 else <real*>net.A[l]
        gemm(False, False, n, cols, rows_in, <real>1.0, A_prev, rows_in, <real*>net.W[l], cols,
             <real>0.0, Z, cols)
        add_bias(Z, <real*>net.b[l], n, cols, l < L - 1)
        A_prev = Z

    # the penalty λ/2 Σ‖W‖² of the weights before the step
    if reg != 0:
        for l in range(L):
            penalty += sqnorm(<real*>net.W[l], net.sizes[l] * net.sizes[l + 1])
        penalty = 0.5 * reg * penalty
    net.penalty = penalty

    # softmax cross-entropy (S, dS: (n, C)): ℓ_i = log Σ_j e^{S_ij − m_i} − (S_iy − m_i),
    # dS = (P − Y) / n; the labels (row argmax) for the running accuracy
    softmax_xent(S, dS, losses, <int64_t*>net.labels, y, n, C, 1.0 / n)
    for i in range(n):  # the reported loss: each row's clipped to [low, high]
        z = losses[i]
        loss += low if z < low else (high if z > high else z)
    loss = loss / n + penalty

    # backward, l = L … 1 (dZ_l: (n, cols), W_l: (rows_in, cols)):
    # db_L = 1ᵀ dS; dA_{l−1} = dZ_l W_lᵀ (W before its update);
    # dW_l = A_{l−1}ᵀ dZ_l + λ W_l (plain SGD: W_l ← (1 − ηλ) W_l − η A_{l−1}ᵀ dZ_l, one gemm);
    # dZ_{l−1} = dA_{l−1} ⊙ [A_{l−1} > 0] (= [Z_{l−1} > 0]) and db_{l−1} = 1ᵀ dZ_{l−1}, one pass
    lr_r = <real>learning_rate
    decay = <real>(1.0 - learning_rate * reg)
    dZ = dS
    column_sums(dS, n, C, <real*>net.db[L - 1])
    for l in range(L - 1, -1, -1):
        rows_in, cols = net.sizes[l], net.sizes[l + 1]
        W = <real*>net.W[l]
        b = <real*>net.b[l]
        A_prev = X if l == 0 else <real*>net.A[l - 1]
        dA = NULL
        if l > 0:
            dA = <real*>net.dZ[l - 1]
            gemm(False, True, n, rows_in, cols, <real>1.0, dZ, cols, W, cols, <real>0.0, dA,
                 rows_in)
        if sgd:
            gemm(True, False, rows_in, cols, n, -lr_r, A_prev, rows_in, dZ, cols, decay, W, cols)
            db_ = <real*>net.db[l]
            for j in range(cols):
                db_[j] = db_[j] * lr_r
                b[j] = b[j] - db_[j]
        else:
            dW_ = <real*>net.dW[l]
            gemm(True, False, rows_in, cols, n, <real>1.0, A_prev, rows_in, dZ, cols, <real>0.0,
                 dW_, cols)
            if reg != 0:
                add_scaled(dW_, W, rows_in * cols, reg)
        if dA != NULL:
            relu_grad(dA, A_prev, n, rows_in, <real*>net.db[l - 1])
            dZ = dA
    return loss


# The elementwise kernels of _kernels.c (AVX-512 / AVX2 / baseline, chosen at load
# time), by dtype. Each does the operations of the NumPy engines in the same order and
# dtype (the softmax's exp within an ulp of the correctly rounded value).
cdef inline void add_bias(real* Z, real* b, Py_ssize_t n, Py_ssize_t cols,
                          bint then_relu) noexcept nogil:
    if real is double:
        if then_relu:
            hg_add_bias_relu_d(Z, b, n, cols)
        else:
            hg_add_bias_d(Z, b, n, cols)
    else:
        if then_relu:
            hg_add_bias_relu_f(Z, b, n, cols)
        else:
            hg_add_bias_f(Z, b, n, cols)


cdef inline void relu_grad(real* dA, real* A, Py_ssize_t n, Py_ssize_t cols,
                           real* db) noexcept nogil:
    if real is double:
        hg_relu_grad_d(dA, A, n, cols, db)
    else:
        hg_relu_grad_f(dA, A, n, cols, db)


cdef inline void column_sums(real* dZ, Py_ssize_t n, Py_ssize_t cols, real* out) noexcept nogil:
    if real is double:
        hg_column_sums_d(dZ, n, cols, out)
    else:
        hg_column_sums_f(dZ, n, cols, out)


cdef inline void gather_rows(real* dst, int64_t* t, real* X, int64_t* targets,
                             int64_t* positions, int64_t* rows, Py_ssize_t n,
                             Py_ssize_t D) noexcept nogil:
    if real is double:
        hg_gather_rows_d(dst, t, X, targets, positions, rows, n, D)
    else:
        hg_gather_rows_f(dst, t, X, targets, positions, rows, n, D)


cdef inline void add_scaled(real* dW, real* W, Py_ssize_t size, double reg) noexcept nogil:
    if real is double:
        hg_add_scaled_d(dW, W, size, reg)
    else:
        hg_add_scaled_f(dW, W, size, reg)


cdef inline double sqnorm(real* W, Py_ssize_t size) noexcept nogil:
    # ‖W‖²: NumPy's BLAS ``?dot`` where given (the fast engine's ``vdot``), else the kernel
    if real is double:
        if _cblas_ddot != NULL:
            return _cblas_ddot(size, W, 1, W, 1)
        return hg_sqnorm_d(W, size)
    else:
        if _cblas_sdot != NULL:
            return _cblas_sdot(size, W, 1, W, 1)
        return hg_sqnorm_f(W, size)


cdef inline double softmax_xent(real* S, real* dS, real* losses, int64_t* labels, int64_t* y,
                                Py_ssize_t n, Py_ssize_t C, double c) noexcept nogil:
    if real is double:
        return hg_softmax_xent_d(S, dS, losses, labels, y, n, C, c)
    else:
        return hg_softmax_xent_f(S, dS, losses, labels, y, n, C, c)


cdef inline void _momentum(real* theta, real* g, real* v, Py_ssize_t size, double lr,
                           double mu, bint nesterov) noexcept nogil:
    # optim.SGD.update: step = η g; v ← μ v − step; θ ← θ + v or θ ← θ + (μ v − step)
    if real is double:
        hg_momentum_d(theta, g, v, size, lr, mu, nesterov)
    else:
        hg_momentum_f(theta, g, v, size, lr, mu, nesterov)


cdef inline void _adam(real* theta, real* g, real* m, real* v, Py_ssize_t size, double lr_t,
                       double b1, double b2, double eps) noexcept nogil:
    # optim.Adam.update: m ← β1 m + (1−β1) g; v ← β2 v + (1−β2) g²; θ ← θ − η_t m / (√v + ε)
    if real is double:
        hg_adam_d(theta, g, m, v, size, lr_t, b1, b2, eps)
    else:
        hg_adam_f(theta, g, m, v, size, lr_t, b1, b2, eps)


def gemm_floor(bint double_, size_t X, size_t order, Py_ssize_t N, Py_ssize_t batch,
               Py_ssize_t D, Py_ssize_t H, Py_ssize_t C, size_t Xb, size_t W1, size_t W2,
               size_t A1, size_t S, size_t dA1, size_t dW1, size_t dW2) -> None:
    """What ``benchmarks/epoch.py`` measures steps against: the five products of every
    batch of an epoch of a two-layer network (``X W1``, ``A1 W2``, ``A1ᵀ S``,
    ``S W2ᵀ``, ``Xᵀ dA1``), called from C, so that for small layers the floor is the
    arithmetic and not Python's calls. Batches are X's consecutive rows, or (``order``
    not 0: int64 positions) rows gathered into ``Xb`` first."""
    with nogil:
        if double_:
            _gemm_floor(<double*>X, <int64_t*>order, N, batch, D, H, C, <double*>Xb,
                        <double*>W1, <double*>W2, <double*>A1, <double*>S, <double*>dA1,
                        <double*>dW1, <double*>dW2)
        else:
            _gemm_floor(<float*>X, <int64_t*>order, N, batch, D, H, C, <float*>Xb,
                        <float*>W1, <float*>W2, <float*>A1, <float*>S, <float*>dA1,
                        <float*>dW1, <float*>dW2)


cdef void _gemm_floor(real* X, int64_t* order, Py_ssize_t N, Py_ssize_t batch, Py_ssize_t D,
                      Py_ssize_t H, Py_ssize_t C, real* Xb, real* W1, real* W2, real* A1,
                      real* S, real* dA1, real* dW1, real* dW2) noexcept nogil:
    cdef Py_ssize_t start = 0, n
    cdef real* rows
    while start < N:
        n = min(batch, N - start)
        if order != NULL:
            gather_rows(Xb, NULL, X, NULL, order + start, NULL, n, D)
            rows = Xb
        else:
            rows = X + start * D
        gemm(False, False, n, H, D, <real>1.0, rows, D, W1, H, <real>0.0, A1, H)
        gemm(False, False, n, C, H, <real>1.0, A1, H, W2, C, <real>0.0, S, C)
        gemm(True, False, H, C, n, <real>1.0, A1, H, S, C, <real>0.0, dW2, C)
        gemm(False, True, n, H, C, <real>1.0, S, C, W2, C, <real>0.0, dA1, H)
        gemm(True, False, D, H, n, <real>1.0, rows, D, dA1, H, <real>0.0, dW1, H)
        start += n
