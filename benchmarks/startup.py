"""Start-up of every ``handgrad`` command, as whole processes: before and after a change.

Each case is one fresh ``python`` process: ``handgrad --help``, ``handgrad COMMAND
--help`` for every command, and ``handgrad predict`` of 5 rows with a small model (64
→ 8 → 10, trained here on digits for one epoch). Two source trees take turns, case by
case and run by run (A B A B …), so that a noisy moment of the machine is shared
rather than landing on one of them; the table gives each one's median wall time and
the ratio of the medians, with the machine's load (``os.getloadavg``) before and after.

    python benchmarks/startup.py --before /tmp/old/src            # this tree against another
    python benchmarks/startup.py --before /tmp/old/src --runs 11  # steadier medians
    python benchmarks/startup.py --quick                          # this tree alone, 1 run

``--before`` is the ``src`` folder of another checkout (e.g. ``git archive COMMIT src |
tar -x -C /tmp/old``); without it only this tree is timed. See README.md here.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1] / "src"
COMMANDS = (
    "train",
    "evaluate",
    "predict",
    "gradcheck",
    "explain",
    "search",
    "plot",
    "datasets",
    "export",
)
LAUNCH = "import sys; sys.argv[0] = 'handgrad'; from handgrad.cli import main; main()"


def run_once(src: Path, args: list[str]) -> float:
    """Wall seconds of one ``handgrad ARGS`` process with ``src`` on the path."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", LAUNCH, *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"handgrad {' '.join(args)} failed: {done.stderr.decode()[-500:]}")
    return seconds


def small_model(folder: Path) -> tuple[Path, Path]:
    """A small run folder (64 → 8 → 10, one epoch on digits) and 5 rows to predict."""
    import numpy as np
    from sklearn.datasets import load_digits

    run_once(HERE, ["train", "--hidden", "8", "--epochs", "1", "--quiet", "--out", str(folder)])
    rows = folder / "rows.npy"
    np.save(rows, load_digits().data[:5])
    return folder / "model.safetensors", rows


def cases(model: Path, rows: Path) -> dict[str, list[str]]:
    """Every case's name and its command line."""
    found = {"--help": ["--help"]}
    found |= {f"{name} --help": [name, "--help"] for name in COMMANDS}
    found["predict 5 rows"] = ["predict", str(model), str(rows)]
    return found


def measure(trees: dict[str, Path], runs: int, model: Path, rows: Path) -> dict:
    """Median wall seconds per case and tree, the trees taking turns run by run."""
    medians: dict[str, dict[str, float]] = {}
    for case, args in cases(model, rows).items():
        times: dict[str, list[float]] = {name: [] for name in trees}
        for src in trees.values():  # one warm-up each: the file cache, .pyc files
            run_once(src, args)
        for _ in range(runs):
            for name, src in trees.items():
                times[name].append(run_once(src, args))
        medians[case] = {name: statistics.median(t) for name, t in times.items()}
    return medians


def table(medians: dict[str, dict[str, float]]) -> str:
    names = list(next(iter(medians.values())))
    header = ["case", *(f"{n} (s)" for n in names)]
    if len(names) == 2:
        header.append(f"{names[1]} / {names[0]}")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for case, by_tree in medians.items():
        cells = [f"`handgrad {case}`", *(f"{by_tree[n]:.3f}" for n in names)]
        if len(names) == 2:
            cells.append(f"{by_tree[names[1]] / by_tree[names[0]]:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, default=None, help="src folder of the old tree")
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each case and tree")
    parser.add_argument("--quick", action="store_true", help="this tree, one run (a smoke test)")
    args = parser.parse_args(argv)
    trees = {"after": HERE}
    if args.before is not None and not args.quick:
        trees = {"before": args.before.resolve(), "after": HERE}
    runs = 1 if args.quick else args.runs
    with tempfile.TemporaryDirectory() as tmp:
        model, rows = small_model(Path(tmp) / "small")
        load_before = os.getloadavg()
        medians = measure(trees, runs, model, rows)
        load_after = os.getloadavg()
    print(f"python {sys.version.split()[0]}, {runs} timed runs per case and tree (medians)")
    print(f"load average before: {load_before[0]:.2f}, after: {load_after[0]:.2f} (1 min)")
    print(table(medians))
    return medians


if __name__ == "__main__":
    main()
