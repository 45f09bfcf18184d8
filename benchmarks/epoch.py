"""One training epoch against the GEMM floor, scikit-learn and PyTorch; and ``predict``.

Every candidate trains one epoch of the same two-layer network (batch 200, plain SGD,
shuffled) on the same synthetic data, in one process, interleaved round by round; the
ratio of each to the **GEMM floor** — the five matrix products of every batch alone,
into preallocated outputs — is the median of the per-round ratios. A second floor, the
same products on gathered shuffled batches, shows what the gather alone costs (the
"× gathered" column). Both floors call the products from compiled code where handgrad's
extension is built (``handgrad._fused.gemm_floor``: the same cblas ``?gemm`` NumPy's
``matmul`` calls), so that for small layers the floor is the arithmetic, not Python's
calls; else from NumPy, one ``matmul`` each. The digits workload (scikit-learn's
digits, standardised) trains 100 epochs per round instead of one.

``--threads 1,2`` runs every candidate at each BLAS thread count (threadpoolctl, and
``handgrad.threads`` for handgrad), and handgrad's candidates once more with the count
chosen by the work ("@auto"), against the best fixed count of the same run.
``--busy 1`` keeps one CPU-bound process spinning beside the benchmark.
See README.md here.

    python benchmarks/epoch.py                       # both workloads, both dtypes
    python benchmarks/epoch.py --workload mnist --dtype float32 --rounds 7
    python benchmarks/epoch.py --workload digits --threads 1,2 --busy 1
    python benchmarks/epoch.py --quick               # a tiny smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
from threadpoolctl import ThreadpoolController, threadpool_info

import handgrad
from handgrad import MLP
from handgrad.optim import SGD
from handgrad.training import TrainingConfig, compiled, fit

WORKLOADS = {  # name: (N, D, H, C)
    "digits": (1797, 64, 100, 10),
    "mnist": (60000, 784, 256, 10),
    "cifar": (49000, 3072, 100, 10),
    "quick": (1200, 48, 32, 10),
}
EPOCHS = {"digits": 100}  # epochs per timed round (one elsewhere)
BATCH, LEARNING_RATE, ALPHA = 200, 1e-3, 1e-4
PREDICT_ROWS = 10000
RESULTS = Path(__file__).parent / "results"


def epoch_flops(N: int, D: int, H: int, C: int) -> float:
    """The five products of an epoch: XW1, A1W2, A1ᵀdS, dS W2ᵀ, XᵀdZ1 = 2N(2DH + 3HC)."""
    return 2.0 * N * (2 * D * H + 3 * H * C)


def make_data(N: int, D: int, C: int, dtype, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D), dtype=dtype)
    return X, rng.integers(0, C, N)


def digits(dtype):
    """scikit-learn's digits (1,797 × 64), standardised, and its labels."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X - X.mean(axis=0)) / np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)
    return np.ascontiguousarray(X, dtype=dtype), y


# ----------------------------------------------------------------------- candidates
class _FloorArrays(NamedTuple):
    """The floor's weights and its preallocated outputs (the batch buffer Xb too)."""

    rng: np.random.Generator
    Xb: np.ndarray
    W1: np.ndarray
    W2: np.ndarray
    A1: np.ndarray
    S: np.ndarray
    dA1: np.ndarray
    dW1: np.ndarray
    dW2: np.ndarray


def _floor_arrays(X, H: int, C: int) -> _FloorArrays:
    D = X.shape[1]
    rng = np.random.default_rng(1)
    W1 = rng.standard_normal((D, H), dtype=X.dtype) * 0.01
    W2 = rng.standard_normal((H, C), dtype=X.dtype) * 0.01
    Xb, A1, S, dA1 = (np.empty((BATCH, k), X.dtype) for k in (D, H, C, H))
    return _FloorArrays(rng, Xb, W1, W2, A1, S, dA1, np.empty_like(W1), np.empty_like(W2))


