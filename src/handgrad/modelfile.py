"""Safe model files: safetensors tensors plus one JSON metadata entry, never pickle.

A handgrad file is a plain safetensors file. Its ``__metadata__`` holds a single key,
``"handgrad"``, whose value is a JSON envelope::

    {"format": "handgrad-model", "format_version": 1, "handgrad_version": "0.1.0",
     "metadata": {...caller's metadata...}, "checksum": "sha256:..."}

The checksum covers the canonical JSON of the envelope (without the checksum) and every
tensor's name, dtype, shape and bytes, so an edited number anywhere is caught on load.
Files are written atomically (:func:`handgrad._atomic.write_atomically`); a failed save
leaves any earlier file untouched.

This module knows files, not models: what a file holds for each kind of model, and for
a training run, is :mod:`handgrad.state`'s.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from handgrad._atomic import write_atomically
from handgrad._validation import check_memory, require_file
from handgrad._version import handgrad_version
from handgrad.errors import ModelFileError

FORMAT_VERSION = 1
MODEL_FORMAT = "handgrad-model"
CHECKPOINT_FORMAT = "handgrad-checkpoint"
METADATA_KEY = "handgrad"

_NUMERIC_KINDS = frozenset("biuf")
#: The largest header safetensors itself reads (its ``MAX_HEADER_SIZE``).
MAX_HEADER_BYTES = 100_000_000


# ---------------------------------------------------------------------------- checksum


def _canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _checksum(envelope: Mapping[str, Any], tensors: Mapping[str, np.ndarray]) -> str:
    """sha256 over the envelope (minus its checksum) and each tensor in name order."""
    digest = hashlib.sha256()
    digest.update(_canonical_json({k: v for k, v in envelope.items() if k != "checksum"}))
    for name in sorted(tensors):
        array = np.asarray(tensors[name], order="C")
        spec = {"name": name, "dtype": array.dtype.str, "shape": list(array.shape)}
        digest.update(b"\0" + _canonical_json(spec) + b"\0")
        digest.update(array.reshape(-1).view(np.uint8))
    return "sha256:" + digest.hexdigest()


# -------------------------------------------------------------------------------- save


def _prepare_tensors(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """C-contiguous, little-endian numeric copies (safetensors reads raw memory)."""
    if not isinstance(tensors, Mapping):
        raise TypeError(f"tensors must be a dict of name -> numpy array, got {type(tensors)}")
    prepared = {}
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"tensor names must be strings, got {name!r}")
        if name == "__metadata__":
            raise ValueError("'__metadata__' is reserved by safetensors; rename that tensor")
        array = np.asarray(value)
        if array.dtype.kind not in _NUMERIC_KINDS:
            raise TypeError(
                f"tensor {name!r} has dtype {array.dtype}; only bool, integer and float "
                "arrays can be saved"
            )
        # asarray, not ascontiguousarray, which would turn 0-d arrays into 1-d ones
        prepared[name] = np.asarray(array, dtype=array.dtype.newbyteorder("<"), order="C")
    return prepared


def _normalise_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Round-trip through JSON so the saved and reloaded metadata hash the same."""
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
    try:
        return json.loads(json.dumps(dict(metadata)))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"metadata must be JSON-serialisable: {exc}") from exc


def _save(
    path: str | os.PathLike[str],
    tensors: Mapping[str, np.ndarray],
    metadata: Mapping[str, Any],
    file_format: str,
) -> Path:
    from safetensors.numpy import save as serialise

    path = Path(path)
    prepared = _prepare_tensors(tensors)
    envelope = {
        "format": file_format,
        "format_version": FORMAT_VERSION,
        "handgrad_version": handgrad_version(),
        "metadata": _normalise_metadata(metadata),
    }
    envelope["checksum"] = _checksum(envelope, prepared)
    data = serialise(prepared, metadata={METADATA_KEY: json.dumps(envelope)})
    return write_atomically(path, data)


# -------------------------------------------------------------------------------- load


def _corrupt(path: Path, detail: object) -> ModelFileError:
    return ModelFileError(
        f"{path} is not a valid handgrad model file (truncated or corrupt: {detail})"
    )


def _read_header(path: Path, handle: BinaryIO) -> bytes:
    """The 8-byte length and the JSON header it announces, read alone: a length beyond
    the file's size is refused before anything else is read."""
    size = os.fstat(handle.fileno()).st_size
    head = handle.read(8)
    if len(head) < 8:
        raise _corrupt(path, f"only {len(head)} bytes")
    header_len = int.from_bytes(head, "little")
    if header_len > size - 8:
        raise _corrupt(path, f"header of {header_len} bytes in a {size}-byte file")
    if header_len > MAX_HEADER_BYTES:
        raise _corrupt(path, f"header of {header_len} bytes, above safetensors' limit")
    return head + handle.read(header_len)


