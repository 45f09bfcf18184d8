"""Training on a memory-mapped ``.npy`` larger than memory: peak RSS and epoch time.

For N at 1×, 4× and 16× of the MNIST-like workload (60 000 × 784 float32, a
784-256-10 network, batch 200, Adam), a ``.npy`` file of N random rows is written, and
``MLPClassifier`` trains on ``np.load(path, mmap_mode="r")`` for three epochs in a fresh
process per size. Each process reports its peak RSS (``resource.getrusage``) and its
fastest epoch after the first, per row (the file is then in the page cache; the fastest,
because other processes on a shared machine slow some epochs down). The reference is
the same fit at 1× on X read into memory, run again just before each size. One epoch of
``handgrad train --data X.npy --labels y.npy`` (split, fingerprint, training, scoring)
runs at 1× and 16×. A cold-cache epoch (the file's pages dropped
from the page cache with ``posix_fadvise(DONTNEED)`` first, which needs no root) is
timed too. See README.md here.

    python benchmarks/out_of_core.py                   # 1×, 4×, 16× of 60 000 rows
    python benchmarks/out_of_core.py --rows 6000       # ten times smaller
    python benchmarks/out_of_core.py --quick           # a tiny smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

D, HIDDEN, C, BATCH = 784, 256, 10, 200
SCALES = (1, 4, 16)


def write_data(directory: Path, n: int, d: int, seed: int = 0) -> tuple[Path, Path]:
    """``X.npy`` (n, d) float32 and ``y.npy`` (n,) labels, written a chunk at a time.

    Written through the file, not a mapping: this process's peak RSS is where each
    child's ``ru_maxrss`` starts (Linux keeps it across fork and exec), so it must not
    hold the file's pages.
    """
    rng = np.random.default_rng(seed)
    x_path, y_path = directory / f"X_{n}.npy", directory / f"y_{n}.npy"
    with x_path.open("wb") as f:
        header = {"descr": "<f4", "fortran_order": False, "shape": (n, d)}
        np.lib.format.write_array_header_1_0(f, header)
        for start in range(0, n, 20000):
            f.write(rng.standard_normal((min(n, start + 20000) - start, d), dtype=np.float32))
    np.save(y_path, rng.integers(0, C, n))
    return x_path, y_path


def drop_from_page_cache(path: Path) -> None:
    """Evict the file's (clean) pages from the page cache, as a cold start."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def child(x_path: str, y_path: str, mode: str, hidden: int, epochs: int) -> dict:
    """Train in this (fresh) process; what the parent prints."""
    import warnings

    if mode == "cli":
        return cli_child(x_path, y_path, hidden, epochs)

    from handgrad import MLPClassifier
    from handgrad.training import Callback

    class Clock(Callback):
        def __init__(self) -> None:
            self.times = [time.perf_counter()]

        def on_epoch_end(self, run) -> None:
            self.times.append(time.perf_counter())

    X = np.load(x_path, mmap_mode=None if mode == "memory" else "r")
    y = np.load(y_path)
    clock = Clock()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MLPClassifier(
            hidden_layer_sizes=(hidden,),
            batch_size=BATCH,
            max_iter=epochs,
            random_state=0,
            shuffle=True,
        ).fit(X, y, callbacks=[clock])
    fit_s = time.perf_counter() - start
    epoch_s = np.diff(clock.times)
    warm = epoch_s[1:] if len(epoch_s) > 1 else epoch_s  # the first reads a cold file
    return {
        "mode": mode,
        "rows": int(X.shape[0]),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "fit_s": fit_s,
        "epoch_s": [float(t) for t in epoch_s],
        "epoch_us_per_row": float(warm.min() / X.shape[0] * 1e6),
    }


