"""Columns read by kind: a table of numbers, words, yes/no answers and empty cells, turned
into the (N, D) float rows a network eats by scikit-learn's own ``ColumnTransformer``.

:func:`plan_columns` looks at a table (a pandas DataFrame, as :func:`load_frame_csv` reads
one from a CSV file) and decides, for each column:

* **numeric** (every cell a number or empty): median imputation (``SimpleImputer``), then
  ``StandardScaler``, as the command line standardizes a table of numbers; a column with
  empty cells in training also gets a 0/1 missing-indicator column (``MissingIndicator``);
* **boolean** (cells yes/no or true/false in any case, empty allowed): one 0/1 column that
  is 1 for yes/true (plus one that marks an empty cell, when training had any);
* **categorical** (any other text): one-hot (``OneHotEncoder(handle_unknown="ignore")``),
  an empty cell being a level of its own; a category never seen in training encodes as
  all zeros and is counted (:func:`unknown_categories`), never a failure;
* **dropped**: a column holding one value (constant), or text unique to each row, or
  integers unique to each row that count the rows (1, 2, 3 ... an identifier).

The plan is a :class:`ColumnPlan`: its :meth:`~ColumnPlan.summary` is the one line to print,
its :meth:`~ColumnPlan.to_dict` what ``metrics.json`` records. The fitted transformer is
stored without pickle by :mod:`handgrad._columns_state`, and exported to ONNX with one
input per column (:func:`onnx_initial_types`, :func:`onnx_feeds`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import MissingIndicator, SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from handgrad.data.preprocess import column_order

__all__ = [
    "MISSING_CELLS",
    "ColumnPlan",
    "check_columns",
    "model_kinds",
    "onnx_feeds",
    "onnx_initial_types",
    "plan_columns",
    "register_onnx",
    "unknown_categories",
    "unknown_note",
]

#: Cells (compared lower-cased, stripped) that a CSV reader takes as empty: R's ``NA``,
#: pandas' ``NaN``, the UCI repository's ``?`` and the like.
MISSING_CELLS = frozenset({"", "na", "n/a", "nan", "null", "?"})

_TRUE = frozenset({"yes", "true"})
_FALSE = frozenset({"no", "false"})

# The ColumnTransformer's parts, by name: each is one kind of column.
NUMBERS, MISSING, TEXT, YES_NO = "numbers", "missing", "text", "yes_no:"


@dataclasses.dataclass(frozen=True)
class ColumnPlan:
    """What :func:`plan_columns` decided for each column of a table.

    numeric : columns of numbers, imputed (median) and standardized
    missing : the numeric columns with empty cells, each given a 0/1 indicator column
    categorical : each text column and its levels in the table (sorted; ``""`` is empty)
    boolean : each yes/no column and its spellings: the false ones, then the true ones
        (with ``""`` last where the column has empty cells)
    dropped : each dropped column and why ("constant", "identifier")
    numeric_only : whether every column, dropped ones included, is a complete column of
        numbers: a table that the standardizing :class:`~handgrad.data.Preprocessor`
        handles as it always has, every column kept (the command line's path for it)
    """

    numeric: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    categorical: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    boolean: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = dataclasses.field(
        default_factory=dict
    )
    dropped: Mapping[str, str] = dataclasses.field(default_factory=dict)
    numeric_only: bool = False

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns the transformer reads: numeric, then categorical, then boolean."""
        return (*self.numeric, *self.categorical, *self.boolean)

    def summary(self) -> str:
        """One line: ``17 numeric (2 with empty cells), 2 categorical (Store: 5 levels,
        ...), 1 boolean (Store7), 1 dropped (id: identifier)``."""
        parts = [f"{len(self.numeric)} numeric"]
        if self.missing:
            parts[0] += f" ({len(self.missing)} with empty cells: {_list(self.missing)})"
        if self.categorical:
            levels = [f"{k}: {len(v)} levels" for k, v in self.categorical.items()]
            parts.append(f"{len(levels)} categorical ({_list(levels)})")
        if self.boolean:
            parts.append(f"{len(self.boolean)} boolean ({_list(list(self.boolean))})")
        if self.dropped:
            why = [f"{k}: {v}" for k, v in self.dropped.items()]
            parts.append(f"{len(why)} dropped ({_list(why)})")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The decisions as JSON (for ``metrics.json``); :meth:`from_dict` reads it back."""
        return {
            "numeric": list(self.numeric),
            "missing": list(self.missing),
            "categorical": {k: list(v) for k, v in self.categorical.items()},
            "boolean": {k: [list(f), list(t)] for k, (f, t) in self.boolean.items()},
            "dropped": dict(self.dropped),
            "numeric_only": self.numeric_only,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ColumnPlan:
        """Inverse of :meth:`to_dict`."""
        return cls(
            numeric=tuple(d["numeric"]),
            missing=tuple(d["missing"]),
            categorical={k: tuple(v) for k, v in d["categorical"].items()},
            boolean={k: (tuple(f), tuple(t)) for k, (f, t) in d["boolean"].items()},
            dropped=dict(d["dropped"]),
            numeric_only=bool(d.get("numeric_only", False)),
        )


def plan_columns(
    table: pd.DataFrame, *, identifiers_from: int = 20
) -> tuple[ColumnTransformer, ColumnPlan]:
    """Decide each column's kind and build the (unfitted) transformer for them.

    Parameters
    ----------
    table : the features, N rows (the label column left out): numeric dtypes are
        numbers (NaN empty); anything else is text (NaN or None empty), as
        :func:`load_frame_csv` reads it.
    identifiers_from : a column unique to each row is an identifier (and dropped) only
        in a table of at least this many rows; in a smaller one it may be chance.

    Returns
    -------
    The unfitted ``ColumnTransformer`` (dense float64 output, columns read by name, the
    dropped ones left out) and the :class:`ColumnPlan`.
    """
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be a pandas DataFrame, got {type(table).__name__}")
    if len(table) == 0 or table.shape[1] == 0:
        raise ValueError(f"table must have rows and columns, got shape {table.shape}")
    if not all(isinstance(c, str) for c in table.columns) or table.columns.has_duplicates:
        raise ValueError("table's columns must have distinct string names")
    numeric, missing, dropped, text = [], [], {}, False
    categorical: dict[str, tuple[str, ...]] = {}
    boolean: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    n = len(table)
    for name in table.columns:
        column = table[name]
        empty = column.isna().to_numpy()
        if _is_numeric(column):
            values = column.to_numpy(dtype=np.float64, na_value=np.nan)
            seen = np.unique(values[~empty])
            if len(seen) + bool(empty.any()) <= 1:
                dropped[name] = "constant"
            elif n >= identifiers_from and _counts_rows(values, seen, empty):
                dropped[name] = "identifier"
            else:
                numeric.append(name)
                if empty.any():
                    missing.append(name)
            continue
        text = True
        cells = [str(v).strip() for v in column.to_numpy(dtype=object)[~empty]]
        levels = sorted(set(cells))
        if len(levels) + bool(empty.any()) <= 1:
            dropped[name] = "constant"
        elif n >= identifiers_from and len(levels) == n:
            dropped[name] = "identifier"
        elif {c.lower() for c in levels} <= _TRUE | _FALSE:
            boolean[name] = (
                tuple(c for c in levels if c.lower() in _FALSE),
                tuple(c for c in levels if c.lower() in _TRUE) + (("",) if empty.any() else ()),
            )
        else:
            categorical[name] = tuple(levels) + (("",) if empty.any() else ())
    plan = ColumnPlan(
        tuple(numeric), tuple(missing), categorical, boolean, dropped, not (text or missing)
    )
    return _transformer(plan, fitted_categories=False), plan


def _transformer(plan: ColumnPlan, *, fitted_categories: bool) -> ColumnTransformer:
    """The ColumnTransformer for ``plan``: categories learnt by ``fit``, or (to restore a
    fitted one) the plan's categories given to the encoder."""
    parts: list[tuple[str, Any, list[str]]] = []
    if plan.numeric:
        impute = SimpleImputer(strategy="median")
        parts.append(
            (NUMBERS, Pipeline([("impute", impute), ("scale", StandardScaler())]), [*plan.numeric])
        )
    if plan.missing:
        parts.append((MISSING, MissingIndicator(features="all"), [*plan.missing]))
    if plan.categorical:
        categories = [list(v) for v in plan.categorical.values()] if fitted_categories else "auto"
        encoder = OneHotEncoder(categories=categories, handle_unknown="ignore", sparse_output=False)
        parts.append((TEXT, _with_empty_text(encoder), [*plan.categorical]))
    for name, (false, true) in plan.boolean.items():
        # One 0/1 column per spelling but the first false one (yes/no → one column);
        # unknown text, like the false spelling, encodes as 0.
        encoder = OneHotEncoder(
            categories=[[*false, *true]],
            drop=[false[0]] if false else None,
            handle_unknown="ignore",
            sparse_output=False,
        )
        parts.append((YES_NO + name, _with_empty_text(encoder), [name]))
    return ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)


