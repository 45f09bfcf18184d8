"""``handgrad gradcheck``: analytic gradients against centred finite differences."""

from __future__ import annotations

from typing import Any

import click

from handgrad._names import ACTIVATIONS, HEADS
from handgrad.cli._common import (
    HIDDEN,
    format_table,
    model_network,
    model_option,
    refuse_with_model,
    run_options,
)


@click.command("gradcheck")
@model_option("Check a saved model's network instead of building a small net.")
@click.option(
    "--input",
    "input_size",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="D, the number of input features.",
)
@click.option(
    "--hidden",
    type=HIDDEN,
    default="10",
    show_default=True,
    help="Hidden layer sizes, e.g. 10 or 10,7.",
)
@click.option(
    "--classes",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="C, the number of classes (outputs).",
)
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="N, the rows of the random batch.",
)
@click.option("--activation", type=click.Choice(ACTIVATIONS), default="relu", show_default=True)
@click.option("--head", type=click.Choice(HEADS), default="softmax", show_default=True)
@run_options("dropout", "norm")
@click.option(
    "--reg",
    type=click.FloatRange(min=0),
    default=None,
    help="λ, the L2 regularisation strength [default: 0.05; 0 with --model].",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--threshold",
    type=click.FloatRange(min=0, min_open=True),
    default=1e-6,
    show_default=True,
    help="Largest relative error that passes.",
)
@click.option(
    "--metric",
    type=click.Choice(["entry", "norm"]),
    default=None,
    help="What the verdict uses: the worst entry's relative error, or the "
    "relative error of the whole gradient [default: entry; norm with "
    "--model, whose trained weights give many near-zero gradient entries "
    "that only rounding separates].",
)
@click.option(
    "--samples",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Entries of each parameter checked with --model, drawn at random (seeded).",
)
@click.option(
    "--all",
    "every",
    is_flag=True,
    help="Check every entry of every parameter (the default without --model).",
)
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
    reg: float | None,
    seed: int,
    threshold: float,
    metric: str | None,
    samples: int,
    every: bool,
) -> None:
    """Compare every hand-derived gradient with finite differences; exit 1 on FAIL.

    Prints, per parameter, the largest relative error |a − n| / (|a| + |n|) of any entry
    (as handgrad.check_gradients) and the relative error of the whole gradient
    ‖a − n‖ / (‖a‖ + ‖n‖), between the analytic gradient a and the centred difference n
    (float64), on a random batch. A saved model (--model) is checked on a float64
    copy, on --samples random entries of each parameter unless --all.

    \b
    Examples:
      handgrad gradcheck
      handgrad gradcheck --hidden 16,8 --activation tanh --head sigmoid --reg 0.1
      handgrad gradcheck --dropout 0.2 --norm batch
      handgrad gradcheck --model runs/digits
    """
    import numpy as np

    from handgrad.gradcheck import gradient_errors
    from handgrad.heads import HEADS
    from handgrad.network import MLP, Context

    rng = np.random.default_rng(seed)
    if model_path is not None:
        refuse_with_model(
            ctx, ("input_size", "hidden", "classes", "activation", "head", "dropout", "norm")
        )
        net = model_network(model_path)
        X = rng.random((batch, net.layer_sizes[0]))  # like inputs scaled to [0, 1]
    else:
        net = MLP(
            input_size,
            hidden,
            classes,
            activation=activation,
            head=head,
            seed=rng,
            dtype=np.float64,
            dropout=dropout,
            norm=norm,
        )
        X = rng.standard_normal((batch, input_size))
    reg = (0.0 if model_path else 0.05) if reg is None else reg
    metric = metric or ("norm" if model_path else "entry")
    C = net.layer_sizes[-1]
    y = HEADS[net.head].task.random_targets(rng, batch, C)
    sampled = model_path is not None and not every
    # a training forward pass (batch statistics), with one dropout mask for every difference
    context = None if net.plain else (lambda: Context(True, np.random.default_rng(seed + 1)))
    errors = gradient_errors(
        net,
        X,
        y,
        reg,
        samples=samples if sampled else None,
        seed=seed,
        progress=True,
        context=context,
    )
    cancelled = _cancelled_slopes(net, X, y, reg, context)
    rows = []
    for name, (entry, norm_error) in errors.items():
        error = entry if metric == "entry" else norm_error
        if name in cancelled:  # ∂L/∂b = 0 exactly: only rounding is left to compare
            error = cancelled[name]
        rows.append(
            [
                name + (" *" if name in cancelled else ""),
                str(net.params[name].shape),
                entry,
                norm_error,
                "PASS" if error <= threshold else "FAIL",
            ]
        )
    checked = f"{samples} random entries of each parameter" if sampled else "every entry"
    if not net.plain:
        checked += ", a training forward pass (batch statistics; one fixed dropout mask)"
    click.echo(
        f"{net!r}, batch N={batch}, λ={reg:g}, verdict on the {metric} error <= {threshold:g}"
    )
    click.echo(f"checked in float64, {checked}")
    click.echo(
        format_table(
            rows,
            ["parameter", "shape", "entry error", "norm error", "verdict"],
            [False, False, True, True, False],
        )
    )
    if cancelled:
        click.echo(
            "* b_l before batch norm: μ_B cancels it, so ∂L/∂b_l = 0 and both gradients "
            "are rounding; judged by the largest slope, max(|a|, |n|) <= threshold"
        )
    failed = [r[0] for r in rows if r[-1] == "FAIL"]
    if failed:
        click.echo(f"FAIL: {', '.join(failed)} exceed {threshold:g}", err=True)
        ctx.exit(1)
    click.echo("PASS: every gradient agrees with finite differences")


def _cancelled_slopes(net: Any, X: Any, y: Any, reg: float, context: Any) -> dict[str, float]:
    """For a batch-normalized network, ``max(|a|, |n|)`` of each hidden bias ``b_l``
    (whose true gradient is 0: the batch mean takes it away) by name; else ``{}``."""
    import numpy as np

    from handgrad.gradcheck import numerical_gradient

    if net.norm != "batch":
        return {}
    net = net.copy(np.float64)
    grads = net.loss(X, y, reg, ctx=context())[1]
    slopes = {}
    for l in range(1, net.n_layers):
        numeric = numerical_gradient(
            lambda _: net.objective(X, y, reg, ctx=context()), net.params[f"b{l}"]
        )
        slopes[f"b{l}"] = float(max(np.abs(grads[f"b{l}"]).max(), np.abs(numeric).max()))
    return slopes
