"""A finished run's report: its metrics (``metrics.json``), the warnings its numbers
call for, the picture (``report.png``), and the files written together."""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from handgrad._atomic import write_atomically
from handgrad.runs.config import RunConfig
from handgrad.runs.folder import CONFIG, METRICS, MODEL, REPORT, json_bytes

if TYPE_CHECKING:  # `handgrad plot` redraws a report without scikit-learn
    from handgrad.runs.data import PreparedData

__all__ = [
    "finish_run",
    "outcome_warnings",
    "trained_metrics",
    "write_report",
]

# A run ending within this much of chance accuracy (1/C) is reported.
CHANCE_MARGIN = 0.02
# A loss that moved less than this share of its first epoch's value barely moved.
BARELY_MOVED = 0.01
# metrics.json keeps at most this many test predictions (a seeded sample) for the report.
MAX_REPORTED_PREDICTIONS = 2000


def outcome_warnings(metrics: dict[str, Any]) -> list[str]:
    """What is wrong with a finished run that the numbers alone do not shout: a test
    accuracy at chance (within :data:`CHANCE_MARGIN` of 1/C), one class predicted for
    every row, a final training loss above the first epoch's, or a regressor's test R²
    at or below 0 (no better than predicting the mean). The advice follows the cause:
    a lower learning rate when the loss rose, a higher one when it barely moved, more
    epochs when it was still falling."""
    final, classes = metrics["final"], metrics.get("classes") or []
    if final.get("stop_reason") == "diverged":  # the one cause, whatever the scores say
        rate = (metrics.get("config") or {}).get("learning_rate")
        than = "" if rate is None else f" than {rate:g}"
        return [
            "training diverged (the loss or the weights became non-finite); the best "
            f"epoch's weights were kept and saved: try a lower learning rate{than}"
        ]
    notes = []
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
    # A rise within rounding of a loss that barely moved is no rise.
    rose = len(loss) >= 2 and np.isfinite(loss[-1]) and loss[-1] > loss[0] * (1 + BARELY_MOVED)
    if rose:
        notes.append(f"the training loss rose from {loss[0]:.4g} (first epoch) to {loss[-1]:.4g}")
    config, info = metrics.get("config") or {}, metrics.get("data") or {}
    if notes:
        tabular_scaled = config.get("preprocessing") == "scale" and not info.get("image_shape")
        advice = _learning_rate_advice(loss, rose, len(classes), config.get("learning_rate"))
        notes[-1] += "; " + advice + (" or --preprocessing standardize" if tabular_scaled else "")
    r2 = final.get("test_r2")
    if r2 is not None and r2 <= 0:
        # Below the mean's R² of 0 with a falling loss: the network learnt the training rows.
        notes.append(
            f"the model predicts no better than the mean of the targets: test R² {r2:.4f}; "
            "try a larger --alpha, or early stopping (adam or sgd)"
        )
    return notes


def _learning_rate_advice(loss: list[float], rose: bool, n_classes: int, learning_rate: Any) -> str:
    """The advice that follows the cause. Steps too small: the loss barely moved (by
    less than :data:`BARELY_MOVED` of its first epoch's value). Steps too large: it
    rose, or ended above a uniform guess's (ln C for C classes). Otherwise it was
    still falling: train longer."""
    than = "" if learning_rate is None else f" than {learning_rate:g}"
    if len(loss) < 2 or not np.all(np.isfinite(loss)):
        return f"try a lower learning rate{than}"
    guess = math.log(n_classes) if n_classes >= 2 else math.inf
    if abs(loss[-1] - loss[0]) <= BARELY_MOVED * abs(loss[0]):
        return (
            f"the loss barely moved ({loss[0]:.4g} to {loss[-1]:.4g}): try a higher "
            f"learning rate{than}"
        )
    if rose or loss[-1] > guess:
        return f"try a lower learning rate{than}"
    return f"the loss was still falling ({loss[0]:.4g} to {loss[-1]:.4g}): train longer (--epochs)"


def trained_metrics(
    estimator: Any,
    data: PreparedData,
    config: RunConfig,
    seconds: float,
    predictions: dict[str, np.ndarray],
) -> dict[str, Any]:
    """What ``metrics.json`` holds for a run trained on ``data``'s parts, built from
    ``predictions``, the estimator's predictions of every part
    (:meth:`~handgrad.runs.data.PreparedData.predictions`): a regressor's as
    its R², MAE and RMSE on every part (``final["test_r2"]`` …) and the test targets with
    their predictions (at most :data:`MAX_REPORTED_PREDICTIONS`, a seeded sample), or a
    classifier's accuracies on every part, its classes and test confusion matrix; both
    with the configuration, the data and the epoch-by-epoch history."""
    if config.task == "regression":
        return _regression_metrics(estimator, data, config, seconds, predictions)
    from sklearn.metrics import accuracy_score

    train, val = (
        float(accuracy_score(data.y[data.rows[p]], predictions[p])) for p in ("train", "val")
    )
    return _classifier_metrics(estimator, data, config, seconds, predictions["test"], train, val)


