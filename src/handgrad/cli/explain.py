"""``handgrad explain``: the forward and backward pass as a table of formulas and shapes."""

from __future__ import annotations

import click

from handgrad._names import ACTIVATIONS, HEADS
from handgrad.cli._common import (
    HIDDEN,
    model_network,
    model_option,
    refuse_with_model,
    run_options,
)

#: The sizes ``handgrad train`` trains by default: digits (64 features, 10 classes),
#: one hidden layer of 128, batches of 64 (tests/test_explain.py keeps them in step).
DEFAULTS = {"input": 64, "hidden": (128,), "classes": 10, "batch": 64}


@click.command("explain")
@model_option("Explain a saved model's network: its sizes, activation and head.")
@click.option(
    "--input",
    "input_size",
    type=click.IntRange(min=1),
    default=DEFAULTS["input"],
    show_default=True,
    metavar="D",
    help="Number of input features.",
)
@click.option(
    "--hidden",
    type=HIDDEN,
    default=",".join(map(str, DEFAULTS["hidden"])),
    show_default=True,
    help="Hidden sizes: H or H1,H2,…",
)
@click.option(
    "--classes",
    type=click.IntRange(min=1),
    default=DEFAULTS["classes"],
    show_default=True,
    metavar="C",
    help="Number of classes.",
)
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=DEFAULTS["batch"],
    show_default=True,
    metavar="N",
    help="Rows in the batch.",
)
@click.option("--activation", type=click.Choice(ACTIVATIONS), default="relu", show_default=True)
@click.option("--head", type=click.Choice(HEADS), default="softmax", show_default=True)
@run_options("dropout", "norm")
@click.pass_context
def command(
    ctx: click.Context,
    model_path: str | None,
    input_size: int,
    hidden: tuple[int, ...],
    classes: int,
    batch: int,
    activation: str,
    head: str,
    dropout: float,
    norm: str | None,
) -> None:
    """Print every quantity of the forward and backward pass with its formula in the
    notes' notation and its shape for these sizes (by default, the network
    `handgrad train` trains: 64 → 128 → 10, batches of 64).

    \b
    Examples:
      handgrad explain
      handgrad explain --input 64 --hidden 100 --classes 10 --batch 32
      handgrad explain --input 784 --hidden 256,128 --classes 10 --batch 200 --activation tanh
      handgrad explain --dropout 0.2 --norm batch
      handgrad explain --model runs/digits
    """
    from handgrad.explain import explain, format_table, parameter_count
    from handgrad.heads import HEADS

    if model_path is not None:
        refuse_with_model(
            ctx, ("input_size", "hidden", "classes", "activation", "head", "dropout", "norm")
        )
        net = model_network(model_path)
        input_size, *hidden_list, classes = net.layer_sizes
        hidden, activation, head = tuple(hidden_list), net.activation, net.head
        dropout, norm = net.dropout, net.norm

    rows = explain(
        input_size,
        hidden,
        classes,
        batch,
        activation=activation,
        head=head,
        dropout=dropout,
        norm=norm,
    )
    sizes = (input_size, *hidden, classes)
    extra = (f", {norm} norm" if norm else "") + (f", dropout {dropout:g}" if dropout else "")
    click.echo(
        f"network {'→'.join(map(str, sizes))}, {activation} hidden activation{extra}, "
        f"{head} head, batch N={batch}"
    )
    click.echo(format_table(rows))
    target = HEADS[head].task.targets_text
    click.echo(
        f"{parameter_count(sizes, norm):,} parameters; Y is the (N, {classes}) {target} "
        "target matrix, λ the L2 strength"
    )