def _compiled_floor(X, H, C, epochs: int, gathered: bool) -> Callable[[], None] | None:
    """The floor's epochs by ``handgrad._fused.gemm_floor`` (None where it is not built)."""
    fused = compiled._fused
    if fused is None:
        return None
    (N, D), f = X.shape, _floor_arrays(X, H, C)
    order = np.arange(N, dtype=np.int64)
    double = X.dtype == np.float64

    def run() -> None:  # f is held by run: the C code has its arrays' addresses
        buffers = [a.ctypes.data for a in f[1:]]
        for _ in range(epochs):
            if gathered:
                f.rng.shuffle(order)
            at = order.ctypes.data if gathered else 0
            fused.gemm_floor(double, X.ctypes.data, at, N, BATCH, D, H, C, *buffers)

    return run


def _products(f: _FloorArrays, Xb: np.ndarray) -> None:
    """The five products of the batch Xb (n, D), from NumPy."""
    n = Xb.shape[0]
    np.matmul(Xb, f.W1, out=f.A1[:n])
    np.matmul(f.A1[:n], f.W2, out=f.S[:n])
    np.matmul(f.A1[:n].T, f.S[:n], out=f.dW2)
    np.matmul(f.S[:n], f.W2.T, out=f.dA1[:n])
    np.matmul(Xb.T, f.dA1[:n], out=f.dW1)


def gemm_floor(X, y, H, C, epochs: int = 1) -> Callable[[], None]:
    """Only the five products of every batch, into preallocated outputs."""
    floor = _compiled_floor(X, H, C, epochs, gathered=False)
    if floor is not None:
        return floor
    N, f = X.shape[0], _floor_arrays(X, H, C)

    def run() -> None:
        for _, start in _batches(epochs, N):
            _products(f, X[start : start + BATCH])

    return run


def _batches(epochs: int, N: int):
    """(epoch, first row) of every batch of ``epochs`` epochs."""
    return ((e, start) for e in range(epochs) for start in range(0, N, BATCH))


def gemm_floor_gathered(X, y, H, C, epochs: int = 1) -> Callable[[], None]:
    """The floor's products on shuffled batches, each gathered into a reused buffer
    first (``np.take``): what the products cost once the batches are an epoch's own.
    A reference for where the time goes, not a target."""
    floor = _compiled_floor(X, H, C, epochs, gathered=True)
    if floor is not None:
        return floor
    N, f = X.shape[0], _floor_arrays(X, H, C)
    order = np.arange(N)

    def run() -> None:
        for _, start in _batches(epochs, N):
            if start == 0:
                f.rng.shuffle(order)
            idx = order[start : start + BATCH]
            n = len(idx)
            np.take(X, idx, axis=0, out=f.Xb[:n], mode="clip")
            _products(f, f.Xb[:n])

    return run


def handgrad_loop(X, y, H, C, epochs: int = 1) -> Callable[[], None]:
    """``handgrad.MLP`` trained by ``handgrad.training.fit`` for ``epochs`` epochs."""
    model = MLP(X.shape[1], (H,), C, seed=0, dtype=X.dtype)
    config = TrainingConfig(batch_size=BATCH, max_epochs=epochs, reg=ALPHA, stopping="none")
    rng = np.random.default_rng(0)
    return lambda: fit(model, X, y, optimizer=SGD(LEARNING_RATE), config=config, seed=rng)


def _mlp_settings(H: int, epochs: int) -> dict:
    return dict(
        hidden_layer_sizes=(H,),
        solver="sgd",
        momentum=0.0,
        nesterovs_momentum=False,
        batch_size=BATCH,
        max_iter=epochs,
        shuffle=True,
        learning_rate_init=LEARNING_RATE,
        alpha=ALPHA,
        tol=0.0,
        n_iter_no_change=10**9,
        random_state=0,
    )


def handgrad_estimator(X, y, H, C, epochs: int = 1) -> Callable[[], None] | None:
    try:
        from handgrad import MLPClassifier
    except ImportError:
        return None
    clf = MLPClassifier(**_mlp_settings(H, epochs))
    return lambda: _quiet_fit(clf, X, y)


def sklearn_estimator(X, y, H, C, epochs: int = 1) -> Callable[[], None]:
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(**_mlp_settings(H, epochs))
    return lambda: _quiet_fit(clf, X, y)


