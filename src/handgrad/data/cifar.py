"""CIFAR-10 in its two published formats, and safe extraction of its archives.

* Python version (``cifar-10-batches-py/``): each batch is a protocol-2 pickle, written
  by Python 2, of a dict ``{b'data': uint8 (N, 3072), b'labels': [int], b'batch_label',
  b'filenames'}``. It is read by :func:`safe_loads`: the opcodes are screened without
  running anything, then :class:`RestrictedUnpickler` resolves only the few globals a
  numpy array needs -- each to a guarded stand-in that checks its arguments and state.
* Binary version (``cifar-10-batches-bin/``): records of 1 label byte + 3072 pixel bytes.

A row holds 1024 red, then green, then blue values; readers return (N, 32, 32, 3) uint8.
"""

from __future__ import annotations

import codecs
import io
import math
import os
import pickle
import pickletools
import tarfile
from pathlib import Path, PurePosixPath

import numpy as np

from handgrad._xp import is_dense_numpy
from handgrad.data._files import require_file
from handgrad.errors import DataFormatError

__all__ = [
    "CLASS_NAMES",
    "RestrictedUnpickler",
    "extract_archive",
    "load_batch",
    "load_binary_batch",
    "load_cifar10",
    "load_meta",
    "safe_loads",
]

CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
_ROW = 3072
_RECORD = 1 + _ROW
_MAX_FILE = 2**31
_MAX_ARCHIVE = 2**32  # uncompressed members together; the real archive holds 178 MB
_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))

# Binary opcodes a protocol-2 pickle of dicts, lists, strings, ints and numpy arrays uses
# (and the protocol 3-5 equivalents); the text opcodes of protocol 0 are not needed.
_ALLOWED_OPCODES = frozenset(
    "PROTO FRAME STOP MARK POP POP_MARK DUP EMPTY_DICT EMPTY_LIST EMPTY_TUPLE TUPLE "
    "TUPLE1 TUPLE2 TUPLE3 APPEND APPENDS SETITEM SETITEMS NONE NEWTRUE NEWFALSE "
    "BININT BININT1 BININT2 LONG1 LONG4 BINFLOAT BINSTRING SHORT_BINSTRING BINBYTES "
    "SHORT_BINBYTES BINUNICODE SHORT_BINUNICODE BINPUT LONG_BINPUT MEMOIZE BINGET "
    "LONG_BINGET GLOBAL STACK_GLOBAL REDUCE BUILD".split()
)
_MAX_MEMO = 1_000_000
_INT_DTYPES = frozenset("u1 i1 u2 i2 u4 i4 u8 i8".split())
_MAX_NDIM = 32


class _NdarrayToken:
    """Stands for ``numpy.ndarray`` in a pickle; only :func:`_reconstruct` accepts it."""

    __slots__ = ()  # no attributes a pickle's BUILD could set


def _sealed(function):  # type: ignore[no-untyped-def]
    """Wrap ``function`` in an attribute-less callable, so BUILD cannot tamper with it."""
    kind = type(function.__name__, (), {"__slots__": (), "__call__": staticmethod(function)})
    return kind()


class _DtypeProxy:
    """What the pickle's ``numpy.dtype(...)`` returns: numpy's own ``__setstate__`` would
    accept any flags (and could corrupt memory), so the state is checked here instead."""

    __slots__ = ("dtype",)

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype

    def __setstate__(self, state: object) -> None:
        # numpy writes version 3, or 4 with a metadata slot; plain dtypes, no fields
        endian = state[1] if isinstance(state, tuple) and len(state) in (8, 9) else None
        endian = endian.decode("latin1") if isinstance(endian, bytes) else endian
        expected = (3, endian, None, None, None, -1, -1, 0)
        if len(state) == 9:
            expected = (4, *expected[1:], None)
        if endian not in ("|", "<", ">", "=") or (state[0], endian, *state[2:]) != expected:
            raise DataFormatError("pickle gives a numpy dtype an unexpected state")
        if endian != "|":
            self.dtype = self.dtype.newbyteorder(endian)


