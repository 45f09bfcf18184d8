"""``handgrad plot``: redraw a run's report.png from its metrics.json and model."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("plot")
@click.argument("run_dir", type=click.Path(file_okay=False))
def command(run_dir: str) -> None:
    """Regenerate RUN_DIR/report.png (loss, accuracy, confusion matrix, first-layer
    weights for images) from RUN_DIR/metrics.json and RUN_DIR/model.safetensors.

    \b
    Example:
      handgrad plot runs/20260101-120000
    """
    from handgrad.runs import METRICS, MODEL, read_json, write_report

    folder = Path(run_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"no such run folder: {folder}")
    metrics = read_json(folder / METRICS)
    if not isinstance(metrics, dict) or "history" not in metrics:
        raise ValueError(f"{folder / METRICS} is not a handgrad metrics file (no history)")
    model = folder / MODEL
    # Only an image run's report draws weights (its first layer's): a table's report
    # needs no model, nor scikit-learn to load it.
    images = bool((metrics.get("data") or {}).get("image_shape"))
    estimator = None
    if images and model.is_file():
        from handgrad.bundle import load_bundle

        estimator = load_bundle(model).estimator
    path = write_report(folder, metrics, estimator)
    click.echo(f"wrote {path}")
