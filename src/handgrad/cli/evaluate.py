"""``handgrad evaluate``: accuracy, per-class precision/recall/F1 and the confusion matrix;
a regressor's R², MAE and RMSE."""

from __future__ import annotations

import json
from typing import Any

import click

from handgrad.cli._common import (
    csv_options,
    data_options,
    format_table,
    labels_option,
    model_file,
    model_path_argument,
)


@click.command("evaluate")
@model_path_argument()
@data_options(default=None)
@labels_option("The labels of a --data FILE.npy [default: those the model was trained with].")
@csv_options
@click.option(
    "--split",
    type=click.Choice(["test", "train", "all"]),
    default="test",
    show_default=True,
    help="Which part of the data: the held-out test part (split with the seed "
    "the model was trained with), the training part, or everything.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def command(
    model: str,
    data: str | None,
    data_dir: str | None,
    label: str | None,
    labels: str | None,
    header: bool | None,
    missing_label: str,
    split: str,
    as_json: bool,
) -> None:
    """Score MODEL (a model.safetensors file, or the run folder holding one) on a
    dataset: a classifier's accuracy, per-class precision/recall/F1 and confusion
    matrix, a regressor's R², MAE and RMSE.

    \b
    Examples:
      handgrad evaluate runs/digits
      handgrad evaluate model.safetensors --data new.csv --label target --split all --json
    """
    from handgrad.bundle import align_columns, load_bundle, model_label
    from handgrad.runs import read_data
    from handgrad.runs.data import table_columns

    bundle = load_bundle(model_file(model))
    info = bundle.info
    name = data or info.get("data")
    if name is None:
        raise click.UsageError(
            "this model file does not say what data it was trained on; give --data"
        )
    if data is None:  # the training data, read as they were for training
        data_dir = data_dir or info.get("data_dir")
        label = label if label is not None else info.get("label")
        header = header if header is not None else info.get("header")
        labels = labels if labels is not None else info.get("labels")
    elif label is None:  # the model's own label column, where the file has it
        label = model_label(bundle, data)
    # The data read and split as a run reads them (X from a .npy's file, a part's rows
    # a chunk at a time).
    run = read_data(
        name,
        labels=labels,
        data_dir=data_dir,
        label=label,
        header=header,
        missing_label=missing_label,
        task="regression" if bundle.is_regressor else None,
        seed=int(info.get("split_seed", 0)),
        test_fraction=float(info.get("test_fraction", 0.25)),
        columns=table_columns(bundle.model),
    )
    rows = run.rows.get(split)  # None: "all"
    y = run.y if rows is None else run.y[rows]
    keep = run.mapped or bundle.columns is not None  # a DataFrame is read by name
    X = run.X if keep else align_columns(bundle, run.X, run.feature_names, name)
    _report(bundle, model, name, split, X, y, as_json, rows)


def _report(
    bundle: Any, model: str, name: str, split: str, X: Any, y: Any, as_json: bool, rows: Any = None
) -> None:
    from handgrad.bundle import evaluate
    from handgrad.data.columns import ColumnPlan

    report = evaluate(bundle, X, y, name=name, rows=rows)
    report = {"model": model, "data": name, "split": split, **report}
    plan = bundle.info.get("columns")
    if isinstance(plan, dict):  # a table read by column kind: how its columns were read
        report["columns"] = plan
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    if isinstance(plan, dict):
        try:
            click.echo(f"columns: {ColumnPlan.from_dict(plan).summary()}")
        except (KeyError, TypeError, ValueError, AttributeError):
            pass  # a summary the file holds unreadably: the scores still stand
    if bundle.is_regressor:
        click.echo(
            f"{report['data']} ({report['split']} split, {report['n_samples']} samples): "
            f"R² {report['r2']:.4f}  MAE {report['mae']:.4g}  RMSE {report['rmse']:.4g}"
        )
    else:
        click.echo(_tables(report))


def _tables(report: dict[str, Any]) -> str:
    rows: list[list[Any]] = [
        [c["name"], c["precision"], c["recall"], c["f1"], c["support"]] for c in report["per_class"]
    ]
    for key in ("macro_avg", "weighted_avg"):
        a = report[key]
        rows.append(
            [key.replace("_", " "), a["precision"], a["recall"], a["f1"], report["n_samples"]]
        )
    names = report["class_names"]
    cm_rows = [
        [f"true {n}", *row] for n, row in zip(names, report["confusion_matrix"], strict=True)
    ]
    return "\n".join(
        [
            f"{report['data']} ({report['split']} split, {report['n_samples']} samples): "
            f"accuracy {report['accuracy']:.4f}",
            "",
            format_table(
                rows,
                ["class", "precision", "recall", "f1", "support"],
                [False, True, True, True, True],
            ),
            "",
            f"confusion matrix, {report['split']} split "
            "(rows: true class, columns: predicted class)",
            format_table(cm_rows, ["", *names], [False] + [True] * len(names)),
        ]
    )