class _ArrayProxy:
    """What ``_reconstruct`` returns; its ``__setstate__`` checks the state and builds the
    array from the raw bytes, whose length must match the shape."""

    __slots__ = ("array",)

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: object) -> None:
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1):
            raise DataFormatError("pickle gives a numpy array an unexpected state")
        _, shape, dtype, fortran, raw = state
        ok_shape = (
            isinstance(shape, tuple)
            and len(shape) <= _MAX_NDIM
            and all(isinstance(d, int) and d >= 0 for d in shape)
        )
        if not (ok_shape and isinstance(dtype, _DtypeProxy) and isinstance(raw, bytes)):
            raise DataFormatError("pickle gives a numpy array an unexpected state")
        if math.prod(shape) * dtype.dtype.itemsize != len(raw):
            raise DataFormatError(f"array of shape {shape} does not match its {len(raw)} bytes")
        order = "F" if fortran else "C"
        array = np.frombuffer(raw, dtype=dtype.dtype).reshape(shape, order=order)
        self.array = array.astype(dtype.dtype.newbyteorder("="), order="C")


def _reconstruct(subtype: object, shape: object, typecode: object) -> _ArrayProxy:
    # numpy pickles an array as _reconstruct(ndarray, (0,), b'b') + __setstate__: the
    # real data arrives in the state, bounded by the file. Any other call could allocate.
    if not isinstance(subtype, _NdarrayToken) or shape not in ((0,), [0]):
        raise DataFormatError("pickle calls numpy _reconstruct with unexpected arguments")
    return _ArrayProxy()


def _dtype(spec: object, align: object = False, copy: object = False) -> _DtypeProxy:
    name = spec.decode("latin1") if isinstance(spec, bytes) else spec
    if not isinstance(name, str) or name not in _INT_DTYPES:
        raise DataFormatError(f"pickle asks for numpy dtype {spec!r}; only integers allowed")
    return _DtypeProxy(np.dtype(name))


def _unwrap(value: object, depth: int = 0) -> object:
    """Replace array proxies by their arrays, down to two levels of dicts and lists."""
    if isinstance(value, _ArrayProxy):
        if value.array is None:
            raise DataFormatError("pickle holds a numpy array without data")
        return value.array
    if depth < 2 and isinstance(value, dict):
        return {k: _unwrap(v, depth + 1) for k, v in value.items()}
    if depth < 2 and isinstance(value, list):
        return [_unwrap(v, depth + 1) for v in value]
    return value


def _latin1_encode(text: object, encoding: object = "latin1") -> bytes:
    # Python 3 writes bytes in protocol 2 as _codecs.encode(str, 'latin1').
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise DataFormatError("pickle calls _codecs.encode with unexpected arguments")
    return codecs.encode(text, "latin1")


def _empty_bytes(*args: object) -> bytes:
    # Python 3 writes b"" in protocol 2 as __builtin__.bytes(); bytes(n) would allocate.
    if args:
        raise DataFormatError("pickle calls bytes() with arguments")
    return b""


