"""Pictures of a training run: loss, accuracy (R² for a regressor), first-layer weights,
confusion matrix; a regressor's predicted against true values and its residuals.

Every function takes plain data (lists, arrays), draws on a given ``ax`` or on a fresh
:class:`matplotlib.figure.Figure` with an Agg canvas, and returns the figure. Pyplot is
never imported, so no global figure state and no display backend is touched. Files are
written atomically (see :func:`handgrad._atomic.write_atomically`).
"""

from __future__ import annotations

import io as _bytes_io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from handgrad._atomic import write_atomically

PathLike = str | os.PathLike[str]
_MAX_ANNOTATED_CLASSES = 20  # beyond this, per-cell counts become unreadable


def _figure_and_axes(
    ax: Axes | None, size: tuple[float, float] = (5.0, 4.0)
) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    figure = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def figure_bytes(figure: Figure, file_format: str = "png", *, dpi: float = 100) -> bytes:
    """``figure`` rendered in memory, as the bytes of a ``file_format`` file."""
    buffer = _bytes_io.BytesIO()
    figure.savefig(buffer, format=file_format, dpi=dpi)
    return buffer.getvalue()


def save_figure(figure: Figure, path: PathLike, *, dpi: float = 100) -> Path:
    """Render ``figure`` (format from the suffix, PNG by default) and write it atomically."""
    path = Path(path)
    file_format = path.suffix.lstrip(".").lower() or "png"
    return write_atomically(path, figure_bytes(figure, file_format, dpi=dpi))


def _finish(figure: Figure, path: PathLike | None, dpi: float) -> Figure:
    if path is not None:
        save_figure(figure, path, dpi=dpi)
    return figure


def _note(ax: Axes, text: str) -> None:
    """Say in the panel why it is empty, instead of drawing nothing."""
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _finite(values: Sequence[float] | np.ndarray | None) -> np.ndarray:
    """As float64, with inf (a diverged loss) shown as a gap like NaN."""
    array = np.asarray([] if values is None else values, dtype=np.float64).ravel()
    return np.where(np.isfinite(array), array, np.nan)


# ------------------------------------------------------------------------------ curves


