"""The compiled engine (issue 26): no Python in the inner loop for the common fit —
dense NumPy batches, hidden ReLU layers, a softmax head, no sample weights, float32 or
float64, SGD (plain, momentum, Nesterov) or Adam.

Where the source holds X in memory, an epoch is one call into :mod:`handgrad._fused`:
for every batch, its rows gathered, the forward pass, the exact softmax loss (and the
reported one, :meth:`ReportedLoss.row_clip <handgrad.estimator.ReportedLoss.row_clip>`),
the backward pass and the update — plain SGD's fused into the gradient's product as
:meth:`Workspace.sgd_step <handgrad.workspace.Workspace.sgd_step>` does, momentum's and
Adam's the equations of :mod:`handgrad.optim` in the same order and dtype, on the
optimizer's own state arrays (so a saved state resumes on any engine). Otherwise (a
memory-mapped X, read from its file by the source) the same step is one call a batch.
Products go to NumPy's own cblas where the fast engine found it (the same BLAS), else to
SciPy's (``scipy.linalg.cython_blas``).

The extension is optional (built by ``setup.py`` where Cython and a compiler are at
hand); where it is missing, or a case is not covered, :func:`compiled_engine` returns
None and :func:`~handgrad.training.engines.engine_for` keeps today's engines. A batch the
step cannot take (a sparse one) goes to the fast engine it holds.
"""

from __future__ import annotations

import ctypes
import importlib
import math
from typing import Any

import numpy as np

from handgrad._xp import is_dense_numpy
from handgrad.network import MLP
from handgrad.optim import SGD, Adam, Optimizer, _zeros_once
from handgrad.training.config import TrainingConfig
from handgrad.training.sources import BatchSource
from handgrad.training.steps import Steps, step_through
from handgrad.workspace import _CBLAS_GEMM, NUMPY_OPENBLAS, Workspace

try:  # by name: ``import handgrad._fused`` reads as an import of handgrad to the linter
    _fused: Any = importlib.import_module("handgrad._fused")
except ImportError:  # built without a compiler: the NumPy engines only
    _fused = None

#: The most layers the compiled step takes (``_fused.MAX_LAYERS``).
MAX_LAYERS = 16
#: :meth:`_fused.Net.set_rule`'s update rules.
PLAIN, MOMENTUM, ADAM = 0, 1, 2


def _use_numpys_blas() -> None:
    """Point the extension's products — and its squared norms, the penalty's: ``?dot``,
    on BLAS's threads — at NumPy's cblas where the fast engine found it."""
    funcs = _CBLAS_GEMM
    if _fused is None or funcs is None:
        return
    address = {dt: ctypes.cast(func, ctypes.c_void_p).value or 0 for dt, func in funcs.items()}
    dots = [getattr(NUMPY_OPENBLAS, f"scipy_cblas_{t}dot64_", None) for t in "sd"]
    sdot, ddot = (0 if f is None else ctypes.cast(f, ctypes.c_void_p).value or 0 for f in dots)
    _fused.use_cblas(address[np.dtype(np.float32)], address[np.dtype(np.float64)], sdot, ddot)


_use_numpys_blas()


def available() -> bool:
    """Whether the compiled extension was built and imports."""
    return _fused is not None


def supports(model: MLP, optimizer: Optimizer, config: TrainingConfig) -> bool:
    """Whether the compiled step covers this fit: NumPy float32/float64 parameters,
    hidden ReLU layers without dropout or normalization, a softmax head, SGD (plain,
    momentum, Nesterov) or Adam. Where it does, it is the faster at every size measured
    (digits- to CIFAR-like layers, one and two threads: benchmarks/README.md)."""
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
    )


def _plain_sgd(optimizer: Optimizer) -> bool:
    return type(optimizer) is SGD and optimizer.momentum == 0


