"""The compiled engine (issue 26): a step without Python in its inner loop for the
common small fit — dense NumPy batches, hidden ReLU layers, a softmax head, no sample
weights, float32 or float64, SGD (plain, momentum, Nesterov) or Adam.

The step is one call into :mod:`handgrad._fused` (forward, exact softmax loss, backward
and, for plain SGD, the update fused into the gradient's product as
:meth:`Workspace.sgd_step <handgrad.workspace.Workspace.sgd_step>` does), and for
momentum and Adam one more for the update of every parameter — the equations of
:mod:`handgrad.optim` in the same order and dtype, on the optimizer's own state arrays
(so a saved state resumes on any engine). Products go to NumPy's own cblas where the
fast engine found it (the same BLAS), else to SciPy's (``scipy.linalg.cython_blas``).

The extension is optional (built by ``setup.py`` where Cython and a compiler are at
hand); where it is missing, or a case is not covered, :func:`compiled_engine` returns
None and :func:`~handgrad.training.engines.engine_for` keeps today's engines. A batch the
step cannot take (a sparse one) goes to the fast engine it holds.
"""

from __future__ import annotations

import ctypes
import importlib
import itertools
import math
from typing import Any

import numpy as np

from handgrad._xp import is_dense_numpy
from handgrad.network import MLP
from handgrad.optim import SGD, Adam, Optimizer, _zeros_once
from handgrad.training.config import TrainingConfig
from handgrad.workspace import _CBLAS_GEMM, Workspace

try:  # by name: ``import handgrad._fused`` reads as an import of handgrad to the linter
    _fused: Any = importlib.import_module("handgrad._fused")
except ImportError:  # built without a compiler: the NumPy engines only
    _fused = None

#: The most layers the compiled step takes (``_fused.MAX_LAYERS``).
MAX_LAYERS = 16
#: Plain SGD on more weights than this keeps the fast engine's fused step: there the
#: products are the step, and the compiled step's elementwise loops (SSE2, where NumPy's
#: use the CPU's widest vectors) were 0.94–1.06× its time on MNIST- and CIFAR-like
#: layers (one thread, benchmarks/README.md); with momentum or Adam the compiled
#: update still gains (1.06–1.15× there). Digits-sized layers (7,400 weights): 1.15–1.25×.
SGD_MAX_WEIGHTS = 100_000


def _use_numpys_blas() -> None:
    """Point the extension's products at NumPy's cblas where the fast engine found it."""
    funcs = _CBLAS_GEMM
    if _fused is None or funcs is None:
        return
    address = {dt: ctypes.cast(func, ctypes.c_void_p).value or 0 for dt, func in funcs.items()}
    _fused.use_cblas(address[np.dtype(np.float32)], address[np.dtype(np.float64)])


_use_numpys_blas()


def available() -> bool:
    """Whether the compiled extension was built and imports."""
    return _fused is not None


def supports(model: MLP, optimizer: Optimizer, config: TrainingConfig) -> bool:
    """Whether the compiled step covers this fit, and is faster there: NumPy
    float32/float64 parameters, hidden ReLU layers without dropout or normalization, a
    softmax head, SGD with momentum or Adam, or plain SGD on at most
    :data:`SGD_MAX_WEIGHTS` weights."""
    L = len(model.layer_sizes) - 1
    return (
        available()
        and is_dense_numpy(model.params["W1"])
        and model.norm is None
        and not model.dropout
        and model.dtype in (np.dtype(np.float32), np.dtype(np.float64))
        and model.head == "softmax"
        and (model.activation == "relu" or L == 1)
        and 1 <= L <= MAX_LAYERS
        and type(optimizer) in (SGD, Adam)
        and not (_plain_sgd(optimizer) and _weights(model.layer_sizes) > SGD_MAX_WEIGHTS)
    )


def _plain_sgd(optimizer: Optimizer) -> bool:
    return type(optimizer) is SGD and optimizer.momentum == 0


def _weights(layer_sizes: tuple[int, ...]) -> int:
    return sum(a * b for a, b in itertools.pairwise(layer_sizes))


