"""Milliseconds per epoch of a fit on row-major X against the same numbers column-major.

A pandas float frame's ``to_numpy()`` is column-major (Fortran order), and so is what
``StandardScaler`` makes of it; an epoch's batches would then be gathered from scattered
memory. The estimator copies such an X once to row-major (``estimator._row_major``); this
measures that the two layouts train equally fast. Every candidate fits the same
``MLPClassifier`` (defaults: one hidden layer of 100, Adam, batches of 200) on the same
synthetic 4366 × 85 table -- the size of ISLR's Caravan training split -- on one BLAS
thread, in one process, interleaved round by round; each figure is the median over the
rounds, and the ratio the median of the per-round ratios. ``--sklearn`` adds
scikit-learn's MLP on both layouts. The load average (``os.getloadavg``) is printed
before and after.

    python benchmarks/columns.py                  # 7 rounds of 20 epochs
    python benchmarks/columns.py --rounds 11 --epochs 30 --sklearn
    python benchmarks/columns.py --quick          # a tiny smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

import handgrad
from handgrad import MLPClassifier

N, D = 4366, 85


def make_data(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Standardized features (n, d) row-major and binary labels that depend on them."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = (X[:, : d // 4].sum(axis=1) + rng.standard_normal(n) > 0).astype(int)
    return X, y


def fit_epochs(make: Callable[[], object], X: np.ndarray, y: np.ndarray) -> Callable[[], None]:
    def run() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # not converged in so few epochs
            make().fit(X, y)

    return run


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--sklearn", action="store_true", help="add scikit-learn's MLP")
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    n, d, rounds, epochs = (600, 20, 2, 2) if args.quick else (N, D, args.rounds, args.epochs)
    X, y = make_data(n, d)
    layouts = {"row-major": X, "column-major": np.asfortranarray(X)}
    settings = dict(max_iter=epochs, tol=0.0, n_iter_no_change=epochs + 1, random_state=0)
    candidates = {
        f"handgrad {k}": (lambda: MLPClassifier(**settings), v) for k, v in layouts.items()
    }
    if args.sklearn:
        from sklearn.neural_network import MLPClassifier as SklearnMLP

        for k, v in layouts.items():
            candidates[f"sklearn {k}"] = (lambda: SklearnMLP(**settings), v)
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    with threadpool_limits(1), handgrad.threads(1):
        for _ in range(rounds):
            for name, (make, data) in candidates.items():
                run = fit_epochs(make, data, y)
                start = time.perf_counter()
                run()
                times[name].append((time.perf_counter() - start) * 1e3 / epochs)
    load_after = os.getloadavg()
    results = {
        "shape": [n, d],
        "epochs": epochs,
        "rounds": rounds,
        "load_before": load_before,
        "load_after": load_after,
        "ms_per_epoch": {k: statistics.median(v) for k, v in times.items()},
    }
    for lib in ("handgrad", "sklearn"):
        if f"{lib} row-major" in times:
            ratios = [
                c / r
                for c, r in zip(
                    times[f"{lib} column-major"], times[f"{lib} row-major"], strict=True
                )
            ]
            results[f"{lib} column/row"] = statistics.median(ratios)
    print(f"{n} × {d}, {epochs} epochs × {rounds} rounds, one thread; load {load_before}")
    for name, ms in results["ms_per_epoch"].items():
        print(f"  {name:24s} {ms:8.2f} ms/epoch")
    for lib in ("handgrad", "sklearn"):
        if f"{lib} column/row" in results:
            print(f"  {lib}: column-major / row-major = {results[f'{lib} column/row']:.3f}×")
    print(f"load after: {load_after}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
