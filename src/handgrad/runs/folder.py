"""A run's folder: made or opened, locked while a process trains into it, its JSON files.

A folder that already holds files is only reused when asked; while a process trains
into it, it holds a lock there (:data:`LOCK`, holding its process id), and a second
process is refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from handgrad._atomic import write_atomically
from handgrad.errors import HandgradError

__all__ = [
    "CHECKPOINT",
    "CONFIG",
    "LOCK",
    "METRICS",
    "MODEL",
    "REPORT",
    "RunFolderInUseError",
    "make_run_dir",
    "open_run_dir",
    "read_json",
    "write_json",
]

CONFIG, CHECKPOINT, MODEL = "config.json", "checkpoint.safetensors", "model.safetensors"
METRICS, REPORT = "metrics.json", "report.png"
LOCK = ".handgrad.lock"


class RunFolderInUseError(HandgradError, OSError):
    """Another live process holds the run folder's lock."""


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    return write_atomically(path, json_bytes(obj))


def json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2) + "\n").encode("utf-8")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file, with an error naming the file when it is missing or broken."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc})") from None


def _run_dir_path(
    out: str | os.PathLike[str] | None, name: str | None, root: str | os.PathLike[str]
) -> Path:
    if out is not None:
        return Path(out)
    if name is not None and (not name or os.sep in name or name in (".", "..")):
        raise ValueError(f"run name must be a plain folder name, got {name!r}")
    base = Path(root) / (name or time.strftime("%Y%m%d-%H%M%S"))
    folder, n = base, 1
    while name is None and folder.exists():  # two runs in the same second
        n += 1
        folder = base.with_name(f"{base.name}-{n}")
    return folder


def _make_folder(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return those created, outermost first."""
    for parent in [folder, *folder.parents]:
        if parent.exists() and not parent.is_dir():
            raise NotADirectoryError(f"cannot use {folder} as run folder: {parent} is a file")
    created = [p for p in reversed([folder, *folder.parents]) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PermissionError(
            f"cannot write to run folder {folder}: {exc.strerror or exc}"
        ) from None
    return created


def make_run_dir(
    out: str | os.PathLike[str] | None = None,
    name: str | None = None,
    root: str | os.PathLike[str] = "runs",
) -> Path:
    """Create (if needed) and return a writable run folder.

    ``out`` is the folder itself; otherwise ``root/name``, or ``root/<timestamp>``.
    Raises OSError with a one-line explanation when it cannot be created or written.
    :func:`open_run_dir` is the guarded form that training uses.
    """
    folder = _run_dir_path(out, name, root)
    _make_folder(folder)
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise PermissionError(
            f"cannot write to run folder {folder}: {exc.strerror or exc}"
        ) from None
    return folder


@contextlib.contextmanager
def open_run_dir(
    out: str | os.PathLike[str] | None = None,
    name: str | None = None,
    root: str | os.PathLike[str] = "runs",
    *,
    overwrite: bool = False,
    existing: bool = False,
) -> Iterator[Path]:
    """The run folder (see :func:`make_run_dir`), locked for this process while in use.

    A folder that already holds files is refused unless ``overwrite`` (or ``existing``,
    for a run being resumed, which must exist). When the block fails, the folder and the
    parents this call created are removed again if nothing else is in them.
    """
    folder = _run_dir_path(out, name, root)
    if existing and not folder.is_dir():
        raise FileNotFoundError(f"no such run folder: {folder}")
    created = _make_folder(folder)
    try:
        with _locked(folder):
            if not (existing or overwrite) and _holds_files(folder):
                resumable = " or --resume to continue it" if (folder / CHECKPOINT).is_file() else ""
                raise FileExistsError(
                    f"run folder {folder} already exists; choose another --name/--out, "
                    f"or give --overwrite to replace it{resumable}"
                )
            yield folder
    except BaseException:
        for made in reversed(created):  # innermost first; only if left empty
            with contextlib.suppress(OSError):
                made.rmdir()
        raise


def _holds_files(folder: Path) -> bool:
    return any(p.name != LOCK for p in folder.iterdir())


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold ``folder/LOCK`` (an advisory ``flock``, which the system frees when the
    process dies, so a crashed run never blocks the next one)."""
    try:
        import fcntl
    except ImportError:  # no advisory locks on this platform: run unguarded
        yield
        return
    path = folder / LOCK
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise PermissionError(
                f"cannot write to run folder {folder}: {exc.strerror or exc}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise RunFolderInUseError(
                f"run folder {folder} is in use by another handgrad process (pid {holder}); "
                "wait for it to finish, or stop it, then try again"
            ) from None
        except OSError:  # a filesystem without locks (some network mounts): unguarded
            break
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the file as we opened it: take the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # while still holding it, so no one locks a removed file
        os.close(fd)
