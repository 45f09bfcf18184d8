"""IDX reader: round trips, every corruption named, lying headers refused unallocated."""

from __future__ import annotations

import gzip
import io
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from handgrad.data.idx import load_mnist_files, read_idx, write_idx
from handgrad.errors import DataFormatError

# the shared real MNIST files, beside the clone (or beside the folder of worktrees)
MNIST_DIR = next(
    (
        folder / "shared" / "data" / "mnist"
        for folder in Path(__file__).resolve().parents[1:4]
        if (folder / "shared" / "data" / "mnist").is_dir()
    ),
    Path("shared/data/mnist"),
)


def idx_bytes(code: int, shape: tuple[int, ...], data: bytes) -> bytes:
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + data


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
def test_round_trip_every_dtype(tmp_path, dtype, compress):
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    if dtype == "u1":
        array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "a.idx"
    write_idx(path, array, compress=compress)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") is compress
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype).newbyteorder("=")
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, array)


def test_big_endian_on_disk(tmp_path):
    write_idx(tmp_path / "a", np.array([1, 256], dtype=np.int32), compress=False)
    assert (tmp_path / "a").read_bytes() == idx_bytes(0x0C, (2,), b"\0\0\0\x01\0\0\x01\0")


def test_reads_file_objects_seekable_and_not(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_idx(tmp_path / "a.gz", array)
    payload = (tmp_path / "a.gz").read_bytes()
    np.testing.assert_array_equal(read_idx(io.BytesIO(payload)), array)

    class Pipe(io.RawIOBase):
        def __init__(self, data):
            self._data = io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, buffer):
            chunk = self._data.read(min(len(buffer), 5))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    pipe = Pipe(payload)
    assert not pipe.seekable()
    np.testing.assert_array_equal(read_idx(pipe), array)


def test_gzip_detected_by_magic_not_name(tmp_path):
    path = tmp_path / "labels.idx1-ubyte"  # no .gz, yet compressed
    path.write_bytes(gzip.compress(idx_bytes(0x08, (3,), b"\x01\x02\x03")))
    np.testing.assert_array_equal(read_idx(path), [1, 2, 3])


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "only 0 bytes"),
        (b"\x01\x00\x08\x01\0\0\0\x01\x05", "does not start with 0000"),
        (idx_bytes(0x0A, (1,), b"\0"), "unknown IDX dtype code 0x0A"),
        (idx_bytes(0x08, (), b""), "0 dimensions"),
        (b"\0\0\x08\x03\0\0\0\x02", "truncated IDX header"),
        (idx_bytes(0x08, (2, 3), b"\0" * 5), "needs 6 bytes, but the file holds at most 5"),
        (idx_bytes(0x08, (2, 3), b"\0" * 7), "trailing data after IDX data"),
        (idx_bytes(0x0C, (2,), b"\0" * 7), "needs 8 bytes"),
    ],
)
def test_corrupt_raw_files_are_named(tmp_path, payload, message):
    path = tmp_path / "bad-file.idx"
    path.write_bytes(payload)
    with pytest.raises(DataFormatError, match=message) as info:
        read_idx(path)
    assert "bad-file.idx" in str(info.value)


def test_truncated_data_inside_gzip_gives_expected_and_actual_bytes(tmp_path):
    path = tmp_path / "short.gz"
    path.write_bytes(gzip.compress(idx_bytes(0x08, (4, 5), b"\x07" * 17)))
    with pytest.raises(DataFormatError, match=r"short.gz: truncated IDX data.*20 bytes, got 17"):
        read_idx(path)


def test_cut_gzip_stream_is_a_format_error(tmp_path):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(idx_bytes(0x08, (50,), bytes(range(50))))[:-12])
    with pytest.raises(DataFormatError, match=r"cut\.gz"):
        read_idx(path)


def test_header_over_the_cap_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.idx"
    path.write_bytes(idx_bytes(0x0E, (2**20, 2**20, 255), b""))
    with pytest.raises(DataFormatError, match="more than the limit of 2147483648 bytes"):
        read_idx(path)
    path.write_bytes(idx_bytes(0x08, (1000,), b"\0" * 1000))
    with pytest.raises(DataFormatError, match="limit of 999"):
        read_idx(path, max_bytes=999)


def _peak_bytes(function) -> int:
    tracemalloc.start()
    try:
        with pytest.raises(DataFormatError):
            function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("compress", [True, False])