_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _sealed(_reconstruct),
    ("numpy._core.multiarray", "_reconstruct"): _sealed(_reconstruct),
    ("numpy", "ndarray"): _NdarrayToken(),
    ("numpy", "dtype"): _sealed(_dtype),
    ("_codecs", "encode"): _sealed(_latin1_encode),
    ("__builtin__", "bytes"): _sealed(_empty_bytes),
    ("builtins", "bytes"): _sealed(_empty_bytes),
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals a CIFAR batch needs.

    Every other global -- ``os.system``, ``builtins.eval``, any class -- is refused with
    :class:`DataFormatError` before it is imported, so nothing it names is executed.
    Use :func:`safe_loads`, which also screens the opcodes first.
    """

    def find_class(self, module: str, name: str) -> object:
        try:
            return _SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise DataFormatError(
                f"pickle refers to {module}.{name}, which a CIFAR file never needs; refused"
            ) from None

    def persistent_load(self, pid: object) -> object:
        raise DataFormatError("pickle uses persistent ids; refused")


def safe_loads(data: bytes, name: str = "<pickle>") -> object:
    """Unpickle untrusted ``data`` with :class:`RestrictedUnpickler` (``encoding='bytes'``)."""
    _screen_opcodes(data, name)
    try:
        return _unwrap(RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load())
    except DataFormatError as exc:
        raise DataFormatError(f"{name}: {exc}") from None
    except Exception as exc:  # any failure of untrusted data means a corrupt file
        raise DataFormatError(f"{name}: corrupt pickle ({type(exc).__name__}: {exc})") from None


def _screen_opcodes(data: bytes, name: str) -> None:
    """Walk the opcodes without executing them; refuse unknown ones and wild memo indices."""
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name not in _ALLOWED_OPCODES:
                raise DataFormatError(f"{name}: pickle opcode {opcode.name} is not allowed")
            if opcode.name in ("BINPUT", "LONG_BINPUT", "BINGET", "LONG_BINGET"):
                if not 0 <= int(arg) < _MAX_MEMO:
                    raise DataFormatError(f"{name}: pickle memo index {arg} out of range")
    except DataFormatError:
        raise
    except Exception as exc:
        raise DataFormatError(f"{name}: not a valid pickle ({exc})") from None


def _read_file(path: str | os.PathLike) -> bytes:
    require_file(path, "CIFAR batch file")
    size = os.path.getsize(path)
    if size > _MAX_FILE:
        raise DataFormatError(f"{path}: {size} bytes, larger than any CIFAR batch")
    return Path(path).read_bytes()


def _field(batch: dict, key: str) -> object:
    for candidate in (key.encode(), key):
        if candidate in batch:
            return batch[candidate]
    keys = sorted(k.decode("latin1") if isinstance(k, bytes) else str(k) for k in batch)
    raise DataFormatError(f"batch has no {key!r} entry (it has {keys})")


def load_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one batch of the Python version (``data_batch_1`` ... ``test_batch``).

    Returns
    -------
    X : ndarray of shape (N, 32, 32, 3), uint8
    y : ndarray of shape (N,), int64, values in 0..9
    """
    batch = safe_loads(_read_file(path), str(path))
    if not isinstance(batch, dict):
        raise DataFormatError(f"{path}: pickle holds {type(batch).__name__}, expected a dict")
    try:
        data, labels = _field(batch, "data"), _field(batch, "labels")
    except DataFormatError as exc:
        raise DataFormatError(f"{path}: {exc}") from None
    if not is_dense_numpy(data) or data.dtype != np.uint8 or data.ndim != 2:
        raise DataFormatError(f"{path}: 'data' is not a 2-D uint8 array")
    if data.shape[1] != _ROW:
        raise DataFormatError(f"{path}: 'data' has {data.shape[1]} columns, expected {_ROW}")
    y = _labels(path, labels, len(data))
    return _to_images(data), y


def _labels(path: str | os.PathLike, labels: object, n: int) -> np.ndarray:
    if is_dense_numpy(labels):
        labels = labels.reshape(-1).tolist()
    ok = isinstance(labels, list) and all(
        isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 9 for v in labels
    )
    if not ok:
        raise DataFormatError(f"{path}: 'labels' is not a list of integers in 0..9")
    if len(labels) != n:
        raise DataFormatError(f"{path}: {n} images but {len(labels)} labels")
    return np.array(labels, dtype=np.int64).reshape(n)


