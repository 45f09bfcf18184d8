"""``handgrad export``: a model file as one ONNX file that ONNX Runtime serves."""

from __future__ import annotations

import os
from typing import Any

import click

from handgrad.cli._common import model_file, model_path_argument


@click.command("export")
@model_path_argument()
@click.argument("output", type=click.Path(dir_okay=False), metavar="OUT.onnx")
@click.option(
    "--dtype",
    type=click.Choice(["float32", "float64"]),
    default="float32",
    show_default=True,
    help="Type of the input rows and of every weight in the graph.",
)
@click.option("--overwrite", is_flag=True, help="Replace OUT.onnx if it already exists.")
def command(model: str, output: str, dtype: str, overwrite: bool) -> None:
    """Write MODEL (a run folder, its model.safetensors, or a saved estimator) as an
    ONNX file: its preprocessing, network and labels, for ONNX Runtime without Python
    or handgrad.

    The graph takes raw rows X (N, D) (for an image model, the flattened images; for a
    table read by column kind, one (N, 1) input per column, named as the column:
    float32 with NaN where empty, or strings with '' where empty). A
    classifier gives `label` (what `handgrad predict` prints) and `probabilities` (one
    column per class, in the model's class order); a regressor gives `prediction`, in
    the target's own units.

    \b
    Examples:
      handgrad export runs/digits digits.onnx
      handgrad export model.safetensors model.onnx --dtype float64
    """
    _check_output(model, output, overwrite)
    try:
        from handgrad.export import to_onnx
    except ImportError as exc:  # the optional extra is not installed
        raise click.ClickException(str(exc)) from None
    from handgrad._atomic import write_atomically

    onnx_model = to_onnx(model_file(model), dtype=dtype)
    write_atomically(output, onnx_model.SerializeToString())
    inputs, outputs = onnx_model.graph.input, onnx_model.graph.output
    click.echo(
        f"wrote {output}: input{'s' if len(inputs) > 1 else ''} "
        + ", ".join(_describe(v) for v in inputs)
        + f", output{'s' if len(outputs) > 1 else ''} "
        + ", ".join(_describe(v) for v in outputs),
        err=True,
    )


def _check_output(model: str, output: str, overwrite: bool) -> None:
    """OUT.onnx is never the model itself, nor an existing file unless asked: an export
    replaces nothing by accident."""
    if os.path.exists(output) and os.path.exists(model) and os.path.samefile(model, output):
        raise click.UsageError(f"{output} is the model file itself: give another OUT.onnx")
    if not output.lower().endswith(".onnx"):
        raise click.UsageError(
            f"OUT.onnx must end in .onnx, got {output!r} (an export is an ONNX file, "
            "which handgrad does not load back)"
        )
    if os.path.lexists(output) and not overwrite:
        raise click.UsageError(
            f"{output} already exists: give another OUT.onnx, or --overwrite to replace it"
        )


def _describe(value: Any) -> str:
    """``X (N, 64)`` or ``label (N,)``: a graph input or output, N for the batch axis."""
    dims = value.type.tensor_type.shape.dim
    shape = tuple(d.dim_value if d.HasField("dim_value") else "N" for d in dims)
    return f"{value.name} {shape}".replace("'", "")