def plot_loss(
    loss_curve: Sequence[float] | np.ndarray | None,
    *,
    per: Literal["iteration", "epoch"] = "iteration",
    ax: Axes | None = None,
    path: PathLike | None = None,
    dpi: float = 100,
) -> Figure:
    """Training loss against iteration (mini-batch) or epoch number.

    Parameters
    ----------
    loss_curve : sequence of float, shape (T,), or None
        One loss per iteration or per epoch; non-finite values are left as gaps.
    per : {"iteration", "epoch"}
        What one entry of ``loss_curve`` stands for; labels the x axis.
    ax, path, dpi
        Axes to draw on (default: a new figure); file to save to; its resolution.
    """
    if per not in ("iteration", "epoch"):
        raise ValueError(f"per must be 'iteration' or 'epoch', got {per!r}")
    figure, ax = _figure_and_axes(ax)
    loss = _finite(loss_curve)
    ax.set_title(f"Training loss per {per}")
    if loss.size == 0:
        _note(ax, "no loss recorded")
        return _finish(figure, path, dpi)
    steps = np.arange(1, loss.size + 1)
    if per == "iteration" and loss.size >= 50:
        # Mini-batch losses are noisy: show them faintly under a running mean.
        window = max(loss.size // 50, 5)
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        ax.plot(steps, loss, lw=0.5, alpha=0.35, color="C0", label="per batch")
        ax.plot(steps[window - 1 :], smooth, color="C0", label=f"mean of {window}")
        ax.legend()
    else:
        ax.plot(steps, loss, marker="o" if loss.size <= 50 else None, color="C0")
    ax.set_xlabel(per)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    return _finish(figure, path, dpi)


def plot_accuracy(
    train_acc: Sequence[float] | np.ndarray | None,
    val_acc: Sequence[float] | np.ndarray | None = None,
    *,
    score: str = "accuracy",
    ax: Axes | None = None,
    path: PathLike | None = None,
    dpi: float = 100,
) -> Figure:
    """Training and (if given) validation accuracy (or another ``score``, e.g. "R²")
    per epoch.

    Parameters
    ----------
    train_acc : sequence of float, shape (E,), or None
        Accuracy on the training set after each epoch.
    val_acc : sequence of float, shape (E,), or None
        Accuracy on the validation set after each epoch; ``None`` or empty to omit.
    ax, path, dpi
        Axes to draw on (default: a new figure); file to save to; its resolution.
    """
    figure, ax = _figure_and_axes(ax)
    ax.set_title(f"{score[0].upper()}{score[1:]} per epoch")
    curves = {"train": _finite(train_acc), "validation": _finite(val_acc)}
    curves = {label: acc for label, acc in curves.items() if acc.size}
    if not curves:
        _note(ax, f"no per-epoch {score} recorded\n(e.g. the lbfgs solver has no epochs)")
        return _finish(figure, path, dpi)
    for label, acc in curves.items():
        epochs = np.arange(1, acc.size + 1)
        ax.plot(epochs, acc, marker="o" if acc.size <= 50 else None, label=label)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(score)
    ax.grid(alpha=0.3)
    ax.legend()
    return _finish(figure, path, dpi)


# -------------------------------------------------------------------------- regression


def _targets(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"{t.size} true values but {p.size} predictions")
    keep = np.isfinite(t) & np.isfinite(p)
    return t[keep], p[keep]


def plot_predictions(
    y_true: Sequence[float] | np.ndarray,
    y_pred: Sequence[float] | np.ndarray,
    *,
    title: str = "Predicted against true (test)",
    ax: Axes | None = None,
    path: PathLike | None = None,
    dpi: float = 100,
) -> Figure:
    """A regressor's predictions against the true values, one point per sample, with
    the line where they are equal."""
    figure, ax = _figure_and_axes(ax)
    ax.set_title(title)
    t, p = _targets(y_true, y_pred)
    if t.size == 0:
        _note(ax, "no predictions recorded")
        return _finish(figure, path, dpi)
    ax.scatter(t, p, s=12, alpha=0.6, color="C0")
    low, high = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
    ax.plot([low, high], [low, high], color="C3", lw=1, label="predicted = true")
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    ax.grid(alpha=0.3)
    ax.legend()
    return _finish(figure, path, dpi)


def plot_residuals(
    y_true: Sequence[float] | np.ndarray,
    y_pred: Sequence[float] | np.ndarray,
    *,
    title: str = "Residuals (test)",
    ax: Axes | None = None,
    path: PathLike | None = None,
    dpi: float = 100,
) -> Figure:
    """Residuals (true − predicted) against the predictions: a good fit leaves a
    shapeless band around zero."""
    figure, ax = _figure_and_axes(ax)
    ax.set_title(title)
    t, p = _targets(y_true, y_pred)
    if t.size == 0:
        _note(ax, "no predictions recorded")
        return _finish(figure, path, dpi)
    ax.scatter(p, t - p, s=12, alpha=0.6, color="C0")
    ax.axhline(0, color="C3", lw=1)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true − predicted")
    ax.grid(alpha=0.3)
    return _finish(figure, path, dpi)


# ----------------------------------------------------------------------------- weights


def _image_shape(image_shape: Sequence[int], channels: int) -> tuple[int, int, int]:
    shape = tuple(int(n) for n in image_shape)
    if len(shape) == 3:
        if channels not in (1, shape[2]):
            raise ValueError(
                f"image_shape {shape} has {shape[2]} channels, but channels={channels}"
            )
        channels = shape[2]
        shape = shape[:2]
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(
            f"image_shape must be (height, width) or (height, width, channels), got {image_shape}"
        )
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    return shape[0], shape[1], channels


def tile_weights(
    W1: np.ndarray, image_shape: Sequence[int], *, channels: int = 1, padding: int = 1
) -> np.ndarray:
    """Arrange each column of ``W1`` as an image tile in a near-square grid (CS231n style).

    Parameters
    ----------
    W1 : ndarray, shape (D, H)
        First-layer weights; column ``h`` is hidden unit ``h``'s template over the
        ``D = height * width * channels`` inputs, pixels in row-major, channels-last order.
    image_shape : (height, width) or (height, width, channels)
    channels : {1, 3}
    padding : int
        Pixels of black between tiles.

    Returns
    -------
    ndarray of uint8, shape (rows * (height + padding) - padding, cols * (width + padding)
    - padding) for grey, with a trailing axis of 3 for RGB. ``cols = ceil(sqrt(H))``;
    each tile is scaled on its own to the full range [0, 255].
    """
    height, width, channels = _image_shape(image_shape, channels)
    W1 = np.asarray(W1, dtype=np.float64)
    if W1.ndim != 2 or W1.shape[0] != height * width * channels:
        raise ValueError(
            f"W1 has shape {W1.shape}, but image_shape {tuple(image_shape)} with {channels} "
            f"channel(s) needs ({height * width * channels}, H)"
        )
    n_tiles = W1.shape[1]
    cols = math.ceil(math.sqrt(n_tiles))
    rows = math.ceil(n_tiles / cols) if n_tiles else 0
    tiles = W1.T.reshape(n_tiles, height, width, channels)
    low = tiles.min(axis=(1, 2, 3), keepdims=True)
    span = tiles.max(axis=(1, 2, 3), keepdims=True) - low
    scaled = 255.0 * (tiles - low) / np.where(span > 0, span, 1.0)
    grid = np.zeros(
        (
            max(rows * (height + padding) - padding, 0),
            max(cols * (width + padding) - padding, 0),
            channels,
        ),
        dtype=np.uint8,
    )
    for index in range(n_tiles):
        top, left = divmod(index, cols)
        top, left = top * (height + padding), left * (width + padding)
        grid[top : top + height, left : left + width] = np.rint(scaled[index])
    return grid[..., 0] if channels == 1 else grid


def plot_weights_grid(
    W1: np.ndarray,
    image_shape: Sequence[int],
    *,
    channels: int = 1,
    ax: Axes | None = None,
    path: PathLike | None = None,
    dpi: float = 100,
) -> Figure:
    """First-layer weights as a grid of image tiles, one per hidden unit.

    Parameters
    ----------
    W1 : ndarray, shape (D, H)
    image_shape, channels
        See :func:`tile_weights`.
    ax, path, dpi
        Axes to draw on (default: a new figure); file to save to; its resolution.
    """
    figure, ax = _figure_and_axes(ax, size=(5.0, 5.0))
    grid = tile_weights(W1, image_shape, channels=channels)
    ax.set_title(f"First-layer weights ({np.shape(W1)[1]} hidden units)")
    if grid.size == 0:
        _note(ax, "no hidden units")
    else:
        ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, interpolation="nearest")
        ax.axis("off")
    return _finish(figure, path, dpi)


