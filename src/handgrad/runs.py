"""Training runs on disk: one folder per run, resumable after a crash.

A run folder (``runs/<name or timestamp>/``) holds

* ``checkpoint.safetensors`` — with ``checkpoint_every``, the whole training state
  (see :mod:`handgrad.callbacks`) and the configuration, rewritten atomically every K
  epochs; :func:`resume` continues from it;
* ``config.json`` — the :class:`RunConfig`;
* ``model.safetensors`` — the classifier (or regressor) and its preprocessing
  (:mod:`handgrad.bundle`);
* ``metrics.json`` — the per-epoch history, final accuracies and test confusion matrix
  (a regressor's R², MAE and RMSE on each part, and test predictions) and the
  configuration;
* ``report.png`` — loss, accuracy, confusion matrix and first-layer weights (a
  regressor's loss, R², predicted against true and residuals).

A regression run (``task="regression"``, the default for a regression dataset such as
diabetes) trains an :class:`~handgrad.MLPRegressor` on standardized targets: with the
default learning rate a network starts with outputs near 0 and takes many steps to
reach targets in the hundreds, so the targets are scaled as scikit-learn users do with a
``TransformedTargetRegressor``. The model file holds that wrapper, so it predicts in the
targets' own units.

Every file is written atomically. Only checkpoints are written during training; the
other files are all prepared (the report drawn, the model serialised) once it has
succeeded and only then written, so training that diverges, crashes or fails while
drawing its report never replaces the model, metrics or configuration of an earlier run.
An existing run folder is only reused when asked (``overwrite=True``); a run interrupted
before its first epoch finished saves nothing; a failed run removes the folder it made
when nothing else is in it. While a process trains into a folder it holds a lock there
(:data:`LOCK`, holding its process id), and a second process is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from handgrad._atomic import remove_stale_temporaries, write_atomically
from handgrad._mapped import row_chunks
from handgrad._split import describe_labels, stratified_split
from handgrad._validation import check_choice, check_number
from handgrad.bundle import save_bundle
from handgrad.callbacks import Checkpoint, ProgressBar
from handgrad.data import TASKS, Preprocessor, load_dataset
from handgrad.data.mapped import is_npy, load_mapped
from handgrad.data.preprocess import KINDS as PREPROCESSING
from handgrad.errors import HandgradError
from handgrad.heads import ACTIVATIONS
from handgrad.optim import OPTIMIZERS
from handgrad.state import fitted_target_regressor, load_run
from handgrad.workspace import CHUNK_ROWS

__all__ = [
    "CHECKPOINT",
    "CONFIG",
    "LOCK",
    "METRICS",
    "MODEL",
    "REPORT",
    "DataChangedError",
    "PreparedData",
    "RunConfig",
    "RunFolderInUseError",
    "TrainResult",
    "build_classifier",
    "build_regressor",
    "data_fingerprint",
    "default_epochs",
    "finish_run",
    "make_run_dir",
    "open_run_dir",
    "outcome_warnings",
    "prepare_data",
    "read_json",
    "regression_metrics",
    "resume",
    "run_metrics",
    "train",
    "write_json",
    "write_report",
]

CONFIG, CHECKPOINT, MODEL = "config.json", "checkpoint.safetensors", "model.safetensors"
METRICS, REPORT = "metrics.json", "report.png"
LOCK = ".handgrad.lock"
SOLVERS = tuple(OPTIMIZERS)
MISSING_LABEL = ("error", "drop")
# The default training length: enough epochs for this many minibatch steps (small sets
# take two steps an epoch and underfit in 20 epochs), and never fewer than MIN_EPOCHS.
STEP_BUDGET, MIN_EPOCHS = 600, 20
# A run ending within this much of chance accuracy (1/C) is reported.
CHANCE_MARGIN = 0.02
# metrics.json keeps at most this many test predictions (a seeded sample) for the report.
MAX_REPORTED_PREDICTIONS = 2000


class RunFolderInUseError(HandgradError, OSError):
    """Another live process holds the run folder's lock."""


class DataChangedError(HandgradError, ValueError):
    """The data of a resumed run differ from the data its checkpoint was trained on."""


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
        self.hidden = tuple(self.hidden)
        if not self.hidden:
            raise ValueError("hidden sizes must name at least one hidden layer")
        for i, h in enumerate(self.hidden, start=1):
            check_number(h, f"hidden size {i}", low=1, integer=True)
        check_choice(self.activation, "activation", tuple(ACTIVATIONS))
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

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "hidden": list(self.hidden)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown configuration keys {unknown}")
        return cls(**d)


