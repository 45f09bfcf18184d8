"""The installed handgrad's version, as its package metadata gives it."""

from __future__ import annotations

import importlib.metadata


def handgrad_version() -> str:
    """``importlib.metadata``'s version of handgrad, or ``"0+unknown"`` when run from a
    source tree that was never installed."""
    try:
        return importlib.metadata.version("handgrad")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"
