"""The array namespace of the inputs: NumPy itself, or another array-API library.

NumPy 2's main namespace follows the array API standard, so the reference code is
written once against ``xp = namespace(*arrays)`` and runs on ``np`` with no wrapper;
for a PyTorch, CuPy or array-api-strict array, ``namespace`` returns the standard's
namespace for it from array-api-compat (the ``array-api`` extra). Everything that moves
arrays between the host and a device is here too: :func:`to_numpy` (the host's copy),
:func:`device` (where an array lives) and :func:`to_device` (a host array moved once to
a namespace and device).

It is the one place that asks which library an array belongs to (:func:`is_numpy`,
:func:`namespace`; :func:`is_dense_numpy` for a NumPy array itself, neither sparse nor
a list, :func:`is_plain_ndarray` for no subclass of it, :func:`is_on` for a namespace
and device), as scikit-learn's ``utils/_array_api.py`` is: the differences
between NumPy and the standard are small helpers here (:func:`multiply_mask`,
:func:`weighted_sum`, :func:`total`, :func:`row_dot`, :func:`squared_norm`,
:func:`expit`, :func:`xlogy`, :func:`asarray_like`, :func:`overwrite`), so that the
reference math reads as math. For NumPy each computes what the library always has, to
the bit (``np.dot``, ``np.vdot``, ``np.einsum``, SciPy's ``expit``/``xlogy``); a sum is
then a Python float, and for another library a 0-d array on the input's device (a
training step brings one number back to the host, not one per term).

The estimators' device policy is here too: :func:`input_array` (X stays in its library
with scikit-learn's array API dispatch on, else goes to NumPy), :func:`to_host` (y and
sample_weight, checked and encoded on the host), :func:`float_dtypes` and
:func:`model_on` (a fitted network moved to X's library and device for one call).
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


def is_dense_numpy(a: Any) -> bool:
    """True for a NumPy array (in memory or memory-mapped): not a SciPy sparse matrix,
    not another library's array, not a list or a scalar."""
    return isinstance(a, np.ndarray)


def is_plain_ndarray(a: Any) -> bool:
    """True for NumPy's ndarray itself, not a subclass (``np.memmap``, ``np.matrix``,
    whose operators differ): what scikit-learn's checks return unchanged."""
    return type(a) is np.ndarray


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


def copy(a: Any, dtype: Any = None) -> Any:
    """A copy of ``a`` in its own namespace and on its own device, cast to ``dtype`` (a
    NumPy dtype) where given."""
    if isinstance(a, np.ndarray):
        return a.copy() if dtype is None else np.array(a, dtype=dtype)
    xp = namespace(a)
    if dtype is None:
        return xp.asarray(a, copy=True)
    return xp.astype(a, xp_dtype(xp, dtype), copy=True)


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


def multiply_mask(A: Any, mask: Any) -> Any:
    """``A ⊙ mask`` for a boolean mask (the standard multiplies no booleans: it is cast
    to A's dtype first; NumPy multiplies the booleans directly)."""
    if isinstance(A, np.ndarray):
        return A * mask
    return A * namespace(A).astype(mask, A.dtype)


def asarray_like(a: Any, S: Any) -> Any:
    """``a`` (an array, or anything NumPy converts) in S's library and dtype."""
    if isinstance(S, np.ndarray):
        return np.asarray(a, dtype=S.dtype)
    return namespace(S).astype(a, S.dtype, copy=False)


def ones_like_rows(S: Any) -> Any:
    """(N,) ones of S's dtype on S's device, N = S's rows."""
    return namespace(S).ones(S.shape[0], dtype=S.dtype, device=device(S))


def total(a: Any) -> Any:
    """``Σ a``: a float for NumPy, a 0-d array on a's device otherwise (not brought back)."""
    if isinstance(a, np.ndarray):
        return float(a.sum())
    return namespace(a).sum(a)


def weighted_sum(w: Any, v: Any) -> Any:
    """``Σ_i w_i v_i`` of two (N,) vectors: a float by ``np.dot`` for NumPy, a 0-d array
    (the standard's ``vecdot``) otherwise."""
    if isinstance(v, np.ndarray):
        return float(np.dot(w, v))
    return namespace(v).vecdot(w, v)


def row_dot(A: Any, B: Any) -> Any:
    """Row-wise ``Σ_j A_ij B_ij`` (N,) of two (N, C) arrays (``np.einsum`` for NumPy)."""
    if isinstance(A, np.ndarray):
        return np.einsum("ij,ij->i", A, B)
    return namespace(A).vecdot(A, B, axis=-1)


def squared_norm(W: Any) -> Any:
    """``‖W‖²`` (all entries): a float by ``np.vdot`` for NumPy, a 0-d array otherwise."""
    if isinstance(W, np.ndarray):
        return float(np.vdot(W, W))
    return namespace(W).sum(W * W)


