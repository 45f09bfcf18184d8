"""ONNX export: a fitted classifier or regressor, or a run's model with its preprocessing,
as one graph that ONNX Runtime serves without Python or handgrad.

The graph, for raw rows ``X`` (N, D) float32 (for image models: the flattened images)::

    X -> X / scale - mean, / std         the run's Preprocessor, as it was fitted
      -> Z1 = X W1 + b1, A1 = act(Z1) …  one MatMul, Add and activation per hidden layer
      -> S = A W_L + b_L                 the scores
      -> P = softmax(S) or σ(S)          the head: ``probabilities`` (N, C)
      -> label                           classes_[argmax S], classes_[P > 0.5], or the
                                         (N, L) 0/1 indicators of a multi-label model

A regressor's graph stops after its head (the identity, or ``e^S`` for the Poisson loss),
then undoes the target scaling of a ``TransformedTargetRegressor`` (``× scale + mean``):
its one output ``prediction`` (N,) (or (N, K) for K targets) is what ``predict`` returns.

``probabilities`` has ``predict_proba``'s columns in ``classes_`` order (both columns of a
binary model); ``label`` holds what ``predict`` returns: strings stay strings, integers
(and bools, and floats that are whole numbers) become int64, as in skl2onnx.

A scikit-learn ``Pipeline`` ending in a handgrad estimator converts whole: the steps
before it through skl2onnx's converters (a step it has none for is one error naming it).
A model that reads a table by column kind (its first step the fitted ``ColumnTransformer``
of :mod:`handgrad.data.columns`) takes one (N, 1) input per column, named as the column.

Importing this module registers handgrad's :class:`MLPClassifier` and
:class:`MLPRegressor` with skl2onnx (``update_registered_converter``), so that
``skl2onnx.to_onnx`` converts a scikit-learn ``Pipeline`` ending in one exactly as it
converts one ending in scikit-learn's own MLP (the classifier with its ``zipmap`` and
``output_class_labels`` options; the regressor's ``variable`` (N, K), (N, 1) for one
target), and one ending in a ``TransformedTargetRegressor`` of a handgrad regressor, as a
run's model file holds. The converters read only the estimators' public fitted attributes;
:func:`_scores` is the one place that turns the network into ONNX nodes.

An estimator with another head adds one entry to :data:`ONNX_ACTIVATIONS`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

try:
    import onnx
    from skl2onnx import to_onnx as _skl2onnx_to_onnx
    from skl2onnx import update_registered_converter
    from skl2onnx._parse import sklearn_parsers_map
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from skl2onnx.algebra import onnx_ops as ops
    from skl2onnx.common.data_types import (
        DoubleTensorType,
        FloatTensorType,
        Int64TensorType,
        StringTensorType,
        UInt64TensorType,
        guess_numpy_type,
    )
    from skl2onnx.common.exceptions import MissingConverter, MissingShapeCalculator
    from skl2onnx.common.utils import check_input_and_output_numbers
    from skl2onnx.common.utils_classifier import get_label_classes
except ImportError as exc:  # the optional extra is not installed
    raise ImportError(
        f"ONNX export needs onnx and skl2onnx ({exc.name} is missing): pip install 'handgrad[onnx]'"
    ) from exc
from sklearn.base import BaseEstimator, is_regressor
from sklearn.compose import TransformedTargetRegressor
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from handgrad._validation import check_finite_weights
from handgrad.bundle import Bundle, load_bundle
from handgrad.data import Preprocessor
from handgrad.estimator import MLPClassifier, MLPRegressor
from handgrad.heads import NORM_EPS

__all__ = ["ONNX_ACTIVATIONS", "TARGET_OPSET", "to_onnx"]

#: The default opset: everything the graph needs exists there (Softmax over the last
#: axis since 13), and ONNX Runtime releases from 2022 on load it.
TARGET_OPSET = 17

#: ONNX operator of each activation, hidden or output, by scikit-learn's name (the
#: names of ``activation`` and ``out_activation_``).
ONNX_ACTIVATIONS: dict[str, Callable[..., Any]] = {
    "identity": ops.OnnxIdentity,
    "relu": ops.OnnxRelu,
    "tanh": ops.OnnxTanh,
    "logistic": ops.OnnxSigmoid,
    "softmax": ops.OnnxSoftmax,
    "exp": ops.OnnxExp,
}

_DTYPES = {np.dtype(np.float32): FloatTensorType, np.dtype(np.float64): DoubleTensorType}
_LABEL_TYPES = {np.dtype(np.int64): Int64TensorType, np.dtype(np.uint64): UInt64TensorType}


# ------------------------------------------------------------------------ public API
def to_onnx(
    model: MLPClassifier | MLPRegressor | Pipeline | Bundle | str | os.PathLike[str],
    *,
    dtype: DTypeLike = np.float32,
    target_opset: int = TARGET_OPSET,
) -> onnx.ModelProto:
    """The whole model as an ONNX graph: preprocessing, network, head and labels.

    Parameters
    ----------
    model : a fitted :class:`handgrad.MLPClassifier` or :class:`handgrad.MLPRegressor`
        (bare, or in a ``TransformedTargetRegressor`` scaling its target with a
        ``StandardScaler``), any fitted scikit-learn ``Pipeline`` ending in one (the
        steps before it converted by skl2onnx's converters; this is what
        :func:`handgrad.state.load_model` gives for a run's file), a
        :class:`handgrad.bundle.Bundle`, or the path of a model file
    dtype : float32 (the default, what every ONNX runtime serves) or float64: the type
        of the input, the weights and the arithmetic of the graph. A float64 model in a
        float32 graph computes with its weights rounded to float32.
    target_opset : the ONNX operator set version of the graph

    Returns
    -------
    An ``onnx.ModelProto`` with input ``X`` (N, D) of raw rows (flattened images for an
    image model) -- or, for a model that reads a table's columns, one (N, 1) input per
    column, named as the column (see :func:`handgrad.data.columns.onnx_feeds`) -- and
    outputs ``label`` (N,) or (N, L) and ``probabilities`` (N, C) of a classifier, or
    ``prediction`` (N,) or (N, K) of a regressor. Save it with
    ``model.SerializeToString()``.

    Raises TypeError in one line naming the step of a pipeline that skl2onnx cannot
    convert, or the estimator that is not handgrad's.
    """
    if isinstance(model, str | os.PathLike):
        model = load_bundle(model)
    bundle = model if isinstance(model, Bundle) else Bundle(model)
    graph_dtype = np.dtype(dtype)
    if graph_dtype not in _DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {graph_dtype}")
    steps, initial_types = _graph_steps(bundle, graph_dtype)
    estimator = steps[-1][1]
    regression = isinstance(estimator, _Regression)
    try:
        onx = _skl2onnx_to_onnx(
            Pipeline(steps) if len(steps) > 1 else estimator,
            initial_types=initial_types,
            options={} if regression else {id(estimator): {"zipmap": False}},
            target_opset=target_opset,
            final_types=[("prediction", _DTYPES[graph_dtype](_prediction_shape(estimator)))]
            if regression
            else None,
        )
    except (RuntimeError, NotImplementedError) as exc:  # a step skl2onnx cannot convert
        raise TypeError(_conversion_error(exc)) from exc
    onx.doc_string = _describe(bundle, graph_dtype, steps, initial_types)
    if bundle.image_shape is not None:
        onnx.helper.set_model_props(onx, {"image_shape": json.dumps(list(bundle.image_shape))})
    onnx.checker.check_model(onx)
    return onx


def _conversion_error(exc: Exception) -> str:
    """One line for what skl2onnx refused: a step inside another without a converter
    (those directly in the pipeline are named by :func:`_check_convertible`), or a step's
    settings its converter does not support."""
    said = f"cannot export this pipeline: skl2onnx says {str(exc).splitlines()[0]!r}"
    if isinstance(exc, MissingShapeCalculator | MissingConverter):
        return (
            f"{said} (a step inside another has no converter: register one with "
            "skl2onnx.update_registered_converter, or leave the step out)"
        )
    return said


def _graph_steps(
    bundle: Bundle, dtype: np.dtype
) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """The steps skl2onnx converts, and the graph's inputs.

    The steps: those before the estimator (nested pipelines flattened), each one
    skl2onnx has a converter for (a run's :class:`Preprocessor` is registered below),
    then the estimator, checked (a regressor with its target scaling). The inputs:
    ``X`` (N, D), or one per column for a table read by column kind.
    """
    *before, (_, last) = _flat_steps(bundle.model)
    inner = getattr(last, "regressor_", None)
    if isinstance(last, TransformedTargetRegressor) and isinstance(inner, Pipeline):
        *within, (_, regressor) = _flat_steps(inner)  # the README's target-scaled pipeline
        before, estimator = [*before, *within], _regression(last, regressor=regressor)
    else:
        estimator = _regression(last) if is_regressor(last) else _check_classifier(last)
    for name, step in before:
        _check_convertible(name, step)
    steps = [*before, ("estimator", estimator)]
    if bundle.columns is not None:  # a table read by column kind: one input per column
        from handgrad.data.columns import onnx_initial_types, register_onnx

        if dtype != np.float32:
            raise ValueError(
                f"dtype must be float32 for a model that reads a table's columns, got {dtype}"
            )
        register_onnx()
        return steps, onnx_initial_types(bundle.columns)
    first = before[0][1] if before else None
    n = bundle.n_features if first is None else int(first.n_features_in_)
    return steps, [("X", _DTYPES[dtype]([None, n]))]


def _flat_steps(model: Any) -> list[tuple[str, Any]]:
    """A pipeline's steps, those of a pipeline in it in its place, "passthrough" left
    out: [("estimator", model)] for a bare model."""
    if not isinstance(model, Pipeline):
        return [("estimator", model)]
    steps: list[tuple[str, Any]] = []
    for name, step in model.steps:
        if isinstance(step, Pipeline):
            steps += _flat_steps(step)
        elif step is not None and not (isinstance(step, str) and step == "passthrough"):
            steps.append((name, step))
    return steps


def _check_convertible(name: str, step: Any) -> None:
    """One TypeError naming a step before the estimator that skl2onnx has no converter
    for (a step inside it is checked as skl2onnx converts it: :func:`_conversion_error`)."""
    kind = type(step)
    if kind not in sklearn_operator_name_map and kind not in sklearn_parsers_map:
        raise TypeError(
            f"cannot export this pipeline: its step {name!r} ({kind.__module__}."
            f"{kind.__qualname__}) has no skl2onnx converter (register one with "
            "skl2onnx.update_registered_converter, or leave the step out)"
        )


def _check_classifier(model: Any) -> MLPClassifier:
    if not isinstance(model, MLPClassifier):
        raise TypeError(
            "ONNX export takes a fitted handgrad.MLPClassifier or MLPRegressor (or a "
            f"Pipeline, a Bundle or a model file ending in one), got "
            f"{type(model).__module__}.{type(model).__qualname__}"
        )
    check_is_fitted(model)
    _check_exportable(model)
    return model


def _check_exportable(model: MLPClassifier | MLPRegressor) -> None:
    """Finite weights, and activations :data:`ONNX_ACTIVATIONS` knows."""
    check_finite_weights(model.coefs_, model.intercepts_)
    for name in (model.activation, model.out_activation_):
        if name not in ONNX_ACTIVATIONS:
            raise ValueError(
                f"activation {name!r} has no ONNX export (known: {list(ONNX_ACTIVATIONS)})"
            )


def _describe(
    bundle: Bundle,
    dtype: np.dtype,
    steps: list[tuple[str, Any]],
    inputs: list[tuple[str, Any]],
) -> str:
    if bundle.columns is not None:
        rows = (
            f"one (N, 1) input per column ({len(inputs)}), named as the column: float32 "
            "(NaN where empty) or strings ('' where empty)"
        )
    else:
        rows = f"raw rows X (N, {inputs[0][1].shape[1]}) {dtype.name}"
    if bundle.image_shape is not None:
        shape = "×".join(str(s) for s in bundle.image_shape)
        rows += f": each a flattened {shape} image, pixels as in training"
    if isinstance(steps[-1][1], _Regression):
        return f"handgrad MLPRegressor. Input: {rows}. Output: prediction (predict)."
    return (
        f"handgrad MLPClassifier. Input: {rows}. Outputs: label (predict) and "
        "probabilities (predict_proba, columns in the order of the classes)."
    )


# -------------------------------------------------------------------------- regressors
class _Regression(BaseEstimator):
    """A fitted MLPRegressor and the target scaling to undo (``× scale + mean``; 1 and 0
    for a bare regressor), as one step for skl2onnx's Pipeline. ``flat``: one target's
    prediction is (N,), as ``predict`` returns it (handgrad's :func:`to_onnx`), rather
    than (N, 1), as skl2onnx's regressors give it."""

    def __init__(
        self, regressor: Any = None, mean: Any = None, scale: Any = None, flat: bool = True
    ) -> None:
        self.regressor, self.mean, self.scale, self.flat = regressor, mean, scale, flat


def _regression(model: Any, flat: bool = True, regressor: Any = None) -> _Regression:
    """The regressor of ``model`` (an MLPRegressor, or one in a fitted
    TransformedTargetRegressor whose transformer is a StandardScaler, or none) with its
    scaling; ``regressor``: the MLPRegressor ending the pipeline such a
    TransformedTargetRegressor holds."""
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    reg, mean, scale = model, 0.0, 1.0
    if isinstance(model, TransformedTargetRegressor):
        check_is_fitted(model)
        reg, scaler = model.regressor_ if regressor is None else regressor, model.transformer_
        identity = type(scaler) is FunctionTransformer and scaler.func is None
        if type(scaler) is not StandardScaler and not identity:
            raise TypeError(
                "ONNX export takes a target scaled by a StandardScaler (or left as it "
                f"is), got {type(scaler).__qualname__}"
            )
        if not identity:
            mean = 0.0 if scaler.mean_ is None else scaler.mean_
            scale = 1.0 if scaler.scale_ is None else scaler.scale_
    if not isinstance(reg, MLPRegressor):
        raise TypeError(
            "ONNX export takes a fitted handgrad.MLPRegressor (or one in a "
            f"TransformedTargetRegressor), got {type(reg).__module__}.{type(reg).__qualname__}"
        )
    check_is_fitted(reg)
    _check_exportable(reg)
    return _Regression(reg, np.asarray(mean, np.float64), np.asarray(scale, np.float64), flat)


def _as_regression(raw: Any) -> _Regression:
    """The operator's model as a _Regression: a handgrad MLPRegressor or a
    TransformedTargetRegressor that skl2onnx met in a pipeline gives (N, 1) for one
    target, like skl2onnx's own regressors."""
    return raw if isinstance(raw, _Regression) else _regression(raw, flat=False)


def _prediction_shape(step: _Regression) -> list[int | None]:
    K = step.regressor.n_outputs_
    return [None] if K == 1 and step.flat else [None, K]


def _regressor_shapes(operator: Any) -> None:
    """prediction (N,) or (N, 1) for one target, (N, K) for K, of the input's float type."""
    check_input_and_output_numbers(operator, input_count_range=1, output_count_range=1)
    N = operator.inputs[0].get_first_dimension()
    shape = _prediction_shape(_as_regression(operator.raw_operator))
    value_type = DoubleTensorType if _graph_dtype(operator) == np.float64 else FloatTensorType
    operator.outputs[0].type = value_type([N, *shape[1:]])


def _convert_regressor(scope: Any, operator: Any, container: Any) -> None:
    """The network and its head, then the target scaling undone."""
    step, opv = _as_regression(operator.raw_operator), container.target_opset
    model, dtype = step.regressor, _graph_dtype(operator)
    X = ops.OnnxCast(operator.inputs[0], to=_tensor_type(dtype), op_version=opv)
    Y = ONNX_ACTIVATIONS[model.out_activation_](_scores(model, X, dtype, opv), op_version=opv)
    K = model.n_outputs_
    Y = ops.OnnxMul(Y, np.broadcast_to(step.scale, (K,)).astype(dtype), op_version=opv)
    Y = ops.OnnxAdd(Y, np.broadcast_to(step.mean, (K,)).astype(dtype), op_version=opv)
    if K == 1 and step.flat:
        Y = ops.OnnxReshape(Y, np.array([-1], dtype=np.int64), op_version=opv)
    output = operator.outputs[0]
    ops.OnnxIdentity(Y, op_version=opv, output_names=[output]).add_to(scope, container)


# -------------------------------------------------------------------------- converters
def _classifier_shapes(operator: Any) -> None:
    """label (N,) or (N, L) of the classes' type; probabilities (N, C) of the input's."""
    check_input_and_output_numbers(operator, input_count_range=1, output_count_range=2)
    model = operator.raw_operator
    N = operator.inputs[0].get_first_dimension()
    labels = _label_values(get_label_classes(operator.scope_inst, model))
    label_type = _LABEL_TYPES.get(labels.dtype, StringTensorType)
    multilabel = _kind(model) == "multilabel"
    operator.outputs[0].type = label_type([N, len(labels)] if multilabel else [N])
    proba_type = DoubleTensorType if _graph_dtype(operator) == np.float64 else FloatTensorType
    operator.outputs[1].type = proba_type([N, len(labels)])


def _convert_classifier(scope: Any, operator: Any, container: Any) -> None:
    """The network, its head and the labels of one fitted MLPClassifier."""
    model, opv = operator.raw_operator, container.target_opset
    dtype = _graph_dtype(operator)
    X = ops.OnnxCast(operator.inputs[0], to=_tensor_type(dtype), op_version=opv)
    S = _scores(model, X, dtype, opv)
    P = ONNX_ACTIVATIONS[model.out_activation_](S, op_version=opv)
    classes = _label_values(get_label_classes(scope, model))  # arange(C) with nocl=True
    unsigned = classes.dtype == np.uint64  # gathered as int64 bits, cast back
    label, proba = _labels(model, classes.view(np.int64) if unsigned else classes, S, P, dtype, opv)
    if unsigned:
        label = ops.OnnxCast(label, to=onnx.TensorProto.UINT64, op_version=opv)
    for value, output in ((label, operator.outputs[0]), (proba, operator.outputs[1])):
        ops.OnnxIdentity(value, op_version=opv, output_names=[output]).add_to(scope, container)


def _labels(
    model: Any, classes: np.ndarray, S: Any, P: Any, dtype: np.dtype, opv: int
) -> tuple[Any, Any]:
    """``predict`` and ``predict_proba`` from the scores S and the head's P."""
    kind = _kind(model)
    if kind == "multilabel":  # one independent sigmoid per label: (N, L) indicators
        return _above_half(P, dtype, opv), P
    if kind == "multiclass":  # the highest score is the likeliest class, as in predict
        index = ops.OnnxArgMax(S, axis=1, keepdims=0, op_version=opv)
        return ops.OnnxGather(classes, index, axis=0, op_version=opv), P
    # binary: one sigmoid output P(classes_[1]); predict_proba widens it to [1 - P, P]
    index = ops.OnnxReshape(_above_half(P, dtype, opv), np.array([-1], np.int64), op_version=opv)
    not_P = ops.OnnxSub(np.array([1], dtype), P, op_version=opv)
    proba = ops.OnnxConcat(not_P, P, axis=1, op_version=opv)
    return ops.OnnxGather(classes, index, axis=0, op_version=opv), proba


def _above_half(P: Any, dtype: np.dtype, opv: int) -> Any:
    """int64 ``[P > 0.5]``, the threshold of scikit-learn's LabelBinarizer."""
    above = ops.OnnxGreater(P, np.array([0.5], dtype), op_version=opv)
    return ops.OnnxCast(above, to=onnx.TensorProto.INT64, op_version=opv)


def _preprocessor_shapes(operator: Any) -> None:
    """(N, D) rows in, (N, D) rows of the graph's float type out."""
    check_input_and_output_numbers(operator, input_count_range=1, output_count_range=1)
    N = operator.inputs[0].get_first_dimension()
    rows_type = DoubleTensorType if _graph_dtype(operator) == np.float64 else FloatTensorType
    operator.outputs[0].type = rows_type([N, operator.raw_operator.n_features_])


def _convert_preprocessor(scope: Any, operator: Any, container: Any) -> None:
    """The fitted transform, in Preprocessor.transform's order: × 1/scale, − mean, ÷ std."""
    pre, opv = operator.raw_operator, container.target_opset
    dtype = _graph_dtype(operator)
    rows = ops.OnnxCast(operator.inputs[0], to=_tensor_type(dtype), op_version=opv)
    if pre.scale_ != 1.0:
        rows = ops.OnnxMul(rows, np.array([1.0 / pre.scale_], dtype), op_version=opv)
    if pre.mean_ is not None:
        rows = ops.OnnxSub(rows, pre.mean_.astype(dtype), op_version=opv)
    if pre.std_ is not None:
        rows = ops.OnnxDiv(rows, pre.std_.astype(dtype), op_version=opv)
    output = operator.outputs[0]
    ops.OnnxIdentity(rows, op_version=opv, output_names=[output]).add_to(scope, container)


def _tensor_type(dtype: np.dtype) -> int:
    return onnx.helper.np_dtype_to_tensor_dtype(dtype)


def _graph_dtype(operator: Any) -> np.dtype:
    """float64 for a double input, float32 for anything else (as skl2onnx's MLP)."""
    return np.dtype(
        np.float64 if guess_numpy_type(operator.inputs[0].type) == np.float64 else np.float32
    )


def _scores(model: Any, X: Any, dtype: np.dtype, opv: int) -> Any:
    """S = A_{L-1} W_L + b_L, with A_l = act(norm(A_{l-1} W_l + b_l)) and A_0 = X.

    Dropout is the identity at predict time: it adds nothing to the graph."""
    A = X
    last = len(model.coefs_) - 1
    for l, (W, b) in enumerate(zip(model.coefs_, model.intercepts_, strict=True)):
        Z = ops.OnnxAdd(
            ops.OnnxMatMul(A, np.asarray(W, dtype), op_version=opv),
            np.asarray(b, dtype),
            op_version=opv,
        )
        if l < last and model.norm is not None:
            Z = _normalized(model.network_, l + 1, Z, dtype, opv)
        A = Z if l == last else ONNX_ACTIVATIONS[model.activation](Z, op_version=opv)
    return A


def _normalized(net: Any, l: int, Z: Any, dtype: np.dtype, opv: int) -> Any:
    """Layer l's normalization at predict time: batch norm as the affine map it is with
    its running statistics, ``Z ⊙ γ/√(σ² + ε) + (β − μ γ/√(σ² + ε))`` (computed in
    float64, then cast); layer norm by each row's mean and variance, ``γ ⊙ (Z − μ_i) /
    √(σ²_i + ε) + β``."""
    gamma, beta = (np.asarray(net.params[f"{k}{l}"], np.float64) for k in ("gamma", "beta"))
    if net.norm == "batch":
        mean, var = (np.asarray(net.state[f"running_{k}{l}"], np.float64) for k in ("mean", "var"))
        scale = gamma / np.sqrt(var + NORM_EPS)
        Z = ops.OnnxMul(Z, scale.astype(dtype), op_version=opv)
        return ops.OnnxAdd(Z, (beta - mean * scale).astype(dtype), op_version=opv)
    centred = ops.OnnxSub(Z, _row_mean(Z, opv), op_version=opv)
    var = _row_mean(ops.OnnxMul(centred, centred, op_version=opv), opv)
    std = ops.OnnxSqrt(
        ops.OnnxAdd(var, np.array([NORM_EPS], dtype), op_version=opv), op_version=opv
    )
    x_hat = ops.OnnxDiv(centred, std, op_version=opv)
    scaled = ops.OnnxMul(x_hat, gamma.astype(dtype), op_version=opv)
    return ops.OnnxAdd(scaled, beta.astype(dtype), op_version=opv)


def _row_mean(Z: Any, opv: int) -> Any:
    """Each row's mean, (N, 1): ReduceMean's axes an attribute before opset 18, an input
    from 18 on."""
    if opv < 18:
        return ops.OnnxReduceMean(Z, axes=[1], keepdims=1, op_version=opv)
    return ops.OnnxReduceMean(Z, np.array([1], np.int64), keepdims=1, op_version=opv)


def _kind(model: Any) -> str:
    if model.out_activation_ == "softmax":
        return "multiclass"
    return "multilabel" if model.n_outputs_ > 1 else "binary"


def _label_values(classes: np.ndarray) -> np.ndarray:
    """The classes as the label tensor holds them: strings, or int64 as skl2onnx has them
    (float labels are whole numbers: scikit-learn refuses others as classes), or uint64
    where an unsigned label is beyond int64 (2**63 and up)."""
    classes = np.asarray(classes)
    if classes.dtype == object and not all(isinstance(c, str) for c in classes):
        classes = np.array(classes.tolist())  # numbers held as Python objects
    if classes.dtype.kind == "u" and classes.size and classes.max() > np.iinfo(np.int64).max:
        return classes.astype(np.uint64)  # int64 would wrap them to negative numbers
    if classes.dtype.kind in "biuf":
        return classes.astype(np.int64)
    return np.array([str(c) for c in classes], dtype=object)


def _register() -> None:
    """Make skl2onnx convert handgrad's estimators and a run's Preprocessor; a
    ``TransformedTargetRegressor`` converts when it holds a handgrad MLPRegressor."""
    update_registered_converter(
        MLPClassifier,
        "HandgradMLPClassifier",
        _classifier_shapes,
        _convert_classifier,
        # scikit-learn's MLPClassifier converter's options, so a Pipeline converts alike
        options={
            "zipmap": [True, False, "columns"],
            "nocl": [True, False],
            "output_class_labels": [False, True],
        },
    )
    update_registered_converter(
        Preprocessor, "HandgradPreprocessor", _preprocessor_shapes, _convert_preprocessor
    )
    for regressor in (_Regression, MLPRegressor):
        update_registered_converter(
            regressor, f"Handgrad{regressor.__name__}", _regressor_shapes, _convert_regressor
        )
    if TransformedTargetRegressor not in sklearn_operator_name_map:  # skl2onnx has none
        update_registered_converter(
            TransformedTargetRegressor,
            "HandgradTransformedTargetRegressor",
            _regressor_shapes,
            _convert_regressor,
        )


_register()
