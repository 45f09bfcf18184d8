"""The array-API path on a GPU: the key cases of tests/test_array_api.py on
``torch.device("cuda")`` (and CuPy where it is installed), skipped without a device."""

from __future__ import annotations

import importlib.util

import pytest

torch = pytest.importorskip("torch")

# The same tests, run here with this module's `lib` fixture.
from test_array_api import (  # noqa: E402
    Library,
    blobs3,
    dispatch,
    test_classifier_labels,
    test_classifier_on_another_library_equals_numpy,
    test_classifier_sample_weight_eval_set_and_partial_fit,
    test_gradients_equal_the_numpy_reference,
    test_model_trained_on_another_library_loads_as_numpy,
    test_optimizer_steps_equal_numpy,
    test_regressor_on_another_library_equals_numpy,
)

__all__ = [
    "blobs3",
    "dispatch",
    "test_classifier_labels",
    "test_classifier_on_another_library_equals_numpy",
    "test_classifier_sample_weight_eval_set_and_partial_fit",
    "test_gradients_equal_the_numpy_reference",
    "test_model_trained_on_another_library_loads_as_numpy",
    "test_optimizer_steps_equal_numpy",
    "test_regressor_on_another_library_equals_numpy",
]


def _torch_cuda() -> Library:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device (torch.cuda.is_available() is False)")
    return Library(
        "torch-cuda",
        lambda a: torch.asarray(a, device="cuda"),
        torch.Tensor,
        torch.device("cuda", torch.cuda.current_device()),
    )


def _cupy() -> Library:
    if importlib.util.find_spec("cupy") is None:
        pytest.skip("CuPy is not installed")
    import cupy

    try:
        device = cupy.cuda.Device()
        device.compute_capability  # noqa: B018  (raises without a GPU)
    except Exception as exc:  # CUDARuntimeError and kin
        pytest.skip(f"no CUDA device for CuPy ({type(exc).__name__})")
    return Library("cupy", cupy.asarray, cupy.ndarray, device)


@pytest.fixture(params=[_torch_cuda, _cupy], ids=["torch-cuda", "cupy"])
def lib(request) -> Library:
    return request.param()
