"""``handgrad train``: train a classifier or regressor into a run folder, or resume one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from handgrad.cli._common import HIDDEN, csv_options, data_options, labels_option, run_options
from handgrad.errors import TrainingDivergedError
from handgrad.runs.config import MIN_EPOCHS, STEP_BUDGET, RunConfig

_D = RunConfig.defaults()  # shown in --help
# Options that --resume takes from the run folder instead of the command line.
_CONFIG_OPTIONS = (
    "data",
    "data_dir",
    "label",
    "labels",
    "hidden",
    "activation",
    "dropout",
    "norm",
    "solver",
    "learning_rate",
    "alpha",
    "batch_size",
    "dtype",
    "seed",
    "early_stopping",
    "patience",
    "validation_fraction",
    "test_fraction",
    "preprocessing",
    "checkpoint_every",
    "header",
    "missing_label",
    "task",
    "out",
    "name",
    "overwrite",
)


@click.command("train")
@data_options(default=_D["data"])
@labels_option(
    "The labels (.npy, or a one-column .csv) of a --data FILE.npy of samples, "
    "one per row. X is then trained from its file without being read into memory, "
    "as stored (no preprocessing, in the file's dtype)."
)
@csv_options
@run_options("task")
@click.option(
    "--hidden",
    type=HIDDEN,
    default=",".join(map(str, _D["hidden"])),
    show_default=True,
    help="Hidden layer sizes: 256 for one layer, 256,128 (or 256x128) for two.",
)
@run_options("activation", "dropout", "norm", "solver")
@click.option(
    "--learning-rate",
    "--lr",
    "learning_rate",
    type=float,
    default=_D["learning_rate"],
    show_default=True,
    help="Initial learning rate η.",
)
@click.option(
    "--alpha",
    "--reg",
    "alpha",
    type=float,
    default=_D["alpha"],
    show_default=True,
    help="L2 regularisation strength (scikit-learn's alpha, the notes' λ).",
)
@click.option(
    "--epochs",
    type=int,
    default=None,
    help="Number of passes over the training set [default: enough for "
    f"{STEP_BUDGET} minibatch steps, at least {MIN_EPOCHS}]. With --resume: a larger "
    "number extends the run.",
)
@run_options(
    "batch_size",
    "dtype",
    "seed",
    "early_stopping",
    "patience",
    "validation_fraction",
    "test_fraction",
    "preprocessing",
)
@click.option(
    "--checkpoint-every",
    type=int,
    default=None,
    metavar="K",
    help="Write a resumable checkpoint every K epochs.",
)
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(),
    default=None,
    metavar="RUN_DIR",
    help="Continue the run in RUN_DIR, finished or interrupted: from its last "
    "checkpoint, or from its model file (a warm start) when it has none.",
)
@click.option(
    "--out",
    type=click.Path(),
    default=None,
    metavar="DIR",
    help="Run folder to write [default: runs/<name or timestamp>].",
)
@click.option("--name", default=None, help="Name of the run folder under runs/.")
@click.option(
    "--overwrite", is_flag=True, help="Replace the run already in the --name/--out folder."
)
@click.option(
    "--force",
    is_flag=True,
    help="With --resume: continue even though the data changed since the checkpoint.",
)
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    metavar="DEVICE",
    help="Where to train: cpu (NumPy) or a PyTorch device such as cuda or cuda:1 (the "
    "data are moved there once; needs PyTorch and 'handgrad[array-api]'); torch:cpu "
    "runs the same path on the CPU.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar; print only the result.")
@click.pass_context
def command(
    ctx: click.Context,
    resume_dir: str | None,
    force: bool,
    quiet: bool,
    device: str,
    **options: Any,
) -> None:
    """Train a classifier (or regressor) and write a run folder with the model,
    metrics.json and report.png.

    With no options: the notes' two-layer network (one hidden ReLU layer, softmax head)
    on scikit-learn's 8×8 handwritten digits, split into train/validation/test
    (stratified, fixed seed). A regression task (--data diabetes, or a CSV file with a
    numeric --label and --task regression) trains an MLPRegressor on standardized
    targets; its model predicts in the targets' own units.

    \b
    Examples:
      handgrad train
      handgrad train --hidden 256,128 --epochs 20 --name deeper
      handgrad train --dropout 0.2 --norm batch
      handgrad train --data mnist --hidden 256 --batch-size 200 --epochs 10
      handgrad train --data table.csv --label species --preprocessing standardize
      handgrad train --data diabetes
      handgrad train --data houses.csv --label price --task regression
      handgrad train --data X.npy --labels y.npy --hidden 256 --batch-size 200
      handgrad train --data mnist --device cuda   # PyTorch on a GPU
      handgrad train --checkpoint-every 5 --out runs/long   # then, after a crash:
      handgrad train --resume runs/long
      handgrad train --resume runs/long --epochs 40   # train a finished run longer
      handgrad train --resume runs/deeper --epochs 60  # no checkpoints: from its model
    """
    import handgrad.runs as runs

    log = (lambda _msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    try:
        if resume_dir is not None:
            given = [
                f"--{n.replace('_', '-')}"
                for n in _CONFIG_OPTIONS
                if ctx.get_parameter_source(n) is ParameterSource.COMMANDLINE
            ]
            if given:
                raise click.UsageError(
                    f"--resume takes its settings from the run in {resume_dir}; "
                    f"drop {', '.join(given)}",
                    ctx,
                )
            result = runs.resume(
                resume_dir,
                epochs=options["epochs"],
                force=force,
                progress=not quiet,
                log=log,
                device=device,
            )
        else:
            if force:
                raise click.UsageError("--force goes with --resume", ctx)
            out, name = options.pop("out"), options.pop("name")
            overwrite = options.pop("overwrite")
            config = RunConfig(**options)
            result = runs.train(
                config,
                out=out,
                name=name,
                overwrite=overwrite,
                progress=not quiet,
                log=log,
                device=device,
            )
    except KeyboardInterrupt as exc:
        click.echo(f"handgrad: {str(exc) or 'interrupted'}", err=True)
        ctx.exit(130)
    except TrainingDivergedError as exc:
        raise TrainingDivergedError(
            f"training diverged: {exc} Nothing was saved over an existing model."
        ) from exc
    _print_result(result)
    if result.metrics["final"]["stop_reason"] == "interrupted":
        ctx.exit(130)  # saved what was trained; still tell scripts it was cut short


def _print_result(result: Any) -> None:
    final = result.metrics["final"]
    folder = Path(result.run_dir)
    if result.metrics.get("task") == "regression":
        click.echo(
            f"train R² {final['train_r2']:.4f}  validation R² {final['val_r2']:.4f}  "
            f"test R² {final['test_r2']:.4f}  (test MAE {final['test_mae']:.4g}, "
            f"RMSE {final['test_rmse']:.4g})"
        )
    else:
        click.echo(
            f"train accuracy {final['train_accuracy']:.4f}  "
            f"validation accuracy {final['val_accuracy']:.4f}  "
            f"test accuracy {final['test_accuracy']:.4f}"
        )
    stopped = final["stop_reason"]
    note = f" (stopped: {stopped})" if stopped not in ("", "max_epochs") else ""
    where = result.metrics.get("device", "cpu")
    on = "" if where == "cpu" else f" on {where.removeprefix('torch:')} (PyTorch)"
    ran = final["epochs"] - result.start_epoch  # this invocation's, when resumed
    to = f" (to {final['epochs']})" if result.start_epoch else ""
    click.echo(f"{ran} epochs{to} in {_seconds(final['seconds'])}{on}{note}")
    click.echo(f"run folder: {folder}  (model.safetensors, metrics.json, report.png)")


def _seconds(t: float) -> str:
    """A duration to two significant digits below 10 s (``0.043 s``, ``2.5 s``), whole
    seconds above: a fast run does not read as taking no time."""
    return f"{t:.2g} s" if t < 10 else f"{t:.0f} s"
