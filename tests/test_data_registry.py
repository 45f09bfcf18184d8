"""load_dataset: names, splits, local files, checksums, and the offline message.

No test touches the network: downloads are replaced by functions that fail or that
write a local file, through monkeypatch.
"""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import numpy as np
import pooch
import pytest
from test_data_cifar import py2_pickle, write_py_folder

from handgrad.data import Dataset, available_datasets, load_dataset, remote, write_idx
from handgrad.errors import DataFormatError, DatasetUnavailableError

# the shared real MNIST files, beside the clone (or beside the folder of worktrees)
MNIST_DIR = next(
    (
        folder / "shared" / "data" / "mnist"
        for folder in Path(__file__).resolve().parents[1:4]
        if (folder / "shared" / "data" / "mnist").is_dir()
    ),
    Path("shared/data/mnist"),
)
TRAIN = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
TEST = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(url, *args, **kwargs):
        raise ConnectionError(f"no network in tests ({url})")

    monkeypatch.setattr(pooch, "retrieve", refuse)
    monkeypatch.delenv(remote.ENV_VAR, raising=False)


def sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def fake_mnist(folder: Path, monkeypatch, n_train=30, n_test=20, dataset="mnist") -> None:
    """Write small MNIST-format files and pin their hashes in place of the real ones."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for (images, labels), n in ((TRAIN, n_train), (TEST, n_test)):
        write_idx(folder / images, rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / labels, (np.arange(n) % 10).astype(np.uint8))
    files = tuple(
        remote.RemoteFile(f.name, sha256(folder / f.name), f.urls)
        for f in remote.DATASET_FILES[dataset]
    )
    monkeypatch.setitem(remote.DATASET_FILES, dataset, files)


def test_available_datasets():
    names = available_datasets()
    for name in (
        "digits",
        "iris",
        "wine",
        "breast_cancer",
        "mnist",
        "mnist-t10k",
        "fashion-mnist",
        "cifar10",
    ):
        assert name in names


@pytest.mark.parametrize(
    ("name", "n", "d", "classes"),
    [
        ("digits", 1797, 64, 10),
        ("iris", 150, 4, 3),
        ("wine", 178, 13, 3),
        ("breast_cancer", 569, 30, 2),
    ],
)
def test_sklearn_datasets_are_split_stratified(name, n, d, classes):
    data = load_dataset(name)
    assert isinstance(data, Dataset) and data.name == name
    assert len(data.X_train) + len(data.X_test) == n and data.X_train.shape[1] == d
    assert len(data.X_test) == int(np.ceil(0.25 * n))
    assert len(data.class_names) == classes
    whole = np.bincount(np.concatenate([data.y_train, data.y_test])) / n
    np.testing.assert_allclose(np.bincount(data.y_test) / len(data.y_test), whole, atol=0.02)


def test_split_seed_and_test_size():
    a, b = load_dataset("iris", split_seed=3), load_dataset("iris", split_seed=3)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    c = load_dataset("iris", split_seed=4)
    assert not np.array_equal(a.X_train, c.X_train)
    assert len(load_dataset("iris", test_size=0.5).X_test) == 75


def test_digits_has_an_image_shape_and_tables_have_feature_names():
    digits = load_dataset("digits")
    assert digits.image_shape == (8, 8) and digits.class_names[3] == "3"
    assert digits.X_train.reshape(-1, *digits.image_shape).shape[1:] == (8, 8)
    iris = load_dataset("IRIS")
    assert iris.image_shape is None and iris.feature_names[0] == "sepal length (cm)"
    assert load_dataset("breast-cancer").name == "breast_cancer"


def test_unknown_name():
    with pytest.raises(
        ValueError, match=r"unknown dataset 'mnits' \(did you mean 'mnist'\?\); available: digits"
    ):
        load_dataset("mnits")


def test_user_csv_and_npz(tmp_path):
    rows = [f"{i},{i % 3},{'abc'[i % 3]}" for i in range(40)]
    (tmp_path / "t.csv").write_text("a,b,label\n" + "\n".join(rows) + "\n")
    for name in (f"csv:{tmp_path / 't.csv'}", str(tmp_path / "t.csv")):
        data = load_dataset(name, test_size=0.25)
        assert data.X_train.shape == (30, 2) and data.X_test.shape == (10, 2)
        assert data.class_names == ("a", "b", "c") and data.feature_names == ("a", "b")
    assert load_dataset(str(tmp_path / "t.csv"), label="label").feature_names == ("a", "b")
    X = np.zeros((12, 4, 4), dtype=np.uint8)
    np.savez(tmp_path / "t.npz", X=X, y=np.arange(12) % 2)
    data = load_dataset(f"npz:{tmp_path / 't.npz'}")
    assert data.image_shape == (4, 4) and data.X_train.shape == (9, 4, 4)
    with pytest.raises(FileNotFoundError, match="no such CSV file"):
        load_dataset(f"csv:{tmp_path / 'missing.csv'}")


def test_user_file_with_a_singleton_class_falls_back_to_a_plain_split(tmp_path):
    lines = [f"{i},{0 if i < 9 else 1}" for i in range(10)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    data = load_dataset(str(tmp_path / "t.csv"), test_size=0.3)
    assert len(data.y_train) == 7 and len(data.y_test) == 3


def test_mnist_from_local_files(tmp_path, monkeypatch):
    fake_mnist(tmp_path, monkeypatch)
    data = load_dataset("mnist", data_dir=tmp_path)
    assert data.X_train.shape == (30, 28, 28) and data.X_test.shape == (20, 28, 28)
    assert data.image_shape == (28, 28) and data.class_names[0] == "0"
    t10k = load_dataset("mnist-t10k", data_dir=tmp_path, test_size=0.5)
    assert t10k.X_train.shape == (10, 28, 28) and t10k.name == "mnist-t10k"
    assert sorted(t10k.y_test.tolist()) == list(range(10))  # stratified: one of each


def test_files_in_the_dataset_subfolder_and_env_var(tmp_path, monkeypatch):
    fake_mnist(tmp_path / "mnist", monkeypatch)
    monkeypatch.setenv(remote.ENV_VAR, str(tmp_path))
    assert remote.data_home() == tmp_path
    assert load_dataset("mnist").X_train.shape == (30, 28, 28)
    assert remote.data_home(tmp_path / "other") == tmp_path / "other"  # argument wins


def test_default_data_home_is_the_pooch_cache():
    assert remote.data_home() == Path(pooch.os_cache("handgrad"))


def test_offline_message_says_what_to_put_where(tmp_path):
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset("fashion-mnist", data_dir=tmp_path)
    message = str(info.value)
    first = message.splitlines()[0]
    assert first.startswith(
        "could not reach fashion-mnist.s3-website.eu-central-1.amazonaws.com or "
        "raw.githubusercontent.com (no network in tests"
    )
    assert first.endswith(
        "); place train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz in "
        f"{tmp_path / 'fashion-mnist'}"
    )
    for name in TRAIN + TEST:
        assert name in message
    assert "md5:bef4ecab320f06d8554ea6380940ec79" in message
    assert "--data-dir" in message and "HANDGRAD_DATA_DIR" in message
    assert not list(tmp_path.rglob("*.gz"))


def test_mnist_with_only_the_test_files_points_to_t10k(tmp_path, monkeypatch):
    fake_mnist(tmp_path, monkeypatch)
    for name in TRAIN:
        (tmp_path / name).unlink()
    with pytest.raises(DatasetUnavailableError, match=r"(?s)train-images.*'mnist-t10k' splits"):
        load_dataset("mnist", data_dir=tmp_path, download=False)


def test_checksum_mismatch_is_a_clear_error(tmp_path, monkeypatch):
    fake_mnist(tmp_path, monkeypatch)
    write_idx(tmp_path / TEST[1], np.zeros(20, dtype=np.uint8))  # altered after pinning
    with pytest.raises(
        DataFormatError,
        match=r"t10k-labels-idx1-ubyte\.gz has sha256 .*, "
        r"expected .*corrupt, incomplete or from another dataset",
    ):
        load_dataset("mnist-t10k", data_dir=tmp_path)


def serve_from(source: Path, monkeypatch, down: str | None = None) -> list[str]:
    """Make pooch.retrieve 'download' from the folder ``source``; mirrors containing
    ``down`` fail. Returns the list of URLs asked for."""
    calls: list[str] = []

    def fake_retrieve(url, known_hash, fname, path, **kwargs):
        calls.append(url)
        if down and down in url:
            raise ConnectionError("mirror down")
        target = Path(path) / fname
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((source / fname).read_bytes())
        return str(target)

    monkeypatch.setattr(pooch, "retrieve", fake_retrieve)
    return calls


def test_download_goes_into_the_dataset_subfolder_and_is_verified(tmp_path, monkeypatch):
    source = tmp_path / "source"
    fake_mnist(source, monkeypatch)
    calls = serve_from(source, monkeypatch)
    data = load_dataset("mnist", data_dir=tmp_path / "cache")
    assert data.X_train.shape == (30, 28, 28)
    assert sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir()) == sorted(TRAIN + TEST)
    assert calls[0].startswith("https://ossci-datasets.s3.amazonaws.com/mnist/")
    (source / TEST[0]).write_bytes(b"tampered")
    (tmp_path / "cache" / "mnist" / TEST[0]).unlink()
    with pytest.raises(DataFormatError, match="has sha256"):
        load_dataset("mnist", data_dir=tmp_path / "cache")


def test_mirrors_are_tried_in_turn(tmp_path, monkeypatch):
    source = tmp_path / "source"
    fake_mnist(source, monkeypatch)
    calls = serve_from(source, monkeypatch, down="ossci")
    load_dataset("mnist-t10k", data_dir=tmp_path / "cache")
    assert len(calls) == 4 and "storage.googleapis.com" in calls[1]


def pin_cifar_batches(folder: Path, monkeypatch) -> None:
    hashes = {
        name: "md5:" + hashlib.md5((folder / name).read_bytes()).hexdigest()
        for name in remote.CIFAR_BATCH_HASHES
    }
    monkeypatch.setattr(remote, "CIFAR_BATCH_HASHES", hashes)


def test_cifar10_from_an_extracted_folder(tmp_path, monkeypatch):
    folder = write_py_folder(tmp_path / "cifar10" / "cifar-10-batches-py", n=2)
    pin_cifar_batches(folder, monkeypatch)
    data = load_dataset("cifar10", data_dir=tmp_path)
    assert data.X_train.shape == (10, 32, 32, 3) and data.X_test.shape == (2, 32, 32, 3)
    assert data.class_names[0] == "airplane" and data.image_shape == (32, 32, 3)
    (folder / "test_batch").write_bytes(py2_pickle({b"data": 1}))
    with pytest.raises(DataFormatError, match="test_batch has md5"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_cifar10_from_the_archive(tmp_path, monkeypatch):
    folder = write_py_folder(tmp_path / "build" / "cifar-10-batches-py", n=2)
    archive = tmp_path / "data" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    md5 = "md5:" + hashlib.md5(archive.read_bytes()).hexdigest()
    files = (remote.RemoteFile(archive.name, md5, ("https://example.invalid/x",)),)
    monkeypatch.setitem(remote.DATASET_FILES, "cifar10", files)
    pin_cifar_batches(folder, monkeypatch)
    data = load_dataset("cifar10", data_dir=tmp_path / "data")
    assert data.X_train.shape == (10, 32, 32, 3)
    assert (tmp_path / "data" / "cifar10" / "cifar-10-batches-py" / "test_batch").is_file()


def test_cifar10_offline(tmp_path):
    with pytest.raises(DatasetUnavailableError, match=r"cifar-10-python\.tar\.gz"):
        load_dataset("cifar10", data_dir=tmp_path)


@pytest.mark.skipif(not (MNIST_DIR / TEST[0]).is_file(), reason="no real MNIST files")
def test_real_mnist_t10k_through_the_registry():
    data = load_dataset("mnist-t10k", data_dir=MNIST_DIR, download=False, test_size=0.2)
    assert data.X_train.shape == (8000, 28, 28) and data.X_test.shape == (2000, 28, 28)
    counts = np.array([980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
    assert np.abs(np.bincount(data.y_test) - 0.2 * counts).max() <= 1  # stratified


# ------------------------------------------------ datasets by content, not name (12.7)
def test_mnist_files_are_told_from_fashion_mnist_by_checksum(tmp_path, monkeypatch):
    from handgrad.data import dataset_status

    fake_mnist(tmp_path, monkeypatch)  # MNIST's names and (pinned) checksums
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert dataset_status("mnist", tmp_path) == "present"
    assert dataset_status("mnist-t10k", tmp_path) == "present"
    assert dataset_status("fashion-mnist", tmp_path) == (
        "not downloaded; 4 files of the same names are mnist's"
    )
    assert dataset_status("fashion-mnist-t10k", tmp_path) == (
        "not downloaded; 2 files of the same names are mnist's"
    )
    assert dataset_status("digits", tmp_path) == "bundled with scikit-learn"
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset("fashion-mnist-t10k", data_dir=tmp_path)
    message = str(info.value)
    assert "delete" not in message and "corrupt" not in message
    assert f"place t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz in {tmp_path}" in (
        message.replace(f"{tmp_path / 'fashion-mnist'}", f"{tmp_path}")
    )
    assert "t10k-images-idx3-ubyte.gz here is mnist's file of that name (kept)" in message
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_fashion_mnist_downloads_beside_mnist_files_of_the_same_names(tmp_path, monkeypatch):
    source = tmp_path / "source"
    fake_mnist(source, monkeypatch, dataset="fashion-mnist")
    fake_mnist(tmp_path / "cache", monkeypatch, n_train=25, n_test=10)  # other bytes: MNIST's
    serve_from(source, monkeypatch)
    data = load_dataset("fashion-mnist", data_dir=tmp_path / "cache")
    assert data.X_test.shape == (20, 28, 28) and data.class_names[0] == "T-shirt/top"
    assert load_dataset("mnist", data_dir=tmp_path / "cache").X_test.shape == (10, 28, 28)
    assert len(list((tmp_path / "cache" / "fashion-mnist").iterdir())) == 4


def test_partly_present_and_corrupt_files_are_told_apart(tmp_path, monkeypatch):
    from handgrad.data import dataset_status

    fake_mnist(tmp_path, monkeypatch)
    for name in TRAIN:
        (tmp_path / name).unlink()
    assert dataset_status("mnist", tmp_path) == "2 of 4 files present"
    assert dataset_status("mnist-t10k", tmp_path) == "present"
    (tmp_path / TEST[1]).write_bytes(b"something else")
    assert dataset_status("mnist-t10k", tmp_path) == (
        "1 of 2 files present; t10k-labels-idx1-ubyte.gz corrupt"
    )
    with pytest.raises(DataFormatError, match="delete it to download it again"):
        load_dataset("mnist-t10k", data_dir=tmp_path)


def test_datasets_command_reads_the_files_by_content(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from handgrad.cli import main

    fake_mnist(tmp_path, monkeypatch)
    output = CliRunner().invoke(main, ["datasets", "--data-dir", str(tmp_path)]).output
    rows = {line.split()[0]: line for line in output.splitlines() if line.strip()}
    assert rows["mnist"].endswith("(present)") and rows["mnist-t10k"].endswith("(present)")
    assert "(not downloaded; 4 files of the same names are mnist's)" in rows["fashion-mnist"]
    assert "partly" not in output


# ------------------------------------------------------------------- offline, briefly
REAL_RETRIEVE = pooch.retrieve
URLLIB3_REPR = (
    "HTTPSConnectionPool(host='ossci-datasets.s3.amazonaws.com', port=443): Max retries "
    "exceeded with url: /mnist/t10k-images-idx3-ubyte.gz (Caused by NameResolutionError("
    '"<urllib3.connection.HTTPSConnection object at 0x7f3b2c1d5e10>: Failed to resolve '
    "'ossci-datasets.s3.amazonaws.com' ([Errno -2] Name or service not known)\"))"
)


def test_offline_download_is_one_line_without_pooch_chatter(tmp_path, monkeypatch, capfd):
    import requests

    def unreachable(self, url, output_file, pooch_instance, check_only=False):
        raise requests.exceptions.ConnectionError(URLLIB3_REPR)

    monkeypatch.setattr(pooch, "retrieve", REAL_RETRIEVE)
    monkeypatch.setattr(pooch.HTTPDownloader, "__call__", unreachable)
    level = pooch.get_logger().level
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset("mnist-t10k", data_dir=tmp_path)
    first = str(info.value).splitlines()[0]
    assert first == (
        "could not reach ossci-datasets.s3.amazonaws.com, storage.googleapis.com or "
        "yann.lecun.com (name not resolved); place t10k-images-idx3-ubyte.gz and "
        f"t10k-labels-idx1-ubyte.gz in {tmp_path / 'mnist'}"
    )
    assert "HTTPSConnectionPool" not in str(info.value)
    assert "Downloading" not in capfd.readouterr().err
    assert not list(tmp_path.iterdir())  # no empty folder left behind
    assert pooch.get_logger().level == level  # as it was, afterwards


# -------------------------------------------------------------- a folder is a folder
def test_a_folder_given_as_data_is_named_a_folder(tmp_path):
    (tmp_path / "table.csv").mkdir()
    with pytest.raises(IsADirectoryError, match=r"table\.csv is a folder, not a CSV file"):
        load_dataset(str(tmp_path / "table.csv"))
    with pytest.raises(IsADirectoryError, match=r"is a folder, not a \.npz file"):
        load_dataset(f"npz:{tmp_path}")
    with pytest.raises(IsADirectoryError, match=r"is a folder, not a dataset name or a \.csv"):
        load_dataset(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no such CSV file"):
        load_dataset(str(tmp_path / "absent.csv"))


@pytest.mark.skipif(not (MNIST_DIR / TEST[0]).is_file(), reason="no real MNIST files")
def test_real_mnist_files_are_mnists_and_not_fashion_mnists():
    from handgrad.data import dataset_status

    assert remote.owner(MNIST_DIR / TEST[0]) == "mnist"
    assert dataset_status("mnist-t10k", MNIST_DIR) == "present"
    assert dataset_status("fashion-mnist-t10k", MNIST_DIR) == (
        "not downloaded; 2 files of the same names are mnist's"
    )
