"""Option types shared by the commands, and the table printer (:mod:`handgrad._table`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from handgrad._table import format_table

if TYPE_CHECKING:  # pathlib is imported when a path is read: --help does without
    from pathlib import Path

__all__ = [
    "HIDDEN",
    "HiddenSizes",
    "csv_options",
    "data_options",
    "format_table",
    "model_file",
    "model_network",
    "model_option",
    "model_path_argument",
    "refuse_with_model",
]


class HiddenSizes(click.ParamType):
    """``256``, or ``256,128`` and ``256x128`` (as ``search --hidden-choices`` writes
    it): one positive integer per hidden layer."""

    name = "H[,H2,...]"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        text = str(value).strip().lower()
        parts = [p.strip() for p in text.replace("x", ",").split(",")]
        sizes = []
        for part in parts:
            try:
                size = int(part)
            except ValueError:
                self.fail(
                    f"{value!r} is not a comma-separated list of layer sizes "
                    "(e.g. 256, 256,128 or 256x128)",
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


def model_file(path: str | Path) -> Path:
    """The model file a MODEL argument names: the file itself, or a run folder's
    ``model.safetensors``. A folder without one says what it holds instead."""
    from pathlib import Path

    from handgrad.runs.folder import CHECKPOINT, MODEL

    path = Path(path)
    if not path.is_dir():
        return path
    if (path / MODEL).is_file():
        return path / MODEL
    hint = (
        f" (it holds {CHECKPOINT}: finish the run with 'handgrad train --resume {path}')"
        if (path / CHECKPOINT).is_file()
        else ""
    )
    raise FileNotFoundError(f"run folder {path} has no {MODEL}{hint}")


def model_path_argument(name: str = "model") -> Any:
    """The MODEL argument: a model file or a run folder (see :func:`model_file`)."""
    return click.argument(name, type=click.Path(), metavar="MODEL|RUN_DIR")


def model_option(help: str) -> Any:
    """``--model FILE|RUN_DIR`` (as ``model_path``): a saved model whose architecture
    replaces the options that describe one (see :func:`refuse_with_model`)."""
    return click.option(
        "--model",
        "model_path",
        type=click.Path(),
        default=None,
        metavar="FILE|RUN_DIR",
        help=help[:-1] + " (a model file, or a run folder).",
    )


def model_network(path: str | Path) -> Any:
    """The MLP inside a model file or run folder (an MLP, or an estimator holding one)."""
    from handgrad.bundle import load_bundle
    from handgrad.network import MLP

    model = load_bundle(model_file(path)).estimator
    model = getattr(model, "regressor_", model)  # a regressor trained on scaled targets
    if isinstance(model, MLP):
        return model
    network = getattr(model, "network_", None)
    if isinstance(network, MLP):
        return network
    raise ValueError(f"{path} holds a {type(model).__name__}, which has no network")


def refuse_with_model(ctx: click.Context, names: tuple[str, ...]) -> None:
    """--model brings its own architecture: the options ``names`` that describe one
    contradict it."""
    from click.core import ParameterSource

    given = [
        f"--{name.replace('_size', '')}"
        for name in names
        if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT
    ]
    if given:
        raise click.UsageError(
            f"{', '.join(given)} cannot be used with --model: the model file fixes its "
            "architecture",
            ctx,
        )


def _run_option(name: str) -> Any:
    """The option ``train`` and ``search`` share for the RunConfig field ``name``,
    its default the configuration's own."""
    from handgrad._names import ACTIVATIONS, NORMS, PREPROCESSING, SOLVERS, TASKS
    from handgrad.runs.config import RunConfig

    defaults = RunConfig.defaults()
    options: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
        "task": (
            ("--task",),
            {
                "type": click.Choice(TASKS),
                "default": None,
                "help": "Predict a class or a number [default: the dataset's own: regression "
                "for diabetes, classification for the others and for a CSV file].",
            },
        ),
        "activation": (
            ("--activation",),
            {"type": click.Choice(ACTIVATIONS), "help": "Hidden-layer activation."},
        ),
        "dropout": (
            ("--dropout",),
            {
                "type": click.FloatRange(min=0, max=1, max_open=True),
                "help": "Dropout's drop probability after each hidden activation (0: none).",
            },
        ),
        "norm": (
            ("--norm",),
            {
                "type": click.Choice(NORMS),
                "default": None,
                "help": "Batch or layer normalization of each hidden layer's Z, before its "
                "activation.",
            },
        ),
        "solver": (
            ("--solver",),
            {
                "type": click.Choice(SOLVERS),
                "help": "Optimizer (sgd uses Nesterov momentum 0.9).",
            },
        ),
        "batch_size": (("--batch-size",), {"type": int, "help": "Minibatch size."}),
        "dtype": (
            ("--dtype",),
            {
                "type": click.Choice(["float32", "float64"]),
                "help": "Floating-point precision of weights and data.",
            },
        ),
        "seed": (
            ("--seed",),
            {"type": int, "help": "Seed of the data split, the initial weights and the shuffling."},
        ),
        "early_stopping": (
            ("--early-stopping/--no-early-stopping",),
            {
                "default": None,
                "help": "Stop when the validation accuracy (R² for regression) stops "
                "improving; keep the best weights [default: on for regression, off for "
                "classification].",
            },
        ),
        "patience": (
            ("--patience",),
            {"type": int, "help": "Epochs without improvement before early stopping."},
        ),
        "validation_fraction": (
            ("--validation-fraction",),
            {"type": float, "help": "Share of the training data held out for validation."},
        ),
        "test_fraction": (
            ("--test-fraction",),
            {
                "type": float,
                "help": "Share held out for testing (datasets without an official test set).",
            },
        ),
        "preprocessing": (
            ("--preprocessing",),
            {
                "type": click.Choice(PREPROCESSING),
                "default": None,
                "help": "Input preprocessing, fitted on the training split [default: "
                "standardize for tables, scale for images].",
            },
        ),
    }
    flags, kwargs = options[name]
    if "default" not in kwargs:
        kwargs = {**kwargs, "default": defaults[name], "show_default": True}
    return click.option(*flags, name, **kwargs)


def run_options(*names: str) -> Any:
    """The options ``train`` and ``search`` share (RunConfig fields), as one decorator,
    in the order given (``explain`` and ``gradcheck`` describe a network by the same
    ``--dropout`` and ``--norm``)."""

    def decorate(f: Any) -> Any:
        for name in reversed(names):
            f = _run_option(name)(f)
        return f

    return decorate
