"""One training epoch on a GPU: handgrad's MLPClassifier on torch tensors against a
PyTorch eager loop and the cuBLAS floor (the five products of every batch).

Workloads, synthetic: MNIST-like N=60000, D=784 and CIFAR-like N=50000, D=3072, both
→100→10, float32, plain SGD (momentum 0), η = 1e-3, α = 1e-4, shuffled, one epoch, at
batch 200 and 2048. Candidates, interleaved round by round after one warm-up round:

- **cuBLAS floor**: ``X W1``, ``A1 W2``, ``A1ᵀ dS``, ``dS W2ᵀ``, ``Xᵀ dZ1`` of every batch
  with ``torch.matmul`` into preallocated outputs, nothing else;
- **PyTorch eager**: ``nn.Linear``, ``ReLU``, ``CrossEntropyLoss``, ``optim.SGD``,
  ``randperm`` batches, the loss read every step (as handgrad records it);
- **handgrad MLPClassifier**: ``fit`` under scikit-learn's ``array_api_dispatch`` on the
  device's tensors (labels encoded on the host, everything else on the device).

Every timing ends with ``torch.cuda.synchronize()`` on a CUDA device. ``--device cpu
--rows 2000`` is a smoke run of the script itself (the numbers then say nothing about a
GPU).

    python benchmarks/gpu.py                      # cuda, both workloads, batch 200 and 2048
    python benchmarks/gpu.py --device cpu --rows 2000 --rounds 1
"""

from __future__ import annotations

import os

os.environ.setdefault("SCIPY_ARRAY_API", "1")  # before SciPy: array_api_dispatch needs it

import argparse
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

WORKLOADS = {"mnist": (60000, 784, 100, 10), "cifar": (50000, 3072, 100, 10)}
LEARNING_RATE, ALPHA = 1e-3, 1e-4


def _sync(device) -> Callable[[], None]:
    import torch

    if device.type == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def make_data(N: int, D: int, C: int, device, seed: int = 0):
    """Standard-normal X (N, D) float32 and labels y (N,) on ``device``."""
    import torch

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D), dtype=np.float32)
    y = rng.integers(0, C, N)
    return torch.asarray(X, device=device), torch.asarray(y, device=device)


def cublas_floor(X, y, H: int, C: int, batch: int) -> Callable[[], None]:
    """The five products of every batch into preallocated outputs."""
    import torch

    N, D = X.shape
    gen = torch.Generator(device="cpu").manual_seed(0)
    W1 = torch.randn(D, H, generator=gen).to(X)
    W2 = torch.randn(H, C, generator=gen).to(X)
    rows = min(batch, N)
    Z1, S = torch.empty(rows, H).to(X), torch.empty(rows, C).to(X)
    dW1, dW2, dA1 = torch.empty(D, H).to(X), torch.empty(H, C).to(X), torch.empty(rows, H).to(X)

    def run() -> None:
        for start in range(0, N, batch):
            Xb = X[start : start + batch]
            n = Xb.shape[0]
            torch.matmul(Xb, W1, out=Z1[:n])  # Z1 = X W1
            torch.matmul(Z1[:n], W2, out=S[:n])  # S = A1 W2
            torch.matmul(Z1[:n].T, S[:n], out=dW2)  # dW2 = A1ᵀ dS
            torch.matmul(S[:n], W2.T, out=dA1[:n])  # dA1 = dS W2ᵀ
            torch.matmul(Xb.T, dA1[:n], out=dW1)  # dW1 = Xᵀ dZ1

    return run


def torch_eager(X, y, H: int, C: int, batch: int) -> Callable[[], None]:
    """nn.Linear, ReLU, CrossEntropyLoss, optim.SGD, randperm batches."""
    import torch

    torch.manual_seed(0)
    N, D = X.shape
    net = torch.nn.Sequential(torch.nn.Linear(D, H), torch.nn.ReLU(), torch.nn.Linear(H, C)).to(
        X.device
    )
    # scikit-learn's alpha is λ per sample: λ = alpha / batch as SGD weight decay
    opt = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE, weight_decay=ALPHA / batch)
    loss_fn = torch.nn.CrossEntropyLoss()

    def run() -> None:
        total = 0.0
        for idx in torch.randperm(N, device=X.device).split(batch):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(X[idx]), y[idx])
            loss.backward()
            opt.step()
            total += loss.item()  # one number back per step, as handgrad's history

    return run


def handgrad_estimator(X, y, H: int, C: int, batch: int) -> Callable[[], None]:
    """MLPClassifier.fit for one epoch on the device's tensors."""
    import sklearn

    from handgrad import MLPClassifier

    def run() -> None:
        clf = MLPClassifier(
            (H,),
            solver="sgd",
            momentum=0.0,
            learning_rate_init=LEARNING_RATE,
            alpha=ALPHA,
            batch_size=batch,
            max_iter=1,
            random_state=0,
        )
        with sklearn.config_context(array_api_dispatch=True), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning: max_iter=1 on purpose
            clf.fit(X, y)

    return run


CANDIDATES = {
    "cuBLAS floor": cublas_floor,
    "PyTorch eager": torch_eager,
    "handgrad MLPClassifier": handgrad_estimator,
}


def interleaved(runs: dict[str, Callable[[], None]], rounds: int, sync) -> dict[str, list[float]]:
    """Seconds of each run, round by round, after one warm-up round."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(1 + rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            sync()
            t0 = time.perf_counter()
            runs[name]()
            sync()
            if r >= 1:
                times[name].append(time.perf_counter() - t0)
    return times


def bench(workload: str, rows: int | None, batch: int, rounds: int, device) -> list[dict]:
    N, D, H, C = WORKLOADS[workload]
    N = rows or N
    X, y = make_data(N, D, C, device)
    runs = {name: make(X, y, H, C, batch) for name, make in CANDIDATES.items()}
    times = interleaved(runs, rounds, _sync(device))
    floor = times["cuBLAS floor"]
    return [
        {
            "workload": workload,
            "rows": N,
            "batch": batch,
            "candidate": name,
            "median_s": statistics.median(ts),
            "ratio_to_floor": statistics.median(t / f for t, f in zip(ts, floor, strict=True)),
            "times_s": ts,
        }
        for name, ts in times.items()
    ]


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="torch device (default cuda; cpu: smoke run)")
    p.add_argument("--workload", nargs="+", choices=sorted(WORKLOADS), default=["mnist", "cifar"])
    p.add_argument("--batch", nargs="+", type=int, default=[200, 2048])
    p.add_argument("--rows", type=int, default=None, help="rows of X (default: the workload's)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = p.parse_args(argv)
    try:
        import torch
    except ImportError:
        sys.exit("benchmarks/gpu.py needs PyTorch: pip install 'handgrad[bench,array-api]'")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device (torch.cuda.is_available() is False); try --device cpu")
    results = []
    for workload in args.workload:
        for batch in args.batch:
            rows = bench(workload, args.rows, batch, args.rounds, device)
            print(f"\n{workload}-like, {rows[0]['rows']} rows, batch {batch}, float32, {device}")
            print(f"{'candidate':<26} {'median s':>9} {'× floor':>8}")
            for r in rows:
                print(f"{r['candidate']:<26} {r['median_s']:>9.3f} {r['ratio_to_floor']:>7.2f}×")
            results += rows
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
