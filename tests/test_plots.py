"""Tests for handgrad.plots: figures have the right panels, files are real PNGs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from handgrad import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DPI = 30  # small pictures keep the suite fast


def _texts(figure: Figure) -> str:
    return " ".join(t.get_text() for ax in figure.axes for t in ax.texts)


def _assert_png(path: Path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert min(image.size) > 0
        return image.size


def _history(n_epochs: int = 5, *, val: bool = True) -> dict[str, list[float]]:
    rng = np.random.default_rng(0)
    history = {
        "loss": list(np.linspace(2.3, 0.4, n_epochs)),
        "loss_iterations": list(2.3 * np.exp(-np.arange(200) / 80) + 0.1 * rng.random(200)),
        "train_score": list(np.linspace(0.3, 0.9, n_epochs)),
    }
    if val:
        history["val_score"] = list(np.linspace(0.25, 0.8, n_epochs))
    return history


# ------------------------------------------------------------------------------ curves


def test_plot_loss_per_iteration_shows_raw_and_running_mean() -> None:
    figure = plots.plot_loss(_history()["loss_iterations"], per="iteration")
    assert isinstance(figure, Figure)
    (ax,) = figure.axes
    assert len(ax.lines) == 2
    np.testing.assert_allclose(ax.lines[0].get_xdata(), np.arange(1, 201))
    assert ax.get_xlabel() == "iteration"


def test_plot_loss_per_epoch_draws_every_point() -> None:
    loss = [2.0, 1.0, float("inf"), 0.5]
    (ax,) = plots.plot_loss(loss, per="epoch").axes
    (line,) = ax.lines
    np.testing.assert_array_equal(line.get_ydata(), [2.0, 1.0, np.nan, 0.5])  # inf -> gap
    assert ax.get_xlabel() == "epoch"


def test_plot_loss_rejects_unknown_unit_and_notes_empty_curve() -> None:
    with pytest.raises(ValueError, match="per must be 'iteration' or 'epoch', got 'batch'"):
        plots.plot_loss([1.0], per="batch")
    assert "no loss recorded" in _texts(plots.plot_loss([]))


def test_plot_accuracy_train_and_validation() -> None:
    history = _history()
    (ax,) = plots.plot_accuracy(history["train_score"], history["val_score"]).axes
    assert [line.get_label() for line in ax.lines] == ["train", "validation"]
    np.testing.assert_allclose(ax.lines[1].get_ydata(), history["val_score"])


@pytest.mark.parametrize("val", [None, []])
def test_plot_accuracy_without_validation(val) -> None:
    (ax,) = plots.plot_accuracy([0.5, 0.7], val).axes
    assert [line.get_label() for line in ax.lines] == ["train"]


def test_plot_accuracy_with_nothing_says_why() -> None:
    figure = plots.plot_accuracy(None, None)
    assert not figure.axes[0].lines
    assert "no per-epoch accuracy" in _texts(figure)


def test_plots_draw_on_a_given_axes() -> None:
    figure = Figure()
    left, right = figure.subplots(1, 2)
    assert plots.plot_loss([1.0, 0.5], ax=left) is figure
    assert plots.plot_accuracy([0.5], ax=right) is figure
    assert len(figure.axes) == 2 and left.lines and right.lines


# ----------------------------------------------------------------------------- weights


def test_tile_weights_places_each_normalised_column() -> None:
    rng = np.random.default_rng(1)
    height, width, hidden = 4, 3, 7
    W1 = rng.standard_normal((height * width, hidden))
    grid = plots.tile_weights(W1, (height, width), padding=1)
    cols = 3  # ceil(sqrt(7)); rows = 3
    assert grid.dtype == np.uint8
    assert grid.shape == (3 * (height + 1) - 1, cols * (width + 1) - 1)
    tiles = []
    for index in range(hidden):
        r, c = divmod(index, cols)
        tile = grid[r * (height + 1) : r * (height + 1) + height, c * (width + 1) :][:, :width]
        column = W1[:, index].reshape(height, width)
        expected = np.rint(255 * (column - column.min()) / np.ptp(column))
        np.testing.assert_array_equal(tile, expected)
        tiles.append(tile)
    assert len(tiles) == hidden
    assert all(t.min() == 0 and t.max() == 255 for t in tiles)
    assert not grid[2 * (height + 1) :, 1 * (width + 1) :].any()  # two empty cells stay black


def test_tile_weights_rgb_channels_last_and_constant_columns() -> None:
    W1 = np.zeros((2 * 2 * 3, 4))
    W1[0::3, 1] = 1.0  # unit 1: red everywhere
    grid = plots.tile_weights(W1, (2, 2, 3))
    assert grid.shape == (5, 5, 3)
    np.testing.assert_array_equal(grid[0:2, 3:5, 0], 255)  # tile 1, red channel
    np.testing.assert_array_equal(grid[0:2, 3:5, 1:], 0)
    assert not grid[0:2, 0:2].any()  # a constant tile maps to 0, not NaN


def test_tile_weights_validates_shapes() -> None:
    with pytest.raises(ValueError, match=r"W1 has shape \(10, 3\).*needs \(12, H\)"):
        plots.tile_weights(np.zeros((10, 3)), (2, 2, 3))
    with pytest.raises(ValueError, match="channels must be 1"):
        plots.tile_weights(np.zeros((8, 3)), (2, 2), channels=2)


def test_plot_weights_grid_is_one_image_with_h_tiles() -> None:
    W1 = np.random.default_rng(2).standard_normal((8 * 8, 10))
    figure = plots.plot_weights_grid(W1, (8, 8))
    (ax,) = figure.axes
    (image,) = ax.images
    assert image.get_array().shape == (3 * 9 - 1, 4 * 9 - 1)  # 10 tiles in a 3×4 grid
    assert "10 hidden units" in ax.get_title()


# --------------------------------------------------------------------- confusion matrix


def test_plot_confusion_matrix_annotates_counts() -> None:
    cm = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 9]])
    figure = plots.plot_confusion_matrix(cm, ["cat", "dog", "frog"])
    (ax,) = figure.axes
    assert len(ax.images) == 1
    assert [t.get_text() for t in ax.texts] == [str(v) for v in cm.ravel()]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog", "frog"]


def test_plot_confusion_matrix_validates() -> None:
    with pytest.raises(ValueError, match=r"square \(K, K\)"):
        plots.plot_confusion_matrix(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="cm has 2 classes, but class_names has 3"):
        plots.plot_confusion_matrix(np.eye(2), ["a", "b", "c"])


# ------------------------------------------------------------------------------ files


def test_make_report_with_all_four_panels(tmp_path: Path) -> None:
    W1 = np.random.default_rng(3).standard_normal((6 * 6, 9))
    path = plots.make_report(
        _history(),
        path=tmp_path / "report.png",
        W1=W1,
        image_shape=(6, 6),
        cm=np.array([[3, 1], [0, 4]]),
        class_names=["no", "yes"],
        dpi=DPI,
    )
    assert path == tmp_path / "report.png"
    width, height = _assert_png(path)
    assert width > height * 0.8  # a 2×2 layout
    assert sorted(os.listdir(tmp_path)) == ["report.png"]  # no temp file left


def test_make_report_without_validation_or_epochs(tmp_path: Path) -> None:
    lbfgs_like = {"loss": [0.9, 0.5, 0.3]}  # no per-iteration losses, no accuracies
    path = plots.make_report(lbfgs_like, path=tmp_path, dpi=DPI)
    assert path == tmp_path / "report.png"
    _assert_png(path)
    assert plots.make_report(_history(val=False), path=path, dpi=DPI) == path
    _assert_png(path)


def test_make_report_empty_history(tmp_path: Path) -> None:
    _assert_png(plots.make_report({}, path=tmp_path / "r.png", dpi=DPI))


def test_single_plots_save_when_given_a_path(tmp_path: Path) -> None:
    plots.plot_loss([1.0, 0.5], path=tmp_path / "loss.png", dpi=DPI)
    _assert_png(tmp_path / "loss.png")
    plots.plot_accuracy([0.5, 0.6], path=tmp_path / "acc.svg", dpi=DPI)
    assert (tmp_path / "acc.svg").read_text().lstrip().startswith("<?xml")


def test_report_into_missing_folder_names_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing"):
        plots.make_report(_history(), path=tmp_path / "missing" / "report.png", dpi=DPI)
