"""Where a run trains: the host (NumPy, the fast path) or a PyTorch device."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

__all__ = ["on_device", "torch_device"]


def torch_device(name: str) -> Any:
    """None for ``"cpu"`` (NumPy, the fast path); otherwise the PyTorch device to train
    on: ``"cuda"``, ``"cuda:1"``, ``"mps"`` …, or ``"torch:cpu"`` (PyTorch on the CPU, a
    check of the device path without a GPU). A ValueError in one line when PyTorch, the
    array-API extra or the device is missing."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"device must be a name such as cpu or cuda, got {name!r}")
    name = name.strip()
    if name == "cpu":
        return None
    try:
        import torch
    except ImportError:
        raise ValueError(
            f"--device {name} trains with PyTorch, which is not installed: pip install "
            "torch (a CUDA build for a GPU) and 'handgrad[array-api]'"
        ) from None
    try:
        import array_api_compat  # noqa: F401  (handgrad's array-API path needs it)
    except ImportError:
        raise ValueError(
            f"--device {name} needs array-api-compat: pip install 'handgrad[array-api]'"
        ) from None
    try:
        where = torch.device(name.removeprefix("torch:"))
    except RuntimeError:
        raise ValueError(
            f"unknown device {name!r}: give cpu, cuda, cuda:N, mps or torch:cpu"
        ) from None
    kind = where.type
    available = {"cpu": True, "cuda": torch.cuda.is_available()}
    if kind == "mps":
        available["mps"] = torch.backends.mps.is_available()
    if not available.get(kind, False):
        raise ValueError(
            f"--device {name}: PyTorch {torch.__version__} finds no {kind} device here"
        )
    if kind == "cuda" and where.index is not None and where.index >= torch.cuda.device_count():
        raise ValueError(
            f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    return where


@contextlib.contextmanager
def on_device(where: Any) -> Iterator[Callable[[Any], Any]]:
    """A function that moves a host array once to ``where`` (the identity for None),
    with scikit-learn's array-API dispatch on while the block runs, so that the
    estimator trains there."""
    if where is None:
        yield lambda X: X
        return
    import sklearn
    import torch

    try:
        context = sklearn.config_context(array_api_dispatch=True)
        context.__enter__()
    except (ImportError, ValueError, RuntimeError) as exc:
        raise ValueError(
            "training on a device needs scikit-learn's array API dispatch, which needs "
            f"SCIPY_ARRAY_API=1 set before SciPy is imported ({exc})"
        ) from None
    try:
        yield lambda X: torch.as_tensor(np.ascontiguousarray(X), device=where)
    finally:
        context.__exit__(None, None, None)