# ------------------------------------------------------------------------------ files
def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    return write_atomically(path, _json_bytes(obj))


def _json_bytes(obj: Any) -> bytes:
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


# ------------------------------------------------------------------------------- data
def label_column(label: str | int | None) -> str | int | None:
    """A CSV label column as given by a person: an integer string means an index."""
    if isinstance(label, str) and label.lstrip("-").isdigit():
        return int(label)
    return label


@dataclass
class PreparedData:
    """A dataset split into train/validation/test, preprocessed to (N, D) rows.

    ``config`` is the configuration with its defaults settled for these data (see
    :class:`RunConfig`). For a ``.npy`` file trained from disk, ``X`` is the whole
    memory-mapped file, ``y`` its labels, ``rows`` the row numbers of each part
    ("train", "val", "test"), and ``X_train``, ``X_val`` and ``X_test`` are None: use
    :meth:`predict` and :meth:`score`, which read a part's rows a chunk at a time."""

    X_train: np.ndarray | None
    y_train: np.ndarray
    X_val: np.ndarray | None
    y_val: np.ndarray
    X_test: np.ndarray | None
    y_test: np.ndarray
    preprocessor: Preprocessor
    info: dict[str, Any] = field(default_factory=dict)
    config: RunConfig | None = None
    X: np.ndarray | None = None
    y: np.ndarray | None = None
    rows: dict[str, np.ndarray] | None = None

    def predict(self, model: Any, part: str) -> np.ndarray:
        """``model.predict`` of one part ("train", "val" or "test"); for X on disk, of its
        rows read CHUNK_ROWS at a time (the chunks ``predict`` makes of rows in memory, so
        the same numbers)."""
        if self.X is None or self.rows is None:
            return model.predict(getattr(self, f"X_{part}"))
        chunks = row_chunks(self.X, CHUNK_ROWS, self.rows[part])
        return np.concatenate([model.predict(chunk) for _, chunk in chunks])

    def score(self, classifier: Any, part: str) -> float:
        """A classifier's accuracy on one part."""
        if self.X is None:
            return float(classifier.score(getattr(self, f"X_{part}"), getattr(self, f"y_{part}")))
        from sklearn.metrics import accuracy_score

        return float(accuracy_score(getattr(self, f"y_{part}"), self.predict(classifier, part)))


def default_epochs(n_train: int, batch_size: int) -> int:
    """Epochs enough for :data:`STEP_BUDGET` minibatch steps, and at least
    :data:`MIN_EPOCHS`: a small set takes few steps an epoch."""
    steps_per_epoch = math.ceil(n_train / batch_size)
    return max(MIN_EPOCHS, math.ceil(STEP_BUDGET / steps_per_epoch))


_FILE_KINDS = ("csv", "npz", "npy")


def _data_file(data: str) -> Path | None:
    """The file a ``--data`` value names, or None for a named dataset."""
    kind, _, path = data.partition(":")
    if path and kind.lower() in _FILE_KINDS:
        return Path(path)
    if data.lower().endswith(tuple(f".{k}" for k in _FILE_KINDS)):
        return Path(data)
    return None


def _absolute_data(data: str) -> str:
    """``data`` with a file's path made absolute, so the run resumes from any folder."""
    kind, _, rest = data.partition(":")
    if rest and kind.lower() in _FILE_KINDS:
        return f"{kind}:{os.path.abspath(rest)}"
    if data.lower().endswith(tuple(f".{k}" for k in _FILE_KINDS)):
        return os.path.abspath(data)
    return data


def data_fingerprint(config: RunConfig, ds: Any = None) -> dict[str, Any]:
    """What identifies the data a run trained on: a file's absolute path, size and
    SHA-256 of its bytes (read a megabyte at a time: a file larger than memory is hashed
    whole without being held; with ``config.labels``, of both files, the sizes summed);
    for a named dataset, the SHA-256 of its arrays."""
    path = _data_file(config.data)
    if path is not None:
        files = [path] if config.labels is None else [path, Path(config.labels)]
        digest = hashlib.sha256()
        for file in files:
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        return {
            "path": os.path.abspath(path),
            **({} if config.labels is None else {"labels": os.path.abspath(config.labels)}),
            "size": sum(file.stat().st_size for file in files),
            "sha256": digest.hexdigest(),
        }
    digest = hashlib.sha256()
    for a in (ds.X_train, ds.y_train, ds.X_test, ds.y_test):
        a = np.asarray(a)
        if a.dtype == object:
            a = a.astype(str)
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(np.ascontiguousarray(a).tobytes())
    return {"name": config.data, "sha256": digest.hexdigest()}


