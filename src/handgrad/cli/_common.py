"""Option types and table printing shared by the commands."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click


class HiddenSizes(click.ParamType):
    """``256`` or ``256,128``: one positive integer per hidden layer."""

    name = "H[,H2,...]"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        parts = [p.strip() for p in str(value).split(",")]
        sizes = []
        for part in parts:
            try:
                size = int(part)
            except ValueError:
                self.fail(
                    f"{value!r} is not a comma-separated list of layer sizes (e.g. 256 or 256,128)",
                    param,
                    ctx,
                )
            if size < 1:
                self.fail(
                    f"hidden sizes must be positive integers, got {size} in {value!r}", param, ctx
                )
            sizes.append(size)
        return tuple(sizes)


HIDDEN = HiddenSizes()


def data_options(default: str | None) -> Any:
    """``--data``, ``--data-dir`` and ``--label``, as one decorator."""

    def decorate(f: Any) -> Any:
        f = click.option(
            "--label",
            default=None,
            metavar="COLUMN",
            help="Label column of a CSV file (name or index; default: last).",
        )(f)
        f = click.option(
            "--data-dir",
            type=click.Path(file_okay=False),
            default=None,
            help="Folder holding downloaded datasets (default: the user cache, "
            "or $HANDGRAD_DATA_DIR).",
        )(f)
        help_text = "Dataset name (see `handgrad datasets`) or a .csv/.npz file" + (
            f" [default: {default}]" if default else " [default: the data the model was trained on]"
        )
        return click.option("--data", default=default, metavar="NAME|FILE", help=help_text)(f)

    return decorate


def format_table(
    rows: Sequence[Sequence[Any]], header: Sequence[str], align_right: Sequence[bool] | None = None
) -> str:
    """A plain-text table with a header rule; numbers right-aligned by default."""
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

    return "\n".join(
        [line(cells[0]), line(["-" * w for w in widths])] + [line(r) for r in cells[1:]]
    )


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)
