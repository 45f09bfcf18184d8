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

One module per job: :mod:`~handgrad.runs.config` (the configuration),
:mod:`~handgrad.runs.folder` (the folder, its lock, its JSON files),
:mod:`~handgrad.runs.data` (the data in one shape: X, which may be a memory-mapped
``.npy``, and the row numbers of each part), :mod:`~handgrad.runs.training` (the
estimator built, trained, resumed), :mod:`~handgrad.runs.devices` (where it trains) and
:mod:`~handgrad.runs.report` (metrics, warnings, the picture, the files written).

Every file is written atomically. Only checkpoints are written during training; the
other files are all prepared (the report drawn, the model's state taken) once it has
succeeded and only then written, each once, the model file last, so training that
diverges, crashes or fails while drawing its report never replaces the model, metrics
or configuration of an earlier run. An existing run folder is only reused when asked
(``overwrite=True``); a run interrupted before its first epoch finished saves nothing; a
failed run removes the folder it made when nothing else is in it. While a process
trains into a folder it holds a lock there (:data:`LOCK`, holding its process id), and a
second process is refused.
"""

from typing import Any

#: Where each public name lives: the modules are imported on first use, so that a
#: command's ``--help`` (and ``handgrad.runs.folder`` alone) loads no scikit-learn.
_HOMES = {
    "config": (
        "MIN_EPOCHS",
        "PREPROCESSING",
        "SOLVERS",
        "STEP_BUDGET",
        "RunConfig",
        "default_epochs",
    ),
    "data": (
        "DataChangedError",
        "PreparedData",
        "RunData",
        "label_column",
        "prepare_data",
        "read_data",
    ),
    "folder": (
        "CHECKPOINT",
        "CONFIG",
        "LOCK",
        "METRICS",
        "MODEL",
        "REPORT",
        "RunFolderInUseError",
        "make_run_dir",
        "open_run_dir",
        "read_json",
        "write_json",
    ),
    "report": ("finish_run", "outcome_warnings", "trained_metrics", "write_report"),
    "training": ("TrainResult", "build_classifier", "build_estimator", "resume", "train"),
}
_MODULES = ("config", "data", "devices", "folder", "report", "training")
_HOME = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    import importlib

    if name in _MODULES:
        return importlib.import_module(f"handgrad.runs.{name}")
    if name in _HOME:
        return getattr(importlib.import_module(f"handgrad.runs.{_HOME[name]}"), name)
    raise AttributeError(f"module 'handgrad.runs' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__, *_MODULES])


__all__ = [
    "CHECKPOINT",
    "CONFIG",
    "LOCK",
    "METRICS",
    "MIN_EPOCHS",
    "MODEL",
    "PREPROCESSING",
    "REPORT",
    "SOLVERS",
    "STEP_BUDGET",
    "DataChangedError",
    "PreparedData",
    "RunConfig",
    "RunData",
    "RunFolderInUseError",
    "TrainResult",
    "build_classifier",
    "build_estimator",
    "default_epochs",
    "finish_run",
    "label_column",
    "make_run_dir",
    "open_run_dir",
    "outcome_warnings",
    "prepare_data",
    "read_data",
    "read_json",
    "resume",
    "train",
    "trained_metrics",
    "write_json",
    "write_report",
]
