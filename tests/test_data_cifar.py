"""CIFAR-10 readers: both formats, the restricted unpickler, and safe archive extraction."""

from __future__ import annotations

import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from handgrad.data.cifar import (
    CLASS_NAMES,
    extract_archive,
    load_batch,
    load_binary_batch,
    load_cifar10,
    load_meta,
    safe_loads,
)
from handgrad.errors import DataFormatError


class Py2Pickler(pickle._Pickler):
    """Writes bytes and str as Python 2 ``str`` opcodes, as cPickle wrote real CIFAR files."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_bytes(self, obj):
        size = len(obj)
        if size < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([size]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", size) + obj)
        self.memoize(obj)

    def save_str(self, obj):
        self.save_bytes(obj.encode("latin1"))

    dispatch[bytes] = save_bytes
    dispatch[str] = save_str


def py2_pickle(obj) -> bytes:
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def batch_dict(n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"training batch 1 of 5",
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def meta_dict() -> dict:
    names = [name.encode() for name in CLASS_NAMES]
    return {b"num_cases_per_batch": 10000, b"label_names": names, b"num_vis": 3072}


def write_py_folder(folder: Path, n: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        (folder / name).write_bytes(py2_pickle(batch_dict(n, seed=i)))
    (folder / "batches.meta").write_bytes(py2_pickle(meta_dict()))
    return folder


def binary_records(n: int, seed: int = 0) -> tuple[bytes, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    rows = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    return np.column_stack([labels, rows]).tobytes(), rows, labels


@pytest.mark.parametrize("writer", [py2_pickle, lambda d: pickle.dumps(d, protocol=2)])
def test_batch_round_trip_python2_and_python3_pickles(tmp_path, writer):
    batch = batch_dict(4)
    (tmp_path / "data_batch_1").write_bytes(writer(batch))
    X, y = load_batch(tmp_path / "data_batch_1")
    assert X.shape == (4, 32, 32, 3) and X.dtype == np.uint8 and X.flags.c_contiguous
    assert y.tolist() == batch[b"labels"] and y.dtype == np.int64
    rows = batch[b"data"]
    # row = 1024 red, 1024 green, 1024 blue values, each plane row-major
    assert X[2, 5, 7, 0] == rows[2, 5 * 32 + 7]
    assert X[2, 5, 7, 1] == rows[2, 1024 + 5 * 32 + 7]
    assert X[3, 31, 0, 2] == rows[3, 2048 + 31 * 32]


def test_meta_pickle_and_text(tmp_path):
    (tmp_path / "batches.meta").write_bytes(py2_pickle(meta_dict()))
    assert load_meta(tmp_path / "batches.meta") == list(CLASS_NAMES)
    (tmp_path / "batches.meta.txt").write_text("\n".join(CLASS_NAMES) + "\n\n")
    assert load_meta(tmp_path / "batches.meta.txt") == list(CLASS_NAMES)
    (tmp_path / "short.txt").write_text("cat\ndog\n")
    with pytest.raises(DataFormatError, match="2 class names, expected 10"):
        load_meta(tmp_path / "short.txt")


def test_binary_batch_round_trip(tmp_path):
    payload, rows, labels = binary_records(5)
    (tmp_path / "data_batch_1.bin").write_bytes(payload)
    X, y = load_binary_batch(tmp_path / "data_batch_1.bin")
    assert X.shape == (5, 32, 32, 3)
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_array_equal(X.transpose(0, 3, 1, 2).reshape(5, 3072), rows)


def test_binary_batch_errors(tmp_path):
    payload, _, _ = binary_records(2)
    (tmp_path / "cut.bin").write_bytes(payload[:-1])
    with pytest.raises(DataFormatError, match="6145 bytes is not a positive multiple of the 3073"):
        load_binary_batch(tmp_path / "cut.bin")
    (tmp_path / "empty.bin").write_bytes(b"")
    with pytest.raises(DataFormatError, match="0 bytes"):
        load_binary_batch(tmp_path / "empty.bin")
    (tmp_path / "label.bin").write_bytes(payload[:3073] + b"\x0b" + payload[3074:])
    with pytest.raises(DataFormatError, match="record 1 has label 11"):
        load_binary_batch(tmp_path / "label.bin")


def test_load_cifar10_both_versions(tmp_path):
    folder = write_py_folder(tmp_path / "py" / "cifar-10-batches-py", n=3)
    X_train, y_train, X_test, y_test, names = load_cifar10(folder.parent)
    assert X_train.shape == (15, 32, 32, 3) and y_train.shape == (15,)
    assert X_test.shape == (3, 32, 32, 3) and names == list(CLASS_NAMES)
    assert y_test.tolist() == batch_dict(3, seed=5)[b"labels"]

    binary = tmp_path / "bin" / "cifar-10-batches-bin"
    binary.mkdir(parents=True)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        (binary / f"{name}.bin").write_bytes(binary_records(2, seed=i)[0])
    X_train, y_train, X_test, y_test, names = load_cifar10(binary)
    assert X_train.shape == (10, 32, 32, 3) and X_test.shape == (2, 32, 32, 3)
    assert names == list(CLASS_NAMES)  # no batches.meta.txt: the published names
    with pytest.raises(FileNotFoundError, match="no CIFAR-10 batches"):
        load_cifar10(tmp_path / "nothing")


class Marker:
    """Unpickling this would create ``path`` -- if the unpickler executed it."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


