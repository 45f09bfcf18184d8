"""Preprocessor kinds, their JSON state, and reading image files for prediction."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from sklearn.exceptions import NotFittedError

from handgrad.data.preprocess import Preprocessor, flatten, load_image_files
from handgrad.errors import DataFormatError, ModelFileError

IMAGES = np.array([[[0, 255], [51, 102]], [[255, 255], [0, 0]]], dtype=np.uint8)  # (2, 2, 2)


def test_flatten_shapes_and_dtype():
    rows = flatten(IMAGES)
    assert rows.shape == (2, 4) and rows.dtype == np.float32
    assert flatten(IMAGES, np.float64).dtype == np.float64
    np.testing.assert_array_equal(rows[0], [0, 255, 51, 102])


def test_scale_images_by_255():
    rows = Preprocessor("scale").fit_transform(IMAGES)
    assert rows.dtype == np.float32 and rows.shape == (2, 4)
    np.testing.assert_allclose(rows[0], [0, 1, 0.2, 0.4], rtol=1e-6)


def test_scale_other_data_by_largest_absolute_value():
    X = np.array([[-4.0, 2.0], [1.0, 0.5]])
    pre = Preprocessor("scale", dtype=np.float64).fit(X)
    assert pre.scale_ == 4.0
    np.testing.assert_allclose(pre.transform(X), [[-1, 0.5], [0.25, 0.125]])
    assert Preprocessor("scale").fit(np.zeros((2, 2))).scale_ == 1.0


def test_standardize_and_constant_features():
    X = np.array([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]])
    rows = Preprocessor("standardize", dtype="float64").fit_transform(X)
    np.testing.assert_allclose(rows.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(rows[:, 0].std(), 1)
    np.testing.assert_array_equal(rows[:, 1], 0)  # std 0 counts as 1


def test_mean_image_subtracts_the_scaled_training_mean():
    pre = Preprocessor("mean_image", dtype="float64").fit(IMAGES)
    np.testing.assert_allclose(pre.mean_, [0.5, 1.0, 0.1, 0.2])
    np.testing.assert_allclose(pre.transform(IMAGES[:1]), [[-0.5, 0, 0.1, 0.2]])


def test_none_only_flattens():
    np.testing.assert_array_equal(Preprocessor("none").fit_transform(IMAGES), flatten(IMAGES))


@pytest.mark.parametrize("kind", ["none", "scale", "standardize", "mean_image"])
def test_state_survives_json(kind):
    X = np.random.default_rng(0).integers(0, 256, (20, 3, 3), dtype=np.uint8)
    pre = Preprocessor(kind, dtype="float64").fit(X[:10])
    state = json.loads(json.dumps(pre.to_dict()))
    again = Preprocessor.from_dict(state)
    np.testing.assert_array_equal(again.transform(X[10:]), pre.transform(X[10:]))
    assert again.to_dict() == pre.to_dict()


def test_transform_never_changes_the_input():
    X = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    before = X.copy()
    Preprocessor("standardize").fit(X).transform(X)
    np.testing.assert_array_equal(X, before)


def test_errors():
    with pytest.raises(ValueError, match="kind must be one of none, scale"):
        Preprocessor("whiten")
    with pytest.raises(ValueError, match="dtype must be a floating type"):
        Preprocessor("scale", dtype=np.int32)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        Preprocessor("scale").transform(IMAGES)
    pre = Preprocessor("scale").fit(IMAGES)
    with pytest.raises(
        ValueError, match="X has 3 features, but the preprocessor was fitted with 4"
    ):
        pre.transform(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="NaN or infinity"):
        Preprocessor("standardize").fit(np.array([[np.nan]]))
    with pytest.raises(ValueError, match="at least one sample"):
        Preprocessor("standardize").fit(np.zeros((0, 3)))


@pytest.mark.parametrize(
    "state",
    [
        {},
        {"kind": "bogus", "dtype": "float32"},
        {
            "kind": "standardize",
            "dtype": "float32",
            "n_features": 2,
            "scale": 1.0,
            "mean": [0.0],
            "std": [1.0, 1.0],
        },
        {
            "kind": "scale",
            "dtype": "float32",
            "n_features": 2,
            "scale": 0.0,
            "mean": None,
            "std": None,
        },
    ],
)
def test_from_dict_refuses_broken_state(state):
    with pytest.raises(ModelFileError, match="invalid preprocessor state"):
        Preprocessor.from_dict(state)


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
