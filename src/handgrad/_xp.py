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

import functools
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
    return a is None or isinstance(a, np.ndarray) or not _foreign_type(type(a))


@functools.cache
def _foreign_type(t: type) -> bool:
    """True for an array type of another library than NumPy: PyTorch's, or one that
    defines the standard's ``__array_namespace__`` (decided once per type, as it is
    asked on every call of a reference function)."""
    if issubclass(t, np.ndarray | np.generic | numbers.Number | sp.spmatrix | sp.sparray):
        return False
    return _is_torch_type(t) or hasattr(t, "__array_namespace__")


def _is_torch_type(t: type) -> bool:
    return t.__module__.split(".", 1)[0] == "torch"


def namespace(*arrays: Any) -> ModuleType:
    """``numpy`` when every array is NumPy's (or a scalar, None, sparse), else the array
    API namespace of the arrays (``array_api_compat.array_namespace``). Arrays of
    different libraries (NumPy's among them) are a TypeError."""
    if len(arrays) == 1 and type(arrays[0]) is np.ndarray:  # the common case, per call
        return np
    others = [a for a in arrays if not is_numpy(a)]
    if not others:
        return np
    if any(isinstance(a, np.ndarray) or sp.issparse(a) for a in arrays):
        kinds = sorted({f"{type(a).__module__}.{type(a).__name__}" for a in arrays})
        raise TypeError(f"arrays of different libraries cannot be combined: {', '.join(kinds)}")
    try:
        import array_api_compat
    except ImportError:
        raise ImportError(
            f"arrays of another library than NumPy need array-api-compat: {INSTALL}"
        ) from None
    kind = type(others[0])
    if any(type(a) is not kind for a in others):
        return array_api_compat.array_namespace(*others)
    # The namespace depends on the array type only: looked up once per type, as the
    # reference functions ask for it on every call.
    if kind not in _NAMESPACES:
        _NAMESPACES[kind] = array_api_compat.array_namespace(others[0])
    return _NAMESPACES[kind]


_NAMESPACES: dict[type, ModuleType] = {}


def device(a: Any) -> Any:
    """Where ``a`` lives: ``"cpu"`` for NumPy, else the library's device object (the
    standard's ``a.device``)."""
    if is_numpy(a):
        return "cpu"
    if hasattr(a, "device"):
        return a.device
    import array_api_compat

    return array_api_compat.device(a)


def to_numpy(a: Any) -> Any:
    """``a`` as a host NumPy array (a torch CPU or CUDA tensor, a CuPy array, an
    array-api-strict array); NumPy arrays and everything else are returned as they are.
    The result may share memory with ``a`` where ``a`` is on the host."""
    if is_numpy(a):
        return a
    if _is_torch_type(type(a)):
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