class Shell:
    def __init__(self, path):
        self.command = f"touch {path}"

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.mark.parametrize("payload", [Marker, Shell])
@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_code_in_a_pickle_is_refused_not_run(tmp_path, payload, protocol):
    marker = tmp_path / "marker"
    batch = {b"data": payload(marker), b"labels": []}
    (tmp_path / "evil").write_bytes(pickle.dumps(batch, protocol=protocol))
    refused = r"evil: pickle (refers to .*(open|system).*refused|opcode \w+ is not allowed)"
    with pytest.raises(DataFormatError, match=refused):
        load_batch(tmp_path / "evil")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        # numpy.ndarray((10**12,)) called directly would allocate: the token is not callable
        (b"\x80\x02cnumpy\nndarray\nJ\x00\x10\xa5\xd4\x85R.", "corrupt pickle"),
        # _reconstruct asked for a big shape instead of numpy's (0,)
        (
            b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
            b"J\x00\xca\x9a;\x85U\x01b\x87R.",
            "_reconstruct with unexpected arguments",
        ),
        (b"\x80\x02cnumpy\ndtype\nU\x01O\x89\x88\x87R.", "only integers allowed"),
        # numpy's own dtype __setstate__ would take these flags (object refcounting) and
        # later free the array as if it held pointers
        (
            b"\x80\x02cnumpy\ndtype\nU\x02u1\x89\x88\x87R(K\x03U\x01|NNN"
            b"J\xff\xff\xff\xffJ\xff\xff\xff\xffK\x1ftb.",
            "dtype an unexpected state",
        ),
        (
            b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b"
            b"\x87R(K\x01K\x05\x85cnumpy\ndtype\nU\x02u1\x89\x88\x87R(K\x03U\x01|NNN"
            b"J\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89U\x03abctb.",
            r"shape \(5,\) does not match its 3 bytes",
        ),
        (
            b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x04\x00\x00\x00zlib\x86R.",
            "_codecs.encode with unexpected arguments",
        ),
        (b"\x80\x02cbuiltins\neval\nX\x01\x00\x00\x001\x85R.", "builtins.eval"),
        (b"\x80\x02\x82\x01.", "opcode EXT1 is not allowed"),
        (b"\x80\x02K\x01r\xff\xff\xff\xff.", "memo index 4294967295 out of range"),
        (b"\x80\x02}q\x00", "not a valid pickle"),
        (b"garbage", "not a valid pickle"),
    ],
)
def test_unsafe_or_broken_pickles_are_refused(payload, message):
    with pytest.raises(DataFormatError, match=message):
        safe_loads(payload, "x")


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ([1, 2], "holds list, expected a dict"),
        ({b"labels": []}, r"no 'data' entry \(it has \['labels'\]\)"),
        ({b"data": np.zeros((2, 3072), np.int32), b"labels": [0, 0]}, "2-D uint8"),
        ({b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 0]}, "3000 columns"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 images but 1 labels"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "integers in 0..9"),
        ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [True]}, "integers in 0..9"),
    ],
)
def test_batch_structure_is_validated(tmp_path, batch, message):
    (tmp_path / "b").write_bytes(py2_pickle(batch))
    with pytest.raises(DataFormatError, match=message):
        load_batch(tmp_path / "b")


def test_str_keys_and_array_labels_are_accepted(tmp_path):
    batch = {"data": np.zeros((2, 3072), np.uint8), "labels": np.array([3, 4], np.int64)}
    (tmp_path / "b").write_bytes(pickle.dumps(batch, protocol=2))
    assert load_batch(tmp_path / "b")[1].tolist() == [3, 4]


def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def regular(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def special(name: str, kind: bytes, target: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def test_extract_archive_writes_safe_members(tmp_path):
    folder = tarfile.TarInfo("cifar-10-batches-py")
    folder.type = tarfile.DIRTYPE
    archive = make_tar(
        tmp_path / "ok.tar.gz",
        [(folder, None), regular("cifar-10-batches-py/data_batch_1", b"abc")],
    )
    dest = extract_archive(archive, tmp_path / "out")
    assert (dest / "cifar-10-batches-py" / "data_batch_1").read_bytes() == b"abc"


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (regular("/tmp/handgrad-absolute-test"), "absolute path"),
        (regular("cifar-10-batches-py/../../escaped"), r"'\.\.' component"),
        (regular("..\\escaped"), r"'\.\.' component"),
        (regular("C:/windows/escaped"), "absolute path"),
        (special("cifar-10-batches-py/link", tarfile.SYMTYPE, "/etc/passwd"), "link, device"),
        (special("cifar-10-batches-py/hard", tarfile.LNKTYPE, "data_batch_1"), "link, device"),
        (special("cifar-10-batches-py/dev", tarfile.CHRTYPE), "link, device"),
        (special("cifar-10-batches-py/fifo", tarfile.FIFOTYPE), "link, device"),
    ],
)
def test_extract_archive_refuses_unsafe_members(tmp_path, member, message):
    archive = make_tar(tmp_path / "bad.tar.gz", [regular("cifar-10-batches-py/a"), member])
    with pytest.raises(DataFormatError, match=message):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before anything was written
    assert not (tmp_path / "escaped").exists()


def test_extract_archive_corrupt_file(tmp_path):
    (tmp_path / "bad.tar.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(DataFormatError, match="corrupt or unsafe tar archive"):
        extract_archive(tmp_path / "bad.tar.gz", tmp_path / "out")
