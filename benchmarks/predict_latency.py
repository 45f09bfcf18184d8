"""Latency of ``predict`` and ``predict_proba`` on one row and on 100 rows: handgrad
against scikit-learn on the same weights.

Both estimators hold the same network (handgrad's weights copied into a fitted
scikit-learn ``MLPClassifier``), digits-sized (64→100→10, on scikit-learn's digits,
standardised) and MNIST-sized (784→256→10, synthetic). Every call is timed on its own;
the candidates run interleaved in blocks of ``--calls`` calls, round by round, so that
a noisy machine slows them alike. Reported: the median and the 99th percentile of the
single-call times, and the median of the per-round ratios of the medians. The
"NumPy forward" row is the arithmetic alone (``max(X W1 + b1, 0) W2 + b2``), for scale.

    python benchmarks/predict_latency.py                # a few minutes
    python benchmarks/predict_latency.py --rounds 3 --calls 200   # a short run
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier
from sklearn.preprocessing import StandardScaler

from handgrad import MLPClassifier

MODELS = {"digits": (64, 100, 10), "mnist": (784, 256, 10)}  # D, H, C
RESULTS = Path(__file__).parent / "results"


def make_data(model: str) -> tuple[np.ndarray, np.ndarray]:
    """(X, y): digits standardised, or MNIST-sized Gaussian rows with 10 labels."""
    if model == "digits":
        X, y = load_digits(return_X_y=True)
        return StandardScaler().fit_transform(X), y
    D, _, C = MODELS[model]
    rng = np.random.default_rng(0)
    return rng.standard_normal((2000, D)), rng.integers(0, C, 2000)


def twin_models(model: str) -> tuple[MLPClassifier, SklearnMLPClassifier, np.ndarray]:
    """A fitted handgrad classifier, a scikit-learn one holding the same weights, and X."""
    X, y = make_data(model)
    H = MODELS[model][1]
    settings = dict(hidden_layer_sizes=(H,), max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: two epochs on purpose
        ours = MLPClassifier(**settings).fit(X, y)
        theirs = SklearnMLPClassifier(**settings).fit(X, y)
    theirs.coefs_ = [W.copy() for W in ours.coefs_]
    theirs.intercepts_ = [b.copy() for b in ours.intercepts_]
    return ours, theirs, X


def numpy_forward(ours: MLPClassifier) -> Callable[[np.ndarray], np.ndarray]:
    (W1, W2), (b1, b2) = ours.coefs_, ours.intercepts_
    return lambda X: np.maximum(X @ W1 + b1, 0) @ W2 + b2


def time_calls(call: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        out.append(time.perf_counter() - t0)
    return out


def bench(model: str, rounds: int, calls: int) -> list[dict]:
    ours, theirs, X = twin_models(model)
    rows_out = []
    for rows in (1, 100):
        Xr = np.ascontiguousarray(X[:rows])
        assert (ours.predict(Xr) == theirs.predict(Xr)).all()
        assert np.allclose(ours.predict_proba(Xr), theirs.predict_proba(Xr), atol=1e-9)
        forward = numpy_forward(ours)
        candidates = {
            "handgrad predict": lambda Xr=Xr: ours.predict(Xr),
            "scikit-learn predict": lambda Xr=Xr: theirs.predict(Xr),
            "handgrad predict_proba": lambda Xr=Xr: ours.predict_proba(Xr),
            "scikit-learn predict_proba": lambda Xr=Xr: theirs.predict_proba(Xr),
            "NumPy forward": lambda Xr=Xr, forward=forward: forward(Xr),
        }
        times: dict[str, list[list[float]]] = {name: [] for name in candidates}
        for r in range(rounds + 1):  # round 0 warms up
            for name, call in candidates.items():
                ts = time_calls(call, calls)
                if r:
                    times[name].append(ts)
        for name, per_round in times.items():
            flat = sorted(t for ts in per_round for t in ts)
            peer = name.replace("handgrad", "scikit-learn")
            ratio = None
            if name.startswith("handgrad"):
                ratio = statistics.median(
                    statistics.median(a) / statistics.median(b)
                    for a, b in zip(per_round, times[peer], strict=True)
                )
            rows_out.append(
                {
                    "model": model,
                    "rows": rows,
                    "candidate": name,
                    "median_us": 1e6 * statistics.median(flat),
                    "p99_us": 1e6 * flat[int(0.99 * (len(flat) - 1))],
                    "ratio_to_scikit_learn": ratio,
                }
            )
    return rows_out


def print_table(rows: list[dict]) -> None:
    head = ("model", "rows", "candidate", "median µs", "p99 µs", "÷ sklearn")
    print("\n{:<7} {:>4}  {:<27} {:>9} {:>8} {:>9}".format(*head))
    for r in rows:
        ratio = "" if r["ratio_to_scikit_learn"] is None else f"{r['ratio_to_scikit_learn']:.2f}×"
        print(
            f"{r['model']:<7} {r['rows']:>4}  {r['candidate']:<27} "
            f"{r['median_us']:>9.1f} {r['p99_us']:>8.1f} {ratio:>9}"
        )


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", nargs="+", choices=list(MODELS), default=list(MODELS))
    p.add_argument("--rounds", type=int, default=5, help="timed rounds after a warm-up")
    p.add_argument("--calls", type=int, default=1000, help="calls per candidate per round")
    p.add_argument("--out", type=Path, default=None, help="JSON file (default: results/)")
    args = p.parse_args(argv)
    rows = [r for model in args.model for r in bench(model, args.rounds, args.calls)]
    print_table(rows)
    out = args.out or RESULTS / f"predict-latency-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))
    print(f"\nwrote {out}")
    return rows


if __name__ == "__main__":
    main()