# --------------------------------------------------------------------- confusion matrix


def plot_confusion_matrix(
    cm: np.ndarray,
    class_names: Sequence[Any] | None = None,
    *,
    split: str | None = None,
    ax: Axes | None = None,
    path: PathLike | None = None,
    dpi: float = 100,
) -> Figure:
    """Confusion matrix with true classes as rows, predictions as columns, counts annotated.

    Parameters
    ----------
    cm : ndarray, shape (K, K)
        ``cm[i, j]`` counts samples of class ``i`` predicted as class ``j``
        (as :func:`sklearn.metrics.confusion_matrix` returns).
    class_names : sequence of K labels, optional
        Defaults to ``0 … K-1``.
    split : str, optional
        Which part of the data it counts (e.g. ``"test"``), said in the title with its
        number of samples: a reader must not take a training matrix for a test one.
    ax, path, dpi
        Axes to draw on (default: a new figure); file to save to; its resolution.
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"cm must be a square (K, K) matrix, got shape {cm.shape}")
    n_classes = cm.shape[0]
    names = [str(n) for n in (range(n_classes) if class_names is None else class_names)]
    if len(names) != n_classes:
        raise ValueError(f"cm has {n_classes} classes, but class_names has {len(names)}")
    side = min(4.0 + 0.35 * n_classes, 12.0)
    figure, ax = _figure_and_axes(ax, size=(side, side))
    image = ax.imshow(cm, cmap="Blues", interpolation="nearest")
    where = "" if split is None else f" ({split} split, {cm.sum():g} samples)"
    ax.set_title(f"Confusion matrix{where}")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ticks = np.arange(n_classes)
    ax.set_xticks(
        ticks, names, rotation=45 if n_classes > 5 else 0, ha="right" if n_classes > 5 else "center"
    )
    ax.set_yticks(ticks, names)
    if n_classes <= _MAX_ANNOTATED_CLASSES:
        threshold = (float(cm.max()) + float(cm.min())) / 2
        integral = np.issubdtype(cm.dtype, np.integer)
        for (i, j), value in np.ndenumerate(cm):
            colour = image.cmap(0.0) if value > threshold else image.cmap(1.0)
            text = f"{value:d}" if integral else f"{value:.2g}"
            ax.text(j, i, text, ha="center", va="center", color=colour, fontsize="small")
    return _finish(figure, path, dpi)


# ------------------------------------------------------------------------------ report


def make_report(
    history: Mapping[str, Any],
    *,
    path: PathLike,
    dpi: float = 100,
    **panels: Any,
) -> Path:
    """Draw :func:`report_figure` (``panels`` are its keyword arguments) and write it to
    ``path`` (a PNG; an existing folder means ``folder/report.png``). Returns the path
    written."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.png"
    return save_figure(report_figure(history, **panels), path, dpi=dpi)


