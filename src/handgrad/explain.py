"""The forward and backward pass of an MLP as a table, in the notes' notation.

:func:`explain` lists every quantity the network computes for a batch — its formula
(``Z1 = X W1 + b1``, ``dS = (P − Y)/N``, ``dW2 = A1ᵀ dS + λW2``, …) and its shape for
the given sizes — for any depth, any hidden activation and either head. Formulas are
the ones :meth:`handgrad.MLP.forward` and :meth:`handgrad.MLP.backward` implement; the
text for each activation and head comes from its record in :mod:`handgrad.heads`.

Example
-------
>>> rows = explain(input_size=4, hidden_sizes=(10,), n_classes=3, batch_size=5)
>>> [(r.quantity, r.shape) for r in rows][:3]
[('Z1', '(5, 10)'), ('A1', '(5, 10)'), ('S', '(5, 3)')]
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import handgrad._table as _table
from handgrad._validation import check_choice, check_number
from handgrad.heads import ACTIVATIONS, HEADS


@dataclass(frozen=True)
class Row:
    """One line of the table: which pass, the quantity, its formula, its shape."""

    stage: str  # "forward" or "backward"
    quantity: str
    formula: str
    shape: str


def explain(
    input_size: int,
    hidden_sizes: Sequence[int],
    n_classes: int,
    batch_size: int,
    *,
    activation: str = "relu",
    head: str = "softmax",
) -> list[Row]:
    """Every forward and backward quantity of an MLP with its formula and shape.

    Parameters
    ----------
    input_size, hidden_sizes, n_classes
        D, (H1, H2, …) (may be empty: a linear model) and C.
    batch_size
        N, the rows of X.
    activation
        Hidden activation: ``relu``, ``tanh``, ``logistic`` or ``identity``.
    head
        ``softmax`` (P = softmax(S), one label per row) or ``sigmoid`` (P = σ(S)).

    Returns
    -------
    list of Row
        Forward rows first (``Z1, A1, …, S, P, L``), then the backward rows
        (``dS, dW_L, db_L, dA_{L−1}, dZ_{L−1}, …, dW1, db1``).
    """
    check_number(input_size, "input size D", low=1, integer=True)
    check_number(n_classes, "number of classes C", low=1, integer=True)
    check_number(batch_size, "batch size N", low=1, integer=True)
    for i, h in enumerate(hidden_sizes, start=1):
        check_number(h, f"hidden size {i}", low=1, integer=True)
    check_choice(activation, "activation", ACTIVATIONS)
    check_choice(head, "head", HEADS)
    least = HEADS[head].task.min_outputs
    if n_classes < least:
        raise ValueError(f"the {head} head needs at least {least} classes; use --head sigmoid")
    sizes = [input_size, *hidden_sizes, n_classes]
    return _forward(sizes, batch_size, activation, head) + _backward(
        sizes, batch_size, activation, head
    )


def _a(l: int) -> str:
    """The name of layer l's output: ``X`` for the input, ``A{l}`` otherwise."""
    return "X" if l == 0 else f"A{l}"


def _z(l: int, L: int) -> str:
    """Layer l's pre-activation: ``S`` (the scores) for the last layer."""
    return "S" if l == L else f"Z{l}"


def _shape(*dims: object) -> str:
    return "(" + ", ".join(str(d) for d in dims) + (",)" if len(dims) == 1 else ")")


def _forward(sizes: list[int], N: int, activation: str, head: str) -> list[Row]:
    L = len(sizes) - 1
    rows = []
    for l in range(1, L + 1):
        Z = _z(l, L)
        rows.append(Row("forward", Z, f"{Z} = {_a(l - 1)} W{l} + b{l}", _shape(N, sizes[l])))
        if l < L:
            rows.append(
                Row(
                    "forward",
                    _a(l),
                    f"{_a(l)} = " + ACTIVATIONS[activation].formula.format(Z=Z),
                    _shape(N, sizes[l]),
                )
            )
    C = sizes[-1]
    penalty = "λ/2 (" + " + ".join(f"‖W{l}‖²" for l in range(1, L + 1)) + ")"
    rows.append(Row("forward", "P", HEADS[head].probabilities_formula, _shape(N, C)))
    rows.append(Row("forward", "L", f"L = {HEADS[head].loss_formula} + {penalty}", "scalar"))
    return rows


def _backward(sizes: list[int], N: int, activation: str, head: str) -> list[Row]:
    L = len(sizes) - 1
    C = sizes[-1]
    rows = [Row("backward", "dS", HEADS[head].gradient_formula, _shape(N, C))]
    for l in range(L, 0, -1):
        dZ = "d" + _z(l, L)
        rows.append(
            Row(
                "backward",
                f"dW{l}",
                f"dW{l} = {_a(l - 1)}ᵀ {dZ} + λW{l}",
                _shape(sizes[l - 1], sizes[l]),
            )
        )
        rows.append(Row("backward", f"db{l}", f"db{l} = Σ_rows {dZ}", _shape(sizes[l])))
        if l > 1:
            dA, A, Z = f"dA{l - 1}", f"A{l - 1}", f"Z{l - 1}"
            rows.append(Row("backward", dA, f"{dA} = {dZ} W{l}ᵀ", _shape(N, sizes[l - 1])))
            factor = ACTIVATIONS[activation].backward_formula.format(dA=dA, A=A, Z=Z)
            rows.append(
                Row("backward", f"dZ{l - 1}", f"dZ{l - 1} = {factor}", _shape(N, sizes[l - 1]))
            )
    return rows


def format_table(rows: Sequence[Row]) -> str:
    """The rows as a plain-text table with a header and a rule between the passes."""
    cells = [(r.stage, r.quantity, r.formula, r.shape) for r in rows]
    return _table.format_table(cells, ("pass", "quantity", "formula", "shape"), rule_between=0)


def parameter_count(sizes: Sequence[int]) -> int:
    """Number of weights and biases of an MLP with layer sizes (D, H1, …, C)."""
    return sum(a * b + b for a, b in itertools.pairwise(sizes))