def _to_images(rows: np.ndarray) -> np.ndarray:
    """(N, 3072) rows of R, G, B planes -> (N, 32, 32, 3) images."""
    return np.ascontiguousarray(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def load_meta(path: str | os.PathLike) -> list[str]:
    """Class names from ``batches.meta`` (pickle) or ``batches.meta.txt`` (binary version)."""
    raw = _read_file(path)
    if str(path).endswith(".txt"):
        try:
            names = [line.strip() for line in raw.decode("utf-8").splitlines() if line.strip()]
        except UnicodeDecodeError:
            raise DataFormatError(f"{path}: not UTF-8 text") from None
    else:
        meta = safe_loads(raw, str(path))
        if not isinstance(meta, dict):
            raise DataFormatError(f"{path}: pickle holds {type(meta).__name__}, expected dict")
        try:
            entries = _field(meta, "label_names")
        except DataFormatError as exc:
            raise DataFormatError(f"{path}: {exc}") from None
        if not isinstance(entries, list) or not all(isinstance(e, bytes | str) for e in entries):
            raise DataFormatError(f"{path}: 'label_names' is not a list of strings")
        names = [e.decode("latin1") if isinstance(e, bytes) else e for e in entries]
    if len(names) != 10:
        raise DataFormatError(f"{path}: {len(names)} class names, expected 10")
    return names


def load_binary_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one batch of the binary version (``data_batch_1.bin`` ... ``test_batch.bin``).

    Returns
    -------
    X : ndarray of shape (N, 32, 32, 3), uint8
    y : ndarray of shape (N,), int64
    """
    raw = _read_file(path)
    if not raw or len(raw) % _RECORD:
        raise DataFormatError(
            f"{path}: {len(raw)} bytes is not a positive multiple of the {_RECORD}-byte "
            "CIFAR-10 record (1 label byte + 3072 pixel bytes)"
        )
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _RECORD)
    y = records[:, 0].astype(np.int64)
    if y.max() > 9:
        bad = int(np.argmax(y > 9))
        raise DataFormatError(f"{path}: record {bad} has label {y[bad]}, outside 0..9")
    return _to_images(records[:, 1:]), y


def load_cifar10(
    folder: str | os.PathLike,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Read the official split from an extracted folder of either version.

    ``folder`` is ``cifar-10-batches-py``/``-bin`` or a folder holding one of them.

    Returns
    -------
    X_train (50000, 32, 32, 3) uint8, y_train (50000,), X_test (10000, 32, 32, 3),
    y_test (10000,), class_names (10 strings)
    """
    folder = Path(folder)
    for sub in (folder, folder / "cifar-10-batches-py", folder / "cifar-10-batches-bin"):
        if (sub / "data_batch_1").is_file():
            names, loader, suffix = load_meta(sub / "batches.meta"), load_batch, ""
            break
        if (sub / "data_batch_1.bin").is_file():
            meta = sub / "batches.meta.txt"
            names = load_meta(meta) if meta.is_file() else list(CLASS_NAMES)
            loader, suffix = load_binary_batch, ".bin"
            break
    else:
        raise FileNotFoundError(f"no CIFAR-10 batches (data_batch_1[.bin]) under {folder}")
    train = [loader(sub / f"{b}{suffix}") for b in _TRAIN]
    X_test, y_test = loader(sub / f"test_batch{suffix}")
    X_train = np.concatenate([X for X, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return X_train, y_train, X_test, y_test, names


def extract_archive(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Extract a CIFAR ``.tar.gz`` into ``dest``, refusing unsafe members.

    A member with an absolute path, a ``..`` component, a link, a device or fifo, or a
    total size above 4 GiB makes the whole archive refused before anything is written;
    extraction then also runs under ``tarfile``'s ``data`` filter.

    Returns
    -------
    dest : Path of the folder extracted into
    """
    dest = Path(dest)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            _check_members(archive, members)
            dest.mkdir(parents=True, exist_ok=True)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, members=members, filter="data")
            else:  # pragma: no cover - Python without PEP 706; members were checked above
                tar.extractall(dest, members=members)
    except DataFormatError:
        raise
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise DataFormatError(f"{archive}: corrupt or unsafe tar archive ({exc})") from None
    return dest


def _check_members(archive: str | os.PathLike, members: list[tarfile.TarInfo]) -> None:
    total = 0
    for member in members:
        path = PurePosixPath(member.name)
        first = path.parts[0] if path.parts else ""
        if path.is_absolute() or member.name.startswith("\\") or ":" in first:
            raise DataFormatError(f"{archive}: member {member.name!r} has an absolute path")
        if ".." in path.parts or ".." in member.name.split("\\"):
            raise DataFormatError(f"{archive}: member {member.name!r} has a '..' component")
        if not (member.isfile() or member.isdir()):
            raise DataFormatError(
                f"{archive}: member {member.name!r} is a link, device or fifo; refused"
            )
        total += member.size
    if total > _MAX_ARCHIVE:
        raise DataFormatError(f"{archive}: members total {total} bytes; refused")
