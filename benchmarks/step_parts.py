"""Where a training step's time goes beyond its products, part by part.

For one workload of ``epoch.py`` (batch 200, plain SGD, the softmax head, ReLU) this
times, over the batches of one shuffled epoch and interleaved round by round:

- the **gathered floor** (the five products on gathered batches, as ``epoch.py``);
- the fast engine's step alone (``Workspace.gather`` + ``Workspace.sgd_step``), the
  loop (``training.fit``, one epoch) and ``MLPClassifier.fit`` (one epoch);
- each part of the step on its own, on the workspace's real buffers: the gather, the
  products as the engine calls them, the bias copies, ReLU and its mask, the head, the
  ``λ/2 Σ‖W‖²`` penalty, the bias sums and updates, ``dA ⊙ mask``, and the running
  accuracy count.

A part's seconds are an epoch's worth of that part; "the rest" of the loop is its
time less the step's (the loop's own Python work per step), and "estimator extra" is
``MLPClassifier.fit`` less the loop. Parts timed alone miss the cache effects of their
neighbours: their sum is an estimate, the loop and estimator columns are measured.

    python benchmarks/step_parts.py --workload digits mnist cifar --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import epoch

from handgrad import MLP
from handgrad._threads import _usable_cpus, choose_threads
from handgrad.inplace import relu_
from handgrad.training import right_rows
from handgrad.workspace import Workspace, affine_, gemm_


def parts(workload: str, dtype) -> dict[str, Callable[[], None]]:
    """name: a function running that part once for every batch of an epoch."""
    N, D, H, C = epoch.WORKLOADS[workload]
    X, y = epoch.digits(dtype) if workload == "digits" else epoch.make_data(N, D, C, dtype)
    epochs = epoch.EPOCHS.get(workload, 1)
    model = MLP(D, (H,), C, seed=0, dtype=dtype)
    p = model.params
    W1, b1, W2, b2 = p["W1"], p["b1"], p["W2"], p["b2"]
    B = epoch.BATCH
    ws = Workspace(model.layer_sizes, B, activation="relu", head="softmax", dtype=dtype)
    order = np.random.default_rng(0).permutation(N)
    batches = [order[s : s + B] for _ in range(epochs) for s in range(0, N, B)]
    lr, reg = epoch.LEARNING_RATE, epoch.ALPHA / B
    ws.sgd_step(p, *ws.gather(X, y, None, batches[0])[:2], reg, None, lr)
    Xb_full, yb_full, _ = ws.gather(X, y, None, batches[0])
    A1, D1, dZ1 = ws._A[0], ws._D[0], ws._dZ[0]
    S, dS, ones = ws._S, ws._dS, ws._ones
    dW1, dW2, db1, db2 = (ws.grads[k] for k in ("W1", "W2", "b1", "b2"))
    b1_copy, b2_copy = b1.copy(), b2.copy()
    sizes = [len(b) for b in batches]

    def each(body: Callable[[int], None]) -> Callable[[], None]:
        return lambda: [body(n) for n in sizes] and None

    def step() -> None:
        for idx in batches:
            Xb, Tb, _ = ws.gather(X, y, None, idx)
            ws.sgd_step(p, Xb, Tb, reg, None, lr)

    def products(n: int) -> None:
        Xb = Xb_full[:n]
        gemm_(Xb, W1, A1[:n], 1.0, 1.0)
        gemm_(A1[:n], W2, S[:n], 1.0, 1.0)
        np.matmul(dS[:n], W2.T, out=dZ1[:n])
        gemm_(A1[:n], dS[:n], dW2, 1.0, 0.0, trans_a=True)  # into dW: weights stay
        gemm_(Xb, dZ1[:n], dW1, 1.0, 0.0, trans_a=True)

    def bias_copies(n: int) -> None:
        np.copyto(A1[:n], b1)
        np.copyto(S[:n], b2)

    def affine_calls(n: int) -> None:  # bias copies + the two forward products
        affine_(Xb_full[:n], W1, b1, A1[:n])
        affine_(A1[:n], W2, b2, S[:n])

    def relu(n: int) -> None:
        relu_(A1[:n], D1[:n])

    def head(n: int) -> None:
        ws.head_loss(S[:n], yb_full[:n], None)

    def penalty(n: int) -> None:
        ws._penalty(p, reg)

    def bias_sums(n: int) -> None:
        for dZ, db, b in ((dS, db2, b2_copy), (dZ1, db1, b1_copy)):
            np.matmul(ones[:n], dZ[:n], out=db)
            db *= lr  # as the step's ``db *= η; b -= db``, on copies of the biases
            b -= db

    def mask(n: int) -> None:
        dZ1[:n] *= D1[:n]

    def accuracy(n: int) -> None:
        int(np.count_nonzero(right_rows(model, S[:n], yb_full[:n])))

    return {
        "floor, gathered": epoch.gemm_floor_gathered(X, y, H, C, epochs),
        "engine step (gather + sgd_step)": step,
        "loop (training.fit)": epoch.handgrad_loop(X, y, H, C, epochs),
        "MLPClassifier.fit": epoch.handgrad_estimator(X, y, H, C, epochs),
        "part: gather": lambda: [ws.gather(X, y, None, idx) for idx in batches] and None,
        "part: products as called": each(products),
        "part: bias copies": each(bias_copies),
        "part: affine_ (copies + 2 products)": each(affine_calls),
        "part: ReLU + mask": each(relu),
        "part: head (loss, dS)": each(head),
        "part: penalty λ/2 Σ‖W‖²": each(penalty),
        "part: bias sums + updates": each(bias_sums),
        "part: dA ⊙ mask": each(mask),
        "part: accuracy count": each(accuracy),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", nargs="+", default=["digits", "mnist", "cifar"])
    ap.add_argument("--dtype", nargs="+", default=["float32", "float64"])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="BLAS threads for everything (default: handgrad's choice on an idle machine)",
    )
    ap.add_argument(
        "--cpu-time",
        action="store_true",
        help="count CPU seconds (time.process_time) instead of wall seconds: steadier on "
        "a busy machine, but only with one thread (spinning BLAS threads count too)",
    )
    args = ap.parse_args(argv)
    clock = time.process_time if args.cpu_time else time.perf_counter
    for workload in args.workload:
        for dtype in args.dtype:
            _, D, H, C = epoch.WORKLOADS[workload]
            n = args.threads or choose_threads(epoch.BATCH, (D, H, C), _usable_cpus())
            runs = {k: epoch.pinned(r, n) for k, r in parts(workload, np.dtype(dtype)).items()}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                times = epoch.interleaved(runs, args.rounds, pause=0.1, clock=clock)
            med = {k: statistics.median(v) for k, v in times.items()}
            floor = med["floor, gathered"]
            n_steps = len(range(0, epoch.WORKLOADS[workload][0], epoch.BATCH))
            n_steps *= epoch.EPOCHS.get(workload, 1)
            print(
                f"\n{workload}, {dtype}: {n_steps} steps, {n} BLAS thread(s), "
                f"median of {args.rounds} rounds, {'CPU' if args.cpu_time else 'wall'} seconds"
            )
            print(f"{'':<40} {'s':>8} {'× floor':>8} {'µs/step':>9}")
            for k, t in med.items():
                print(f"{k:<40} {t:>8.4f} {t / floor:>8.3f} {1e6 * t / n_steps:>9.1f}")
            rest = med["loop (training.fit)"] - med["engine step (gather + sgd_step)"]
            extra = med["MLPClassifier.fit"] - med["loop (training.fit)"]
            for k, t in (("loop less engine step", rest), ("estimator less loop", extra)):
                print(f"{k:<40} {t:>8.4f} {t / floor:>8.3f} {1e6 * t / n_steps:>9.1f}")


if __name__ == "__main__":
    main()
