"""A run's configuration: everything that decides a training run, checked when made."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from handgrad._names import ACTIVATIONS, NORMS, PREPROCESSING, SOLVERS, TASKS

__all__ = ["MIN_EPOCHS", "PREPROCESSING", "SOLVERS", "STEP_BUDGET", "RunConfig", "default_epochs"]

MISSING_LABEL = ("error", "drop")
# The default training length: enough epochs for this many minibatch steps (small sets
# take two steps an epoch and underfit in 20 epochs), and never fewer than MIN_EPOCHS.
STEP_BUDGET, MIN_EPOCHS = 600, 20


@dataclass
class RunConfig:
    """Everything that decides a training run; the defaults train the notes' two-layer
    network on scikit-learn's digits to about 0.97 test accuracy in a few seconds.

    ``preprocessing=None`` standardizes tables and scales images; ``epochs=None`` trains
    :func:`default_epochs`. :func:`prepare_data` settles both (and makes a data file's
    path absolute), so that the configuration a run records is the one it trained.
    ``header`` and ``missing_label`` are passed to :func:`~handgrad.data.load_dataset`.
    ``task=None`` is the dataset's own ("regression" for diabetes, "classification" for
    the others and for a user file); ``early_stopping=None`` is on for regression (with
    an epoch-by-epoch solver) and off for classification: a small regression table
    overfits within the default epochs, and the best validation R²'s weights generalise.
    :func:`prepare_data` settles both.

    ``labels`` is the labels file of a ``.npy`` ``data`` file (``.npy``, or a one-column
    ``.csv``): X is then trained from its file, never read into memory (see
    :mod:`handgrad.data.mapped`), as stored: ``preprocessing`` "none", the ``dtype`` of
    the file.
    """

    data: str = "digits"
    data_dir: str | None = None
    label: str | None = None
    hidden: tuple[int, ...] = (128,)
    activation: str = "relu"
    dropout: float = 0.0
    norm: str | None = None
    solver: str = "adam"
    learning_rate: float = 2e-3
    alpha: float = 1e-4
    epochs: int | None = None
    batch_size: int = 64
    dtype: str = "float32"
    seed: int = 0
    early_stopping: bool | None = None
    patience: int = 10
    validation_fraction: float = 0.1
    test_fraction: float = 0.25
    preprocessing: str | None = None
    checkpoint_every: int | None = None
    header: bool | None = None
    missing_label: str = "error"
    task: str | None = None
    labels: str | None = None

    def __post_init__(self) -> None:
        # imported here: a command's --help reads the defaults without loading SciPy
        from handgrad._validation import check_choice, check_number

        self.hidden = tuple(self.hidden)
        if not self.hidden:
            raise ValueError("hidden sizes must name at least one hidden layer")
        for i, h in enumerate(self.hidden, start=1):
            check_number(h, f"hidden size {i}", low=1, integer=True)
        check_choice(self.activation, "activation", ACTIVATIONS)
        check_number(self.dropout, "dropout", low=0, high=1, high_open=True)
        if self.norm is not None:
            check_choice(self.norm, "norm", NORMS)
        check_choice(self.solver, "solver", SOLVERS)
        check_choice(self.dtype, "dtype", ("float32", "float64"))
        if self.preprocessing is not None:
            check_choice(self.preprocessing, "preprocessing", PREPROCESSING)
        check_choice(self.missing_label, "missing label", MISSING_LABEL)
        if self.task is not None:
            check_choice(self.task, "task", TASKS)
        if self.header is not None and not isinstance(self.header, bool):
            raise TypeError(f"header must be True, False or None, but got {self.header!r}")
        check_number(self.learning_rate, "learning rate", low=0, low_open=True)
        check_number(self.alpha, "alpha (L2 regularisation)", low=0)
        if self.epochs is not None:
            check_number(self.epochs, "epochs", low=1, integer=True)
        check_number(self.batch_size, "batch size", low=1, integer=True)
        # NumPy's and scikit-learn's seeds are 32-bit.
        check_number(self.seed, "seed", low=0, high=2**32 - 1, integer=True)
        check_number(self.patience, "patience", low=1, integer=True)
        for name in ("validation_fraction", "test_fraction"):
            value = check_number(getattr(self, name), name.replace("_", " "))
            if not 0 < value < 1:
                raise ValueError(f"{name.replace('_', ' ')} must be in (0, 1), got {value!r}")
        if self.checkpoint_every is not None:
            check_number(self.checkpoint_every, "checkpoint interval", low=1, integer=True)
        if self.solver == "lbfgs" and (self.checkpoint_every or self.early_stopping):
            raise ValueError(
                "checkpoints and early stopping need an epoch-by-epoch solver (adam or "
                "sgd); lbfgs runs as one full-batch optimisation"
            )

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every field's default, without making (and checking) a configuration: what
        a command's ``--help`` shows."""
        return {f.name: f.default for f in dataclasses.fields(cls)}

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "hidden": list(self.hidden)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown configuration keys {unknown}")
        return cls(**d)


def default_epochs(n_train: int, batch_size: int) -> int:
    """Epochs enough for :data:`STEP_BUDGET` minibatch steps, and at least
    :data:`MIN_EPOCHS`: a small set takes few steps an epoch."""
    steps_per_epoch = math.ceil(n_train / batch_size)
    return max(MIN_EPOCHS, math.ceil(STEP_BUDGET / steps_per_epoch))
