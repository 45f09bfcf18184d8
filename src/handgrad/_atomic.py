"""Atomic file writes: a temporary file beside the target, fsync, then rename.

Every file handgrad writes (models, checkpoints, metrics, reports, predictions) goes
through :func:`write_atomically`, so a crash at any point leaves the old file or the new
one, never a mixture.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def _check_target(path: Path) -> None:
    folder = path.parent
    if not folder.exists():
        raise FileNotFoundError(f"cannot save to {path}: the folder {folder} does not exist")
    if not folder.is_dir():
        raise NotADirectoryError(f"cannot save to {path}: {folder} is not a folder")
    if path.is_dir():
        raise IsADirectoryError(f"cannot save to {path}: it is a folder")


def write_atomically(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync, then rename over it.

    Either the whole new content lands at ``path`` or, on any error, the old file (if
    any) is untouched and no temporary file is left behind.
    """
    path = Path(path)
    _check_target(path)
    try:
        handle = tempfile.NamedTemporaryFile(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
        )
    except PermissionError as exc:
        raise PermissionError(
            f"cannot save to {path}: the folder {path.parent} is not writable"
        ) from exc
    tmp = Path(handle.name)
    try:
        with handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # NamedTemporaryFile creates 0o600; give the result an ordinary file's mode.
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_folder(path.parent)
    return path


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable where the platform allows (POSIX only)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
