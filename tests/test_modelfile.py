"""Tests for handgrad.modelfile: round trips, atomic saves, and every way a file can go bad."""

from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save as raw_safetensors

from handgrad import modelfile
from handgrad.errors import ModelFileError


def _tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "W1": rng.standard_normal((5, 4)).astype(np.float32),
        "b1": rng.standard_normal(4),  # float64
        "counts": rng.integers(-(2**40), 2**40, size=(3, 2), dtype=np.int64),
        "step": np.array(7, dtype=np.int64),  # 0-d must stay 0-d
        "mask": np.array([True, False, True]),
    }


METADATA = {"kind": "MLP", "epoch": 12, "learning_rate": 0.001, "history": {"loss": [2.3, 1.1]}}


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return modelfile.save_arrays(tmp_path / "model.safetensors", _tensors(), METADATA)


def _assert_same(loaded: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert loaded.keys() == expected.keys()
    for name, array in expected.items():
        assert loaded[name].dtype == array.dtype, name
        assert loaded[name].shape == array.shape, name
        assert loaded[name].tobytes() == array.tobytes(), name  # bit-identical


# ------------------------------------------------------------------------- round trips


def test_round_trip_is_bit_identical(saved: Path) -> None:
    tensors, metadata = modelfile.load_arrays(saved)
    _assert_same(tensors, _tensors())
    assert metadata == METADATA
    assert all(t.flags.writeable for t in tensors.values())


def test_non_contiguous_and_big_endian_arrays_are_saved_by_value(tmp_path: Path) -> None:
    W = np.arange(12, dtype=np.float64).reshape(3, 4)
    tensors = {"WT": W.T, "big": W.astype(">f8"), "strided": W[:, ::2]}
    loaded, _ = modelfile.load_arrays(modelfile.save_arrays(tmp_path / "m", tensors, {}))
    for name, array in tensors.items():
        np.testing.assert_array_equal(loaded[name], array)
        assert loaded[name].shape == array.shape


def test_header_carries_format_and_version(saved: Path) -> None:
    raw = saved.read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    envelope = json.loads(header["__metadata__"]["handgrad"])
    assert envelope["format"] == "handgrad-model"
    assert envelope["format_version"] == modelfile.FORMAT_VERSION == 1
    assert isinstance(envelope["handgrad_version"], str)
    assert envelope["checksum"].startswith("sha256:")
    assert list(header["__metadata__"]) == ["handgrad"]


def test_checkpoint_round_trip_and_formats_are_not_interchangeable(tmp_path: Path) -> None:
    rng_state = np.random.default_rng(5).bit_generator.state  # 128-bit ints in JSON
    path = modelfile.save_checkpoint(tmp_path / "ckpt", _tensors(), {"rng": rng_state, "epoch": 3})
    tensors, metadata = modelfile.load_checkpoint(path)
    _assert_same(tensors, _tensors())
    assert metadata["rng"] == rng_state
    with pytest.raises(ModelFileError, match="'handgrad-checkpoint' file, not a 'handgrad-model'"):
        modelfile.load_arrays(path)


def test_bad_inputs_to_save_are_rejected_before_writing(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="tensor 'names' has dtype <U1"):
        modelfile.save_arrays(tmp_path / "m", {"names": np.array(["a", "b"])}, {})
    with pytest.raises(TypeError, match="JSON-serialisable"):
        modelfile.save_arrays(tmp_path / "m", {}, {"f": object()})
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------- atomic saving


def _fail(*args: object, **kwargs: object) -> None:
    raise OSError("simulated disk failure")


@pytest.mark.parametrize("step", ["fsync", "replace"])
def test_failed_save_leaves_old_file_and_no_temp(
    saved: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    before = saved.read_bytes()
    monkeypatch.setattr(os, step, _fail)
    with pytest.raises(OSError, match="simulated"):
        modelfile.save_arrays(saved, {"W1": np.zeros((100, 100))}, {"kind": "other"})
    monkeypatch.undo()
    assert saved.read_bytes() == before
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]
    _assert_same(modelfile.load_arrays(saved)[0], _tensors())


def test_failed_partial_write_leaves_old_file(saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = saved.read_bytes()
    real = tempfile.NamedTemporaryFile

    def half_writing(*args: object, **kwargs: object):
        handle = real(*args, **kwargs)
        write = handle.write

        def write_half(data: bytes) -> int:
            write(data[: len(data) // 2])
            raise OSError("simulated: no space left on device")

        handle.write = write_half
        return handle

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", half_writing)
    with pytest.raises(OSError, match="no space"):
        modelfile.save_arrays(saved, _tensors(), {"epoch": 99})
    assert saved.read_bytes() == before
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]


def test_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"folder .*nowhere does not exist"):
        modelfile.save_arrays(tmp_path / "nowhere" / "m.safetensors", {}, {})


def test_parent_that_is_a_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("x")
    with pytest.raises(NotADirectoryError, match="plain is not a folder"):
        modelfile.save_arrays(tmp_path / "plain" / "m.safetensors", {}, {})


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores chmod")
def test_unwritable_folder_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o500)
    try:
        with pytest.raises(PermissionError, match="locked is not writable"):
            modelfile.save_arrays(folder / "m.safetensors", {}, {})
    finally:
        folder.chmod(0o700)


def test_permission_error_names_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)  # works even as root
    with pytest.raises(PermissionError, match=re.escape(f"folder {tmp_path} is not writable")):
        modelfile.save_arrays(tmp_path / "m.safetensors", {}, {})


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        modelfile.load_arrays(tmp_path / "absent.safetensors")