def prepare_data(config: RunConfig) -> PreparedData:
    """Load ``config.data``, split off a validation part from its training part
    (stratified for classification; seeded by ``config.seed``), and fit the preprocessing
    on the training rows.

    Everything that can be wrong with the data is found here, before any training: a
    single class, a class too small to split, a label that does not fit the task, a
    batch larger than the training part.

    A ``.npy`` file (with ``config.labels``) is split by row numbers, as an ``.npz`` of
    the same arrays would be (:mod:`handgrad.data.mapped`), and never read into memory.
    """
    if is_npy(config.data):
        return _prepare_mapped(config)
    if config.labels is not None:
        raise ValueError(
            "--labels goes with a .npy --data file (X.npy); a CSV file's label column is "
            "named with --label"
        )
    ds = load_dataset(
        config.data,
        data_dir=config.data_dir,
        split_seed=config.seed,
        test_size=config.test_fraction,
        label=label_column(config.label),
        header=config.header,
        missing_label=config.missing_label,
        task=config.task,
    )
    _check_labels(config, ds.task, ds.y_train, ds.y_test)
    regression = ds.task == "regression"
    n_val = max(1, round(config.validation_fraction * len(ds.X_train)))
    X_tr, X_val, y_tr, y_val = stratified_split(
        ds.X_train,
        ds.y_train,
        test_size=n_val,
        seed=config.seed,
        stratify=None if regression else ds.y_train,
    )
    _check_batch_size(config, len(X_tr))
    config = dataclasses.replace(
        config,
        data=_absolute_data(config.data),
        data_dir=None if config.data_dir is None else os.path.abspath(config.data_dir),
        preprocessing=config.preprocessing
        or ("scale" if ds.image_shape is not None else "standardize"),
        epochs=config.epochs or default_epochs(len(X_tr), config.batch_size),
        task=ds.task,
        early_stopping=config.early_stopping
        if config.early_stopping is not None
        else ds.task == "regression" and config.solver != "lbfgs",
    )
    pre = Preprocessor(config.preprocessing, dtype=config.dtype).fit(X_tr)
    info: dict[str, Any] = {
        "data": config.data,
        "data_dir": config.data_dir,
        "label": config.label,
        "header": config.header,
        "task": ds.task,
        "name": ds.name,
        "class_names": list(ds.class_names),
        "image_shape": None if ds.image_shape is None else list(ds.image_shape),
        "split_seed": config.seed,
        "test_fraction": config.test_fraction,
        "fingerprint": data_fingerprint(config, ds),
    }
    if ds.feature_names is not None:
        info["feature_names"] = list(ds.feature_names)
    if ds.image_shape is not None:
        info["pixel_max"] = 255.0 if ds.X_train.dtype == np.uint8 else float(ds.X_train.max())
        info["image_preparation"] = ds.image_preparation
    return PreparedData(
        pre.transform(X_tr),
        y_tr,
        pre.transform(X_val),
        y_val,
        pre.transform(ds.X_test),
        ds.y_test,
        pre,
        info,
        config,
    )


def _check_labels(config: RunConfig, task: str, y_train: np.ndarray, y_test: np.ndarray) -> None:
    """A regression target that varies; two classes at least."""
    if task == "regression":
        if np.ptp(y_train) == 0:
            raise ValueError(
                f"{config.data}: the target is {y_train[0]:g} in every training row: "
                "there is nothing to regress"
            )
    else:
        classes = np.unique(np.concatenate([y_train, y_test]))
        if len(classes) < 2:
            raise ValueError(
                f"{config.data} has a single class ({describe_labels(classes)}): there is "
                "nothing to classify"
            )


def _check_batch_size(config: RunConfig, n_train: int) -> None:
    if config.batch_size > n_train:
        raise ValueError(
            f"batch size {config.batch_size} is larger than the training set "
            f"({n_train} samples after the validation split)"
        )