def _with_empty_text(encoder: OneHotEncoder) -> Pipeline:
    """``encoder`` after imputers that turn an empty text cell (NaN, as pandas and
    :func:`load_frame_csv` have it, or None) into ``""``: a string that an encoder orders
    among the others, and that ONNX can be fed."""
    nan = SimpleImputer(strategy="constant", fill_value="", missing_values=np.nan)
    none = SimpleImputer(strategy="constant", fill_value="", missing_values=None)
    return Pipeline([("nan", nan), ("none", none), ("onehot", encoder)])


def _is_numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(
        column.dtype
    )


def _counts_rows(values: np.ndarray, seen: np.ndarray, empty: np.ndarray) -> bool:
    """Whether complete integer ``values`` are unique per row and consecutive (a row
    number, in any order)."""
    if empty.any() or len(seen) != len(values) or not np.all(seen == np.round(seen)):
        return False
    return bool(seen[-1] - seen[0] == len(seen) - 1)


def _list(items: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... {len(items) - limit} more" if len(items) > limit else "")


def check_columns(frame: pd.DataFrame, transformer: ColumnTransformer, source: str = "X") -> None:
    """Raise one ValueError naming every column the fitted ``transformer`` reads that
    ``frame`` lacks (extra columns, such as a label, are fine)."""
    column_order(list(map(str, frame.columns)), _read_columns(transformer), source)


def unknown_categories(transformer: ColumnTransformer, frame: pd.DataFrame) -> dict[str, int]:
    """How many cells of each text column of ``frame`` hold a value the fitted
    ``transformer`` never saw in training (each encodes as zeros); columns without any
    are left out. An empty cell counts as unknown where training had none."""
    counts: dict[str, int] = {}
    for name, part, columns in transformer.transformers_:
        if name != TEXT and not name.startswith(YES_NO):
            continue
        encoder = part.named_steps["onehot"]
        for column, known in zip(columns, encoder.categories_, strict=True):
            cells = frame[column].to_numpy(dtype=object)
            text = np.array(["" if _empty(v) else str(v) for v in cells], dtype=object)
            unseen = int((~np.isin(text, np.asarray(known, dtype=object))).sum())
            if unseen:
                counts[column] = unseen
    return counts


def unknown_note(counts: Mapping[str, int]) -> str | None:
    """One line for stderr about :func:`unknown_categories`' counts, or None without
    any: ``3 cells hold categories not seen in training (island: 2, sex: 1); each
    encodes as none of the known ones``."""
    if not counts:
        return None
    total = sum(counts.values())
    each = _list([f"{k}: {v}" for k, v in counts.items()])
    cells = "cell holds a category" if total == 1 else "cells hold categories"
    return f"{total} {cells} not seen in training ({each}); each encodes as none of the known ones"


def model_kinds(transformer: ColumnTransformer) -> tuple[list[str], list[str]]:
    """The columns a fitted transformer reads as numbers, and those it reads as text:
    :func:`load_frame_csv`'s ``numeric`` and ``text``, to read rows to predict as the
    model was trained."""
    text = _text_columns(transformer)
    columns = _read_columns(transformer)
    return [c for c in columns if c not in text], [c for c in columns if c in text]


def _empty(v: Any) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA


def _read_columns(transformer: ColumnTransformer) -> list[str]:
    """The columns a fitted transformer reads, in its parts' order, each once."""
    names: list[str] = []
    for name, _, columns in transformer.transformers_:
        if name != "remainder":
            names += [c for c in columns if c not in names]
    return names


# --------------------------------------------------------------------------- ONNX
def onnx_initial_types(transformer: ColumnTransformer) -> list[tuple[str, Any]]:
    """skl2onnx's inputs for a fitted transformer: one (N, 1) input per column it reads,
    named as the column, ``FloatTensorType`` for numbers and ``StringTensorType`` for
    text (an empty cell fed as ``""``)."""
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    text = _text_columns(transformer)
    return [
        (c, StringTensorType([None, 1]) if c in text else FloatTensorType([None, 1]))
        for c in _read_columns(transformer)
    ]


def onnx_feeds(transformer: ColumnTransformer, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The inputs of :func:`onnx_initial_types`' graph for the rows of ``frame``: numbers
    as (N, 1) float32 (empty as NaN), text as (N, 1) strings (empty as ``""``)."""
    check_columns(frame, transformer)
    text = _text_columns(transformer)
    feeds = {}
    for c in _read_columns(transformer):
        cells = frame[c].to_numpy(dtype=object)
        if c in text:
            feeds[c] = np.array(["" if _empty(v) else str(v) for v in cells], dtype=object)
        else:
            feeds[c] = frame[c].to_numpy(dtype=np.float32, na_value=np.nan)
        feeds[c] = feeds[c].reshape(-1, 1)
    return feeds


def _text_columns(transformer: ColumnTransformer) -> set[str]:
    return {
        c
        for name, _, columns in transformer.transformers_
        if name == TEXT or name.startswith(YES_NO)
        for c in columns
    }


def register_onnx() -> None:
    """Teach skl2onnx scikit-learn's ``MissingIndicator`` (which it lacks) with
    ``features="all"``: 0/1 floats of ``IsNaN`` of its columns. Call it before converting
    a pipeline that :func:`plan_columns` built; calling it again is harmless."""
    from skl2onnx import update_registered_converter
    from skl2onnx.algebra import onnx_ops as ops
    from skl2onnx.common.data_types import FloatTensorType
    from skl2onnx.common.utils import check_input_and_output_numbers

    def shapes(operator: Any) -> None:
        check_input_and_output_numbers(operator, input_count_range=1, output_count_range=1)
        N = operator.inputs[0].get_first_dimension()
        operator.outputs[0].type = FloatTensorType([N, len(operator.raw_operator.features_)])

    def convert(scope: Any, operator: Any, container: Any) -> None:
        indicator, opv = operator.raw_operator, container.target_opset
        if indicator.features != "all" or not np.isnan(indicator.missing_values):
            raise NotImplementedError("only MissingIndicator(features='all') of NaN converts")
        nan = ops.OnnxIsNaN(operator.inputs[0], op_version=opv)
        out = ops.OnnxCast(nan, to=1, op_version=opv, output_names=[operator.outputs[0]])
        out.add_to(scope, container)

    update_registered_converter(MissingIndicator, "HandgradMissingIndicator", shapes, convert)

    from skl2onnx.common.data_types import StringTensorType
    from skl2onnx.operator_converters.common import concatenate_variables
    from skl2onnx.operator_converters.imputer_op import convert_sklearn_imputer
    from skl2onnx.shape_calculators.imputer import calculate_sklearn_imputer_output_shapes

    def impute(scope: Any, operator: Any, container: Any) -> None:
        """skl2onnx's imputer, and the case it refuses: text whose missing value is NaN
        or None, which a string tensor cannot hold (an empty cell is fed as ``""``,
        already the fill value), so the step is the identity."""
        imputer = operator.raw_operator
        text = isinstance(operator.inputs[0].type, StringTensorType)
        if not (
            text and (imputer.missing_values is None or isinstance(imputer.missing_values, float))
        ):
            convert_sklearn_imputer(scope, operator, container)
            return
        if imputer.fill_value != "":
            raise NotImplementedError("only a text imputer filling with '' converts")
        cells = concatenate_variables(scope, operator.inputs, container)
        container.add_node("Identity", [cells], [operator.outputs[0].full_name])

    update_registered_converter(
        SimpleImputer,
        "SklearnSimpleImputer",
        calculate_sklearn_imputer_output_shapes,
        impute,
        overwrite=True,
    )
