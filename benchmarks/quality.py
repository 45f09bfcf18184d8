"""Learning quality: handgrad's MLPClassifier against scikit-learn's, same settings.

On scikit-learn's digits and breast-cancer data (stratified 75/25 split, fixed seed;
features standardised by a StandardScaler in a Pipeline for both libraries), for the
solvers sgd, adam and lbfgs, with identical hyperparameters, it prints test accuracy
and fit time of both, averaged over a few weight seeds, and writes the rows to
``benchmarks/results/quality.json``. The requirement: handgrad's accuracy is at least
scikit-learn's minus 1 point on every row (the exit code is 1 otherwise).

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
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SklearnMLP
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from handgrad import MLPClassifier as HandgradMLP

SPLIT_SEED = 0
DATASETS = {"digits": load_digits, "breast_cancer": load_breast_cancer}
SOLVERS = ("sgd", "adam", "lbfgs")
PARAMS = dict(hidden_layer_sizes=(100,), alpha=1e-4, max_iter=200)  # scikit-learn's defaults
TOLERANCE = 0.01  # one point of accuracy


def evaluate(cls, data, solver: str, seed: int) -> tuple[float, float]:
    """(test accuracy, fit seconds) of one Pipeline(StandardScaler, cls)."""
    X_tr, X_te, y_tr, y_te = data
    pipe = make_pipeline(StandardScaler(), cls(solver=solver, random_state=seed, **PARAMS))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        pipe.fit(X_tr, y_tr)
        seconds = time.perf_counter() - start
    return float(pipe.score(X_te, y_te)), seconds


def run(seeds: int) -> list[dict]:
    rows = []
    for name, load in DATASETS.items():
        X, y = load(return_X_y=True)
        data = train_test_split(X, y, test_size=0.25, stratify=y, random_state=SPLIT_SEED)
        for solver in SOLVERS:
            result: dict = {"dataset": name, "solver": solver}
            # interleave the two libraries seed by seed so machine noise hits both alike
            for seed in range(seeds):
                for lib, cls in (("handgrad", HandgradMLP), ("sklearn", SklearnMLP)):
                    acc, sec = evaluate(cls, data, solver, seed)
                    result.setdefault(f"{lib}_accuracies", []).append(acc)
                    result.setdefault(f"{lib}_seconds", []).append(sec)
            for lib in ("handgrad", "sklearn"):
                result[f"{lib}_accuracy"] = statistics.mean(result[f"{lib}_accuracies"])
                result[f"{lib}_fit_s"] = statistics.median(result[f"{lib}_seconds"])
            result["ok"] = result["handgrad_accuracy"] >= result["sklearn_accuracy"] - TOLERANCE
            rows.append(result)
            print_row(result, flush=True)
    return rows


HEADER = (
    f"| {'dataset':<13} | {'solver':<6} | handgrad acc | sklearn acc | "
    "handgrad fit s | sklearn fit s | ok |"
)


def print_row(r: dict, flush: bool = False) -> None:
    print(
        f"| {r['dataset']:<13} | {r['solver']:<6} | {100 * r['handgrad_accuracy']:11.2f}% | "
        f"{100 * r['sklearn_accuracy']:10.2f}% | {r['handgrad_fit_s']:14.3f} | "
        f"{r['sklearn_fit_s']:13.3f} | {'yes' if r['ok'] else 'NO':>2} |",
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
        f"test accuracy (mean of {args.seeds} seeds) and median fit time; "
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