def _prepare_mapped(config: RunConfig) -> PreparedData:
    """:func:`prepare_data` for a ``.npy`` file: X memory-mapped, split by row numbers,
    trained as stored (no preprocessing, in the file's dtype)."""
    ds = load_mapped(
        config.data,
        config.labels,
        split_seed=config.seed,
        test_size=config.test_fraction,
        task=config.task,
    )
    if config.preprocessing not in (None, "none"):
        raise ValueError(
            f"{ds.name} is trained from its file, as stored: --preprocessing "
            f"{config.preprocessing} would need X in memory; prepare X beforehand and "
            "give --preprocessing none (the default for a .npy file)"
        )
    if np.dtype(config.dtype) != ds.X.dtype:
        raise ValueError(
            f"{ds.name} holds {ds.X.dtype}; give --dtype {ds.X.dtype} (a {config.dtype} "
            "network would need a converted copy of X in memory)"
        )
    y_train, y_test = ds.y[ds.train_rows], ds.y[ds.test_rows]
    _check_labels(config, ds.task, y_train, y_test)
    regression = ds.task == "regression"
    n_val = max(1, round(config.validation_fraction * len(ds.train_rows)))
    # The rows the in-memory split takes of X_train (the same permutation of the same n).
    train_rows, val_rows = stratified_split(
        ds.train_rows, test_size=n_val, seed=config.seed, stratify=None if regression else y_train
    )
    _check_batch_size(config, len(train_rows))
    config = dataclasses.replace(
        config,
        data=_absolute_data(config.data),
        labels=os.path.abspath(config.labels),  # type: ignore[arg-type]
        data_dir=None,
        preprocessing="none",
        epochs=config.epochs or default_epochs(len(train_rows), config.batch_size),
        task=ds.task,
        early_stopping=config.early_stopping
        if config.early_stopping is not None
        else regression and config.solver != "lbfgs",
    )
    chunks = (chunk for _, chunk in row_chunks(ds.X, CHUNK_ROWS, train_rows))
    pre = Preprocessor("none", dtype=config.dtype).fit_chunks(chunks)
    info: dict[str, Any] = {
        "data": config.data,
        "labels": config.labels,
        "data_dir": None,
        "label": None,
        "header": None,
        "task": ds.task,
        "name": ds.name,
        "class_names": list(ds.class_names),
        "image_shape": None,
        "split_seed": config.seed,
        "test_fraction": config.test_fraction,
        "fingerprint": data_fingerprint(config),
    }
    rows = {"train": train_rows, "val": val_rows, "test": ds.test_rows}
    y_parts = [ds.y[rows[part]] for part in ("train", "val", "test")]
    return PreparedData(
        None, y_parts[0], None, y_parts[1], None, y_parts[2], pre, info, config, ds.X, ds.y, rows
    )


# --------------------------------------------------------------------------- training
@dataclass
class TrainResult:
    """What :func:`train` produced."""

    run_dir: Path
    classifier: Any
    metrics: dict[str, Any]


def build_classifier(config: RunConfig) -> Any:
    """The :class:`~handgrad.MLPClassifier` the configuration describes.

    Without early stopping, training runs exactly ``config.epochs`` epochs (the
    loss-plateau rule is switched off); early stopping (the training loop's rule, with
    ``config.patience``) scores the run's own validation split, passed to ``fit`` as
    ``eval_set``.
    """
    from handgrad.estimator import MLPClassifier

    if config.task == "regression":
        raise ValueError(
            f"{config.data} is a regression task; a classifier cannot be trained on it "
            "(hyperparameter search trains classifiers only, not regressors yet)"
        )
    return MLPClassifier(**_estimator_params(config))


def _estimator_params(config: RunConfig) -> dict[str, Any]:
    if config.epochs is None:
        raise ValueError("the configuration's epochs are not settled; see prepare_data")
    return {
        "hidden_layer_sizes": config.hidden,
        "activation": config.activation,
        "solver": config.solver,
        "alpha": config.alpha,
        "batch_size": config.batch_size,
        "learning_rate_init": config.learning_rate,
        "max_iter": config.epochs,
        "random_state": config.seed,
        "early_stopping": bool(config.early_stopping),
        "n_iter_no_change": config.patience if config.early_stopping else np.inf,
    }


def build_regressor(config: RunConfig) -> Any:
    """The :class:`~handgrad.MLPRegressor` the configuration describes, with the same
    options as :func:`build_classifier`'s (early stopping scores R²)."""
    from handgrad.estimator import MLPRegressor

    return MLPRegressor(**_estimator_params(config))


