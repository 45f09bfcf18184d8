"""Latency of ``predict`` and ``predict_proba`` on 1 and 100 rows: handgrad, scikit-learn's
MLPClassifier with the same weights, and ONNX Runtime on the exported graph.

Two models, both one hidden ReLU layer and a softmax head: digits-sized (64→100→10) and
MNIST-sized (784→256→10), float64 weights (what a fit on float64 data gives). Every call
is timed on its own; the table gives the median and the 99th percentile over all calls.
The candidates take turns, block by block, so that a noisy moment of the machine is
shared rather than landing on one of them. handgrad and scikit-learn get float64 rows
(as a caller's NumPy array usually is), ONNX Runtime float32 rows (its graph's input).
All three run on one thread (``--threads``: BLAS through threadpoolctl, ONNX Runtime's
intra-op pool), as a server answering one request per core runs them, and so that a
busy machine's oversubscribed thread pools do not decide the result.
See README.md here.

    python benchmarks/latency.py                  # both models, 1 and 100 rows
    python benchmarks/latency.py --calls 5000     # more calls for a steadier p99
    python benchmarks/latency.py --quick          # a tiny smoke run
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import numpy as np
from epoch import write_results
from threadpoolctl import threadpool_limits

from handgrad import MLPClassifier

MODELS = {  # name: (D, H, C)
    "digits": (64, 100, 10),
    "mnist": (784, 256, 10),
    "quick": (8, 4, 3),
}
ROWS = (1, 100)
METHODS = ("predict", "predict_proba")
CANDIDATES = ("handgrad", "scikit-learn", "ONNX Runtime")


def make_models(D: int, H: int, C: int, seed: int = 0) -> tuple[MLPClassifier, object]:
    """A handgrad MLPClassifier and a scikit-learn one holding the same weights."""
    from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((20 * C, D))
    y = np.arange(len(X)) % C
    settings = {"hidden_layer_sizes": (H,), "max_iter": 2, "random_state": seed}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # two iterations: ConvergenceWarning
        ours = MLPClassifier(**settings).fit(X, y)
        theirs = SklearnMLPClassifier(**settings).fit(X, y)
    theirs.coefs_ = [W.copy() for W in ours.coefs_]
    theirs.intercepts_ = [b.copy() for b in ours.intercepts_]
    assert np.allclose(theirs.predict_proba(X), ours.predict_proba(X))
    return ours, theirs


def onnx_session(model: MLPClassifier, threads: int) -> object:
    import onnxruntime as ort

    from handgrad.export import to_onnx

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    graph = to_onnx(model).SerializeToString()
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def calls(
    ours: MLPClassifier, theirs: object, session: object, X: np.ndarray, method: str
) -> dict[str, Callable[[], object]]:
    """One call of ``method`` on X for each candidate."""
    feed = {"X": X.astype(np.float32)}
    output = ["label" if method == "predict" else "probabilities"]
    ours_call, theirs_call = getattr(ours, method), getattr(theirs, method)
    return {
        "handgrad": lambda: ours_call(X),
        "scikit-learn": lambda: theirs_call(X),
        "ONNX Runtime": lambda: session.run(output, feed),
    }


def time_calls(runs: dict[str, Callable[[], object]], n_calls: int, blocks: int) -> dict:
    """Seconds of every call of each candidate, the candidates taking turns by block."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    per_block = max(1, n_calls // blocks)
    for run in runs.values():  # warm-up: caches, lazy imports, ONNX Runtime's first run
        for _ in range(min(50, per_block)):
            run()
    for _ in range(blocks):
        for name, run in runs.items():
            out = times[name]
            for _ in range(per_block):
                t0 = time.perf_counter()
                run()
                out.append(time.perf_counter() - t0)
    return times


def bench(model_name: str, n_calls: int, blocks: int, threads: int) -> list[dict]:
    ours, theirs = make_models(*MODELS[model_name])
    session = onnx_session(ours, threads)
    rng = np.random.default_rng(1)
    rows = []
    for n_rows in ROWS:
        X = rng.standard_normal((n_rows, MODELS[model_name][0]))
        for method in METHODS:
            times = time_calls(calls(ours, theirs, session, X, method), n_calls, blocks)
            for name, ts in times.items():
                rows.append(
                    {
                        "model": model_name,
                        "shape": "→".join(str(s) for s in MODELS[model_name]),
                        "rows": n_rows,
                        "method": method,
                        "candidate": name,
                        "median_us": statistics.median(ts) * 1e6,
                        "p99_us": float(np.percentile(ts, 99)) * 1e6,
                        "calls": len(ts),
                    }
                )
    return rows


def markdown_table(rows: list[dict]) -> str:
    """One line per (model, rows, method): median µs (p99 µs) of each candidate."""
    header = ["model", "rows", "method", *(f"{c} µs" for c in CANDIDATES)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    cells: dict[tuple, dict[str, str]] = {}
    for r in rows:
        key = (f"{r['model']} ({r['shape']})", r["rows"], f"`{r['method']}`")
        cells.setdefault(key, {})[r["candidate"]] = f"{r['median_us']:.0f} ({r['p99_us']:.0f})"
    for key, by_candidate in cells.items():
        values = [str(k) for k in key] + [by_candidate.get(c, "–") for c in CANDIDATES]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", nargs="+", choices=["digits", "mnist"], default=["digits", "mnist"])
    p.add_argument("--calls", type=int, default=1000, help="timed calls per candidate and case")
    p.add_argument("--blocks", type=int, default=10, help="turns the candidates take")
    p.add_argument("--threads", type=int, default=1, help="BLAS and ONNX Runtime threads")
    p.add_argument("--quick", action="store_true", help="a tiny model, 40 calls: a smoke run")
    p.add_argument("--out", type=Path, default=None, help="JSON file (default: results/)")
    args = p.parse_args(argv)
    models, n_calls, blocks = (
        (["quick"], 40, 2) if args.quick else (args.model, args.calls, args.blocks)
    )
    with threadpool_limits(limits=args.threads):
        rows = [r for m in models for r in bench(m, n_calls, blocks, args.threads)]
    versions = ", ".join(
        f"{name} {version(name)}" for name in ("handgrad", "numpy", "scikit-learn", "onnxruntime")
    )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nlatency per call, median (p99) over {n_calls} calls, {args.threads} thread(s)")
    print(f"python {sys.version.split()[0]}, {versions}; {os.cpu_count()} CPUs, load {load}\n")
    print(markdown_table(rows))
    write_results({"rows": rows, "calls": n_calls, "threads": args.threads}, args.out, "latency")
    return rows


if __name__ == "__main__":
    main()
