"""The one check of a path a reader is given: there, and not a folder."""

from __future__ import annotations

import os


def require_file(path: str | os.PathLike, what: str) -> None:
    """Raise FileNotFoundError or IsADirectoryError, naming ``what`` was expected
    ("CSV file", "IDX file", ...), unless ``path`` exists and is not a folder."""
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a folder, not {_article(what)} {what}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such {what}: {path}")


def _article(what: str) -> str:
    return "an" if what.lstrip(".")[:1].lower() in "aeiou" else "a"
