"""``handgrad search``: random hyperparameter search with cross-validation."""

from __future__ import annotations

import sys
from typing import Any

import click

from handgrad.cli._common import csv_options, data_options, format_table, labels_option, run_options


def _hidden_choices(ctx: click.Context, param: click.Parameter, value: str) -> list:
    choices = []
    for part in value.split(","):
        try:
            sizes = tuple(int(s) for s in part.strip().lower().split("x"))
        except ValueError:
            raise click.BadParameter(
                f"{part.strip()!r} is not a layer size like 128 or 128x64", ctx, param
            ) from None
        if not sizes or min(sizes) < 1:
            raise click.BadParameter(f"layer sizes must be positive, got {part!r}", ctx, param)
        choices.append(sizes)
    return choices


def _dropout_choices(ctx: click.Context, param: click.Parameter, value: str | None) -> list:
    if value is None:
        return []
    try:
        return [float(part) for part in value.split(",")]
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a list of rates like 0,0.2", ctx, param
        ) from None


def _norm_choices(ctx: click.Context, param: click.Parameter, value: str | None) -> list:
    from handgrad._names import NORMS

    if value is None:
        return []
    choices = [part.strip().lower() for part in value.split(",")]
    for choice in choices:
        if choice not in ("none", *NORMS):
            raise click.BadParameter(
                f"{choice!r} is not one of none, {', '.join(NORMS)}", ctx, param
            )
    return [None if c == "none" else c for c in choices]


@click.command("search")
@data_options(default="digits")
@labels_option(
    "The labels (.npy, or a one-column .csv) of a --data FILE.npy, one per row; "
    "the search holds the file's training and validation rows in memory (its folds "
    "index them), as stored (no preprocessing, in the file's dtype)."
)
@csv_options
@run_options("task")
@click.option(
    "--iter",
    "n_iter",
    type=int,
    default=10,
    show_default=True,
    help="Number of random settings to try.",
)
@click.option(
    "--jobs",
    type=int,
    default=1,
    show_default=True,
    help="Parallel processes (-1: all CPUs); not used with --scheduler.",
)
@click.option(
    "--scheduler",
    default=None,
    metavar="tcp://HOST:PORT|local:N",
    help="Run the fits on a Dask cluster: an existing scheduler's address, or N local "
    "worker processes started for the run (needs the 'dask' extra).",
)
@click.option("--cv", type=int, default=3, show_default=True, help="Cross-validation folds.")
@click.option(
    "--hidden-choices",
    default="32,64,128,256",
    show_default=True,
    callback=_hidden_choices,
    help="Hidden sizes to draw from; 128x64 means two layers.",
)
@click.option(
    "--dropout-choices",
    default=None,
    callback=_dropout_choices,
    help="Dropout rates to search, e.g. 0,0.2,0.5 (one rate: every fit uses it).",
)
@click.option(
    "--norm-choices",
    default=None,
    callback=_norm_choices,
    help="Normalizations to search, e.g. none,batch,layer (one: every fit uses it).",
)
@click.option(
    "--epochs",
    type=int,
    default=30,
    show_default=True,
    help="Passes over the training rows of every fit.",
)
@run_options(
    "activation",
    "dropout",
    "norm",
    "solver",
    "batch_size",
    "dtype",
    "seed",
    "early_stopping",
    "patience",
    "validation_fraction",
    "test_fraction",
    "preprocessing",
)
@click.option("--top", type=int, default=10, show_default=True, help="Rows of the table.")
@click.option(
    "--out",
    type=click.Path(),
    default=None,
    metavar="DIR",
    help="Run folder for the best model [default: runs/<name or timestamp>].",
)
@click.option("--name", default=None, help="Name of the run folder under runs/.")
@click.option(
    "--overwrite", is_flag=True, help="Replace the run already in the --name/--out folder."
)
def command(
    n_iter: int,
    jobs: int,
    scheduler: str | None,
    cv: int,
    hidden_choices: list,
    dropout_choices: list,
    norm_choices: list,
    top: int,
    out: str | None,
    name: str | None,
    overwrite: bool,
    **settings: Any,
) -> None:
    """Search hidden size, learning rate (log-uniform 1e-4…1e-1) and alpha (log-uniform
    1e-6…1e-1) of a classifier (scored by accuracy) or a regressor (--task regression,
    or a regression dataset: scored by R²) with RandomizedSearchCV; print the ranking
    and save the best model. Every other setting is train's, with its default.

    \b
    Examples:
      handgrad search --iter 20 --jobs 2
      handgrad search --data wine --hidden-choices 16,32,32x16 --cv 5 --name wine-search
      handgrad search --dropout-choices 0,0.2 --norm-choices none,batch,layer
      handgrad search --iter 40 --scheduler tcp://10.0.0.5:8786
      handgrad search --data X.npy --labels y.npy --preprocessing none
      handgrad search --data diabetes.csv --label target --task regression
    """
    from handgrad.runs import RunConfig
    from handgrad.search import random_search

    config = RunConfig(**settings)
    result = random_search(
        config,
        hidden_choices,
        n_iter=n_iter,
        cv=cv,
        n_jobs=jobs,
        out=out,
        name=name,
        scheduler=scheduler,
        progress=sys.stderr.isatty(),
        overwrite=overwrite,
        dropout_choices=dropout_choices,
        norm_choices=norm_choices,
    )
    search = result.metrics["search"]
    score = search["score"]  # "accuracy", or a regressor's "r2"
    mean, std = f"mean_cv_{score}", f"std_cv_{score}"
    ranked = search["results"]
    layers = [k for k in ("dropout", "norm") if ranked and k in ranked[0]]  # the searched
    rows = [
        [
            r["rank"],
            "x".join(map(str, r["hidden"])),
            *(str(r[k]) for k in layers),
            r["learning_rate"],
            r["alpha"],
            r[mean] if r[mean] is not None else "failed",
            r[std] if r[std] is not None else "-",
        ]
        for r in search["results"][: max(top, 1)]
    ]
    shown = "R²" if score == "r2" else score
    click.echo(
        format_table(
            rows,
            ["rank", "hidden", *layers, "learning rate", "alpha", f"cv {shown}", "± std"],
            [True, False, *(False for _ in layers), True, True, True, True],
        )
    )
    final, cv_score = result.metrics["final"], "val_r2" if score == "r2" else "val_accuracy"
    cv_text = "failed" if final[cv_score] is None else f"{final[cv_score]:.4f}"
    click.echo(
        f"best: test {shown} {final[f'test_{score}']:.4f} (cv {cv_text}); saved to {result.run_dir}"
    )
