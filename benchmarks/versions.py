"""Two checkouts of handgrad side by side: did a change move the NumPy path's speed?

Each round runs one fresh process per checkout (``PYTHONPATH=<checkout>/src``), in
alternating order, and each process times handgrad's training loop and
``MLPClassifier`` (one epoch of the MNIST-like workload, 20 of digits, plain SGD, batch
200, shuffled) four times, keeping the median of the last three. The table gives each
checkout's median over the rounds and the median of the per-round ratios new ÷ old.

    git worktree add --detach /tmp/old <commit>
    python benchmarks/versions.py /tmp/old .            # old checkout, new checkout
    python benchmarks/versions.py /tmp/old . --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

WORKLOADS = {"digits": (1797, 64, 100, 10, 20), "mnist": (60000, 784, 256, 10, 1)}
QUICK = {"quick": (600, 16, 8, 3, 2)}  # a smoke run


def measure(workloads: dict = WORKLOADS) -> dict[str, dict[str, float]]:
    """Seconds of the loop and the estimator on every workload and dtype (this process's
    handgrad)."""
    import numpy as np

    from handgrad import MLP, MLPClassifier
    from handgrad.optim import SGD
    from handgrad.training import TrainingConfig, fit

    out = {}
    for name, (N, D, H, C, epochs) in workloads.items():
        for dtype in (np.float32, np.float64):
            rng = np.random.default_rng(0)
            X, y = rng.standard_normal((N, D), dtype=dtype), rng.integers(0, C, N)
            model = MLP(D, (H,), C, seed=0, dtype=dtype)
            config = TrainingConfig(batch_size=200, max_epochs=epochs, reg=1e-4, stopping="none")
            shuffle = np.random.default_rng(0)
            clf = MLPClassifier(
                hidden_layer_sizes=(H,),
                solver="sgd",
                momentum=0.0,
                nesterovs_momentum=False,
                batch_size=200,
                max_iter=epochs,
                learning_rate_init=1e-3,
                alpha=1e-4,
                tol=0.0,
                n_iter_no_change=10**9,
                random_state=0,
            )
            times: dict[str, list[float]] = {"loop": [], "estimator": []}
            for _ in range(4):
                t = time.perf_counter()
                fit(model, X, y, optimizer=SGD(1e-3), config=config, seed=shuffle)
                times["loop"].append(time.perf_counter() - t)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # ConvergenceWarning: on purpose
                    t = time.perf_counter()
                    clf.fit(X, y)
                    times["estimator"].append(time.perf_counter() - t)
            key = f"{name}/{np.dtype(dtype).name}"
            out[key] = {k: statistics.median(v[1:]) for k, v in times.items()}
    return out


def run_checkout(checkout: Path, quick: bool = False) -> dict[str, dict[str, float]]:
    env = dict(os.environ, PYTHONPATH=str(checkout.resolve() / "src"))
    command = [sys.executable, __file__, "--measure", *(["--quick"] if quick else [])]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{checkout}: the measurement failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old", type=Path, nargs="?", help="the checkout before the change")
    p.add_argument("new", type=Path, nargs="?", help="the checkout after it")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    p.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(QUICK if args.quick else WORKLOADS)))
        return []
    if args.old is None or args.new is None:
        p.error("give the old and the new checkout")
    old, new = [], []
    for r in range(args.rounds):
        pair = [(old, args.old), (new, args.new)]
        for results, checkout in pair if r % 2 == 0 else pair[::-1]:
            results.append(run_checkout(checkout, args.quick))
    rows = []
    print(f"{'workload':<16} {'candidate':<10} {'old s':>7} {'new s':>7} {'new ÷ old':>10}")
    for key in old[0]:
        for part in ("loop", "estimator"):
            o, n = [r[key][part] for r in old], [r[key][part] for r in new]
            ratio = statistics.median(b / a for a, b in zip(o, n, strict=True))
            rows.append({"workload": key, "candidate": part, "ratio": ratio})
            print(
                f"{key:<16} {part:<10} {statistics.median(o):>7.3f} "
                f"{statistics.median(n):>7.3f} {ratio:>9.2f}×"
            )
    return rows


if __name__ == "__main__":
    main()
