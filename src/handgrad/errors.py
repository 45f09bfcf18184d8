"""The exceptions handgrad raises on purpose.

Each subclasses the built-in exception a Python user would expect (``ValueError`` for
bad data or files), so ``except ValueError`` keeps working; the command line turns any
:class:`HandgradError` into one clear line and a non-zero exit code.
"""

from __future__ import annotations


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
