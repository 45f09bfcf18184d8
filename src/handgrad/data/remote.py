"""Files of the named datasets: where they live, their pinned checksums, downloads.

Files are looked for in the data folder -- the ``data_dir`` argument, else the
``HANDGRAD_DATA_DIR`` environment variable, else ``pooch.os_cache("handgrad")`` -- both
directly and in its sub-folder named after the dataset (``<data dir>/mnist/``). A file
found there is checked against its pinned hash; a missing one is downloaded with pooch
into the sub-folder, from the first mirror that answers, and checked the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pooch

from handgrad.data.cifar import extract_archive
from handgrad.errors import DataFormatError, DatasetUnavailableError

__all__ = ["DATASET_FILES", "RemoteFile", "cifar10_folder", "data_home", "fetch", "verify"]

ENV_VAR = "HANDGRAD_DATA_DIR"
_TIMEOUT_S = 30


@dataclass(frozen=True)
class RemoteFile:
    """One published file: its name, pinned hash (``"sha256:..."``/``"md5:..."``), URLs."""

    name: str
    known_hash: str
    urls: tuple[str, ...]


def _files(mirrors: tuple[str, ...], hashes: dict[str, str]) -> tuple[RemoteFile, ...]:
    return tuple(RemoteFile(n, h, tuple(m + n for m in mirrors)) for n, h in hashes.items())


_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
_FASHION_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
_CIFAR_MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)

#: Pinned files of each downloadable dataset (TensorFlow Datasets' SHA-256 for MNIST,
#: the MD5s published by Zalando and by Alex Krizhevsky for the others).
DATASET_FILES: dict[str, tuple[RemoteFile, ...]] = {
    "mnist": _files(
        _MNIST_MIRRORS,
        {
            "train-images-idx3-ubyte.gz": "sha256:440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "sha256:3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "sha256:8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "sha256:f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
    ),
    "fashion-mnist": _files(
        _FASHION_MIRRORS,
        {
            "train-images-idx3-ubyte.gz": "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "md5:25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "md5:bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "md5:bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
    "cifar10": _files(
        _CIFAR_MIRRORS,
        {
            "cifar-10-python.tar.gz": "md5:c58f30108f718f92721af3b95e74349a",
        },
    ),
}

#: MD5s of the extracted Python-version batches (as torchvision pins them).
CIFAR_BATCH_HASHES: dict[str, str] = {
    "data_batch_1": "md5:c99cafc152244af753f735de768cd75f",
    "data_batch_2": "md5:d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "md5:54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "md5:634d18415352ddfa80567beed471001a",
    "data_batch_5": "md5:482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "md5:40351d587109b95175f43aff81a1287e",
    "batches.meta": "md5:5ff9c542aee3614f3951f8cda6e48888",
}


def data_home(data_dir: str | os.PathLike | None = None) -> Path:
    """The data folder: ``data_dir``, else ``$HANDGRAD_DATA_DIR``, else pooch's user cache."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return Path(pooch.os_cache("handgrad"))


def verify(path: str | os.PathLike, known_hash: str) -> None:
    """Raise :class:`DataFormatError` unless the file at ``path`` has ``known_hash``."""
    algorithm, _, expected = known_hash.partition(":")
    actual = pooch.file_hash(str(path), alg=algorithm)
    if actual != expected:
        raise DataFormatError(
            f"{path} has {algorithm} {actual}, expected {expected}: the file is corrupt, "
            "incomplete or from another dataset; delete it to download it again"
        )


def fetch(
    dataset: str,
    names: tuple[str, ...] | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
) -> dict[str, Path]:
    """Paths of ``dataset``'s files (all, or those ``names``), downloading missing ones.

    Raises
    ------
    DatasetUnavailableError
        Some file is neither present nor downloadable; the message says which files to
        put in which folder.
    DataFormatError
        A present or downloaded file does not match its pinned hash.
    """
    files = [f for f in DATASET_FILES[dataset] if names is None or f.name in names]
    root = data_home(data_dir)
    found: dict[str, Path] = {}
    missing: list[RemoteFile] = []
    reason = "downloads are switched off"
    for remote in files:
        local = _find_local(root, dataset, remote)
        if local is None and download and not missing:
            local, reason = _download(root / dataset, remote)
        if local is None:
            missing.append(remote)  # after one failure, assume offline: no more tries
        else:
            found[remote.name] = local
    if missing:
        raise DatasetUnavailableError(_unavailable_message(dataset, root, missing, reason))
    return found


def _find_local(root: Path, dataset: str, remote: RemoteFile) -> Path | None:
    for folder in (root, root / dataset):
        path = folder / remote.name
        if path.is_file():
            verify(path, remote.known_hash)
            return path
    return None


def _download(folder: Path, remote: RemoteFile) -> tuple[Path | None, str]:
    """Try each mirror; return the path, or None and why the last mirror failed."""
    reason = "no mirror"
    for url in remote.urls:
        try:
            path = pooch.retrieve(
                url,
                known_hash=remote.known_hash,
                fname=remote.name,
                path=folder,
                downloader=pooch.HTTPDownloader(progressbar=False, timeout=_TIMEOUT_S),
            )
        except Exception as exc:  # network errors come from requests, urllib3, pooch
            reason = f"{type(exc).__name__}: {exc}"
            continue
        verify(path, remote.known_hash)
        return Path(path), reason
    return None, reason


def _unavailable_message(dataset: str, root: Path, missing: list[RemoteFile], why: str) -> str:
    lines = [
        f"dataset {dataset!r} is not on disk and could not be downloaded ({why}).",
        f"Place these files in {root / dataset} (or directly in {root}):",
    ]
    for remote in missing:
        lines.append(f"  {remote.name}  ({remote.known_hash}) from {remote.urls[0]}")
    lines.append(
        f"or point --data-dir or the {ENV_VAR} environment variable at a folder that holds them."
    )
    return "\n".join(lines)


def cifar10_folder(data_dir: str | os.PathLike | None = None, *, download: bool = True) -> Path:
    """A folder with the extracted CIFAR-10 batches, extracting or downloading as needed.

    An extracted ``cifar-10-batches-py`` (checked against the pinned batch hashes) or
    ``cifar-10-batches-bin`` folder is used as it is; otherwise ``cifar-10-python.tar.gz``
    is found or downloaded, checked, and extracted into ``<data dir>/cifar10/``.
    """
    root = data_home(data_dir)
    for folder in (root, root / "cifar10"):
        extracted = folder / "cifar-10-batches-py"
        if (extracted / "data_batch_1").is_file():
            for name, known_hash in CIFAR_BATCH_HASHES.items():
                if (extracted / name).is_file():
                    verify(extracted / name, known_hash)
            return extracted
        if (folder / "cifar-10-batches-bin" / "data_batch_1.bin").is_file():
            return folder / "cifar-10-batches-bin"
    archive = fetch("cifar10", data_dir=data_dir, download=download)["cifar-10-python.tar.gz"]
    return extract_archive(archive, root / "cifar10") / "cifar-10-batches-py"
