"""Small fits with and without the compiled step (issue 26, ``handgrad.training.compiled``).

``MLPClassifier`` (Adam, batch 200, one thread, no early stop) on scikit-learn's digits
(1,797 × 64 → 100 → 10, 100 epochs) and a 20,000 × 30 → 100 → 4 table (10 epochs), in
float32 and float64: the compiled engine against today's NumPy engines (the extension
hidden, as where it is not built), and scikit-learn's ``MLPClassifier`` for scale —
interleaved round by round in one process (``epoch.interleaved``), CPU seconds of the
process (``time.process_time``: one thread, so time other processes take is not
counted), medians. Also the first-call compile time of the numba kernels of
``fused_step.py`` (the alternative tool), where numba is installed.

    python benchmarks/compiled.py --rounds 7
    python benchmarks/compiled.py --quick
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings

import numpy as np
from epoch import digits, interleaved
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as SkMLP
from threadpoolctl import threadpool_limits

import handgrad
from handgrad import MLPClassifier
from handgrad.training import compiled

WORKLOADS = {"digits": 100, "table": 10}  # name: epochs


def table(dtype):
    """A 20,000 × 30 table of four classes (scikit-learn's make_classification)."""
    X, y = make_classification(
        n_samples=20000, n_features=30, n_informative=12, n_classes=4, random_state=0
    )
    return np.ascontiguousarray(X, dtype=dtype), y


def _fit(make, X, y, epochs: int, use_compiled: bool | None):
    def run() -> None:
        saved = compiled._fused
        if use_compiled is False:
            compiled._fused = None  # as where the extension is not built
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                make(epochs).fit(X, y)
        finally:
            compiled._fused = saved

    return run


def _estimator(cls):
    def make(epochs: int):
        return cls(
            hidden_layer_sizes=(100,),
            solver="adam",
            batch_size=200,
            max_iter=epochs,
            tol=0.0,
            n_iter_no_change=10**6,
            random_state=0,
        )

    return make


def numba_compile_seconds() -> float | None:
    """Seconds of the first call of ``fused_step.py``'s numba kernels, compiled afresh
    (an empty cache directory, set before numba reads its configuration)."""
    with tempfile.TemporaryDirectory() as cache:
        os.environ["NUMBA_CACHE_DIR"] = cache
        try:
            import fused_step
        except ImportError:
            return None
        if fused_step.numba is None:
            return None
        fused_step.numba.core.config.reload_config()  # in case numba was imported before
        X, y = np.random.default_rng(0).standard_normal((400, 16)), np.arange(400) % 4
        t0 = time.perf_counter()
        fused_step.fused_steps(X, y, 8, 4)()  # an epoch: the kernels compile on first call
        return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run")
    parser.add_argument("--no-sklearn", action="store_true")
    args = parser.parse_args(argv)
    if not compiled.available():
        sys.exit("the compiled extension (handgrad._fused) is not built: pip install -e .")
    rounds = 1 if args.quick else args.rounds
    results: dict = {}
    print(f"handgrad {handgrad.__version__}, {rounds} rounds, one thread, CPU seconds, medians")
    print(f"{'workload':<28} {'compiled s':>10} {'NumPy s':>8} {'speed-up':>8} {'sklearn s':>9}")
    with threadpool_limits(1), handgrad.threads(1):
        for name, epochs in WORKLOADS.items():
            for dtype in (np.float32, np.float64):
                X, y = (digits if name == "digits" else table)(dtype)
                if args.quick:
                    X, y, epochs = X[:600], y[:600], 2
                runs = {
                    "compiled": _fit(_estimator(MLPClassifier), X, y, epochs, True),
                    "numpy": _fit(_estimator(MLPClassifier), X, y, epochs, False),
                }
                if not args.no_sklearn:
                    runs["sklearn"] = _fit(_estimator(SkMLP), X, y, epochs, None)
                times = interleaved(runs, rounds, pause=0.05, clock=time.process_time)
                med = {k: statistics.median(v) for k, v in times.items()}
                key = f"{name} {np.dtype(dtype).name} ({epochs} epochs)"
                results[key] = med
                sk = f"{med['sklearn']:>9.3f}" if "sklearn" in med else f"{'-':>9}"
                print(
                    f"{key:<28} {med['compiled']:>10.3f} {med['numpy']:>8.3f} "
                    f"{med['numpy'] / med['compiled']:>7.2f}× {sk}"
                )
    seconds = None if args.quick else numba_compile_seconds()
    if seconds is not None:
        print(f"numba: the first call of fused_step.py's kernels took {seconds:.2f} s")
    results["numba_first_call_s"] = seconds
    return results


if __name__ == "__main__":
    main()
