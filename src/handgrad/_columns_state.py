"""A fitted column transformer (:func:`handgrad.data.columns.plan_columns`) as tensors and
JSON, and back, never pickled.

The statistics are tensors -- each numeric column's median, mean, scale and variance,
float64, ``(K,)`` for K numeric columns -- and everything else is JSON: the columns of
each kind and the categories each encoder learnt. Restoring builds the same scikit-learn
``ColumnTransformer`` with the categories given to its encoders, fits it on two made-up
rows (which sets up scikit-learn's own bookkeeping of columns and output widths) and then
puts the stored statistics in place: its ``transform`` of a DataFrame is bit-identical to
the original's, whatever the order of the DataFrame's columns.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.utils.validation import check_is_fitted

from handgrad.data.columns import MISSING, NUMBERS, TEXT, YES_NO, ColumnPlan, _transformer
from handgrad.errors import ModelFileError

__all__ = ["columns_from_state", "columns_state"]

_STATISTICS = ("median", "mean", "scale", "var")


def columns_state(
    transformer: ColumnTransformer, prefix: str = "columns."
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``(tensors, meta)`` of a fitted transformer from :func:`plan_columns`: tensors
    ``{prefix}median``, ``mean``, ``scale``, ``var`` (K,) float64; meta JSON-able, with
    the fitted categories (a :class:`ColumnPlan`'s dict) and the samples seen."""
    check_is_fitted(transformer, "transformers_")
    parts = {name: (part, list(columns)) for name, part, columns in transformer.transformers_}
    numeric, tensors, samples = [], {}, 0
    if NUMBERS in parts:
        pipe, numeric = parts[NUMBERS]
        impute, scale = pipe.named_steps["impute"], pipe.named_steps["scale"]
        values = (impute.statistics_, scale.mean_, scale.scale_, scale.var_)
        for key, value in zip(_STATISTICS, values, strict=True):
            tensors[prefix + key] = np.array(value, dtype=np.float64)
        samples = int(np.max(scale.n_samples_seen_))
    categorical, boolean = {}, {}
    if TEXT in parts:
        pipe, columns = parts[TEXT]
        cats = pipe.named_steps["onehot"].categories_
        categorical = {c: _strings(v, c) for c, v in zip(columns, cats, strict=True)}
    for name, (pipe, columns) in parts.items():
        if name.startswith(YES_NO):
            encoder = pipe.named_steps["onehot"]
            spellings = _strings(encoder.categories_[0], columns[0])
            dropped = encoder.drop_idx_
            n_false = 0 if dropped is None or dropped[0] is None else 1
            boolean[columns[0]] = (spellings[:n_false], spellings[n_false:])
    plan = ColumnPlan(
        numeric=tuple(numeric),
        missing=tuple(parts[MISSING][1]) if MISSING in parts else (),
        categorical=categorical,
        boolean=boolean,
    )
    return tensors, {"columns": plan.to_dict(), "samples_seen": samples}


def columns_from_state(
    tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any], prefix: str = "columns."
) -> ColumnTransformer:
    """The fitted ``ColumnTransformer`` that :func:`columns_state` described.

    Raises
    ------
    ModelFileError
        The metadata or tensors are not what :func:`columns_state` writes.
    """
    try:
        plan = ColumnPlan.from_dict(meta["columns"])
        samples = int(meta["samples_seen"])
        _check_plan(plan)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(
            f"the model file's column transformer is malformed ({type(exc).__name__}: {exc})"
        ) from None
    stats = _statistics(tensors, prefix, len(plan.numeric))
    transformer = _transformer(plan, fitted_categories=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # two made-up rows: nothing to warn about
        transformer.fit(_two_rows(plan))
    if plan.numeric:
        pipe = transformer.named_transformers_[NUMBERS]
        impute, scale = pipe.named_steps["impute"], pipe.named_steps["scale"]
        impute.statistics_ = stats["median"]
        scale.mean_, scale.scale_, scale.var_ = stats["mean"], stats["scale"], stats["var"]
        scale.n_samples_seen_ = samples
    return transformer


def _check_plan(plan: ColumnPlan) -> None:
    names = [*plan.columns]
    if len(set(names)) != len(names) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"columns {names} are not distinct names")
    if not set(plan.missing) <= set(plan.numeric):
        raise ValueError(f"missing-indicator columns {list(plan.missing)} are not all numeric")
    for column, levels in [*plan.categorical.items(), *plan.boolean.items()]:
        flat = [*levels[0], *levels[1]] if column in plan.boolean else list(levels)
        if not flat or not all(isinstance(v, str) for v in flat) or len(set(flat)) != len(flat):
            raise ValueError(f"column {column!r} has categories {flat!r}")


def _statistics(tensors: Mapping[str, np.ndarray], prefix: str, k: int) -> dict[str, np.ndarray]:
    """The K numeric columns' statistics, each checked: (K,) float64, finite, and a
    positive scale."""
    if k == 0:
        return {}
    stats = {}
    for key in _STATISTICS:
        value = tensors.get(prefix + key)
        if value is None:
            raise ModelFileError(f"the model file lacks the tensor {prefix}{key}")
        value = np.asarray(value)
        if value.shape != (k,) or value.dtype != np.float64 or not np.isfinite(value).all():
            raise ModelFileError(
                f"tensor {prefix}{key} has shape {value.shape} and dtype {value.dtype}; "
                f"expected {k} finite float64 numbers, one per numeric column"
            )
        stats[key] = value
    if not (stats["scale"] > 0).all():
        raise ModelFileError(f"tensor {prefix}scale holds a scale that is not positive")
    return stats


def _two_rows(plan: ColumnPlan) -> pd.DataFrame:
    """Two rows that a transformer for ``plan`` fits on without complaint: 0 and 1 in
    each numeric column (0 and NaN where it has an indicator), each encoder's first
    category in its columns."""
    data: dict[str, Any] = {}
    for c in plan.numeric:
        data[c] = [0.0, np.nan if c in plan.missing else 1.0]
    for c, levels in plan.categorical.items():
        data[c] = pd.Series([levels[0]] * 2, dtype=object)
    for c, (false, true) in plan.boolean.items():
        data[c] = pd.Series([(*false, *true)[0]] * 2, dtype=object)
    return pd.DataFrame(data)


def _strings(values: Any, column: str) -> tuple[str, ...]:
    """An encoder's categories, which must be strings to be stored as JSON."""
    out = tuple(np.asarray(values, dtype=object).tolist())
    bad = [v for v in out if not isinstance(v, str)]
    if bad:
        raise TypeError(
            f"column {column!r} has the category {bad[0]!r} of type {type(bad[0]).__name__}; "
            "only text categories can be stored (read the table with load_frame_csv, or "
            "turn the column into strings)"
        )
    return out
