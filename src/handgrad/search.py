"""Random hyperparameter search over a dataset with scikit-learn's ``RandomizedSearchCV``.

The search draws the hidden layer sizes from a list, and ``learning_rate_init`` and
``alpha`` log-uniformly, cross-validates each draw on the training part of the data,
refits the best on all of it, scores it on the held-out test part, and writes a run
folder like ``handgrad train`` does (model bundle, metrics.json with the ranked results,
report.png). A classifier is scored by accuracy; a regressor (``task="regression"``) by
R², trained as ``handgrad train`` trains it: on standardized targets, in a
``TransformedTargetRegressor`` that predicts in the targets' own units.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from handgrad._validation import check_number
from handgrad.runs import (
    RunConfig,
    build_estimator,
    finish_run,
    open_run_dir,
    prepare_data,
    trained_metrics,
)

__all__ = ["SearchResult", "random_search"]

LEARNING_RATE_RANGE = (1e-4, 1e-1)
ALPHA_RANGE = (1e-6, 1e-1)


@dataclass
class SearchResult:
    """The run folder, the refitted best classifier (or regressor, in its
    ``TransformedTargetRegressor``) and the metrics written."""

    run_dir: Path
    classifier: Any
    metrics: dict[str, Any]


def random_search(
    config: RunConfig,
    hidden_choices: Sequence[tuple[int, ...]],
    *,
    n_iter: int = 10,
    cv: int = 3,
    n_jobs: int = 1,
    out: str | os.PathLike[str] | None = None,
    name: str | None = None,
    scheduler: str | None = None,
    progress: bool = False,
    overwrite: bool = False,
    dropout_choices: Sequence[float] = (),
    norm_choices: Sequence[str | None] = (),
) -> SearchResult:
    """Search ``n_iter`` random settings with ``cv``-fold cross-validation on
    ``n_jobs`` processes; ``config`` gives the data, the task (classification scored by
    accuracy, regression by R²), and every setting that is not searched (epochs, batch
    size, solver, activation, early stopping, dtype, preprocessing, seed…).
    ``scheduler`` (``"tcp://HOST:PORT"`` or ``"local:N"``) runs the fits on a Dask
    cluster instead, on all its workers (see
    :mod:`handgrad.distributed`); ``progress`` shows a bar of the fits done. The run
    folder's ``config`` records the best setting (its hidden sizes, learning rate and
    alpha), so that it reproduces the saved model; an existing folder is only replaced
    with ``overwrite``. ``dropout_choices`` and ``norm_choices`` (None for no
    normalization) are searched like the hidden sizes when they hold two or more
    choices; one choice is set for every fit; none leaves ``config``'s."""
    from handgrad.distributed import parse_scheduler

    check_number(n_iter, "number of iterations", low=1, integer=True)
    check_number(cv, "cross-validation folds", low=2, integer=True)
    check_number(n_jobs, "jobs", integer=True)
    if n_jobs == 0:
        raise ValueError("jobs must be a positive number of processes, or -1 for all CPUs")
    if not hidden_choices:
        raise ValueError("give at least one choice of hidden layer sizes")
    if scheduler is not None:
        parse_scheduler(scheduler)  # a bad spec or a missing extra fails before the data loads
    layers = {"dropout": list(dropout_choices), "norm": list(norm_choices)}
    for key, choices in layers.items():
        if len(choices) == 1:  # a setting, not a choice: the sampled settings stay the same
            config = dataclasses.replace(config, **{key: choices[0]})
    searched = {k: v for k, v in layers.items() if len(v) > 1}
    for key, choices in searched.items():
        for choice in choices:  # each checked as the configuration checks it
            dataclasses.replace(config, **{key: choice})
    with _stopped_by_ctrl_c():
        return _search(
            config,
            hidden_choices,
            searched,
            n_iter,
            cv,
            n_jobs,
            out,
            name,
            scheduler,
            progress,
            overwrite,
        )


