"""Image files: read safely, and prepared the way the training set's images were.

The drawn digits are rendered here with Pillow (thick strokes, dark ink on light paper
and on wide canvases), and a small model trained on scikit-learn's digits must read
them through the path ``handgrad predict`` takes (``read_inputs`` then ``predict``).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image, ImageDraw
from sklearn.exceptions import ConvergenceWarning

from handgrad.bundle import load_bundle, read_inputs, save_bundle
from handgrad.data.images import (
    PREPARATIONS,
    load_image_files,
    load_images,
    preparation_for,
    prepare_image,
)
from handgrad.errors import DataFormatError


def draw(digit: int, size=(200, 200), box=(50, 30, 150, 170), ink=0, paper=255, width=24):
    """A thick-stroked 1, 0 or 7 inside ``box`` of a ``size`` canvas."""
    picture = Image.new("L", size, paper)
    pen = ImageDraw.Draw(picture)
    left, top, right, bottom = box
    if digit == 1:
        middle = (left + right) // 2
        pen.line([(middle - 25, top + 25), (middle, top), (middle, bottom)], fill=ink, width=width)
    elif digit == 0:
        pen.ellipse(box, outline=ink, width=width)
    elif digit == 7:
        pen.line([(left, top), (right, top), (left + (right - left) // 3, bottom)], ink, width)
    return picture


CANVASES = {
    "dark ink on light paper": {},
    "wide light paper, digit on the left": {"size": (480, 200), "box": (40, 20, 130, 180)},
    "wide dark canvas, digit on the right": {
        "size": (480, 200),
        "box": (300, 20, 390, 180),
        "ink": 255,
        "paper": 0,
    },
}


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """A model trained on scikit-learn's digits, saved as ``handgrad train`` saves it."""
    from handgrad.estimator import MLPClassifier
    from handgrad.runs import RunConfig, prepare_data

    data = prepare_data(RunConfig(data="digits", seed=0))
    classifier = MLPClassifier(hidden_layer_sizes=(64,), max_iter=30, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 30 epochs are enough here
        classifier.fit(data.take("train"), data.y_train)
    assert classifier.score(data.take("test"), data.y_test) > 0.9
    path = tmp_path_factory.mktemp("model") / "digits.safetensors"
    save_bundle(path, classifier, data.preprocessor, data.info)
    return load_bundle(path)


@pytest.mark.parametrize("canvas", CANVASES)
def test_drawn_digits_are_read_right_by_a_digits_model(tmp_path, digits_model, canvas):
    paths = []
    for digit in (1, 0, 7):
        paths.append(tmp_path / f"{digit}.png")
        draw(digit, **CANVASES[canvas]).save(paths[-1])
    _, X = read_inputs(digits_model, paths)
    assert X.shape == (3, 64) and X.min() == 0 and X.max() == 16
    assert digits_model.predict(X).tolist() == [1, 0, 7]


def test_the_model_file_records_the_preparation(digits_model):
    assert digits_model.info["image_preparation"] == "digits"


def test_digits_preparation_counts_ink_in_4x4_blocks():
    bar = np.zeros((40, 100), dtype=np.uint8)
    bar[:, 10:20] = 255  # a 40-high, 10-wide bar: fitted to 32 high, 8 wide
    out = prepare_image(bar, (8, 8), "digits")
    assert out.shape == (8, 8) and set(np.unique(out * 16)) <= set(range(17))
    np.testing.assert_array_equal(out.sum(axis=0) * 16, [0, 0, 0, 128, 128, 0, 0, 0])


def test_mnist_preparation_fits_20x20_and_centres_the_mass():
    picture = np.full((300, 500), 255, dtype=np.uint8)
    picture[50:250, 400:450] = 0  # a dark bar, far right on light paper
    out = prepare_image(picture, (28, 28), "mnist")
    rows, cols = np.nonzero(out > 0.5)
    assert rows.max() - rows.min() + 1 == 20 and cols.max() - cols.min() + 1 == 5
    mass = out / out.sum()
    centre = (np.indices(out.shape) * mass).sum(axis=(1, 2))
    np.testing.assert_allclose(centre, (14, 14), atol=0.5)


def test_fashion_preparation_fits_28_and_centres_the_box():
    picture = np.zeros((100, 300), dtype=np.uint8)
    picture[10:60, 100:200] = 200
    out = prepare_image(picture, (28, 28), "fashion-mnist", invert=False)
    rows, cols = np.nonzero(out > 0.5)
    assert (cols.min(), cols.max()) == (0, 27) and (rows.min(), rows.max()) == (7, 20)


def test_resize_keeps_the_whole_canvas_and_inverts_only_when_asked():
    picture = np.zeros((10, 20, 3), dtype=np.uint8)
    picture[:, 10:] = 255
    out = prepare_image(picture, (4, 4, 3), "resize")
    assert out.shape == (4, 4, 3) and out[:, 0].max() == 0 and out[:, 3].min() == 1
    np.testing.assert_array_equal(prepare_image(picture, (4, 4, 3), "resize", invert=True), 1 - out)


def test_blank_picture_stays_blank_and_bad_preparations_are_named():
    assert prepare_image(np.full((9, 9), 255, np.uint8), (8, 8), "digits").max() == 0
    assert prepare_image(np.zeros((9, 9), np.uint8), (28, 28), "mnist").max() == 0
    with pytest.raises(ValueError, match="image preparation must be one of mnist, "):
        prepare_image(np.zeros((9, 9), np.uint8), (8, 8), "crop")
    with pytest.raises(ValueError, match="'digits' preparation is for grey images"):
        prepare_image(np.zeros((9, 9, 3), np.uint8), (8, 8, 3), "digits")


def test_preparations_by_dataset_name():
    assert [preparation_for(n) for n in ("mnist-t10k", "digits", "Fashion_MNIST", "cifar10")] == [
        "mnist",
        "digits",
        "fashion-mnist",
        "resize",
    ]
    assert preparation_for(None) == "resize" and set(PREPARATIONS) >= {"mnist", "resize"}


def test_load_images_scales_to_the_training_pixel_range(tmp_path):
    draw(7).save(tmp_path / "7.png")
    images = load_images([tmp_path / "7.png"], (28, 28), preparation="mnist", pixel_max=255)
    assert images.shape == (1, 28, 28) and images.dtype == np.float64
    assert images.max() == pytest.approx(255) and images.min() == 0
    with pytest.raises(ValueError, match="paths is empty"):
        load_images([], (28, 28))


def test_a_folder_is_named_a_folder(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a folder, not an image file"):
        load_images([tmp_path], (8, 8))


def test_load_image_files_resizes_and_converts(tmp_path):
    grey = np.zeros((56, 40), dtype=np.uint8)
    grey[:, 20:] = 255
    Image.fromarray(grey).save(tmp_path / "a.png")
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(tmp_path / "b.jpg", quality=95)
    images = load_image_files([tmp_path / "a.png", tmp_path / "b.jpg"], shape=(28, 20))
    assert images.shape == (2, 28, 20) and images.dtype == np.uint8
    assert images[0, :, :9].max() == 0 and images[0, :, 11:].min() == 255
    assert abs(int(images[1, 14, 3]) - 0) < 8 and abs(int(images[1, 14, 16]) - 255) < 8
    rgb = load_image_files([tmp_path / "a.png"], shape=(32, 32), mode="RGB")
    assert rgb.shape == (1, 32, 32, 3)


def test_load_image_files_errors(tmp_path):
    (tmp_path / "fake.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DataFormatError, match=r"fake\.png: not a readable image"):
        load_image_files([tmp_path / "fake.png"])
    with pytest.raises(FileNotFoundError):
        load_image_files([tmp_path / "missing.png"])
    with pytest.raises(ValueError, match="paths is empty"):
        load_image_files([])
    with pytest.raises(ValueError, match="mode must be"):
        load_image_files([tmp_path / "fake.png"], mode="CMYK")
