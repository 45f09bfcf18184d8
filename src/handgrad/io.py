"""Safe model files: safetensors tensors plus one JSON metadata entry, never pickle.

A handgrad file is a plain safetensors file. Its ``__metadata__`` holds a single key,
``"handgrad"``, whose value is a JSON envelope::

    {"format": "handgrad-model", "format_version": 1, "handgrad_version": "0.1.0",
     "metadata": {...caller's metadata...}, "checksum": "sha256:..."}

The checksum covers the canonical JSON of the envelope (without the checksum) and every
tensor's name, dtype, shape and bytes, so an edited number anywhere is caught on load.
Files are written atomically: a temporary file in the target folder, fsync, then
``os.replace``; a failed save leaves any earlier file untouched.

Models plug in through a two-method protocol: ``model._get_state() -> (tensors,
metadata)`` and ``cls._from_state(tensors, metadata)``, with the class registered under
a ``kind`` name by :func:`register_model_kind`. Loading only ever builds registered kinds.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from handgrad._atomic import write_atomically
from handgrad.errors import ModelFileError

FORMAT_VERSION = 1
MODEL_FORMAT = "handgrad-model"
CHECKPOINT_FORMAT = "handgrad-checkpoint"
METADATA_KEY = "handgrad"

_NUMERIC_KINDS = frozenset("biuf")
_MODEL_KINDS: dict[str, type] = {}
#: handgrad's own kinds and the module defining each, imported when a file needs it.
_BUILTIN_KINDS = {
    "MLP": "handgrad.network",
    "TwoLayerNet": "handgrad.twolayer",
    "MLPClassifier": "handgrad.estimator",
}

T = TypeVar("T", bound=type)


def _handgrad_version() -> str:
    try:
        return importlib.metadata.version("handgrad")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


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
        "handgrad_version": _handgrad_version(),
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


def _read_envelope(path: Path, raw: bytes) -> dict[str, Any]:
    """Parse the safetensors header by hand and return the handgrad JSON envelope."""
    if len(raw) < 8:
        raise _corrupt(path, f"only {len(raw)} bytes")
    header_len = int.from_bytes(raw[:8], "little")
    if header_len > len(raw) - 8:
        raise _corrupt(path, f"header of {header_len} bytes in a {len(raw)}-byte file")
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
    raw = path.read_bytes()
    envelope = _read_envelope(path, raw)
    _check_envelope(path, envelope, file_format)
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


# ------------------------------------------------------------------------------ models


def register_model_kind(kind: str, cls: T | None = None) -> T | Callable[[T], T]:
    """Register ``cls`` as the class :func:`load_model` builds for ``kind``.

    Use as a decorator, ``@register_model_kind("MLP")``, or call it directly,
    ``register_model_kind("MLP", MLP)``. The class must provide a classmethod
    ``_from_state(tensors, metadata)`` and instances a method ``_get_state()``.
    """
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"kind must be a non-empty string, got {kind!r}")

    def register(cls: T) -> T:
        for method in ("_get_state", "_from_state"):
            if not callable(getattr(cls, method, None)):
                raise TypeError(f"cannot register {cls.__name__}: it has no {method} method")
        previous = _MODEL_KINDS.get(kind)
        if previous is not None and not _same_class(previous, cls):
            raise ValueError(
                f"model kind {kind!r} is already registered to "
                f"{previous.__module__}.{previous.__qualname__}"
            )
        _MODEL_KINDS[kind] = cls
        return cls

    return register if cls is None else register(cls)


def _same_class(a: type, b: type) -> bool:
    # A reloaded module re-creates its classes; treat those as the same registration.
    return (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)


def _kind_of(model: object) -> str | None:
    for kind, cls in _MODEL_KINDS.items():
        if type(model) is cls:
            return kind
    return None


def save_model(
    path: str | os.PathLike[str], model: object, extra: Mapping[str, Any] | None = None
) -> Path:
    """Save a registered model through its ``_get_state()``; see :func:`save_arrays`.

    The metadata's ``"kind"`` defaults to the kind ``type(model)`` is registered under;
    ``extra`` (JSON) is stored beside the model's own metadata, e.g. its preprocessing.
    """
    tensors, metadata = model._get_state()
    metadata = {**metadata, **(extra or {})}
    kind = metadata.setdefault("kind", _kind_of(model))
    if kind not in _MODEL_KINDS:
        raise TypeError(
            f"cannot save {type(model).__name__}: model kind {kind!r} is not registered "
            "(decorate the class with @register_model_kind)"
        )
    return save_arrays(path, tensors, metadata)


def model_class(kind: Any) -> type:
    """The class registered under ``kind``; handgrad's own kinds are imported on demand
    from a fixed list (nothing named in a file is ever imported)."""
    if isinstance(kind, str) and kind in _BUILTIN_KINDS:
        importlib.import_module(_BUILTIN_KINDS[kind])  # its classes register themselves
    cls = _MODEL_KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        known = ", ".join(sorted(_MODEL_KINDS)) or "none"
        raise ModelFileError(f"a model of unknown kind {kind!r} (this handgrad knows: {known})")
    return cls


def load_model(path: str | os.PathLike[str], *, return_metadata: bool = False) -> Any:
    """Load a model saved by :func:`save_model` (with ``return_metadata``, the pair
    ``(model, metadata)``, the file read once).

    Only classes registered with :func:`register_model_kind` can be built; nothing named
    in the file is ever imported.

    Raises
    ------
    ModelFileError
        Everything :func:`load_arrays` raises for, an unknown ``kind``, or state the
        class cannot rebuild from.
    """
    tensors, metadata = load_arrays(path)
    kind = metadata.get("kind")
    try:
        cls = model_class(kind)
    except ModelFileError as exc:
        raise ModelFileError(f"{path} holds {exc}") from None
    try:
        model = cls._from_state(tensors, metadata)
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(
            f"{path}: cannot rebuild a {kind} from the saved state: {exc}"
        ) from exc
    return (model, metadata) if return_metadata else model
