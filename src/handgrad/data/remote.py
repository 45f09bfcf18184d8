"""Files of the named datasets: where they live, their pinned checksums, downloads.

Files are looked for in the data folder -- the ``data_dir`` argument, else the
``HANDGRAD_DATA_DIR`` environment variable, else ``pooch.os_cache("handgrad")`` -- both
directly and in its sub-folder named after the dataset (``<data dir>/mnist/``). A file
found there is checked against its pinned hash; a missing one is downloaded with pooch
into the sub-folder, from the first mirror that answers, and checked the same way.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pooch

from handgrad.data.cifar import extract_archive
from handgrad.errors import DataFormatError, DatasetUnavailableError

__all__ = [
    "DATASET_FILES",
    "RemoteFile",
    "cifar10_folder",
    "data_home",
    "fetch",
    "owner",
    "status",
    "verify",
]

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


def owner(path: str | os.PathLike) -> str | None:
    """The dataset whose published file ``path`` is, by name and checksum, or None.

    MNIST and Fashion-MNIST publish files of the same names: only the content tells
    them apart."""
    path = Path(path)
    for dataset, files in DATASET_FILES.items():
        for remote in files:
            if remote.name == path.name and _matches(path, remote.known_hash):
                return dataset
    return None


def status(
    dataset: str, names: tuple[str, ...] | None = None, *, data_dir: str | os.PathLike | None = None
) -> str:
    """What the data folder holds of ``dataset``'s files (all, or those ``names``), judged
    by checksum: "present", "not downloaded", or what is there and what is not."""
    root = data_home(data_dir)
    if dataset == "cifar10":
        extracted = _cifar_extracted_status(root)
        if extracted is not None:
            return extracted
    files = [f for f in DATASET_FILES[dataset] if names is None or f.name in names]
    found = [_find_local(root, dataset, f) for f in files]
    valid = sum(isinstance(f, Path) for f in found)
    if valid == len(files):
        return "present"
    parts = [f"{valid} of {len(files)} files present" if valid else "not downloaded"]
    corrupt = [f.name for f, where in zip(files, found, strict=True) if where == _CORRUPT]
    if corrupt:
        parts.append(f"{', '.join(corrupt)} corrupt")
    for other in sorted({w for w in found if isinstance(w, str) and w != _CORRUPT}):
        count = found.count(other)
        noun = "files of the same names are" if count > 1 else "file of the same name is"
        parts.append(f"{count} {noun} {other}'s")
    return "; ".join(parts)


def fetch(
    dataset: str,
    names: tuple[str, ...] | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
) -> dict[str, Path]:
    """Paths of ``dataset``'s files (all, or those ``names``), downloading missing ones.

    A file of the right name that is another dataset's (Fashion-MNIST's in place of
    MNIST's, say) is left alone: neither used nor downloaded over.

    Raises
    ------
    DatasetUnavailableError
        Some file is neither present nor downloadable; the message says which files to
        put in which folder.
    DataFormatError
        A present or downloaded file does not match its pinned hash (nor any other
        dataset's).
    """
    files = [f for f in DATASET_FILES[dataset] if names is None or f.name in names]
    root = data_home(data_dir)
    found: dict[str, Path] = {}
    missing: list[RemoteFile] = []
    others: list[str] = []
    reason = f"dataset {dataset!r} is not on disk and downloads are switched off"
    for remote in files:
        local = _find_local(root, dataset, remote)
        if local == _CORRUPT:
            for folder in (root, root / dataset):
                if (folder / remote.name).is_file() and owner(folder / remote.name) is None:
                    verify(folder / remote.name, remote.known_hash)  # raises, naming it
        if isinstance(local, str):
            if local != _CORRUPT:
                others.append(f"{remote.name} here is {local}'s file of that name (kept)")
            local = None
        target_taken = (root / dataset / remote.name).exists()
        if local is None and download and not missing and not target_taken:
            local, reason = _download(root / dataset, remote)
        if local is None:
            missing.append(remote)  # after one failure, assume offline: no more tries
        else:
            found[remote.name] = local
    if missing:
        raise DatasetUnavailableError(_unavailable_message(dataset, root, missing, reason, others))
    return found


_CORRUPT = "corrupt"


def _find_local(root: Path, dataset: str, remote: RemoteFile) -> Path | str | None:
    """The valid local copy of ``remote``; else the name of the dataset whose file of
    that name is there, or :data:`_CORRUPT`; None when there is no file of that name."""
    verdict: str | None = None
    for folder in (root, root / dataset):
        path = folder / remote.name
        if not path.is_file():
            continue
        if _matches(path, remote.known_hash):
            return path
        verdict = verdict if verdict == _CORRUPT else (owner(path) or _CORRUPT)
    return verdict


def _matches(path: Path, known_hash: str) -> bool:
    algorithm, _, expected = known_hash.partition(":")
    return pooch.file_hash(str(path), alg=algorithm) == expected


def _download(folder: Path, remote: RemoteFile) -> tuple[Path | None, str]:
    """Try each mirror; return the path, or None and one line saying why none answered."""
    error: Exception | None = None
    made = not folder.exists()
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)  # no "Downloading ..." lines: a failure says it all
    try:
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
                error = exc
                continue
            verify(path, remote.known_hash)
            return Path(path), ""
    finally:
        logger.setLevel(level)
    if made and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()  # pooch made it for the download that never came
    hosts = [urlsplit(url).hostname or url for url in remote.urls]
    where = hosts[0] if len(hosts) == 1 else f"{', '.join(hosts[:-1])} or {hosts[-1]}"
    return None, f"could not reach {where} ({_short_reason(error)})"


_REASONS = (
    (
        ("NameResolution", "Name or service not known", "getaddrinfo", "nodename nor servname"),
        "name not resolved",
    ),
    (("Connection refused",), "connection refused"),
    (("Network is unreachable",), "network unreachable"),
    (("timed out", "Timeout"), "timed out"),
)


def _short_reason(error: Exception | None) -> str:
    """A few words for a network error, whose text can be a 300-character repr."""
    if error is None:
        return "no mirror"
    text = str(error)
    for needles, words in _REASONS:
        if any(n in text for n in needles):
            return words
    first = (text.splitlines() or [type(error).__name__])[0]
    return first if len(first) <= 80 else first[:77] + "..."


def _unavailable_message(
    dataset: str, root: Path, missing: list[RemoteFile], why: str, notes: list[str]
) -> str:
    names = [m.name for m in missing]
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    lines = [f"{why}; place {listed} in {root / dataset}"]
    for remote in missing:
        lines.append(f"  {remote.name}  ({remote.known_hash}) from {remote.urls[0]}")
    lines.append(
        f"(or directly in {root}, or point --data-dir or the {ENV_VAR} environment variable "
        "at a folder that holds them)"
    )
    return "\n".join(lines + notes)


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


def _cifar_extracted_status(root: Path) -> str | None:
    """The status of an extracted CIFAR-10 folder, or None when there is none."""
    for folder in (root, root / "cifar10"):
        extracted = folder / "cifar-10-batches-py"
        if (extracted / "data_batch_1").is_file():
            bad = [
                name
                for name, known_hash in CIFAR_BATCH_HASHES.items()
                if (extracted / name).is_file() and not _matches(extracted / name, known_hash)
            ]
            return f"{', '.join(bad)} corrupt" if bad else "present"
        if (folder / "cifar-10-batches-bin" / "data_batch_1.bin").is_file():
            return "present"
    return None
