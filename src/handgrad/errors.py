"""The exceptions handgrad raises on purpose.

Each subclasses the built-in exception a Python user would expect (``ValueError`` for
bad data or files), so ``except ValueError`` keeps working; the command line turns any
:class:`HandgradError` into one clear line and a non-zero exit code.
"""

from __future__ import annotations

from collections.abc import Iterable


class HandgradError(Exception):
    """Base class of every error handgrad raises deliberately."""


class DataFormatError(HandgradError, ValueError):
    """A data file is corrupt, truncated, of the wrong format, or unsafe to read."""


class DatasetUnavailableError(HandgradError, OSError):
    """A named dataset is not on disk and cannot be downloaded (e.g. offline)."""


class ModelFileError(HandgradError, ValueError):
    """A model or checkpoint file is corrupt, edited, or of an incompatible version."""


class TrainingDivergedError(HandgradError, ValueError, FloatingPointError):
    """The training loss or the weights became non-finite; the last finite weights were
    kept.

    A ``ValueError`` as scikit-learn's "Solver produced non-finite parameter weights"
    error is (the usual cause is input of huge magnitude), and still a
    ``FloatingPointError`` for code written against earlier versions.
    """


def did_you_mean(name: str, choices: Iterable[object]) -> str:
    """`` (did you mean 'train'?)`` for the closest of ``choices`` to a mistyped
    ``name``, or ``""`` when none is close."""
    import difflib

    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