def _read_envelope(path: Path, raw: bytes) -> dict[str, Any]:
    """Parse the safetensors header by hand and return the handgrad JSON envelope
    (``raw``: the file's first bytes, its header whole)."""
    header_len = int.from_bytes(raw[:8], "little")
    try:
        header = json.loads(raw[8 : 8 + header_len].decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise _corrupt(path, f"header is not JSON: {exc}") from exc
    stored = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(stored, dict) or not isinstance(stored.get(METADATA_KEY), str):
        raise ModelFileError(
            f"{path} is a safetensors file but not a handgrad file (no {METADATA_KEY!r} "
            "metadata; was it written by another program?)"
        )
    try:
        envelope = json.loads(stored[METADATA_KEY])
    except (ValueError, RecursionError) as exc:
        raise _corrupt(path, f"handgrad metadata is not JSON: {exc}") from exc
    if not isinstance(envelope, dict):
        raise _corrupt(path, "handgrad metadata is not a JSON object")
    return envelope


def _check_envelope(path: Path, envelope: Mapping[str, Any], file_format: str) -> None:
    found = envelope.get("format")
    if found != file_format:
        raise ModelFileError(f"{path} is a {found!r} file, not a {file_format!r} file")
    version = envelope.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _corrupt(path, f"format_version {version!r} is not a positive integer")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} was made by a newer handgrad (format version {version}; this handgrad "
            f"reads {FORMAT_VERSION}); upgrade handgrad to load it"
        )
    if not isinstance(envelope.get("metadata"), dict):
        raise _corrupt(path, "handgrad metadata has no 'metadata' object")


def _deserialise(path: Path, raw: bytes) -> dict[str, np.ndarray]:
    from safetensors.numpy import load as deserialise

    try:
        return deserialise(raw)
    except Exception as exc:
        raise _corrupt(path, exc) from exc
    except BaseException as exc:  # the Rust core's PanicException derives BaseException
        if type(exc).__name__ != "PanicException":
            raise
        raise _corrupt(path, exc) from exc


def _load(
    path: str | os.PathLike[str], file_format: str
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    path = Path(path)
    require_file(path, "model file")
    with open(path, "rb") as handle:
        raw = _read_header(path, handle)
        envelope = _read_envelope(path, raw)
        _check_envelope(path, envelope, file_format)
        size = os.fstat(handle.fileno()).st_size
        check_memory(size, path.name, "to load")
        raw += handle.read(size - len(raw))
    tensors = _deserialise(path, raw)
    if envelope.get("checksum") != _checksum(envelope, tensors):
        raise ModelFileError(
            f"{path} failed its integrity check: metadata or weights were modified after "
            "saving (or the file is corrupt)"
        )
    # safetensors hands back read-only views of `raw`; callers train on these arrays.
    return {name: array.copy() for name, array in tensors.items()}, envelope["metadata"]


# ------------------------------------------------------------------------ public arrays


def save_arrays(
    path: str | os.PathLike[str],
    tensors: Mapping[str, np.ndarray],
    metadata: Mapping[str, Any],
) -> Path:
    """Save named arrays and JSON metadata to a handgrad model file, atomically.

    Parameters
    ----------
    path : str or Path
        Target file; its folder must exist. An existing file is replaced only once the
        new one is fully on disk.
    tensors : dict of str -> ndarray
        Bool, integer or float arrays of any shape (copied to C order, little-endian).
    metadata : dict
        JSON-serialisable; returned by :func:`load_arrays` after a JSON round trip.

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    FileNotFoundError, NotADirectoryError, PermissionError
        The folder is missing, not a folder, or not writable.
    TypeError
        A tensor is not numeric, or the metadata is not JSON-serialisable.
    """
    return _save(path, tensors, metadata, MODEL_FORMAT)


def load_arrays(
    path: str | os.PathLike[str],
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load and verify a file written by :func:`save_arrays`; never unpickles.

    Returns
    -------
    tensors : dict of str -> ndarray
        Writable copies, bit-identical to what was saved.
    metadata : dict
        The caller's metadata.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ModelFileError
        The file is truncated, corrupt, not a handgrad model file, of a newer format
        version, or was modified after saving.
    """
    return _load(path, MODEL_FORMAT)


def save_checkpoint(
    path: str | os.PathLike[str],
    tensors: Mapping[str, np.ndarray],
    metadata: Mapping[str, Any],
) -> Path:
    """Save a training checkpoint (weights, optimizer arrays; RNG state, epoch and
    history in ``metadata``). Same mechanism as :func:`save_arrays`, format
    ``"handgrad-checkpoint"``."""
    return _save(path, tensors, metadata, CHECKPOINT_FORMAT)


def load_checkpoint(
    path: str | os.PathLike[str],
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load and verify a file written by :func:`save_checkpoint` (see
    :func:`load_arrays` for what is checked)."""
    return _load(path, CHECKPOINT_FORMAT)
