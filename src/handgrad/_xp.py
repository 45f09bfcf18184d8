"""The array namespace of the inputs: NumPy itself, or another array-API library.

NumPy 2's main namespace follows the array API standard, so the reference code is
written once against ``xp = namespace(*arrays)`` and runs on ``np`` with no wrapper;
for a PyTorch, CuPy or array-api-strict array, ``namespace`` returns the standard's
namespace for it from array-api-compat (the ``array-api`` extra). Everything that moves
arrays between the host and a device is here too: :func:`to_numpy` (the host's copy),
:func:`device` (where an array lives) and :func:`to_device` (a host array moved once to
a namespace and device).
"""

from __future__ import annotations

import numbers
from types import ModuleType
from typing import Any

import numpy as np
import scipy.sparse as sp

INSTALL = "pip install 'handgrad[array-api]'"


def is_numpy(a: Any) -> bool:
    """True for what NumPy's namespace handles: a NumPy array or scalar, a Python
    number, None, a SciPy sparse matrix, or any other object that is not an array of
    another library (lists, DataFrames: these are converted by ``np.asarray``)."""
    if a is None or isinstance(a, np.ndarray | np.generic | numbers.Number):
        return True
    if sp.issparse(a):
        return True
    return not (_is_torch(a) or hasattr(a, "__array_namespace__"))


def _is_torch(a: Any) -> bool:
    return type(a).__module__.split(".", 1)[0] == "torch"


def namespace(*arrays: Any) -> ModuleType:
    """``numpy`` when every array is NumPy's (or a scalar, None, sparse), else the array
    API namespace of the arrays (``array_api_compat.array_namespace``), which raises a
    TypeError for arrays of different libraries."""
    if all(is_numpy(a) for a in arrays):
        return np
    try:
        import array_api_compat
    except ImportError:
        raise ImportError(
            f"arrays of another library than NumPy need array-api-compat: {INSTALL}"
        ) from None
    return array_api_compat.array_namespace(*(a for a in arrays if not is_numpy(a)))


def device(a: Any) -> Any:
    """Where ``a`` lives: ``"cpu"`` for NumPy, else the library's device object."""
    if is_numpy(a):
        return "cpu"
    import array_api_compat

    return array_api_compat.device(a)


def to_numpy(a: Any) -> Any:
    """``a`` as a host NumPy array (a torch CPU or CUDA tensor, a CuPy array, an
    array-api-strict array); NumPy arrays and everything else are returned as they are.
    The result may share memory with ``a`` where ``a`` is on the host."""
    if is_numpy(a):
        return a
    if _is_torch(a):
        return a.detach().cpu().numpy()
    if type(a).__module__.split(".", 1)[0] == "cupy":
        return a.get()
    import array_api_compat

    return np.from_dlpack(array_api_compat.to_device(a, _cpu_device(a)))


def _cpu_device(a: Any) -> Any:
    """The host device of ``a``'s library (array-api-strict names its own)."""
    xp = namespace(a)
    info = getattr(xp, "__array_namespace_info__", None)
    return info().default_device() if info is not None else "cpu"


def to_device(a: Any, xp: ModuleType, dev: Any = None, dtype: Any = None) -> Any:
    """A host array (or None) moved once to namespace ``xp`` on device ``dev``, cast to
    ``dtype`` (a NumPy dtype, or one of ``xp``'s) where given."""
    if a is None:
        return None
    if xp is np:
        return np.asarray(a, dtype=None if dtype is None else np.dtype(dtype))
    a = np.asarray(a)
    out = xp.asarray(a, device=dev)
    return out if dtype is None else xp.astype(out, xp_dtype(xp, dtype), copy=False)


def xp_dtype(xp: ModuleType, dtype: Any) -> Any:
    """``xp``'s float dtype for a NumPy dtype (or a dtype of ``xp`` itself)."""
    try:
        return getattr(xp, np.dtype(dtype).name)
    except TypeError:  # already one of xp's dtypes
        return dtype


def numpy_dtype(dtype: Any) -> np.dtype:
    """NumPy's dtype for a dtype of any library (``torch.float32`` → float32)."""
    try:
        return np.dtype(dtype)
    except TypeError:
        return np.dtype(str(dtype).rsplit(".", 1)[-1])


def copy(a: Any) -> Any:
    """A copy of ``a`` in its own namespace and on its own device."""
    if isinstance(a, np.ndarray):
        return a.copy()
    return namespace(a).asarray(a, copy=True)


def copy_into(dst: Any, src: Any) -> None:
    """``dst[...] = src``: NumPy's ``copyto``, or the standard's item assignment."""
    if isinstance(dst, np.ndarray):
        np.copyto(dst, src)
    else:
        dst[...] = src


def finite_on_device(arrays: list[Any]) -> bool:
    """True when every entry of every array (all of one namespace) is finite, with one
    value brought back to the host: a NaN or infinity makes the sum non-finite, and
    only then (or when the sum overflows) is each entry looked at."""
    xp = namespace(*arrays)
    total = sum(xp.sum(a) for a in arrays)
    if bool(xp.isfinite(total)):
        return True
    return all(bool(xp.all(xp.isfinite(a))) for a in arrays)
