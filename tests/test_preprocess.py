"""Preprocessor kinds and their JSON state."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from handgrad.data.preprocess import Preprocessor, flatten
from handgrad.errors import ModelFileError

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


@pytest.mark.parametrize("kind", ["scale", "standardize", "mean_image"])
def test_values_beyond_float32_are_scaled_before_the_cast(tmp_path, kind):
    from handgrad.data import load_dataset

    rows = [f"{1e39 if i == 7 else i},{i % 3},{i % 2}" for i in range(20)]
    (tmp_path / "big.csv").write_text("a,b,y\n" + "\n".join(rows) + "\n")
    data = load_dataset(str(tmp_path / "big.csv"))
    pre = Preprocessor(kind).fit(data.X_train)
    for X in (data.X_train, data.X_test):
        out = pre.transform(X)
        assert out.dtype == np.float32 and np.isfinite(out).all()
        exact = Preprocessor(kind, dtype=np.float64).fit(data.X_train).transform(X)
        np.testing.assert_allclose(out, exact, rtol=1e-6, atol=1e-6)


def test_a_value_float32_cannot_hold_after_preprocessing_is_named():
    X = np.array([[1.0, 2.0], [3.0, -2e39], [5.0, 6.0]])
    with pytest.raises(
        ValueError,
        match=r"X holds -2e\+39 in column 2 after preprocessing 'none', beyond float32's "
        r"range \(±3\.4e\+38\); choose preprocessing 'scale' or 'standardize', or dtype "
        "float64",
    ):
        Preprocessor("none").fit_transform(X)
    assert Preprocessor("none", dtype="float64").fit_transform(X)[1, 1] == -2e39
    with pytest.raises(ValueError, match="too large for preprocessing 'standardize'"):
        Preprocessor("standardize").fit(np.array([[1e308], [-1e308], [1e308]]))