def _quiet_fit(clf, X, y) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: max_iter=1 on purpose
        clf.fit(X, y)


def torch_eager(X, y, H, C, epochs: int = 1) -> Callable[[], None] | None:
    """PyTorch CPU eager: nn.Linear, ReLU, CrossEntropyLoss, optim.SGD, randperm batches."""
    try:
        import torch
    except ImportError:
        return None
    dtype = torch.float32 if X.dtype == np.float32 else torch.float64
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(X.shape[1], H), torch.nn.ReLU(), torch.nn.Linear(H, C)
    ).to(dtype)
    # scikit-learn's alpha is λ per sample: λ = alpha / batch as SGD weight decay
    opt = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE, weight_decay=ALPHA / BATCH)
    loss_fn = torch.nn.CrossEntropyLoss()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    N = X.shape[0]

    def run() -> None:
        total = 0.0
        for idx in (i for _ in range(epochs) for i in torch.randperm(N).split(BATCH)):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(Xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += loss.item()

    return run


CANDIDATES = {
    "GEMM floor": gemm_floor,
    "floor, gathered batches": gemm_floor_gathered,
    "handgrad loop": handgrad_loop,
    "handgrad MLPClassifier": handgrad_estimator,
    "scikit-learn MLPClassifier": sklearn_estimator,
    "PyTorch eager": torch_eager,
}


# ------------------------------------------------------------------------- timing
def interleaved(
    runs: dict[str, Callable[[], None]],
    rounds: int,
    warmup: int = 1,
    pause: float = 0.2,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Seconds of each run, round by round (warm-up rounds dropped).

    ``pause`` lets the thread pools of the previous candidate (OpenMP, OpenBLAS)
    stop spinning before the next one starts. Each round starts one candidate later
    than the last, so that none always follows the same neighbour. ``clock`` may be
    ``time.process_time`` (CPU seconds of the process: for single-threaded runs on a
    busy machine, the time other processes take the CPU away is not counted).
    """
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(warmup + rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            run = runs[name]
            time.sleep(pause)
            t0 = clock()
            run()
            if r >= warmup:
                times[name].append(clock() - t0)
    return times


def summarise(times: dict[str, list[float]], floors: dict[str, tuple[str, str]], flops: float):
    """A row per candidate; ``floors[name]`` is (GEMM floor, gathered floor) of its run."""
    rows = []
    for name, ts in times.items():
        floor, gathered = floors[name]
        rows.append(
            {
                "candidate": name,
                "median_s": statistics.median(ts),
                "min_s": min(ts),
                "ratio_to_floor": _median_ratio(ts, times[floor]),
                "ratio_to_gathered": _median_ratio(ts, times[gathered]),
                "ratio_of_minima": min(ts) / min(times[floor]),
                "gflops": flops / statistics.median(ts) / 1e9,
                "times_s": ts,
            }
        )
    return rows


def _median_ratio(times: list[float], reference: list[float]) -> float:
    """The median of the per-round ratios ``times / reference``."""
    return statistics.median(t / f for t, f in zip(times, reference, strict=True))


def print_table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print(
        f"{'candidate':<34} {'median s':>9} {'min s':>8} {'× floor':>8} {'× gathered':>10} "
        f"{'(minima)':>9} {'GFLOP/s':>8}"
    )
    for r in rows:
        print(
            f"{r['candidate']:<34} {r['median_s']:>9.3f} {r['min_s']:>8.3f} "
            f"{r['ratio_to_floor']:>7.2f}× {r['ratio_to_gathered']:>9.2f}× "
            f"{r['ratio_of_minima']:>8.2f}× {r['gflops']:>8.1f}"
        )


#: Candidates that choose their own threads (handgrad): "@auto" rows in a sweep.
CHOOSING = ("handgrad loop", "handgrad MLPClassifier")


def bench_epoch(
    workload: str, dtype, rounds: int, skip: set[str], pause: float, threads: list[int] | None
) -> list[dict]:
    """Every candidate on one workload, interleaved; with ``threads``, every candidate at
    each count and handgrad's also at its own choice ("@auto", whose ratios are to the
    floors at their fastest count)."""
    N, D, H, C = WORKLOADS[workload]
    X, y = digits(dtype) if workload == "digits" else make_data(N, D, C, dtype)
    epochs = EPOCHS.get(workload, 1)
    runs, floors = {}, {}
    for name, make in CANDIDATES.items():
        run = None if name in skip else make(X, y, H, C, epochs)
        if run is None:
            print(f"  ({name}: skipped)")
            continue
        for t in threads or [None]:
            label = name if t is None else f"{name} @{t}"
            runs[label] = run if t is None else pinned(run, t)
            floors[label] = _floors(t)
        if threads and name in CHOOSING:
            runs[f"{name} @auto"] = run
    times = interleaved(runs, rounds, pause=pause)
    if threads:  # "@auto" against the floors at their best thread count
        best = min(threads, key=lambda t: statistics.median(times[_floors(t)[0]]))
        floors.update({f"{name} @auto": _floors(best) for name in CHOOSING})
    flops = epoch_flops(N, D, H, C) * epochs
    rows = summarise(times, floors, flops)
    what = "one epoch" if epochs == 1 else f"{epochs} epochs"
    print_table(
        f"{what}, {workload}-like {N}×{D}→{H}→{C}, {np.dtype(dtype).name}, "
        f"{flops / 1e9:.1f} GFLOP, {rounds} rounds",
        rows,
    )
    if threads:
        for row in auto_against_best(times, threads):
            rows.append(row)
            print(
                f"{row['candidate']}: {row['ratio_to_best_fixed']:.2f}× the best fixed "
                f"count ({row['best_fixed']})"
            )
    return rows


def _floors(t: int | None) -> tuple[str, str]:
    at = "" if t is None else f" @{t}"
    return f"GEMM floor{at}", f"floor, gathered batches{at}"


def pinned(run: Callable[[], None], n: int) -> Callable[[], None]:
    """``run`` on ``n`` BLAS threads (``handgrad.threads`` too: handgrad sets its own;
    and PyTorch's own intra-op threads, where it is loaded)."""
    controller = _controller()

    def pinned_run() -> None:
        torch = sys.modules.get("torch")
        before = torch.get_num_threads() if torch else None
        try:
            if torch:
                torch.set_num_threads(n)
            with controller.limit(limits=n, user_api="blas"), handgrad.threads(n):
                run()
        finally:
            if torch:
                torch.set_num_threads(before)

    return pinned_run


@functools.cache
def _controller() -> ThreadpoolController:
    """The loaded thread pools, found once (a scan of the process's libraries)."""
    return ThreadpoolController()


def auto_against_best(times: dict[str, list[float]], threads: list[int]) -> list[dict]:
    """For each handgrad candidate: "@auto" against its best fixed thread count (the one
    with the lowest median), as the median of the per-round ratios."""
    rows = []
    for name in CHOOSING:
        if f"{name} @auto" not in times:
            continue
        best = min(threads, key=lambda t: statistics.median(times[f"{name} @{t}"]))
        rows.append(
            {
                "candidate": f"{name} @auto",
                "best_fixed": f"{name} @{best}",
                "ratio_to_best_fixed": _median_ratio(
                    times[f"{name} @auto"], times[f"{name} @{best}"]
                ),
            }
        )
    return rows


def bench_predict(workload: str, dtype, rounds: int, pause: float) -> list[dict]:
    """``MLP.predict`` on PREDICT_ROWS rows against its two forward products alone."""
    N, D, H, C = WORKLOADS[workload]
    rows_n = min(PREDICT_ROWS, N)
    X, _ = make_data(rows_n, D, C, dtype, seed=2)
    model = MLP(D, (H,), C, seed=0, dtype=dtype)
    W1, W2 = model.params["W1"], model.params["W2"]
    A1, S = np.empty((rows_n, H), dtype), np.empty((rows_n, C), dtype)

    def floor() -> None:
        np.matmul(X, W1, out=A1)
        np.matmul(A1, W2, out=S)

    runs = {
        "forward floor": floor,
        "handgrad MLP.predict": lambda: model.predict(X),
        "handgrad MLP.predict_proba": lambda: model.predict_proba(X),
    }
    times = interleaved(runs, rounds * 4, warmup=2, pause=pause / 4)
    floors = dict.fromkeys(runs, ("forward floor", "forward floor"))
    rows = summarise(times, floors, 2.0 * rows_n * (D * H + H * C))
    print_table(f"predict, {rows_n} rows, {workload}-like, {np.dtype(dtype).name}", rows)
    return rows


def blas_description() -> list[str]:
    """Every BLAS/OpenMP library loaded, with the package that ships it."""
    rows = []
    for i in threadpool_info():
        path = Path(i["filepath"])
        owner = path.parent.name.removesuffix(".libs")
        rows.append(
            f"{owner}: {i.get('internal_api')} {i.get('version') or ''} "
            f"{i.get('architecture') or ''}, {i.get('num_threads')} threads "
            f"({path.name})"
        )
    return rows


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--workload",
        nargs="+",
        choices=["digits", "mnist", "cifar"],
        default=["mnist", "cifar"],
    )
    p.add_argument(
        "--dtype", nargs="+", choices=["float32", "float64"], default=["float32", "float64"]
    )
    p.add_argument("--rounds", type=int, default=5, help="timed rounds after a warm-up")
    p.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=list(CANDIDATES)[1:],
        help="candidates to leave out",
    )
    p.add_argument(
        "--threads",
        type=_counts,
        default=None,
        help="BLAS thread counts to sweep, e.g. 1,2 (default: the library's own)",
    )
    p.add_argument(
        "--busy", type=int, default=0, help="CPU-bound processes to run beside the benchmark"
    )
    p.add_argument("--no-predict", action="store_true")
    p.add_argument("--quick", action="store_true", help="tiny sizes, 2 rounds: a smoke run")
    p.add_argument("--out", type=Path, default=None, help="JSON file (default: results/)")
    args = p.parse_args(argv)
    workloads, rounds = (["quick"], 2) if args.quick else (args.workload, args.rounds)
    pause = 0.0 if args.quick else 0.2
    info = {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "handgrad": getattr(handgrad, "__version__", "dev"),
        "machine": platform.platform(),
        "processor": _cpu_name(),
        "blas": blas_description(),
    }
    print("\n".join(["BLAS in use:", *("  " + b for b in info["blas"])]))
    print(f"processor: {info['processor']}")
    info["threads"], info["busy"] = args.threads, args.busy
    results: dict = {"info": info, "epoch": {}, "predict": {}}
    with busy_processes(args.busy):
        for workload in workloads:
            for dtype in args.dtype:
                key = f"{workload}/{dtype}"
                results["epoch"][key] = bench_epoch(
                    workload, np.dtype(dtype), rounds, set(args.skip), pause, args.threads
                )
                if not args.no_predict:
                    results["predict"][key] = bench_predict(
                        workload, np.dtype(dtype), rounds, pause
                    )
    info["blas"] = blas_description()  # again: torch's libraries load with it
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        info["blas"].append(
            f"torch {torch.__version__}: {torch.get_num_threads()} threads, "
            f"MKL {'yes' if torch.backends.mkl.is_available() else 'no'}"
        )
    print("\n".join(["\nlibraries in use:", *("  " + b for b in info["blas"])]))
    write_results(results, args.out, "epoch")
    return results


def _counts(text: str) -> list[int]:
    counts = [int(t) for t in text.split(",")]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"thread counts must be positive, got {text!r}")
    return counts


@contextlib.contextmanager
def busy_processes(n: int):
    """``n`` processes spinning on one CPU each while the block runs (a busy machine)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        if procs:
            print(f"{n} CPU-bound process(es) running beside the benchmark")
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def write_results(results, out: Path | None, stem: str) -> Path:
    """``results`` as JSON to ``out``, or to ``results/<stem>-<time>.json``."""
    out = out or RESULTS / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"\nwrote {out}")
    return out


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


if __name__ == "__main__":
    main()
