"""Atomic file writes: a temporary file beside the target, fsync, then rename.

Every file handgrad writes (models, checkpoints, metrics, reports, predictions) goes
through :func:`write_atomically`, so a crash at any point leaves the old file or the new
one, never a mixture. A new file gets the mode the user's umask gives (``umask 077``
makes it private); a replaced file keeps its mode. The temporary file's name carries the
writer's process id, so :func:`remove_stale_temporaries` removes only what a dead
process left behind, never the half-written file of a live one.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path

__all__ = ["remove_stale_temporaries", "write_atomically"]

# .<target name>.<pid>.<random>.tmp
_TEMPORARY = re.compile(r"^\..+\.(\d+)\.[0-9a-f]+\.tmp$")


def _check_target(path: Path) -> None:
    folder = path.parent
    if not folder.exists():
        raise FileNotFoundError(f"cannot save to {path}: the folder {folder} does not exist")
    if not folder.is_dir():
        raise NotADirectoryError(f"cannot save to {path}: {folder} is not a folder")
    if path.is_dir():
        raise IsADirectoryError(f"cannot save to {path}: it is a folder")


def _create_temporary(path: Path) -> tuple[int, Path]:
    """Open a new temporary file beside ``path``, created with mode 0666 so that the
    kernel applies the umask exactly as it would to ``open(path, "w")``."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
        except PermissionError as exc:
            raise PermissionError(
                f"cannot save to {path}: the folder {path.parent} is not writable"
            ) from exc
    raise FileExistsError(f"cannot save to {path}: no free temporary file name beside it")


def write_atomically(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync, then rename over it.

    Either the whole new content lands at ``path`` or, on any error, the old file (if
    any) is untouched and no temporary file is left behind.
    """
    path = Path(path)
    _check_target(path)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():  # a replaced file keeps its mode
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_folder(path.parent)
    return path


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files in ``folder`` whose writer is no longer running;
    return them. Files of a live process, and names without a process id, are kept."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp"):
        match = _TEMPORARY.match(tmp.name)
        if match is None or _alive(int(match.group(1))):
            continue
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OverflowError:
        return False
    return True


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
