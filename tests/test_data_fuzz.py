"""Fuzz every file reader with random and mutated bytes.

Valid files of each format are flipped, cut, extended, spliced; the reader must either
return or raise :class:`DataFormatError` -- never another exception, never a large
allocation (tracemalloc peak under 64 MB for inputs of a few kB). Deterministic budget.
"""

from __future__ import annotations

import gzip
import io
import itertools
import pickle
import tarfile
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from test_data_cifar import batch_dict, meta_dict, py2_pickle

from handgrad.data.cifar import extract_archive, load_batch, load_binary_batch, load_meta
from handgrad.data.idx import load_mnist_files, read_idx, write_idx
from handgrad.data.images import load_image_files
from handgrad.data.tabular import load_array, load_csv, load_npz
from handgrad.errors import DataFormatError

FUZZ = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PEAK_LIMIT = 64 * 2**20


def _idx(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as stream:
        stream.write(_raw_idx(array))
    return buffer.getvalue()


def _raw_idx(array: np.ndarray) -> bytes:
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    code = {"u1": 8, ">i2": 11, ">f4": 13}[array.dtype.str.lstrip("|")]
    return bytes([0, 0, code, array.ndim]) + dims + array.tobytes()


def _npz() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, X=np.arange(6.0).reshape(3, 2), y=np.array([0, 1, 0]))
    return buffer.getvalue()


def _npy() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.arange(6.0, dtype=np.float32).reshape(3, 2))
    return buffer.getvalue()


def _tar(compress: bool) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if compress else "w") as tar:
        for name, data in (("cifar-10-batches-py/a", b"abc"), ("cifar-10-batches-py/b", b"")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(buffer, "PNG")
    return buffer.getvalue()


def _small_batch() -> dict:
    # a valid batch of zero images: a tiny pickle whose every byte is structure
    return {
        b"batch_label": b"x",
        b"labels": [],
        b"data": np.zeros((0, 3072), np.uint8),
        b"filenames": [],
    }


SEEDS = {
    "idx_gz": [_idx(np.arange(60, dtype=np.uint8).reshape(3, 4, 5))],
    "idx_raw": [
        _raw_idx(np.arange(12, dtype=np.uint8)),
        _raw_idx(np.arange(6, dtype=">i2").reshape(2, 3)),
        _raw_idx(np.ones((2, 2), dtype=">f4")),
    ],
    "mnist": [_raw_idx(np.zeros((1, 28, 28), dtype=np.uint8))],
    "pickle": [
        py2_pickle(_small_batch()),
        pickle.dumps(_small_batch(), protocol=2),
        py2_pickle(batch_dict(1)),
    ],
    "meta": [py2_pickle(meta_dict())],
    "cifar_bin": [bytes(range(256)) * 12 + bytes(range(1)), bytes(3073)],
    "csv": [b"a,b,label\n1,2,x\n3.5,-4,y\n", b"1,2,0\n3,4,1\n"],
    "npz": [_npz()],
    "array": [_npy(), _npz()],
    "tar": [_tar(True), _tar(False)],
    "image": [_png()],
}


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """A seed file with up to four byte-level mutations, or pure random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=400))
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.one_of(st.integers(0, 40), st.integers(0, max(len(data), 1))))
        where = min(where, len(data))
        action = draw(st.sampled_from(["flip", "set", "cut", "extend", "insert", "delete"]))
        if action == "flip" and where < len(data):
            data[where] ^= 1 << draw(st.integers(0, 7))
        elif action == "set" and where < len(data):
            data[where] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, draw(st.integers(0, 255))]))
        elif action == "cut":
            del data[where:]
        elif action == "extend":
            data += draw(st.binary(min_size=1, max_size=32))
        elif action == "insert":
            data[where:where] = draw(st.binary(min_size=1, max_size=8))
        elif action == "delete":
            del data[where : where + draw(st.integers(1, 8))]
    return bytes(data)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


_counter = itertools.count()


def _only_documented_errors(function) -> None:
    tracemalloc.start()
    try:
        function()
    except DataFormatError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < PEAK_LIMIT, f"reader allocated {peak} bytes for a tiny input"


def _labels_file(folder):
    path = folder / "one-label.idx"
    if not path.exists():
        write_idx(path, np.array([7], dtype=np.uint8), compress=False)
    return path


def _reader(kind: str, path):  # returns a zero-argument call of the reader under test
    return {
        "idx_gz": lambda: read_idx(path),
        "idx_raw": lambda: read_idx(path),
        "mnist": lambda: load_mnist_files(path, _labels_file(path.parent)),
        "pickle": lambda: load_batch(path),
        "meta": lambda: load_meta(path),
        "cifar_bin": lambda: load_binary_batch(path),
        "csv": lambda: load_csv(path),
        "npz": lambda: load_npz(path),
        "array": lambda: load_array(path),
        "tar": lambda: extract_archive(path, path.parent / f"out{next(_counter)}"),
        "image": lambda: load_image_files([path]),
    }[kind]


@pytest.mark.parametrize("kind", sorted(SEEDS))
def test_reader_survives_mutated_files(workdir, kind):
    @FUZZ
    @given(data=mutated(SEEDS[kind]))
    def run(data: bytes) -> None:
        path = workdir / f"{kind}-{next(_counter)}.bin"
        path.write_bytes(data)
        _only_documented_errors(_reader(kind, path))

    run()


@FUZZ
@given(data=mutated(SEEDS["idx_raw"] + SEEDS["mnist"]))
def test_idx_reader_survives_gzipped_mutations(workdir, data):
    # compressing after mutating reaches the IDX parser behind a valid gzip stream
    path = workdir / f"gz-{next(_counter)}.gz"
    path.write_bytes(gzip.compress(data, mtime=0))
    _only_documented_errors(lambda: read_idx(path))


def test_seeds_are_valid_files(workdir):
    # the fuzz starts from files the readers accept, so mutations probe real parsing
    for kind, seeds in SEEDS.items():
        for i, seed in enumerate(seeds):
            path = workdir / f"seed-{kind}-{i}"
            path.write_bytes(seed)
            _reader(kind, path)()