# ---------------------------------------------------------------------- corrupt files


def test_truncated_files_raise(saved: Path, tmp_path: Path) -> None:
    raw = saved.read_bytes()
    cut = tmp_path / "cut.safetensors"
    for n in [*range(0, len(raw), 37), len(raw) - 1]:
        cut.write_bytes(raw[:n])
        with pytest.raises(ModelFileError, match=r"cut\.safetensors"):
            modelfile.load_arrays(cut)


def test_edited_metadata_number_is_detected(saved: Path) -> None:
    raw = saved.read_bytes()
    edited = raw.replace(b'\\"epoch\\": 12', b'\\"epoch\\": 13')
    assert edited != raw and len(edited) == len(raw)
    saved.write_bytes(edited)
    with pytest.raises(ModelFileError, match="metadata or weights were modified after saving"):
        modelfile.load_arrays(saved)


def test_edited_tensor_shape_is_detected(tmp_path: Path) -> None:
    path = modelfile.save_arrays(tmp_path / "m", {"W": np.arange(6.0).reshape(2, 3)}, {})
    raw = path.read_bytes()
    edited = raw.replace(b'"shape":[2,3]', b'"shape":[3,2]')
    assert edited != raw
    path.write_bytes(edited)
    with pytest.raises(ModelFileError, match="modified after saving"):
        modelfile.load_arrays(path)


def test_flipped_weight_byte_is_detected(saved: Path) -> None:
    raw = bytearray(saved.read_bytes())
    raw[-3] ^= 0x01
    saved.write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match="modified after saving"):
        modelfile.load_arrays(saved)


def _with_envelope(path: Path, **changes: object) -> Path:
    envelope = {
        "format": "handgrad-model",
        "format_version": 1,
        "handgrad_version": "9.9",
        "metadata": {},
    }
    envelope.update(changes)
    path.write_bytes(raw_safetensors({"W": np.zeros(2)}, {"handgrad": json.dumps(envelope)}))
    return path


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    path = _with_envelope(tmp_path / "new", format_version=7)
    with pytest.raises(
        ModelFileError, match=r"newer handgrad \(format version 7; this .* reads 1\)"
    ):
        modelfile.load_arrays(path)


@pytest.mark.parametrize("version", [0, "1", None, True])
def test_invalid_format_version_is_refused(tmp_path: Path, version: object) -> None:
    with pytest.raises(ModelFileError, match="format_version"):
        modelfile.load_arrays(_with_envelope(tmp_path / "odd", format_version=version))


def test_missing_checksum_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="integrity"):
        modelfile.load_arrays(_with_envelope(tmp_path / "nosum"))


def test_foreign_safetensors_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "foreign.safetensors"
    path.write_bytes(raw_safetensors({"W": np.zeros(2)}))
    with pytest.raises(ModelFileError, match="not a handgrad file"):
        modelfile.load_arrays(path)


class _Booby:
    """Unpickling this would create a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_file_is_refused_and_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps({"W1": _Booby(marker)}))
    with pytest.raises(ModelFileError, match="not a valid handgrad model file"):
        modelfile.load_arrays(path)
    assert not marker.exists()


@cache
def _valid_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        return modelfile.save_arrays(Path(folder) / "m", _tensors(), METADATA).read_bytes()


def _load_bytes(data: bytes):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.safetensors"
        path.write_bytes(data)
        return modelfile.load_arrays(path)


_FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_fuzz_mutated_file_loads_identically_or_raises_model_file_error(
    edits: list[tuple[int, int]], cut: int | None
) -> None:
    data = bytearray(_valid_bytes())
    for position, value in edits:
        data[position % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    try:
        tensors, metadata = _load_bytes(bytes(data))
    except ModelFileError:
        return
    # Only harmless edits (e.g. header padding spaces) may load, and then unchanged.
    _assert_same(tensors, _tensors())
    assert metadata == METADATA


@_FUZZ
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_raise_model_file_error(data: bytes) -> None:
    with pytest.raises(ModelFileError):
        _load_bytes(data)