def _search(
    config: RunConfig,
    hidden_choices: Sequence[tuple[int, ...]],
    searched: dict[str, list],
    n_iter: int,
    cv: int,
    n_jobs: int,
    out: str | os.PathLike[str] | None,
    name: str | None,
    scheduler: str | None,
    progress: bool,
    overwrite: bool,
) -> SearchResult:
    """:func:`random_search` once its arguments are checked."""
    from scipy.stats import loguniform
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import RandomizedSearchCV, check_cv

    from handgrad.distributed import fit_progress, fits_on

    data = prepare_data(config)
    config = data.config  # its defaults settled for these data
    # The folds index X, so its train and validation rows are read in (from a .npy's file).
    X = data.take(np.concatenate([data.rows["train"], data.rows["val"]]))
    y = np.concatenate([data.y_train, data.y_val])
    regression = config.task == "regression"
    # The folds an int cv gives, as arrays that fits_on can send to every worker.
    splits = list(check_cv(cv, y, classifier=not regression).split(X, y))
    config = _fold_batch_size(config, splits)
    estimator, prefix = _searched_estimator(config)
    search = RandomizedSearchCV(
        estimator,
        {
            f"{prefix}hidden_layer_sizes": [tuple(h) for h in hidden_choices],
            f"{prefix}learning_rate_init": loguniform(*LEARNING_RATE_RANGE),
            f"{prefix}alpha": loguniform(*ALPHA_RANGE),
            **{f"{prefix}{k}": v for k, v in searched.items()},
        },
        n_iter=n_iter,
        cv=splits,
        n_jobs=n_jobs if scheduler is None else -1,
        random_state=config.seed,
        refit=True,
        error_score=np.nan,
    )
    with open_run_dir(out, name, overwrite=overwrite) as run_dir:
        start = time.perf_counter()
        with (
            fits_on(scheduler, shared=[X, y, *(part for split in splits for part in split)]),
            fit_progress(n_iter * len(splits), disable=not progress),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore", ConvergenceWarning)
            search.fit(X, y)
        seconds = time.perf_counter() - start
        best = search.best_estimator_
        inner = best.regressor_ if regression else best
        trained = dataclasses.replace(
            config,
            hidden=tuple(inner.hidden_layer_sizes),
            learning_rate=float(inner.learning_rate_init),
            alpha=float(inner.alpha),
            dropout=float(inner.dropout),
            norm=inner.norm,
        )
        metrics = trained_metrics(best, data, trained, seconds, data.predictions(best))
        # the validation score is the best mean cross-validated one (accuracy or R²)
        metrics["final"]["val_r2" if regression else "val_accuracy"] = _number(search.best_score_)
        metrics["search"] = _ranked(search, prefix, "r2" if regression else "accuracy")
        finish_run(run_dir, best, data, metrics, trained)
    return SearchResult(run_dir, best, metrics)


class _Interrupted(BaseException):
    """Ctrl-C during a search. Not a KeyboardInterrupt, which the training loop turns
    into an early stop of the fit in progress (the search would go on to the next
    one), and not an Exception, which scikit-learn records as a failed fit."""


@contextmanager
def _stopped_by_ctrl_c() -> Iterator[None]:
    """Ctrl-C stops the whole search at once: the fit in progress, joblib's processes,
    the Dask cluster and the run folder are undone on the way out, and the caller gets
    a KeyboardInterrupt (the command line's exit status 130)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise _Interrupted

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        yield
    except _Interrupted:
        raise KeyboardInterrupt("search interrupted") from None
    finally:
        signal.signal(signal.SIGINT, previous)


def _searched_estimator(config: RunConfig) -> tuple[Any, str]:
    """The estimator the search clones, and the prefix of its searched parameters'
    names: a classifier as it is; a regressor in a ``TransformedTargetRegressor`` that
    standardizes its targets, as ``handgrad train`` trains one (and scores R² in the
    targets' own units)."""
    estimator = build_estimator(config)
    if config.task != "regression":
        return estimator, ""
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.preprocessing import StandardScaler

    return TransformedTargetRegressor(regressor=estimator, transformer=StandardScaler()), (
        "regressor__"
    )


def _fold_batch_size(config: RunConfig, splits: list[Any]) -> RunConfig:
    """``config`` with a batch no larger than the rows each cross-validation fit trains
    on, said once: scikit-learn would clip it with a warning in every fit (``handgrad
    train`` refuses a batch larger than its training set; a search's folds are smaller
    than the training set its defaults are made for)."""
    if config.solver == "lbfgs":
        return config  # full-batch: no minibatches
    n_fit = min(len(train) for train, _ in splits)
    held = math.ceil(config.validation_fraction * n_fit) if config.early_stopping else 0
    if config.batch_size <= n_fit - held:
        return config
    after = " after the early-stopping validation split" if held else ""
    warnings.warn(
        f"batch size {config.batch_size} is larger than the rows each cross-validation fit "
        f"trains on ({n_fit - held} samples{after}); every fit uses batches of "
        f"{n_fit - held}",
        UserWarning,
        stacklevel=3,
    )
    return dataclasses.replace(config, batch_size=n_fit - held)


def _ranked(search: Any, prefix: str = "", score: str = "accuracy") -> dict[str, Any]:
    """The settings tried, best first, with their cross-validated ``score`` (accuracy,
    or a regressor's R²)."""
    results = search.cv_results_
    order = np.argsort(results["rank_test_score"], kind="stable")
    ranked = [
        {
            "rank": int(results["rank_test_score"][i]),
            f"mean_cv_{score}": _number(results["mean_test_score"][i]),
            f"std_cv_{score}": _number(results["std_test_score"][i]),
            "hidden": list(results[f"param_{prefix}hidden_layer_sizes"][i]),
            "learning_rate": float(results[f"param_{prefix}learning_rate_init"][i]),
            "alpha": float(results[f"param_{prefix}alpha"][i]),
            **{
                key: _setting(results[f"param_{prefix}{key}"][i])
                for key in ("dropout", "norm")
                if f"param_{prefix}{key}" in results
            },
            "fit_seconds": float(results["mean_fit_time"][i]),
        }
        for i in order
    ]
    return {
        "n_iter": len(ranked),
        "cv": search.n_splits_,
        "score": score,
        "results": ranked,
        "best_params": {
            k.removeprefix(prefix): _setting(v) for k, v in search.best_params_.items()
        },
    }


def _setting(value: Any) -> Any:
    """A searched setting as JSON holds it: sizes a list, a norm its name or None."""
    if isinstance(value, tuple):
        return list(value)
    return value if value is None or isinstance(value, str) else float(value)


def _number(value: Any) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None
