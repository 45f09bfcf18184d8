"""What a handgrad file holds for each kind of model, and for a training run.

A model file (:func:`save_model`) holds one of the kinds in :data:`KINDS`:

- ``MLP`` and ``TwoLayerNet``: the parameters ``W1, b1, …`` as tensors; the
  architecture (layer sizes, activation, head, init, std, dtype) as metadata.
- ``MLPClassifier``: its network as above, plus the run it continues (optimizer state,
  shuffling generator, history, best weights), its constructor parameters, its labels
  and fitted attributes as JSON. A loaded estimator trains on exactly as the saved one
  would have.
- ``MLPRegressor``: the same, without labels.
- ``Pipeline``: a scikit-learn ``Pipeline`` of a fitted
  :class:`~handgrad.data.preprocess.Preprocessor` and an ``MLPClassifier`` or an
  ``MLPRegressor`` (bare, or in a ``TransformedTargetRegressor`` whose ``StandardScaler``
  scaled its targets) -- what a run folder's ``model.safetensors`` holds. The estimator
  as above, the preprocessing's and the target scaler's fitted state as JSON; it loads
  as the same ``Pipeline``, so that it predicts from raw samples (in the targets' units)
  exactly what ``handgrad predict`` predicts. In place of the ``Preprocessor``, a table
  read by column kind has the fitted ``ColumnTransformer`` of
  :func:`handgrad.data.columns.plan_columns` (its statistics as ``columns.*`` tensors,
  its columns and categories as JSON: :mod:`handgrad._columns_state`); that pipeline
  predicts a DataFrame with the table's columns, in any order.

A checkpoint (:func:`save_run`) holds a whole :class:`~handgrad.training.Run`: the
network's parameters (``param.W1``, …), the optimizer's state arrays (``optim.…``), the
best weights so far (``best.W1``, …), and as metadata the optimizer with its schedule,
the generator's state and the history. Resuming from one continues training exactly as
if it had never stopped.

The envelope, checksum and atomic write are :mod:`handgrad.modelfile`'s. Loading only
ever builds a kind from :data:`KINDS`: nothing named in a file is imported, and every
tensor read is checked against what the model needs (:func:`check_tensors`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import numbers
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

import handgrad.optim as optim
from handgrad._validation import check_finite_weights
from handgrad._xp import to_numpy
from handgrad.errors import ModelFileError
from handgrad.modelfile import load_arrays, load_checkpoint, save_arrays, save_checkpoint
from handgrad.network import MLP
from handgrad.training import History, Run
from handgrad.twolayer import TwoLayerNet

__all__ = [
    "KINDS",
    "check_tensors",
    "fitted_target_regressor",
    "labels_from_json",
    "labels_to_json",
    "load_model",
    "load_run",
    "model_state",
    "save_model",
    "save_run",
]

Tensors = dict[str, np.ndarray]
State = tuple[Tensors, dict[str, Any]]

_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")

#: The most parameters a model file may declare (8 GiB of float64): a file asking for
#: more is refused before anything is allocated.
MAX_PARAMETERS = 2**30

#: Fitted attributes of an ``MLPClassifier`` saved as JSON (floats, ints, lists or None).
SCALAR_ATTRS = (
    "loss_",
    "best_loss_",
    "loss_curve_",
    "validation_scores_",
    "best_validation_score_",
    "n_iter_",
    "t_",
)


# ------------------------------------------------------------------------ the check
def check_tensors(
    tensors: Mapping[str, np.ndarray],
    model: MLP,
    *,
    prefix: str = "",
    complete: bool = True,
    with_state: bool = False,
) -> None:
    """Check tensors read from a file against the parameters of ``model``.

    Each name ends in the name of a parameter (``W1``, or ``velocity.W1`` for an
    optimizer's state array), and the tensor must have that parameter's shape and dtype
    and hold only finite numbers. With ``complete`` there must be exactly one tensor per
    parameter (and, ``with_state``, per running statistic too: a snapshot of the model,
    as the best weights are). ``prefix`` is the tensors' prefix in the file
    (``"optim."``), for messages.

    Raises
    ------
    ModelFileError
        Naming the first tensor that does not fit.
    """
    sizes = list(model.layer_sizes)
    arrays = {**model.params, **model.state} if with_state else model.params
    if complete and set(tensors) != set(arrays):
        raise ModelFileError(
            f"the file holds the tensors {sorted(prefix + k for k in tensors)}, but a "
            f"{sizes} network needs one for each of {sorted(arrays)}"
        )
    for name, value in tensors.items():
        want = arrays.get(name.rsplit(".", 1)[-1])
        if want is None or value.shape != want.shape or value.dtype != want.dtype:
            raise ModelFileError(
                f"tensor {prefix}{name} has shape {value.shape} and dtype {value.dtype}: "
                f"it fits none of the parameters of a {sizes} {model.dtype} network"
            )
        if not np.isfinite(value).all():
            raise ModelFileError(f"tensor {prefix}{name} holds non-finite values")


def _part(tensors: Mapping[str, np.ndarray], prefix: str) -> Tensors:
    """The tensors named ``prefix…``, keyed without the prefix."""
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


# ------------------------------------------------------------------------- networks
def network_state(model: MLP) -> State:
    """An ``MLP``'s (or ``TwoLayerNet``'s) parameters and architecture; parameters on
    another library's device (a GPU) are copied to the host, so that the file loads
    anywhere as a NumPy model."""
    meta = {
        "layer_sizes": list(model.layer_sizes),
        "activation": model.activation,
        "head": model.head,
        "init": model.init,
        "std": model.std,
        "dtype": model.dtype.name,
    }
    if not model.plain:  # a file without them is a plain network's, as before them
        meta |= {"dropout": model.dropout, "norm": model.norm}
    tensors = {k: to_numpy(v) for k, v in model.params.items()}
    return tensors | {f"state.{k}": to_numpy(v) for k, v in model.state.items()}, meta


def declared_sizes(tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> list[int]:
    """The layer sizes ``meta`` declares, checked against the tensors' shapes and a sane
    total before any network is built (a file declaring huge layers allocates nothing).

    Raises ModelFileError naming the first size that does not fit.
    """
    sizes = meta["layer_sizes"]
    if (
        not isinstance(sizes, list)
        or len(sizes) < 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes)
    ):
        raise ModelFileError(f"layer sizes must be two or more positive integers, got {sizes!r}")
    total = sum((a + 1) * b for a, b in itertools.pairwise(sizes))
    if total > MAX_PARAMETERS:
        raise ModelFileError(
            f"the file declares layer sizes {sizes}: {total:,} parameters, more than the "
            f"{MAX_PARAMETERS:,} a model file may hold"
        )
    for k, (a, b) in enumerate(itertools.pairwise(sizes), start=1):
        for name, shape in ((f"W{k}", (a, b)), (f"b{k}", (b,))):
            value = tensors.get(name)
            if value is not None and value.shape != shape:
                raise ModelFileError(
                    f"tensor {name} has shape {value.shape} and dtype {value.dtype}: it "
                    f"fits none of the parameters of the declared {sizes} network ({name} "
                    f"{shape})"
                )
    return sizes


def mlp_from_state(tensors: Tensors, meta: Mapping[str, Any]) -> MLP:
    """The ``MLP`` that :func:`network_state` described, every tensor checked."""
    sizes = declared_sizes(tensors, meta)
    model = MLP(
        sizes[0],
        sizes[1:-1],
        sizes[-1],
        activation=meta["activation"],
        head=meta["head"],
        init=meta["init"],
        std=meta["std"],
        dtype=meta["dtype"],
        seed=0,
        dropout=meta.get("dropout", 0.0),
        norm=meta.get("norm"),
    )
    _with_state(model, _part(tensors, "state."))
    return _with_params(model, {k: v for k, v in tensors.items() if not k.startswith("state.")})


def two_layer_net_from_state(tensors: Tensors, meta: Mapping[str, Any]) -> TwoLayerNet:
    """The ``TwoLayerNet`` that :func:`network_state` described, every tensor checked."""
    sizes = declared_sizes(tensors, meta)
    fixed = {"activation": "relu", "head": "softmax", "init": "normal"}
    if len(sizes) != 3 or any(meta[k] != v for k, v in fixed.items()):
        raise ModelFileError(
            f"a TwoLayerNet has one hidden layer, ReLU, a softmax head and normal "
            f"initialisation, but the file describes layer sizes {sizes}, "
            f"{', '.join(f'{k} {meta[k]!r}' for k in fixed)}"
        )
    model = TwoLayerNet(*sizes, std=meta["std"], dtype=meta["dtype"], seed=0)
    return _with_params(model, tensors)


def _with_state(model: MLP, tensors: Tensors) -> None:
    """A network's running statistics (``running_mean1`` …), exactly the ones its
    normalization keeps, each of its shape and dtype and finite."""
    if set(tensors) != set(model.state):
        raise ModelFileError(
            f"the file holds the running statistics {sorted(tensors)}, but the network "
            f"{model!r} keeps {sorted(model.state)}"
        )
    for name, value in tensors.items():
        want = model.state[name]
        if value.shape != want.shape or value.dtype != want.dtype:
            raise ModelFileError(
                f"tensor state.{name} has shape {value.shape} and dtype {value.dtype}, "
                f"but the network's {name} has shape {want.shape} and dtype {want.dtype}"
            )
        if not np.isfinite(value).all():
            raise ModelFileError(f"tensor state.{name} holds non-finite values")
    model.state.update({k: np.ascontiguousarray(v) for k, v in tensors.items()})


def _with_params(model: MLP, tensors: Tensors) -> MLP:
    check_tensors(tensors, model)
    model.params.update({k: np.ascontiguousarray(v) for k, v in tensors.items()})
    return model


# ---------------------------------------------------------------------- training runs
def _run_state(run: Run, *, step_losses: bool = True) -> State:
    """Everything of ``run`` but the model, as ``(tensors, JSON metadata)``.

    Tensors: the optimizer's state arrays (``optim.<name>``) and the best weights so far
    (``best.<param>``); metadata: the optimizer and its schedule, its scalar state, the
    shuffling generator's state and the history (without the loss of every step unless
    ``step_losses``). :func:`_run_from_state` is the inverse. Arrays on another
    library's device are copied to the host.
    """
    opt_arrays, opt_scalars = run.optimizer.state()
    tensors = {f"optim.{k}": to_numpy(v) for k, v in opt_arrays.items()}
    if run.best_params is not None:
        tensors |= {f"best.{k}": to_numpy(v) for k, v in run.best_params.items()}

    history = run.history.to_dict()
    if not step_losses:
        del history["step_loss"]
    meta = {
        "optimizer": _optimizer_spec(run.optimizer),
        "optimizer_state": opt_scalars,
        "rng": run.rng.bit_generator.state,
        "history": history,
    }
    return tensors, meta


def _run_from_state(model: MLP, tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Run:
    """The :class:`Run` of ``model`` that :func:`_run_state` described.

    Raises ModelFileError when a state array or the best weights do not fit the model.
    """
    optimizer = _optimizer_from_spec(meta["optimizer"])
    opt_arrays = _part(tensors, "optim.")
    check_tensors(opt_arrays, model, prefix="optim.", complete=False)
    optimizer.load_state(opt_arrays, meta["optimizer_state"])
    best = _part(tensors, "best.") or None
    if best is not None:
        check_tensors(best, model, prefix="best.", with_state=True)
    history = History.from_dict(meta["history"])
    return Run(model, optimizer, _generator(meta["rng"]), history, best)


def _generator(state: dict[str, Any]) -> np.random.Generator:
    name = state.get("bit_generator")
    if name not in _BIT_GENERATORS:
        raise ModelFileError(f"checkpoint names an unknown random generator {name!r}")
    bit_generator = getattr(np.random, name)()
    bit_generator.state = state
    return np.random.Generator(bit_generator)


def _optimizer_spec(opt: optim.Optimizer) -> dict[str, Any]:
    """The optimizer's class and constructor arguments as JSON, its schedule included."""
    fields = {f.name: getattr(opt, f.name) for f in dataclasses.fields(opt) if f.init}
    schedule = fields.pop("schedule")
    schedule_fields = (
        {f.name: getattr(schedule, f.name) for f in dataclasses.fields(schedule) if f.init}
        if dataclasses.is_dataclass(schedule)
        else {}
    )
    return {
        "name": opt.name,
        "fields": fields,
        "schedule": {"name": schedule.name, "fields": schedule_fields},
    }


