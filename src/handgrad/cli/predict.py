"""``handgrad predict``: labels (and probabilities) for CSV, NumPy or image inputs; a
regressor's predicted values."""

from __future__ import annotations

import csv
import io

import click

from handgrad.cli._common import format_table, model_file, model_path_argument


@click.command("predict")
@model_path_argument()
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("--proba", is_flag=True, help="Also print the probability of every class.")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FILE.csv",
    help="Write the predictions to a CSV file (atomically).",
)
@click.option(
    "--label",
    default=None,
    metavar="COLUMN",
    help="A column of the CSV inputs to ignore (name or index), e.g. the label.",
)
@click.option(
    "--header/--no-header",
    default=None,
    help="Whether line 1 of the CSV inputs names the columns [default: when it names "
    "the model's features, or holds no number].",
)
@click.option(
    "--invert/--no-invert",
    default=None,
    help="Invert image colours [default: when the image border is light, "
    "i.e. dark ink on white paper].",
)
def command(
    model: str,
    inputs: tuple[str, ...],
    proba: bool,
    output: str | None,
    label: str | None,
    header: bool | None,
    invert: bool | None,
) -> None:
    """Predict the class (or, for a regressor, the value) of every row of INPUT (.csv,
    .npy, .npz) or every image file (.png, .jpg, …; resized and scaled like the
    training images).

    \b
    Examples:
      handgrad predict runs/digits samples.csv --proba
      handgrad predict model.safetensors digit1.png digit2.png
      handgrad predict model.safetensors rows.npy --output predictions.csv
    """
    from handgrad._atomic import write_atomically
    from handgrad.bundle import class_names, load_bundle, read_inputs
    from handgrad.runs import label_column

    bundle = load_bundle(model_file(model))
    names, X = read_inputs(bundle, inputs, label=label_column(label), invert=invert, header=header)
    X_rows = bundle.features(X, name=", ".join(inputs))
    labels = bundle.estimator.predict(X_rows)
    if bundle.is_regressor:
        if proba:
            raise click.UsageError("--proba needs a classifier; this model is a regressor")
        columns = ["input", "prediction"]
        rows = [[n, float(y)] for n, y in zip(names, labels, strict=True)]
    else:
        columns = ["input", "label"]
        rows = [[n, _plain(y)] for n, y in zip(names, labels, strict=True)]
    if proba:
        classes = [str(c) for c in class_names(bundle)]
        P = bundle.proba_of_rows(X_rows)  # the rows made once: each warning said once
        columns += [f"p({c})" for c in classes]
        rows = [[*r, *(float(p) for p in ps)] for r, ps in zip(rows, P, strict=True)]
    if output is not None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        first = 1 if bundle.is_regressor else 2  # values as repr: they read back exactly
        writer.writerows([[*r[:first], *(repr(v) for v in r[first:])] for r in rows])
        try:
            write_atomically(output, buffer.getvalue().encode("utf-8"))
        except OSError as exc:  # name the target, never the temporary file beside it
            reason = exc.strerror or str(exc)
            raise OSError(exc.errno, f"cannot write the predictions to {output}: {reason}") from exc
        click.echo(f"wrote {len(rows)} predictions to {output}", err=True)
    else:
        numeric = [False] * (1 if bundle.is_regressor else 2)
        click.echo(format_table(rows, columns, numeric + [True] * (len(columns) - len(numeric))))


def _plain(value: object) -> object:
    return value.item() if hasattr(value, "item") else value