def _build(config: RunConfig) -> Any:
    return build_regressor(config) if config.task == "regression" else build_classifier(config)


def train(
    config: RunConfig,
    *,
    out: str | os.PathLike[str] | None = None,
    name: str | None = None,
    root: str | os.PathLike[str] = "runs",
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    device: str = "cpu",
) -> TrainResult:
    """Train from scratch into a run folder (see :func:`make_run_dir` for ``out``,
    ``name`` and ``root``, and the module docstring for the files).

    ``device`` is where the training runs: ``"cpu"`` (NumPy, the fast path) or a
    PyTorch device (``"cuda"``, ``"cuda:1"``, ``"torch:cpu"``…; see :func:`torch_device`).

    The data are loaded and checked before the folder is made, so bad data leave nothing
    behind. A folder that already holds files is refused unless ``overwrite``. Raises
    KeyboardInterrupt, having saved nothing, when interrupted before the first epoch
    finished; an interruption later saves the epochs done (``stop_reason`` "interrupted").
    """
    torch_device(device)  # a missing device is refused before the data are read
    data = prepare_data(config)
    with open_run_dir(out, name, root, overwrite=overwrite) as run_dir:
        return _train(data.config, run_dir, data, None, progress, log, device)


def resume(
    run_dir: str | os.PathLike[str],
    *,
    epochs: int | None = None,
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    device: str = "cpu",
) -> TrainResult:
    """Continue the run in ``run_dir`` from its last checkpoint, to the same end as an
    uninterrupted run (bit-identical weights on the same device; ``device`` as for
    :func:`train`).

    ``epochs`` larger than the run's extends it (a finished run too). The data must be
    the ones the checkpoint was trained on (same location, same content): a changed file
    raises :class:`DataChangedError` unless ``force``.
    """
    run_dir = Path(run_dir)
    torch_device(device)  # a missing device is refused before anything is read
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no such run folder: {run_dir}")
    if not (run_dir / CHECKPOINT).is_file():
        raise FileNotFoundError(
            f"{run_dir} has no {CHECKPOINT} to resume from (train with --checkpoint-every K)"
        )
    with open_run_dir(run_dir, existing=True):
        remove_stale_temporaries(run_dir)  # left by a save that a crash cut short
        run, extra = load_run(run_dir / CHECKPOINT)
        if not isinstance(extra.get("config"), dict):
            raise ValueError(f"{run_dir / CHECKPOINT} holds no training configuration")
        config = RunConfig.from_dict(extra["config"])
        if epochs is not None:
            check_number(epochs, "epochs", low=1, integer=True)
            if epochs < config.epochs:
                raise ValueError(
                    f"{run_dir} was set to train {config.epochs} epochs; --epochs with "
                    f"--resume can only extend it (give {config.epochs} or more)"
                )
            config = dataclasses.replace(config, epochs=epochs)
        data = prepare_data(config)
        _check_same_data(run_dir, extra.get("data"), data.info["fingerprint"], force, log)
        log(f"resuming {run_dir} from epoch {run.history.epochs} of {config.epochs}")
        return _train(data.config, run_dir, data, run, progress, log, device)