class CompiledEngine:
    """The steps of a fast engine (:class:`~handgrad.training.engines.FastEngine` or
    :class:`~handgrad.training.engines.FusedSGD`, whose workspace gathers the batches),
    compiled: a whole epoch in one call into :mod:`handgrad._fused` where the source
    holds X in memory (:meth:`epoch`), else one call a step (:meth:`step`). Everything
    else — a batch or a state the extension cannot take, the scores, L-BFGS's gradients,
    the finiteness check — is the fast engine's, to which any other attribute is passed.
    Built by :func:`compiled_engine`."""

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
        self._order = [f"{p}{l}" for l in range(1, L + 1) for p in "Wb"]  # W1, b1, W2, …
        # the workspace's own buffers (the memory check counts them): nothing doubled
        shared = self.workspace.step_buffers()
        self.grads = shared.grads
        self._S, self._losses = shared.S, shared.losses
        labels = shared.labels  # np.intp: int64 wherever NumPy 2 runs on 64 bits
        self._labels = labels if labels.dtype == np.int64 else np.empty(rows, np.int64)
        self._right = np.empty(rows, np.bool_)
        self._batch: tuple[np.ndarray, np.ndarray] | None = None  # Xb, yb: set_batch
        self._step_losses = np.empty(0)  # an epoch's losses, one a step
        self._net = _fused.Net(
            list(sizes),
            dt == np.float64,
            [a.ctypes.data for a in shared.A],
            [a.ctypes.data for a in shared.dZ],
            shared.S.ctypes.data,
            shared.dS.ctypes.data,
            shared.losses.ctypes.data,
            self._labels.ctypes.data,
        )
        self._held: list[np.ndarray] = []  # the parameter arrays the net points into
        self._state: list[np.ndarray] | None = None  # the optimizer's, which it points into
        self._sgd = _plain_sgd(self.optimizer)
        self._adam = type(self.optimizer) is Adam
        self._clip = self._bounds()  # the config is the engine's for its life

    # ------------------------------------------------------------------ the steps
    def epoch(self, source: BatchSource, limit: int | None = None) -> Steps:
        """The steps of one epoch of ``source``, as the fast engine's ``epoch``: in one
        call where the source has X in memory and every array is laid out as the
        extension reads it, else a call a step (:meth:`step`)."""
        arrays, bounds = source.in_memory(), self._clip
        N, size = source.n_rows, source.batch_size
        if not (
            arrays is not None
            and bounds is not None
            and min(size, N) <= self.workspace.rows
            and self._takes_all(*arrays)
            and self._ready()
            and self._batch_ready(arrays[0], arrays[1])
        ):
            return step_through(self.step, source, limit)
        X, T, _, order, rows = arrays
        count = -(-N // size) if limit is None else min(limit, -(-N // size))
        if self._step_losses.shape[0] < count:
            self._step_losses = np.empty(count)
        opt, net, out = self.optimizer, self._net, self._step_losses
        done = net.epoch(
            X.ctypes.data,
            T.ctypes.data,
            order.ctypes.data,
            0 if rows is None else rows.ctypes.data,
            N,
            size,
            count,
            self.config.reg,
            self.config.reg_per_sample,
            opt.learning_rate,
            opt.t if self._adam else 0,
            *bounds,
            out.ctypes.data,
        )
        steps = Steps(out[:done].tolist(), net.total, net.correct, net.seen)
        if self._adam:
            opt.t += done - steps.diverged  # Adam counts the steps it updated on
        return steps

    def step(self, X: Any, T: Any, w: Any, n_weight: float) -> tuple[float, int]:
        """One minibatch step, as the fast engine's ``step``."""
        bounds = self._clip
        if bounds is None or not (self._takes(X, T, w) and self._ready()):
            return self._fast.step(X, T, w, n_weight)
        opt, n = self.optimizer, X.shape[0]
        reg = self.config.reg_of(n_weight)
        lr = opt.learning_rate
        loss = self._net.step(X.ctypes.data, T.ctypes.data, n, reg, lr, self._sgd, *bounds)
        if not self._sgd and math.isfinite(loss):
            if self._adam:
                opt.t += 1
            self._net.update(lr, opt.t if self._adam else 0)
        right = int(np.count_nonzero(np.equal(self._labels[:n], T, out=self._right[:n])))
        return loss, right

    def weights_finite(self) -> bool:
        """Whether every weight is finite: the squared norm of the arrays the net points
        into, one pass in C (the loop asks after every epoch); where that sum is not
        finite (or the net points into none) the fast engine's entry-by-entry check."""
        params = self.model.params
        if _same(self._held, [params[name] for name in self._order]) and math.isfinite(
            self._net.squared_norm()
        ):
            return True
        return bool(self._fast.weights_finite())

    def _bounds(self) -> tuple[float, float] | None:
        """Where each row's exact loss is clipped for the loss a step reports: nowhere
        (the core's loss) without ``config.report``; the report's ``row_clip`` for the
        model's dtype (scikit-learn's convention, :class:`handgrad.estimator.ReportedLoss`);
        None for a report that needs the scores (the fast engine then steps)."""
        report = self.config.report
        if report is None:
            return -math.inf, math.inf
        row_clip = getattr(report, "row_clip", None)
        bounds = None if row_clip is None else row_clip(self.model.dtype)
        return None if bounds is None else (float(bounds[0]), float(bounds[1]))

    # ------------------------------------------------------- what the net reads
    def _batch_ready(self, X: np.ndarray, T: np.ndarray) -> bool:
        """Give the net the workspace's batch buffers (made on the first epoch, as the
        fast engine's gather makes them); False where they are laid out otherwise."""
        if self._batch is None:
            Xb, Tb = self.workspace.batch_buffers(X, T)
            if Xb is None or not (_c_array(Xb, self.model.dtype) and _c_array(Tb, np.int64)):
                return False
            self._net.set_batch(Xb.ctypes.data, Tb.ctypes.data)
            self._batch = Xb, Tb
        return True

    def _takes(self, X: Any, T: Any, w: Any) -> bool:
        """Whether the compiled step takes this batch: dense, C-ordered, the model's dtype,
        class indices as int64, no weights."""
        return (
            w is None
            and _c_array(X, self.model.dtype)
            and _c_array(T, np.int64)
            and X.shape[0] <= self.workspace.rows
        )

    def _takes_all(
        self, X: Any, T: Any, w: Any, order: np.ndarray, rows: np.ndarray | None
    ) -> bool:
        """Whether the compiled epoch takes these arrays (:meth:`BatchSource.in_memory`)."""
        return (
            w is None
            and _c_array(X, self.model.dtype)
            and X.ndim == 2
            and X.shape[1] == self.model.layer_sizes[0]
            and _c_array(T, np.int64)
            and _c_array(order, np.int64)
            and (rows is None or _c_array(rows, np.int64))
        )

    def _laid_out(self, arrays: list[np.ndarray]) -> bool:
        """Whether each array is as the extension reads it: writeable, C-ordered, the
        model's dtype and its parameter's shape (W1, b1, W2, … order)."""
        return all(
            _c_array(a, self.model.dtype)
            and a.flags.writeable
            and a.shape == self.grads[name].shape
            for name, a in zip(self._order, arrays, strict=True)
        )

    def _ready(self) -> bool:
        """Point the net at the parameters and the optimizer's state arrays (again where
        any changed: a restored epoch, a loaded state); False where one is laid out
        otherwise (the fast engine then steps)."""
        params, names = self.model.params, self._order
        arrays = [params[name] for name in names]
        if not _same(self._held, arrays):
            self._held, self._state = [], None
            if not self._laid_out(arrays):
                return False
            grads = [self.grads[name] for name in names]
            addresses = [a.ctypes.data for a in arrays], [g.ctypes.data for g in grads]
            self._net.set_parameters(
                addresses[0][0::2], addresses[0][1::2], addresses[1][0::2], addresses[1][1::2]
            )
            self._held = arrays
        opt = self.optimizer
        stores = [] if self._sgd else [opt.m, opt.v] if self._adam else [opt.velocity]
        state = [[_zeros_once(s, k, params[k]) for k in names] for s in stores]
        flat = [a for arrays in state for a in arrays]
        if self._state is not None and _same(self._state, flat):
            return True
        self._state = None
        if not all(self._laid_out(arrays) for arrays in state):
            return False
        first, second = ([[a.ctypes.data for a in arrays] for arrays in state] + [[], []])[:2]
        if self._sgd:
            self._net.set_rule(PLAIN, [], [])
        elif self._adam:
            self._net.set_rule(
                ADAM, first, second, beta_1=opt.beta_1, beta_2=opt.beta_2, eps=opt.epsilon
            )
        else:
            self._net.set_rule(MOMENTUM, first, [], mu=opt.momentum, nesterov=opt.nesterov)
        self._state = flat
        return True

    def __getattr__(self, name: str) -> Any:
        # only for what this class does not define: the fast engine's own
        if name == "_fast":
            raise AttributeError(name)
        return getattr(self._fast, name)


def _c_array(a: Any, dtype: Any) -> bool:
    """Whether ``a`` is a C-ordered NumPy array (not a subclass: not a file's map) of
    ``dtype``."""
    return type(a) is np.ndarray and a.dtype == dtype and a.flags.c_contiguous


def _same(held: list[np.ndarray], arrays: list[np.ndarray]) -> bool:
    """Whether ``held`` are these very arrays (the net's addresses still good)."""
    return len(held) == len(arrays) and all(a is b for a, b in zip(held, arrays, strict=True))


def compiled_engine(fast: Any) -> CompiledEngine | None:
    """The steps of the fast engine ``fast`` compiled (:class:`CompiledEngine`), or None
    where the extension is missing or the fit is not one it covers."""
    if not supports(fast.model, fast.optimizer, fast.config):
        return None
    return CompiledEngine(fast)
