"""Peak resident memory of a float32 ``fit`` on MNIST-like data, each in a fresh process.

The target (issue 5): peak RSS ≤ the bytes of X and y + 64 MiB. A child process
imports everything, records its RSS (the interpreter and libraries: the baseline),
makes X (N, D) float32 and y (N,) int64 in place, fits one epoch, and reports its peak
RSS (``ru_maxrss``). Printed: the absolute peak, the baseline, and the peak above
baseline + X + y — the memory that training itself added.

    python benchmarks/memory.py                     # handgrad loop and MLPClassifier
    python benchmarks/memory.py --n 2000 --d 32     # a small smoke run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

MIB = 2**20
RESULTS = Path(__file__).parent / "results"
CANDIDATES = ("handgrad loop", "handgrad MLPClassifier")

CHILD = r"""
import resource, sys, warnings, json
import numpy as np
from handgrad import MLP
from handgrad.optim import SGD
from handgrad.training import TrainingConfig, fit
candidate = sys.argv[1]
MLPClassifier = None
if candidate != "handgrad loop":  # the loop alone needs no scikit-learn
    try:
        from handgrad import MLPClassifier
    except ImportError:
        pass

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()

N, D, H, C = map(int, sys.argv[2:6])
baseline = rss()
rng = np.random.default_rng(0)
X = rng.standard_normal((N, D), dtype=np.float32)
y = rng.integers(0, C, N)
if candidate == "handgrad loop":
    model = MLP(D, (H,), C, seed=0, dtype=np.float32)
    config = TrainingConfig(batch_size=200, max_epochs=1, reg=1e-4, stopping="none")
    fit(model, X, y, optimizer=SGD(1e-3), config=config, seed=0)
else:
    if MLPClassifier is None:
        print(json.dumps(None)); sys.exit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MLPClassifier((H,), solver="sgd", momentum=0.0, batch_size=200, max_iter=1,
                      learning_rate_init=1e-3, random_state=0).fit(X, y)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"baseline": baseline, "peak": peak, "data": X.nbytes + y.nbytes}))
"""


def measure(candidate: str, N: int, D: int, H: int, C: int) -> dict | None:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, candidate, str(N), str(D), str(H), str(C)],
        capture_output=True,
        text=True,
        check=True,
    )
    row = json.loads(out.stdout.strip().splitlines()[-1])
    if row is None:
        return None
    row["candidate"] = candidate
    row["added"] = row["peak"] - row["baseline"] - row["data"]
    row["target"] = row["data"] + 64 * MIB
    return row


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=60000)
    p.add_argument("--d", type=int, default=784)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=CANDIDATES)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    rows = []
    print(f"float32 fit, one epoch, {args.n}×{args.d}→{args.hidden}→10")
    print(
        f"{'candidate':<24} {'peak MiB':>9} {'baseline':>9} {'X+y MiB':>8} "
        f"{'added MiB':>10} {'peak ≤ X+y+64 MiB':>18}"
    )
    for candidate in args.candidates:
        row = measure(candidate, args.n, args.d, args.hidden, 10)
        if row is None:
            print(f"{candidate:<24} (skipped: not importable)")
            continue
        rows.append(row)
        print(
            f"{candidate:<24} {row['peak'] / MIB:>9.1f} {row['baseline'] / MIB:>9.1f} "
            f"{row['data'] / MIB:>8.1f} {row['added'] / MIB:>10.1f} "
            f"{'yes' if row['peak'] <= row['target'] else 'no':>18}"
        )
    out = args.out or RESULTS / f"memory-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))
    print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    main()