class CompiledEngine:
    """The steps of a fast engine (:class:`~handgrad.training.engines.FastEngine` or
    :class:`~handgrad.training.engines.FusedSGD`, whose workspace gathers the batches),
    each one or two calls into :mod:`handgrad._fused`. Everything else — a batch the
    extension cannot take, the scores, L-BFGS's gradients, the finiteness check — is
    the fast engine's, to which any other attribute is passed. Built by
    :func:`compiled_engine`."""

    def __init__(self, fast: Any) -> None:
        self._fast = fast
        self.model: MLP = fast.model
        self.optimizer: Optimizer = fast.optimizer
        self.config: TrainingConfig = fast.config
        self.workspace: Workspace = fast.workspace
        self.classifies: bool = fast.classifies
        model, rows = self.model, self.workspace.rows
        dt, sizes = model.dtype, model.layer_sizes
        L = len(sizes) - 1
        self._names = [(f"W{l}", f"b{l}") for l in range(1, L + 1)]
        self._order = [name for pair in self._names for name in pair]  # W1, b1, W2, …
        hidden = sizes[1:-1]
        self._A = [np.empty((rows, h), dt) for h in hidden]
        self._D = [np.empty((rows, h), dt) for h in hidden]
        self._dZ = [np.empty((rows, h), dt) for h in hidden]
        self._S, self._dS = np.empty((rows, sizes[-1]), dt), np.empty((rows, sizes[-1]), dt)
        self._losses = np.empty(rows, dt)
        self._labels = np.empty(rows, np.int64)
        self._right = np.empty(rows, np.bool_)
        self.grads = {
            name: np.empty_like(model.params[name]) for pair in self._names for name in pair
        }
        self._net = _fused.Net(
            list(sizes),
            dt == np.float64,
            [a.ctypes.data for a in self._A],
            [a.ctypes.data for a in self._D],
            [a.ctypes.data for a in self._dZ],
            self._S.ctypes.data,
            self._dS.ctypes.data,
            self._losses.ctypes.data,
            self._labels.ctypes.data,
        )
        self._held: list[np.ndarray] = []  # the parameter arrays the net points into
        self._state: tuple | None = None  # the optimizer's state arrays, as addresses
        self._sgd = _plain_sgd(self.optimizer)

    # ------------------------------------------------------------------ the step
    def step(self, X: Any, T: Any, w: Any, n_weight: float) -> tuple[float, int]:
        """One minibatch step, as the fast engine's ``step``."""
        params, optimizer = self.model.params, self.optimizer
        if not (self._takes(X, T, w) and self._point_at(params)):
            return self._fast.step(X, T, w, n_weight)
        n = X.shape[0]
        reg = self.config.reg_of(n_weight)
        lr = optimizer.learning_rate
        loss = self._net.step(X.ctypes.data, T.ctypes.data, n, reg, lr, self._sgd)
        report = self.config.report
        if report is not None:
            penalty = self._net.penalty
            loss = float(report(self._S[:n], T, None, penalty, row_losses=self._losses[:n]))
        if not self._sgd and math.isfinite(loss):
            self._update()
        right = 0
        if self.classifies:
            right = int(np.count_nonzero(np.equal(self._labels[:n], T, out=self._right[:n])))
        return loss, right

    def _takes(self, X: Any, T: Any, w: Any) -> bool:
        """Whether the compiled step takes this batch: dense, C-ordered, the model's dtype,
        class indices as int64, no weights."""
        return (
            w is None
            and type(X) is np.ndarray
            and X.dtype == self.model.dtype
            and X.flags.c_contiguous
            and type(T) is np.ndarray
            and T.dtype == np.int64
            and T.flags.c_contiguous
            and X.shape[0] <= self.workspace.rows
        )

    def _laid_out(self, arrays: list[np.ndarray]) -> bool:
        """Whether each array is as the extension reads it: writeable, C-ordered, the
        model's dtype and its parameter's shape (W1, b1, W2, … order)."""
        return all(
            type(a) is np.ndarray
            and a.flags.c_contiguous
            and a.flags.writeable
            and a.dtype == self.model.dtype
            and a.shape == self.grads[name].shape
            for name, a in zip(self._order, arrays, strict=True)
        )

    def _point_at(self, params: dict[str, np.ndarray]) -> bool:
        """Give the net the addresses of the parameter arrays (again if any changed);
        False where one is laid out otherwise (the fast engine then steps)."""
        names = self._order
        if self._held and all(params[k] is a for k, a in zip(names, self._held, strict=True)):
            return True
        self._held, self._state = [], None
        arrays = [params[name] for name in names]
        if not self._laid_out(arrays):
            return False
        grads = [self.grads[name] for name in names]
        addresses = [a.ctypes.data for a in arrays], [g.ctypes.data for g in grads]
        self._net.set_parameters(
            addresses[0][0::2], addresses[0][1::2], addresses[1][0::2], addresses[1][1::2]
        )
        self._held = arrays
        return True

    def _update(self) -> None:
        """The optimizer's update of every parameter from ``self.grads``: one call, or
        the optimizer's own where its state is laid out otherwise (loaded from a file)."""
        opt, params = self.optimizer, self.model.params
        names = self._order
        stores = (opt.m, opt.v) if type(opt) is Adam else (opt.velocity,)
        state = [[_zeros_once(s, k, params[k]) for k in names] for s in stores]
        flat = [a for arrays in state for a in arrays]
        if self._state is None or any(
            a is not b for a, b in zip(self._state[0], flat, strict=True)
        ):
            if not all(self._laid_out(arrays) for arrays in state):
                self._state = None
                opt.update(params, self.grads)
                return
            self._state = (flat, [[a.ctypes.data for a in arrays] for arrays in state])
        addresses = self._state[1]
        if type(opt) is Adam:
            opt.t += 1
            b1, b2 = opt.beta_1, opt.beta_2
            # Adam.update's step size, the same expression
            lr_t = float(opt.learning_rate * np.sqrt(1 - b2**opt.t) / (1 - b1**opt.t))
            self._net.adam(addresses[0], addresses[1], lr_t, b1, b2, opt.epsilon)
        else:
            self._net.momentum(addresses[0], opt.learning_rate, opt.momentum, opt.nesterov)

    def __getattr__(self, name: str) -> Any:
        # only for what this class does not define: the fast engine's own
        if name == "_fast":
            raise AttributeError(name)
        return getattr(self._fast, name)


def compiled_engine(fast: Any) -> CompiledEngine | None:
    """The steps of the fast engine ``fast`` compiled (:class:`CompiledEngine`), or None
    where the extension is missing or the fit is not one it covers."""
    if not supports(fast.model, fast.optimizer, fast.config):
        return None
    return CompiledEngine(fast)
