"""``handgrad datasets``: the dataset names ``--data`` accepts, and where files live."""

from __future__ import annotations

import click

from handgrad.cli._common import format_table

_DESCRIPTIONS = {
    "digits": "scikit-learn's 1797 8×8 handwritten digits (bundled)",
    "iris": "scikit-learn's 150 iris flowers, 4 features (bundled)",
    "diabetes": "scikit-learn's 442 patients, 10 features, a disease score (regression, bundled)",
    "wine": "scikit-learn's 178 wines, 13 features (bundled)",
    "breast_cancer": "scikit-learn's 569 tumours, 30 features (bundled)",
    "mnist": "70000 28×28 handwritten digits (download, 11 MB)",
    "mnist-t10k": "MNIST's 10000 test images only, split in train/test",
    "fashion-mnist": "70000 28×28 clothing images (download, 30 MB)",
    "fashion-mnist-t10k": "Fashion-MNIST's 10000 test images only",
    "cifar10": "60000 32×32 colour images, 10 classes (download, 163 MB)",
}
_REMOTE = {
    "mnist": "mnist",
    "mnist-t10k": "mnist",
    "fashion-mnist": "fashion-mnist",
    "fashion-mnist-t10k": "fashion-mnist",
    "cifar10": "cifar10",
}


@click.command("datasets")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder to look in instead of the default cache.",
)
def command(data_dir: str | None) -> None:
    """List the dataset names --data accepts and where downloads are cached.

    \b
    Example:
      handgrad datasets
    """
    from handgrad.data import available_datasets, dataset_status
    from handgrad.data.remote import ENV_VAR, data_home

    home = data_home(data_dir)
    rows = []
    for name in available_datasets():
        where = "bundled with scikit-learn"
        if name in _REMOTE:
            where = f"{home / _REMOTE[name]} ({dataset_status(name, home)})"
        rows.append([name, _DESCRIPTIONS.get(name, ""), where])
    click.echo(format_table(rows, ["name", "what", "files"], [False] * 3))
    click.echo("csv:PATH or a .csv file   your table: numeric features + a label column (--label)")
    click.echo("npz:PATH or a .npz file   arrays X (N, ...) and y (N,)")
    click.echo(f"\ndownloads go to {home} (change with --data-dir or ${ENV_VAR})")