def test_lying_header_under_the_cap_allocates_little(tmp_path, compress):
    # 500 MB claimed, 10 bytes present: refused by the file-size bound, nothing big allocated.
    payload = idx_bytes(0x08, (500, 1000, 1000), b"\0" * 10)
    path = tmp_path / "lie"
    path.write_bytes(gzip.compress(payload) if compress else payload)
    assert _peak_bytes(lambda: read_idx(path)) < 4 * 2**20


def test_lying_header_in_a_stream_of_unknown_size_reads_in_bounded_chunks():
    payload = gzip.compress(idx_bytes(0x08, (500, 1000, 1000), b"\0" * 3_000_000))

    class Unseekable(io.BytesIO):
        def seekable(self):
            return False

    peak = _peak_bytes(lambda: read_idx(Unseekable(payload)))
    assert peak < 16 * 2**20  # what the stream delivered (3 MB) plus chunks, not 500 MB


def test_write_idx_refuses_what_idx_cannot_hold(tmp_path):
    with pytest.raises(ValueError, match="dtype int64"):
        write_idx(tmp_path / "a", np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match=r"shape \(\)"):
        write_idx(tmp_path / "a", np.uint8(3))


def _mnist_pair(tmp_path, n_images=4, n_labels=4, labels=None, size=28):
    images = np.random.default_rng(0).integers(0, 256, (n_images, size, size), dtype=np.uint8)
    labels = np.arange(n_labels, dtype=np.uint8) % 10 if labels is None else labels
    write_idx(tmp_path / "img.gz", images)
    write_idx(tmp_path / "lab.gz", labels)
    return images, labels, tmp_path / "img.gz", tmp_path / "lab.gz"


def test_load_mnist_files(tmp_path):
    images, labels, img, lab = _mnist_pair(tmp_path)
    X, y = load_mnist_files(img, lab)
    assert X.dtype == np.uint8 and X.shape == (4, 28, 28)
    assert y.dtype == np.int64
    np.testing.assert_array_equal(X, images)
    np.testing.assert_array_equal(y, labels)


def test_load_mnist_files_checks_counts_magic_shape_and_labels(tmp_path):
    _, _, img, lab = _mnist_pair(tmp_path, n_images=4, n_labels=3)
    with pytest.raises(DataFormatError, match=r"holds 4 images but .* holds 3 labels"):
        load_mnist_files(img, lab)
    with pytest.raises(DataFormatError, match="magic is 2049, expected 2051"):
        load_mnist_files(lab, lab)
    _, _, img, lab = _mnist_pair(tmp_path, size=27)
    with pytest.raises(DataFormatError, match=r"images are \(27, 27\), expected \(28, 28\)"):
        load_mnist_files(img, lab)
    _, _, img, lab = _mnist_pair(tmp_path, labels=np.array([1, 2, 12, 3], dtype=np.uint8))
    with pytest.raises(DataFormatError, match=r"label 12 is outside 0\.\.9"):
        load_mnist_files(img, lab)


@pytest.mark.skipif(not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(), reason="no data")
def test_real_mnist_test_set():
    X, y = load_mnist_files(
        MNIST_DIR / "t10k-images-idx3-ubyte.gz", MNIST_DIR / "t10k-labels-idx1-ubyte.gz"
    )
    assert X.shape == (10000, 28, 28) and X.dtype == np.uint8
    assert X.min() == 0 and X.max() == 255
    assert X.mean() == pytest.approx(33.79, abs=0.01)
    assert y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    counts = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert np.bincount(y, minlength=10).tolist() == counts


def test_more_dimensions_than_numpy_allows_is_a_format_error(tmp_path):
    path = tmp_path / "deep.idx"
    path.write_bytes(idx_bytes(0x08, (1,) * 255, b"\7"))
    with pytest.raises(
        DataFormatError,
        match=r"deep\.idx: IDX header announces 255 dimensions, more than a NumPy array can",
    ):
        read_idx(path)
    path.write_bytes(gzip.compress(idx_bytes(0x08, (1,) * 65, b"\7")))
    with pytest.raises(DataFormatError, match="announces 65 dimensions"):
        read_idx(path)


def test_a_folder_is_named_a_folder(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a folder, not an IDX file"):
        read_idx(tmp_path)
