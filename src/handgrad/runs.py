"""Training runs on disk: one folder per run, resumable after a crash.

A run folder (``runs/<name or timestamp>/``) holds

* ``checkpoint.safetensors`` — with ``checkpoint_every``, the whole training state
  (see :mod:`handgrad.callbacks`) and the configuration, rewritten atomically every K
  epochs; :func:`resume` continues from it;
* ``config.json`` — the :class:`RunConfig`;
* ``model.safetensors`` — the classifier and its preprocessing (:mod:`handgrad.bundle`);
* ``metrics.json`` — the per-epoch history, final accuracies, test confusion matrix
  and the configuration;
* ``report.png`` — loss, accuracy, confusion matrix and first-layer weights.

Every file is written atomically. Only checkpoints are written during training; the
other files once it has succeeded, so training that diverges (or crashes) never
replaces the model, metrics or configuration of an earlier run in the same folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from handgrad._atomic import write_atomically
from handgrad._split import stratified_split
from handgrad._validation import check_choice, check_number
from handgrad.bundle import save_bundle
from handgrad.callbacks import Checkpoint, ProgressBar
from handgrad.data import Preprocessor, load_dataset
from handgrad.data.preprocess import KINDS as PREPROCESSING
from handgrad.layers import ACTIVATIONS
from handgrad.optim import OPTIMIZERS
from handgrad.state import load_run

__all__ = [
    "CHECKPOINT",
    "CONFIG",
    "METRICS",
    "MODEL",
    "REPORT",
    "PreparedData",
    "RunConfig",
    "TrainResult",
    "build_classifier",
    "finish_run",
    "make_run_dir",
    "prepare_data",
    "read_json",
    "resume",
    "run_metrics",
    "train",
    "write_json",
    "write_report",
]

CONFIG, CHECKPOINT, MODEL = "config.json", "checkpoint.safetensors", "model.safetensors"
METRICS, REPORT = "metrics.json", "report.png"
SOLVERS = tuple(OPTIMIZERS)


@dataclass
class RunConfig:
    """Everything that decides a training run; the defaults train the notes' two-layer
    network on scikit-learn's digits to about 0.97 test accuracy in a few seconds."""

    data: str = "digits"
    data_dir: str | None = None
    label: str | None = None
    hidden: tuple[int, ...] = (128,)
    activation: str = "relu"
    solver: str = "adam"
    learning_rate: float = 2e-3
    alpha: float = 1e-4
    epochs: int = 20
    batch_size: int = 64
    dtype: str = "float32"
    seed: int = 0
    early_stopping: bool = False
    patience: int = 10
    validation_fraction: float = 0.1
    test_fraction: float = 0.25
    preprocessing: str = "scale"
    checkpoint_every: int | None = None

    def __post_init__(self) -> None:
        self.hidden = tuple(self.hidden)
        if not self.hidden:
            raise ValueError("hidden sizes must name at least one hidden layer")
        for i, h in enumerate(self.hidden, start=1):
            check_number(h, f"hidden size {i}", low=1, integer=True)
        check_choice(self.activation, "activation", tuple(ACTIVATIONS))
        check_choice(self.solver, "solver", SOLVERS)
        check_choice(self.dtype, "dtype", ("float32", "float64"))
        check_choice(self.preprocessing, "preprocessing", PREPROCESSING)
        check_number(self.learning_rate, "learning rate", low=0, low_open=True)
        check_number(self.alpha, "alpha (L2 regularisation)", low=0)
        check_number(self.epochs, "epochs", low=1, integer=True)
        check_number(self.batch_size, "batch size", low=1, integer=True)
        check_number(self.seed, "seed", low=0, integer=True)
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
    return write_atomically(path, (json.dumps(obj, indent=2) + "\n").encode("utf-8"))


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file, with an error naming the file when it is missing or broken."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc})") from None


def make_run_dir(
    out: str | os.PathLike[str] | None = None,
    name: str | None = None,
    root: str | os.PathLike[str] = "runs",
) -> Path:
    """Create (if needed) and return a writable run folder.

    ``out`` is the folder itself; otherwise ``root/name``, or ``root/<timestamp>``.
    Raises OSError with a one-line explanation when it cannot be created or written.
    """
    if out is None:
        if name is not None and (not name or os.sep in name or name in (".", "..")):
            raise ValueError(f"run name must be a plain folder name, got {name!r}")
        base = Path(root) / (name or time.strftime("%Y%m%d-%H%M%S"))
        folder, n = base, 1
        while name is None and folder.exists():  # two runs in the same second
            n += 1
            folder = base.with_name(f"{base.name}-{n}")
    else:
        folder = Path(out)
    for parent in [folder, *folder.parents]:
        if parent.exists() and not parent.is_dir():
            raise NotADirectoryError(f"cannot use {folder} as run folder: {parent} is a file")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise PermissionError(
            f"cannot write to run folder {folder}: {exc.strerror or exc}"
        ) from None
    return folder


# ------------------------------------------------------------------------------- data
def label_column(label: str | int | None) -> str | int | None:
    """A CSV label column as given by a person: an integer string means an index."""
    if isinstance(label, str) and label.lstrip("-").isdigit():
        return int(label)
    return label


