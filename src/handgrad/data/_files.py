"""The checks of a path a reader is given, before it reads: a regular file
(:func:`~handgrad._validation.require_file`), no larger than this machine's memory."""

from __future__ import annotations

import os

from handgrad._validation import check_memory, require_file

__all__ = ["read_bounded", "require_file"]


def read_bounded(path: str | os.PathLike, what: str) -> bytes:
    """The bytes of the regular file ``path``, refused before reading when it is larger
    than this machine's memory; never more than its size when asked (a file that grows
    while read is cut there)."""
    require_file(path, what)
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        check_memory(size, os.path.basename(path), "to read")
        return handle.read(size)
