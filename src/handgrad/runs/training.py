"""A run trained: the estimator its configuration describes, fitted through ``fit``'s
``rows``/``eval_set`` (X is never copied), from scratch or resumed from its checkpoint.

A regression run (``task="regression"``, the default for a regression dataset such as
diabetes) trains an :class:`~handgrad.MLPRegressor` on standardized targets: with the
default learning rate a network starts with outputs near 0 and takes many steps to
reach targets in the hundreds, so the targets are scaled as scikit-learn users do with a
``TransformedTargetRegressor``. The model file holds that wrapper, so it predicts in the
targets' own units.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from handgrad._atomic import remove_stale_temporaries
from handgrad._validation import check_number
from handgrad.callbacks import Checkpoint, ProgressBar
from handgrad.runs.config import RunConfig
from handgrad.runs.data import PreparedData, check_same_data, prepare_data
from handgrad.runs.devices import on_device, torch_device
from handgrad.runs.folder import CHECKPOINT, MODEL, open_run_dir
from handgrad.runs.report import finish_run, trained_metrics
from handgrad.state import fitted_target_regressor, load_run

__all__ = [
    "TrainResult",
    "build_classifier",
    "build_estimator",
    "build_regressor",
    "resume",
    "train",
]


@dataclass
class TrainResult:
    """What :func:`train` produced: the run folder, the fitted estimator (a regressor
    in its ``TransformedTargetRegressor``), the metrics written, and the epoch it
    started from (0, or the resumed run's)."""

    run_dir: Path
    estimator: Any
    metrics: dict[str, Any]
    start_epoch: int = 0


def _estimator_params(config: RunConfig) -> dict[str, Any]:
    if config.epochs is None:
        raise ValueError("the configuration's epochs are not settled; see prepare_data")
    return {
        "hidden_layer_sizes": config.hidden,
        "activation": config.activation,
        "dropout": config.dropout,
        "norm": config.norm,
        "solver": config.solver,
        "alpha": config.alpha,
        "batch_size": config.batch_size,
        "learning_rate_init": config.learning_rate,
        "max_iter": config.epochs,
        "random_state": config.seed,
        "early_stopping": bool(config.early_stopping),
        "n_iter_no_change": config.patience if config.early_stopping else np.inf,
        # the share early stopping holds out of a fit without eval_set (a search's)
        "validation_fraction": config.validation_fraction,
    }


def build_classifier(config: RunConfig) -> Any:
    """The :class:`~handgrad.MLPClassifier` the configuration describes.

    Without early stopping, training runs exactly ``config.epochs`` epochs (the
    loss-plateau rule is switched off); early stopping (the training loop's rule, with
    ``config.patience``) scores the run's own validation rows, passed to ``fit`` as
    ``eval_set``.
    """
    if config.task == "regression":
        raise ValueError(
            f"{config.data} is a regression task; a classifier cannot be trained on it "
            "(build_regressor builds its regressor)"
        )
    return build_estimator(config)


def build_regressor(config: RunConfig) -> Any:
    """The :class:`~handgrad.MLPRegressor` the configuration describes, with the same
    options as :func:`build_classifier`'s (early stopping scores R²)."""
    return build_estimator(dataclasses.replace(config, task="regression"))


def build_estimator(config: RunConfig) -> Any:
    """The classifier, or for ``task="regression"`` the regressor, of the configuration
    (see :func:`build_classifier` and :func:`build_regressor`)."""
    from handgrad.estimator import MLPClassifier, MLPRegressor

    params = _estimator_params(config)
    if config.task == "regression":
        return MLPRegressor(**params)
    return MLPClassifier(**params)


def _fit_setup(
    config: RunConfig, run_dir: Path, data: PreparedData, run: Any, progress: bool
) -> tuple[Any, Any, Sequence[Any]]:
    """The estimator to fit, its progress bar and the callbacks ``fit`` takes: the bar,
    and with ``config.checkpoint_every`` the checkpoint. A resumed run trains for the
    epochs it has left; a finished one (its last checkpoint was its end) is only
    attached to the estimator, without callbacks."""
    est = build_estimator(config)
    done = 0 if run is None else run.history.epochs
    # L-BFGS runs as one scipy call, without epochs to report.
    bar = ProgressBar(config.epochs, initial=done, disable=not progress or config.solver == "lbfgs")
    finished = done >= config.epochs or (
        run is not None and run.history.stop_reason in ("early_stopping", "converged")
    )
    if finished:
        est.max_iter = done
        return est, bar, ()
    callbacks: list[Any] = [bar]
    if config.checkpoint_every:
        metadata = {"config": config.to_dict(), "data": data.info["fingerprint"]}
        every = config.checkpoint_every
        callbacks.append(Checkpoint(run_dir / CHECKPOINT, every, metadata=metadata))
    return est, bar, callbacks


def _fit(est: Any, data: PreparedData, y: np.ndarray, where: Any, **kwargs: Any) -> None:
    """``est`` fitted on the training rows, scored on the validation rows: on the host
    through ``fit``'s ``rows`` (X never copied), on a device with the parts moved there."""
    if where is None:
        est.fit(data.X, y, rows=data.rows["train"], eval_set=data.rows["val"], **kwargs)
        return
    with on_device(where) as move:
        X_train, X_val = move(data.take("train")), move(data.take("val"))
        val = (X_val, y[data.rows["val"]])
        est.fit(X_train, y[data.rows["train"]], eval_set=val, **kwargs)


def _train(
    config: RunConfig,
    run_dir: Path,
    data: PreparedData,
    run: Any,
    progress: bool,
    device: str = "cpu",
) -> TrainResult:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.preprocessing import StandardScaler

    regression = config.task == "regression"
    where = torch_device(device)
    if where is not None and data.mapped:
        raise ValueError(
            f"--device {device} trains on arrays held on the device, but {config.data} is "
            "trained from its file a batch at a time: train it on the cpu, or load it "
            "into memory first"
        )
    est, bar, callbacks = _fit_setup(config, run_dir, data, run, progress)
    y = data.y
    if regression:  # trained on standardized targets (see the module docstring)
        target = StandardScaler().fit(data.y_train.reshape(-1, 1))
        y = target.transform(y.reshape(-1, 1)).ravel()
    done = 0 if run is None else run.history.epochs
    # A model file keeps no per-step losses: a run resumed from one reports per epoch.
    no_step_losses = run is not None and done > 0 and not run.history.step_loss
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            _fit(est, data, y, where, callbacks=callbacks, resume=run)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    if no_step_losses:
        est.history_.step_loss.clear()
    if where is not None:  # scored, saved and exported on the host from here on
        est.network_.to(np)
        est.optimizer_.to(np)
    if est.history_.stop_reason == "interrupted" and est.history_.epochs <= done:
        raise KeyboardInterrupt(
            "interrupted before an epoch finished; nothing was saved"
            + ("" if run is None else f" (the checkpoint in {run_dir} is unchanged)")
        )
    if regression:
        est = fitted_target_regressor(est, target)
    predictions = data.predictions(est)  # each part predicted once
    metrics = trained_metrics(est, data, config, seconds, predictions)
    metrics["sizes"] = {
        "train": len(data.rows["train"]),
        "validation": len(data.rows["val"]),
        "test": len(data.rows["test"]),
    }
    metrics["device"] = "cpu" if where is None else f"torch:{where}"
    finish_run(run_dir, est, data, metrics, config)
    return TrainResult(run_dir, est, metrics, done)


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
    """Train from scratch into a run folder (see :func:`~handgrad.runs.make_run_dir`
    for ``out``, ``name`` and ``root``, and :mod:`handgrad.runs` for the files).

    ``device`` is where the training runs: ``"cpu"`` (NumPy, the fast path) or a
    PyTorch device (``"cuda"``, ``"cuda:1"``, ``"torch:cpu"``…; see
    :func:`~handgrad.runs.devices.torch_device`).

    The data are loaded and checked before the folder is made, so bad data leave nothing
    behind. A folder that already holds files is refused unless ``overwrite``. Raises
    KeyboardInterrupt, having saved nothing, when interrupted before the first epoch
    finished; an interruption later saves the epochs done (``stop_reason`` "interrupted").
    """
    torch_device(device)  # a missing device is refused before the data are read
    data = prepare_data(config, log=log)
    with open_run_dir(out, name, root, overwrite=overwrite) as run_dir:
        return _train(data.config, run_dir, data, None, progress, device)


def _resumed_config(run_dir: Path, extra: dict[str, Any], epochs: int | None) -> RunConfig:
    """The run's configuration (its checkpoint's, or ``config.json`` beside its model
    file), extended to ``epochs`` when given."""
    for key in ("config", "data"):
        if not isinstance(extra.get(key), dict):
            what = "training configuration" if key == "config" else "data fingerprint"
            raise ValueError(f"the run in {run_dir} records no {what} to resume with")
    config = RunConfig.from_dict(extra["config"])
    if epochs is None:
        return config
    check_number(epochs, "epochs", low=1, integer=True)
    if epochs < config.epochs:
        raise ValueError(
            f"{run_dir} was set to train {config.epochs} epochs; --epochs with "
            f"--resume can only extend it (give {config.epochs} or more)"
        )
    return dataclasses.replace(config, epochs=epochs)


def _model_run(run_dir: Path) -> tuple[Any, dict[str, Any]]:
    """The run a finished (or interrupted) run's model file carries, and its checkpoint
    metadata rebuilt from the run folder: ``config.json`` and the data's fingerprint.

    The model file keeps the network's weights, the optimizer's state, the shuffling
    generator and the history (without each step's loss), so training goes on from
    where the run ended; with early stopping its weights are the best epoch's.
    """
    from handgrad.bundle import load_bundle
    from handgrad.runs.folder import CONFIG, read_json

    bundle = load_bundle(run_dir / MODEL)
    est = getattr(bundle.estimator, "regressor_", bundle.estimator)
    run = copy.deepcopy(est._get_fitted_state()["run"])
    extra = {"config": read_json(run_dir / CONFIG), "data": bundle.info.get("fingerprint")}
    return run, extra


def _resume_source(run_dir: Path, log: Callable[[str], None]) -> tuple[Any, dict[str, Any]]:
    """The run to continue: the checkpoint (continued exactly), or the model file when
    there is no checkpoint or the model file holds more epochs (a warm start from its
    weights and optimizer state)."""
    checkpoint, model = run_dir / CHECKPOINT, run_dir / MODEL
    if not checkpoint.is_file() and not model.is_file():
        raise FileNotFoundError(
            f"{run_dir} has neither {CHECKPOINT} nor {MODEL} to resume from "
            "(is it a handgrad run folder?)"
        )
    saved = load_run(checkpoint) if checkpoint.is_file() else None
    if saved is not None and not model.is_file():
        return saved
    run, extra = _model_run(run_dir)
    if saved is not None and saved[0].history.epochs >= run.history.epochs:
        return saved
    log(
        f"no newer {CHECKPOINT} in {run_dir}: a warm start from {MODEL} (its weights and "
        f"optimizer state after epoch {run.history.epochs})"
    )
    return run, extra


def resume(
    run_dir: str | os.PathLike[str],
    *,
    epochs: int | None = None,
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    device: str = "cpu",
) -> TrainResult:
    """Continue the run in ``run_dir``, finished or interrupted: from its last
    checkpoint, to the same end as an uninterrupted run (bit-identical weights on the
    same device; ``device`` as for :func:`train`); without a checkpoint (a run made
    without ``checkpoint_every``), or one older than its model file, from the model
    file's weights and optimizer state, as a warm start (said in one line to ``log``).

    ``epochs`` larger than the run's extends it (a finished run too). The data must be
    the ones the run was trained on (same location, same content): a changed file
    raises :class:`~handgrad.runs.DataChangedError` unless ``force``.
    """
    run_dir = Path(run_dir)
    torch_device(device)  # a missing device is refused before anything is read
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no such run folder: {run_dir}")
    with open_run_dir(run_dir, existing=True):
        remove_stale_temporaries(run_dir)  # left by a save that a crash cut short
        run, extra = _resume_source(run_dir, log)
        config = _resumed_config(run_dir, extra, epochs)
        data = prepare_data(config, log=log)
        check_same_data(run_dir, extra["data"], data.info["fingerprint"], force, log)
        reason = run.history.stop_reason
        if reason in ("early_stopping", "converged"):
            log(
                f"{run_dir} ended by {reason.replace('_', ' ')} at epoch {run.history.epochs}: "
                "nothing is left to train (its files are written again)"
            )
        else:
            log(f"resuming {run_dir} from epoch {run.history.epochs} of {config.epochs}")
        return _train(data.config, run_dir, data, run, progress, device)
