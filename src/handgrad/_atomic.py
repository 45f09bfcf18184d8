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
import tempfile
from pathlib import Path

__all__ = ["remove_stale_temporaries", "write_atomically"]

# .<target name>.<pid>.<random>.tmp
_TEMPORARY = re.compile(r"^\..+\.(\d+)\.[a-z0-9_]+\.tmp$")


def _check_target(path: Path) -> None:
    folder = path.parent
    if not folder.exists():
        raise FileNotFoundError(f"cannot save to {path}: the folder {folder} does not exist")
    if not folder.is_dir():
        raise NotADirectoryError(f"cannot save to {path}: {folder} is not a folder")
    if path.is_dir():
        raise IsADirectoryError(f"cannot save to {path}: it is a folder")


def _umask() -> int:
    """The process's umask, read without changing it where the system says it."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and put back
    os.umask(mask)
    return mask


def write_atomically(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync, then rename over it.

    Either the whole new content lands at ``path`` or, on any error, the old file (if
    any) is untouched and no temporary file is left behind.
    """
    path = Path(path)
    _check_target(path)
    try:
        handle = tempfile.NamedTemporaryFile(
            dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", delete=False
        )
    except PermissionError as exc:
        raise PermissionError(
            f"cannot save to {path}: the folder {path.parent} is not writable"
        ) from exc
    except OSError as exc:  # named by the target: the temporary name means nothing
        raise _named(exc, path) from exc
    tmp = Path(handle.name)
    try:
        with handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # NamedTemporaryFile creates 0o600: a replaced file keeps its mode, a new one
        # gets what the umask gives an ordinary new file.
        mode = path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask()
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.filename is not None:
            raise _named(exc, path) from exc
        raise
    _fsync_folder(path.parent)
    return path


def _named(exc: OSError, path: Path) -> OSError:
    """``exc`` about ``path``, not the temporary file beside it (same class and errno)."""
    if exc.errno is None:
        return type(exc)(f"cannot save to {path}: {exc}")
    return type(exc)(exc.errno, exc.strerror, str(path))


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
