"""Learning quality: handgrad's MLPClassifier and MLPRegressor against scikit-learn's,
same settings.

Classifiers on scikit-learn's digits and breast-cancer data (stratified 75/25 split),
regressors on its diabetes data and a synthetic multi-output set from
``make_regression`` (plain 75/25 split; the targets standardised for both libraries by
a ``TransformedTargetRegressor``); fixed split seed, features standardised by a
StandardScaler in a Pipeline for both libraries. For the solvers sgd, adam and lbfgs,
with identical hyperparameters, it prints the test score (accuracy, or R² for the
regressors) and fit time of both, averaged over a few weight seeds, and writes the rows
to ``benchmarks/results/quality.json``. The requirement: handgrad's score is at least
scikit-learn's minus 0.01 (one point of accuracy) on every row (the exit code is 1
otherwise).

    .venv/bin/python benchmarks/quality.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SklearnMLP
from sklearn.neural_network import MLPRegressor as SklearnMLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from handgrad import MLPClassifier as HandgradMLP
from handgrad import MLPRegressor as HandgradMLPRegressor

SPLIT_SEED = 0


def _multi_output(return_X_y: bool = True):
    """A synthetic regression with 3 outputs: 1000 rows, 20 features, 10 informative."""
    return make_regression(
        n_samples=1000, n_features=20, n_informative=10, n_targets=3, noise=10.0, random_state=0
    )


#: dataset -> (loader, task); the task picks the estimators, the split and the metric.
DATASETS = {
    "digits": (load_digits, "classification"),
    "breast_cancer": (load_breast_cancer, "classification"),
    "diabetes": (load_diabetes, "regression"),
    "multi_output": (_multi_output, "regression"),
}
ESTIMATORS = {
    "classification": (("handgrad", HandgradMLP), ("sklearn", SklearnMLP)),
    "regression": (("handgrad", HandgradMLPRegressor), ("sklearn", SklearnMLPRegressor)),
}
METRIC = {"classification": "accuracy", "regression": "R²"}
SOLVERS = ("sgd", "adam", "lbfgs")
PARAMS = dict(hidden_layer_sizes=(100,), alpha=1e-4, max_iter=200)  # scikit-learn's defaults
TOLERANCE = 0.01  # one point of accuracy, or 0.01 of R²


def evaluate(cls, data, solver: str, seed: int, task: str) -> tuple[float, float]:
    """(test score, fit seconds) of one Pipeline(StandardScaler, cls); for regression
    the targets are standardised too (TransformedTargetRegressor)."""
    X_tr, X_te, y_tr, y_te = data
    pipe = make_pipeline(StandardScaler(), cls(solver=solver, random_state=seed, **PARAMS))
    if task == "regression":
        pipe = TransformedTargetRegressor(pipe, transformer=StandardScaler())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        pipe.fit(X_tr, y_tr)
        seconds = time.perf_counter() - start
    return float(pipe.score(X_te, y_te)), seconds


def run(seeds: int) -> list[dict]:
    rows = []
    for name, (load, task) in DATASETS.items():
        X, y = load(return_X_y=True)
        stratify = y if task == "classification" else None
        data = train_test_split(X, y, test_size=0.25, stratify=stratify, random_state=SPLIT_SEED)
        for solver in SOLVERS:
            result: dict = {"dataset": name, "solver": solver, "metric": METRIC[task]}
            # interleave the two libraries seed by seed so machine noise hits both alike
            for seed in range(seeds):
                for lib, cls in ESTIMATORS[task]:
                    score, sec = evaluate(cls, data, solver, seed, task)
                    result.setdefault(f"{lib}_scores", []).append(score)
                    result.setdefault(f"{lib}_seconds", []).append(sec)
            for lib in ("handgrad", "sklearn"):
                result[f"{lib}_score"] = statistics.mean(result[f"{lib}_scores"])
                result[f"{lib}_fit_s"] = statistics.median(result[f"{lib}_seconds"])
            result["ok"] = result["handgrad_score"] >= result["sklearn_score"] - TOLERANCE
            rows.append(result)
            print_row(result, flush=True)
    return rows


HEADER = (
    f"| {'dataset':<13} | {'solver':<6} | {'metric':<8} | handgrad | sklearn | "
    "handgrad fit s | sklearn fit s | ok |"
)


def _score(r: dict, lib: str) -> str:
    value = r[f"{lib}_score"]
    return f"{100 * value:.2f}%" if r["metric"] == "accuracy" else f"{value:.4f}"


def print_row(r: dict, flush: bool = False) -> None:
    print(
        f"| {r['dataset']:<13} | {r['solver']:<6} | {r['metric']:<8} | "
        f"{_score(r, 'handgrad'):>8} | {_score(r, 'sklearn'):>7} | "
        f"{r['handgrad_fit_s']:14.3f} | {r['sklearn_fit_s']:13.3f} | "
        f"{'yes' if r['ok'] else 'NO':>2} |",
        flush=flush,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="weight seeds per row (mean)")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "quality.json"
    )
    args = parser.parse_args(argv)
    print(
        f"test accuracy or R² (mean of {args.seeds} seeds) and median fit time; "
        f"settings {PARAMS}, split seed {SPLIT_SEED}"
    )
    print(HEADER)
    print("|" + "|".join("-" * (len(c)) for c in HEADER.split("|")[1:-1]) + "|")
    rows = run(args.seeds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "sklearn": sklearn.__version__,
        "machine": platform.machine(),
        "seeds": args.seeds,
        "params": {k: list(v) if isinstance(v, tuple) else v for k, v in PARAMS.items()},
    }
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
