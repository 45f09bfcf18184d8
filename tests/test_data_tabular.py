"""CSV and NPZ readers: values, label handling, and errors that point at the problem."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from handgrad.data.tabular import load_csv, load_npz
from handgrad.errors import DataFormatError

IRIS_LIKE = """sepal_length,sepal_width,species
5.1,3.5,setosa
7.0,3.2,versicolor

6.3,3.3,virginica
"""


def write(tmp_path, text, name="data.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_text(text, encoding=encoding)
    return path


def test_csv_with_header_and_string_labels(tmp_path):
    X, y, names = load_csv(write(tmp_path, IRIS_LIKE))
    assert X.dtype == np.float64
    np.testing.assert_array_equal(X, [[5.1, 3.5], [7.0, 3.2], [6.3, 3.3]])
    assert y.tolist() == ["setosa", "versicolor", "virginica"]
    assert names == ["sepal_length", "sepal_width"]


def test_csv_without_header_integer_labels_and_label_choice(tmp_path):
    path = write(tmp_path, "1,0.5,2\n0,1.5,3\n")
    X, y, names = load_csv(path)
    assert y.dtype == np.int64 and y.tolist() == [2, 3]
    assert names == ["x0", "x1"]
    X, y, names = load_csv(path, label=0)
    np.testing.assert_array_equal(X, [[0.5, 2], [1.5, 3]])
    assert y.tolist() == [1, 0] and names == ["x1", "x2"]
    assert load_csv(path, label=-3)[1].tolist() == [1, 0]
    assert load_csv(path, label=-2)[1].tolist() == ["0.5", "1.5"]
    X, y, _ = load_csv(path, header=True)
    assert X.shape == (1, 2) and y.tolist() == [3]


def test_csv_label_by_name_bom_and_semicolons(tmp_path):
    path = write(tmp_path, "\ufeffkind;a;b\ncat;1;2\ndog;3;4\n", encoding="utf-8")
    X, y, names = load_csv(path, label="kind", delimiter=";")
    assert names == ["a", "b"] and y.tolist() == ["cat", "dog"]
    np.testing.assert_array_equal(X, [[1, 2], [3, 4]])


def test_missing_label_column_lists_the_columns(tmp_path):
    path = write(tmp_path, IRIS_LIKE)
    with pytest.raises(
        DataFormatError,
        match="no label column 'target'; available columns: sepal_length, sepal_width, species",
    ):
        load_csv(path, label="target")
    with pytest.raises(DataFormatError, match="index 3 is out of range for 3 columns"):
        load_csv(path, label=3)
    with pytest.raises(TypeError, match="column name or index"):
        load_csv(path, label=1.5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b,y\n1,2,0\n1,oops,1\n", r"line 3, column 2 \('b'\): 'oops' is not a finite number"),
        ("1,2,0\n\n\n3,,1\n", r"line 4, column 2 \('x1'\): '' is not a finite number"),
        ("1,nan,0\n", r"line 1, column 2 \('x1'\): 'nan' is not a finite number"),
        ("a,b,y\n1,2,0\n1,2\n", "line 3 has 2 fields, expected 3"),
        ("", "the CSV file is empty"),
        ("\n\n", "the CSV file is empty"),
        ("a,b,y\n", "has a header but no data rows"),
        ("y\n1\n", "1 column; need features and a label column"),
    ],
)
def test_csv_errors_name_file_line_and_column(tmp_path, text, message):
    path = write(tmp_path, text, name="broken.csv")
    with pytest.raises(DataFormatError, match=message) as info:
        load_csv(path)
    assert "broken.csv" in str(info.value)


def test_csv_line_numbers_count_quoted_newlines(tmp_path):
    path = write(tmp_path, 'a,b,y\n1,2,"multi\nline"\n1,x,0\n')
    with pytest.raises(DataFormatError, match="line 4, column 2"):
        load_csv(path)


def test_csv_binary_garbage_is_a_format_error(tmp_path):
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00\x81abc")
    with pytest.raises(DataFormatError, match="not UTF-8 text"):
        load_csv(tmp_path / "bin.csv")


def test_npz_round_trip(tmp_path):
    X = np.arange(12, dtype=np.float32).reshape(4, 3)
    y = np.array(["a", "b", "a", "c"])
    np.savez_compressed(tmp_path / "d.npz", X=X, y=y, extra=np.ones(2))
    X2, y2 = load_npz(tmp_path / "d.npz")
    assert X2.dtype == np.float32
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)


def test_npz_images_keep_their_shape(tmp_path):
    X = np.zeros((2, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", X=X, y=np.array([0, 1]))
    assert load_npz(tmp_path / "d.npz")[0].shape == (2, 8, 8)


def test_npz_missing_keys_are_listed(tmp_path):
    np.savez(tmp_path / "d.npz", data=np.zeros((2, 2)), target=np.zeros(2))
    with pytest.raises(
        DataFormatError,
        match=r"no array X or y; the archive holds "
        r"\['data', 'target'\]",
    ):
        load_npz(tmp_path / "d.npz")


def test_npz_object_arrays_are_refused_not_unpickled(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.array([[1, "a"]], dtype=object), y=np.array([0]))
    with pytest.raises(DataFormatError, match="array X holds Python objects"):
        load_npz(tmp_path / "d.npz")


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"X": np.zeros(3), "y": np.zeros(3)}, r"X must be a numeric \(N, D\) array"),
        ({"X": np.zeros((3, 2), complex), "y": np.zeros(3)}, "X must be a numeric"),
        ({"X": np.zeros((3, 2)), "y": np.zeros((3, 1))}, "y must be a 1-D array"),
        ({"X": np.zeros((3, 2)), "y": np.zeros(2, int)}, "X has 3 rows but y has 2 labels"),
    ],
)
def test_npz_shapes_are_checked(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataFormatError, match=message):
        load_npz(tmp_path / "d.npz")


def test_npz_header_claiming_more_than_the_member_is_refused(tmp_path):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.zeros(4, dtype=np.float64))
    payload = buffer.getvalue().replace(b"(4,)", b"(10000000000,)".ljust(4))
    with zipfile.ZipFile(tmp_path / "d.npz", "w") as archive:
        archive.writestr("X.npy", payload)
        archive.writestr("y.npy", payload)
    with pytest.raises(DataFormatError, match=r"claims shape \(10000000000,\) of float64"):
        load_npz(tmp_path / "d.npz")


@pytest.mark.parametrize("payload", [b"", b"not a zip", b"PK\x03\x04broken"])
def test_npz_corrupt_files(tmp_path, payload):
    (tmp_path / "d.npz").write_bytes(payload)
    with pytest.raises(DataFormatError, match=r"not a readable \.npz archive"):
        load_npz(tmp_path / "d.npz")


def test_npy_file_instead_of_npz(tmp_path):
    np.save(tmp_path / "d.npy", np.zeros(3))
    with pytest.raises(DataFormatError, match=r"not a readable \.npz archive"):
        load_npz(tmp_path / "d.npy")


def test_load_array_reads_npy_and_npz_and_refuses_lying_headers(tmp_path):
    from handgrad.data import load_array

    X = np.arange(6.0).reshape(3, 2)
    np.save(tmp_path / "a.npy", X)
    np.savez(tmp_path / "b.npz", X=X, y=np.arange(3))
    np.savez(tmp_path / "c.npz", only=X)
    for name in ("a.npy", "b.npz", "c.npz"):
        np.testing.assert_array_equal(load_array(tmp_path / name), X)
    np.savez(tmp_path / "d.npz", a=X, b=X)
    with pytest.raises(DataFormatError, match="expected an array named X"):
        load_array(tmp_path / "d.npz")
    # A header claiming 10**15 float64 values in a tiny file: refused before allocating.
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1))
    header["shape"] = (10**15,)
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    lying = tmp_path / "lying.npy"
    lying.write_bytes(buffer.getvalue() + bytes(16))
    with pytest.raises(DataFormatError, match="claims shape"):
        load_array(lying)
    import zipfile

    with zipfile.ZipFile(tmp_path / "lying.npz", "w") as archive:
        archive.writestr("X.npy", buffer.getvalue() + bytes(16))
    with pytest.raises(DataFormatError, match="claims shape"):
        load_array(tmp_path / "lying.npz")
