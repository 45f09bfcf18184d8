"""Support for :class:`handgrad.MLPClassifier`: seeds, the mapping of scikit-learn's
parameters onto :mod:`handgrad.optim` and :class:`~handgrad.training.TrainingConfig`,
the early-stopping split.

Kept apart from ``estimator.py`` so that the estimator file holds the scikit-learn
contract and little else.
"""

from __future__ import annotations

import numbers
import sys
import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils._unique import attach_unique
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import validate_data

from handgrad.errors import TrainingDivergedError
from handgrad.optim import LBFGS, SCHEDULES, SGD, Adam, InvScaling, Optimizer
from handgrad.training import TrainingConfig

#: The parameters that make the optimizer: when one changes, warm_start starts a new one.
OPTIMIZER_PARAMS = (
    "solver",
    "learning_rate",
    "learning_rate_init",
    "power_t",
    "momentum",
    "nesterovs_momentum",
    "beta_1",
    "beta_2",
    "epsilon",
    "max_fun",
)


# ------------------------------------------------------------------------------ seeds
def seed_sequence(random_state: Any) -> np.random.SeedSequence:
    """A ``SeedSequence`` from scikit-learn's ``random_state``.

    int → the same sequence every call (bit-identical runs); ``RandomState`` → a seed
    drawn from it (so it advances, as scikit-learn's would); None → fresh OS entropy.
    """
    if random_state is None:
        return np.random.SeedSequence()
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return np.random.SeedSequence(int(random_state))
    if isinstance(random_state, np.random.RandomState):
        return np.random.SeedSequence(int(random_state.randint(2**31 - 1)))
    raise ValueError(
        f"random_state must be None, an int or a numpy RandomState, got {random_state!r}"
    )


# ------------------------------------------------------ scikit-learn -> the one loop
def make_optimizer(est: Any) -> Optimizer:
    """The update rule and schedule for ``solver`` and ``learning_rate``."""
    lr = est.learning_rate_init
    if est.solver == "lbfgs":
        return LBFGS(learning_rate_init=lr, max_fun=est.max_fun)
    if est.solver == "adam":
        return Adam(
            learning_rate_init=lr, beta_1=est.beta_1, beta_2=est.beta_2, epsilon=est.epsilon
        )
    schedule_cls = SCHEDULES[est.learning_rate]
    schedule = InvScaling(power_t=est.power_t) if schedule_cls is InvScaling else schedule_cls()
    return SGD(
        learning_rate_init=lr,
        schedule=schedule,
        momentum=est.momentum,
        nesterov=est.nesterovs_momentum,
    )


def config(est: Any, n_samples: int, epochs: int) -> TrainingConfig:
    """``TrainingConfig`` for ``epochs`` epochs; ``alpha`` is the per-sample ``reg``."""
    if est.batch_size == "auto":
        batch_size = min(200, n_samples)
    else:
        if est.batch_size > n_samples and est.solver != "lbfgs":
            warnings.warn(
                "Got `batch_size` less than 1 or larger than sample size. "
                "It is going to be clipped",
                stacklevel=4,
            )
        batch_size = int(np.clip(est.batch_size, 1, n_samples))
    patience = est.n_iter_no_change
    return TrainingConfig(
        batch_size=batch_size,
        max_epochs=int(epochs),
        shuffle=est.shuffle,
        reg=est.alpha,
        reg_per_sample=True,
        stopping="validation" if est._validating() else "loss",
        tol=est.tol,
        n_iter_no_change=sys.maxsize if patience == np.inf else patience,
        verbose=bool(est.verbose),
    )


def split(est: Any, X, Y, w, split_seed: np.random.SeedSequence, incremental: bool):
    """``(X, T, w, validation)``: training rows and the early-stopping set (or None).

    Stratified by label (not for multi-label targets, nor when a class is too small
    to be split, where the split is plain random), seeded from ``split_seed``.
    """
    T = est._targets(Y)
    if not est._validating() or incremental:
        return X, T, w, None
    seed = int(split_seed.generate_state(1)[0])
    parts = (X, T) if w is None else (X, T, w)
    stratify = T if est._label_binarizer.y_type_ != "multilabel-indicator" else None
    try:
        parts = train_test_split(
            *parts, test_size=est.validation_fraction, random_state=seed, stratify=stratify
        )
    except ValueError:  # some class too small to stratify
        parts = train_test_split(*parts, test_size=est.validation_fraction, random_state=seed)
    X_tr, X_val, T_tr, T_val = parts[:4]
    w_tr, w_val = parts[4:] if w is not None else (None, None)
    if X_val.shape[0] < 2:
        raise ValueError(
            "The validation set is too small. Increase "
            "'validation_fraction' or the size of your dataset."
        )
    return X_tr, T_tr, w_tr, (X_val, T_val, w_val)


def warn_unconverged(est: Any, incremental: bool) -> None:
    """scikit-learn's warnings after training (and its error for non-finite weights)."""
    reason = est._run.history.stop_reason
    if reason == "interrupted":
        warnings.warn("Training interrupted by user.", stacklevel=4)
    elif not all(np.isfinite(p).all() for p in est._run.model.params.values()):
        raise TrainingDivergedError(
            "Solver produced non-finite parameter weights. The input data may contain "
            "large values and need to be preprocessed."
        )
    elif est.solver == "lbfgs" and reason != "converged":
        warnings.warn(
            f"lbfgs failed to converge after {est.n_iter_} iteration(s) "
            f"({reason}). Increase the number of iterations (max_iter="
            f"{est.max_iter}) or scale the data.",
            ConvergenceWarning,
            stacklevel=4,
        )
    elif reason == "max_epochs" and not incremental and est.solver != "lbfgs":
        warnings.warn(
            f"Stochastic Optimizer: Maximum iterations ({est.max_iter}) "
            "reached and the optimization hasn't converged yet.",
            ConvergenceWarning,
            stacklevel=4,
        )


def validation_set(est: Any, X_val, y_val, dtype) -> tuple[Any, Any, None]:
    """A caller's held-out ``(X_val, y_val)`` checked and encoded like the training data."""
    X_val, y_val = validate_data(est, X_val, y_val, reset=False, multi_output=True, dtype=dtype)
    unseen = np.setdiff1d(unique_labels(y_val), est.classes_)
    if len(unseen):
        raise ValueError(
            f"y_val has labels {unseen.tolist()} that are not in classes_ {est.classes_.tolist()}"
        )
    return X_val, est._targets(est._label_binarizer.transform(y_val)), None


def with_unique_labels(y: np.ndarray) -> np.ndarray:
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


def check_labels(est: Any, y) -> None:
    labels = unique_labels(y)
    if est.warm_start and not np.array_equal(labels, est.classes_):
        raise ValueError(
            "warm_start can only be used where `y` has the same classes as in the "
            f"previous call to fit. Previously got {est.classes_}, `y` has {labels}"
        )
    unseen = np.setdiff1d(labels, est.classes_)
    if len(unseen):
        raise ValueError(
            f"y has labels {unseen.tolist()} that are not in classes_ "
            f"{est.classes_.tolist()}; pass every label in `classes` on the first "
            "call to partial_fit (or refit)"
        )
