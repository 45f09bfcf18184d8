"""Support for :class:`handgrad.MLPClassifier`: seeds, the mapping of scikit-learn's
parameters onto :mod:`handgrad.optim` and :class:`~handgrad.training.TrainingConfig`,
the early-stopping split, labels as JSON, and model-file state.

Kept apart from ``estimator.py`` so that the estimator file holds the scikit-learn
contract and little else.
"""

from __future__ import annotations

import math
import numbers
import sys
import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils._unique import attach_unique
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import validate_data

from handgrad.callbacks import run_from_state, run_state
from handgrad.errors import ModelFileError, TrainingDivergedError
from handgrad.network import MLP
from handgrad.optim import LBFGS, SCHEDULES, SGD, Adam, InvScaling, Optimizer
from handgrad.training import History, Run, TrainingConfig

#: Fitted attributes saved as JSON in a model file (floats, ints, lists or None).
SCALAR_ATTRS = (
    "loss_",
    "best_loss_",
    "loss_curve_",
    "validation_scores_",
    "best_validation_score_",
    "n_iter_",
    "t_",
)

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


# ------------------------------------------------------------------------ labels/JSON
def labels_to_json(classes: np.ndarray) -> dict[str, Any]:
    """``classes_`` as ``{"type": ..., "values": [...]}``; refuses non-JSON-able labels."""
    classes = np.asarray(classes)
    if classes.dtype.kind in "biuf":
        return {"type": classes.dtype.str, "values": classes.tolist()}
    if classes.dtype.kind == "U":
        return {"type": "str", "values": classes.tolist()}
    values = classes.tolist()
    for kind, test in (("object-str", _is_str), ("object-bool", _is_bool), ("object-int", _is_int)):
        if all(test(v) for v in values):
            return {
                "type": kind,
                "values": [v.item() if isinstance(v, np.generic) else v for v in values],
            }
    bad = next(v for v in values if not (_is_str(v) or _is_int(v) or _is_bool(v)))
    raise TypeError(
        f"cannot save this MLPClassifier: its labels (classes_) must all be strings, "
        f"integers or booleans to be stored as JSON, but it has {bad!r} of type "
        f"{type(bad).__name__}; encode the labels first (e.g. str(label))"
    )


def labels_from_json(d: Any) -> np.ndarray:
    """Inverse of :func:`labels_to_json`."""
    if not isinstance(d, dict) or not isinstance(d.get("values"), list) or not d["values"]:
        raise ModelFileError(f"classes_ in the model file is malformed: {d!r}")
    kind, values = d.get("type"), d["values"]
    if kind == "str":
        return np.array(values, dtype=str)
    if isinstance(kind, str) and kind.startswith("object-"):
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out
    try:
        dtype = np.dtype(kind)
    except TypeError as exc:
        raise ModelFileError(f"classes_ has unknown label type {kind!r}") from exc
    if dtype.kind not in "biuf":
        raise ModelFileError(f"classes_ has unknown label type {kind!r}")
    return np.array(values, dtype=dtype)


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool | np.bool_)


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not _is_bool(v)


def _jsonable(value: Any) -> Any:
    """Constructor parameters as JSON (numpy scalars unwrapped, ∞ as the string "inf")."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if isinstance(value, tuple | list | np.ndarray):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.random.RandomState):
        return None  # a generator's state is not a parameter worth keeping
    return value


def _from_jsonable(name: str, value: Any) -> Any:
    if value == "inf":
        return math.inf
    if name == "hidden_layer_sizes" and isinstance(value, list):
        return tuple(value)
    return value


# ------------------------------------------------------------------- model-file state
def get_state(est: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Tensors (the MLP's ``W1, b1, …``) and JSON metadata for a fitted estimator."""
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(est)
    tensors, mlp_meta = est._run.model._get_state()
    # The optimizer's state, the shuffling generator and the history too: a loaded
    # estimator continues (warm_start, partial_fit) exactly as the saved one would have.
    run_tensors, run_meta = run_state(est._run, step_losses=False)
    tensors = tensors | run_tensors
    meta: dict[str, Any] = {
        "params": {k: _jsonable(v) for k, v in est.get_params(deep=False).items()},
        "classes": labels_to_json(est.classes_),
        "y_type": est._label_binarizer.y_type_,
        "n_features_in": int(est.n_features_in_),
        "mlp": mlp_meta,
        "out_activation": est.out_activation_,
        "run": run_meta,
        "optimizer_params": [_jsonable(v) for v in est._optimizer_key],
    }
    if hasattr(est, "feature_names_in_"):
        meta["feature_names_in"] = [str(f) for f in est.feature_names_in_]
    for name in SCALAR_ATTRS:
        meta[name] = _jsonable(getattr(est, name, None))
    return tensors, meta


