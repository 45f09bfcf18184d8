"""``MLPClassifier``: scikit-learn's multi-layer perceptron classifier, trained by the
one loop (:func:`handgrad.training.fit`) on the hand-derived gradients of :class:`MLP`.

Swap it in by changing one import line::

    from handgrad import MLPClassifier   # was: from sklearn.neural_network import ...
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.neural_network import MLPClassifier as _SklearnMLPClassifier
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import (
    _check_partial_fit_first_call,
    check_classification_targets,
    type_of_target,
)
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

import handgrad._estimator_support as support
from handgrad._validation import check_X
from handgrad.network import MLP
from handgrad.training import Callback, Run
from handgrad.training import fit as train


def _stochastic(est: MLPClassifier) -> bool:
    if est.solver not in ("sgd", "adam"):
        raise AttributeError(
            f"partial_fit is only available for stochastic optimizers. {est.solver} is "
            "not stochastic."
        )
    return True


class MLPClassifier(ClassifierMixin, BaseEstimator):
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
        L2 strength, scaled per batch as scikit-learn does. In the seed's notation the
        loss of a batch of ``n_b`` rows is ``mean CE + λ/2 Σ‖W_l‖²`` with
        ``λ = alpha / n_b`` (``n_b`` = the batch's weight sum when ``sample_weight`` is
        given; the whole training set for L-BFGS). Example: ``alpha=1e-4`` with batches
        of 200 is the seed's ``λ = 5e-7``.
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
        With ``warm_start`` a second ``fit`` continues the same run: weights,
        optimizer state (kept unless a solver parameter changed), shuffling generator
        and ``loss_curve_``.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (split stratified by label when
        every class can be, except for multi-label targets), stop when its accuracy
        has not improved by ``tol`` for ``n_iter_no_change`` epochs, and restore the
        best weights.
    validation_fraction : float, default=0.1

    Attributes
    ----------
    classes_, loss_, best_loss_, loss_curve_, validation_scores_,
    best_validation_score_, coefs_, intercepts_, n_iter_, t_, n_layers_, n_outputs_,
    out_activation_, n_features_in_, feature_names_in_
        As in scikit-learn. ``coefs_``/``intercepts_`` are views of the network's
        ``W1, W2, …``/``b1, b2, …``. The network dtype is X's (float32 stays float32;
        anything else becomes float64) and so is that of ``predict_proba``.
        Binary targets use one sigmoid output, multi-label targets one sigmoid per
        label, multi-class targets a softmax. Sparse X is accepted and made dense.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MLPClassifier(solver="lbfgs", max_iter=300, random_state=0).fit(X, y)
    >>> clf.score(X, y) > 0.95
    True
    """

    _parameter_constraints: ClassVar[dict] = dict(_SklearnMLPClassifier._parameter_constraints)

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

    # ------------------------------------------------------------------- fitting
    def fit(
        self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None
    ) -> MLPClassifier:
        """Fit to X (n_samples, n_features) and labels y (n_samples,) or (n_samples,
        n_labels) 0/1 indicators. Returns self."""
        return self._fit(X, y, sample_weight)

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

    def _fit(
        self,
        X: ArrayLike,
        y: ArrayLike,
        sample_weight: ArrayLike | None = None,
        *,
        incremental: bool = False,
        classes: ArrayLike | None = None,
        callbacks: Sequence[Callback] = (),
        run: Run | None = None,
        validation: tuple[ArrayLike, ArrayLike] | None = None,
    ) -> MLPClassifier:
        """The one entry point behind ``fit`` and ``partial_fit`` (and the CLI's hook).

        ``validation``, ``(X_val, y_val)`` held out by the caller, is scored every epoch
        (``run.history.val_score``) and, with ``early_stopping``, replaces the split of
        ``validation_fraction``: all of X then trains.
        ``callbacks`` are passed to :func:`handgrad.training.fit` unchanged. ``run``, a
        :class:`~handgrad.training.Run` restored from a checkpoint, is resumed: its
        model, optimizer state, shuffling generator and history are used as they are,
        and only the epochs left of ``max_iter`` are run. ``self._run`` is set to the
        run before the loop starts, so a callback's hooks see the same object as
        ``est._run`` (model params, optimizer state, rng, history).
        """
        fitted = hasattr(self, "_run")
        if not (incremental and fitted):
            self._validate_params()
        if incremental:
            if self.early_stopping:
                raise ValueError("partial_fit does not support early_stopping=True")
            if _check_partial_fit_first_call(self, classes):
                self._label_binarizer = LabelBinarizer().fit(
                    y if type_of_target(y).startswith("multilabel") else classes
                )
        reset = not fitted or (not self.warm_start and not incremental)
        resumed = run is not None
        current = run if resumed else None if reset else self._run
        X, Y, w = self._validate_input(
            X,
            y,
            sample_weight,
            reset,
            incremental,
            classes,
            None if current is None else current.model.dtype,
        )
        seeds = support.seed_sequence(self.random_state).spawn(3)
        run = current or self._new_run(X, Y, seeds)
        if resumed:  # the checkpoint's optimizer was made from these parameters
            self._optimizer_key = self._optimizer_signature()
        elif not reset:
            self._refresh_optimizer(run)
        self._check_run(run, X, Y)
        self._run = run  # before the loop: callbacks read the same run
        if validation is None:
            X_tr, T_tr, w_tr, validation = support.split(self, X, Y, w, seeds[2], incremental)
        else:
            X_tr, T_tr, w_tr = X, self._targets(Y), w
            validation = support.validation_set(self, *validation, X.dtype)
        before = run.history.epochs
        epochs = 1 if incremental else self.max_iter
        if resumed and not incremental:
            epochs -= before  # finish the interrupted fit
        try:
            if epochs > 0:
                train(
                    run.model,
                    X_tr,
                    T_tr,
                    optimizer=run.optimizer,
                    validation=validation,
                    config=support.config(self, X_tr.shape[0], epochs),
                    sample_weight=w_tr,
                    callbacks=callbacks,
                    run=run,
                    check_input=False,
                )  # validate_data has just checked X
            elif resumed and self._validating() and run.best_params is not None:
                for k, v in run.best_params.items():  # as the loop does when it ends
                    np.copyto(run.model.params[k], v)
        finally:
            self._set_fitted(before)
        support.warn_unconverged(self, incremental)
        return self

    def _validate_input(self, X, y, sample_weight, reset, incremental, classes, dtype):
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            dtype=(np.float64, np.float32),
            reset=reset,
            ensure_all_finite=False,
        )  # check_X's pass is 2× faster
        if sp.issparse(X):
            X = X.toarray()
        # Finite, and in the network's dtype when continuing (where a cast to float32
        # can overflow to inf); the message names the first bad entry.
        X = check_X(X, dtype=dtype)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        y = support.with_unique_labels(y)  # for the label checks below
        check_classification_targets(y)
        if not hasattr(self, "classes_") or (reset and not incremental):
            multilabel = type_of_target(y).startswith("multilabel")
            self._label_binarizer = LabelBinarizer().fit(
                y if classes is None or multilabel else classes
            )
            self.classes_ = self._label_binarizer.classes_
        if not reset or incremental or classes is not None:
            support.check_labels(self, y)
        Y = self._label_binarizer.transform(y)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=X.dtype)
        return X, Y, sample_weight

    @property
    def _head(self) -> str:
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "sigmoid"

    def _targets(self, Y: NDArray) -> NDArray:
        """Binarized labels as the network's head takes them."""
        return Y.argmax(axis=1) if self._head == "softmax" else Y

    def _new_run(self, X: NDArray, Y: NDArray, seeds) -> Run:
        model = MLP(
            X.shape[1],
            self._hidden_sizes(),
            Y.shape[1],
            activation=self.activation,
            head=self._head,
            init="glorot",
            seed=np.random.default_rng(seeds[0]),
            dtype=X.dtype,
        )
        self._optimizer_key = self._optimizer_signature()
        return Run(model, support.make_optimizer(self), np.random.default_rng(seeds[1]))

    def _refresh_optimizer(self, run: Run) -> None:
        """Keep the optimizer state unless a solver parameter changed since last fit."""
        if self._optimizer_signature() != getattr(self, "_optimizer_key", None):
            run.optimizer = support.make_optimizer(self)
            self._optimizer_key = self._optimizer_signature()

    def _check_run(self, run: Run, X: NDArray, Y: NDArray) -> None:
        sizes = (X.shape[1], *self._hidden_sizes(), Y.shape[1])
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

    def _hidden_sizes(self) -> list[int]:
        sizes = np.atleast_1d(self.hidden_layer_sizes).tolist()
        if any(not isinstance(s, int) or isinstance(s, bool) or s <= 0 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be positive integers, got {sizes}.")
        return sizes

    def _optimizer_signature(self) -> tuple:
        return tuple(getattr(self, p) for p in support.OPTIMIZER_PARAMS)

    def _validating(self) -> bool:
        return bool(self.early_stopping) and self.solver != "lbfgs"

    def _set_fitted(self, epochs_before: int) -> None:
        """Copy what the run did into scikit-learn's fitted attributes."""
        run = self._run
        hist, model = run.history, run.model
        self.n_iter_ = hist.epochs - epochs_before
        self.t_ = hist.samples_seen
        self.loss_curve_ = list(hist.loss)
        self.loss_ = hist.loss[-1] if hist.loss else None
        self.n_outputs_ = model.layer_sizes[-1]
        self.n_layers_ = len(model.layer_sizes)
        self.out_activation_ = "softmax" if model.head == "softmax" else "logistic"
        validating = self._validating()
        self.best_loss_ = None if validating else hist.best_loss
        self.validation_scores_ = list(hist.val_score) if validating else None
        self.best_validation_score_ = hist.best_val_score if validating else None

    # ---------------------------------------------------------------- prediction
    def predict_proba(self, X: ArrayLike) -> NDArray[np.floating]:
        """Probabilities (n_samples, n_classes) in ``classes_`` order, in the network's
        dtype; for multi-label targets one independent probability per label."""
        P = self._forward(X)
        return np.hstack([1 - P, P]) if P.shape[1] == 1 else P

    def predict_log_proba(self, X: ArrayLike) -> NDArray[np.floating]:
        """``log(predict_proba(X))``."""
        P = self.predict_proba(X)
        return np.log(P, out=P)

    def predict(self, X: ArrayLike) -> NDArray:
        """Labels (n_samples,), or (n_samples, n_labels) indicators for multi-label."""
        check_is_fitted(self)
        if self.out_activation_ == "softmax":  # the highest score is the likeliest class
            return self.classes_[self._forward(X, scores=True).argmax(axis=1)]
        P = self._forward(X)
        return self._label_binarizer.inverse_transform(P.ravel() if P.shape[1] == 1 else P)

    def _forward(self, X: ArrayLike, scores: bool = False) -> NDArray[np.floating]:
        """The network's probabilities (or, with ``scores``, its scores S) for X."""
        check_is_fitted(self)
        # NaN/inf are caught by the network on Z1 = X W1 + b1, chunk by chunk, rather
        # than by a separate pass over X here.
        X = validate_data(
            self,
            X,
            accept_sparse=["csr", "csc"],
            reset=False,
            dtype=(np.float64, np.float32),
            ensure_all_finite=False,
        )
        X = X.toarray() if sp.issparse(X) else X
        X = X.astype(self._run.model.dtype, copy=False)
        return self._run.model.loss(X) if scores else self._run.model.predict_proba(X)

    # -------------------------------------------------------- weights as views
    @property
    def coefs_(self) -> list[NDArray[np.floating]]:
        """``[W1, …, WL]``, views of the network's weight matrices."""
        return self._fitted_model("coefs_").weights

    @property
    def intercepts_(self) -> list[NDArray[np.floating]]:
        """``[b1, …, bL]``, views of the network's bias vectors."""
        return self._fitted_model("intercepts_").biases

    def _fitted_model(self, name: str) -> MLP:
        if "_run" not in self.__dict__:
            raise AttributeError(
                f"'{type(self).__name__}' object has no attribute '{name}' (it is set by fit)"
            )
        return self._run.model

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.classifier_tags.multi_label = True
        return tags