def expit(S: Any, *, overwrite: bool = False) -> Any:
    """``σ(S) = 1 / (1 + e^{−S})`` without overflow for any finite S.

    SciPy's ``expit`` for NumPy (over S itself with ``overwrite``, saving an (N, C)
    array); for another library ``e^{−|S|}`` is the only exponential taken, as a new
    array in S's namespace.
    """
    if isinstance(S, np.ndarray):
        import scipy.special  # here: importing _xp (every command's start) needs no ufuncs

        return scipy.special.expit(S, out=S if overwrite else None)
    xp = namespace(S)
    E = xp.exp(-xp.abs(S))
    return xp.where(S >= 0, 1 / (1 + E), E / (1 + E))


def xlogy(X: Any, Y: Any) -> Any:
    """``X log Y`` with ``0 log Y = 0`` (so ``0 log 0 = 0``): SciPy's ``xlogy`` for NumPy."""
    if isinstance(X, np.ndarray):
        import scipy.special

        return scipy.special.xlogy(X, Y)
    xp = namespace(X)
    nonzero = X != 0
    return xp.where(nonzero, X * xp.log(xp.where(nonzero, Y, 1.0)), 0.0)


def overwrite(S: Any, in_place: Any, reference: Any) -> Any:
    """``in_place(S)``, which writes its result over a NumPy S (no second (N, C) array),
    or ``reference(S)`` (a new array) for another library, whose arrays the NumPy
    in-place kernels cannot write."""
    return in_place(S) if isinstance(S, np.ndarray) else reference(S)


# ------------------------------------------------------------- the device policy
def dispatching() -> bool:
    """scikit-learn's ``array_api_dispatch`` setting: with it on, the estimators keep
    another library's X (and compute) on its device."""
    import sklearn

    return bool(sklearn.get_config().get("array_api_dispatch", False))


def input_array(X: Any, name: str = "X") -> Any:
    """X as the estimators take it: another array-API library's array stays where it is
    when array API dispatch is on; otherwise it goes to NumPy, as in scikit-learn, with
    a one-line error where it cannot (a GPU array)."""
    if is_numpy(X) or dispatching():
        return X
    return to_host(X, name)


def to_host(a: Any, name: str = "sample_weight") -> Any:
    """A host (NumPy) form of y, sample_weight or labels, which are checked and encoded
    there: another library's array is copied with dispatch on, or with it off converted
    as scikit-learn converts it (``np.asarray``), with a TypeError naming the way to
    keep it on its device where that fails (a GPU array)."""
    if is_numpy(a):
        return a
    if dispatching():
        return to_numpy(a)
    try:
        return np.asarray(a)
    except (TypeError, ValueError, RuntimeError, BufferError):
        raise TypeError(
            f"{name} is a {type(a).__module__}.{type(a).__name__} on device {device(a)}, "
            "which cannot be converted to NumPy: turn on scikit-learn's array API "
            "dispatch to train and predict on its device (sklearn.set_config("
            "array_api_dispatch=True), with SCIPY_ARRAY_API=1 set before SciPy is "
            "imported), or pass a NumPy array"
        ) from None


def float_dtypes(X: Any) -> tuple:
    """The float dtypes the estimators keep, in X's library (float64 first)."""
    xp = namespace(X)
    return (xp.float64, xp.float32)


def as_dtype(X: Any, dtype: Any) -> Any:
    """X cast to a NumPy ``dtype`` (or one of X's library), in X's library; a NumPy or
    SciPy sparse X is not copied when it has that dtype already."""
    if is_numpy(X):
        return X.astype(dtype, copy=False)
    xp = namespace(X)
    return xp.astype(X, xp_dtype(xp, dtype), copy=False)


def check_same_place(X: Any, W: Any, name: str, advice: str) -> None:
    """A TypeError unless X is of W's library where W is not NumPy's, and a ValueError
    unless it is on W's device: a clear line rather than an error from inside the
    library (``advice`` completes "pass X as one, or …")."""
    if is_numpy(W):
        return
    xp = namespace(W)
    if namespace(X) is not xp:
        raise TypeError(
            f"{name} is a {type(X).__module__}.{type(X).__name__}, but the network's "
            f"parameters are arrays of {xp.__name__}: pass {name} as one, or {advice}"
        )
    if device(X) != device(W):
        raise ValueError(
            f"{name} is on device {device(X)}, but the network's parameters are on "
            f"{device(W)}: move one of them"
        )


def is_on(a: Any, xp: ModuleType, dev: Any) -> bool:
    """Whether ``a`` is an array of namespace ``xp`` on device ``dev`` (any NumPy array
    is on the host's one device)."""
    return namespace(a) is xp and (xp is np or device(a) == dev)


def model_on(model: Any, X: Any) -> Any:
    """``model``, or for X of another library or device than its parameters, a copy of
    it moved there for this call (the fitted network stays where it is)."""
    xp, dev = namespace(X), device(X)
    if is_on(model.params["W1"], xp, dev):
        return model
    return model.copy().to(xp, dev)
