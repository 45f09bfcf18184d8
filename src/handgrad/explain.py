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
from typing import NamedTuple

import handgrad._table as _table
from handgrad._validation import check_choice, check_number
from handgrad.heads import ACTIVATIONS, DROPOUT, HEADS, NORMS


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
    dropout: float = 0.0,
    norm: str | None = None,
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
    dropout, norm
        As :class:`handgrad.MLP` takes them: each hidden layer becomes
        ``Z_l → Y_l = norm(Z_l) → A_l = act(Y_l) → Ã_l = A_l ⊙ M_l / p`` (the records'
        formulas in :data:`handgrad.heads.NORMS` and :data:`handgrad.heads.DROPOUT`).

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
    check_number(dropout, "dropout", low=0, high=1, high_open=True)
    if norm is not None:
        check_choice(norm, "norm", NORMS)
    least = HEADS[head].task.min_outputs
    if n_classes < least:
        raise ValueError(f"the {head} head needs at least {least} classes; use --head sigmoid")
    sizes = [input_size, *hidden_sizes, n_classes]
    layers = _Layers(activation, dropout > 0, norm)
    return _forward(sizes, batch_size, layers, head) + _backward(sizes, batch_size, layers, head)


class _Layers(NamedTuple):
    """What a hidden layer is made of, and its quantities' names."""

    activation: str
    dropout: bool
    norm: str | None

    def out(self, l: int) -> str:
        """The name of layer l's output, the next layer's input: ``X``, ``A{l}`` or
        (after dropout) ``Ã{l}``."""
        return "X" if l == 0 else (f"Ã{l}" if self.dropout else f"A{l}")

    def act_input(self, l: int) -> str:
        """What layer l's activation takes: ``Y{l}`` after a normalization, else ``Z{l}``."""
        return f"Y{l}" if self.norm else f"Z{l}"


def _z(l: int, L: int) -> str:
    """Layer l's pre-activation: ``S`` (the scores) for the last layer."""
    return "S" if l == L else f"Z{l}"


def _shape(*dims: object) -> str:
    return "(" + ", ".join(str(d) for d in dims) + (",)" if len(dims) == 1 else ")")


def _forward(sizes: list[int], N: int, layers: _Layers, head: str) -> list[Row]:
    L = len(sizes) - 1
    rows = []
    for l in range(1, L + 1):
        Z, shape = _z(l, L), _shape(N, sizes[l])
        rows.append(Row("forward", Z, f"{Z} = {layers.out(l - 1)} W{l} + b{l}", shape))
        if l == L:
            break
        Y = layers.act_input(l)
        if layers.norm:
            norm = NORMS[layers.norm]
            formula = f"{Y} = " + norm.formula.format(Z=Z, l=l) + f", over {norm.over}"
            rows.append(Row("forward", Y, formula, shape))
        act = ACTIVATIONS[layers.activation].formula.format(Z=Y)
        rows.append(Row("forward", f"A{l}", f"A{l} = {act}", shape))
        if layers.dropout:
            formula = f"Ã{l} = " + DROPOUT.formula.format(A=f"A{l}", l=l)
            rows.append(Row("forward", f"Ã{l}", formula, shape))
    C = sizes[-1]
    penalty = "λ/2 (" + " + ".join(f"‖W{l}‖²" for l in range(1, L + 1)) + ")"
    rows.append(Row("forward", "P", HEADS[head].probabilities_formula, _shape(N, C)))
    rows.append(Row("forward", "L", f"L = {HEADS[head].loss_formula} + {penalty}", "scalar"))
    return rows


def _backward(sizes: list[int], N: int, layers: _Layers, head: str) -> list[Row]:
    L = len(sizes) - 1
    C = sizes[-1]
    rows = [Row("backward", "dS", HEADS[head].gradient_formula, _shape(N, C))]
    for l in range(L, 0, -1):
        dZ = "d" + _z(l, L)
        rows.append(
            Row(
                "backward",
                f"dW{l}",
                f"dW{l} = {layers.out(l - 1)}ᵀ {dZ} + λW{l}",
                _shape(sizes[l - 1], sizes[l]),
            )
        )
        rows.append(Row("backward", f"db{l}", f"db{l} = Σ_rows {dZ}", _shape(sizes[l])))
        if l > 1:
            rows += _hidden_backward(l - 1, dZ, N, sizes[l - 1], layers)
    return rows


def _hidden_backward(k: int, dZ_next: str, N: int, H: int, layers: _Layers) -> list[Row]:
    """Hidden layer k's backward rows, from ``dZ_next`` (the next layer's) down to ``dZk``."""
    shape, A, Y = _shape(N, H), f"A{k}", layers.act_input(k)
    dOut = "d" + layers.out(k)
    rows = [Row("backward", dOut, f"{dOut} = {dZ_next} W{k + 1}ᵀ", shape)]
    if layers.dropout:
        formula = f"dA{k} = " + DROPOUT.backward_formula.format(dA=dOut, l=k)
        rows.append(Row("backward", f"dA{k}", formula, shape))
    factor = ACTIVATIONS[layers.activation].backward_formula.format(dA=f"dA{k}", A=A, Z=Y)
    rows.append(Row("backward", f"d{Y}", f"d{Y} = {factor}", shape))
    if layers.norm:
        dY = f"dY{k}"
        rows.append(Row("backward", f"dγ{k}", f"dγ{k} = Σ_rows {dY} ⊙ x̂{k}", _shape(H)))
        rows.append(Row("backward", f"dβ{k}", f"dβ{k} = Σ_rows {dY}", _shape(H)))
        formula = NORMS[layers.norm].backward_formula.format(dY=dY, l=k)
        rows.append(Row("backward", f"dZ{k}", f"dZ{k} = {formula}", shape))
    return rows


def format_table(rows: Sequence[Row]) -> str:
    """The rows as a plain-text table with a header and a rule between the passes."""
    cells = [(r.stage, r.quantity, r.formula, r.shape) for r in rows]
    return _table.format_table(cells, ("pass", "quantity", "formula", "shape"), rule_between=0)


def parameter_count(sizes: Sequence[int], norm: str | None = None) -> int:
    """Number of weights and biases of an MLP with layer sizes (D, H1, …, C), and with
    a ``norm`` its γ and β (2 H_l a hidden layer)."""
    count = sum(a * b + b for a, b in itertools.pairwise(sizes))
    return count + (2 * sum(sizes[1:-1]) if norm else 0)