def from_state(cls: type, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> Any:
    """Rebuild a fitted estimator, checking that every part agrees with the others."""
    est = cls(**{k: _from_jsonable(k, v) for k, v in meta["params"].items()})
    est._validate_params()
    model = MLP._from_state({k: v for k, v in tensors.items() if "." not in k}, meta["mlp"])
    classes = labels_from_json(meta["classes"])
    binarizer = _binarizer(meta["y_type"], classes)
    n_features = int(meta["n_features_in"])
    hidden = np.atleast_1d(est.hidden_layer_sizes).tolist()
    head = "softmax" if meta["y_type"] == "multiclass" else "sigmoid"
    n_out = len(classes) if meta["y_type"] != "binary" else 1
    want = (n_features, *hidden, n_out)
    if model.layer_sizes != want or model.activation != est.activation or model.head != head:
        raise ModelFileError(
            f"the network {model!r} does not fit the estimator: it needs layer sizes {want}, "
            f"activation {est.activation!r} and a {head} head"
        )
    if meta["out_activation"] != ("softmax" if head == "softmax" else "logistic"):
        raise ModelFileError(f"out_activation {meta['out_activation']!r} contradicts the head")
    est._label_binarizer, est.classes_ = binarizer, binarizer.classes_
    est.n_features_in_, est.out_activation_ = n_features, meta["out_activation"]
    est.n_outputs_, est.n_layers_ = n_out, len(want)
    if "feature_names_in" in meta:
        names = np.asarray(meta["feature_names_in"], dtype=object)
        if len(names) != n_features:
            raise ModelFileError(f"{len(names)} feature names for {n_features} features")
        est.feature_names_in_ = names
    for name in SCALAR_ATTRS:
        setattr(est, name, _from_jsonable(name, meta.get(name)))
    if "run" in meta:
        est._run = run_from_state(model, tensors, meta["run"])
        est._optimizer_key = tuple(
            _from_jsonable(name, v)
            for name, v in zip(OPTIMIZER_PARAMS, meta["optimizer_params"], strict=True)
        )
    else:  # a file written before runs were saved: a fresh optimizer and generator
        history = History(
            loss=list(est.loss_curve_ or []),
            val_score=list(est.validation_scores_ or []),
            epochs=len(est.loss_curve_ or []),
            samples_seen=int(est.t_ or 0),
            best_loss=math.inf if est.best_loss_ is None else float(est.best_loss_),
            best_val_score=(
                -math.inf
                if est.best_validation_score_ is None
                else float(est.best_validation_score_)
            ),
        )
        ss = seed_sequence(est.random_state).spawn(3)
        est._run = Run(model, make_optimizer(est), np.random.default_rng(ss[1]), history)
        est._optimizer_key = est._optimizer_signature()
    return est


def _binarizer(y_type: Any, classes: np.ndarray) -> LabelBinarizer:
    """A fitted ``LabelBinarizer`` equal to the one ``fit`` made."""
    if y_type == "multilabel-indicator":
        binarizer = LabelBinarizer().fit(np.zeros((1, len(classes)), dtype=int))
        if not np.array_equal(binarizer.classes_, classes):
            raise ModelFileError("multi-label classes_ must be 0..n_outputs-1")
        return binarizer
    if y_type not in ("binary", "multiclass"):
        raise ModelFileError(f"unknown target type {y_type!r}")
    binarizer = LabelBinarizer().fit(classes)
    if binarizer.y_type_ != y_type and len(classes) > 1:
        raise ModelFileError(f"{len(classes)} classes contradict target type {y_type!r}")
    if len(np.unique(classes)) != len(classes):
        raise ModelFileError("classes_ holds duplicate labels")
    return binarizer


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
