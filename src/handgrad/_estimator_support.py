"""Model-file state of :class:`handgrad.MLPClassifier`: labels as JSON, and the tensors
and metadata that :func:`handgrad.io.save_model` writes and ``load_model`` reads back.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
from sklearn.preprocessing import LabelBinarizer

from handgrad._parameters import OPTIMIZER_PARAMS, make_optimizer, seed_sequence
from handgrad.callbacks import run_from_state, run_state
from handgrad.errors import ModelFileError
from handgrad.network import MLP
from handgrad.training import History, Run

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
