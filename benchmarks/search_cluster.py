"""What a Dask cluster costs a search: the same search through joblib's local processes
and through a Dask cluster of as many single-threaded workers.

Issue 16's target: the cluster's time at most 1.2× the local time, measured as a
same-run ratio — rounds alternate (local, cluster, local, …) after an untimed warm-up
of each, and the ratio is the median of the per-round ratios. The search is
``handgrad search``'s: hidden sizes from 32/64/128/256, learning rate and alpha
log-uniform, 20 candidates × 3 folds of digits, both sides through
:func:`handgrad.distributed.fits_on` (so the cluster side includes connecting, checking
the workers and sending the data, every round). Both sides get one BLAS thread per
worker process, as Dask's workers have. The cluster's start-up is timed once, apart.

    python benchmarks/search_cluster.py                   # a 2-worker LocalCluster
    python benchmarks/search_cluster.py --scheduler tcp://HOST:PORT --workers 8
    python benchmarks/search_cluster.py --quick           # a smoke run
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path

import joblib
import numpy as np
from epoch import interleaved, write_results
from scipy.stats import loguniform
from sklearn.datasets import load_digits, load_iris
from sklearn.model_selection import RandomizedSearchCV, check_cv

from handgrad import MLPClassifier
from handgrad.distributed import dask_client, fits_on
from handgrad.search import ALPHA_RANGE, LEARNING_RATE_RANGE

HIDDEN = [(32,), (64,), (128,), (256,)]


def make_search(X, y, n_iter: int, cv: int, epochs: int, n_jobs: int) -> tuple:
    """An unfitted search as ``random_search`` builds it, and the arrays every fit reads."""
    splits = list(check_cv(cv, y, classifier=True).split(X, y))
    search = RandomizedSearchCV(
        MLPClassifier(max_iter=epochs, batch_size=64, random_state=0, n_iter_no_change=np.inf),
        {
            "hidden_layer_sizes": HIDDEN,
            "learning_rate_init": loguniform(*LEARNING_RATE_RANGE),
            "alpha": loguniform(*ALPHA_RANGE),
        },
        n_iter=n_iter,
        cv=splits,
        n_jobs=n_jobs,
        random_state=0,
        refit=False,
        error_score=np.nan,
    )
    return search, [X, y, *(part for split in splits for part in split)]


def run_search(X, y, args, scheduler: str | None) -> RandomizedSearchCV:
    n_jobs = args.workers if scheduler is None else -1
    search, shared = make_search(X, y, args.iter, args.cv, args.epochs, n_jobs)
    with (
        joblib.parallel_config(backend="loky", inner_max_num_threads=1),
        fits_on(scheduler, shared=shared),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        search.fit(X, y)
    return search


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=2, help="local processes = cluster workers")
    p.add_argument("--scheduler", default=None, help="an existing cluster instead of local:N")
    p.add_argument("--iter", type=int, default=20)
    p.add_argument("--cv", type=int, default=3)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="iris, 2 candidates, 1 round")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.iter, args.cv, args.epochs, args.rounds = 2, 2, 2, 1
        X, y = load_iris(return_X_y=True)
    else:
        X, y = load_digits(return_X_y=True)
    X = (X / X.max()).astype(np.float32)

    start = time.perf_counter()
    with dask_client(args.scheduler or f"local:{args.workers}") as client:
        started = time.perf_counter() - start
        address = client.scheduler.address
        tables = {}

        def run(name: str, scheduler: str | None):
            def go() -> None:
                tables[name] = run_search(X, y, args, scheduler)

            return go

        times = interleaved(
            {"local joblib (loky)": run("local", None), "Dask cluster": run("dask", address)},
            args.rounds,
            pause=0.0 if args.quick else 0.5,
        )
    local, dask = times.values()
    same = all(
        np.array_equal(tables["local"].cv_results_[k], tables["dask"].cv_results_[k])
        for k in ("params", "mean_test_score", "rank_test_score")
    )
    results = {
        "fits": args.iter * args.cv,
        "workers": args.workers,
        "scheduler": args.scheduler or f"local:{args.workers}",
        "cluster_start_s": started,
        "local_s": local,
        "cluster_s": dask,
        "ratio": statistics.median(d / loc for d, loc in zip(dask, local, strict=True)),
        "same_table": same,
    }
    print(
        f"{results['fits']} fits on {args.workers} workers, {args.rounds} interleaved rounds\n"
        f"  local joblib  median {statistics.median(local):7.2f} s  {_list(local)}\n"
        f"  Dask cluster  median {statistics.median(dask):7.2f} s  {_list(dask)}\n"
        f"  cluster / local (same round, median): {results['ratio']:.2f}×  (target ≤ 1.2×)\n"
        f"  cluster start-up, once: {started:.2f} s; same table both ways: {same}"
    )
    write_results(results, args.out, "search_cluster")
    return results


def _list(ts: list[float]) -> str:
    return "[" + ", ".join(f"{t:.2f}" for t in ts) + "]"


if __name__ == "__main__":
    main()
