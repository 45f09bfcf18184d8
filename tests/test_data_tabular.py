"""CSV and NPZ readers: values, label handling, and errors that point at the problem."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from handgrad.data.tabular import load_array, load_csv, load_feature_csv, load_npz
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


# --------------------------------------------------------------- header or not (13.1)
def pandas_csv(tmp_path, labels, name="p.csv", with_label=True):
    """What ``pd.DataFrame(X).assign(target=labels).to_csv(index=False)`` writes."""
    X = np.array([[5.1, 3.5, 1.4, 0.2], [7.0, 3.2, 4.7, 1.4], [6.3, 3.3, 6.0, 2.5]])
    lines = ["0,1,2,3" + (",target" if with_label else "")]
    for row, label in zip(X, labels, strict=True):
        lines.append(",".join(f"{v:g}" for v in row) + (f",{label}" if with_label else ""))
    return write(tmp_path, "\n".join(lines) + "\n", name=name)


def test_pandas_numeric_column_names_over_integer_labels_are_a_header(tmp_path, recwarn):
    X, y, names = load_csv(pandas_csv(tmp_path, [0, 1, 2]))
    assert X.shape == (3, 4) and names == ["0", "1", "2", "3"]
    assert y.dtype == np.int64 and y.tolist() == [0, 1, 2]
    assert not recwarn.list  # "target" over a column of numbers: no doubt, no note


def test_pandas_numeric_column_names_over_string_labels_are_a_header_with_a_note(tmp_path):
    path = pandas_csv(tmp_path, ["setosa", "versicolor", "virginica"])
    with pytest.warns(UserWarning) as notes:
        X, y, names = load_csv(path)
    assert X.shape == (3, 4) and y.tolist() == ["setosa", "versicolor", "virginica"]
    assert names == ["0", "1", "2", "3"]
    assert len(notes) == 1
    assert str(notes[0].message) == (
        f"{path}: line 1 (0,1,2,3,target) was read as the column names, as pandas writes "
        "them; pass header=False (--no-header) to read it as data"
    )
    with pytest.raises(DataFormatError, match=r"line 1, column 5 \('x4'\): 'target'"):
        load_csv(path, header=False, label=0)  # forced: the row is data


def test_feature_csv_with_pandas_names_gives_one_row_per_data_line(tmp_path):
    path = pandas_csv(tmp_path, [None] * 3, with_label=False)
    with pytest.warns(UserWarning, match="read as the column names"):
        X, names = load_feature_csv(path)
    assert X.shape == (3, 4) and names == ["0", "1", "2", "3"]
    X, names = load_feature_csv(path, header=False)
    assert X.shape == (4, 4) and names == ["x0", "x1", "x2", "x3"]


def test_all_numeric_pandas_header_and_a_pandas_index_header(tmp_path):
    path = write(tmp_path, "0,1,2\n0.5,1.5,1\n2.5,3.5,0\n")  # pd.DataFrame(np.c_[X, y])
    with pytest.warns(UserWarning, match=r"line 1 \(0,1,2\) was read as the column names"):
        X, y, names = load_csv(path)
    assert X.shape == (2, 2) and y.tolist() == [1, 0] and names == ["0", "1"]
    path = write(tmp_path, ",0,1,target\n0,0.5,1.5,1\n1,2.5,3.5,0\n", name="index.csv")
    X, y, names = load_csv(path)
    assert X.shape == (2, 3) and y.tolist() == [1, 0] and names == ["", "0", "1"]


@pytest.mark.parametrize(
    "first",
    ["1,2,0", "0,0,1", "1,2,3", "0,1.0,1", "0,-1,1", "0.0,1,1"],
)
def test_first_rows_of_numbers_that_are_not_pandas_names_are_data(tmp_path, first, recwarn):
    X, y, names = load_csv(write(tmp_path, first + "\n4,5,6\n"))
    assert X.shape == (2, 2) and y[1] == 6 and names == ["x0", "x1"] and not recwarn.list


def test_a_misspelt_first_data_row_is_an_error_that_suggests_header(tmp_path):
    path = write(tmp_path, "1,abc,0\n4,5,6\n")
    with pytest.raises(
        DataFormatError,
        match=r"line 1, column 2 \('x1'\): 'abc' is not a finite number; if line 1 "
        r"names the columns, pass header=True \(--header\)",
    ):
        load_csv(path)
    X, y, names = load_csv(path, header=True)
    assert X.tolist() == [[4, 5]] and names == ["1", "abc"] and y.tolist() == [6]
    with pytest.raises(ValueError, match="header must be True, False or None"):
        load_csv(path, header="infer")


# ------------------------------------------------------------ missing labels (13.3)
def test_an_empty_label_is_an_error_naming_the_line(tmp_path):
    path = write(tmp_path, "a,b,y\n1,2,cat\n\n3,4,\n5,6,dog\n7,8, \n")
    with pytest.raises(
        DataFormatError,
        match=r"data\.csv: line 4 has no label \(column 3, 'y', is empty\); fill it in "
        r"or drop such rows \(missing_label='drop'\)",
    ):
        load_csv(path)
    with pytest.warns(UserWarning, match=r"dropped 2 rows without a label \(lines 4, 6\)"):
        X, y, _ = load_csv(path, missing_label="drop")
    np.testing.assert_array_equal(X, [[1, 2], [5, 6]])
    assert y.tolist() == ["cat", "dog"]
    with pytest.raises(ValueError, match="missing_label must be one of error, drop"):
        load_csv(path, missing_label="skip")
    write(tmp_path, "a,y\n1,\n", name="none.csv")
    with pytest.raises(DataFormatError, match=r"none\.csv: no row has a label"):
        load_csv(tmp_path / "none.csv", missing_label="drop")


def test_an_empty_cell_of_a_dropped_label_column_is_no_error(tmp_path):
    X, names = load_feature_csv(write(tmp_path, "a,b,y\n1,2,\n3,4,1\n"), drop="y")
    np.testing.assert_array_equal(X, [[1, 2], [3, 4]])
    assert names == ["a", "b"]


# ------------------------------------------------- file positions and sizes (13.9-11)
def test_npz_non_finite_value_is_named_by_its_row_in_the_file(tmp_path):
    X = np.ones((6, 3))
    X[4, 1] = np.nan
    np.savez(tmp_path / "d.npz", X=X, y=np.arange(6) % 2)
    with pytest.raises(DataFormatError, match=r"d\.npz: row 4 of X holds nan"):
        load_npz(tmp_path / "d.npz")


def test_csv_keeps_values_beyond_float32_for_the_preprocessing_to_scale(tmp_path):
    X, _, _ = load_csv(write(tmp_path, "a,b,y\n1e39,2,0\n-3e39,1,1\n"))
    assert X.dtype == np.float64 and X[1, 0] == -3e39


def lying_npz(path, claimed: int) -> None:
    """An archive of a 1 KB member whose zip headers claim ``claimed`` bytes."""
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1))
    header["shape"] = (claimed // 8 - 16,)
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    payload = buffer.getvalue() + bytes(1000)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("X.npy", payload)
        archive.writestr("y.npy", payload)
    data = bytearray(path.read_bytes())
    size = len(payload).to_bytes(4, "little")
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (start := data.find(signature, start)) >= 0:
            assert data[start + offset : start + offset + 4] == size
            data[start + offset : start + offset + 4] = claimed.to_bytes(4, "little")
            start += 4
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("reader", [load_npz, load_array])
def test_npz_member_claiming_gigabytes_from_a_kilobyte_is_refused_unallocated(
    tmp_path, monkeypatch, reader
):
    lying_npz(tmp_path / "bomb.npz", 3_600_000_000)
    assert (tmp_path / "bomb.npz").stat().st_size < 1500

    def no_allocation(*args, **kwargs):
        raise AssertionError("read_array was called")

    monkeypatch.setattr(np.lib.format, "read_array", no_allocation)
    with pytest.raises(
        DataFormatError,
        match=r"bomb\.npz: array X claims 3\.35 GiB \(3600000000 bytes\) from \d+ compressed "
        r"bytes, more than compression can give \(at most 1100:1\)",
    ):
        reader(tmp_path / "bomb.npz")


@pytest.mark.parametrize(
    ("reader", "what"),
    [(load_csv, "CSV file"), (load_npz, ".npz file"), (load_array, "NumPy file")],
)
def test_a_folder_is_named_a_folder(tmp_path, reader, what):
    (tmp_path / "data.csv").mkdir()
    with pytest.raises(IsADirectoryError, match=f"data.csv is a folder, not a {what}"):
        reader(tmp_path / "data.csv")
    with pytest.raises(FileNotFoundError, match=f"no such {what}"):
        reader(tmp_path / "absent")