def report_figure(
    history: Mapping[str, Any],
    *,
    W1: np.ndarray | None = None,
    image_shape: Sequence[int] | None = None,
    channels: int = 1,
    cm: np.ndarray | None = None,
    class_names: Sequence[Any] | None = None,
    cm_split: str | None = None,
    y_true: Sequence[float] | np.ndarray | None = None,
    y_pred: Sequence[float] | np.ndarray | None = None,
) -> Figure:
    """One picture of a training run: loss, accuracy, and optionally the confusion matrix
    and the first-layer weights; 2 to 4 panels, three in one row (a table's report has
    no weights panel, and no empty fourth cell). A regressor's (``y_true`` and ``y_pred``
    given): loss, R² per epoch, predicted against true and the residuals.

    Parameters
    ----------
    history : dict
        ``"loss"`` (per epoch), and optionally ``"loss_iterations"`` (per mini-batch,
        preferred when present), ``"train_score"`` and ``"val_score"`` (per epoch).
        Absent or empty entries give a panel that says so.
    W1, image_shape, channels
        Draw the weights panel (both ``W1`` and ``image_shape`` needed); see
        :func:`tile_weights`.
    cm, class_names, cm_split
        Draw the confusion-matrix panel; see :func:`plot_confusion_matrix` (its
        ``split``).
    y_true, y_pred
        A regressor's test targets and predictions: draw :func:`plot_predictions` and
        :func:`plot_residuals`, and call the per-epoch score R².
    """
    regression = y_true is not None and y_pred is not None
    panels = 2 + (cm is not None) + (W1 is not None and image_shape is not None) + 2 * regression
    n_rows, n_cols = (1, panels) if panels <= 3 else (math.ceil(panels / 2), 2)
    figure = Figure(figsize=(5.5 * n_cols, 4.5 * n_rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = list(figure.subplots(n_rows, n_cols).ravel())

    iterations = history.get("loss_iterations")
    if iterations is not None and len(iterations):
        plot_loss(iterations, per="iteration", ax=axes.pop(0))
    else:
        plot_loss(history.get("loss"), per="epoch", ax=axes.pop(0))
    score = "R²" if regression else "accuracy"
    plot_accuracy(history.get("train_score"), history.get("val_score"), score=score, ax=axes.pop(0))
    if regression:
        plot_predictions(y_true, y_pred, ax=axes.pop(0))  # type: ignore[arg-type]
        plot_residuals(y_true, y_pred, ax=axes.pop(0))  # type: ignore[arg-type]
    if cm is not None:
        plot_confusion_matrix(cm, class_names, split=cm_split, ax=axes.pop(0))
    if W1 is not None and image_shape is not None:
        plot_weights_grid(W1, image_shape, channels=channels, ax=axes.pop(0))
    for unused in axes:
        figure.delaxes(unused)
    return figure