def cli_child(x_path: str, y_path: str, hidden: int, epochs: int) -> dict:
    """``handgrad train --data X.npy --labels y.npy`` (its library call): the split, the
    fingerprint, training and the scoring of every part, into a run folder."""
    from handgrad.runs import RunConfig, train

    config = RunConfig(
        data=x_path, labels=y_path, hidden=(hidden,), batch_size=BATCH, epochs=epochs
    )
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        result = train(config, out=Path(out) / "run", progress=False, log=lambda _: None)
    rows = sum(result.metrics["sizes"].values())
    return {
        "mode": "cli",
        "rows": rows,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "fit_s": time.perf_counter() - start,
        "epoch_s": [],
        "epoch_us_per_row": float("nan"),
        "test_accuracy": result.metrics["final"]["test_accuracy"],
    }


def run_child(x_path: Path, y_path: Path, mode: str, hidden: int, epochs: int) -> dict:
    cmd = [sys.executable, __file__, "--child", str(x_path), str(y_path), mode]
    cmd += ["--hidden", str(hidden), "--epochs", str(epochs)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60000, help="rows at 1× (60 000)")
    parser.add_argument("--hidden", type=int, default=HIDDEN)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where the files go")
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-cache fit")
    parser.add_argument("--no-cli", action="store_true", help="skip the command-line runs")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child, args.hidden, args.epochs)))
        return {}
    rows, hidden = (600, 16) if args.quick else (args.rows, args.hidden)
    results: dict = {"rows_1x": rows, "hidden": hidden, "runs": []}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        one = write_data(Path(tmp), rows, D)
        for scale in SCALES:
            x_path, y_path = one if scale == 1 else write_data(Path(tmp), rows * scale, D)
            # The in-memory reference (at 1×) again beside each size: on a shared machine
            # the load drifts, and a ratio is only fair against a run made just before.
            reference = run_child(*one, "memory", hidden, args.epochs)
            results["runs"].append({"scale": scale, **reference, "reference_for": scale})
            modes = ["memmap", *(["cli"] if scale in (1, SCALES[-1]) and not args.no_cli else [])]
            for mode in modes:
                epochs = 1 if mode == "cli" else args.epochs
                results["runs"].append(
                    {"scale": scale, **run_child(x_path, y_path, mode, hidden, epochs)}
                )
            if not args.no_cold:
                drop_from_page_cache(x_path)
                cold = run_child(x_path, y_path, "memmap", hidden, 1)
                results["runs"].append({"scale": scale, **cold, "mode": "memmap, cold"})
            if scale != 1:
                x_path.unlink()
    _report(results)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return results


def _report(results: dict) -> None:
    runs = results["runs"]
    base = next(r for r in runs if r["mode"] == "memmap" and r["scale"] == 1)
    print(f"{'scale':>5} {'rows':>9} {'mode':<14} {'peak RSS':>10} {'fit':>8} {'µs/row':>7}")
    for r in runs:
        print(
            f"{r['scale']:>4}× {r['rows']:>9} {r['mode']:<14} {r['peak_rss_mib']:>6.0f} MiB "
            f"{r['fit_s']:>7.1f}s {r['epoch_us_per_row']:>7.2f}"
        )
    cli = {r["scale"]: r for r in runs if r["mode"] == "cli"}
    if len(cli) == 2:
        small, large = (cli[k] for k in sorted(cli))
        print(
            f"handgrad train --data X.npy --labels y.npy (one epoch, scored): peak RSS "
            f"{large['peak_rss_mib'] - small['peak_rss_mib']:+.0f} MiB at "
            f"{large['scale']}× over 1×"
        )
    for r in runs:
        if r["mode"] in ("memmap", "memmap, cold"):
            memory = next(m for m in runs if m.get("reference_for") == r["scale"])
            r["rss_over_1x_mib"] = r["peak_rss_mib"] - base["peak_rss_mib"]
            r["time_per_row_vs_memory"] = r["epoch_us_per_row"] / memory["epoch_us_per_row"]
            print(
                f"{r['scale']:>4}× {r['mode']}: peak RSS {r['rss_over_1x_mib']:+.0f} MiB over "
                f"1×, epoch time per row {r['time_per_row_vs_memory']:.2f}× the in-memory fit "
                "beside it"
            )


if __name__ == "__main__":
    main()