def torch_device(name: str) -> Any:
    """None for ``"cpu"`` (NumPy, the fast path); otherwise the PyTorch device to train
    on: ``"cuda"``, ``"cuda:1"``, ``"mps"`` …, or ``"torch:cpu"`` (PyTorch on the CPU, a
    check of the device path without a GPU). A ValueError in one line when PyTorch, the
    array-API extra or the device is missing."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"device must be a name such as cpu or cuda, got {name!r}")
    name = name.strip()
    if name == "cpu":
        return None
    try:
        import torch
    except ImportError:
        raise ValueError(
            f"--device {name} trains with PyTorch, which is not installed: pip install "
            "torch (a CUDA build for a GPU) and 'handgrad[array-api]'"
        ) from None
    try:
        import array_api_compat  # noqa: F401  (handgrad's array-API path needs it)
    except ImportError:
        raise ValueError(
            f"--device {name} needs array-api-compat: pip install 'handgrad[array-api]'"
        ) from None
    try:
        where = torch.device(name.removeprefix("torch:"))
    except RuntimeError:
        raise ValueError(
            f"unknown device {name!r}: give cpu, cuda, cuda:N, mps or torch:cpu"
        ) from None
    kind = where.type
    available = {"cpu": True, "cuda": torch.cuda.is_available()}
    if kind == "mps":
        available["mps"] = torch.backends.mps.is_available()
    if not available.get(kind, False):
        raise ValueError(
            f"--device {name}: PyTorch {torch.__version__} finds no {kind} device here"
        )
    if kind == "cuda" and where.index is not None and where.index >= torch.cuda.device_count():
        raise ValueError(
            f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    return where


@contextlib.contextmanager
def _on_device(where: Any) -> Iterator[Callable[[Any], Any]]:
    """A function that moves a host array once to ``where`` (the identity for None),
    with scikit-learn's array-API dispatch on while the block runs, so that the
    estimator trains there."""
    if where is None:
        yield lambda X: X
        return
    import sklearn
    import torch

    try:
        context = sklearn.config_context(array_api_dispatch=True)
        context.__enter__()
    except (ImportError, ValueError, RuntimeError) as exc:
        raise ValueError(
            "training on a device needs scikit-learn's array API dispatch, which needs "
            f"SCIPY_ARRAY_API=1 set before SciPy is imported ({exc})"
        ) from None
    try:
        yield lambda X: torch.as_tensor(np.ascontiguousarray(X), device=where)
    finally:
        context.__exit__(None, None, None)


def _check_same_data(
    run_dir: Path,
    recorded: Any,
    now: dict[str, Any],
    force: bool,
    log: Callable[[str], None],
) -> None:
    if not isinstance(recorded, dict) or recorded.get("sha256") == now["sha256"]:
        return  # same data, or a checkpoint from before fingerprints were recorded
    where = now.get("path") or now.get("name")
    detail = (
        f"{recorded.get('size')} bytes then, {now['size']} now"
        if "size" in now and recorded.get("size") != now["size"]
        else "same size, different content"
        if "size" in now
        else "different content"
    )
    if force:
        log(f"warning: {where} changed since the checkpoint ({detail}); continuing (--force)")
        return
    raise DataChangedError(
        f"the data changed since {run_dir} was checkpointed: {where} ({detail}); "
        "resume with --force to continue on the new data anyway"
    )


def _train(
    config: RunConfig,
    run_dir: Path,
    data: PreparedData,
    run: Any,
    progress: bool,
    log: Callable[[str], None],
    device: str = "cpu",
) -> TrainResult:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.preprocessing import StandardScaler

    regression = config.task == "regression"
    where = torch_device(device)
    if where is not None and data.X is not None:
        raise ValueError(
            f"--device {device} trains on arrays held on the device, but {config.data} is "
            "trained from its file a batch at a time: train it on the cpu, or load it "
            "into memory first"
        )
    clf = _build(config)
    y_train, y_val, y_all = data.y_train, data.y_val, data.y
    if regression:  # trained on standardized targets (see the module docstring)
        target = StandardScaler().fit(y_train.reshape(-1, 1))
        y_train = target.transform(y_train.reshape(-1, 1)).ravel()
        y_val = target.transform(y_val.reshape(-1, 1)).ravel()
        if y_all is not None:
            y_all = target.transform(y_all.reshape(-1, 1)).ravel()
    done = 0 if run is None else run.history.epochs
    # L-BFGS runs as one scipy call, without epochs to report.
    bar = ProgressBar(config.epochs, initial=done, disable=not progress or config.solver == "lbfgs")
    callbacks: list[Any] = [bar]
    if config.checkpoint_every:
        callbacks.append(
            Checkpoint(
                run_dir / CHECKPOINT,
                config.checkpoint_every,
                metadata={"config": config.to_dict(), "data": data.info["fingerprint"]},
            )
        )
    finished = done >= config.epochs or (
        run is not None and run.history.stop_reason in ("early_stopping", "converged")
    )
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            # A run is resumed for the epochs it has left; a finished one (its last
            # checkpoint was its end) is only attached to the classifier.
            if finished:
                clf.max_iter = done
            if data.X is None:
                with _on_device(where) as move:
                    clf.fit(
                        move(data.X_train),
                        y_train,
                        eval_set=(move(data.X_val), y_val),
                        callbacks=() if finished else callbacks,
                        resume=run,
                    )
            else:  # X on disk: trained on its rows, never copied
                clf._fit_rows(
                    data.X,
                    y_all,
                    data.rows["train"],  # type: ignore[index]
                    data.rows["val"],  # type: ignore[index]
                    callbacks=() if finished else callbacks,
                    resume=run,
                )
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    if where is not None:  # scored, saved and exported on the host from here on
        clf.network_.to(np)
        clf.optimizer_.to(np)
    if clf.history_.stop_reason == "interrupted" and clf.history_.epochs <= done:
        raise KeyboardInterrupt(
            "interrupted before an epoch finished; nothing was saved"
            + ("" if run is None else f" (the checkpoint in {run_dir} is unchanged)")
        )
    if regression:
        clf = fitted_target_regressor(clf, target)
        metrics = regression_metrics(clf, data, config, seconds)
    else:
        metrics = run_metrics(
            clf,
            data,
            config,
            seconds,
            train_accuracy=data.score(clf, "train"),
            val_accuracy=data.score(clf, "val"),
        )
    metrics["sizes"] = {
        "train": len(data.y_train),
        "validation": len(data.y_val),
        "test": len(data.y_test),
    }
    metrics["device"] = "cpu" if where is None else f"torch:{where}"
    finish_run(run_dir, clf, data, metrics, config)
    return TrainResult(run_dir, clf, metrics)


def outcome_warnings(metrics: dict[str, Any]) -> list[str]:
    """What is wrong with a finished run that the numbers alone do not shout: a test
    accuracy at chance (within :data:`CHANCE_MARGIN` of 1/C), one class predicted for
    every row, a final training loss above the first epoch's, or a regressor's test R²
    at or below 0 (no better than predicting the mean)."""
    notes = []
    final, classes = metrics["final"], metrics.get("classes") or []
    cm = np.asarray(metrics.get("confusion_matrix") or [[0]])
    accuracy = final.get("test_accuracy")
    if len(classes) >= 2 and accuracy is not None:
        chance = 1 / len(classes)
        predicted = int(np.count_nonzero(cm.sum(axis=0)))
        if accuracy <= chance + CHANCE_MARGIN:
            notes.append(
                f"the model is at chance: test accuracy {accuracy:.4f} with "
                f"{len(classes)} classes (chance {chance:.4f})"
            )
        elif predicted == 1 and cm.sum() > 0 and np.count_nonzero(cm.sum(axis=1)) > 1:
            notes.append(
                f"the model predicts one class for every test sample (test accuracy {accuracy:.4f})"
            )
    loss = (metrics.get("history") or {}).get("loss") or []
    if len(loss) >= 2 and np.isfinite(loss[-1]) and loss[-1] > loss[0]:
        notes.append(f"the training loss rose from {loss[0]:.4g} (first epoch) to {loss[-1]:.4g}")
    config, info = metrics.get("config") or {}, metrics.get("data") or {}
    if notes:
        tabular_scaled = config.get("preprocessing") == "scale" and not info.get("image_shape")
        notes[-1] += "; try a lower learning rate" + (
            " or --preprocessing standardize" if tabular_scaled else ""
        )
    r2 = final.get("test_r2")
    if r2 is not None and r2 <= 0:
        # Below the mean's R² of 0 with a falling loss: the network learnt the training rows.
        notes.append(
            f"the model predicts no better than the mean of the targets: test R² {r2:.4f}; "
            "try a larger --alpha, or early stopping (adam or sgd)"
        )
    return notes


def run_metrics(
    clf: Any,
    data: PreparedData,
    config: RunConfig,
    seconds: float,
    *,
    train_accuracy: float,
    val_accuracy: float | None,
) -> dict[str, Any]:
    """What ``metrics.json`` holds for a trained classifier: the configuration, the
    data, the final accuracies (test accuracy measured here), the epoch-by-epoch
    history, the classes and the test confusion matrix."""
    from sklearn.metrics import confusion_matrix

    history = clf.history_
    pred = data.predict(clf, "test")
    final = {
        "train_accuracy": train_accuracy,
        "val_accuracy": val_accuracy,
        "test_accuracy": float(np.mean(pred == data.y_test)),
        "epochs": history.epochs,
        "stop_reason": history.stop_reason,
        "seconds": round(seconds, 3),
    }
    return {
        "config": config.to_dict(),
        "data": data.info,
        "final": final,
        "history": history.to_dict(),
        "classes": clf.classes_.tolist(),
        "confusion_matrix": confusion_matrix(data.y_test, pred, labels=clf.classes_).tolist(),
    }


def _target_scores(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

    return {
        "r2": float(r2_score(y, pred)),
        "mae": float(mean_absolute_error(y, pred)),
        "rmse": float(root_mean_squared_error(y, pred)),
    }


def regression_metrics(
    reg: Any, data: PreparedData, config: RunConfig, seconds: float
) -> dict[str, Any]:
    """What ``metrics.json`` holds for a trained regressor (predicting in the targets'
    units): the configuration, the data, R², MAE and RMSE on the train, validation and
    test parts (``final["test_r2"]`` …), the epoch-by-epoch history (its scores are R²)
    and the test targets with their predictions (at most
    :data:`MAX_REPORTED_PREDICTIONS`, a seeded sample) for the report."""
    final: dict[str, Any] = {}
    parts = {"train": data.y_train, "val": data.y_val, "test": data.y_test}
    test_pred = None
    for part, y in parts.items():
        pred = np.asarray(data.predict(reg, part), dtype=np.float64)
        final |= {f"{part}_{k}": v for k, v in _target_scores(y, pred).items()}
        test_pred = pred
    history = reg.regressor_.history_ if hasattr(reg, "regressor_") else reg.history_
    final |= {
        "epochs": history.epochs,
        "stop_reason": history.stop_reason,
        "seconds": round(seconds, 3),
    }
    keep = np.arange(len(data.y_test))
    if len(keep) > MAX_REPORTED_PREDICTIONS:
        rng = np.random.default_rng(config.seed)
        keep = np.sort(rng.choice(keep, MAX_REPORTED_PREDICTIONS, replace=False))
    return {
        "task": "regression",
        "config": config.to_dict(),
        "data": data.info,
        "final": final,
        "history": history.to_dict(),
        "test_predictions": {
            "true": np.asarray(data.y_test, dtype=np.float64)[keep].tolist(),
            "predicted": test_pred[keep].tolist(),  # type: ignore[index]
        },
    }


def finish_run(
    run_dir: Path,
    clf: Any,
    data: PreparedData,
    metrics: dict[str, Any],
    config: RunConfig | None = None,
) -> None:
    """Write a finished run's files: the model bundle (with its preprocessing),
    ``config.json`` when ``config`` is given, ``metrics.json`` and ``report.png``.

    All of them are made first (the model serialised, the report drawn) and written only
    when every one succeeded, so a failure on the way leaves the folder as it was.
    """
    files: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="handgrad-run-") as staging:
        staged = Path(staging)
        write_report(staged, metrics, clf)
        info = {**data.info, "training": metrics["final"]}
        save_bundle(staged / MODEL, clf, data.preprocessor, info)
        files[REPORT] = (staged / REPORT).read_bytes()
        model = (staged / MODEL).read_bytes()
    files[METRICS] = _json_bytes(metrics)
    if config is not None:
        files[CONFIG] = _json_bytes(config.to_dict())
    files[MODEL] = model  # last: a model file present means its run is complete
    for name, content in files.items():
        write_atomically(run_dir / name, content)
    for note in outcome_warnings(metrics):
        warnings.warn(note, UserWarning, stacklevel=3)


def write_report(
    run_dir: str | os.PathLike[str], metrics: dict[str, Any], classifier: Any = None
) -> Path:
    """Draw ``report.png`` from the metrics (and the first-layer weights, for images)."""
    from handgrad.plots import make_report

    history = metrics.get("history") or {}
    info = metrics.get("data") or {}
    shape = info.get("image_shape")
    W1 = None
    if shape is not None and classifier is not None:
        W1 = np.asarray(getattr(classifier, "regressor_", classifier).coefs_[0])
    channels = shape[2] if shape is not None and len(shape) == 3 else 1
    cm = metrics.get("confusion_matrix")
    predictions = metrics.get("test_predictions") or {}
    return make_report(
        {
            "loss_iterations": history.get("step_loss"),
            "loss": history.get("loss"),
            "train_score": history.get("train_score"),
            "val_score": history.get("val_score"),
        },
        path=Path(run_dir) / REPORT,
        W1=W1,
        image_shape=shape,
        channels=channels,
        cm=None if cm is None else np.asarray(cm),
        class_names=info.get("class_names"),
        y_true=predictions.get("true"),
        y_pred=predictions.get("predicted"),
    )
