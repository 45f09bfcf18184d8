"""The one plain-text table printer, for the command line and ``handgrad.explain``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def format_table(
    rows: Sequence[Sequence[Any]],
    header: Sequence[str],
    align_right: Sequence[bool] | None = None,
    *,
    rule_between: int | None = None,
) -> str:
    """A plain-text table with a rule under the header; numbers right-aligned by default.

    ``rule_between``: a column index; a rule is drawn between consecutive rows whose
    values in that column differ (e.g. between the forward and the backward pass).
    """
    cells = [[str(c) for c in header]] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    if align_right is None:
        align_right = [
            bool(rows) and isinstance(rows[0][i], int | float) and not isinstance(rows[0][i], bool)
            for i in range(len(header))
        ]

    def line(r: Sequence[str]) -> str:
        parts = zip(r, widths, align_right, strict=True)
        return "  ".join(c.rjust(w) if right else c.ljust(w) for c, w, right in parts).rstrip()

    rule = line(["-" * w for w in widths])
    out = [line(cells[0]), rule]
    for i, r in enumerate(cells[1:]):
        if rule_between is not None and i and cells[i][rule_between] != r[rule_between]:
            out.append(rule)
        out.append(line(r))
    return "\n".join(out)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)
