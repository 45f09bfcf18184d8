"""Option types shared by the commands, and the table printer (:mod:`handgrad._table`)."""

from __future__ import annotations

from typing import Any

import click

from handgrad._table import format_table

__all__ = [
    "HIDDEN",
    "HiddenSizes",
    "csv_options",
    "data_options",
    "format_table",
    "layer_options",
]


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
        help_text = "Dataset name (see `handgrad datasets`) or a .csv/.npz/.npy file" + (
            f" [default: {default}]" if default else " [default: the data the model was trained on]"
        )
        return click.option("--data", default=default, metavar="NAME|FILE", help=help_text)(f)

    return decorate


def labels_option(help: str) -> Any:
    """``--labels LABELS.npy``: the labels of a ``--data FILE.npy``, one per row
    (``help`` says what the command does with them)."""
    return click.option(
        "--labels",
        type=click.Path(dir_okay=False),
        default=None,
        metavar="LABELS.npy",
        help=help,
    )


def csv_options(f: Any) -> Any:
    """``--header/--no-header`` and ``--missing-label``: how a CSV file is read."""
    f = click.option(
        "--missing-label",
        type=click.Choice(["error", "drop"]),
        default="error",
        show_default=True,
        help="A CSV row with an empty label cell: an error naming its line, or dropped "
        "(with a count).",
    )(f)
    return click.option(
        "--header/--no-header",
        default=None,
        help="Whether a CSV file's first row names its columns [default: decided from "
        "the file, saying so when unsure].",
    )(f)


def layer_options(f: Any) -> Any:
    """``--dropout`` and ``--norm``: the layers beyond the notes' (train, explain and
    gradcheck describe a network with them alike)."""
    from handgrad.heads import NORMS

    f = click.option(
        "--norm",
        type=click.Choice(list(NORMS)),
        default=None,
        help="Batch or layer normalization of each hidden layer's Z, before its activation.",
    )(f)
    return click.option(
        "--dropout",
        type=click.FloatRange(min=0, max=1, max_open=True),
        default=0.0,
        show_default=True,
        help="Dropout's drop probability after each hidden activation (0: none).",
    )(f)