def _optimizer_from_spec(spec: Mapping[str, Any]) -> optim.Optimizer:
    opt_cls = optim.OPTIMIZERS.get(spec["name"])
    schedule_cls = optim.SCHEDULES.get(spec["schedule"]["name"])
    if opt_cls is None or schedule_cls is None:
        raise ModelFileError("checkpoint names an unknown optimizer or schedule")
    schedule = schedule_cls(**spec["schedule"]["fields"])
    return opt_cls(**spec["fields"], schedule=schedule)


def save_run(
    path: str | os.PathLike[str], run: Run, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write ``run`` (weights, optimizer, RNG, history, best weights) as a checkpoint,
    atomically, with the caller's JSON ``metadata`` beside it."""
    kind = "TwoLayerNet" if isinstance(run.model, TwoLayerNet) else "MLP"
    model_tensors, model_meta = network_state(run.model)
    tensors, meta = _run_state(run)
    tensors |= {f"param.{k}": v for k, v in model_tensors.items()}
    meta |= {
        "model": {"kind": kind, **model_meta},
        "epoch": run.history.epochs,
        "extra": dict(metadata or {}),
    }
    return save_checkpoint(path, tensors, meta)


def load_run(path: str | os.PathLike[str]) -> tuple[Run, dict[str, Any]]:
    """Rebuild the :class:`Run` a checkpoint holds, and the caller's metadata.

    Raises ModelFileError when the file is corrupt or its contents do not fit together.
    """
    tensors, meta = load_checkpoint(path)
    try:
        return _rebuild_run(tensors, meta), dict(meta.get("extra") or {})
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(
            f"{path}: cannot rebuild the training run from the checkpoint: {exc}"
        ) from exc


def _rebuild_run(tensors: Tensors, meta: dict[str, Any]) -> Run:
    model_meta = dict(meta["model"])
    kind = model_meta.pop("kind")
    _, from_state = _kind(kind)
    if kind not in ("MLP", "TwoLayerNet"):
        raise ModelFileError(f"checkpoint holds a {kind}, not a network")
    model = from_state(_part(tensors, "param."), model_meta)
    run = _run_from_state(model, tensors, meta)
    if run.history.epochs != meta["epoch"]:
        raise ModelFileError("checkpoint's epoch disagrees with its history")
    return run


# ------------------------------------------------------------------------ estimators
def _estimator_state(est: Any) -> tuple[Tensors, dict[str, Any]]:
    """What every fitted estimator's file holds: its parameters, the network, the run it
    continues (optimizer state, shuffling generator, history: a loaded estimator goes on
    with warm_start and partial_fit exactly as the saved one would have) and the fitted
    scalars; the private part read through the estimator's ``_get_fitted_state``."""
    fitted = est._get_fitted_state()
    model = fitted["run"].model
    check_finite_weights(model.weights, model.biases)
    tensors, mlp_meta = network_state(model)
    run_tensors, run_meta = _run_state(fitted["run"], step_losses=False)
    meta: dict[str, Any] = {
        "params": {k: _jsonable(v) for k, v in est.get_params(deep=False).items()},
        "n_features_in": int(est.n_features_in_),
        "mlp": mlp_meta,
        "out_activation": est.out_activation_,
        "run": run_meta,
        "optimizer_params": [_jsonable(v) for v in fitted["optimizer_params"]],
    }
    if "label_binarizer" in fitted:
        meta["classes"] = labels_to_json(est.classes_)
        meta["y_type"] = fitted["label_binarizer"].y_type_
    if hasattr(est, "feature_names_in_"):
        meta["feature_names_in"] = [str(f) for f in est.feature_names_in_]
    for name in SCALAR_ATTRS:
        meta[name] = _jsonable(getattr(est, name, None))
    return tensors | run_tensors, meta


def _estimator_from_state(
    cls: type,
    tensors: Tensors,
    meta: Mapping[str, Any],
    label_binarizer: Any = None,
    n_outputs: int | None = None,
) -> Any:
    """A fitted ``cls`` rebuilt from its file, every part checked against the others
    (the network against the estimator by its ``_set_fitted_state``; a classifier's
    ``n_outputs`` against its labels). A file without its run is refused."""
    from handgrad._parameters import OPTIMIZER_PARAMS

    if "run" not in meta or "optimizer_params" not in meta:
        raise ModelFileError(
            f"the {cls.__name__} holds no training run (optimizer state, shuffling "
            "generator, history), which every handgrad model file carries"
        )
    est = cls(**{k: _from_jsonable(k, v) for k, v in meta["params"].items()})
    network = {k: v for k, v in tensors.items() if "." not in k or k.startswith("state.")}
    model = mlp_from_state(network, meta["mlp"])
    if n_outputs is not None and model.layer_sizes[-1] != n_outputs:
        raise ModelFileError(
            f"the network {model!r} does not fit the estimator: its labels need "
            f"{n_outputs} output(s)"
        )
    est.n_features_in_ = int(meta["n_features_in"])
    if "feature_names_in" in meta:
        names = np.asarray(meta["feature_names_in"], dtype=object)
        if len(names) != est.n_features_in_:
            raise ModelFileError(f"{len(names)} feature names for {est.n_features_in_} features")
        est.feature_names_in_ = names
    for name in SCALAR_ATTRS:
        setattr(est, name, _from_jsonable(name, meta.get(name)))
    state = {
        "run": _run_from_state(model, tensors, meta["run"]),
        "optimizer_params": [
            _from_jsonable(name, v)
            for name, v in zip(OPTIMIZER_PARAMS, meta["optimizer_params"], strict=True)
        ],
    }
    if label_binarizer is not None:
        state["label_binarizer"] = label_binarizer
    try:
        est._set_fitted_state(state)
    except ValueError as exc:
        raise ModelFileError(str(exc)) from None
    if meta["out_activation"] != est.out_activation_:
        raise ModelFileError(f"out_activation {meta['out_activation']!r} contradicts the head")
    return est


def classifier_state(est: Any) -> State:
    """Tensors (the network's ``W1, b1, …`` and its run's) and JSON metadata for a
    fitted ``MLPClassifier``: what every estimator holds, and its labels."""
    return _estimator_state(est)


def classifier_from_state(tensors: Tensors, meta: Mapping[str, Any]) -> Any:
    """Rebuild a fitted ``MLPClassifier``, checking that every part agrees with the
    others. A file without the run it continues is refused."""
    # scikit-learn is imported only when a file holds an estimator.
    from handgrad.estimator import MLPClassifier

    classes = labels_from_json(meta["classes"])
    binarizer = _binarizer(meta["y_type"], classes)
    n_out = len(classes) if meta["y_type"] != "binary" else 1
    return _estimator_from_state(MLPClassifier, tensors, meta, binarizer, n_out)


def regressor_state(est: Any) -> State:
    """Tensors (the network's and its run's) and JSON metadata for a fitted
    ``MLPRegressor``."""
    return _estimator_state(est)


def regressor_from_state(tensors: Tensors, meta: Mapping[str, Any]) -> Any:
    """Rebuild a fitted ``MLPRegressor``, checking that every part agrees with the
    others. A file without the run it continues is refused."""
    from handgrad.estimator import MLPRegressor

    return _estimator_from_state(MLPRegressor, tensors, meta)


def _binarizer(y_type: Any, classes: np.ndarray) -> Any:
    """A fitted ``LabelBinarizer`` equal to the one ``fit`` made."""
    from sklearn.preprocessing import LabelBinarizer

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


# ------------------------------------------------------------------------- pipelines
def pipeline_state(pipeline: Any) -> State:
    """Tensors and JSON metadata for a ``Pipeline`` of a fitted ``Preprocessor`` (or a
    fitted ``ColumnTransformer`` of :func:`~handgrad.data.columns.plan_columns`) and a
    fitted ``MLPClassifier``, ``MLPRegressor``, or ``TransformedTargetRegressor`` of an
    ``MLPRegressor`` with a ``StandardScaler`` on the target: the estimator's (see
    :func:`classifier_state`, :func:`regressor_state`), the target scaler's mean and
    scale, and the preprocessing's fitted state with the steps' names (a column
    transformer's statistics as ``columns.*`` tensors, the rest as ``meta["columns"]``)."""
    (pre_name, pre), (est_name, est) = _pipeline_steps(pipeline)
    from sklearn.utils.validation import check_is_fitted

    first: dict[str, Any]
    if type(pre).__name__ == "ColumnTransformer":
        from handgrad._columns_state import columns_state

        pre_tensors, columns_meta = columns_state(pre)
        first = {"columns": columns_meta}
    else:
        check_is_fitted(pre, "n_features_")
        pre_tensors, first = {}, {"preprocessing": pre.to_dict()}
    if type(est).__name__ == "MLPClassifier":
        tensors, est_meta = classifier_state(est)
        return tensors | pre_tensors, {
            "steps": [pre_name, est_name],
            **first,
            "classifier": est_meta,
        }
    target = None
    if type(est).__name__ == "TransformedTargetRegressor":
        check_is_fitted(est)
        scaler = est.transformer_
        target = {
            "mean": np.asarray(scaler.mean_, dtype=np.float64).tolist(),
            "scale": np.asarray(scaler.scale_, dtype=np.float64).tolist(),
            "ndim": int(est._training_dim),
        }
        est = est.regressor_
    tensors, est_meta = regressor_state(est)
    return tensors | pre_tensors, {
        "steps": [pre_name, est_name],
        **first,
        "regressor": est_meta,
        "target_scaler": target,
    }


def pipeline_from_state(tensors: Tensors, meta: Mapping[str, Any]) -> Any:
    """The fitted ``Pipeline`` that :func:`pipeline_state` described."""
    names = meta["steps"]
    if not (isinstance(names, list) and len(names) == 2 and all(isinstance(n, str) for n in names)):
        raise ModelFileError(f"a pipeline's steps must be two names, got {names!r}")
    if "classifier" in meta:
        est = classifier_from_state(tensors, meta["classifier"])
    else:
        est = _target_scaled(regressor_from_state(tensors, meta["regressor"]), meta)
    if "columns" in meta:
        return _column_pipeline(names, tensors, meta["columns"], est)
    return _pipeline(names, meta["preprocessing"], est)


def _column_pipeline(names: list[str], tensors: Tensors, columns: Any, est: Any) -> Any:
    """``Pipeline([(names[0], column transformer), (names[1], est)])``, the transformer's
    output width checked against the estimator's input."""
    from sklearn.pipeline import Pipeline

    from handgrad._columns_state import columns_from_state

    if not isinstance(columns, dict):
        raise ModelFileError(f"the column transformer's state is not an object: {columns!r}")
    ct = columns_from_state(tensors, columns)
    width = len(ct.get_feature_names_out())
    if width != est.n_features_in_:
        raise ModelFileError(
            f"the column transformer makes {width} features, but the estimator takes "
            f"{est.n_features_in_}"
        )
    return Pipeline([(names[0], ct), (names[1], est)])


def _target_scaled(reg: Any, meta: Mapping[str, Any]) -> Any:
    """``reg``, wrapped in the fitted ``TransformedTargetRegressor`` the file describes
    (a ``StandardScaler`` of the target), when it describes one."""
    target = meta.get("target_scaler")
    if target is None:
        return reg
    from sklearn.preprocessing import StandardScaler

    try:
        mean = np.asarray(target["mean"], dtype=np.float64)
        scale = np.asarray(target["scale"], dtype=np.float64)
        ndim = int(target["ndim"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"the target scaler's state is broken: {exc}") from None
    if (
        mean.ndim != 1
        or mean.shape != scale.shape
        or len(mean) != reg.n_outputs_
        or not (np.all(np.isfinite(mean)) and np.all(np.isfinite(scale)) and np.all(scale > 0))
        or ndim not in (1, 2)
    ):
        raise ModelFileError(
            f"the target scaler (mean {target['mean']}, scale {target['scale']}) does not "
            f"fit a regressor with {reg.n_outputs_} output(s)"
        )
    scaler = StandardScaler()
    scaler.mean_, scaler.scale_, scaler.var_ = mean, scale, scale**2
    scaler.n_features_in_, scaler.n_samples_seen_ = len(mean), 0
    return fitted_target_regressor(reg, scaler, ndim)


def fitted_target_regressor(reg: Any, scaler: Any, ndim: int = 1) -> Any:
    """A fitted ``TransformedTargetRegressor`` of the fitted regressor ``reg`` (trained on
    targets that the fitted ``StandardScaler`` ``scaler`` scaled) -- predicting in the
    targets' own units; ``ndim`` is the number of dimensions of those targets."""
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.preprocessing import StandardScaler

    ttr = TransformedTargetRegressor(regressor=reg, transformer=StandardScaler())
    # n_features_in_ and feature_names_in_ are the wrapper's views of regressor_'s.
    ttr.regressor_, ttr.transformer_, ttr._training_dim = reg, scaler, ndim
    return ttr


def _pipeline(names: list[str], pre_state: Any, est: Any) -> Any:
    """``Pipeline([(names[0], preprocessor), (names[1], est)])``, the two checked to fit."""
    from sklearn.pipeline import Pipeline

    from handgrad.data.preprocess import Preprocessor

    if not isinstance(pre_state, dict):
        raise ModelFileError(f"the preprocessing state is not an object: {pre_state!r}")
    pre = Preprocessor.from_dict(pre_state)
    if not hasattr(pre, "n_features_"):
        raise ModelFileError("the file's preprocessing was never fitted")
    if pre.n_features_ != est.n_features_in_:
        raise ModelFileError(
            f"the preprocessing takes {pre.n_features_} features, but the estimator "
            f"{est.n_features_in_}"
        )
    return Pipeline([(names[0], pre), (names[1], est)])


def _pipeline_steps(pipeline: Any) -> list[tuple[str, Any]]:
    """The two steps of a ``Pipeline`` that a model file can hold, or a TypeError."""
    from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
    from sklearn.preprocessing import StandardScaler

    from handgrad.data.preprocess import Preprocessor
    from handgrad.estimator import MLPClassifier, MLPRegressor

    steps = list(getattr(pipeline, "steps", []))
    # A ColumnTransformer (of plan_columns: columns_state says when it is another) reads
    # a table by column kind in the Preprocessor's place.
    kinds = [Preprocessor if type(s) is ColumnTransformer else type(s) for _, s in steps]
    last = steps[-1][1] if steps else None
    scaled = (
        type(last) is TransformedTargetRegressor
        and type(getattr(last, "regressor_", None)) is MLPRegressor
        and type(getattr(last, "transformer_", None)) is StandardScaler
    )
    if kinds not in ([Preprocessor, MLPClassifier], [Preprocessor, MLPRegressor]) and not (
        scaled and kinds[0] is Preprocessor and len(kinds) == 2
    ):
        got = ", ".join(type(s).__name__ for _, s in steps) or "no steps"
        raise TypeError(
            "a model file holds a Pipeline of exactly a handgrad Preprocessor and an "
            "MLPClassifier or MLPRegressor (bare, or fitted in a TransformedTargetRegressor "
            "with a StandardScaler), or of the ColumnTransformer of "
            "handgrad.data.columns.plan_columns in the Preprocessor's place, but this one "
            f"has {got}"
        )
    return steps


# ---------------------------------------------------------------------- model files
#: Every kind a model file can hold: kind -> (its state as (tensors, metadata), the
#: model rebuilt from that state). A file naming any other kind is refused.
KINDS: dict[str, tuple[Callable[[Any], State], Callable[[Tensors, Mapping[str, Any]], Any]]] = {
    "MLP": (network_state, mlp_from_state),
    "TwoLayerNet": (network_state, two_layer_net_from_state),
    "MLPClassifier": (classifier_state, classifier_from_state),
    "Pipeline": (pipeline_state, pipeline_from_state),
    "MLPRegressor": (regressor_state, regressor_from_state),
}


def _kind(kind: Any) -> tuple[Callable[[Any], State], Callable[[Tensors, Mapping[str, Any]], Any]]:
    if not isinstance(kind, str) or kind not in KINDS:
        raise ModelFileError(
            f"a model of unknown kind {kind!r} (this handgrad knows: {', '.join(sorted(KINDS))})"
        )
    return KINDS[kind]


def _kind_of(model: object) -> str:
    """The kind of exactly ``MLP``, ``TwoLayerNet``, ``MLPClassifier`` or ``Pipeline`` (no
    subclass: it would load as its parent)."""
    kind = {MLP: "MLP", TwoLayerNet: "TwoLayerNet"}.get(type(model))
    if kind is None and type(model).__name__ in ("MLPClassifier", "MLPRegressor"):
        import handgrad.estimator as estimator

        name = type(model).__name__
        kind = name if type(model) is getattr(estimator, name) else None
    if kind is None and type(model).__name__ == "Pipeline":
        from sklearn.pipeline import Pipeline

        kind = "Pipeline" if type(model) is Pipeline else None
    if kind is None:
        raise TypeError(
            f"cannot save a {type(model).__name__}: a model file holds an MLP, a "
            "TwoLayerNet, a fitted MLPClassifier or MLPRegressor, or a Pipeline of a "
            "fitted handgrad Preprocessor and MLPClassifier or MLPRegressor"
        )
    return kind


def save_model(
    path: str | os.PathLike[str], model: object, extra: Mapping[str, Any] | None = None
) -> Path:
    """Save an ``MLP``, ``TwoLayerNet``, fitted ``MLPClassifier``, or ``Pipeline`` of a
    fitted :class:`~handgrad.data.preprocess.Preprocessor` and ``MLPClassifier`` to a
    model file, atomically (see :func:`handgrad.modelfile.save_arrays`).

    ``extra`` (JSON) is stored beside the model's own metadata, e.g. what is known about
    the inputs (``{"info": {...}}``); :func:`load_model` with ``return_metadata`` gives
    it back.

    Raises
    ------
    TypeError
        ``model`` is of another class, or its labels cannot be stored as JSON.
    FileNotFoundError, NotADirectoryError, PermissionError
        The folder is missing, not a folder, or not writable.
    """
    return save_arrays(path, *model_state(model, extra))


def model_state(model: object, extra: Mapping[str, Any] | None = None) -> State:
    """What :func:`save_model` writes, taken without writing: the model's tensors and
    its metadata (``kind``, its state, and ``extra``). A TypeError as for
    :func:`save_model`."""
    kind = _kind_of(model)
    to_state, _ = KINDS[kind]
    tensors, metadata = to_state(model)
    metadata = {**metadata, **(extra or {})}
    metadata.setdefault("kind", kind)
    return tensors, metadata


def load_model(path: str | os.PathLike[str], *, return_metadata: bool = False) -> Any:
    """Load a model saved by :func:`save_model` (with ``return_metadata``, the pair
    ``(model, metadata)``, the file read once).

    A run folder's ``model.safetensors`` loads as a fitted scikit-learn ``Pipeline``
    (its preprocessing, then the estimator) that predicts from raw samples what
    ``handgrad predict`` predicts. Only the kinds in :data:`KINDS` can be built; nothing
    named in the file is ever imported.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ModelFileError
        Everything :func:`handgrad.modelfile.load_arrays` raises for, an unknown
        ``kind``, or state the model cannot be rebuilt from.
    """
    tensors, metadata = load_arrays(path)
    kind = metadata.get("kind")
    try:
        _, from_state = _kind(kind)
    except ModelFileError as exc:
        raise ModelFileError(f"{path} holds {exc}") from None
    try:
        model = from_state(tensors, metadata)
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(
            f"{path}: cannot rebuild a {kind} from the saved state: {exc}"
        ) from exc
    return (model, metadata) if return_metadata else model
