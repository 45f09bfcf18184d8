"""IDX files, the format of MNIST and Fashion-MNIST, raw or gzip-compressed.

An IDX file is a 4-byte magic ``00 00 <dtype code> <ndim>``, then ``ndim`` big-endian
uint32 dimensions, then the data in C order, big-endian. MNIST images have magic 2051
(uint8, ndim 3) and labels magic 2049 (uint8, ndim 1).

The reader never trusts the header's size: a size above ``max_bytes`` or above what the
file could hold is refused before anything is allocated, and the data is read in
bounded chunks, so a lying header cannot make it allocate more than the file delivers.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import struct
import zlib
from typing import BinaryIO

import numpy as np

from handgrad._atomic import write_atomically
from handgrad.data._files import require_file
from handgrad.errors import DataFormatError

__all__ = ["MAX_BYTES", "load_mnist_files", "read_idx", "write_idx"]

#: Default cap on the data size a header may claim (2 GiB; MNIST train images are 47 MB).
MAX_BYTES = 2**31

# IDX dtype codes; 0x0A is undefined in the format.
_CODE_TO_DTYPE = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_KIND_TO_CODE = {(d.kind, d.itemsize): code for code, d in _CODE_TO_DTYPE.items()}
_GZIP_MAGIC = b"\x1f\x8b"
# Deflate cannot expand data by more than about 1032:1; anything beyond is a lie.
_MAX_GZIP_RATIO = 1100
_CHUNK = 1 << 20
_MAGIC_IMAGES = 2051
_MAGIC_LABELS = 2049


def read_idx(source: str | os.PathLike | BinaryIO, *, max_bytes: int = MAX_BYTES) -> np.ndarray:
    """Read an IDX file (raw or gzip-compressed, detected by its magic bytes).

    Parameters
    ----------
    source : path or binary file object
    max_bytes : int
        Largest data size a header may claim; larger files are refused unread.

    Returns
    -------
    array : ndarray of shape given by the header, native byte order.

    Raises
    ------
    DataFormatError
        Bad magic, unknown dtype code, too large, truncated or trailing data.
    """
    if isinstance(source, str | os.PathLike):
        require_file(source, "IDX file")
        with open(source, "rb") as handle:
            return _read_stream(handle, str(source), max_bytes)
    name = str(getattr(source, "name", "<stream>"))
    return _read_stream(source, name, max_bytes)


def _read_stream(handle: BinaryIO, name: str, max_bytes: int) -> np.ndarray:
    available = _remaining_bytes(handle)
    head = handle.read(2)
    if available is None:
        # Not seekable: keep the two bytes by reading on from an in-memory copy.
        handle = io.BufferedReader(_Prefixed(head, handle))  # type: ignore[arg-type]
    else:
        handle.seek(-len(head), io.SEEK_CUR)
    if head == _GZIP_MAGIC:
        limit = None if available is None else available * _MAX_GZIP_RATIO
        try:
            with gzip.GzipFile(fileobj=handle, mode="rb") as stream:
                return _parse(stream, name, max_bytes, limit)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataFormatError(f"{name}: corrupt gzip stream ({exc})") from None
    return _parse(handle, name, max_bytes, available)


def _remaining_bytes(handle: BinaryIO) -> int | None:
    """Bytes left in a seekable file, or None when it cannot be told."""
    try:
        if not handle.seekable():
            return None
        here = handle.tell()
        end = handle.seek(0, io.SEEK_END)
        handle.seek(here)
    except (OSError, AttributeError, ValueError):
        return None
    return end - here


class _Prefixed(io.RawIOBase):
    """A raw stream that yields ``prefix`` and then the rest of ``stream``."""

    def __init__(self, prefix: bytes, stream: BinaryIO) -> None:
        self._prefix = prefix
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        if self._prefix:
            n = min(len(buffer), len(self._prefix))
            buffer[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _parse(stream: BinaryIO, name: str, max_bytes: int, limit: int | None) -> np.ndarray:
    """Parse header and data; ``limit`` bounds the bytes the stream can deliver."""
    magic = _read_bounded(stream, 4)
    if len(magic) < 4:
        raise DataFormatError(f"{name}: not an IDX file (only {len(magic)} bytes)")
    if magic[0] != 0 or magic[1] != 0:
        raise DataFormatError(
            f"{name}: not an IDX file (magic {magic.hex()} does not start with 0000)"
        )
    code, ndim = magic[2], magic[3]
    if code not in _CODE_TO_DTYPE:
        raise DataFormatError(f"{name}: unknown IDX dtype code 0x{code:02X}")
    if ndim == 0:
        raise DataFormatError(f"{name}: IDX header has 0 dimensions")
    raw_dims = _read_bounded(stream, 4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise DataFormatError(f"{name}: truncated IDX header ({ndim} dimensions announced)")
    shape = struct.unpack(f">{ndim}I", raw_dims)
    dtype = _CODE_TO_DTYPE[code]
    expected = math.prod(shape) * dtype.itemsize
    if expected > max_bytes:
        raise DataFormatError(
            f"{name}: IDX header claims shape {shape} ({expected} bytes), "
            f"more than the limit of {max_bytes} bytes"
        )
    header = 4 + 4 * ndim
    if limit is not None and expected > limit - header:
        raise DataFormatError(
            f"{name}: truncated IDX data: header shape {shape} needs {expected} bytes, "
            f"but the file holds at most {max(limit - header, 0)}"
        )
    data = _read_bounded(stream, expected + 1)
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "trailing data after"
        actual = f"{len(data)}" if len(data) < expected else "more"
        raise DataFormatError(
            f"{name}: {what} IDX data: shape {shape} needs {expected} bytes, got {actual}"
        )
    try:
        array = np.frombuffer(data, dtype=dtype).reshape(shape)
    except ValueError:  # the data fit the shape, so only its rank can be refused
        raise DataFormatError(
            f"{name}: IDX header announces {ndim} dimensions, more than a NumPy array can have"
        ) from None
    return array.astype(dtype.newbyteorder("="), copy=dtype.itemsize > 1)


def _read_bounded(stream: BinaryIO, n: int) -> bytearray:
    """Read up to ``n`` bytes in chunks, so memory follows what actually arrives."""
    out = bytearray()
    while len(out) < n:
        chunk = stream.read(min(_CHUNK, n - len(out)))
        if not chunk:
            break
        out += chunk
    return out


def write_idx(path: str | os.PathLike, array: np.ndarray, *, compress: bool = True) -> None:
    """Write ``array`` as an IDX file (gzip-compressed unless ``compress=False``).

    Parameters
    ----------
    path : path of the file to write
    array : ndarray of dtype uint8, int8, int16, int32, float32 or float64, ndim 1..255
    compress : bool
        Gzip the file, as MNIST is published.
    """
    array = np.asarray(array)
    code = _KIND_TO_CODE.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        raise ValueError(f"array has dtype {array.dtype}, which IDX cannot store")
    if not 1 <= array.ndim <= 255 or any(d >= 2**32 for d in array.shape):
        raise ValueError(f"array has shape {array.shape}, which IDX cannot store")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=_CODE_TO_DTYPE[code]).tobytes()
    data = gzip.compress(payload, mtime=0) if compress else payload
    write_atomically(path, data)


def load_mnist_files(
    images_path: str | os.PathLike, labels_path: str | os.PathLike
) -> tuple[np.ndarray, np.ndarray]:
    """Read one MNIST-style pair of IDX files (images magic 2051, labels magic 2049).

    Returns
    -------
    X : ndarray of shape (N, 28, 28), uint8
    y : ndarray of shape (N,), int64, values in 0..9
    """
    X = read_idx(images_path)
    y = read_idx(labels_path)
    _expect_magic(images_path, X, _MAGIC_IMAGES, 3)
    _expect_magic(labels_path, y, _MAGIC_LABELS, 1)
    if X.shape[1:] != (28, 28):
        raise DataFormatError(f"{images_path}: images are {X.shape[1:]}, expected (28, 28)")
    if len(X) != len(y):
        raise DataFormatError(
            f"{images_path} holds {len(X)} images but {labels_path} holds {len(y)} labels"
        )
    if y.size and y.max() > 9:
        raise DataFormatError(f"{labels_path}: label {int(y.max())} is outside 0..9")
    return X, y.astype(np.int64)


def _expect_magic(path: str | os.PathLike, array: np.ndarray, magic: int, ndim: int) -> None:
    actual = (_KIND_TO_CODE[(array.dtype.kind, array.dtype.itemsize)] << 8) | array.ndim
    if actual != magic:
        raise DataFormatError(
            f"{path}: IDX magic is {actual}, expected {magic} (uint8, {ndim} dimensions)"
        )