def _classifier_metrics(
    estimator: Any,
    data: PreparedData,
    config: RunConfig,
    seconds: float,
    pred: np.ndarray,
    train_accuracy: float,
    val_accuracy: float | None,
) -> dict[str, Any]:
    """A classifier's :func:`trained_metrics`, from ``pred``, the test part's predictions."""
    from sklearn.metrics import confusion_matrix

    history = estimator.history_
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
        "classes": estimator.classes_.tolist(),
        "confusion_matrix": confusion_matrix(data.y_test, pred, labels=estimator.classes_).tolist(),
    }


def _target_scores(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

    return {
        "r2": float(r2_score(y, pred)),
        "mae": float(mean_absolute_error(y, pred)),
        "rmse": float(root_mean_squared_error(y, pred)),
    }


def _regression_metrics(
    reg: Any,
    data: PreparedData,
    config: RunConfig,
    seconds: float,
    predictions: dict[str, np.ndarray],
) -> dict[str, Any]:
    """A regressor's :func:`trained_metrics`, from the predictions of every part."""
    final: dict[str, Any] = {}
    pred = {part: np.asarray(p, dtype=np.float64) for part, p in predictions.items()}
    for part, y in {"train": data.y_train, "val": data.y_val, "test": data.y_test}.items():
        final |= {f"{part}_{k}": v for k, v in _target_scores(y, pred[part]).items()}
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
            "predicted": pred["test"][keep].tolist(),
        },
    }


def finish_run(
    run_dir: Path,
    estimator: Any,
    data: PreparedData,
    metrics: dict[str, Any],
    config: RunConfig | None = None,
) -> None:
    """Write a finished run's files: ``report.png``, ``metrics.json``, ``config.json``
    when ``config`` is given, and the model file (the estimator with its preprocessing).

    All of them are made first (the report drawn, the model's state taken) and written
    only when every one succeeded, so a failure on the way leaves the folder as it was;
    the model file is written last: a model file present means its run is complete.
    """
    from handgrad.bundle import bundle_state
    from handgrad.modelfile import save_arrays

    notes = outcome_warnings(metrics)  # said once the files are written
    files = {REPORT: _report_png(metrics, estimator), METRICS: json_bytes(metrics)}
    if config is not None:
        files[CONFIG] = json_bytes(config.to_dict())
    info = {**data.info, "training": metrics["final"]}
    tensors, model_metadata = bundle_state(estimator, data.preprocessor, info)
    for name, content in files.items():
        write_atomically(run_dir / name, content)
    save_arrays(run_dir / MODEL, tensors, model_metadata)
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=3)


def _report_args(metrics: dict[str, Any], estimator: Any = None) -> dict[str, Any]:
    """:func:`handgrad.plots.report_figure`'s arguments for a run's metrics (and the
    first-layer weights of an image classifier)."""
    history = metrics.get("history") or {}
    info = metrics.get("data") or {}
    shape = info.get("image_shape")
    W1 = None
    if shape is not None and estimator is not None:
        W1 = np.asarray(getattr(estimator, "regressor_", estimator).coefs_[0])
    cm = metrics.get("confusion_matrix")
    predictions = metrics.get("test_predictions") or {}
    return {
        "history": {
            "loss_iterations": history.get("step_loss"),
            "loss": history.get("loss"),
            "train_score": history.get("train_score"),
            "val_score": history.get("val_score"),
        },
        "W1": W1,
        "image_shape": shape,
        "channels": shape[2] if shape is not None and len(shape) == 3 else 1,
        "cm": None if cm is None else np.asarray(cm),
        "cm_split": "test",  # trained_metrics counts the test part
        "class_names": info.get("class_names"),
        "y_true": predictions.get("true"),
        "y_pred": predictions.get("predicted"),
    }


def _report_png(metrics: dict[str, Any], estimator: Any = None) -> bytes:
    from handgrad.plots import figure_bytes, report_figure

    args = _report_args(metrics, estimator)
    return figure_bytes(report_figure(**args))


def write_report(
    run_dir: str | os.PathLike[str], metrics: dict[str, Any], estimator: Any = None
) -> Path:
    """Draw ``report.png`` from the metrics (and the first-layer weights, for images)."""
    return write_atomically(Path(run_dir) / REPORT, _report_png(metrics, estimator))
