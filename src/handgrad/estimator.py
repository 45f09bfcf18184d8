"""The scikit-learn faces: ``BaseMultilayerPerceptron`` (everything an MLP estimator
shares), ``MLPClassifier`` and ``MLPRegressor``, trained by the one loop
(:func:`handgrad.training.fit`) on the hand-derived gradients of :class:`MLP`.

Swap them in by changing one import line::

    from handgrad import MLPClassifier, MLPRegressor   # was: from sklearn.neural_network
"""

from __future__ import annotations

import functools
import sys
import warnings
from abc import ABCMeta, abstractmethod
from collections.abc import Sequence
from numbers import Real
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as _SklearnMLPClassifier
from sklearn.neural_network import MLPRegressor as _SklearnMLPRegressor
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils._unique import attach_unique
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import (
    _check_partial_fit_first_call,
    check_classification_targets,
    type_of_target,
    unique_labels,
)
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

import handgrad.layers as layers
import handgrad.training as training
from handgrad._parameters import OPTIMIZER_PARAMS, make_optimizer, seed_sequence
from handgrad._split import stratified_split
from handgrad._threads import blas_threads
from handgrad._validation import check_finite_weights, check_X, row_major
from handgrad._xp import (
    as_dtype,
    copy_into,
    device,
    expit,
    finite_on_device,
    float_dtypes,
    input_array,
    is_numpy,
    is_plain_ndarray,
    model_on,
    namespace,
    numpy_dtype,
    to_device,
    to_host,
    to_numpy,
    xp_dtype,
)
from handgrad.errors import TrainingDivergedError
from handgrad.heads import NORMS
from handgrad.network import MLP
from handgrad.optim import Optimizer
from handgrad.training import Callback, History, Run, TrainingConfig
from handgrad.training.loop import NON_FINITE
from handgrad.workspace import CHUNK_ROWS

__all__ = ["BaseMultilayerPerceptron", "MLPClassifier", "MLPRegressor"]


class ReportedLoss:
    """scikit-learn's *reported* loss of a batch: what ``loss_curve_``, ``loss_``,
    ``best_loss_`` and its stopping rule (hence ``n_iter_``) read, and what its L-BFGS
    minimises. The one place where handgrad's estimators follow scikit-learn's
    convention instead of the notes' loss, which the core computes exactly.

    Called as ``report(S, T, w, penalty)`` with the batch's scores S (n, C), its encoded
    targets T, its weights w (n,) or None, and the penalty ``λ/2 Σ‖W‖²`` of the weights
    S came from; returns that penalty plus the data term as scikit-learn computes it:

    - softmax: ``log_loss``, from ``P = softmax(S)`` in the dtype clipped to
      ``[ε, 1 − ε]`` (ε the dtype's machine epsilon): at most ``−log ε`` a row;
    - sigmoid: ``binary_log_loss``, from ``P = σ(S)`` clipped likewise (in float32
      ``1 − P`` near ``P = 1`` has few digits left: it differs visibly from the exact);
    - identity: ``squared_loss``, averaged over the C outputs as well
      (``1/(2NC) Σ‖S − Y‖²``) although the steps descend the sum's gradient;
    - poisson: the core's half Poisson deviance, which is scikit-learn's.

    With ``row_losses`` — each row's exact loss (n,), which the fast engine has at hand
    — the softmax, identity and poisson values come from them without a second pass
    over S (each ``−log P`` clipped to ``[−log(1 − ε), −log ε]``, the same clip); the
    sigmoid's is always computed from S, as it must be to match in float32.
    """

    def __init__(self, head: str) -> None:
        self.head = head

    def __call__(self, S: Any, T: Any, w: Any, penalty: Any, row_losses: Any = None) -> float:
        if row_losses is not None and self.head != "sigmoid":
            return self._from_rows(row_losses, w, S.shape[1]) + float(penalty)
        xp = namespace(S)
        if self.head == "poisson":
            return float(layers.poisson_deviance(S, T, w)[0]) + float(penalty)
        if self.head == "identity":
            R = S - xp.reshape(xp.astype(T, S.dtype), S.shape)
            data = 0.5 * xp.sum(R * R, axis=1) / S.shape[1]
        else:
            eps = float(xp.finfo(S.dtype).eps)
            if self.head == "softmax":
                P = xp.take_along_axis(layers.softmax(S), T[:, None], axis=1)
            else:
                Y = xp.reshape(xp.astype(T, S.dtype), S.shape)
                P = expit(S)  # SciPy's, as scikit-learn's, for NumPy
                P = xp.where(Y > 0.5, P, 1 - P)
            data = -xp.sum(xp.log(xp.clip(P, min=eps, max=1 - eps)), axis=1)
        return _weighted_mean(data, w) + float(penalty)

    def row_clip(self, dtype: Any) -> tuple[float, float] | None:
        """``(low, high)`` where the reported data term is the mean of the rows' exact
        losses each clipped to ``[low, high]`` (the softmax head, in ``dtype``): what an
        engine that has those losses at hand computes itself; None for the other heads."""
        if self.head != "softmax":
            return None
        low, high = _log_bounds(np.dtype(dtype))
        return float(low), float(high)

    def _from_rows(self, losses: NDArray, w: NDArray | None, C: int) -> float:
        """The data term from the rows' exact losses ℓ (n,), on NumPy's fast path."""
        if self.head == "softmax":
            low, high = _log_bounds(losses.dtype)
            if losses.min() < low or losses.max() > high:  # rare: a confident row
                losses = np.minimum(np.maximum(losses, low), high)
        elif self.head == "identity":
            losses = losses / C
        if w is None:
            return float(losses.sum()) / losses.shape[0]
        return float(np.dot(w, losses)) / float(w.sum())


@functools.cache
def _log_bounds(dtype: np.dtype) -> tuple[np.floating, np.floating]:
    """``(−log(1 − ε), −log ε)`` in ``dtype``: the bounds of ``−log P`` for P clipped
    to ``[ε, 1 − ε]``."""
    eps = np.finfo(dtype).eps
    return -np.log(1 - eps), -np.log(eps)


def _weighted_mean(losses: Any, w: Any) -> float:
    """``Σ_i w_i ℓ_i / Σ_i w_i``, or the plain mean without weights."""
    xp = namespace(losses)
    if w is None:
        return float(xp.mean(losses))
    w = xp.astype(w, losses.dtype)
    return float(xp.sum(w * losses) / xp.sum(w))


#: The parameters beyond scikit-learn's (the layers of :data:`handgrad.heads.NORMS`
#: and dropout), validated as scikit-learn validates its own.
_LAYER_CONSTRAINTS: dict[str, list] = {
    "dropout": [Interval(Real, 0, 1, closed="left")],
    "norm": [StrOptions(set(NORMS)), None],
}