@dataclass
class PreparedData:
    """A dataset split into train/validation/test, preprocessed to (N, D) rows."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    preprocessor: Preprocessor
    info: dict[str, Any] = field(default_factory=dict)


def prepare_data(config: RunConfig) -> PreparedData:
    """Load ``config.data``, split off a stratified validation part from its training
    part (seeded by ``config.seed``), and fit the preprocessing on the training rows."""
    ds = load_dataset(
        config.data,
        data_dir=config.data_dir,
        split_seed=config.seed,
        test_size=config.test_fraction,
        label=label_column(config.label),
    )
    n_val = max(1, round(config.validation_fraction * len(ds.X_train)))
    X_tr, X_val, y_tr, y_val = stratified_split(
        ds.X_train, ds.y_train, test_size=n_val, seed=config.seed, stratify=ds.y_train
    )
    if config.batch_size > len(X_tr):
        raise ValueError(
            f"batch size {config.batch_size} is larger than the training set "
            f"({len(X_tr)} samples after the validation split)"
        )
    pre = Preprocessor(config.preprocessing, dtype=config.dtype).fit(X_tr)
    info: dict[str, Any] = {
        "data": config.data,
        "name": ds.name,
        "class_names": list(ds.class_names),
        "image_shape": None if ds.image_shape is None else list(ds.image_shape),
        "split_seed": config.seed,
        "test_fraction": config.test_fraction,
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

    return MLPClassifier(
        hidden_layer_sizes=config.hidden,
        activation=config.activation,
        solver=config.solver,
        alpha=config.alpha,
        batch_size=config.batch_size,
        learning_rate_init=config.learning_rate,
        max_iter=config.epochs,
        random_state=config.seed,
        early_stopping=config.early_stopping,
        n_iter_no_change=config.patience if config.early_stopping else np.inf,
    )


def train(
    config: RunConfig,
    *,
    out: str | os.PathLike[str] | None = None,
    name: str | None = None,
    root: str | os.PathLike[str] = "runs",
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train from scratch into a run folder (see :func:`make_run_dir` for ``out``,
    ``name`` and ``root``, and the module docstring for the files). The data are loaded
    before the folder is made, so a bad dataset leaves nothing behind."""
    data = prepare_data(config)
    run_dir = make_run_dir(out, name, root)
    return _train(config, run_dir, data, None, progress, log)


def resume(
    run_dir: str | os.PathLike[str], *, progress: bool = True, log: Callable[[str], None] = print
) -> TrainResult:
    """Continue the run in ``run_dir`` from its last checkpoint, to the same end as an
    uninterrupted run (bit-identical weights)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no such run folder: {run_dir}")
    if not (run_dir / CHECKPOINT).is_file():
        raise FileNotFoundError(
            f"{run_dir} has no {CHECKPOINT} to resume from (train with --checkpoint-every K)"
        )
    for stale in run_dir.glob(".*.tmp"):  # left by a save the crash cut short
        stale.unlink(missing_ok=True)
    run, extra = load_run(run_dir / CHECKPOINT)
    if not isinstance(extra.get("config"), dict):
        raise ValueError(f"{run_dir / CHECKPOINT} holds no training configuration")
    config = RunConfig.from_dict(extra["config"])
    log(f"resuming {run_dir} from epoch {run.history.epochs} of {config.epochs}")
    return _train(config, run_dir, prepare_data(config), run, progress, log)


def _train(
    config: RunConfig,
    run_dir: Path,
    data: PreparedData,
    run: Any,
    progress: bool,
    log: Callable[[str], None],
) -> TrainResult:
    from sklearn.exceptions import ConvergenceWarning

    clf = build_classifier(config)
    done = 0 if run is None else run.history.epochs
    # L-BFGS runs as one scipy call, without epochs to report.
    bar = ProgressBar(config.epochs, initial=done, disable=not progress or config.solver == "lbfgs")
    callbacks: list[Any] = [bar]
    if config.checkpoint_every:
        callbacks.append(
            Checkpoint(
                run_dir / CHECKPOINT, config.checkpoint_every, metadata={"config": config.to_dict()}
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
            clf.fit(
                data.X_train,
                data.y_train,
                eval_set=(data.X_val, data.y_val),
                callbacks=() if finished else callbacks,
                resume=run,
            )
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    metrics = run_metrics(
        clf,
        data,
        config,
        seconds,
        train_accuracy=float(clf.score(data.X_train, data.y_train)),
        val_accuracy=float(clf.score(data.X_val, data.y_val)),
    )
    metrics["sizes"] = {
        "train": len(data.y_train),
        "validation": len(data.y_val),
        "test": len(data.y_test),
    }
    finish_run(run_dir, clf, data, metrics, config)
    return TrainResult(run_dir, clf, metrics)


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
    pred = clf.predict(data.X_test)
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


def finish_run(
    run_dir: Path,
    clf: Any,
    data: PreparedData,
    metrics: dict[str, Any],
    config: RunConfig | None = None,
) -> None:
    """Write a finished run's files: the model bundle (with its preprocessing),
    ``config.json`` when ``config`` is given, ``metrics.json`` and ``report.png``."""
    save_bundle(
        run_dir / MODEL, clf, data.preprocessor, {**data.info, "training": metrics["final"]}
    )
    if config is not None:
        write_json(run_dir / CONFIG, config.to_dict())
    write_json(run_dir / METRICS, metrics)
    write_report(run_dir, metrics, clf)


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
        W1 = np.asarray(classifier.coefs_[0])
    channels = shape[2] if shape is not None and len(shape) == 3 else 1
    cm = metrics.get("confusion_matrix")
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
    )