def _stochastic(est: BaseMultilayerPerceptron) -> bool:
    if est.solver not in ("sgd", "adam"):
        raise AttributeError(
            f"partial_fit is only available for stochastic optimizers. {est.solver} is "
            "not stochastic."
        )
    return True


class BaseMultilayerPerceptron(BaseEstimator, metaclass=ABCMeta):
    """What every multi-layer-perceptron estimator shares, as in scikit-learn.

    The run management of ``fit``/``partial_fit``/``warm_start``/``resume``, the
    translation of the parameters into an optimizer and a
    :class:`~handgrad.training.TrainingConfig`, the early-stopping split, the fitted
    attributes (``coefs_``, ``loss_curve_``, ``history_`` …) and the forward pass for
    prediction. A subclass says what its targets are: how ``y`` is checked and encoded
    (``_encode_y``, ``_encode_held_out``, ``_targets``), which head the network gets
    (``_head``, with its scikit-learn name in ``_OUT_ACTIVATION``) and how the
    early-stopping split may be stratified (``_stratify``).

    All the training state lives in one :class:`~handgrad.training.Run` (network,
    optimizer, shuffling generator, history), set before the loop starts, so the hooks
    of a callback see the same objects as ``network_`` and ``history_``.

    With scikit-learn's ``array_api_dispatch`` on, X may be a PyTorch, CuPy or other
    array-API array: training and prediction then run in its library on its device
    (see README, "GPUs and other array libraries"); with it off, X converts to NumPy.
    """

    #: The network's head → scikit-learn's name for the output activation.
    _OUT_ACTIVATION: ClassVar[dict[str, str]] = {}

    @abstractmethod
    def __init__(
        self,
        hidden_layer_sizes: ArrayLike | int,
        activation: str,
        *,
        solver: str,
        alpha: float,
        batch_size: int | str,
        learning_rate: str,
        learning_rate_init: float,
        power_t: float,
        max_iter: int,
        shuffle: bool,
        random_state: int | np.random.RandomState | None,
        tol: float,
        verbose: bool,
        warm_start: bool,
        momentum: float,
        nesterovs_momentum: bool,
        early_stopping: bool,
        validation_fraction: float,
        beta_1: float,
        beta_2: float,
        epsilon: float,
        n_iter_no_change: int,
        max_fun: int,
        dropout: float = 0.0,
        norm: str | None = None,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dropout = dropout
        self.norm = norm

    # ------------------------------------------------------------ what a subclass says
    @property
    @abstractmethod
    def _head(self) -> str:
        """The network's head for the targets seen by ``fit``."""

    @abstractmethod
    def _encode_y(
        self, y: NDArray, *, reset: bool, incremental: bool, classes: ArrayLike | None
    ) -> NDArray:
        """Check the training targets (already through ``validate_data``) and encode
        them as an (N, n_outputs) matrix (or (N,) class indices, see ``_n_outputs``),
        setting what the estimator learns from them."""

    @abstractmethod
    def _encode_held_out(self, y_val: NDArray) -> NDArray:
        """Encode the targets of ``eval_set`` as ``_encode_y`` did those of training."""

    def _targets(self, Y: NDArray) -> NDArray:
        """The encoded targets as the network's head takes them."""
        return Y

    def _n_outputs(self, Y: NDArray) -> int:
        """The network's output width for the encoded targets Y."""
        return Y.shape[1]

    def _stratify(self, T: NDArray) -> NDArray | None:
        """Labels to stratify the early-stopping split by (None: a plain split)."""
        return None

    def _begin_partial_fit(self, y: ArrayLike, classes: ArrayLike | None) -> None:
        """What the first call to ``partial_fit`` must set up before checking y."""

    # ------------------------------------------------------------------- fitting
    def fit(
        self,
        X: ArrayLike,
        y: ArrayLike,
        sample_weight: ArrayLike | None = None,
        *,
        rows: ArrayLike | None = None,
        eval_set: tuple[ArrayLike, ArrayLike] | ArrayLike | None = None,
        callbacks: Sequence[Callback] | None = None,
        resume: Run | None = None,
    ) -> Self:
        """Fit to X (n_samples, n_features) and y (for a classifier, labels (n_samples,)
        or (n_samples, n_labels) 0/1 indicators; for a regressor, targets (n_samples,)
        or (n_samples, n_outputs)). Returns self.

        With ``warm_start`` the fit starts from the current weights (and continues
        ``loss_curve_``) but, as scikit-learn's, with a fresh optimizer: momentum, Adam's
        moments and a decayed learning rate start again. ``partial_fit`` and ``resume``
        continue the optimizer exactly.

        rows : (n_rows,) array of int, optional
            The row numbers of X (and of y and sample_weight) to train on, as
            LightGBM's and XGBoost's row subsets: the same fit as ``fit(X[rows],
            y[rows])`` where ``y[rows]`` holds every label of y, but X is never copied
            (the loop reads the rows, a chunk at a time from a memory-mapped X's file).
            With ``rows``, ``eval_set`` is a second array of row numbers of X, the rows
            held out; without early stopping it may be None.
        eval_set : (X_val, y_val), or with ``rows`` an (n_val,) array of int, optional
            Held-out data scored every epoch (``history_.val_score``). With
            ``early_stopping`` it is the set that decides when to stop, instead of a
            ``validation_fraction`` split: all of X (or of ``rows``) then trains.
        callbacks : sequence of :class:`handgrad.training.Callback`, optional
            Called by the training loop at the start, after every epoch (returning
            True stops training) and at the end, with the run (``network_`` and
            ``history_`` are already its network and history when they are called).
        resume : :class:`handgrad.training.Run`, optional
            A run saved by :class:`handgrad.callbacks.Checkpoint` and read back with
            :func:`handgrad.state.load_run`. Training continues it exactly (its
            network, optimizer state, shuffling generator and history) for the epochs
            left of ``max_iter``: the result is bit-identical to the uninterrupted fit.
        """
        if rows is None:
            return self._fit(
                X, y, sample_weight, eval_set=eval_set, callbacks=callbacks, resume=resume
            )
        if isinstance(eval_set, tuple | list) or (eval_set is None and self._validating()):
            raise ValueError(
                "with rows, eval_set must be the held-out row numbers of X (an array of "
                f"int){' for early stopping' if eval_set is None else ''}, got "
                f"{type(eval_set).__name__}"
            )
        return self._fit(
            X, y, sample_weight, callbacks=callbacks, resume=resume, split=(rows, eval_set)
        )

    def _fit(
        self,
        X: ArrayLike,
        y: ArrayLike,
        sample_weight: ArrayLike | None = None,
        *,
        incremental: bool = False,
        classes: ArrayLike | None = None,
        eval_set: tuple[ArrayLike, ArrayLike] | None = None,
        callbacks: Sequence[Callback] | None = None,
        resume: Run | None = None,
        split: tuple[NDArray, NDArray] | None = None,
    ) -> Self:
        """The one entry point behind ``fit`` and ``partial_fit`` (``split`` is ``fit``'s
        ``rows`` and held-out rows of X): choose the run (new,
        continued, or ``resume``), check the data against it, and train."""
        fitted = hasattr(self, "_run")
        if not (incremental and fitted):
            self._validate_params()
        y, sample_weight = to_host(y, "y"), to_host(sample_weight)
        classes = None if classes is None else to_host(classes, "classes")
        if incremental:
            if self.early_stopping:
                raise ValueError("partial_fit does not support early_stopping=True")
            self._begin_partial_fit(y, classes)
        if resume is not None and not isinstance(resume, Run):
            raise TypeError(
                "resume must be a handgrad.training.Run (e.g. from "
                f"handgrad.state.load_run), got {type(resume).__name__}"
            )
        reset = not fitted or (not self.warm_start and not incremental)
        current = resume if resume is not None else None if reset else self._run
        X, Y, w = self._validate_input(
            X,
            y,
            sample_weight,
            reset,
            incremental,
            classes,
            None if current is None else current.model.dtype,
        )
        seeds = seed_sequence(self.random_state).spawn(3)
        run = current or self._new_run(X, Y, seeds, incremental)
        t_before = 0 if current is None else self.__dict__.get("t_", run.history.samples_seen)
        if resume is not None:  # the checkpoint's optimizer was made from these parameters
            self._optimizer_key = self._optimizer_signature()
            t_before = run.history.samples_seen
        elif not reset:
            self._refresh_optimizer(run, fresh=not incremental)
        self._check_run(run, X, Y)
        self._run = run  # before the loop: callbacks read the same run
        T = self._targets(Y)
        if split is None and eval_set is None:
            split = self._early_stopping_split(T, seeds[2], incremental)
        rows, validation_rows = split or (None, None)
        data = training.TrainingData.of(run.model, X, T, w, rows, check_input=False)
        validation = None if eval_set is None else self._validation_set(eval_set, X.dtype)
        held_out = training.held_out(
            run.model, data, validation, validation_rows, check_input=False
        )
        before, samples_before = run.history.epochs, run.history.samples_seen
        epochs = 1 if incremental else self.max_iter
        if resume is not None and not incremental:
            epochs -= before  # finish the interrupted fit
        try:
            if epochs > 0:
                config = self._training_config(data.n_rows, epochs, run.model)
                training.train(run, data, config, held_out, callbacks or ())
            elif resume is not None and self._validating() and run.best_params is not None:
                run.model.restore(run.best_params)  # as the loop does when it ends
        finally:
            self._set_fitted(before, t_before, samples_before)
        self._warn_unconverged(incremental)
        return self

    def _validate_input(self, X, y, sample_weight, reset, incremental, classes, dtype):
        """``(X, Y, sample_weight)`` checked; X (dense, or sparse as CSR, or another
        array-API library's array on its device) in the network's dtype when continuing;
        Y and sample_weight on the host.

        X makes one trip: where it may stay (:func:`handgrad._xp.input_array`: its
        library with array API dispatch on, else NumPy), scikit-learn's conversions and
        bookkeeping (``n_features_in_``, feature names, its messages), then one check of
        the whole of it (:func:`handgrad._validation.check_X`: shape, dtype, finite).
        """
        X = input_array(X, "X")
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            dtype=float_dtypes(X),
            reset=reset,
            ensure_all_finite=False,
        )  # check_X's pass is 2× faster
        if sample_weight is not None:  # in the dtype check_X gives X
            wanted = X.dtype if dtype is None else xp_dtype(namespace(X), dtype)
            sample_weight = to_host(_check_sample_weight(sample_weight, X, dtype=wanted))
        # Sparse X stays sparse: the first layer's products take it as it is.
        # Finite, and in the network's dtype when continuing (where a cast to float32
        # can overflow to inf); the message names the first bad entry.
        X = check_X(X, dtype=dtype, row_major=True)
        Y = self._encode_y(y, reset=reset, incremental=incremental, classes=classes)
        return X, Y, sample_weight

    def _validation_set(self, eval_set: Any, dtype: Any) -> tuple[NDArray, NDArray, None]:
        """A caller's held-out ``(X_val, y_val)`` checked and encoded like the training
        data."""
        if not isinstance(eval_set, tuple | list) or len(eval_set) != 2:
            raise TypeError(
                f"eval_set must be a pair (X_val, y_val), got {type(eval_set).__name__}"
                + (f" of length {len(eval_set)}" if isinstance(eval_set, tuple | list) else "")
            )
        X_val = input_array(eval_set[0], "X_val")
        X_val, y_val = validate_data(
            self,
            X_val,
            to_host(eval_set[1], "y_val"),
            reset=False,
            multi_output=True,
            dtype=dtype,
            ensure_all_finite=False,
        )  # check_X's pass reads a memory-mapped X_val from its file, chunk by chunk
        X_val = check_X(X_val, dtype=dtype, name="X_val")
        return X_val, self._targets(self._encode_held_out(y_val)), None

    def _early_stopping_split(
        self, T: NDArray, split_seed: Any, incremental: bool
    ) -> tuple[NDArray | None, NDArray | None]:
        """``(training rows, validation rows)`` of the encoded targets T for early
        stopping, or ``(None, None)`` without it.

        Row numbers, not copies: the loop gathers both parts from X, so that a
        memory-mapped X is never read whole. Stratified by ``_stratify`` (a class too
        small for that raises scikit-learn's ValueError), seeded from ``split_seed``.
        """
        if not self._validating() or incremental:
            return None, None
        rows, validation_rows = stratified_split(
            np.arange(T.shape[0]),
            test_size=self.validation_fraction,
            seed=int(split_seed.generate_state(1)[0]),
            stratify=self._stratify(T),
            strict=True,  # a class too small to stratify: scikit-learn's error
        )
        if len(validation_rows) < 2:
            raise ValueError(
                "The validation set is too small. Increase "
                "'validation_fraction' or the size of your dataset."
            )
        return rows, validation_rows

    def _new_run(
        self, X: NDArray, Y: NDArray, seeds: list[np.random.SeedSequence], incremental: bool
    ) -> Run:
        """A fresh run for X and Y: the network drawn, or, for ``partial_fit`` and a
        ``warm_start`` fit, as scikit-learn, starting from the ``coefs_``/``intercepts_``
        assigned before it existed (checked against it now: a layer's shape, finite
        real numbers in its dtype); a plain ``fit`` draws over them."""
        optimizer = make_optimizer(self)
        batch_size = 200 if self.batch_size == "auto" else self.batch_size
        run = training.new_run(  # its memory checked before any of it is allocated
            (X.shape[1], *self._hidden_sizes(), self._n_outputs(Y)),
            optimizer,
            rows=training.step_rows(X.shape[0], batch_size, optimizer),
            # drawn on the host in X's dtype; training moves them to X's device
            dtype=numpy_dtype(X.dtype),
            activation=self.activation,
            head=self._head,
            seed=np.random.default_rng(seeds[0]),
            rng=np.random.default_rng(seeds[1]),
            dense_X=not sp.issparse(X),
            dropout=self.dropout,
            norm=self.norm,
        )
        assigned, model = self.__dict__.get("_assigned_parameters", {}), run.model
        if self.warm_start or incremental:
            for name, values in assigned.items():  # a bad one stays assigned, to fix
                _assign(model.weights if name == "coefs_" else model.biases, values, name)
        self.__dict__.pop("_assigned_parameters", None)
        self._optimizer_key = self._optimizer_signature()
        return run

    def _refresh_optimizer(self, run: Run, fresh: bool) -> None:
        """A new optimizer if ``fresh`` (a warm-started ``fit``, as scikit-learn) or a
        solver parameter changed since the last call; else keep its state."""
        if fresh or self._optimizer_signature() != getattr(self, "_optimizer_key", None):
            run.optimizer = make_optimizer(self)
            self._optimizer_key = self._optimizer_signature()

    def _check_run(self, run: Run, X: NDArray, Y: NDArray) -> None:
        sizes = (X.shape[1], *self._hidden_sizes(), self._n_outputs(Y))
        if run.model.layer_sizes != sizes or run.model.head != self._head:
            raise ValueError(
                f"cannot continue training a {run.model!r} with hidden_layer_sizes="
                f"{self.hidden_layer_sizes!r} on this data (layer sizes {sizes}, "
                f"{self._head} head); set warm_start=False to start afresh"
            )
        if run.model.activation != self.activation:
            raise ValueError(
                f"cannot continue a {run.model.activation} network with "
                f"activation={self.activation!r}"
            )
        if run.model.norm != self.norm:
            raise ValueError(
                f"cannot continue a network with norm={run.model.norm!r} with "
                f"norm={self.norm!r}; set warm_start=False to start afresh"
            )
        run.model.dropout = float(self.dropout)  # a rate, not a part of the network

    def _hidden_sizes(self) -> list[int]:
        sizes = np.atleast_1d(self.hidden_layer_sizes).tolist()
        if any(not isinstance(s, int) or isinstance(s, bool) or s <= 0 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be positive integers, got {sizes}.")
        return sizes

    def _optimizer_signature(self) -> tuple:
        return tuple(getattr(self, p) for p in OPTIMIZER_PARAMS)

    def _validating(self) -> bool:
        return bool(self.early_stopping) and self.solver != "lbfgs"

    def _training_config(self, n_samples: int, epochs: int, model: MLP) -> TrainingConfig:
        """``TrainingConfig`` for ``epochs`` epochs; ``alpha`` is the per-sample ``reg``.
        A batch larger than the ``n_samples`` rows is clipped by the loop
        (:func:`handgrad.training.step_rows`), with scikit-learn's warning here."""
        auto = self.batch_size == "auto"
        if not auto and self.batch_size > n_samples and self.solver != "lbfgs":
            warnings.warn(
                "Got `batch_size` less than 1 or larger than sample size. "
                "It is going to be clipped",
                stacklevel=4,
            )
        patience = self.n_iter_no_change
        return TrainingConfig(
            batch_size=200 if auto else int(self.batch_size),
            max_epochs=int(epochs),
            shuffle=self.shuffle,
            reg=self.alpha,
            reg_per_sample=True,
            stopping="validation" if self._validating() else "loss",
            tol=self.tol,
            n_iter_no_change=sys.maxsize if patience == np.inf else patience,
            verbose=bool(self.verbose),
            report=ReportedLoss(model.head),
        )

    def _set_fitted(self, epochs_before: int, t_before: int, samples_before: int) -> None:
        """Copy what the run did into scikit-learn's fitted attributes (``t_`` counts
        the samples of stochastic epochs only: L-BFGS leaves it, as scikit-learn)."""
        hist, model = self._run.history, self._run.model
        self.n_iter_ = hist.epochs - epochs_before
        stochastic = self.solver != "lbfgs"
        self.t_ = t_before + (hist.samples_seen - samples_before if stochastic else 0)
        self.loss_curve_ = list(hist.loss)
        self.loss_ = hist.loss[-1] if hist.loss else None
        self.n_outputs_ = model.layer_sizes[-1]
        self.n_layers_ = len(model.layer_sizes)
        self.out_activation_ = self._OUT_ACTIVATION[model.head]
        validating = self._validating()
        self.best_loss_ = None if validating else hist.best_loss
        self.validation_scores_ = list(hist.val_score) if validating else None
        self.best_validation_score_ = hist.best_val_score if validating else None

    def _warn_unconverged(self, incremental: bool) -> None:
        """scikit-learn's warnings after training (and its error for non-finite weights)."""
        reason = self._run.history.stop_reason
        params = list(self._run.model.params.values())
        if is_numpy(params[0]):
            finite = all(np.isfinite(p).all() for p in params)
        else:
            finite = finite_on_device(params)
        if reason == "interrupted":
            warnings.warn("Training interrupted by user.", stacklevel=4)
        elif not finite:
            raise TrainingDivergedError(f"{NON_FINITE} Standardise the inputs.")
        elif reason == "diverged":  # early stopping ended it, as scikit-learn's does
            self._warn_diverged()
        elif self.solver == "lbfgs" and reason != "converged":
            warnings.warn(
                f"lbfgs failed to converge after {self.n_iter_} iteration(s) "
                f"({reason}). Increase the number of iterations (max_iter="
                f"{self.max_iter}) or scale the data.",
                ConvergenceWarning,
                stacklevel=4,
            )
        elif reason == "max_epochs" and not incremental and self.solver != "lbfgs":
            warnings.warn(
                f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                "reached and the optimization hasn't converged yet.",
                ConvergenceWarning,
                stacklevel=4,
            )

    def _warn_diverged(self) -> None:
        hist = self._run.history
        kept = (
            f"the weights of the best validation score ({hist.best_val_score:.4g})"
            if np.isfinite(hist.best_val_score)
            else "the weights it started from"
        )
        warnings.warn(
            f"the training loss became non-finite in epoch {hist.epochs} with learning rate "
            f"{hist.learning_rate[-1]:g}; early stopping ended training and kept {kept}. "
            "Lower the learning rate, standardise the inputs, or increase the regularisation.",
            ConvergenceWarning,
            stacklevel=5,
        )

    # ---------------------------------------------------------------- prediction
    def _forward(self, X: ArrayLike, scores: bool = False) -> NDArray[np.floating]:
        """The network's output (or, with ``scores``, its scores S) for X: NumPy, or
        with array API dispatch on, in X's library on X's device."""
        checked = self._plain_rows(X)
        if checked is None:
            check_is_fitted(self)
            X = input_array(X, "X")
            # NaN/inf are caught by the network on Z1 = X W1 + b1, chunk by chunk, rather
            # than by a separate pass over X here.
            checked = validate_data(
                self,
                X,
                accept_sparse=["csr", "csc"],
                reset=False,
                dtype=float_dtypes(X),
                ensure_all_finite=False,
            )
        checked = row_major(checked)
        check_finite_weights(self._run.model.weights, self._run.model.biases)
        model = model_on(self._run.model, checked)
        X = as_dtype(checked, model.dtype)  # sparse X stays sparse
        rows = min(X.shape[0], CHUNK_ROWS)  # per chunk
        with blas_threads(rows, model.layer_sizes, small_on_one_thread=is_numpy(X)):
            return model.loss(X) if scores else model.predict_proba(X)

    def _plain_rows(self, X: Any) -> NDArray[np.floating] | None:
        """X itself when it needs none of ``validate_data``'s conversions, or None.

        That is a fitted estimator without feature names and a plain C-contiguous
        float32/float64 ndarray of at least one row with ``n_features_in_`` columns:
        ``validate_data`` would return it unchanged and warn of nothing, so its checks
        are done here in a few attribute reads (a one-row ``predict`` is otherwise
        mostly ``validate_data``). Anything else — lists, DataFrames, sparse matrices,
        other dtypes, wrong shapes — takes ``validate_data``'s path and its messages.
        Finiteness is the network's test in both paths.
        """
        if (
            is_plain_ndarray(X)
            and X.ndim == 2
            and (X.dtype == np.float64 or X.dtype == np.float32)
            and X.flags.c_contiguous
            and X.shape[0] > 0
            and "_run" in self.__dict__
            and "feature_names_in_" not in self.__dict__
            and X.shape[1] == self.__dict__.get("n_features_in_")
        ):
            return X
        return None

    # -------------------------------------------------------- the run, in public
    @property
    def coefs_(self) -> list[NDArray[np.floating]]:
        """``[W1, …, WL]``, views of the network's weight matrices.

        Assignable after ``fit``, as a whole (``est.coefs_ = [...]``) or one layer at a
        time (``est.coefs_[0] = W``): each array must have its layer's shape and hold
        finite real numbers (in the network's dtype); it is copied into the network, so
        ``predict`` and a warm-started ``fit`` or ``partial_fit`` start from it.

        Assignable before ``fit`` too, as scikit-learn's: the list is kept as given
        (and can be filled in a layer at a time) until ``partial_fit`` or a
        ``warm_start`` fit builds the network, which starts from it after the same
        checks, against the layer sizes that data implies (a plain ``fit`` draws its
        own weights over it). An unassigned ``intercepts_`` (or ``coefs_``) is drawn.
        """
        return self._parameters("coefs_")

    @coefs_.setter
    def coefs_(self, value: Sequence[ArrayLike]) -> None:
        self._set_parameters("coefs_", value)

    @property
    def intercepts_(self) -> list[NDArray[np.floating]]:
        """``[b1, …, bL]``, views of the network's bias vectors; assignable as
        ``coefs_``."""
        return self._parameters("intercepts_")

    @intercepts_.setter
    def intercepts_(self, value: Sequence[ArrayLike]) -> None:
        self._set_parameters("intercepts_", value)

    def _parameters(self, name: str) -> list:
        """``coefs_`` or ``intercepts_``: views of the network's arrays, or before there
        is a network, the list assigned (see ``coefs_``)."""
        assigned = self.__dict__.get("_assigned_parameters", {})
        if "_run" not in self.__dict__ and name in assigned:
            return assigned[name]
        model = self._fitted_model(name)
        return _Parameters(model.weights if name == "coefs_" else model.biases, name)

    def _set_parameters(self, name: str, value: Sequence[ArrayLike]) -> None:
        if "_run" in self.__dict__:
            _assign(self._parameters(name), value, name)
            return
        if isinstance(value, np.ndarray | str) or not isinstance(value, Sequence):
            raise TypeError(f"{name} must be a list of arrays, one per layer")
        self.__dict__.setdefault("_assigned_parameters", {})[name] = list(value)

    @property
    def network_(self) -> MLP:
        """The fitted :class:`handgrad.MLP` (``coefs_`` and ``intercepts_`` are views of
        its parameters)."""
        return self._fitted_model("network_")

    @property
    def optimizer_(self) -> Optimizer:
        """The run's optimizer as it stands: ``learning_rate`` is the current step size
        (after any ``"adaptive"`` or ``"invscaling"`` change), ``t`` its step count.
        The no-improvement count is ``history_.n_no_improvement``."""
        self._fitted_model("optimizer_")
        return self._run.optimizer

    @property
    def history_(self) -> History:
        """The run's :class:`~handgrad.training.History`, epoch by epoch across every
        ``fit``/``partial_fit`` of the run: training loss, step losses, training
        accuracy (classifiers), the ``eval_set`` or early-stopping score (accuracy, or R²
        for a regressor), learning rate, epochs, samples seen and why it stopped."""
        self._fitted_model("history_")
        return self._run.history

    def __sklearn_is_fitted__(self) -> bool:
        """Fitted once there is a network: fitted attributes assigned by hand (as
        scikit-learn's own tests do) are not one."""
        return "_run" in self.__dict__

    def _fitted_model(self, name: str) -> MLP:
        if "_run" not in self.__dict__:
            raise AttributeError(
                f"'{type(self).__name__}' object has no attribute '{name}' (it is set by fit)"
            )
        return self._run.model

    # ------------------------------------------------ the saved state (handgrad.state)
    def _get_fitted_state(self) -> dict[str, Any]:
        """What a model file keeps beyond ``get_params()`` and the public fitted
        attributes: ``run`` (network, optimizer state, shuffling generator, history),
        ``optimizer_params`` (the solver parameters its optimizer was made with, in
        ``OPTIMIZER_PARAMS`` order) and a classifier's fitted ``label_binarizer``. The one
        door through which :mod:`handgrad.state` reads an estimator."""
        check_is_fitted(self)
        state = {"run": self._run, "optimizer_params": self._optimizer_key}
        if "_label_binarizer" in self.__dict__:
            state["label_binarizer"] = self._label_binarizer
        return state

    def _set_fitted_state(self, state: dict[str, Any]) -> Self:
        """Restore what :meth:`_get_fitted_state` gave, on an estimator made with the
        same parameters whose ``n_features_in_`` is set: the parameters are checked, the
        run's network against them (its input width, hidden sizes, activation and the
        head the targets need: a ValueError naming what it needs), then ``classes_``,
        ``n_outputs_``, ``n_layers_`` and ``out_activation_`` follow from it. The one door
        through which :mod:`handgrad.state` restores an estimator."""
        self._validate_params()
        if "label_binarizer" in state:  # a classifier's head follows from its labels
            self._label_binarizer = state["label_binarizer"]
        model = state["run"].model
        want = (self.n_features_in_, *self._hidden_sizes(), model.layer_sizes[-1])
        if (
            model.layer_sizes != want
            or model.activation != self.activation
            or (model.head != self._head)
            or model.norm != self.norm
            or model.dropout != self.dropout
        ):
            raise ValueError(
                f"the network {model!r} does not fit the estimator: it needs layer sizes "
                f"{want}, activation {self.activation!r}, a {self._head} head, "
                f"norm={self.norm!r} and dropout={self.dropout!r}"
            )
        if "label_binarizer" in state:
            self.classes_ = self._label_binarizer.classes_
        self._run, self._optimizer_key = state["run"], tuple(state["optimizer_params"])
        self.n_outputs_, self.n_layers_ = model.layer_sizes[-1], len(want)
        self.out_activation_ = self._OUT_ACTIVATION[model.head]
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


class _Parameters(list):
    """``coefs_``/``intercepts_``: views of the network's arrays; assigning an item
    checks the new array and copies it into the network (a plain list would drop it)."""

    def __init__(self, arrays: list[NDArray], name: str) -> None:
        super().__init__(arrays)
        self._name = name

    def __setitem__(self, index: Any, value: Any) -> None:
        if not isinstance(index, int | np.integer):
            raise TypeError(f"assign one layer of {self._name} at a time (an int index)")
        new = list(self)
        new[index] = value
        _assign(self, new, self._name)


def _assign(views: list[NDArray], values: Any, name: str) -> None:
    """Check ``values`` (one array per layer) against the network's ``views`` and copy
    them in; nothing is written unless every array passes."""
    if isinstance(values, np.ndarray | str) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a list of {len(views)} arrays, one per layer")
    if len(values) != len(views):
        raise ValueError(f"{name} must have {len(views)} arrays (one per layer), got {len(values)}")
    checked = []
    for i, (view, value) in enumerate(zip(views, values, strict=True)):
        arr = np.asarray(to_numpy(value))
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{name}[{i}] must hold real numbers, but its dtype is {arr.dtype}")
        if arr.shape != view.shape:
            raise ValueError(f"{name}[{i}] must have shape {view.shape}, got {arr.shape}")
        with np.errstate(over="ignore"):  # reported just below
            arr = arr.astype(view.dtype)
        if not np.isfinite(arr).all():
            raise ValueError(f"{name}[{i}] must be finite in {view.dtype} (NaN or infinity)")
        checked.append(arr)
    for view, arr in zip(views, checked, strict=True):
        copy_into(view, to_device(arr, namespace(view), device(view)))


def _with_unique_labels(y: NDArray) -> NDArray:
    """y with ``np.unique(y)`` attached (``attach_unique``), so that scikit-learn's label
    checks share one pass instead of one each; labels that cannot be ordered (strings
    mixed with numbers or None) raise a ValueError that says so."""
    try:
        return attach_unique(y)
    except TypeError:  # np.unique sorts the labels
        kinds = sorted({type(v).__name__ for v in np.asarray(y, dtype=object).ravel()})
        raise ValueError(
            f"y mixes labels that cannot be ordered ({', '.join(kinds)}); "
            "use labels of one type, e.g. all strings"
        ) from None


class MLPClassifier(ClassifierMixin, BaseMultilayerPerceptron):
    """Multi-layer perceptron classifier: scikit-learn's, parameter for parameter.

    Every parameter has scikit-learn 1.9's name, default, meaning and validation (see
    :class:`sklearn.neural_network.MLPClassifier`); training runs through
    :func:`handgrad.training.fit` on :class:`handgrad.MLP`'s hand-derived gradients.

    Parameters
    ----------
    hidden_layer_sizes : array-like of int or int, default=(100,)
    activation : {"identity", "logistic", "tanh", "relu"}, default="relu"
    solver : {"lbfgs", "sgd", "adam"}, default="adam"
    alpha : float, default=1e-4
        L2 strength, scaled per batch as scikit-learn does. In the notes' symbols the
        loss of a batch of ``n_b`` rows is ``mean CE + λ/2 Σ‖W_l‖²`` with
        ``λ = alpha / n_b`` (``n_b`` = the batch's weight sum when ``sample_weight`` is
        given; the whole training set for L-BFGS). Example: ``alpha=1e-4`` with batches
        of 200 is the notes' ``λ = 5e-7``.
    batch_size : int or "auto", default="auto"
        ``"auto"`` is ``min(200, n_samples)``; larger values are clipped with a warning.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        SGD's schedule (:class:`~handgrad.optim.Constant`, ``InvScaling``, ``Adaptive``).
    learning_rate_init, power_t, max_iter, shuffle, tol, momentum, nesterovs_momentum,
    beta_1, beta_2, epsilon, n_iter_no_change, max_fun
        As in scikit-learn (``max_iter`` counts epochs; L-BFGS iterations for lbfgs).
    random_state : int, RandomState instance or None, default=None
        An int gives bit-identical results run to run (for each input dtype); a
        ``RandomState`` has a seed drawn from it; None is fresh each fit. It seeds the
        initial weights, the shuffling and the early-stopping split, never NumPy's
        global generator.
    verbose, warm_start : bool, default=False
        With ``warm_start`` a second ``fit`` continues the same run (weights,
        shuffling generator and ``loss_curve_``) with a fresh optimizer, as
        scikit-learn's; ``partial_fit`` continues the optimizer too (unless a solver
        parameter changed).
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (as scikit-learn: stratified by
        label for a binary problem, where a class of one member raises its ValueError;
        a plain split otherwise), or score ``fit``'s ``eval_set``; stop when its
        accuracy has not improved by ``tol`` for ``n_iter_no_change`` epochs, and
        restore the best weights.
    validation_fraction : float, default=0.1
    dropout : float in [0, 1), default=0.0
        Beyond scikit-learn: inverted dropout's drop probability after every hidden
        activation, masks drawn from the run's generator (0: none, nothing drawn).
    norm : {"batch", "layer"} or None, default=None
        Beyond scikit-learn: batch or layer normalization of every hidden layer before
        its activation (learned γ, β never penalised by ``alpha``; batch norm's running
        statistics for predict).

    Attributes
    ----------
    classes_, loss_, best_loss_, loss_curve_, validation_scores_,
    best_validation_score_, coefs_, intercepts_, n_iter_, t_, n_layers_, n_outputs_,
    out_activation_, n_features_in_, feature_names_in_
        As in scikit-learn. ``coefs_``/``intercepts_`` are views of the network's
        ``W1, W2, …``/``b1, b2, …``. The network dtype is X's (float32 stays float32;
        anything else becomes float64) and so is that of ``predict_proba``.
        Binary targets use one sigmoid output, multi-label targets one sigmoid per
        label, multi-class targets a softmax. Sparse X is accepted and trained
        sparse (never made dense).
    history_ : handgrad.training.History
        The whole run epoch by epoch (also ``eval_set``'s accuracy, in ``val_score``,
        and ``stop_reason``).
    network_ : handgrad.MLP
        The fitted network.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MLPClassifier(solver="lbfgs", max_iter=300, random_state=0).fit(X, y)
    >>> clf.score(X, y) > 0.95
    True
    """

    _parameter_constraints: ClassVar[dict] = (
        dict(_SklearnMLPClassifier._parameter_constraints) | _LAYER_CONSTRAINTS
    )
    _OUT_ACTIVATION: ClassVar[dict[str, str]] = {"softmax": "softmax", "sigmoid": "logistic"}

    def __init__(
        self,
        hidden_layer_sizes: ArrayLike | int = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        alpha: float = 0.0001,
        batch_size: int | str = "auto",
        learning_rate: str = "constant",
        learning_rate_init: float = 0.001,
        power_t: float = 0.5,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: int | np.random.RandomState | None = None,
        tol: float = 1e-4,
        verbose: bool = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: int = 10,
        max_fun: int = 15000,
        dropout: float = 0.0,
        norm: str | None = None,
    ) -> None:
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes,
            activation=activation,
            solver=solver,
            alpha=alpha,
            batch_size=batch_size,
            learning_rate=learning_rate,
            learning_rate_init=learning_rate_init,
            power_t=power_t,
            max_iter=max_iter,
            shuffle=shuffle,
            random_state=random_state,
            tol=tol,
            verbose=verbose,
            warm_start=warm_start,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            n_iter_no_change=n_iter_no_change,
            max_fun=max_fun,
            dropout=dropout,
            norm=norm,
        )

    # ------------------------------------------------------------------- fitting
    @available_if(_stochastic)
    def partial_fit(
        self,
        X: ArrayLike,
        y: ArrayLike,
        classes: ArrayLike | None = None,
        sample_weight: ArrayLike | None = None,
    ) -> MLPClassifier:
        """One epoch over (X, y), continuing the same run (sgd and adam only).

        ``classes`` (every label, e.g. ``np.unique(y_all)``) is required on the first
        call; labels not in it raise ValueError. Returns self.
        """
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def _begin_partial_fit(self, y: ArrayLike, classes: ArrayLike | None) -> None:
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer().fit(
                y if type_of_target(y).startswith("multilabel") else classes
            )

    def _encode_y(
        self, y: NDArray, *, reset: bool, incremental: bool, classes: ArrayLike | None
    ) -> NDArray:
        """Labels checked, ``classes_`` set (on a fresh fit); class indices for a
        multi-class problem, else the 0/1 indicator matrix."""
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        y = _with_unique_labels(y)  # for the label checks below
        check_classification_targets(y)
        if not hasattr(self, "classes_") or (reset and not incremental):
            multilabel = type_of_target(y).startswith("multilabel")
            self._label_binarizer = LabelBinarizer().fit(
                y if classes is None or multilabel else classes
            )
            self.classes_ = self._label_binarizer.classes_
        if not reset or incremental or classes is not None:
            self._check_labels(y)
        return self._indices_or_indicators(y)

    def _check_labels(self, y: NDArray) -> None:
        labels = unique_labels(y)
        if self.warm_start and not np.array_equal(labels, self.classes_):
            raise ValueError(
                "warm_start can only be used where `y` has the same classes as in the "
                f"previous call to fit. Previously got {self.classes_}, `y` has {labels}"
            )
        unseen = np.setdiff1d(labels, self.classes_)
        if len(unseen):
            raise ValueError(
                f"y has labels {unseen.tolist()} that are not in classes_ "
                f"{self.classes_.tolist()}; pass every label in `classes` on the first "
                "call to partial_fit (or refit)"
            )

    def _encode_held_out(self, y_val: NDArray) -> NDArray:
        unseen = np.setdiff1d(unique_labels(y_val), self.classes_)
        if len(unseen):
            raise ValueError(
                f"y_val has labels {unseen.tolist()} that are not in classes_ "
                f"{self.classes_.tolist()}"
            )
        return self._indices_or_indicators(y_val)

    def _indices_or_indicators(self, y: NDArray) -> NDArray:
        """Known labels as the (N,) class indices the softmax head takes (never an
        (N, C) one-hot matrix: it would be C times the size of y), or, for binary and
        multi-label targets, the binarizer's 0/1 indicator matrix."""
        if self._label_binarizer.y_type_ == "multiclass" and np.ndim(y) == 1:
            return np.searchsorted(self.classes_, y)
        return self._label_binarizer.transform(y)

    @property
    def _head(self) -> str:
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "sigmoid"

    def _n_outputs(self, Y: NDArray) -> int:
        return len(self.classes_) if Y.ndim == 1 else Y.shape[1]

    def _stratify(self, T: NDArray) -> NDArray | None:
        """As scikit-learn: only a single output (a binary problem) is stratified, by
        its 0/1 column as booleans (so a too-small class is named as scikit-learn's)."""
        return T.astype(bool) if self._label_binarizer.y_type_ == "binary" else None

    # ---------------------------------------------------------------- prediction
    def predict_proba(self, X: ArrayLike) -> NDArray[np.floating]:
        """Probabilities (n_samples, n_classes) in ``classes_`` order, in the network's
        dtype; for multi-label targets one independent probability per label. With
        array API dispatch on, X's library on X's device."""
        P = self._forward(X)
        if P.shape[1] != 1:
            return P
        return namespace(P).concat([1 - P, P], axis=1)

    def predict_log_proba(self, X: ArrayLike) -> NDArray[np.floating]:
        """``log(predict_proba(X))``."""
        P = self.predict_proba(X)
        return np.log(P, out=P) if is_numpy(P) else namespace(P).log(P)

    def predict(self, X: ArrayLike) -> NDArray:
        """Labels (n_samples,), or (n_samples, n_labels) indicators for multi-label.

        With array API dispatch on and X of another library, numeric labels come in
        X's library on X's device; labels that are strings (or objects) come as a
        NumPy array, which no other library holds.
        """
        if "_run" not in self.__dict__:
            check_is_fitted(self)
        if self.out_activation_ == "softmax":  # the highest score is the likeliest class
            S = self._forward(X, scores=True)
            if is_numpy(S):
                return self.classes_[S.argmax(axis=1)]
            return self._labels_of(namespace(S).argmax(S, axis=1))
        P = self._forward(X)
        if is_numpy(P):
            return self._label_binarizer.inverse_transform(P.ravel() if P.shape[1] == 1 else P)
        xp = namespace(P)
        if self._label_binarizer.y_type_ == "multilabel-indicator":
            return xp.astype(P > 0.5, xp.int64)  # as LabelBinarizer's threshold
        return self._labels_of(xp.astype(P[:, 0] > 0.5, xp.int64))

    def _labels_of(self, indices: Any) -> Any:
        """``classes_[indices]`` for class indices of another library: on their device
        for numeric labels, a NumPy array for strings."""
        if self.classes_.dtype.kind not in "biuf":
            return self.classes_[to_numpy(indices)]
        xp = namespace(indices)
        return xp.take(to_device(self.classes_, xp, device(indices)), indices, axis=0)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, BaseMultilayerPerceptron):
    """Multi-layer perceptron regressor: scikit-learn's, parameter for parameter.

    Every parameter has scikit-learn 1.9's name, default, meaning and validation (see
    :class:`sklearn.neural_network.MLPRegressor`); training runs through
    :func:`handgrad.training.fit` on :class:`handgrad.MLP`'s hand-derived gradients,
    with a regression head from :data:`handgrad.heads.HEADS`.

    Parameters
    ----------
    loss : {"squared_error", "poisson"}, default="squared_error"
        ``"squared_error"``: identity output (``P = S``), ``L = 1/(2N) Σ_i ‖S_i − Y_i‖²``,
        ``dS = (S − Y)/N`` (the ``"identity"`` head). ``"poisson"``: log link, the
        predictions are ``e^S``, the loss is the mean half Poisson deviance,
        ``dS = (e^S − Y)/N`` (the ``"poisson"`` head; y must be non-negative).
        With several outputs scikit-learn's ``loss_curve_`` for squared error averages
        the data term over the outputs too while it steps along ``(S − Y)/N``; here the
        curve is of the loss those steps descend, the sum over outputs (equal for one
        output; the steps, hence ``coefs_``, agree for sgd and adam either way).
    hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate,
    learning_rate_init, power_t, max_iter, shuffle, random_state, tol, verbose,
    momentum, nesterovs_momentum, beta_1, beta_2, epsilon, n_iter_no_change, max_fun
        As in :class:`MLPClassifier` (and scikit-learn).
    warm_start : bool, default=False
        A second ``fit`` starts from the weights of the first (and continues
        ``loss_curve_``) with a fresh optimizer, as scikit-learn; ``partial_fit``
        continues the optimizer too.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (a plain random split), or score
        ``fit``'s ``eval_set``; stop when its R² has not improved by ``tol`` for
        ``n_iter_no_change`` epochs, and restore the best weights.
    validation_fraction : float, default=0.1
    dropout : float in [0, 1), default=0.0
        Beyond scikit-learn: inverted dropout's drop probability after every hidden
        activation, masks drawn from the run's generator (0: none, nothing drawn).
    norm : {"batch", "layer"} or None, default=None
        Beyond scikit-learn: batch or layer normalization of every hidden layer before
        its activation (learned γ, β never penalised by ``alpha``; batch norm's running
        statistics for predict).

    Attributes
    ----------
    loss_, best_loss_, loss_curve_, validation_scores_, best_validation_score_,
    coefs_, intercepts_, n_iter_, t_, n_layers_, n_outputs_, out_activation_,
    n_features_in_, feature_names_in_
        As in scikit-learn (``out_activation_`` is ``"identity"`` or ``"exp"``).
        ``coefs_``/``intercepts_`` are views of the network's ``W1, W2, …``/``b1, b2, …``
        and can be assigned. The network dtype is X's (float32 stays float32, targets
        included) and so is that of ``predict``.
    history_ : handgrad.training.History
        The whole run epoch by epoch (``val_score`` holds the R² of early stopping or
        ``eval_set``).
    network_ : handgrad.MLP
        The fitted network.

    Examples
    --------
    >>> from sklearn.datasets import make_regression
    >>> X, y = make_regression(n_samples=200, n_features=5, noise=0.1, random_state=0)
    >>> reg = MLPRegressor(solver="lbfgs", max_iter=500, random_state=0).fit(X, y)
    >>> reg.score(X, y) > 0.99
    True
    """

    _parameter_constraints: ClassVar[dict] = (
        dict(_SklearnMLPRegressor._parameter_constraints) | _LAYER_CONSTRAINTS
    )
    _OUT_ACTIVATION: ClassVar[dict[str, str]] = {"identity": "identity", "poisson": "exp"}
    #: scikit-learn's ``loss`` → the network's head.
    _HEADS: ClassVar[dict[str, str]] = {"squared_error": "identity", "poisson": "poisson"}

    def __init__(
        self,
        loss: str = "squared_error",
        hidden_layer_sizes: ArrayLike | int = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        alpha: float = 0.0001,
        batch_size: int | str = "auto",
        learning_rate: str = "constant",
        learning_rate_init: float = 0.001,
        power_t: float = 0.5,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: int | np.random.RandomState | None = None,
        tol: float = 1e-4,
        verbose: bool = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: int = 10,
        max_fun: int = 15000,
        dropout: float = 0.0,
        norm: str | None = None,
    ) -> None:
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes,
            activation=activation,
            solver=solver,
            alpha=alpha,
            batch_size=batch_size,
            learning_rate=learning_rate,
            learning_rate_init=learning_rate_init,
            power_t=power_t,
            max_iter=max_iter,
            shuffle=shuffle,
            random_state=random_state,
            tol=tol,
            verbose=verbose,
            warm_start=warm_start,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            n_iter_no_change=n_iter_no_change,
            max_fun=max_fun,
            dropout=dropout,
            norm=norm,
        )
        self.loss = loss

    # ------------------------------------------------------------------- fitting
    @available_if(_stochastic)
    def partial_fit(
        self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None
    ) -> MLPRegressor:
        """One epoch over (X, y), continuing the same run and its optimizer (sgd and
        adam only). Returns self."""
        return self._fit(X, y, sample_weight, incremental=True)

    def _encode_y(
        self, y: NDArray, *, reset: bool, incremental: bool, classes: ArrayLike | None
    ) -> NDArray:
        """Numeric targets as an (N, n_outputs) matrix (an (N, 1) y warns as
        scikit-learn's does); the head checks their values when training starts."""
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return self._encode_held_out(y)

    def _encode_held_out(self, y_val: NDArray) -> NDArray:
        y = np.asarray(y_val)
        if y.dtype.kind == "O":  # scikit-learn's y_numeric
            y = y.astype(np.float64)
        if y.dtype.kind not in "biuf":
            raise ValueError(f"y must hold numbers for a regressor, but its dtype is {y.dtype}")
        return y.reshape(-1, 1) if y.ndim == 1 else y

    @property
    def _head(self) -> str:
        return self._HEADS[self.loss]

    # ---------------------------------------------------------------- prediction
    def predict(self, X: ArrayLike) -> NDArray[np.floating]:
        """Predictions (n_samples,) for one output, else (n_samples, n_outputs), in the
        network's dtype: the scores S for squared error, ``e^S`` for poisson. With
        array API dispatch on, X's library on X's device."""
        P = self._forward(X)
        if P.shape[1] != 1:
            return P
        return namespace(P).reshape(P, (-1,))
